/**
 * The performance targets of DESIGN.md ("Performance targets") and of the issues that add
 * a scenario (mqtt: issue 9), each checked against the rows of one run: the measured
 * figure, and met / not met / not measured.
 */
import { OTHER_CPU_WARN_PERCENT, type Row } from './lib.js'
import { VARIANTS as MQTT } from './scenarios/mqtt.js'

export interface TargetResult {
  target: string
  measured: string
  /** null: not measured in this run. */
  met: boolean | null
}

/** 1.5 GB, in the MB (MiB) every RSS figure of the bench is given in. */
const IDLE_RSS_LIMIT_MB = 1.5 * 1024

export function evaluateTargets(rows: Row[]): TargetResult[] {
  const find = (scenario: string, variant: string) => rows.find((r) => r.scenario === scenario && r.variant === variant)
  const noisy = (...rs: Array<Row | undefined>) =>
    rs.some((r) => r?.other_cpu_pct !== null && r?.other_cpu_pct !== undefined && r.other_cpu_pct > OTHER_CPU_WARN_PERCENT)
      ? ' (a run shared the CPU with other processes: not comparable)'
      : ''
  const out: TargetResult[] = []

  const ofCeiling = (scenario: string, label: string) => {
    const gw = find(scenario, 'gateway')
    const ceiling = find(scenario, 'ceiling')
    const target = `${label}: ≥ 60 % of the ceiling`
    if (!gw?.lines_per_s || !ceiling?.lines_per_s) return out.push({ target, measured: 'not measured', met: null })
    const pct = (100 * gw.lines_per_s) / ceiling.lines_per_s
    out.push({
      target,
      measured: `${pct.toFixed(1)} % (${fmt(gw.lines_per_s)} of ${fmt(ceiling.lines_per_s)} lines/s)${noisy(gw, ceiling)}`,
      met: pct >= 60,
    })
  }
  const ratio = (scenario: string, variant: string, label: string, min: number, unit: string, per = 'lines/s') => {
    const r = find(scenario, variant)
    const target = `${label}: ≥ ${min}${unit}`
    if (r?.ratio === undefined) return out.push({ target, measured: 'not measured', met: null })
    const base = find(scenario, r.baseline ?? '')
    out.push({
      target,
      measured: `${r.ratio}${unit} (${fmt(r.lines_per_s)} vs ${fmt(base?.lines_per_s ?? null)} ${per})${noisy(r, base)}`,
      met: r.ratio >= min,
    })
  }

  ofCeiling('ts-1line', '/time-series 1 line/frame')
  ratio('ts-1line', 'gateway', '/time-series 1 line/frame vs naive', 15, '×')
  ofCeiling('ts-1000lines', '/time-series 1,000 lines/frame')
  ratio('ts-1000lines', 'gateway', '/time-series 1,000 lines/frame vs naive', 2.5, '×')
  ratio('ts-1000lines', 'gateway→victoria', '/time-series 1,000 lines/frame into victoria-metrics vs direct (overhead ratio)', 0.8, '')
  ratio('mqtt', MQTT.broker, 'MQTT QoS 1, the embedded broker alone (no forwarding) vs Mosquitto', 0.6, '×', 'msg/s')
  ratio('mqtt', MQTT.forward, 'MQTT QoS 1 → JetStream ack → PUBACK vs nats.js publishing straight to JetStream', 0.8, '×', 'msg/s')

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
  return out
}

function fmt(n: number | null): string {
  return n === null ? '?' : n.toLocaleString('en-US')
}

export function formatTargets(results: TargetResult[]): string {
  const mark = (m: boolean | null) => (m === null ? 'not measured' : m ? 'met' : 'NOT MET')
  return [
    'targets (DESIGN.md "Performance targets"):',
    ...results.map((t) => `  [${mark(t.met)}] ${t.target}${t.measured === 'not measured' ? '' : `: ${t.measured}`}`),
  ].join('\n')
}
