import { randomBytes } from 'node:crypto'
import { connect, headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node'
import { jetstream, jetstreamManager, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import {
  BusError,
  type Bus,
  type BusHeaders,
  type BusMessage,
  type BusStatus,
  type BusSubscription,
  type PersistOptions,
  type PersistResult,
  type StreamSpec,
} from './bus.js'
import { JetStreamPublisher } from './jetstream-publisher.js'
import { parseNatsUrl, type ParsedNatsUrl } from './nats-url.js'

export { parseNatsUrl, type ParsedNatsUrl } from './nats-url.js'
import { wakeableSleep } from './sleep.js'

type Log = {
  debug(obj: object, msg: string): void
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

/** Where persist and publish outcomes go (the plugin points it at the metrics). */
export interface BusObserver {
  persisted(seconds: number, outcome: 'ok' | 'duplicate' | 'error'): void
  published(outcome: 'ok' | 'error'): void
}

export interface NatsBusOptions {
  /** NATS_URL: one server or a comma list, optionally with `user:pass@` or `token@`. */
  url: string
  /** Per connection attempt (the handshake); attempts go on forever. */
  connectTimeoutMs: number
  /** Default wait for a JetStream ack and for JetStream API calls; also the drain deadline on close. */
  publishTimeoutMs: number
  log: Log
  observer?: BusObserver
}

/** First-connect retry and reconnect waits: they grow with the outage, up to the max, with jitter. */
const RETRY_MIN_MS = 250
const RETRY_MAX_MS = 5000

interface SubRecord {
  subject: string
  queue: string | undefined
  handler: (msg: BusMessage) => void
  /** The live nats.js subscription; absent while no connection exists yet. */
  sub: Subscription | undefined
}

/**
 * The bus over NATS: one connection, made in the background so the gateway starts while
 * NATS is down, then kept forever (nats.js reconnects; when it gives up, for instance
 * after repeated auth failures, a fresh connection is made the same way). Subscriptions
 * are remembered and applied to every new connection.
 */
export class NatsBus implements Bus {
  readonly mode = 'nats' as const
  private readonly parsed: ParsedNatsUrl
  private readonly log: Log
  private readonly observer: BusObserver | undefined
  private nc: NatsConnection | undefined
  private js: JetStreamClient | undefined
  private jsm: JetStreamManager | undefined
  /** JetStream publishes with acks on the current connection. */
  private publisher: JetStreamPublisher | undefined
  private up = false
  /** The current connection's link, as its status events tell (nats.js has no public flag). */
  private linkUp = false
  private state: BusStatus
  private readonly listeners: Array<(s: BusStatus) => void> = []
  private readonly subs = new Set<SubRecord>()
  private closing = false
  private closePromise: Promise<void> | undefined
  private loop: Promise<void> | undefined
  private firstAttempt: Promise<void> | undefined
  private wake: (() => void) | undefined
  private downSince = Date.now()
  /** Marks streams this instance creates, so a racing create by another instance fails (and says 'exists'). */
  private readonly instanceId = randomBytes(6).toString('hex')

  constructor(private readonly opts: NatsBusOptions) {
    this.parsed = parseNatsUrl(opts.url)
    this.log = opts.log
    this.observer = opts.observer
    this.state = { status: 'down', mode: this.mode, server: this.parsed.display, reason: 'connecting', since: iso(this.downSince) }
  }

  /** The servers without credentials (for logs). */
  get servers(): string {
    return this.parsed.display
  }

  /**
   * Starts connecting in the background. The promise settles after the first attempt
   * (connected or not), never rejects: a caller may wait that long for a bus that is
   * usually up at once, without blocking start-up on a NATS that is down.
   */
  start(): Promise<void> {
    if (this.firstAttempt !== undefined) return this.firstAttempt
    if (this.closing) return Promise.resolve()
    let attempted!: () => void
    this.firstAttempt = new Promise<void>((r) => (attempted = r))
    this.loop = this.connectLoop(attempted).finally(attempted)
    return this.firstAttempt
  }

  status(): BusStatus {
    return { ...this.state }
  }

  onStatusChange(listener: (status: BusStatus) => void): void {
    this.listeners.push(listener)
  }

  /** The live connection, for work the Bus interface does not cover (KV, consumers); undefined while none. */
  connection(): NatsConnection | undefined {
    return this.nc
  }

  jetstreamManager(): JetStreamManager | undefined {
    return this.jsm
  }

  jetstream(): JetStreamClient | undefined {
    return this.js
  }

  publish(subject: string, data: Uint8Array, headers?: BusHeaders): void {
    if (this.closing) throw new BusError('closed', 'bus is closed')
    const nc = this.nc
    if (nc === undefined) {
      // Before the first connection there is no buffer to put it in: at most once allows dropping it.
      this.observer?.published('error')
      return
    }
    try {
      nc.publish(subject, data, headers === undefined ? undefined : { headers: toMsgHdrs(headers) })
      this.observer?.published('ok')
    } catch (err) {
      this.observer?.published('error')
      const busErr = this.toBusError(err, false)
      // A connection nats.js just gave up on (a new one is on its way) is a disconnected bus: no throw.
      if (busErr.kind !== 'disconnected') throw busErr
    }
  }

  async persist(subject: string, data: Uint8Array, opts?: PersistOptions): Promise<PersistResult> {
    const publisher = this.publisher
    if (publisher === undefined || !this.up) throw this.notUp()
    const started = performance.now()
    try {
      const ack = await publisher.publish(subject, data, opts?.msgId, opts?.headers, opts?.timeoutMs ?? this.opts.publishTimeoutMs)
      this.observer?.persisted((performance.now() - started) / 1000, ack.duplicate ? 'duplicate' : 'ok')
      return ack
    } catch (err) {
      this.observer?.persisted((performance.now() - started) / 1000, 'error')
      throw this.toBusError(err, true)
    }
  }

  subscribe(subject: string, handler: (msg: BusMessage) => void, opts: { queue?: string } = {}): BusSubscription {
    if (this.closing) throw new BusError('closed', 'bus is closed')
    if (subject === '' || /\s/.test(subject)) throw new BusError('refused', `invalid subject "${subject}"`)
    const rec: SubRecord = { subject, queue: opts.queue, handler, sub: undefined }
    this.subs.add(rec)
    if (this.nc !== undefined) this.attachSub(this.nc, rec)
    return {
      unsubscribe: () => {
        this.subs.delete(rec)
        try {
          rec.sub?.unsubscribe()
        } catch {
          // The connection is closed already: nothing left to unsubscribe from.
        }
        rec.sub = undefined
      },
    }
  }

  async ensureStream(spec: StreamSpec): Promise<'created' | 'exists'> {
    const jsm = this.jsm
    if (jsm === undefined || !this.up) throw this.notUp()
    try {
      await jsm.streams.info(spec.name)
      return 'exists'
    } catch (err) {
      if (errName(err) !== 'StreamNotFoundError') throw this.toBusError(err, false)
    }
    try {
      await jsm.streams.add({
        name: spec.name,
        subjects: spec.subjects,
        storage: StorageType.File,
        // Unique per instance: JetStream takes an identical create as a success, so two
        // instances racing would both think they created it.
        description: `created by matt-collector (${this.instanceId})`,
        ...(spec.maxAgeMs !== undefined ? { max_age: spec.maxAgeMs * 1e6 } : {}),
        ...(spec.maxMsgs !== undefined ? { max_msgs: spec.maxMsgs } : {}),
        ...(spec.maxMsgsPerSubject !== undefined ? { max_msgs_per_subject: spec.maxMsgsPerSubject } : {}),
        ...(spec.maxBytes !== undefined ? { max_bytes: spec.maxBytes } : {}),
        ...(spec.duplicateWindowMs !== undefined ? { duplicate_window: spec.duplicateWindowMs * 1e6 } : {}),
      })
      this.log.info({ stream: spec.name, subjects: spec.subjects }, 'JetStream stream created')
      return 'created'
    } catch (err) {
      // 10058: the name is taken with another configuration (someone created it meanwhile).
      if ((err as { code?: unknown }).code === 10058) return 'exists'
      throw this.toBusError(err, false)
    }
  }

  close(): Promise<void> {
    this.closePromise ??= this.doClose()
    return this.closePromise
  }

  private async doClose(): Promise<void> {
    this.closing = true
    this.wake?.()
    this.setDown('closed')
    const nc = this.nc
    if (nc !== undefined && !nc.isClosed()) {
      // Drain delivers what subscribers have and flushes publishes; a NATS that went away
      // would keep it waiting, so it gets the publish timeout, then the socket closes.
      let timer: NodeJS.Timeout | undefined
      const deadline = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), this.opts.publishTimeoutMs)))
      const drained = nc.drain().then(
        () => 'ok' as const,
        (err: unknown) => {
          this.log.debug({ err }, 'NATS drain failed')
          return 'ok' as const
        },
      )
      if ((await Promise.race([drained, deadline])) === 'late') this.log.warn({}, 'NATS drain timed out: closing')
      clearTimeout(timer)
      await nc.close().catch(() => {})
    }
    this.publisher?.close('closed', 'bus is closed')
    // A connect attempt in flight ends within its handshake timeout; the loop closes what it brings.
    await this.loop?.catch(() => {})
    this.subs.clear()
  }

  private async connectLoop(firstAttempt: () => void): Promise<void> {
    let failures = 0
    while (!this.closing) {
      let nc: NatsConnection
      try {
        nc = await connect({
          servers: this.parsed.servers,
          ...(this.parsed.user !== undefined ? { user: this.parsed.user, pass: this.parsed.pass } : {}),
          ...(this.parsed.token !== undefined ? { token: this.parsed.token } : {}),
          ...(this.parsed.tls ? { tls: {} } : {}),
          timeout: this.opts.connectTimeoutMs,
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectDelayHandler: () => this.retryDelay(),
          // Async traces capture a stack per request: measurable on the persist hot path.
          noAsyncTraces: true,
        })
      } catch (err) {
        if (failures === 0) this.log.warn({ err, servers: this.parsed.display }, 'NATS not reachable: retrying in the background')
        failures++
        firstAttempt()
        await this.sleep(this.retryDelay())
        continue
      }
      if (this.closing) {
        await nc.close().catch(() => {})
        return
      }
      await this.attach(nc)
      firstAttempt()
      const err = await nc.closed()
      if (this.closing) return
      // nats.js gave up (it does after repeated auth errors): start over with a new connection.
      this.log.warn({ err }, 'NATS connection closed: connecting again')
      this.detach('reconnecting')
      failures = 0
    }
  }

  private async attach(nc: NatsConnection): Promise<void> {
    this.nc = nc
    this.linkUp = true
    this.js = jetstream(nc, { timeout: this.opts.publishTimeoutMs })
    // coalesce: persists arrive from separate socket reads (one write each otherwise); measured +5-10 % under load.
    this.publisher = new JetStreamPublisher(nc, { jetstreamEnabled: () => this.state.jetstream, coalesce: true })
    this.jsm = await jetstreamManager(nc, { checkAPI: false, timeout: this.opts.publishTimeoutMs })
    for (const rec of this.subs) this.attachSub(nc, rec)
    void this.watch(nc)
    await this.checkJetStream(nc)
    this.setUp(nc)
  }

  private detach(reason: string): void {
    this.linkUp = false
    this.nc = undefined
    this.js = undefined
    this.jsm = undefined
    this.publisher?.close('disconnected', 'NATS connection replaced')
    this.publisher = undefined
    for (const rec of this.subs) rec.sub = undefined
    this.setDown(reason)
  }

  /** nats.js resubscribes by itself on reconnect; status events only move the state. */
  private async watch(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (this.closing || this.nc !== nc) return
      switch (s.type) {
        case 'disconnect':
          this.linkUp = false
          // Acks of what is in flight went with the link: fail them now, not at their timeout.
          this.publisher?.failAll('disconnected', 'NATS connection lost before the ack')
          this.setDown('disconnected')
          break
        case 'reconnecting':
          if (!this.up) this.state = { ...this.state, reason: 'reconnecting' }
          break
        case 'reconnect':
          this.linkUp = true
          this.setUp(nc)
          // Up at once; whether JetStream is there (it may be another server now) follows.
          void this.checkJetStream(nc).then(() => this.up && this.nc === nc && this.setUp(nc))
          break
        case 'ldm':
          this.log.info({ server: s.server }, 'NATS server entering lame duck mode: will move to another')
          break
        case 'error':
          this.log.warn({ err: s.error }, 'NATS server reported an error')
          break
        case 'slowConsumer':
          this.log.warn({ subject: s.sub.getSubject(), pending: s.pending }, 'NATS subscriber falling behind')
          break
        default:
          break
      }
    }
  }

  private async checkJetStream(nc: NatsConnection): Promise<void> {
    try {
      await this.jsm?.getAccountInfo()
      this.state = { ...this.state, jetstream: true }
    } catch (err) {
      const off = errName(err) === 'JetStreamNotEnabled' || (err as { code?: unknown }).code === 10039
      if (off) this.log.warn({ server: nc.getServer() }, 'JetStream is not enabled on the NATS server: persist will fail')
      this.state = off ? { ...this.state, jetstream: false } : { ...this.state, jetstream: undefined }
    }
  }

  private attachSub(nc: NatsConnection, rec: SubRecord): void {
    try {
      rec.sub = nc.subscribe(rec.subject, {
        ...(rec.queue !== undefined ? { queue: rec.queue } : {}),
        callback: (err, msg) => this.deliver(rec, err, msg),
      })
    } catch (err) {
      this.log.error({ err, subject: rec.subject }, 'NATS subscribe failed')
    }
  }

  private deliver(rec: SubRecord, err: Error | null, msg: Msg): void {
    if (err !== null) {
      this.log.error({ err, subject: rec.subject }, 'NATS subscription failed')
      return
    }
    try {
      rec.handler({ subject: msg.subject, data: msg.data, headers: fromMsgHdrs(msg.headers) })
    } catch (handlerErr) {
      this.log.error({ err: handlerErr, subject: msg.subject }, 'bus subscriber failed')
    }
  }

  private setUp(nc: NatsConnection): void {
    // A disconnect may have come while the JetStream check was out.
    if (this.closing || !this.linkUp || this.nc !== nc) return
    const server = serverUrl(nc.getServer(), this.parsed.tls)
    const jetstream = this.state.jetstream
    this.state = { status: 'up', mode: this.mode, server, ...(jetstream !== undefined ? { jetstream } : {}) }
    if (this.up) return
    this.up = true
    this.log.info({ server, jetstream, down_ms: Date.now() - this.downSince }, 'bus up: connected to NATS')
    this.emit()
  }

  private setDown(reason: string): void {
    if (!this.up && this.state.reason === reason) return
    const wasUp = this.up
    if (wasUp) this.downSince = Date.now()
    this.up = false
    const { server, jetstream } = this.state
    this.state = {
      status: 'down',
      mode: this.mode,
      reason,
      since: iso(this.downSince),
      ...(server !== undefined ? { server } : {}),
      ...(jetstream !== undefined ? { jetstream } : {}),
    }
    if (!wasUp) return
    this.log.warn({ server, reason }, 'bus down: NATS connection lost')
    this.emit()
  }

  private emit(): void {
    const s = this.status()
    for (const l of this.listeners) {
      try {
        l(s)
      } catch (err) {
        this.log.error({ err }, 'bus status listener failed')
      }
    }
  }

  /** Waits grow with the outage (a quarter of it), so a blip heals fast and a long outage costs little. */
  private retryDelay(): number {
    const outage = Date.now() - this.downSince
    const base = Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, outage / 4))
    return Math.round(base * (0.75 + Math.random() * 0.5))
  }

  private sleep(ms: number): Promise<void> {
    return wakeableSleep(ms, (wake) => (this.wake = wake))
  }

  private notUp(): BusError {
    if (this.closing) return new BusError('closed', 'bus is closed')
    return new BusError('disconnected', `not connected to NATS (${this.state.reason ?? 'down'})`)
  }

  /** nats.js errors → the bus's kinds. `publishing`: no responders means no stream takes the subject. */
  private toBusError(err: unknown, publishing: boolean): BusError {
    if (err instanceof BusError) return err
    const name = errName(err)
    const code = (err as { code?: unknown } | null)?.code
    const cause = { cause: err }
    const text = err instanceof Error ? err.message : String(err)
    if (this.closing || name === 'DrainingConnectionError') return new BusError('closed', 'bus is closed', cause)
    if (name === 'ClosedConnectionError') return new BusError('disconnected', 'NATS connection closed', cause)
    if (name === 'TimeoutError') return new BusError('timeout', `no answer from NATS in time: ${text}`, cause)
    if (name === 'JetStreamNotEnabled' || code === 503 || code === 10039) {
      // A JetStream publish to a subject no stream covers has no responders, which nats.js
      // reports as "JetStream not enabled": what the account said decides which it is.
      if (code === 10039 || !publishing || this.state.jetstream === false) {
        return new BusError('no_jetstream', 'JetStream is not enabled on the NATS server', cause)
      }
      return new BusError('no_stream', 'no JetStream stream takes this subject', cause)
    }
    if (name === 'RequestError' && /disconnect/i.test(text)) return new BusError('disconnected', text, cause)
    return new BusError('refused', text, cause)
  }
}

function toMsgHdrs(h: BusHeaders): MsgHdrs {
  const out = natsHeaders()
  for (const k in h) out.set(k, h[k]!)
  return out
}

function fromMsgHdrs(h: MsgHdrs | undefined): BusHeaders | undefined {
  if (h === undefined) return undefined
  const out: BusHeaders = {}
  for (const [k, v] of h) out[k] = v[0] ?? ''
  return out
}

function errName(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined
}

function serverUrl(hostPort: string, tls: boolean): string {
  return hostPort === '' ? '' : `${tls ? 'tls' : 'nats'}://${hostPort}`
}

function iso(ms: number): string {
  return new Date(ms).toISOString()
}
