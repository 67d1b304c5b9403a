import type { IncomingHttpHeaders } from 'node:http'
import { decodeJwt } from 'jose'
import { isApiToken } from '../auth/api-tokens.js'
import { OidcUnavailableError, sameIssuer, type OidcVerifier } from '../auth/oidc.js'
import { TokenError, type TokenService, type VerifiedToken } from '../auth/tokens.js'
import { badRequest, forbidden, unauthorized, unavailable } from '../errors.js'
import { channelIdProblem } from './events.js'
import type { Admission, ChannelPolicy, ChannelPrincipal } from './types.js'

export interface ChannelAuthDeps {
  tokens: Pick<TokenService, 'verifyType' | 'verifyTypeFresh'>
  policy: ChannelPolicy
  /** Set when OIDC_ISSUER_URL is: tokens naming its issuer go to it, and only to it. */
  oidc?: { verifier: Pick<OidcVerifier, 'verify'>; issuer: string }
}

/** What admit() reads of an upgrade request; a FastifyRequest fits it. */
export interface UpgradeRequest {
  query: unknown
  headers: IncomingHttpHeaders
}

export interface ChannelAuthenticator {
  /** Token, channel id, `since` and the channel policy; throws an AppError (400/401/403, 503 when the OIDC issuer is down). */
  admit(request: UpgradeRequest): Promise<Admission>
}

const JWT_TYPES = ['access', 'stream'] as const
// The schemes bearerToken() (auth/plugin.ts) accepts on every other route.
const BEARER = /^(?:Bearer|Token)\s+(\S+)\s*$/i

const invalidToken = (reason: string) => unauthorized(reason, 'invalid_token')

/**
 * The `/ws` upgrade check (docs/API.md section 9), before the 101: the cheap checks of
 * the query first (so a malformed request costs no JWKS fetch), then the token, then the
 * channel policy.
 *
 * The token comes from `?token=` or `Authorization: Bearer`; when both are present the
 * query wins: browsers cannot set headers on a WebSocket, so the query is the client's
 * own choice, while an Authorization header may have been added on the way (a proxy).
 *
 * A token whose (unverified) `iss` is the OIDC issuer is verified by the issuer's JWKS
 * only, never as a gateway token: an HS256 token naming the issuer, even one signed with
 * JWT_SECRET, is refused. Every other token must be one of the gateway's own (access or
 * stream). API tokens are refused: they are for backends, not for `/ws` members.
 */
export function createChannelAuthenticator(deps: ChannelAuthDeps): ChannelAuthenticator {
  const principalOf = async (token: string): Promise<ChannelPrincipal> => {
    if (deps.oidc !== undefined && namesIssuer(token, deps.oidc.issuer)) return fromOidc(deps.oidc.verifier, token)
    return fromOwnToken(deps.tokens, token)
  }

  return {
    async admit(request) {
      const query = asRecord(request.query)
      const token = tokenOf(query, request.headers)
      const channelId = single(query, 'channelId')
      const problem = channelIdProblem(channelId)
      if (problem !== undefined) throw badRequest(problem)
      const since = sinceOf(query)
      const principal = await principalOf(token)
      const verdict = deps.policy(principal, channelId as string)
      if (!verdict.ok) throw forbidden(verdict.reason, 'channel_forbidden')
      return { principal, channelId: channelId as string, since }
    },
  }
}

function asRecord(query: unknown): Record<string, unknown> {
  return typeof query === 'object' && query !== null ? (query as Record<string, unknown>) : {}
}

/** A query parameter given at most once; twice is a 400 rather than a guess which one counts. */
function single(query: Record<string, unknown>, name: string): string | undefined {
  const value = query[name]
  if (value === undefined) return undefined
  if (typeof value === 'string') return value
  throw badRequest(`${name} must be given once`)
}

function tokenOf(query: Record<string, unknown>, headers: IncomingHttpHeaders): string {
  const fromQuery = single(query, 'token')
  const header = headers.authorization
  const fromHeader = header === undefined ? undefined : BEARER.exec(header)?.[1]
  const token = fromQuery !== undefined && fromQuery !== '' ? fromQuery : fromHeader
  if (token === undefined || token === '') throw invalidToken('missing token')
  if (isApiToken(token)) throw invalidToken('API tokens are not accepted on /ws')
  return token
}

function sinceOf(query: Record<string, unknown>): number | undefined {
  const text = single(query, 'since')
  if (text === undefined) return undefined
  const since = /^\d+$/.test(text) ? Number(text) : Number.NaN
  if (!Number.isSafeInteger(since)) throw badRequest('since must be a non-negative integer (the last offset received)')
  return since
}

/** Whether the token's unverified payload names `issuer`; a malformed token does not. */
function namesIssuer(token: string, issuer: string): boolean {
  let iss: unknown
  try {
    iss = decodeJwt(token).iss
  } catch {
    return false
  }
  return typeof iss === 'string' && sameIssuer(iss, issuer)
}

async function fromOidc(verifier: Pick<OidcVerifier, 'verify'>, token: string): Promise<ChannelPrincipal> {
  try {
    return await verifier.verify(token)
  } catch (err) {
    if (err instanceof TokenError) throw invalidToken(err.reason)
    if (err instanceof OidcUnavailableError) throw unavailable(err.message, 'oidc_unavailable')
    throw err
  }
}

async function fromOwnToken(tokens: ChannelAuthDeps['tokens'], token: string): Promise<ChannelPrincipal> {
  let verified: VerifiedToken
  try {
    verified = tokens.verifyType(token, JWT_TYPES)
  } catch (err) {
    if (!(err instanceof TokenError)) throw err
    if (!err.unknownKid) throw invalidToken(err.reason)
    verified = await fresh(tokens, token)
  }
  return principalOfClaims(verified)
}

// A kid this instance has not loaded yet: another instance rotated; one reload of the keys.
async function fresh(tokens: ChannelAuthDeps['tokens'], token: string): Promise<VerifiedToken> {
  try {
    return await tokens.verifyTypeFresh(token, JWT_TYPES)
  } catch (err) {
    if (err instanceof TokenError) throw invalidToken(err.reason)
    throw err
  }
}

function principalOfClaims({ claims, exp }: VerifiedToken): ChannelPrincipal {
  const text = (k: string) => (typeof claims[k] === 'string' ? (claims[k] as string) : '')
  const org = text('org')
  const orgId = text('org_id')
  if (claims.type === 'access') {
    const userId = text('user_id')
    const username = text('username')
    if (userId === '' || username === '') throw invalidToken('access token lacks user claims')
    return { member: { user_id: userId, name: username }, org, orgId, exp, source: 'access', userId }
  }
  const user = text('user')
  if (user === '') throw invalidToken('token has no user claim')
  const userId = text('user_id')
  return { member: { user_id: userId === '' ? user : userId, name: user }, org, orgId, exp, source: 'stream' }
}
