import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody, limitOffset, pageOf, pageQuery, timestamp, toTimestamp } from '../api-schemas.js'
import { security } from '../observability/openapi.js'
import { AuditLog } from './audit-log.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Every context records what operators must be able to trace here. */
    audit: AuditLog
  }
}

const entryView = z.object({
  id: z.string(),
  created_at: timestamp,
  action: z.string(),
  outcome: z.enum(['success', 'failure']),
  actor: z.string().nullable(),
  target: z.string().nullable(),
  ip: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
})

/** The audit log and `GET /api/v1/audit` (admin). */
export default fp(
  async (app: FastifyInstance, opts: { prefix: string }) => {
    const audit = new AuditLog(app.db)
    app.decorate('audit', audit)

    app.withTypeProvider<ZodTypeProvider>().get(
      `${opts.prefix}/api/v1/audit`,
      {
        schema: {
          summary: 'The audit log, newest first',
          tags: ['audit'],
          security: security.user,
          querystring: pageQuery,
          response: { 200: pageOf(entryView), 400: errorBody, 401: errorBody, 403: errorBody },
        },
        onRequest: app.requireRole('admin'),
      },
      async (request) => {
        const q = request.query
        const { entries, total } = await audit.list(...limitOffset(q))
        return {
          data: entries.map((e) => ({ ...e, created_at: toTimestamp(e.created_at) })),
          page: q.page,
          page_size: q.page_size,
          total,
        }
      },
    )
  },
  { name: 'audit', dependencies: ['db', 'access'] },
)
