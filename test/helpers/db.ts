import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPostgresDb } from '../../src/db/postgres.js'
import { migrate, openDb, type Db } from '../../src/db/index.js'
import { requireService, tcpReachable } from './services.js'

/** The real Postgres tests use: the machine's local server unless told otherwise. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://root@127.0.0.1:5432/test'

export interface TestDb {
  db: Db
  /** Connection string when the engine is real Postgres (for child processes). */
  url: string | undefined
  drop(): Promise<void>
}

export interface Engine {
  name: 'embedded' | 'postgres'
  create(): Promise<TestDb>
}

const quiet = { info() {}, warn() {} }

/** The embedded engine exactly as the gateway runs it, on a fresh data dir. */
const embedded: Engine = {
  name: 'embedded',
  async create() {
    const dataDir = await mkdtemp(join(tmpdir(), 'mc-db-'))
    const db = await openDb({ databaseUrl: undefined, dataDir, log: quiet })
    return {
      db,
      url: undefined,
      async drop() {
        await db.close()
        await rm(dataDir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 })
      },
    }
  },
}

/** A fresh database per call on the real server, dropped afterwards. */
const postgres: Engine = {
  name: 'postgres',
  async create() {
    const name = `mc_test_${randomBytes(6).toString('hex')}`
    await adminQuery(`CREATE DATABASE ${name}`)
    const url = new URL(TEST_DATABASE_URL)
    url.pathname = `/${name}`
    const db = createPostgresDb(url.toString(), { max: 4 })
    await migrate(db)
    return {
      db,
      url: url.toString(),
      async drop() {
        await db.close()
        await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      },
    }
  },
}

async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await client.connect()
  try {
    await client.query(sql)
  } finally {
    await client.end()
  }
}

export async function postgresAvailable(): Promise<boolean> {
  const url = new URL(TEST_DATABASE_URL)
  return requireService(`PostgreSQL at ${url.host}`, await tcpReachable(url.hostname, Number(url.port || 5432)))
}

/** Both engines when real Postgres is reachable (always in CI), else the embedded one. */
export async function engines(): Promise<Engine[]> {
  return (await postgresAvailable()) ? [embedded, postgres] : [embedded]
}

export { embedded as embeddedEngine, postgres as postgresEngine }
