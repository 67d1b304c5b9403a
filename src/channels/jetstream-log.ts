import { DeliverPolicy, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream'
import { BusError } from '../bus/bus.js'
import type { NatsBus } from '../bus/nats.js'
import { wakeableSleep } from '../bus/sleep.js'
import { channelIdProblem, channelSubject, draftOf, eventFrame } from './events.js'
import { decodeStored, readChannelSince, storedAtMs, type DropReason } from './jetstream-read.js'
import {
  CHANNEL_STREAM_NAME,
  CHANNEL_SUBJECT_PREFIX,
  ChannelLogError,
  type ChannelLog,
  type ChannelLogStatus,
  type EventDraft,
  type LoggedEvent,
  type ReadSinceResult,
} from './types.js'

export type Log = {
  debug(obj: object, msg: string): void
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export type { DropReason } from './jetstream-read.js'

export interface JetStreamChannelLogOptions {
  bus: NatsBus
  /** CHANNEL_HISTORY_SIZE: events kept per channel (the stream's max_msgs_per_subject). */
  historySize: number
  /** CHANNEL_HISTORY_MAX_AGE_S: the stream's max age. */
  historyMaxAgeS: number
  /** CHANNEL_EVENT_MAX_BYTES: a stored event's JSON may be at most this long. */
  eventMaxBytes: number
  log: Log
  /** A message on `channel.<id>` that is no event (counted by the caller's metrics). */
  onDropped(reason: DropReason): void
}

// Waiting for the stream or a consumer while NATS is down or JetStream is missing: patient, and quiet.
const RETRY_MIN_MS = 250
const RETRY_MAX_MS = 5_000
/** Messages the live consumer asks for per pull: enough that a burst needs few round trips. */
const LIVE_BATCH = 1_000
/** A live pull's lifetime; its heartbeats come at half of it, and two missed ones make nats.js check the consumer. */
const LIVE_PULL_EXPIRES_MS = 10_000

/**
 * The channels' events in the JetStream stream CHANNELS on `channel.>` (docs/API.md
 * section 9): offsets are stream sequences, so every instance gives an event the same
 * offset and frame. Each instance reads the whole stream with one ordered consumer from
 * where it started; after a NATS restart or a new connection it starts a new one right
 * after the last sequence it delivered (and skips anything at or below it), so delivery
 * has no gap and no duplicate.
 */
export class JetStreamChannelLog implements ChannelLog {
  readonly kind = 'jetstream' as const
  private readonly bus: NatsBus
  private readonly log: Log
  private onEvent: ((event: LoggedEvent) => void) | undefined
  /** The highest stream sequence delivered to onEvent (the stream's last one when live delivery began). */
  private lastSeq = 0
  private positioned = false
  private live = false
  /** Bumped for every consumer: messages of an older one are ignored. */
  private generation = 0
  private messages: ConsumerMessages | undefined
  private closing = false
  private loop: Promise<void> | undefined
  private wake: (() => void) | undefined
  private restartWanted = false
  private markStarted!: () => void
  private readonly started = new Promise<void>((r) => (this.markStarted = r))

  constructor(private readonly opts: JetStreamChannelLogOptions) {
    this.bus = opts.bus
    this.log = opts.log
  }

  start(onEvent: (event: LoggedEvent) => void): Promise<void> {
    if (this.onEvent !== undefined) return this.started
    this.onEvent = onEvent
    this.bus.onStatusChange((s) => {
      if (s.status === 'up') this.requestRestart()
      else this.live = false
    })
    this.loop = this.run()
    return this.started
  }

  async append(channelId: string, draft: EventDraft): Promise<LoggedEvent> {
    const badId = channelIdProblem(channelId)
    if (badId !== undefined) throw new ChannelLogError('refused', badId)
    const checked = draftOf(channelId, draft)
    if (!checked.ok) throw new ChannelLogError('refused', checked.reason)
    const { type, data } = checked.draft
    const event = { type, channelId, timestamp: checked.draft.timestamp ?? Date.now(), data }
    const bytes = Buffer.from(JSON.stringify(event))
    if (bytes.byteLength > this.opts.eventMaxBytes) {
      throw new ChannelLogError('refused', `the event is larger than ${this.opts.eventMaxBytes} bytes`)
    }
    let seq: number
    try {
      seq = (await this.bus.persist(channelSubject(channelId), bytes)).seq
    } catch (err) {
      if (err instanceof BusError && err.kind === 'refused') throw new ChannelLogError('refused', err.message, { cause: err })
      // Disconnected, timed out, no stream yet, no JetStream, closing: not stored now, worth a retry.
      throw new ChannelLogError('unavailable', `the event was not stored: ${(err as Error).message}`, { cause: err })
    }
    // The live consumer delivers it (to this instance's members too): the log does not call onEvent here.
    const logged = { ...event, offset: seq }
    return { ...logged, frame: eventFrame(logged) }
  }

  position(): number {
    return this.lastSeq
  }

  readSince(channelId: string, since: number): Promise<ReadSinceResult> {
    return readChannelSince({
      bus: this.bus,
      channelId,
      since,
      // Dropped messages were logged and counted when they came live: quiet here.
      decode: (subject, data, seq, storedAt) => this.toEvent(subject, data, seq, storedAt, false),
    })
  }

  status(): ChannelLogStatus {
    const bus = this.bus.status()
    if (bus.status !== 'up') return { status: 'down', kind: this.kind, reason: `bus ${bus.reason ?? 'down'}` }
    if (!this.live) return { status: 'down', kind: this.kind, reason: 'consumer starting' }
    return { status: 'up', kind: this.kind }
  }

  async close(): Promise<void> {
    this.closing = true
    this.live = false
    this.generation++
    this.stopConsumer()
    this.wake?.()
    await this.loop
  }

  /** Keeps one live consumer until close: (re)made whenever the bus comes up, or after it ends. */
  private async run(): Promise<void> {
    let failures = 0
    while (!this.closing) {
      if (this.bus.status().status !== 'up') {
        await this.pause(RETRY_MAX_MS)
        continue
      }
      this.restartWanted = false
      let ended: Promise<Error | void>
      try {
        ;({ ended } = await this.openConsumer())
      } catch (err) {
        if (failures === 0) this.log.warn({ err, stream: CHANNEL_STREAM_NAME }, 'channel events: no live consumer yet, retrying')
        failures++
        await this.pause(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(failures, 8)))
        continue
      }
      if (failures > 0) this.log.info({ stream: CHANNEL_STREAM_NAME, after_failures: failures }, 'channel events: live again')
      failures = 0
      this.live = true
      this.markStarted()
      const reason = await Promise.race([ended.then((err) => err ?? 'ended'), this.untilRestartWanted()])
      this.live = false
      if (this.closing) break
      this.log.debug({ reason: String(reason), resume_after: this.lastSeq }, 'channel events: restarting the consumer')
      this.generation++
      this.stopConsumer()
      // A consumer that ended by itself (not for a reconnect) is not made again in a tight loop.
      if (reason !== 'restart') await this.pause(RETRY_MIN_MS)
    }
  }

  /** Creates the stream when missing, then the ordered consumer from just after the last delivered sequence. */
  private async openConsumer(): Promise<{ ended: Promise<Error | void> }> {
    const js = this.bus.jetstream()
    const jsm = this.bus.jetstreamManager()
    if (js === undefined || jsm === undefined) throw new BusError('disconnected', 'no NATS connection')
    await this.bus.ensureStream({
      name: CHANNEL_STREAM_NAME,
      subjects: [`${CHANNEL_SUBJECT_PREFIX}>`],
      maxAgeMs: this.opts.historyMaxAgeS * 1000,
      maxMsgsPerSubject: this.opts.historySize,
    })
    const { state } = await jsm.streams.info(CHANNEL_STREAM_NAME)
    if (!this.positioned) {
      // Live delivery begins with what is stored after now; what came before is history (readSince).
      this.lastSeq = state.last_seq
      this.positioned = true
    } else if (state.last_seq < this.lastSeq) {
      // The stream was deleted and made again (or its store lost): its sequences start over.
      this.log.warn({ stream: CHANNEL_STREAM_NAME, last_seq: state.last_seq, delivered: this.lastSeq }, 'channel events: the stream went back, following it from its end')
      this.lastSeq = state.last_seq
    }
    const generation = ++this.generation
    const consumer = await js.consumers.get(CHANNEL_STREAM_NAME, {
      filter_subjects: `${CHANNEL_SUBJECT_PREFIX}>`,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: this.lastSeq + 1,
    })
    if (generation !== this.generation || this.closing) {
      await consumer.delete().catch(() => {})
      throw new BusError('closed', 'consumer replaced while it was being made')
    }
    const messages = await consumer.consume({
      max_messages: LIVE_BATCH,
      expires: LIVE_PULL_EXPIRES_MS,
      callback: (m) => this.received(generation, m),
    })
    this.messages = messages
    void this.watchNotifications(messages)
    return { ended: messages.closed().then((err) => err ?? undefined) }
  }

  private received(generation: number, m: JsMsg): void {
    if (generation !== this.generation) return
    const seq = m.seq
    if (seq <= this.lastSeq) return
    this.lastSeq = seq
    const event = this.toEvent(m.subject, m.data, seq, storedAtMs(m.timestampNanos))
    if (event === undefined) return
    try {
      this.onEvent?.(event)
    } catch (err) {
      this.log.error({ err, channelId: event.channelId, offset: seq }, 'channel event handler failed')
    }
  }

  /** A stored message as a logged event, or undefined (logged, counted) when it is none. */
  private toEvent(subject: string, data: Uint8Array, seq: number, storedAt: number, report = true): LoggedEvent | undefined {
    const decoded = decodeStored(subject, data, seq, storedAt, this.opts.eventMaxBytes)
    if (decoded.ok) return decoded.event
    if (report) {
      this.log.warn({ subject, seq, reason: decoded.why }, 'channel message dropped: not an event')
      this.opts.onDropped(decoded.reason)
    }
    return undefined
  }

  /** nats.js heals an ordered consumer itself, except when its stream is gone: then this starts over (and makes it). */
  private async watchNotifications(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const n of messages.status()) {
        if (n.type === 'stream_not_found' && this.messages === messages) {
          this.requestRestart()
          return
        }
      }
    } catch {
      // The iterator ends with its consumer.
    }
  }

  private stopConsumer(): void {
    const messages = this.messages
    this.messages = undefined
    if (messages === undefined) return
    try {
      messages.stop()
    } catch {
      // Its connection is gone already: nothing left to stop.
    }
  }

  private requestRestart(): void {
    this.restartWanted = true
    this.wake?.()
  }

  private untilRestartWanted(): Promise<'restart'> {
    return new Promise((resolve) => {
      const check = () => (this.restartWanted || this.closing ? resolve('restart') : (this.wake = check))
      check()
    })
  }

  /** Sleeps up to `ms`, ended early by a bus status change or close. */
  private pause(ms: number): Promise<void> {
    return wakeableSleep(ms, (wake) => (this.wake = wake))
  }
}
