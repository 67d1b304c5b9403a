import { createPublicKey, type JsonWebKey } from 'node:crypto'
import jwt from 'jsonwebtoken'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { engines, type TestDb } from '../helpers/db.js'
import { RecordingSink } from '../helpers/recording-sink.js'
import { TestClient } from '../helpers/ws-client.js'

const ADMIN_PASSWORD = 'admin-password-for-tests'

interface Jwk {
  kid: string
  kty: string
  crv: string
  alg: string
}

const kidOf = (token: string) => (jwt.decode(token, { complete: true }) as jwt.Jwt).header.kid as string

// The gateway's signing key: made once at first start and shared by every instance on the
// database, published at /.well-known/jwks.json, rotatable by an admin.
describe.each(await engines())('signing keys and JWKS on $name', (engine) => {
  let testDb: TestDb
  let a: TestApp
  let b: TestApp
  let apiA: ApiClient
  let apiB: ApiClient

  const login = async (api: ApiClient, username = 'admin', password = ADMIN_PASSWORD) => {
    const res = await api.post('/api/v1/auth/login', { body: { username, password } })
    expect(res.status, res.text).toBe(200)
    return res.json as { token: string; refresh_token: string }
  }
  const jwks = async (api: ApiClient) => {
    const res = await api.get('/.well-known/jwks.json')
    expect(res.status).toBe(200)
    return (res.json as { keys: Jwk[] }).keys
  }

  beforeAll(async () => {
    testDb = await engine.create()
    const env = { ...FAST_PASSWORD_HASHING, ADMIN_PASSWORD, BATCH_LINGER_MS: '1' }
    // Two instances started at once on an empty database: one key between them.
    ;[a, b] = await Promise.all([
      startTestApp(env, { testDb, sink: new RecordingSink() }),
      startTestApp({ ...env, PATH_PREFIX: '/gw' }, { testDb, sink: new RecordingSink() }),
    ])
    apiA = new ApiClient(a.url)
    apiB = new ApiClient(b.url)
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
    await testDb?.drop()
  })

  it('first start makes exactly one key, shared by every instance; PATH_PREFIX applies to the well-known URL', async () => {
    const [keysA, keysB] = [await jwks(apiA), await jwks(apiB)]
    expect(keysA).toHaveLength(1)
    expect(keysB).toEqual(keysA)
    expect(keysA[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) })
    expect(Object.keys(keysA[0] as object).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'])
    expect(b.url.endsWith('/gw')).toBe(true)
    expect((await fetch(`${new URL(b.url).origin}/.well-known/jwks.json`)).status).toBe(404)
    // A token of one instance is good on the other.
    const session = await login(apiA)
    expect(kidOf(session.token)).toBe(keysA[0]?.kid)
    expect((await apiB.get('/api/v1/users', { token: session.token })).status).toBe(200)
  })

  it('rotation (admin only, audited): new tokens get the new kid, old tokens stay valid, both keys are published', async () => {
    const before = await login(apiA)
    const oldKid = kidOf(before.token)
    const operator = await apiA.post('/api/v1/users', {
      token: before.token,
      body: { username: 'rotator', password: 'correct horse', email: 'r@example.com', role: 'operator' },
    })
    expect(operator.status).toBe(201)
    const notAdmin = await apiA.post('/api/v1/auth/keys/rotate', { token: (await login(apiA, 'rotator', 'correct horse')).token })
    expect(notAdmin.status).toBe(403)
    expect((await jwks(apiA)).map((k) => k.kid)).toEqual([oldKid])

    const rotated = await apiA.post('/api/v1/auth/keys/rotate', { token: before.token })
    expect(rotated.status, rotated.text).toBe(200)
    expect(rotated.json).toEqual({ kid: expect.any(String), retired: [oldKid], dropped: [] })
    const newKid = rotated.json.kid as string
    expect(newKid).not.toBe(oldKid)

    const after = await login(apiA)
    expect(kidOf(after.token)).toBe(newKid)
    expect(kidOf(after.refresh_token)).toBe(newKid)
    // The token signed before the rotation still works, on both instances.
    expect((await apiA.get('/api/v1/users', { token: before.token })).status).toBe(200)
    expect((await apiB.get('/api/v1/users', { token: before.token })).status).toBe(200)
    // B verifies a token of the key it did not have (reloading on the unknown kid), over
    // HTTP and on /time-series.
    expect((await apiB.get('/api/v1/users', { token: after.token })).status).toBe(200)
    const client = await TestClient.authenticated(b.wsUrl, (await login(apiA)).token)
    client.close()
    expect((await apiB.post('/api/v1/auth/refresh', { body: { refresh_token: after.refresh_token } })).status).toBe(200)

    for (const api of [apiA, apiB]) {
      const keys = await jwks(api)
      expect(keys.map((k) => k.kid).sort()).toEqual([oldKid, newKid].sort())
      // Each published key verifies the tokens it signed.
      for (const token of [before.token, after.token]) {
        const jwk = keys.find((k) => k.kid === kidOf(token)) as unknown as JsonWebKey
        expect(() => jwt.verify(token, createPublicKey({ key: jwk, format: 'jwk' }), { algorithms: ['ES256'] })).not.toThrow()
      }
    }

    const audit = await apiA.get('/api/v1/audit?page_size=100', { token: after.token })
    expect(audit.json.data.find((e: { action: string }) => e.action === 'signing_key.rotate')).toMatchObject({
      outcome: 'success',
      target: `signing_key:${newKid}`,
      details: { retired: [oldKid], dropped: [] },
    })
  })

  it('a token of a key the gateway never had is refused', async () => {
    const { privateKey } = (await import('node:crypto')).generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const forged = jwt.sign({ type: 'access', iss: 'matt-collector', user_id: 'x', username: 'x', role: 'admin' }, privateKey, {
      algorithm: 'ES256',
      keyid: 'no-such-kid',
      expiresIn: 60,
    })
    const res = await apiA.get('/api/v1/users', { token: forged })
    expect(res.status).toBe(401)
    expect(res.json).toEqual({ error: 'invalid_token', message: 'unknown signing key' })
  })
})
