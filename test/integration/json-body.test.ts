/**
 * JSON routes read any body as JSON whatever its Content-Type (src/json-body.ts): `curl -d`
 * sends form encoding, and the replaced systems' READMEs print exactly that. A body that
 * is not JSON is a 400 naming why; the line-protocol writes and the metrics push keep
 * their own raw parsers.
 */
import jwt from 'jsonwebtoken'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { FAST_PASSWORD_HASHING, freshIp } from '../helpers/api.js'
import { ApiClient } from '../helpers/api.js'
import { TEST_SECRET, startTestApp, type TestApp } from '../helpers/app.js'
import { registerCollector } from '../helpers/collectors.js'
import { RecordingSink } from '../helpers/recording-sink.js'

const ADMIN_PASSWORD = 'admin-password-for-json-body-tests'
const FORM = 'application/x-www-form-urlencoded'

const streamToken = jwt.sign(
  { user: 'john_doe', user_id: '1', org: 'acme_corp', org_id: '2', account_id: '3', type: 'stream' },
  TEST_SECRET,
  { expiresIn: 3600 },
)

interface Answer {
  status: number
  json: any
  text: string
}

describe('JSON bodies whatever the Content-Type', () => {
  let t: TestApp
  let api: ApiClient
  let sink: RecordingSink
  let admin = ''

  beforeAll(async () => {
    sink = new RecordingSink()
    t = await startTestApp({ ...FAST_PASSWORD_HASHING, ADMIN_PASSWORD, MQTT_ENABLED: 'false' }, { sink })
    api = new ApiClient(t.url)
    admin = await login(FORM)
  })
  afterAll(async () => {
    await t?.close()
  })
  beforeEach(() => {
    sink.writes.length = 0
  })

  /** A raw POST: `contentType` undefined sends no Content-Type at all (a byte body gets none from fetch). */
  async function post(path: string, body: string, contentType: string | undefined, token?: string): Promise<Answer> {
    const res = await fetch(`${t.url}${path}`, {
      method: 'POST',
      headers: {
        ...(contentType !== undefined ? { 'content-type': contentType } : {}),
        ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
        'x-forwarded-for': freshIp(),
      },
      body: contentType === undefined ? new TextEncoder().encode(body) : body,
    })
    const text = await res.text()
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    return { status: res.status, json, text }
  }

  async function login(contentType: string | undefined): Promise<string> {
    const res = await post('/api/v1/auth/login', JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }), contentType)
    expect(res.status, res.text).toBe(200)
    expect(typeof res.json.token).toBe('string')
    return res.json.token
  }

  async function deviceCount(): Promise<number> {
    const res = await api.get('/devices?page_size=1', { token: admin })
    expect(res.status, res.text).toBe(200)
    return res.json.total
  }

  it.each([[FORM], ['text/plain'], ['text/plain; charset=utf-8'], ['application/json; charset=utf-8'], ['application/octet-stream'], [undefined]])(
    'POST /api/v1/auth/login takes a JSON body sent as %s',
    async (contentType) => {
      await login(contentType)
    },
  )

  it.each([[FORM], ['text/plain'], [undefined], ['image/png']])('POST /devices takes a JSON body sent as %s', async (contentType) => {
    const res = await post('/devices', '{"type":"test-device"}', contentType, admin)
    expect(res.status, res.text).toBe(200)
    expect(res.json).toMatchObject({ type: 'test-device', mqtt_user: res.json.id })
  })

  it('answers 400 invalid_json naming why for a form body that is not JSON, and stores nothing', async () => {
    const before = await deviceCount()
    const res = await post('/devices', 'a=b', FORM, admin)
    expect(res.status, res.text).toBe(400)
    expect(res.json.error).toBe('invalid_json')
    expect(res.json.message).toMatch(/^the body is not JSON \(sent as application\/x-www-form-urlencoded\): .+/)
    expect(res.json.message).toContain('is not valid JSON')
    expect(Object.keys(res.json).sort()).toEqual(['error', 'message'])
    expect(await deviceCount()).toBe(before)

    const login = await post('/api/v1/auth/login', 'username=admin&password=x', FORM)
    expect(login.status, login.text).toBe(400)
    expect(login.json.error).toBe('invalid_json')
  })

  it('says when the body came without a Content-Type', async () => {
    const res = await post('/devices', '{"type":', undefined, admin)
    expect(res.status, res.text).toBe(400)
    expect(res.json).toMatchObject({ error: 'invalid_json' })
    expect(res.json.message).toMatch(/^the body is not JSON \(sent without a Content-Type\): /)
  })

  it('still refuses prototype poisoning, as Fastify does', async () => {
    const res = await post('/devices', '{"type":"x","__proto__":{"admin":true}}', 'text/plain', admin)
    expect(res.status, res.text).toBe(400)
    expect(res.json.error).toBe('invalid_json')
    expect(res.json.message).toContain('__proto__')
  })

  it.each([['application/json'], [FORM], [undefined]])(
    'an empty body (%s) on a route with a body schema gets the usual 400 naming the body',
    async (contentType) => {
      const res = await post('/devices', '', contentType, admin)
      expect(res.status, res.text).toBe(400)
      expect(res.json.error).toBe('invalid_request')
      expect(res.json.message).toMatch(/^invalid body/)
    },
  )

  it('a route without a body schema takes an empty body, whatever its Content-Type', async () => {
    const made = await post('/devices', '{"type":"rotated"}', FORM, admin)
    expect(made.status, made.text).toBe(200)
    const rotated = await post(`/devices/${made.json.id}/credentials`, '', 'application/json', admin)
    expect(rotated.status, rotated.text).toBe(200)
    expect(rotated.json.id).toBe(made.json.id)
  })

  it('keeps the body limits: the server default, and a route of its own', async () => {
    // Past the JSON routes' limit (HTTP_JSON_MAX_BODY_BYTES, 64 KiB by default) for /devices.
    const big = JSON.stringify({ type: 'x'.repeat(1024 * 1024) })
    const res = await post('/devices', big, FORM, admin)
    expect(res.status, res.text).toBe(413)

    // PUT /api/v1/config/{id} allows 256 KiB.
    const c = await registerCollector(api, { token: admin })
    const put = (body: string) =>
      fetch(`${t.url}/api/v1/config/${c.collector_id}`, {
        method: 'PUT',
        headers: { 'content-type': FORM, authorization: `Bearer ${admin}` },
        body,
      })
    const small = await put(JSON.stringify({ config: { interval_s: 60 } }))
    expect(small.status, await small.text()).toBe(200)
    const tooBig = await put(JSON.stringify({ config: { blob: 'x'.repeat(300 * 1024) } }))
    expect(tooBig.status).toBe(413)
  })

  describe('the ingest routes keep their own parsers', () => {
    it.each([[FORM], ['application/json'], ['text/plain'], [undefined]])(
      'POST /api/v2/write reads line protocol sent as %s',
      async (contentType) => {
        const res = await post('/api/v2/write', 'temperature,location=room1 value=23.5 1700000000000000000', contentType, streamToken)
        expect(res.status, res.text).toBe(204)
        expect(sink.lines).toEqual(['temperature,location=room1,user=john_doe,org=acme_corp value=23.5 1700000000000000000'])
      },
    )

    it('POST /api/v3/write_lp answers a bad line as before, not as JSON', async () => {
      const res = await post('/api/v3/write_lp?db=x', '{"not":"line protocol"}', 'application/json', streamToken)
      expect(res.status, res.text).toBe(400)
      expect(res.json.error).toBe('invalid_line')
    })

    it('POST /api/v1/metrics/push takes JSON sent as anything, and answers its own invalid_json', async () => {
      const c = await registerCollector(api, { token: admin, hostname: 'json-body-host' })
      const body = JSON.stringify({
        collector_id: c.collector_id,
        hostname: 'json-body-host',
        metrics: [{ name: 'pg_stat', fields: { n: 1 }, timestamp: '1700000000000000000' }],
      })
      const ok = await post('/api/v1/metrics/push', body, FORM, c.token)
      expect(ok.status, ok.text).toBe(200)
      expect(ok.json).toMatchObject({ status: 'accepted', metrics_inserted: 1 })
      expect(sink.lines).toEqual([`pg_stat,collector_id=${c.collector_id},hostname=json-body-host n=1 1700000000000000000`])

      const bad = await post('/api/v1/metrics/push', 'a=b', FORM, c.token)
      expect(bad.status, bad.text).toBe(400)
      expect(bad.json).toEqual({ error: 'invalid_json', message: 'the body is not valid JSON' })
    })
  })
})
