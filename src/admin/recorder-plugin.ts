import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import type { Metrics } from '../observability/metrics.js'
import { RateHistory, type CounterSample } from './rate-history.js'
import { ErrorRecorder } from './recorder.js'

/** What the admin API reads of what was recorded while the gateway ran. */
export interface AdminRecording {
  readonly startedAt: Date
  readonly rates: RateHistory
  /** ADMIN_RATE_WINDOW_S: how far back the rate goes (and a collector that pushed within it is active). */
  readonly rateWindowS: number
  /** ADMIN_FEED_INTERVAL_MS. */
  readonly feedIntervalMs: number
  /** DEVICE_SESSION_STALE_AFTER_MS: sessions of an instance silent this long are not connected. */
  readonly deviceStaleAfterMs: number
  /** The counters read now (the admin's totals are the counters' own values). */
  readCounters(): Promise<CounterSample & { frames: number }>
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The last errors answered (bad lines, auth failures, sink refusals), for the admin dashboard. */
    adminErrors: ErrorRecorder
    adminRecording: AdminRecording
  }
}

export interface AdminRecorderOptions {
  config: Pick<Config, 'admin' | 'deviceSessions'>
}

/** Seconds per point of the rate chart (docs/API.md section 10). */
export const RATE_INTERVAL_S = 5

/**
 * Records, from the start, what the admin dashboard shows of the past: the last errors
 * (every endpoint calls `app.adminErrors.record` where it answers one) and the ingest
 * rate (the counters read once per RATE_INTERVAL_S). Registered right after the metrics,
 * before every endpoint that records.
 */
export default fp(
  async (app: FastifyInstance, opts: AdminRecorderOptions) => {
    const { admin } = opts.config
    const errors = new ErrorRecorder({
      kept: admin.errorsKept,
      onListenerError: (err) => app.log.warn({ err }, 'admin error listener failed'),
    })
    const rates = new RateHistory({ intervalS: RATE_INTERVAL_S, windowS: admin.rateWindowS })
    const readCounters = () => readMetrics(app.metrics)
    app.decorate('adminErrors', errors)
    app.decorate('adminRecording', {
      startedAt: new Date(),
      rates,
      rateWindowS: admin.rateWindowS,
      feedIntervalMs: admin.feedIntervalMs,
      deviceStaleAfterMs: opts.config.deviceSessions.staleAfterMs,
      readCounters,
    } satisfies AdminRecording)

    let sampling = false
    const sample = () => {
      // A read that has not come back yet (a blocked loop) is not doubled up on.
      if (sampling) return
      sampling = true
      readCounters()
        .then((s) => rates.add(s, Date.now()))
        .catch((err: unknown) => app.log.warn({ err }, 'admin: reading the ingest counters failed'))
        .finally(() => {
          sampling = false
        })
    }
    let timer: NodeJS.Timeout | undefined
    app.addHook('onReady', async () => {
      sample()
      timer = setInterval(sample, RATE_INTERVAL_S * 1000)
      timer.unref()
    })
    app.addHook('onClose', async () => clearInterval(timer))
  },
  { name: 'admin-recorder', dependencies: ['metrics'] },
)

/**
 * The ingest counters' values. Reading a counter first hands it the counts the hot paths
 * keep in plain numbers (Metrics.beforeScrape), so these are what /metrics would show.
 */
async function readMetrics(m: Pick<Metrics, 'linesAccepted' | 'linesRejected' | 'frames' | 'batchSeconds'>): Promise<CounterSample & { frames: number }> {
  const [accepted, rejected, frames, flush] = await Promise.all([m.linesAccepted.get(), m.linesRejected.get(), m.frames.get(), m.batchSeconds.get()])
  const sum = (values: ReadonlyArray<{ value: number }>) => values.reduce((n, v) => n + v.value, 0)
  // Cumulative counts per upper bound, summed over the sinks' labels.
  const byBound = new Map<number, number>()
  for (const v of flush.values) {
    if (v.metricName !== 'mc_batch_flush_seconds_bucket') continue
    const le = (v.labels as { le?: string | number }).le
    const bound = le === '+Inf' ? Infinity : Number(le)
    if (Number.isNaN(bound)) continue
    byBound.set(bound, (byBound.get(bound) ?? 0) + v.value)
  }
  const bounds = [...byBound.keys()].sort((a, b) => a - b)
  return {
    accepted: sum(accepted.values),
    rejected: sum(rejected.values),
    frames: sum(frames.values),
    flush: { bounds, counts: bounds.map((b) => byBound.get(b) as number) },
  }
}
