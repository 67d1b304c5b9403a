import { addNote, compare, emptyRow, gatewayRun, httpLoad, wsLoad, type Ctx, type Row } from '../lib.js'
import { ceilingNaiveGateway } from './baselines.js'
import { GATEWAY_TAGS } from '../load/lines.js'
import { victoriaBinary, withVictoria } from '../servers/victoria.js'

/**
 * /time-series, 1,000 lines per frame (16 connections x 4 frames in flight):
 * - into a sink that answers at once, with the naive and ceiling baselines;
 * - into victoria-metrics (`gateway→victoria`), against the same lines posted straight to
 *   it by http-load (`direct→victoria`, the baseline of the gateway overhead ratio). Each
 *   of the two gets a fresh victoria-metrics. The direct bodies carry the tags the gateway
 *   appends (user, org) and are gzipped as the gateway's influx sink sends them, so
 *   victoria-metrics stores the same samples from the same kind of request either way.
 */
export const name = 'ts-1000lines'

export async function run(ctx: Ctx): Promise<Row[]> {
  const load = { connections: 16, inflight: 4, linesPerFrame: 1000 }
  const rows = await ceilingNaiveGateway(ctx, name, load)

  if (victoriaBinary() === null) {
    rows.push(emptyRow(name, 'direct→victoria', 'victoria-metrics not installed'))
    rows.push(emptyRow(name, 'gateway→victoria', 'victoria-metrics not installed'))
    return rows
  }
  ctx.log(`${name}: direct→victoria (http-load, fresh victoria-metrics)`)
  rows.push(
    await withVictoria(ctx, name, 'direct→victoria', async (vm) => ({
      result: await httpLoad(ctx, `${vm.url}/api/v2/write?bucket=bench&precision=ns`, {
        connections: 16,
        inflight: 4,
        linesPerBody: load.linesPerFrame,
        gzip: true,
        extraTags: GATEWAY_TAGS,
      }),
    })),
  )
  ctx.log(`${name}: gateway→victoria (fresh victoria-metrics)`)
  rows.push(
    await withVictoria(ctx, name, 'gateway→victoria', (vm) =>
      gatewayRun(ctx, `${name}-gateway-victoria`, { INFLUXDB_URL: vm.url, INFLUXDB_DATABASE: 'bench' }, (g) =>
        wsLoad(ctx, `ws://127.0.0.1:${g.port}/time-series`, load),
        { retry: false },
      ),
    ),
  )
  compare(rows, 'gateway→victoria', 'direct→victoria')
  const r = rows.find((x) => x.variant === 'gateway→victoria')
  if (r?.ratio !== undefined) addNote(r, `gateway overhead ratio ${r.ratio}`)
  return rows
}
