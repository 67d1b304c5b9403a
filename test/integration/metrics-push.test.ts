import { randomUUID } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { registerCollector } from '../helpers/collectors.js'
import { parseLp, startFakeInflux, type FakeInflux } from '../helpers/fake-influx.js'
import { waitFor, waitUntil } from '../helpers/wait.js'

const ADMIN_PASSWORD = 'admin-password-for-tests'
const MAX_PUSH_BYTES = 4 * 1024 * 1024

/** A registered collector: its id and token. */
async function newCollector(_t: TestApp, api: ApiClient, adminToken: string, hostname: string): Promise<{ id: string; token: string }> {
  const c = await registerCollector(api, { token: adminToken, hostname })
  return { id: c.collector_id, token: c.token }
}

describe('POST /api/v1/metrics/push into an InfluxDB-3-like sink', () => {
  let influx: FakeInflux
  let t: TestApp
  let api: ApiClient
  let admin = ''
  let collector = { id: '', token: '' }

  beforeAll(async () => {
    influx = await startFakeInflux()
    t = await startTestApp({
      ...FAST_PASSWORD_HASHING,
      ADMIN_PASSWORD,
      MQTT_ENABLED: 'false',
      INFLUXDB_URL: influx.url,
      INFLUXDB_DATABASE: 'db',
      SINK_RETRY_MIN_MS: '20',
      SINK_RETRY_MAX_MS: '50',
      METRICS_PUSH_MAX_BODY_BYTES: String(MAX_PUSH_BYTES),
    })
    api = new ApiClient(t.url)
    const login = await api.post('/api/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD } })
    expect(login.status, login.text).toBe(200)
    admin = login.json.token
    collector = await newCollector(t, api, admin, 'db-host-1')
  })
  afterAll(async () => {
    await t?.close()
    await influx?.close()
  })
  beforeEach(() => {
    influx.setMode('ok')
    influx.reset()
  })

  const post = (body: string | Buffer, headers: Record<string, string> = {}, token = collector.token) =>
    fetch(`${t.url}/api/v1/metrics/push`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
      body,
    })
  const pushOf = (metrics: unknown[], extra: Record<string, unknown> = {}) =>
    JSON.stringify({ collector_id: collector.id, hostname: 'db-host-1', metrics, ...extra })

  it('writes 10,000 metrics of one push with the tags, field types and timestamps asked for', async () => {
    const n = 10_000
    const metrics = Array.from({ length: n }, (_, i) => ({
      name: 'pg_stat_table',
      tags: { table: `t${i}`, hostname: 'spoofed', collector_id: 'spoofed' },
      fields: { seq_scan: i, ratio: i + 0.25, vacuumed: i % 2 === 0, state: `s "${i}"` },
      // Each way of giving a time, in turn: RFC 3339, epoch ns (JSON integer past 2^53 and digits), the request's.
      ...[{ timestamp: '2025-01-02T03:04:05.123456789Z' }, { timestamp: '@' }, { timestamp: `${1_700_000_000_000_000_000n + BigInt(i)}` }, {}][i % 4],
    }))
    // JSON.stringify cannot write an integer past 2^53: put the literal in by hand.
    const text = pushOf(metrics, { timestamp: '2025-06-01T00:00:00Z' }).replaceAll('"timestamp":"@"', '"timestamp":1700000000000000001')
    const res = await post(text)
    expect(res.status, await res.clone().text()).toBe(200)
    expect(await res.json()).toEqual({ status: 'accepted', metrics_inserted: n, processing_time_ms: expect.any(Number) })
    const points = influx.lines.map(parseLp)
    expect(points).toHaveLength(n)
    points.forEach((p, i) => {
      expect(p.measurement).toBe('pg_stat_table')
      expect(p.tags).toEqual({ table: `t${i}`, collector_id: collector.id, hostname: 'db-host-1' })
      expect(p.fields).toEqual({
        seq_scan: { type: 'float', value: i },
        ratio: { type: 'float', value: i + 0.25 },
        vacuumed: { type: 'boolean', value: i % 2 === 0 },
        state: { type: 'string', value: `s "${i}"` },
      })
      const expected = ['1735787045123456789', '1700000000000000001', `${1_700_000_000_000_000_000n + BigInt(i)}`, '1748736000000000000'][i % 4]
      expect(p.timestamp).toBe(expected)
    })
  })

  it('stamps metrics without any timestamp with the receive time', async () => {
    const before = BigInt(Date.now()) * 1_000_000n
    expect((await post(pushOf([{ name: 'm', fields: { v: 1 } }]))).status).toBe(200)
    const [p] = influx.lines.map(parseLp)
    expect(BigInt(p!.timestamp!)).toBeGreaterThanOrEqual(before)
    expect(BigInt(p!.timestamp!)).toBeLessThanOrEqual(BigInt(Date.now()) * 1_000_000n + 999_999n)
  })

  it('answers 400 naming the first bad metric by its index, and writes nothing of the push', async () => {
    const metrics = Array.from({ length: 30 }, (_, i) => ({ name: 'm', fields: { v: i } })) as unknown[]
    metrics[17] = { name: 'm', fields: {} }
    const res = await post(pushOf(metrics))
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({ error: 'invalid_request', message: 'metrics[17].fields: at least one field is required' })
    expect((await post('{"collector_id":')).status).toBe(400)
    expect(influx.requests).toBe(0)
  })

  it("answers 403 for another collector's id, 401 without a collector token, and writes nothing", async () => {
    const other = pushOf([{ name: 'm', fields: { v: 1 } }], { collector_id: randomUUID() })
    expect((await post(other)).status).toBe(403)
    expect((await post(pushOf([{ name: 'm', fields: { v: 1 } }]), {}, admin)).status).toBe(401)
    expect(influx.requests).toBe(0)
  })

  it('takes gzip bodies, and answers 413 past the limit, compressed or once decompressed', async () => {
    const small = gzipSync(pushOf([{ name: 'gz', fields: { v: 1 } }]))
    expect((await post(small, { 'content-encoding': 'gzip' })).status).toBe(200)
    expect(influx.lines.map((l) => parseLp(l).measurement)).toEqual(['gz'])
    const big = pushOf([{ name: 'm', fields: { pad: 'x'.repeat(MAX_PUSH_BYTES) } }])
    expect((await post(big)).status).toBe(413)
    const bomb = gzipSync(big)
    expect(bomb.length).toBeLessThan(MAX_PUSH_BYTES)
    expect((await post(bomb, { 'content-encoding': 'gzip' })).status).toBe(413)
    expect(influx.lines).toHaveLength(1)
  })

  it('acknowledges a push while the sink is down only once spooled, and delivers it after recovery', async () => {
    influx.setMode('status503')
    const res = await post(pushOf([{ name: 'spooled', fields: { v: 1 } }, { name: 'spooled', fields: { v: 2 } }]))
    expect(res.status).toBe(200)
    // Answered 200: the metrics are in the spool (fsynced) though the sink has none of them.
    expect(t.app.sink.spool.records).toBeGreaterThan(0)
    expect(influx.lines).toEqual([])
    influx.setMode('ok')
    await waitUntil(() => influx.lines.length === 2, 20_000, 'the spooled metrics to reach the sink')
    expect(influx.lines.map((l) => parseLp(l).fields.v?.value)).toEqual([1, 2])
  })

  it('counts pushes in the collector (metrics_count, last_push_at), coalesced', async () => {
    // A collector of its own: the other tests' pushes may still be waiting for their flush.
    const own = await newCollector(t, api, admin, 'db-host-counted')
    const fresh = await api.get(`/api/v1/collectors/${own.id}`, { token: admin })
    expect(fresh.json).toMatchObject({ metrics_count: 0, last_push_at: null })
    const body = JSON.stringify({ collector_id: own.id, hostname: 'db-host-counted', metrics: [1, 2, 3].map((v) => ({ name: 'c', fields: { v } })) })
    expect((await post(body, {}, own.token)).status).toBe(200)
    expect((await post(body, {}, own.token)).status).toBe(200)
    const seen = await waitFor(
      async () => (await api.get(`/api/v1/collectors/${own.id}`, { token: admin })).json,
      (c) => Number(c.metrics_count) >= 6 && c.last_push_at !== null,
      'the pushes to be counted',
      20_000,
    )
    expect(Number(seen.metrics_count)).toBe(6)
  })

  it("refuses a deleted collector's token at once", async () => {
    const doomed = await newCollector(t, api, admin, 'doomed-host')
    const del = await api.delete(`/api/v1/collectors/${doomed.id}`, { token: admin })
    expect(del.status).toBe(204)
    const body = JSON.stringify({ collector_id: doomed.id, hostname: 'doomed-host', metrics: [{ name: 'm', fields: { v: 1 } }] })
    const res = await post(body, {}, doomed.token)
    expect(res.status).toBe(401)
    expect(influx.requests).toBe(0)
  })
})
