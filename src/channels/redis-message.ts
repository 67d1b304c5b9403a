import { channelIdProblem, draftOf } from './events.js'
import type { EventDraft } from './types.js'

/**
 * A message of the Go WebSocket server's Redis publishers (`PUBLISH channel:<id> <json>`)
 * checked as `POST /api/v1/channels/{id}/events` checks its body: the same channel id rules,
 * the same event schema, the same `CHANNEL_EVENT_MAX_BYTES`. Plain bytes in, no Redis here.
 */

export const REDIS_CHANNEL_PREFIX = 'channel:'
/** The pattern the subscriber listens to: every channel a backend of the Go server published to. */
export const REDIS_CHANNEL_PATTERN = `${REDIS_CHANNEL_PREFIX}*`

/** How a message ended, the `result` label of mc_redis_events_total. */
export type RedisEventResult = 'stored' | 'not_json' | 'invalid' | 'too_large' | 'refused' | 'unavailable' | 'overloaded' | 'not_holder'

export type DecodedRedisMessage =
  | { ok: true; channelId: string; draft: EventDraft }
  | { ok: false; result: 'not_json' | 'invalid' | 'too_large'; reason: string; channel: string }

// fatal: bytes that are not UTF-8 are no JSON text, rather than JSON with U+FFFD in it.
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Never throws: every way a message can be wrong is a result and a reason. */
export function decodeRedisMessage(channel: Buffer, payload: Buffer, maxBytes: number): DecodedRedisMessage {
  // A name that is not UTF-8 decodes with U+FFFD, which no channel id may hold.
  const name = channel.toString('utf8')
  const shown = name.length > 200 ? `${name.slice(0, 200)}…` : name
  if (!name.startsWith(REDIS_CHANNEL_PREFIX)) {
    return { ok: false, result: 'invalid', reason: `not a ${REDIS_CHANNEL_PATTERN} channel`, channel: shown }
  }
  const channelId = name.slice(REDIS_CHANNEL_PREFIX.length)
  const problem = channelIdProblem(channelId)
  if (problem !== undefined) return { ok: false, result: 'invalid', reason: problem, channel: shown }
  // Before decoding anything: a huge message costs no more than its length check.
  if (payload.byteLength > maxBytes) {
    return { ok: false, result: 'too_large', reason: `${payload.byteLength} bytes, more than ${maxBytes}`, channel: shown }
  }
  let json: unknown
  try {
    json = JSON.parse(utf8.decode(payload))
  } catch {
    return { ok: false, result: 'not_json', reason: 'not JSON text', channel: shown }
  }
  const decoded = draftOf(channelId, json)
  if (!decoded.ok) return { ok: false, result: 'invalid', reason: decoded.reason, channel: shown }
  return { ok: true, channelId, draft: decoded.draft }
}
