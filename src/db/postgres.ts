import pg from 'pg'
import type { Db, Queryable } from './db.js'

// int8 (bigint) arrives as a string by default; counts and ids in this project stay
// well inside 2^53, but nanosecond times do not, so keep the default and convert where needed.

export interface PostgresDbOptions {
  max?: number
  engine?: Db['engine']
  /** Runs after the pool has ended (the embedded engine stops its server here). */
  onClose?: () => Promise<void>
}

export function createPostgresDb(connection: string | pg.PoolConfig, opts: PostgresDbOptions = {}): Db {
  const settings = typeof connection === 'string' ? { connectionString: connection } : connection
  const pool = new pg.Pool({ ...settings, max: opts.max ?? 10 })
  // A pooled client that errors while idle (server restart) must not crash the process.
  pool.on('error', () => {})
  const query = async <T>(sql: string, params?: readonly unknown[]) =>
    (await pool.query(sql, params as unknown[] | undefined)).rows as T[]
  let closed = false
  return {
    engine: opts.engine ?? 'postgres',
    query,
    async exec(sql) {
      await pool.query(sql)
    },
    async transaction(fn) {
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        const tx: Queryable = {
          query: async <T>(sql: string, params?: readonly unknown[]) =>
            (await client.query(sql, params as unknown[] | undefined)).rows as T[],
        }
        const result = await fn(tx)
        await client.query('COMMIT')
        return result
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {})
        throw err
      } finally {
        client.release()
      }
    },
    async ping() {
      await pool.query('SELECT 1')
    },
    async close() {
      if (closed) return
      closed = true
      try {
        await pool.end()
      } finally {
        await opts.onClose?.()
      }
    },
  }
}
