/**
 * Load generator for /time-series, run as its own process. Opens `connections`
 * WebSockets, authenticates, then keeps `inflight` frames outstanding per connection for
 * `durationMs` (after `warmupMs`), and prints one JSON result line: frames and lines
 * acknowledged in the measured window, ack latency percentiles, and non-OK replies.
 *
 * With `rate` (frames/s over all connections) it is paced instead: every connection sends
 * its share of the rate, driven by one 1 ms timer (the frames due since it started, never
 * more than `inflight` outstanding; frames that would pass that cap are skipped and
 * counted), so the latency is measured below saturation.
 * Frames sent in one tick (closed loop: one per reply of a burst of replies) leave in one
 * write, the TCP socket corked until the end of the tick: with one system call per frame
 * the load generator itself would be the bottleneck (about 90-100k frames/s against the
 * do-nothing server on 2 cores, against 270k+ corked), and the ceiling would measure it
 * rather than the machine.
 * Bounded in time and count: it always stops by itself.
 */
import type { Socket } from 'node:net'
import WebSocket from 'ws'
import { Tally, type CpuOf } from './tally.js'
import { body } from './lines.js'

interface Options {
  url: string
  token: string
  connections: number
  inflight: number
  linesPerFrame: number
  durationMs: number
  warmupMs: number
  /** Local addresses to spread connections over (past the ephemeral-port limit). */
  localAddresses?: string[]
  /** Paced mode: frames per second over all connections. */
  rate?: number
  /** Processes whose CPU over the measured window the result reports (see Tally.window). */
  cpuOf?: CpuOf
}

const opts = JSON.parse(process.argv[2] ?? '{}') as Options
const frame = body(opts.linesPerFrame)
const TEXT = { binary: false }
const paced = opts.rate !== undefined && opts.rate > 0
const perConnectionRate = paced ? (opts.rate as number) / opts.connections : 0
const tally = new Tally()
let stopped = false
let sentTotal = 0
let skipped = 0

// Paced mode: one timer for all connections, every millisecond (the shortest a Node timer
// waits); each tick every connection sends the frames due since it started.
const pacers: Array<() => void> = []
const pacer = paced
  ? setInterval(() => {
      if (stopped) return
      for (const tick of pacers) tick()
    }, 1)
  : undefined

function connect(index: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const localAddress = opts.localAddresses?.[index % opts.localAddresses.length]
    const ws = new WebSocket(opts.url, { perMessageDeflate: false, ...(localAddress ? { localAddress } : {}) })
    const sentAt: number[] = []
    let head = 0
    let authed = false
    let corked = false
    const uncork = () => {
      corked = false
      tcp()?.uncork()
    }
    const send = () => {
      // The frames sent in one tick (one per reply of a burst) leave in one write.
      if (!corked) {
        corked = true
        tcp()?.cork()
        process.nextTick(uncork)
      }
      sentAt.push(performance.now())
      sentTotal++
      ws.send(frame, TEXT)
    }
    const tcp = () => (ws as unknown as { _socket?: Socket })._socket
    const outstanding = () => sentAt.length - head
    const startPacing = () => {
      // A random phase, so that the connections' frames do not all fall on the same tick.
      const t0 = performance.now() + Math.random() * (1000 / perConnectionRate)
      let due = 0
      pacers.push(() => {
        const target = Math.floor(((performance.now() - t0) / 1000) * perConnectionRate)
        while (due < target) {
          due++
          if (outstanding() < opts.inflight) send()
          else if (tally.measuring) skipped++
        }
      })
    }
    ws.on('open', () => ws.send(`$AUTH ${opts.token}`))
    ws.on('message', (data) => {
      const text = data.toString()
      if (!authed) {
        if (text !== 'AUTH_SUCCESS') {
          reject(new Error(`connection ${index}: ${text}`))
          return
        }
        authed = true
        if (paced) startPacing()
        else for (let i = 0; i < opts.inflight; i++) send()
        resolve()
        return
      }
      const t0 = sentAt[head++] as number
      if (head > 4096) {
        sentAt.splice(0, head)
        head = 0
      }
      if (text !== 'OK') tally.error(text)
      else tally.ack(t0)
      if (!stopped && !paced) send()
    })
    ws.on('error', (err) => reject(err))
    ws.on('close', (code) => {
      if (!stopped) tally.error(`closed ${code}`)
    })
    sockets.push(ws)
  })
}

const sockets: WebSocket[] = []

async function main(): Promise<void> {
  const hardStop = setTimeout(() => process.exit(2), opts.warmupMs + opts.durationMs + 60_000)
  hardStop.unref()
  // Open in small groups so the connect burst does not look like a flood.
  for (let i = 0; i < opts.connections; i += 64) {
    await Promise.all(Array.from({ length: Math.min(64, opts.connections - i) }, (_, k) => connect(i + k)))
  }
  const seconds = await tally.window(opts.warmupMs, opts.durationMs, opts.cpuOf)
  stopped = true
  clearInterval(pacer)
  process.stdout.write(
    JSON.stringify({
      ...tally.result(opts.linesPerFrame, seconds),
      frames_sent_total: sentTotal,
      ...(paced ? { target_frames_per_s: opts.rate, skipped } : {}),
    }) + '\n',
  )
  for (const ws of sockets) ws.terminate()
  process.exit(0)
}

main().catch((err: unknown) => {
  process.stderr.write(`ws-load failed: ${String(err)}\n`)
  process.exit(1)
})
