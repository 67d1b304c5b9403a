import {
  ADMIN_PASSWORD,
  ADMIN_USERNAME,
  addNote,
  awaitQuietMachine,
  compare,
  cpuSnapshot,
  emptyRow,
  gatewayRun,
  otherCpuPercent,
  percent,
  procStats,
  retrying,
  row,
  SECRET,
  startProc,
  type Ctx,
  type Gateway,
  type GatewayRunStats,
  type LoadResult,
  type Proc,
  type ProcStats,
  type Row,
} from '../lib.js'
import type { FanoutPubOptions } from '../load/ws-fanout-pub.js'
import type { FanoutSubOptions } from '../load/ws-fanout-sub.js'
import { runToEnd } from '../procs.js'
import { natsServerBinary, startNatsServer, type NatsServer } from '../servers/nats-server.js'

/**
 * `/ws` fan-out (issue 10): subscribers on one channel (1,000; 200 with --quick) and on
 * many small ones (100 channels × 10; not with --quick), each a distinct user, all in one subscriber
 * process (ws-fanout-sub.ts, raw sockets); one publisher process (ws-fanout-pub.ts) with an
 * end-to-end window: at most WINDOW_DELIVERIES deliveries published and not yet received.
 * Rows: lines/s = deliveries/s (events × subscribers that received them), frames/s = events/s
 * every subscriber of the channel received, p50/p99 = publish → receipt.
 * - `broadcast`: the do-nothing broadcaster (bench/servers/broadcast-ws.ts), triggered by the
 *   same HTTP POST the gateway takes; its CPU is in the "gw cpu s" column;
 * - `gateway`: no NATS_URL (in-process log), POST with the admin's access token;
 * - `gateway+NATS`: NATS_URL = a nats-server of the bench's own, POST (202 once in JetStream);
 * - `gateway+NATS core` (not with --quick): the publisher does core NATS publishes on
 *   `channel.<id>`, which the gateway's stream stores and the gateway fans out;
 * each at saturation (ratio to `broadcast`), and on one channel also paced at 50 % of the
 * events/s it reached (the p99 target), then (not with --quick) the broadcaster at the
 * gateway's half rate: the latency floor of the setup.
 */
export const name = 'ws-fanout'

export type Transport = 'broadcast' | 'memory' | 'nats-http' | 'nats-core'
export type Phase = 'saturation' | 'half' | 'floor'
/** What targets.ts looks rows up by (variant names carry the sizes, which --quick changes). */
export interface FanoutTag {
  shape: 'one' | 'many'
  transport: Transport
  phase: Phase
}

interface Shape {
  key: FanoutTag['shape']
  channels: number
  subscribers: number
}

/** Deliveries in flight end to end: enough to keep every stage busy, few enough to bound buffers. */
const WINDOW_DELIVERIES = 4000
const HTTP_CONNECTIONS = 4
const OPEN_CONCURRENCY = 50
const OPEN_TIMEOUT_MS = 120_000
/** The subscriber process outlives any run by far; it is stopped after each variant. */
const HOLD_MS = 600_000
const LABEL: Record<Transport, string> = { broadcast: 'broadcast', memory: 'gateway', 'nats-http': 'gateway+NATS', 'nats-core': 'gateway+NATS core' }

const shapeName = (s: Shape) => `${s.channels}×${s.subscribers}`
const variantName = (t: Transport, s: Shape, phase: Phase) =>
  `${LABEL[t]} ${shapeName(s)}${phase === 'half' ? ' @ 50 % rate' : phase === 'floor' ? ' @ same rate' : ''}`

type Measured = LoadResult & { subscribers?: Record<string, unknown>; statuses?: Record<string, number>; publish_ack_p99_ms?: number | null }
interface PhaseResult {
  load: Measured
  server: { before: ProcStats; after: ProcStats }
  natsCpuS?: number
}

export async function run(ctx: Ctx): Promise<Row[]> {
  // A smoke run covers every process and path once: one channel is enough for that.
  const shapes: Shape[] = ctx.quick
    ? [{ key: 'one', channels: 1, subscribers: 200 }]
    : [{ key: 'one', channels: 1, subscribers: 1000 }, { key: 'many', channels: 100, subscribers: 10 }]
  const rows: Row[] = []
  const nats = natsServerBinary() === null ? 'nats-server not installed' : await startNatsServer().catch((err: Error) => err.message.slice(0, 200))
  try {
    for (const shape of shapes) {
      const half = shape.key === 'one'
      ctx.log(`${name}: ${shapeName(shape)}, do-nothing broadcaster`)
      rows.push(...(await broadcast(ctx, shape, [])))
      ctx.log(`${name}: ${shapeName(shape)}, gateway without NATS`)
      rows.push(...(await gateway(ctx, shape, 'memory', undefined, half)))
      const transports: Array<Exclude<Transport, 'broadcast' | 'memory'>> = ctx.quick ? ['nats-http'] : ['nats-http', 'nats-core']
      for (const t of transports) {
        if (typeof nats === 'string') {
          rows.push(emptyRow(name, variantName(t, shape, 'saturation'), `not measured: ${nats}`))
          continue
        }
        ctx.log(`${name}: ${shapeName(shape)}, ${LABEL[t]}`)
        rows.push(...(await gateway(ctx, shape, t, nats, half && !ctx.quick)))
      }
      const gwHalf = rows.find((r) => r.variant === variantName('memory', shape, 'half'))
      const rate = (gwHalf?.extra as { target_frames_per_s?: number } | undefined)?.target_frames_per_s
      if (!ctx.quick && rate) {
        ctx.log(`${name}: ${shapeName(shape)}, broadcaster at the gateway's half rate (${rate} events/s, latency floor)`)
        rows.push(...(await broadcast(ctx, shape, [rate])))
      }
      for (const t of ['memory', 'nats-http', 'nats-core'] as const) {
        compare(rows, variantName(t, shape, 'saturation'), variantName('broadcast', shape, 'saturation'))
      }
    }
  } finally {
    if (typeof nats !== 'string') await nats.stop()
  }
  return rows
}

/** The broadcaster at saturation (no `rates`) or at each of `rates`. */
async function broadcast(ctx: Ctx, shape: Shape, rates: number[]): Promise<Row[]> {
  const r = await retrying(
    ctx,
    `${name} broadcast ${shapeName(shape)}`,
    async () => {
      const server = await startProc(['--import', 'tsx', 'bench/servers/broadcast-ws.ts'])
      try {
        const port = server.hello.port as number
        return await withSubscribers(ctx, port, shape, async (progressPort) => {
          const out: PhaseResult[] = []
          for (const rate of rates.length > 0 ? rates : [undefined]) {
            out.push(await phase(ctx, server.pid, undefined, { mode: 'http', url: `http://127.0.0.1:${port}`, progressPort }, shape, rate))
          }
          return out
        })
      } finally {
        await server.stop()
      }
    },
    worstOtherCpu,
  )
  const phaseOf = rates.length > 0 ? 'floor' : 'saturation'
  if (typeof r.value === 'string') return [emptyRow(name, variantName('broadcast', shape, phaseOf), r.value)]
  return r.value.map((p) => toRow(shape, 'broadcast', phaseOf, p, { warnings: { count: 0, first: undefined } }, r.attempts))
}

/** A fresh gateway: saturation, then (with `half`) paced at 50 % of the events/s it reached. */
async function gateway(ctx: Ctx, shape: Shape, t: Exclude<Transport, 'broadcast'>, nats: NatsServer | undefined, half: boolean): Promise<Row[]> {
  const env: Record<string, string> = nats ? { NATS_URL: nats.url } : {}
  const { result, stats } = await gatewayRun(ctx, `${name}-${t}-${shape.key}`, env, async (gw): Promise<{ value: PhaseResult[] | string; other_cpu_pct: number }> => {
    const token = await adminToken(gw)
    if (typeof token !== 'object') return { value: token, other_cpu_pct: 0 }
    const { value } = await withSubscribers(ctx, gw.port, shape, async (progressPort) => {
      const pub =
        t === 'nats-core' && nats
          ? { mode: 'nats' as const, url: nats.url, progressPort }
          : { mode: 'http' as const, url: `http://127.0.0.1:${gw.port}`, token: token.token, progressPort }
      const out = [await phase(ctx, gw.pid, nats, pub, shape)]
      const rate = Math.round((out[0]?.load.frames_per_s ?? 0) / 2)
      if (half && rate > 0) {
        ctx.log(`${name}: ${LABEL[t]} ${shapeName(shape)} paced at 50 % (${rate} events/s)`)
        out.push(await phase(ctx, gw.pid, nats, pub, shape, rate))
      }
      return out
    })
    return { value, other_cpu_pct: typeof value === 'string' ? 0 : worstOtherCpu({ value }) }
  })
  if (typeof result.value === 'string') return [emptyRow(name, variantName(t, shape, 'saturation'), result.value)]
  return result.value.map((p, i) => toRow(shape, t, i === 0 ? 'saturation' : 'half', p, stats, stats.attempts ?? 1))
}

/** Runs `measure` with the subscriber process connected, or says why they could not all join. */
async function withSubscribers<T>(ctx: Ctx, port: number, shape: Shape, measure: (progressPort: number) => Promise<T>): Promise<{ value: T | string }> {
  const o: FanoutSubOptions = {
    host: '127.0.0.1',
    port,
    path: '/ws',
    secret: SECRET,
    channels: Array.from({ length: shape.channels }, (_, i) => `bench-${shape.key}-${i}`),
    subscribers: shape.subscribers,
    userPrefix: `fanout-${shape.key}-`,
    concurrency: OPEN_CONCURRENCY,
    openTimeoutMs: OPEN_TIMEOUT_MS,
    holdMs: HOLD_MS,
  }
  let sub: Proc
  try {
    sub = await startProc(['--import', 'tsx', 'bench/load/ws-fanout-sub.ts', JSON.stringify(o)], {}, () => true, { fdLimit: shape.channels * shape.subscribers + 1024, timeoutMs: OPEN_TIMEOUT_MS })
  } catch (err) {
    return { value: `not measured: the subscriber process failed: ${(err as Error).message.slice(0, 200)}` }
  }
  try {
    const h = sub.hello as { connections: number; connected: number; first_error: string | null; open_ms: number; progress_port: number }
    if (h.connected < h.connections) return { value: `not measured: ${h.connected}/${h.connections} subscribers joined; first error: ${h.first_error ?? '?'}` }
    ctx.log(`${name}: ${h.connected} subscribers joined in ${(h.open_ms / 1000).toFixed(1)} s`)
    return { value: await measure(h.progress_port) }
  } finally {
    await sub.stop()
  }
}

/** One publisher run, with the server's (and nats-server's) CPU over it and the other processes' share. */
async function phase(
  ctx: Ctx,
  serverPid: number,
  nats: NatsServer | undefined,
  pub: Pick<FanoutPubOptions, 'mode' | 'url' | 'token' | 'progressPort'>,
  shape: Shape,
  rate?: number,
): Promise<PhaseResult> {
  const o: FanoutPubOptions = {
    ...pub,
    channels: Array.from({ length: shape.channels }, (_, i) => `bench-${shape.key}-${i}`),
    window: Math.max(1, Math.round(WINDOW_DELIVERIES / shape.subscribers)),
    connections: HTTP_CONNECTIONS,
    durationMs: ctx.durationMs,
    warmupMs: ctx.warmupMs,
    ...(rate !== undefined ? { rate } : {}),
  }
  await awaitQuietMachine(ctx)
  const natsBefore = nats ? procStats(nats.pid).cpuS : 0
  const before = procStats(serverPid)
  const cpu = cpuSnapshot()
  const load = await runToEnd<Measured>(['--import', 'tsx', 'bench/load/ws-fanout-pub.ts', JSON.stringify(o)])
  load.other_cpu_pct = otherCpuPercent(cpu, cpuSnapshot())
  const after = procStats(serverPid)
  return { load, server: { before, after }, ...(nats ? { natsCpuS: procStats(nats.pid).cpuS - natsBefore } : {}) }
}

function worstOtherCpu(r: { value: PhaseResult[] | string }): number {
  return typeof r.value === 'string' ? 0 : Math.max(0, ...r.value.map((p) => p.load.other_cpu_pct ?? 0))
}

function toRow(shape: Shape, t: Transport, phase: Phase, p: PhaseResult, g: Pick<GatewayRunStats, 'warnings'>, attempts: number): Row {
  const r = row(name, variantName(t, shape, phase), { ...p.load, attempts }, { ...g, ...p.server })
  const s = p.load.subscribers ?? {}
  const fanout: FanoutTag = { shape: shape.key, transport: t, phase }
  r.extra = {
    ...r.extra,
    fanout,
    channels: shape.channels,
    subscribers_per_channel: shape.subscribers,
    window_events: Math.max(1, Math.round(WINDOW_DELIVERIES / shape.subscribers)),
    ...(p.load.target_frames_per_s !== undefined ? { target_frames_per_s: p.load.target_frames_per_s, skipped_events: p.load.skipped ?? 0 } : {}),
    statuses: p.load.statuses,
    publish_ack_p99_ms: p.load.publish_ack_p99_ms ?? null,
    p999_ms: s.p999_ms ?? null,
    subscriber_cpu_s: s.subscriber_cpu_s ?? null,
    duplicates: s.duplicates ?? 0,
    misdelivered: s.misdelivered ?? 0,
    subscribers_closed: s.subscribers_closed ?? 0,
    ...(p.natsCpuS !== undefined ? { nats_server_cpu_s: Number(p.natsCpuS.toFixed(2)) } : {}),
  }
  if (t === 'broadcast') addNote(r, 'do-nothing broadcaster (its CPU in gw cpu s)')
  if (p.load.target_frames_per_s !== undefined) {
    addNote(r, `paced at ${p.load.target_frames_per_s.toLocaleString('en-US')} events/s, reached ${percent(p.load.frames_per_s, p.load.target_frames_per_s)} %`)
  }
  if (p.natsCpuS !== undefined) addNote(r, `nats-server cpu ${p.natsCpuS.toFixed(1)} s`)
  return r
}

async function adminToken(gw: Gateway): Promise<{ token: string } | string> {
  try {
    const res = await fetch(`http://127.0.0.1:${gw.port}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: ADMIN_USERNAME, password: ADMIN_PASSWORD }),
      signal: AbortSignal.timeout(30_000),
    })
    const json = (await res.json().catch(() => ({}))) as { token?: unknown }
    return res.status === 200 && typeof json.token === 'string' ? { token: json.token } : `not measured: admin login answered HTTP ${res.status}`
  } catch (err) {
    return `not measured: admin login failed: ${(err as Error).message}`
  }
}
