import jwt from 'jsonwebtoken'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { OidcUnavailableError, OidcVerifier, type OidcFetch, type OidcOptions, type OidcVerifierDeps } from '../../src/auth/oidc.js'
import { TokenError } from '../../src/auth/tokens.js'
import { DISCOVERY_PATH, JWKS_PATH, startOidcIssuer, type LocalOidcIssuer } from '../helpers/oidc-issuer.js'
import { TEST_SECRET } from '../helpers/app.js'
import { waitFor } from '../helpers/wait.js'

// A cooldown no test outlasts: within it an unknown kid causes no fetch.
const LONG_COOLDOWN_MS = 600_000
const CLOCK_SKEW_S = 30

let issuer: LocalOidcIssuer
beforeAll(async () => {
  issuer = await startOidcIssuer()
})
afterAll(async () => {
  await issuer.stop()
})

function verifier(opts: Partial<OidcOptions> = {}, into: OidcFetch[] = []) {
  const warnings: object[] = []
  const v = new OidcVerifier(
    {
      issuer: issuer.issuer,
      audience: undefined,
      jwksUrl: undefined,
      jwksMaxAgeS: 24 * 3600,
      jwksCooldownMs: LONG_COOLDOWN_MS,
      timeoutMs: 2000,
      clockSkewS: CLOCK_SKEW_S,
      ...opts,
    },
    { log: { warn: (obj: object) => void warnings.push(obj) } as unknown as OidcVerifierDeps['log'], onFetch: (f) => into.push(f) },
  )
  return { v, fetches: into, warnings }
}

/** Requests to the issuer since `before` (a snapshot of its counters). */
function snapshot() {
  const d = issuer.count(DISCOVERY_PATH)
  const j = issuer.count(JWKS_PATH)
  return () => ({ discovery: issuer.count(DISCOVERY_PATH) - d, jwks: issuer.count(JWKS_PATH) - j })
}

async function refusal(p: Promise<unknown>): Promise<Error> {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(Error)
    return err as Error
  }
  throw new Error('expected a refusal')
}

async function tokenReason(p: Promise<unknown>): Promise<string> {
  const err = await refusal(p)
  expect(err).toBeInstanceOf(TokenError)
  return (err as TokenError).reason
}

describe('OidcVerifier with a local issuer', () => {
  it('accepts RS256 and ES256 tokens and maps their claims to a principal', async () => {
    const rs = issuer.addKey('RS256')
    const es = issuer.addKey('ES256')
    const { v } = verifier()
    const a = issuer.sign({ sub: 'kp_alice', name: 'Alice Doe', org_code: 'org_acme', org_name: 'Acme' }, { kid: rs })
    const exp = (jwt.decode(a) as { exp: number }).exp
    expect(await v.verify(a)).toEqual({ member: { user_id: 'kp_alice', name: 'Alice Doe' }, org: 'Acme', orgId: 'org_acme', exp, source: 'oidc' })
    const b = issuer.sign({ sub: 'u-bob', given_name: 'Bob', family_name: 'Ray', org_id: 'globex' }, { kid: es })
    expect(await v.verify(b)).toMatchObject({ member: { user_id: 'u-bob', name: 'Bob Ray' }, org: '', orgId: 'globex' })
  })

  it('names a member by preferred_username, then email, then sub', async () => {
    const { v } = verifier()
    expect((await v.verify(issuer.sign({ sub: 's1', preferred_username: 'carol', email: 'c@x' }))).member.name).toBe('carol')
    expect((await v.verify(issuer.sign({ sub: 's2', email: 'dan@example.test' }))).member.name).toBe('dan@example.test')
    expect((await v.verify(issuer.sign({ sub: 's3' }))).member.name).toBe('s3')
  })

  it('fetches nothing before the first token, then the discovery document and the JWKS once for concurrent first tokens', async () => {
    const since = snapshot()
    const { v, fetches } = verifier()
    expect(since()).toEqual({ discovery: 0, jwks: 0 })
    const tokens = Array.from({ length: 20 }, (_, i) => issuer.sign({ sub: `c${i}` }))
    const principals = await Promise.all(tokens.map((t) => v.verify(t)))
    expect(principals.map((p) => p.member.user_id)).toEqual(tokens.map((_, i) => `c${i}`))
    expect(since()).toEqual({ discovery: 1, jwks: 1 })
    expect(fetches).toEqual([{ what: 'discovery', result: 'ok' }, { what: 'jwks', result: 'ok' }])
  })

  it('uses a configured JWKS URL without the discovery document', async () => {
    const since = snapshot()
    const { v } = verifier({ jwksUrl: issuer.jwksUrl })
    await v.verify(issuer.sign({ sub: 'x' }))
    expect(since()).toEqual({ discovery: 0, jwks: 1 })
  })

  it('accepts a token with the new kid after the issuer rotates, with one refetch', async () => {
    const old = issuer.rotate('RS256')
    const cooldownMs = 200
    const { v } = verifier({ jwksCooldownMs: cooldownMs })
    await v.verify(issuer.sign({ sub: 'before' }, { kid: old }))
    const since = snapshot()
    const fresh = issuer.rotate('ES256')
    const token = issuer.sign({ sub: 'after' }, { kid: fresh })
    // Within the cooldown the new kid is refused without a fetch; once it has passed, one refetch finds it.
    const principal = await waitFor(
      () => v.verify(token),
      (p) => p.member.user_id === 'after',
      'the rotated key to be accepted',
    )
    expect(principal.source).toBe('oidc')
    expect(since().jwks).toBe(1)
    expect(since().discovery).toBe(0)
  })

  it('refuses a token signed by a key the issuer never published', async () => {
    issuer.rotate('RS256')
    const hidden = issuer.addKey('RS256', { publish: false })
    const { v } = verifier({ jwksCooldownMs: 0 })
    await v.verify(issuer.sign({ sub: 'warm-up' }))
    const token = issuer.sign({ sub: 'mallory' }, { kid: hidden })
    const reason = await tokenReason(v.verify(token))
    expect(reason).toContain('unknown signing key')
    expect(reason).not.toContain(token.split('.')[1])
  })

  it('refuses a token whose kid is published but whose signature is not its key', async () => {
    const shown = issuer.rotate('RS256')
    const hidden = issuer.addKey('RS256', { publish: false })
    const { v } = verifier()
    const forged = issuer.sign({ sub: 'mallory' }, { kid: hidden })
    const [h, p, s] = forged.split('.')
    const header = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(h as string, 'base64url').toString()), kid: shown })).toString('base64url')
    expect(await tokenReason(v.verify(`${header}.${p}.${s}`))).toBe('invalid signature')
  })

  it('refuses an HS256 token claiming the issuer without asking the issuer', async () => {
    const since = snapshot()
    const { v } = verifier()
    const forged = jwt.sign({ iss: issuer.issuer, sub: 'mallory' }, TEST_SECRET, { algorithm: 'HS256', expiresIn: 60 })
    expect(await tokenReason(v.verify(forged))).toBe('algorithm not allowed (RS256 or ES256)')
    expect(since()).toEqual({ discovery: 0, jwks: 0 })
  })

  it('refuses an expired token (beyond the clock skew), and accepts one within it', async () => {
    const { v } = verifier()
    expect(await tokenReason(v.verify(issuer.sign({ sub: 'late' }, { expiresInS: -(CLOCK_SKEW_S + 60) })))).toBe('token expired')
    expect((await v.verify(issuer.sign({ sub: 'just' }, { expiresInS: -(CLOCK_SKEW_S / 2) }))).member.user_id).toBe('just')
  })

  it('refuses a token of another issuer, and one without sub or exp', async () => {
    const { v } = verifier()
    expect(await tokenReason(v.verify(issuer.sign({ sub: 'x', iss: 'https://elsewhere.example.test' })))).toBe('wrong issuer')
    expect(await tokenReason(v.verify(issuer.sign({ sub: 'x', iss: `${issuer.issuer}/tenant` })))).toBe('wrong issuer')
    expect(await tokenReason(v.verify(issuer.sign({})))).toBe('token has no sub claim')
    expect(await tokenReason(v.verify(issuer.sign({ sub: 'x', exp: undefined })))).toBe('token has no exp claim')
  })

  it('accepts the issuer with a trailing slash in the token or in the configuration', async () => {
    expect((await verifier().v.verify(issuer.sign({ sub: 'a', iss: `${issuer.issuer}/` }))).member.user_id).toBe('a')
    expect((await verifier({ issuer: `${issuer.issuer}/` }).v.verify(issuer.sign({ sub: 'b' }))).member.user_id).toBe('b')
  })

  it('checks the audience when one is configured', async () => {
    const { v } = verifier({ audience: 'matt-collector' })
    expect((await v.verify(issuer.sign({ sub: 'a', aud: 'matt-collector' }))).member.user_id).toBe('a')
    expect((await v.verify(issuer.sign({ sub: 'a', aud: ['other', 'matt-collector'] }))).member.user_id).toBe('a')
    expect(await tokenReason(v.verify(issuer.sign({ sub: 'a', aud: 'another-api' })))).toBe('wrong audience')
    expect(await tokenReason(v.verify(issuer.sign({ sub: 'a' })))).toBe('token has no aud claim')
  })

  it('causes at most one JWKS fetch per cooldown however many unknown kids arrive', async () => {
    issuer.rotate('ES256')
    const { v } = verifier()
    await v.verify(issuer.sign({ sub: 'warm-up' }))
    const since = snapshot()
    const strangers = Array.from({ length: 30 }, () => issuer.addKey('ES256', { publish: false }))
    const reasons = await Promise.all(strangers.map((kid) => tokenReason(v.verify(issuer.sign({ sub: 'x' }, { kid })))))
    expect(new Set(reasons)).toEqual(new Set(["unknown signing key (not in the issuer's JWKS)"]))
    expect(since()).toEqual({ discovery: 0, jwks: 0 })
  })

  it('refetches the keys once the cache is older than its max age', async () => {
    const { v } = verifier({ jwksMaxAgeS: 1 })
    await v.verify(issuer.sign({ sub: 'first' }))
    const since = snapshot()
    await waitFor(
      async () => {
        await v.verify(issuer.sign({ sub: 'again' }))
        return since().jwks
      },
      (n) => n >= 1,
      'a JWKS refetch after the max age',
    )
    expect(since()).toEqual({ discovery: 0, jwks: 1 })
  })

  it('refuses clearly while the issuer is down, and works once it is up', async () => {
    const { v, fetches, warnings } = verifier({ jwksCooldownMs: 0 })
    issuer.down = true
    try {
      const err = await refusal(v.verify(issuer.sign({ sub: 'x' })))
      expect(err).toBeInstanceOf(OidcUnavailableError)
      expect(err.message).toBe('the OIDC issuer is unreachable (discovery)')
      expect(fetches).toEqual([{ what: 'discovery', result: 'error' }])
      expect(warnings).toHaveLength(1)
      // The next token asks again.
      await refusal(v.verify(issuer.sign({ sub: 'x' })))
      expect(fetches).toHaveLength(2)
    } finally {
      issuer.down = false
    }
    expect((await v.verify(issuer.sign({ sub: 'back' }))).member.user_id).toBe('back')
    expect(fetches.slice(2)).toEqual([{ what: 'discovery', result: 'ok' }, { what: 'jwks', result: 'ok' }])
  })

  it('refuses clearly when the JWKS is unreachable after the discovery worked', async () => {
    const { v, fetches } = verifier({ jwksMaxAgeS: 1 })
    await v.verify(issuer.sign({ sub: 'first' }))
    issuer.down = true
    try {
      // Past the max age the keys must be fetched again, and the issuer does not answer.
      const err = await waitFor(
        () => refusal(v.verify(issuer.sign({ sub: 'x' }))),
        (e) => e instanceof OidcUnavailableError,
        'a refusal for the unreachable JWKS',
      )
      expect(err.message).toBe('the OIDC issuer is unreachable (jwks)')
      expect(fetches.at(-1)).toEqual({ what: 'jwks', result: 'error' })
    } finally {
      issuer.down = false
    }
    expect((await v.verify(issuer.sign({ sub: 'back' }))).member.user_id).toBe('back')
  })
})
