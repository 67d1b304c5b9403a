import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream'
import { tcpReachable } from './services.js'

/** The machine's NATS (JetStream enabled); tests gate on `natsReachable()` with requireService. */
export const natsUrlForTests = 'nats://127.0.0.1:4222'

export function natsReachable(): Promise<boolean> {
  return tcpReachable('127.0.0.1', 4222)
}

/** A start that does not reach "accepting clients" within this is a failure, with the server's output. */
const START_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 10_000

export interface NatsServerOptions {
  /** Default true (`-js`). */
  jetstream?: boolean
  /** Store directory; default a fresh one under os.tmpdir(), removed by cleanup(). */
  storeDir?: string
  /** Default: any free port (learned from the server's log, then kept for restarts). */
  port?: number
  /** Extra nats-server configuration text (written to a config file passed with -c). */
  extraConfig?: string
}

export interface NatsServer {
  url: string
  port: number
  storeDir: string
  /** Every line the server printed, over all its starts. */
  output: string[]
  /** Ends the server (default SIGTERM) and waits for its exit. No-op when not running. */
  stop(signal?: NodeJS.Signals): Promise<void>
  /** SIGKILL: no shutdown at all, as a crash. */
  kill(): Promise<void>
  /** Starts it again on the same port and store, resolving once it accepts clients. */
  start(): Promise<void>
  /** Stops it and removes the store and config it made. */
  cleanup(): Promise<void>
}

function natsServerBinary(): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, 'nats-server'))) return join(dir, 'nats-server')
  }
  return '/usr/sbin/nats-server'
}

/**
 * Runs its own `nats-server` on 127.0.0.1 (for tests that kill or restart NATS: the
 * machine's server on 4222 is shared and must never be stopped). Resolves once a client
 * connects and, with JetStream, once JetStream answers.
 */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServer> {
  const jetstream = opts.jetstream ?? true
  const ownDir = await mkdtemp(join(tmpdir(), 'mc-nats-'))
  const storeDir = opts.storeDir ?? join(ownDir, 'store')
  let configFile: string | undefined
  if (opts.extraConfig !== undefined) {
    configFile = join(ownDir, 'nats.conf')
    await writeFile(configFile, opts.extraConfig)
  }
  const output: string[] = []
  let port = opts.port ?? -1
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()

  const startOnce = async (): Promise<void> => {
    const args = ['-a', '127.0.0.1', '-p', String(port), '-sd', storeDir]
    if (jetstream) args.push('-js')
    if (configFile !== undefined) args.push('-c', configFile)
    const proc = spawn(natsServerBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] })
    child = proc
    exited = new Promise((resolve) => proc.once('exit', () => resolve()))
    const startedAt = output.length
    const listening = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`nats-server did not listen in ${START_TIMEOUT_MS} ms:\n${output.slice(startedAt).join('\n')}`)),
        START_TIMEOUT_MS,
      )
      const onLine = (line: string) => {
        output.push(line)
        const m = /Listening for client connections on [^\s]*:(\d+)/.exec(line)
        if (m) {
          clearTimeout(timer)
          resolve(Number(m[1]))
        }
      }
      for (const stream of [proc.stdout, proc.stderr]) {
        let buffered = ''
        stream?.setEncoding('utf8').on('data', (chunk: string) => {
          buffered += chunk
          let nl: number
          while ((nl = buffered.indexOf('\n')) !== -1) {
            onLine(buffered.slice(0, nl))
            buffered = buffered.slice(nl + 1)
          }
        })
      }
      proc.once('error', (err) => {
        clearTimeout(timer)
        reject(new Error(`nats-server could not be started: ${err.message}`))
      })
      proc.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`nats-server exited (${code ?? signal}) before listening:\n${output.slice(startedAt).join('\n')}`))
      })
    })
    try {
      port = await listening
      await waitReady(`nats://127.0.0.1:${port}`, jetstream, () => output.slice(startedAt).join('\n'))
    } catch (err) {
      proc.kill('SIGKILL')
      await exited
      throw err
    }
  }

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const proc = child
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    proc.kill(signal)
    const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS)
    await exited
    clearTimeout(timer)
  }

  try {
    await startOnce()
  } catch (err) {
    await rm(ownDir, { recursive: true, force: true })
    throw err
  }
  const server: NatsServer = {
    get url() {
      return `nats://127.0.0.1:${port}`
    },
    get port() {
      return port
    },
    storeDir,
    output,
    stop,
    kill: () => stop('SIGKILL'),
    async start() {
      await stop()
      await startOnce()
    },
    async cleanup() {
      await stop()
      await rm(ownDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })
    },
  }
  return server
}

/**
 * Until a client connects (and JetStream answers): the log line alone comes a moment early.
 * With credentials required, an authorization error is the sign of life (JetStream unchecked).
 */
async function waitReady(url: string, jetstream: boolean, log: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const nc = await connect({ servers: url, timeout: 1000, reconnect: false })
      try {
        if (jetstream) await (await jetstreamManager(nc, { timeout: 2000 })).getAccountInfo()
        return
      } finally {
        await nc.close()
      }
    } catch (err) {
      // A server that wants credentials (extraConfig) has answered the handshake: it is up.
      if ((err as { name?: string } | null)?.name === 'AuthorizationError' || /authorization/i.test(String(err))) return
      last = err
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`nats-server at ${url} did not become ready: ${String(last)}\n${log()}`)
}

/** Runs `fn` with a short-lived connection and JetStream manager, then closes them. */
export async function withJsm<T>(url: string, fn: (jsm: JetStreamManager, nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connect({ servers: url, timeout: 2000, reconnect: false })
  try {
    return await fn(await jetstreamManager(nc, { timeout: 5000 }), nc)
  } finally {
    await nc.close()
  }
}

export interface StoredMessage {
  seq: number
  subject: string
  data: Uint8Array
  headers: Record<string, string>
}

/** How many messages `stream` holds (0 when the stream does not exist). */
export async function streamMessageCount(url: string, stream: string): Promise<number> {
  return withJsm(url, async (jsm) => {
    try {
      return (await jsm.streams.info(stream)).state.messages
    } catch (err) {
      if (isStreamNotFound(err)) return 0
      throw err
    }
  })
}

/** Every message `stream` holds, in order (reads by sequence; fine for a test's few messages). */
export async function streamMessages(url: string, stream: string): Promise<StoredMessage[]> {
  return withJsm(url, async (jsm) => {
    const { state } = await jsm.streams.info(stream)
    const out: StoredMessage[] = []
    if (state.messages === 0) return out
    for (let seq = state.first_seq; seq <= state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq }).catch((err: unknown) => {
        // A deleted sequence inside the range is a gap, not an error.
        if (/no message found/i.test(String(err))) return null
        throw err
      })
      if (m === null) continue
      const headers: Record<string, string> = {}
      if (m.header !== undefined) for (const [k, v] of m.header) headers[k] = v[0] ?? ''
      out.push({ seq: m.seq, subject: m.subject, data: m.data, headers })
    }
    return out
  })
}

/** Deletes a test's own streams; missing ones are fine (cleanup runs after failures too). */
export async function deleteStreams(url: string, ...names: string[]): Promise<void> {
  await withJsm(url, async (jsm) => {
    for (const name of names) {
      try {
        await jsm.streams.delete(name)
      } catch (err) {
        if (!isStreamNotFound(err)) throw err
      }
    }
  })
}

function isStreamNotFound(err: unknown): boolean {
  return /stream not found/i.test(String(err)) || (err as { name?: string } | null)?.name === 'StreamNotFoundError'
}

/** A name unique to this test run, for subjects and streams (letters, digits, `_`). */
export function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`
}
