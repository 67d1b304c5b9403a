import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { AuditLog } from '../audit/audit-log.js'
import { errorBody, limitOffset, pageOf, pageQuery } from '../api-schemas.js'
import type { ApiTokenService } from '../auth/api-tokens.js'
import type { RevocationWatcher } from '../auth/revocation.js'
import type { UserPrincipal } from '../auth/guards.js'
import type { Db } from '../db/index.js'
import { notFound } from '../errors.js'
import { security } from '../observability/openapi.js'
import type { UsersRepo } from './repo.js'
import { apiTokenCreated, apiTokenView, createApiTokenBody, idParams, toApiTokenView } from './schemas.js'

const refusals = { 401: errorBody, 403: errorBody }

export interface TokenRoutesOptions {
  prefix: string
  db: Pick<Db, 'transaction'>
  apiTokens: ApiTokenService
  users: Pick<UsersRepo, 'findById'>
  audit: Pick<AuditLog, 'record'>
  /** Told after a revocation, so this instance ends the token's sessions at once. */
  revocations: Pick<RevocationWatcher, 'check'>
}

/** `/api/v1/tokens` (admin): API tokens for backends, shown once, stored hashed. */
export function tokenRoutes(app: FastifyInstance, opts: TokenRoutesOptions): void {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { apiTokens, users, audit, db, revocations } = opts
  const base = `${opts.prefix}/api/v1/tokens`
  const admin = app.requireRole('admin')

  r.post(
    base,
    {
      schema: {
        summary: 'Create an API token; the token is in this answer only',
        tags: ['tokens'],
        security: security.user,
        body: createApiTokenBody,
        response: { 201: apiTokenCreated, 400: errorBody, ...refusals, 404: errorBody },
      },
      onRequest: admin,
    },
    async (request, reply) => {
      const principal = request.principal as UserPrincipal
      const ownerId = request.body.user_id ?? principal.id
      const created = await db.transaction(async (tx) => {
        if ((await users.findById(ownerId, tx)) === undefined) throw notFound('no such user')
        const made = await apiTokens.create(
          { userId: ownerId, name: request.body.name, scopes: request.body.scopes, createdBy: principal.id },
          tx,
        )
        await audit.record(
          {
            action: 'api_token.create',
            actor: `user:${principal.id}`,
            target: `api_token:${made.record.id}`,
            ip: request.ip,
            details: { name: made.record.name, owner: `user:${ownerId}`, scopes: made.record.scopes },
          },
          tx,
        )
        return made
      })
      return reply.code(201).send({ ...toApiTokenView(created.record), token: created.token })
    },
  )

  r.get(
    base,
    {
      schema: {
        summary: 'List API tokens (never the tokens themselves)',
        tags: ['tokens'],
        security: security.user,
        querystring: pageQuery,
        response: { 200: pageOf(apiTokenView), 400: errorBody, ...refusals },
      },
      onRequest: admin,
    },
    async (request) => {
      const q = request.query
      const { tokens, total } = await apiTokens.list(...limitOffset(q))
      return { data: tokens.map(toApiTokenView), page: q.page, page_size: q.page_size, total }
    },
  )

  r.delete(
    `${base}/:id`,
    {
      schema: {
        summary: 'Revoke an API token: it stops working at once, and its open sessions end within seconds',
        tags: ['tokens'],
        security: security.user,
        params: idParams,
        response: { 204: z.null().describe('Revoked'), 400: errorBody, ...refusals, 404: errorBody },
      },
      onRequest: admin,
    },
    async (request, reply) => {
      const principal = request.principal as UserPrincipal
      await db.transaction(async (tx) => {
        const revoked = await apiTokens.revoke(request.params.id, tx)
        if (revoked === undefined) throw notFound('no such API token')
        await audit.record(
          {
            action: 'api_token.revoke',
            actor: `user:${principal.id}`,
            target: `api_token:${revoked.id}`,
            ip: request.ip,
            details: { name: revoked.name, owner: `user:${revoked.user_id}` },
          },
          tx,
        )
      })
      // Not awaited: the sessions end in the background; a failed check is logged and retried on the timer.
      revocations.check().catch((err: unknown) => request.log.warn({ err }, 'revocation check failed'))
      return reply.code(204).send(null)
    },
  )
}
