/**
 * Load generator for /time-series, run as its own process. Opens `connections`
 * WebSockets, authenticates, then keeps `inflight` frames outstanding per connection for
 * `durationMs` (after `warmupMs`), and prints one JSON result line: frames and lines
 * acknowledged in the measured window, ack latency percentiles, and non-OK replies.
 * Bounded in time and count: it always stops by itself.
 */
import WebSocket from 'ws'

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
}

const opts = JSON.parse(process.argv[2] ?? '{}') as Options
const line = (i: number) =>
  `cpu,host=server${String(i % 100).padStart(2, '0')},region=us-west usage_idle=98.2,usage_user=1.1,usage_system=0.7 ${1_700_000_000_000_000_000n + BigInt(i)}`
const frame = Buffer.from(Array.from({ length: opts.linesPerFrame }, (_, i) => line(i)).join('\n'))

// Latency samples of the measured window, in microseconds.
const MAX_SAMPLES = 2_000_000
const samples = new Float64Array(MAX_SAMPLES)
let sampleCount = 0
let measuring = false
let stopped = false
let acked = 0
let errors = 0
let firstError: string | undefined

function connect(index: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const localAddress = opts.localAddresses?.[index % opts.localAddresses.length]
    const ws = new WebSocket(opts.url, { perMessageDeflate: false, ...(localAddress ? { localAddress } : {}) })
    const sentAt: number[] = []
    let head = 0
    const send = () => {
      sentAt.push(performance.now())
      ws.send(frame, { binary: false })
    }
    ws.on('open', () => ws.send(`$AUTH ${opts.token}`))
    ws.on('message', (data) => {
      const text = data.toString()
      if (text === 'AUTH_SUCCESS' && sentAt.length === 0) {
        for (let i = 0; i < opts.inflight; i++) send()
        resolve()
        return
      }
      const t0 = sentAt[head++] as number
      if (head > 4096) {
        sentAt.splice(0, head)
        head = 0
      }
      if (text !== 'OK') {
        errors++
        firstError ??= text
      } else if (measuring) {
        acked++
        if (sampleCount < MAX_SAMPLES) samples[sampleCount++] = (performance.now() - t0) * 1000
      }
      if (!stopped) send()
    })
    ws.on('error', (err) => reject(err))
    ws.on('close', (code) => {
      if (!stopped) {
        errors++
        firstError ??= `closed ${code}`
      }
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
  await new Promise((r) => setTimeout(r, opts.warmupMs))
  measuring = true
  const started = performance.now()
  await new Promise((r) => setTimeout(r, opts.durationMs))
  measuring = false
  const seconds = (performance.now() - started) / 1000
  stopped = true
  const sorted = samples.subarray(0, sampleCount).sort()
  const pct = (p: number) => (sampleCount === 0 ? null : (sorted[Math.min(sampleCount - 1, Math.floor(p * sampleCount))] as number) / 1000)
  process.stdout.write(
    JSON.stringify({
      frames: acked,
      lines: acked * opts.linesPerFrame,
      seconds,
      frames_per_s: acked / seconds,
      lines_per_s: (acked * opts.linesPerFrame) / seconds,
      p50_ms: pct(0.5),
      p99_ms: pct(0.99),
      errors,
      first_error: firstError ?? null,
    }) + '\n',
  )
  for (const ws of sockets) ws.terminate()
  process.exit(0)
}

main().catch((err: unknown) => {
  process.stderr.write(`ws-load failed: ${String(err)}\n`)
  process.exit(1)
})
