import { describe, expect, it } from 'vitest'
import { RateHistory, type CounterSample } from '../../src/admin/rate-history.js'

// The bounds of mc_batch_flush_seconds, in seconds, and its +Inf bucket.
const BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, Infinity]
const T0 = Date.UTC(2026, 0, 1)

/** A cumulative read: `flushes` maps an upper bound to how many flushes took at most it (not cumulative). */
function sample(accepted: number, rejected: number, flushes: Record<number, number> = {}): CounterSample {
  let running = 0
  const counts = BOUNDS.map((b) => (running += flushes[b] ?? 0))
  return { accepted, rejected, flush: { bounds: BOUNDS, counts } }
}

describe('RateHistory', () => {
  it('turns cumulative reads into lines/s per bucket, oldest first, each stamped with its start', () => {
    const h = new RateHistory({ intervalS: 5, windowS: 900 })
    expect(h.points()).toEqual([])
    expect(h.current()).toEqual({ accepted: 0, rejected: 0 })
    h.add(sample(100, 0), T0)
    expect(h.points()).toEqual([])
    h.add(sample(600, 10), T0 + 5_000)
    h.add(sample(600, 10), T0 + 10_000)
    h.add(sample(5600, 60), T0 + 15_000)
    expect(h.points()).toEqual([
      { t: T0, accepted: 100, rejected: 2 },
      { t: T0 + 5_000, accepted: 0, rejected: 0 },
      { t: T0 + 10_000, accepted: 1000, rejected: 10 },
    ])
    expect(h.current()).toEqual({ accepted: 1000, rejected: 10 })
  })

  it('averages over the time that really passed when a read comes late, and ignores reads out of order', () => {
    const h = new RateHistory({ intervalS: 5, windowS: 60 })
    h.add(sample(0, 0), T0)
    h.add(sample(1000, 0), T0 + 10_000)
    h.add(sample(5000, 0), T0 + 10_000)
    h.add(sample(5000, 0), T0 + 9_000)
    expect(h.points()).toEqual([{ t: T0, accepted: 100, rejected: 0 }])
  })

  it('keeps only the buckets of the window', () => {
    const h = new RateHistory({ intervalS: 5, windowS: 15 })
    for (let i = 0; i <= 10; i++) h.add(sample(i * 50, 0), T0 + i * 5_000)
    const points = h.points()
    expect(points).toHaveLength(3)
    expect(points.map((p) => p.t)).toEqual([T0 + 35_000, T0 + 40_000, T0 + 45_000])
    expect(points.every((p) => p.accepted === 10)).toBe(true)
  })

  it('counts a counter that went down as nothing new', () => {
    const h = new RateHistory({ intervalS: 5, windowS: 60 })
    h.add(sample(500, 5), T0)
    h.add(sample(10, 0), T0 + 5_000)
    expect(h.current()).toEqual({ accepted: 0, rejected: 0 })
  })

  it('has no flush latency before a flush, then p50 and p99 interpolated within the buckets', () => {
    const h = new RateHistory({ intervalS: 5, windowS: 60 })
    // Before the first flush the histogram has no buckets at all.
    h.add({ accepted: 0, rejected: 0, flush: { bounds: [], counts: [] } }, T0)
    h.add({ accepted: 0, rejected: 0, flush: { bounds: [], counts: [] } }, T0 + 5_000)
    expect(h.flushLatency()).toEqual({ p50: null, p99: null, count: 0 })
    // 100 flushes in (2.5, 5] ms; then 100 more: 98 in (1, 2.5] ms and 2 in (50, 100] ms.
    h.add(sample(0, 0, { 0.005: 100 }), T0 + 10_000)
    let l = h.flushLatency()
    expect(l.count).toBe(100)
    expect(l.p50).toBeCloseTo(3.75, 6)
    expect(l.p99).toBeCloseTo(2.5 + 2.5 * 0.99, 6)
    h.add(sample(0, 0, { 0.005: 100, 0.0025: 98, 0.1: 2 }), T0 + 15_000)
    l = h.flushLatency()
    expect(l.count).toBe(200)
    // Rank 100 of 200: the last of the 98 in (1, 2.5] ms is 98, so rank 100 is 2 into (2.5, 5].
    expect(l.p50).toBeCloseTo(2.5 + 2.5 * (2 / 100), 6)
    // Rank 198: the last flush of (2.5, 5] ms.
    expect(l.p99).toBeCloseTo(5, 6)
  })

  it('forgets flushes once their bucket leaves the window', () => {
    const h = new RateHistory({ intervalS: 5, windowS: 10 })
    h.add(sample(0, 0), T0)
    h.add(sample(0, 0, { 1: 4 }), T0 + 5_000)
    expect(h.flushLatency().count).toBe(4)
    h.add(sample(0, 0, { 1: 4 }), T0 + 10_000)
    h.add(sample(0, 0, { 1: 4 }), T0 + 15_000)
    expect(h.flushLatency()).toEqual({ p50: null, p99: null, count: 0 })
  })

  it('answers a flush slower than every bound with the largest finite one', () => {
    const h = new RateHistory({ intervalS: 5, windowS: 60 })
    h.add(sample(0, 0), T0)
    h.add(sample(0, 0, { [Infinity]: 3 }), T0 + 5_000)
    expect(h.flushLatency()).toEqual({ p50: 10_000, p99: 10_000, count: 3 })
  })
})
