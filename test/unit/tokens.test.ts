import { createHmac } from 'node:crypto'
import jwt from 'jsonwebtoken'
import { describe, expect, it } from 'vitest'
import { TokenError } from '../../src/auth/tokens.js'
import { MemoryKeys, TEST_ISSUER, memoryKey, testTokenService } from '../helpers/keys.js'

const secret = 'unit-test-secret-unit-test-secret-0001'
const keys = new MemoryKeys()
const tokens = testTokenService(secret, keys)
const now = () => Math.floor(Date.now() / 1000)

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
function handMade(header: object, payload: object, key = secret): string {
  const body = `${b64(header)}.${b64(payload)}`
  return `${body}.${createHmac('sha256', key).update(body).digest('base64url')}`
}
/** What whoever holds JWT_SECRET (the backend) can make. */
const withSecret = (claims: object, opts: jwt.SignOptions = { expiresIn: 60 }) => jwt.sign(claims, secret, opts)
/** Signed with the gateway's key, as the gateway would. */
const withGatewayKey = (claims: object, key = keys.current()) =>
  jwt.sign({ iss: TEST_ISSUER, ...claims }, key.privateKey, { algorithm: 'ES256', keyid: key.kid, expiresIn: 60 })

function reason(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(TokenError)
    return (err as TokenError).reason
  }
  throw new Error('expected a TokenError')
}

describe('TokenService: stream and backend tokens (JWT_SECRET, HS256)', () => {
  it('signs stream tokens that verify, with type stream and a 24 h lifetime', () => {
    const { token, exp } = tokens.signStream({ user: 'u', user_id: '1', org: 'o', org_id: '2', account_id: '3' })
    const v = tokens.verifyType(token, ['stream'])
    expect(v.claims).toMatchObject({ user: 'u', user_id: '1', org: 'o', org_id: '2', account_id: '3', type: 'stream' })
    expect(v.exp).toBe(exp)
    expect(exp - now()).toBeGreaterThanOrEqual(86_399)
    expect(jwt.decode(token, { complete: true })?.header.alg).toBe('HS256')
  })

  it('refuses alg none', () => {
    const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ type: 'stream', exp: now() + 60 })}.`
    expect(reason(() => tokens.verify(token))).toBe('jwt signature is required')
  })

  it('refuses a token signed with another secret', () => {
    const token = jwt.sign({ type: 'stream', exp: now() + 60 }, 'another-secret-another-secret-another')
    expect(reason(() => tokens.verify(token))).toBe('invalid signature')
  })

  it('refuses HS384/HS512 even with the right secret (algorithm pinned)', () => {
    const token = jwt.sign({ type: 'stream', exp: now() + 60 }, secret, { algorithm: 'HS512' })
    expect(reason(() => tokens.verify(token))).toBe('algorithm not allowed')
  })

  it('refuses a tampered payload', () => {
    const good = tokens.signStream({ user: 'alice', user_id: '1', org: 'o', org_id: '2', account_id: '3' }).token
    const [h, , s] = good.split('.')
    const tampered = `${h}.${b64({ type: 'stream', user: 'mallory', exp: now() + 60 })}.${s}`
    expect(reason(() => tokens.verify(tampered))).toBe('invalid signature')
  })

  it('refuses a token without exp, and garbage', () => {
    expect(reason(() => tokens.verify(handMade({ alg: 'HS256', typ: 'JWT' }, { type: 'stream' })))).toBe(
      'token has no exp claim',
    )
    expect(reason(() => tokens.verify('not-a-jwt'))).toBe('malformed token')
  })

  it('allows 30 s of clock skew, not more', () => {
    const within = handMade({ alg: 'HS256', typ: 'JWT' }, { type: 'stream', exp: now() - 20 })
    expect(tokens.verify(within).claims.type).toBe('stream')
    const beyond = handMade({ alg: 'HS256', typ: 'JWT' }, { type: 'stream', exp: now() - 40 })
    expect(reason(() => tokens.verify(beyond))).toBe('token expired')
  })

  it('accepts backend tokens (userId, no type) and refuses typed ones as backend tokens', () => {
    expect(tokens.verifyBackend(withSecret({ userId: '123', email: 'a@b.c' }))).toEqual({ userId: '123', email: 'a@b.c' })
    expect(tokens.verifyBackend(withSecret({ userId: 123 })).userId).toBe('123')
    expect(reason(() => tokens.verifyBackend(withSecret({ type: 'stream', userId: '123' })))).toBe(
      'wrong token type: expected a backend token',
    )
    expect(reason(() => tokens.verifyBackend(withSecret({ email: 'a@b.c' })))).toBe('token has no userId claim')
    // A backend token is never signed with the gateway's key.
    expect(reason(() => tokens.verifyBackend(withGatewayKey({ userId: '123' })))).toBe('algorithm not allowed')
  })

  it('reports time to expiry including the skew', () => {
    const exp = now() + 10
    const ms = tokens.msUntilExpiry(exp)
    expect(ms).toBeGreaterThan(38_000)
    expect(ms).toBeLessThanOrEqual(40_000)
  })
})

describe("TokenService: the gateway's own tokens (its key, ES256)", () => {
  it('signs access, refresh and collector tokens with the current key: ES256, its kid, iss', () => {
    for (const type of ['access', 'refresh', 'collector'] as const) {
      const { token, exp } = tokens.sign(type, { sub: 'x' }, 60)
      const decoded = jwt.decode(token, { complete: true })
      expect(decoded?.header).toMatchObject({ alg: 'ES256', kid: 'k1' })
      expect(decoded?.payload).toMatchObject({ type, iss: TEST_ISSUER, sub: 'x', exp })
      expect(tokens.verifyType(token, [type]).claims.type).toBe(type)
      // It verifies with the published public key alone, as another service would.
      expect(jwt.verify(token, keys.current().publicKey, { algorithms: ['ES256'], issuer: TEST_ISSUER })).toMatchObject({ type })
    }
  })

  it('refuses access, refresh and collector tokens made with JWT_SECRET (the backend cannot mint an admin)', () => {
    const admin = withSecret({ type: 'access', user_id: 'u', username: 'mallory', role: 'admin', org: 'o', iss: TEST_ISSUER })
    expect(reason(() => tokens.verifyType(admin, ['access']))).toBe(
      "wrong signing key: access tokens are signed by the gateway's own key",
    )
    expect(reason(() => tokens.verifyType(withSecret({ type: 'refresh', jti: 'j' }), ['refresh']))).toBe(
      "wrong signing key: refresh tokens are signed by the gateway's own key",
    )
    expect(reason(() => tokens.verifyType(withSecret({ type: 'collector', collector_id: 'c' }), ['collector']))).toBe(
      "wrong signing key: collector tokens are signed by the gateway's own key",
    )
  })

  it('refuses a stream or backend token signed with the gateway key', () => {
    expect(reason(() => tokens.verifyType(withGatewayKey({ type: 'stream', user: 'u', org: 'o' }), ['stream']))).toBe(
      'wrong signing key: a stream token is not signed by the gateway',
    )
    expect(reason(() => tokens.verify(withGatewayKey({ userId: '1' })))).toBe(
      'wrong signing key: a token without a gateway type is not signed by the gateway',
    )
  })

  it('refuses a wrong or missing iss, a missing or unknown kid, and a key the gateway never had', () => {
    expect(reason(() => tokens.verify(withGatewayKey({ type: 'access', iss: 'someone-else' })))).toBe('wrong issuer')
    const noIss = jwt.sign({ type: 'access' }, keys.current().privateKey, { algorithm: 'ES256', keyid: 'k1', expiresIn: 60 })
    expect(reason(() => tokens.verify(noIss))).toBe('wrong issuer')
    const noKid = jwt.sign({ type: 'access', iss: TEST_ISSUER }, keys.current().privateKey, { algorithm: 'ES256', expiresIn: 60 })
    expect(reason(() => tokens.verify(noKid))).toBe('token has no kid')
    const stranger = memoryKey('k-stranger')
    let err: unknown
    try {
      tokens.verify(withGatewayKey({ type: 'access' }, stranger))
    } catch (e) {
      err = e
    }
    expect(err).toMatchObject({ reason: 'unknown signing key', unknownKid: true })
    // The right kid, another key's signature.
    expect(reason(() => tokens.verify(withGatewayKey({ type: 'access' }, { ...stranger, kid: 'k1' })))).toBe('invalid signature')
  })

  it('an HS256 token carrying a kid of the gateway is still checked against JWT_SECRET only (no key confusion)', () => {
    const pem = keys.current().publicKey.export({ format: 'pem', type: 'spki' }) as string
    const confused = jwt.sign({ type: 'access', iss: TEST_ISSUER }, pem, { algorithm: 'HS256', keyid: 'k1', expiresIn: 60 })
    expect(reason(() => tokens.verify(confused))).toBe('invalid signature')
  })

  it('checks the type claim', () => {
    const access = tokens.sign('access', {}, 60).token
    expect(reason(() => tokens.verifyType(access, ['stream']))).toBe('wrong token type: expected stream')
    expect(tokens.verifyType(access, ['stream', 'access']).claims.type).toBe('access')
  })

  it('verifyTypeFresh reloads the keys once for an unknown kid (another instance rotated), not for a known one', async () => {
    const ring = new MemoryKeys()
    const service = testTokenService(secret, ring)
    const rotated = memoryKey('k2')
    const token = withGatewayKey({ type: 'access' }, rotated)
    expect(reason(() => service.verifyType(token, ['access']))).toBe('unknown signing key')
    ring.loadable.push(rotated)
    expect((await service.verifyTypeFresh(token, ['access'])).claims.type).toBe('access')
    expect(ring.refreshes).toBe(1)
    await service.verifyTypeFresh(token, ['access'])
    await service.verifyTypeFresh(service.sign('access', {}, 60).token, ['access'])
    expect(ring.refreshes).toBe(1)
    // Still unknown after the reload: refused.
    await expect(service.verifyTypeFresh(withGatewayKey({ type: 'access' }, memoryKey('k3')), ['access'])).rejects.toMatchObject({
      reason: 'unknown signing key',
    })
    expect(ring.refreshes).toBe(2)
  })

  it('answers a token seen before as a full check would: expired once exp + skew passed, refused once its key is gone', () => {
    const ring = new MemoryKeys()
    const service = testTokenService(secret, ring)
    // Valid for 2 s more including the 30 s skew: verified, remembered, then expired by the clock.
    const token = jwt.sign({ iss: TEST_ISSUER, type: 'access', exp: now() - 28 }, ring.current().privateKey, {
      algorithm: 'ES256',
      keyid: ring.current().kid,
    })
    const first = service.verifyType(token, ['access'])
    expect(Object.isFrozen(first.claims)).toBe(true)
    expect(service.verifyType(token, ['access'])).toBe(first)
    expect(reason(() => service.verifyType(token, ['stream']))).toBe('wrong token type: expected stream')
    const realNow = Date.now
    try {
      Date.now = () => realNow() + 3000
      expect(reason(() => service.verifyType(token, ['access']))).toBe('token expired')
    } finally {
      Date.now = realNow
    }
    const other = service.sign('access', {}, 60).token
    service.verifyType(other, ['access'])
    ring.keys.clear()
    expect(reason(() => service.verifyType(other, ['access']))).toBe('unknown signing key')
  })
})
