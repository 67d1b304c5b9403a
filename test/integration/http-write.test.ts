import { gzipSync } from 'node:zlib'
import { InfluxDBClient, setLogger } from '@influxdata/influxdb3-client'
import jwt from 'jsonwebtoken'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { TEST_SECRET, startTestApp, type TestApp } from '../helpers/app.js'
import { RecordingSink, permanentFailure, transientFailure } from '../helpers/recording-sink.js'
import { waitUntil } from '../helpers/wait.js'
import { GatedSink } from '../helpers/gated-sink.js'

setLogger({ error() {}, warn() {} })

const token = jwt.sign(
  { user: 'john_doe', user_id: '1', org: 'acme_corp', org_id: '2', account_id: '3', type: 'stream' },
  TEST_SECRET,
  { expiresIn: 3600 },
)

describe('HTTP line-protocol ingest, driven by the InfluxDB 3 client', () => {
  let t: TestApp
  let sink: RecordingSink
  let client: InfluxDBClient
  beforeAll(async () => {
    sink = new RecordingSink()
    t = await startTestApp({ PATH_PREFIX: '/gw', SINK_RETRY_MIN_MS: '20', SINK_RETRY_MAX_MS: '50' }, { sink })
    client = new InfluxDBClient({ host: t.url, token, database: 'anything' })
  })
  afterAll(async () => {
    await client.close()
    await t.close()
  })
  beforeEach(() => {
    sink.writes.length = 0
    sink.failWith = undefined
  })

  const post = (path: string, body: string | Buffer, headers: Record<string, string> = {}) =>
    fetch(`${t.url}${path}`, { method: 'POST', headers: { authorization: `Token ${token}`, ...headers }, body })

  it('writes through /api/v2/write with the tags added and spoofed ones dropped', async () => {
    await client.write('temperature,location=room1,user=mallory value=23.5 1700000000000000000', 'db')
    expect(sink.lines).toEqual(['temperature,location=room1,user=john_doe,org=acme_corp value=23.5 1700000000000000000'])
  })

  it.each([
    ['ns', '1700000000000000001', '1700000000000000001'],
    ['us', '1700000000000001', '1700000000000001000'],
    ['ms', '1700000000001', '1700000000001000000'],
    ['s', '1700000001', '1700000001000000000'],
  ] as const)('converts precision=%s to ns for the sink (v2)', async (precision, ts, ns) => {
    await client.write(`m v=1 ${ts}`, 'db', undefined, { precision })
    expect(sink.lines).toEqual([`m,user=john_doe,org=acme_corp v=1 ${ns}`])
  })

  it.each([
    ['nanosecond', '1700000000000000001', '1700000000000000001'],
    ['microsecond', '1700000000000001', '1700000000000001000'],
    ['millisecond', '1700000000001', '1700000000001000000'],
    ['second', '1700000001', '1700000001000000000'],
    ['s', '1700000001', '1700000001000000000'],
    ['auto', '1700000001', '1700000001000000000'],
    ['auto', '1700000000001', '1700000000001000000'],
  ])('converts precision=%s to ns for the sink (v3 write_lp)', async (precision, ts, ns) => {
    const res = await post(`/api/v3/write_lp?db=x&precision=${precision}`, `m v=1 ${ts}`)
    expect(res.status).toBe(204)
    expect(sink.lines).toEqual([`m,user=john_doe,org=acme_corp v=1 ${ns}`])
  })

  it('takes v3 writes from the client (noSync uses /api/v3/write_lp)', async () => {
    await client.write('m v=2 1700000002', 'db', undefined, { precision: 's', noSync: true })
    expect(sink.lines).toEqual(['m,user=john_doe,org=acme_corp v=2 1700000002000000000'])
  })

  it('accepts gzip bodies (the client gzips bodies over 1,000 bytes)', async () => {
    const lines = Array.from({ length: 200 }, (_, i) => `cpu,host=h${i} usage=${i} ${1_700_000_000_000_000_000n + BigInt(i)}`)
    await client.write(lines.join('\n'), 'db')
    expect(sink.lines).toHaveLength(200)
    const res = await post('/api/v2/write?precision=ns', gzipSync('g v=1 1'), { 'content-encoding': 'gzip' })
    expect(res.status).toBe(204)
    expect(sink.lines.at(-1)).toBe('g,user=john_doe,org=acme_corp v=1 1')
  })

  it('answers 400 naming the line, and writes nothing of the body', async () => {
    const res = await post('/api/v2/write', 'ok v=1 1\n# c\nbad v=\nok v=2 2')
    expect(res.status).toBe(400)
    const body = (await res.json()) as { error: string; message: string }
    expect(body.error).toBe('invalid_line')
    expect(body.message).toMatch(/^line 3: /)
    expect(sink.writes).toHaveLength(0)
    await expect(client.write('bad line', 'db')).rejects.toMatchObject({ statusCode: 400 })
  })

  it('answers 400 for an unknown precision', async () => {
    const res = await post('/api/v2/write?precision=minutes', 'm v=1 1')
    expect(res.status).toBe(400)
    expect(sink.writes).toHaveLength(0)
  })

  it.each([
    ['no token', undefined],
    ['a bad token', 'Token nope'],
    ['an expired token', `Bearer ${jwt.sign({ user: 'u', org: 'o', type: 'stream', exp: Math.floor(Date.now() / 1000) - 120 }, TEST_SECRET)}`],
    ['a backend token', `Bearer ${jwt.sign({ userId: '1' }, TEST_SECRET, { expiresIn: 60 })}`],
  ])('answers 401 for %s and writes nothing', async (_what, authorization) => {
    const res = await fetch(`${t.url}/api/v2/write`, {
      method: 'POST',
      headers: authorization ? { authorization } : {},
      body: 'm v=1 1',
    })
    expect(res.status).toBe(401)
    expect(sink.writes).toHaveLength(0)
  })

  it('accepts Bearer as well as Token', async () => {
    const res = await fetch(`${t.url}/api/v2/write`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: 'b v=1 1' })
    expect(res.status).toBe(204)
  })

  it('answers 413 over 10 MiB, compressed or once decompressed', async () => {
    const big = 'x v=1 1\n'.repeat(Math.ceil((10 * 1024 * 1024 + 1) / 8))
    expect((await post('/api/v2/write', big)).status).toBe(413)
    const bomb = gzipSync(Buffer.alloc(11 * 1024 * 1024, 0x20))
    expect(bomb.length).toBeLessThan(1024 * 1024)
    expect((await post('/api/v2/write', bomb, { 'content-encoding': 'gzip' })).status).toBe(413)
    expect(sink.writes).toHaveLength(0)
  })

  it('answers 400 for a body that is not gzip though it says so, 415 for another encoding', async () => {
    expect((await post('/api/v2/write', 'm v=1 1', { 'content-encoding': 'gzip' })).status).toBe(400)
    expect((await post('/api/v2/write', 'm v=1 1', { 'content-encoding': 'br' })).status).toBe(415)
  })

  it('answers 204 while the sink is down (spooled), and 400 when the sink refuses the data', async () => {
    sink.failWith = transientFailure()
    expect((await post('/api/v2/write', 'spooled v=1 1')).status).toBe(204)
    sink.failWith = undefined
    await waitUntil(() => sink.lines.length >= 1, 10_000, 'the spooled line to be replayed')
    expect(sink.lines).toEqual(['spooled,user=john_doe,org=acme_corp v=1 1'])
    await waitUntil(() => t.app.sink.mode === 'direct', 10_000, 'the sink to be written directly again')
    sink.failWith = permanentFailure()
    const res = await post('/api/v2/write', 'm v=1 1')
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: string }).error).toBe('rejected')
    expect(sink.lines).toHaveLength(1)
  })
})

describe('HTTP ingest when the gateway cannot take more', () => {
  it('answers 503 with Retry-After when the sink is down and the spool is full, writing nothing', async () => {
    const sink = new RecordingSink()
    const t = await startTestApp({ SPOOL_MAX_BYTES: '200' }, { sink })
    try {
      sink.failWith = transientFailure()
      const res = await fetch(`${t.url}/api/v2/write`, {
        method: 'POST',
        headers: { authorization: `Token ${token}` },
        body: 'x'.repeat(150) + ' v=1 1\n' + 'y'.repeat(150) + ' v=1 1',
      })
      expect(res.status).toBe(503)
      expect(res.headers.get('retry-after')).toBe('1')
      expect(t.app.sink.spool.records).toBe(0)
      sink.failWith = undefined
      expect(sink.lines).toEqual([])
    } finally {
      await t.close()
    }
  })
})

describe('HTTP ingest bounds the bytes of writes under way (HTTP_WRITE_MAX_INFLIGHT_BYTES)', () => {
  const body = (tag: string) => `${tag} v=1 1\n`.padEnd(100, '#') // 100 bytes, one line

  it('answers 503 with Retry-After to a write that would pass the bound, before reading it, and takes writes again once it is under', async () => {
    const sink = new GatedSink()
    const t = await startTestApp({ HTTP_WRITE_MAX_INFLIGHT_BYTES: '150' }, { sink })
    const post = (text: string | ReadableStream<Uint8Array>) =>
      fetch(`${t.url}/api/v2/write`, {
        method: 'POST',
        headers: { authorization: `Token ${token}` },
        body: text,
        ...(typeof text === 'string' ? {} : { duplex: 'half' }),
      } as RequestInit)
    try {
      const first = post(body('first'))
      await waitUntil(() => sink.pending === 1, 10_000, 'the first write to reach the sink')
      const refused = await post(body('second'))
      expect(refused.status).toBe(503)
      expect(refused.headers.get('retry-after')).toBe('1')
      expect(await refused.json()).toEqual({ error: 'busy', message: expect.stringMatching(/retry later/) })
      // No Content-Length (chunked): counted once read, refused the same way.
      const chunked = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new TextEncoder().encode(body('chunked')))
          c.close()
        },
      })
      expect((await post(chunked)).status).toBe(503)
      sink.release()
      expect((await first).status).toBe(204)
      // The first write's bytes are given back when its response ends.
      const third = post(body('third'))
      await waitUntil(() => sink.pending === 1, 10_000, 'the third write to reach the sink')
      sink.release()
      expect((await third).status).toBe(204)
      expect(sink.lines.map((l) => l.split(',')[0])).toEqual(['first', 'third'])
    } finally {
      sink.release()
      await t.close()
    }
  })
})
