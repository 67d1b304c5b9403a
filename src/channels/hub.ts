import type { Logger } from 'pino'
import type { Bus, BusMessage, BusSubscription } from '../bus/bus.js'
import { CLOSE_GOING_AWAY } from '../ingest/stream-session.js'
import { ChannelConnection, type ChannelSocket, type DisconnectReason, type Recovery } from './connection.js'
import { errorFrame, eventFrame, parseClientFrame } from './events.js'
import {
  TYPING_SUBJECT_PREFIX,
  type Admission,
  type ChannelLog,
  type ChannelLogStatus,
  type LoggedEvent,
  type Member,
  type PresenceChange,
  type PresenceDirectory,
} from './types.js'

/** Counts the hub reports (the plugin turns them into metrics). */
export interface HubStats {
  opened(): void
  closed(): void
  /** A logged event arrived from the log (once per event). */
  eventIn(): void
  /** Frames sent to clients: events, presence, typing, errors. */
  framesOut(count: number): void
  recovery(result: 'recovered' | 'failed'): void
  disconnect(reason: DisconnectReason): void
}

export interface HubLimits {
  maxBufferedBytes: number
  maxClientFrameBytes: number
  clientFramesPerS: number
  pingIntervalMs: number
}

export interface HubDeps {
  log: ChannelLog
  presence: PresenceDirectory
  bus: Pick<Bus, 'publish' | 'subscribe'>
  limits: HubLimits
  /** ms from now until a token with this `exp` lapses (clock skew included). */
  msUntilExpiry(exp: number): number
  logger: Pick<Logger, 'debug' | 'warn'>
  stats: HubStats
  now?: () => number
}

export interface HubStatus {
  status: 'up' | 'down'
  log: ChannelLogStatus
  presence: { kind: PresenceDirectory['kind']; status: 'up' | 'down' }
}

interface Channel {
  connections: Set<ChannelConnection>
  /** This instance's users in the channel: their member and how many connections they have. */
  users: Map<string, { member: Member; connections: number }>
}

const TYPING_SUBJECTS = `${TYPING_SUBJECT_PREFIX}>`

/**
 * The `/ws` channels of this instance (docs/API.md section 9): who is connected where,
 * presence (this instance's members, with the directory's remote ones), logged events
 * fanned out to every connection once, recovery after a reconnect, and typing relayed
 * between instances over the bus. Free of HTTP: the route hands it sockets.
 */
export class ChannelHub {
  private readonly channels = new Map<string, Channel>()
  private readonly connections = new Set<ChannelConnection>()
  private readonly perUser = new Map<string, number>()
  private logStarted = false
  private presenceStarted = false
  private closing = false
  private pinger: NodeJS.Timeout | undefined
  private typing: BusSubscription | undefined
  private readonly now: () => number

  constructor(private readonly deps: HubDeps) {
    this.now = deps.now ?? Date.now
  }

  /**
   * Starts typing relay, pings and the remote presence at once; resolves when the log
   * and the presence directory are live (with NATS down, later: until then `ready` is false).
   */
  start(): Promise<void> {
    this.typing = this.deps.bus.subscribe(TYPING_SUBJECTS, (msg) => this.onTyping(msg))
    this.deps.presence.onRemoteChange((channelId, member, change) => this.onRemoteChange(channelId, member, change))
    this.pinger = setInterval(() => {
      for (const conn of this.connections) conn.checkHealth()
    }, this.deps.limits.pingIntervalMs)
    this.pinger.unref()
    const log = this.deps.log.start((event) => this.deliver(event)).then(() => {
      this.logStarted = true
    })
    const presence = this.deps.presence.start().then(() => {
      this.presenceStarted = true
    })
    return Promise.all([log, presence]).then(() => {})
  }

  /** Whether connections can be taken: the log and presence are live and no shutdown is under way. */
  get ready(): boolean {
    return this.logStarted && this.presenceStarted && !this.closing
  }

  status(): HubStatus {
    return {
      status: this.ready ? 'up' : 'down',
      log: this.deps.log.status(),
      presence: { kind: this.deps.presence.kind, status: this.presenceStarted && !this.closing ? 'up' : 'down' },
    }
  }

  /** Connections `userId` has on this instance, every channel together. */
  connectionsOf(userId: string): number {
    return this.perUser.get(userId) ?? 0
  }

  sessions(): Iterable<ChannelConnection> {
    return this.connections
  }

  get channelCount(): number {
    return this.channels.size
  }

  /** Distinct members (here or on other instances) of the channels with connections here. */
  memberCount(): number {
    let members = 0
    for (const [channelId, channel] of this.channels) {
      members += channel.users.size
      for (const m of this.deps.presence.remoteMembers(channelId)) if (!channel.users.has(m.user_id)) members++
    }
    return members
  }

  /**
   * A connection the route admitted: `presence:state` first, then (with `since`) the
   * events it missed, then live ones. The caller passes socket frames to onFrame and
   * pongs to the connection, and calls closed() when the socket is gone.
   */
  open(socket: ChannelSocket, admission: Admission, remote: string): ChannelConnection {
    const { channelId } = admission
    const member = admission.principal.member
    const conn = new ChannelConnection(socket, admission, remote, {
      maxBufferedBytes: this.deps.limits.maxBufferedBytes,
      clientFramesPerS: this.deps.limits.clientFramesPerS,
      msUntilExpiry: this.deps.msUntilExpiry,
      onDisconnect: (reason) => this.deps.stats.disconnect(reason),
      onEnded: (ended) => this.closed(ended),
    })
    let channel = this.channels.get(channelId)
    if (channel === undefined) {
      channel = { connections: new Set(), users: new Map() }
      this.channels.set(channelId, channel)
    }
    const local = channel.users.get(member.user_id)
    const wasPresent = local !== undefined || this.deps.presence.remoteHas(channelId, member.user_id)
    channel.connections.add(conn)
    this.connections.add(conn)
    this.perUser.set(member.user_id, this.connectionsOf(member.user_id) + 1)
    if (local !== undefined) local.connections++
    else channel.users.set(member.user_id, { member, connections: 1 })
    this.deps.stats.opened()

    // Events after this offset are the connection's: it goes out with the state, so a
    // client that reconnects later can pass it as `since` even if it never got an event.
    conn.lastOffset = this.deps.log.position()
    const members = this.membersOf(channelId, channel)
    this.sendTo(conn, eventFrame({ type: 'presence:state', channelId, timestamp: this.now(), offset: conn.lastOffset, data: { members } }))
    if (local === undefined) {
      this.deps.presence.announce(channelId, member)
      if (!wasPresent) this.broadcast(channel, eventFrame({ type: 'presence:join', channelId, timestamp: this.now(), data: member }), conn)
    }
    if (admission.since !== undefined) void this.recover(conn, admission.since)
    return conn
  }

  /** A frame from a client: typing is relayed, anything else is answered with an `error` frame. */
  onFrame(conn: ChannelConnection, data: Buffer): void {
    if (!conn.isOpen) return
    const { maxClientFrameBytes, clientFramesPerS } = this.deps.limits
    const now = this.now()
    if (!conn.takeFrame(now)) return this.refuse(conn, `more than ${clientFramesPerS} frames per second`)
    if (data.length > maxClientFrameBytes) return this.refuse(conn, `frame is larger than ${maxClientFrameBytes} bytes`)
    const parsed = parseClientFrame(data.toString('utf8'), conn.channelId)
    if (!parsed.ok) return this.refuse(conn, parsed.message)
    const frame = eventFrame({ type: parsed.type, channelId: conn.channelId, timestamp: now, data: conn.principal.member })
    try {
      // Every instance, this one included, hears it on its typing subscription.
      this.deps.bus.publish(TYPING_SUBJECT_PREFIX + conn.channelId, Buffer.from(frame))
    } catch (err) {
      this.deps.logger.debug({ err, channelId: conn.channelId }, 'typing not relayed')
      this.refuse(conn, 'typing could not be relayed now')
    }
  }

  /** `conn` is over: its socket is gone, or the gateway ended it. Idempotent. */
  closed(conn: ChannelConnection): void {
    if (!this.connections.delete(conn)) return
    conn.onClosed()
    this.deps.stats.closed()
    const userId = conn.userId
    const left = this.connectionsOf(userId) - 1
    if (left > 0) this.perUser.set(userId, left)
    else this.perUser.delete(userId)
    const channel = this.channels.get(conn.channelId)
    if (channel === undefined) return
    channel.connections.delete(conn)
    const local = channel.users.get(userId)
    if (local !== undefined && --local.connections === 0) {
      channel.users.delete(userId)
      // At shutdown every member was withdrawn already, and the others are closing too.
      if (!this.closing) {
        this.deps.presence.withdraw(conn.channelId, userId)
        if (!this.deps.presence.remoteHas(conn.channelId, userId)) {
          this.broadcast(channel, eventFrame({ type: 'presence:leave', channelId: conn.channelId, timestamp: this.now(), data: local.member }))
        }
      }
    }
    if (channel.connections.size === 0) this.channels.delete(conn.channelId)
  }

  /** Server shutdown: members leave the shared presence, then every connection gets 1001. */
  shutdown(): void {
    this.closing = true
    for (const [channelId, channel] of this.channels) {
      for (const userId of channel.users.keys()) this.deps.presence.withdraw(channelId, userId)
    }
    for (const conn of this.connections) conn.end(CLOSE_GOING_AWAY, 'server shutting down', 'shutdown')
  }

  /** Stops pings and typing, then closes the log and the presence directory. */
  async close(): Promise<void> {
    this.closing = true
    clearInterval(this.pinger)
    this.typing?.unsubscribe()
    const results = await Promise.allSettled([this.deps.log.close(), this.deps.presence.close()])
    for (const r of results) if (r.status === 'rejected') this.deps.logger.warn({ err: r.reason }, 'closing the channels failed')
  }

  /** A logged event: to every connection of its channel that has not had it, one frame for all. */
  private deliver(event: LoggedEvent): void {
    this.deps.stats.eventIn()
    const channel = this.channels.get(event.channelId)
    if (channel === undefined) return
    const frame = Buffer.from(event.frame)
    let sent = 0
    for (const conn of channel.connections) if (conn.deliver(event.offset, frame)) sent++
    if (sent > 0) this.deps.stats.framesOut(sent)
  }

  private async recover(conn: ChannelConnection, since: number): Promise<void> {
    const { result, sent } = await conn.recover(since, (s) => this.readSince(conn.channelId, s), this.now)
    if (result === undefined) return
    this.deps.stats.recovery(result.ok ? 'recovered' : 'failed')
    if (sent > 0) this.deps.stats.framesOut(sent)
  }

  private async readSince(channelId: string, since: number): Promise<Recovery> {
    try {
      return await this.deps.log.readSince(channelId, since)
    } catch (err) {
      this.deps.logger.warn({ err, channelId }, 'history unavailable for a recovery')
      return { ok: false, reason: 'unavailable' }
    }
  }

  private onTyping(msg: BusMessage): void {
    const channelId = msg.subject.slice(TYPING_SUBJECT_PREFIX.length)
    const channel = this.channels.get(channelId)
    if (channel === undefined) return
    const typing = decodeTyping(msg.data, channelId)
    if (!typing.ok) {
      this.deps.logger.debug({ channelId, reason: typing.reason }, 'typing message dropped')
      return
    }
    const sender = typing.event.data.user_id
    const frame = Buffer.from(eventFrame(typing.event))
    let sent = 0
    for (const conn of channel.connections) if (conn.userId !== sender && conn.send(frame)) sent++
    if (sent > 0) this.deps.stats.framesOut(sent)
  }

  private onRemoteChange(channelId: string, member: Member, change: PresenceChange): void {
    const channel = this.channels.get(channelId)
    // A member with connections here is present whatever other instances say.
    if (channel === undefined || channel.users.has(member.user_id)) return
    this.broadcast(channel, eventFrame({ type: `presence:${change}`, channelId, timestamp: this.now(), data: member }))
  }

  private membersOf(channelId: string, channel: Channel): Member[] {
    const members = [...channel.users.values()].map((u) => u.member)
    for (const m of this.deps.presence.remoteMembers(channelId)) if (!channel.users.has(m.user_id)) members.push(m)
    return members
  }

  private broadcast(channel: Channel, text: string, except?: ChannelConnection): void {
    const frame = Buffer.from(text)
    let sent = 0
    for (const conn of channel.connections) if (conn !== except && conn.send(frame)) sent++
    if (sent > 0) this.deps.stats.framesOut(sent)
  }

  private sendTo(conn: ChannelConnection, text: string): void {
    if (conn.send(Buffer.from(text))) this.deps.stats.framesOut(1)
  }

  private refuse(conn: ChannelConnection, message: string): void {
    conn.lastError = message
    this.sendTo(conn, errorFrame(conn.channelId, message, this.now()))
  }
}

type TypingEvent = { type: 'typing:start' | 'typing:stop'; channelId: string; timestamp: number; data: Member }

/** A typing message from the bus (any instance, or anyone who can publish on NATS): checked, never trusted. */
function decodeTyping(bytes: Uint8Array, channelId: string): { ok: true; event: TypingEvent } | { ok: false; reason: string } {
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
  } catch {
    return { ok: false, reason: 'not JSON' }
  }
  const m = json as { type?: unknown; channelId?: unknown; timestamp?: unknown; data?: { user_id?: unknown; name?: unknown } | null }
  if (m === null || typeof m !== 'object') return { ok: false, reason: 'not an object' }
  if (m.type !== 'typing:start' && m.type !== 'typing:stop') return { ok: false, reason: 'not a typing type' }
  if (m.channelId !== channelId) return { ok: false, reason: 'another channel than its subject' }
  if (typeof m.timestamp !== 'number') return { ok: false, reason: 'no timestamp' }
  const user = m.data
  if (typeof user !== 'object' || user === null || typeof user.user_id !== 'string' || typeof user.name !== 'string') {
    return { ok: false, reason: 'no member' }
  }
  return { ok: true, event: { type: m.type, channelId, timestamp: m.timestamp, data: { user_id: user.user_id, name: user.name } } }
}
