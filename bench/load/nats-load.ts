/**
 * JetStream publish load generator (the forwarding baseline), run as its own process:
 * nats.js (`@nats-io/transport-node` + `@nats-io/jetstream`) publishing straight to a
 * stream with acks, the same messages the gateway forwards. One NATS connection (the
 * gateway forwards over one), `lanes` × `inflight` publishes outstanding (20 × 20, as
 * the MQTT load): each lane is one device subject, and a new publish goes out as each
 * ack arrives. Every message carries what the gateway's carry: the same payload size, a
 * unique `Nats-Msg-Id` (the stream de-duplicates on it) and the headers `Device-Id`,
 * `Device-Type`, `Mqtt-Topic`, `Received-At`. Prints one JSON result line shaped like
 * ws-load's (acks in the measured window, publish-to-ack latency). With `rate` it is paced
 * as mqtt-load is (the latency floor of JetStream itself below saturation).
 * Bounded in time and count: it always stops by itself.
 */
import { jetstream } from '@nats-io/jetstream'
import { connect, headers } from '@nats-io/transport-node'
import { reading } from './payload.js'
import { Tally } from './tally.js'

export interface NatsLoadOptions {
  /** nats://host:port */
  url: string
  /** One subject per lane (`raw.<device id>`). */
  subjects: string[]
  inflight: number
  payloadBytes: number
  durationMs: number
  warmupMs: number
  /** How long one publish waits for its ack. */
  ackTimeoutMs?: number
  /** Paced mode: messages per second over all lanes (as mqtt-load's `rate`). */
  rate?: number
}

const opts = JSON.parse(process.argv[2] ?? '{}') as NatsLoadOptions
const payload = reading(opts.payloadBytes)
const paced = opts.rate !== undefined && opts.rate > 0
const perLaneRate = paced ? (opts.rate as number) / opts.subjects.length : 0
const tally = new Tally()
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

async function main(): Promise<void> {
  const hardStop = setTimeout(() => process.exit(2), opts.warmupMs + opts.durationMs + 60_000)
  hardStop.unref()
  let nc
  try {
    // The gateway's client options that matter here: no async stack trace per request.
    nc = await connect({ servers: opts.url, timeout: 10_000, maxReconnectAttempts: 0, noAsyncTraces: true })
  } catch (err) {
    clearInterval(pacer)
    process.stdout.write(JSON.stringify({ ...tally.result(1, 1), frames_per_s: 0, lines_per_s: 0, connect_error: (err as Error).message }) + '\n')
    process.exit(0)
  }
  const js = jetstream(nc, { timeout: opts.ackTimeoutMs ?? 10_000 })
  // A boot epoch and a counter, as the gateway makes its ids: unique, cheap.
  const epoch = `${process.pid}-${Date.now().toString(36)}`
  let counter = 0
  const lane = (subject: string) => {
    const deviceId = subject.slice('raw.'.length)
    let outstanding = 0
    const send = () => {
      sentTotal++
      outstanding++
      const h = headers()
      h.set('Device-Id', deviceId)
      h.set('Device-Type', 'bench-device')
      h.set('Mqtt-Topic', subject)
      h.set('Received-At', new Date().toISOString())
      const sentAt = performance.now()
      js.publish(subject, payload, { msgID: `${epoch}-${counter++}`, headers: h }).then(
        () => {
          outstanding--
          tally.ack(sentAt)
          if (!stopped && !paced) send()
        },
        // Not sent again: a publish that fails at once (no stream) would spin.
        (err: unknown) => {
          outstanding--
          if (!stopped) tally.error((err as Error).message)
        },
      )
    }
    if (!paced) {
      for (let i = 0; i < opts.inflight; i++) send()
      return
    }
    // A random phase, so that the lanes' messages do not all fall on the same tick.
    const t0 = performance.now() + Math.random() * (1000 / perLaneRate)
    let due = 0
    pacers.push(() => {
      const target = Math.floor(((performance.now() - t0) / 1000) * perLaneRate)
      while (due < target) {
        due++
        if (outstanding < opts.inflight) send()
        else if (tally.measuring) skipped++
      }
    })
  }
  for (const s of opts.subjects) lane(s)
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
  // Not drained: the acks still owed after the window are of no interest.
  await nc.close()
  process.exit(0)
}

main().catch((err: unknown) => {
  process.stderr.write(`nats-load failed: ${String(err)}\n`)
  process.exit(1)
})
