/**
 * MQTT QoS 1 load generator, run as its own process, with the `mqtt` package as the device
 * library. Connects one client per entry of `clients` (its own topic and, for the
 * gateway, its device's credentials), then keeps `inflight` QoS 1 publishes of a
 * `payloadBytes` payload outstanding per client for `durationMs` (after `warmupMs`): a new
 * publish goes out as each PUBACK arrives. Prints one JSON result line shaped like
 * ws-load's: PUBACKs in the measured window (`frames`, `lines`: one message each), their
 * latency from publish to PUBACK, and errors (an MQTT 5 PUBACK with a failure reason, a
 * connection lost mid-run).
 *
 * With `rate` (messages/s over all clients) it is paced instead, as ws-load is: one 1 ms
 * timer, every client sends the messages due since it started, never more than
 * `inflight` outstanding (the others are skipped and counted).
 *
 * A broker that refuses the connection (nothing listening, a CONNACK refusal) is not a
 * crash: the result line says so in `connect_error` and the run measures nothing.
 * The publishes sent in answer to one burst of PUBACKs leave in one write (see drive): with
 * a system call per publish the load generator would be the bottleneck.
 * Bounded in time and count: it always stops by itself.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { reading } from './payload.js'
import { Tally } from './tally.js'

export interface MqttLoadClient {
  topic: string
  username?: string
  password?: string
}

export interface MqttLoadOptions {
  /** mqtt://host:port */
  url: string
  clients: MqttLoadClient[]
  inflight: number
  payloadBytes: number
  durationMs: number
  warmupMs: number
  /** 4: MQTT 3.1.1 (default), 5: MQTT 5. */
  protocolVersion?: 4 | 5
  /** Paced mode: messages per second over all clients. */
  rate?: number
}

const CONNECT_TIMEOUT_MS = 30_000
const opts = JSON.parse(process.argv[2] ?? '{}') as MqttLoadOptions
const payload = reading(opts.payloadBytes)
const paced = opts.rate !== undefined && opts.rate > 0
const perClientRate = paced ? (opts.rate as number) / opts.clients.length : 0
const tally = new Tally()
const clients: MqttClient[] = []
let stopped = false
let sentTotal = 0
let skipped = 0

const pacers: Array<() => void> = []
const pacer = paced
  ? setInterval(() => {
      if (stopped) return
      for (const tick of pacers) tick()
    }, 1)
  : undefined

function connect(index: number, c: MqttLoadClient): Promise<MqttClient> {
  const options: IClientOptions = {
    clientId: `mc-bench-${process.pid}-${index}`,
    protocolVersion: opts.protocolVersion ?? 4,
    clean: true,
    keepalive: 60,
    // A lost connection is an error of the run, never silently reconnected.
    reconnectPeriod: 0,
    connectTimeout: CONNECT_TIMEOUT_MS,
    ...(c.username !== undefined ? { username: c.username } : {}),
    ...(c.password !== undefined ? { password: c.password } : {}),
  }
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(opts.url, options)
    clients.push(client)
    const fail = (err: Error) => {
      client.end(true)
      reject(err)
    }
    const closedEarly = () => fail(new Error(`client ${index}: connection closed before CONNACK`))
    client.once('connect', () => {
      client.removeListener('error', fail)
      client.removeListener('close', closedEarly)
      client.on('error', (err) => {
        if (!stopped) tally.error(`client ${index}: ${err.message}`)
      })
      client.on('close', () => {
        if (!stopped) tally.error(`client ${index}: connection closed by the broker`)
      })
      resolve(client)
    })
    client.once('error', fail)
    // reconnectPeriod 0: a refused TCP connect ends in close without error on some paths.
    client.once('close', closedEarly)
  })
}

function drive(client: MqttClient, topic: string): void {
  let outstanding = 0
  let corked = false
  const uncork = () => {
    corked = false
    client.stream.uncork()
  }
  const send = () => {
    // mqtt.js handles each PUBACK of a burst in a tick of its own, and mqtt-packet uncorks
    // at the end of each: the publishes answering one burst would leave one system call
    // each. Held corked until the event loop's next turn, they leave in one write.
    if (!corked) {
      corked = true
      client.stream.cork()
      setImmediate(uncork)
    }
    outstanding++
    sentTotal++
    const sentAt = performance.now()
    client.publish(topic, payload, { qos: 1 }, (err) => {
      outstanding--
      if (err) {
        if (!stopped) tally.error(err.message)
      } else tally.ack(sentAt)
      if (!stopped && !paced && client.connected) send()
    })
  }
  if (!paced) {
    for (let i = 0; i < opts.inflight; i++) send()
    return
  }
  // A random phase, so that the clients' messages do not all fall on the same tick.
  const t0 = performance.now() + Math.random() * (1000 / perClientRate)
  let due = 0
  pacers.push(() => {
    const target = Math.floor(((performance.now() - t0) / 1000) * perClientRate)
    while (due < target) {
      due++
      if (outstanding < opts.inflight && client.connected) send()
      else if (tally.measuring) skipped++
    }
  })
}

async function main(): Promise<void> {
  const hardStop = setTimeout(() => process.exit(2), opts.warmupMs + opts.durationMs + CONNECT_TIMEOUT_MS + 60_000)
  hardStop.unref()
  let connected: MqttClient[]
  try {
    connected = await Promise.all(opts.clients.map((c, i) => connect(i, c)))
  } catch (err) {
    stopped = true
    clearInterval(pacer)
    process.stdout.write(JSON.stringify({ ...tally.result(1, 1), frames_per_s: 0, lines_per_s: 0, connect_error: (err as Error).message }) + '\n')
    for (const c of clients) c.end(true)
    process.exit(0)
  }
  connected.forEach((client, i) => drive(client, (opts.clients[i] as MqttLoadClient).topic))
  const seconds = await tally.window(opts.warmupMs, opts.durationMs)
  stopped = true
  clearInterval(pacer)
  process.stdout.write(
    JSON.stringify({
      ...tally.result(1, seconds),
      frames_sent_total: sentTotal,
      payload_bytes: payload.length,
      ...(paced ? { target_frames_per_s: opts.rate, skipped } : {}),
    }) + '\n',
  )
  for (const c of clients) c.end(true)
  process.exit(0)
}

main().catch((err: unknown) => {
  process.stderr.write(`mqtt-load failed: ${String(err)}\n`)
  process.exit(1)
})
