import {
  addNote,
  baselineLoad,
  compare,
  gatewayRun,
  percent,
  row,
  startProc,
  wsLoad,
  type Ctx,
  type Gateway,
  type LoadResult,
  type Row,
  type WsLoadOptions,
} from '../lib.js'

export interface BaselineServers {
  /** Port of the do-nothing ws server. */
  okPort: number
  /** Gateway env pointing at the sink that answers 204 at once. */
  influx: Record<string, string>
  /** The `gateway` variant's load result. */
  batched: LoadResult
}

/** `load` with the gateway's CPU over the measured window reported (Row.cpu_ns_per_line). */
export function onGateway(load: WsLoadOptions, gw: Gateway): WsLoadOptions {
  return { ...load, cpuOf: { gateway: gw.pid } }
}

/**
 * The three runs every /time-series scenario starts with, on the same load: `ceiling`
 * (the do-nothing ws server), `naive` (BATCH_MAX_LINES=1: one sink write per frame, as the
 * Go original) and `gateway` (defaults), into a sink answering at once; then `more`, while
 * those servers are still up. The gateway row gets its ratio to naive and its share of
 * the ceiling.
 */
export async function ceilingNaiveGateway(
  ctx: Ctx,
  name: string,
  load: WsLoadOptions,
  more: (rows: Row[], servers: BaselineServers) => Promise<void> = async () => {},
): Promise<Row[]> {
  const rows: Row[] = []
  const sink = await startProc(['--import', 'tsx', 'bench/servers/null-influx.ts'])
  const ok = await startProc(['--import', 'tsx', 'bench/servers/ok-ws.ts'])
  try {
    ctx.log(`${name}: ceiling (do-nothing ws server)`)
    rows.push(row(name, 'ceiling', await baselineLoad(ctx, `${name} ceiling`, () => wsLoad(ctx, `ws://127.0.0.1:${ok.hello.port}`, load))))
    const influx = { INFLUXDB_URL: `http://127.0.0.1:${sink.hello.port}`, INFLUXDB_DATABASE: 'bench' }
    ctx.log(`${name}: naive (BATCH_MAX_LINES=1)`)
    const naive = await gatewayRun(ctx, `${name}-naive`, { ...influx, BATCH_MAX_LINES: '1', BATCH_MAX_INFLIGHT: '64' }, (gw) =>
      wsLoad(ctx, `ws://127.0.0.1:${gw.port}/time-series`, onGateway(load, gw)),
    )
    rows.push(row(name, 'naive', naive.result, naive.stats))
    ctx.log(`${name}: gateway (defaults)`)
    const batched = await gatewayRun(ctx, `${name}-gateway`, influx, (gw) =>
      wsLoad(ctx, `ws://127.0.0.1:${gw.port}/time-series`, onGateway(load, gw)),
    )
    rows.push(row(name, 'gateway', batched.result, batched.stats))
    await more(rows, { okPort: ok.hello.port as number, influx, batched: batched.result })
  } finally {
    await sink.stop()
    await ok.stop()
  }
  compare(rows, 'gateway', 'naive')
  const ceiling = rows.find((r) => r.variant === 'ceiling')
  const gw = rows.find((r) => r.variant === 'gateway')
  if (ceiling && gw) addNote(gw, `${percent(gw.lines_per_s, ceiling.lines_per_s)} % of the ceiling`)
  return rows
}
