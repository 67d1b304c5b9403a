import {
  BusError,
  subjectMatches,
  type Bus,
  type BusHeaders,
  type BusMessage,
  type BusStatus,
  type BusSubscription,
  type PersistOptions,
  type PersistResult,
  type StreamSpec,
} from './bus.js'

/** What nats-server uses when a stream sets none. */
const JETSTREAM_DEFAULT_DUPLICATE_WINDOW_MS = 120_000

interface Sub {
  pattern: string
  handler: (msg: BusMessage) => void
  queue: string | undefined
}

/**
 * The bus without NATS_URL: one process, delivery in memory. Streams exist only as
 * sequence counters (there is no store to be durable in); de-duplication by msgId is kept
 * for a window, as JetStream does, so callers behave the same in both modes.
 */
export class InProcessBus implements Bus {
  readonly mode = 'in-process' as const
  private subs = new Set<Sub>()
  private streams = new Map<string, { spec: StreamSpec; seq: number; seen: Map<string, { seq: number; at: number }> }>()
  private closed = false
  private listeners: Array<(status: BusStatus) => void> = []
  private queueTurn = new Map<string, number>()

  /** `onHandlerError`: a subscriber threw (NATS would not let that reach the publisher either). */
  constructor(private readonly opts: { onHandlerError?: (err: unknown, subject: string) => void } = {}) {}

  status(): BusStatus {
    return this.closed ? { status: 'down', mode: this.mode, reason: 'closed' } : { status: 'up', mode: this.mode }
  }

  /** Up from the start; the one change is to down when closed. */
  onStatusChange(listener: (status: BusStatus) => void): void {
    this.listeners.push(listener)
  }

  publish(subject: string, data: Uint8Array, headers?: BusHeaders): void {
    if (this.closed) throw new BusError('closed', 'bus is closed')
    this.deliver({ subject, data, headers })
  }

  async persist(subject: string, data: Uint8Array, opts: PersistOptions = {}): Promise<PersistResult> {
    if (this.closed) throw new BusError('closed', 'bus is closed')
    const found = [...this.streams.entries()].find(([, s]) => s.spec.subjects.some((p) => subjectMatches(p, subject)))
    // Subscribers see the id as a header, as they do over NATS.
    const headers = opts.msgId !== undefined ? { ...opts.headers, 'Nats-Msg-Id': opts.msgId } : opts.headers
    if (found === undefined) {
      this.deliver({ subject, data, headers })
      return { stream: '', seq: 0, duplicate: false }
    }
    const [name, stream] = found
    const now = Date.now()
    if (opts.msgId !== undefined) {
      const windowMs = stream.spec.duplicateWindowMs ?? JETSTREAM_DEFAULT_DUPLICATE_WINDOW_MS
      const seen = stream.seen.get(opts.msgId)
      if (seen !== undefined && now - seen.at < windowMs) {
        // Over NATS, plain subscribers of the subject get a duplicate too: only the stream drops it.
        this.deliver({ subject, data, headers })
        return { stream: name, seq: seen.seq, duplicate: true }
      }
      // Forget ids older than the window (Map keeps insertion order: oldest first).
      for (const [id, s] of stream.seen) {
        if (now - s.at < windowMs) break
        stream.seen.delete(id)
      }
    }
    stream.seq++
    if (opts.msgId !== undefined) stream.seen.set(opts.msgId, { seq: stream.seq, at: now })
    this.deliver({ subject, data, headers })
    return { stream: name, seq: stream.seq, duplicate: false }
  }

  subscribe(subject: string, handler: (msg: BusMessage) => void, opts: { queue?: string } = {}): BusSubscription {
    if (this.closed) throw new BusError('closed', 'bus is closed')
    const sub: Sub = { pattern: subject, handler, queue: opts.queue }
    this.subs.add(sub)
    return { unsubscribe: () => void this.subs.delete(sub) }
  }

  async ensureStream(spec: StreamSpec): Promise<'created' | 'exists'> {
    if (this.closed) throw new BusError('closed', 'bus is closed')
    if (this.streams.has(spec.name)) return 'exists'
    this.streams.set(spec.name, { spec, seq: 0, seen: new Map() })
    return 'created'
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.subs.clear()
    const status = this.status()
    for (const listener of this.listeners.splice(0)) {
      try {
        listener(status)
      } catch (err) {
        this.opts.onHandlerError?.(err, '')
      }
    }
  }

  /** Like NATS: every plain subscriber gets a copy; of a queue group, one member (in turn). */
  private deliver(msg: BusMessage): void {
    const groups = new Map<string, Sub[]>()
    for (const sub of [...this.subs]) {
      if (!subjectMatches(sub.pattern, msg.subject)) continue
      if (sub.queue === undefined) {
        this.call(sub, msg)
        continue
      }
      const members = groups.get(sub.queue) ?? []
      members.push(sub)
      groups.set(sub.queue, members)
    }
    for (const [queue, members] of groups) {
      const turn = this.queueTurn.get(queue) ?? 0
      this.queueTurn.set(queue, turn + 1)
      this.call(members[turn % members.length]!, msg)
    }
  }

  private call(sub: Sub, msg: BusMessage): void {
    // Delivered after the publisher's turn, as over a network.
    queueMicrotask(() => {
      if (!this.subs.has(sub)) return
      try {
        sub.handler(msg)
      } catch (err) {
        this.opts.onHandlerError?.(err, msg.subject)
      }
    })
  }
}
