/**
 * A nats-server of the bench's own: JetStream with its store in a fresh directory under
 * the system's temp folder, a free port on loopback, and with `mqtt` an MQTT listener too
 * (nats-server's own MQTT: it needs `server_name` and JetStream; a topic `raw/x` becomes
 * the subject `raw.x`). Never the machine's NATS: a run purges and deletes what it made.
 * Binary: $NATS_SERVER_BIN, else `nats-server` on PATH or in /usr/sbin (Debian package
 * `nats-server`).
 */
import { spawn } from 'node:child_process'
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect as tcpConnect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { track, trackDir } from '../procs.js'

export interface NatsServer {
  /** nats://127.0.0.1:<port> */
  url: string
  /** mqtt://127.0.0.1:<port> with the `mqtt` option. */
  mqttUrl: string | undefined
  pid: number
  /** Creates the stream when missing (file storage, limits of the server's defaults). */
  ensureStream(name: string, subjects: string[]): Promise<void>
  /** Removes every message of the stream, keeping its configuration. */
  purge(name: string): Promise<void>
  /** Messages in the stream now. */
  messages(name: string): Promise<number>
  stop(): Promise<void>
}

export function natsServerBinary(): string | null {
  const executable = (p: string) => {
    try {
      accessSync(p, constants.X_OK)
      return true
    } catch {
      return false
    }
  }
  const fromEnv = process.env.NATS_SERVER_BIN
  if (fromEnv) return executable(fromEnv) ? fromEnv : null
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/bin']) {
    if (dir && executable(join(dir, 'nats-server'))) return join(dir, 'nats-server')
  }
  return null
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0))
    })
  })
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host: '127.0.0.1', port })
    s.setTimeout(500, () => {
      s.destroy()
      resolve(false)
    })
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

let started = 0

export async function startNatsServer(o: { mqtt?: boolean } = {}): Promise<NatsServer> {
  const binary = natsServerBinary()
  if (!binary) throw new Error('nats-server not installed (apt-get install nats-server, or set NATS_SERVER_BIN)')
  let lastError: Error | undefined
  // A free port may be taken by someone else before the server binds it: a few attempts.
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'mc-bench-nats-'))
    trackDir(dir)
    const port = await freePort()
    const mqttPort = o.mqtt ? await freePort() : undefined
    const config = [
      `server_name: ${JSON.stringify(`mc_bench_${process.pid}_${++started}`)}`,
      `listen: "127.0.0.1:${port}"`,
      `jetstream { store_dir: ${JSON.stringify(join(dir, 'js'))} }`,
      ...(mqttPort !== undefined ? [`mqtt { host: "127.0.0.1", port: ${mqttPort} }`] : []),
    ].join('\n')
    const configFile = join(dir, 'nats.conf')
    writeFileSync(configFile, config + '\n')
    const child = spawn(binary, ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] })
    track(child)
    let log = ''
    child.stderr?.setEncoding('utf8').on('data', (c: string) => {
      log = (log + c).slice(-4000)
    })
    const exited = new Promise<void>((r) => {
      child.once('exit', () => r())
      child.once('error', () => r())
    })
    const stopServer = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000)
        await exited
        clearTimeout(killer)
      }
      rmSync(dir, { recursive: true, force: true })
    }
    const url = `nats://127.0.0.1:${port}`
    let nc: NatsConnection | undefined
    let jsm: JetStreamManager | undefined
    const deadline = Date.now() + 20_000
    while (child.exitCode === null && Date.now() < deadline && jsm === undefined) {
      if ((await listening(port)) && (mqttPort === undefined || (await listening(mqttPort)))) {
        try {
          nc ??= await connect({ servers: url, timeout: 2000 })
          const m = await jetstreamManager(nc, { timeout: 2000 })
          await m.getAccountInfo()
          jsm = m
          break
        } catch {
          // JetStream not ready yet
        }
      }
      await new Promise((r) => setTimeout(r, 50))
    }
    if (jsm === undefined) {
      await nc?.close()
      await stopServer()
      const how = child.exitCode !== null ? ` (exited with code ${child.exitCode})` : ''
      // The log names the store directory: results name no paths of the machine.
      lastError = new Error(`nats-server did not start on ${url}${how}: ${log.replaceAll(dir, '<store>').slice(-1000)}`)
      continue
    }
    const m = jsm
    const conn = nc as NatsConnection
    return {
      url,
      mqttUrl: mqttPort === undefined ? undefined : `mqtt://127.0.0.1:${mqttPort}`,
      pid: child.pid as number,
      async ensureStream(name, subjects) {
        try {
          await m.streams.info(name)
        } catch {
          await m.streams.add({ name, subjects })
        }
      },
      async purge(name) {
        await m.streams.purge(name)
      },
      async messages(name) {
        return (await m.streams.info(name)).state.messages
      },
      async stop() {
        await conn.close().catch(() => {})
        await stopServer()
      },
    }
  }
  throw lastError ?? new Error('nats-server did not start')
}
