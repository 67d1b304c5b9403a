import { DeliverPolicy, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream'
import { Kvm, type KV } from '@nats-io/kv'
import { BusError } from '../bus/bus.js'
import { wakeableSleep } from '../bus/sleep.js'
import type { NatsBus } from '../bus/nats.js'
import type { Log } from './jetstream-log.js'
import { storedAtMs } from './jetstream-read.js'
import { INSTANCE_ID_TOKEN, parsePresenceMessage, parsePresenceSubject, presenceKey, type PresenceKey } from './presence-keys.js'
import { RemotePresenceView, type PresenceEntry } from './presence-view.js'
import { PRESENCE_BUCKET, type Member, type PresenceChange, type PresenceDirectory } from './types.js'

export interface KvPresenceOptions {
  bus: NatsBus
  /** CHANNEL_PRESENCE_TTL_MS: an entry not renewed for this long is gone (the bucket's max age). */
  ttlMs: number
  /** This gateway process: its keys end with it, and the watch skips them. */
  instanceId: string
  log: Log
}

/** Renewals per TTL (the bucket's max age): an entry on the server survives three lost heartbeats. */
const HEARTBEATS_PER_TTL = 4
/**
 * The view drops another instance's entry after this many heartbeats without a renewal, and
 * sweeps twice per heartbeat: a crashed instance's members leave at most 3.5 heartbeats (7/8
 * of the TTL) after its last renewal, so within the TTL of the crash, while a live instance
 * has two heartbeats (half the TTL) of slack for a late renewal.
 */
const STALE_AFTER_HEARTBEATS = 3
const SWEEPS_PER_HEARTBEAT = 2
const RETRY_MIN_MS = 250
const RETRY_MAX_MS = 5_000

type Listener = (channelId: string, member: Member, change: PresenceChange) => void

/**
 * Presence shared between instances in the NATS KV bucket mc_presence: one key per
 * channel, user and instance (`<base64url(channel)>.<base64url(user)>.<instance>`, the
 * member JSON as value), renewed by a heartbeat and expiring after the TTL, so the members
 * of a crashed instance leave within about the TTL. One watch of the whole bucket builds
 * the view of the others; after a reconnect everything is put again and the view is
 * rebuilt from a fresh read of the bucket.
 */
export class KvPresence implements PresenceDirectory {
  readonly kind = 'kv' as const
  private readonly bus: NatsBus
  private readonly log: Log
  private readonly ttlMs: number
  private readonly instanceId: string
  private readonly listeners: Listener[] = []
  private readonly view = new RemotePresenceView((c, m, change) => this.emit(c, m, change))
  /** This instance's keys and their values (the hub's announcements). */
  private readonly local = new Map<string, string>()
  /** Withdrawn while NATS was down: deleted once it is back. */
  private readonly unwithdrawn = new Set<string>()
  private kv: KV | undefined
  private watching: ConsumerMessages | undefined
  /** Bumped for every watch: messages of an older one are ignored. */
  private generation = 0
  private watchLive = false
  private timer: NodeJS.Timeout | undefined
  private ticks = 0
  private closing = false
  private restartWanted = false
  private loop: Promise<void> | undefined
  private wake: (() => void) | undefined
  private downLogged = false
  private markStarted!: () => void
  private readonly started = new Promise<void>((r) => (this.markStarted = r))

  constructor(opts: KvPresenceOptions) {
    if (!INSTANCE_ID_TOKEN.test(opts.instanceId)) throw new Error(`instanceId "${opts.instanceId}" may hold only letters, digits and - _ =`)
    this.bus = opts.bus
    this.log = opts.log
    this.ttlMs = opts.ttlMs
    this.instanceId = opts.instanceId
  }

  start(): Promise<void> {
    if (this.loop !== undefined) return this.started
    this.bus.onStatusChange((s) => {
      if (s.status === 'up') {
        this.restartWanted = true
        this.wake?.()
      } else {
        this.watchLive = false
      }
    })
    const sweepMs = Math.max(1, Math.floor(this.ttlMs / HEARTBEATS_PER_TTL / SWEEPS_PER_HEARTBEAT))
    this.timer = setInterval(() => this.tick(), sweepMs)
    this.timer.unref()
    this.loop = this.run()
    return this.started
  }

  announce(channelId: string, member: Member): void {
    const key = this.keyOf(channelId, member.user_id)
    if (key === undefined) return
    const value = JSON.stringify({ user_id: member.user_id, name: member.name })
    this.local.set(key, value)
    this.unwithdrawn.delete(key)
    this.put(key, value)
  }

  withdraw(channelId: string, userId: string): void {
    const key = this.keyOf(channelId, userId)
    if (key === undefined || !this.local.delete(key)) return
    this.remove(key)
  }

  remoteMembers(channelId: string): Member[] {
    return this.view.members(channelId)
  }

  remoteHas(channelId: string, userId: string): boolean {
    return this.view.has(channelId, userId)
  }

  onRemoteChange(listener: Listener): void {
    this.listeners.push(listener)
  }

  async close(): Promise<void> {
    if (this.closing) return
    this.closing = true
    clearInterval(this.timer)
    this.wake?.()
    // Others see this instance's members leave now, not after the TTL.
    const kv = this.kv
    if (kv !== undefined && this.bus.status().status === 'up') {
      const keys = [...this.local.keys()]
      await Promise.all(keys.map((k) => kv.delete(k).catch((err: unknown) => this.log.debug({ err, key: k }, 'presence: delete on close failed'))))
    }
    this.local.clear()
    this.stopWatch()
    await this.loop
  }

  /** A sweep on every tick, a heartbeat on every SWEEPS_PER_HEARTBEAT-th. */
  private tick(): void {
    if (this.closing) return
    const heartbeat = this.ticks++ % SWEEPS_PER_HEARTBEAT === 0
    if (heartbeat && this.kv !== undefined && this.bus.status().status === 'up') {
      for (const [key, value] of this.local) this.put(key, value)
    }
    // While the watch is not live, renewals cannot be seen: the rebuild after it judges.
    const staleMs = (this.ttlMs / HEARTBEATS_PER_TTL) * STALE_AFTER_HEARTBEATS
    if (this.watchLive) this.view.sweep(Date.now() - staleMs)
  }

  private put(key: string, value: string): void {
    // After close deleted the keys, a resync in flight must not put them back.
    if (this.closing) return
    const kv = this.kv
    if (kv === undefined || this.bus.status().status !== 'up') return this.noteDown()
    kv.put(key, value).catch((err: unknown) => this.noteDown(err))
  }

  private remove(key: string): void {
    const kv = this.kv
    if (kv === undefined || this.bus.status().status !== 'up') {
      this.unwithdrawn.add(key)
      return this.noteDown()
    }
    kv.delete(key).catch((err: unknown) => {
      if (!this.local.has(key)) this.unwithdrawn.add(key)
      this.noteDown(err)
    })
  }

  /** Logged once per outage: the local state is kept and put again on reconnect. */
  private noteDown(err?: unknown): void {
    if (this.downLogged || this.closing) return
    this.downLogged = true
    this.log.warn({ err, bucket: PRESENCE_BUCKET }, 'presence not shared while NATS is down: kept here, put again on reconnect')
  }

  /** Keeps the bucket open and watched until close; starts over whenever the bus comes up. */
  private async run(): Promise<void> {
    let failures = 0
    while (!this.closing) {
      if (this.bus.status().status !== 'up') {
        await this.pause(RETRY_MAX_MS)
        continue
      }
      this.restartWanted = false
      let ended: Promise<unknown>
      try {
        ;({ ended } = await this.sync())
      } catch (err) {
        if (failures === 0) this.log.warn({ err, bucket: PRESENCE_BUCKET }, 'presence: bucket not reachable yet, retrying')
        failures++
        await this.pause(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(failures, 8)))
        continue
      }
      failures = 0
      this.downLogged = false
      await Promise.race([ended, this.untilRestartWanted()])
      this.watchLive = false
      this.generation++
      this.stopWatch()
    }
  }

  /** Opens the bucket, puts this instance's keys again, and rebuilds the view from a watch. */
  private async sync(): Promise<{ ended: Promise<unknown> }> {
    const js = this.bus.jetstream()
    if (js === undefined) throw new BusError('disconnected', 'no NATS connection')
    // An existing bucket is used as it is (operators own it).
    const kv = await new Kvm(js).create(PRESENCE_BUCKET, { ttl: this.ttlMs, history: 1 })
    this.kv = kv
    for (const key of this.unwithdrawn) if (!this.local.has(key)) kv.delete(key).catch((err: unknown) => this.noteDown(err))
    this.unwithdrawn.clear()
    for (const [key, value] of this.local) this.put(key, value)

    const generation = ++this.generation
    const consumer = await js.consumers.get(`KV_${PRESENCE_BUCKET}`, {
      filter_subjects: `$KV.${PRESENCE_BUCKET}.>`,
      deliver_policy: DeliverPolicy.LastPerSubject,
    })
    const initial = (await consumer.info(true)).num_pending
    const snapshot: PresenceEntry[] = []
    let received = 0
    let caughtUp = false
    const catchUp = () => {
      caughtUp = true
      this.view.replaceWith(snapshot)
      this.watchLive = true
      this.markStarted()
    }
    const messages = await consumer.consume({
      callback: (m) => {
        if (generation !== this.generation) return
        if (caughtUp) return this.apply(m, Date.now())
        // What the bucket held already: its age counts (a crashed instance's keys are not renewed), clamped to this clock.
        const key = this.othersKey(m.subject)
        const entry = key === undefined ? undefined : parsePresenceMessage(m, key, Math.min(Date.now(), storedAtMs(m.timestampNanos)))
        if (entry !== undefined && entry !== 'removed') snapshot.push(entry)
        // Caught up with what the bucket held at the start (puts arriving meanwhile may keep pending above 0).
        if (++received >= initial || m.info.pending === 0) catchUp()
      },
    })
    this.watching = messages
    if (initial === 0) catchUp()
    return { ended: messages.closed() }
  }

  private apply(m: JsMsg, seenAt: number): void {
    const key = this.othersKey(m.subject)
    if (key === undefined) return
    const entry = parsePresenceMessage(m, key, seenAt)
    if (entry === 'removed') this.view.remove(key.channelId, key.userId, key.instanceId)
    else if (entry !== undefined) this.view.put(entry)
  }

  /** The key of another instance's entry; undefined for this instance's own keys and anything else. */
  private othersKey(subject: string): PresenceKey | undefined {
    const key = parsePresenceSubject(subject)
    return key === undefined || key.instanceId === this.instanceId ? undefined : key
  }

  private keyOf(channelId: string, userId: string): string | undefined {
    if (channelId === '' || userId === '') {
      this.log.warn({ channelId, userId }, 'presence: empty channel or user id not shared')
      return undefined
    }
    return presenceKey(channelId, userId, this.instanceId)
  }

  private emit(channelId: string, member: Member, change: PresenceChange): void {
    for (const l of this.listeners) {
      try {
        l(channelId, member, change)
      } catch (err) {
        this.log.error({ err, channelId }, 'presence listener failed')
      }
    }
  }

  private stopWatch(): void {
    const w = this.watching
    this.watching = undefined
    try {
      w?.stop()
    } catch {
      // Its connection is gone already.
    }
  }

  private untilRestartWanted(): Promise<void> {
    return new Promise((resolve) => {
      const check = () => (this.restartWanted || this.closing ? resolve() : (this.wake = check))
      check()
    })
  }

  private pause(ms: number): Promise<void> {
    return wakeableSleep(ms, (wake) => (this.wake = wake))
  }
}
