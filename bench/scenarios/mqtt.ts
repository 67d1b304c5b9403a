import { randomUUID } from 'node:crypto'
import { tmpdir } from 'node:os'
import {
  addNote,
  baselineLoad,
  compare,
  emptyRow,
  gatewayRun,
  mqttLoad,
  natsLoad,
  percent,
  procStats,
  retrying,
  row,
  type Ctx,
  type GatewayRunStats,
  type LoadResult,
  type Row,
} from '../lib.js'
import type { MqttLoadClient } from '../load/mqtt-load.js'
import { localListenerPid, MOSQUITTO_URL } from '../servers/mosquitto.js'
import { natsServerBinary, startNatsServer, type NatsServer } from '../servers/nats-server.js'
import { mqttMetrics, provisionDevices } from './mqtt-gateway.js'

/**
 * MQTT QoS 1 publishing: one load generator (the `mqtt` package, 20 clients × 20
 * publishes in flight, 128-byte payloads, MQTT 3.1.1) against
 * - `mosquitto`: the machine's Mosquitto (127.0.0.1:1883, or $MOSQUITTO_URL), the broker peer;
 * - `gateway broker`: the embedded broker with forwarding off (no NATS_URL), devices
 *   provisioned over HTTP, each publishing to its `raw.<id>`;
 * - `gateway → JetStream`: the same, forwarding to JetStream on a nats-server of the
 *   bench's own, PUBACK once the stream has the message; then paced at half the rate it
 *   reached (the PUBACK latency below saturation);
 * - `nats.js → JetStream`: the same messages published straight to the same stream by
 *   nats.js with acks and as many in flight, on one connection (the forwarding baseline);
 * - except with --quick, the latency floors at that half rate: nats.js straight into the
 *   stream (what JetStream itself adds) and Mosquitto (what the load generator and the
 *   machine add);
 * - `nats-server MQTT`: a second nats-server with its own MQTT listener and a stream on
 *   `raw.>` (it forwards MQTT into JetStream, but does not wait for the store to PUBACK).
 * The stream is `RAW` on `raw.>`, made by the bench (so both JetStream variants write into
 * the same stream) and purged before each variant; after each, the messages it holds are
 * checked against the PUBACKs the load generator counted, and the nats-server's CPU
 * seconds over the load noted.
 * A peer that is not there (Mosquitto not running, no nats-server binary, the embedded
 * broker or the devices API not built) gives a row saying so, never a failed run.
 */
export const name = 'mqtt'

export const VARIANTS = {
  mosquitto: 'mosquitto',
  broker: 'gateway broker',
  forward: 'gateway → JetStream',
  forwardHalf: 'gateway → JetStream @ 50 % rate',
  mosquittoFloor: 'mosquitto @ same rate',
  nats: 'nats.js → JetStream',
  natsFloor: 'nats.js → JetStream @ same rate',
  natsMqtt: 'nats-server MQTT',
} as const

const CLIENTS = 20
const INFLIGHT = 20
const PAYLOAD_BYTES = 128
const STREAM = 'RAW'
const DEVICE_TYPE = 'bench-device'
// How long the nats-server MQTT peer may take to store what it acknowledged, after the load.
const STORE_SETTLE_MS = 5000

const load = { inflight: INFLIGHT, payloadBytes: PAYLOAD_BYTES }
const anonymous = (topic: (id: string) => string): MqttLoadClient[] => Array.from({ length: CLIENTS }, () => ({ topic: topic(randomUUID()) }))

type Measured = LoadResult & {
  gateway_metrics?: Record<string, number> | undefined
  stream_messages?: number
  /** CPU seconds of the nats-server over the load. */
  nats_cpu_s?: number
  unmeasured?: string
}

export async function run(ctx: Ctx): Promise<Row[]> {
  const rows: Row[] = []
  ctx.log(`${name}: mosquitto at ${MOSQUITTO_URL}`)
  const mosquittoPid = localListenerPid(MOSQUITTO_URL)
  const mosquitto = await baselineLoad(ctx, `${name} mosquitto`, () =>
    mqttLoad(ctx, { url: MOSQUITTO_URL, clients: anonymous((id) => `raw.${id}`), ...load }, mosquittoPid),
  )
  rows.push(toRow(VARIANTS.mosquitto, mosquitto))

  ctx.log(`${name}: embedded broker, forwarding off`)
  rows.push(await gatewayVariant(ctx, 'mqtt-broker', VARIANTS.broker, {}, undefined))

  // The floors (the same paced load against Mosquitto and straight into JetStream) only
  // help read the latency target: not worth their time in a smoke run.
  const floors = !ctx.quick
  let half: number | undefined
  await withNats(ctx, {}, [VARIANTS.forward, VARIANTS.forwardHalf, VARIANTS.nats, ...(floors ? [VARIANTS.natsFloor] : [])], rows, async (nats) => {
    ctx.log(`${name}: embedded broker forwarding to JetStream`)
    const forward = await gatewayVariant(ctx, 'mqtt-forward', VARIANTS.forward, { NATS_URL: nats.url }, nats)
    rows.push(forward)
    if (forward.frames_per_s) {
      half = Math.round(forward.frames_per_s / 2)
      ctx.log(`${name}: forwarding, paced at 50 % of its maximum (${half} msg/s)`)
      rows.push(await gatewayVariant(ctx, 'mqtt-forward-half', VARIANTS.forwardHalf, { NATS_URL: nats.url }, nats, half))
    } else rows.push(emptyRow(name, VARIANTS.forwardHalf, `not measured: ${VARIANTS.forward} was not`))
    ctx.log(`${name}: nats.js straight to JetStream`)
    rows.push(toRow(VARIANTS.nats, await direct(ctx, nats)))
    if (floors && half !== undefined) {
      ctx.log(`${name}: nats.js straight to JetStream at the same rate (latency floor)`)
      rows.push(paced(toRow(VARIANTS.natsFloor, await direct(ctx, nats, half)), half, 'latency floor of JetStream itself'))
    }
  })

  if (floors && half !== undefined && mosquitto.connect_error === undefined) {
    ctx.log(`${name}: mosquitto paced at the same rate (latency floor)`)
    const rate = half
    const floor = await baselineLoad(ctx, `${name} mosquitto @ same rate`, () =>
      mqttLoad(ctx, { url: MOSQUITTO_URL, clients: anonymous((id) => `raw.${id}`), ...load, rate }, mosquittoPid),
    )
    rows.push(paced(toRow(VARIANTS.mosquittoFloor, floor), rate, 'latency floor of the load generator and the machine'))
  }

  await withNats(ctx, { mqtt: true }, [VARIANTS.natsMqtt], rows, async (nats) => {
    ctx.log(`${name}: nats-server's own MQTT listener`)
    const r = await retrying(
      ctx,
      `${name} nats-server MQTT`,
      async (): Promise<Measured> => {
        await nats.purge(STREAM)
        const cpu = procStats(nats.pid).cpuS
        // In NATS MQTT the topic `raw/<id>` is the subject `raw.<id>`.
        const result = await mqttLoad(ctx, { url: nats.mqttUrl as string, clients: anonymous((id) => `raw/${id}`), ...load })
        const natsCpu = procStats(nats.pid).cpuS - cpu
        return { ...result, nats_cpu_s: natsCpu, stream_messages: await settledCount(nats, result.lines_acked_total) }
      },
      (x) => x.other_cpu_pct,
    )
    rows.push(toRow(VARIANTS.natsMqtt, r))
  })

  compare(rows, VARIANTS.broker, VARIANTS.mosquitto)
  compare(rows, VARIANTS.forward, VARIANTS.nats)
  const find = (v: string) => rows.find((r) => r.variant === v)
  const m = find(VARIANTS.mosquitto)
  const nm = find(VARIANTS.natsMqtt)
  if (nm?.lines_per_s && m?.lines_per_s) addNote(nm, `${percent(nm.lines_per_s, m.lines_per_s)} % of mosquitto`)
  const fw = find(VARIANTS.forward)
  if (fw?.lines_per_s && nm?.lines_per_s) addNote(fw, `${percent(fw.lines_per_s, nm.lines_per_s)} % of nats-server MQTT`)
  for (const r of rows) {
    if (r.lines_per_s === null) continue
    const shape =
      r.variant === VARIANTS.nats || r.variant === VARIANTS.natsFloor
        ? { connections: 1, subjects: CLIENTS, inflight_per_subject: INFLIGHT }
        : { clients: CLIENTS, inflight_per_client: INFLIGHT, mqtt: '3.1.1' }
    r.extra = { ...shape, payload_bytes: PAYLOAD_BYTES, ...r.extra }
  }
  return rows
}

/**
 * Runs `measure` with a nats-server of the bench's own holding the stream, stopped after;
 * when there is none to start, each of `variants` gets a row saying why.
 */
async function withNats(ctx: Ctx, o: { mqtt?: boolean }, variants: string[], rows: Row[], measure: (nats: NatsServer) => Promise<void>): Promise<void> {
  const nats = await peer(ctx, () => startNatsServer(o))
  if (typeof nats === 'string') {
    for (const v of variants) rows.push(emptyRow(name, v, nats))
    return
  }
  try {
    try {
      await nats.ensureStream(STREAM, ['raw.>'])
    } catch (err) {
      for (const v of variants) rows.push(emptyRow(name, v, `not measured: stream ${STREAM} could not be made: ${(err as Error).message.slice(0, 200)}`))
      return
    }
    await measure(nats)
  } finally {
    await nats.stop()
  }
}

/** nats.js straight into the stream (purged first), paced with `rate`, measured again when disturbed. */
function direct(ctx: Ctx, nats: NatsServer, rate?: number): Promise<Measured & { attempts: number }> {
  return retrying(
    ctx,
    `${name} nats.js${rate !== undefined ? ' @ same rate' : ''}`,
    async (): Promise<Measured> => {
      await nats.purge(STREAM)
      const cpu = procStats(nats.pid).cpuS
      const subjects = anonymous((id) => `raw.${id}`).map((c) => c.topic)
      const r = await natsLoad(ctx, { url: nats.url, subjects, ...load, ...(rate !== undefined ? { rate } : {}) })
      return { ...r, nats_cpu_s: procStats(nats.pid).cpuS - cpu, stream_messages: await nats.messages(STREAM) }
    },
    (r) => r.other_cpu_pct,
  )
}

/** A paced row's target rate, skipped messages and how much of the rate it reached. */
function paced(r: Row, rate: number, what: string): Row {
  if (r.lines_per_s === null) return r
  const { skipped = 0, ...rest } = (r.extra ?? {}) as { skipped?: number }
  r.extra = { ...rest, target_frames_per_s: rate, skipped_frames: skipped }
  addNote(r, `${what}: paced at ${rate.toLocaleString('en-US')} msg/s (50 % of ${VARIANTS.forward}), reached ${percent(r.frames_per_s, rate)} %`)
  return r
}

/** A peer started, or the note its rows get when it cannot be (never a failed run). */
async function peer(ctx: Ctx, start: () => Promise<NatsServer>): Promise<NatsServer | string> {
  if (natsServerBinary() === null) return 'not measured: nats-server not installed (apt-get install nats-server, or set NATS_SERVER_BIN)'
  try {
    return await start()
  } catch (err) {
    const why = (err as Error).message.replaceAll(tmpdir(), '<tmp>').slice(0, 300)
    ctx.log(`${name}: ${why}`)
    return `not measured: ${why}`
  }
}

/**
 * One gateway variant: a fresh gateway, CLIENTS devices provisioned on it, the stream
 * purged, the load, then the gateway's counters and (with `nats`) the stream's count.
 */
async function gatewayVariant(
  ctx: Ctx,
  label: string,
  variant: string,
  env: Record<string, string>,
  nats: NatsServer | undefined,
  rate?: number,
): Promise<Row> {
  const { result, stats } = await gatewayRun(ctx, label, env, async (gw): Promise<Measured> => {
    const unmeasured = (why: string): Measured => ({ ...emptyLoad(), unmeasured: why })
    if (gw.mqttPort === null) return unmeasured('not measured: the embedded broker is not listening (mqtt_port null in the listening line)')
    const devices = await provisionDevices(gw, CLIENTS, DEVICE_TYPE)
    if (typeof devices === 'string') return unmeasured(`not measured: ${devices}`)
    await nats?.purge(STREAM)
    const cpu = nats ? procStats(nats.pid).cpuS : 0
    const r = await mqttLoad(ctx, {
      url: `mqtt://127.0.0.1:${gw.mqttPort}`,
      clients: devices.map((d) => ({ topic: `raw.${d.mqttUser}`, username: d.mqttUser, password: d.mqttPassword })),
      ...load,
      ...(rate !== undefined ? { rate } : {}),
    })
    const natsCpu = nats ? { nats_cpu_s: procStats(nats.pid).cpuS - cpu } : {}
    return { ...r, ...natsCpu, gateway_metrics: await mqttMetrics(gw), ...(nats ? { stream_messages: await nats.messages(STREAM) } : {}) }
  })
  const r = toRow(variant, result, stats)
  return rate === undefined ? r : paced(r, rate, 'PUBACK latency below saturation')
}

function emptyLoad(): LoadResult {
  return { frames: 0, lines: 0, frames_per_s: 0, lines_per_s: 0, p50_ms: null, p99_ms: null, errors: 0, first_error: null, lines_acked_total: 0 }
}

/** A row from a measurement, or one saying why nothing was measured. */
function toRow(variant: string, m: Measured & { attempts?: number }, stats?: GatewayRunStats): Row {
  if (m.unmeasured !== undefined) return emptyRow(name, variant, m.unmeasured)
  if (m.connect_error !== undefined) return emptyRow(name, variant, `not measured: could not connect: ${m.connect_error.slice(0, 200)}`)
  const r = row(name, variant, m, stats)
  if (m.skipped !== undefined) r.extra = { ...r.extra, skipped: m.skipped }
  if (m.peer_cpu_s !== undefined) {
    r.extra = { ...r.extra, broker_cpu_s: m.peer_cpu_s }
    addNote(r, `broker cpu ${m.peer_cpu_s.toFixed(1)} s`)
  }
  if (m.nats_cpu_s !== undefined) {
    r.extra = { ...r.extra, nats_server_cpu_s: Number(m.nats_cpu_s.toFixed(2)) }
    addNote(r, `nats-server cpu ${m.nats_cpu_s.toFixed(1)} s`)
  }
  if (m.gateway_metrics) r.extra = { ...r.extra, gateway_metrics: m.gateway_metrics }
  if (m.stream_messages !== undefined) {
    r.extra = { ...r.extra, acked_total: m.lines_acked_total, stream_messages: m.stream_messages }
    // Every PUBACK (every JetStream ack) was for a stored message: the stream holds at least as many.
    if (m.stream_messages < m.lines_acked_total) {
      addNote(r, `the stream holds ${m.stream_messages} messages, fewer than the ${m.lines_acked_total} acknowledged`)
    }
  }
  return r
}

/** The stream's count once it holds `atLeast` or stops growing (bounded): the peer stores asynchronously. */
async function settledCount(nats: NatsServer, atLeast: number): Promise<number> {
  const deadline = Date.now() + STORE_SETTLE_MS
  let last = -1
  for (;;) {
    const n = await nats.messages(STREAM)
    if (n >= atLeast || n === last || Date.now() > deadline) return n
    last = n
    await new Promise((r) => setTimeout(r, 200))
  }
}
