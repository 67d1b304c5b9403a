import { createHash, createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CollectorsRepo } from '../../src/collectors/repo.js'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { COLLECTOR_TEST_ENV, registerCollector, signatureHeaders, TEST_REGISTRATION_SECRET, type RegisteredCollector } from '../helpers/collectors.js'
import { engines, type TestDb } from '../helpers/db.js'
import { waitFor } from '../helpers/wait.js'

const ADMIN_PASSWORD = 'admin-password-for-tests'
const TOKEN_TTL_S = 600
const MAX_SKEW_S = 300
const STATUS_CACHE_MS = 400
const ENV = {
  ...FAST_PASSWORD_HASHING,
  ...COLLECTOR_TEST_ENV,
  ADMIN_PASSWORD,
  MQTT_ENABLED: 'false',
  COLLECTOR_TOKEN_TTL_S: String(TOKEN_TTL_S),
  COLLECTOR_SIGNATURE_MAX_SKEW_S: String(MAX_SKEW_S),
  COLLECTOR_STATUS_CACHE_MS: String(STATUS_CACHE_MS),
  COLLECTOR_STATS_FLUSH_MS: '50',
}
const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000'
// Past the default 30 s clock skew: a token the gateway must call expired.
const EXPIRED_TTL_S = -120

const nowS = () => Math.floor(Date.now() / 1000)
async function login(api: ApiClient, username: string, password: string): Promise<string> {
  const res = await api.post('/api/v1/auth/login', { body: { username, password } })
  expect(res.status, res.text).toBe(200)
  return res.json.token
}

describe.each(await engines())('/api/v1/collectors on $name', (engine) => {
  let testDb: TestDb
  let t: TestApp
  let api: ApiClient
  const tokens = { admin: '', operator: '', viewer: '' }
  const users: Record<string, string> = {}

  const stored = async (id: string): Promise<Record<string, any>> => {
    const [row] = await testDb.db.query<Record<string, any>>('SELECT * FROM collectors WHERE id = $1', [id])
    expect(row, `collector ${id} stored`).toBeDefined()
    return row as Record<string, any>
  }
  const auditOf = async (id: string, action: string) => {
    const res = await api.get('/api/v1/audit?page_size=500', { token: tokens.admin })
    expect(res.status).toBe(200)
    return (res.json.data as Array<Record<string, any>>).filter((e) => e.target === `collector:${id}` && e.action === action)
  }
  const renew = (id: string, opts: { token?: string; headers?: Record<string, string> }) =>
    api.post(`/api/v1/collectors/${id}/token`, opts)
  const expiredToken = (c: RegisteredCollector, hostname = 'h') =>
    t.app.tokens.sign('collector', { collector_id: c.collector_id, hostname, sub: `collector:${c.collector_id}` }, EXPIRED_TTL_S).token

  beforeAll(async () => {
    testDb = await engine.create()
    t = await startTestApp(ENV, { testDb })
    api = new ApiClient(t.url)
    tokens.admin = await login(api, 'admin', ADMIN_PASSWORD)
    for (const role of ['operator', 'viewer'] as const) {
      const res = await api.post('/api/v1/users', {
        token: tokens.admin,
        body: { username: `coll-${role}`, password: 'correct horse', email: `${role}@example.com`, role },
      })
      expect(res.status, res.text).toBe(201)
      users[role] = res.json.id
      tokens[role] = await login(api, `coll-${role}`, 'correct horse')
    }
  })
  afterAll(async () => {
    await t?.close()
    await testDb?.drop()
  })

  describe('registration', () => {
    it('with the secret: a certificate for the collector id, its private key, a token; the thumbprint stored', async () => {
      const before = Date.now()
      const res = await api.post('/api/v1/collectors/register', {
        headers: { 'x-registration-secret': TEST_REGISTRATION_SECRET },
        body: { name: 'primary db', hostname: 'db-1.example.com' },
      })
      expect(res.status, res.text).toBe(201)
      expect(res.headers.get('cache-control')).toBe('no-store')
      const c = res.json as RegisteredCollector
      expect(Object.keys(c).sort()).toEqual(['certificate', 'collector_id', 'expires_at', 'private_key', 'token'])

      const x509 = new X509Certificate(c.certificate)
      expect(x509.subject).toBe(`CN=${c.collector_id}`)
      expect(x509.issuer).toBe(`CN=${c.collector_id}`)
      expect(x509.verify(x509.publicKey)).toBe(true)
      expect(x509.checkPrivateKey(createPrivateKey(c.private_key))).toBe(true)

      const row = await stored(c.collector_id)
      expect(row.thumbprint).toBe(createHash('sha256').update(x509.raw).digest('hex'))
      expect(row.thumbprint).toBe(x509.fingerprint256.replaceAll(':', '').toLowerCase())
      expect(row.certificate).toBe(c.certificate)
      expect(row.registered_by).toBe('secret')
      expect(row.name).toBe('primary db')
      expect(row.hostname).toBe('db-1.example.com')

      // The token is a collector token of this collector, for COLLECTOR_TOKEN_TTL_S.
      const { claims, exp } = t.app.tokens.verifyType(c.token, ['collector'])
      expect(claims).toMatchObject({ collector_id: c.collector_id, hostname: 'db-1.example.com', type: 'collector', sub: `collector:${c.collector_id}` })
      expect(new Date(c.expires_at).getTime()).toBe(exp * 1000)
      expect(exp * 1000).toBeGreaterThanOrEqual(before + (TOKEN_TTL_S - 2) * 1000)

      const configs = await testDb.db.query<Record<string, any>>('SELECT version, config, created_by FROM collector_configs WHERE collector_id = $1', [c.collector_id])
      expect(configs).toEqual([{ version: 1, config: {}, created_by: null }])

      const audited = await auditOf(c.collector_id, 'collector.register')
      expect(audited).toHaveLength(1)
      expect(audited[0]).toMatchObject({ outcome: 'success', actor: null, details: { via: 'registration_secret', hostname: 'db-1.example.com' } })
    })

    it('never stores or audits the private key', async () => {
      const c = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET })
      const keyBody = c.private_key.split('\n')[1] as string
      const rows = await testDb.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM collectors c WHERE c::text LIKE '%PRIVATE KEY%' OR c::text LIKE $1`,
        [`%${keyBody}%`],
      )
      expect(rows[0]?.n).toBe(0)
      const audit = await testDb.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log a WHERE a::text LIKE '%PRIVATE KEY%'`)
      expect(audit[0]?.n).toBe(0)
    })

    it('with an operator token, recorded as that user', async () => {
      const c = await registerCollector(api, { token: tokens.operator, hostname: '10.0.0.7' })
      expect((await stored(c.collector_id)).registered_by).toBe(`user:${users.operator}`)
      const audited = await auditOf(c.collector_id, 'collector.register')
      expect(audited[0]).toMatchObject({ outcome: 'success', actor: `user:${users.operator}`, details: { via: 'token' } })
    })

    it('refuses neither (401), a viewer (403), a wrong secret (401, audited, even beside an operator token)', async () => {
      const count = async () => (await testDb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM collectors'))[0]?.n
      const before = await count()
      const body = { name: 'x', hostname: 'refused.example.com' }
      const none = await api.post('/api/v1/collectors/register', { body })
      expect(none.status).toBe(401)
      const viewer = await api.post('/api/v1/collectors/register', { token: tokens.viewer, body })
      expect(viewer.status).toBe(403)
      const failuresBefore = await testDb.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM audit_log WHERE action = 'collector.register' AND outcome = 'failure'`,
      )
      for (const token of [undefined, tokens.viewer, tokens.operator]) {
        const wrong = await api.post('/api/v1/collectors/register', {
          ...(token ? { token } : {}),
          headers: { 'x-registration-secret': `${TEST_REGISTRATION_SECRET}x` },
          body,
        })
        expect(wrong.status).toBe(401)
        expect(wrong.json.error).toBe('invalid_secret')
      }
      const failuresAfter = await testDb.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM audit_log WHERE action = 'collector.register' AND outcome = 'failure'`,
      )
      expect((failuresAfter[0]?.n ?? 0) - (failuresBefore[0]?.n ?? 0)).toBe(3)
      expect(await count()).toBe(before)
    })

    it('validates name and hostname (400 naming the field)', async () => {
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ hostname: 'a.example.com' }, 'name'],
        [{ name: '', hostname: 'a.example.com' }, 'name'],
        [{ name: 'x'.repeat(256), hostname: 'a.example.com' }, 'name'],
        [{ name: 'tab\there', hostname: 'a.example.com' }, 'name'],
        [{ name: 'x' }, 'hostname'],
        [{ name: 'x', hostname: 'not a host' }, 'hostname'],
        [{ name: 'x', hostname: '-leading.example.com' }, 'hostname'],
        [{ name: 'x', hostname: 'a..b' }, 'hostname'],
        [{ name: 'x', hostname: `${'a'.repeat(64)}.example.com` }, 'hostname'],
      ]
      for (const [body, field] of cases) {
        const res = await api.post('/api/v1/collectors/register', { token: tokens.operator, body })
        expect(res.status, JSON.stringify(body)).toBe(400)
        expect(res.json.message, JSON.stringify(body)).toContain(`"${field}"`)
      }
      for (const hostname of ['db_1', 'pg-replica-02.eu-west.internal', '192.168.1.20', '2001:db8::1', 'localhost']) {
        await registerCollector(api, { token: tokens.operator, hostname })
      }
    })

    it('makes a new collector for a second registration of the same hostname', async () => {
      const a = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET, hostname: 'twice.example.com' })
      const b = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET, hostname: 'twice.example.com' })
      expect(a.collector_id).not.toBe(b.collector_id)
      expect((await api.get(`/api/v1/collectors/${a.collector_id}`, { token: tokens.viewer })).status).toBe(200)
      expect((await api.get(`/api/v1/collectors/${b.collector_id}`, { token: tokens.viewer })).status).toBe(200)
    })

    it('refuses the header when no secret is configured, still takes an operator token', async () => {
      const other = await startTestApp({ ...ENV, COLLECTOR_REGISTRATION_SECRET: '' }, { testDb })
      try {
        const otherApi = new ApiClient(other.url)
        const res = await otherApi.post('/api/v1/collectors/register', {
          headers: { 'x-registration-secret': TEST_REGISTRATION_SECRET },
          body: { name: 'x', hostname: 'off.example.com' },
        })
        expect(res.status).toBe(401)
        expect(res.json).toEqual({ error: 'registration_secret_off', message: 'registration by secret is off (COLLECTOR_REGISTRATION_SECRET is not set)' })
        await registerCollector(otherApi, { token: tokens.operator })
      } finally {
        await other.close()
      }
    })
  })

  describe('token renewal', () => {
    it('with the current token: a new token of the same collector', async () => {
      const c = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET, hostname: 'renew.example.com' })
      const res = await renew(c.collector_id, { token: c.token })
      expect(res.status, res.text).toBe(200)
      expect(Object.keys(res.json).sort()).toEqual(['expires_at', 'token'])
      const { claims, exp } = t.app.tokens.verifyType(res.json.token, ['collector'])
      expect(claims).toMatchObject({ collector_id: c.collector_id, hostname: 'renew.example.com' })
      expect(new Date(res.json.expires_at).getTime()).toBe(exp * 1000)
      // The new token renews too.
      expect((await renew(c.collector_id, { token: res.json.token })).status).toBe(200)
    })

    it("refuses another collector's token (403), a user token, an expired or no token (401)", async () => {
      const c = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET })
      const other = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET })
      expect((await renew(c.collector_id, { token: other.token })).status).toBe(403)
      expect((await renew(c.collector_id, { token: tokens.admin })).status).toBe(401)
      const expired = await renew(c.collector_id, { token: expiredToken(c) })
      expect(expired.status).toBe(401)
      expect(expired.json).toEqual({ error: 'invalid_token', message: 'token expired' })
      expect((await renew(c.collector_id, {})).status).toBe(401)
      expect((await renew(UNKNOWN_ID, {})).status).toBe(401)
    })

    it('with a valid signature once the token expired; audited as collector.renew', async () => {
      const c = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET, hostname: 'sig.example.com' })
      const headers = signatureHeaders(c)
      // The expired token beside the proof: the proof decides.
      const res = await renew(c.collector_id, { token: expiredToken(c), headers })
      expect(res.status, res.text).toBe(200)
      expect(res.headers.get('cache-control')).toBe('no-store')
      const { claims } = t.app.tokens.verifyType(res.json.token, ['collector'])
      expect(claims).toMatchObject({ collector_id: c.collector_id, hostname: 'sig.example.com' })

      const audited = await auditOf(c.collector_id, 'collector.renew')
      expect(audited).toHaveLength(1)
      expect(audited[0]).toMatchObject({ outcome: 'success', actor: `collector:${c.collector_id}`, details: { via: 'signature' } })

      // The signature is remembered until its timestamp can no longer be accepted.
      const hash = createHash('sha256').update(Buffer.from(headers['x-collector-signature'] as string, 'base64')).digest('hex')
      const [row] = await testDb.db.query<{ expires_at: Date }>('SELECT expires_at FROM collector_signatures WHERE signature_hash = $1', [hash])
      expect(row?.expires_at.getTime()).toBe((Number(headers['x-collector-timestamp']) + MAX_SKEW_S) * 1000)
    })

    it('refuses a replayed signature, also audited', async () => {
      const c = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET })
      const headers = signatureHeaders(c)
      expect((await renew(c.collector_id, { headers })).status).toBe(200)
      const again = await renew(c.collector_id, { headers })
      expect(again.status).toBe(401)
      expect(again.json).toEqual({ error: 'invalid_signature', message: 'signature already used' })
      // Spelled without base64 padding: the same bytes, the same use.
      const unpadded = { ...headers, 'x-collector-signature': (headers['x-collector-signature'] as string).replace(/=+$/, '') }
      expect((await renew(c.collector_id, { headers: unpadded })).status).toBe(401)
      const audited = await auditOf(c.collector_id, 'collector.renew')
      expect(audited.filter((e) => e.outcome === 'failure' && e.details.reason === 'signature already used')).toHaveLength(2)
      expect(audited.filter((e) => e.outcome === 'success')).toHaveLength(1)
    })

    it('forgets used signatures once they could no longer be accepted (plus one skew window)', async () => {
      const c = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET })
      const insert = (hash: string, expiresAt: Date) =>
        testDb.db.query('INSERT INTO collector_signatures (signature_hash, collector_id, expires_at) VALUES ($1, $2, $3)', [hash, c.collector_id, expiresAt])
      const stale = `stale-${c.collector_id}`
      const recent = `recent-${c.collector_id}`
      await insert(stale, new Date(Date.now() - 3 * MAX_SKEW_S * 1000))
      await insert(recent, new Date(Date.now() - (MAX_SKEW_S / 2) * 1000))
      expect(await new CollectorsRepo(testDb.db).sweepSignatures(MAX_SKEW_S)).toBeGreaterThanOrEqual(1)
      const left = await testDb.db.query<{ signature_hash: string }>('SELECT signature_hash FROM collector_signatures WHERE collector_id = $1', [c.collector_id])
      expect(left.map((r) => r.signature_hash)).toEqual([recent])
    })

    it('refuses a timestamp older than the skew, and a signature by another key', async () => {
      const c = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET })
      const old = await renew(c.collector_id, { headers: signatureHeaders(c, { timestampS: nowS() - MAX_SKEW_S - 5 }) })
      expect(old.status).toBe(401)
      expect(old.json.message).toContain(`more than ${MAX_SKEW_S} s`)
      const other = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET })
      const byOther = await renew(c.collector_id, { headers: signatureHeaders(c, { privateKeyPem: other.private_key }) })
      expect(byOther.json).toEqual({ error: 'invalid_signature', message: 'invalid signature' })
      const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
      expect((await renew(c.collector_id, { headers: signatureHeaders(c, { privateKeyPem: stranger }) })).status).toBe(401)
      // Another collector's own valid proof does not renew this one.
      expect((await renew(c.collector_id, { headers: signatureHeaders({ ...other, collector_id: c.collector_id }) })).status).toBe(401)
      expect((await renew(c.collector_id, { headers: { 'x-collector-timestamp': String(nowS()) } })).status).toBe(401)
      expect((await renew(UNKNOWN_ID, { headers: signatureHeaders({ collector_id: UNKNOWN_ID, private_key: c.private_key }) })).status).toBe(401)
    })
  })

  describe('deletion', () => {
    it("stops the collector's token and signature at once, here and on the directory and guard", async () => {
      const c = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET, name: 'doomed' })
      expect(await t.app.collectors.status(c.collector_id)).toBe('active')
      expect((await api.get(`/api/v1/config/${c.collector_id}`, { token: c.token })).status).toBe(200)
      expect((await api.delete(`/api/v1/collectors/${c.collector_id}`, { token: tokens.viewer })).status).toBe(403)

      const del = await api.delete(`/api/v1/collectors/${c.collector_id}`, { token: tokens.operator })
      expect(del.status, del.text).toBe(204)
      expect(await t.app.collectors.status(c.collector_id)).toBe('deleted')

      const byToken = await renew(c.collector_id, { token: c.token })
      expect(byToken.json).toEqual({ error: 'invalid_token', message: 'collector deleted' })
      const bySignature = await renew(c.collector_id, { headers: signatureHeaders(c) })
      expect(bySignature.json).toEqual({ error: 'invalid_signature', message: 'collector deleted' })
      // requireActiveCollector, through a route that uses it.
      const config = await api.get(`/api/v1/config/${c.collector_id}`, { token: c.token })
      expect(config.status).toBe(401)
      expect(config.json.message).toBe('collector deleted')

      expect((await api.get(`/api/v1/collectors/${c.collector_id}`, { token: tokens.viewer })).status).toBe(404)
      expect((await api.delete(`/api/v1/collectors/${c.collector_id}`, { token: tokens.operator })).status).toBe(404)
      expect((await stored(c.collector_id)).deleted_at).toBeInstanceOf(Date)
      const audited = await auditOf(c.collector_id, 'collector.delete')
      expect(audited).toHaveLength(1)
      expect(audited[0]).toMatchObject({ outcome: 'success', actor: `user:${users.operator}`, details: { name: 'doomed' } })
    })

    it('reaches another instance within COLLECTOR_STATUS_CACHE_MS', async () => {
      const other = await startTestApp(ENV, { testDb })
      try {
        const c = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET })
        expect(await other.app.collectors.status(c.collector_id)).toBe('active')
        expect((await api.delete(`/api/v1/collectors/${c.collector_id}`, { token: tokens.admin })).status).toBe(204)
        await waitFor(() => other.app.collectors.status(c.collector_id), (s) => s === 'deleted', 'the other instance to see the deletion')
        const otherApi = new ApiClient(other.url)
        expect((await otherApi.post(`/api/v1/collectors/${c.collector_id}/token`, { token: c.token })).status).toBe(401)
      } finally {
        await other.close()
      }
    })

    it('answers 404 for an unknown id, whatever its form', async () => {
      for (const id of [UNKNOWN_ID, 'not-a-uuid', UNKNOWN_ID.toUpperCase()]) {
        expect((await api.get(`/api/v1/collectors/${id}`, { token: tokens.viewer })).status, id).toBe(404)
        expect((await api.delete(`/api/v1/collectors/${id}`, { token: tokens.admin })).status, id).toBe(404)
      }
      expect(await t.app.collectors.status('not-a-uuid')).toBe('unknown')
      expect(await t.app.collectors.status(UNKNOWN_ID)).toBe('unknown')
    })
  })

  describe('list and counts', () => {
    it('pages newest first with the total, for any user token; not without one', async () => {
      const made: string[] = []
      for (let i = 0; i < 3; i++) made.push((await registerCollector(api, { secret: TEST_REGISTRATION_SECRET, name: `page ${i}` })).collector_id)
      const gone = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET })
      expect((await api.delete(`/api/v1/collectors/${gone.collector_id}`, { token: tokens.admin })).status).toBe(204)

      const total = (await testDb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM collectors WHERE deleted_at IS NULL'))[0]?.n
      const first = await api.get('/api/v1/collectors?page=1&page_size=2', { token: tokens.viewer })
      expect(first.status).toBe(200)
      expect(first.json).toMatchObject({ page: 1, page_size: 2, total })
      expect(first.json.data.map((c: any) => c.collector_id)).toEqual([made[2], made[1]])
      const second = await api.get('/api/v1/collectors?page=2&page_size=2', { token: tokens.viewer })
      expect(second.json.data[0].collector_id).toBe(made[0])

      const item = first.json.data[0]
      expect(Object.keys(item).sort()).toEqual(['collector_id', 'created_at', 'hostname', 'last_push_at', 'metrics_count', 'name', 'status'])
      expect(item).toMatchObject({ name: 'page 2', status: 'active', last_push_at: null, metrics_count: 0 })
      const all = await api.get('/api/v1/collectors?page_size=500', { token: tokens.viewer })
      expect(all.json.data.map((c: any) => c.collector_id)).not.toContain(gone.collector_id)
      expect(all.json.data).toHaveLength(total as number)

      expect((await api.get('/api/v1/collectors')).status).toBe(401)
      expect((await api.get('/api/v1/collectors', { token: made[0] as string })).status).toBe(401)
      expect((await api.get('/api/v1/collectors?page_size=0', { token: tokens.viewer })).status).toBe(400)
    })

    it('adds up pushes in last_push_at and metrics_count, written coalesced', async () => {
      const c = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET })
      const earlier = new Date(Date.now() - 60_000)
      const later = new Date(Date.now() - 1_000)
      t.app.collectors.recordPush(c.collector_id, 5, later)
      t.app.collectors.recordPush(c.collector_id, 7, earlier)
      const seen = await waitFor(
        async () => (await api.get(`/api/v1/collectors/${c.collector_id}`, { token: tokens.viewer })).json,
        (v) => v.metrics_count === 12,
        'the push counts to be written',
      )
      expect(seen.last_push_at).toBe(later.toISOString())
      // last_push_at never moves back.
      t.app.collectors.recordPush(c.collector_id, 1, earlier)
      const after = await waitFor(
        async () => (await api.get(`/api/v1/collectors/${c.collector_id}`, { token: tokens.viewer })).json,
        (v) => v.metrics_count === 13,
        'the third push to be written',
      )
      expect(after.last_push_at).toBe(later.toISOString())
    })

    it('writes pending counts on close', async () => {
      const other = await startTestApp({ ...ENV, COLLECTOR_STATS_FLUSH_MS: String(3_600_000) }, { testDb })
      const c = await registerCollector(api, { secret: TEST_REGISTRATION_SECRET })
      const at = new Date(Date.now() - 5_000)
      other.app.collectors.recordPush(c.collector_id, 42, at)
      expect(Number((await stored(c.collector_id)).metrics_count)).toBe(0)
      await other.close()
      const row = await stored(c.collector_id)
      expect(Number(row.metrics_count)).toBe(42)
      expect((row.last_push_at as Date).toISOString()).toBe(at.toISOString())
    })
  })
})
