import { unauthorized } from '../errors.js'
import { makeTagging } from '../ingest/line-protocol/index.js'
import type { StreamIdentity } from '../ingest/stream-session.js'
import { isApiToken, type ApiTokenService } from './api-tokens.js'
import { TokenError, type TokenService, type VerifiedToken } from './tokens.js'

export interface IngestAuthDeps {
  tokens: Pick<TokenService, 'verifyType' | 'verifyTypeFresh'>
  apiTokens: Pick<ApiTokenService, 'authenticate'>
}

/** An identity whose lines are tagged `user=<user>,org=<org>`. */
export function streamIdentity(
  user: string,
  org: string,
  exp: number,
  ids: Pick<StreamIdentity, 'userId' | 'apiTokenId'> = {},
): StreamIdentity {
  return { user, org, exp, tagging: makeTagging([['user', user], ['org', org]]), ...ids }
}

const JWT_TYPES = ['stream', 'access'] as const

/**
 * Who may write time series (docs/API.md sections 5-6): a stream token (`user`, `org`
 * claims), a user access token (`username`, `org`), or an API token with `ingest:write`
 * (its owner's username and org). JWTs are checked synchronously; an API token needs
 * the database, so its answer is a Promise. Every refusal is a 401 AppError
 * (`invalid_token`) whose message fits `AUTH_FAILED: <message>` as well.
 *
 * A JWT naming a kid this instance has not loaded yet (another instance rotated) is
 * answered asynchronously, after one reload of the keys.
 *
 * API tokens do not expire: their identity's `exp` is Infinity, and the revocation
 * watcher ends their sessions when the token or its owner is gone (identity.apiTokenId,
 * identity.userId).
 */
export function ingestAuthenticator(deps: IngestAuthDeps): (token: string) => StreamIdentity | Promise<StreamIdentity> {
  return (token) => {
    if (isApiToken(token)) return fromApiToken(deps, token)
    let verified
    try {
      verified = deps.tokens.verifyType(token, JWT_TYPES)
    } catch (err) {
      if (err instanceof TokenError && err.unknownKid) return fromUnknownKid(deps, token)
      if (err instanceof TokenError) throw refused(err.reason)
      throw err
    }
    return fromJwt(verified)
  }
}

async function fromUnknownKid(deps: IngestAuthDeps, token: string): Promise<StreamIdentity> {
  try {
    return fromJwt(await deps.tokens.verifyTypeFresh(token, JWT_TYPES))
  } catch (err) {
    if (err instanceof TokenError) throw refused(err.reason)
    throw err
  }
}

function fromJwt({ claims, exp }: VerifiedToken): StreamIdentity {
  const user = claims.type === 'access' ? claims.username : claims.user
  if (typeof user !== 'string' || user === '') {
    throw refused(`token has no ${claims.type === 'access' ? 'username' : 'user'} claim`)
  }
  const org = claims.org
  if (typeof org !== 'string' || org === '') throw refused('token has no org claim')
  // An access token's user can be deleted: the revocation watcher then ends the session.
  const userId = claims.type === 'access' && typeof claims.user_id === 'string' ? claims.user_id : undefined
  return streamIdentity(user, org, exp, userId !== undefined ? { userId } : {})
}

const refused = (reason: string) => unauthorized(reason, 'invalid_token')

async function fromApiToken(deps: IngestAuthDeps, token: string): Promise<StreamIdentity> {
  const found = await deps.apiTokens.authenticate(token)
  if (found === undefined) throw refused('invalid API token')
  if (!found.scopes.includes('ingest:write')) throw refused('API token lacks the ingest:write scope')
  return streamIdentity(found.owner.username, found.owner.org, Number.POSITIVE_INFINITY, {
    userId: found.owner.id,
    apiTokenId: found.id,
  })
}
