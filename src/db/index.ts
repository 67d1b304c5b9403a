import type { Db } from './db.js'
import { startEmbeddedPostgres, type EmbeddedLog } from './embedded.js'
import { migrate } from './migrate.js'
import { createPostgresDb } from './postgres.js'

export type { Db, Queryable } from './db.js'
export { migrate } from './migrate.js'

/**
 * Opens the configured database, real Postgres at DATABASE_URL or the embedded one under
 * DATA_DIR, and brings its schema up to date. Closing the Db stops the embedded server.
 */
export async function openDb(opts: { databaseUrl: string | undefined; dataDir: string; log: EmbeddedLog }): Promise<Db> {
  let db: Db
  if (opts.databaseUrl !== undefined) {
    db = createPostgresDb(opts.databaseUrl)
  } else {
    const server = await startEmbeddedPostgres(opts.dataDir, opts.log)
    db = createPostgresDb(server.connection, { engine: 'embedded', onClose: () => server.stop() })
  }
  try {
    await migrate(db)
  } catch (err) {
    await db.close().catch(() => {})
    throw err
  }
  return db
}
