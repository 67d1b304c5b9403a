import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody, limitOffset } from '../api-schemas.js'
import type { UserPrincipal } from '../auth/guards.js'
import type { BrokerHandle } from '../devices/types.js'
import { notFound } from '../errors.js'
import { security } from '../observability/openapi.js'
import { sessionParams, sessionsPage, sessionsQuery } from './schemas.js'
import { channelSource, mqttSource, timeSeriesSource, type MqttSessionDirectory } from './session-sources.js'
import { findSession, listSessions, type SessionSource } from './sessions.js'
import { statsRoutes } from './stats-routes.js'

export interface AdminPluginOptions {
  prefix: string
}

const refusals = { 401: errorBody, 403: errorBody }

/**
 * The broker's session directory, when it has one: the broker is registered after this
 * plugin (it must stop first on close) and is absent with MQTT_ENABLED=false, so it is
 * looked for when a request comes.
 */
function brokerDirectory(app: FastifyInstance): MqttSessionDirectory | undefined {
  if (!app.hasDecorator('broker')) return undefined
  const broker = app.broker as BrokerHandle & Partial<MqttSessionDirectory>
  if (typeof broker.sessions !== 'function' || typeof broker.disconnect !== 'function') return undefined
  return broker as BrokerHandle & MqttSessionDirectory
}

/**
 * `GET /api/v1/admin/sessions` and `DELETE /api/v1/admin/sessions/{id}` (docs/API.md
 * section 10, admin access token): the live sessions of this instance on `/time-series`,
 * `/ws` and MQTT, and ending one of them (audited); the stats and the live feed
 * (stats-routes.ts).
 */
export default fp(
  async (app: FastifyInstance, opts: AdminPluginOptions) => {
    const r = app.withTypeProvider<ZodTypeProvider>()
    const base = `${opts.prefix}/api/v1/admin/sessions`
    const admin = app.requireRole('admin')
    const sources: SessionSource[] = [
      timeSeriesSource(() => app.streamSessions),
      channelSource(() => app.channelSessions()),
      mqttSource(() => brokerDirectory(app)),
    ]
    statsRoutes(app, { prefix: opts.prefix, sources })

    r.get(
      base,
      {
        schema: {
          summary: 'The live sessions of this instance (time-series, ws, mqtt), newest first',
          tags: ['admin'],
          security: security.user,
          querystring: sessionsQuery,
          response: { 200: sessionsPage, 400: errorBody, ...refusals },
        },
        onRequest: admin,
      },
      async (request) => {
        const q = request.query
        const [limit, offset] = limitOffset(q)
        const { items, total } = listSessions(sources, { endpoint: q.endpoint, user: q.user }, { limit, offset })
        return { data: items, page: q.page, page_size: q.page_size, total }
      },
    )

    r.delete(
      `${base}/:id`,
      {
        schema: {
          summary: 'Disconnect one live session of this instance',
          tags: ['admin'],
          security: security.user,
          params: sessionParams,
          response: { 204: z.null().describe('Disconnecting'), 400: errorBody, ...refusals, 404: errorBody },
        },
        onRequest: admin,
      },
      async (request, reply) => {
        const session = findSession(sources, request.params.id)
        if (session === undefined) throw notFound('no such session on this instance')
        const { id, ...details } = session.view()
        const principal = request.principal as UserPrincipal
        // Recorded first: a disconnect that could not be audited does not happen.
        await app.audit.record({ action: 'session.disconnect', actor: `user:${principal.id}`, target: `session:${id}`, ip: request.ip, details })
        session.disconnect()
        request.log.info({ session_id: id, endpoint: details.endpoint, admin: principal.id }, 'session disconnected by an administrator')
        return reply.code(204).send(null)
      },
    )
  },
  { name: 'admin', dependencies: ['access', 'audit', 'time-series', 'channels', 'sink', 'admin-recorder'] },
)
