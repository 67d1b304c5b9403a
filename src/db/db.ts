/**
 * The metadata database: real Postgres through `pg` when DATABASE_URL is set, an
 * embedded Postgres otherwise. Callers see only this interface, so the same queries and
 * the same tests run on both engines.
 */
export interface Queryable {
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>
}

export interface Db extends Queryable {
  readonly engine: 'postgres' | 'embedded'
  /** Several statements, no parameters (migrations). */
  exec(sql: string): Promise<void>
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>
  ping(): Promise<void>
  close(): Promise<void>
}

export class DbError extends Error {
  override name = 'DbError'
}
