import { connect } from 'node:net'
import jwt from 'jsonwebtoken'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TEST_SECRET, startTestApp, type TestApp } from '../helpers/app.js'
import { RecordingSink } from '../helpers/recording-sink.js'

const CSP =
  "default-src 'self';script-src 'self';style-src 'self';img-src 'self' data:;font-src 'self' data:;connect-src 'self';" +
  "frame-ancestors 'none';base-uri 'self';form-action 'self';object-src 'none';script-src-attr 'none'"

const streamToken = jwt.sign(
  { user: 'john_doe', user_id: '1', org: 'acme_corp', org_id: '2', account_id: '3', type: 'stream' },
  TEST_SECRET,
  { expiresIn: 3600 },
)

describe('security headers', () => {
  let t: TestApp
  beforeAll(async () => {
    t = await startTestApp({}, { sink: new RecordingSink() })
  })
  afterAll(async () => {
    await t?.close()
  })

  it.each([
    ['a JSON answer', '/health', 200],
    ['an error answer', '/api/v1/users', 401],
    ['the 404 of no route', '/no/such/route', 404],
  ])('are on %s', async (_what, path, status) => {
    const res = await fetch(`${t.url}${path}`)
    expect(res.status).toBe(status)
    const h = res.headers
    expect(h.get('content-security-policy')).toBe(CSP)
    expect(h.get('x-content-type-options')).toBe('nosniff')
    expect(h.get('x-frame-options')).toBe('DENY')
    expect(h.get('referrer-policy')).toBe('no-referrer')
    expect(h.get('cross-origin-opener-policy')).toBe('same-origin')
    expect(h.get('cross-origin-resource-policy')).toBe('same-origin')
    // Honoured by browsers over HTTPS only (behind Caddy); no includeSubDomains.
    expect(h.get('strict-transport-security')).toBe('max-age=31536000')
    expect(h.get('x-powered-by')).toBeNull()
  })

  it('allow on /docs exactly what Swagger UI needs beyond them: its one inline style, by hash', async () => {
    const res = await fetch(`${t.url}/docs`)
    const csp = res.headers.get('content-security-policy') ?? ''
    expect(csp).toMatch(/style-src 'self' 'sha256-[A-Za-z0-9+/=]+';/)
    expect(csp.replace(/ 'sha256-[A-Za-z0-9+/=]+'/, '')).toBe(CSP)
    expect(csp).not.toContain('unsafe')
  })

  it('are left off the ingest answers, which machines read', async () => {
    const ok = await fetch(`${t.url}/api/v2/write`, {
      method: 'POST',
      headers: { authorization: `Token ${streamToken}` },
      body: 'm v=1 1700000000000000000',
    })
    expect(ok.status).toBe(204)
    expect(ok.headers.get('content-security-policy')).toBeNull()
    expect(ok.headers.get('strict-transport-security')).toBeNull()
    const refused = await fetch(`${t.url}/api/v1/metrics/push`, { method: 'POST', body: '{}' })
    expect(refused.status).toBe(401)
    expect(refused.headers.get('content-security-policy')).toBeNull()
  })
})

describe('request body limits', () => {
  let t: TestApp
  beforeAll(async () => {
    t = await startTestApp({ HTTP_JSON_MAX_BODY_BYTES: '2048' }, { sink: new RecordingSink() })
  })
  afterAll(async () => {
    await t?.close()
  })

  const post = (path: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${t.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })

  it('answer an oversize JSON body 413 naming the limit', async () => {
    const big = JSON.stringify({ username: 'admin', password: 'x'.repeat(4096) })
    const res = await post('/api/v1/auth/login', big)
    expect(res.status).toBe(413)
    expect(await res.json()).toEqual({ error: 'body_too_large', message: 'a request body may be at most 2048 bytes' })
    // Just under the limit the body is read and judged on its merits.
    const small = await post('/api/v1/auth/login', JSON.stringify({ username: 'nobody', password: 'x'.repeat(1000) }))
    expect(small.status).toBe(401)
  })

  it('keep the routes that have limits of their own', async () => {
    // Line protocol: HTTP_WRITE_MAX_BODY_BYTES (10 MiB), far above the JSON limit.
    const lines = Array.from({ length: 2000 }, (_, i) => `m,host=h${i} v=${i} 1700000000000000000`).join('\n')
    expect(lines.length).toBeGreaterThan(10 * 2048)
    const res = await fetch(`${t.url}/api/v2/write`, { method: 'POST', headers: { authorization: `Token ${streamToken}` }, body: lines })
    expect(res.status, await res.text()).toBe(204)
  })
})

describe('server timeouts', () => {
  let t: TestApp
  beforeAll(async () => {
    t = await startTestApp({ HTTP_HEADERS_TIMEOUT_MS: '300', HTTP_REQUEST_TIMEOUT_MS: '600', HTTP_TIMEOUT_CHECK_INTERVAL_MS: '50' })
  })
  afterAll(async () => {
    await t?.close()
  })

  const port = () => Number(new URL(t.url).port)

  it('are what the configuration says', () => {
    expect(t.app.server.headersTimeout).toBe(300)
    expect(t.app.server.requestTimeout).toBe(600)
    expect(t.app.server.keepAliveTimeout).toBe(72_000)
  })

  it('cut off a client that sends its headers slower than HTTP_HEADERS_TIMEOUT_MS', async () => {
    const socket = connect(port(), '127.0.0.1')
    let answer = ''
    socket.on('data', (d) => (answer += d.toString('latin1')))
    const started = Date.now()
    socket.write('GET /health HTTP/1.1\r\nHost: x\r\n')
    // A header line every 20 ms, never the blank line that ends them: the socket is never
    // idle, only slow (Slowloris).
    const trickle = setInterval(() => socket.write(`X-Slow-${Date.now()}: 1\r\n`), 20)
    const closedAfterMs = await new Promise<number>((resolve) => {
      socket.once('close', () => resolve(Date.now() - started))
    })
    clearInterval(trickle)
    expect(answer).toMatch(/^HTTP\/1\.1 408 /)
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'request_timeout' })
    expect(closedAfterMs).toBeGreaterThanOrEqual(300)
  })

  it.each([
    ['headers over 16 KiB', `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(17 * 1024)}\r\n\r\n`, 431, 'headers_too_large'],
    ['bytes that are no HTTP', 'HELLO THERE\r\n\r\n', 400, 'bad_request'],
  ])('answer %s before any route in the API error shape, and close', async (_what, request, status, error) => {
    const socket = connect(port(), '127.0.0.1')
    let answer = ''
    socket.on('data', (d) => (answer += d.toString('latin1')))
    socket.write(request)
    await new Promise((resolve) => socket.once('close', resolve))
    expect(answer).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `))
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))
    expect(body).toEqual({ error, message: expect.any(String) })
  })

  it('leave a client that sends its headers in time alone', async () => {
    const socket = connect(port(), '127.0.0.1')
    let answer = ''
    socket.on('data', (d) => (answer += d.toString('latin1')))
    socket.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    await new Promise((resolve) => socket.once('close', resolve))
    expect(answer).toMatch(/^HTTP\/1\.1 200 /)
    expect(answer).toContain('{"status":"ok"}')
  })
})
