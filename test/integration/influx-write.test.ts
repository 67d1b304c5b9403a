import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { gunzipSync } from 'node:zlib'
import { HttpError, RequestTimedOutError } from '@influxdata/influxdb3-client'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createInfluxSink } from '../../src/ingest/sinks/influx-sink.js'
import { createInfluxWriter, type InfluxWriter, type InfluxWriterOptions } from '../../src/ingest/sinks/influx-write.js'
import { SinkError } from '../../src/ingest/sinks/sink.js'
import { waitUntil } from '../helpers/wait.js'

interface Received {
  headers: http.IncomingHttpHeaders
  url: string
  raw: Buffer
  socket: Socket
}

/** Records every request; `answer` decides the reply (nothing returned: no reply ever). */
function startServer() {
  const received: Received[] = []
  const sockets = new Set<Socket>()
  let answer: (res: http.ServerResponse, r: Received) => void = (res) => res.writeHead(204).end()
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const r = { headers: req.headers, url: req.url ?? '', raw: Buffer.concat(chunks), socket: req.socket }
      received.push(r)
      answer(res, r)
    })
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  return {
    received,
    server,
    setAnswer(fn: typeof answer) {
      answer = fn
    },
    async listen(): Promise<string> {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    },
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** Lines that compress about as real telemetry does (values change, so levels differ). */
function varied(n: number): Buffer {
  let seed = 7
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  const lines = Array.from(
    { length: n },
    (_, i) => `cpu,host=h${i % 100},user=u${i % 10} usage=${(rnd() * 100).toFixed(3)},load=${Math.floor(rnd() * 1e6)}i ${1_700_000_000_000_000_000n + BigInt(i)}\n`,
  )
  return Buffer.from(lines.join(''))
}

async function failureOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (e) {
    return e
  }
  throw new Error('expected the write to fail, it succeeded')
}

describe('the InfluxDB writer on the wire', () => {
  const srv = startServer()
  let url: string
  const writers: InfluxWriter[] = []
  const writer = (o: Partial<InfluxWriterOptions> = {}) => {
    const w = createInfluxWriter({ url, token: undefined, database: 'telemetry', gzipLevel: undefined, timeoutMs: 5000, ...o })
    writers.push(w)
    return w
  }
  beforeAll(async () => {
    url = await srv.listen()
  })
  afterEach(() => {
    for (const w of writers.splice(0)) w.close()
    srv.received.length = 0
    srv.setAnswer((res) => res.writeHead(204).end())
  })
  afterAll(() => srv.close())

  it('posts to /api/v2/write with ns precision, the token only when set, and a plain body as given', async () => {
    const body = varied(10)
    await writer({ token: 'tok' }).write(body)
    await writer({ token: '' }).write(body)
    await writer().write(body)
    const [a, b, c] = srv.received
    expect(a?.url).toBe('/api/v2/write?bucket=telemetry&precision=ns')
    expect(a?.headers.authorization).toBe('Token tok')
    expect(a?.headers['content-type']).toBe('text/plain; charset=utf-8')
    expect(b?.headers.authorization).toBeUndefined()
    expect(c?.headers.authorization).toBeUndefined()
    for (const r of srv.received) {
      expect(r.headers['content-encoding']).toBeUndefined()
      expect(r.headers['content-length']).toBe(String(body.length))
      expect(r.raw.equals(body)).toBe(true)
    }
  })

  it('gzips at the configured level, with a content-length and no chunking', async () => {
    const body = varied(2000)
    const sizes: Record<number, number> = {}
    for (const level of [0, 1, 6, 9]) {
      await writer({ gzipLevel: level }).write(body)
      const r = srv.received.at(-1)!
      expect(r.headers['content-encoding']).toBe('gzip')
      expect(r.headers['transfer-encoding']).toBeUndefined()
      expect(r.headers['content-length']).toBe(String(r.raw.length))
      expect(gunzipSync(r.raw).equals(body)).toBe(true)
      // The gzip header's XFL byte (RFC 1952 2.3.1), as zlib writes it: 4 fastest (levels 0-1), 2 best (9), else 0.
      expect(r.raw[8]).toBe(level <= 1 ? 4 : level === 9 ? 2 : 0)
      sizes[level] = r.raw.length
    }
    expect(sizes[0]).toBeGreaterThan(body.length) // stored blocks
    expect(sizes[1]).toBeLessThan(body.length / 4)
    expect(sizes[6]).toBeLessThan(sizes[1]!)
    expect(sizes[9]).toBeLessThanOrEqual(sizes[6]!)
  })

  it('sends a body of at most 1,000 bytes plain even with gzip on, as the client did', async () => {
    const body = Buffer.from('m v=1 1\n'.repeat(125)) // exactly 1,000 bytes
    await writer({ gzipLevel: 1 }).write(body)
    expect(srv.received[0]?.headers['content-encoding']).toBeUndefined()
    expect(srv.received[0]?.raw.equals(body)).toBe(true)
  })

  it('gives up a write the sink never answers with RequestTimedOutError and closes its connection', async () => {
    srv.setAnswer(() => {}) // never answers
    const e = await failureOf(writer({ timeoutMs: 100 }).write(varied(5)))
    expect(e).toBeInstanceOf(RequestTimedOutError)
    const socket = srv.received[0]!.socket
    // The writer is still open, so only its destroying the request closes this connection.
    await waitUntil(() => socket.destroyed, 5000, 'the timed-out connection closed')
  })

  it('answers an error as the client did: HttpError with status, text cut to 1,000 characters unless JSON', async () => {
    srv.setAnswer((res) => res.writeHead(500, { 'content-type': 'text/plain' }).end('x'.repeat(5000)))
    const e = (await failureOf(writer().write(varied(5)))) as HttpError
    expect(e).toBeInstanceOf(HttpError)
    expect([e.statusCode, e.statusMessage, e.contentType, e.body]).toEqual([500, 'Internal Server Error', 'text/plain', 'x'.repeat(1000)])
    expect(e.headers?.['content-type']).toBe('text/plain')

    // Core's 401 has an empty body: the x-influxdb-error header stands in for it.
    srv.setAnswer((res) => res.writeHead(401, { 'x-influxdb-error': 'token rotated' }).end())
    const u = (await failureOf(writer().write(varied(5)))) as HttpError
    expect([u.statusCode, u.body]).toEqual([401, 'token rotated'])

    // A partial write (Core sets no content-type): parsed, so the refused lines are named.
    const partial = { error: 'partial write of line protocol occurred', data: [{ line_number: 2, error_message: 'bad', original_line: 'b' }] }
    srv.setAnswer((res) => res.writeHead(400).end(JSON.stringify(partial)))
    const p = (await failureOf(writer().write(varied(5)))) as HttpError
    expect(p.json).toEqual(partial)
    expect(p.message).toBe('partial write of line protocol occurred:\n\tline 2: bad (b)')
  })

  it('reads a long partial write that declares no content type whole, so the sink names every refused line', async () => {
    // 40 refused lines of 200 characters: far past the 1,000 characters the client kept.
    const data = Array.from({ length: 40 }, (_, i) => ({ line_number: i + 1, error_message: 'invalid column type', original_line: `m${i},${'t'.repeat(180)} v="x" 1` }))
    const body = JSON.stringify({ error: 'partial write of line protocol occurred', data })
    expect(body.length).toBeGreaterThan(8000)
    srv.setAnswer((res) => res.writeHead(400).end(body))
    const sink = createInfluxSink({ url, token: undefined, database: 'telemetry', gzip: false, gzipLevel: 1, timeoutMs: 5000 })
    try {
      const e = (await failureOf(sink.write(varied(40), 40))) as SinkError
      expect(e).toBeInstanceOf(SinkError)
      // Permanent: the lines themselves are refused, so they go to the dead letters, not round again.
      expect(e.transient).toBe(false)
      expect(e.rejected?.map((r) => r.line)).toEqual(data.map((d) => d.line_number))
    } finally {
      await sink.close()
    }
  })

  it('cuts an error body past 64 KiB and drops that connection; the next write goes through', async () => {
    srv.setAnswer((res) => res.writeHead(500, { 'content-type': 'application/json' }).end(`"${'y'.repeat(1024 * 1024)}"`))
    const w = writer()
    const e = (await failureOf(w.write(varied(5)))) as HttpError
    expect(e).toBeInstanceOf(HttpError)
    expect(e.statusCode).toBe(500)
    expect(e.body).toHaveLength(64 * 1024)
    expect(e.json).toBeUndefined()
    const socket = srv.received[0]!.socket
    await waitUntil(() => socket.destroyed, 5000, 'the connection of the cut answer closed')
    srv.setAnswer((res) => res.writeHead(204).end())
    await w.write(varied(5))
    expect(srv.received).toHaveLength(2)
  })

  it('takes an Enterprise "hinted handoff queue not empty" answer as written', async () => {
    srv.setAnswer((res) => res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"write: hinted handoff queue not empty"}'))
    await writer().write(varied(5))
  })

  it('keeps one connection for consecutive writes, and close() ends it', async () => {
    const w = writer()
    await w.write(varied(5))
    await w.write(varied(5))
    const [a, b] = srv.received
    expect(a?.socket).toBe(b?.socket)
    w.close()
    await waitUntil(() => a!.socket.destroyed, 5000, 'close() ended the kept-alive connection')
  })
})

describe('the InfluxDB sink with no server listening', () => {
  it('classifies a refused connection as unreachable, transient', async () => {
    const srv = startServer()
    const url = await srv.listen()
    await srv.close() // the port is now free: the connection is refused
    const sink = createInfluxSink({ url, token: undefined, database: 'db', gzip: true, gzipLevel: 1, timeoutMs: 5000 })
    try {
      const e = await failureOf(sink.write(Buffer.from('m v=1 1\n'), 1))
      expect(e).toMatchObject({ transient: true, reason: 'unreachable' })
    } finally {
      await sink.close()
    }
  })
})
