import { SinkError, type Sink } from './sinks/sink.js'

/** Called once per submitted frame: no error when the sink accepted the batch holding it. */
export type Ack = (err: SinkError | undefined) => void

export interface BatcherOptions {
  maxLines: number
  maxBytes: number
  lingerMs: number
  /** Sink writes under way at once; frames keep gathering while every slot is busy. */
  maxInflight: number
  /**
   * Bytes gathered but not yet handed to the sink (the batch being filled and the full
   * ones waiting for a slot). A frame that would pass it is refused at once with a
   * transient error (`ERR busy: retry`, 503) instead of queueing without bound.
   */
  maxQueuedBytes: number
}

export interface FlushReport {
  lines: number
  frames: number
  bytes: number
  durationMs: number
  error: SinkError | undefined
}

interface Batch {
  /** The frames' bytes, back to back: the first `bytes` of it are the batch. */
  buf: Buffer
  acks: Ack[]
  /** Lines of each frame, in order (to map a partial write back to frames). */
  counts: number[]
  lines: number
  bytes: number
  /** Its frames were already answered (shutdown deadline): the write's outcome is not theirs to hear. */
  answered: boolean
}

const NO_BYTES = Buffer.alloc(0)
const emptyBatch = (): Batch => ({ buf: NO_BYTES, acks: [], counts: [], lines: 0, bytes: 0, answered: false })

/**
 * A batch's buffer starts this large (or the size of its first frame) and doubles as it
 * fills: a batch of one small frame, what a quiet gateway writes, does not cost maxBytes.
 */
const FIRST_CAPACITY_BYTES = 64 * 1024

// Shared: refusing a frame must not allocate (it happens exactly when memory is short).
const QUEUE_FULL = new SinkError('batch queue full', true)
const SHUTTING_DOWN = new SinkError('shutting down', true)
const NOT_DURABLE_IN_TIME = new SinkError('not made durable before the shutdown deadline', true)

/**
 * Group commit: frames from every connection are gathered into one batch and written to
 * the sink in one call when the batch reaches maxLines or maxBytes, or lingerMs after
 * its first frame; then every frame of the batch is acknowledged. A frame is never split
 * across batches, so a frame's lines are written together or not at all. `bytes` count
 * bytes of the UTF-8 line protocol; the sink gets each batch as one buffer.
 */
export class Batcher {
  private current = emptyBatch()
  private readonly full: Batch[] = []
  /** Batches handed to the sink whose write has not settled. */
  private readonly writing = new Set<Batch>()
  /** Of those, the ones whose frames still wait for their answer. */
  private owing = 0
  private queuedBytes = 0
  private closing = false
  private timer: NodeJS.Timeout | undefined
  private idleWaiters: Array<() => void> = []
  /** Buffers of written batches, reused: a steady stream of batches allocates none. */
  private readonly spare: Buffer[] = []
  /** Bytes of the last batch sealed: a new batch's buffer starts that large. */
  private lastBatchBytes = 0

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

  /** Bytes gathered but not yet handed to the sink. */
  get queued(): number {
    return this.queuedBytes
  }

  /**
   * Copies the frame's bytes into the current batch before returning, so the caller may
   * reuse or overwrite `frame` as soon as this returns. `ack` is called exactly once.
   */
  submit(frame: Uint8Array, lines: number, ack: Ack): void {
    const bytes = frame.length
    if (this.closing) return ack(SHUTTING_DOWN)
    // An empty queue takes any frame: one larger than the bound could never be written otherwise.
    if (this.queuedBytes > 0 && this.queuedBytes + bytes > this.opts.maxQueuedBytes) return ack(QUEUE_FULL)
    this.queuedBytes += bytes
    let batch = this.current
    if (batch.lines > 0 && batch.bytes + bytes > this.opts.maxBytes) {
      this.seal()
      batch = this.current
    }
    if (batch.buf.length - batch.bytes < bytes) this.grow(batch, bytes)
    batch.buf.set(frame, batch.bytes)
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

  /** Writes everything gathered so far and resolves once every frame has been answered. */
  async flush(): Promise<void> {
    this.seal()
    this.pump()
    if (this.answeredAll()) return
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
  }

  /**
   * Shutdown: frames submitted from now on are refused (transient), what is gathered is
   * written, and whatever is not durable `deadlineMs` from now is answered with a
   * transient error (`ERR busy: retry`, 503) so that no reply is owed when the process
   * exits; a write still under way then may yet land (the client retries: at least once).
   * Resolves once every frame has had its answer. Safe to call twice.
   */
  close(deadlineMs: number): Promise<void> {
    this.closing = true
    const flushed = this.flush()
    if (this.answeredAll()) return flushed
    const deadline = setTimeout(this.answerTheRest, deadlineMs)
    return flushed.finally(() => clearTimeout(deadline))
  }

  private readonly answerTheRest = (): void => {
    for (const batch of this.writing) {
      if (batch.answered) continue
      batch.answered = true
      this.owing--
      ackAll(batch.acks, NOT_DURABLE_IN_TIME)
    }
    for (const batch of this.full.splice(0)) {
      this.queuedBytes -= batch.bytes
      ackAll(batch.acks, NOT_DURABLE_IN_TIME)
    }
    this.wakeIdleWaiters()
  }

  private readonly onLinger = (): void => {
    this.timer = undefined
    if (this.current.acks.length === 0) return
    // Only write a partial batch when a slot is free; otherwise it keeps growing until one is.
    if (this.writing.size < this.opts.maxInflight) {
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
    this.lastBatchBytes = this.current.bytes
    this.full.push(this.current)
    this.current = emptyBatch()
  }

  private pump(): void {
    while (this.writing.size < this.opts.maxInflight) {
      const batch = this.full.shift()
      if (batch === undefined) break
      this.write(batch)
    }
    // A partial batch whose linger already passed goes out as soon as a slot frees.
    if (this.writing.size < this.opts.maxInflight && this.current.acks.length > 0 && this.timer === undefined) {
      this.seal()
      this.pump()
    }
  }

  private write(batch: Batch): void {
    this.writing.add(batch)
    this.owing++
    this.queuedBytes -= batch.bytes
    const started = performance.now()
    this.sink.write(batch.buf.subarray(0, batch.bytes), batch.lines).then(
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
    this.writing.delete(batch)
    // The sink is done with the bytes: the buffer serves a later batch.
    if (this.spare.length < this.opts.maxInflight && batch.buf.length <= 2 * this.opts.maxBytes) this.spare.push(batch.buf)
    batch.buf = NO_BYTES
    this.onFlush({
      lines: batch.lines,
      frames: batch.acks.length,
      bytes: batch.bytes,
      durationMs: performance.now() - started,
      error,
    })
    if (!batch.answered) {
      batch.answered = true
      this.owing--
      if (error?.rejected === undefined) ackAll(batch.acks, error)
      else {
        const outcomes = frameOutcomes(batch.counts, error)
        for (let i = 0; i < batch.acks.length; i++) ackOne(batch.acks[i] as Ack, outcomes[i])
      }
    }
    this.pump()
    this.wakeIdleWaiters()
  }

  /**
   * Room for `bytes` more in the batch's buffer: a spare one if it is large enough, else a
   * new one of the last batch's size or twice the current one (at least the frame's
   * need), with what the batch holds copied over.
   */
  private grow(batch: Batch, bytes: number): void {
    const need = batch.bytes + bytes
    let next: Buffer | undefined
    if (batch.bytes === 0) {
      const spare = this.spare.pop()
      if (spare !== undefined && spare.length >= need) next = spare
    }
    if (next === undefined) {
      const size = Math.max(need, FIRST_CAPACITY_BYTES, 2 * batch.buf.length, batch.bytes === 0 ? this.lastBatchBytes : 0)
      next = Buffer.allocUnsafe(Math.min(size, Math.max(need, this.opts.maxBytes)))
      if (batch.bytes > 0) next.set(batch.buf.subarray(0, batch.bytes))
    }
    batch.buf = next
  }

  private answeredAll(): boolean {
    return this.owing === 0 && this.full.length === 0 && this.current.acks.length === 0
  }

  private wakeIdleWaiters(): void {
    if (!this.answeredAll() || this.idleWaiters.length === 0) return
    const waiters = this.idleWaiters
    this.idleWaiters = []
    for (const w of waiters) w()
  }
}

function ackAll(acks: Ack[], error: SinkError | undefined): void {
  for (let i = 0; i < acks.length; i++) ackOne(acks[i] as Ack, error)
}

function ackOne(ack: Ack, error: SinkError | undefined): void {
  try {
    ack(error)
  } catch {
    // An ack belongs to a connection; its failure must not stop the others' acks.
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
