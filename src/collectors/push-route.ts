import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { AppError, badRequest, forbidden } from '../errors.js'
import type { Batcher } from '../ingest/batcher.js'
import { decodeBodyText } from '../ingest/body-encoding.js'
import { receiveTimeNs } from '../ingest/receive-time.js'
import type { SinkError } from '../ingest/sinks/sink.js'
import { metricsToLines } from './metrics-lines.js'
import { security } from '../observability/openapi.js'
import { metricsPushBody, metricsPushResponses } from './metrics-schema.js'

export interface MetricsPushOptions {
  prefix: string
  config: Pick<Config, 'collectors' | 'httpWrite'>
}


declare module 'fastify' {
  interface FastifyRequest {
    /** Body bytes this push counts against the in-flight bound until its response ends. */
    pushBytes?: number
  }
}

/**
 * `POST /api/v1/metrics/push` (docs/API.md section 7): a collector's JSON metrics become
 * line protocol and go through the batcher and sink of /time-series, so the same promise
 * holds: 200 only once every metric is durable (sink or spool fsync), 503 with Retry-After
 * when the gateway cannot take them, nothing written on any error.
 *
 * The body is read raw, as /api/v2/write reads it, so that gzip bodies work (Fastify's JSON
 * parser would see the compressed bytes) and the same bound holds once decompressed.
 */
async function metricsPush(app: FastifyInstance, opts: { path: string; config: MetricsPushOptions['config'] }): Promise<void> {
  const maxBytes = opts.config.collectors.maxPushBodyBytes
  const { retryAfterS, maxInflightBytes } = opts.config.httpWrite
  // Any content type is read as JSON: collectors are not all careful about the header.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: maxBytes }, (_req, body, done) => done(null, body))

  // Memory held by pushes under way (raw, decompressed, parsed and written out): without a
  // bound, concurrent pushes could hold any number of maxBytes bodies at once. Its own
  // budget of HTTP_WRITE_MAX_INFLIGHT_BYTES, beside the line-protocol writes'.
  let inflightBytes = 0
  const take = (request: FastifyRequest, bytes: number): void => {
    if (bytes <= 0) return
    // When nothing is under way any body within the limit is taken, so none is refused forever.
    if (inflightBytes > 0 && inflightBytes + bytes > maxInflightBytes) {
      throw new AppError(503, 'busy', 'the gateway is handling as much pushed data as it may: retry later')
    }
    inflightBytes += bytes
    request.pushBytes = (request.pushBytes ?? 0) + bytes
  }

  const countBody = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    // 'close' comes once per response, whether it was sent or the client went away.
    reply.raw.once('close', () => {
      inflightBytes -= request.pushBytes ?? 0
      request.pushBytes = 0
    })
    const declared = Number(request.headers['content-length'] ?? 0)
    if (Number.isSafeInteger(declared) && declared <= maxBytes) take(request, declared)
  }

  app.post(
    opts.path,
    {
      // Authentication first: a caller without a collector token learns nothing of the body's rules.
      onRequest: [app.requireActiveCollector, countBody],
      // The content parser's limit, said again: a route's own bodyLimit wins over it.
      bodyLimit: maxBytes,
      // Machines call it, no browser renders its answers (src/observability/http-hardening.ts).
      helmet: false,
      schema: {
        summary: "A collector's metrics, written as line protocol",
        tags: ['collectors'],
        security: security.collector,
        rawBody: {
          description: 'JSON whatever the Content-Type; `Content-Encoding: gzip` accepted. Checked by src/collectors/metrics-lines.ts.',
          contentTypes: ['application/json'],
          schema: metricsPushBody,
        },
        response: metricsPushResponses,
      },
    },
    async (request, reply) => {
      const started = performance.now()
      const principal = request.collectorPrincipal
      if (principal === null) throw forbidden('not a collector')
      const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
      take(request, raw.length - (request.pushBytes ?? 0))
      const gzipped = request.headers['content-encoding']?.trim().toLowerCase() === 'gzip'
      const text = await decodeBodyText(raw, request.headers['content-encoding'], maxBytes)
      // The text decoded beside the raw body (and the decompressed buffer it came from).
      take(request, (gzipped ? text.length : 0) + text.length)
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch {
        app.adminErrors.record({ kind: 'bad_line', endpoint: 'metrics-push', reason: 'the body is not valid JSON', user: principal.collectorId, remote: request.ip })
        throw badRequest('the body is not valid JSON', 'invalid_json')
      }
      const claimed = (body as { collector_id?: unknown } | null)?.collector_id
      if (typeof claimed === 'string' && claimed !== principal.collectorId) {
        throw forbidden("collector_id is not the token's collector")
      }
      const built = metricsToLines(body, text, receiveTimeNs)
      if (!built.ok) {
        app.metrics.frames.inc({ result: 'error' })
        app.adminErrors.record({ kind: 'bad_line', endpoint: 'metrics-push', reason: built.message, user: principal.collectorId, remote: request.ip })
        throw badRequest(built.message, 'invalid_request')
      }
      if (built.lines > 0) {
        const err = await submit(app.batcher, Buffer.from(built.text), built.lines)
        if (err !== undefined) {
          app.metrics.frames.inc({ result: 'error' })
          if (err.transient) {
            throw new AppError(503, 'unavailable', 'the time-series sink cannot take data now: retry later', { cause: err })
          }
          throw badRequest(`rejected by the time-series sink: ${err.message}`, 'rejected')
        }
        app.metrics.linesAccepted.inc(built.lines)
      }
      app.metrics.frames.inc({ result: 'ok' })
      app.collectors.recordPush(principal.collectorId, built.lines, new Date())
      return reply.code(200).send({
        status: 'accepted',
        metrics_inserted: built.lines,
        processing_time_ms: Math.round(performance.now() - started),
      })
    },
  )

  app.addHook('onSend', async (_request, reply, payload) => {
    if (reply.statusCode === 503) reply.header('retry-after', String(retryAfterS))
    return payload
  })
}

function submit(batcher: Pick<Batcher, 'submit'>, body: Buffer, lines: number): Promise<SinkError | undefined> {
  return new Promise((resolve) => batcher.submit(body, lines, resolve))
}


// The route lives in its own encapsulated context (its raw body parser and Retry-After hook
// must not reach the other routes); the named outer plugin is what app.ts and others depend on.
export default fp(
  async (app: FastifyInstance, opts: MetricsPushOptions) => {
    // Not `prefix`: Fastify would apply it to the encapsulated context's routes.
    await app.register(metricsPush, { path: `${opts.prefix}/api/v1/metrics/push`, config: opts.config })
  },
  { name: 'collector-metrics', dependencies: ['collectors', 'sink', 'access', 'metrics'] },
)
