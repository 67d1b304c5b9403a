/**
 * Presence shared through the NATS KV bucket, between KvPresence instances on their own
 * buses (as gateway instances would be), against this file's own nats-server: joins and
 * leaves counted per user across instances, the bucket's contents known once start()
 * resolves, renewals keeping members, a crashed instance's members leaving after the
 * TTL, close() making them leave at once, and a NATS restart healed by putting again.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { Kvm } from '@nats-io/kv'
import { NatsBus } from '../../src/bus/nats.js'
import { KvPresence } from '../../src/channels/kv-presence.js'
import { PRESENCE_BUCKET, type Member, type PresenceChange } from '../../src/channels/types.js'
import { startNatsServer, uniqueName, withJsm } from '../helpers/nats.js'
import { requireService } from '../helpers/services.js'
import { waitFor, waitUntil } from '../helpers/wait.js'

const started = await startNatsServer().catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))))
const haveServer = await requireService(`an own nats-server (${started instanceof Error ? started.message : 'ok'})`, !(started instanceof Error))
const server = started instanceof Error ? undefined : started

/** Longer than any test waits: a leave seen within a test came from a delete, not from expiry. */
const LONG_TTL_MS = 120_000
const SHORT_TTL_MS = 3_000

interface Change {
  channelId: string
  member: Member
  change: PresenceChange
}

interface Instance {
  id: string
  bus: NatsBus
  presence: KvPresence
  changes: Change[]
  warnings: string[]
  /** presence.start()'s promise. */
  started: Promise<void>
  seen(channelId: string, userId: string, change: PresenceChange): number
}

const made: Instance[] = []

async function instance(ttlMs = LONG_TTL_MS, waitLive = true): Promise<Instance> {
  const warnings: string[] = []
  const quiet = () => {}
  const log = { debug: quiet, info: quiet, warn: (_o: object, msg: string) => void warnings.push(msg), error: (_o: object, msg: string) => void warnings.push(msg) }
  const bus = new NatsBus({ url: server!.url, connectTimeoutMs: 2000, publishTimeoutMs: 2000, log })
  const id = uniqueName('gw').replace(/_/g, '-')
  const presence = new KvPresence({ bus, ttlMs, instanceId: id, log })
  const changes: Change[] = []
  void bus.start()
  const started = presence.start()
  presence.onRemoteChange((channelId, member, change) => changes.push({ channelId, member, change }))
  const inst: Instance = {
    id,
    bus,
    presence,
    changes,
    warnings,
    started,
    seen: (c, u, ch) => changes.filter((x) => x.channelId === c && x.member.user_id === u && x.change === ch).length,
  }
  made.push(inst)
  if (waitLive) await started
  return inst
}

async function closeAll(): Promise<void> {
  for (const i of made.splice(0)) {
    await i.presence.close()
    await i.bus.close()
  }
}

/** The revision of one of `inst`'s keys in the bucket (grows with every renewal). */
async function revision(inst: Instance, channelId: string, userId: string): Promise<number> {
  const key = `${Buffer.from(channelId).toString('base64url')}.${Buffer.from(userId).toString('base64url')}.${inst.id}`
  return withJsm(server!.url, async (_jsm, nc) => {
    const kv = await new Kvm(nc).open(PRESENCE_BUCKET)
    return (await kv.get(key))?.revision ?? 0
  })
}

const alice: Member = { user_id: 'alice', name: 'Alice' }
const bob: Member = { user_id: 'bob@example.com', name: 'Bob B.' }

describe.runIf(haveServer)('channels: KV presence', () => {
  afterEach(closeAll)
  afterAll(async () => {
    await closeAll()
    await server?.cleanup()
  })

  it('shows each user once across instances: join on the first entry, leave after the last', async () => {
    const a = await instance()
    const b = await instance()
    const c = await instance()
    const channel = `org:acme:${uniqueName('room')}`
    a.presence.announce(channel, alice)
    await waitUntil(() => b.presence.remoteHas(channel, 'alice') && c.presence.remoteHas(channel, 'alice'), 10_000, 'alice seen by b and c')
    expect(b.presence.remoteMembers(channel)).toEqual([alice])
    // Its own announcements are no remote members.
    expect(a.presence.remoteMembers(channel)).toEqual([])
    c.presence.announce(channel, alice)
    c.presence.announce(channel, bob)
    await waitUntil(() => b.presence.remoteHas(channel, bob.user_id) && a.presence.remoteHas(channel, 'alice'), 10_000, 'bob seen by b, alice (on c) by a')
    expect(b.seen(channel, 'alice', 'join')).toBe(1)
    expect(b.presence.remoteMembers(channel)).toHaveLength(2)
    a.presence.withdraw(channel, 'alice')
    // Still on c: no leave; c's withdrawal is the last one.
    c.presence.withdraw(channel, 'alice')
    await waitUntil(() => !b.presence.remoteHas(channel, 'alice'), 10_000, 'alice gone for b')
    expect(b.seen(channel, 'alice', 'leave')).toBe(1)
    expect(b.changes.filter((x) => x.channelId === channel).map((x) => `${x.change}:${x.member.user_id}`)).toEqual([
      'join:alice',
      `join:${bob.user_id}`,
      'leave:alice',
    ])
    expect(b.presence.remoteMembers(channel)).toEqual([bob])
  })

  it('knows what the bucket holds once start() resolves', async () => {
    const a = await instance()
    const channel = uniqueName('room')
    a.presence.announce(channel, alice)
    a.presence.announce(channel, bob)
    await waitFor(() => revision(a, channel, bob.user_id), (r) => r > 0, 'bob stored')
    const late = await instance()
    expect(late.presence.remoteMembers(channel).map((m) => m.user_id).sort()).toEqual(['alice', bob.user_id])
  })

  it('keeps members that are renewed, and drops those of an instance that stopped renewing (crashed) within about the TTL', async () => {
    const a = await instance(SHORT_TTL_MS)
    const b = await instance(SHORT_TTL_MS)
    const channel = uniqueName('room')
    a.presence.announce(channel, alice)
    await waitUntil(() => b.presence.remoteHas(channel, 'alice'), 10_000, 'alice seen by b')
    const first = await revision(a, channel, 'alice')
    // Renewed several times, more than a TTL long: still there.
    await waitFor(() => revision(a, channel, 'alice'), (r) => r >= first + 4, 'four renewals', 20_000)
    expect(b.presence.remoteHas(channel, 'alice')).toBe(true)
    expect(b.seen(channel, 'alice', 'leave')).toBe(0)
    // A crash: the instance's connection is gone and nobody deletes its keys.
    await a.bus.close()
    await waitUntil(() => b.seen(channel, 'alice', 'leave') === 1, 20_000, 'alice leaves after the TTL')
    expect(b.presence.remoteMembers(channel)).toEqual([])
  })

  it('close() makes the others see the leave at once (long before the TTL)', async () => {
    const a = await instance()
    const b = await instance()
    const channel = uniqueName('room')
    a.presence.announce(channel, alice)
    a.presence.announce(channel, bob)
    await waitUntil(() => b.presence.remoteMembers(channel).length === 2, 10_000, 'both seen by b')
    await a.presence.close()
    await waitUntil(() => b.presence.remoteMembers(channel).length === 0, 20_000, 'both left (LONG_TTL_MS is far longer)')
    expect(b.seen(channel, 'alice', 'leave') + b.seen(channel, bob.user_id, 'leave')).toBe(2)
  })

  it('starts while NATS is down, announcing once it is up', async () => {
    const b = await instance()
    const channel = uniqueName('room')
    await server!.stop()
    const a = await instance(LONG_TTL_MS, false)
    let live = false
    void a.started.then(() => (live = true))
    a.presence.announce(channel, alice)
    await waitUntil(() => a.warnings.some((w) => w.startsWith('presence not shared')), 20_000, 'the outage noted')
    expect(live).toBe(false)
    await server!.start()
    await a.started
    await waitUntil(() => b.presence.remoteHas(channel, 'alice'), 30_000, 'alice seen by b after the start')
  })

  it('keeps its local state through a NATS restart: announcements and withdrawals made meanwhile reach the others after it', async () => {
    const a = await instance()
    const b = await instance()
    const channel = uniqueName('room')
    a.presence.announce(channel, alice)
    await waitUntil(() => b.presence.remoteHas(channel, 'alice'), 10_000, 'alice seen by b')
    await server!.kill()
    await waitUntil(() => a.bus.status().status === 'down' && b.bus.status().status === 'down', 20_000, 'both buses down')
    a.presence.withdraw(channel, 'alice')
    a.presence.announce(channel, bob)
    await server!.start()
    await waitUntil(() => b.presence.remoteHas(channel, bob.user_id) && !b.presence.remoteHas(channel, 'alice'), 30_000, 'bob joined, alice left, for b')
    expect(b.seen(channel, bob.user_id, 'join')).toBe(1)
    expect(b.seen(channel, 'alice', 'leave')).toBe(1)
    expect(a.warnings.filter((w) => w.startsWith('presence not shared'))).toHaveLength(1)
  })
})
