import {
  addNote,
  alternating,
  baselineLoad,
  compare,
  emptyRow,
  gatewayRun,
  httpLoad,
  row,
  startProc,
  streamToken,
  type Ctx,
  type Gateway,
  type HttpLoadOptions,
  type Row,
} from '../lib.js'
import { body, GATEWAY_TAGS } from '../load/lines.js'
import { victoriaBinary, withVictoria } from '../servers/victoria.js'

/**
 * `POST /api/v2/write?bucket=b&precision=ns`, 5,000 lines per body, a stream token, 16
 * keep-alive connections x 2 requests in flight (http-load), into:
 * - the null sink: `gateway→null`, against the same bodies posted straight to the null
 *   sink (`direct→null`, the ceiling of this load generator and machine);
 * - victoria-metrics: `gateway→victoria`, against `direct→victoria` (a fresh
 *   victoria-metrics each; the direct bodies carry the gateway's tags and are not
 *   compressed, as the gateway's influx sink sends them by default).
 * The client bodies are plain text. When the gateway has no such endpoint (404/405) the
 * gateway rows say so and the scenario measures nothing else.
 */
export const name = 'http-write'

const PATH = '/api/v2/write?bucket=b&precision=ns'
const LINES = 5000

export async function run(ctx: Ctx): Promise<Row[]> {
  const load: HttpLoadOptions = { connections: 16, inflight: 2, linesPerBody: LINES }
  const auth = { Authorization: `Token ${streamToken()}` }
  const rows: Row[] = []
  const sink = await startProc(['--import', 'tsx', 'bench/servers/null-influx.ts'])
  try {
    const influx = { INFLUXDB_URL: `http://127.0.0.1:${sink.hello.port}`, INFLUXDB_DATABASE: 'bench' }
    ctx.log(`${name}: gateway→null`)
    const gw = await gatewayRun(ctx, `${name}-gateway-null`, influx, async (g) => {
      const missing = await probe(g)
      if (missing) return missing
      return httpLoad(ctx, `http://127.0.0.1:${g.port}${PATH}`, { ...load, headers: auth, cpuOf: { gateway: g.pid } })
    })
    if (typeof gw.result === 'string') {
      rows.push(emptyRow(name, 'gateway→null', gw.result))
      rows.push(emptyRow(name, 'gateway→victoria', gw.result))
      return rows
    }
    ctx.log(`${name}: direct→null (ceiling)`)
    rows.push(
      row(name, 'direct→null', await baselineLoad(ctx, `${name} direct→null`, () => httpLoad(ctx, `http://127.0.0.1:${sink.hello.port}${PATH}`, load))),
    )
    rows.push(row(name, 'gateway→null', gw.result, gw.stats))
  } finally {
    await sink.stop()
  }
  compare(rows, 'gateway→null', 'direct→null')

  if (victoriaBinary() === null) {
    rows.push(emptyRow(name, 'direct→victoria', 'victoria-metrics not installed'))
    rows.push(emptyRow(name, 'gateway→victoria', 'victoria-metrics not installed'))
    return rows
  }
  // Alternated (direct, gateway, direct, gateway): the overhead ratio is the target closest to its bar.
  rows.push(
    ...(await alternating(ctx, ctx.quick ? 1 : 2, [
      () => {
        ctx.log(`${name}: direct→victoria (fresh victoria-metrics)`)
        return withVictoria(ctx, name, 'direct→victoria', async (vm) => ({
          result: await httpLoad(ctx, `${vm.url}${PATH}`, { ...load, extraTags: GATEWAY_TAGS, cpuOf: { victoria: vm.pid } }),
        }))
      },
      () => {
        ctx.log(`${name}: gateway→victoria (fresh victoria-metrics)`)
        return withVictoria(ctx, name, 'gateway→victoria', (vm) =>
          gatewayRun(ctx, `${name}-gateway-victoria`, { INFLUXDB_URL: vm.url, INFLUXDB_DATABASE: 'bench' }, (g) =>
            httpLoad(ctx, `http://127.0.0.1:${g.port}${PATH}`, { ...load, headers: auth, cpuOf: { gateway: g.pid, victoria: vm.pid } }),
            { retry: false },
          ),
        )
      },
    ])),
  )
  compare(rows, 'gateway→victoria', 'direct→victoria')
  const r = rows.find((x) => x.variant === 'gateway→victoria')
  if (r?.ratio !== undefined) addNote(r, `gateway overhead ratio ${r.ratio}`)
  return rows
}

/** One request: undefined when the endpoint answers, else why it cannot be measured. */
async function probe(g: Gateway): Promise<string | undefined> {
  const res = await fetch(`http://127.0.0.1:${g.port}${PATH}`, {
    method: 'POST',
    headers: { Authorization: `Token ${streamToken()}`, 'Content-Type': 'text/plain; charset=utf-8' },
    body: body(LINES),
    signal: AbortSignal.timeout(30_000),
  })
  await res.arrayBuffer()
  if (res.status === 404 || res.status === 405) return `endpoint not available (HTTP ${res.status})`
  // Any other answer is measured: a refusal shows as the load's errors and first error.
  return undefined
}
