/**
 * The message bus between the gateway's parts and between its instances: NATS (with
 * JetStream) when NATS_URL is set, otherwise one process's in-memory stand-in with the
 * same interface. Subjects use NATS syntax everywhere (`.` separates tokens, `*` matches
 * one token, `>` the rest).
 *
 * Who uses it: the MQTT forwarder (`raw.<device>` into the RAW stream, `cmd.<device>` back
 * to devices), device revocations between instances (`mc.devices.revoked`), and the
 * channel hub (`channel.<id>`, history, presence).
 */

export type BusHeaders = Record<string, string>

export interface BusMessage {
  subject: string
  data: Uint8Array
  /** Undefined when the message carries none. */
  headers: BusHeaders | undefined
}

export interface BusSubscription {
  unsubscribe(): void
}

export interface PersistOptions {
  /** JetStream's de-duplication id (`Nats-Msg-Id`): the same id twice is stored once. */
  msgId?: string
  headers?: BusHeaders
  /** How long to wait for the stream's ack; default NATS_PUBLISH_TIMEOUT_MS. */
  timeoutMs?: number
}

export interface PersistResult {
  stream: string
  seq: number
  /** The stream already had a message with this msgId (nothing new stored). */
  duplicate: boolean
}

export interface StreamSpec {
  name: string
  subjects: string[]
  /** Messages older than this are removed; default: kept until limits. */
  maxAgeMs?: number
  maxMsgs?: number
  /** Per subject, the newest this many are kept (a channel's history). */
  maxMsgsPerSubject?: number
  maxBytes?: number
  /** JetStream's de-duplication window; default the server's (2 minutes). */
  duplicateWindowMs?: number
}

export type BusMode = 'nats' | 'in-process'

export interface BusStatus {
  status: 'up' | 'down'
  mode: BusMode
  /** nats: whether the server has JetStream enabled for this account (known once connected). */
  jetstream?: boolean
  /** nats: the server URL connected to (credentials removed). */
  server?: string
  /** down: why (stable words: 'connecting', 'disconnected', 'reconnecting', 'closed'). */
  reason?: string
  /** down: since when (ISO 8601). */
  since?: string
}

export type BusErrorKind =
  /** Not connected to NATS now (the publish may be retried). */
  | 'disconnected'
  /** No ack within the timeout (the message may or may not be stored: retry with the same msgId). */
  | 'timeout'
  /** No stream takes this subject (create it, then retry). */
  | 'no_stream'
  /** JetStream is not enabled on the server. */
  | 'no_jetstream'
  /** The bus is closed or draining: nothing more is taken. */
  | 'closed'
  /** The server refused the message for good (limits, permissions, a bad subject). */
  | 'refused'

export class BusError extends Error {
  override name = 'BusError'
  constructor(
    readonly kind: BusErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }

  /** Worth retrying the same message (with the same msgId) later. */
  get transient(): boolean {
    return this.kind === 'disconnected' || this.kind === 'timeout' || this.kind === 'no_stream'
  }
}

export interface Bus {
  readonly mode: BusMode
  status(): BusStatus
  /** Called on every change of `status().status` (up ↔ down). */
  onStatusChange(listener: (status: BusStatus) => void): void
  /** Core publish, at most once, never throws for a disconnected bus (NATS buffers it while reconnecting). Throws BusError('closed') after close. */
  publish(subject: string, data: Uint8Array, headers?: BusHeaders): void
  /**
   * Stores the message in the JetStream stream that covers `subject`, resolving once the
   * stream acknowledged it; rejects with a BusError. In-process: resolves at once (memory
   * is all there is), with increasing `seq` per stream created by ensureStream, or
   * stream '' when no stream covers the subject (the message is still delivered to
   * subscribers, like NATS does for a stream's subjects).
   */
  persist(subject: string, data: Uint8Array, opts?: PersistOptions): Promise<PersistResult>
  /** Messages on `subject` (wildcards allowed), core NATS delivery; `queue`: one member of the group gets each. */
  subscribe(subject: string, handler: (msg: BusMessage) => void, opts?: { queue?: string }): BusSubscription
  /**
   * Creates the stream when missing; an existing stream of that name is never altered
   * ('exists', even if its config differs: operators own it). Rejects with BusError
   * ('disconnected', 'no_jetstream', ...).
   */
  ensureStream(spec: StreamSpec): Promise<'created' | 'exists'>
  /** Stops taking publishes, delivers what is buffered, closes. Idempotent. */
  close(): Promise<void>
}

/** NATS subject tokens may not contain these; MQTT topic levels and ids are checked against it. */
export const SUBJECT_TOKEN_FORBIDDEN = /[\s.*>]/

/**
 * Whether `subject` matches `pattern` in NATS syntax (`*` one token, `>` one or more
 * trailing tokens). Used by the in-process bus; exported for tests and other matchers.
 */
export function subjectMatches(pattern: string, subject: string): boolean {
  if (pattern === subject) return true
  const p = pattern.split('.')
  const s = subject.split('.')
  for (let i = 0; i < p.length; i++) {
    const token = p[i]
    if (token === '>') return i < s.length
    if (i >= s.length) return false
    if (token !== '*' && token !== s[i]) return false
  }
  return p.length === s.length
}
