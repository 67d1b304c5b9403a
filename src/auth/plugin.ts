import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { forbidden, unauthorized } from '../errors.js'
import { TokenError, TokenService } from './tokens.js'

declare module 'fastify' {
  interface FastifyInstance {
    tokens: TokenService
  }
}

export interface AuthPluginOptions {
  prefix: string
  secret: string
  clockSkewS: number
  streamTokenTtlS: number
}

const errorSchema = z.object({ error: z.string(), message: z.string() })
const required = () => z.string({ error: 'required, a string' }).min(1, 'must not be empty')

const mockAuthBody = z.object({
  user: required(),
  user_id: required(),
  org: required(),
  org_id: required(),
  account_id: required(),
})

/** The bearer token of a request, or a 401. */
export function bearerToken(request: FastifyRequest): string {
  const header = request.headers.authorization
  const match = header === undefined ? null : /^(?:Bearer|Token)\s+(\S+)\s*$/i.exec(header)
  if (match === null) throw unauthorized('missing bearer token')
  return match[1] as string
}

/** Tokens, and `POST /mock-auth` of Matt Collector (docs/API.md sections 3-4). */
export default fp(
  async (app: FastifyInstance, opts: AuthPluginOptions) => {
    const tokens = new TokenService(opts)
    app.decorate('tokens', tokens)

    app.withTypeProvider<ZodTypeProvider>().post(
      `${opts.prefix}/mock-auth`,
      {
        schema: {
          summary: 'Mint a stream token for a user of the backend',
          body: mockAuthBody,
          response: { 200: z.object({ token: z.string() }), 400: errorSchema, 401: errorSchema, 403: errorSchema },
        },
        // The token is checked before the body, so a caller without one learns nothing of the schema.
        onRequest: async (request) => {
          try {
            request.backendUserId = tokens.verifyBackend(bearerToken(request)).userId
          } catch (err) {
            if (err instanceof TokenError) throw unauthorized(err.reason, 'invalid_token')
            throw err
          }
        },
      },
      async (request) => {
        const body = request.body
        if (body.user_id !== request.backendUserId) {
          throw forbidden('user_id does not match the authenticated user', 'user_mismatch')
        }
        const { token } = tokens.signStream(body)
        return { token }
      },
    )
  },
  { name: 'auth' },
)

declare module 'fastify' {
  interface FastifyRequest {
    backendUserId?: string
  }
}
