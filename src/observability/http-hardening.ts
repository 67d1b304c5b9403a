import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import helmet from '@fastify/helmet'
import type { FastifyError, FastifyInstance, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { AppError } from '../errors.js'

/** `jsonMaxBodyBytes`: the body limit of every route that sets none of its own. */
export type HttpHardeningOptions = Pick<Config['http'], 'jsonMaxBodyBytes' | 'timeoutCheckIntervalMs'>

/**
 * The policy of every page the gateway serves: the admin page and Swagger UI load their
 * scripts, styles and images from this origin only (images also as data: URLs: the UI's
 * logo and icons), call the API with fetch() on this origin, and are never framed.
 * No `upgrade-insecure-requests` (helmet's default): behind plain HTTP (development, a
 * proxy on the same host) it would send every asset to an https:// URL nobody serves.
 */
export const CONTENT_SECURITY_POLICY = {
  'default-src': ["'self'"],
  'script-src': ["'self'"],
  'style-src': ["'self'"],
  'img-src': ["'self'", 'data:'],
  'font-src': ["'self'", 'data:'],
  'connect-src': ["'self'"],
  'frame-ancestors': ["'none'"],
  'base-uri': ["'self'"],
  'form-action': ["'self'"],
  'object-src': ["'none'"],
  'script-src-attr': ["'none'"],
}

const BODY_TOO_LARGE = 'FST_ERR_CTP_BODY_TOO_LARGE'

/**
 * Security headers on HTTP answers (@fastify/helmet) and a body limit on every route.
 *
 * Helmet rebuilds its middleware on every request (tens of µs): the ingest routes, which
 * machines call thousands of times a second and no browser renders, say `helmet: false`.
 * WebSocket upgrades keep it: a refusal before the 101 is an HTTP answer, and the cost is
 * nothing beside the handshake. HSTS is sent with every answer: browsers honour it only
 * over HTTPS (RFC 6797 section 8.1), i.e. behind Caddy, and ignore it on plain HTTP; no
 * `includeSubDomains`, as the gateway cannot know what else runs under its domain.
 *
 * Node checks for requests past HTTP_HEADERS_TIMEOUT_MS and HTTP_REQUEST_TIMEOUT_MS every
 * `timeoutCheckIntervalMs`, and answers them 408 and closes the connection.
 *
 * Routes that set no `bodyLimit` get `jsonMaxBodyBytes` (Fastify's server default is 1 MiB),
 * and a 413 naming the limit (Fastify's own message does not).
 */
export default fp(
  async (app: FastifyInstance, opts: HttpHardeningOptions) => {
    // Read by Node when the server starts listening (it has no setter after that); the
    // timeouts themselves are set where the server is made (src/app.ts).
    // (A public property of http.Server since Node 18.12 that @types/node does not declare.)
    Object.assign(app.server, { connectionsCheckingInterval: opts.timeoutCheckIntervalMs })
    app.addHook('onRoute', (route: RouteOptions) => {
      route.bodyLimit ??= opts.jsonMaxBodyBytes
      if (route.errorHandler !== undefined) return
      const limit = route.bodyLimit
      route.errorHandler = (err: FastifyError) => {
        if (err.code === BODY_TOO_LARGE) throw new AppError(413, 'body_too_large', `a request body may be at most ${limit} bytes`)
        throw err
      }
    })

    await app.register(helmet, {
      contentSecurityPolicy: { useDefaults: false, directives: CONTENT_SECURITY_POLICY },
      // The CSP's frame-ancestors 'none', for browsers that only know X-Frame-Options.
      frameguard: { action: 'deny' },
      strictTransportSecurity: { maxAge: 365 * 24 * 3600, includeSubDomains: false },
    })
  },
  { name: 'http-hardening' },
)

const CLIENT_ERRORS: Record<string, { status: number; error: string; message: string }> = {
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    error: 'request_timeout',
    message: 'the request did not arrive in time (HTTP_HEADERS_TIMEOUT_MS for its headers, HTTP_REQUEST_TIMEOUT_MS in all)',
  },
  HPE_HEADER_OVERFLOW: { status: 431, error: 'headers_too_large', message: 'the request headers are larger than 16 KiB' },
}
const BAD_REQUEST = { status: 400, error: 'bad_request', message: 'not an HTTP/1.1 request this server can read' }

/**
 * Fastify's `clientErrorHandler`: what Node's HTTP parser refuses before any route runs (a
 * request too slow, headers too large, bytes that are no HTTP) gets the API's error shape
 * (`{"error","message"}`) instead of Fastify's, then the connection is closed.
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const answer = CLIENT_ERRORS[err.code ?? ''] ?? BAD_REQUEST
  const body = JSON.stringify({ error: answer.error, message: answer.message })
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy(err)
}
