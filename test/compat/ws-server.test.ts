import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { ChannelClient } from '../helpers/channels.js'
import { JWKS_PATH, startOidcIssuer, type LocalOidcIssuer } from '../helpers/oidc-issuer.js'
import { requireService, tcpReachable } from '../helpers/services.js'
import { waitFor, waitUntil } from '../helpers/wait.js'
import { oneBlock, readSeed, runBrowserSnippet, runShell, substitute } from './ws-server-examples.js'

// The Go WebSocket server's README (seed 002), its examples run as written: only the host,
// the port, the token placeholders and (for Redis) the channel id are replaced. Each
// replacement, and each answer that differs from the README's, is in docs/MIGRATING.md.
const seed = readSeed('002_36b04f2c0eb6987f.txt')
const text = seed ?? ''

/** The `**Example using JavaScript**` client. */
const jsClient = () => oneBlock(text, 'the JavaScript client', (b) => b.lang === 'javascript' && b.code.includes('/ws?token=')).code
/** The two `**Typing Indicator:**` frames, as the README prints them. */
const typingFrame = (type: string) =>
  oneBlock(text, `the ${type} frame`, (b) => b.lang === 'json' && b.code.includes(`"type": "${type}"`) && b.before.includes('Client → Server')).code

/** A Kinde access token of the local issuer (Kinde's access tokens carry no name: the member is named by `sub`). */
function kindeToken(issuer: LocalOidcIssuer, sub: string): string {
  return issuer.sign(
    { sub, aud: [], azp: 'compat-client', org_code: 'org_compat', scp: ['openid', 'profile', 'email', 'offline'], jti: randomUUID() },
    { expiresInS: 600 },
  )
}

/** The README's browser client with its placeholders filled in: the gateway's URL, a token, a channel. */
function browserClient(t: TestApp, token: string, channelId?: string) {
  let code = substitute(jsClient(), '"your_kinde_jwt_token"', JSON.stringify(token))
  code = substitute(code, 'ws://localhost:8080', t.wsUrl)
  if (channelId !== undefined) code = substitute(code, '"channel_123"', JSON.stringify(channelId))
  return runBrowserSnippet(code)
}

describe.skipIf(seed === undefined)('Go WebSocket server README: /ws clients with Kinde tokens', () => {
  let issuer: LocalOidcIssuer
  let t: TestApp

  beforeAll(async () => {
    issuer = await startOidcIssuer()
    issuer.addKey('RS256')
    // The README's variable, pointing at a local OpenID Connect issuer instead of Kinde.
    t = await startTestApp({ KINDE_ISSUER_URL: issuer.issuer })
  })
  afterAll(async () => {
    await t?.close()
    await issuer?.stop()
  })

  it('`curl http://localhost:8080/health` answers 200, with Matt Collector\'s JSON instead of the plain "OK"', async () => {
    const block = oneBlock(text, 'the curl of /health', (b) => b.code.includes('curl http://localhost:8080/health'))
    expect(block.code).toContain('# Should return: OK')
    // Run as written (the comment line is the shell's to skip): what curl prints is the body.
    const r = await runShell(substitute(block.code, 'http://localhost:8080', t.url))
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).not.toBe('OK')
    expect(JSON.parse(r.stdout)).toEqual({ status: 'ok' })
    expect((await fetch(`${t.url}/health`)).status).toBe(200)
  })

  it('the JavaScript client connects, logs "Connected", and its first message is presence:state naming it', async () => {
    const run = browserClient(t, kindeToken(issuer, 'kp_alice'))
    try {
      await waitUntil(() => run.messages().length > 0, 15_000, 'the first message')
      expect(run.logs[0]).toEqual(['Connected'])
      const [state] = run.messages()
      // The README's event structure, plus the gateway's offset (docs/API.md section 9).
      expect(Object.keys(state)).toEqual(['type', 'channelId', 'timestamp', 'offset', 'data'])
      expect(state).toMatchObject({ type: 'presence:state', channelId: 'channel_123' })
      expect(typeof state.timestamp).toBe('number')
      expect(state.data.members).toEqual([{ user_id: 'kp_alice', name: 'kp_alice' }])
    } finally {
      run.close()
    }
  })

  it('typing:start and typing:stop, sent as the README prints them, reach the other member and are not echoed', async () => {
    const alice = browserClient(t, kindeToken(issuer, 'kp_alice2'))
    let bob: ChannelClient | undefined
    try {
      await waitUntil(() => alice.messages().some((m) => m.type === 'presence:state'), 15_000, "alice's presence:state")
      bob = await ChannelClient.joined(t.wsUrl, { token: kindeToken(issuer, 'kp_bob'), channelId: 'channel_123' })
      await waitUntil(() => alice.messages().some((m) => m.type === 'presence:join' && m.data.user_id === 'kp_bob'), 15_000, 'presence:join of bob')

      const socket = alice.sockets[0] as NonNullable<(typeof alice.sockets)[0]>
      // The README's frames; `channel_id` is its placeholder for the channel joined.
      socket.send(substitute(typingFrame('typing:start'), '"channel_id"', '"channel_123"'))
      const start = await bob.waitFor((f) => f.type === 'typing:start', 'typing:start from alice')
      expect(start).toMatchObject({ type: 'typing:start', channelId: 'channel_123', data: { user_id: 'kp_alice2' } })
      socket.send(substitute(typingFrame('typing:stop'), '"channel_id"', '"channel_123"'))
      const stop = await bob.waitFor((f) => f.type === 'typing:stop', 'typing:stop from alice')
      expect(stop).toMatchObject({ channelId: 'channel_123', data: { user_id: 'kp_alice2' } })

      // Bob types after alice's frames were handled: once his typing reached her, an echo of
      // her own would have arrived before it.
      bob.send({ type: 'typing:start', channelId: 'channel_123' })
      await waitUntil(() => alice.messages().some((m) => m.type === 'typing:start' && m.data.user_id === 'kp_bob'), 15_000, "bob's typing at alice")
      expect(alice.messages().filter((m) => m.type.startsWith('typing:') && m.data.user_id === 'kp_alice2')).toEqual([])

      bob.close()
      await waitUntil(() => alice.messages().some((m) => m.type === 'presence:leave' && m.data.user_id === 'kp_bob'), 15_000, 'presence:leave of bob')
    } finally {
      bob?.close()
      alice.close()
    }
  })

  it('the token may come in the Authorization header instead; the issuer\'s keys are fetched once and kept', async () => {
    const before = issuer.count(JWKS_PATH)
    expect(before, 'the tests above fetched the keys').toBeGreaterThan(0)
    const c = await ChannelClient.joined(t.wsUrl, { token: kindeToken(issuer, 'kp_carol'), channelId: 'channel_123', bearer: true })
    try {
      expect(c.frames[0]?.data.members).toContainEqual({ user_id: 'kp_carol', name: 'kp_carol' })
      expect(issuer.count(JWKS_PATH)).toBe(before)
    } finally {
      c.close()
    }
  })
})

const redisUp = seed !== undefined && (await requireService('Redis at 127.0.0.1:6379', await tcpReachable('127.0.0.1', 6379)))

describe.skipIf(seed === undefined)('Go WebSocket server README: local development variables and Redis publishers', () => {
  let issuer: LocalOidcIssuer
  let t: TestApp
  const logs: string[] = []
  // The README's `export` lines, as the environment of a gateway.
  const exported = () =>
    Object.fromEntries(
      oneBlock(text, 'the export lines', (b) => b.code.includes('export KINDE_ISSUER_URL='))
        .code.split('\n')
        .map((line) => /^export (\w+)=(.*)$/.exec(line.trim()))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [m[1] as string, m[2] as string]),
    )

  beforeAll(async () => {
    if (!redisUp) return
    issuer = await startOidcIssuer()
    issuer.addKey('RS256')
    const env = exported()
    expect(Object.keys(env)).toEqual(['KINDE_ISSUER_URL', 'REDIS_URL', 'PORT'])
    env.KINDE_ISSUER_URL = substitute(env.KINDE_ISSUER_URL as string, 'https://your-subdomain.kinde.com', issuer.issuer)
    // The host, and a database number of this file's own: the Redis subscriber's lease is kept
    // per database, so gateways of other test files on the same Redis do not take it from this
    // one (PUBLISH reaches every database's subscribers alike).
    env.REDIS_URL = substitute(env.REDIS_URL as string, 'redis://localhost:6379', 'redis://127.0.0.1:6379/9')
    t = await startTestApp(
      { ...env, REDIS_LEADER_RETRY_MS: '200' },
      { logger: { level: 'warn', stream: { write: (line: string) => logs.push(line) } } },
    )
  })
  afterAll(async () => {
    await t?.close()
    await issuer?.stop()
  })

  it.skipIf(!redisUp)('starts with them; PORT is not read, and a warning names SERVER_PORT', () => {
    const warnings = logs.map((l) => JSON.parse(l)).filter((l) => l.variable === 'PORT')
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatchObject({ level: 40, replacement: 'SERVER_PORT' })
    expect(warnings[0].msg).toMatch(/^PORT is not read by this gateway: the HTTP and WebSocket port is SERVER_PORT; /)
    expect(t.config.port).toBe(0)
  })

  it.skipIf(!redisUp)('`redis-cli PUBLISH "channel:123" \'{…message:created…}\'` reaches the JavaScript client', async () => {
    // A channel of this run: other test files publish on the same Redis.
    const channelId = `compat-${randomUUID()}`
    const client = browserClient(t, kindeToken(issuer, 'kp_dave'), channelId)
    try {
      await waitUntil(() => client.messages().some((m) => m.type === 'presence:state'), 15_000, 'presence:state')
      await waitRedisSubscriber(t)
      const block = oneBlock(text, 'the redis-cli PUBLISH', (b) => b.code.includes('redis-cli PUBLISH'))
      let command = substitute(block.code, '"channel:123"', `"channel:${channelId}"`)
      command = substitute(command, '"channelId": "123"', `"channelId": "${channelId}"`)
      const r = await runShell(command)
      expect(r.code, r.stderr).toBe(0)
      // PUBLISH answers how many subscribers got it: at least this gateway.
      expect(Number(r.stdout.trim())).toBeGreaterThanOrEqual(1)

      const published = JSON.parse(/'(\{[\s\S]*\})'/.exec(command)?.[1] as string)
      const got = await waitFor(() => client.messages().find((m) => m.type === 'message:created'), (m) => m !== undefined, 'message:created')
      // As published (its timestamp kept), with the offset the log gave it.
      expect(got).toEqual({ ...published, offset: expect.any(Number) })
      expect(got.data).toEqual({ id: 'msg_1', content: 'Hello world', authorId: 'user_1', authorName: 'John Doe' })
    } finally {
      client.close()
    }
  })

  it.skipIf(!redisUp)('message:updated and message:deleted published the same way arrive in order', async () => {
    const channelId = `compat-${randomUUID()}`
    const client = browserClient(t, kindeToken(issuer, 'kp_erin'), channelId)
    try {
      await waitUntil(() => client.messages().some((m) => m.type === 'presence:state'), 15_000, 'presence:state')
      await waitRedisSubscriber(t)
      const block = oneBlock(text, 'the redis-cli PUBLISH', (b) => b.code.includes('redis-cli PUBLISH'))
      for (const type of ['message:updated', 'message:deleted']) {
        let command = substitute(block.code, '"channel:123"', `"channel:${channelId}"`)
        command = substitute(command, '"channelId": "123"', `"channelId": "${channelId}"`)
        command = substitute(command, '"type": "message:created"', `"type": "${type}"`)
        const r = await runShell(command)
        expect(r.code, r.stderr).toBe(0)
      }
      const events = await waitFor(
        () => client.messages().filter((m) => m.type.startsWith('message:')),
        (m) => m.length >= 2,
        'the two events',
      )
      expect(events.map((e) => e.type)).toEqual(['message:updated', 'message:deleted'])
      expect(events[0].offset).toBeLessThan(events[1].offset)
    } finally {
      client.close()
    }
  })
})

/** Until this gateway holds the Redis lease and is subscribed (`/readyz`, components.redis). */
async function waitRedisSubscriber(t: TestApp): Promise<void> {
  await waitFor(
    async () => (await (await fetch(`${t.url}/readyz`)).json()) as { components: { redis?: { status: string; role: string } } },
    (body) => body.components.redis?.status === 'up' && body.components.redis.role === 'subscriber',
    'the gateway to subscribe to Redis channel:*',
    30_000,
  )
}
