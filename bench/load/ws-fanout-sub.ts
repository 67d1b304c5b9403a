/**
 * Subscriber load process of the ws-fanout scenario (and of the idle `/ws` measurement).
 * Opens `subscribers` `/ws` connections on each of `channels` (at most `concurrency`
 * handshakes at once), each a distinct user with a stream token signed with `secret`,
 * waits for every connection's first frame (`presence:state`), and prints one JSON line:
 * how many joined, how many failed and why, and the port of its progress listener.
 *
 * A publisher process (ws-fanout-pub.ts) then connects to that port; each connection is
 * one measured phase:
 *   sub → pub `b <base>`: the phase's first event number (events of an earlier phase still
 *             in flight are below it and ignored);
 *   pub → sub `m` / `e`: the measured window starts / ends; on `e` the subscriber answers
 *             with one JSON line (deliveries, their publish → receipt latency, duplicates...);
 *   sub → pub `<n>` per line: event base+n has reached every subscriber of its channel (the
 *             publisher's window is bounded by these).
 * Each event's `data` carries `bench_seq`, `bench_ch` (the channel's index) and `bench_t`
 * (publish time, epoch µs, the clock every process on this machine shares): frames are
 * searched for them in place, never JSON-parsed (that would cost more than the server's send).
 *
 * Holds the connections until SIGTERM (then prints how many the server closed, and exits)
 * or `holdMs` (exits by itself, code 3). Bounded in time and count: it always stops by itself.
 */
import { readFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import jwt from 'jsonwebtoken'
import { RawWs } from './ws-fanout-client.js'
import { LatencyHistogram } from './ws-fanout-latency.js'

export interface FanoutSubOptions {
  host: string
  port: number
  /** The WebSocket path, `/ws`. */
  path: string
  /** Signs each subscriber's stream token (the bench gateway's JWT_SECRET). */
  secret: string
  channels: string[]
  /** Per channel. */
  subscribers: number
  /** Prefix of the subscribers' user ids (distinct per process). */
  userPrefix: string
  concurrency: number
  localAddress?: string
  openTimeoutMs: number
  holdMs: number
}

/** Event numbers of one phase: far more than a phase publishes, so phases never overlap. */
const PHASE_SPAN = 1_000_000_000
/** Completed-event flags kept per phase; events past this are counted, not checked for duplicates. */
const MAX_TRACKED_EVENTS = 1 << 24
const HANDSHAKE_TIMEOUT_MS = 30_000
const TOKEN_LIFETIME_S = 3600
const SEQ = Buffer.from('"bench_seq":')
const CH = Buffer.from('"bench_ch":')
const SENT = Buffer.from('"bench_t":')
const GREETING = Buffer.from('{"type":"presence:state"')

const opts = JSON.parse(process.argv[2] ?? '{}') as FanoutSubOptions
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000)

/** Live subscribers per channel index: an event is complete once this many received it. */
const live = new Array<number>(opts.channels.length).fill(0)
let connected = 0
let failed = 0
let firstError: string | undefined
let holding = false
let closedDuringHold = 0
let firstClose: string | undefined
let otherFrames = 0
const sockets: RawWs[] = []

// The current phase (one publisher connection).
let publisher: Socket | undefined
let base = -1
let phases = 0
let measuring = false
let windowStarted = 0
let cpuAtStart = process.cpuUsage()
let hist = new LatencyHistogram()
let deliveries = 0
let completedInWindow = 0
let duplicates = 0
let closedInWindow = 0
let misdelivered = 0
let stale = 0
let untracked = 0
let done = new Uint8Array(1 << 16)
const pending = new Map<number, { n: number; ch: number }>()
let toReport: number[] = []

/** The decimal integer right after `marker` in `buf` (from `from`), or -1. */
function intAfter(buf: Buffer, marker: Buffer, from: number): number {
  const at = buf.indexOf(marker, from)
  if (at === -1) return -1
  let n = 0
  let i = at + marker.length
  let digits = 0
  for (; i < buf.length; i++, digits++) {
    const c = buf[i] as number
    if (c < 48 || c > 57) break
    n = n * 10 + (c - 48)
  }
  return digits === 0 ? -1 : n
}

function report(local: number): void {
  if (publisher === undefined) return
  if (toReport.length === 0) setImmediate(flushReports)
  toReport.push(local)
}

function flushReports(): void {
  if (publisher !== undefined && toReport.length > 0) publisher.write(toReport.join('\n') + '\n')
  toReport = []
}

function complete(seq: number): void {
  pending.delete(seq)
  const local = seq - base
  if (local < MAX_TRACKED_EVENTS) {
    if (local >= done.length) {
      const grown = new Uint8Array(Math.min(MAX_TRACKED_EVENTS, Math.max(done.length * 2, local + 1)))
      grown.set(done)
      done = grown
    }
    done[local] = 1
  }
  if (measuring) completedInWindow++
  report(local)
}

function onEvent(ch: number, payload: Buffer): void {
  const seq = intAfter(payload, SEQ, 0)
  if (seq === -1) {
    otherFrames++ // presence of other members, and anything else that is not a bench event
    return
  }
  if (publisher === undefined || seq < base) {
    stale++
    return
  }
  const eventCh = intAfter(payload, CH, 0)
  if (eventCh !== ch) {
    misdelivered++
    return
  }
  const local = seq - base
  if (local >= MAX_TRACKED_EVENTS) untracked++
  else if (local < done.length && done[local] === 1) {
    duplicates++
    return
  }
  if (measuring) {
    deliveries++
    const sent = intAfter(payload, SENT, 0)
    if (sent !== -1) hist.add(nowUs() - sent)
  }
  let p = pending.get(seq)
  if (p === undefined) pending.set(seq, (p = { n: 0, ch }))
  p.n++
  if (p.n >= (live[ch] as number)) complete(seq)
}

/** A subscriber gone: the events of its channel waiting only for it are complete. */
function onGone(ch: number): void {
  live[ch] = (live[ch] as number) - 1
  for (const [seq, p] of pending) if (p.ch === ch && p.n >= (live[ch] as number)) complete(seq)
}

function open(index: number): Promise<void> {
  const ch = index % opts.channels.length
  const userId = `${opts.userPrefix}${index}`
  const token = jwt.sign(
    { user: `bench ${userId}`, user_id: userId, org: 'bench_org', org_id: '1', account_id: '1', type: 'stream' },
    opts.secret,
    { expiresIn: TOKEN_LIFETIME_S },
  )
  const path = `${opts.path}?token=${token}&channelId=${encodeURIComponent(opts.channels[ch] as string)}`
  return new Promise((resolve) => {
    let greeted = false
    const ws = new RawWs(
      { host: opts.host, port: opts.port, path, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) },
      {
        message: (payload) => {
          if (greeted) return onEvent(ch, payload)
          greeted = true
          if (payload.indexOf(GREETING) === 0) {
            connected++
            live[ch] = (live[ch] as number) + 1
          } else {
            failed++
            firstError ??= `first frame not presence:state: ${payload.subarray(0, 200).toString('utf8')}`
            ws.destroy()
          }
          resolve()
        },
        closed: (why) => {
          if (!greeted) {
            greeted = true
            failed++
            firstError ??= why
            return resolve()
          }
          if (holding) closedDuringHold++
          if (measuring) closedInWindow++
          firstClose ??= why
          onGone(ch)
        },
      },
    )
    sockets.push(ws)
  })
}

function result(): Record<string, unknown> {
  const seconds = (performance.now() - windowStarted) / 1000
  const cpu = process.cpuUsage(cpuAtStart)
  return {
    deliveries,
    seconds,
    deliveries_per_s: deliveries / seconds,
    events_completed: completedInWindow,
    events_per_s: completedInWindow / seconds,
    p50_ms: hist.quantileMs(0.5),
    p99_ms: hist.quantileMs(0.99),
    p999_ms: hist.quantileMs(0.999),
    max_ms: hist.count === 0 ? null : hist.maxUs / 1000,
    duplicates,
    misdelivered,
    stale,
    untracked,
    pending_at_end: pending.size,
    subscribers_live: live.reduce((a, b) => a + b, 0),
    subscribers_closed: closedInWindow,
    first_close: firstClose ?? null,
    other_frames: otherFrames,
    subscriber_cpu_s: Number(((cpu.user + cpu.system) / 1e6).toFixed(2)),
  }
}

function startPhase(conn: Socket): void {
  if (publisher !== undefined) {
    conn.destroy() // one publisher at a time
    return
  }
  publisher = conn
  base = ++phases * PHASE_SPAN
  pending.clear()
  done = new Uint8Array(1 << 16)
  measuring = false
  conn.setNoDelay(true)
  conn.write(`b ${base}\n`)
  let buf = ''
  conn.setEncoding('utf8')
  conn.on('data', (chunk: string) => {
    buf += chunk
    let nl: number
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      if (line === 'm') {
        hist = new LatencyHistogram()
        deliveries = completedInWindow = duplicates = misdelivered = stale = untracked = closedInWindow = 0
        cpuAtStart = process.cpuUsage()
        windowStarted = performance.now()
        measuring = true
      } else if (line === 'e') {
        const r = result()
        measuring = false
        flushReports()
        conn.write(JSON.stringify(r) + '\n')
      }
    }
  })
  const endPhase = () => {
    if (publisher !== conn) return
    publisher = undefined
    measuring = false
    toReport = []
  }
  conn.on('close', endPhase)
  conn.on('error', endPhase)
}

function fdLimit(): number {
  return Number(/Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? 0)
}

async function main(): Promise<void> {
  setTimeout(() => process.exit(3), opts.openTimeoutMs + opts.holdMs).unref()
  const total = opts.channels.length * opts.subscribers
  const started = performance.now()
  let next = 0
  const worker = async () => {
    while (next < total) await open(next++)
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, total) }, worker))
  const openMs = performance.now() - started
  const progress = createServer(startPhase)
  await new Promise<void>((r) => progress.listen(0, '127.0.0.1', r))
  const address = progress.address()
  holding = true
  process.on('SIGTERM', () => {
    process.stdout.write(JSON.stringify({ closed_during_hold: closedDuringHold }) + '\n', () => process.exit(0))
  })
  process.stdout.write(
    JSON.stringify({
      connections: total,
      connected,
      failed,
      first_error: firstError ?? null,
      open_ms: Math.round(openMs),
      progress_port: typeof address === 'object' && address ? address.port : 0,
      fd_limit: fdLimit(),
      rss_mb: Math.round(process.memoryUsage.rss() / 2 ** 20),
    }) + '\n',
  )
  setInterval(() => {}, 1 << 30)
}

main().catch((err: unknown) => {
  process.stderr.write(`ws-fanout-sub failed: ${String(err)}\n`)
  process.exit(1)
})
