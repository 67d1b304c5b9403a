import jwt from 'jsonwebtoken'
import { describe, expect, it } from 'vitest'
import type { AuthenticatedApiToken } from '../../src/auth/api-tokens.js'
import { ingestAuthenticator } from '../../src/auth/ingest-auth.js'
import { TokenService } from '../../src/auth/tokens.js'

const secret = 'k'.repeat(40)
const tokens = new TokenService({ secret, clockSkewS: 30, streamTokenTtlS: 60 })
const sign = (claims: Record<string, unknown>) => jwt.sign(claims, secret, { expiresIn: 60 })
const good = `mc_${'g'.repeat(43)}`
const readOnly = `mc_${'r'.repeat(43)}`
const owner = { id: 'u1', username: 'svc user', email: 'e', role: 'operator' as const, org: 'Acme', org_id: '1' }
const apiTokens = {
  authenticate: async (t: string): Promise<AuthenticatedApiToken | undefined> =>
    t === good
      ? { id: 't1', scopes: ['ingest:write'], owner }
      : t === readOnly
        ? { id: 't2', scopes: ['channels:publish'], owner }
        : undefined,
}
const authenticate = ingestAuthenticator({ tokens, apiTokens })

describe('ingestAuthenticator', () => {
  it('answers stream and access tokens synchronously, tagging user and org', () => {
    const stream = authenticate(sign({ type: 'stream', user: 'john', org: 'acme', user_id: '1', org_id: '2', account_id: '3' }))
    expect(stream).toMatchObject({ user: 'john', org: 'acme' })
    const access = authenticate(sign({ type: 'access', user_id: 'u', username: 'jane', role: 'viewer', org: 'beta', org_id: '9' }))
    expect(access).not.toBeInstanceOf(Promise)
    expect(access).toMatchObject({ user: 'jane', org: 'beta' })
  })

  it('takes an API token with ingest:write as its owner, never expiring', async () => {
    const id = await authenticate(good)
    expect(id).toMatchObject({ user: 'svc user', org: 'Acme', exp: Number.POSITIVE_INFINITY })
  })

  it('refuses API tokens without ingest:write, unknown ones, and JWTs of other types', async () => {
    await expect(authenticate(readOnly)).rejects.toThrow('API token lacks the ingest:write scope')
    await expect(authenticate(`mc_${'u'.repeat(43)}`)).rejects.toThrow('invalid API token')
    expect(() => authenticate(sign({ type: 'refresh', username: 'jane', org: 'beta', jti: 'x' }))).toThrow(/wrong token type/)
    expect(() => authenticate(sign({ type: 'collector', collector_id: 'c' }))).toThrow(/wrong token type/)
    expect(() => authenticate(sign({ userId: '1' }))).toThrow(/wrong token type/)
    expect(() => authenticate(sign({ type: 'access', username: 'jane' }))).toThrow('token has no org claim')
  })

  it('refuses with 401 invalid_token errors, ready for an HTTP answer', async () => {
    expect(() => authenticate('not-a-jwt')).toThrow(expect.objectContaining({ statusCode: 401, code: 'invalid_token' }))
    await expect(authenticate(readOnly)).rejects.toMatchObject({ statusCode: 401, code: 'invalid_token' })
  })
})
