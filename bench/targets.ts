/**
 * The performance targets of DESIGN.md ("Performance targets") and of the issues that add
 * a scenario (mqtt: issue 9; ws-fanout and idle /ws: issue 10) or raise a bar (the ingest
 * path: issue 12), each checked against the rows of one run: the measured figure, and
 * met / not met / not measured. A miss is reported, never a failure of the run.
 */
import { OTHER_CPU_WARN_PERCENT, type Row } from './lib.js'
import { VARIANTS as COLLECTORS } from './scenarios/collectors.js'
import { VARIANTS as MQTT } from './scenarios/mqtt.js'
import { PASS_THROUGH, PASS_THROUGH_GROUP } from './scenarios/baselines.js'
import type { FanoutTag } from './scenarios/ws-fanout.js'

export interface TargetResult {
  target: string
  measured: string
  /** null: not measured in this run. */
  met: boolean | null
}

/** Issue 12: main-thread CPU of the gateway per line at 1,000-line frames. */
const MAIN_NS_PER_LINE_MAX = 400

/** 1.5 GB, in the MB (MiB) every RSS figure of the bench is given in. */
const IDLE_RSS_LIMIT_MB = 1.5 * 1024

export function evaluateTargets(rows: Row[]): TargetResult[] {
  const find = (scenario: string, variant: string) => rows.find((r) => r.scenario === scenario && r.variant === variant)
  const noisy = (...rs: Array<Row | undefined>) =>
    rs.some((r) => r?.other_cpu_pct !== null && r?.other_cpu_pct !== undefined && r.other_cpu_pct > OTHER_CPU_WARN_PERCENT)
      ? ' (a run shared the CPU with other processes: not comparable)'
      : ''
  const out: TargetResult[] = []

  /**
   * What bounds the last target's figure on this machine: the pass-through `variant`
   * (baselines.ts) against the same baseline, and the gateway against the pass-through.
   */
  const bound = (scenario: string, variant: string, baseline: string, format: (x: number) => string) => {
    const last = out[out.length - 1]
    const base = find(scenario, baseline)
    const pass = find(scenario, variant)
    const vsPass = find(scenario, 'gateway')?.ratio_to?.[variant]
    if (!last || last.met === null || !base?.lines_per_s || !pass?.lines_per_s || vsPass === undefined) return
    const x = pass.lines_per_s / base.lines_per_s
    last.measured +=
      `; the ${variant}, which forwards the frames' bytes unread, reaches ${format(x)}` +
      ` in the same run, and the gateway ${vsPass}× the ${variant}`
  }
  const ofCeiling = (scenario: string, label: string, minPct: number) => {
    const gw = find(scenario, 'gateway')
    const ceiling = find(scenario, 'ceiling')
    const target = `${label}: ≥ ${minPct} % of the ceiling`
    if (!gw?.lines_per_s || !ceiling?.lines_per_s) return out.push({ target, measured: 'not measured', met: null })
    const pct = (100 * gw.lines_per_s) / ceiling.lines_per_s
    out.push({
      target,
      measured: `${pct.toFixed(1)} % (${fmt(gw.lines_per_s)} of ${fmt(ceiling.lines_per_s)} lines/s)${noisy(gw, ceiling)}`,
      met: pct >= minPct,
    })
  }
  /** `further`: against that variant (Row.ratio_to) rather than the row's main baseline. */
  const ratio = (scenario: string, variant: string, label: string, min: number, unit: string, per = 'lines/s', further?: string) => {
    const r = find(scenario, variant)
    const target = `${label}: ≥ ${min}${unit}`
    const x = further === undefined ? r?.ratio : r?.ratio_to?.[further]
    if (r === undefined || x === undefined) return out.push({ target, measured: 'not measured', met: null })
    const base = find(scenario, further ?? r.baseline ?? '')
    out.push({
      target,
      measured: `${x}${unit} (${fmt(r.lines_per_s)} vs ${fmt(base?.lines_per_s ?? null)} ${per})${noisy(r, base)}`,
      met: x >= min,
    })
  }

  // Issue 12 raised the 1-line share of the ceiling from DESIGN's 60 % to 70 %, and 1,000-line frames from 2.5x naive to 3x
  // (DESIGN no longer gives 1,000-line frames a share of the ceiling: the gateway row's note gives it).
  ofCeiling('ts-1line', '/time-series 1 line/frame', 70)
  bound('ts-1line', PASS_THROUGH_GROUP, 'ceiling', (x) => `${(100 * x).toFixed(1)} % of the ceiling`)
  ratio('ts-1line', 'gateway', '/time-series 1 line/frame vs naive', 15, '×')
  ratio('ts-1000lines', 'gateway', '/time-series 1,000 lines/frame vs naive', 3, '×')
  bound('ts-1000lines', PASS_THROUGH, 'naive', (x) => `${x.toFixed(2)}× naive`)
  ratio(
    'ts-1000lines',
    'gateway',
    '/time-series 1,000 lines/frame into the sink that answers at once vs the same lines posted straight to victoria-metrics',
    1,
    '×',
    'lines/s',
    'direct→victoria',
  )
  ratio('ts-1000lines', 'gateway→victoria', '/time-series 1,000 lines/frame into victoria-metrics vs direct (overhead ratio)', 0.8, '')
  ratio('http-write', 'gateway→victoria', 'POST /api/v2/write 5,000-line bodies into victoria-metrics vs direct (overhead ratio)', 0.8, '')
  const cpuRow = find('ts-1000lines', 'gateway')
  const cpuTarget = `/time-series 1,000 lines/frame: gateway main-thread CPU ≤ ${MAIN_NS_PER_LINE_MAX} ns per line`
  if (cpuRow?.cpu_ns_per_line === undefined) out.push({ target: cpuTarget, measured: 'not measured', met: null })
  else {
    out.push({
      target: cpuTarget,
      measured: `${fmt(cpuRow.cpu_ns_per_line)} ns (whole process ${fmt(cpuRow.process_cpu_ns_per_line ?? null)} ns)${noisy(cpuRow)}`,
      met: cpuRow.cpu_ns_per_line <= MAIN_NS_PER_LINE_MAX,
    })
  }
  ratio('mqtt', MQTT.broker, 'MQTT QoS 1, the embedded broker alone (no forwarding) vs Mosquitto', 0.6, '×', 'msg/s')
  ratio('mqtt', MQTT.forward, 'MQTT QoS 1 → JetStream ack → PUBACK vs nats.js publishing straight to JetStream', 0.8, '×', 'msg/s')
  // Issue 11: the same points, the same connections, the same gateway build and sink.
  ratio('collectors', COLLECTORS.push, 'collectors: JSON metrics push vs the same points as line protocol (/api/v2/write)', 0.5, '×', 'metrics/s')

  const idle = rows.find((r) => r.scenario === 'idle')
  const idleTarget = '50k idle authenticated WebSocket connections: < 1.5 GB RSS'
  const x = idle?.extra as
    | { connections?: number; connections_requested?: number; fd_hard_limit?: number; auth_success?: number; rss_at_50k_mb?: number | null; rss_at_50k_extrapolated?: boolean }
    | undefined
  if (!x) out.push({ target: idleTarget, measured: 'not measured', met: null })
  else if (x.rss_at_50k_mb === null || x.rss_at_50k_mb === undefined) {
    out.push({ target: idleTarget, measured: `not measured (${fmt(x.connections ?? 0)} connections are too few to extrapolate from)`, met: null })
  } else {
    const allAuthed = x.auth_success === x.connections
    out.push({
      target: idleTarget,
      measured:
        `${fmt(Math.round(x.rss_at_50k_mb))} MB` +
        (!x.rss_at_50k_extrapolated
          ? ` (measured with ${fmt(x.connections ?? 0)})`
          : (x.connections_requested ?? 0) > (x.connections ?? 0)
            ? ` (extrapolated from ${fmt(x.connections ?? 0)} connections: one process may open only ${fmt(x.fd_hard_limit ?? 0)} files here)`
            : ` (extrapolated from ${fmt(x.connections ?? 0)} connections; --idle=50000 measures it)`) +
        (allAuthed ? '' : `; only ${fmt(x.auth_success ?? 0)} of ${fmt(x.connections ?? 0)} authenticated`),
      met: allAuthed && x.rss_at_50k_mb < IDLE_RSS_LIMIT_MB,
    })
  }

  const half = find('ts-1line', 'gateway @ 50 % rate')
  const floor = find('ts-1line', 'ceiling @ same rate')
  const halfTarget = 'p99 ack latency < 10 ms at half the maximum rate (/time-series 1 line/frame)'
  if (!half || half.p99_ms === null) out.push({ target: halfTarget, measured: 'not measured', met: null })
  else {
    const targetRate = Number((half.extra as { target_frames_per_s?: number } | undefined)?.target_frames_per_s ?? 0)
    const reached = targetRate > 0 && half.frames_per_s !== null && half.frames_per_s >= 0.95 * targetRate
    out.push({
      target: halfTarget,
      measured:
        `p99 ${half.p99_ms} ms, p50 ${half.p50_ms} ms at ${fmt(half.frames_per_s)} of ${fmt(targetRate)} frames/s` +
        (reached ? '' : ' (the paced rate was not reached)') +
        (floor?.p99_ms != null ? `; the setup alone (do-nothing server, same rate): p99 ${floor.p99_ms} ms` : '') +
        noisy(half, floor),
      met: reached && half.p99_ms < 10,
    })
  }
  const mqttHalf = find('mqtt', MQTT.forwardHalf)
  const mqttFloor = find('mqtt', MQTT.mosquittoFloor)
  const jsFloor = find('mqtt', MQTT.natsFloor)
  const mqttHalfTarget = 'p99 PUBACK latency < 20 ms at half the maximum rate (MQTT QoS 1 → JetStream)'
  if (!mqttHalf || mqttHalf.p99_ms === null) out.push({ target: mqttHalfTarget, measured: 'not measured', met: null })
  else {
    const targetRate = Number((mqttHalf.extra as { target_frames_per_s?: number } | undefined)?.target_frames_per_s ?? 0)
    const reached = targetRate > 0 && mqttHalf.frames_per_s !== null && mqttHalf.frames_per_s >= 0.95 * targetRate
    out.push({
      target: mqttHalfTarget,
      measured:
        `p99 ${mqttHalf.p99_ms} ms, p50 ${mqttHalf.p50_ms} ms at ${fmt(mqttHalf.frames_per_s)} of ${fmt(targetRate)} msg/s` +
        (reached ? '' : ' (the paced rate was not reached)') +
        (jsFloor?.p99_ms != null ? `; nats.js straight to JetStream at the same rate: p99 ${jsFloor.p99_ms} ms` : '') +
        (mqttFloor?.p99_ms != null ? `; Mosquitto at the same rate: p99 ${mqttFloor.p99_ms} ms` : '') +
        noisy(mqttHalf, mqttFloor, jsFloor),
      met: reached && mqttHalf.p99_ms < 20,
    })
  }
  out.push(...fanoutTargets(rows, noisy))
  return out
}

/** Issue 10: deliveries/s of a do-nothing broadcaster at saturation, for the gateway's deliveries/s. */
const FANOUT_MIN_RATIO = 0.8
/** Issue 10: p99 publish → receipt at half the saturated rate. */
const FANOUT_P99_MS = 50
const FANOUT_LABEL: Record<Exclude<FanoutTag['transport'], 'broadcast'>, string> = {
  memory: 'gateway without NATS, POST',
  'nats-http': 'gateway with NATS, POST (202 once in JetStream)',
  'nats-core': 'gateway with NATS, core publish on channel.<id>',
}

function fanoutTargets(rows: Row[], noisy: (...rs: Array<Row | undefined>) => string): TargetResult[] {
  const out: TargetResult[] = []
  // By tag, not by name: the variant names carry the sizes, which --quick changes.
  const find = (shape: FanoutTag['shape'], transport: FanoutTag['transport'], phase: FanoutTag['phase']) =>
    rows.find((r) => {
      const tag = (r.extra as { fanout?: FanoutTag } | undefined)?.fanout
      return r.scenario === 'ws-fanout' && tag?.shape === shape && tag.transport === transport && tag.phase === phase
    })
  for (const shape of ['one', 'many'] as const) {
    const where = shape === 'one' ? '1 channel' : 'many channels of 10'
    for (const transport of ['memory', 'nats-http', 'nats-core'] as const) {
      const r = find(shape, transport, 'saturation')
      const base = find(shape, 'broadcast', 'saturation')
      const target = `/ws fan-out, ${where}, ${FANOUT_LABEL[transport]}: ≥ ${FANOUT_MIN_RATIO} of the deliveries/s of a do-nothing broadcaster`
      if (r?.ratio === undefined) {
        out.push({ target, measured: 'not measured', met: null })
        continue
      }
      out.push({
        target,
        measured: `${r.ratio} (${fmt(r.lines_per_s)} vs ${fmt(base?.lines_per_s ?? null)} deliveries/s, ${r.variant})${noisy(r, base)}`,
        met: r.ratio >= FANOUT_MIN_RATIO && r.errors === 0,
      })
    }
  }
  const floor = find('one', 'broadcast', 'floor')
  for (const transport of ['memory', 'nats-http', 'nats-core'] as const) {
    const half = find('one', transport, 'half')
    const target = `/ws fan-out, 1 channel, ${FANOUT_LABEL[transport]}: p99 publish → receipt < ${FANOUT_P99_MS} ms at half the saturated rate`
    if (!half || half.p99_ms === null) {
      out.push({ target, measured: 'not measured', met: null })
      continue
    }
    const rate = Number((half.extra as { target_frames_per_s?: number } | undefined)?.target_frames_per_s ?? 0)
    const reached = rate > 0 && half.frames_per_s !== null && half.frames_per_s >= 0.95 * rate
    out.push({
      target,
      measured:
        `p99 ${half.p99_ms} ms, p50 ${half.p50_ms} ms at ${fmt(half.frames_per_s)} of ${fmt(rate)} events/s` +
        (reached ? '' : ' (the paced rate was not reached)') +
        (transport === 'memory' && floor?.p99_ms != null ? `; the do-nothing broadcaster at the same rate: p99 ${floor.p99_ms} ms` : '') +
        noisy(half, transport === 'memory' ? floor : undefined),
      met: reached && half.p99_ms < FANOUT_P99_MS && half.errors === 0,
    })
  }
  const perK = (r: Row | undefined) => (r?.extra as { mb_per_1k_connections?: number | null } | undefined)?.mb_per_1k_connections ?? null
  const endpoint = (r: Row) => (r.extra as { endpoint?: string } | undefined)?.endpoint
  const idleWs = rows.find((r) => r.scenario === 'idle' && endpoint(r) === 'ws')
  const idleTs = rows.find((r) => r.scenario === 'idle' && endpoint(r) === undefined)
  const idleTarget = 'idle /ws connections: no more memory per connection than idle /time-series connections (same run)'
  const ws = perK(idleWs)
  const ts = perK(idleTs)
  if (ws === null || ts === null || !idleWs) out.push({ target: idleTarget, measured: 'not measured', met: null })
  else {
    const n = (idleWs.extra as { auth_success?: number }).auth_success ?? 0
    out.push({ target: idleTarget, measured: `${ws} vs ${ts} MB per 1,000 connections (${fmt(n)} /ws connections)`, met: ws <= ts && idleWs.errors === 0 })
  }
  return out
}

function fmt(n: number | null): string {
  return n === null ? '?' : n.toLocaleString('en-US')
}

export function formatTargets(results: TargetResult[]): string {
  const mark = (m: boolean | null) => (m === null ? 'not measured' : m ? 'met' : 'NOT MET')
  return [
    'targets (DESIGN.md "Performance targets" and the issues):',
    ...results.map((t) => `  [${mark(t.met)}] ${t.target}${t.measured === 'not measured' ? '' : `: ${t.measured}`}`),
  ].join('\n')
}
