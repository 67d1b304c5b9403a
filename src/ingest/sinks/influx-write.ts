import http from 'node:http'
import https from 'node:https'
import type { Readable } from 'node:stream'
import { constants, createGunzip, gzip } from 'node:zlib'
import { HttpError, RequestTimedOutError } from '@influxdata/influxdb3-client'

export interface InfluxWriterOptions {
  url: string
  token: string | undefined
  database: string
  /** Undefined: bodies go out plain. */
  gzipLevel: number | undefined
  /** Socket idle time before a write is given up (and its socket destroyed). */
  timeoutMs: number
}

export interface InfluxWriter {
  write(body: Buffer): Promise<void>
  close(): void
}

// Bodies above this many bytes are gzipped (when gzip is on), as the client did; a batch is usually far larger.
const GZIP_THRESHOLD_BYTES = 1000
// An error body is read up to this many bytes; past it the response is dropped.
const ERROR_BODY_MAX_BYTES = 64 * 1024
// This many characters are kept of an error body that is not JSON.
const ERROR_TEXT_MAX_CHARS = 1000
// As the client reads a gzipped error body: a cut stream still yields what it holds.
const GUNZIP_OPTIONS = { flush: constants.Z_SYNC_FLUSH, finishFlush: constants.Z_SYNC_FLUSH }

/**
 * POSTs prepared line protocol to InfluxDB's v2 write endpoint (Core, Enterprise, Cloud
 * and victoria-metrics all take it) without re-encoding the body. Failures are the
 * client library's own error classes, built as its Node transport builds them, so the
 * gateway classifies them as before: `HttpError` for a status ≥ 300, `RequestTimedOutError`
 * after `timeoutMs` of silence, the socket's error otherwise.
 */
export function createInfluxWriter(opts: InfluxWriterOptions): InfluxWriter {
  const url = new URL(`${opts.url.replace(/\/+$/, '')}/api/v2/write`)
  url.searchParams.set('bucket', opts.database)
  url.searchParams.set('precision', 'ns')
  const transport = url.protocol === 'https:' ? https : http
  const agent = new transport.Agent({ keepAlive: true })
  const headers: http.OutgoingHttpHeaders = { 'content-type': 'text/plain; charset=utf-8', 'user-agent': 'matt-collector' }
  // An empty token sends no Authorization header (a server started without auth).
  if (opts.token) headers.authorization = `Token ${opts.token}`
  const level = opts.gzipLevel

  const post = (payload: Buffer, gzipped: boolean): Promise<void> =>
    new Promise((resolve, reject) => {
      let settled = false
      const settle = (err?: unknown): void => {
        if (settled) return
        settled = true
        if (err === undefined) resolve()
        else reject(err)
      }
      const req = transport.request(url, {
        method: 'POST',
        agent,
        timeout: opts.timeoutMs,
        headers: { ...headers, 'content-length': payload.length, ...(gzipped ? { 'content-encoding': 'gzip' } : {}) },
      })
      req.on('response', (res) => {
        res.on('error', settle)
        const status = res.statusCode ?? 600
        if (status >= 200 && status < 300) {
          res.on('end', () => settle()).resume()
          return
        }
        // Settled before a cut body's socket is destroyed, so the answer is what rejects.
        readErrorBody(res, (err, body, cut) => {
          settle(err ?? answerError(res, status, body))
          if (cut) req.destroy()
        })
      })
      // The client leaves a timed-out request open; its socket would hold the sink's answer for nothing.
      req.on('timeout', () => {
        settle(new RequestTimedOutError())
        req.destroy()
      })
      // ECONNREFUSED, a reset, a dropped connection: classified 'unreachable'.
      req.on('error', settle)
      req.on('close', () => settle(new Error('connection closed before the answer')))
      req.end(payload)
    })

  return {
    async write(body) {
      if (level === undefined || body.length <= GZIP_THRESHOLD_BYTES) return post(body, false)
      // On the libuv pool: the main thread does not pay for compression.
      const gz = await new Promise<Buffer>((resolve, reject) => gzip(body, { level }, (e, b) => (e ? reject(e) : resolve(b))))
      return post(gz, true)
    },
    close() {
      agent.destroy()
    },
  }
}

/**
 * Up to ERROR_BODY_MAX_BYTES of the (decoded) body, handed over in the event that ends it
 * (never a later tick, where the request's own close could come first); `cut`: more was sent.
 */
function readErrorBody(res: http.IncomingMessage, done: (err: Error | undefined, body: string, cut: boolean) => void): void {
  const stream: Readable = res.headers['content-encoding'] === 'gzip' ? res.pipe(createGunzip(GUNZIP_OPTIONS)) : res
  const chunks: Buffer[] = []
  let size = 0
  let over = false
  const finish = (err: Error | undefined, cut: boolean): void => {
    if (over) return
    over = true
    done(err, Buffer.concat(chunks).toString('utf8'), cut)
  }
  stream.on('data', (c: Buffer) => {
    if (over) return
    const room = ERROR_BODY_MAX_BYTES - size
    if (c.length <= room) {
      chunks.push(c)
      size += c.length
      return
    }
    chunks.push(c.subarray(0, room))
    finish(undefined, true)
  })
  stream.on('end', () => finish(undefined, false)).on('error', (e) => finish(e, false))
}

/** The failure the client's transport and write API make of a non-2xx answer (undefined: taken as written). */
function answerError(res: http.IncomingMessage, status: number, text: string): HttpError | undefined {
  if (status < 300) {
    // A status below 200: the client's write API answers this with its own message.
    const message = `2xx HTTP response status code expected, but ${status} returned`
    const err = new HttpError(status, message, undefined, '0', res.headers)
    err.message = message
    return err
  }
  // InfluxDB 3 Core answers a partial write as JSON without saying so: a body that parses is
  // kept whole (the client cut it to 1,000 characters, so a long list of refused lines could
  // not be read, and the batch was retried for ever instead of going to the dead letters).
  const declared = res.headers['content-type']
  const json = !String(declared).startsWith('application/json') && parsesAsJson(text)
  const contentType = json ? 'application/json' : declared
  let body = String(contentType).startsWith('application/json') ? text : text.slice(0, ERROR_TEXT_MAX_CHARS)
  const hint = res.headers['x-influxdb-error']
  if (body === '' && hint) body = String(hint)
  const err = new HttpError(status, res.statusMessage, body, contentType, res.headers)
  // An Enterprise cluster's note about its own state: the write was taken.
  if (typeof err.json?.error === 'string' && err.json.error.includes('hinted handoff queue not empty')) return undefined
  return err
}

function parsesAsJson(text: string): boolean {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}
