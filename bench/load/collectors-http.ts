/**
 * An incremental HTTP/1.1 response reader for the collectors load generator's raw sockets:
 * the status and the start of each body (enough for an error message or a check of the
 * answer). Bodies framed by Content-Length or chunked; no close-delimited bodies (the
 * gateway frames every answer). Like http-load.ts's parser, which is private to that process.
 */

/** Bytes of a body kept: the answers read here are small JSON objects. */
const KEPT_BODY_BYTES = 512
const HEADER_END = '\r\n\r\n'
const CRLF = '\r\n'
/** "HTTP/1.1 200 OK": where the status code is. */
const STATUS_START = 9
const STATUS_END = 12

export type OnResponse = (status: number, bodyStart: string) => void

export class ResponseReader {
  private buf: Buffer = Buffer.alloc(0)
  private state: 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'trailers' = 'head'
  private status = 0
  private remaining = 0
  private kept: Buffer[] = []
  private keptBytes = 0

  constructor(private readonly onResponse: OnResponse) {}

  /** Feeds bytes; throws on a response it cannot frame (the connection is then useless). */
  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    for (;;) {
      if (this.state === 'head') {
        const end = this.buf.indexOf(HEADER_END)
        if (end === -1) return
        const head = this.buf.subarray(0, end).toString('latin1').toLowerCase()
        this.buf = this.buf.subarray(end + HEADER_END.length)
        this.status = Number(head.slice(STATUS_START, STATUS_END))
        if (!Number.isInteger(this.status)) throw new Error(`not an HTTP response: ${head.slice(0, 40)}`)
        this.kept = []
        this.keptBytes = 0
        const length = /\r\ncontent-length:\s*(\d+)/.exec(head)
        if (/\r\ntransfer-encoding:[^\r]*chunked/.test(head)) this.state = 'chunk-size'
        else if (length && Number(length[1]) > 0) {
          this.remaining = Number(length[1])
          this.state = 'body'
        } else this.done()
      } else if (this.state === 'body' || this.state === 'chunk-data') {
        if (this.buf.length === 0) return
        const take = Math.min(this.remaining, this.buf.length)
        // A chunk's data is followed by its CRLF, counted in `remaining` but not kept.
        const data = this.state === 'body' ? take : Math.min(take, Math.max(0, this.remaining - CRLF.length))
        this.keep(this.buf.subarray(0, data))
        this.buf = this.buf.subarray(take)
        this.remaining -= take
        if (this.remaining > 0) return
        if (this.state === 'body') this.done()
        else this.state = 'chunk-size'
      } else {
        const end = this.buf.indexOf(CRLF)
        if (end === -1) return
        const text = this.buf.subarray(0, end).toString('latin1')
        this.buf = this.buf.subarray(end + CRLF.length)
        if (this.state === 'trailers') {
          if (end === 0) this.done() // the empty line that ends the trailers
          continue
        }
        const size = parseInt(text, 16)
        if (!Number.isInteger(size) || size < 0) throw new Error(`bad chunk size ${JSON.stringify(text.slice(0, 20))}`)
        if (size === 0) this.state = 'trailers'
        else {
          this.remaining = size + CRLF.length
          this.state = 'chunk-data'
        }
      }
    }
  }

  private keep(part: Buffer): void {
    if (this.keptBytes >= KEPT_BODY_BYTES || part.length === 0) return
    this.kept.push(part)
    this.keptBytes += part.length
  }

  private done(): void {
    this.state = 'head'
    this.onResponse(this.status, Buffer.concat(this.kept).toString('utf8').slice(0, KEPT_BODY_BYTES))
  }
}
