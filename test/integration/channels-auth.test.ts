import jwt from 'jsonwebtoken'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { TEST_SECRET, startTestApp, type TestApp } from '../helpers/app.js'
import { ChannelClient, streamToken, type ChannelConnectOptions } from '../helpers/channels.js'
import { DISCOVERY_PATH, JWKS_PATH, startOidcIssuer, type LocalOidcIssuer } from '../helpers/oidc-issuer.js'
import { waitFor } from '../helpers/wait.js'

/**
 * The `/ws` upgrade check through the whole app: the gateway's own tokens, an OIDC
 * issuer's (a local one), the channel policy and the origin list, each refusal an HTTP
 * answer instead of a 101.
 */

const ADMIN_PASSWORD = 'admin-password-for-tests'
const ALLOWED_ORIGIN = 'http://app.example.test'
const OIDC_AUDIENCE = 'matt-collector-tests'

let issuer: LocalOidcIssuer
let t: TestApp
let api: ApiClient
let admin: { token: string; orgId: string }
/** Requests the issuer had once the gateway was started. */
let issuerRequestsAtStart = -1
const open: ChannelClient[] = []

beforeAll(async () => {
  issuer = await startOidcIssuer()
  issuer.addKey('RS256')
  t = await startTestApp({
    ...FAST_PASSWORD_HASHING,
    ADMIN_PASSWORD,
    MQTT_ENABLED: 'false',
    ALLOWED_ORIGINS: ALLOWED_ORIGIN,
    OIDC_ISSUER_URL: issuer.issuer,
    OIDC_AUDIENCE,
    OIDC_JWKS_COOLDOWN_MS: '0',
  })
  issuerRequestsAtStart = issuer.count(DISCOVERY_PATH) + issuer.count(JWKS_PATH)
  api = new ApiClient(t.url)
  const res = await api.post('/api/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD } })
  expect(res.status, res.text).toBe(200)
  const orgId = (jwt.decode(res.json.token) as { org_id?: unknown }).org_id
  expect(typeof orgId === 'string' && orgId !== '', 'the admin token names an org id').toBe(true)
  admin = { token: res.json.token, orgId: orgId as string }
})

afterAll(async () => {
  for (const c of open) c.close()
  await t?.close()
  await issuer?.stop()
})

const oidcToken = (claims: Record<string, unknown> = {}, opts: { kid?: string; expiresInS?: number } = {}) =>
  issuer.sign({ sub: 'kp_olive', name: 'Olive Oidc', aud: OIDC_AUDIENCE, org_code: 'org_kinde', ...claims }, opts)

async function join(opts: ChannelConnectOptions): Promise<ChannelClient> {
  const c = await ChannelClient.joined(t.wsUrl, opts)
  open.push(c)
  return c
}

const refusal = (opts: ChannelConnectOptions) => ChannelClient.refusal(t.wsUrl, opts)

async function jwksFetches(result: 'ok' | 'error'): Promise<number> {
  const text = await (await fetch(`${t.url}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`mc_oidc_jwks_fetches_total{result="${result}"}`))
  return line === undefined ? 0 : Number(line.split(' ').at(-1))
}

describe('/ws upgrade: refusals before the 101', () => {
  it('refuses a missing token with 401', async () => {
    const r = await refusal({ token: '', channelId: 'general' })
    expect(r).toEqual({ status: 401, body: { error: 'invalid_token', message: 'missing token' } })
  })

  it('refuses a malformed token, an API token and an expired stream token with 401', async () => {
    expect((await refusal({ token: 'garbage', channelId: 'general' })).status).toBe(401)
    const api = await refusal({ token: 'mc_0000000000000000000000000000', channelId: 'general' })
    expect(api).toEqual({ status: 401, body: { error: 'invalid_token', message: 'API tokens are not accepted on /ws' } })
    const expired = await refusal({ token: streamToken({ id: 'late' }, -120), channelId: 'general' })
    expect(expired).toEqual({ status: 401, body: { error: 'invalid_token', message: 'token expired' } })
  })

  it('refuses an HS256 token naming the OIDC issuer, even signed with JWT_SECRET', async () => {
    const forged = jwt.sign(
      { iss: issuer.issuer, sub: 'mallory', aud: OIDC_AUDIENCE, type: 'stream', user: 'mallory', user_id: 'm', org: 'o', org_id: 'o' },
      TEST_SECRET,
      { expiresIn: 600 },
    )
    const r = await refusal({ token: forged, channelId: 'general' })
    expect(r.status).toBe(401)
    expect(r.body.error).toBe('invalid_token')
    expect(r.body.message).toContain('algorithm not allowed')
  })

  it('refuses expired OIDC tokens, a key the issuer never published and a wrong audience with 401', async () => {
    const expired = await refusal({ token: oidcToken({}, { expiresInS: -600 }), channelId: 'general' })
    expect(expired.body).toEqual({ error: 'invalid_token', message: 'token expired' })
    const hidden = issuer.addKey('ES256', { publish: false })
    const unknown = await refusal({ token: oidcToken({}, { kid: hidden }), channelId: 'general' })
    expect(unknown.status).toBe(401)
    expect(unknown.body.message).toContain('unknown signing key')
    const aud = await refusal({ token: oidcToken({ aud: 'another-api' }), channelId: 'general' })
    expect(aud.body).toEqual({ error: 'invalid_token', message: 'wrong audience' })
  })

  it("refuses an org: channel of another org with 403, for each kind of token", async () => {
    for (const token of [admin.token, streamToken({ id: 's1', orgId: 'org-1' }), oidcToken()]) {
      const r = await refusal({ token, channelId: 'org:someone-else:general' })
      expect(r.status).toBe(403)
      expect(r.body.error).toBe('channel_forbidden')
    }
  })

  it('refuses an Origin not in ALLOWED_ORIGINS with 403', async () => {
    const r = await refusal({ token: streamToken({ id: 's2' }), channelId: 'general', headers: { origin: 'http://evil.example.test' } })
    expect(r.status).toBe(403)
  })

  it('refuses a bad channelId with 400', async () => {
    const token = streamToken({ id: 's3' })
    for (const channelId of ['', 'has space', 'room.>']) {
      const r = await refusal({ token, channelId })
      expect(r.status, channelId).toBe(400)
      expect(r.body.error).toBe('invalid_request')
    }
    expect((await refusal({ token, channelId: 'general', since: -1 })).status).toBe(400)
  })
})

describe('/ws upgrade: the OIDC issuer down', () => {
  it('asks the issuer nothing at start-up (the gateway starts while it is unreachable)', () => {
    expect(issuerRequestsAtStart).toBe(0)
  })

  it('answers 503 while the issuer cannot be reached, and admits once it is back', async () => {
    const kid = issuer.addKey('ES256')
    const token = oidcToken({ sub: 'kp_patient' }, { kid })
    issuer.down = true
    try {
      const r = await refusal({ token, channelId: 'general' })
      expect(r.status).toBe(503)
      expect(r.body.error).toBe('oidc_unavailable')
      expect(r.body.message).toContain('unreachable')
      expect(await jwksFetches('error')).toBeGreaterThanOrEqual(1)
    } finally {
      issuer.down = false
    }
    const c = await join({ token, channelId: 'general' })
    expect(c.frames[0]?.type).toBe('presence:state')
  })
})

describe('/ws upgrade: accepted tokens', () => {
  it("admits an admin's access token, from the query and from the Authorization header", async () => {
    const a = await join({ token: admin.token, channelId: 'auth.access' })
    expect(a.frames[0]).toMatchObject({ type: 'presence:state', channelId: 'auth.access' })
    const b = await join({ token: admin.token, channelId: 'auth.access.bearer', bearer: true })
    expect(b.frames[0]?.type).toBe('presence:state')
  })

  it("admits an access token to its own org's channel", async () => {
    const channelId = `org:${admin.orgId}:ops`
    const c = await join({ token: admin.token, channelId })
    expect(c.frames[0]).toMatchObject({ type: 'presence:state', channelId })
  })

  it('admits a stream token, from an allowed Origin too', async () => {
    const c = await join({ token: streamToken({ id: 'st-1', orgId: 'org-1' }), channelId: 'org:org-1:room', headers: { origin: ALLOWED_ORIGIN } })
    expect(c.frames[0]?.type).toBe('presence:state')
  })

  it('admits an OIDC token (RS256 and ES256) and shows its member to the others', async () => {
    const channelId = 'org:org_kinde:lobby'
    const watcher = await join({ token: oidcToken({ sub: 'kp_watcher', name: 'Watcher' }), channelId })
    const before = watcher.frames.length
    await join({ token: oidcToken(), channelId, bearer: true })
    const joined = await watcher.waitFor((f) => f.type === 'presence:join', 'presence:join of the OIDC member', before)
    expect(joined.data).toEqual({ user_id: 'kp_olive', name: 'Olive Oidc' })

    const es = issuer.addKey('ES256')
    const c = await join({ token: oidcToken({ sub: 'kp_es' }, { kid: es }), channelId: 'general' })
    expect(c.frames[0]?.type).toBe('presence:state')
    expect(await jwksFetches('ok')).toBeGreaterThanOrEqual(2)
  })

  it('admits an OIDC token after the issuer rotated its keys', async () => {
    const rotated = issuer.rotate('ES256')
    const c = await waitFor(
      () => join({ token: oidcToken({ sub: 'kp_rotated' }, { kid: rotated }), channelId: 'general' }),
      (client) => client.frames[0]?.type === 'presence:state',
      'the rotated key to be accepted',
    )
    expect(c.frames[0]?.channelId).toBe('general')
  })
})
