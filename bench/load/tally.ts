/**
 * What a load generator counts: every acknowledgement (warm-up included: what the sink
 * must hold afterwards), those of the measured window with their latency, and errors;
 * and the JSON result line it prints.
 */
const MAX_SAMPLES = 2_000_000

export class Tally {
  measuring = false
  /** Acknowledged in the measured window. */
  acked = 0
  ackedTotal = 0
  errors = 0
  firstError: string | undefined
  // Latencies of the measured window, in microseconds.
  private readonly samples = new Float64Array(MAX_SAMPLES)
  private count = 0

  ack(sentAtMs: number): void {
    this.ackedTotal++
    if (!this.measuring) return
    this.acked++
    if (this.count < MAX_SAMPLES) this.samples[this.count++] = (performance.now() - sentAtMs) * 1000
  }

  error(what: string): void {
    this.errors++
    this.firstError ??= what
  }

  /** Waits out the warm-up, then measures for durationMs; resolves with the measured seconds. */
  async window(warmupMs: number, durationMs: number): Promise<number> {
    await new Promise((r) => setTimeout(r, warmupMs))
    this.measuring = true
    const started = performance.now()
    await new Promise((r) => setTimeout(r, durationMs))
    this.measuring = false
    return (performance.now() - started) / 1000
  }

  /** The fields every load generator reports; `linesPer` lines in each acknowledged unit. */
  result(linesPer: number, seconds: number): Record<string, unknown> {
    const sorted = this.samples.subarray(0, this.count).sort()
    const pct = (p: number) =>
      this.count === 0 ? null : (sorted[Math.min(this.count - 1, Math.floor(p * this.count))] as number) / 1000
    return {
      frames: this.acked,
      lines: this.acked * linesPer,
      seconds,
      frames_per_s: this.acked / seconds,
      lines_per_s: (this.acked * linesPer) / seconds,
      p50_ms: pct(0.5),
      p99_ms: pct(0.99),
      errors: this.errors,
      first_error: this.firstError ?? null,
      lines_acked_total: this.ackedTotal * linesPer,
    }
  }
}
