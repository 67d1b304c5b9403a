import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { engines, type TestDb } from '../helpers/db.js'
import { RecordingSink } from '../helpers/recording-sink.js'
import { TestClient } from '../helpers/ws-client.js'

const ADMIN_PASSWORD = 'admin-password-for-tests'

// Revoking an API token or deleting a user ends the /time-series sessions they opened:
// at once on the instance that revoked (its periodic check is set far beyond the test's
// patience, so only the immediate check can do it), and within a check period on another
// instance sharing the database.
describe.each(await engines())('revocation of open sessions on $name', (engine) => {
  let testDb: TestDb
  let a: TestApp
  let b: TestApp
  let api: ApiClient
  let admin: string
  const clients: TestClient[] = []

  const createUser = async (username: string) => {
    const res = await api.post('/api/v1/users', {
      token: admin,
      body: { username, password: 'correct horse', email: `${username}@example.com`, role: 'operator', org: 'Acme' },
    })
    expect(res.status, res.text).toBe(201)
    return res.json as { id: string }
  }
  const newToken = async (userId: string) => {
    const res = await api.post('/api/v1/tokens', { token: admin, body: { name: 'revocation test', scopes: ['ingest:write'], user_id: userId } })
    expect(res.status, res.text).toBe(201)
    return res.json as { id: string; token: string }
  }
  const open = async (app: TestApp, token: string) => {
    const c = await TestClient.authenticated(app.wsUrl, token)
    clients.push(c)
    return c
  }
  /** The session still takes frames. */
  const stillOpen = async (c: TestClient, i: number) => {
    c.send(`alive v=${i}i 1700000000000000000`)
    expect(await c.next()).toBe('OK')
    expect(c.closed).toBeUndefined()
  }
  /** Ended as an expired token is: AUTH_EXPIRED, then close 4401. */
  const ended = async (c: TestClient) => {
    expect(await c.next(15_000)).toBe('AUTH_EXPIRED')
    expect((await c.waitClosed()).code).toBe(4401)
  }

  beforeAll(async () => {
    testDb = await engine.create()
    const env = { ...FAST_PASSWORD_HASHING, ADMIN_PASSWORD, BATCH_LINGER_MS: '1' }
    a = await startTestApp({ ...env, TOKEN_REVOCATION_CHECK_MS: '3600000' }, { testDb, sink: new RecordingSink() })
    b = await startTestApp({ ...env, TOKEN_REVOCATION_CHECK_MS: '50' }, { testDb, sink: new RecordingSink() })
    api = new ApiClient(a.url)
    admin = (await api.post('/api/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD } })).json.token
  })
  afterAll(async () => {
    for (const c of clients) c.close()
    await a?.close()
    await b?.close()
    await testDb?.drop()
  })

  it('revoking an API token ends its sessions on this instance at once and on another within a check; other tokens go on', async () => {
    const owner = await createUser('rev-owner')
    const revoked = await newToken(owner.id)
    const kept = await newToken(owner.id)
    const here = await open(a, revoked.token)
    const there = await open(b, revoked.token)
    const other = await open(a, kept.token)
    await stillOpen(here, 1)
    await stillOpen(there, 2)

    expect((await api.delete(`/api/v1/tokens/${revoked.id}`, { token: admin })).status).toBe(204)
    await ended(here)
    await ended(there)
    await stillOpen(other, 3)
    // A new session with the revoked token is refused outright.
    const again = await TestClient.connect(`${a.wsUrl}/time-series`)
    clients.push(again)
    again.send(`$AUTH ${revoked.token}`)
    expect(await again.next()).toBe('AUTH_FAILED: invalid API token')
  })

  it("deleting a user ends the sessions of their API tokens and access tokens; another user's go on", async () => {
    const doomed = await createUser('rev-doomed')
    const survivor = await createUser('rev-survivor')
    const access = (await api.post('/api/v1/auth/login', { body: { username: 'rev-doomed', password: 'correct horse' } })).json.token
    const viaApiToken = await open(a, (await newToken(doomed.id)).token)
    const viaAccess = await open(a, access)
    const viaAccessThere = await open(b, access)
    const untouched = await open(a, (await newToken(survivor.id)).token)

    expect((await api.delete(`/api/v1/users/${doomed.id}`, { token: admin })).status).toBe(204)
    await ended(viaApiToken)
    await ended(viaAccess)
    await ended(viaAccessThere)
    await stillOpen(untouched, 4)
  })

  it('a revoked API token is refused on HTTP writes at once (every request is checked)', async () => {
    const owner = await createUser('rev-http')
    const t = await newToken(owner.id)
    const write = () =>
      fetch(`${a.url}/api/v2/write?bucket=b`, { method: 'POST', headers: { authorization: `Token ${t.token}` }, body: 'm v=1 1' })
    expect((await write()).status).toBe(204)
    expect((await api.delete(`/api/v1/tokens/${t.id}`, { token: admin })).status).toBe(204)
    const res = await write()
    expect(res.status).toBe(401)
    expect(await res.json()).toEqual({ error: 'invalid_token', message: 'invalid API token' })
  })
})
