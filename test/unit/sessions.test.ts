import { describe, expect, it, vi } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit-log.js'
import { LoginLimiter } from '../../src/auth/login-limiter.js'
import { HasherBusyError } from '../../src/auth/passwords.js'
import type { Queryable } from '../../src/db/index.js'
import type { RefreshTokens } from '../../src/users/refresh-tokens.js'
import type { UserRecord } from '../../src/users/repo.js'
import { BootstrapError, UsersService } from '../../src/users/service.js'
import { LoginThrottledError, SessionService } from '../../src/users/sessions.js'
import { MemoryKeys, testTokenService } from '../helpers/keys.js'

const alice: UserRecord = {
  id: '11111111-1111-4111-8111-111111111111',
  username: 'alice',
  email: 'a@example.com',
  org: 'acme',
  org_id: '1',
  password_hash: 'stored-hash',
  role: 'viewer',
  created_at: new Date(),
  updated_at: new Date(),
  last_login_at: null,
}

const tx: Queryable = { query: async () => [] }
const tokens = testTokenService('s'.repeat(40), new MemoryKeys(), 60)

function sessionService() {
  const verify = vi.fn(async (stored: string | undefined, password: string) => stored === 'stored-hash' && password === 'right')
  const audit: AuditEvent[] = []
  const service = new SessionService({
    db: { transaction: (fn) => fn(tx) },
    users: {
      findByUsername: async (u) => (u.toLowerCase() === 'alice' ? alice : undefined),
      findById: async () => alice,
      touchLogin: async () => {},
      update: async () => alice,
    },
    refreshTokens: { issue: async () => {}, pruneExpired: async () => {} } as unknown as RefreshTokens,
    hasher: { verify, needsRehash: () => false, hash: async () => 'h' },
    tokens,
    audit: { record: async (e) => void audit.push(e) },
    limiter: new LoginLimiter({ windowS: 60, maxFailuresPerUsername: 3, maxFailuresPerIp: 100 }),
    accessTokenTtlS: 900,
    refreshTokenTtlS: 86_400,
    log: { warn: () => {} },
  })
  return { service, verify, audit }
}

describe('SessionService.login', () => {
  it('does the same work for an unknown user as for a wrong password, and answers the same', async () => {
    const { service, verify, audit } = sessionService()
    const unknown = await service.login('bob', 'right', '10.0.0.1').catch((e: unknown) => e)
    const wrong = await service.login('alice', 'wrong', '10.0.0.2').catch((e: unknown) => e)
    // One hash verification each: against a dummy for the unknown user.
    expect(verify.mock.calls).toEqual([
      [undefined, 'right'],
      ['stored-hash', 'wrong'],
    ])
    expect(unknown).toMatchObject({ statusCode: 401, code: 'invalid_credentials' })
    expect(wrong).toMatchObject({ statusCode: 401, code: 'invalid_credentials', message: (unknown as Error).message })
    expect(audit.map((e) => [e.action, e.outcome, e.details?.username])).toEqual([
      ['auth.login', 'failure', 'bob'],
      ['auth.login', 'failure', 'alice'],
    ])
  })

  it('throttles before looking the user up, once the username failed too often', async () => {
    const { service, verify } = sessionService()
    for (let i = 0; i < 3; i++) await service.login('alice', 'wrong', '10.0.0.1').catch(() => {})
    verify.mockClear()
    const err = await service.login('ALICE', 'right', '10.0.0.2').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(LoginThrottledError)
    expect((err as LoginThrottledError).retryAfterS).toBe(60)
    expect(verify).not.toHaveBeenCalled()
  })

  it('issues an access token whose expiry is expires_at', async () => {
    const { service } = sessionService()
    const s = await service.login('alice', 'right', '10.0.0.1')
    const claims = tokens.verifyType(s.token, ['access'])
    expect(claims.exp * 1000).toBe(s.expires_at.getTime())
    expect(claims.claims).toMatchObject({ type: 'access', user_id: alice.id, iss: 'matt-collector' })
  })

  it('lets at most the limit of parallel guesses reach the hasher (the attempt is reserved first)', async () => {
    const { service, verify } = sessionService()
    // 20 guesses at once, from 20 addresses: the username limit is 3.
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => service.login('alice', 'wrong', `10.2.0.${i}`).catch((e: unknown) => e)),
    )
    expect(verify).toHaveBeenCalledTimes(3)
    expect(answers.filter((e) => (e as { code?: string }).code === 'invalid_credentials')).toHaveLength(3)
    expect(answers.filter((e) => e instanceof LoginThrottledError)).toHaveLength(17)
  })

  it('a check the hasher refused (queue full) answers 503 and does not count as a failure', async () => {
    const { service, verify, audit } = sessionService()
    verify.mockImplementation(async () => {
      throw new HasherBusyError()
    })
    for (let i = 0; i < 5; i++) {
      await expect(service.login('alice', 'right', '10.0.0.1')).rejects.toMatchObject({ statusCode: 503, code: 'busy' })
    }
    expect(audit).toEqual([])
    verify.mockImplementation(async (stored, password) => stored === 'stored-hash' && password === 'right')
    // Five refusals, yet the limit of 3 failures is untouched.
    expect((await service.login('alice', 'right', '10.0.0.1')).user.id).toBe(alice.id)
  })
})

describe('UsersService.bootstrap', () => {
  function usersService(existing: number) {
    const inserted: unknown[] = []
    const repo = {
      count: async () => existing + inserted.length,
      insert: async (u: UserRecord) => {
        inserted.push(u)
        return { ...u, created_at: new Date(), updated_at: new Date(), last_login_at: null }
      },
    }
    const hash = vi.fn(async (p: string) => `hash(${p})`)
    const service = new UsersService({
      db: { transaction: (fn) => fn(tx) },
      users: repo as never,
      refreshTokens: { revokeUser: async () => {} },
      hasher: { hash },
      audit: { record: async () => {} },
    })
    return { service, inserted, hash }
  }
  const admin = { username: 'admin', email: 'admin@localhost', org: 'default' }

  it('does nothing (and hashes nothing) when a user exists', async () => {
    const { service, hash } = usersService(1)
    expect(await service.bootstrap({ ...admin, password: undefined }, { production: true })).toEqual({ created: false })
    expect(hash).not.toHaveBeenCalled()
  })

  it('creates the admin in ADMIN_ORG with the configured password', async () => {
    const { service, inserted } = usersService(0)
    const r = await service.bootstrap({ ...admin, password: 'configured-pw' }, { production: true })
    expect(r).toMatchObject({ created: true, generatedPassword: undefined })
    expect(inserted).toEqual([
      expect.objectContaining({ username: 'admin', role: 'admin', org: 'default', org_id: 'default', password_hash: 'hash(configured-pw)' }),
    ])
  })

  it('generates a password in development, and refuses to in production', async () => {
    const dev = await usersService(0).service.bootstrap({ ...admin, password: undefined }, { production: false })
    expect(dev.created && dev.generatedPassword).toMatch(/^[A-Za-z0-9_-]{24}$/)
    await expect(usersService(0).service.bootstrap({ ...admin, password: undefined }, { production: true })).rejects.toThrow(
      BootstrapError,
    )
    await expect(usersService(0).service.bootstrap({ ...admin, password: undefined }, { production: true })).rejects.toThrow(
      /ADMIN_PASSWORD is required/,
    )
  })
})
