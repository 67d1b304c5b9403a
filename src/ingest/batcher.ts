import { SinkError, type Sink } from './sink.js'

/** Called once per submitted frame: no error when the sink accepted the batch holding it. */
export type Ack = (err: SinkError | undefined) => void

export interface BatcherOptions {
  maxLines: number
  maxBytes: number
  lingerMs: number
  /** Sink writes under way at once; frames keep gathering while every slot is busy. */
  maxInflight: number
}

export interface FlushReport {
  lines: number
  frames: number
  bytes: number
  durationMs: number
  error: SinkError | undefined
}

interface Batch {
  texts: string[]
  acks: Ack[]
  /** Lines of each frame, in order (to map a partial write back to frames). */
  counts: number[]
  lines: number
  bytes: number
}

const emptyBatch = (): Batch => ({ texts: [], acks: [], counts: [], lines: 0, bytes: 0 })

/**
 * Group commit: frames from every connection are gathered into one batch and written to
 * the sink in one call when the batch reaches maxLines or maxBytes, or lingerMs after
 * its first frame; then every frame of the batch is acknowledged. A frame is never split
 * across batches, so a frame's lines are written together or not at all. `bytes` count
 * UTF-16 code units of the text, a close enough measure for a flush threshold.
 */
export class Batcher {
  private current = emptyBatch()
  private readonly full: Batch[] = []
  private inflight = 0
  private timer: NodeJS.Timeout | undefined
  private idleWaiters: Array<() => void> = []

  constructor(
    private readonly sink: Pick<Sink, 'write'>,
    private readonly opts: BatcherOptions,
    private readonly onFlush: (report: FlushReport) => void = () => {},
  ) {}

  /** Lines accepted but not yet written. */
  get pendingLines(): number {
    let n = this.current.lines
    for (const b of this.full) n += b.lines
    return n
  }

  submit(text: string, lines: number, ack: Ack): void {
    const bytes = text.length
    let batch = this.current
    if (batch.lines > 0 && batch.bytes + bytes > this.opts.maxBytes) {
      this.seal()
      batch = this.current
    }
    batch.texts.push(text)
    batch.acks.push(ack)
    batch.counts.push(lines)
    batch.lines += lines
    batch.bytes += bytes
    if (batch.lines >= this.opts.maxLines || batch.bytes >= this.opts.maxBytes) {
      this.seal()
    } else if (this.timer === undefined) {
      this.timer = setTimeout(this.onLinger, this.opts.lingerMs)
    }
    this.pump()
  }

  /** Writes everything gathered so far and resolves when no write is under way. */
  async flush(): Promise<void> {
    if (this.current.lines > 0 || this.current.acks.length > 0) this.seal()
    this.pump()
    if (this.inflight === 0 && this.full.length === 0) return
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
  }

  private readonly onLinger = (): void => {
    this.timer = undefined
    if (this.current.acks.length === 0) return
    // Only write a partial batch when a slot is free; otherwise it keeps growing until one is.
    if (this.inflight < this.opts.maxInflight) {
      this.seal()
      this.pump()
    }
  }

  private seal(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    if (this.current.acks.length === 0) return
    this.full.push(this.current)
    this.current = emptyBatch()
  }

  private pump(): void {
    while (this.inflight < this.opts.maxInflight) {
      const batch = this.full.shift()
      if (batch === undefined) break
      this.write(batch)
    }
    // A partial batch whose linger already passed goes out as soon as a slot frees.
    if (this.inflight < this.opts.maxInflight && this.current.acks.length > 0 && this.timer === undefined) {
      this.seal()
      this.pump()
    }
  }

  private write(batch: Batch): void {
    this.inflight++
    const started = performance.now()
    const text = batch.texts.length === 1 ? (batch.texts[0] as string) : batch.texts.join('')
    this.sink.write(text, batch.lines).then(
      () => this.finish(batch, started, undefined),
      (err: unknown) =>
        this.finish(
          batch,
          started,
          err instanceof SinkError ? err : new SinkError(String((err as Error)?.message ?? err), true, undefined, { cause: err }),
        ),
    )
  }

  private finish(batch: Batch, started: number, error: SinkError | undefined): void {
    this.inflight--
    this.onFlush({
      lines: batch.lines,
      frames: batch.acks.length,
      bytes: batch.bytes,
      durationMs: performance.now() - started,
      error,
    })
    const outcomes = error?.rejected === undefined ? undefined : frameOutcomes(batch.counts, error)
    for (let i = 0; i < batch.acks.length; i++) {
      try {
        ;(batch.acks[i] as Ack)(outcomes === undefined ? error : outcomes[i])
      } catch {
        // An ack belongs to a connection; its failure must not stop the others' acks.
      }
    }
    this.pump()
    if (this.inflight === 0 && this.full.length === 0 && this.current.acks.length === 0) {
      const waiters = this.idleWaiters
      this.idleWaiters = []
      for (const w of waiters) w()
    }
  }
}

/**
 * A partial write: the sink stored every line but the rejected ones. Frames without a
 * rejected line are accepted; each other frame gets an error naming its refused lines.
 */
function frameOutcomes(counts: number[], error: SinkError): Array<SinkError | undefined> {
  const rejected = [...(error.rejected ?? [])].sort((a, b) => a.line - b.line)
  const outcomes: Array<SinkError | undefined> = []
  let first = 1
  let r = 0
  for (const count of counts) {
    const last = first + count - 1
    const mine: string[] = []
    while (r < rejected.length && (rejected[r] as { line: number }).line <= last) {
      const x = rejected[r++] as { line: number; message: string }
      if (x.line >= first) mine.push(`line ${x.line - first + 1} of the frame's data lines: ${x.message}`)
    }
    outcomes.push(mine.length === 0 ? undefined : new SinkError(mine.join('; '), false, error.statusCode))
    first = last + 1
  }
  return outcomes
}
