/**
 * Caddy for real (docs/API.md section 11): the project's Caddyfile validates and adapts
 * as its variables say, then a real Caddy runs from that same file (plain HTTP on a
 * loopback port: DOMAIN=http://127.0.0.1:<port>) in front of two gateway instances
 * sharing Postgres and NATS. Everything below goes through Caddy: /health, /time-series
 * sessions, /ws channels, MQTT over /mqtt, HTTP ingest, and the client's address reaching
 * the gateways' login limiter through X-Forwarded-For (TRUST_PROXY=true) — which a client
 * cannot forge by sending its own X-Forwarded-For.
 */
import { request } from 'node:http'
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { RAW_STREAM } from '../../src/devices/forwarder.js'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { adaptCaddyfile, caddyBinary, startCaddy, validateCaddyfile, type RunningCaddy } from '../helpers/caddy.js'
import { ChannelClient, streamToken } from '../helpers/channels.js'
import { postgresAvailable, postgresEngine, type TestDb } from '../helpers/db.js'
import { adminToken, provisionDevice } from '../helpers/mqtt.js'
import { natsReachable, natsUrlForTests, uniqueName, withJsm } from '../helpers/nats.js'
import { RecordingSink } from '../helpers/recording-sink.js'
import { requireService } from '../helpers/services.js'
import { waitUntil } from '../helpers/wait.js'
import { TestClient } from '../helpers/ws-client.js'

const haveCaddy = await requireService('the caddy binary', caddyBinary() !== undefined)
const havePostgres = await postgresAvailable()
const haveNats = await requireService(`NATS at ${natsUrlForTests}`, await natsReachable())

const ADMIN_PASSWORD = 'admin-password-for-caddy-tests'
const MAX_FAILURES_PER_IP = 3

/** What the plain-HTTP test switch looks like, for the static checks (nothing listens on it). */
const TEST_ENV = { DOMAIN: 'http://127.0.0.1:18443', CADDY_BIND: '127.0.0.1', CADDY_ADMIN: 'off', GATEWAY_UPSTREAMS: '127.0.0.1:1 127.0.0.1:2' }

/** The reverse_proxy handler of the (only) site, wherever the adapter nested it. */
function findHandler(node: unknown, name: string): any {
  if (Array.isArray(node)) {
    for (const n of node) {
      const found = findHandler(n, name)
      if (found !== undefined) return found
    }
  } else if (node !== null && typeof node === 'object') {
    if ((node as { handler?: unknown }).handler === name) return node
    for (const v of Object.values(node)) {
      const found = findHandler(v, name)
      if (found !== undefined) return found
    }
  }
  return undefined
}

describe.runIf(haveCaddy)('the project Caddyfile', () => {
  it('validates with the defaults, with a public domain and ACME email, and with the test switch', async () => {
    const envs: Array<Record<string, string>> = [{}, { DOMAIN: 'collector.example.com', TLS_EMAIL: 'ops@example.com' }, TEST_ENV]
    for (const env of envs) {
      const r = await validateCaddyfile(env)
      expect(r.code, `${JSON.stringify(env)}: ${r.stderr}`).toBe(0)
      expect(r.stdout + r.stderr).toContain('Valid configuration')
    }
  })

  it('by default serves matt-collector.localhost over HTTPS with certificates from its own CA, proxying to matt-collector:8080', async () => {
    const config = await adaptCaddyfile({})
    expect(config.admin).toEqual({ listen: 'localhost:2019' })
    const server = config.apps.http.servers.srv0
    expect(server.listen).toEqual([':443'])
    expect(server.routes[0].match).toEqual([{ host: ['matt-collector.localhost'] }])
    expect(config.apps.tls.automation.policies).toEqual([{ subjects: ['matt-collector.localhost'], issuers: [{ module: 'internal' }] }])
    const proxy = findHandler(config, 'reverse_proxy')
    expect(proxy.upstreams).toEqual([{ dial: 'matt-collector:8080' }])
    // No trusted proxies: an X-Forwarded-For sent by a client is never believed.
    expect(proxy.trusted_proxies).toBeUndefined()
    expect(server.trusted_proxies).toBeUndefined()
    expect(proxy.flush_interval).toBe(-1)
    expect(proxy.health_checks.active).toMatchObject({ uri: '/healthz', expect_status: 200 })
    expect(proxy.load_balancing.selection_policy).toEqual({ policy: 'least_conn' })
    // Above the gateway's own 10 MiB ingest limit, so the gateway's 413 is the one clients see.
    expect(findHandler(config, 'request_body').max_size).toBeGreaterThanOrEqual(10 * 1024 * 1024)
  })

  it('takes an email in TLS_EMAIL as an ACME account, and a list of upstreams and a path prefix', async () => {
    const config = await adaptCaddyfile({
      DOMAIN: 'collector.example.com',
      TLS_EMAIL: 'ops@example.com',
      GATEWAY_UPSTREAMS: 'gw-0:8080 gw-1:8080 gw-2:8080',
      GATEWAY_PATH_PREFIX: '/collector',
    })
    const [policy] = config.apps.tls.automation.policies
    expect(policy.subjects).toEqual(['collector.example.com'])
    expect(policy.issuers[0]).toEqual({ module: 'acme', email: 'ops@example.com' })
    const proxy = findHandler(config, 'reverse_proxy')
    expect(proxy.upstreams).toEqual([{ dial: 'gw-0:8080' }, { dial: 'gw-1:8080' }, { dial: 'gw-2:8080' }])
    expect(proxy.health_checks.active.uri).toBe('/collector/healthz')
  })

  it('with the test switch listens on the loopback port only, plain HTTP, admin API off', async () => {
    const config = await adaptCaddyfile(TEST_ENV)
    expect(config.admin).toEqual({ disabled: true })
    const server = config.apps.http.servers.srv0
    expect(server.listen).toEqual(['127.0.0.1:18443'])
    expect(config.apps.tls).toBeUndefined()
    expect(findHandler(config, 'reverse_proxy').upstreams).toEqual([{ dial: '127.0.0.1:1' }, { dial: '127.0.0.1:2' }])
  })
})

/** One HTTP request from a chosen loopback source address (127.x.y.z all reach 127.0.0.1). */
function requestFrom(
  localAddress: string,
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers, localAddress, agent: false, timeout: 10_000 }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => (text += d.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within 10 s`)))
    req.on('error', reject)
    req.end(opts.body)
  })
}

/** Open WebSocket connections of one instance on one endpoint, read from it directly. */
async function wsConnections(t: TestApp, endpoint: 'ws' | 'time-series'): Promise<number> {
  const text = await (await fetch(`${t.url}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`mc_ws_connections{endpoint="${endpoint}"} `))
  return line === undefined ? 0 : Number(line.split(' ')[1])
}

describe.runIf(haveCaddy && havePostgres && haveNats)('Caddy in front of two gateways sharing Postgres and NATS', () => {
  let db: TestDb
  let a: TestApp
  let b: TestApp
  const sinkA = new RecordingSink()
  const sinkB = new RecordingSink()
  let caddy: RunningCaddy
  let api: ApiClient
  let admin: string
  const closers: Array<() => unknown> = []

  beforeAll(async () => {
    db = await postgresEngine.create()
    const env = {
      ...FAST_PASSWORD_HASHING,
      ADMIN_PASSWORD,
      DATABASE_URL: db.url as string,
      NATS_URL: natsUrlForTests,
      TRUST_PROXY: 'true',
      LOGIN_MAX_FAILURES_PER_IP: String(MAX_FAILURES_PER_IP),
      BATCH_LINGER_MS: '2',
    }
    // One after the other: the first creates the admin user, the second finds it.
    a = await startTestApp(env, { sink: sinkA })
    b = await startTestApp(env, { sink: sinkB })
    const upstream = (t: TestApp) => new URL(t.url).host
    caddy = await startCaddy([upstream(a), upstream(b)])
    api = new ApiClient(caddy.url)
    admin = await adminToken(api, ADMIN_PASSWORD)
  })

  afterEach(async () => {
    for (const close of closers.splice(0)) await close()
  })

  /**
   * Opens sessions through Caddy until both instances hold at least one. Least connections
   * puts the second on the other instance, unless Caddy still counts a connection that is
   * just ending (its count drops a moment after the client sees the close): then the next
   * one goes there. A few sessions are always enough; more means the load is not spread.
   */
  async function spreadOverBoth<T>(endpoint: 'ws' | 'time-series', open: () => Promise<T>): Promise<T[]> {
    const sessions: T[] = []
    for (;;) {
      const counts = [await wsConnections(a, endpoint), await wsConnections(b, endpoint)]
      if (counts.every((n) => n > 0)) return sessions
      expect(sessions.length, `${endpoint} sessions per instance: ${counts}`).toBeLessThan(5)
      sessions.push(await open())
    }
  }

  afterAll(async () => {
    await caddy?.stop()
    await a?.close()
    await b?.close()
    await db?.drop()
  })

  it('answers /health with exactly {"status":"ok"}, by way of Caddy', async () => {
    const res = await fetch(`${caddy.url}/health`)
    expect(res.status).toBe(200)
    expect(res.headers.get('server')).toBe('Caddy')
    expect(await res.text()).toBe('{"status":"ok"}')
  })

  it('carries /time-series sessions, spread over both instances, streaming lines answered OK', async () => {
    const token = streamToken({ id: 'caddy-ts', name: 'caddy_user', orgId: 'org-caddy' })
    const sessions = await spreadOverBoth('time-series', async () => {
      const c = await TestClient.authenticated(caddy.wsUrl, token)
      closers.push(() => c.close())
      return c
    })
    const frames = 20
    for (let i = 0; i < frames; i++) sessions.forEach((c, s) => c.send(`caddy_ts,session=s${s},n=${i} v=${i}i\ncaddy_ts,session=s${s},n=${i} w=1i`))
    for (const c of sessions) for (let i = 0; i < frames; i++) expect(await c.next()).toBe('OK')
    const sessionsOf = (sink: RecordingSink) => new Set(sink.lines.filter((l) => l.startsWith('caddy_ts,')).map((l) => /session=(\w+)/.exec(l)?.[1]))
    // Each session's lines all on one instance (the upgrade stays put), and both instances got some.
    const [onA, onB] = [sessionsOf(sinkA), sessionsOf(sinkB)]
    expect(onA.size).toBeGreaterThan(0)
    expect(onB.size).toBeGreaterThan(0)
    expect([...onA, ...onB].sort()).toEqual(sessions.map((_, s) => `s${s}`).sort())
    const all = [...sinkA.lines, ...sinkB.lines].filter((l) => l.startsWith('caddy_ts,'))
    expect(all).toHaveLength(sessions.length * frames * 2)
    expect(all.every((l) => l.includes(',user=caddy_user,org=acme '))).toBe(true)
  })

  it('carries /ws channel sessions on both instances; an event published through Caddy reaches every one', async () => {
    const channel = uniqueName('caddy_room')
    const members = await spreadOverBoth('ws', async () => {
      const c = await ChannelClient.joined(caddy.wsUrl, { token: streamToken({ id: uniqueName('member'), name: 'member' }), channelId: channel })
      closers.push(() => c.close())
      return c
    })
    // Members on both instances: the event crosses over NATS to the other one.
    const res = await api.post(`/api/v1/channels/${channel}/events`, { token: admin, body: { type: 'message:created', data: { text: 'through caddy' } } })
    expect(res.status, res.text).toBe(202)
    for (const c of members) {
      const f = await c.waitFor((x) => x.type === 'message:created', 'the published event')
      expect(f.data).toEqual({ text: 'through caddy' })
    }
  })

  it('carries MQTT over WebSocket at /mqtt: a QoS 1 publish gets its PUBACK and is on NATS', async () => {
    await waitUntil(
      () => withJsm(natsUrlForTests, async (jsm) => (await jsm.streams.info(RAW_STREAM.name)).config.subjects.includes('raw.>')),
      20_000,
      'stream RAW on raw.>',
    )
    const device = await provisionDevice(api, admin, 'caddy-thermo')
    const client: MqttClient = await mqtt.connectAsync(`${caddy.wsUrl}/mqtt`, {
      protocolVersion: 4,
      username: device.mqtt_user,
      password: device.mqtt_password,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      clean: true,
    })
    closers.push(() => client.endAsync(true))
    const topic = `raw.${device.id}`
    const payload = `through caddy ${uniqueName('p')}`
    // Resolves on PUBACK, which the gateway sends only once JetStream stored the message.
    await client.publishAsync(topic, payload, { qos: 1 })
    const stored = await withJsm(natsUrlForTests, (jsm) => jsm.streams.getMessage(RAW_STREAM.name, { last_by_subj: topic }))
    expect(stored?.subject).toBe(topic)
    expect(Buffer.from(stored?.data ?? []).toString()).toBe(payload)
  })

  it('passes ingest bodies of up to the gateway limit (10 MiB) through, and ingest answers uncompressed', async () => {
    const token = streamToken({ id: 'caddy-ingest', name: 'caddy_ingest' })
    const headers = { authorization: `Token ${token}`, 'accept-encoding': 'gzip, zstd' }
    const write = (body: string) => fetch(`${caddy.url}/api/v2/write?bucket=x&org=y&precision=s`, { method: 'POST', headers, body })
    const ok = await write('caddy_http v=1i 1700000000')
    expect(ok.status, await ok.text()).toBe(204)
    expect(ok.headers.get('content-encoding')).toBeNull()
    expect([...sinkA.lines, ...sinkB.lines]).toContain('caddy_http,user=caddy_ingest,org=acme v=1i 1700000000000000000')
    // Just under the gateway's HTTP_WRITE_MAX_BODY_BYTES: Caddy must not be the one to refuse it.
    const line = `caddy_big,pad=${'p'.repeat(200)} v=1i 1700000000\n`
    const big = line.repeat(Math.floor((10 * 1024 * 1024 - 1024) / line.length))
    expect(big.length).toBeGreaterThan(9.9 * 1024 * 1024)
    const bigAnswer = await write(big)
    expect(bigAnswer.status, `${await bigAnswer.text()} ${caddy.output.slice(-3).join('\n')}`).toBe(204)
    // What browsers fetch is compressed.
    const metrics = await fetch(`${caddy.url}/metrics`, { headers: { 'accept-encoding': 'gzip' } })
    expect(metrics.status).toBe(200)
    expect(metrics.headers.get('content-encoding')).toBe('gzip')
  })

  it("gives the gateways the client's address: the login limiter counts it per client, and a forged X-Forwarded-For does not escape it", async () => {
    const login = (from: string, headers: Record<string, string> = {}) =>
      requestFrom(from, `${caddy.url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ username: uniqueName('nobody'), password: 'wrong-password' }),
      })
    const statuses: number[] = []
    // Each instance counts on its own: both are full once 2 × MAX failures came back 401.
    // Until then an attempt may land on a full instance (429); bounded either way.
    while (statuses.filter((s) => s === 401).length < 2 * MAX_FAILURES_PER_IP) {
      expect(statuses.length, `statuses so far: ${statuses}`).toBeLessThan(60)
      statuses.push((await login('127.0.0.2')).status)
    }
    // No instance can be full before MAX failures in all.
    expect(statuses.slice(0, MAX_FAILURES_PER_IP)).toEqual(Array(MAX_FAILURES_PER_IP).fill(401))
    expect(statuses.every((s) => s === 401 || s === 429), `${statuses}`).toBe(true)
    // Now 127.0.0.2 is refused whichever instance answers.
    for (let i = 0; i < 4; i++) {
      const refused = await login('127.0.0.2')
      expect(refused.status, refused.text).toBe(429)
      expect(JSON.parse(refused.text).error).toBe('too_many_attempts')
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0)
    }
    // ... and so it is when it names another address itself: Caddy replaces that header.
    for (const forged of [{ 'x-forwarded-for': '10.77.0.1' }, { 'x-forwarded-for': '127.0.0.3' }, { 'x-forwarded-for': '10.77.0.2, 127.0.0.3' }]) {
      const refused = await login('127.0.0.2', forged)
      expect(refused.status, `${JSON.stringify(forged)}: ${refused.text}`).toBe(429)
    }
    // Another client behind the same Caddy is untouched (without TRUST_PROXY every client
    // would be Caddy's 127.0.0.1, and limited together).
    for (let i = 0; i < 2; i++) {
      const other = await login('127.0.0.3')
      expect(other.status, other.text).toBe(401)
    }
  })

  // Last in this file: Caddy balances by open connections (least_conn), and the feed's may
  // outlive its abort for a moment on one instance; the login-limiter case must see both.
  it("carries the dashboard's event feed as it is written: uncompressed, each event at once", async () => {
    const abort = new AbortController()
    const res = await fetch(`${caddy.url}/api/v1/admin/feed`, {
      headers: { authorization: `Bearer ${admin}`, 'accept-encoding': 'gzip, zstd' },
      signal: abort.signal,
    })
    try {
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
      expect(res.headers.get('content-encoding')).toBeNull()
      // The feed never ends by itself: the first two events must arrive while it is open.
      const reader = (res.body as ReadableStream<Uint8Array>).getReader()
      let text = ''
      while (!text.includes('event: snapshot')) {
        const { value, done } = await reader.read()
        if (done) throw new Error(`the feed ended after ${JSON.stringify(text)}`)
        text += Buffer.from(value).toString('utf8')
      }
      expect(text.startsWith('event: errors\n')).toBe(true)
    } finally {
      abort.abort()
    }
  })
})
