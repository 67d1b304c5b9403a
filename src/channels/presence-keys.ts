import type { PresenceEntry } from './presence-view.js'
import { PRESENCE_BUCKET } from './types.js'

/**
 * The presence bucket's keys and values: `<base64url(channelId)>.<base64url(userId)>.<instanceId>`
 * (KV keys allow only `[-/_=.a-zA-Z0-9]`, so the ids are encoded; the instance id is one
 * token as it is), the member JSON `{"user_id","name"}` as value.
 */

/** What an instance id may be: one KV key token. */
export const INSTANCE_ID_TOKEN = /^[-_=a-zA-Z0-9]+$/
const KEY_SUBJECT_PREFIX = `$KV.${PRESENCE_BUCKET}.`
const KV_OPERATION_HEADER = 'KV-Operation'

const toKeyToken = (s: string) => Buffer.from(s, 'utf8').toString('base64url')
const fromKeyToken = (s: string) => Buffer.from(s, 'base64url').toString('utf8')

export function presenceKey(channelId: string, userId: string, instanceId: string): string {
  return `${toKeyToken(channelId)}.${toKeyToken(userId)}.${instanceId}`
}

export interface PresenceKey {
  channelId: string
  userId: string
  instanceId: string
}

/** The parts of a watched message's subject (`$KV.<bucket>.<key>`), or undefined for anything else. */
export function parsePresenceSubject(subject: string): PresenceKey | undefined {
  if (!subject.startsWith(KEY_SUBJECT_PREFIX)) return undefined
  const parts = subject.slice(KEY_SUBJECT_PREFIX.length).split('.')
  if (parts.length !== 3) return undefined
  const [channel, user, instanceId] = parts as [string, string, string]
  return { channelId: fromKeyToken(channel), userId: fromKeyToken(user), instanceId }
}

export interface WatchedMessage {
  subject: string
  data: Uint8Array
  headers?: { get(name: string): string } | undefined
}

/**
 * A watched message: the entry it puts, `removed` (a delete or purge of the key), or
 * undefined when it is no presence entry (another subject, a value that is no member of
 * that user: ignored, never thrown).
 */
export function parsePresenceMessage(m: WatchedMessage, key: PresenceKey, seenAt: number): PresenceEntry | 'removed' | undefined {
  const op = m.headers?.get(KV_OPERATION_HEADER)
  if (op === 'DEL' || op === 'PURGE') return 'removed'
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength).toString('utf8'))
  } catch {
    return undefined
  }
  if (value === null || typeof value !== 'object') return undefined
  const { user_id, name } = value as { user_id?: unknown; name?: unknown }
  if (user_id !== key.userId || typeof name !== 'string') return undefined
  return { channelId: key.channelId, instanceId: key.instanceId, member: { user_id, name }, seenAt }
}
