/**
 * A minimal WebSocket client on a raw TCP socket for the ws-fanout load generators: the
 * handshake, unmasked server frames parsed in place (several per read, no copy unless a
 * frame spans reads), pings answered with masked pongs, fragments joined. The `ws` client
 * costs several times more per received frame, and 1,000 of them on one core would measure
 * the subscriber process rather than the server (as ws-load corks for the same reason).
 */
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'

/** Frames larger than this end the connection: the bench's events are a few hundred bytes. */
const MAX_MESSAGE_BYTES = 1 << 20
const HEAD_MAX_BYTES = 16 * 1024
const OP_CONTINUATION = 0x0
const OP_CLOSE = 0x8
const OP_PING = 0x9
const OP_PONG = 0xa

export interface RawWsHandlers {
  /** A whole text or binary message; `payload` is valid only during the call. */
  message(payload: Buffer): void
  /** The connection ended; `why` says how (close code, HTTP refusal, socket error). */
  closed(why: string): void
}

export interface RawWsTarget {
  host: string
  port: number
  /** Path and query, e.g. `/ws?token=...&channelId=...`. */
  path: string
  localAddress?: string
  handshakeTimeoutMs: number
}

export class RawWs {
  private readonly socket: Socket
  private upgraded = false
  private ended = false
  private pending: Buffer | undefined
  private fragments: Buffer[] = []
  private fragmentBytes = 0

  constructor(
    target: RawWsTarget,
    private readonly on: RawWsHandlers,
  ) {
    this.socket = connect({ host: target.host, port: target.port, ...(target.localAddress ? { localAddress: target.localAddress } : {}) })
    this.socket.setNoDelay(true)
    const timer = setTimeout(() => this.end('handshake timed out'), target.handshakeTimeoutMs)
    this.socket.once('connect', () => {
      this.socket.write(
        `GET ${target.path} HTTP/1.1\r\nHost: ${target.host}:${target.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      )
    })
    this.socket.on('data', (chunk: Buffer) => {
      if (!this.upgraded) {
        const rest = this.handshake(chunk)
        if (rest === undefined) return
        clearTimeout(timer)
        if (rest.length === 0) return
        chunk = rest
      }
      this.frames(chunk)
    })
    this.socket.on('error', (err) => this.end(`socket error: ${err.message}`))
    this.socket.on('close', () => {
      clearTimeout(timer)
      this.end(this.upgraded ? 'connection closed without a close frame' : 'connection closed during the handshake')
    })
  }

  /** Closes the TCP connection at once (the bench is done with it). */
  destroy(): void {
    this.ended = true
    this.socket.destroy()
  }

  private end(why: string): void {
    if (this.ended) return
    this.ended = true
    this.socket.destroy()
    this.on.closed(why)
  }

  /** The bytes after the 101 response, or undefined while it is incomplete (or refused). */
  private handshake(chunk: Buffer): Buffer | undefined {
    const buf = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk])
    const end = buf.indexOf('\r\n\r\n')
    if (end === -1) {
      if (buf.length > HEAD_MAX_BYTES) this.end('handshake response too large')
      else this.pending = buf
      return undefined
    }
    this.pending = undefined
    const statusLine = buf.subarray(0, Math.min(end, buf.indexOf('\r\n'))).toString('latin1')
    if (!/^HTTP\/1\.1 101 /.test(statusLine)) {
      const body = buf.subarray(end + 4, end + 4 + 200).toString('utf8')
      this.end(`refused: ${statusLine}${body ? ` ${body}` : ''}`)
      return undefined
    }
    this.upgraded = true
    return buf.subarray(end + 4)
  }

  private frames(chunk: Buffer): void {
    let buf = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk])
    this.pending = undefined
    let at = 0
    while (!this.ended) {
      if (buf.length - at < 2) break
      const b0 = buf[at] as number
      const b1 = buf[at + 1] as number
      if ((b1 & 0x80) !== 0) return this.end('protocol error: the server masked a frame')
      let length = b1 & 0x7f
      let head = 2
      if (length === 126) {
        if (buf.length - at < 4) break
        length = buf.readUInt16BE(at + 2)
        head = 4
      } else if (length === 127) {
        if (buf.length - at < 10) break
        length = buf.readUInt32BE(at + 2) * 2 ** 32 + buf.readUInt32BE(at + 6)
        head = 10
      }
      if (length > MAX_MESSAGE_BYTES) return this.end(`protocol error: a frame of ${length} bytes`)
      if (buf.length - at < head + length) break
      const payload = buf.subarray(at + head, at + head + length)
      at += head + length
      this.frame(b0, payload)
    }
    if (at < buf.length && !this.ended) {
      // Copied: the rest of a read would otherwise keep the whole read's buffer alive.
      buf = Buffer.from(buf.subarray(at))
      this.pending = buf
    }
  }

  private frame(b0: number, payload: Buffer): void {
    const fin = (b0 & 0x80) !== 0
    const opcode = b0 & 0x0f
    if (opcode === OP_PING) return this.control(OP_PONG, payload)
    if (opcode === OP_PONG) return
    if (opcode === OP_CLOSE) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005
      const reason = payload.subarray(2).toString('utf8')
      return this.end(`closed by the server: ${code}${reason ? ` ${reason}` : ''}`)
    }
    if (opcode === OP_CONTINUATION || !fin) {
      this.fragments.push(Buffer.from(payload))
      this.fragmentBytes += payload.length
      if (this.fragmentBytes > MAX_MESSAGE_BYTES) return this.end('protocol error: a fragmented message too large')
      if (!fin) return
      const whole = Buffer.concat(this.fragments)
      this.fragments = []
      this.fragmentBytes = 0
      return this.on.message(whole)
    }
    this.on.message(payload)
  }

  /** A control frame from the client: masked, as RFC 6455 5.3 requires (payload ≤ 125 bytes). */
  private control(opcode: number, payload: Buffer): void {
    const mask = randomBytes(4)
    const out = Buffer.allocUnsafe(6 + payload.length)
    out[0] = 0x80 | opcode
    out[1] = 0x80 | payload.length
    mask.copy(out, 2)
    for (let i = 0; i < payload.length; i++) out[6 + i] = (payload[i] as number) ^ (mask[i & 3] as number)
    this.socket.write(out)
  }
}
