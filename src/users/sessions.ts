import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { AuditLog } from '../audit/audit-log.js'
import type { LoginLimiter } from '../auth/login-limiter.js'
import type { PasswordHasher } from '../auth/passwords.js'
import { TokenError, type TokenService } from '../auth/tokens.js'
import type { Db, Queryable } from '../db/index.js'
import { AppError, unauthorized } from '../errors.js'
import type { RefreshTokens } from './refresh-tokens.js'
import type { UserRecord, UsersRepo } from './repo.js'

/** What login and refresh answer (docs/API.md section 7). */
export interface Session {
  token: string
  refresh_token: string
  /** The access token's expiry. */
  expires_at: Date
  user: UserRecord
}

export class LoginThrottledError extends AppError {
  override name = 'LoginThrottledError'
  constructor(readonly retryAfterS: number) {
    super(429, 'too_many_attempts', `too many failed logins; retry in ${retryAfterS} s`)
  }
}

// One answer for an unknown user and a wrong password, so neither can be told apart.
const invalidCredentials = () => unauthorized('invalid username or password', 'invalid_credentials')
const invalidRefresh = (why: string) => unauthorized(why, 'invalid_token')

export interface SessionDeps {
  db: Pick<Db, 'transaction'>
  users: Pick<UsersRepo, 'findByUsername' | 'findById' | 'touchLogin' | 'update'>
  refreshTokens: RefreshTokens
  hasher: Pick<PasswordHasher, 'verify' | 'needsRehash' | 'hash'>
  tokens: Pick<TokenService, 'sign' | 'verifyTypeFresh'>
  audit: Pick<AuditLog, 'record'>
  limiter: Pick<LoginLimiter, 'reserve' | 'release' | 'succeeded'>
  accessTokenTtlS: number
  refreshTokenTtlS: number
  log: Pick<Logger, 'warn'>
}

/** Login and refresh: access tokens (15 min) and single-use refresh tokens (24 h) in families. */
export class SessionService {
  constructor(private readonly deps: SessionDeps) {}

  async login(username: string, password: string, ip: string): Promise<Session> {
    const d = this.deps
    // Counted as a failure before the hash is checked: parallel guesses cannot outrun the limit.
    const retryAfterS = d.limiter.reserve(username, ip)
    if (retryAfterS > 0) {
      d.log.warn({ username, ip, retry_after_s: retryAfterS }, 'login throttled')
      throw new LoginThrottledError(retryAfterS)
    }
    let user: UserRecord | undefined
    let ok: boolean
    try {
      user = await d.users.findByUsername(username)
      // An unknown user is checked against a dummy hash: the same work, the same time.
      ok = await d.hasher.verify(user?.password_hash, password)
    } catch (err) {
      // Never judged (hasher busy, database down): no failure to count.
      d.limiter.release(username, ip)
      throw err
    }
    if (!ok || user === undefined) {
      await d.audit.record({
        action: 'auth.login',
        outcome: 'failure',
        ip,
        details: { username, reason: 'invalid_credentials' },
      })
      throw invalidCredentials()
    }
    d.limiter.succeeded(username, ip)
    const rehash = d.hasher.needsRehash(user.password_hash) ? await d.hasher.hash(password) : undefined
    return d.db.transaction(async (tx) => {
      if (rehash !== undefined) await d.users.update(user.id, { password_hash: rehash }, tx)
      await d.users.touchLogin(user.id, tx)
      await d.refreshTokens.pruneExpired(tx, user.id)
      const session = await this.issue(tx, user, randomUUID())
      await d.audit.record(
        { action: 'auth.login', actor: `user:${user.id}`, target: `user:${user.id}`, ip, details: { username: user.username } },
        tx,
      )
      return session
    })
  }

  async refresh(refreshToken: string, ip: string): Promise<Session> {
    const d = this.deps
    let jti: unknown
    try {
      jti = (await d.tokens.verifyTypeFresh(refreshToken, ['refresh'])).claims.jti
    } catch (err) {
      if (err instanceof TokenError) throw invalidRefresh(err.reason)
      throw err
    }
    if (typeof jti !== 'string' || !UUID.test(jti)) throw invalidRefresh('token has no jti claim')
    const outcome = await d.db.transaction(async (tx) => {
      const spent = await d.refreshTokens.spend(tx, jti)
      if (spent.kind === 'reused') {
        await d.audit.record(
          {
            action: 'auth.refresh_reuse',
            outcome: 'failure',
            actor: `user:${spent.userId}`,
            target: `user:${spent.userId}`,
            ip,
            details: { family_id: spent.familyId, revoked_tokens: spent.revoked },
          },
          tx,
        )
      }
      if (spent.kind !== 'spent') return spent
      const user = await d.users.findById(spent.userId, tx)
      if (user === undefined) return { kind: 'invalid' as const }
      return { kind: 'session' as const, session: await this.issue(tx, user, spent.familyId) }
    })
    switch (outcome.kind) {
      case 'session':
        return outcome.session
      case 'reused':
        d.log.warn({ user_id: outcome.userId, family_id: outcome.familyId, ip }, 'refresh token reused: family revoked')
        throw invalidRefresh('refresh token already used; every session of this login is revoked')
      default:
        throw invalidRefresh('refresh token is no longer valid')
    }
  }

  private async issue(tx: Queryable, user: UserRecord, familyId: string): Promise<Session> {
    const d = this.deps
    const claims = {
      user_id: user.id,
      username: user.username,
      email: user.email,
      role: user.role,
      org: user.org,
      org_id: user.org_id,
      sub: `user:${user.id}`,
    }
    const access = d.tokens.sign('access', claims, d.accessTokenTtlS)
    const jti = randomUUID()
    const refresh = d.tokens.sign('refresh', { ...claims, jti }, d.refreshTokenTtlS)
    await d.refreshTokens.issue(tx, { jti, familyId, userId: user.id, expiresAt: new Date(refresh.exp * 1000) })
    return { token: access.token, refresh_token: refresh.token, expires_at: new Date(access.exp * 1000), user }
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
