import { randomBytes, randomUUID } from 'node:crypto'
import type { AuditLog } from '../audit/audit-log.js'
import type { PasswordHasher } from '../auth/passwords.js'
import type { Role } from '../auth/roles.js'
import type { Db, Queryable } from '../db/index.js'
import { AppError, notFound } from '../errors.js'
import type { RefreshTokens } from './refresh-tokens.js'
import type { UserChanges, UserRecord, UsersRepo } from './repo.js'

export interface NewUserInput {
  username: string
  password: string
  email: string
  role: Role
  org: string
  org_id: string
}

export type UserPatch = Partial<Omit<NewUserInput, 'password'>> & { password?: string | undefined }

/** Who asks, for the audit log. */
export interface Actor {
  id: string
  ip: string
}

export interface BootstrapAdmin {
  username: string
  password: string | undefined
  email: string
  org: string
}

export type BootstrapResult =
  | { created: false }
  | { created: true; user: UserRecord; generatedPassword: string | undefined }

export class BootstrapError extends Error {
  override name = 'BootstrapError'
}

// Serialises changes that must keep at least one admin, across instances sharing a database.
const ADMIN_SET_LOCK_KEY = 7_142_015_002
const GENERATED_PASSWORD_BYTES = 18

const lastAdmin = () => new AppError(409, 'last_admin', 'the last admin cannot be removed or demoted')
const noSuchUser = () => notFound('no such user')

export interface UsersServiceDeps {
  db: Pick<Db, 'transaction'>
  users: UsersRepo
  refreshTokens: Pick<RefreshTokens, 'revokeUser'>
  hasher: Pick<PasswordHasher, 'hash'>
  audit: Pick<AuditLog, 'record'>
}

/** Managing users (admin API) and creating the first admin. */
export class UsersService {
  constructor(private readonly deps: UsersServiceDeps) {}

  get(id: string): Promise<UserRecord | undefined> {
    return this.deps.users.findById(id)
  }

  list(limit: number, offset: number) {
    return this.deps.users.list(limit, offset)
  }

  async create(input: NewUserInput, actor: Actor): Promise<UserRecord> {
    const d = this.deps
    const password_hash = await d.hasher.hash(input.password)
    return d.db.transaction(async (tx) => {
      const user = await d.users.insert({ id: randomUUID(), ...input, password_hash }, tx)
      await d.audit.record(
        {
          action: 'user.create',
          actor: `user:${actor.id}`,
          target: `user:${user.id}`,
          ip: actor.ip,
          details: { username: user.username, role: user.role },
        },
        tx,
      )
      return user
    })
  }

  async update(id: string, patch: UserPatch, actor: Actor): Promise<UserRecord> {
    const d = this.deps
    const { password, ...rest } = patch
    const changes: UserChanges = { ...rest }
    if (password !== undefined) changes.password_hash = await d.hasher.hash(password)
    return d.db.transaction(async (tx) => {
      await lockAdminSet(tx)
      const before = await d.users.findById(id, tx)
      if (before === undefined) throw noSuchUser()
      if (before.role === 'admin' && changes.role !== undefined && changes.role !== 'admin') {
        if ((await d.users.countAdmins(tx)) <= 1) throw lastAdmin()
      }
      const user = (await d.users.update(id, changes, tx)) as UserRecord
      // A new password ends every session of the old one.
      if (password !== undefined) await d.refreshTokens.revokeUser(tx, id)
      await d.audit.record(
        {
          action: 'user.update',
          actor: `user:${actor.id}`,
          target: `user:${id}`,
          ip: actor.ip,
          details: { fields: Object.keys(patch).filter((k) => patch[k as keyof UserPatch] !== undefined).sort() },
        },
        tx,
      )
      return user
    })
  }

  async delete(id: string, actor: Actor): Promise<void> {
    const d = this.deps
    await d.db.transaction(async (tx) => {
      await lockAdminSet(tx)
      const user = await d.users.findById(id, tx)
      if (user === undefined) throw noSuchUser()
      if (user.role === 'admin' && (await d.users.countAdmins(tx)) <= 1) throw lastAdmin()
      await d.users.delete(id, tx)
      await d.audit.record(
        {
          action: 'user.delete',
          actor: `user:${actor.id}`,
          target: `user:${id}`,
          ip: actor.ip,
          details: { username: user.username },
        },
        tx,
      )
    })
  }

  /**
   * Creates the first admin when no user exists. Without a configured password one is
   * generated (development only: production refuses to start, as a password in its
   * logs would be worse). The admin's org id is its org name.
   */
  async bootstrap(admin: BootstrapAdmin, opts: { production: boolean }): Promise<BootstrapResult> {
    const d = this.deps
    // Every start but the first stops here, before paying for a password hash.
    if ((await d.users.count()) > 0) return { created: false }
    if (admin.password === undefined && opts.production) {
      throw new BootstrapError('ADMIN_PASSWORD is required to create the first admin user (no user exists yet)')
    }
    const generatedPassword = admin.password === undefined ? randomBytes(GENERATED_PASSWORD_BYTES).toString('base64url') : undefined
    const password_hash = await d.hasher.hash(admin.password ?? (generatedPassword as string))
    return d.db.transaction(async (tx) => {
      await lockAdminSet(tx)
      // Another instance may have won the race while this one hashed.
      if ((await d.users.count(tx)) > 0) return { created: false as const }
      const user = await d.users.insert(
        {
          id: randomUUID(),
          username: admin.username,
          email: admin.email,
          org: admin.org,
          org_id: admin.org,
          password_hash,
          role: 'admin',
        },
        tx,
      )
      await d.audit.record(
        { action: 'user.bootstrap', target: `user:${user.id}`, details: { username: user.username } },
        tx,
      )
      return { created: true as const, user, generatedPassword }
    })
  }
}

async function lockAdminSet(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [ADMIN_SET_LOCK_KEY])
}
