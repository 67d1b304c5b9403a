import { createHmac } from 'node:crypto'
import jwt from 'jsonwebtoken'
import { describe, expect, it } from 'vitest'
import { TokenError, TokenService } from '../../src/auth/tokens.js'

const secret = 'unit-test-secret-unit-test-secret-0001'
const tokens = new TokenService({ secret, clockSkewS: 30, streamTokenTtlS: 86_400 })
const now = () => Math.floor(Date.now() / 1000)

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
function handMade(header: object, payload: object, key = secret): string {
  const body = `${b64(header)}.${b64(payload)}`
  return `${body}.${createHmac('sha256', key).update(body).digest('base64url')}`
}

function reason(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(TokenError)
    return (err as TokenError).reason
  }
  throw new Error('expected a TokenError')
}

describe('TokenService', () => {
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
    expect(reason(() => tokens.verify(token))).not.toBe('')
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
    const good = tokens.sign({ type: 'stream', user: 'alice' }, 60).token
    const [h, , s] = good.split('.')
    const tampered = `${h}.${b64({ type: 'stream', user: 'mallory', exp: now() + 60 })}.${s}`
    expect(reason(() => tokens.verify(tampered))).toBe('invalid signature')
  })

  it('refuses a token without exp', () => {
    expect(reason(() => tokens.verify(handMade({ alg: 'HS256', typ: 'JWT' }, { type: 'stream' })))).toBe(
      'token has no exp claim',
    )
  })

  it('allows 30 s of clock skew, not more', () => {
    const within = handMade({ alg: 'HS256', typ: 'JWT' }, { type: 'stream', exp: now() - 20 })
    expect(tokens.verify(within).claims.type).toBe('stream')
    const beyond = handMade({ alg: 'HS256', typ: 'JWT' }, { type: 'stream', exp: now() - 40 })
    expect(reason(() => tokens.verify(beyond))).toBe('token expired')
  })

  it('checks the type claim', () => {
    const access = tokens.sign({ type: 'access' }, 60).token
    expect(reason(() => tokens.verifyType(access, ['stream']))).toMatch(/wrong token type/)
    expect(tokens.verifyType(access, ['stream', 'access']).claims.type).toBe('access')
  })

  it('accepts backend tokens (userId, no type) and refuses typed ones as backend tokens', () => {
    const backend = jwt.sign({ userId: '123', email: 'a@b.c' }, secret, { expiresIn: 60 })
    expect(tokens.verifyBackend(backend)).toEqual({ userId: '123', email: 'a@b.c' })
    const numeric = jwt.sign({ userId: 123 }, secret, { expiresIn: 60 })
    expect(tokens.verifyBackend(numeric).userId).toBe('123')
    const stream = tokens.sign({ type: 'stream', userId: '123' }, 60).token
    expect(reason(() => tokens.verifyBackend(stream))).toMatch(/wrong token type/)
    const noUser = jwt.sign({ email: 'a@b.c' }, secret, { expiresIn: 60 })
    expect(reason(() => tokens.verifyBackend(noUser))).toBe('token has no userId claim')
  })

  it('reports time to expiry including the skew', () => {
    const exp = now() + 10
    const ms = tokens.msUntilExpiry(exp)
    expect(ms).toBeGreaterThan(38_000)
    expect(ms).toBeLessThanOrEqual(40_000)
  })
})
