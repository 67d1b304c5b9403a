import type { FastifyError, FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody } from '../api-schemas.js'
import type { Config } from '../config.js'
import { AppError, badRequest, unavailable } from '../errors.js'
import { security } from '../observability/openapi.js'
import { channelIdProblem, draftOf, publishBodySchema } from './events.js'
import { ChannelLogError } from './types.js'

export interface ChannelPublishOptions {
  prefix: string
  /** `httpWrite.retryAfterS`: the project's one Retry-After for "stored nothing, retry". */
  config: Pick<Config, 'channels' | 'httpWrite'>
}

const publishParams = z.object({
  channelId: z.string().superRefine((id, ctx) => {
    const problem = channelIdProblem(id)
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
  }),
})

const published = z.object({
  channelId: z.string(),
  offset: z.number().int().describe('The offset of the event in its channel, as `/ws` clients see it (and `since=` takes it)'),
  timestamp: z.number().int().describe('Epoch milliseconds, as in the event'),
})

const BODY_TOO_LARGE = 'FST_ERR_CTP_BODY_TOO_LARGE'

/**
 * `POST /api/v1/channels/{channelId}/events` (docs/API.md section 9): a backend publishes
 * `{"type","data"}` to a channel; `202` once the event is durable (JetStream acknowledged
 * it, or the in-memory log took it), with the offset `/ws` clients will see it under.
 */
export default fp(
  async (app: FastifyInstance, opts: ChannelPublishOptions) => {
    const { eventMaxBytes } = opts.config.channels
    const retryAfter = String(opts.config.httpWrite.retryAfterS)

    app.withTypeProvider<ZodTypeProvider>().post(
      `${opts.prefix}/api/v1/channels/:channelId/events`,
      {
        schema: {
          summary: 'Publish an event to a channel; 202 once it is stored',
          tags: ['channels'],
          security: security.userOrApiToken,
          params: publishParams,
          body: publishBodySchema,
          response: { 202: published, 400: errorBody, 401: errorBody, 403: errorBody, 413: errorBody, 503: errorBody },
        },
        // Before the body is read: a caller without the right token learns nothing more.
        onRequest: app.requireRole('operator', { scope: 'channels:publish' }),
        bodyLimit: eventMaxBytes,
        // Fastify's own 413 does not say what the limit is; everything else goes on to the
        // app's error handler unchanged.
        errorHandler(err: FastifyError) {
          if (err.code === BODY_TOO_LARGE) {
            throw new AppError(413, 'event_too_large', `an event body may be at most ${eventMaxBytes} bytes`)
          }
          throw err
        },
      },
      async (request, reply) => {
        const { channelId } = request.params
        // The schema checked the shape; this adds what it cannot: the body's own channelId.
        const decoded = draftOf(channelId, request.body)
        if (!decoded.ok) throw badRequest(decoded.reason)
        try {
          const event = await app.channelLog.append(channelId, decoded.draft)
          return reply.code(202).send({ channelId: event.channelId, offset: event.offset, timestamp: event.timestamp })
        } catch (err) {
          if (!(err instanceof ChannelLogError)) throw err
          if (err.kind === 'refused') throw badRequest(err.message, 'event_refused')
          request.log.warn({ err, channelId }, 'channel event not stored')
          reply.header('retry-after', retryAfter)
          throw unavailable('channel events cannot be stored now; retry shortly', 'channels_unavailable')
        }
      },
    )
  },
  { name: 'channel-publish', dependencies: ['channels', 'access', 'metrics'] },
)
