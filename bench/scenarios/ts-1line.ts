import { addNote, baselineLoad, gatewayRun, percent, row, wsLoad, type Ctx, type Row } from '../lib.js'
import { ceilingNaiveGateway, onGateway } from './baselines.js'

/**
 * /time-series, 1 line per frame, 64 connections x 64 frames in flight, into a sink that
 * answers at once. Baselines: the naive design (one sink write per frame, as the Go
 * original did), the do-nothing ws server (the ceiling of this machine) and the
 * pass-through with group commit (frames forwarded unread, one write at a time of all
 * gathered: about the most a server that hands them to the sink can reach). Then the
 * gateway again, paced at half the rate its `gateway` variant reached in this run: the
 * ack latency below saturation (DESIGN: p99 < 10 ms at half the maximum rate), and the
 * do-nothing server at that same rate: the latency the load generator and the machine
 * add by themselves.
 */
export const name = 'ts-1line'

export async function run(ctx: Ctx): Promise<Row[]> {
  const load = { connections: 64, inflight: 64, linesPerFrame: 1 }
  return ceilingNaiveGateway(ctx, name, load, async (rows, { okPort, influx, batched }) => {
    const rate = Math.round(batched.frames_per_s / 2)
    if (rate <= 0) return
    ctx.log(`${name}: gateway paced at 50 % of its maximum (${rate} frames/s)`)
    const half = await gatewayRun(ctx, `${name}-gateway-half`, influx, (gw) =>
      wsLoad(ctx, `ws://127.0.0.1:${gw.port}/time-series`, { ...onGateway(load, gw), rate }),
    )
    const r = row(name, 'gateway @ 50 % rate', half.result, half.stats)
    r.extra = { ...r.extra, target_frames_per_s: rate, skipped_frames: half.result.skipped ?? 0 }
    const reached = percent(half.result.frames_per_s, rate)
    const skipped = half.result.skipped ?? 0
    addNote(
      r,
      `paced at ${rate.toLocaleString('en-US')} frames/s (50 % of gateway), reached ${reached} %` +
        (skipped > 0 ? `, ${skipped.toLocaleString('en-US')} frames not sent: ${load.inflight} already waiting on a connection` : ''),
    )
    rows.push(r)
    // The same paced load against the do-nothing server: the latency floor of the load
    // generator and the machine, to read the gateway's figure against.
    ctx.log(`${name}: ceiling paced at the same rate (latency floor)`)
    const floor = await baselineLoad(ctx, `${name} ceiling @ same rate`, () => wsLoad(ctx, `ws://127.0.0.1:${okPort}`, { ...load, rate }))
    const f = row(name, 'ceiling @ same rate', floor)
    f.extra = { ...f.extra, target_frames_per_s: rate, skipped_frames: floor.skipped ?? 0 }
    addNote(f, `latency floor of the setup at ${rate.toLocaleString('en-US')} frames/s`)
    rows.push(f)
  }, { passThrough: 'group' })
}
