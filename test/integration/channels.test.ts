import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { embeddedEngine } from '../helpers/db.js'
import { ChannelClient, streamToken, type ChannelFrame } from '../helpers/channels.js'
import { waitUntil } from '../helpers/wait.js'
import { TestClient } from '../helpers/ws-client.js'

// The `/ws` hub in one process (no NATS_URL): the in-memory log and local presence.

const alice = { id: 'u-alice', name: 'alice' }
const bob = { id: 'u-bob', name: 'bob' }
const carol = { id: 'u-carol', name: 'carol' }

let channelCounter = 0
const freshChannel = () => `room-${++channelCounter}`

const join = (t: TestApp, user: { id: string; name: string }, channelId: string, since?: number) =>
  ChannelClient.joined(t.wsUrl, { token: streamToken(user), channelId, ...(since !== undefined ? { since } : {}) })

const sessionsOf = (t: TestApp, channelId: string) => [...t.app.channelSessions()].filter((s) => s.channelId === channelId)

const metrics = async (t: TestApp) => (await fetch(`${t.url}/metrics`)).text()

const memberIds = (f: ChannelFrame) => (f.data.members as Array<{ user_id: string }>).map((m) => m.user_id).sort()

describe('/ws channels in one process', () => {
  let t: TestApp
  const clients: ChannelClient[] = []
  const track = <T extends ChannelClient>(c: T): T => {
    clients.push(c)
    return c
  }
  const joinTracked = async (user: { id: string; name: string }, channelId: string, since?: number) =>
    track(await join(t, user, channelId, since))

  beforeAll(async () => {
    t = await startTestApp({ CHANNEL_CLIENT_FRAMES_PER_S: '5', CHANNEL_MAX_CLIENT_FRAME_BYTES: '256', CHANNEL_HISTORY_SIZE: '3' })
  })
  afterEach(() => {
    for (const c of clients.splice(0)) c.close()
  })
  afterAll(async () => {
    await t.close()
  })

  it('sends presence:state first, with the joiner and the offset to recover from', async () => {
    const ch = freshChannel()
    const a = await joinTracked(alice, ch)
    const [state] = a.frames
    expect(state?.type).toBe('presence:state')
    expect(state?.channelId).toBe(ch)
    expect(typeof state?.timestamp).toBe('number')
    expect(Number.isSafeInteger(state?.offset)).toBe(true)
    expect(state?.data).toEqual({ members: [{ user_id: alice.id, name: alice.name }] })
  })

  it('accepts the token in Authorization: Bearer and refuses a bad one with 401 before the upgrade', async () => {
    const ch = freshChannel()
    const c = track(await ChannelClient.connect(t.wsUrl, { token: streamToken(alice), channelId: ch, bearer: true }))
    await c.waitFor((f) => f.type === 'presence:state', 'presence:state')
    const refused = await ChannelClient.refusal(t.wsUrl, { token: 'not-a-jwt', channelId: ch })
    expect(refused.status).toBe(401)
    expect(refused.body.error).toBe('invalid_token')
  })

  it('announces a join to the others and a leave after the member goes', async () => {
    const ch = freshChannel()
    const a = await joinTracked(alice, ch)
    const b = await joinTracked(bob, ch)
    expect(memberIds(b.frames[0] as ChannelFrame)).toEqual([alice.id, bob.id])
    const joined = await a.waitFor((f) => f.type === 'presence:join', 'bob joining')
    expect(joined.data).toEqual({ user_id: bob.id, name: bob.name })
    // The joiner is not told of its own join.
    expect(b.ofType('presence:join')).toEqual([])
    b.close()
    const left = await a.waitFor((f) => f.type === 'presence:leave', 'bob leaving')
    expect(left.data).toEqual({ user_id: bob.id, name: bob.name })
  })

  it('counts a user with several connections once: join on the first, leave after the last', async () => {
    const ch = freshChannel()
    const a = await joinTracked(alice, ch)
    const b1 = await joinTracked(bob, ch)
    await a.waitFor((f) => f.type === 'presence:join' && f.data.user_id === bob.id, 'bob joining')
    const b2 = await joinTracked(bob, ch)
    expect(memberIds(b2.frames[0] as ChannelFrame)).toEqual([alice.id, bob.id])
    b1.close()
    await waitUntil(() => sessionsOf(t, ch).length === 2, 10_000, 'the first bob connection to be gone')
    // A marker: once carol's join reached alice, anything about bob before it was sent too.
    const c = await joinTracked(carol, ch)
    await a.waitFor((f) => f.type === 'presence:join' && f.data.user_id === carol.id, 'carol joining')
    expect(a.ofType('presence:join').map((f) => f.data.user_id)).toEqual([bob.id, carol.id])
    expect(a.ofType('presence:leave')).toEqual([])
    b2.close()
    await a.waitFor((f) => f.type === 'presence:leave' && f.data.user_id === bob.id, 'bob leaving')
    await c.waitFor((f) => f.type === 'presence:leave' && f.data.user_id === bob.id, 'carol told of bob leaving')
    expect(a.ofType('presence:leave')).toHaveLength(1)
  })

  it('relays typing to the other members with the sender as data, never to the sender’s connections', async () => {
    const ch = freshChannel()
    const a = await joinTracked(alice, ch)
    const b1 = await joinTracked(bob, ch)
    const b2 = await joinTracked(bob, ch)
    b1.send({ type: 'typing:start', channelId: ch })
    const typing = await a.waitFor((f) => f.type === 'typing:start', 'bob typing')
    expect(typing.channelId).toBe(ch)
    expect(typing.data).toEqual({ user_id: bob.id, name: bob.name })
    // Marker: alice's typing:stop reaching both of bob's connections comes after anything bob's own start would have.
    a.send({ type: 'typing:stop' })
    for (const b of [b1, b2]) {
      const stop = await b.waitFor((f) => f.type === 'typing:stop', 'alice stopping')
      expect(stop.data).toEqual({ user_id: alice.id, name: alice.name })
      expect(b.ofType('typing:start')).toEqual([])
    }
    expect(a.ofType('typing:stop')).toEqual([])
  })

  it('answers bad frames with an error frame and keeps the connection working', async () => {
    const ch = freshChannel()
    const a = await joinTracked(alice, ch)
    const b = await joinTracked(bob, ch)
    const bad = ['not json', JSON.stringify({ type: 'message:created' }), JSON.stringify({ type: 'typing:start', channelId: 'other' }), JSON.stringify({ type: 'typing:start', pad: 'x'.repeat(300) })]
    for (const frame of bad) a.send(frame)
    const errors = await a.waitForCount(bad.length, ['error'])
    const messages = errors.map((e) => e.data.message as string)
    expect(messages[0]).toMatch(/not JSON/)
    expect(messages[1]).toMatch(/unknown type/)
    expect(messages[2]).toMatch(/not this connection's channel/)
    expect(messages[3]).toMatch(/larger than 256 bytes/)
    expect(errors.every((e) => e.channelId === ch)).toBe(true)
    expect(a.closed).toBeUndefined()
    a.send({ type: 'typing:start', channelId: ch })
    await b.waitFor((f) => f.type === 'typing:start', 'typing after the bad frames')
  })

  it('answers frames beyond the per-second budget with an error frame', async () => {
    const ch = freshChannel()
    const a = await joinTracked(alice, ch)
    // 50 frames at 5 per second: most of them are over budget however the machine runs.
    for (let i = 0; i < 50; i++) a.send({ type: 'typing:start' })
    await a.waitFor((f) => f.type === 'error' && /more than 5 frames per second/.test(f.data.message), 'an over-budget error')
    expect(a.closed).toBeUndefined()
  })

  it('refuses org: channels to members of other orgs with 403', async () => {
    const token = streamToken({ id: 'u-org', orgId: 'org-1' })
    const refused = await ChannelClient.refusal(t.wsUrl, { token, channelId: 'org:org-2:room' })
    expect(refused.status).toBe(403)
    expect(refused.body.error).toBe('channel_forbidden')
    const own = track(await ChannelClient.joined(t.wsUrl, { token, channelId: 'org:org-1:room' }))
    expect(own.frames[0]?.type).toBe('presence:state')
  })

  it('delivers an appended event to every connection once, with its offset', async () => {
    const ch = freshChannel()
    const a = await joinTracked(alice, ch)
    const b1 = await joinTracked(bob, ch)
    const b2 = await joinTracked(bob, ch)
    const other = await joinTracked(carol, freshChannel())
    const e1 = await t.app.channelLog.append(ch, { type: 'message:created', data: { text: 'hi' } })
    const e2 = await t.app.channelLog.append(ch, { type: 'message:updated', data: { text: 'hi!' } })
    expect(e2.offset).toBeGreaterThan(e1.offset)
    for (const c of [a, b1, b2]) {
      await c.waitFor((f) => f.offset === e2.offset, 'the second event')
      const events = c.ofType('message:created', 'message:updated')
      expect(events).toEqual([
        { type: 'message:created', channelId: ch, timestamp: e1.timestamp, offset: e1.offset, data: { text: 'hi' } },
        { type: 'message:updated', channelId: ch, timestamp: e2.timestamp, offset: e2.offset, data: { text: 'hi!' } },
      ])
    }
    // Marker for the other channel: its own event comes, and only that one.
    const e3 = await t.app.channelLog.append(other.frames[0]?.channelId as string, { type: 'message:created', data: 1 })
    await other.waitFor((f) => f.offset === e3.offset, 'the other channel’s event')
    expect(other.ofType('message:created', 'message:updated')).toHaveLength(1)
  })

  it('gives a client reconnecting with since exactly the events it missed, then live ones', async () => {
    const ch = freshChannel()
    const a = await joinTracked(alice, ch)
    const seen = await t.app.channelLog.append(ch, { type: 'message:created', data: 1 })
    await a.waitFor((f) => f.offset === seen.offset, 'the first event')
    a.close()
    await waitUntil(() => sessionsOf(t, ch).length === 0, 10_000, 'alice to be gone')
    const missed = [await t.app.channelLog.append(ch, { type: 'message:created', data: 2 }), await t.app.channelLog.append(ch, { type: 'message:created', data: 3 })]
    const back = await joinTracked(alice, ch, seen.offset)
    await back.waitFor((f) => f.offset === missed[1]?.offset, 'the missed events')
    const live = await t.app.channelLog.append(ch, { type: 'message:created', data: 4 })
    await back.waitFor((f) => f.offset === live.offset, 'the live event')
    expect(back.frames.map((f) => f.type)).toEqual(['presence:state', 'message:created', 'message:created', 'message:created'])
    expect(back.ofType('message:created').map((f) => f.data)).toEqual([2, 3, 4])
    expect(await metrics(t)).toMatch(/^mc_channel_recoveries_total\{result="recovered"\} [1-9]/m)
  })

  it('recovers from the offset of presence:state when the client saw no event', async () => {
    const ch = freshChannel()
    const a = await joinTracked(alice, ch)
    const offset = a.frames[0]?.offset as number
    a.close()
    await waitUntil(() => sessionsOf(t, ch).length === 0, 10_000, 'alice to be gone')
    const missed = await t.app.channelLog.append(ch, { type: 'message:created', data: 'missed' })
    const back = await joinTracked(alice, ch, offset)
    await back.waitFor((f) => f.offset === missed.offset, 'the missed event')
    expect(back.ofType('recovery:failed')).toEqual([])
  })

  it('sends recovery:failed when the history no longer reaches back, then live events', async () => {
    const ch = freshChannel()
    const first = await t.app.channelLog.append(ch, { type: 'message:created', data: 0 })
    // CHANNEL_HISTORY_SIZE is 3: four more push the event after `first` out.
    for (let i = 1; i <= 4; i++) await t.app.channelLog.append(ch, { type: 'message:created', data: i })
    const back = await joinTracked(alice, ch, first.offset)
    const failed = await back.waitFor((f) => f.type === 'recovery:failed', 'recovery:failed')
    expect(failed.data).toEqual({ since: first.offset, reason: 'expired' })
    const live = await t.app.channelLog.append(ch, { type: 'message:created', data: 'live' })
    await back.waitFor((f) => f.offset === live.offset, 'the live event')
    expect(back.ofType('message:created').map((f) => f.data)).toEqual(['live'])
    // An offset of an earlier process (lower than any of this one) is expired too.
    const old = await joinTracked(bob, ch, 1)
    expect((await old.waitFor((f) => f.type === 'recovery:failed', 'recovery:failed')).data.reason).toBe('expired')
    expect(await metrics(t)).toMatch(/^mc_channel_recoveries_total\{result="failed"\} [2-9]/m)
  })

  it('reports connections, channels and events in /metrics', async () => {
    const ch = freshChannel()
    const a = await joinTracked(alice, ch)
    const e = await t.app.channelLog.append(ch, { type: 'message:created', data: null })
    await a.waitFor((f) => f.offset === e.offset, 'the event')
    const text = await metrics(t)
    expect(text).toMatch(/^mc_ws_connections\{endpoint="ws"\} [1-9]/m)
    expect(text).toMatch(/^mc_channels [1-9]/m)
    expect(text).toMatch(/^mc_channel_members [1-9]/m)
    expect(text).toMatch(/^mc_channel_events_total\{direction="in"\} [1-9]/m)
    expect(text).toMatch(/^mc_channel_events_total\{direction="out"\} [1-9]/m)
  })
})

describe('/ws connection limits and health', () => {
  let t: TestApp | undefined
  afterEach(async () => {
    await t?.close()
    t = undefined
  })

  it('refuses a user’s connection over CHANNEL_MAX_CONNECTIONS_PER_USER with 429, and takes one again after a close', async () => {
    t = await startTestApp({ CHANNEL_MAX_CONNECTIONS_PER_USER: '2' })
    const app = t
    const first = await join(app, alice, 'a')
    const second = await join(app, alice, 'b')
    const refused = await ChannelClient.refusal(app.wsUrl, { token: streamToken(alice), channelId: 'c' })
    expect(refused.status).toBe(429)
    expect(refused.body).toEqual({ error: 'too_many_connections', message: 'at most 2 /ws connections per user' })
    const other = await join(app, bob, 'a')
    first.close()
    await waitUntil(() => [...app.app.channelSessions()].length === 2, 10_000, 'the first connection to be gone')
    const again = await join(app, alice, 'c')
    for (const c of [second, other, again]) c.close()
  })

  it('shares MAX_CONNECTIONS with /time-series: 503 for either endpoint once reached', async () => {
    t = await startTestApp({ MAX_CONNECTIONS: '2' })
    const ts = await TestClient.authenticated(t.wsUrl, streamToken(carol))
    const ws = await join(t, alice, 'a')
    const refused = await ChannelClient.refusal(t.wsUrl, { token: streamToken(bob), channelId: 'a' })
    expect(refused.status).toBe(503)
    expect(refused.body.error).toBe('too_many_connections')
    await expect(TestClient.connect(`${t.wsUrl}/time-series`)).rejects.toThrow('HTTP 503')
    ts.close()
    ws.close()
  })

  it('closes with 4401 once the token expires', async () => {
    t = await startTestApp({ JWT_CLOCK_SKEW_S: '0' })
    // Long enough to be valid when the upgrade is checked on a busy machine.
    const c = await ChannelClient.joined(t.wsUrl, { token: streamToken(alice, 4), channelId: 'a' })
    expect(await c.waitClosed()).toEqual({ code: 4401, reason: 'token expired' })
    expect(await metrics(t)).toMatch(/^mc_channel_disconnects_total\{reason="token_expired"\} 1$/m)
  })

  it('terminates a client that does not answer pings, and keeps one that does', async () => {
    t = await startTestApp({ WS_PING_INTERVAL_MS: '200' })
    const live = await join(t, alice, 'a')
    const dead = await ChannelClient.joined(t.wsUrl, { token: streamToken(bob), channelId: 'a', autoPong: false })
    const closed = await dead.waitClosed()
    // Terminated without a close frame.
    expect(closed.code).toBe(1006)
    expect(await metrics(t)).toMatch(/^mc_channel_disconnects_total\{reason="ping_timeout"\} 1$/m)
    await live.waitFor((f) => f.type === 'presence:leave' && f.data.user_id === bob.id, 'bob leaving')
    expect(live.closed).toBeUndefined()
    expect([...t.app.channelSessions()].map((s) => s.principal.member.user_id)).toEqual([alice.id])
    live.close()
  })

  it('cuts off a client that stops reading with 1008, its unsent data bounded', async () => {
    const maxBuffered = 64 * 1024
    const eventBytes = 16 * 1024
    t = await startTestApp({ CHANNEL_MAX_BUFFERED_BYTES: String(maxBuffered), CHANNEL_EVENT_MAX_BYTES: String(eventBytes * 2) })
    const app = t
    const slow = await join(app, alice, 'a')
    const reader = await join(app, bob, 'a')
    slow.pause()
    const payload = 'x'.repeat(eventBytes)
    const isSlowGone = () => ![...app.app.channelSessions()].some((s) => s.principal.member.user_id === alice.id)
    // Kernel buffers take some megabytes before the gateway holds anything: keep publishing until it cuts the client off.
    // One event per turn of the event loop, so the reader keeps up and only the paused client falls behind.
    let appended = 0
    while (!isSlowGone()) {
      await app.app.channelLog.append('a', { type: 'message:created', data: payload })
      appended++
      if (appended > 2_000) throw new Error('the slow consumer was never cut off')
      await new Promise((r) => setImmediate(r))
    }
    const serverSide = () => [...app.app.websocketServer.clients].map((ws) => ws.bufferedAmount)
    const bound = maxBuffered + eventBytes * 2
    const before = Math.max(...serverSide())
    expect(before).toBeLessThanOrEqual(bound)
    for (let i = 0; i < 50; i++) {
      await app.app.channelLog.append('a', { type: 'message:created', data: payload })
      await new Promise((r) => setImmediate(r))
    }
    // Nothing more is queued for the cut-off client, however much is published.
    expect(Math.max(...serverSide())).toBeLessThanOrEqual(before)
    expect(await metrics(app)).toMatch(/^mc_channel_disconnects_total\{reason="slow_consumer"\} 1$/m)
    // Reading again, it finds the close frame after what was sent before the cut.
    slow.resume()
    expect(await slow.waitClosed(30_000)).toEqual({ code: 1008, reason: 'slow consumer' })
    // The reader got everything.
    await reader.waitForCount(appended + 50, ['message:created'], 30_000)
    reader.close()
  })

  it('closes a deleted user’s connections with 4403; others go on', async () => {
    const ADMIN_PASSWORD = 'admin-password-for-tests'
    // A database of its own: the shared one has its admin already, with another password.
    const testDb = await embeddedEngine.create()
    onTestFinished(() => testDb.drop())
    // The periodic check is far off: only the check made by the deletion can end the session.
    t = await startTestApp({ ...FAST_PASSWORD_HASHING, ADMIN_PASSWORD, TOKEN_REVOCATION_CHECK_MS: '3600000' }, { testDb })
    const api = new ApiClient(t.url)
    const admin = (await api.post('/api/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD } })).json.token
    const created = await api.post('/api/v1/users', {
      token: admin,
      body: { username: 'ws-doomed', password: 'correct horse', email: 'ws-doomed@example.com', role: 'viewer', org: 'Acme' },
    })
    expect(created.status, created.text).toBe(201)
    const access = (await api.post('/api/v1/auth/login', { body: { username: 'ws-doomed', password: 'correct horse' } })).json.token
    const doomed = await ChannelClient.joined(t.wsUrl, { token: access, channelId: 'a' })
    expect(doomed.frames[0]?.data.members).toEqual([{ user_id: created.json.id, name: 'ws-doomed' }])
    const other = await join(t, alice, 'a')
    expect((await api.delete(`/api/v1/users/${created.json.id}`, { token: admin })).status).toBe(204)
    expect(await doomed.waitClosed()).toEqual({ code: 4403, reason: 'user deleted' })
    await other.waitFor((f) => f.type === 'presence:leave' && f.data.user_id === created.json.id, 'the deleted user leaving')
    expect(other.closed).toBeUndefined()
    expect(await metrics(t)).toMatch(/^mc_channel_disconnects_total\{reason="revoked"\} 1$/m)
    other.close()
  })

  it('closes channel connections with 1001 on shutdown', async () => {
    t = await startTestApp()
    const c = await join(t, alice, 'a')
    const app = t
    t = undefined
    await app.close()
    expect((await c.waitClosed()).code).toBe(1001)
  })
})
