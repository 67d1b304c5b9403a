import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { errorBody } from '../api-schemas.js'
import { security } from '../observability/openapi.js'
import { HasherBusyError } from '../auth/passwords.js'
import { AppError } from '../errors.js'
import { loginBody, refreshBody, sessionView, toSessionView } from './schemas.js'
import { LoginThrottledError, type SessionService } from './sessions.js'

/** `POST /api/v1/auth/login` and `POST /api/v1/auth/refresh` (docs/API.md section 7). */
export function authRoutes(app: FastifyInstance, opts: { prefix: string; sessions: SessionService }): void {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { sessions } = opts

  r.post(
    `${opts.prefix}/api/v1/auth/login`,
    {
      schema: {
        summary: 'Log in: an access token (15 min) and a single-use refresh token (24 h)',
        tags: ['auth'],
        security: security.none,
        body: loginBody,
        response: {
          200: sessionView,
          400: errorBody,
          401: errorBody,
          429: errorBody.describe('Too many failed logins for this username or address; see Retry-After'),
          503: errorBody.describe('Too many password checks waiting; see Retry-After'),
        },
      },
    },
    async (request, reply) => {
      try {
        return toSessionView(await sessions.login(request.body.username, request.body.password, request.ip))
      } catch (err) {
        if (err instanceof AppError && err.code === 'invalid_credentials') {
          app.adminErrors.record({ kind: 'auth_failure', endpoint: 'login', reason: err.message, user: request.body.username, remote: request.ip })
        }
        if (err instanceof LoginThrottledError || err instanceof HasherBusyError) {
          reply.header('retry-after', String(err.retryAfterS))
        }
        throw err
      }
    },
  )

  r.post(
    `${opts.prefix}/api/v1/auth/refresh`,
    {
      schema: {
        summary: 'Trade a refresh token for new tokens; a reused refresh token revokes its whole family',
        tags: ['auth'],
        security: security.none,
        body: refreshBody,
        response: { 200: sessionView, 400: errorBody, 401: errorBody },
      },
    },
    async (request) => toSessionView(await sessions.refresh(request.body.refresh_token, request.ip)),
  )
}
