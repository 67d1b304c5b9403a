import { compare, gatewayRun, row, startProc, wsLoad, type Ctx, type Row } from '../lib.js'

/** /time-series, 1,000 lines per frame, into a sink that answers at once; same baselines. */
export const name = 'ts-1000lines'

export async function run(ctx: Ctx): Promise<Row[]> {
  const load = { connections: 16, inflight: 4, linesPerFrame: 1000 }
  const rows: Row[] = []
  const sink = await startProc(['--import', 'tsx', 'bench/servers/null-influx.ts'])
  const ok = await startProc(['--import', 'tsx', 'bench/servers/ok-ws.ts'])
  try {
    ctx.log(`${name}: ceiling (do-nothing ws server)`)
    rows.push(row(name, 'ceiling', await wsLoad(ctx, `ws://127.0.0.1:${ok.hello.port}`, load)))
    const influx = { INFLUXDB_URL: `http://127.0.0.1:${sink.hello.port}`, INFLUXDB_DATABASE: 'bench' }
    ctx.log(`${name}: naive (BATCH_MAX_LINES=1)`)
    const naive = await gatewayRun({ ...influx, BATCH_MAX_LINES: '1', BATCH_MAX_INFLIGHT: '64' }, (gw) =>
      wsLoad(ctx, `ws://127.0.0.1:${gw.port}/time-series`, load),
    )
    rows.push(row(name, 'naive', naive.result, naive.stats))
    ctx.log(`${name}: gateway (defaults)`)
    const batched = await gatewayRun(influx, (gw) => wsLoad(ctx, `ws://127.0.0.1:${gw.port}/time-series`, load))
    rows.push(row(name, 'gateway', batched.result, batched.stats))
  } finally {
    await sink.stop()
    await ok.stop()
  }
  compare(rows, 'gateway', 'naive')
  const ceiling = rows.find((r) => r.variant === 'ceiling')
  const gw = rows.find((r) => r.variant === 'gateway')
  if (ceiling && gw) gw.note = `${((100 * gw.lines_per_s) / ceiling.lines_per_s).toFixed(1)} % of the ceiling`
  return rows
}
