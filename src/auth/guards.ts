import type { FastifyRequest } from 'fastify'
import { forbidden, unauthorized } from '../errors.js'
import { isApiToken, type ApiTokenOwner, type ApiTokenService } from './api-tokens.js'
import { bearerToken } from './plugin.js'
import { isRole, roleAtLeast, type Role, type Scope } from './roles.js'
import { TokenError, type TokenService } from './tokens.js'

/** A user acting through an access token, or through one of their API tokens. */
export interface UserPrincipal extends ApiTokenOwner {
  via: 'access' | 'api_token'
  /** Set when `via` is `api_token`. */
  apiTokenId?: string
  scopes?: readonly Scope[]
  /** Set when `via` is `access`: the token's expiry, epoch seconds. */
  exp?: number
}

export interface CollectorPrincipal {
  collectorId: string
  hostname: string
  /** Epoch seconds. */
  exp: number
}

export interface StreamPrincipal {
  user: string
  user_id: string
  org: string
  org_id: string
  account_id: string
  exp: number
}

export interface UserGuardOptions {
  /** The scope an API token needs here; without one, API tokens are refused. */
  scope?: Scope
}

export interface GuardDeps {
  tokens: Pick<TokenService, 'verifyTypeFresh'>
  apiTokens: Pick<ApiTokenService, 'authenticate'>
}

type Hook = (request: FastifyRequest) => Promise<void>

export interface Guards {
  /** The user behind the request's bearer token, holding at least `role`; 401/403 otherwise. */
  user(request: FastifyRequest, role: Role, opts?: UserGuardOptions): Promise<UserPrincipal>
  collector(request: FastifyRequest): Promise<CollectorPrincipal>
  stream(request: FastifyRequest): Promise<StreamPrincipal>
  /** onRequest hook: sets `request.principal`. */
  requireRole(role: Role, opts?: UserGuardOptions): Hook
  /** onRequest hook: sets `request.collectorPrincipal`. */
  requireCollector(): Hook
  /** onRequest hook: sets `request.streamPrincipal`. */
  requireStream(): Hook
}

const invalidToken = (reason: string) => unauthorized(reason, 'invalid_token')

/**
 * Authorization for every route: each guard accepts one kind of token and refuses the
 * others (a refresh token is no access token, a collector token no user's). Guards run
 * as onRequest hooks, before the body is read, so a caller without a valid token
 * learns nothing of a route's schema.
 */
export function createGuards(deps: GuardDeps): Guards {
  const verify = async (request: FastifyRequest, type: 'access' | 'collector' | 'stream') => {
    try {
      return await deps.tokens.verifyTypeFresh(bearerToken(request), [type])
    } catch (err) {
      if (err instanceof TokenError) throw invalidToken(err.reason)
      throw err
    }
  }

  const user = async (request: FastifyRequest, role: Role, opts: UserGuardOptions = {}): Promise<UserPrincipal> => {
    const token = bearerToken(request)
    const principal = isApiToken(token) ? await fromApiToken(token, opts.scope) : await fromAccessToken(request)
    if (!roleAtLeast(principal.role, role)) throw forbidden(`requires the ${role} role`)
    return principal
  }

  const fromApiToken = async (token: string, scope: Scope | undefined): Promise<UserPrincipal> => {
    const found = await deps.apiTokens.authenticate(token)
    if (found === undefined) throw invalidToken('invalid API token')
    if (scope === undefined) throw forbidden('API tokens are not accepted here', 'insufficient_scope')
    if (!found.scopes.includes(scope)) throw forbidden(`API token lacks the ${scope} scope`, 'insufficient_scope')
    return { ...found.owner, via: 'api_token', apiTokenId: found.id, scopes: found.scopes }
  }

  const fromAccessToken = async (request: FastifyRequest): Promise<UserPrincipal> => {
    const { claims, exp } = await verify(request, 'access')
    const { user_id, username, email, role, org, org_id } = claims
    if (typeof user_id !== 'string' || typeof username !== 'string' || !isRole(role)) {
      throw invalidToken('access token lacks user claims')
    }
    return {
      id: user_id,
      username,
      email: typeof email === 'string' ? email : '',
      role,
      org: typeof org === 'string' ? org : '',
      org_id: typeof org_id === 'string' ? org_id : '',
      via: 'access',
      exp,
    }
  }

  const collector = async (request: FastifyRequest): Promise<CollectorPrincipal> => {
    const { claims, exp } = await verify(request, 'collector')
    const id = claims.collector_id
    if ((typeof id !== 'string' && typeof id !== 'number') || String(id) === '') {
      throw invalidToken('token has no collector_id claim')
    }
    return { collectorId: String(id), hostname: typeof claims.hostname === 'string' ? claims.hostname : '', exp }
  }

  const stream = async (request: FastifyRequest): Promise<StreamPrincipal> => {
    const { claims, exp } = await verify(request, 'stream')
    const text = (k: string) => (typeof claims[k] === 'string' ? (claims[k] as string) : '')
    if (text('user') === '' || text('org') === '') throw invalidToken('token has no user or org claim')
    return { user: text('user'), user_id: text('user_id'), org: text('org'), org_id: text('org_id'), account_id: text('account_id'), exp }
  }

  return {
    user,
    collector,
    stream,
    requireRole: (role, opts) => async (request) => {
      request.principal = await user(request, role, opts)
    },
    requireCollector: () => async (request) => {
      request.collectorPrincipal = await collector(request)
    },
    requireStream: () => async (request) => {
      request.streamPrincipal = await stream(request)
    },
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by `requireRole`. */
    principal: UserPrincipal | null
    /** Set by `requireCollector`. */
    collectorPrincipal: CollectorPrincipal | null
    /** Set by `requireStream`. */
    streamPrincipal: StreamPrincipal | null
  }
}
