import { createHmac } from 'node:crypto'
import jwt from 'jsonwebtoken'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TEST_SECRET, startTestApp, type TestApp } from '../helpers/app.js'
import { embeddedEngine } from '../helpers/db.js'
import { RecordingSink } from '../helpers/recording-sink.js'
import { waitFor } from '../helpers/wait.js'
import { TestClient } from '../helpers/ws-client.js'

const body = { user: 'John Doe', user_id: '123', org: 'Acme Corp', org_id: '456', account_id: '789' }
const backendToken = (claims: Record<string, unknown> = { userId: '123', email: 'john@example.com' }, key = TEST_SECRET) =>
  jwt.sign(claims, key, { expiresIn: 300 })

describe('POST /mock-auth', () => {
  let t: TestApp
  beforeAll(async () => {
    t = await startTestApp({}, { sink: new RecordingSink() })
  })
  afterAll(async () => {
    await t.close()
  })

  const post = (payload: unknown, token?: string, raw = false) =>
    fetch(`${t.url}/mock-auth`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
      },
      body: raw ? (payload as string) : JSON.stringify(payload),
    })

  it('mints a 24 h stream token carrying the body claims', async () => {
    const res = await post(body, backendToken())
    expect(res.status).toBe(200)
    const json = (await res.json()) as { token: string }
    expect(Object.keys(json)).toEqual(['token'])
    const claims = jwt.verify(json.token, TEST_SECRET, { algorithms: ['HS256'] }) as Record<string, unknown>
    expect(claims).toMatchObject({ ...body, type: 'stream' })
    const ttl = (claims.exp as number) - Math.floor(Date.now() / 1000)
    expect(ttl).toBeGreaterThan(86_390)
    expect(ttl).toBeLessThanOrEqual(86_400)
  })

  it.each([
    ['no token', undefined, 'unauthorized', 'missing bearer token'],
    ['a foreign secret', backendToken(undefined, 'f'.repeat(40)), 'invalid_token', 'invalid signature'],
    ['an expired token', jwt.sign({ userId: '123', exp: Math.floor(Date.now() / 1000) - 120 }, TEST_SECRET), 'invalid_token', 'token expired'],
    ['alg none', `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ userId: '123', exp: Math.floor(Date.now() / 1000) + 60 })).toString('base64url')}.`, 'invalid_token', 'jwt signature is required'],
    ['a token without exp', (() => {
      const h = Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url')
      const p = Buffer.from('{"userId":"123"}').toString('base64url')
      return `${h}.${p}.${createHmac('sha256', TEST_SECRET).update(`${h}.${p}`).digest('base64url')}`
    })(), 'invalid_token', 'token has no exp claim'],
    ['a stream token', jwt.sign({ userId: '123', type: 'stream' }, TEST_SECRET, { expiresIn: 60 }), 'invalid_token', 'wrong token type: expected a backend token'],
    ['garbage', 'not-a-jwt', 'invalid_token', 'malformed token'],
  ])('answers 401 for %s, saying why', async (_what, token, error, message) => {
    const res = await post(body, token)
    expect(res.status).toBe(401)
    expect(await res.json()).toEqual({ error, message })
  })

  it("answers 401 for a token signed with the gateway's own key (a user access token is no backend token)", async () => {
    const access = t.app.tokens.sign('access', { user_id: '123', username: 'u', role: 'admin', org: 'o' }, 60).token
    const res = await post(body, access)
    expect(res.status).toBe(401)
    expect(await res.json()).toEqual({ error: 'invalid_token', message: 'algorithm not allowed' })
  })

  it('answers 403 when user_id differs from the backend token userId', async () => {
    const res = await post({ ...body, user_id: '999' }, backendToken())
    expect(res.status).toBe(403)
    expect(await res.json()).toEqual({ error: 'user_mismatch', message: 'user_id does not match the authenticated user' })
  })

  it.each(['user', 'user_id', 'org', 'org_id', 'account_id'])('answers 400 naming %s when it is missing', async (field) => {
    const { [field as keyof typeof body]: _omitted, ...rest } = body
    const res = await post(rest, backendToken())
    expect(res.status).toBe(400)
    const json = (await res.json()) as { error: string; message: string }
    expect(json.error).toBe('invalid_request')
    expect(json.message).toContain(`"${field}"`)
  })

  it('answers 400 naming the field when it has the wrong type or is empty', async () => {
    const res = await post({ ...body, org: 42 }, backendToken())
    expect(res.status).toBe(400)
    expect(((await res.json()) as { message: string }).message).toContain('"org"')
    const empty = await post({ ...body, user: '' }, backendToken())
    expect(empty.status).toBe(400)
    expect(((await empty.json()) as { message: string }).message).toContain('"user"')
  })

  it('answers 400 for a body that is not JSON', async () => {
    const res = await post('{not json', backendToken(), true)
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: string }).error).not.toBe('internal_error')
  })
})

describe('health endpoints', () => {
  it('GET /health answers exactly {"status":"ok"}, /healthz 200, /readyz per component', async () => {
    const sink = new RecordingSink()
    const t = await startTestApp({}, { sink })
    try {
      const health = await fetch(`${t.url}/health`)
      expect(health.status).toBe(200)
      expect(await health.text()).toBe('{"status":"ok"}')
      expect((await fetch(`${t.url}/healthz`)).status).toBe(200)
      const ready = await fetch(`${t.url}/readyz`)
      expect(ready.status).toBe(200)
      const json = (await ready.json()) as { status: string; components: Record<string, { status: string; mode?: string }> }
      expect(json.status).toBe('ok')
      expect(json.components.database?.status).toBe('up')
      expect(json.components.sink?.status).toBe('up')
      expect(json.components.bus).toMatchObject({ status: 'up', mode: 'in-process' })
      expect(json.components.broker).toMatchObject({ status: 'up' })

      sink.failWith = new (await import('../../src/ingest/sinks/sink.js')).SinkError('down', true, 503)
      const degraded = await fetch(`${t.url}/readyz`)
      expect(degraded.status).toBe(503)
      const dj = (await degraded.json()) as { status: string; components: Record<string, { status: string; error?: string }> }
      expect(dj.status).toBe('degraded')
      expect(dj.components.sink).toMatchObject({ status: 'down', reason: 'unreachable' })
      expect(dj.components.database?.status).toBe('up')
    } finally {
      await t.close()
    }
  })

  it('/metrics counts connections, frames and lines as they happen', async () => {
    const t = await startTestApp({ BATCH_LINGER_MS: '1' }, { sink: new RecordingSink() })
    const metric = async (name: string, labels = '') => {
      const text = await (await fetch(`${t.url}/metrics`)).text()
      const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `))
      return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1))
    }
    try {
      expect(await metric('mc_lines_accepted_total')).toBe(0)
      const stream = jwt.sign({ user: 'u', user_id: '1', org: 'o', org_id: '2', account_id: '3', type: 'stream' }, TEST_SECRET, {
        expiresIn: 3600,
      })
      const c = await TestClient.authenticated(t.wsUrl, stream)
      expect(await metric('mc_ws_connections', '{endpoint="time-series"}')).toBe(1)
      c.send('cpu v=1 1700000000000000000\ncpu v=2 1700000000000000001')
      c.send('mem v=3 1700000000000000002')
      c.send('ok v=4 1700000000000000003\nnot line protocol\nok v=5 1700000000000000004\n')
      expect(await c.next()).toBe('OK')
      expect(await c.next()).toBe('OK')
      expect(await c.next()).toMatch(/^ERR line 2: /)
      expect(await metric('mc_lines_accepted_total')).toBe(3)
      expect(await metric('mc_frames_total', '{result="ok"}')).toBe(2)
      expect(await metric('mc_frames_total', '{result="error"}')).toBe(1)
      // Every line of the refused frame (a trailing newline ends the last line, it adds none).
      expect(await metric('mc_lines_rejected_total')).toBe(3)
      c.close()
      await waitFor(() => metric('mc_ws_connections', '{endpoint="time-series"}'), (v) => v === 0, 'the connection gauge back at 0')
      // Counters only grow: a second scrape shows the same totals.
      expect(await metric('mc_lines_accepted_total')).toBe(3)
    } finally {
      await t.close()
    }
  })

  it('/readyz reports the database down when it is closed', async () => {
    const testDb = await embeddedEngine.create()
    const t = await startTestApp({}, { sink: new RecordingSink(), testDb })
    try {
      await t.app.db.close()
      const res = await fetch(`${t.url}/readyz`)
      expect(res.status).toBe(503)
      expect(((await res.json()) as { components: { database: { status: string } } }).components.database.status).toBe('down')
    } finally {
      await t.close()
      await testDb.drop()
    }
  })
})
