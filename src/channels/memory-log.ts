import { eventFrame } from './events.js'
import {
  ChannelLogError,
  type ChannelLog,
  type ChannelLogStatus,
  type EventDraft,
  type LoggedEvent,
  type ReadSinceResult,
} from './types.js'

export interface MemoryChannelLogOptions {
  /** Events kept per channel. */
  historySize: number
  /** Events older than this are dropped from the history. */
  historyMaxAgeS: number
  /** An event whose frame is larger is refused. */
  eventMaxBytes: number
  now?: () => number
}

// Offsets count from the start time in µs, so every offset of an earlier process is lower
// than any of this one (unless that one averaged over 1,000 events per ms): a `since` from
// before a restart is recognised as older than this process's history. One counter per
// process, so logs of several apps in one process (tests) never hand out the same offset.
const OFFSETS_PER_MS = 1000
let nextOffset = 0
function takeOffset(): number {
  nextOffset = Math.max(nextOffset, Date.now() * OFFSETS_PER_MS)
  return nextOffset++
}
function peekOffset(): number {
  return Math.max(nextOffset, Date.now() * OFFSETS_PER_MS)
}

// Channels whose whole history aged out are remembered (how far it reached) up to this
// many, about 100 bytes each; past it the oldest are forgotten and a `since` older than
// what they reached is answered `expired` for every channel without history (never a gap).
const FORGOTTEN_CHANNELS_MAX = 100_000

// How often aged events of channels nobody publishes to are dropped, as a fraction of the
// max age: an event outlives its age by at most a quarter of it.
const AGE_SWEEPS_PER_MAX_AGE = 4

interface Kept {
  event: LoggedEvent
  /** When it was stored (the event's own timestamp may be a backend's). */
  storedAt: number
}

interface History {
  kept: Kept[]
  /** The highest offset dropped from this channel's history (by size or age); 0 when none. */
  droppedUpTo: number
}

/**
 * The channels' history without NATS: a ring of the last `historySize` events per channel
 * in this process, none older than `historyMaxAgeS`. Appending delivers at once to the
 * hub (there is no other instance to hear about).
 */
export class MemoryChannelLog implements ChannelLog {
  readonly kind = 'memory' as const
  private readonly histories = new Map<string, History>()
  /** The offset before the first this log hands out: a `since` below it is from another process. */
  private readonly baseOffset: number
  private lastOffset: number
  /** Channels whose history aged out entirely: how far it reached. */
  private readonly forgotten = new Map<string, number>()
  /** The highest offset of a channel that fell out of `forgotten`. */
  private forgottenUpTo = 0
  private onEvent: ((event: LoggedEvent) => void) | undefined
  private closed = false
  private readonly sweeper: NodeJS.Timeout
  private readonly now: () => number

  constructor(private readonly opts: MemoryChannelLogOptions) {
    this.now = opts.now ?? Date.now
    this.baseOffset = peekOffset() - 1
    this.lastOffset = this.baseOffset
    const sweepMs = (opts.historyMaxAgeS * 1000) / AGE_SWEEPS_PER_MAX_AGE
    this.sweeper = setInterval(() => this.sweep(), sweepMs)
    this.sweeper.unref()
  }

  async start(onEvent: (event: LoggedEvent) => void): Promise<void> {
    this.onEvent = onEvent
  }

  async append(channelId: string, draft: EventDraft): Promise<LoggedEvent> {
    if (this.closed) throw new ChannelLogError('unavailable', 'the channel log is closed')
    const now = this.now()
    const timestamp = draft.timestamp ?? now
    // The offset is taken only for an event that is kept, so offsets stay dense per process.
    const probe = eventFrame({ type: draft.type, channelId, timestamp, data: draft.data, offset: peekOffset() })
    if (Buffer.byteLength(probe) > this.opts.eventMaxBytes) {
      throw new ChannelLogError('refused', `event is larger than ${this.opts.eventMaxBytes} bytes`)
    }
    const offset = takeOffset()
    const event: LoggedEvent = {
      type: draft.type,
      channelId,
      timestamp,
      data: draft.data ?? null,
      offset,
      frame: eventFrame({ type: draft.type, channelId, timestamp, data: draft.data, offset }),
    }
    const history = this.historyOf(channelId)
    history.kept.push({ event, storedAt: now })
    if (history.kept.length > this.opts.historySize) this.drop(history, history.kept.length - this.opts.historySize)
    this.lastOffset = offset
    this.onEvent?.(event)
    return event
  }

  /**
   * The last offset handed out; before any, the offset just below the first this log will
   * give (not 0), so a client that joined before the first event recovers every event of
   * this process, while a `since` of an earlier process is still recognised as expired.
   */
  position(): number {
    return this.lastOffset
  }

  async readSince(channelId: string, since: number): Promise<ReadSinceResult> {
    if (this.closed) throw new ChannelLogError('unavailable', 'the channel log is closed')
    if (since > this.lastOffset) return { ok: false, reason: 'unknown_offset' }
    if (since < this.baseOffset) return { ok: false, reason: 'expired' }
    const history = this.histories.get(channelId)
    if (history !== undefined) this.dropAged(channelId, history, this.now())
    const current = this.histories.get(channelId)
    const droppedUpTo = current?.droppedUpTo ?? this.forgotten.get(channelId) ?? this.forgottenUpTo
    if (since < droppedUpTo) return { ok: false, reason: 'expired' }
    return { ok: true, events: current === undefined ? [] : current.kept.filter((k) => k.event.offset > since).map((k) => k.event) }
  }

  status(): ChannelLogStatus {
    return this.closed ? { status: 'down', kind: this.kind, reason: 'closed' } : { status: 'up', kind: this.kind }
  }

  async close(): Promise<void> {
    this.closed = true
    clearInterval(this.sweeper)
  }

  private historyOf(channelId: string): History {
    let history = this.histories.get(channelId)
    if (history === undefined) {
      history = { kept: [], droppedUpTo: this.forgotten.get(channelId) ?? this.forgottenUpTo }
      this.forgotten.delete(channelId)
      this.histories.set(channelId, history)
    }
    return history
  }

  private drop(history: History, count: number): void {
    const dropped = history.kept.splice(0, count)
    const last = dropped[dropped.length - 1]
    if (last !== undefined) history.droppedUpTo = last.event.offset
  }

  private dropAged(channelId: string, history: History, now: number): void {
    const oldest = now - this.opts.historyMaxAgeS * 1000
    let aged = 0
    while (aged < history.kept.length && (history.kept[aged] as Kept).storedAt < oldest) aged++
    if (aged > 0) this.drop(history, aged)
    if (history.kept.length > 0) return
    // Nothing left of this channel but how far its history reached.
    this.histories.delete(channelId)
    this.forgotten.set(channelId, history.droppedUpTo)
    if (this.forgotten.size > FORGOTTEN_CHANNELS_MAX) {
      const [oldest, upTo] = this.forgotten.entries().next().value as [string, number]
      this.forgotten.delete(oldest)
      this.forgottenUpTo = Math.max(this.forgottenUpTo, upTo)
    }
  }

  private sweep(): void {
    const now = this.now()
    for (const [channelId, history] of this.histories) this.dropAged(channelId, history, now)
  }
}
