import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import type { Db, Queryable } from './db.js'

/** The embedded engine: Postgres compiled to WASM, in-process, data kept under dataDir. */
export async function createPgliteDb(dataDir: string | undefined): Promise<Db> {
  let dir: string | undefined
  if (dataDir !== undefined) {
    dir = join(dataDir, 'pglite')
    await mkdir(dir, { recursive: true })
  }
  const pglite = dir === undefined ? await PGlite.create() : await PGlite.create(dir)
  const query = async <T>(sql: string, params?: readonly unknown[]) =>
    (await pglite.query<T>(sql, params as unknown[] | undefined)).rows
  let closed = false
  return {
    engine: 'pglite',
    query,
    async exec(sql) {
      await pglite.exec(sql)
    },
    transaction(fn) {
      return pglite.transaction((tx) => {
        const q: Queryable = {
          query: async <T>(sql: string, params?: readonly unknown[]) =>
            (await tx.query<T>(sql, params as unknown[] | undefined)).rows,
        }
        return fn(q)
      })
    },
    async ping() {
      await pglite.query('SELECT 1')
    },
    async close() {
      if (closed) return
      closed = true
      await pglite.close()
    },
  }
}
