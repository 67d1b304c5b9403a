import { generateKeyPairSync } from 'node:crypto'
import jwt from 'jsonwebtoken'
import { describe, expect, it } from 'vitest'
import { OidcUnavailableError } from '../../src/auth/oidc.js'
import { TokenError } from '../../src/auth/tokens.js'
import { createChannelAuthenticator, type ChannelAuthDeps, type UpgradeRequest } from '../../src/channels/channel-auth.js'
import { defaultChannelPolicy } from '../../src/channels/policy.js'
import type { ChannelPrincipal } from '../../src/channels/types.js'
import { AppError } from '../../src/errors.js'
import { MemoryKeys, TEST_ISSUER, memoryKey, testTokenService } from '../helpers/keys.js'

const secret = 'unit-test-secret-unit-test-secret-0002'
const OIDC_ISSUER = 'https://tenant.example.test'
const now = () => Math.floor(Date.now() / 1000)

function setup(opts: { oidc?: boolean; verify?: (token: string) => Promise<ChannelPrincipal> } = {}) {
  const keys = new MemoryKeys()
  const tokens = testTokenService(secret, keys)
  const oidcCalls: string[] = []
  const verify =
    opts.verify ??
    (async (): Promise<ChannelPrincipal> => ({
      member: { user_id: 'kp_1', name: 'Olive' },
      org: 'Acme',
      orgId: 'org_acme',
      exp: now() + 60,
      source: 'oidc',
    }))
  const deps: ChannelAuthDeps = {
    tokens,
    policy: defaultChannelPolicy,
    ...(opts.oidc === false
      ? {}
      : {
          oidc: {
            issuer: OIDC_ISSUER,
            verifier: {
              verify: (token) => {
                oidcCalls.push(token)
                return verify(token)
              },
            },
          },
        }),
  }
  const auth = createChannelAuthenticator(deps)
  const access = (claims: object = {}, key = keys.current()) =>
    jwt.sign(
      { type: 'access', user_id: 'u-1', username: 'alice', org: 'Acme', org_id: 'acme', role: 'viewer', iss: TEST_ISSUER, ...claims },
      key.privateKey,
      { algorithm: 'ES256', keyid: key.kid, expiresIn: 60 },
    )
  const stream = (claims: object = {}) =>
    tokens.signStream({ user: 'bob', user_id: 's-2', org: 'Globex', org_id: 'globex', account_id: 'a', ...claims }).token
  return { auth, keys, access, stream, oidcCalls }
}

const req = (query: Record<string, unknown>, headers: Record<string, string> = {}): UpgradeRequest => ({ query, headers })

async function refusal(p: Promise<unknown>): Promise<{ status: number; code: string; message: string }> {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(AppError)
    const e = err as AppError
    return { status: e.statusCode, code: e.code, message: e.message }
  }
  throw new Error('expected a refusal')
}

describe('channel auth: where the token comes from', () => {
  it('takes the token from ?token=', async () => {
    const { auth, access } = setup()
    const a = await auth.admit(req({ token: access(), channelId: 'general' }))
    expect(a.principal.member).toEqual({ user_id: 'u-1', name: 'alice' })
  })

  it('takes the token from Authorization: Bearer', async () => {
    const { auth, access } = setup()
    const a = await auth.admit(req({ channelId: 'general' }, { authorization: `Bearer ${access()}` }))
    expect(a.principal.source).toBe('access')
  })

  it('prefers ?token= over the Authorization header', async () => {
    const { auth, access, stream } = setup()
    const a = await auth.admit(req({ token: stream(), channelId: 'general' }, { authorization: `Bearer ${access()}` }))
    expect(a.principal.source).toBe('stream')
  })

  it('refuses a missing token with 401 invalid_token', async () => {
    const { auth } = setup()
    expect(await refusal(auth.admit(req({ channelId: 'general' })))).toEqual({ status: 401, code: 'invalid_token', message: 'missing token' })
    expect((await refusal(auth.admit(req({ token: '', channelId: 'general' })))).message).toBe('missing token')
    // Basic credentials (a browser may send them) are no token.
    const basic = req({ channelId: 'general' }, { authorization: 'Basic dXNlcjpwYXNz' })
    expect((await refusal(auth.admit(basic))).message).toBe('missing token')
  })

  it('refuses API tokens', async () => {
    const { auth } = setup()
    const r = await refusal(auth.admit(req({ token: 'mc_0123456789abcdef', channelId: 'general' })))
    expect(r).toEqual({ status: 401, code: 'invalid_token', message: 'API tokens are not accepted on /ws' })
  })

  it('refuses a token given twice in the query', async () => {
    const { auth, access } = setup()
    const r = await refusal(auth.admit(req({ token: [access(), access()], channelId: 'general' })))
    expect(r.status).toBe(400)
    expect(r.message).toContain('token')
  })
})

describe('channel auth: channelId and since', () => {
  it('refuses a missing, malformed or repeated channelId with 400 invalid_request', async () => {
    const { auth, access } = setup()
    for (const channelId of [undefined, '', 'a b', 'room.*', 'a..b', 'x'.repeat(200), ['a', 'b']]) {
      const r = await refusal(auth.admit(req({ token: access(), channelId })))
      expect(r.status, String(channelId)).toBe(400)
      expect(r.code).toBe('invalid_request')
      expect(r.message).toContain('channelId')
    }
  })

  it('checks channelId before the token: a malformed request costs no verification', async () => {
    const { auth, oidcCalls } = setup()
    const oidcLooking = jwt.sign({ iss: OIDC_ISSUER, sub: 'x' }, 'whatever-secret-whatever-secret-0001')
    expect((await refusal(auth.admit(req({ token: oidcLooking, channelId: 'bad id' })))).status).toBe(400)
    expect(oidcCalls).toHaveLength(0)
  })

  it('reads since as a non-negative integer, undefined when absent', async () => {
    const { auth, access } = setup()
    expect((await auth.admit(req({ token: access(), channelId: 'general' }))).since).toBeUndefined()
    expect((await auth.admit(req({ token: access(), channelId: 'general', since: '0' }))).since).toBe(0)
    expect((await auth.admit(req({ token: access(), channelId: 'general', since: '1234' }))).since).toBe(1234)
  })

  it('refuses a since that is no non-negative safe integer, naming it', async () => {
    const { auth, access } = setup()
    for (const since of ['', '-1', '1.5', '1e3', 'abc', ' 7', '9007199254740993', ['1', '2']]) {
      const r = await refusal(auth.admit(req({ token: access(), channelId: 'general', since })))
      expect(r.status, String(since)).toBe(400)
      expect(r.message).toContain('since')
    }
  })
})

describe("channel auth: the gateway's own tokens", () => {
  it('admits an access token as its user, with org, org id, user id and exp', async () => {
    const { auth, access } = setup()
    const token = access()
    const a = await auth.admit(req({ token, channelId: 'org:acme:general' }))
    expect(a).toEqual({
      channelId: 'org:acme:general',
      since: undefined,
      principal: {
        member: { user_id: 'u-1', name: 'alice' },
        org: 'Acme',
        orgId: 'acme',
        userId: 'u-1',
        exp: (jwt.decode(token) as { exp: number }).exp,
        source: 'access',
      },
    })
  })

  it('admits a stream token, its user_id falling back to the user name', async () => {
    const { auth, stream } = setup()
    const a = await auth.admit(req({ token: stream(), channelId: 'general' }))
    expect(a.principal).toMatchObject({ member: { user_id: 's-2', name: 'bob' }, org: 'Globex', orgId: 'globex', source: 'stream' })
    expect(a.principal.userId).toBeUndefined()
    const b = await auth.admit(req({ token: stream({ user_id: '' }), channelId: 'general' }))
    expect(b.principal.member).toEqual({ user_id: 'bob', name: 'bob' })
  })

  it('refuses refresh and collector tokens, expired and foreign tokens with 401 and the reason', async () => {
    const { auth, keys } = setup()
    const own = (type: string, expiresIn = 60) =>
      jwt.sign({ type, user_id: 'u', username: 'u', iss: TEST_ISSUER }, keys.current().privateKey, {
        algorithm: 'ES256',
        keyid: keys.current().kid,
        expiresIn,
      })
    expect(await refusal(auth.admit(req({ token: own('refresh'), channelId: 'c' })))).toEqual({
      status: 401,
      code: 'invalid_token',
      message: 'wrong token type: expected access or stream',
    })
    expect((await refusal(auth.admit(req({ token: own('collector'), channelId: 'c' })))).message).toContain('wrong token type')
    expect((await refusal(auth.admit(req({ token: own('access', -120), channelId: 'c' })))).message).toBe('token expired')
    const foreign = jwt.sign({ type: 'stream', user: 'x', org: 'o' }, 'another-secret-another-secret-0003', { expiresIn: 60 })
    expect((await refusal(auth.admit(req({ token: foreign, channelId: 'c' })))).message).toBe('invalid signature')
    expect((await refusal(auth.admit(req({ token: 'not.a.jwt', channelId: 'c' })))).status).toBe(401)
  })

  it('refuses an access token without its user claims', async () => {
    const { auth, access } = setup()
    const r = await refusal(auth.admit(req({ token: access({ username: undefined }), channelId: 'c' })))
    expect(r).toMatchObject({ status: 401, message: 'access token lacks user claims' })
  })

  it('reloads the keys once for a kid not loaded yet (rotated on another instance)', async () => {
    const { auth, keys, access } = setup()
    const rotated = memoryKey('k2')
    keys.loadable.push(rotated)
    const a = await auth.admit(req({ token: access({}, rotated), channelId: 'general' }))
    expect(a.principal.member.name).toBe('alice')
    expect(keys.refreshes).toBe(1)
    const never = memoryKey('k-never')
    expect((await refusal(auth.admit(req({ token: access({}, never), channelId: 'general' })))).message).toBe('unknown signing key')
  })
})

describe('channel auth: the channel policy', () => {
  it('admits members of the org to its org: channel', async () => {
    const { auth, stream } = setup()
    expect((await auth.admit(req({ token: stream(), channelId: 'org:globex:ops' }))).channelId).toBe('org:globex:ops')
  })

  it("refuses another org's channel with 403 channel_forbidden", async () => {
    const { auth, access, stream } = setup()
    for (const token of [access(), stream()]) {
      const r = await refusal(auth.admit(req({ token, channelId: 'org:initech:ops' })))
      expect(r.status).toBe(403)
      expect(r.code).toBe('channel_forbidden')
      expect(r.message).toContain('initech')
    }
  })

  it('asks the policy it is given, with the principal and the channel', async () => {
    const keys = new MemoryKeys()
    const seen: Array<[string, string]> = []
    const auth = createChannelAuthenticator({
      tokens: testTokenService(secret, keys),
      policy: (p, channelId) => {
        seen.push([p.member.name, channelId])
        return channelId === 'open' ? { ok: true } : { ok: false, reason: 'closed for repairs' }
      },
    })
    const token = testTokenService(secret, keys).signStream({ user: 'carol', user_id: 'c', org: 'o', org_id: 'o', account_id: 'a' }).token
    await auth.admit(req({ token, channelId: 'open' }))
    expect(await refusal(auth.admit(req({ token, channelId: 'shut' })))).toEqual({ status: 403, code: 'channel_forbidden', message: 'closed for repairs' })
    expect(seen).toEqual([['carol', 'open'], ['carol', 'shut']])
  })
})

describe('channel auth: OIDC tokens', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
  const oidcToken = (claims: object = {}) =>
    jwt.sign({ iss: OIDC_ISSUER, sub: 'kp_1', ...claims }, rsa, { algorithm: 'RS256', keyid: 'r1', expiresIn: 60 })

  it('sends a token naming the issuer to the OIDC verifier and admits its principal', async () => {
    const { auth, oidcCalls } = setup()
    const token = oidcToken()
    const a = await auth.admit(req({ token, channelId: 'org:org_acme:x' }))
    expect(a.principal).toMatchObject({ source: 'oidc', member: { user_id: 'kp_1', name: 'Olive' } })
    expect(oidcCalls).toEqual([token])
  })

  it('matches the issuer with or without a trailing slash', async () => {
    const { auth, oidcCalls } = setup()
    await auth.admit(req({ token: oidcToken({ iss: `${OIDC_ISSUER}/` }), channelId: 'general' }))
    expect(oidcCalls).toHaveLength(1)
  })

  it('never lets an HS256 token naming the issuer through the own-token path, even signed with JWT_SECRET', async () => {
    const { auth, oidcCalls } = setup({
      verify: async () => {
        throw new TokenError('algorithm not allowed (RS256 or ES256)')
      },
    })
    // A valid stream token in every other respect.
    const forged = jwt.sign({ iss: OIDC_ISSUER, sub: 'x', type: 'stream', user: 'mallory', org: 'o', org_id: 'o' }, secret, {
      expiresIn: 60,
    })
    expect(await refusal(auth.admit(req({ token: forged, channelId: 'general' })))).toEqual({
      status: 401,
      code: 'invalid_token',
      message: 'algorithm not allowed (RS256 or ES256)',
    })
    expect(oidcCalls).toEqual([forged])
  })

  it('sends tokens naming another issuer to the own-token path only', async () => {
    const { auth, stream, oidcCalls } = setup()
    await auth.admit(req({ token: stream(), channelId: 'general' }))
    const other = oidcToken({ iss: 'https://elsewhere.example.test' })
    expect((await refusal(auth.admit(req({ token: other, channelId: 'general' })))).status).toBe(401)
    expect(oidcCalls).toHaveLength(0)
  })

  it('without OIDC configured, an OIDC token just fails the own-token path', async () => {
    const { auth } = setup({ oidc: false })
    const r = await refusal(auth.admit(req({ token: oidcToken(), channelId: 'general' })))
    expect(r.status).toBe(401)
    expect(r.code).toBe('invalid_token')
  })

  it('answers 503 when the issuer cannot be reached', async () => {
    const { auth } = setup({
      verify: async () => {
        throw new OidcUnavailableError('the OIDC issuer is unreachable (discovery)')
      },
    })
    expect(await refusal(auth.admit(req({ token: oidcToken(), channelId: 'general' })))).toEqual({
      status: 503,
      code: 'oidc_unavailable',
      message: 'the OIDC issuer is unreachable (discovery)',
    })
  })

  it('applies the policy to OIDC principals too', async () => {
    const { auth } = setup()
    expect((await refusal(auth.admit(req({ token: oidcToken(), channelId: 'org:other:x' })))).status).toBe(403)
  })
})
