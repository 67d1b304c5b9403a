/**
 * What a load generator counts: every acknowledgement (warm-up included: what the sink
 * must hold afterwards), those of the measured window with their latency, errors, and the
 * CPU the processes under load (the gateway, victoria-metrics) spent in that window; and
 * the JSON result line it prints.
 */
import { cpuTimes, type CpuTimes } from '../machine.js'

/** Processes whose CPU over the measured window is reported, by role. */
export type CpuOf = Partial<Record<'gateway' | 'victoria' | 'sink', number>>

/**
 * CPU seconds over the measured window, by role (a process that could not be read is left
 * out). The main thread only of the gateway: victoria-metrics (Go) works on many threads.
 * `sink`: the sink that answers at once; `load`: the load generator itself. With them a
 * row says what the rest of the machine spent per line beside the server under load.
 */
export interface WindowCpu {
  gateway?: { main_s: number; process_s: number }
  victoria?: { process_s: number }
  sink?: { process_s: number }
  load?: { process_s: number }
}

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
  private cpu: WindowCpu | undefined

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

  /**
   * Waits out the warm-up, then measures for durationMs; resolves with the measured seconds.
   * The CPU of `cpuOf` is read here, by the load generator, at the edges of the window:
   * the bench process would see the warm-up's CPU as well.
   */
  async window(warmupMs: number, durationMs: number, cpuOf: CpuOf = {}): Promise<number> {
    await new Promise((r) => setTimeout(r, warmupMs))
    this.measuring = true
    const cpuBefore = readCpu(cpuOf)
    const loadBefore = process.cpuUsage()
    const started = performance.now()
    await new Promise((r) => setTimeout(r, durationMs))
    this.measuring = false
    const seconds = (performance.now() - started) / 1000
    const load = process.cpuUsage(loadBefore)
    const cpuAfter = readCpu(cpuOf)
    const { gateway: g0, victoria: v0, sink: s0 } = cpuBefore
    const { gateway: g1, victoria: v1, sink: s1 } = cpuAfter
    this.cpu = {
      ...(g0 && g1 ? { gateway: { main_s: round2(g1.mainS - g0.mainS), process_s: round2(g1.processS - g0.processS) } } : {}),
      ...(v0 && v1 ? { victoria: { process_s: round2(v1.processS - v0.processS) } } : {}),
      ...(s0 && s1 ? { sink: { process_s: round2(s1.processS - s0.processS) } } : {}),
      load: { process_s: round2((load.user + load.system) / 1e6) },
    }
    return seconds
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
      ...(this.cpu && Object.keys(this.cpu).length > 0 ? { window_cpu: this.cpu } : {}),
    }
  }
}

function readCpu(cpuOf: CpuOf): Partial<Record<keyof CpuOf, CpuTimes>> {
  const out: Partial<Record<keyof CpuOf, CpuTimes>> = {}
  for (const [role, pid] of Object.entries(cpuOf) as Array<[keyof CpuOf, number]>) {
    try {
      out[role] = cpuTimes(pid)
    } catch {
      // exited: no figure rather than a wrong one
    }
  }
  return out
}

function round2(x: number): number {
  return Number(x.toFixed(2))
}
