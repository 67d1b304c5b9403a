/**
 * What every benchmark scenario needs: the result rows, the load generators as
 * processes, fresh gateways with their CPU and memory over a load, and the retry of a
 * measurement that shared the CPU with someone else's processes.
 */
import { cpus } from 'node:os'
import jwt from 'jsonwebtoken'
// Types only: importing a load generator's module would run it.
import type { MqttLoadOptions } from './load/mqtt-load.js'
import type { NatsLoadOptions } from './load/nats-load.js'
import type { CpuOf, WindowCpu } from './load/tally.js'
import { cpuSnapshot, otherCpuPercent, procStats, type ProcStats } from './machine.js'
import { runToEnd, SECRET, startGateway, type Gateway, type Proc } from './procs.js'

export { cpuSnapshot, fdLimitOf, otherCpuPercent, procStats, type CpuSnapshot, type ProcStats } from './machine.js'
export { ADMIN_PASSWORD, ADMIN_USERNAME, cleanup, ROOT, SECRET, startGateway, startProc, stopAll, track, trackDir, type Gateway, type Proc } from './procs.js'

export interface Row {
  scenario: string
  variant: string
  /** null for rows that measure no throughput (idle connections, an endpoint not there). */
  lines_per_s: number | null
  frames_per_s: number | null
  p50_ms: number | null
  p99_ms: number | null
  gateway_cpu_s: number | null
  gateway_peak_rss_mb: number | null
  errors: number
  /**
   * CPU that processes outside the benchmark used during the load, in % of the machine
   * (all cores); above OTHER_CPU_WARN_PERCENT the row is flagged as not comparable.
   */
  other_cpu_pct: number | null
  /** Variant this row is compared with, and the ratio of lines/s to it. */
  baseline?: string
  ratio?: number
  /** Ratios of lines/s to further variants of the scenario, by variant. */
  ratio_to?: Record<string, number>
  /**
   * CPU per line acknowledged in the measured window, in ns: the gateway's main thread
   * (where JavaScript runs), the whole gateway process, and victoria-metrics' process.
   */
  cpu_ns_per_line?: number
  process_cpu_ns_per_line?: number
  vm_cpu_ns_per_line?: number
  /** CPU per line of the sink that answers at once and of the load generator (Tally.window). */
  sink_cpu_ns_per_line?: number
  load_cpu_ns_per_line?: number
  note?: string
  /** Scenario-specific figures (target rate, RSS per connection, sink row counts...). */
  extra?: Record<string, unknown>
}

export interface Ctx {
  durationMs: number
  warmupMs: number
  quick: boolean
  /** Idle connections for the idle scenario. */
  idleConnections: number
  /** Write a V8 CPU profile of every gateway run into bench/results/cpu-prof/. */
  cpuProf: boolean
  /** With cpuProf: only of the gateway runs whose label contains one of these. */
  cpuProfOnly?: string[]
  rows: Row[]
  log(msg: string): void
}

export function streamToken(): string {
  return jwt.sign(
    { user: 'bench', user_id: '1', org: 'bench_org', org_id: '1', account_id: '1', type: 'stream' },
    SECRET,
    { expiresIn: 3600 },
  )
}

/** What ws-load.ts and http-load.ts print. */
export interface LoadResult {
  frames: number
  lines: number
  frames_per_s: number
  lines_per_s: number
  p50_ms: number | null
  p99_ms: number | null
  errors: number
  first_error: string | null
  /** Lines acknowledged over the whole run, warm-up included. */
  lines_acked_total: number
  /** ws-load in paced mode. */
  target_frames_per_s?: number
  skipped?: number
  /** http-load: responses by status. */
  statuses?: Record<string, number>
  /** mqtt-load, nats-load: the broker could not be connected to (nothing was measured). */
  connect_error?: string
  /** CPU seconds of the peer process outside the bench the load went to (see load). */
  peer_cpu_s?: number
  /** Set by wsLoad/httpLoad: see Row.other_cpu_pct. */
  other_cpu_pct?: number
  /** ws-load, http-load: CPU seconds of the processes in `cpuOf` over the measured window. */
  window_cpu?: WindowCpu
}

/** Other processes' CPU share above which a row is flagged (see Row.other_cpu_pct). */
export const OTHER_CPU_WARN_PERCENT = 10

// Waiting for other processes to finish (someone's build or tests) is bounded per run of
// the bench: a busy machine still gets measured, and the rows say so.
let quietWaitLeftMs: number | undefined

/**
 * Waits (bounded) until other processes use less than half the warning threshold of the
 * CPU, so that a load does not start in the middle of someone's compile.
 */
export async function awaitQuietMachine(ctx: Ctx): Promise<void> {
  quietWaitLeftMs ??= ctx.quick ? 10_000 : 90_000
  let waited = 0
  for (;;) {
    const a = cpuSnapshot()
    await new Promise((r) => setTimeout(r, 500))
    const other = otherCpuPercent(a, cpuSnapshot())
    if (other < OTHER_CPU_WARN_PERCENT / 2 || quietWaitLeftMs <= 0) break
    if (waited === 0) ctx.log(`other processes use ${other} % of the CPU: waiting for them (at most ${Math.round(quietWaitLeftMs / 1000)} s more this run)`)
    waited += 500
    quietWaitLeftMs -= 500
  }
}

/**
 * Runs a load generator to its end, noting how much CPU other processes took meanwhile.
 * `peer`: a process outside the bench that the load is aimed at (the machine's Mosquitto):
 * its CPU is the load's, not a disturbance, and is reported as `peer_cpu_s` instead.
 */
async function load(ctx: Ctx, args: string[], peer?: number): Promise<LoadResult> {
  await awaitQuietMachine(ctx)
  const peerCpu = () => {
    try {
      return peer === undefined ? undefined : procStats(peer).cpuS
    } catch {
      return undefined // gone, or not ours to read
    }
  }
  const before = cpuSnapshot()
  const peerBefore = peerCpu()
  const result = await runToEnd<LoadResult>(args)
  const after = cpuSnapshot()
  const peerAfter = peerCpu()
  if (peerBefore === undefined || peerAfter === undefined) return { ...result, other_cpu_pct: otherCpuPercent(before, after) }
  const peerS = peerAfter - peerBefore
  const capacityS = ((after.atMs - before.atMs) / 1000) * cpus().length
  const other = Math.max(0, otherCpuPercent(before, after) - (capacityS > 0 ? (100 * peerS) / capacityS : 0))
  return { ...result, other_cpu_pct: Number(other.toFixed(1)), peer_cpu_s: Number(peerS.toFixed(2)) }
}

export interface WsLoadOptions {
  connections: number
  inflight: number
  linesPerFrame: number
  localAddresses?: string[]
  /** Paced: frames/s over all connections. */
  rate?: number
  /** Processes whose CPU over the measured window goes into the row (Row.cpu_ns_per_line...). */
  cpuOf?: CpuOf
}

/** wsLoad against a server without state (ok-ws, the null sink), run again if it was disturbed. */
export function baselineLoad(ctx: Ctx, label: string, run: () => Promise<LoadResult>): Promise<LoadResult> {
  return retrying(ctx, label, run, (r) => r.other_cpu_pct)
}

/** Runs the WebSocket load generator as its own process and returns its result. */
export function wsLoad(ctx: Ctx, url: string, o: WsLoadOptions): Promise<LoadResult> {
  return load(ctx, [
    '--import',
    'tsx',
    'bench/load/ws-load.ts',
    JSON.stringify({ url, token: streamToken(), durationMs: ctx.durationMs, warmupMs: ctx.warmupMs, ...o }),
  ])
}

export interface HttpLoadOptions {
  connections: number
  inflight: number
  linesPerBody: number
  gzip?: boolean
  extraTags?: string
  headers?: Record<string, string>
  /** As WsLoadOptions.cpuOf. */
  cpuOf?: CpuOf
}

/** Runs the HTTP load generator as its own process and returns its result. */
export function httpLoad(ctx: Ctx, url: string, o: HttpLoadOptions): Promise<LoadResult> {
  return load(ctx, [
    '--import',
    'tsx',
    'bench/load/http-load.ts',
    JSON.stringify({ url, durationMs: ctx.durationMs, warmupMs: ctx.warmupMs, ...o }),
  ])
}

/** Runs the MQTT QoS 1 load generator as its own process and returns its result. */
export function mqttLoad(
  ctx: Ctx,
  o: Omit<MqttLoadOptions, 'durationMs' | 'warmupMs'>,
  /** The broker's pid when it is a process outside the bench (see load). */
  peer?: number,
): Promise<LoadResult> {
  return load(ctx, ['--import', 'tsx', 'bench/load/mqtt-load.ts', JSON.stringify({ durationMs: ctx.durationMs, warmupMs: ctx.warmupMs, ...o })], peer)
}

/** Runs the JetStream publish load generator (nats.js) as its own process and returns its result. */
export function natsLoad(
  ctx: Ctx,
  o: Omit<NatsLoadOptions, 'durationMs' | 'warmupMs'>,
): Promise<LoadResult> {
  return load(ctx, ['--import', 'tsx', 'bench/load/nats-load.ts', JSON.stringify({ durationMs: ctx.durationMs, warmupMs: ctx.warmupMs, ...o })])
}

export interface GatewayRunStats {
  before: ProcStats
  after: ProcStats
  warnings: Proc['warnings']
  /** The gateway's own counters after the load (see gatewayMetrics). */
  metrics?: Record<string, number> | undefined
  /** 2 when the first run was disturbed and the variant was measured again (see retrying). */
  attempts?: number
}

/**
 * A few of the gateway's /metrics after a load, summed over labels: sink errors, the
 * spool (a run that spooled measured the disk, not the sink), and the average batch.
 */
export async function gatewayMetrics(port: number): Promise<Record<string, number> | undefined> {
  const wanted = ['mc_sink_errors_total', 'mc_spool_replayed_lines_total', 'mc_spool_lines', 'mc_batch_lines_sum', 'mc_batch_lines_count', 'mc_lines_refused_by_sink_total']
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
    const out: Record<string, number> = {}
    for (const line of text.split('\n')) {
      const m = /^([a-z_]+)(?:\{[^}]*\})? (\S+)$/.exec(line)
      if (!m || !wanted.includes(m[1] as string)) continue
      out[m[1] as string] = (out[m[1] as string] ?? 0) + Number(m[2])
    }
    return out
  } catch {
    return undefined
  }
}

/** A row from a load result and the gateway's /proc figures over the run. */
/** A pino line as `msg: err.message` (no stack: results name no paths of the machine). */
function logSummary(line: string | undefined): string {
  if (line === undefined) return ''
  try {
    const entry = JSON.parse(line) as { msg?: unknown; err?: { message?: unknown } }
    const err = typeof entry.err?.message === 'string' ? `: ${entry.err.message}` : ''
    return `${String(entry.msg ?? '')}${err}`.slice(0, 300)
  } catch {
    // Not JSON: its text could carry a stack with the machine's paths, so not its text.
    return 'a log line that is not JSON'
  }
}

export function row(scenario: string, variant: string, r: LoadResult & { attempts?: number }, gateway?: GatewayRunStats): Row {
  const notes: string[] = []
  const extra: Record<string, unknown> = {}
  const attempts = Math.max(r.attempts ?? 1, gateway?.attempts ?? 1)
  if (attempts > 1) {
    extra.attempts = attempts
    notes.push('measured twice: the first run shared the CPU with other processes')
  }
  const other = r.other_cpu_pct ?? null
  if (other !== null && other > OTHER_CPU_WARN_PERCENT) notes.push(`NOT COMPARABLE: other processes took ${other} % of the CPU`)
  if (r.first_error) notes.push(`first error: ${r.first_error.slice(0, 200)}`)
  if (gateway && gateway.warnings.count > 0) {
    notes.push(`gateway logged ${gateway.warnings.count} warnings, first: ${logSummary(gateway.warnings.first)}`)
  }
  const m = gateway?.metrics
  if (m) {
    if (m.mc_batch_lines_count) extra.avg_batch_lines = Math.round((m.mc_batch_lines_sum ?? 0) / m.mc_batch_lines_count)
    extra.sink_writes = m.mc_batch_lines_count ?? 0
    if (m.mc_sink_errors_total) notes.push(`gateway counted ${m.mc_sink_errors_total} sink errors`)
    if (m.mc_lines_refused_by_sink_total) notes.push(`the sink refused ${m.mc_lines_refused_by_sink_total} lines`)
    if (m.mc_spool_replayed_lines_total || m.mc_spool_lines) {
      notes.push(`the gateway spooled: ${m.mc_spool_replayed_lines_total ?? 0} lines replayed, ${m.mc_spool_lines ?? 0} still in the spool`)
    }
  }
  const cpu = r.window_cpu
  if (cpu) {
    extra.window_cpu_s = cpu
    // A tick is 10 ms and each edge of the window may miss one: say when that is over 2 %.
    const ticks = Math.round(100 * Math.min(cpu.gateway?.main_s ?? Infinity, cpu.victoria?.process_s ?? Infinity))
    if (ticks < 100) notes.push(`CPU per line from ${ticks} clock ticks only (±${Math.ceil(200 / Math.max(ticks, 1))} %)`)
  }
  const ns = (s: number | undefined) => (s === undefined || !(r.lines > 0) ? undefined : Math.round((s * 1e9) / r.lines))
  const perLine = {
    cpu_ns_per_line: ns(cpu?.gateway?.main_s),
    process_cpu_ns_per_line: ns(cpu?.gateway?.process_s),
    vm_cpu_ns_per_line: ns(cpu?.victoria?.process_s),
    sink_cpu_ns_per_line: ns(cpu?.sink?.process_s),
    load_cpu_ns_per_line: ns(cpu?.load?.process_s),
  }
  if (perLine.sink_cpu_ns_per_line !== undefined) notes.push(`sink ${perLine.sink_cpu_ns_per_line} ns/line`)
  if (perLine.load_cpu_ns_per_line !== undefined && perLine.cpu_ns_per_line !== undefined) {
    notes.push(`load generator ${perLine.load_cpu_ns_per_line} ns/line`)
  }
  return {
    scenario,
    variant,
    lines_per_s: Math.round(r.lines_per_s),
    frames_per_s: Math.round(r.frames_per_s),
    p50_ms: r.p50_ms === null ? null : Number(r.p50_ms.toFixed(3)),
    p99_ms: r.p99_ms === null ? null : Number(r.p99_ms.toFixed(3)),
    gateway_cpu_s: gateway ? Number((gateway.after.cpuS - gateway.before.cpuS).toFixed(2)) : null,
    gateway_peak_rss_mb: gateway ? Math.round(gateway.after.peakRssMb) : null,
    errors: r.errors,
    other_cpu_pct: other,
    ...Object.fromEntries(Object.entries(perLine).filter(([, v]) => v !== undefined)),
    ...(notes.length > 0 ? { note: notes.join('; ') } : {}),
    ...(Object.keys(extra).length > 0 ? { extra } : {}),
  }
}

/** A row that measured nothing, with the reason. */
export function emptyRow(scenario: string, variant: string, note: string): Row {
  return {
    scenario,
    variant,
    lines_per_s: null,
    frames_per_s: null,
    p50_ms: null,
    p99_ms: null,
    gateway_cpu_s: null,
    gateway_peak_rss_mb: null,
    errors: 0,
    other_cpu_pct: null,
    note,
  }
}

export function addNote(r: Row, note: string): void {
  r.note = r.note ? `${note}; ${r.note}` : note
}

/**
 * Runs a load against a fresh gateway started with `env`, recording its CPU and memory
 * over the load. `label` names the CPU profile with --cpu-prof. A run during which other
 * processes took the CPU is run again once on a fresh gateway (see retrying), unless
 * `retry` is false (the caller retries a larger whole, e.g. with a fresh sink).
 */
export function gatewayRun<T>(
  ctx: Ctx,
  label: string,
  env: Record<string, string>,
  drive: (gw: Gateway) => Promise<T>,
  o: { fdLimit?: number; retry?: boolean } = {},
): Promise<{ result: T; stats: GatewayRunStats }> {
  const once = async () => {
    const profile = ctx.cpuProf && (ctx.cpuProfOnly === undefined || ctx.cpuProfOnly.some((part) => label.includes(part)))
    const gw = await startGateway(env, { cpuProf: profile, profileName: label, ...(o.fdLimit !== undefined ? { fdLimit: o.fdLimit } : {}) })
    try {
      const before = procStats(gw.pid)
      const result = await drive(gw)
      const after = procStats(gw.pid)
      const metrics = await gatewayMetrics(gw.port)
      return { result, stats: { before, after, warnings: { ...gw.warnings }, metrics } satisfies GatewayRunStats }
    } finally {
      await gw.stop()
    }
  }
  if (o.retry === false) return once()
  return retrying(ctx, label, once, (r) => (r.result as { other_cpu_pct?: number } | null)?.other_cpu_pct).then(
    ({ result, stats, attempts }) => ({ result, stats: { ...stats, attempts } }),
  )
}

// Runs measured again because other processes took the CPU, per run of the bench.
let retriesLeft: number | undefined

/**
 * Runs `measure`; when other processes took more than OTHER_CPU_WARN_PERCENT of the CPU
 * during it, runs it once more (after waiting for a quiet machine) and keeps the second
 * result. Bounded: one retry per measurement, a few per bench run. A row that stays
 * noisy says so (Row.other_cpu_pct and its note).
 */
export async function retrying<T>(
  ctx: Ctx,
  label: string,
  measure: () => Promise<T>,
  otherCpu: (r: T) => number | null | undefined,
): Promise<T & { attempts: number }> {
  retriesLeft ??= ctx.quick ? 2 : 6
  const first = await measure()
  const other = otherCpu(first)
  if (other === null || other === undefined || other <= OTHER_CPU_WARN_PERCENT || retriesLeft <= 0) return { ...first, attempts: 1 }
  retriesLeft--
  ctx.log(`${label}: other processes took ${other} % of the CPU during the run: measuring again (${retriesLeft} more retries this run)`)
  return { ...(await measure()), attempts: 2 }
}

/**
 * Sets `variant`'s ratio of lines/s to `baseline`'s (rows of one scenario); with `further`,
 * as one more ratio (Row.ratio_to), beside the row's main baseline.
 */
export function compare(rows: Row[], variant: string, baseline: string, o: { further?: boolean } = {}): void {
  const base = rows.find((r) => r.variant === baseline)
  const r = rows.find((x) => x.variant === variant)
  if (!base || !r || !base.lines_per_s || r.lines_per_s === null) return
  const ratio = Number((r.lines_per_s / base.lines_per_s).toFixed(3))
  if (o.further) r.ratio_to = { ...r.ratio_to, [baseline]: ratio }
  else {
    r.baseline = baseline
    r.ratio = ratio
  }
}

/** `part` as a percentage of `whole`, one decimal. */
export function percent(part: number | null, whole: number | null): number | null {
  if (part === null || !whole) return null
  return Number(((100 * part) / whole).toFixed(1))
}

/**
 * Runs the measurements of `runs` in turn, `passes` times over (A B A B ... for two), and
 * returns one row for each: the mean of its passes (lines/s, latency, CPU; errors added,
 * peak RSS and other CPU the largest), with each pass's lines/s in extra.passes. The host's
 * speed drifts during a run; alternating puts a variant and its baseline under the same
 * drift, where measuring each once can move their ratio by 0.1.
 */
export async function alternating(ctx: Ctx, passes: number, runs: Array<() => Promise<Row>>): Promise<Row[]> {
  const got: Row[][] = runs.map(() => [])
  for (let p = 0; p < passes; p++) {
    for (let i = 0; i < runs.length; i++) {
      if (passes > 1) ctx.log(`  pass ${p + 1} of ${passes}`)
      ;(got[i] as Row[]).push(await (runs[i] as () => Promise<Row>)())
    }
  }
  return got.map(mergePasses)
}

function mergePasses(rs: Row[]): Row {
  const first = rs[0] as Row
  if (rs.length === 1) return first
  const mean = (pick: (r: Row) => number | null | undefined, digits: number): number | null => {
    const xs = rs.map(pick)
    if (xs.some((x) => x === null || x === undefined)) return null
    return Number(((xs as number[]).reduce((a, b) => a + b, 0) / xs.length).toFixed(digits))
  }
  const most = (pick: (r: Row) => number | null): number | null => {
    const xs = rs.map(pick).filter((x): x is number => x !== null)
    return xs.length === 0 ? null : Math.max(...xs)
  }
  const merged: Row = {
    ...(rs[rs.length - 1] as Row),
    lines_per_s: mean((r) => r.lines_per_s, 0),
    frames_per_s: mean((r) => r.frames_per_s, 0),
    p50_ms: mean((r) => r.p50_ms, 3),
    p99_ms: mean((r) => r.p99_ms, 3),
    gateway_cpu_s: mean((r) => r.gateway_cpu_s, 2),
    gateway_peak_rss_mb: most((r) => r.gateway_peak_rss_mb),
    errors: rs.reduce((n, r) => n + r.errors, 0),
    other_cpu_pct: most((r) => r.other_cpu_pct),
    extra: { ...rs[rs.length - 1]?.extra, passes: rs.map((r) => r.lines_per_s) },
  }
  for (const key of ['cpu_ns_per_line', 'process_cpu_ns_per_line', 'vm_cpu_ns_per_line', 'sink_cpu_ns_per_line', 'load_cpu_ns_per_line'] as const) {
    const x = mean((r) => r[key], 0)
    if (x === null) delete merged[key]
    else merged[key] = x
  }
  const notes = [...new Set(rs.map((r) => r.note).filter((n): n is string => n !== undefined && n !== ''))]
  merged.note = [`mean of ${rs.length} passes, alternating with its baseline (${rs.map((r) => fmtInt(r.lines_per_s)).join(', ')} lines/s)`, ...notes]
    .join('; ')
  return merged
}

function fmtInt(x: number | null): string {
  return x === null ? '-' : Math.round(x).toLocaleString('en-US')
}
