/**
 * Load generator for line-protocol writes over HTTP (InfluxDB's /api/v2/write, on the
 * gateway or straight on a sink), run as its own process. Opens `connections` keep-alive
 * HTTP/1.1 connections and keeps `inflight` requests outstanding on each (pipelined: a
 * new request goes out as each response completes), every request the same prebuilt body
 * of `linesPerBody` lines (optionally gzipped once at start, so compression costs the load
 * generator nothing). Counts 2xx responses and their latency in the measured window
 * (`durationMs` after `warmupMs`) and prints one JSON result line shaped like ws-load's.
 * A raw socket client: no per-request allocation beyond the response parser, so it is not
 * the bottleneck. Bounded in time and count: it always stops by itself.
 */
import { connect as netConnect, type Socket } from 'node:net'
import { gzipSync } from 'node:zlib'
import { body } from './lines.js'
import { Tally, type CpuOf } from './tally.js'

interface Options {
  /** http://host:port/path?query */
  url: string
  connections: number
  inflight: number
  linesPerBody: number
  durationMs: number
  warmupMs: number
  gzip?: boolean
  /** Appended to every line's tag set (`,k=v`). */
  extraTags?: string
  /** Extra request headers, e.g. {"Authorization": "Token ..."}. */
  headers?: Record<string, string>
  localAddress?: string
  /** Processes whose CPU over the measured window the result reports (see Tally.window). */
  cpuOf?: CpuOf
}

const opts = JSON.parse(process.argv[2] ?? '{}') as Options
const target = new URL(opts.url)
const payload = opts.gzip ? gzipSync(body(opts.linesPerBody, opts.extraTags ?? '')) : body(opts.linesPerBody, opts.extraTags ?? '')
const head =
  `POST ${target.pathname}${target.search} HTTP/1.1\r\n` +
  `Host: ${target.host}\r\n` +
  'Content-Type: text/plain; charset=utf-8\r\n' +
  `Content-Length: ${payload.length}\r\n` +
  (opts.gzip ? 'Content-Encoding: gzip\r\n' : '') +
  Object.entries(opts.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('') +
  '\r\n'
const request = Buffer.concat([Buffer.from(head, 'latin1'), payload])

const tally = new Tally()
let stopped = false
const statuses: Record<string, number> = {}
const sockets: Socket[] = []

/** Incremental HTTP/1.1 response parser: calls onResponse(status, bodyText) per response. */
class ResponseParser {
  private buf: Buffer = Buffer.alloc(0)
  private state: 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'trailers' = 'head'
  private status = 0
  private remaining = 0
  private bodyParts: Buffer[] = []
  private bodyBytes = 0

  constructor(private readonly onResponse: (status: number, body: string) => void) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    for (;;) {
      if (this.state === 'head') {
        const end = this.buf.indexOf('\r\n\r\n')
        if (end === -1) return
        const text = this.buf.subarray(0, end).toString('latin1')
        this.buf = this.buf.subarray(end + 4)
        this.status = Number(text.slice(9, 12))
        const lower = text.toLowerCase()
        const cl = /\r\ncontent-length:\s*(\d+)/.exec(lower)
        this.bodyParts = []
        this.bodyBytes = 0
        if (/\r\ntransfer-encoding:[^\r]*chunked/.test(lower)) {
          this.state = 'chunk-size'
        } else if (cl && Number(cl[1]) > 0) {
          this.remaining = Number(cl[1])
          this.state = 'body'
        } else {
          // 204, 304 or an empty body (no close-delimited bodies from the servers used here).
          this.done()
        }
      } else if (this.state === 'body') {
        if (this.buf.length === 0) return
        const take = Math.min(this.remaining, this.buf.length)
        this.keep(this.buf.subarray(0, take))
        this.buf = this.buf.subarray(take)
        this.remaining -= take
        if (this.remaining > 0) return
        this.done()
      } else if (this.state === 'chunk-size') {
        const end = this.buf.indexOf('\r\n')
        if (end === -1) return
        const size = parseInt(this.buf.subarray(0, end).toString('latin1'), 16)
        this.buf = this.buf.subarray(end + 2)
        if (size === 0) this.state = 'trailers'
        else {
          this.remaining = size + 2 // the data and its CRLF
          this.state = 'chunk-data'
        }
      } else if (this.state === 'chunk-data') {
        if (this.buf.length === 0) return
        const take = Math.min(this.remaining, this.buf.length)
        this.keep(this.buf.subarray(0, Math.min(take, Math.max(0, this.remaining - 2))))
        this.buf = this.buf.subarray(take)
        this.remaining -= take
        if (this.remaining > 0) return
        this.state = 'chunk-size'
      } else {
        const end = this.buf.indexOf('\r\n')
        if (end === -1) return
        this.buf = this.buf.subarray(end + 2)
        if (end === 0) this.done() // the empty line that ends the trailers
      }
    }
  }

  private keep(part: Buffer): void {
    // Only the start of a body is kept: enough for an error message.
    if (this.bodyBytes >= 300 || this.status < 300) return
    this.bodyParts.push(part)
    this.bodyBytes += part.length
  }

  private done(): void {
    this.state = 'head'
    this.onResponse(this.status, Buffer.concat(this.bodyParts).toString('utf8').slice(0, 300))
  }
}

function open(index: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({
      host: target.hostname,
      port: Number(target.port || 80),
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    })
    socket.setNoDelay(true)
    const sentAt: number[] = []
    let headIndex = 0
    const send = () => {
      sentAt.push(performance.now())
      socket.write(request)
    }
    const parser = new ResponseParser((status, text) => {
      const t0 = sentAt[headIndex++] as number
      if (headIndex > 4096) {
        sentAt.splice(0, headIndex)
        headIndex = 0
      }
      statuses[status] = (statuses[status] ?? 0) + 1
      if (status >= 200 && status < 300) tally.ack(t0)
      else tally.error(`HTTP ${status}${text ? `: ${text}` : ''}`)
      if (!stopped) send()
    })
    socket.on('connect', () => {
      for (let i = 0; i < opts.inflight; i++) send()
      resolve()
    })
    socket.on('data', (chunk: Buffer) => parser.push(chunk))
    socket.on('error', (err) => {
      if (!stopped) tally.error(`connection ${index}: ${err.message}`)
      reject(err)
    })
    socket.on('close', () => {
      if (!stopped) tally.error(`connection ${index} closed by the server`)
    })
    sockets.push(socket)
  })
}

async function main(): Promise<void> {
  const hardStop = setTimeout(() => process.exit(2), opts.warmupMs + opts.durationMs + 60_000)
  hardStop.unref()
  await Promise.all(Array.from({ length: opts.connections }, (_, i) => open(i)))
  const seconds = await tally.window(opts.warmupMs, opts.durationMs, opts.cpuOf)
  stopped = true
  process.stdout.write(
    JSON.stringify({ ...tally.result(opts.linesPerBody, seconds), statuses, body_bytes: payload.length }) + '\n',
  )
  for (const s of sockets) s.destroy()
  process.exit(0)
}

main().catch((err: unknown) => {
  process.stderr.write(`http-load failed: ${String(err)}\n`)
  process.exit(1)
})
