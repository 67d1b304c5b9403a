import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { wakeableSleep } from '../bus/sleep.js'
import type { Metrics } from '../observability/metrics.js'
import type { Log } from './jetstream-log.js'
import { decodeRedisMessage, REDIS_CHANNEL_PATTERN, type RedisEventResult } from './redis-message.js'
import { ChannelLogError, type ChannelLog, type EventDraft } from './types.js'

export const DEFAULT_LEASE_KEY = 'mc:channels:redis-subscriber'
/** The lease outlives two missed renewals: one slow answer does not hand it over. */
const LEASE_TTL_RENEWALS = 3

export interface RedisBridgeOptions {
  /** REDIS_URL; its database number (`/n`) also scopes the lease (one lease per deployment). */
  url: string
  /** REDIS_LEADER_RETRY_MS: how often the lease is renewed, or tried for by the others. */
  leaderRetryMs: number
  /** CHANNEL_EVENT_MAX_BYTES, as for POST. */
  eventMaxBytes: number
  channelLog: Pick<ChannelLog, 'append' | 'status'>
  metrics: Pick<Metrics, 'redisEvents'>
  log: Log
  /** Default DEFAULT_LEASE_KEY; tests running side by side use their own. */
  leaseKey?: string
  /** Default a random UUID: the lease's value, so an instance only ever extends or deletes its own. */
  instanceId?: string
  /** Default MAX_IN_FLIGHT: events being stored at once; past it one is dropped (`overloaded`). */
  maxInFlight?: number
}

/**
 * Redis sends as fast as its publishers publish and cannot be asked to wait, so what a slow
 * (not down) log has not stored yet is bounded here: at most this many events of at most
 * CHANNEL_EVENT_MAX_BYTES each.
 */
export const MAX_IN_FLIGHT = 1024

export interface RedisBridgeStatus {
  status: 'up' | 'down'
  /** `subscriber`: holds the lease and is subscribed to `channel:*`; `standby`: another instance is (or none can be). */
  role: 'subscriber' | 'standby'
  /** When down: `connecting`, `unreachable` or `lease command failed`. */
  reason?: string
}

// Claim or renew in one step: take the lease when nobody holds it, extend it when it is
// already ours (also after a failed renewal made us step down: no wait for our own expiry).
const CLAIM = `local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

/**
 * Takes the Go WebSocket server's Redis publishers (`PUBLISH channel:<id> <json>`) into the
 * channel log, once however many instances run: the one holding a lease kept in Redis
 * (`SET NX PX`, renewed every `leaderRetryMs` by a compare-and-extend script) is subscribed to
 * `channel:*`; the others retry for the lease. The channel log (JetStream with NATS) brings
 * each event to the members on every instance.
 *
 * Pub/sub is at most once: what is published while no instance is subscribed (Redis down,
 * a handover) or while the log cannot store is lost, and counted where it is seen. A message
 * is stored only while the lease is certainly ours (its expiry counted from when the last
 * renewal was sent), so an instance that stalled past its lease never stores what the new
 * holder stores too.
 */
export class RedisBridge {
  readonly instanceId: string
  private readonly opts: RedisBridgeOptions
  private readonly leaseKey: string
  private readonly ttlMs: number
  private readonly log: Log
  /** Lease commands; no offline queue, so a command while Redis is down fails at once. */
  private readonly cmd: Redis
  /** The subscription, on its own connection: in RESP2 a subscribed one can run nothing else, and a burst of messages never holds up a renewal. */
  private readonly sub: Redis
  private role: 'subscriber' | 'standby' = 'standby'
  /** performance.now() until which the lease is ours. */
  private leaseUntil = 0
  private subscribed = false
  private reconciling: Promise<void> | undefined
  private reconcileAgain = false
  private health = 'connecting'
  private leaseFailing = false
  private lost = { cmd: false, sub: false }
  private lastError: unknown
  private unavailableLost = 0
  private readonly inflight = new Set<Promise<void>>()
  private overloadedLost = 0
  private loop: Promise<void> | undefined
  private wake: (() => void) | undefined
  private closing = false
  private closed: Promise<void> | undefined

  constructor(opts: RedisBridgeOptions) {
    this.opts = opts
    this.leaseKey = opts.leaseKey ?? DEFAULT_LEASE_KEY
    this.instanceId = opts.instanceId ?? randomUUID()
    this.ttlMs = LEASE_TTL_RENEWALS * opts.leaderRetryMs
    this.log = opts.log
    // ioredis reconnects forever (its default backoff, capped at 5 s); commands never wait in
    // a queue for a connection (the loop retries them), nor longer than one retry period for
    // an answer (a hung Redis cannot hold up a renewal or the shutdown).
    const common = { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: opts.leaderRetryMs }
    // Named, so CLIENT LIST shows which gateway holds which connection.
    this.cmd = new Redis(opts.url, { ...common, connectionName: `mc-gateway:lease:${this.instanceId}` })
    // Resubscribing is ours (`reconcile`, after each reconnect): ioredis's own would run on
    // a former holder too, and its promise has nobody to catch a failure.
    this.sub = new Redis(opts.url, { ...common, autoResubscribe: false, connectionName: `mc-gateway:subscriber:${this.instanceId}` })
    this.watch('cmd', this.cmd)
    this.watch('sub', this.sub)
    this.sub.on('pmessageBuffer', (_pattern: string, channel: Buffer, payload: Buffer) => this.onMessage(channel, payload))
  }

  /** Connects and starts trying for the lease; with Redis down it keeps trying (never rejects). */
  start(): void {
    if (this.loop !== undefined || this.closing) return
    // Failures are the 'close' events `watch` handles; ioredis goes on reconnecting.
    this.cmd.connect().catch(() => {})
    this.sub.connect().catch(() => {})
    this.loop = this.run()
  }

  status(): RedisBridgeStatus {
    const role = this.role === 'subscriber' && this.subscribed ? 'subscriber' : 'standby'
    return this.health === 'up' ? { status: 'up', role } : { status: 'down', role, reason: this.health }
  }

  /** Unsubscribes, hands the lease back (another instance takes over at its next try), waits for stores under way, quits. Safe twice. */
  close(): Promise<void> {
    this.closed ??= this.shutdown()
    return this.closed
  }

  private async shutdown(): Promise<void> {
    this.closing = true
    this.role = 'standby'
    this.wake?.()
    await this.loop
    await this.reconciling
    if (this.sub.status === 'ready' && this.subscribed) await this.sub.punsubscribe(REDIS_CHANNEL_PATTERN).catch(() => {})
    // Compare-and-delete: harmless when another instance holds it.
    if (this.cmd.status === 'ready') await this.release()
    await Promise.allSettled([...this.inflight])
    await Promise.all([quit(this.cmd), quit(this.sub)])
  }

  private async run(): Promise<void> {
    while (!this.closing) {
      await this.tick()
      if (this.closing) return
      await wakeableSleep(this.opts.leaderRetryMs, (w) => (this.wake = w))
    }
  }

  private async tick(): Promise<void> {
    await this.claim()
    this.noteHealth()
    this.reconcile()
  }

  private async claim(): Promise<void> {
    if (this.cmd.status !== 'ready' || this.sub.status !== 'ready') {
      // Without a subscription the lease would only keep a working instance from taking over.
      this.stepDown('Redis connection lost', this.cmd.status === 'ready')
      return
    }
    if (this.opts.channelLog.status().status !== 'up') {
      // What this instance took it could not store: an instance whose log works should subscribe.
      this.stepDown('the channel log is down', true)
      return
    }
    const sentAt = performance.now()
    try {
      const held = (await this.cmd.eval(CLAIM, 1, this.leaseKey, this.instanceId, this.ttlMs)) === 1
      this.leaseFailing = false
      if (this.closing) return
      if (held) {
        this.leaseUntil = sentAt + this.ttlMs
        if (this.role !== 'subscriber') {
          this.role = 'subscriber'
          this.log.info({ instance: this.instanceId }, `holding the Redis lease: subscribing to ${REDIS_CHANNEL_PATTERN}`)
        }
      } else {
        this.stepDown('another instance holds the lease', false)
      }
    } catch (err) {
      this.lastError = err
      // A command lost with its connection is the 'close' event's to report; one refused or
      // timed out on a live connection is the lease's own failure.
      this.leaseFailing = this.cmd.status === 'ready'
      // Unknown whether the renewal took: stop at once, before the lease could pass to another.
      this.stepDown('the lease could not be renewed', false)
    }
  }

  private stepDown(reason: string, release: boolean): void {
    if (this.role !== 'subscriber') return
    this.role = 'standby'
    this.leaseUntil = 0
    this.log.info({ instance: this.instanceId, reason }, `no longer subscribed to Redis ${REDIS_CHANNEL_PATTERN}`)
    this.reconcile()
    if (release) void this.release()
  }

  /** Deletes the lease if it is still ours (never throws). */
  private async release(): Promise<void> {
    try {
      await this.cmd.eval(RELEASE, 1, this.leaseKey, this.instanceId)
    } catch (err) {
      this.log.debug({ err }, 'the Redis lease was not released: it expires by itself')
    }
  }

  /** Brings the subscription to what the role wants; one change at a time, failures retried at the next tick. */
  private reconcile(): void {
    if (this.reconciling !== undefined) {
      this.reconcileAgain = true
      return
    }
    this.reconciling = (async () => {
      do {
        this.reconcileAgain = false
        const want = this.role === 'subscriber' && !this.closing
        if (want === this.subscribed || this.sub.status !== 'ready') continue
        try {
          if (want) await this.sub.psubscribe(REDIS_CHANNEL_PATTERN)
          else await this.sub.punsubscribe(REDIS_CHANNEL_PATTERN)
          this.subscribed = want
        } catch (err) {
          this.log.debug({ err, want }, 'Redis (un)subscribe failed: retried')
        }
      } while (this.reconcileAgain && !this.closing)
    })().finally(() => (this.reconciling = undefined))
  }

  private onMessage(channel: Buffer, payload: Buffer): void {
    // After stepping down (the unsubscribe under way) or past the lease: not ours to store (the
    // next holder has it once it is subscribed).
    if (this.role !== 'subscriber' || performance.now() >= this.leaseUntil) return this.count('not_holder')
    if (this.inflight.size >= (this.opts.maxInFlight ?? MAX_IN_FLIGHT)) {
      this.count('overloaded')
      if (this.overloadedLost++ === 0) this.log.warn({ inFlight: this.inflight.size }, 'Redis event lost: the channel log is storing too many already (further losses are counted)')
      return
    }
    const decoded = decodeRedisMessage(channel, payload, this.opts.eventMaxBytes)
    if (!decoded.ok) {
      this.count(decoded.result)
      this.log.debug({ channel: decoded.channel, reason: decoded.reason }, 'Redis message dropped')
      return
    }
    this.store(decoded.channelId, decoded.draft)
  }

  private store(channelId: string, draft: EventDraft): void {
    const done = this.opts.channelLog.append(channelId, draft).then(
      () => {
        this.count('stored')
        if (this.unavailableLost > 0) {
          this.log.info({ lost: this.unavailableLost }, 'Redis events are stored again')
          this.unavailableLost = 0
        }
      },
      (err: unknown) => {
        if (err instanceof ChannelLogError && err.kind === 'refused') {
          this.count('refused')
          this.log.debug({ channelId, reason: err.message }, 'Redis event refused by the channel log')
          return
        }
        this.count('unavailable')
        // Once per outage: a Redis publisher cannot be told to retry, so the event is lost.
        if (this.unavailableLost++ === 0) {
          this.log.warn({ err, channelId }, 'Redis event lost: the channel log cannot store now (further losses are counted)')
        }
      },
    )
    this.inflight.add(done)
    void done.finally(() => {
      this.inflight.delete(done)
      // Caught up: the next overload is a new one, and warned about again.
      if (this.inflight.size === 0 && this.overloadedLost > 0) {
        this.log.info({ lost: this.overloadedLost }, 'Redis events are taken again: the channel log caught up')
        this.overloadedLost = 0
      }
    })
  }

  private count(result: RedisEventResult): void {
    this.opts.metrics.redisEvents.inc({ result })
  }

  private watch(name: 'cmd' | 'sub', conn: Redis): void {
    // Every failed attempt emits 'error': kept for the one warning, never logged each time.
    conn.on('error', (err: unknown) => (this.lastError = err))
    conn.on('ready', () => {
      this.lost[name] = false
      this.noteHealth()
      if (name === 'sub') this.reconcile()
      this.wake?.()
    })
    const onLost = () => {
      this.lost[name] = true
      // A new connection starts with no subscription.
      if (name === 'sub') this.subscribed = false
      this.noteHealth()
    }
    conn.on('close', onLost)
    conn.on('end', onLost)
  }

  /** One warning when Redis becomes unreachable (or the lease commands fail), one info when it is back. */
  private noteHealth(): void {
    if (this.closing) return
    const ready = this.cmd.status === 'ready' && this.sub.status === 'ready'
    const next =
      this.lost.cmd || this.lost.sub ? 'unreachable' : !ready ? this.health : this.leaseFailing ? 'lease command failed' : 'up'
    const before = this.health
    if (next === before) return
    this.health = next
    const err = this.lastError instanceof Error ? this.lastError.message : this.lastError
    if (next === 'up') this.log.info({}, before === 'connecting' ? 'Redis connected' : 'Redis reachable again')
    else this.log.warn({ reason: next, err }, `Redis ${next}: PUBLISH ${REDIS_CHANNEL_PATTERN} is not delivered until it is back`)
  }
}

/** QUIT when connected (bounded by the command timeout), else drop the connection. */
async function quit(conn: Redis): Promise<void> {
  if (conn.status === 'ready') {
    try {
      await conn.quit()
      return
    } catch {
      // Closed under us: disconnect below stops any reconnecting.
    }
  }
  conn.disconnect()
}
