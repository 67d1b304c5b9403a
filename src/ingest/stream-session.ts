import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { Batcher } from './batcher.js'
import type { FrameRewriter, Tagging } from './line-protocol/index.js'
import { receiveTimeNs } from './receive-time.js'
import type { SinkError } from './sinks/sink.js'

/** Who a stream belongs to, from a verified token. */
export interface StreamIdentity {
  user: string
  org: string
  /** Token expiry, epoch seconds. */
  exp: number
  tagging: Tagging
  /** The user behind the token, when it is one of the gateway's users (access or API token). */
  userId?: string
  /** The API token in use, when the session authenticated with one. */
  apiTokenId?: string
}

/** The part of a WebSocket the protocol needs (a `ws` WebSocket fits). */
export interface FrameSocket {
  send(data: string): void
  close(code: number, reason?: string): void
  pause(): void
  resume(): void
  /** Sends `count` `OK` replies in a row (one write); without it each is a send('OK'). */
  sendOk?(count: number): void
  /** Hold writes until uncork(): replies sent in one burst leave in one system call. */
  cork?(): void
  uncork?(): void
}

export interface StreamSessionDeps {
  /** Throws (with a message fit for `AUTH_FAILED: <message>`) or returns the identity. */
  authenticate(token: string): StreamIdentity | Promise<StreamIdentity>
  batcher: Pick<Batcher, 'submit'>
  /** Shared by the sessions of a process: every frame is rewritten synchronously. */
  rewriter: FrameRewriter
  /** ms from now until the identity's token lapses (skew included). */
  msUntilExpiry(exp: number): number
  authTimeoutMs: number
  maxPendingFrames: number
  /**
   * Bytes of frames held while an asynchronous `$AUTH` is checked; at this many the
   * socket is paused until the check is done (a paused socket may still deliver what it
   * had buffered: the bound is this plus about one read and one frame).
   */
  maxHeldBytes: number
  log: Pick<Logger, 'debug' | 'info' | 'warn'>
  stats?: StreamStats
  /** The client's address, for the admin API's list of sessions. */
  remote?: string
}

export interface StreamStats {
  frameAccepted(lines: number): void
  /** A frame answered with an `ERR`: nothing of it was written. */
  frameRejected(lines: number): void
  /** A bad line or a failed `$AUTH` was answered (the admin dashboard's last errors). */
  refused?(session: StreamSession, kind: 'bad_line' | 'auth_failure', reply: string): void
}

export const CLOSE_AUTH = 4401
export const CLOSE_AUTH_TIMEOUT = 4408
export const CLOSE_GOING_AWAY = 1001
/**
 * An administrator ended the session: RFC 6455 "policy", as on `/ws`. Not 4401: the
 * token stays valid, and the client may connect again.
 */
export const CLOSE_DISCONNECTED = 1008

const AUTH_PREFIX = '$AUTH '
const AUTH_BYTES = Buffer.from(AUTH_PREFIX)
// Sent replies are dropped from the front of the queue once this many have piled up.
const COMPACT_AT = 1024
// setTimeout's longest delay; a longer wait is re-armed when it fires.
const MAX_TIMER_MS = 2_147_483_647

/**
 * The `/time-series` protocol for one connection (docs/API.md section 5), free of any
 * HTTP framework: `$AUTH` first, then frames of line protocol, exactly one reply per
 * frame in arrival order, even though OKs complete out of order across batches.
 */
export class StreamSession {
  private identity: StreamIdentity | undefined
  private state: 'auth' | 'open' | 'closing' | 'closed' = 'auth'
  /** Replies in frame order from index `head`; `undefined` while a frame's fate is unknown. */
  private replies: Array<string | undefined> = []
  private head = 0
  /** Reply-sequence number of replies[0]. */
  private replyBase = 0
  private corked = false
  /** OKs answered while corked and not sent yet (sendOk sends them as one write). */
  private oks = 0
  private authTimer: NodeJS.Timeout | undefined
  private expiryTimer: NodeJS.Timeout | undefined
  /** Frames that arrived while an asynchronous authentication was under way. */
  private heldFrames: Buffer[] | undefined
  private heldBytes = 0
  /** Frames received that have no reply slot yet (held ones): they are owed a reply too. */
  private unslotted = 0
  private paused = false
  private closeAfterReplies: { code: number; reason: string } | undefined
  private onIdle: (() => void) | undefined
  // Facts for the admin API, kept as plain numbers: counting costs an increment per frame.
  /** Lines of frames answered `OK`. */
  linesAccepted = 0
  framesReceived = 0
  /** The last `ERR`/`AUTH_FAILED` reply's text. */
  lastError: string | undefined
  readonly connectedAt = new Date()
  readonly id = randomUUID()
  readonly remote: string

  constructor(
    private readonly socket: FrameSocket,
    private readonly deps: StreamSessionDeps,
  ) {
    this.remote = deps.remote ?? ''
    this.authTimer = setTimeout(() => {
      if (this.state === 'auth') this.close(CLOSE_AUTH_TIMEOUT, 'authentication timeout')
    }, deps.authTimeoutMs)
  }

  get user(): string | undefined {
    return this.identity?.user
  }

  get org(): string | undefined {
    return this.identity?.org
  }

  /** The identity in use (undefined before `AUTH_SUCCESS`). */
  get currentIdentity(): StreamIdentity | undefined {
    return this.identity
  }

  /**
   * The token in use was revoked (or its user deleted): answer what is owed, then
   * `AUTH_EXPIRED` and close 4401, as when the token lapses.
   */
  revoke(): void {
    if (this.state !== 'open') return
    this.answer(this.reserve(), 'AUTH_EXPIRED')
    this.closeWhenAnswered(CLOSE_AUTH, 'token revoked')
  }

  /**
   * An administrator ends the session: like a revocation, frames already received are
   * answered first (an `OK` owed is never lost), then the socket closes with `code`.
   */
  disconnect(code: number, reason: string): void {
    // Closing already (shutdown, expiry): it ends anyway, with the reason it has.
    if (this.state === 'closed' || this.state === 'closing') return
    this.closeWhenAnswered(code, reason)
  }

  /** A frame as received (UTF-8 is checked by the scanner, not before). */
  onFrame(frame: Buffer): void {
    this.framesReceived++
    this.dispatch(frame)
  }

  private dispatch(frame: Buffer): void {
    if (this.heldFrames !== undefined) {
      if (this.state === 'closed') return
      this.heldFrames.push(frame)
      this.unslotted++
      this.heldBytes += frame.length
      if (!this.paused && this.heldBytes >= this.deps.maxHeldBytes) {
        // Backpressure, not refusal: the client just waits until its token is checked.
        this.paused = true
        this.socket.pause()
      }
      return
    }
    switch (this.state) {
      case 'auth':
        return this.onFirstFrame(frame)
      case 'open':
        return isAuth(frame) ? this.onRenewal(frame) : this.onData(frame)
      case 'closing':
        // Shutdown or expiry under way: this frame is not taken, and the client is told so.
        return this.answer(this.reserve(), 'ERR busy: retry')
      default:
        return
    }
  }

  /** The socket is gone: stop every timer; pending acks find nothing to answer. */
  onClosed(): void {
    this.state = 'closed'
    this.dropHeld()
    this.clearTimers()
    this.onIdle?.()
  }

  /**
   * Server shutdown: take no more frames, answer every frame already received, then
   * close with 1001. Resolves once the socket has been closed.
   */
  shutdown(): Promise<void> {
    if (this.state === 'closed') return Promise.resolve()
    return new Promise((resolve) => {
      this.onIdle = resolve
      this.closeWhenAnswered(CLOSE_GOING_AWAY, 'server shutting down')
    })
  }

  private onFirstFrame(frame: Buffer): void {
    if (!isAuth(frame)) {
      this.socket.send(this.refused('auth_failure', 'AUTH_FAILED: first frame must be $AUTH <token>'))
      this.close(CLOSE_AUTH, 'authentication required')
      return
    }
    this.withIdentity(
      tokenOf(frame),
      (identity) => {
        // The check may have been asynchronous: the 4408 timeout or the client may have
        // ended the session meanwhile, and a closed session must stay closed.
        if (this.state !== 'auth') return
        clearTimeout(this.authTimer)
        this.authTimer = undefined
        this.state = 'open'
        this.adopt(identity)
        this.socket.send('AUTH_SUCCESS')
      },
      (reason) => {
        if (this.state !== 'auth') return
        this.socket.send(this.refused('auth_failure', `AUTH_FAILED: ${reason}`))
        this.close(CLOSE_AUTH, 'authentication failed')
      },
    )
  }

  private onRenewal(frame: Buffer): void {
    const slot = this.reserve()
    this.withIdentity(
      tokenOf(frame),
      (identity) => {
        // Closed meanwhile: nothing to adopt. Closing (shutdown, expiry): the reply is still
        // owed, but no new expiry timer for a session about to go.
        if (this.state === 'closed') return
        if (this.state === 'open') this.adopt(identity)
        this.answer(slot, 'AUTH_SUCCESS')
      },
      (reason) => this.answer(slot, this.refused('auth_failure', `AUTH_FAILED: ${reason}`)),
    )
  }

  private onData(frame: Buffer): void {
    const identity = this.identity as StreamIdentity
    const rw = this.deps.rewriter
    if (!rw.rewrite(frame, identity.tagging, receiveTimeNs)) {
      this.deps.stats?.frameRejected(countLines(frame))
      this.answer(this.reserve(), this.refused('bad_line', `ERR line ${rw.errorLine}: ${rw.reason}`))
      return
    }
    if (rw.lines === 0) {
      // Only blank lines and comments: nothing to write, so nothing to wait for.
      this.answer(this.reserve(), 'OK')
      return
    }
    const slot = this.reserve()
    const lines = rw.lines
    this.deps.batcher.submit(rw.output, lines, (err: SinkError | undefined) => {
      if (err === undefined) {
        this.linesAccepted += lines
        this.deps.stats?.frameAccepted(lines)
        this.answer(slot, 'OK')
      } else {
        this.deps.stats?.frameRejected(lines)
        this.lastError = err.transient ? 'ERR busy: retry' : `ERR rejected: ${err.message}`
        this.answer(slot, this.lastError)
      }
    })
  }

  /** An `ERR`/`AUTH_FAILED` reply of the client's doing: kept for the admin API, and recorded. */
  private refused(kind: 'bad_line' | 'auth_failure', reply: string): string {
    this.lastError = reply
    this.deps.stats?.refused?.(this, kind, reply)
    return reply
  }

  private withIdentity(token: string, ok: (id: StreamIdentity) => void, fail: (reason: string) => void): void {
    let result: StreamIdentity | Promise<StreamIdentity>
    try {
      result = this.deps.authenticate(token)
    } catch (err) {
      fail(reasonOf(err))
      return
    }
    if (!(result instanceof Promise)) {
      ok(result)
      return
    }
    // Hold later frames until we know who is sending them.
    this.heldFrames = []
    result.then(ok, (err: unknown) => fail(reasonOf(err))).finally(this.releaseHeld)
  }

  /** The check is done: held frames take their turn, in order, as if they arrived now. */
  private readonly releaseHeld = (): void => {
    const held = this.heldFrames ?? []
    this.heldFrames = undefined
    this.heldBytes = 0
    for (let i = 0; i < held.length && this.state !== 'closed'; i++) {
      // Counted as owed until it has its slot, so a close waiting for owed replies waits for it.
      this.unslotted--
      this.dispatch(held[i] as Buffer)
    }
    this.maybeResume()
    if (this.closeAfterReplies !== undefined && this.owed() === 0) {
      this.close(this.closeAfterReplies.code, this.closeAfterReplies.reason)
    }
  }

  private adopt(identity: StreamIdentity): void {
    this.identity = identity
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer)
    this.armExpiry()
  }

  private armExpiry(): void {
    const identity = this.identity as StreamIdentity
    const ms = this.deps.msUntilExpiry(identity.exp)
    this.expiryTimer = setTimeout(
      () => {
        if (this.deps.msUntilExpiry(identity.exp) > 0) return this.armExpiry()
        if (this.state !== 'open') return
        this.answer(this.reserve(), 'AUTH_EXPIRED')
        this.closeWhenAnswered(CLOSE_AUTH, 'token expired')
      },
      Math.min(Math.max(ms, 0), MAX_TIMER_MS),
    )
    this.expiryTimer.unref()
  }

  private reserve(): number {
    this.replies.push(undefined)
    if (!this.paused && this.owed() >= this.deps.maxPendingFrames) {
      // Backpressure: stop reading this socket until its replies catch up.
      this.paused = true
      this.socket.pause()
    }
    return this.replyBase + this.replies.length - 1
  }

  /** Replies not sent yet, held frames included. */
  private owed(): number {
    return this.replies.length - this.head + this.unslotted
  }

  private answer(slot: number, reply: string): void {
    if (this.state === 'closed') return
    this.replies[slot - this.replyBase] = reply
    const replies = this.replies
    let head = this.head
    if (head < replies.length && replies[head] !== undefined) {
      this.cork()
      do {
        const reply = replies[head] as string
        if (reply === 'OK' && this.corked && this.socket.sendOk !== undefined) {
          // A batch acknowledges a run of frames: their OKs leave as one write, at uncork.
          this.oks++
        } else {
          this.flushOks()
          this.socket.send(reply)
        }
        head++
      } while (head < replies.length && replies[head] !== undefined)
      if (head === replies.length) {
        this.replyBase += head
        this.replies = []
        head = 0
      } else if (head >= COMPACT_AT) {
        this.replies = replies.slice(head)
        this.replyBase += head
        head = 0
      }
      this.head = head
    }
    if (this.paused) this.maybeResume()
    if (this.closeAfterReplies !== undefined && this.owed() === 0) {
      this.close(this.closeAfterReplies.code, this.closeAfterReplies.reason)
    }
  }

  private maybeResume(): void {
    if (!this.paused || this.state === 'closed') return
    if (this.owed() >= this.deps.maxPendingFrames / 2 || this.heldBytes >= this.deps.maxHeldBytes) return
    this.paused = false
    this.socket.resume()
  }

  /** Replies answered in one burst (a batch acknowledges many frames) go out together. */
  private cork(): void {
    if (this.corked || this.socket.cork === undefined) return
    this.corked = true
    this.socket.cork()
    process.nextTick(this.uncork)
  }

  private readonly uncork = (): void => {
    this.flushOks()
    this.corked = false
    this.socket.uncork?.()
  }

  /** Sends the OKs counted while corked (before any other reply, the close frame included). */
  private flushOks(): void {
    if (this.oks === 0) return
    const n = this.oks
    this.oks = 0
    if (this.state !== 'closed') this.socket.sendOk?.(n)
  }

  private closeWhenAnswered(code: number, reason: string): void {
    if (this.state === 'auth') return this.close(code, reason)
    this.state = 'closing'
    // Frames that arrive now are answered at once (ERR busy), so reading on costs nothing,
    // unless they would pile up behind a token check.
    if (this.paused && this.heldFrames === undefined) {
      this.paused = false
      this.socket.resume()
    }
    this.closeAfterReplies = { code, reason }
    if (this.owed() === 0) this.close(code, reason)
  }

  private close(code: number, reason: string): void {
    if (this.state === 'closed') return
    this.flushOks()
    this.state = 'closed'
    this.dropHeld()
    this.clearTimers()
    this.socket.close(code, reason)
    this.onIdle?.()
  }

  /** Closed: held frames will never be answered, so they are not kept either. */
  private dropHeld(): void {
    if (this.heldFrames !== undefined) this.heldFrames = []
    this.heldBytes = 0
    this.unslotted = 0
  }

  private clearTimers(): void {
    if (this.authTimer !== undefined) clearTimeout(this.authTimer)
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer)
    this.authTimer = undefined
    this.expiryTimer = undefined
  }
}

function reasonOf(err: unknown): string {
  if (err instanceof Error && err.message !== '') return err.message
  return 'invalid token'
}

/** Lines of a refused frame (blank ones included: the scan stopped before it knew which are). */
function countLines(frame: Buffer): number {
  let n = 1
  for (let i = frame.indexOf(0x0a); i !== -1 && i < frame.length - 1; i = frame.indexOf(0x0a, i + 1)) n++
  return n
}

function isAuth(frame: Buffer): boolean {
  if (frame.length < AUTH_BYTES.length) return false
  for (let i = 0; i < AUTH_BYTES.length; i++) if (frame[i] !== AUTH_BYTES[i]) return false
  return true
}

function tokenOf(frame: Buffer): string {
  return frame.toString('utf8', AUTH_BYTES.length).trim()
}
