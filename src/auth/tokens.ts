import { createSecretKey, type KeyObject } from 'node:crypto'
import jwt from 'jsonwebtoken'
import { SIGNING_ALG, type SigningKeyStore } from './signing-keys.js'

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
/** Tokens only the gateway makes: signed with its own key, never with JWT_SECRET. */
export type OwnTokenType = Exclude<TokenType, 'stream'>

export interface VerifiedToken {
  claims: Record<string, unknown>
  /** Expiry in epoch seconds, always present (tokens without `exp` are refused). */
  exp: number
}

export class TokenError extends Error {
  override name = 'TokenError'
  /** Signed with a key this instance has not loaded (yet): worth one reload. */
  readonly unknownKid: boolean
  constructor(
    readonly reason: string,
    options?: { cause?: unknown; unknownKid?: boolean },
  ) {
    super(reason, options)
    this.unknownKid = options?.unknownKid === true
  }
}

const SHARED_ALG = 'HS256'
// Own tokens remembered as verified (about 1 KB each with their claims).
const VERIFIED_CACHE_ENTRIES = 4096
const OWN_TYPES: readonly string[] = ['access', 'refresh', 'collector'] satisfies OwnTokenType[]

export interface TokenServiceOptions {
  /** JWT_SECRET: backend tokens and stream tokens only. */
  secret: string
  clockSkewS: number
  streamTokenTtlS: number
  /** `iss` of the gateway's own tokens. */
  issuer: string
}

export type OwnKeys = Pick<SigningKeyStore, 'current' | 'get' | 'refresh'>

/**
 * Two keys, each pinned to its own algorithm and its own token types: JWT_SECRET (HS256)
 * for what the backend could make anyway (backend and stream tokens), the gateway's key
 * (ES256, by `kid`) for user and collector tokens. A token signed with the other key than
 * its type calls for is refused, so whoever holds JWT_SECRET cannot act as a user.
 * `none` and algorithm switches are refused.
 */
export class TokenService {
  /**
   * A KeyObject made once: given a string, jsonwebtoken first tries it as a public key
   * (createPublicKey throws) on every verification, about 30 times the cost of the check.
   */
  private readonly sharedKey: KeyObject
  /**
   * Own tokens already verified, by their text: an ES256 check costs about 100 µs, and a
   * backend publishing to channels or a dashboard polling sends the same access token many
   * times. An entry counts only while its token has not expired and its key is still loaded,
   * so the answers are those of a full check.
   */
  private readonly verifiedOwn = new Map<string, { verified: VerifiedToken; kid: string }>()

  constructor(
    private readonly opts: TokenServiceOptions,
    private readonly keys: OwnKeys,
  ) {
    this.sharedKey = createSecretKey(Buffer.from(opts.secret, 'utf8'))
  }

  /**
   * Any token this gateway accepts, checked against the key its header names. Synchronous;
   * a kid not loaded yet throws a TokenError with `unknownKid` (see verifyTypeFresh).
   */
  verify(token: string): VerifiedToken {
    const header = decodeHeader(token)
    const own = header.alg === SIGNING_ALG
    const verified = own ? this.verifyOwn(token, header.kid) : this.verifyShared(token)
    const type = verified.claims.type
    const ownType = typeof type === 'string' && OWN_TYPES.includes(type)
    if (own && !ownType) throw new TokenError(`wrong signing key: ${describeType(type)} is not signed by the gateway`)
    if (!own && ownType) throw new TokenError(`wrong signing key: ${type} tokens are signed by the gateway's own key`)
    return verified
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

  /**
   * verifyType, reloading the keys once when the token names a kid not loaded yet (a
   * rotation on another instance).
   */
  async verifyTypeFresh(token: string, types: readonly TokenType[]): Promise<VerifiedToken> {
    try {
      return this.verifyType(token, types)
    } catch (err) {
      if (!(err instanceof TokenError) || !err.unknownKid) throw err
    }
    await this.keys.refresh()
    return this.verifyType(token, types)
  }

  /** Tokens made by mattpm-backend: `userId`, `email`, `iat`, `exp`, no `type`, HS256. */
  verifyBackend(token: string): BackendClaims {
    const { claims } = this.verifyShared(token)
    if (claims.type !== undefined) throw new TokenError('wrong token type: expected a backend token')
    const userId = claims.userId
    if (typeof userId !== 'string' && typeof userId !== 'number') throw new TokenError('token has no userId claim')
    return { userId: String(userId), ...(typeof claims.email === 'string' ? { email: claims.email } : {}) }
  }

  signStream(claims: Omit<StreamClaims, 'type'>): { token: string; exp: number } {
    const exp = Math.floor(Date.now() / 1000) + this.opts.streamTokenTtlS
    const token = jwt.sign({ ...claims, type: 'stream', exp }, this.sharedKey, { algorithm: SHARED_ALG })
    return { token, exp }
  }

  /** A user or collector token, signed with the gateway's current key, with `iss` and `kid`. */
  sign(type: OwnTokenType, claims: Record<string, unknown>, ttlS: number): { token: string; exp: number } {
    const key = this.keys.current()
    const exp = Math.floor(Date.now() / 1000) + ttlS
    const token = jwt.sign({ ...claims, type, iss: this.opts.issuer, exp }, key.privateKey, {
      algorithm: SIGNING_ALG,
      keyid: key.kid,
    })
    return { token, exp }
  }

  /** Milliseconds until `exp` plus the allowed skew, from now. */
  msUntilExpiry(exp: number): number {
    return (exp + this.opts.clockSkewS) * 1000 - Date.now()
  }

  private verifyOwn(token: string, kid: unknown): VerifiedToken {
    if (typeof kid !== 'string' || kid === '') throw new TokenError('token has no kid')
    const key = this.keys.get(kid)
    if (key === undefined) throw new TokenError('unknown signing key', { unknownKid: true })
    const cached = this.verifiedOwn.get(token)
    if (cached !== undefined && cached.kid === kid) {
      // jsonwebtoken's rule: expired once now >= exp + tolerance.
      if (Math.floor(Date.now() / 1000) < cached.verified.exp + this.opts.clockSkewS) return cached.verified
      this.verifiedOwn.delete(token)
      throw new TokenError('token expired')
    }
    const verified = this.check(token, key.publicKey, SIGNING_ALG, this.opts.issuer)
    // Shared by every caller of this token from now on: nobody may change it.
    Object.freeze(verified.claims)
    if (this.verifiedOwn.size >= VERIFIED_CACHE_ENTRIES) {
      // The oldest entry (a Map iterates in insertion order).
      const oldest = this.verifiedOwn.keys().next()
      if (oldest.done !== true) this.verifiedOwn.delete(oldest.value)
    }
    this.verifiedOwn.set(token, { verified, kid })
    return verified
  }

  private verifyShared(token: string): VerifiedToken {
    return this.check(token, this.sharedKey, SHARED_ALG, undefined)
  }

  private check(token: string, key: KeyObject, algorithm: jwt.Algorithm, issuer: string | undefined): VerifiedToken {
    let decoded: unknown
    try {
      decoded = jwt.verify(token, key, {
        algorithms: [algorithm],
        clockTolerance: this.opts.clockSkewS,
        ...(issuer !== undefined ? { issuer } : {}),
      })
    } catch (err) {
      throw new TokenError(describeJwtError(err), { cause: err })
    }
    if (typeof decoded !== 'object' || decoded === null) throw new TokenError('token payload is not an object')
    const claims = decoded as Record<string, unknown>
    if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) throw new TokenError('token has no exp claim')
    return { claims, exp: claims.exp }
  }
}

function decodeHeader(token: string): { alg?: unknown; kid?: unknown } {
  const decoded = jwt.decode(token, { complete: true })
  if (decoded === null || typeof decoded.header !== 'object') throw new TokenError('malformed token')
  return decoded.header
}

const describeType = (type: unknown) => (typeof type === 'string' ? `a ${type} token` : 'a token without a gateway type')

function describeJwtError(err: unknown): string {
  if (err instanceof jwt.TokenExpiredError) return 'token expired'
  if (err instanceof jwt.NotBeforeError) return 'token not yet valid'
  if (err instanceof jwt.JsonWebTokenError) {
    if (err.message === 'invalid signature') return 'invalid signature'
    if (err.message === 'invalid algorithm') return 'algorithm not allowed'
    if (err.message === 'jwt malformed' || err.message === 'invalid token') return 'malformed token'
    if (err.message.startsWith('jwt issuer invalid')) return 'wrong issuer'
    return err.message
  }
  return 'invalid token'
}
