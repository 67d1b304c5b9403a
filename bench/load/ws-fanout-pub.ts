/**
 * Publisher load process of the ws-fanout scenario: publishes events round-robin over
 * `channels`, either `POST /api/v1/channels/<id>/events` on `connections` keep-alive HTTP/1.1
 * connections (pipelined, the frames of one tick in one write), or as core NATS publishes
 * on `channel.<id>`. Every event's `data` carries its number, its channel's index and its
 * publish time (see ws-fanout-sub.ts).
 *
 * The window is end to end: at most `window` events published and not yet received by
 * every subscriber of their channel (the subscriber process says which over the progress
 * connection). Without `rate` a new event goes out as each one completes: the deliveries
 * per second at saturation, with the servers' buffers bounded. With `rate` (events/s) it is
 * paced by one 1 ms timer, never past the window (events that would pass it are skipped
 * and counted), so the latency is measured below saturation.
 *
 * After `warmupMs` it tells the subscribers to measure for `durationMs`, then prints one
 * JSON line shaped like the other load generators' (lines = deliveries, frames = events)
 * with the subscribers' figures and its own (HTTP statuses, publish → 202 latency).
 * Bounded in time and count: it always stops by itself.
 */
import { connect as netConnect, type Socket } from 'node:net'
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node'
import { Tally } from './tally.js'

export interface FanoutPubOptions {
  mode: 'http' | 'nats'
  /** http://127.0.0.1:<port> or nats://127.0.0.1:<port>. */
  url: string
  /** HTTP: the bearer token. */
  token?: string
  channels: string[]
  /** The subscriber process's progress listener. */
  progressPort: number
  window: number
  /** HTTP connections. */
  connections: number
  /** Paced mode: events per second over all channels. */
  rate?: number
  durationMs: number
  warmupMs: number
}

/** How long the subscribers may take to send their figures after the window. */
const RESULT_TIMEOUT_MS = 10_000
/** HTTP response heads longer than this are a broken server. */
const HEAD_MAX_BYTES = 16 * 1024

const opts = JSON.parse(process.argv[2] ?? '{}') as FanoutPubOptions
const paced = opts.rate !== undefined && opts.rate > 0
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000)
const acks = new Tally() // publish → 202 (HTTP only)
const statuses: Record<string, number> = {}
let base = 0
let sent = 0
let completed = 0
let skipped = 0
let stopped = false

type Publish = (seq: number, ch: number, body: string) => void

function body(seq: number, ch: number): string {
  return `{"type":"message:created","data":{"bench_seq":${base + seq},"bench_ch":${ch},"bench_t":${nowUs()}}}`
}

/** HTTP/1.1 responses with a Content-Length (what Fastify and the baseline send), in order. */
function httpConnection(target: URL, onResponse: (status: number, text: string) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: target.hostname, port: Number(target.port) })
    socket.setNoDelay(true)
    let buf: Buffer = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      for (;;) {
        const end = buf.indexOf('\r\n\r\n')
        if (end === -1) {
          if (buf.length > HEAD_MAX_BYTES) socket.destroy(new Error('response head too large'))
          return
        }
        const head = buf.subarray(0, end).toString('latin1')
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? (/\r\ntransfer-encoding:/i.test(head) ? NaN : 0))
        if (Number.isNaN(length)) return void socket.destroy(new Error('a chunked response: not supported by this load generator'))
        if (buf.length < end + 4 + length) return
        const text = buf.subarray(end + 4, end + 4 + Math.min(length, 300)).toString('utf8')
        buf = buf.subarray(end + 4 + length)
        onResponse(Number(head.slice(9, 12)), text)
      }
    })
    socket.once('connect', () => resolve(socket))
    socket.on('error', (err) => {
      if (!stopped) acks.error(`HTTP connection: ${err.message}`)
      reject(err)
    })
    socket.on('close', () => {
      if (!stopped) acks.error('HTTP connection closed by the server')
    })
  })
}

async function httpPublisher(): Promise<{ publish: Publish; close(): void }> {
  const target = new URL(opts.url)
  const auth = opts.token ? `Authorization: Bearer ${opts.token}\r\n` : ''
  const heads = opts.channels.map(
    (c) => `POST /api/v1/channels/${encodeURIComponent(c)}/events HTTP/1.1\r\nHost: ${target.host}\r\n${auth}Content-Type: application/json\r\n`,
  )
  const lanes = await Promise.all(
    Array.from({ length: opts.connections }, async () => {
      const sentAt: number[] = []
      let head = 0
      const socket = await httpConnection(target, (status, text) => {
        const t0 = sentAt[head++] as number
        if (head > 4096) {
          sentAt.splice(0, head)
          head = 0
        }
        statuses[status] = (statuses[status] ?? 0) + 1
        if (status >= 200 && status < 300) acks.ack(t0)
        else acks.error(`HTTP ${status}${text ? `: ${text}` : ''}`)
      })
      return { socket, sentAt, corked: false }
    }),
  )
  return {
    publish(seq, ch, text) {
      const lane = lanes[seq % lanes.length] as (typeof lanes)[number]
      if (!lane.corked) {
        // The requests of one tick (one per completion of a burst) leave in one write.
        lane.corked = true
        lane.socket.cork()
        process.nextTick(() => {
          lane.corked = false
          lane.socket.uncork()
        })
      }
      lane.sentAt.push(performance.now())
      lane.socket.write(`${heads[ch]}Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`)
    },
    close() {
      for (const l of lanes) l.socket.destroy()
    },
  }
}

async function natsPublisher(): Promise<{ publish: Publish; close(): Promise<void> }> {
  const nc: NatsConnection = await natsConnect({ servers: opts.url, timeout: 10_000, maxReconnectAttempts: 0, noAsyncTraces: true })
  const subjects = opts.channels.map((c) => `channel.${c}`)
  return {
    publish(_seq, ch, text) {
      nc.publish(subjects[ch] as string, text)
    },
    close: () => nc.close(),
  }
}

/** The progress connection: resolves once the subscribers said the phase's first event number. */
function progress(onComplete: (n: number) => void, onResult: (r: Record<string, unknown>) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port: opts.progressPort })
    socket.setNoDelay(true)
    socket.setEncoding('utf8')
    let buf = ''
    socket.on('data', (chunk: string) => {
      buf += chunk
      let nl: number
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        if (line.startsWith('b ')) {
          base = Number(line.slice(2))
          resolve(socket)
        } else if (line.startsWith('{')) onResult(JSON.parse(line) as Record<string, unknown>)
        else if (line !== '') onComplete(Number(line))
      }
    })
    socket.on('error', reject)
    socket.on('close', () => reject(new Error('the subscriber process closed the progress connection')))
  })
}

async function main(): Promise<void> {
  setTimeout(() => process.exit(2), opts.warmupMs + opts.durationMs + 60_000).unref()
  let publish: Publish = () => {}
  const send = () => {
    const seq = sent++
    const ch = seq % opts.channels.length
    publish(seq, ch, body(seq, ch))
  }
  let subResult: Record<string, unknown> | undefined
  let resultArrived: () => void = () => {}
  const ctl = await progress(
    () => {
      completed++
      if (!stopped && !paced && sent - completed < opts.window) send()
    },
    (r) => {
      subResult = r
      resultArrived()
    },
  )
  const pub = opts.mode === 'nats' ? await natsPublisher() : await httpPublisher()
  publish = pub.publish
  let pacer: NodeJS.Timeout | undefined
  if (paced) {
    const perMs = (opts.rate as number) / 1000
    const t0 = performance.now()
    let due = 0
    pacer = setInterval(() => {
      const target = Math.floor((performance.now() - t0) * perMs)
      while (due < target) {
        due++
        if (sent - completed < opts.window) send()
        else if (acks.measuring) skipped++
      }
    }, 1)
  } else for (let i = 0; i < opts.window; i++) send()

  await new Promise((r) => setTimeout(r, opts.warmupMs))
  acks.measuring = true
  ctl.write('m\n')
  const started = performance.now()
  await new Promise((r) => setTimeout(r, opts.durationMs))
  acks.measuring = false
  const seconds = (performance.now() - started) / 1000
  const arrived = new Promise<void>((r) => (resultArrived = r))
  ctl.write('e\n')
  await Promise.race([arrived, new Promise((r) => setTimeout(r, RESULT_TIMEOUT_MS))])
  stopped = true
  clearInterval(pacer)
  const a = acks.result(1, seconds)
  const s = subResult ?? {}
  const errors = acks.errors + Number(s.duplicates ?? 0) + Number(s.misdelivered ?? 0) + Number(s.subscribers_closed ?? 0)
  process.stdout.write(
    JSON.stringify({
      frames: s.events_completed ?? 0,
      lines: s.deliveries ?? 0,
      frames_per_s: s.events_per_s ?? 0,
      lines_per_s: s.deliveries_per_s ?? 0,
      p50_ms: s.p50_ms ?? null,
      p99_ms: s.p99_ms ?? null,
      errors: subResult === undefined ? errors + 1 : errors,
      first_error:
        acks.firstError ??
        (subResult === undefined ? 'the subscriber process sent no figures' : Number(s.subscribers_closed ?? 0) > 0 ? (s.first_close as string) : null),
      lines_acked_total: sent,
      mode: opts.mode,
      window: opts.window,
      published_total: sent,
      published_in_window: opts.mode === 'http' ? a.frames : null,
      publish_ack_p50_ms: opts.mode === 'http' ? a.p50_ms : null,
      publish_ack_p99_ms: opts.mode === 'http' ? a.p99_ms : null,
      statuses,
      ...(paced ? { target_frames_per_s: opts.rate, skipped } : {}),
      subscribers: s,
    }) + '\n',
  )
  ctl.destroy()
  await pub.close()
  process.exit(0)
}

main().catch((err: unknown) => {
  process.stderr.write(`ws-fanout-pub failed: ${String(err)}\n`)
  process.exit(1)
})
