import { addNote, alternating, compare, emptyRow, gatewayRun, httpLoad, wsLoad, type Ctx, type Row } from '../lib.js'
import { ceilingNaiveGateway } from './baselines.js'
import { GATEWAY_TAGS } from '../load/lines.js'
import { victoriaBinary, withVictoria } from '../servers/victoria.js'

/**
 * /time-series, 1,000 lines per frame (16 connections x 4 frames in flight):
 * - into a sink that answers at once, with the naive and ceiling baselines;
 * - into victoria-metrics (`gateway→victoria`), against the same lines posted straight to
 *   it by http-load (`direct→victoria`, the baseline of the gateway overhead ratio). Each
 *   of the two gets a fresh victoria-metrics. The direct bodies carry the tags the gateway
 *   appends (user, org) and are not compressed, as the gateway's influx sink sends them by
 *   default, so victoria-metrics stores the same samples from the same kind of request
 *   either way. `gateway→victoria gzip1` is the gateway with its sink's gzip on at level 1:
 *   the measurement the default of INFLUXDB_GZIP is chosen by.
 * The null-sink `gateway` row is also compared with `direct→victoria` (issue 12: the
 * gateway must take lines at least as fast as victoria-metrics ingests them).
 * `direct→victoria` and `gateway→victoria` are measured twice, alternating (lib.ts
 * alternating): their ratio is the overhead target.
 */
export const name = 'ts-1000lines'

const DIRECT = 'direct→victoria'
const GZIP1 = 'gateway→victoria gzip1'

export async function run(ctx: Ctx): Promise<Row[]> {
  const load = { connections: 16, inflight: 4, linesPerFrame: 1000 }
  const rows = await ceilingNaiveGateway(ctx, name, load, undefined, { passThrough: 'each' })

  if (victoriaBinary() === null) {
    for (const variant of [DIRECT, 'gateway→victoria', GZIP1]) rows.push(emptyRow(name, variant, 'victoria-metrics not installed'))
    return rows
  }
  const direct = () => {
    ctx.log(`${name}: ${DIRECT} (http-load, fresh victoria-metrics)`)
    return withVictoria(ctx, name, DIRECT, async (vm) => ({
      result: await httpLoad(ctx, `${vm.url}/api/v2/write?bucket=bench&precision=ns`, {
        connections: 16,
        inflight: 4,
        linesPerBody: load.linesPerFrame,
        extraTags: GATEWAY_TAGS,
        cpuOf: { victoria: vm.pid },
      }),
    }))
  }
  const throughGateway = (variant: string, label: string, env: Record<string, string>) => () => {
    ctx.log(`${name}: ${variant} (fresh victoria-metrics)`)
    return withVictoria(ctx, name, variant, (vm) =>
      gatewayRun(ctx, `${name}-${label}`, { INFLUXDB_URL: vm.url, INFLUXDB_DATABASE: 'bench', ...env }, (g) =>
        wsLoad(ctx, `ws://127.0.0.1:${g.port}/time-series`, { ...load, cpuOf: { gateway: g.pid, victoria: vm.pid } }),
        { retry: false },
      ),
    )
  }
  // Direct and through the gateway alternate (the overhead ratio); gzip level 1 is measured once.
  rows.push(...(await alternating(ctx, ctx.quick ? 1 : 2, [direct, throughGateway('gateway→victoria', 'gateway-victoria', {})])))
  rows.push(await throughGateway(GZIP1, 'gateway-victoria-gzip1', { INFLUXDB_GZIP: 'true', INFLUXDB_GZIP_LEVEL: '1' })())
  for (const variant of ['gateway→victoria', GZIP1]) {
    compare(rows, variant, DIRECT)
    const r = rows.find((x) => x.variant === variant)
    if (r?.ratio !== undefined) addNote(r, `gateway overhead ratio ${r.ratio}`)
  }

  compare(rows, 'gateway', DIRECT, { further: true })
  return rows
}
