import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody, limitOffset, pageOf, pageQuery } from '../api-schemas.js'
import type { UserPrincipal } from '../auth/guards.js'
import type { RevocationWatcher } from '../auth/revocation.js'
import { notFound } from '../errors.js'
import { security } from '../observability/openapi.js'
import { createUserBody, idParams, toUserView, updateUserBody, userView } from './schemas.js'
import type { UsersService } from './service.js'

const refusals = { 401: errorBody, 403: errorBody }

/** `/api/v1/users` (admin): manage users. */
export function userRoutes(
  app: FastifyInstance,
  opts: { prefix: string; users: UsersService; revocations: Pick<RevocationWatcher, 'check'> },
): void {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { users, revocations } = opts
  const base = `${opts.prefix}/api/v1/users`
  const admin = app.requireRole('admin')
  const actor = (request: { principal: UserPrincipal | null; ip: string }) => ({
    id: (request.principal as UserPrincipal).id,
    ip: request.ip,
  })

  r.post(
    base,
    {
      schema: {
        summary: 'Create a user',
        tags: ['users'],
        security: security.user,
        body: createUserBody,
        response: { 201: userView, 400: errorBody, ...refusals, 409: errorBody },
      },
      onRequest: admin,
    },
    async (request, reply) => {
      const { org, org_id, ...rest } = request.body
      const principal = request.principal as UserPrincipal
      const user = await users.create(
        { ...rest, org: org ?? principal.org, org_id: org_id ?? org ?? principal.org_id },
        actor(request),
      )
      return reply.code(201).send(toUserView(user))
    },
  )

  r.get(
    base,
    {
      schema: {
        summary: 'List users',
        tags: ['users'],
        security: security.user,
        querystring: pageQuery,
        response: { 200: pageOf(userView), 400: errorBody, ...refusals },
      },
      onRequest: admin,
    },
    async (request) => {
      const q = request.query
      const { users: list, total } = await users.list(...limitOffset(q))
      return { data: list.map(toUserView), page: q.page, page_size: q.page_size, total }
    },
  )

  r.get(
    `${base}/:id`,
    {
      schema: {
        summary: 'One user',
        tags: ['users'],
        security: security.user,
        params: idParams,
        response: { 200: userView, 400: errorBody, ...refusals, 404: errorBody },
      },
      onRequest: admin,
    },
    async (request) => {
      const user = await users.get(request.params.id)
      if (user === undefined) throw notFound('no such user')
      return toUserView(user)
    },
  )

  r.patch(
    `${base}/:id`,
    {
      schema: {
        summary: 'Change a user (a new password ends the sessions of the old one)',
        tags: ['users'],
        security: security.user,
        params: idParams,
        body: updateUserBody,
        response: { 200: userView, 400: errorBody, ...refusals, 404: errorBody, 409: errorBody },
      },
      onRequest: admin,
    },
    async (request) => toUserView(await users.update(request.params.id, request.body, actor(request))),
  )

  r.delete(
    `${base}/:id`,
    {
      schema: {
        summary: 'Delete a user, with their refresh and API tokens; their open sessions end within seconds',
        tags: ['users'],
        security: security.user,
        params: idParams,
        response: { 204: z.null().describe('Deleted'), 400: errorBody, ...refusals, 404: errorBody, 409: errorBody },
      },
      onRequest: admin,
    },
    async (request, reply) => {
      await users.delete(request.params.id, actor(request))
      // Not awaited: the sessions end in the background; a failed check is logged and retried on the timer.
      revocations.check().catch((err: unknown) => request.log.warn({ err }, 'revocation check failed'))
      return reply.code(204).send(null)
    },
  )
}
