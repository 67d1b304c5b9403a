import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Db } from './db.js'

/** Plain SQL files in migrations/, applied in name order, each recorded once. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url))

// Any constant shared by every instance: serialises concurrent start-ups on one database.
const MIGRATION_LOCK_KEY = 7_142_015_001

export async function migrate(db: Db, dir = MIGRATIONS_DIR): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => /^\d+_[\w-]+\.sql$/.test(f)).sort()
  const applied: string[] = []
  await db.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
  )
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY])
    const done = new Set(
      (await tx.query<{ version: string }>('SELECT version FROM schema_migrations')).map((r) => r.version),
    )
    for (const file of files) {
      if (done.has(file)) continue
      const sql = await readFile(join(dir, file), "utf8")
      for (const statement of splitStatements(sql)) await tx.query(statement)
      await tx.query('INSERT INTO schema_migrations (version) VALUES ($1)', [file])
      applied.push(file)
    }
  })
  return applied
}

/**
 * Splits a migration on top-level semicolons. Migrations are plain DDL: no function
 * bodies or string literals containing ';' (a migration that needs one uses `$$`-free SQL).
 */
function splitStatements(sql: string): string[] {
  return sql
    .replace(/--[^\n]*/g, '')
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s !== '')
}
