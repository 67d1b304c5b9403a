import type { FastifyBaseLogger } from 'fastify'
import { BusError, type Bus, type BusHeaders, type StreamSpec } from '../bus/bus.js'
import type { Batcher } from '../ingest/batcher.js'
import type { Metrics } from '../observability/metrics.js'
import { DeviceLines } from './device-lines.js'
import { MessageIds, slotOf } from './msg-ids.js'
import { ForwardTimeoutError, type DeviceForwarder, type ForwardRequest } from './types.js'

/** The stream device messages are stored in; created when missing, never altered (operators own it). */
export const RAW_STREAM: StreamSpec = Object.freeze({ name: 'RAW', subjects: ['raw.>'] })

// Retries of one held publish: from a few ms (a blip) to about a second (NATS restarting).
const RETRY_MIN_MS = 5
const RETRY_MAX_MS = 1_000
// Creating the stream while NATS is down or JetStream is missing: patient, and quiet.
const ENSURE_MIN_MS = 250
const ENSURE_MAX_MS = 30_000
/** A 'no_stream' this soon after the stream was found does not ask JetStream again. */
const ENSURE_AGAIN_AFTER_MS = 1_000
/** Without JetStream, messages go to core NATS; this often one tries JetStream again. */
const CORE_ONLY_RECHECK_MS = 30_000

export interface ForwarderOptions {
  bus: Bus
  batcher: Pick<Batcher, 'submit'>
  log: FastifyBaseLogger
  metrics: Pick<Metrics, 'mqttMessages' | 'mqttLines' | 'beforeScrape'>
  /** MQTT_FORWARD_TIMEOUT_MS: how long a QoS 1 publish is held before the device is let go without PUBACK. */
  forwardTimeoutMs: number
  /** NATS_PUBLISH_TIMEOUT_MS: the longest one JetStream publish waits for its ack. */
  publishTimeoutMs: number
}

/**
 * What the broker hands over. `clientId` (optional): the MQTT client id, so that the
 * packet ids of two connections of one device are told apart (see slotOf).
 */
export type ForwardInput = ForwardRequest & { readonly clientId?: string }

export type Forwarder = DeviceForwarder & {
  /** Ensures the RAW stream in the background (never waits for NATS); resolves at once. */
  start(): Promise<void>
}

export function createForwarder(opts: ForwarderOptions): Forwarder {
  return new JetStreamForwarder(opts)
}

const DONE: Promise<void> = Promise.resolve()

type Sleeper = () => void

/**
 * Device publishes into NATS (docs/API.md section 8). QoS 1 is stored in JetStream and
 * the returned promise resolves only once the stream acknowledged (the broker writes
 * PUBACK then); while that fails transiently the same message (same Nats-Msg-Id) is
 * tried again until the forward timeout. QoS 0 is a core publish, best effort.
 * Line-protocol payloads also go to the time-series batcher, on the side.
 */
class JetStreamForwarder implements Forwarder {
  private heldNow = 0
  private closing = false
  /** Set at the close deadline: held publishes stop retrying. */
  private abandoned = false
  private closed: Promise<void> | undefined
  private readonly ids = new MessageIds()
  private readonly lines: DeviceLines
  private readonly counts = { forwarded: 0, timedOut: 0, failed: 0 }
  private readonly log: FastifyBaseLogger
  private readonly bus: Bus
  private readonly forwardTimeoutMs: number
  private readonly publishTimeoutMs: number
  private readonly firstTimeoutMs: number
  /** Epoch ms until which QoS 1 goes to core NATS (JetStream missing); 0: JetStream. */
  private coreOnlyUntil = 0
  private warnedCoreOnly = false
  private ensuring = false
  private lastEnsuredAt = 0
  private readonly retrySleepers = new Set<Sleeper>()
  private readonly ensureSleepers = new Set<Sleeper>()
  private idleWaiters: Array<() => void> = []
  // Received-At of the last millisecond seen: many messages share one.
  private lastAtMs = Number.NaN
  private lastAtIso = ''

  constructor(opts: ForwarderOptions) {
    this.bus = opts.bus
    this.log = opts.log.child({ component: 'forwarder' })
    this.forwardTimeoutMs = opts.forwardTimeoutMs
    this.publishTimeoutMs = opts.publishTimeoutMs
    this.firstTimeoutMs = Math.min(opts.publishTimeoutMs, opts.forwardTimeoutMs)
    this.lines = new DeviceLines(opts.batcher)
    // Counted in plain numbers per message; the counters get them when /metrics is read.
    const m = opts.metrics
    const forwarded = m.mqttMessages.labels('forwarded')
    const timedOut = m.mqttMessages.labels('timed_out')
    const failed = m.mqttMessages.labels('failed')
    const submitted = m.mqttLines.labels('submitted')
    const refused = m.mqttLines.labels('refused')
    const notLp = m.mqttLines.labels('not_line_protocol')
    const lc = this.lines.counts
    m.beforeScrape(() => {
      const c = this.counts
      if (c.forwarded > 0) forwarded.inc(c.forwarded)
      if (c.timedOut > 0) timedOut.inc(c.timedOut)
      if (c.failed > 0) failed.inc(c.failed)
      c.forwarded = c.timedOut = c.failed = 0
      if (lc.submitted > 0) submitted.inc(lc.submitted)
      if (lc.refused > 0) refused.inc(lc.refused)
      if (lc.notLineProtocol > 0) notLp.inc(lc.notLineProtocol)
      lc.submitted = lc.refused = lc.notLineProtocol = 0
    })
  }

  get held(): number {
    return this.heldNow
  }

  start(): Promise<void> {
    this.ensureRaw()
    return DONE
  }

  forward(req: ForwardInput): Promise<void> {
    if (req.qos === 0) {
      this.forwardQos0(req)
      return DONE
    }
    if (this.closing) {
      this.counts.timedOut++
      return Promise.reject(new ForwardTimeoutError('the gateway is shutting down: not forwarded'))
    }
    return this.forwardQos1(req)
  }

  close(): Promise<void> {
    this.closed ??= this.shutdown()
    return this.closed
  }

  private async shutdown(): Promise<void> {
    this.closing = true
    wakeAll(this.ensureSleepers)
    // Every held publish was received before now, so its own deadline comes first; this
    // wait only bounds a bus that overruns its timeouts.
    await this.untilIdle(this.forwardTimeoutMs)
    this.abandoned = true
    wakeAll(this.retrySleepers)
    await this.untilIdle(this.publishTimeoutMs)
  }

  private async forwardQos1(req: ForwardInput): Promise<void> {
    const ids = this.ids
    // A will has no packet id: nothing can redeliver it.
    const slot = req.packetId === undefined ? undefined : slotOf(req.deviceId, req.clientId, req.packetId)
    const msgId = slot === undefined ? ids.next() : ids.idFor(slot, req.topic, req.payload, req.receivedAt)
    // A redelivery had its lines submitted the first time.
    const redelivery = slot !== undefined && ids.redelivered
    this.heldNow++
    try {
      // The publish is on its way before the payload is looked at for line protocol.
      const stored = this.store(req, msgId, this.headersOf(req, undefined))
      if (!redelivery) this.offerLines(req)
      try {
        await stored
      } catch (err) {
        if (slot !== undefined) ids.notStored(slot, msgId)
        throw err
      }
      if (slot !== undefined) ids.stored(slot, msgId)
      this.counts.forwarded++
    } finally {
      if (--this.heldNow === 0 && this.idleWaiters.length > 0) {
        const waiters = this.idleWaiters
        this.idleWaiters = []
        for (const w of waiters) w()
      }
    }
  }

  /** Resolves once JetStream has the message (or core NATS took it, without JetStream). */
  private async store(req: ForwardRequest, msgId: string, headers: BusHeaders): Promise<void> {
    let deadline = 0
    let delay = RETRY_MIN_MS
    let timeoutMs = this.firstTimeoutMs
    for (;;) {
      if (this.coreOnlyUntil !== 0 && this.coreOnlyUntil > req.receivedAt) return this.publishCore(req, msgId, headers)
      try {
        await this.bus.persist(req.subject, req.payload, { msgId, headers, timeoutMs })
        if (this.coreOnlyUntil !== 0) this.leaveCoreOnly()
        return
      } catch (err) {
        const kind = err instanceof BusError ? err.kind : undefined
        if (kind === 'no_jetstream') {
          this.enterCoreOnly()
          return this.publishCore(req, msgId, headers)
        }
        if (kind === 'closed') {
          this.counts.timedOut++
          throw new ForwardTimeoutError('the bus is closed: not stored', { cause: err })
        }
        if (kind === undefined || kind === 'refused') {
          this.counts.failed++
          this.log.warn({ err, subject: req.subject, device_id: req.deviceId }, 'NATS refused a device message: no PUBACK')
          throw new ForwardTimeoutError('NATS refused the message', { cause: err })
        }
        if (kind === 'no_stream') this.ensureRaw()
        // Transient: the same message again (same msgId, so JetStream stores it once), until the deadline.
        if (deadline === 0) deadline = req.receivedAt + this.forwardTimeoutMs
        const left = deadline - Date.now()
        if (left > 0 && !this.abandoned) await sleep(Math.min(delay * (0.5 + Math.random() / 2), left), this.retrySleepers)
        timeoutMs = Math.min(this.publishTimeoutMs, deadline - Date.now())
        if (timeoutMs <= 0 || this.abandoned) {
          this.counts.timedOut++
          throw new ForwardTimeoutError(`not stored in JetStream within ${this.forwardTimeoutMs} ms`, { cause: err })
        }
        delay = Math.min(delay * 2, RETRY_MAX_MS)
      }
    }
  }

  /** JetStream is missing: PUBACK then means that core NATS took the message, no more. */
  private publishCore(req: ForwardRequest, msgId: string, headers: BusHeaders): void {
    try {
      this.bus.publish(req.subject, req.payload, { 'Nats-Msg-Id': msgId, ...headers })
    } catch (err) {
      this.counts.timedOut++
      throw new ForwardTimeoutError('the bus is closed: not published', { cause: err })
    }
  }

  private enterCoreOnly(): void {
    this.coreOnlyUntil = Date.now() + CORE_ONLY_RECHECK_MS
    if (this.warnedCoreOnly) return
    this.warnedCoreOnly = true
    this.log.warn(
      'NATS has no JetStream: device messages go to core NATS, and a QoS 1 PUBACK only means NATS took the message, not that it is stored',
    )
  }

  private leaveCoreOnly(): void {
    this.coreOnlyUntil = 0
    this.warnedCoreOnly = false
    this.log.info('JetStream is back: QoS 1 device messages are acknowledged once stored again')
  }

  private forwardQos0(req: ForwardInput): void {
    if (this.closing) {
      this.counts.failed++
      return
    }
    try {
      this.bus.publish(req.subject, req.payload, this.headersOf(req, this.ids.next()))
      this.counts.forwarded++
    } catch {
      // Best effort: only a closed bus throws here, and it is counted.
      this.counts.failed++
    }
    this.offerLines(req)
  }

  private offerLines(req: ForwardRequest): void {
    try {
      this.lines.offer(req.deviceId, req.deviceType, req.payload)
    } catch (err) {
      // Never a reason to fail the forward.
      this.log.error({ err, device_id: req.deviceId }, 'line protocol from a device not submitted')
    }
  }

  /** The headers of section 8; `msgId` only for core publishes (persist passes it as its own option). */
  private headersOf(req: ForwardRequest, msgId: string | undefined): BusHeaders {
    const ms = req.receivedAt
    if (ms !== this.lastAtMs) {
      this.lastAtMs = ms
      this.lastAtIso = new Date(ms).toISOString()
    }
    const headers: BusHeaders = {
      'Device-Id': req.deviceId,
      'Device-Type': req.deviceType,
      'Mqtt-Topic': req.topic,
      'Received-At': this.lastAtIso,
    }
    if (msgId !== undefined) headers['Nats-Msg-Id'] = msgId
    return headers
  }

  /** Creates RAW when missing, in the background, retried until done; a no-op while a try is under way. */
  private ensureRaw(): void {
    if (this.ensuring || this.closing) return
    if (this.lastEnsuredAt !== 0 && Date.now() - this.lastEnsuredAt < ENSURE_AGAIN_AFTER_MS) return
    this.ensuring = true
    void this.ensureLoop().finally(() => {
      this.ensuring = false
    })
  }

  private async ensureLoop(): Promise<void> {
    let delay = ENSURE_MIN_MS
    let warned = false
    while (!this.closing) {
      try {
        const result = await this.bus.ensureStream(RAW_STREAM)
        this.lastEnsuredAt = Date.now()
        if (result === 'created') this.log.info({ stream: RAW_STREAM.name, subjects: RAW_STREAM.subjects }, 'stream created')
        return
      } catch (err) {
        const kind = err instanceof BusError ? err.kind : undefined
        if (kind === 'closed') return
        // While NATS is down the bus says so itself; anything else is worth one warning.
        if (!warned && kind !== 'disconnected') {
          warned = true
          this.log.warn({ err, stream: RAW_STREAM.name }, 'could not ensure the stream yet: retrying')
        }
      }
      await sleep(delay * (0.5 + Math.random() / 2), this.ensureSleepers)
      delay = Math.min(delay * 2, ENSURE_MAX_MS)
    }
  }

  /** Resolves when nothing is held, or after `ms`. */
  private untilIdle(ms: number): Promise<void> {
    if (this.heldNow === 0) return DONE
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms)
      timer.unref()
      this.idleWaiters.push(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }
}

/** A wait that close() can cut short (the sleeper then finds the state it must act on). */
function sleep(ms: number, sleepers: Set<Sleeper>): Promise<void> {
  return new Promise((resolve) => {
    const wake: Sleeper = () => {
      clearTimeout(timer)
      sleepers.delete(wake)
      resolve()
    }
    const timer = setTimeout(wake, ms)
    timer.unref()
    sleepers.add(wake)
  })
}

function wakeAll(sleepers: Set<Sleeper>): void {
  for (const wake of [...sleepers]) wake()
}
