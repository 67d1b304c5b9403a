/**
 * Idle-connection load generator for /time-series, run as its own process: opens
 * `connections` WebSockets from `localAddress` (at most `concurrency` handshakes at once),
 * authenticates each with `$AUTH <token>`, and prints one JSON line once every connection
 * has its answer: how many got AUTH_SUCCESS, how many failed and why, how long it took,
 * its own fd limit and RSS. Then it holds the connections, sending nothing, until SIGTERM
 * (it then prints how many the server closed meanwhile and exits) or `holdMs` (it exits by
 * itself, code 3). Bounded in time and count: it always stops by itself.
 */
import { readFileSync } from 'node:fs'
import WebSocket from 'ws'

interface Options {
  url: string
  token: string
  connections: number
  localAddress?: string
  concurrency?: number
  /** Longest time to hold the connections after opening them. */
  holdMs: number
  /** Longest time to open them. */
  openTimeoutMs: number
}

const opts = JSON.parse(process.argv[2] ?? '{}') as Options
let authSuccess = 0
let authFailed = 0
let connectErrors = 0
let firstError: string | undefined
let holding = false
let closedDuringHold = 0
const sockets: WebSocket[] = []

function open(): Promise<void> {
  return new Promise((resolve) => {
    const ws = new WebSocket(opts.url, {
      perMessageDeflate: false,
      handshakeTimeout: 30_000,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    })
    let answered = false
    const settle = () => {
      if (answered) return false
      answered = true
      resolve()
      return true
    }
    ws.on('open', () => ws.send(`$AUTH ${opts.token}`))
    ws.on('message', (data) => {
      const text = data.toString()
      if (!settle()) return
      if (text === 'AUTH_SUCCESS') authSuccess++
      else {
        authFailed++
        firstError ??= text.slice(0, 200)
      }
    })
    ws.on('error', (err) => {
      if (settle()) {
        connectErrors++
        firstError ??= err.message
      }
    })
    ws.on('close', (code) => {
      if (settle()) {
        connectErrors++
        firstError ??= `closed ${code} before any answer`
      } else if (holding) closedDuringHold++
    })
    sockets.push(ws)
  })
}

function fdLimit(): number {
  return Number(/Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? 0)
}

async function main(): Promise<void> {
  const hardStop = setTimeout(() => process.exit(3), opts.openTimeoutMs + opts.holdMs)
  hardStop.unref()
  const started = performance.now()
  let next = 0
  const worker = async () => {
    while (next < opts.connections) {
      next++
      await open()
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 100, opts.connections) }, worker))
  const openMs = performance.now() - started
  holding = true
  process.stdout.write(
    JSON.stringify({
      connections: opts.connections,
      auth_success: authSuccess,
      auth_failed: authFailed,
      connect_errors: connectErrors,
      first_error: firstError ?? null,
      open_ms: Math.round(openMs),
      fd_limit: fdLimit(),
      rss_mb: Math.round(process.memoryUsage.rss() / 2 ** 20),
    }) + '\n',
  )
  // Hold until told to stop (or the hard stop above).
  process.on('SIGTERM', () => {
    process.stdout.write(JSON.stringify({ closed_during_hold: closedDuringHold }) + '\n', () => process.exit(0))
  })
  setInterval(() => {}, 1 << 30)
}

main().catch((err: unknown) => {
  process.stderr.write(`ws-idle failed: ${String(err)}\n`)
  process.exit(1)
})
