import type { Logger } from 'pino'
import { SinkError, type Sink } from './sink.js'
import { Spool, SpoolFullError } from './spool.js'

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
  /** Called for each record the replayer delivered or had to drop. */
  onReplay?: (outcome: { lines: number; delivered: boolean }) => void
}

export type DurableMode = 'direct' | 'spooling'

/**
 * Makes every accepted batch durable whatever the sink's state: a batch goes to the sink,
 * and when the sink fails for a transient reason it is appended (and fsynced) to the
 * on-disk spool instead, so the frames in it can be acknowledged. While the spool holds
 * anything, new batches go to the spool too, behind the older ones, and a replayer drains
 * it into the sink in order, backing off while the sink keeps failing. A full spool is a
 * transient SinkError (`ERR busy: retry`): nothing of that batch is acknowledged.
 */
export class DurableSink implements Sink {
  readonly name: string
  private spooling: boolean
  private replaying: Promise<void> | undefined
  private closed = false
  private wake: (() => void) | undefined

  constructor(private readonly opts: DurableSinkOptions) {
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

  async write(text: string, lines: number): Promise<void> {
    if (!this.spooling) {
      try {
        await this.opts.sink.write(text, lines)
        return
      } catch (err) {
        const e = asSinkError(err)
        if (!e.transient) throw e
        if (!this.spooling) {
          this.spooling = true
          this.opts.log.warn({ err: e }, 'sink unavailable: spooling batches to disk')
        }
      }
    }
    try {
      await this.opts.spool.append(text, lines)
    } catch (err) {
      if (err instanceof SpoolFullError) throw new SinkError('spool full', true, undefined, { cause: err })
      throw new SinkError(`spool write failed: ${(err as Error).message}`, true, undefined, { cause: err })
    }
    this.kick()
  }

  async ping(): Promise<void> {
    await this.opts.sink.ping()
  }

  async close(): Promise<void> {
    this.closed = true
    this.wake?.()
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
    const { spool, sink, log } = this.opts
    let delayMs = this.opts.retryMinMs
    while (!this.closed) {
      // Several records per sink write: one fsync'd cursor update per write, not per record.
      const records = await spool.peekMany(this.opts.replayMaxRecords, this.opts.replayMaxBytes)
      const last = records.at(-1)
      if (last === undefined) {
        if (this.spooling) log.info({}, 'spool drained: writing to the sink directly again')
        this.spooling = false
        return
      }
      const lines = records.reduce((n, r) => n + r.lines, 0)
      try {
        await sink.write(records.length === 1 ? last.text : records.map((r) => r.text).join(''), lines)
      } catch (err) {
        const e = asSinkError(err)
        if (e.transient) {
          await this.sleep(delayMs)
          delayMs = Math.min(delayMs * 2, this.opts.retryMaxMs)
          continue
        }
        // The sink refuses these lines for good: retrying would block every later batch.
        // (In a partial write the other lines of these records were stored.)
        log.error({ err: e, lines, refused: e.rejected?.slice(0, 10) }, 'spooled lines refused by the sink')
        this.opts.onReplay?.({ lines: e.rejected?.length ?? lines, delivered: false })
        if (e.rejected !== undefined) this.opts.onReplay?.({ lines: lines - e.rejected.length, delivered: true })
        await spool.ackThrough(last.id)
        continue
      }
      await spool.ackThrough(last.id)
      this.opts.onReplay?.({ lines, delivered: true })
      delayMs = this.opts.retryMinMs
    }
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
  return new SinkError((err as Error)?.message ?? String(err), true, undefined, { cause: err })
}
