import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  addNote,
  awaitQuietMachine,
  compare,
  cpuSnapshot,
  emptyRow,
  gatewayRun,
  otherCpuPercent,
  row,
  startGateway,
  startProc,
  streamToken,
  trackDir,
  type Ctx,
  type Gateway,
  type GatewayRunStats,
  type LoadResult,
  type Row,
} from '../lib.js'
// Types only: importing a load generator's module would run it.
import type { CollectorsLoadOptions } from '../load/collectors-load.js'
import { pushBody, type CollectorCredentials } from '../load/collectors-payload.js'
import { registerCollectors } from '../load/collectors-register.js'
import { runToEnd } from '../procs.js'

/**
 * Collectors (issue 11): a fleet of registered collectors (500; 20 with --quick) pushing at
 * once, each on its own keep-alive connection with one request outstanding, every request
 * 100 metrics of 10 fields (`POST /api/v1/metrics/push`, a collector token each), into the
 * null sink. Baseline in the same run, on a fresh gateway of the same build and the same
 * sink: the same points as line protocol (`POST /api/v2/write` with a stream token), the
 * same connections, one body per collector. Rows: lines/s = metrics/s, frames/s =
 * requests/s, p50/p99 = request latency. The fleet is registered first on a gateway of its
 * own (RSA key generation is in neither measured run). The push row's ratio is to the
 * line-protocol row (target ≥ 0.5, targets.ts).
 */
export const name = 'collectors'

/** What targets.ts looks the rows up by. */
export const VARIANTS = { lineProtocol: 'line protocol /api/v2/write', push: 'JSON push /api/v1/metrics/push' } as const

/** Issue 11: "500 registered collectors pushing concurrently"; a smoke run needs only a few. */
const COLLECTORS = 500
const QUICK_COLLECTORS = 20
/** Issue 11: "100 metrics of 10 fields per request" (the load the original planned for k6). */
const SHAPE = { metrics: 100, fields: 10 }
/** COLLECTOR_REGISTRATION_SECRET of the scenario's gateways (at least 16 characters). */
const REGISTRATION_SECRET = 'bench-registration-secret-0001'
/**
 * Collector tokens issued at registration are used by the gateways started after it: they
 * must outlast the scenario (the default 30 minutes might not, on a busy machine).
 */
const TOKEN_TTL_S = 4 * 3600
const LINE_PROTOCOL_PATH = '/api/v2/write?bucket=b&precision=ns'
const PUSH_PATH = '/api/v1/metrics/push'
/** The probe push: one request before the load, on an idle gateway. */
const PROBE_TIMEOUT_MS = 30_000

export async function run(ctx: Ctx): Promise<Row[]> {
  const count = ctx.quick ? QUICK_COLLECTORS : COLLECTORS
  const rows: Row[] = []
  const sink = await startProc(['--import', 'tsx', 'bench/servers/null-influx.ts'])
  try {
    const env = {
      INFLUXDB_URL: `http://127.0.0.1:${sink.hello.port}`,
      INFLUXDB_DATABASE: 'bench',
      COLLECTOR_REGISTRATION_SECRET: REGISTRATION_SECRET,
      COLLECTOR_TOKEN_TTL_S: String(TOKEN_TTL_S),
    }
    ctx.log(`${name}: registering ${count} collectors (a gateway of their own, not measured)`)
    const registeredAt = performance.now()
    const fleet = await register(env, count)
    if (!fleet.ok) {
      rows.push(emptyRow(name, VARIANTS.lineProtocol, `not measured: ${fleet.reason}`), emptyRow(name, VARIANTS.push, `not measured: ${fleet.reason}`))
      return rows
    }
    const registrationS = Number(((performance.now() - registeredAt) / 1000).toFixed(1))
    const dir = mkdtempSync(join(tmpdir(), 'mc-bench-collectors-'))
    trackDir(dir)
    const credentialsFile = join(dir, 'collectors.json')
    writeFileSync(credentialsFile, JSON.stringify(fleet.collectors))
    const base = { credentialsFile, ...SHAPE }

    ctx.log(`${name}: ${VARIANTS.lineProtocol}, ${count} connections (baseline)`)
    const lp = await gatewayRun(ctx, `${name}-line-protocol`, env, (g) =>
      collectorsLoad(ctx, { ...base, mode: 'line-protocol', url: `http://127.0.0.1:${g.port}${LINE_PROTOCOL_PATH}`, streamToken: streamToken() }),
    )
    rows.push(describe(row(name, VARIANTS.lineProtocol, lp.result, lp.stats), lp.result, lp.stats, count))

    ctx.log(`${name}: ${VARIANTS.push}, ${count} collectors`)
    const push = await gatewayRun(ctx, `${name}-push`, env, async (g) => {
      const refused = await probe(g, fleet.collectors[0] as CollectorCredentials)
      if (refused !== undefined) return refused
      return collectorsLoad(ctx, { ...base, mode: 'push', url: `http://127.0.0.1:${g.port}${PUSH_PATH}` })
    })
    if (typeof push.result === 'string') rows.push(emptyRow(name, VARIANTS.push, `not measured: ${push.result}`))
    else {
      const r = describe(row(name, VARIANTS.push, push.result, push.stats), push.result, push.stats, count)
      r.extra = { ...r.extra, registration_s: registrationS }
      rows.push(r)
    }
  } finally {
    await sink.stop()
  }
  compare(rows, VARIANTS.push, VARIANTS.lineProtocol)
  const r = rows.find((x) => x.variant === VARIANTS.push)
  if (r?.ratio !== undefined) addNote(r, `${r.ratio} of the line-protocol rate`)
  return rows
}

/** Registers the fleet on a gateway started for that alone. */
async function register(env: Record<string, string>, count: number): ReturnType<typeof registerCollectors> {
  const gw = await startGateway(env)
  try {
    return await registerCollectors(gw.port, REGISTRATION_SECRET, count)
  } finally {
    await gw.stop()
  }
}

/**
 * One push before the load: undefined when it is accepted whole, else why the variant
 * cannot be measured (a missing route; any other refusal would only show as the load's errors).
 */
async function probe(g: Gateway, c: CollectorCredentials): Promise<string | undefined> {
  const res = await fetch(`http://127.0.0.1:${g.port}${PUSH_PATH}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${c.token}`, 'Content-Type': 'application/json' },
    body: pushBody(c, 0, SHAPE),
    signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
  })
  const text = await res.text()
  if (res.status === 404 || res.status === 405) return `endpoint not available (HTTP ${res.status})`
  if (res.status !== 200) return `the probe push answered HTTP ${res.status}: ${text.slice(0, 200)}`
  let inserted: unknown
  try {
    inserted = (JSON.parse(text) as { metrics_inserted?: unknown }).metrics_inserted
  } catch {
    return `the probe push answered 200 with a body that is not JSON: ${text.slice(0, 200)}`
  }
  return inserted === SHAPE.metrics ? undefined : `the probe push of ${SHAPE.metrics} metrics answered metrics_inserted ${String(inserted)}`
}

/** The sizes of the run, and whether the sink was handed every acknowledged metric. */
function describe(r: Row, result: LoadResult, stats: GatewayRunStats, collectors: number): Row {
  const batched = stats.metrics?.mc_batch_lines_sum
  r.extra = {
    ...r.extra,
    collectors,
    metrics_per_request: SHAPE.metrics,
    fields_per_metric: SHAPE.fields,
    body_bytes: (result as { body_bytes?: number }).body_bytes,
    ...(batched !== undefined ? { lines_to_sink: batched } : {}),
  }
  // Every acknowledged metric went through a sink batch first (the probe's too): fewer is a bug.
  if (batched !== undefined && batched < result.lines_acked_total) {
    addNote(r, `the gateway batched ${batched} lines for the sink but acknowledged ${result.lines_acked_total}`)
  }
  return r
}

/** Runs collectors-load.ts as its own process, noting how much CPU other processes took meanwhile. */
async function collectorsLoad(ctx: Ctx, o: Omit<CollectorsLoadOptions, 'durationMs' | 'warmupMs'>): Promise<LoadResult> {
  await awaitQuietMachine(ctx)
  const before = cpuSnapshot()
  const result = await runToEnd<LoadResult>([
    '--import',
    'tsx',
    'bench/load/collectors-load.ts',
    JSON.stringify({ ...o, durationMs: ctx.durationMs, warmupMs: ctx.warmupMs } satisfies CollectorsLoadOptions),
  ])
  return { ...result, other_cpu_pct: otherCpuPercent(before, cpuSnapshot()) }
}
