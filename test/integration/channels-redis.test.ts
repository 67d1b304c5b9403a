/**
 * Redis publishers of the Go WebSocket server (docs/API.md section 9): `PUBLISH channel:<id>
 * <json>` reaches `/ws` members as a POST would, once per member however many instances
 * run (one holds the lease and subscribes), survives the subscriber's shutdown and Redis
 * being down at start, and drops bad messages with a count.
 *
 * Isolation: the gateways here use Redis database 11, so their lease is theirs alone (the
 * lease key lives in the selected database; pub/sub does not, so every channel id is unique
 * per test). The bridge-level cases use their own lease keys; the Redis-down case runs its
 * own redis-server.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { join as joinPath } from 'node:path'
import { Writable } from 'node:stream'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { RedisBridge } from '../../src/channels/redis-bridge.js'
import { ChannelLogError, type ChannelLog, type ChannelLogStatus, type EventDraft, type LoggedEvent } from '../../src/channels/types.js'
import { createMetrics } from '../../src/observability/metrics.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { ChannelClient, streamToken } from '../helpers/channels.js'
import { postgresEngine, postgresAvailable, type TestDb } from '../helpers/db.js'
import { natsReachable, natsUrlForTests, uniqueName } from '../helpers/nats.js'
import { requireService, tcpReachable } from '../helpers/services.js'
import { waitFor, waitUntil } from '../helpers/wait.js'

const redisUp = await requireService('Redis at 127.0.0.1:6379', await tcpReachable('127.0.0.1', 6379))
const REDIS_URL = 'redis://127.0.0.1:6379/11'
/** Short, so a handover takes well under a second (the lease lives 3 × this). */
const RETRY_MS = 200
const EVENT_MAX_BYTES = 1024
const ENV = { REDIS_URL, REDIS_LEADER_RETRY_MS: String(RETRY_MS), CHANNEL_EVENT_MAX_BYTES: String(EVENT_MAX_BYTES) }

const channelName = (what: string) => uniqueName(what).replaceAll('_', '-')
const messages = (c: ChannelClient) => c.ofType('message:created')

async function readyz(app: TestApp): Promise<{ status: number; body: any }> {
  const res = await fetch(`${app.url}/readyz`)
  return { status: res.status, body: await res.json() }
}

const redisRole = (app: TestApp) => app.app.channelRedisStatus?.()

function waitSubscriber(app: TestApp, what = 'the instance to subscribe to Redis'): Promise<unknown> {
  return waitFor(() => redisRole(app), (s) => s?.status === 'up' && s.role === 'subscriber', what, 20_000)
}

/** mc_redis_events_total by result, from /metrics. */
async function redisCounts(app: TestApp): Promise<Record<string, number>> {
  const text = await (await fetch(`${app.url}/metrics`)).text()
  const counts: Record<string, number> = {}
  for (const m of text.matchAll(/^mc_redis_events_total\{result="([a-z_]+)"\} (\d+)$/gm)) counts[m[1]!] = Number(m[2])
  return counts
}

const joinChannel = (app: TestApp, channelId: string, name: string, since?: number) =>
  ChannelClient.joined(app.wsUrl, { token: streamToken({ id: uniqueName(name), name }), channelId, ...(since !== undefined ? { since } : {}) })

describe.runIf(redisUp)('Redis PUBLISH channel:<id> on one gateway', () => {
  let gw: TestApp
  let publisher: Redis
  const clients: ChannelClient[] = []
  const track = (c: ChannelClient) => (clients.push(c), c)

  beforeAll(async () => {
    publisher = new Redis(REDIS_URL)
    gw = await startTestApp(ENV)
    await waitSubscriber(gw)
  })
  afterEach(() => {
    for (const c of clients.splice(0)) c.close()
  })
  afterAll(async () => {
    await gw?.close()
    publisher?.disconnect()
  })

  it("delivers the Go server README's message as a POST would, and keeps it in the history", async () => {
    const channel = channelName('room')
    const member = track(await joinChannel(gw, channel, 'alice'))
    const before = member.frames[0]!.offset!
    // The README's example, for this test's channel.
    const readme = { type: 'message:created', channelId: channel, timestamp: 1234567890, data: { id: 'msg_1', content: 'Hello world', authorId: 'user_1', authorName: 'John Doe' } }
    expect(await publisher.publish(`channel:${channel}`, JSON.stringify(readme))).toBeGreaterThanOrEqual(1)
    // Without channelId and timestamp: both filled in.
    const sentAt = Date.now()
    await publisher.publish(`channel:${channel}`, JSON.stringify({ type: 'message:updated', data: { id: 'msg_1' } }))
    const got = await member.waitForCount(1, ['message:created'])
    const updated = await member.waitFor((f) => f.type === 'message:updated', 'the second event')
    expect(Object.keys(got[0]!)).toEqual(['type', 'channelId', 'timestamp', 'offset', 'data'])
    expect(got[0]).toEqual({ type: 'message:created', channelId: channel, timestamp: 1234567890, offset: expect.any(Number), data: readme.data })
    expect(updated).toEqual({ type: 'message:updated', channelId: channel, timestamp: expect.any(Number), offset: expect.any(Number), data: { id: 'msg_1' } })
    expect(updated.timestamp).toBeGreaterThanOrEqual(sentAt - 1000)
    expect(updated.offset!).toBeGreaterThan(got[0]!.offset!)

    // A client that comes back with since= gets both from the history.
    const back = track(await joinChannel(gw, channel, 'bob', before))
    await back.waitFor((f) => f.type === 'message:updated', 'the recovered events')
    expect(back.frames.filter((f) => f.offset !== undefined && f.type.startsWith('message:'))).toEqual([got[0], updated])
    expect(await redisCounts(gw)).toMatchObject({ stored: expect.any(Number) })
  })

  it('drops non-JSON, invalid, mis-addressed and too large messages with a count, and stays up', async () => {
    const channel = channelName('room')
    const member = track(await joinChannel(gw, channel, 'alice'))
    const before = await redisCounts(gw)
    const to = `channel:${channel}`
    await publisher.publish(to, 'Hello from my new device!')
    await publisher.publish(to, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))
    await publisher.publish(to, '{"type":"presence:join","data":{"user_id":"forged"}}')
    await publisher.publish(to, '{"data":{"no":"type"}}')
    await publisher.publish(to, JSON.stringify({ type: 'message:created', channelId: 'another-channel' }))
    await publisher.publish(`channel:${channel} with spaces`, '{"type":"message:created"}')
    await publisher.publish('channel:', '{"type":"message:created"}')
    await publisher.publish(to, JSON.stringify({ type: 'message:created', data: 'x'.repeat(EVENT_MAX_BYTES) }))
    // Within the limit as published, over it once channelId, timestamp and offset are added: the log refuses it.
    const atLimit = JSON.stringify({ type: 'message:created', data: 'y'.repeat(EVENT_MAX_BYTES - 40) })
    expect(Buffer.byteLength(atLimit)).toBeLessThanOrEqual(EVENT_MAX_BYTES)
    await publisher.publish(to, atLimit)
    await publisher.publish(to, JSON.stringify({ type: 'message:created', data: { n: 'valid' } }))

    const first = await member.waitFor((f) => f.type !== 'presence:state', 'the first event after the join')
    expect(first).toMatchObject({ type: 'message:created', data: { n: 'valid' } })
    const counted = await waitFor(
      () => redisCounts(gw),
      (c) => (c.stored ?? 0) - (before.stored ?? 0) >= 1 && (c.refused ?? 0) - (before.refused ?? 0) >= 1,
      'the counts of the valid and the refused event',
    )
    const delta = (k: string) => (counted[k] ?? 0) - (before[k] ?? 0)
    expect({ not_json: delta('not_json'), invalid: delta('invalid'), too_large: delta('too_large'), refused: delta('refused') }).toEqual({
      not_json: 2,
      invalid: 5,
      too_large: 1,
      refused: 1,
    })
    // Nothing but the valid event reached the member, and the gateway still answers.
    expect(member.frames.slice(1)).toEqual([first])
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200)
  })

  it('shows the bridge in /readyz', async () => {
    const { status, body } = await readyz(gw)
    expect(status).toBe(200)
    expect(body.components.redis).toEqual({ status: 'up', role: 'subscriber' })
  })
})

describe.runIf(redisUp)('without REDIS_URL', () => {
  it('creates no Redis client and shows no redis component', async () => {
    const gw = await startTestApp()
    try {
      expect(gw.app.hasDecorator('channelRedisStatus')).toBe(false)
      const { status, body } = await readyz(gw)
      expect(status).toBe(200)
      expect(Object.keys(body.components)).not.toContain('redis')
      expect(await gw.app.metrics.registry.getSingleMetricAsString('mc_redis_events_total')).not.toMatch(/result=/)
    } finally {
      await gw.close()
    }
  })
})

const natsUp = redisUp && (await requireService(`NATS at ${natsUrlForTests}`, await natsReachable()))
const pgUp = natsUp && (await postgresAvailable())

describe.runIf(pgUp)('Redis PUBLISH with two gateways sharing NATS and Postgres', () => {
  let testDb: TestDb
  let a: TestApp
  let b: TestApp
  let publisher: Redis
  const closed = new Set<TestApp>()
  const clients: ChannelClient[] = []
  const track = (c: ChannelClient) => (clients.push(c), c)

  beforeAll(async () => {
    testDb = await postgresEngine.create()
    const env = { ...ENV, NATS_URL: natsUrlForTests, DATABASE_URL: testDb.url! }
    publisher = new Redis(REDIS_URL)
    a = await startTestApp(env)
    b = await startTestApp(env)
    await waitUntil(() => a.app.channelsStatus().status === 'up' && b.app.channelsStatus().status === 'up', 30_000, 'both hubs live')
    await waitFor(
      () => [redisRole(a), redisRole(b)].map((s) => `${s?.status}/${s?.role}`).sort(),
      (roles) => roles.join() === 'up/standby,up/subscriber',
      'one subscriber and one standby',
      20_000,
    )
  })
  afterEach(() => {
    for (const c of clients.splice(0)) c.close()
  })
  afterAll(async () => {
    for (const gw of [a, b]) if (gw !== undefined && !closed.has(gw)) await gw.close()
    publisher?.disconnect()
    await testDb?.drop()
  })

  it('delivers each published event once to each member on either instance, in offset order', async () => {
    const channel = channelName('room')
    const members = [track(await joinChannel(a, channel, 'alice')), track(await joinChannel(a, channel, 'carol')), track(await joinChannel(b, channel, 'bob'))]
    const N = 25
    for (let n = 1; n <= N; n++) await publisher.publish(`channel:${channel}`, JSON.stringify({ type: 'message:created', data: { n } }))
    for (const m of members) await m.waitForCount(N, ['message:created'])
    for (const m of members) {
      const got = messages(m)
      expect(got.map((f) => f.data.n)).toEqual(Array.from({ length: N }, (_, i) => i + 1))
      const offsets = got.map((f) => f.offset!)
      expect(new Set(offsets).size).toBe(N)
      expect([...offsets].sort((x, y) => x - y)).toEqual(offsets)
    }
    // The same frames everywhere: one entry in the log per event, not one per instance.
    expect(messages(members[2]!)).toEqual(messages(members[0]!))
    // A marker after them: had any event entered the log twice, the copy would have come before it.
    await publisher.publish(`channel:${channel}`, JSON.stringify({ type: 'message:created', data: { n: 'marker' } }))
    for (const m of members) {
      await m.waitFor((f) => f.type === 'message:created' && f.data.n === 'marker', 'the marker')
      expect(messages(m)).toHaveLength(N + 1)
    }
    // From just before the first event: the machine's NATS keeps one CHANNELS stream for every
    // test, and once its oldest messages have aged out, since=0 is (rightly) `expired`.
    const first = messages(members[0]!)[0]!.offset!
    const history = await b.app.channelLog.readSince(channel, first - 1)
    expect(history.ok && history.events.map((e) => e.data)).toEqual([...Array.from({ length: N }, (_, i) => ({ n: i + 1 })), { n: 'marker' }])
  })

  it('hands over when the subscriber shuts down: the other takes the lease and delivers', async () => {
    const [subscriber, standby] = redisRole(a)?.role === 'subscriber' ? [a, b] : [b, a]
    expect(redisRole(standby)).toEqual({ status: 'up', role: 'standby' })
    const channel = channelName('room')
    const member = track(await joinChannel(standby, channel, 'dave'))
    await subscriber.close()
    closed.add(subscriber)
    await waitSubscriber(standby, 'the standby to take over')
    expect((await readyz(standby)).body.components.redis).toEqual({ status: 'up', role: 'subscriber' })
    await publisher.publish(`channel:${channel}`, JSON.stringify({ type: 'message:created', data: { after: 'handover' } }))
    const got = await member.waitFor((f) => f.type === 'message:created', 'the event after the handover')
    expect(got.data).toEqual({ after: 'handover' })
  })
})

/** A log that records what it stores and answers as told. */
class FakeLog implements Pick<ChannelLog, 'append' | 'status'> {
  readonly stored: Array<{ channelId: string; draft: EventDraft }> = []
  answer: 'ok' | 'refused' | 'unavailable' = 'ok'
  async append(channelId: string, draft: EventDraft): Promise<LoggedEvent> {
    if (this.answer !== 'ok') throw new ChannelLogError(this.answer, `told to be ${this.answer}`)
    this.stored.push({ channelId, draft })
    return { type: draft.type, channelId, timestamp: Date.now(), data: draft.data, offset: this.stored.length, frame: '' }
  }
  status(): ChannelLogStatus {
    return { status: 'up', kind: 'memory' }
  }
  of(channelId: string) {
    return this.stored.filter((s) => s.channelId === channelId).map((s) => s.draft.data)
  }
}

type Line = { level: string; msg: string; obj: object }
function recordingLog(lines: Line[]) {
  const at = (level: string) => (obj: object, msg: string) => lines.push({ level, msg, obj })
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}

describe.runIf(redisUp)('the bridge and its lease', () => {
  let admin: Redis
  const bridges: RedisBridge[] = []
  const make = (leaseKey: string, log = new FakeLog(), lines: Line[] = []) => {
    const metrics = createMetrics()
    const bridge = new RedisBridge({ url: REDIS_URL, leaderRetryMs: RETRY_MS, eventMaxBytes: EVENT_MAX_BYTES, channelLog: log, metrics, log: recordingLog(lines), leaseKey })
    bridges.push(bridge)
    bridge.start()
    return { bridge, log, metrics, lines }
  }
  const role = (bridge: RedisBridge, want: 'subscriber' | 'standby', what: string) =>
    waitFor(() => bridge.status(), (s) => s.status === 'up' && s.role === want, what, 20_000)

  beforeAll(() => {
    admin = new Redis(REDIS_URL)
  })
  afterEach(async () => {
    for (const b of bridges.splice(0)) await b.close()
  })
  afterAll(() => admin?.disconnect())

  it('waits while another instance holds the lease, and takes it once that one expires', async () => {
    const key = uniqueName('lease')
    await admin.set(key, 'crashed-instance', 'PX', 1500)
    const { bridge } = make(key)
    await waitUntil(() => bridge.status().status === 'up', 10_000, 'connected')
    expect(bridge.status().role).toBe('standby')
    await role(bridge, 'subscriber', 'the lease after the holder expired')
    expect(await admin.get(key)).toBe(bridge.instanceId)
    const ttl = await admin.pttl(key)
    expect(ttl).toBeGreaterThan(0)
    expect(ttl).toBeLessThanOrEqual(3 * RETRY_MS)
  })

  it('stops delivering at once when it finds another holder, and hands the lease back on close', async () => {
    const key = uniqueName('lease')
    const { bridge, log } = make(key)
    await role(bridge, 'subscriber', 'the lease')
    const channel = channelName('room')
    const send = (n: string) => admin.publish(`channel:${channel}`, JSON.stringify({ type: 'message:created', data: { n } }))
    await send('while holding')
    await waitUntil(() => log.of(channel).length === 1, 10_000, 'the first event stored')
    await admin.set(key, 'another-instance', 'PX', 60_000)
    await role(bridge, 'standby', 'stepping down')
    await send('while standby')
    await admin.del(key)
    await role(bridge, 'subscriber', 'the lease again')
    await send('marker')
    await waitUntil(() => log.of(channel).length >= 2, 10_000, 'the marker stored')
    expect(log.of(channel)).toEqual([{ n: 'while holding' }, { n: 'marker' }])
    await bridge.close()
    expect(await admin.get(key)).toBeNull()
  })

  it('subscribes again on a new connection when its subscription connection is killed', async () => {
    const { bridge, log } = make(uniqueName('lease'))
    await role(bridge, 'subscriber', 'the lease')
    const subscriberConnection = async () => {
      const list = String(await admin.call('CLIENT', 'LIST'))
      const line = list.split('\n').find((l) => l.includes(`name=mc-gateway:subscriber:${bridge.instanceId}`))
      return line === undefined ? undefined : /\bid=(\d+)/.exec(line)?.[1]
    }
    const killed = await subscriberConnection()
    expect(killed).toBeDefined()
    await admin.call('CLIENT', 'KILL', 'ID', killed!)
    await waitFor(subscriberConnection, (id) => id !== undefined && id !== killed, 'a new subscription connection')
    await role(bridge, 'subscriber', 'subscribed again')
    const channel = channelName('room')
    await admin.publish(`channel:${channel}`, JSON.stringify({ type: 'message:created', data: { n: 'after the kill' } }))
    await waitUntil(() => log.of(channel).length === 1, 10_000, 'the event stored')
    expect(log.of(channel)).toEqual([{ n: 'after the kill' }])
  })

  it('counts refused and unavailable events, with one warning per outage of the log', async () => {
    const { bridge, log, metrics, lines } = make(uniqueName('lease'))
    await role(bridge, 'subscriber', 'the lease')
    const channel = channelName('room')
    const send = (n: number) => admin.publish(`channel:${channel}`, JSON.stringify({ type: 'message:created', data: { n } }))
    const count = async (result: string) => (await metrics.redisEvents.get()).values.find((v) => v.labels.result === result)?.value ?? 0
    log.answer = 'refused'
    await send(1)
    await waitUntil(async () => (await count('refused')) === 1, 10_000, 'refused counted')
    log.answer = 'unavailable'
    for (let n = 2; n <= 4; n++) await send(n)
    await waitUntil(async () => (await count('unavailable')) === 3, 10_000, 'unavailable counted')
    log.answer = 'ok'
    await send(5)
    await waitUntil(async () => (await count('stored')) === 1, 10_000, 'stored counted')
    expect(log.of(channel)).toEqual([{ n: 5 }])
    expect(lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([expect.stringContaining('Redis event lost')])
    expect(lines.find((l) => l.msg === 'Redis events are stored again')?.obj).toEqual({ lost: 3 })
  })

  it('holds at most maxInFlight events while the log is slow, counting the rest as overloaded, once warned', async () => {
    // A log that takes each append but answers only when told: slow, not down.
    const held: Array<() => void> = []
    const slow = new FakeLog()
    const append = slow.append.bind(slow)
    slow.append = (channelId, draft) => new Promise((resolve, reject) => held.push(() => append(channelId, draft).then(resolve, reject)))
    const lines: Line[] = []
    const metrics = createMetrics()
    const bridge = new RedisBridge({ url: REDIS_URL, leaderRetryMs: RETRY_MS, eventMaxBytes: EVENT_MAX_BYTES, channelLog: slow, metrics, log: recordingLog(lines), leaseKey: uniqueName('lease'), maxInFlight: 3 })
    bridges.push(bridge)
    bridge.start()
    await role(bridge, 'subscriber', 'the lease')
    const channel = channelName('room')
    const count = async (result: string) => (await metrics.redisEvents.get()).values.find((v) => v.labels.result === result)?.value ?? 0
    for (let n = 1; n <= 5; n++) await admin.publish(`channel:${channel}`, JSON.stringify({ type: 'message:created', data: { n } }))
    await waitUntil(async () => (await count('overloaded')) === 2, 10_000, 'two events past the cap counted')
    expect(held).toHaveLength(3)
    expect(lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([expect.stringContaining('storing too many')])
    for (const release of held.splice(0)) release()
    await waitUntil(async () => (await count('stored')) === 3, 10_000, 'the held three stored')
    await waitUntil(() => lines.some((l) => l.msg.includes('caught up')), 10_000, 'the catch-up logged')
    expect(lines.find((l) => l.msg.includes('caught up'))?.obj).toEqual({ lost: 2 })
    await admin.publish(`channel:${channel}`, JSON.stringify({ type: 'message:created', data: { n: 6 } }))
    await waitUntil(() => held.length === 1, 10_000, 'the next event taken again')
    held.splice(0)[0]!()
    await waitUntil(() => slow.of(channel).length === 4, 10_000, 'the sixth stored')
    expect(slow.of(channel)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }, { n: 6 }])
  })
})

/** A port nothing listens on right now. */
async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

const hasRedisServer = (process.env.PATH ?? '').split(':').some((dir) => dir !== '' && existsSync(joinPath(dir, 'redis-server')))
const ownRedis = redisUp && (await requireService('the redis-server program', hasRedisServer))

describe.runIf(ownRedis)('Redis down at start, and restarting', () => {
  let gw: TestApp | undefined
  let redis: ChildProcess | undefined
  const clients: ChannelClient[] = []
  afterAll(async () => {
    for (const c of clients) c.close()
    await gw?.close()
    if (redis?.exitCode === null) {
      redis.kill('SIGKILL')
      await new Promise((r) => redis!.once('exit', r))
    }
  })

  it('starts, stays ready, warns once per outage, and takes events whenever Redis is there', async () => {
    const port = await freePort()
    // Until Redis runs: a listener that counts the gateway's attempts and hangs up on each.
    const sockets = new Set<Socket>()
    let attempts = 0
    const refuser = createServer((s) => {
      attempts++
      sockets.add(s)
      s.destroy()
    })
    await new Promise<void>((resolve) => refuser.listen(port, '127.0.0.1', resolve))
    const lines: Array<{ level: number; msg: string; component?: string }> = []
    const stream = new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split('\n')) if (line !== '') lines.push(JSON.parse(line))
        done()
      },
    })
    gw = await startTestApp({ ...ENV, REDIS_URL: `redis://127.0.0.1:${port}` }, { logger: { level: 'info', stream } })
    // Several attempts of both connections, and still one warning.
    await waitUntil(() => attempts >= 6, 30_000, 'the gateway retrying')
    const down = await readyz(gw)
    expect(down.status).toBe(200)
    expect(down.body.components.redis).toEqual({ status: 'down', role: 'standby', reason: 'unreachable' })
    await new Promise((resolve) => refuser.close(resolve))

    const startRedis = () => {
      redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
      redis.once('error', (err) => console.error(`redis-server did not start: ${err.message}`))
    }
    startRedis()
    await waitSubscriber(gw, 'the gateway to subscribe once Redis runs')
    const channel = channelName('room')
    const member = await ChannelClient.joined(gw.wsUrl, { token: streamToken({ id: uniqueName('alice') }), channelId: channel })
    clients.push(member)
    const publish = async (data: object) => {
      const publisher = new Redis(`redis://127.0.0.1:${port}`)
      try {
        expect(await publisher.publish(`channel:${channel}`, JSON.stringify({ type: 'message:created', data }))).toBe(1)
      } finally {
        publisher.disconnect()
      }
    }
    await publish({ late: true })
    expect((await member.waitFor((f) => f.type === 'message:created', 'the event')).data).toEqual({ late: true })
    const mine = () => lines.filter((l) => l.component === 'channel-redis' && l.level >= 30)
    expect(mine().filter((l) => l.level === 40).map((l) => l.msg)).toEqual([expect.stringContaining('Redis unreachable')])
    expect(mine().filter((l) => l.msg === 'Redis reachable again')).toHaveLength(1)

    // Redis restarting (its lease and subscriptions gone with it): subscribed again once it is back.
    const running = redis!
    running.kill('SIGKILL')
    await new Promise((r) => running.once('exit', r))
    await waitFor(() => redisRole(gw!), (s) => s?.status === 'down', 'the gateway to see Redis gone')
    expect((await readyz(gw)).status).toBe(200)
    startRedis()
    await waitSubscriber(gw, 'the gateway to subscribe again after the restart')
    await publish({ again: true })
    const again = await member.waitFor((f) => f.type === 'message:created' && f.data.again === true, 'the event after the restart')
    expect(messages(member)).toEqual([expect.objectContaining({ data: { late: true } }), again])
    expect(mine().filter((l) => l.level === 40)).toHaveLength(2)
    expect(mine().filter((l) => l.msg === 'Redis reachable again')).toHaveLength(2)
  })
})
