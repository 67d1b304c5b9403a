import { createSecretKey, type KeyObject } from 'node:crypto'
import jwt from 'jsonwebtoken'

/** Claims of the tokens this gateway signs or accepts (docs/API.md section 3). */
export interface StreamClaims {
  type: 'stream'
  user: string
  user_id: string
  org: string
  org_id: string
  account_id: string
}

export interface BackendClaims {
  userId: string
  email?: string
}

export type TokenType = 'stream' | 'access' | 'refresh' | 'collector'

export interface VerifiedToken {
  claims: Record<string, unknown>
  /** Expiry in epoch seconds, always present (tokens without `exp` are refused). */
  exp: number
}

export class TokenError extends Error {
  override name = 'TokenError'
  constructor(
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(reason, options)
  }
}

const ALGORITHM = 'HS256'

export interface TokenServiceOptions {
  secret: string
  clockSkewS: number
  streamTokenTtlS: number
}

/** HS256 only: the algorithm is pinned, so `none` and algorithm switches are refused. */
export class TokenService {
  /**
   * A KeyObject made once: given a string, jsonwebtoken first tries it as a public key
   * (createPublicKey throws) on every verification, about 30 times the cost of the check.
   */
  private readonly key: KeyObject

  constructor(private readonly opts: TokenServiceOptions) {
    this.key = createSecretKey(Buffer.from(opts.secret, 'utf8'))
  }

  verify(token: string): VerifiedToken {
    let decoded: unknown
    try {
      decoded = jwt.verify(token, this.key, {
        algorithms: [ALGORITHM],
        clockTolerance: this.opts.clockSkewS,
      })
    } catch (err) {
      throw new TokenError(describeJwtError(err), { cause: err })
    }
    if (typeof decoded !== 'object' || decoded === null) throw new TokenError('token payload is not an object')
    const claims = decoded as Record<string, unknown>
    if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) throw new TokenError('token has no exp claim')
    return { claims, exp: claims.exp }
  }

  /** A token whose `type` claim must be one of `types`. */
  verifyType(token: string, types: readonly TokenType[]): VerifiedToken {
    const verified = this.verify(token)
    const type = verified.claims.type
    if (typeof type !== 'string' || !(types as readonly string[]).includes(type)) {
      throw new TokenError(`wrong token type: expected ${types.join(' or ')}`)
    }
    return verified
  }

  /** Tokens made by mattpm-backend: `userId`, `email`, `iat`, `exp`, no `type`. */
  verifyBackend(token: string): BackendClaims {
    const { claims } = this.verify(token)
    if (claims.type !== undefined) throw new TokenError('wrong token type: expected a backend token')
    const userId = claims.userId
    if (typeof userId !== 'string' && typeof userId !== 'number') throw new TokenError('token has no userId claim')
    return { userId: String(userId), ...(typeof claims.email === 'string' ? { email: claims.email } : {}) }
  }

  signStream(claims: Omit<StreamClaims, 'type'>): { token: string; exp: number } {
    return this.sign({ ...claims, type: 'stream' }, this.opts.streamTokenTtlS)
  }

  sign(claims: Record<string, unknown>, ttlS: number): { token: string; exp: number } {
    const exp = Math.floor(Date.now() / 1000) + ttlS
    const token = jwt.sign({ ...claims, exp }, this.key, { algorithm: ALGORITHM })
    return { token, exp }
  }

  /** Milliseconds until `exp` plus the allowed skew, from now. */
  msUntilExpiry(exp: number): number {
    return (exp + this.opts.clockSkewS) * 1000 - Date.now()
  }
}

function describeJwtError(err: unknown): string {
  if (err instanceof jwt.TokenExpiredError) return 'token expired'
  if (err instanceof jwt.NotBeforeError) return 'token not yet valid'
  if (err instanceof jwt.JsonWebTokenError) {
    if (err.message === 'invalid signature') return 'invalid signature'
    if (err.message === 'invalid algorithm') return 'algorithm not allowed'
    if (err.message === 'jwt malformed' || err.message === 'invalid token') return 'malformed token'
    return err.message
  }
  return 'invalid token'
}
