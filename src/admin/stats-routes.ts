import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody } from '../api-schemas.js'
import type { UserPrincipal } from '../auth/guards.js'
import { AppError } from '../errors.js'
import { security } from '../observability/openapi.js'
import { AdminFeeds } from './feed.js'
import type { SessionSource } from './sessions.js'
import { listSessions } from './sessions.js'
import { collectStats, type StatsDeps } from './stats.js'
import { statsBody, type SnapshotEvent } from './stats-schemas.js'

export interface StatsRouteOptions {
  prefix: string
  sources: readonly SessionSource[]
}

/**
 * Open feeds per instance: each holds a connection and a socket's buffer, and every one
 * is sent each snapshot. A dashboard needs one per open page.
 */
export const MAX_ADMIN_FEEDS = 32

const refusals = { 401: errorBody, 403: errorBody }

/**
 * `GET /api/v1/admin/stats` and `GET /api/v1/admin/feed` (docs/API.md section 10, admin
 * access token): the numbers of the dashboard, once or as a stream of server-sent events.
 */
export function statsRoutes(app: FastifyInstance, opts: StatsRouteOptions): void {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const admin = app.requireRole('admin')
  const recording = app.adminRecording
  const deps: StatsDeps = {
    recording,
    errors: app.adminErrors,
    sink: app.sink,
    sources: opts.sources,
    channelSessions: () => app.channelSessions(),
    db: app.db,
  }

  const feeds = new AdminFeeds({
    maxFeeds: MAX_ADMIN_FEEDS,
    intervalMs: recording.feedIntervalMs,
    errors: app.adminErrors,
    snapshot: async () => {
      const stats = await collectStats(deps)
      const sessions = listSessions(opts.sources, {}, { limit: Number.MAX_SAFE_INTEGER, offset: 0 }).items
      return JSON.stringify({ stats, sessions } satisfies SnapshotEvent)
    },
    onSnapshotError: (err) => app.log.warn({ err }, 'admin feed: snapshot failed'),
  })
  // Before the server stops taking connections: an open feed would hold its connection.
  app.addHook('preClose', (done) => {
    feeds.close()
    done()
  })

  r.get(
    `${opts.prefix}/api/v1/admin/stats`,
    {
      schema: {
        summary: 'The dashboard numbers: ingest rate and totals, sink and spool, sessions, devices, collectors, channels, last errors',
        tags: ['admin'],
        security: security.user,
        response: { 200: statsBody, ...refusals },
      },
      onRequest: admin,
    },
    async () => ({ ...(await collectStats(deps)), errors: app.adminErrors.list() }),
  )

  r.get(
    `${opts.prefix}/api/v1/admin/feed`,
    {
      schema: {
        summary: 'The dashboard live: server-sent events `errors`, `snapshot` (every ADMIN_FEED_INTERVAL_MS), `error`, `expired`',
        description:
          'text/event-stream. First `event: errors` (the kept errors, newest first), then `event: snapshot` ' +
          '(`{"stats": <stats without errors>, "sessions": [...]}`) on open and every ADMIN_FEED_INTERVAL_MS, ' +
          '`event: error` as each error happens, comment lines `: ping`, and `event: expired` when the token ' +
          'expires or the gateway shuts down. The admin token goes in `Authorization: Bearer` (read it with fetch).',
        tags: ['admin'],
        security: security.user,
        response: {
          200: {
            description: 'The event stream',
            content: { 'text/event-stream': { schema: z.string().meta({ examples: ['event: snapshot\ndata: {"stats":{},"sessions":[]}\n\n'] }) } },
          },
          ...refusals,
          503: errorBody.describe(`Already ${MAX_ADMIN_FEEDS} feeds open on this instance, or shutting down`),
        },
      },
      onRequest: admin,
    },
    async (request, reply) => {
      // The guard checked the access token (API tokens get no admin routes); its expiry ends the feed.
      const exp = (request.principal as UserPrincipal).exp as number
      if (feeds.closing) throw new AppError(503, 'shutting_down', 'the gateway is shutting down: connect to another instance')
      if (feeds.size >= MAX_ADMIN_FEEDS) {
        throw new AppError(503, 'too_many_feeds', `at most ${MAX_ADMIN_FEEDS} admin feeds per instance: close one`)
      }
      reply.hijack()
      const out = reply.raw
      out.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        // nginx and the like would otherwise hold the events back.
        'x-accel-buffering': 'no',
      })
      // The connection is the feed's for its life: no idle timeout cuts it between events.
      request.raw.socket.setTimeout(0)
      if (!feeds.add(out, exp * 1000 - Date.now())) out.end()
    },
  )
}
