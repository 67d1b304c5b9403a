import {
  addNote,
  baselineLoad,
  compare,
  gatewayRun,
  percent,
  row,
  SECRET,
  startProc,
  wsLoad,
  type Ctx,
  type Gateway,
  type LoadResult,
  type Row,
  type WsLoadOptions,
} from '../lib.js'

/** naive-ts.ts forwarding each frame's bytes unchanged, one write per frame (mode `forward`). */
export const PASS_THROUGH = 'pass-through'
/** The same with group commit (mode `forward-group`). */
export const PASS_THROUGH_GROUP = 'group-commit pass-through'

export interface BaselineServers {
  /** Port of the do-nothing ws server. */
  okPort: number
  /** Gateway env pointing at the sink that answers 204 at once. */
  influx: Record<string, string>
  /** The `gateway` variant's load result. */
  batched: LoadResult
}

/** `load` with the gateway's CPU (and the sink's, given its pid) over the measured window reported (Row.cpu_ns_per_line). */
export function onGateway(load: WsLoadOptions, gw: Gateway, sinkPid?: number): WsLoadOptions {
  return { ...load, cpuOf: sinkPid === undefined ? { gateway: gw.pid } : { gateway: gw.pid, sink: sinkPid } }
}

/** The pass-throughs of ceilingNaiveGateway: their variant, naive-ts.ts mode and what the log says. */
const PASS_THROUGHS = {
  each: { variant: PASS_THROUGH, mode: 'forward', what: "each frame's bytes to the sink unchanged, one awaited write per frame" },
  group: { variant: PASS_THROUGH_GROUP, mode: 'forward-group', what: "the frames' bytes to the sink unchanged, one write at a time of all gathered" },
} as const

/**
 * The four runs every /time-series scenario starts with, on the same load: `ceiling`
 * (the do-nothing ws server), `naive` (the naive design of DESIGN.md as its own server,
 * bench/servers/naive-ts.ts: per connection one awaited sink write per frame, then OK, as
 * the Go original), `unbatched` (the gateway with BATCH_MAX_LINES=1: its own byte path and
 * pipelining, without group commit) and `gateway` (defaults), all into a sink answering at
 * once; then `more`, while those servers are still up. The gateway row gets its ratio to
 * naive, to unbatched, and its share of the ceiling. With `passThrough`, naive-ts.ts also
 * runs as a pass-through (`each`: PASS_THROUGH, each frame's bytes to the sink unchanged
 * in a write of its own; `group`: PASS_THROUGH_GROUP, the same with group commit), about
 * the most any server handing every line to this sink can reach on this machine, and the
 * gateway gets its ratio to that too. The sink's and the load generator's CPU per line
 * go into every row but the ceiling's.
 */
export async function ceilingNaiveGateway(
  ctx: Ctx,
  name: string,
  load: WsLoadOptions,
  more: (rows: Row[], servers: BaselineServers) => Promise<void> = async () => {},
  opts: { passThrough?: 'each' | 'group' } = {},
): Promise<Row[]> {
  const rows: Row[] = []
  const pass = opts.passThrough === undefined ? undefined : PASS_THROUGHS[opts.passThrough]
  const sink = await startProc(['--import', 'tsx', 'bench/servers/null-influx.ts'])
  const ok = await startProc(['--import', 'tsx', 'bench/servers/ok-ws.ts'])
  try {
    ctx.log(`${name}: ceiling (do-nothing ws server)`)
    rows.push(row(name, 'ceiling', await baselineLoad(ctx, `${name} ceiling`, () => wsLoad(ctx, `ws://127.0.0.1:${ok.hello.port}`, load))))
    const influx = { INFLUXDB_URL: `http://127.0.0.1:${sink.hello.port}`, INFLUXDB_DATABASE: 'bench' }
    ctx.log(`${name}: naive (one awaited sink write per frame, its own server)`)
    const naiveServer = async (variant: string, mode: 'naive' | 'forward' | 'forward-group') => {
      const naive = await startProc([
        '--import',
        'tsx',
        'bench/servers/naive-ts.ts',
        JSON.stringify({ secret: SECRET, sink: influx.INFLUXDB_URL, database: influx.INFLUXDB_DATABASE, mode }),
      ])
      try {
        const url = `ws://127.0.0.1:${naive.hello.port}`
        const cpuOf = { gateway: naive.pid, sink: sink.pid }
        rows.push(row(name, variant, await baselineLoad(ctx, `${name} ${variant}`, () => wsLoad(ctx, url, { ...load, cpuOf }))))
      } finally {
        await naive.stop()
      }
    }
    await naiveServer('naive', 'naive')
    if (pass !== undefined) {
      ctx.log(`${name}: ${pass.variant} (${pass.what})`)
      await naiveServer(pass.variant, pass.mode)
    }
    ctx.log(`${name}: unbatched (the gateway with BATCH_MAX_LINES=1)`)
    const unbatched = await gatewayRun(ctx, `${name}-unbatched`, { ...influx, BATCH_MAX_LINES: '1', BATCH_MAX_INFLIGHT: '64' }, (gw) =>
      wsLoad(ctx, `ws://127.0.0.1:${gw.port}/time-series`, onGateway(load, gw, sink.pid)),
    )
    rows.push(row(name, 'unbatched', unbatched.result, unbatched.stats))
    ctx.log(`${name}: gateway (defaults)`)
    const batched = await gatewayRun(ctx, `${name}-gateway`, influx, (gw) =>
      wsLoad(ctx, `ws://127.0.0.1:${gw.port}/time-series`, onGateway(load, gw, sink.pid)),
    )
    rows.push(row(name, 'gateway', batched.result, batched.stats))
    await more(rows, { okPort: ok.hello.port as number, influx, batched: batched.result })
  } finally {
    await sink.stop()
    await ok.stop()
  }
  compare(rows, 'gateway', 'naive')
  compare(rows, 'gateway', 'unbatched', { further: true })
  if (pass !== undefined) compare(rows, 'gateway', pass.variant, { further: true })
  const ceiling = rows.find((r) => r.variant === 'ceiling')
  const gw = rows.find((r) => r.variant === 'gateway')
  if (ceiling && gw) addNote(gw, `${percent(gw.lines_per_s, ceiling.lines_per_s)} % of the ceiling`)
  return rows
}
