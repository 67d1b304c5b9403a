import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { bearerToken } from '../auth/plugin.js'
import { AppError, badRequest, unauthorized } from '../errors.js'
import { security, type RawBodyDoc } from '../observability/openapi.js'
import type { Batcher } from './batcher.js'
import { decodeBody } from './body-encoding.js'
import { FrameRewriter, type Precision } from './line-protocol/index.js'
import { receiveTimeNs } from './receive-time.js'
import type { SinkError } from './sinks/sink.js'
import type { StreamIdentity } from './stream-session.js'

export interface HttpWriteOptions {
  /** Fastify's own register option: this plugin is encapsulated, so routes get it applied. */
  prefix: string
  /** Largest request body, compressed or not. */
  maxBodyBytes: number
  /** Seconds a client is told to wait when the gateway cannot take more. */
  retryAfterS: number
  /** Bytes of the bodies of all writes being handled at once (raw and decompressed); past it 503. */
  maxInflightBytes: number
}


const EMPTY = Buffer.alloc(0)
const V2_PRECISION = { ns: 'ns', us: 'us', ms: 'ms', s: 's' } as const
const V3_PRECISION = {
  auto: 'auto',
  nanosecond: 'ns',
  microsecond: 'us',
  millisecond: 'ms',
  second: 's',
  ns: 'ns',
  us: 'us',
  ms: 'ms',
  s: 's',
} as const

const errorSchema = z.object({ error: z.string(), message: z.string() })
const lineProtocolBody: RawBodyDoc = {
  description: 'Line protocol, one point per line; `Content-Encoding: gzip` accepted. Lines get `user` and `org` tags from the token.',
  contentTypes: ['text/plain'],
  example: 'temperature,location=room1 value=23.5 1700000000000000000\ncpu,host=a usage=0.5',
}
const writeDoc = { tags: ['ingest'], security: security.ingest, rawBody: lineProtocolBody }
const responses = {
  204: z.null().describe('every line is durably accepted'),
  400: errorSchema,
  401: errorSchema,
  413: errorSchema,
  503: errorSchema,
}

const v2Query = z.object({
  bucket: z.string().optional(),
  org: z.string().optional(),
  precision: z.enum(Object.keys(V2_PRECISION) as [keyof typeof V2_PRECISION]).default('ns'),
})
const v3Query = z.object({
  db: z.string().optional(),
  precision: z.enum(Object.keys(V3_PRECISION) as [keyof typeof V3_PRECISION]).default('auto'),
  accept_partial: z.string().optional(),
  no_sync: z.string().optional(),
})

declare module 'fastify' {
  interface FastifyRequest {
    ingestIdentity?: StreamIdentity
    /** Body bytes this request counts against maxInflightBytes until its response ends. */
    ingestBytes?: number
  }
}

/**
 * HTTP line-protocol ingest (docs/API.md section 6): the write APIs of InfluxDB 2 and 3,
 * so Telegraf's InfluxDB v2 output or any InfluxDB client can point at the gateway. Same
 * tagging, validation and durability as /time-series: 204 only once every line is accepted.
 */
export default async function httpWrite(app: FastifyInstance, opts: HttpWriteOptions): Promise<void> {
  // Bodies are line protocol whatever the content type says; JSON parsing is not wanted here.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: opts.maxBodyBytes }, (_req, body, done) =>
    done(null, body),
  )

  // Memory held by writes under way, counted as bodies are declared or read: without a
  // bound, concurrent writes could hold any number of maxBodyBytes bodies at once.
  let inflightBytes = 0
  const take = (request: FastifyRequest, bytes: number): void => {
    if (bytes <= 0) return
    // When nothing is under way any body within maxBodyBytes is taken, so none is refused forever.
    if (inflightBytes > 0 && inflightBytes + bytes > opts.maxInflightBytes) {
      throw new AppError(503, 'busy', 'the gateway is handling as much written data as it may: retry later')
    }
    inflightBytes += bytes
    request.ingestBytes = (request.ingestBytes ?? 0) + bytes
  }

  const authenticate = app.ingestAuthenticator
  const rewriter = new FrameRewriter()
  const onRequest = async (request: FastifyRequest, reply: FastifyReply) => {
    const token = bearerToken(request)
    try {
      request.ingestIdentity = await authenticate(token)
    } catch (err) {
      if (err instanceof AppError) throw err
      app.adminErrors.record({ kind: 'auth_failure', endpoint: 'http-write', reason: (err as Error).message, remote: request.ip })
      throw unauthorized((err as Error).message, 'invalid_token')
    }
    // Counted before the body is read (a body without Content-Length is counted once read).
    // 'close' comes once per response, whether it was sent or the client went away.
    reply.raw.once('close', () => {
      inflightBytes -= request.ingestBytes ?? 0
      request.ingestBytes = 0
    })
    const declared = Number(request.headers['content-length'] ?? 0)
    if (Number.isSafeInteger(declared) && declared <= opts.maxBodyBytes) take(request, declared)
  }

  /**
   * The request's body, decoded, and no longer the request's: it is not needed once
   * rewritten (the batcher copies the output), so it is not kept for the sink write's
   * whole latency, where it would outlive young collections and wait for a major GC.
   */
  const takeBody = (request: FastifyRequest): Promise<Buffer> => {
    const raw = Buffer.isBuffer(request.body) ? request.body : EMPTY
    take(request, raw.length - (request.ingestBytes ?? 0))
    request.body = undefined
    return decodeBody(raw, request.headers['content-encoding'], opts.maxBodyBytes)
  }

  /** Rewrites a (decoded) body; a decompressed one is held beside the raw one while it is. */
  const rewriteBody = (body: Buffer, request: FastifyRequest, precision: Precision): boolean => {
    if (request.headers['content-encoding']?.trim().toLowerCase() === 'gzip') take(request, body.length)
    return rewriter.rewrite(body, (request.ingestIdentity as StreamIdentity).tagging, receiveTimeNs, precision)
  }

  const write = async (request: FastifyRequest, precision: Precision): Promise<void> => {
    const identity = request.ingestIdentity as StreamIdentity
    const ok = rewriteBody(await takeBody(request), request, precision)
    if (!ok) {
      app.metrics.frames.inc({ result: 'error' })
      const reason = `line ${rewriter.errorLine}: ${rewriter.reason}`
      app.adminErrors.record({ kind: 'bad_line', endpoint: 'http-write', reason, user: identity.user, org: identity.org, remote: request.ip })
      throw badRequest(reason, 'invalid_line')
    }
    const lines = rewriter.lines
    if (lines === 0) return
    // Submitted at once: the batcher copies the lines before the rewriter is used again.
    const err = await submit(app.batcher, rewriter.output, lines)
    if (err === undefined) {
      app.metrics.frames.inc({ result: 'ok' })
      app.metrics.linesAccepted.inc(lines)
      return
    }
    app.metrics.frames.inc({ result: 'error' })
    if (err.transient) {
      throw new AppError(503, 'unavailable', 'the time-series sink cannot take data now: retry later', { cause: err })
    }
    throw badRequest(`rejected by the time-series sink: ${err.message}`, 'rejected')
  }

  const typed = app.withTypeProvider<ZodTypeProvider>()
  typed.post(
    '/api/v2/write',
    // helmet: false: machines call it, no browser renders its answers (src/observability/http-hardening.ts).
    { onRequest, bodyLimit: opts.maxBodyBytes, helmet: false, schema: { summary: 'InfluxDB 2 write API', ...writeDoc, querystring: v2Query, response: responses } },
    async (request, reply) => {
      await write(request, V2_PRECISION[request.query.precision])
      return reply.code(204).send(null)
    },
  )
  typed.post(
    '/api/v3/write_lp',
    { onRequest, bodyLimit: opts.maxBodyBytes, helmet: false, schema: { summary: 'InfluxDB 3 write API', ...writeDoc, querystring: v3Query, response: responses } },
    async (request, reply) => {
      await write(request, V3_PRECISION[request.query.precision])
      return reply.code(204).send(null)
    },
  )

  app.addHook('onSend', async (_request, reply, payload) => {
    if (reply.statusCode === 503) reply.header('retry-after', String(opts.retryAfterS))
    return payload
  })
}

function submit(batcher: Pick<Batcher, 'submit'>, body: Uint8Array, lines: number): Promise<SinkError | undefined> {
  return new Promise((resolve) => batcher.submit(body, lines, resolve))
}
