/**
 * The parts of the `/ws` channel hub and what they promise each other (docs/API.md
 * section 9). The hub (hub.ts) keeps this instance's connections; a ChannelLog gives every
 * event its offset, keeps the history and delivers events live; a PresenceDirectory tells
 * which members other instances have. Each has an in-process implementation (one
 * gateway, no NATS) and a NATS one (JetStream stream, KV bucket).
 */

/** A channel member as clients see it. */
export interface Member {
  user_id: string
  name: string
}

/** Who holds a `/ws` connection, from whichever token they presented. */
export interface ChannelPrincipal {
  member: Member
  /** The org's name and id when the token names them, '' otherwise. */
  org: string
  orgId: string
  /** Epoch seconds; the connection is closed (4401) once it has passed (plus the clock skew). */
  exp: number
  source: 'access' | 'stream' | 'oidc'
  /** Access tokens: this gateway's user id (a deleted user's connections are ended). */
  userId?: string
}

/** What the upgrade check found: everything the hub needs to open the session. */
export interface Admission {
  principal: ChannelPrincipal
  channelId: string
  /** `since=<offset>`: the last offset the client saw; undefined without recovery. */
  since: number | undefined
}

/** One event as every client receives it. */
export interface ChannelEvent {
  type: string
  channelId: string
  /** Epoch milliseconds. */
  timestamp: number
  data: unknown
  /** Increasing per channel; only events kept in the log have one (not presence or typing). */
  offset?: number
}

/** An event the log has stored, with its offset and its frame (the JSON text, made once). */
export interface LoggedEvent extends ChannelEvent {
  offset: number
  frame: string
}

/** What a backend publishes: the log fills in the channel, the timestamp when missing, and the offset. */
export interface EventDraft {
  type: string
  data: unknown
  timestamp?: number
}

export type ReadSinceResult =
  | { ok: true; events: LoggedEvent[] }
  /** `expired`: events after `since` are gone from the history; `unknown_offset`: `since` is beyond what the log has. */
  | { ok: false; reason: 'expired' | 'unknown_offset' }

export type ChannelLogErrorKind = 'unavailable' | 'refused'

export class ChannelLogError extends Error {
  override name = 'ChannelLogError'
  constructor(
    /** `unavailable`: not stored now, worth a retry (HTTP 503); `refused`: never (HTTP 400). */
    readonly kind: ChannelLogErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

export interface ChannelLogStatus {
  status: 'up' | 'down'
  kind: ChannelLog['kind']
  reason?: string
}

/**
 * The events of every channel, in offset order. `memory`: a ring per channel in this
 * process; `jetstream`: the CHANNELS stream on `channel.>`, which every instance consumes.
 */
export interface ChannelLog {
  readonly kind: 'memory' | 'jetstream'
  /**
   * Starts live delivery: from now on `onEvent` gets each event of every channel exactly
   * once, in offset order (also events others stored, e.g. published on NATS
   * `channel.<id>` by a backend). Resolves once live; with NATS down it keeps trying and
   * resolves when it is (the gateway starts anyway). Called once.
   */
  start(onEvent: (event: LoggedEvent) => void): Promise<void>
  /** Stores an event; resolves once durable, with the event as logged. Rejects with a ChannelLogError. */
  append(channelId: string, draft: EventDraft): Promise<LoggedEvent>
  /** The highest offset delivered to onEvent so far (for a client's first `since`); before any, an offset below every one this log will give (0 for JetStream). */
  position(): number
  /**
   * The events of `channelId` with offset > `since`, in order, reaching at least to the
   * position() at the time of the call; or not ok when the kept history no longer reaches
   * back to `since`. Rejects with ChannelLogError('unavailable').
   */
  readSince(channelId: string, since: number): Promise<ReadSinceResult>
  status(): ChannelLogStatus
  close(): Promise<void>
}

export type PresenceChange = 'join' | 'leave'

/**
 * Members on other instances. The hub is the authority for its own connections: it
 * announces a member on their first connection to a channel here and withdraws them after
 * the last; the directory reports what other instances announce and withdraw, and
 * members of an instance that stopped renewing (crashed) leave within the presence TTL.
 * `local`: one process, no remote members.
 */
export interface PresenceDirectory {
  readonly kind: 'local' | 'kv'
  /** Resolves once the remote members are known (the first `presence:state` is complete); with NATS down, keeps trying. */
  start(): Promise<void>
  announce(channelId: string, member: Member): void
  withdraw(channelId: string, userId: string): void
  /** Members other instances have in the channel now, each user once. */
  remoteMembers(channelId: string): Member[]
  remoteHas(channelId: string, userId: string): boolean
  /** A user's first remote appearance in a channel (join) or last disappearance (leave). */
  onRemoteChange(listener: (channelId: string, member: Member, change: PresenceChange) => void): void
  close(): Promise<void>
}

/** Who may join which channel: one function, in policy.ts. */
export type ChannelPolicy = (principal: ChannelPrincipal, channelId: string) => { ok: true } | { ok: false; reason: string }

/** A live `/ws` session as the admin API and the revocation watcher see it. */
export interface ChannelSessionView {
  readonly id: string
  readonly channelId: string
  readonly principal: ChannelPrincipal
  readonly remote: string
  /** Epoch milliseconds. */
  readonly connectedAt: number
  readonly eventsSent: number
  readonly framesReceived: number
  /** The message of the last `error` frame the hub sent it. */
  readonly lastError: string | undefined
  /** Ends the session (admin disconnect, revocation). */
  close(code: number, reason: string): void
}

/** Typing events travel between instances on `mc.typing.<channelId>` (core NATS or the in-process bus). */
export const TYPING_SUBJECT_PREFIX = 'mc.typing.'
/** Events of a channel are stored and fanned out on `channel.<channelId>`. */
export const CHANNEL_SUBJECT_PREFIX = 'channel.'
/** The JetStream stream that holds the channels' history. */
export const CHANNEL_STREAM_NAME = 'CHANNELS'
/** The KV bucket of members per channel and instance. */
export const PRESENCE_BUCKET = 'mc_presence'

/** WebSocket close codes of `/ws`. */
export const CLOSE_POLICY = 1008
export const CLOSE_TOKEN_EXPIRED = 4401
export const CLOSE_REVOKED = 4403
