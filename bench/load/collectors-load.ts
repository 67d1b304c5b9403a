/**
 * Load generator of the collectors scenario, run as its own process: one keep-alive
 * HTTP/1.1 connection per registered collector, each with one request outstanding (a
 * collector pushes its next snapshot once the last one was accepted), all at once.
 * - `push`: `POST /api/v1/metrics/push` with the collector's own token and body;
 * - `line-protocol`: the same points as line protocol to `/api/v2/write` with a stream
 *   token, one body per collector as well (collectors-payload.ts).
 * Bodies are built once at start. Counts 2xx answers (a push's must say it inserted every
 * metric) and their latency in the measured window (`durationMs` after `warmupMs`) and
 * prints one JSON result line shaped like http-load's, lines = metrics. Bounded in time:
 * it always stops by itself.
 */
import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { ResponseReader } from './collectors-http.js'
import { lineBody, pushBody, type CollectorCredentials } from './collectors-payload.js'
import { Tally } from './tally.js'

export interface CollectorsLoadOptions {
  mode: 'push' | 'line-protocol'
  /** http://127.0.0.1:port/path?query */
  url: string
  /** A JSON array of CollectorCredentials: one connection per collector. */
  credentialsFile: string
  /** line-protocol: the stream token (`Authorization: Token`). */
  streamToken?: string
  metrics: number
  fields: number
  durationMs: number
  warmupMs: number
}

/** Past the measured window: time for the connections to open and the result to be printed. */
const HARD_STOP_GRACE_MS = 60_000

const opts = JSON.parse(process.argv[2] ?? '{}') as CollectorsLoadOptions
const target = new URL(opts.url)
const collectors = JSON.parse(readFileSync(opts.credentialsFile, 'utf8')) as CollectorCredentials[]
const shape = { metrics: opts.metrics, fields: opts.fields }
// What every accepted push must answer (docs/API.md section 7).
const acceptedMark = `"metrics_inserted":${opts.metrics}`

const tally = new Tally()
const statuses: Record<string, number> = {}
const sockets: Socket[] = []
let stopped = false
let bodyBytes = 0

function request(c: CollectorCredentials, index: number): Buffer {
  const push = opts.mode === 'push'
  const body = push ? pushBody(c, index, shape) : lineBody(c, index, shape)
  bodyBytes += body.length
  const head =
    `POST ${target.pathname}${target.search} HTTP/1.1\r\n` +
    `Host: ${target.host}\r\n` +
    `Content-Type: ${push ? 'application/json' : 'text/plain; charset=utf-8'}\r\n` +
    `Content-Length: ${body.length}\r\n` +
    `Authorization: ${push ? `Bearer ${c.token}` : `Token ${opts.streamToken ?? ''}`}\r\n` +
    '\r\n'
  return Buffer.concat([Buffer.from(head, 'latin1'), body])
}

function open(c: CollectorCredentials, index: number): Promise<void> {
  const req = request(c, index)
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target.hostname, port: Number(target.port) })
    socket.setNoDelay(true)
    let sentAt = 0
    const send = () => {
      sentAt = performance.now()
      socket.write(req)
    }
    const reader = new ResponseReader((status, text) => {
      statuses[status] = (statuses[status] ?? 0) + 1
      if (status < 200 || status >= 300) tally.error(`HTTP ${status}${text ? `: ${text.slice(0, 300)}` : ''}`)
      else if (opts.mode === 'push' && !text.includes(acceptedMark)) {
        tally.error(`HTTP ${status} without ${acceptedMark}: ${text.slice(0, 300)}`)
      } else tally.ack(sentAt)
      if (!stopped) send()
    })
    socket.on('connect', () => {
      send()
      resolve()
    })
    socket.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk)
      } catch (err) {
        tally.error(`connection ${index}: ${(err as Error).message}`)
        socket.destroy()
      }
    })
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
  const hardStop = setTimeout(() => process.exit(2), opts.warmupMs + opts.durationMs + HARD_STOP_GRACE_MS)
  hardStop.unref()
  if (collectors.length === 0) throw new Error('no collectors in the credentials file')
  await Promise.all(collectors.map((c, i) => open(c, i)))
  const seconds = await tally.window(opts.warmupMs, opts.durationMs)
  stopped = true
  process.stdout.write(
    JSON.stringify({
      ...tally.result(opts.metrics, seconds),
      statuses,
      connections: collectors.length,
      body_bytes: Math.round(bodyBytes / collectors.length),
    }) + '\n',
  )
  for (const s of sockets) s.destroy()
  process.exit(0)
}

main().catch((err: unknown) => {
  process.stderr.write(`collectors-load failed: ${String(err)}\n`)
  process.exit(1)
})
