import { z } from 'zod'
import { CHANNEL_SUBJECT_PREFIX, type ChannelEvent, type EventDraft } from './types.js'

/**
 * The shapes of `/ws` events (docs/API.md section 9), shared by the hub, the logs and the
 * publish route: what a channel id may be, what a backend may publish, what a client may
 * send, and the one way an event becomes the JSON text clients get.
 */

export const CHANNEL_ID_MAX_LENGTH = 128
// Dot-separated tokens of letters, digits and _ : @ = + -: a channel id is a NATS subject
// tail (`channel.<id>`), so no spaces, `*`, `>` or empty tokens.
const CHANNEL_ID = /^[A-Za-z0-9_:@=+-]+(?:\.[A-Za-z0-9_:@=+-]+)*$/

/** Why `id` is no channel id, or undefined when it is one. */
export function channelIdProblem(id: string | undefined): string | undefined {
  if (id === undefined || id === '') return 'channelId is required'
  if (id.length > CHANNEL_ID_MAX_LENGTH) return `channelId is longer than ${CHANNEL_ID_MAX_LENGTH} characters`
  if (!CHANNEL_ID.test(id)) return 'channelId may hold letters, digits and _ : @ = + - in dot-separated parts'
  return undefined
}

/** `org:<org_id>:…` channels belong to one org (see policy.ts). */
export function channelOrg(channelId: string): string | undefined {
  const m = /^org:([^:]+):/.exec(channelId)
  return m === null ? undefined : m[1]
}

export const channelSubject = (channelId: string): string => CHANNEL_SUBJECT_PREFIX + channelId

/** The channel of a `channel.<id>` subject, or undefined for another subject. */
export function subjectChannel(subject: string): string | undefined {
  if (!subject.startsWith(CHANNEL_SUBJECT_PREFIX)) return undefined
  const id = subject.slice(CHANNEL_SUBJECT_PREFIX.length)
  return channelIdProblem(id) === undefined ? id : undefined
}

// Types the gateway itself sends: a backend may not forge them.
const RESERVED_TYPE = /^(?:presence|typing|recovery):|^error$/
export const EVENT_TYPE_MAX_LENGTH = 64

export const eventTypeSchema = z
  .string({ error: 'required, a string' })
  .min(1, 'must not be empty')
  .max(EVENT_TYPE_MAX_LENGTH, `must be at most ${EVENT_TYPE_MAX_LENGTH} characters`)
  .regex(/^[A-Za-z0-9_.:-]+$/, 'may hold letters, digits and _ . : -')
  .refine((t) => !RESERVED_TYPE.test(t), 'presence:*, typing:*, recovery:* and error are sent by the gateway only')

/** `POST /api/v1/channels/{channelId}/events` and the JSON on NATS `channel.<id>`. */
export const publishBodySchema = z.object({
  type: eventTypeSchema,
  /** Any JSON value; null when absent. */
  data: z.unknown().optional(),
  /** Epoch milliseconds; the time of storing when absent. */
  timestamp: z.number().int().nonnegative().optional(),
  /** On NATS the subject names the channel; a body naming another one is refused. */
  channelId: z.string().optional(),
}).meta({ examples: [{ type: 'message:created', data: { id: 'm1', text: 'hello' } }] })

export type DecodedEvent = { ok: true; draft: EventDraft } | { ok: false; reason: string }

/**
 * A message from NATS `channel.<id>` (a backend's `{"type","data"}` or an event this
 * gateway stored): invalid JSON, a bad type, another channel or an oversized body is
 * refused with the reason (the caller logs it and drops the message).
 */
export function decodeEvent(channelId: string, bytes: Uint8Array, maxBytes: number): DecodedEvent {
  if (bytes.byteLength > maxBytes) return { ok: false, reason: `larger than ${maxBytes} bytes` }
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
  } catch {
    return { ok: false, reason: 'not JSON' }
  }
  return draftOf(channelId, json)
}

/** A parsed body as a draft, or the first problem with it. */
export function draftOf(channelId: string, json: unknown): DecodedEvent {
  const parsed = publishBodySchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const field = issue?.path.join('.') ?? ''
    return { ok: false, reason: field === '' ? (issue?.message ?? 'invalid event') : `${field}: ${issue?.message}` }
  }
  const body = parsed.data
  if (body.channelId !== undefined && body.channelId !== channelId) {
    return { ok: false, reason: `channelId "${body.channelId}" is not the channel it was published to ("${channelId}")` }
  }
  return {
    ok: true,
    draft: { type: body.type, data: body.data ?? null, ...(body.timestamp !== undefined ? { timestamp: body.timestamp } : {}) },
  }
}

/** The JSON text of an event, keys in the documented order; made once per event, sent to every member. */
export function eventFrame(event: ChannelEvent): string {
  const head = `{"type":${JSON.stringify(event.type)},"channelId":${JSON.stringify(event.channelId)},"timestamp":${event.timestamp}`
  const offset = event.offset === undefined ? '' : `,"offset":${event.offset}`
  return `${head}${offset},"data":${JSON.stringify(event.data ?? null)}}`
}

/** An `error` frame for the client that sent something wrong. */
export function errorFrame(channelId: string, message: string, now: number): string {
  return eventFrame({ type: 'error', channelId, timestamp: now, data: { message } })
}

export type ClientFrame = { ok: true; type: 'typing:start' | 'typing:stop' } | { ok: false; message: string }

/**
 * A frame a client sent on `/ws`: `{"type":"typing:start"|"typing:stop","channelId"}`.
 * `channelId` may be left out; naming another channel than the connection's is an error.
 * Never throws.
 */
export function parseClientFrame(text: string, channelId: string): ClientFrame {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return { ok: false, message: 'frame is not JSON' }
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return { ok: false, message: 'frame must be a JSON object' }
  const { type, channelId: named } = json as { type?: unknown; channelId?: unknown }
  if (type !== 'typing:start' && type !== 'typing:stop') {
    return { ok: false, message: `unknown type ${JSON.stringify(type ?? null)}: send typing:start or typing:stop` }
  }
  if (named !== undefined && named !== channelId) {
    return { ok: false, message: `channelId ${JSON.stringify(named)} is not this connection's channel "${channelId}"` }
  }
  return { ok: true, type }
}
