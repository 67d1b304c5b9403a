import { fdLimitOf, gatewayRun, procStats, startProc, streamToken, type Ctx, type Proc, type Row } from '../lib.js'
import { SECRET } from '../lib.js'
import type { FanoutSubOptions } from '../load/ws-fanout-sub.js'

/**
 * N authenticated idle /time-series connections (N = ctx.idleConnections: 10,000 by
 * default, --idle=50000 for the DESIGN figure, 500 with --quick), opened by one
 * load-generator process per source address 127.0.0.2, 127.0.0.3, ... (at most 20,000
 * connections each: the ephemeral port range is per source address, and no more than
 * the open-file limit allows one process). The gateway's RSS before and after, per 1,000
 * connections, and every connection's AUTH_SUCCESS counted (DESIGN: 50k connections
 * under 1.5 GB RSS).
 *
 * Every process runs with its open-file limit raised to what it needs, but never above
 * the hard limit this process inherited (raising that needs CAP_SYS_RESOURCE): when the
 * gateway cannot hold N connections in one process, the scenario measures as many as it
 * can hold, says so, and extrapolates to 50k.
 *
 * Then the same N as idle `/ws` connections on a fresh gateway (issue 10: no more memory per
 * connection than /time-series), see wsIdleRows.
 */
export const name = 'idle'

const PER_ADDRESS = 20_000
// Below this many connections the RSS growth is mostly the heap settling after start-up,
// not the connections: no per-connection figure is extrapolated to 50k from it.
const MIN_TO_EXTRAPOLATE = 5000
const GATEWAY_OWN_FDS = 300
const TARGET_CONNECTIONS = 50_000

interface IdleHello {
  connections: number
  auth_success: number
  auth_failed: number
  connect_errors: number
  first_error: string | null
  open_ms: number
  fd_limit: number
  rss_mb: number
}

export async function run(ctx: Ctx): Promise<Row[]> {
  const hardLimit = fdLimitOf('self', 'hard')
  // The gateway's own descriptors (listeners, database pool, files) stay well under this.
  const gatewayMax = Math.floor((hardLimit - GATEWAY_OWN_FDS) / 500) * 500
  const requested = ctx.idleConnections
  const n = Math.min(requested, gatewayMax)
  const limited =
    n < requested
      ? `${requested.toLocaleString('en-US')} requested, but one process may hold only ${hardLimit.toLocaleString('en-US')} files here (hard limit; raising it needs CAP_SYS_RESOURCE): measured ${n.toLocaleString('en-US')}`
      : undefined
  if (limited) ctx.log(`${name}: ${limited}`)
  const perProcess = Math.min(PER_ADDRESS, hardLimit - 200)
  const processes = Math.max(2, Math.ceil(n / perProcess))
  const shares = Array.from({ length: processes }, (_, i) => Math.floor(n / processes) + (i < n % processes ? 1 : 0))
  const settleMs = ctx.quick ? 500 : 3000
  const token = streamToken()
  ctx.log(`${name}: ${n} idle connections from ${processes} load generators`)

  const run = await gatewayRun(
    ctx,
    `${name}-${n}`,
    { MAX_CONNECTIONS: String(n + 1000) },
    async (gw) => {
      const gatewayFdLimit = fdLimitOf(gw.pid)
      await new Promise((r) => setTimeout(r, settleMs))
      const before = procStats(gw.pid)
      const loaders: Proc[] = []
      try {
        const started = performance.now()
        const hellos = await Promise.all(
          shares.map(async (count, i) => {
            const p = await startProc(
              [
                '--import',
                'tsx',
                'bench/load/ws-idle.ts',
                JSON.stringify({
                  url: `ws://127.0.0.1:${gw.port}/time-series`,
                  token,
                  connections: count,
                  localAddress: `127.0.0.${i + 2}`,
                  concurrency: 100,
                  openTimeoutMs: 240_000,
                  holdMs: 120_000,
                }),
              ],
              {},
              () => true,
              { fdLimit: count + 1024, timeoutMs: 240_000 },
            )
            loaders.push(p)
            return p.hello as unknown as IdleHello
          }),
        )
        const openS = (performance.now() - started) / 1000
        ctx.log(`${name}: ${hellos.reduce((x, h) => x + h.auth_success, 0)} connections authenticated in ${openS.toFixed(1)} s; holding them`)
        await new Promise((r) => setTimeout(r, settleMs))
        const after = procStats(gw.pid)
        const gauge = await wsGauge(gw.port)
        ctx.log(`${name}: closing the connections`)
        await Promise.all(loaders.map((l) => l.stop()))
        const closedDuringHold = loaders.reduce((sum, l) => {
          const last = l.lines.map((x) => safeJson(x)).find((j) => j && 'closed_during_hold' in j)
          return sum + Number(last?.closed_during_hold ?? 0)
        }, 0)
        return { hellos, before, after, gauge, openS, gatewayFdLimit, closedDuringHold }
      } finally {
        await Promise.all(loaders.map((l) => l.stop()))
      }
    },
    { fdLimit: n + 8192 },
  )

  const { hellos, before, after, gauge, openS, gatewayFdLimit, closedDuringHold } = run.result
  const ok = hellos.reduce((s, h) => s + h.auth_success, 0)
  const failed = hellos.reduce((s, h) => s + h.auth_failed + h.connect_errors, 0)
  const firstError = hellos.find((h) => h.first_error)?.first_error
  const deltaMb = after.rssMb - before.rssMb
  const perK = ok > 0 ? (1000 * deltaMb) / ok : null
  const perKAnon = ok > 0 ? (1000 * (after.rssAnonMb - before.rssAnonMb)) / ok : null
  const at50k = perK === null || ok < MIN_TO_EXTRAPOLATE ? null : before.rssMb + (perK * TARGET_CONNECTIONS) / 1000
  const notes = [
    limited ?? '',
    `${ok.toLocaleString('en-US')}/${n.toLocaleString('en-US')} AUTH_SUCCESS`,
    `gateway gauge ${gauge ?? '?'}`,
    `RSS ${before.rssMb.toFixed(0)} → ${after.rssMb.toFixed(0)} MB`,
    perK !== null ? `${perK.toFixed(1)} MB per 1k conns (RssAnon ${perKAnon?.toFixed(1)})` : '',
    n < TARGET_CONNECTIONS && at50k !== null ? `≈ ${at50k.toFixed(0)} MB at 50k (extrapolated)` : '',
    at50k === null && n < MIN_TO_EXTRAPOLATE ? `too few connections to extrapolate to 50k` : '',
    `opened in ${openS.toFixed(1)} s`,
    closedDuringHold > 0 ? `${closedDuringHold} closed by the gateway while idle` : '',
    firstError ? `first error: ${firstError}` : '',
    gatewayFdLimit < n + 100 ? `gateway fd limit only ${gatewayFdLimit}` : '',
  ].filter((x) => x !== '')
  return [
    {
      scenario: name,
      variant: `${n.toLocaleString('en-US')} idle conns`,
      lines_per_s: null,
      frames_per_s: null,
      p50_ms: null,
      p99_ms: null,
      gateway_cpu_s: Number((after.cpuS - before.cpuS).toFixed(2)),
      gateway_peak_rss_mb: Math.round(after.peakRssMb),
      errors: failed + closedDuringHold,
      other_cpu_pct: null,
      note: notes.join('; '),
      extra: {
        connections: n,
        connections_requested: requested,
        fd_hard_limit: hardLimit,
        auth_success: ok,
        auth_failed: failed,
        closed_during_hold: closedDuringHold,
        gateway_gauge: gauge,
        rss_before_mb: round1(before.rssMb),
        rss_after_mb: round1(after.rssMb),
        rss_anon_before_mb: round1(before.rssAnonMb),
        rss_anon_after_mb: round1(after.rssAnonMb),
        mb_per_1k_connections: perK === null ? null : round1(perK),
        rss_at_50k_mb: n >= TARGET_CONNECTIONS ? round1(after.rssMb) : at50k === null ? null : round1(at50k),
        rss_at_50k_extrapolated: n < TARGET_CONNECTIONS,
        open_s: round1(openS),
        load_generators: hellos.map((h) => ({ connections: h.connections, open_ms: h.open_ms, fd_limit: h.fd_limit, rss_mb: h.rss_mb })),
        gateway_fd_limit: gatewayFdLimit,
      },
    },
    ...(await wsIdleRows(ctx, shares, settleMs)),
  ]
}

/** Members per channel of the idle /ws connections: each a distinct user, as in a real deployment. */
const WS_IDLE_MEMBERS = 10

/**
 * `shares` idle `/ws` connections per load generator (ws-fanout-sub.ts, one per source
 * address), each a distinct user with a stream token, WS_IDLE_MEMBERS to a channel, counted
 * once it has its `presence:state`; the gateway's RSS before and after, per 1,000.
 */
async function wsIdleRows(ctx: Ctx, shares: number[], settleMs: number): Promise<Row[]> {
  const counts = shares.map((c) => Math.floor(c / WS_IDLE_MEMBERS) * WS_IDLE_MEMBERS)
  const n = counts.reduce((a, b) => a + b, 0)
  ctx.log(`${name}: ${n} idle /ws connections from ${counts.length} load generators`)
  const run = await gatewayRun(
    ctx,
    `${name}-ws-${n}`,
    { MAX_CONNECTIONS: String(n + 1000) },
    async (gw) => {
      await new Promise((r) => setTimeout(r, settleMs))
      const before = procStats(gw.pid)
      const loaders: Proc[] = []
      try {
        const started = performance.now()
        const hellos = await Promise.all(
          counts.map(async (count, i) => {
            const o: FanoutSubOptions = {
              host: '127.0.0.1',
              port: gw.port,
              path: '/ws',
              secret: SECRET,
              channels: Array.from({ length: count / WS_IDLE_MEMBERS }, (_, k) => `idle-${i}-${k}`),
              subscribers: WS_IDLE_MEMBERS,
              userPrefix: `idle-${i}-`,
              concurrency: 100,
              localAddress: `127.0.0.${i + 2}`,
              openTimeoutMs: 240_000,
              holdMs: 120_000,
            }
            const p = await startProc(['--import', 'tsx', 'bench/load/ws-fanout-sub.ts', JSON.stringify(o)], {}, () => true, {
              fdLimit: count + 1024,
              timeoutMs: 240_000,
            })
            loaders.push(p)
            return p.hello as { connected: number; failed: number; first_error: string | null }
          }),
        )
        const openS = (performance.now() - started) / 1000
        await new Promise((r) => setTimeout(r, settleMs))
        const after = procStats(gw.pid)
        const gauge = await gaugeOf(gw.port, 'ws')
        await Promise.all(loaders.map((l) => l.stop()))
        const closedDuringHold = loaders.reduce((sum, l) => {
          const last = l.lines.map((x) => safeJson(x)).find((j) => j && 'closed_during_hold' in j)
          return sum + Number(last?.closed_during_hold ?? 0)
        }, 0)
        return { hellos, before, after, gauge, openS, closedDuringHold }
      } finally {
        await Promise.all(loaders.map((l) => l.stop()))
      }
    },
    { fdLimit: n + 8192 },
  )
  const { hellos, before, after, gauge, openS, closedDuringHold } = run.result
  const ok = hellos.reduce((s, h) => s + h.connected, 0)
  const failed = hellos.reduce((s, h) => s + h.failed, 0)
  const firstError = hellos.find((h) => h.first_error)?.first_error
  const perK = ok > 0 ? (1000 * (after.rssMb - before.rssMb)) / ok : null
  const perKAnon = ok > 0 ? (1000 * (after.rssAnonMb - before.rssAnonMb)) / ok : null
  const notes = [
    `${ok.toLocaleString('en-US')}/${n.toLocaleString('en-US')} joined (presence:state), ${WS_IDLE_MEMBERS} users per channel`,
    `gateway gauge ${gauge ?? '?'}`,
    `RSS ${before.rssMb.toFixed(0)} → ${after.rssMb.toFixed(0)} MB`,
    perK !== null ? `${perK.toFixed(1)} MB per 1k conns (RssAnon ${perKAnon?.toFixed(1)})` : '',
    `opened in ${openS.toFixed(1)} s`,
    closedDuringHold > 0 ? `${closedDuringHold} closed by the gateway while idle` : '',
    firstError ? `first error: ${firstError}` : '',
  ].filter((x) => x !== '')
  return [
    {
      scenario: name,
      variant: `${n.toLocaleString('en-US')} idle /ws conns`,
      lines_per_s: null,
      frames_per_s: null,
      p50_ms: null,
      p99_ms: null,
      gateway_cpu_s: Number((after.cpuS - before.cpuS).toFixed(2)),
      gateway_peak_rss_mb: Math.round(after.peakRssMb),
      errors: failed + closedDuringHold,
      other_cpu_pct: null,
      note: notes.join('; '),
      extra: {
        endpoint: 'ws',
        connections: n,
        auth_success: ok,
        auth_failed: failed,
        closed_during_hold: closedDuringHold,
        gateway_gauge: gauge,
        members_per_channel: WS_IDLE_MEMBERS,
        rss_before_mb: round1(before.rssMb),
        rss_after_mb: round1(after.rssMb),
        rss_anon_before_mb: round1(before.rssAnonMb),
        rss_anon_after_mb: round1(after.rssAnonMb),
        mb_per_1k_connections: perK === null ? null : round1(perK),
        open_s: round1(openS),
      },
    },
  ]
}

/** mc_ws_connections{endpoint} from the gateway's /metrics. */
async function gaugeOf(port: number, endpoint: string): Promise<number | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })).text()
    const m = new RegExp(`^mc_ws_connections\\{[^}]*endpoint="${endpoint}"[^}]*\\} (\\d+)`, 'm').exec(text)
    return m ? Number(m[1]) : null
  } catch {
    return null
  }
}

const round1 = (x: number) => Number(x.toFixed(1))

function safeJson(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>
  } catch {
    return undefined
  }
}

/** mc_ws_connections{endpoint="time-series"} from the gateway's /metrics. */
async function wsGauge(port: number): Promise<number | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })).text()
    const m = /^mc_ws_connections\{[^}]*endpoint="time-series"[^}]*\} (\d+)/m.exec(text)
    return m ? Number(m[1]) : null
  } catch {
    return null
  }
}
