import type { Logger } from 'pino'
import type { DeadLetter, DeadLetterFile, DeadLetterStats } from '../spool/dead-letter.js'
import { SINK_UNAVAILABLE, SinkError, dataLines, type Sink, type SinkFailure } from './sink.js'
import { Spool, SpoolClosedError, SpoolFullError, type SpoolRecord } from '../spool/spool.js'

export interface DurableSinkOptions {
  sink: Sink
  spool: Spool
  log: Pick<Logger, 'info' | 'warn' | 'error'>
  /** Replay backoff while the sink keeps failing: doubles from min to max, with jitter. */
  retryMinMs: number
  retryMaxMs: number
  /** One replay write takes up to this many spooled records and bytes (joined). */
  replayMaxRecords: number
  replayMaxBytes: number
  /** Where spooled lines the sink refuses for good go (fsynced before the cursor moves past them). */
  deadLetters: Pick<DeadLetterFile, 'append' | 'summary'>
  /** Called for the lines the replayer delivered, or moved to the dead-letter file. */
  onReplay?: (outcome: { lines: number; delivered: boolean }) => void
  /** Called for each batch taken: by the sink itself, or into the spool. */
  onBatch?: (outcome: 'ok' | 'spooled') => void
  /** Called for each sink write the replayer makes. */
  onReplayWrite?: () => void
  /** Called for each failed sink write: a batch written directly, or a replay write. */
  onFailure?: (err: SinkError, during: 'write' | 'replay') => void
}

/** The sink's last failure while it keeps failing; cleared by the next write it takes. */
export interface SinkOutage {
  reason: SinkFailure
  statusCode: number | undefined
  /** When the failures began (ms since the epoch). */
  since: number
}

export type DurableMode = 'direct' | 'spooling'

/**
 * Makes every accepted batch durable whatever the sink's state: a batch goes to the sink,
 * and when the sink fails for a transient reason it is appended (and fsynced) to the
 * on-disk spool instead, so the frames in it can be acknowledged. While the spool holds
 * anything, new batches go to the spool too, behind the older ones, and a replayer drains
 * it into the sink in order, backing off while the sink keeps failing. A full spool is a
 * transient SinkError (`ERR busy: retry`): nothing of that batch is acknowledged.
 * A spooled record was acknowledged, so it leaves the spool only delivered, or, when the
 * sink refuses its lines themselves, moved to the dead-letter file: never deleted.
 */
export class DurableSink implements Sink {
  readonly name: string
  private spooling: boolean
  private replaying: Promise<void> | undefined
  private closed = false
  private wake: (() => void) | undefined
  private failing: SinkOutage | undefined
  /** Settles when close() begins: a replay write still under way is then left behind. */
  private readonly closing: Promise<never>
  private startClosing: (() => void) | undefined

  constructor(private readonly opts: DurableSinkOptions) {
    this.closing = new Promise<never>((_, reject) => {
      this.startClosing = () => reject(new SpoolClosedError())
    })
    this.closing.catch(() => {})
    this.name = opts.sink.name
    this.spooling = opts.spool.records > 0
    if (this.spooling) {
      opts.log.warn({ records: opts.spool.records, lines: opts.spool.lines }, 'replaying the spool left by an earlier run')
      this.kick()
    }
  }

  get mode(): DurableMode {
    return this.spooling ? 'spooling' : 'direct'
  }

  get spool(): Pick<Spool, 'bytes' | 'lines' | 'records'> {
    return this.opts.spool
  }

  /** What the dead-letter file holds (for /readyz). */
  get deadLetters(): Readonly<DeadLetterStats> {
    return this.opts.deadLetters.summary
  }

  /** Set while the sink's writes fail (direct or replay); undefined once one succeeds. */
  get outage(): Readonly<SinkOutage> | undefined {
    return this.failing
  }

  /** Up: writes go to the sink directly and the last one succeeded (what mc_sink_up and /readyz show). */
  get up(): boolean {
    return !this.spooling && this.failing === undefined
  }

  async write(body: Buffer, lines: number): Promise<void> {
    if (!this.spooling) {
      try {
        await this.opts.sink.write(body, lines)
        this.recovered('write')
        this.opts.onBatch?.('ok')
        return
      } catch (err) {
        const e = asSinkError(err)
        this.opts.onFailure?.(e, 'write')
        // Refused for its lines: nothing of it was acknowledged, so the frames are told.
        if (!e.transient) throw e
        this.failed(e, 'write')
        if (!this.spooling) {
          this.spooling = true
          this.opts.log.warn({ err: e, detail: e.detail }, 'sink unavailable: spooling batches to disk')
        }
      }
    }
    try {
      await this.opts.spool.append(body, lines)
    } catch (err) {
      if (err instanceof SpoolFullError) {
        throw new SinkError(SINK_UNAVAILABLE, true, undefined, { cause: err, reason: 'spool full' })
      }
      throw new SinkError(SINK_UNAVAILABLE, true, undefined, {
        cause: err,
        reason: 'spool failed',
        detail: `spool write failed: ${(err as Error).message}`,
      })
    }
    this.opts.onBatch?.('spooled')
    this.kick()
  }

  async ping(): Promise<void> {
    await this.opts.sink.ping()
  }

  async close(): Promise<void> {
    this.closed = true
    this.wake?.()
    // A replay write to a hung sink could take another SINK_TIMEOUT_MS: shutdown does not wait
    // for it. Its records stay in the spool until acknowledged, so the next start replays
    // them (at least once; the sink merges a point written twice).
    this.startClosing?.()
    await this.replaying
    await this.opts.spool.close()
    await this.opts.sink.close()
  }

  /** Starts the replayer unless it runs (a running one keeps its backoff). */
  private kick(): void {
    this.replaying ??= this.replay().finally(() => {
      this.replaying = undefined
      // An append that completed while the loop was finishing must not be left behind.
      if (!this.closed && this.opts.spool.records > 0) this.kick()
    })
  }

  private async replay(): Promise<void> {
    const { spool, log } = this.opts
    let delayMs = this.opts.retryMinMs
    while (!this.closed) {
      // Several records per sink write: one fsync'd cursor update per write, not per record.
      let error: unknown
      try {
        const records = await spool.peekMany(this.opts.replayMaxRecords, this.opts.replayMaxBytes)
        if (records.length === 0) {
          if (this.spooling) log.info({}, 'spool drained: writing to the sink directly again')
          this.spooling = false
          return
        }
        const delivery = await this.deliver(records)
        error = delivery.error
        // Delivered or dead-lettered (and fsynced there): the cursor may move past them.
        if (delivery.settled > 0) await spool.ackThrough(records[delivery.settled - 1]!.id)
      } catch (err) {
        if (this.closed || err instanceof SpoolClosedError) return
        // A spool read, cursor or dead-letter write failed: nothing moved; try again later.
        log.error({ err }, 'spool replay failed')
        error = err
      }
      if (error === undefined) {
        delayMs = this.opts.retryMinMs
        continue
      }
      await this.sleep(delayMs)
      delayMs = Math.min(delayMs * 2, this.opts.retryMaxMs)
    }
  }

  /**
   * Writes records joined into one buffer; answers how many from the first are settled
   * (delivered, or in the dead-letter file) and the transient error that stopped it.
   * Acknowledged lines are dropped only for a reason in the lines themselves: a refusal of
   * many records is split until it names the records refused, and a 413 (the joined write
   * is too large for the sink) is split too; a single record the sink cannot take for its
   * size stays spooled.
   */
  private async deliver(records: SpoolRecord[]): Promise<{ settled: number; error?: SinkError }> {
    const lines = records.reduce((n, r) => n + r.lines, 0)
    this.opts.onReplayWrite?.()
    try {
      const body = records.length === 1 ? records[0]!.body : Buffer.concat(records.map((r) => r.body))
      await Promise.race([this.opts.sink.write(body, lines), this.closing])
    } catch (err) {
      if (err instanceof SpoolClosedError) throw err
      const e = asSinkError(err)
      this.opts.onFailure?.(e, 'replay')
      if (e.transient) {
        if (e.statusCode === 413 && records.length > 1) return this.deliverHalves(records)
        this.failed(e, 'replay')
        return { settled: 0, error: e }
      }
      this.recovered('replay')
      if (e.rejected !== undefined && (await this.deadLetterRejected(records, e))) return { settled: records.length }
      if (records.length > 1) return this.deliverHalves(records)
      await this.deadLetter(records, e)
      return { settled: 1 }
    }
    this.recovered('replay')
    this.opts.onReplay?.({ lines, delivered: true })
    return { settled: records.length }
  }

  private async deliverHalves(records: SpoolRecord[]): Promise<{ settled: number; error?: SinkError }> {
    const mid = Math.ceil(records.length / 2)
    const first = await this.deliver(records.slice(0, mid))
    if (first.error !== undefined || first.settled < mid) return first
    const second = await this.deliver(records.slice(mid))
    return { settled: mid + second.settled, ...(second.error ? { error: second.error } : {}) }
  }

  /**
   * A partial write: the sink stored every line but the named ones, numbered over the
   * joined records. Only those go to the dead-letter file. False (nothing done) when the
   * numbers do not fit the records, so the caller splits instead.
   */
  private async deadLetterRejected(records: SpoolRecord[], e: SinkError): Promise<boolean> {
    const byLine = new Map((e.rejected ?? []).map((r) => [r.line, r]))
    const letters: DeadLetter[] = []
    let first = 1
    let placed = 0
    let total = 0
    for (const record of records) {
      const own = dataLines(record.body)
      const refused = own.flatMap((text, k) => {
        const r = byLine.get(first + k)
        return r === undefined ? [] : [{ text, r }]
      })
      first += own.length
      total += own.length
      if (refused.length === 0) continue
      placed += refused.length
      letters.push({
        sink: this.name,
        ...(e.statusCode !== undefined ? { status: e.statusCode } : {}),
        reason: refused[0]!.r.message,
        detail: refused.map(({ r }) => `line ${r.line}: ${r.detail ?? r.message}`).join('; '),
        text: refused.map(({ text }) => `${text}
`).join(''),
        lines: refused.length,
      })
    }
    if (placed !== byLine.size) return false
    await this.opts.deadLetters.append(letters)
    this.refused(letters, e)
    this.opts.onReplay?.({ lines: total - placed, delivered: true })
    return true
  }

  private async deadLetter(records: SpoolRecord[], e: SinkError): Promise<void> {
    const letters = records.map((r) => ({
      sink: this.name,
      ...(e.statusCode !== undefined ? { status: e.statusCode } : {}),
      reason: e.reason,
      ...(e.detail !== undefined ? { detail: e.detail } : {}),
      text: r.body.toString('utf8'),
      lines: r.lines,
    }))
    await this.opts.deadLetters.append(letters)
    this.refused(letters, e)
  }

  private refused(letters: DeadLetter[], e: SinkError): void {
    const lines = letters.reduce((n, l) => n + l.lines, 0)
    this.opts.log.error(
      { err: e, detail: e.detail, lines, records: letters.length, refused: letters.slice(0, 3).map((l) => l.detail) },
      'spooled lines refused by the sink: moved to the dead-letter file',
    )
    this.opts.onReplay?.({ lines, delivered: false })
  }

  /** Logs the failure once per change of reason, not per attempt. */
  private failed(e: SinkError, during: 'write' | 'replay'): void {
    const before = this.failing
    if (before?.reason === e.reason && before.statusCode === e.statusCode) return
    this.failing = { reason: e.reason, statusCode: e.statusCode, since: before?.since ?? Date.now() }
    this.opts.log.warn({ err: e, detail: e.detail, reason: e.reason, during }, 'sink writes failing')
  }

  private recovered(during: 'write' | 'replay'): void {
    if (this.failing === undefined) return
    const downMs = Date.now() - this.failing.since
    this.failing = undefined
    this.opts.log.info({ during, down_ms: downMs }, 'sink takes writes again')
  }

  private sleep(ms: number): Promise<void> {
    const jittered = ms / 2 + Math.random() * (ms / 2)
    return new Promise((resolve) => {
      const timer = setTimeout(done, jittered)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      // Only close() cuts a backoff short: new appends must not make a down sink busier.
      this.wake = () => {
        this.wake = undefined
        done()
      }
    })
  }
}

function asSinkError(err: unknown): SinkError {
  if (err instanceof SinkError) return err
  // An error the sink did not classify is unknown, so transient: the batch is kept.
  return new SinkError(SINK_UNAVAILABLE, true, undefined, {
    cause: err,
    reason: 'unknown',
    detail: (err as Error)?.message ?? String(err),
  })
}
