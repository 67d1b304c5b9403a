import { createRemoteJWKSet, customFetch, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type RemoteJWKSet } from 'jose'
import type { Logger } from 'pino'
import type { ChannelPrincipal } from '../channels/types.js'
import type { Config } from '../config.js'
import { TokenError } from './tokens.js'

/**
 * Tokens of an OpenID Connect issuer (Kinde or any other), verified with its JWKS
 * (docs/API.md section 9). The keys' location comes from the issuer's discovery document
 * unless configured, fetched on the first token, never at start-up: the gateway starts
 * while the issuer is unreachable, and a failed fetch is retried on the next token.
 * jose caches the keys for `jwksMaxAgeS` and refetches at once when a token names a
 * `kid` it does not have, at most once per `jwksCooldownMs`.
 *
 * The issuer is compared with and without a trailing slash (configurations and issuers
 * disagree on it, e.g. Kinde's `iss` has none), otherwise exactly.
 */

export type OidcOptions = NonNullable<Config['oidc']> & { clockSkewS: number }

/** One request to the issuer: the discovery document or the JWKS, and how it went. */
export interface OidcFetch {
  what: 'discovery' | 'jwks'
  result: 'ok' | 'error'
}

export interface OidcVerifierDeps {
  log: Pick<Logger, 'warn'>
  /** Called once per request to the issuer (the plugin counts them in mc_oidc_jwks_fetches_total). */
  onFetch?: (fetch: OidcFetch) => void
}

/** The issuer could not be asked for its keys (down, slow, or answering nonsense): worth a retry, not the token's fault. */
export class OidcUnavailableError extends Error {
  override name = 'OidcUnavailableError'
}

// Asymmetric only: with HS256 whoever knows a shared secret could sign as the issuer.
const ALGORITHMS = ['RS256', 'ES256']
const REQUIRED_CLAIMS = ['exp', 'sub']
const DISCOVERY_PATH = '/.well-known/openid-configuration'

const withoutSlash = (issuer: string) => issuer.replace(/\/+$/, '')

/** Whether two issuer strings name the same issuer (a trailing slash aside). */
export const sameIssuer = (a: string, b: string): boolean => withoutSlash(a) === withoutSlash(b)

export class OidcVerifier {
  private keys: RemoteJWKSet | undefined
  /** The discovery in flight: concurrent first tokens share one request. */
  private pending: Promise<RemoteJWKSet> | undefined
  private readonly issuers: string[]

  constructor(
    private readonly opts: OidcOptions,
    private readonly deps: OidcVerifierDeps,
  ) {
    const bare = withoutSlash(opts.issuer)
    this.issuers = [bare, `${bare}/`]
  }

  /**
   * The principal of a token signed by the issuer. Throws a TokenError saying what is
   * wrong with the token (never echoing it), or an OidcUnavailableError.
   */
  async verify(token: string): Promise<ChannelPrincipal> {
    let payload: JWTPayload
    try {
      // The keys are asked for only once jose has checked the token's form and algorithm:
      // a malformed or HS256 token costs the issuer no request.
      const keys: JWTVerifyGetKey = async (header, jws) => (await this.keySet())(header, jws)
      ;({ payload } = await jwtVerify(token, keys, {
        algorithms: ALGORITHMS,
        issuer: this.issuers,
        ...(this.opts.audience !== undefined ? { audience: this.opts.audience } : {}),
        clockTolerance: this.opts.clockSkewS,
        requiredClaims: REQUIRED_CLAIMS,
      }))
    } catch (err) {
      throw describeFailure(err)
    }
    return principalOf(payload)
  }

  private keySet(): Promise<RemoteJWKSet> {
    if (this.keys !== undefined) return Promise.resolve(this.keys)
    this.pending ??= this.locateKeys()
      .then((url) => {
        this.keys = createRemoteJWKSet(url, {
          cacheMaxAge: this.opts.jwksMaxAgeS * 1000,
          cooldownDuration: this.opts.jwksCooldownMs,
          timeoutDuration: this.opts.timeoutMs,
          [customFetch]: (input, init) => this.observed('jwks', input, init),
        })
        return this.keys
      })
      .finally(() => {
        // A failure is retried by the next token; a success is kept in this.keys.
        this.pending = undefined
      })
    return this.pending
  }

  private async locateKeys(): Promise<URL> {
    if (this.opts.jwksUrl !== undefined) return new URL(this.opts.jwksUrl)
    const url = withoutSlash(this.opts.issuer) + DISCOVERY_PATH
    const response = await this.observed('discovery', url, { signal: AbortSignal.timeout(this.opts.timeoutMs) })
    let doc: unknown
    try {
      doc = await response.json()
    } catch (err) {
      throw new OidcUnavailableError('the OIDC discovery document is not JSON', { cause: err })
    }
    const { jwks_uri: jwksUri, issuer } = (typeof doc === 'object' && doc !== null ? doc : {}) as Record<string, unknown>
    if (typeof jwksUri !== 'string' || !URL.canParse(jwksUri)) {
      throw new OidcUnavailableError('the OIDC discovery document has no jwks_uri')
    }
    if (typeof issuer === 'string' && !sameIssuer(issuer, this.opts.issuer)) {
      // The spec wants them equal; tokens are still checked against the configured issuer.
      this.deps.log.warn({ configured: this.opts.issuer, discovered: issuer }, 'the OIDC discovery document names another issuer')
    }
    return new URL(jwksUri)
  }

  /** One GET to the issuer, reported to onFetch; a network error, a timeout or a non-200 becomes an OidcUnavailableError. */
  private async observed(what: OidcFetch['what'], url: string, init: RequestInit): Promise<Response> {
    let response: Response
    try {
      response = await fetch(url, init)
    } catch (err) {
      this.failed(what, url, { err })
      const timedOut = err instanceof Error && err.name === 'TimeoutError'
      const why = timedOut ? `did not answer within ${this.opts.timeoutMs} ms` : 'is unreachable'
      throw new OidcUnavailableError(`the OIDC issuer ${why} (${what})`, { cause: err })
    }
    if (response.status !== 200) {
      this.failed(what, url, { status: response.status })
      await response.body?.cancel()
      throw new OidcUnavailableError(`the OIDC issuer answered ${response.status} (${what})`)
    }
    this.deps.onFetch?.({ what, result: 'ok' })
    return response
  }

  private failed(what: OidcFetch['what'], url: string, details: { err?: unknown; status?: number }): void {
    this.deps.log.warn({ ...details, url, what }, 'could not fetch from the OIDC issuer')
    this.deps.onFetch?.({ what, result: 'error' })
  }
}

const text = (v: unknown): string => (typeof v === 'string' ? v.trim() : '')

/** Kinde names the org `org_code`; other issuers `org_id`. */
function principalOf(claims: JWTPayload): ChannelPrincipal {
  const sub = text(claims.sub)
  if (sub === '') throw new TokenError('token has no sub claim')
  const fullName = `${text(claims.given_name)} ${text(claims.family_name)}`.trim()
  const name = text(claims.name) || fullName || text(claims.preferred_username) || text(claims.email) || sub
  return {
    member: { user_id: sub, name },
    org: text(claims.org_name),
    orgId: text(claims.org_code) || text(claims.org_id),
    exp: claims.exp as number,
    source: 'oidc',
  }
}

/** jose's errors as reasons a client can act on; the issuer's own trouble stays an OidcUnavailableError. */
function describeFailure(err: unknown): Error {
  if (err instanceof OidcUnavailableError) return err
  if (err instanceof errors.JWKSTimeout) return new OidcUnavailableError('the OIDC issuer did not answer in time (jwks)', { cause: err })
  if (err instanceof errors.JWKSInvalid || err instanceof errors.JWKInvalid) {
    return new OidcUnavailableError("the OIDC issuer's JWKS is malformed", { cause: err })
  }
  const reason = reasonOf(err)
  if (reason === undefined) return new OidcUnavailableError('could not verify the token with the OIDC issuer', { cause: err })
  return new TokenError(reason, { cause: err })
}

function reasonOf(err: unknown): string | undefined {
  if (err instanceof errors.JWTExpired) return 'token expired'
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') return `token has no ${err.claim} claim`
    if (err.claim === 'iss') return 'wrong issuer'
    if (err.claim === 'aud') return 'wrong audience'
    if (err.claim === 'nbf') return 'token not yet valid'
    return `invalid ${err.claim} claim`
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm not allowed (RS256 or ES256)'
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'invalid signature'
  if (err instanceof errors.JWKSNoMatchingKey) return "unknown signing key (not in the issuer's JWKS)"
  if (err instanceof errors.JWKSMultipleMatchingKeys) return 'ambiguous signing key (several in the JWKS match)'
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return 'malformed token'
  if (err instanceof errors.JOSENotSupported) return 'unsupported token or key'
  return undefined
}
