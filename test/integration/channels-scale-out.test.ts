/**
 * Two gateway instances on different ports sharing the machine's NATS (docs/API.md
 * section 9): an event published on one reaches the clients of both, each once; presence
 * is the same whichever instance a client lands on; the members of a killed instance (a
 * gateway process, SIGKILLed) leave within the presence TTL; a client that comes back on
 * the other instance with `since` gets exactly the events it missed, then live ones.
 * Channel ids are unique per test: the stream and the bucket are shared with whatever
 * else uses this NATS.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import { Kvm } from '@nats-io/kv'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { PRESENCE_BUCKET } from '../../src/channels/types.js'
import { loadConfig } from '../../src/config.js'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { TEST_SECRET, startTestApp, type TestApp } from '../helpers/app.js'
import { ChannelClient, streamToken, type ChannelFrame } from '../helpers/channels.js'
import { adminToken } from '../helpers/mqtt.js'
import { natsReachable, natsUrlForTests, uniqueName, withJsm } from '../helpers/nats.js'
import { startGatewayProcess, stopLeftoverPostgres, type GatewayProcess } from '../helpers/process.js'
import { requireService } from '../helpers/services.js'
import { waitUntil } from '../helpers/wait.js'

const machineNats = await requireService(`NATS at ${natsUrlForTests}`, await natsReachable())

/** Short, so a killed instance's members leave within a test; every instance here uses it (renewals come at a third of it). */
const PRESENCE_TTL_MS = 3_000
const ADMIN_PASSWORD = 'admin-password-for-scale-out'
const ENV = {
  ...FAST_PASSWORD_HASHING,
  ADMIN_PASSWORD,
  NATS_URL: natsUrlForTests,
  CHANNEL_PRESENCE_TTL_MS: String(PRESENCE_TTL_MS),
}

type User = { id: string; name: string }
const user = (name: string): User => ({ id: uniqueName(name), name })

const joinChannel = (wsUrl: string, u: User, channelId: string, since?: number) =>
  ChannelClient.joined(wsUrl, { token: streamToken(u), channelId, ...(since !== undefined ? { since } : {}) })

const messages = (c: ChannelClient) => c.ofType('message:created')
const memberIds = (f: ChannelFrame) => (f.data.members as Array<{ user_id: string }>).map((m) => m.user_id).sort()

describe.runIf(machineNats)('channels scaled out over NATS: two instances', () => {
  let a: TestApp
  let b: TestApp
  let token: string
  const clients: ChannelClient[] = []
  const track = (c: ChannelClient) => (clients.push(c), c)

  beforeAll(async () => {
    // The bucket may be made here first: with the gateway's default TTL, not this file's short one,
    // so its max age is what other users of this NATS expect.
    await withJsm(natsUrlForTests, async (_jsm, nc) => {
      const defaultTtl = loadConfig({ JWT_SECRET: TEST_SECRET }).channels.presenceTtlMs
      await new Kvm(nc).create(PRESENCE_BUCKET, { ttl: defaultTtl, history: 1 })
    })
    a = await startTestApp(ENV)
    b = await startTestApp(ENV)
    await waitUntil(() => a.app.channelsStatus().status === 'up' && b.app.channelsStatus().status === 'up', 30_000, 'both hubs live')
    token = await adminToken(new ApiClient(b.url), ADMIN_PASSWORD)
  })
  afterEach(() => {
    for (const c of clients.splice(0)) c.close()
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
  })

  it('delivers an event published on either instance (log, HTTP, raw NATS) to the clients of both, once each', async () => {
    const channel = uniqueName('room')
    const onA = track(await joinChannel(a.wsUrl, user('alice'), channel))
    const onB = track(await joinChannel(b.wsUrl, user('bob'), channel))
    // One user on both instances: one connection each, each gets every event.
    const carol = user('carol')
    const carolA = track(await joinChannel(a.wsUrl, carol, channel))
    const carolB = track(await joinChannel(b.wsUrl, carol, channel))

    await a.app.channelLog.append(channel, { type: 'message:created', data: { n: 1 } })
    const res = await new ApiClient(b.url).post(`/api/v1/channels/${channel}/events`, { token, body: { type: 'message:created', data: { n: 2 } } })
    expect(res.status, res.text).toBe(202)
    await withJsm(natsUrlForTests, async (_jsm, nc) => {
      nc.publish(`channel.${channel}`, JSON.stringify({ type: 'message:created', data: { n: 3 } }))
      await nc.flush()
    })
    // A last event after the others: once it is in, any duplicate of those would be too (one ordered stream).
    await b.app.channelLog.append(channel, { type: 'message:created', data: { n: 4 } })
    for (const c of [onA, onB, carolA, carolB]) {
      await c.waitFor((f) => f.type === 'message:created' && f.data.n === 4, 'the last event')
      expect(messages(c).map((f) => f.data.n).sort()).toEqual([1, 2, 3, 4])
    }
    // The same frames (offset, timestamp) on both instances.
    expect(messages(onA)).toEqual(messages(onB))
    const offsets = messages(onA).map((f) => f.offset!)
    expect([...offsets].sort((x, y) => x - y)).toEqual(offsets)
    expect(new Set(offsets).size).toBe(4)
  })

  it('shares presence: the state is complete on either instance, joins and leaves cross over', async () => {
    const channel = uniqueName('room')
    const alice = user('alice')
    const bob = user('bob')
    const onA = track(await joinChannel(a.wsUrl, alice, channel))
    // B learns of alice through the bucket; a client joining B must see her in its first frame.
    const onB = track(await joinWhenSeen(b, bob, channel, [alice.id, bob.id]))
    expect(memberIds(onB.frames[0]!)).toEqual([alice.id, bob.id].sort())
    const joined = await onA.waitFor((f) => f.type === 'presence:join' && f.data.user_id === bob.id, 'bob joining, seen on a')
    expect(joined.data).toEqual({ user_id: bob.id, name: bob.name })
    // A second connection of bob on A: no second join.
    const bobAgain = track(await joinChannel(a.wsUrl, bob, channel))
    onB.close()
    // Bob is still on A: no leave yet; then his last connection goes.
    bobAgain.close()
    const left = await onA.waitFor((f) => f.type === 'presence:leave' && f.data.user_id === bob.id, 'bob leaving, seen on a')
    expect(left.data).toEqual({ user_id: bob.id, name: bob.name })
    expect(onA.ofType('presence:join').filter((f) => f.data.user_id === bob.id)).toHaveLength(1)
  })

  it("lets a client that comes back on the other instance with since receive exactly the events it missed, then live ones", async () => {
    const channel = uniqueName('room')
    const alice = user('alice')
    const first = track(await joinChannel(a.wsUrl, alice, channel))
    const watcher = track(await joinChannel(b.wsUrl, user('watcher'), channel))
    for (let n = 1; n <= 3; n++) await a.app.channelLog.append(channel, { type: 'message:created', data: { n } })
    await first.waitForCount(3, ['message:created'])
    const lastSeen = messages(first).at(-1)!.offset!
    first.close()
    await first.waitClosed()
    for (let n = 4; n <= 8; n++) await b.app.channelLog.append(channel, { type: 'message:created', data: { n } })
    await watcher.waitForCount(8, ['message:created'])

    const back = track(await joinChannel(b.wsUrl, alice, channel, lastSeen))
    await back.waitForCount(5, ['message:created'])
    await a.app.channelLog.append(channel, { type: 'message:created', data: { n: 9 } })
    await back.waitFor((f) => f.type === 'message:created' && f.data.n === 9, 'the live event after the missed ones')
    expect(messages(back).map((f) => f.data.n)).toEqual([4, 5, 6, 7, 8, 9])
    await watcher.waitForCount(9, ['message:created'])
    // Exactly the frames a client that never left got, from the first it missed on.
    expect(messages(back)).toEqual(messages(watcher).slice(3))
    expect(back.ofType('recovery:failed')).toEqual([])
  })

  describe('a killed instance', () => {
    let dataDir: string
    let gateway: GatewayProcess | undefined

    beforeAll(async () => {
      dataDir = await mkdtemp(joinPath(tmpdir(), 'mc-scale-out-'))
    })
    afterAll(async () => {
      await gateway?.stop('SIGKILL')
      await stopLeftoverPostgres(dataDir)
      await rm(dataDir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 })
    })

    it('has its members leave on the other instances within the presence TTL', async () => {
      gateway = await startGatewayProcess({
        ...ENV,
        DATA_DIR: dataDir,
        SERVER_HOST: '127.0.0.1',
        SERVER_PORT: '0',
        JWT_SECRET: TEST_SECRET,
        LOG_LEVEL: 'warn',
      })
      const gwUrl = `ws://127.0.0.1:${gateway.httpPort}`
      const channel = uniqueName('room')
      const alice = user('alice')
      const carol = user('carol')
      const onA = track(await joinChannel(a.wsUrl, alice, channel))
      // The process's hub may still be starting (503): join once it takes connections.
      track(await joinRetrying(gwUrl, carol, channel))
      await onA.waitFor((f) => f.type === 'presence:join' && f.data.user_id === carol.id, 'carol joining on the process')
      expect((await gateway.stop('SIGKILL')).signal).toBe('SIGKILL')
      const left = await onA.waitFor((f) => f.type === 'presence:leave' && f.data.user_id === carol.id, 'carol leaving', 0, 10 * PRESENCE_TTL_MS)
      // Not from a goodbye: the killed process sent none, the TTL did it (no bound on when:
      // the killed process's last renewal may have come late).
      expect(left.data).toEqual({ user_id: carol.id, name: carol.name })
    })
  })
})

/** Joins once the instance's view includes every user of `expected` (the remote ones arrive through the bucket). */
async function joinWhenSeen(t: TestApp, u: User, channelId: string, expected: string[]): Promise<ChannelClient> {
  let client: ChannelClient | undefined
  await waitUntil(
    async () => {
      client?.close()
      client = await joinChannel(t.wsUrl, u, channelId)
      return JSON.stringify(memberIds(client.frames[0]!)) === JSON.stringify([...expected].sort())
    },
    10_000,
    `presence:state with ${expected.join(', ')}`,
  )
  return client!
}

async function joinRetrying(wsUrl: string, u: User, channelId: string): Promise<ChannelClient> {
  let client: ChannelClient | undefined
  await waitUntil(
    async () => {
      client = await joinChannel(wsUrl, u, channelId).catch(() => undefined)
      return client !== undefined
    },
    60_000,
    'the process taking /ws connections',
  )
  return client!
}
