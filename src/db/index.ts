import type { Db } from './db.js'
import { migrate } from './migrate.js'
import { createPgliteDb } from './pglite.js'
import { createPostgresDb } from './postgres.js'

export type { Db, Queryable } from './db.js'
export { migrate } from './migrate.js'

/** Opens the configured engine and brings its schema up to date. */
export async function openDb(opts: { databaseUrl: string | undefined; dataDir: string }): Promise<Db> {
  const db = opts.databaseUrl !== undefined ? createPostgresDb(opts.databaseUrl) : await createPgliteDb(opts.dataDir)
  try {
    await migrate(db)
  } catch (err) {
    await db.close().catch(() => {})
    throw err
  }
  return db
}
