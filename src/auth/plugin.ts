import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { forbidden, unauthorized } from '../errors.js'
import { security } from '../observability/openapi.js'
import { SigningKeyStore } from './signing-keys.js'
import { TokenError, TokenService } from './tokens.js'

declare module 'fastify' {
  interface FastifyInstance {
    tokens: TokenService
    signingKeys: SigningKeyStore
  }
}

export interface AuthPluginOptions {
  prefix: string
  secret: string
  clockSkewS: number
  streamTokenTtlS: number
  /** `iss` of the gateway's own tokens. */
  issuer: string
  /** The longest lifetime of a token the gateway signs (a refresh token's). */
  maxOwnTokenTtlS: number
}

// Each instance rereads the keys this often, so a rotation made elsewhere reaches its
// signing within a minute; retired keys are kept that much longer.
const KEY_RELOAD_INTERVAL_MS = 60_000
// A token naming an unknown kid triggers a reload at most this often.
const MIN_KEY_RELOAD_INTERVAL_MS = 1_000
// JWKS answers may be cached this long by verifiers (they refetch on an unknown kid).
const JWKS_MAX_AGE_S = 300

const jwksSchema = z.object({
  keys: z.array(
    z.object({ kty: z.string(), crv: z.string(), x: z.string(), y: z.string(), kid: z.string(), alg: z.string(), use: z.string() }),
  ),
})
const errorSchema = z.object({ error: z.string(), message: z.string() })
const required = () => z.string({ error: 'required, a string' }).min(1, 'must not be empty')

const mockAuthBody = z.object({
  user: required(),
  user_id: required(),
  org: required(),
  org_id: required(),
  account_id: required(),
}).meta({ examples: [{ user: 'John Doe', user_id: '123', org: 'Acme Corp', org_id: '456', account_id: '789' }] })

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
    const keys = new SigningKeyStore(app.db, {
      retainRetiredS: opts.maxOwnTokenTtlS + opts.clockSkewS + KEY_RELOAD_INTERVAL_MS / 1000,
      minReloadIntervalMs: MIN_KEY_RELOAD_INTERVAL_MS,
    })
    await keys.init()
    const tokens = new TokenService(opts, keys)
    app.decorate('signingKeys', keys)
    app.decorate('tokens', tokens)

    const reload = setInterval(() => {
      keys.refreshIfStale().catch((err: unknown) => app.log.warn({ err }, 'could not reload the signing keys'))
    }, KEY_RELOAD_INTERVAL_MS)
    reload.unref()
    app.addHook('onClose', async () => clearInterval(reload))

    // A well-known URL, served under PATH_PREFIX like every route: behind a prefix the
    // root belongs to whoever else the proxy serves.
    app.withTypeProvider<ZodTypeProvider>().get(
      `${opts.prefix}/.well-known/jwks.json`,
      {
        schema: {
          summary: "The gateway's public signing keys (RFC 7517): verify user and collector tokens with them",
          tags: ['auth'],
          security: security.none,
          response: { 200: jwksSchema },
        },
      },
      async (_request, reply) => {
        // Another instance may have rotated: answer with what the database holds now.
        await keys.refreshIfStale()
        reply.header('cache-control', `public, max-age=${JWKS_MAX_AGE_S}`)
        return keys.jwks()
      },
    )

    app.withTypeProvider<ZodTypeProvider>().post(
      `${opts.prefix}/mock-auth`,
      {
        schema: {
          summary: 'Mint a stream token for a user of the backend',
          tags: ['auth'],
          security: security.backend,
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
  { name: 'auth', dependencies: ['db'] },
)

declare module 'fastify' {
  interface FastifyRequest {
    backendUserId?: string
  }
}
