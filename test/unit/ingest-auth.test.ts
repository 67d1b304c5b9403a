import jwt from 'jsonwebtoken'
import { describe, expect, it } from 'vitest'
import type { AuthenticatedApiToken } from '../../src/auth/api-tokens.js'
import { ingestAuthenticator } from '../../src/auth/ingest-auth.js'
import { MemoryKeys, memoryKey, testTokenService } from '../helpers/keys.js'

const secret = 'k'.repeat(40)
const keys = new MemoryKeys()
const tokens = testTokenService(secret, keys, 60)
/** What the backend (holding JWT_SECRET) can make. */
const sign = (claims: Record<string, unknown>) => jwt.sign(claims, secret, { expiresIn: 60 })
/** What the gateway makes. */
const own = (type: 'access' | 'refresh' | 'collector', claims: Record<string, unknown>) => tokens.sign(type, claims, 60).token
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
    expect(stream).not.toHaveProperty('userId')
    const access = authenticate(own('access', { user_id: 'u', username: 'jane', role: 'viewer', org: 'beta', org_id: '9' }))
    expect(access).not.toBeInstanceOf(Promise)
    expect(access).toMatchObject({ user: 'jane', org: 'beta', userId: 'u' })
    expect(access).not.toHaveProperty('apiTokenId')
  })

  it('refuses an access token signed with JWT_SECRET: the backend cannot write as a gateway user', () => {
    expect(() => authenticate(sign({ type: 'access', user_id: 'u', username: 'jane', role: 'admin', org: 'beta' }))).toThrow(
      "wrong signing key: access tokens are signed by the gateway's own key",
    )
  })

  it('answers a token of a key not loaded yet after one reload (rotation on another instance)', async () => {
    const rotated = memoryKey('k-new')
    const token = jwt.sign({ type: 'access', iss: 'matt-collector', user_id: 'u', username: 'jane', org: 'beta' }, rotated.privateKey, {
      algorithm: 'ES256',
      keyid: rotated.kid,
      expiresIn: 60,
    })
    keys.loadable.push(rotated)
    const pending = authenticate(token)
    expect(pending).toBeInstanceOf(Promise)
    expect(await pending).toMatchObject({ user: 'jane', org: 'beta', userId: 'u' })
    expect(keys.refreshes).toBe(1)
    // A kid no reload can find: refused as any bad token is.
    const stranger = memoryKey('k-stranger')
    const forged = jwt.sign({ type: 'access', iss: 'matt-collector', username: 'x', org: 'y' }, stranger.privateKey, {
      algorithm: 'ES256',
      keyid: stranger.kid,
      expiresIn: 60,
    })
    await expect(authenticate(forged)).rejects.toMatchObject({ statusCode: 401, code: 'invalid_token', message: 'unknown signing key' })
  })

  it('takes an API token with ingest:write as its owner, never expiring, naming the token and owner for revocation', async () => {
    const id = await authenticate(good)
    expect(id).toMatchObject({ user: 'svc user', org: 'Acme', exp: Number.POSITIVE_INFINITY, userId: 'u1', apiTokenId: 't1' })
  })

  it('refuses API tokens without ingest:write, unknown ones, and JWTs of other types', async () => {
    await expect(authenticate(readOnly)).rejects.toThrow('API token lacks the ingest:write scope')
    await expect(authenticate(`mc_${'u'.repeat(43)}`)).rejects.toThrow('invalid API token')
    expect(() => authenticate(own('refresh', { username: 'jane', org: 'beta', jti: 'x' }))).toThrow(
      'wrong token type: expected stream or access',
    )
    expect(() => authenticate(own('collector', { collector_id: 'c' }))).toThrow('wrong token type: expected stream or access')
    expect(() => authenticate(sign({ userId: '1' }))).toThrow('wrong token type: expected stream or access')
    expect(() => authenticate(own('access', { username: 'jane' }))).toThrow('token has no org claim')
  })

  it('refuses with 401 invalid_token errors, ready for an HTTP answer', async () => {
    expect(() => authenticate('not-a-jwt')).toThrow(expect.objectContaining({ statusCode: 401, code: 'invalid_token' }))
    await expect(authenticate(readOnly)).rejects.toMatchObject({ statusCode: 401, code: 'invalid_token' })
  })
})
