import jwt from 'jsonwebtoken'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TEST_SECRET, startTestApp, type TestApp } from '../helpers/app.js'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { engines, type TestDb } from '../helpers/db.js'
import { RecordingSink } from '../helpers/recording-sink.js'
import { assertNoSecrets } from '../helpers/secrets.js'
import { TestClient } from '../helpers/ws-client.js'

const ADMIN_PASSWORD = 'admin-password-for-tests'

// API tokens and user tokens on /time-series, on both engines.
describe.each(await engines())('API tokens and user tokens on $name', (engine) => {
  let testDb: TestDb
  let t: TestApp
  let api: ApiClient
  let sink: RecordingSink
  let admin: string
  let writer: { id: string; username: string }

  const newToken = async (scopes: string[], user_id?: string) => {
    const res = await api.post('/api/v1/tokens', { token: admin, body: { name: `t-${scopes.join('+')}`, scopes, ...(user_id ? { user_id } : {}) } })
    expect(res.status, res.text).toBe(201)
    return res.json as { id: string; token: string; scopes: string[]; last_used_at: string | null }
  }

  /** Opens /time-series, sends `$AUTH <token>`, answers the reply (and the client). */
  async function authWith(token: string): Promise<{ reply: string; client: TestClient }> {
    const client = await TestClient.connect(`${t.wsUrl}/time-series`)
    client.send(`$AUTH ${token}`)
    return { reply: await client.next(), client }
  }

  beforeAll(async () => {
    testDb = await engine.create()
    sink = new RecordingSink()
    t = await startTestApp({ ...FAST_PASSWORD_HASHING, ADMIN_PASSWORD, BATCH_LINGER_MS: '1' }, { testDb, sink })
    api = new ApiClient(t.url)
    admin = (await api.post('/api/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD } })).json.token
    const res = await api.post('/api/v1/users', {
      token: admin,
      body: { username: 'john_doe', password: 'correct horse', email: 'john@example.com', role: 'operator', org: 'Acme Corp', org_id: '456' },
    })
    expect(res.status, res.text).toBe(201)
    writer = res.json
  })
  afterAll(async () => {
    await t?.close()
    await testDb?.drop()
  })

  describe('/api/v1/tokens (admin)', () => {
    it('creates an mc_ token shown once, lists it without the token, and revokes it', async () => {
      const created = await newToken(['ingest:write', 'devices:write'], writer.id)
      expect(created.token).toMatch(/^mc_[A-Za-z0-9_-]{43}$/)
      expect(created).toMatchObject({ user_id: writer.id, scopes: ['ingest:write', 'devices:write'], last_used_at: null })
      expect(created.token.startsWith((created as unknown as { token_prefix: string }).token_prefix)).toBe(true)

      const list = await api.get('/api/v1/tokens?page_size=100', { token: admin })
      expect(list.status).toBe(200)
      expect(Object.keys(list.json).sort()).toEqual(['data', 'page', 'page_size', 'total'])
      const shown = list.json.data.find((x: { id: string }) => x.id === created.id)
      expect(Object.keys(shown).sort()).toEqual(['created_at', 'id', 'last_used_at', 'name', 'scopes', 'token_prefix', 'user_id'])
      expect(list.text).not.toContain(created.token)

      expect((await api.delete(`/api/v1/tokens/${created.id}`, { token: admin })).status).toBe(204)
      expect((await api.delete(`/api/v1/tokens/${created.id}`, { token: admin })).status).toBe(404)
      const { reply, client } = await authWith(created.token)
      expect(reply).toMatch(/^AUTH_FAILED: invalid API token/)
      expect((await client.waitClosed()).code).toBe(4401)

      const audit = (await api.get('/api/v1/audit?page_size=500', { token: admin })).json.data as Array<Record<string, any>>
      const about = audit.filter((e) => e.target === `api_token:${created.id}`).map((e) => e.action)
      expect(about.sort()).toEqual(['api_token.create', 'api_token.revoke'])
    })

    it('refuses unknown scopes, unknown owners, non-admins and API tokens themselves', async () => {
      expect((await api.post('/api/v1/tokens', { token: admin, body: { name: 'x', scopes: ['root'] } })).status).toBe(400)
      expect((await api.post('/api/v1/tokens', { token: admin, body: { name: 'x', scopes: [] } })).status).toBe(400)
      const ghost = await api.post('/api/v1/tokens', {
        token: admin,
        body: { name: 'x', scopes: ['ingest:write'], user_id: '00000000-0000-4000-8000-000000000000' },
      })
      expect(ghost.status).toBe(404)
      const op = (await api.post('/api/v1/auth/login', { body: { username: 'john_doe', password: 'correct horse' } })).json.token
      expect((await api.get('/api/v1/tokens', { token: op })).status).toBe(403)
      // An admin's API token acts within its scopes only: the admin API is not one of them.
      const adminsToken = (await newToken(['ingest:write', 'devices:write', 'channels:publish'])).token
      const refused = await api.get('/api/v1/tokens', { token: adminsToken })
      expect(refused.status).toBe(403)
      expect(refused.json.error).toBe('insufficient_scope')
    })

    it('records when a token was last used', async () => {
      const created = await newToken(['ingest:write'], writer.id)
      const { reply, client } = await authWith(created.token)
      expect(reply).toBe('AUTH_SUCCESS')
      client.close()
      // Written after the answer, without holding it up.
      await expect
        .poll(async () => {
          const list = await api.get('/api/v1/tokens?page_size=100', { token: admin })
          return list.json.data.find((x: { id: string }) => x.id === created.id)?.last_used_at
        })
        .toMatch(/^\d{4}-\d\d-\d\dT.*Z$/)
    })
  })

  describe('/time-series with user credentials', () => {
    it('takes a user access token: lines tagged with the username and the user org', async () => {
      const login = await api.post('/api/v1/auth/login', { body: { username: 'john_doe', password: 'correct horse' } })
      const { reply, client } = await authWith(login.json.token)
      expect(reply).toBe('AUTH_SUCCESS')
      client.send('cpu,host=a,user=mallory usage=1 1700000000000000000')
      expect(await client.next()).toBe('OK')
      expect(sink.lines).toContain('cpu,host=a,user=john_doe,org=Acme\\ Corp usage=1 1700000000000000000')
      client.close()
    })

    it('takes an API token with ingest:write: lines tagged with its owner', async () => {
      const { token } = await newToken(['ingest:write'], writer.id)
      const { reply, client } = await authWith(token)
      expect(reply).toBe('AUTH_SUCCESS')
      client.send('mem,host=b free=2 1700000000000000001')
      expect(await client.next()).toBe('OK')
      expect(sink.lines).toContain('mem,host=b,user=john_doe,org=Acme\\ Corp free=2 1700000000000000001')
      client.close()
    })

    it('refuses an API token without ingest:write with AUTH_FAILED and 4401', async () => {
      const { token } = await newToken(['channels:publish', 'devices:write'], writer.id)
      const { reply, client } = await authWith(token)
      expect(reply).toBe('AUTH_FAILED: API token lacks the ingest:write scope')
      expect((await client.waitClosed()).code).toBe(4401)
    })

    it.each([
      [
        'a refresh token',
        async () => (await api.post('/api/v1/auth/login', { body: { username: 'john_doe', password: 'correct horse' } })).json.refresh_token,
        'wrong token type: expected stream or access',
      ],
      [
        'a collector token made with JWT_SECRET',
        async () => jwt.sign({ collector_id: 'c1', hostname: 'h', type: 'collector' }, TEST_SECRET, { expiresIn: 60 }),
        "wrong signing key: collector tokens are signed by the gateway's own key",
      ],
      [
        "an access token made with JWT_SECRET, with the writer's claims",
        async () => {
          const login = await api.post('/api/v1/auth/login', { body: { username: 'john_doe', password: 'correct horse' } })
          const { iat: _iat, exp: _exp, ...claims } = jwt.decode(login.json.token) as Record<string, unknown>
          return jwt.sign(claims, TEST_SECRET, { expiresIn: 60 })
        },
        "wrong signing key: access tokens are signed by the gateway's own key",
      ],
      ['an unknown API token', async () => `mc_${'A'.repeat(43)}`, 'invalid API token'],
    ])('refuses %s with AUTH_FAILED and 4401', async (_what, make, why) => {
      const { reply, client } = await authWith(await make())
      expect(reply).toBe(`AUTH_FAILED: ${why}`)
      expect((await client.waitClosed()).code).toBe(4401)
    })

    it('still takes stream tokens, and renews a session from a stream token to an access token', async () => {
      const stream = jwt.sign(
        { user: 'svc', user_id: '1', org: 'o', org_id: '1', account_id: '1', type: 'stream' },
        TEST_SECRET,
        { expiresIn: 60 },
      )
      const { reply, client } = await authWith(stream)
      expect(reply).toBe('AUTH_SUCCESS')
      const access = (await api.post('/api/v1/auth/login', { body: { username: 'john_doe', password: 'correct horse' } })).json.token
      client.send(`$AUTH ${access}`)
      client.send('renewed v=1 1700000000000000002')
      expect(await client.next()).toBe('AUTH_SUCCESS')
      expect(await client.next()).toBe('OK')
      expect(sink.lines).toContain('renewed,user=john_doe,org=Acme\\ Corp v=1 1700000000000000002')
      client.close()
    })
  })

  it('never answers a password, a hash or a secret (every answer of this file)', async () => {
    // Tokens are shown once by design; everything else must be free of stored secrets.
    await assertNoSecrets(testDb.db, api.answers)
  })
})
