import jwt from 'jsonwebtoken'
import WebSocket from 'ws'
import { TEST_SECRET } from './app.js'

/**
 * A `/ws` channel client for tests: connects with a token and a channel id (and `since`),
 * keeps every frame it receives parsed, and waits for a frame matching a predicate. Also
 * `refusal()`, for upgrades that must be answered with an HTTP status instead of a 101.
 */

/** A frame as the gateway sends it (docs/API.md section 9). */
export interface ChannelFrame {
  type: string
  channelId: string
  timestamp: number
  offset?: number
  data: any
}

export interface ChannelConnectOptions {
  /** Sent as `?token=` unless `bearer` is set. */
  token: string
  channelId: string
  since?: number
  /** Send the token as `Authorization: Bearer` instead of in the query. */
  bearer?: boolean
  headers?: Record<string, string>
  /** `false`: the client never answers pings (a dead client, for ping-timeout tests). */
  autoPong?: boolean
}

/** A stream token (HS256, JWT_SECRET) for a user of an org: what `/mock-auth` would give. */
export function streamToken(user: { id: string; name?: string; orgId?: string }, expiresInS = 3600): string {
  return jwt.sign(
    { user: user.name ?? `user-${user.id}`, user_id: user.id, org: 'acme', org_id: user.orgId ?? 'org-1', account_id: '1', type: 'stream' },
    TEST_SECRET,
    { expiresIn: expiresInS },
  )
}

export function channelUrl(wsUrl: string, opts: ChannelConnectOptions): string {
  const q = new URLSearchParams({ channelId: opts.channelId })
  if (!opts.bearer) q.set('token', opts.token)
  if (opts.since !== undefined) q.set('since', String(opts.since))
  return `${wsUrl}/ws?${q.toString()}`
}

function clientOptions(opts: ChannelConnectOptions): WebSocket.ClientOptions {
  return {
    headers: { ...(opts.bearer ? { authorization: `Bearer ${opts.token}` } : {}), ...opts.headers },
    ...(opts.autoPong === false ? { autoPong: false } : {}),
  }
}

const DEFAULT_WAIT_MS = 15_000

export class ChannelClient {
  /** Every frame received, in order (a frame that is not JSON is kept as type `<not json>`). */
  readonly frames: ChannelFrame[] = []
  closed: { code: number; reason: string } | undefined
  private wakers = new Set<() => void>()

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const text = data.toString()
      try {
        this.frames.push(JSON.parse(text) as ChannelFrame)
      } catch {
        this.frames.push({ type: '<not json>', channelId: '', timestamp: 0, data: text })
      }
      this.wake()
    })
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() }
      this.wake()
    })
    ws.on('error', () => {})
  }

  /** Opens a channel connection; rejects with `HTTP <status>` when the upgrade is refused. */
  static connect(wsUrl: string, opts: ChannelConnectOptions): Promise<ChannelClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(channelUrl(wsUrl, opts), clientOptions(opts))
      const client = new ChannelClient(ws)
      ws.once('open', () => resolve(client))
      ws.once('unexpected-response', (_req, res) => {
        res.resume()
        reject(new Error(`HTTP ${res.statusCode}`))
      })
      ws.once('error', reject)
    })
  }

  /** Connects and waits for the first frame (presence:state), so the join is complete. */
  static async joined(wsUrl: string, opts: ChannelConnectOptions): Promise<ChannelClient> {
    const c = await ChannelClient.connect(wsUrl, opts)
    await c.waitFor((f) => f.type === 'presence:state', 'presence:state')
    return c
  }

  /** The HTTP answer to an upgrade that must be refused (fails when it is accepted). */
  static refusal(wsUrl: string, opts: ChannelConnectOptions): Promise<{ status: number; body: any }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(channelUrl(wsUrl, opts), clientOptions(opts))
      ws.once('open', () => {
        ws.terminate()
        reject(new Error('the upgrade was accepted'))
      })
      ws.once('unexpected-response', (_req, res) => {
        let text = ''
        res.on('data', (chunk: Buffer) => (text += chunk.toString()))
        res.on('end', () => {
          let body: unknown = text
          try {
            body = JSON.parse(text)
          } catch {}
          resolve({ status: res.statusCode ?? 0, body })
        })
      })
      ws.once('error', (err) => reject(err))
    })
  }

  /** The frames of these types, in order. */
  ofType(...types: string[]): ChannelFrame[] {
    return this.frames.filter((f) => types.includes(f.type))
  }

  /** Waits for (and returns) the first frame, from index `from` on, that matches. */
  async waitFor(match: (f: ChannelFrame) => boolean, what: string, from = 0, timeoutMs = DEFAULT_WAIT_MS): Promise<ChannelFrame> {
    await this.until(() => this.frames.slice(from).some(match), what, timeoutMs)
    return this.frames.slice(from).find(match) as ChannelFrame
  }

  /** Waits until `count` frames of these types arrived. */
  async waitForCount(count: number, types: string[], timeoutMs = DEFAULT_WAIT_MS): Promise<ChannelFrame[]> {
    await this.until(() => this.ofType(...types).length >= count, `${count} frames of ${types.join('|')}`, timeoutMs)
    return this.ofType(...types)
  }

  /** Resolves with the close code and reason once the connection is closed. */
  async waitClosed(timeoutMs = DEFAULT_WAIT_MS): Promise<{ code: number; reason: string }> {
    await this.until(() => this.closed !== undefined, 'the connection to close', timeoutMs, true)
    return this.closed as { code: number; reason: string }
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' || Buffer.isBuffer(frame) ? frame : JSON.stringify(frame))
  }

  /** Stops reading the socket (a slow consumer); resume() reads again. */
  pause(): void {
    this.ws.pause()
  }

  resume(): void {
    this.ws.resume()
  }

  close(): void {
    this.ws.close()
  }

  private until(cond: () => boolean, what: string, timeoutMs: number, closeIsFine = false): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (cond()) return done(resolve)
        if (!closeIsFine && this.closed !== undefined) {
          done(() => reject(new Error(`closed (${this.closed?.code} ${this.closed?.reason}) while waiting for ${what}; got ${this.seen()}`)))
        }
      }
      const timer = setTimeout(() => done(() => reject(new Error(`timed out waiting for ${what}; got ${this.seen()}`))), timeoutMs)
      const done = (finish: () => void) => {
        clearTimeout(timer)
        this.wakers.delete(check)
        finish()
      }
      this.wakers.add(check)
      check()
    })
  }

  private seen(): string {
    return JSON.stringify(this.frames.map((f) => f.type))
  }

  private wake(): void {
    for (const w of [...this.wakers]) w()
  }
}
