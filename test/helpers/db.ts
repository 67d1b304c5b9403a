import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { createPgliteDb } from '../../src/db/pglite.js'
import { createPostgresDb } from '../../src/db/postgres.js'
import { migrate, type Db } from '../../src/db/index.js'
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
  name: 'pglite' | 'postgres'
  create(): Promise<TestDb>
}

const pglite: Engine = {
  name: 'pglite',
  async create() {
    const db = await createPgliteDb(undefined)
    await migrate(db)
    return { db, url: undefined, drop: () => db.close() }
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
  return (await postgresAvailable()) ? [pglite, postgres] : [pglite]
}

export { pglite as pgliteEngine, postgres as postgresEngine }
