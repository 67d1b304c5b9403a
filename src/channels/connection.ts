import { randomUUID } from 'node:crypto'
import { eventFrame } from './events.js'
import {
  CLOSE_POLICY,
  CLOSE_REVOKED,
  CLOSE_TOKEN_EXPIRED,
  type Admission,
  type ChannelPrincipal,
  type ChannelSessionView,
  type ReadSinceResult,
} from './types.js'

/** The part of a `ws` WebSocket a channel connection uses (a `ws` server socket fits as is). */
export interface ChannelSocket {
  send(data: Buffer, options: { binary: boolean }): void
  readonly bufferedAmount: number
  close(code: number, reason: string): void
  terminate(): void
  ping(): void
}

/** Why the gateway ended a connection (mc_channel_disconnects_total{reason}). */
export type DisconnectReason = 'slow_consumer' | 'ping_timeout' | 'token_expired' | 'revoked' | 'admin' | 'shutdown'

export interface ConnectionDeps {
  /** Unsent bytes past which the client is cut off (1008). */
  maxBufferedBytes: number
  /** Frames a client may send per second. */
  clientFramesPerS: number
  /** ms from now until a token with this `exp` lapses (clock skew included). */
  msUntilExpiry(exp: number): number
  onDisconnect(reason: DisconnectReason): void
  /**
   * The gateway ended the connection: it is no member from now on, even while the socket
   * lingers (a close handshake with a client that does not read can take the close timeout).
   */
  onEnded(conn: ChannelConnection): void
}

// Two pings in a row without a pong (the first may be in flight): the client is gone.
const MISSED_PONGS_LIMIT = 2
// setTimeout's longest delay; a longer wait is re-armed when it fires.
const MAX_TIMER_MS = 2_147_483_647
const RATE_WINDOW_MS = 1000
const TEXT = { binary: false }

/** The TCP socket under a `ws` socket (ws has no public cork). */
interface Corkable {
  cork(): void
  uncork(): void
}

// Sockets written in this tick, uncorked together once it ends: the events that reach the
// hub in one read of the bus (a JetStream batch) leave for each client in one system call,
// not one per event (a writev per delivery was a third of the hub's CPU).
const corked = new Set<Corkable>()
let uncorkScheduled = false

function corkForThisTick(tcp: Corkable): void {
  if (corked.has(tcp)) return
  tcp.cork()
  corked.add(tcp)
  if (!uncorkScheduled) {
    uncorkScheduled = true
    process.nextTick(uncorkAll)
  }
}

function uncorkAll(): void {
  uncorkScheduled = false
  for (const tcp of corked) tcp.uncork()
  corked.clear()
}

/** What a history read found; `unavailable`: the log could not be read. */
export type Recovery = ReadSinceResult | { ok: false; reason: 'unavailable' }

/** An event waiting while the connection recovers its history. */
interface Held {
  offset: number
  frame: Buffer
}

/**
 * One `/ws` connection: what it has been sent (`lastOffset`, so no event twice), its
 * health (pongs, unsent bytes, token lifetime) and its frame budget. The hub decides what
 * goes where; this keeps one socket honest.
 */
export class ChannelConnection implements ChannelSessionView {
  readonly id = randomUUID()
  readonly channelId: string
  readonly principal: ChannelPrincipal
  readonly connectedAt = Date.now()
  eventsSent = 0
  framesReceived = 0
  lastError: string | undefined
  /** The offset of the last event sent (or known to the client); later events only. */
  lastOffset = 0
  private open = true
  private unansweredPings = 0
  private expiryTimer: NodeJS.Timeout | undefined
  private windowStart = 0
  private framesInWindow = 0
  /** While recovering: live events held until the missed ones are sent. */
  private held: Held[] | undefined
  private heldBytes = 0
  private readonly tcp: Corkable | undefined

  constructor(
    private readonly socket: ChannelSocket,
    admission: Admission,
    readonly remote: string,
    private readonly deps: ConnectionDeps,
  ) {
    this.channelId = admission.channelId
    this.principal = admission.principal
    this.tcp = (socket as { _socket?: Corkable })._socket
    this.armExpiry()
  }

  get userId(): string {
    return this.principal.member.user_id
  }

  get isOpen(): boolean {
    return this.open
  }

  /** Sends a frame; false when the connection is closed (nothing sent). */
  send(frame: Buffer): boolean {
    if (!this.open) return false
    if (this.tcp !== undefined) corkForThisTick(this.tcp)
    this.socket.send(frame, TEXT)
    this.eventsSent++
    // The client does not read what it is sent: stop here rather than buffer without end.
    if (this.socket.bufferedAmount > this.deps.maxBufferedBytes) this.end(CLOSE_POLICY, 'slow consumer', 'slow_consumer')
    return true
  }

  /** Sends a logged event unless this connection already had it (or, recovering, holds it). */
  deliver(offset: number, frame: Buffer): boolean {
    if (this.held !== undefined) {
      this.held.push({ offset, frame })
      this.heldBytes += frame.length
      // A recovery that takes long must not let held events grow memory either.
      if (this.heldBytes > this.deps.maxBufferedBytes) this.end(CLOSE_POLICY, 'slow consumer', 'slow_consumer')
      return false
    }
    return this.sendLogged(offset, frame)
  }

  /** Sends a logged event unless this connection already had it (recovery sends through here while live ones are held). */
  sendLogged(offset: number, frame: Buffer): boolean {
    if (offset <= this.lastOffset) return false
    this.lastOffset = offset
    return this.send(frame)
  }

  /**
   * Reconnected with `since`: the events after it from the history, then the live ones
   * held meanwhile. The offsets decide what is new, so nothing comes twice and nothing in
   * between is lost. When the history does not reach back, `recovery:failed` and live
   * events from the join on. `result` is undefined when the connection closed meanwhile.
   */
  async recover(since: number, read: (since: number) => Promise<Recovery>, now: () => number): Promise<{ result: Recovery | undefined; sent: number }> {
    this.held = []
    const atJoin = this.lastOffset
    this.lastOffset = since
    const result = await read(since)
    if (!this.open) return { result: undefined, sent: 0 }
    let sent = 0
    if (result.ok) {
      for (const event of result.events) if (this.sendLogged(event.offset, Buffer.from(event.frame))) sent++
    } else {
      // The client reloads what it shows; live events continue from where it joined.
      this.lastOffset = atJoin
      const failed = eventFrame({ type: 'recovery:failed', channelId: this.channelId, timestamp: now(), data: { since, reason: result.reason } })
      if (this.send(Buffer.from(failed))) sent++
    }
    const held = this.held ?? []
    this.held = undefined
    this.heldBytes = 0
    for (const h of held) if (this.sendLogged(h.offset, h.frame)) sent++
    return { result, sent }
  }

  /** A client frame arrived: false when it is over the per-second budget. */
  takeFrame(now: number): boolean {
    this.framesReceived++
    if (now - this.windowStart >= RATE_WINDOW_MS) {
      this.windowStart = now
      this.framesInWindow = 0
    }
    this.framesInWindow++
    return this.framesInWindow <= this.deps.clientFramesPerS
  }

  onPong(): void {
    this.unansweredPings = 0
  }

  /** Called every ping interval: pings, or ends a connection that stopped answering. */
  checkHealth(): void {
    if (!this.open) return
    if (this.unansweredPings >= MISSED_PONGS_LIMIT) {
      this.open = false
      this.clearTimers()
      this.deps.onDisconnect('ping_timeout')
      // No close handshake with a peer that does not answer.
      this.socket.terminate()
      this.deps.onEnded(this)
      return
    }
    this.unansweredPings++
    this.socket.ping()
  }

  /** ChannelSessionView: an admin disconnect or a revocation. */
  close(code: number, reason: string): void {
    this.end(code, reason, code === CLOSE_REVOKED ? 'revoked' : 'admin')
  }

  /** Closes with `code`, counting why; nothing is sent after. Idempotent. */
  end(code: number, reason: string, why: DisconnectReason): void {
    if (!this.open) return
    this.open = false
    this.held = undefined
    this.clearTimers()
    this.deps.onDisconnect(why)
    this.socket.close(code, reason)
    this.deps.onEnded(this)
  }

  /** The socket is gone. */
  onClosed(): void {
    this.open = false
    this.held = undefined
    this.clearTimers()
  }

  private armExpiry(): void {
    const ms = this.deps.msUntilExpiry(this.principal.exp)
    this.expiryTimer = setTimeout(
      () => {
        if (this.deps.msUntilExpiry(this.principal.exp) > 0) return this.armExpiry()
        this.end(CLOSE_TOKEN_EXPIRED, 'token expired', 'token_expired')
      },
      Math.min(Math.max(ms, 0), MAX_TIMER_MS),
    )
    this.expiryTimer.unref()
  }

  private clearTimers(): void {
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer)
    this.expiryTimer = undefined
  }
}
