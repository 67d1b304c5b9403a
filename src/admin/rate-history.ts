/**
 * The ingest rate over the last minutes, and batch flush latency, for the admin dashboard
 * (docs/API.md section 10). Free of any HTTP framework: it is fed cumulative samples of
 * the counters (lines accepted and rejected, the flush-time histogram's buckets) once per
 * bucket and keeps the differences, so reading it costs nothing on the ingest path.
 */

/** The counters as one read of them found them: every value cumulative since start. */
export interface CounterSample {
  accepted: number
  rejected: number
  /** The flush-time histogram: upper bounds (seconds, ascending, the last may be Infinity) and cumulative counts. */
  flush: { bounds: readonly number[]; counts: readonly number[] }
}

export interface RatePoint {
  /** Epoch ms: the bucket's start. */
  t: number
  /** Lines/s averaged over the bucket. */
  accepted: number
  rejected: number
}

export interface FlushLatency {
  /** Milliseconds, interpolated within the histogram's buckets; null without flushes. */
  p50: number | null
  p99: number | null
  /** Flushes in the window. */
  count: number
}

export interface RateHistoryOptions {
  /** Seconds per bucket. */
  intervalS: number
  /** ADMIN_RATE_WINDOW_S: how far back the buckets reach. */
  windowS: number
}

interface Bucket {
  point: RatePoint
  /** Flushes per histogram bucket (not cumulative) during this bucket. */
  flushes: number[]
}

export class RateHistory {
  readonly intervalS: number
  /** ADMIN_RATE_WINDOW_S: how far back the points reach once the history is full. */
  readonly windowS: number
  private readonly capacity: number
  private readonly ring: Array<Bucket | undefined>
  private next = 0
  private count = 0
  private last: { at: number; sample: CounterSample } | undefined
  private bounds: readonly number[] = []

  constructor(opts: RateHistoryOptions) {
    if (!(opts.intervalS > 0) || !(opts.windowS > 0)) throw new RangeError('intervalS and windowS must be positive')
    this.intervalS = opts.intervalS
    this.windowS = opts.windowS
    this.capacity = Math.max(1, Math.ceil(opts.windowS / opts.intervalS))
    this.ring = new Array<Bucket | undefined>(this.capacity)
  }

  /**
   * A read of the counters at `atMs`. The first one is the baseline; each later one closes
   * a bucket reaching back to the one before, averaged over the time that really passed
   * (a timer that fired late makes a longer bucket, not a wrong rate).
   */
  add(sample: CounterSample, atMs: number): void {
    const before = this.last
    if (before !== undefined && atMs <= before.at) return
    this.last = { at: atMs, sample }
    if (before === undefined) return
    const seconds = (atMs - before.at) / 1000
    // Counters only grow; a smaller value (a registry reset) counts as nothing new.
    const delta = (now: number, then: number) => Math.max(0, now - then)
    const point = {
      t: before.at,
      accepted: delta(sample.accepted, before.sample.accepted) / seconds,
      rejected: delta(sample.rejected, before.sample.rejected) / seconds,
    }
    const bounds = sample.flush.bounds
    if (!sameBounds(bounds, this.bounds)) {
      // The histogram's buckets are fixed; they only appear with its first flush. Older
      // buckets counted against other bounds cannot be added to these.
      for (const b of this.ring) if (b !== undefined) b.flushes = []
      this.bounds = bounds
    }
    this.ring[this.next] = { point, flushes: flushDeltas(sample.flush, before.sample.flush) }
    this.next = (this.next + 1) % this.capacity
    if (this.count < this.capacity) this.count++
  }

  /** One point per bucket, oldest first. */
  points(): RatePoint[] {
    const out: RatePoint[] = []
    for (let i = this.count; i >= 1; i--) out.push((this.ring[(this.next - i + this.capacity) % this.capacity] as Bucket).point)
    return out
  }

  /** The last full bucket's rates (0 before there is one). */
  current(): { accepted: number; rejected: number } {
    if (this.count === 0) return { accepted: 0, rejected: 0 }
    const { accepted, rejected } = (this.ring[(this.next - 1 + this.capacity) % this.capacity] as Bucket).point
    return { accepted, rejected }
  }

  /** p50 and p99 of the batch flushes over the window, from the histogram's buckets. */
  flushLatency(): FlushLatency {
    const totals = new Array<number>(this.bounds.length).fill(0)
    for (let i = 0; i < this.count; i++) {
      const flushes = (this.ring[i] as Bucket).flushes
      for (let k = 0; k < totals.length && k < flushes.length; k++) totals[k]! += flushes[k]!
    }
    const count = totals.reduce((n, c) => n + c, 0)
    if (count === 0) return { p50: null, p99: null, count: 0 }
    return { p50: quantileMs(this.bounds, totals, count, 0.5), p99: quantileMs(this.bounds, totals, count, 0.99), count }
  }
}

function sameBounds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i])
}

/**
 * Flushes per histogram bucket between two cumulative reads. A read before the first
 * flush has no buckets at all: zero each. Other bounds than before: nothing is known.
 */
function flushDeltas(now: CounterSample['flush'], then: CounterSample['flush']): number[] {
  const fromZero = then.bounds.length === 0
  if (!fromZero && !sameBounds(now.bounds, then.bounds)) return []
  const out: number[] = []
  let previous = 0
  for (let k = 0; k < now.counts.length; k++) {
    const cumulative = Math.max(0, (now.counts[k] ?? 0) - (fromZero ? 0 : (then.counts[k] ?? 0)))
    out.push(Math.max(0, cumulative - previous))
    previous = Math.max(previous, cumulative)
  }
  return out
}

/**
 * The q-quantile in ms, interpolated linearly inside the bucket it falls in (as
 * Prometheus' histogram_quantile does); in the open last bucket, its lower bound.
 */
function quantileMs(bounds: readonly number[], counts: readonly number[], total: number, q: number): number {
  const rank = q * total
  let seen = 0
  for (let k = 0; k < counts.length; k++) {
    const c = counts[k] ?? 0
    const lower = k === 0 ? 0 : (bounds[k - 1] as number)
    const upper = bounds[k] as number
    if (c > 0 && seen + c >= rank) {
      if (!Number.isFinite(upper)) return lower * 1000
      return (lower + (upper - lower) * ((rank - seen) / c)) * 1000
    }
    seen += c
  }
  const last = bounds[bounds.length - 1] ?? 0
  return (Number.isFinite(last) ? last : (bounds[bounds.length - 2] ?? 0)) * 1000
}
