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
/**
 * De-duplication memory per stream: at most this many msgIds, the oldest forgotten first.
 * Nothing is stored in-process, so the window only has to catch redeliveries, which come
 * within seconds; unbounded it held every id for two minutes (8 million, 500 MB at 70k/s).
 */
export const IN_PROCESS_MAX_DEDUP_IDS = 100_000
/** Subject → stream and subject → subscribers answers kept; past this the cache starts over. */
const SUBJECT_CACHE_MAX = 10_000

interface Sub {
  pattern: string
  handler: (msg: BusMessage) => void
  queue: string | undefined
}

interface Stream {
  name: string
  spec: StreamSpec
  seq: number
  windowMs: number
  seen: Map<string, Seen>
  /** The last IN_PROCESS_MAX_DEDUP_IDS msgIds stored, as a ring: the slot to write next is the oldest. */
  ring: string[]
  next: number
}

interface Seen {
  seq: number
  at: number
  /** Its ring slot: the id is forgotten when that slot is written again. */
  slot: number
}

/**
 * The bus without NATS_URL: one process, delivery in memory. Streams exist only as
 * sequence counters (there is no store to be durable in); de-duplication by msgId is kept
 * for a window, as JetStream does, so callers behave the same in both modes (bounded to
 * IN_PROCESS_MAX_DEDUP_IDS ids per stream).
 */
export class InProcessBus implements Bus {
  readonly mode = 'in-process' as const
  private subs = new Set<Sub>()
  private streams = new Map<string, Stream>()
  /** Which stream takes a subject (null: none); cleared when a stream is added. */
  private streamOf = new Map<string, Stream | null>()
  /** Which subscriptions match a subject; cleared on every subscribe and unsubscribe. */
  private subsOf = new Map<string, Sub[]>()
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
    const subs = this.matching(subject)
    if (subs.length > 0) this.deliver(subs, { subject, data, headers })
  }

  async persist(subject: string, data: Uint8Array, opts: PersistOptions = {}): Promise<PersistResult> {
    if (this.closed) throw new BusError('closed', 'bus is closed')
    const stream = this.streamFor(subject)
    const subs = this.matching(subject)
    if (subs.length > 0) {
      // Subscribers see the id as a header, as they do over NATS. Over NATS plain
      // subscribers get a duplicate too: only the stream drops it.
      const headers = opts.msgId !== undefined ? { ...opts.headers, 'Nats-Msg-Id': opts.msgId } : opts.headers
      this.deliver(subs, { subject, data, headers })
    }
    if (stream === null) return { stream: '', seq: 0, duplicate: false }
    if (opts.msgId === undefined) return { stream: stream.name, seq: ++stream.seq, duplicate: false }
    const now = Date.now()
    const seen = stream.seen.get(opts.msgId)
    if (seen !== undefined && now - seen.at < stream.windowMs) return { stream: stream.name, seq: seen.seq, duplicate: true }
    stream.seq++
    remember(stream, opts.msgId, stream.seq, now)
    return { stream: stream.name, seq: stream.seq, duplicate: false }
  }

  subscribe(subject: string, handler: (msg: BusMessage) => void, opts: { queue?: string } = {}): BusSubscription {
    if (this.closed) throw new BusError('closed', 'bus is closed')
    const sub: Sub = { pattern: subject, handler, queue: opts.queue }
    this.subs.add(sub)
    this.subsOf.clear()
    return {
      unsubscribe: () => {
        if (this.subs.delete(sub)) this.subsOf.clear()
      },
    }
  }

  async ensureStream(spec: StreamSpec): Promise<'created' | 'exists'> {
    if (this.closed) throw new BusError('closed', 'bus is closed')
    if (this.streams.has(spec.name)) return 'exists'
    const windowMs = spec.duplicateWindowMs ?? JETSTREAM_DEFAULT_DUPLICATE_WINDOW_MS
    this.streams.set(spec.name, { name: spec.name, spec, seq: 0, windowMs, seen: new Map(), ring: [], next: 0 })
    this.streamOf.clear()
    return 'created'
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.subs.clear()
    this.subsOf.clear()
    const status = this.status()
    for (const listener of this.listeners.splice(0)) {
      try {
        listener(status)
      } catch (err) {
        this.opts.onHandlerError?.(err, '')
      }
    }
  }

  private streamFor(subject: string): Stream | null {
    let stream = this.streamOf.get(subject)
    if (stream !== undefined) return stream
    stream = null
    for (const s of this.streams.values()) {
      if (s.spec.subjects.some((p) => subjectMatches(p, subject))) {
        stream = s
        break
      }
    }
    if (this.streamOf.size >= SUBJECT_CACHE_MAX) this.streamOf.clear()
    this.streamOf.set(subject, stream)
    return stream
  }

  private matching(subject: string): Sub[] {
    let subs = this.subsOf.get(subject)
    if (subs !== undefined) return subs
    subs = []
    for (const sub of this.subs) if (subjectMatches(sub.pattern, subject)) subs.push(sub)
    if (this.subsOf.size >= SUBJECT_CACHE_MAX) this.subsOf.clear()
    this.subsOf.set(subject, subs)
    return subs
  }

  /** Like NATS: every plain subscriber gets a copy; of a queue group, one member (in turn). */
  private deliver(subs: Sub[], msg: BusMessage): void {
    let groups: Map<string, Sub[]> | undefined
    for (const sub of subs) {
      if (sub.queue === undefined) {
        this.call(sub, msg)
        continue
      }
      groups ??= new Map()
      const members = groups.get(sub.queue) ?? []
      members.push(sub)
      groups.set(sub.queue, members)
    }
    if (groups === undefined) return
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

/**
 * Bounded de-duplication memory. A ring rather than deleting a Map's oldest entries: V8
 * leaves deleted entries as holes that iteration from the front walks over, which made
 * that O(holes) per message at the bound. Ids past the window stay until their slot is
 * reused; lookups check the age.
 */
function remember(stream: Stream, msgId: string, seq: number, at: number): void {
  const slot = stream.next
  stream.next = (slot + 1) % IN_PROCESS_MAX_DEDUP_IDS
  const old = stream.ring[slot]
  // An id stored again later lives in a newer slot: only forget it from its own.
  if (old !== undefined && stream.seen.get(old)?.slot === slot) stream.seen.delete(old)
  stream.ring[slot] = msgId
  stream.seen.set(msgId, { seq, at, slot })
}
