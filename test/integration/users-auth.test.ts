import { createPublicKey, type JsonWebKey } from 'node:crypto'
import jwt from 'jsonwebtoken'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { HasherBusyError } from '../../src/auth/passwords.js'
import { TEST_SECRET, startTestApp, type TestApp } from '../helpers/app.js'
import { ApiClient, FAST_PASSWORD_HASHING, freshIp } from '../helpers/api.js'
import { engines, type TestDb } from '../helpers/db.js'
import { assertNoSecrets } from '../helpers/secrets.js'

// Users, login, refresh, rate limits and the audit log, on the embedded engine and on
// real Postgres (when reachable; always in CI), each in a fresh database.
describe.each(await engines())('users and login on $name', (engine) => {
  let testDb: TestDb
  let t: TestApp
  let api: ApiClient
  const logs: string[] = []
  let adminPassword: string
  let admin: string

  const login = (username: string, password: string, ip?: string) =>
    api.post('/api/v1/auth/login', { body: { username, password }, ...(ip ? { ip } : {}) })
  const refresh = (refresh_token: string) => api.post('/api/v1/auth/refresh', { body: { refresh_token } })
  const auditActions = async () =>
    (await api.get('/api/v1/audit?page_size=500', { token: admin })).json.data as Array<Record<string, any>>

  async function createUser(body: Record<string, unknown>) {
    const res = await api.post('/api/v1/users', { token: admin, body: { password: 'correct horse', ...body } })
    expect(res.status, res.text).toBe(201)
    return res.json as { id: string; username: string }
  }

  beforeAll(async () => {
    testDb = await engine.create()
    // No ADMIN_PASSWORD: the first admin gets a generated one, logged once at warn.
    t = await startTestApp(
      {
        ...FAST_PASSWORD_HASHING,
        TRUST_PROXY: 'true',
        LOGIN_MAX_FAILURES_PER_USERNAME: '3',
        LOGIN_MAX_FAILURES_PER_IP: '5',
      },
      { testDb, logger: { level: 'warn', stream: { write: (line: string) => logs.push(line) } } },
    )
    api = new ApiClient(t.url)
    const line = logs.map((l) => JSON.parse(l)).find((l) => typeof l.password === 'string')
    adminPassword = line?.password
    expect(line).toMatchObject({ level: 40, username: 'admin' })
    const res = await login('admin', adminPassword)
    expect(res.status, res.text).toBe(200)
    admin = res.json.token
  })
  afterAll(async () => {
    await t?.close()
    await testDb?.drop()
  })

  describe('the first admin', () => {
    it('is created once: a second start on the same database prints no password and keeps the admin', async () => {
      const again: string[] = []
      const t2 = await startTestApp(
        { ...FAST_PASSWORD_HASHING, ADMIN_PASSWORD: 'another-password' },
        { testDb, logger: { level: 'info', stream: { write: (line: string) => again.push(line) } } },
      )
      try {
        expect(again.join('\n')).not.toMatch(/password/i)
        expect((await login('admin', adminPassword)).status).toBe(200)
        expect((await login('admin', 'another-password')).status).toBe(401)
      } finally {
        await t2.close()
      }
    })

    it('belongs to ADMIN_ORG (default "default") with role admin', async () => {
      const me = (jwt.decode(admin) as Record<string, any>).user_id
      const res = await api.get(`/api/v1/users/${me}`, { token: admin })
      expect(res.json).toMatchObject({ username: 'admin', email: 'admin@localhost', role: 'admin', org: 'default', org_id: 'default' })
    })
  })

  describe('POST /api/v1/auth/login', () => {
    it('answers the tokens and the user, with the claims of API.md section 3', async () => {
      const u = await createUser({ username: 'Login.Ok', email: 'ok@example.com', role: 'operator', org: 'Acme Corp', org_id: '456' })
      const before = Math.floor(Date.now() / 1000)
      const res = await login('login.ok', 'correct horse') // usernames are case-insensitive
      expect(res.status, res.text).toBe(200)
      expect(Object.keys(res.json).sort()).toEqual(['expires_at', 'refresh_token', 'token', 'user'])
      expect(res.json.user).toEqual({ id: u.id, username: 'Login.Ok', email: 'ok@example.com', role: 'operator' })
      const access = jwt.decode(res.json.token) as Record<string, any>
      expect(access).toMatchObject({
        user_id: u.id,
        username: 'Login.Ok',
        email: 'ok@example.com',
        role: 'operator',
        org: 'Acme Corp',
        org_id: '456',
        type: 'access',
        sub: `user:${u.id}`,
      })
      expect(access.exp - before).toBeGreaterThanOrEqual(900 - 1)
      expect(access.exp - before).toBeLessThanOrEqual(900 + 1)
      expect(res.json.expires_at).toBe(new Date(access.exp * 1000).toISOString())
      const refreshClaims = jwt.decode(res.json.refresh_token) as Record<string, any>
      expect(refreshClaims).toMatchObject({ user_id: u.id, username: 'Login.Ok', role: 'operator', type: 'refresh', sub: `user:${u.id}` })
      expect(refreshClaims.jti).toMatch(/^[0-9a-f-]{36}$/)
      expect(refreshClaims.exp - before).toBeGreaterThanOrEqual(86_400 - 1)
      expect(refreshClaims.exp - before).toBeLessThanOrEqual(86_400 + 1)

      const shown = await api.get(`/api/v1/users/${u.id}`, { token: admin })
      expect(Date.parse(shown.json.last_login_at)).toBeGreaterThanOrEqual(before * 1000 - 1000)
    })

    it('answers an unknown user and a wrong password with the same 401, and audits both', async () => {
      await createUser({ username: 'login.bad', email: 'bad@example.com' })
      const unknown = await login('nobody.here', 'whatever1')
      const wrong = await login('login.bad', 'wrong password')
      expect(unknown.status).toBe(401)
      expect(wrong.status).toBe(401)
      expect(unknown.json).toEqual({ error: 'invalid_credentials', message: 'invalid username or password' })
      expect(wrong.text).toBe(unknown.text)
      const failures = (await auditActions()).filter((e) => e.action === 'auth.login' && e.outcome === 'failure')
      expect(failures.map((e) => e.details.username)).toEqual(expect.arrayContaining(['nobody.here', 'login.bad']))
      expect(failures[0]).toMatchObject({ actor: null, ip: expect.stringMatching(/^10\./) })
      const successes = (await auditActions()).filter((e) => e.action === 'auth.login' && e.outcome === 'success')
      expect(successes.length).toBeGreaterThan(0)
    })

    it('refuses a body without username or password, naming the field', async () => {
      const res = await api.post('/api/v1/auth/login', { body: { username: 'admin' } })
      expect(res.status).toBe(400)
      expect(res.json.message).toContain('password')
    })

    it('answers 429 with Retry-After once a username had too many failures, even with the right password', async () => {
      await createUser({ username: 'limited', email: 'l@example.com' })
      for (let i = 0; i < 3; i++) expect((await login('limited', 'nope-nope')).status).toBe(401)
      const res = await login('LIMITED', 'correct horse')
      expect(res.status).toBe(429)
      expect(res.json.error).toBe('too_many_attempts')
      const retry = Number(res.headers.get('retry-after'))
      expect(retry).toBeGreaterThan(0)
      expect(retry).toBeLessThanOrEqual(900)
    })

    it('answers 429 once an address had too many failures, whatever the username', async () => {
      const ip = freshIp()
      for (let i = 0; i < 5; i++) expect((await login(`spray-${i}`, 'nope-nope', ip)).status).toBe(401)
      const res = await login('admin', adminPassword, ip)
      expect(res.status).toBe(429)
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0)
      // Another address is not affected.
      expect((await login('admin', adminPassword)).status).toBe(200)
    })
    it('lets at most the limit of parallel wrong guesses reach the hasher: the rest answer 429', async () => {
      await createUser({ username: 'parallel', email: 'p@example.com' })
      const verify = vi.spyOn(t.app.passwordHasher, 'verify')
      try {
        // 20 guesses at once, each from its own address: only the username limit (3) applies.
        const answers = await Promise.all(Array.from({ length: 20 }, () => login('parallel', 'wrong guess')))
        const statuses = answers.map((a) => a.status).sort()
        expect(statuses).toEqual([...Array(3).fill(401), ...Array(17).fill(429)])
        expect(verify).toHaveBeenCalledTimes(3)
      } finally {
        verify.mockRestore()
      }
    })

    it('answers 503 with Retry-After when the hasher queue is full, without counting a failure', async () => {
      await createUser({ username: 'busy', email: 'busy@example.com' })
      const verify = vi.spyOn(t.app.passwordHasher, 'verify').mockRejectedValue(new HasherBusyError())
      try {
        for (let i = 0; i < 4; i++) {
          const res = await login('busy', 'correct horse')
          expect(res.status).toBe(503)
          expect(res.headers.get('retry-after')).toBe('1')
          expect(res.json).toEqual({ error: 'busy', message: 'too many password checks in progress; retry shortly' })
        }
      } finally {
        verify.mockRestore()
      }
      // Four refusals, more than the limit of 3: none counted as a failure.
      expect((await login('busy', 'correct horse')).status).toBe(200)
    })
  })

  describe("the gateway's own tokens", () => {
    it('are ES256 with a kid published at /.well-known/jwks.json and iss, and verify with that key alone', async () => {
      const session = (await login('admin', adminPassword)).json
      const jwks = await api.get('/.well-known/jwks.json')
      expect(jwks.status).toBe(200)
      for (const token of [session.token, session.refresh_token]) {
        const { header, payload } = jwt.decode(token, { complete: true }) as jwt.Jwt & { payload: jwt.JwtPayload }
        expect(header).toMatchObject({ alg: 'ES256', kid: expect.any(String) })
        expect(payload).toMatchObject({ iss: 'matt-collector' })
        const jwk = (jwks.json.keys as Array<{ kid: string }>).find((k) => k.kid === header.kid)
        expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' })
        const key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' })
        expect(jwt.verify(token, key, { algorithms: ['ES256'], issuer: 'matt-collector' })).toMatchObject({ user_id: payload.user_id })
      }
    })

    it('an admin access token minted with JWT_SECRET (the backend could) is refused with 401', async () => {
      const me = jwt.decode(admin) as Record<string, unknown>
      const { iat: _iat, exp: _exp, ...claims } = me
      const forged = jwt.sign(claims, TEST_SECRET, { expiresIn: 300 })
      const res = await api.get('/api/v1/users', { token: forged })
      expect(res.status).toBe(401)
      expect(res.json).toEqual({ error: 'invalid_token', message: "wrong signing key: access tokens are signed by the gateway's own key" })
      // The same claims, signed by the gateway, are an admin.
      expect((await api.get('/api/v1/users', { token: admin })).status).toBe(200)
    })

    it('a refresh token minted with JWT_SECRET is refused', async () => {
      const session = (await login('admin', adminPassword)).json
      const { iat: _iat, exp: _exp, ...claims } = jwt.decode(session.refresh_token) as Record<string, unknown>
      const res = await refresh(jwt.sign(claims, TEST_SECRET, { expiresIn: 300 }))
      expect(res.status).toBe(401)
      expect(res.json).toEqual({ error: 'invalid_token', message: "wrong signing key: refresh tokens are signed by the gateway's own key" })
    })
  })

  describe('POST /api/v1/auth/refresh', () => {
    it('rotates: a new pair each time, each refresh token single use', async () => {
      await createUser({ username: 'rotate', email: 'r@example.com', role: 'viewer' })
      const first = (await login('rotate', 'correct horse')).json
      const second = await refresh(first.refresh_token)
      expect(second.status, second.text).toBe(200)
      expect(Object.keys(second.json).sort()).toEqual(['expires_at', 'refresh_token', 'token', 'user'])
      expect(second.json.refresh_token).not.toBe(first.refresh_token)
      expect((jwt.decode(second.json.token) as Record<string, any>).type).toBe('access')
      const third = await refresh(second.json.refresh_token)
      expect(third.status).toBe(200)
      expect(third.json.user.username).toBe('rotate')
    })

    it('revokes the whole family when a spent refresh token is used again, and audits it', async () => {
      await createUser({ username: 'reuse', email: 'x@example.com' })
      const stolen = (await login('reuse', 'correct horse')).json.refresh_token
      const other = (await login('reuse', 'correct horse')).json.refresh_token // another login: another family
      const next = (await refresh(stolen)).json.refresh_token
      const replay = await refresh(stolen)
      expect(replay.status).toBe(401)
      expect(replay.json.error).toBe('invalid_token')
      // The token the legitimate holder got is revoked with its family...
      expect((await refresh(next)).status).toBe(401)
      // ...but the other login's family lives on.
      expect((await refresh(other)).status).toBe(200)
      const reuse = (await auditActions()).find((e) => e.action === 'auth.refresh_reuse')
      expect(reuse).toMatchObject({ outcome: 'failure', details: { revoked_tokens: 1 } })
    })

    it('refuses other token types and forged tokens', async () => {
      const session = (await login('admin', adminPassword)).json
      expect((await refresh(session.token)).status).toBe(401) // an access token
      const forged = jwt.sign({ ...(jwt.decode(session.refresh_token) as object) }, 'x'.repeat(40))
      expect((await refresh(forged)).status).toBe(401)
      expect((await refresh('not a jwt')).status).toBe(401)
    })
  })

  describe('/api/v1/users (admin)', () => {
    it('creates, lists, shows, changes and deletes users', async () => {
      const created = await api.post('/api/v1/users', {
        token: admin,
        body: { username: 'crud', password: 'correct horse', email: 'crud@example.com', role: 'operator' },
      })
      expect(created.status).toBe(201)
      expect(Object.keys(created.json).sort()).toEqual(
        ['created_at', 'email', 'id', 'last_login_at', 'org', 'org_id', 'role', 'username'],
      )
      // The creating admin's org by default.
      expect(created.json).toMatchObject({ role: 'operator', org: 'default', org_id: 'default', last_login_at: null })
      const id = created.json.id

      const dup = await api.post('/api/v1/users', {
        token: admin,
        body: { username: 'CRUD', password: 'correct horse', email: 'c@example.com' },
      })
      expect(dup.status).toBe(409)

      const page = await api.get('/api/v1/users?page=1&page_size=2', { token: admin })
      expect(page.json).toMatchObject({ page: 1, page_size: 2 })
      expect(page.json.data).toHaveLength(2)
      expect(page.json.total).toBeGreaterThanOrEqual(3)

      const session = (await login('crud', 'correct horse')).json
      const patched = await api.patch(`/api/v1/users/${id}`, {
        token: admin,
        body: { role: 'viewer', email: 'new@example.com', password: 'a new password' },
      })
      expect(patched.status).toBe(200)
      expect(patched.json).toMatchObject({ role: 'viewer', email: 'new@example.com' })
      // A new password ends the sessions of the old one.
      expect((await refresh(session.refresh_token)).status).toBe(401)
      expect((await login('crud', 'correct horse')).status).toBe(401)
      expect((await login('crud', 'a new password')).status).toBe(200)

      expect((await api.delete(`/api/v1/users/${id}`, { token: admin })).status).toBe(204)
      expect((await api.get(`/api/v1/users/${id}`, { token: admin })).status).toBe(404)
      expect((await api.delete(`/api/v1/users/${id}`, { token: admin })).status).toBe(404)
      expect((await login('crud', 'a new password')).status).toBe(401)
      const actions = (await auditActions()).map((e) => e.action)
      expect(actions).toEqual(expect.arrayContaining(['user.create', 'user.update', 'user.delete', 'user.bootstrap']))
    })

    it('keeps at least one admin', async () => {
      const me = (jwt.decode(admin) as Record<string, any>).user_id
      expect((await api.patch(`/api/v1/users/${me}`, { token: admin, body: { role: 'viewer' } })).status).toBe(409)
      const del = await api.delete(`/api/v1/users/${me}`, { token: admin })
      expect(del.status).toBe(409)
      expect(del.json.error).toBe('last_admin')
    })

    it('refuses non-admins (403), missing or wrong tokens (401) and bad input (400, naming the field)', async () => {
      await createUser({ username: 'op', email: 'op@example.com', role: 'operator' })
      const op = (await login('op', 'correct horse')).json
      expect((await api.get('/api/v1/users', { token: op.token })).status).toBe(403)
      expect((await api.get('/api/v1/audit', { token: op.token })).status).toBe(403)
      expect((await api.get('/api/v1/users')).status).toBe(401)
      expect((await api.get('/api/v1/users', { token: op.refresh_token })).status).toBe(401)
      const bad = await api.post('/api/v1/users', { token: admin, body: { username: 'x y', password: 'correct horse', email: 'a@b' } })
      expect(bad.status).toBe(400)
      expect(bad.json.message).toContain('username')
      const short = await api.post('/api/v1/users', { token: admin, body: { username: 'xy', password: 'short', email: 'a@b' } })
      expect(short.json.message).toContain('password')
      expect((await api.get('/api/v1/users/not-a-uuid', { token: admin })).status).toBe(400)
      expect((await api.patch(`/api/v1/users/${op.user.id}`, { token: admin, body: {} })).status).toBe(400)
    })
  })

  describe('GET /api/v1/audit (admin)', () => {
    it('pages newest first in the shape every list uses', async () => {
      const first = await api.get('/api/v1/audit?page=1&page_size=3', { token: admin })
      expect(first.status).toBe(200)
      expect(Object.keys(first.json).sort()).toEqual(['data', 'page', 'page_size', 'total'])
      expect(first.json.data).toHaveLength(3)
      const second = await api.get('/api/v1/audit?page=2&page_size=3', { token: admin })
      expect(second.json.data[0].id).not.toBe(first.json.data[0].id)
      const times = [...first.json.data, ...second.json.data].map((e: { created_at: string }) => Date.parse(e.created_at))
      expect([...times].sort((a, b) => b - a)).toEqual(times)
      expect(first.json.data[0].created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
      expect((await api.get('/api/v1/audit?page=0', { token: admin })).status).toBe(400)
    })
  })

  it('never answers a password, a hash or a secret (every answer of this file)', async () => {
    await assertNoSecrets(testDb.db, api.answers)
  })
})
