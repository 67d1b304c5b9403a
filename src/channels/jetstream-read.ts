import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import type { NatsBus } from '../bus/nats.js'
import { channelSubject, draftOf, eventFrame, subjectChannel } from './events.js'
import { CHANNEL_STREAM_NAME, ChannelLogError, type LoggedEvent, type ReadSinceResult } from './types.js'

/** A history read's consumer is removed by the server this long after it was last used, should its delete be lost. */
const READ_CONSUMER_INACTIVE_MS = 30_000
/** The longest one history read waits for the messages the consumer said it has. */
const READ_EXPIRES_MS = 5_000
const NANOS_PER_MS = 1_000_000

/** When the stream stored a message, in epoch milliseconds: the same on every instance. */
export function storedAtMs(timestampNanos: bigint): number {
  return Number(timestampNanos / BigInt(NANOS_PER_MS))
}

export interface ReadRequest {
  bus: NatsBus
  channelId: string
  since: number
  /** A stored message as an event; undefined for one that is none (skipped). */
  decode(subject: string, data: Uint8Array, seq: number, storedAtMs: number): LoggedEvent | undefined
}

/**
 * The events of one channel after `since`, from the CHANNELS stream (ChannelLog.readSince).
 * One consumer filtered on the channel's subject, starting at since + 1, fetched in one
 * batch: measured against a direct get per message on a 100-event history, it is the
 * faster one past a handful of events (see the notes of the channels work).
 *
 * `expired` is decided conservatively, since the stream does not say which channel a
 * removed message belonged to: the stream's oldest message is after since + 1 (max age or
 * stream limits removed some), or the channel holds as many messages as the per-subject
 * limit keeps and its oldest is after since + 1 (the limit dropped some).
 */
export async function readChannelSince(req: ReadRequest): Promise<ReadSinceResult> {
  const js = req.bus.jetstream()
  const jsm = req.bus.jetstreamManager()
  if (js === undefined || jsm === undefined || req.bus.status().status !== 'up') {
    throw new ChannelLogError('unavailable', 'the channel history is not reachable: NATS is down')
  }
  try {
    return await read(js, jsm, req)
  } catch (err) {
    if (err instanceof ChannelLogError) throw err
    throw new ChannelLogError('unavailable', `the channel history could not be read: ${(err as Error).message}`, { cause: err })
  }
}

async function read(js: JetStreamClient, jsm: JetStreamManager, req: ReadRequest): Promise<ReadSinceResult> {
  const { since } = req
  const subject = channelSubject(req.channelId)
  const info = await jsm.streams.info(CHANNEL_STREAM_NAME, { subjects_filter: subject })
  const { first_seq: firstSeq, last_seq: lastSeq } = info.state
  if (since > lastSeq) return { ok: false, reason: 'unknown_offset' }
  if (since + 1 < firstSeq) return { ok: false, reason: 'expired' }
  const kept = info.state.subjects?.[subject] ?? 0
  if (kept === 0 || since === lastSeq) return { ok: true, events: [] }
  const perSubjectLimit = info.config.max_msgs_per_subject ?? 0

  const ci = await jsm.consumers.add(CHANNEL_STREAM_NAME, {
    filter_subject: subject,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: since + 1,
    ack_policy: AckPolicy.None,
    mem_storage: true,
    num_replicas: 1,
    inactive_threshold: READ_CONSUMER_INACTIVE_MS * NANOS_PER_MS,
  })
  const events: LoggedEvent[] = []
  let firstAfter = 0
  let seen = 0
  try {
    const pending = ci.num_pending
    if (pending > 0) {
      const consumer = js.consumers.getConsumerFromInfo(ci)
      const batch = await consumer.fetch({ max_messages: pending, expires: READ_EXPIRES_MS })
      for await (const m of batch) {
        if (seen === 0) firstAfter = m.seq
        seen++
        const event = req.decode(m.subject, m.data, m.seq, storedAtMs(m.timestampNanos))
        if (event !== undefined) events.push(event)
        if (seen >= pending) break
      }
      if (seen < pending) {
        // Removed while being read (max age): what is left may no longer reach back to since.
        return { ok: false, reason: 'expired' }
      }
    }
  } finally {
    jsm.consumers.delete(CHANNEL_STREAM_NAME, ci.name).catch(() => {})
  }
  if (perSubjectLimit > 0 && kept >= perSubjectLimit && seen >= kept && firstAfter > since + 1) {
    return { ok: false, reason: 'expired' }
  }
  return { ok: true, events }
}

/** Why a message on `channel.<id>` is no event (the log's onDropped). */
export type DropReason = 'not_json' | 'invalid' | 'too_large'

export type StoredDecoded = { ok: true; event: LoggedEvent } | { ok: false; reason: DropReason; why: string }

/**
 * A message of the CHANNELS stream as the event every instance makes of it: the channel
 * from the subject, the offset its sequence, the timestamp its own or else the stream's.
 */
export function decodeStored(subject: string, data: Uint8Array, seq: number, storedAt: number, maxBytes: number): StoredDecoded {
  const channelId = subjectChannel(subject)
  if (channelId === undefined) return { ok: false, reason: 'invalid', why: 'the subject names no valid channel' }
  if (data.byteLength > maxBytes) return { ok: false, reason: 'too_large', why: `larger than ${maxBytes} bytes` }
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'))
  } catch {
    return { ok: false, reason: 'not_json', why: 'not JSON' }
  }
  const decoded = draftOf(channelId, json)
  if (!decoded.ok) return { ok: false, reason: 'invalid', why: decoded.reason }
  const { type, data: payload, timestamp } = decoded.draft
  const fields = { type, channelId, timestamp: timestamp ?? storedAt, data: payload, offset: seq }
  return { ok: true, event: { ...fields, frame: eventFrame(fields) } }
}
