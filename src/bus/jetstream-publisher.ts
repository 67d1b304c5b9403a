import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node'
import { BusError, type BusHeaders, type BusErrorKind, type PersistResult } from './bus.js'

/** How often pending publishes are checked against their deadlines (one timer for all of them). */
const SWEEP_MS = 100
/** JetStream's "JetStream not enabled for account" API error code. */
const JS_NOT_ENABLED = 10039
/** nats-server's status for a request nobody answers: no stream listens on the subject. */
const NO_RESPONDERS = 503

export interface JetStreamPublisherOptions {
  /** What the account said about JetStream: false turns a 503 into 'no_jetstream' rather than 'no_stream'. */
  jetstreamEnabled(): boolean | undefined
  /** Deadline check period; default 100 ms. */
  sweepMs?: number
  /** Hands the publishes of one event-loop turn to nats.js together, so they leave in one socket write. */
  coalesce?: boolean
}

interface Waiter {
  resolve(result: PersistResult): void
  reject(err: BusError): void
  /** performance.now() past which the publish is given up as 'timeout'. */
  deadline: number
}

interface Queued {
  n: number
  subject: string
  data: Uint8Array
  reply: string
  headers: MsgHdrs | undefined
}

/**
 * JetStream publishes with acks over one connection, without nats.js' request machinery.
 * `js.publish` is a request: per message a RequestOne, a deferred, a timer, and on every
 * successful reply a cancel() that builds an Error with a stack (12 % of the gateway's CPU
 * under load, plus GC). Here a publish is a core PUB with a reply subject
 * `<inbox>.<n>`; ONE subscription on `<inbox>.*` takes every ack, a Map finds its waiter,
 * and ONE periodic sweep expires the late ones. The ack JSON is JetStream's PubAck.
 *
 * One publisher belongs to one connection: nats.js resubscribes the inbox after its own
 * reconnects; a replaced connection gets a new publisher. Across a disconnect the bus
 * calls failAll('disconnected'): the acks of those publishes would never come (the
 * message may or may not be stored: callers retry with the same msgId).
 */
export class JetStreamPublisher {
  private readonly prefix: string
  private readonly sub: Subscription
  private readonly waiters = new Map<number, Waiter>()
  private readonly queue: Queued[] = []
  private next = 0
  private sweeper: NodeJS.Timeout | undefined
  private flushScheduled = false
  private closed: BusErrorKind | undefined
  private readonly sweepMs: number
  private readonly flush = () => this.flushQueue()

  constructor(
    private readonly nc: NatsConnection,
    private readonly opts: JetStreamPublisherOptions,
  ) {
    const inbox = createInbox()
    this.prefix = `${inbox}.`
    this.sweepMs = opts.sweepMs ?? SWEEP_MS
    this.sub = nc.subscribe(`${inbox}.*`, { callback: (err, msg) => this.onReply(err, msg) })
  }

  /** Publishes waiting for their ack. */
  get pending(): number {
    return this.waiters.size
  }

  /** Rejects with BusError: 'timeout', 'no_stream', 'no_jetstream', 'refused', 'disconnected', 'closed'. */
  publish(subject: string, data: Uint8Array, msgId: string | undefined, headers: BusHeaders | undefined, timeoutMs: number): Promise<PersistResult> {
    if (this.closed !== undefined) return Promise.reject(new BusError(this.closed, 'not connected to NATS'))
    let encoded: MsgHdrs | undefined
    try {
      encoded = msgId === undefined && headers === undefined ? undefined : encodeHeaders(headers, msgId)
    } catch (err) {
      return Promise.reject(err)
    }
    const n = ++this.next
    const reply = this.prefix + n
    return new Promise<PersistResult>((resolve, reject) => {
      this.waiters.set(n, { resolve, reject, deadline: performance.now() + timeoutMs })
      this.sweeper ??= setInterval(() => this.sweep(), this.sweepMs).unref()
      if (this.opts.coalesce !== true) {
        this.send(n, subject, data, reply, encoded)
        return
      }
      this.queue.push({ n, subject, data, reply, headers: encoded })
      if (!this.flushScheduled) {
        this.flushScheduled = true
        setImmediate(this.flush)
      }
    })
  }

  /** Rejects every publish still waiting (its ack cannot come any more). */
  failAll(kind: BusErrorKind, message: string): void {
    this.queue.length = 0
    if (this.waiters.size === 0) return
    // One error for all of them: they failed for the same reason.
    const err = new BusError(kind, message)
    const waiting = [...this.waiters.values()]
    this.waiters.clear()
    this.stopSweeper()
    for (const w of waiting) w.reject(err)
  }

  /** Fails what is pending with `kind` and takes no more publishes. */
  close(kind: BusErrorKind, message: string): void {
    if (this.closed !== undefined) return
    this.closed = kind
    this.failAll(kind, message)
    try {
      this.sub.unsubscribe()
    } catch {
      // The connection is closed already: the subscription went with it.
    }
  }

  private send(n: number, subject: string, data: Uint8Array, reply: string, headers: MsgHdrs | undefined): void {
    try {
      this.nc.publish(subject, data, headers === undefined ? { reply } : { reply, headers })
    } catch (err) {
      const w = this.take(n)
      w?.reject(publishError(err))
    }
  }

  private flushQueue(): void {
    this.flushScheduled = false
    const batch = this.queue.splice(0)
    for (const q of batch) {
      // Failed meanwhile (a disconnect): nothing waits for it any more.
      if (this.waiters.has(q.n)) this.send(q.n, q.subject, q.data, q.reply, q.headers)
    }
  }

  private onReply(err: Error | null, msg: Msg): void {
    if (err !== null) {
      // The inbox subscription itself failed (a permission violation): no ack can arrive.
      this.failAll('refused', `JetStream ack subscription failed: ${err.message}`)
      return
    }
    const w = this.take(Number(msg.subject.slice(this.prefix.length)))
    if (w === undefined) return // expired, or failed by a disconnect: its ack came late
    const h = msg.headers
    if (h !== undefined && h.hasError) {
      if (h.code === NO_RESPONDERS) {
        w.reject(
          this.opts.jetstreamEnabled() === false
            ? new BusError('no_jetstream', 'JetStream is not enabled on the NATS server')
            : new BusError('no_stream', 'no JetStream stream takes this subject'),
        )
      } else {
        w.reject(new BusError('refused', `NATS answered ${h.status}`))
      }
      return
    }
    let ack: unknown
    try {
      ack = JSON.parse(decoder.decode(msg.data))
    } catch {
      w.reject(new BusError('refused', 'JetStream sent an ack that is not JSON'))
      return
    }
    const a = ack as { stream?: unknown; seq?: unknown; duplicate?: unknown; error?: { err_code?: unknown; description?: unknown } }
    if (typeof a.stream === 'string' && a.stream !== '' && typeof a.seq === 'number') {
      w.resolve({ stream: a.stream, seq: a.seq, duplicate: a.duplicate === true })
      return
    }
    if (typeof a.error === 'object' && a.error !== null) {
      const text = typeof a.error.description === 'string' ? a.error.description : 'JetStream refused the message'
      w.reject(a.error.err_code === JS_NOT_ENABLED ? new BusError('no_jetstream', text) : new BusError('refused', text))
      return
    }
    w.reject(new BusError('refused', 'JetStream sent an invalid ack'))
  }

  private take(n: number): Waiter | undefined {
    const w = this.waiters.get(n)
    if (w === undefined) return undefined
    this.waiters.delete(n)
    if (this.waiters.size === 0) this.stopSweeper()
    return w
  }

  private sweep(): void {
    const now = performance.now()
    let late: BusError | undefined
    for (const [n, w] of this.waiters) {
      if (w.deadline > now) continue
      this.waiters.delete(n)
      late ??= new BusError('timeout', 'no answer from NATS in time')
      w.reject(late)
    }
    if (this.waiters.size === 0) this.stopSweeper()
  }

  private stopSweeper(): void {
    if (this.sweeper === undefined) return
    clearInterval(this.sweeper)
    this.sweeper = undefined
  }
}

const decoder = new TextDecoder()
const encoder = new TextEncoder()
/** Header names: printable ASCII without ':' (what nats.js accepts). */
const HEADER_NAME = /^[!-9;-~]+$/
const CR_LF = /[\r\n]/

/**
 * The NATS header block, built once as bytes. nats.js' MsgHdrs.set() lists and filters
 * the keys on every call (twice), which showed in profiles; its publish only calls
 * `encode()` on the headers it is given, so an object with that one method is enough.
 */
function encodeHeaders(headers: BusHeaders | undefined, msgId: string | undefined): MsgHdrs {
  let block = 'NATS/1.0'
  for (const k in headers) {
    // The msgId option wins, as with js.publish.
    if (msgId !== undefined && k === 'Nats-Msg-Id') continue
    const v = headers[k]!
    if (!HEADER_NAME.test(k)) throw new BusError('refused', `invalid header name "${k}"`)
    if (CR_LF.test(v)) throw new BusError('refused', `header ${k}: values cannot contain CR or LF`)
    block += `\r\n${k}: ${v}`
  }
  if (msgId !== undefined) {
    if (CR_LF.test(msgId)) throw new BusError('refused', 'Nats-Msg-Id cannot contain CR or LF')
    block += `\r\nNats-Msg-Id: ${msgId}`
  }
  const bytes = encoder.encode(`${block}\r\n\r\n`)
  return { encode: () => bytes } as unknown as MsgHdrs
}

/** A publish nats.js refused synchronously. */
function publishError(err: unknown): BusError {
  const name = err instanceof Error ? err.name : ''
  const text = err instanceof Error ? err.message : String(err)
  if (name === 'DrainingConnectionError') return new BusError('closed', 'bus is closed', { cause: err })
  if (name === 'ClosedConnectionError') return new BusError('disconnected', 'NATS connection closed', { cause: err })
  return new BusError('refused', text, { cause: err })
}
