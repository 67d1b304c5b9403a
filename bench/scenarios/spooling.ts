import { addNote, compare, gatewayRun, row, startProc, wsLoad, type Ctx, type Row } from '../lib.js'

/**
 * /time-series, 1,000 lines per frame, with the sink healthy (a sink answering 204 at
 * once) and with the sink down (answering 503: every batch is fsynced to the spool before
 * its frames are acknowledged). The ratio is what spooling costs. The spool may grow to
 * SPOOL_BENCH_BYTES: with the default 1 GiB a fast run fills it and then measures the
 * `ERR busy: retry` of a full spool instead of spooling.
 */
export const name = 'spooling'

const SPOOL_BENCH_BYTES = 16 * 1024 * 1024 * 1024

export async function run(ctx: Ctx): Promise<Row[]> {
  const load = { connections: 16, inflight: 4, linesPerFrame: 1000 }
  const rows: Row[] = []
  const up = await startProc(['--import', 'tsx', 'bench/servers/null-influx.ts'])
  const down = await startProc(['--import', 'tsx', 'bench/servers/null-influx.ts', '--status=503'])
  try {
    for (const [variant, sink] of [
      ['sink healthy', up],
      ['sink down (spooling)', down],
    ] as const) {
      ctx.log(`${name}: ${variant}`)
      const env = {
        INFLUXDB_URL: `http://127.0.0.1:${sink.hello.port}`,
        INFLUXDB_DATABASE: 'bench',
        INFLUXDB_GZIP: 'false',
        SPOOL_MAX_BYTES: String(SPOOL_BENCH_BYTES),
      }
      const r = await gatewayRun(ctx, `${name}-${variant.split(' ')[1]}`, env, (gw) => wsLoad(ctx, `ws://127.0.0.1:${gw.port}/time-series`, load))
      rows.push(row(name, variant, r.result, r.stats))
    }
  } finally {
    await up.stop()
    await down.stop()
  }
  compare(rows, 'sink down (spooling)', 'sink healthy')
  for (const r of rows) addNote(r, `INFLUXDB_GZIP=false in both, SPOOL_MAX_BYTES=${SPOOL_BENCH_BYTES}`)
  return rows
}
