import type { Queryable } from '../db/index.js'
import { AppError } from '../errors.js'
import type { Role } from '../auth/roles.js'

export interface UserRecord {
  id: string
  username: string
  email: string
  org: string
  org_id: string
  password_hash: string
  role: Role
  created_at: Date
  updated_at: Date
  last_login_at: Date | null
}

export type NewUser = Pick<UserRecord, 'id' | 'username' | 'email' | 'org' | 'org_id' | 'password_hash' | 'role'>
export type UserChanges = Partial<Pick<UserRecord, 'username' | 'email' | 'org' | 'org_id' | 'password_hash' | 'role'>>

const COLUMNS = 'id, username, email, org, org_id, password_hash, role, created_at, updated_at, last_login_at'
const UNIQUE_VIOLATION = '23505'
const CHANGEABLE = ['username', 'email', 'org', 'org_id', 'password_hash', 'role'] as const satisfies ReadonlyArray<
  keyof UserChanges
>

export const usernameTaken = (username: string) =>
  new AppError(409, 'username_taken', `username "${username}" is already taken`)

/** SQL for the users table; every method takes an optional transaction. */
export class UsersRepo {
  constructor(private readonly db: Queryable) {}

  async findById(id: string, tx: Queryable = this.db): Promise<UserRecord | undefined> {
    return (await tx.query<UserRecord>(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id]))[0]
  }

  /** Case-insensitive, as usernames are unique. */
  async findByUsername(username: string, tx: Queryable = this.db): Promise<UserRecord | undefined> {
    return (await tx.query<UserRecord>(`SELECT ${COLUMNS} FROM users WHERE lower(username) = lower($1)`, [username]))[0]
  }

  async count(tx: Queryable = this.db): Promise<number> {
    return (await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM users'))[0]?.n ?? 0
  }

  async countAdmins(tx: Queryable = this.db): Promise<number> {
    return (await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM users WHERE role = 'admin'`))[0]?.n ?? 0
  }

  async list(limit: number, offset: number): Promise<{ users: UserRecord[]; total: number }> {
    const [users, total] = await Promise.all([
      this.db.query<UserRecord>(`SELECT ${COLUMNS} FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2`, [limit, offset]),
      this.count(),
    ])
    return { users, total }
  }

  async insert(user: NewUser, tx: Queryable = this.db): Promise<UserRecord> {
    try {
      const rows = await tx.query<UserRecord>(
        `INSERT INTO users (id, username, email, org, org_id, password_hash, role)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${COLUMNS}`,
        [user.id, user.username, user.email, user.org, user.org_id, user.password_hash, user.role],
      )
      return rows[0] as UserRecord
    } catch (err) {
      if (isUniqueViolation(err)) throw usernameTaken(user.username)
      throw err
    }
  }

  async update(id: string, changes: UserChanges, tx: Queryable = this.db): Promise<UserRecord | undefined> {
    // Only known columns, whatever object the caller passed.
    const entries = CHANGEABLE.flatMap((k) => (changes[k] === undefined ? [] : [[k, changes[k]] as const]))
    const sets = entries.map(([k], i) => `${k} = $${i + 2}`)
    sets.push('updated_at = now()')
    try {
      const rows = await tx.query<UserRecord>(
        `UPDATE users SET ${sets.join(', ')} WHERE id = $1 RETURNING ${COLUMNS}`,
        [id, ...entries.map(([, v]) => v)],
      )
      return rows[0]
    } catch (err) {
      if (isUniqueViolation(err) && changes.username !== undefined) throw usernameTaken(changes.username)
      throw err
    }
  }

  async delete(id: string, tx: Queryable = this.db): Promise<boolean> {
    return (await tx.query('DELETE FROM users WHERE id = $1 RETURNING id', [id])).length > 0
  }

  async touchLogin(id: string, tx: Queryable = this.db): Promise<void> {
    await tx.query('UPDATE users SET last_login_at = now() WHERE id = $1', [id])
  }
}

function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === UNIQUE_VIOLATION
}
