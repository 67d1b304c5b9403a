import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { StreamIdentity } from '../ingest/stream-session.js'
import { ApiTokenService } from './api-tokens.js'
import { createGuards, type Guards } from './guards.js'
import { ingestAuthenticator } from './ingest-auth.js'

declare module 'fastify' {
  interface FastifyInstance {
    apiTokens: ApiTokenService
    guards: Guards
    /** onRequest hook: a user access token (or an API token with `opts.scope`) of at least `role`. */
    requireRole: Guards['requireRole']
    /** onRequest hook: a collector token. */
    requireCollector: Guards['requireCollector']
    /** onRequest hook: a stream token. */
    requireStream: Guards['requireStream']
    /** Stream token, access token or `ingest:write` API token → the identity that tags lines. */
    authenticateIngest(token: string): Promise<StreamIdentity>
    /** The same, answering synchronously for JWTs (the /time-series hot path). */
    ingestAuthenticator: (token: string) => StreamIdentity | Promise<StreamIdentity>
  }
}

/** Who may call what: guards for routes, API tokens, and the ingest authenticator. */
export default fp(
  async (app: FastifyInstance) => {
    const apiTokens = new ApiTokenService(app.db, app.log)
    const guards = createGuards({ tokens: app.tokens, apiTokens })
    const authenticate = ingestAuthenticator({ tokens: app.tokens, apiTokens })
    app.decorate('apiTokens', apiTokens)
    app.decorate('guards', guards)
    app.decorate('requireRole', guards.requireRole)
    app.decorate('requireCollector', guards.requireCollector)
    app.decorate('requireStream', guards.requireStream)
    app.decorate('ingestAuthenticator', authenticate)
    app.decorate('authenticateIngest', async (token: string) => authenticate(token))
    app.decorateRequest('principal', null)
    app.decorateRequest('collectorPrincipal', null)
    app.decorateRequest('streamPrincipal', null)
  },
  { name: 'access', dependencies: ['db', 'auth'] },
)
