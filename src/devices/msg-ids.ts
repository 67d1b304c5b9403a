import { createHash, randomBytes } from 'node:crypto'

/**
 * JetStream's default de-duplication window: a `Nats-Msg-Id` seen again within it is
 * dropped by the stream. Remembering an id longer than that protects nothing.
 */
export const DEDUP_WINDOW_MS = 120_000

/** How often, at most, remembered ids are checked for age (on access, no timer). */
const SWEEP_EVERY_MS = 10_000

interface Pending {
  id: string
  /** Epoch ms it was last seen (assigned or redelivered). */
  at: number
  topic: string
  /** While its forward is under way (it is in memory anyway); afterwards only its digest. */
  payload: Buffer | undefined
  digest: string | undefined
}

/**
 * Where a QoS 1 packet id lives: MQTT packet ids are per session, so per device and,
 * when the broker says, per client id (two connections of one device may use the same
 * packet id at once). The packet id is the last part, so one device holds at most
 * 65,536 slots by construction.
 */
export function slotOf(deviceId: string, clientId: string | undefined, packetId: number): string {
  return clientId === undefined ? `${deviceId}\u0000${packetId}` : `${deviceId}\u0000${clientId}\u0000${packetId}`
}

function digestOf(payload: Buffer): string {
  return createHash('sha1').update(payload).digest('base64')
}

/**
 * `Nats-Msg-Id`s for device publishes. Every message gets a fresh id (a random boot id
 * of this process and a counter, so instances and restarts never collide); only a
 * redelivery of a QoS 1 message that is still unacknowledged gets the id its first
 * delivery had, so JetStream stores it once.
 *
 * A redelivery is the same packet id, topic and payload in the same session while the
 * first delivery is unacknowledged. The DUP flag is not required: a client may not reuse
 * a packet id before its PUBACK, and mqtt.js (5.x) redelivers without DUP. The payload
 * must match so that a client that started over (new session, packet ids from 1) does
 * not have a new message dropped as a duplicate of an old one.
 *
 * An id is remembered only until its message is stored (PUBACK follows): the same
 * packet id after that is a new message, even with DUP. Reusing an acknowledged
 * message's id could make JetStream drop a different message (a client reusing the
 * packet id loses the first copy of the new message on a broken connection); storing a
 * redelivery whose PUBACK was lost twice is the safe side of that choice (at least once).
 */
export class MessageIds {
  private readonly boot: string
  private counter = 0
  private readonly pending = new Map<string, Pending>()
  private readonly windowMs: number
  private lastSweep = 0
  /** Whether the last idFor found a redelivery (a field, not a result object: no allocation per message). */
  redelivered = false

  constructor(opts: { bootId?: string; windowMs?: number } = {}) {
    this.boot = opts.bootId ?? randomBytes(6).toString('base64url')
    this.windowMs = opts.windowMs ?? DEDUP_WINDOW_MS
  }

  /** This process's prefix of every id. */
  get bootId(): string {
    return this.boot
  }

  /** Unacknowledged QoS 1 messages remembered now. */
  get size(): number {
    return this.pending.size
  }

  /** A fresh id, not remembered (QoS 0, or a QoS 1 packet without id). */
  next(): string {
    return `${this.boot}-${(++this.counter).toString(36)}`
  }

  /**
   * The id of the message in this slot, when this publish is its redelivery (the first
   * delivery is not stored yet, same topic and payload); else a fresh id, remembered
   * until `stored`. `redelivered` tells which (read it right after the call).
   */
  idFor(slot: string, topic: string, payload: Buffer, now: number): string {
    if (now - this.lastSweep >= SWEEP_EVERY_MS) this.sweep(now)
    const p = this.pending.get(slot)
    if (p === undefined) {
      this.redelivered = false
      const id = this.next()
      this.pending.set(slot, { id, at: now, topic, payload, digest: undefined })
      return id
    }
    if (now - p.at < this.windowMs && p.topic === topic && samePayload(p, payload)) {
      this.redelivered = true
      p.at = now
      // This delivery is the one under way now.
      if (p.payload === undefined) {
        p.payload = payload
        p.digest = undefined
      }
      return p.id
    }
    this.redelivered = false
    p.id = this.next()
    p.at = now
    p.topic = topic
    p.payload = payload
    p.digest = undefined
    return p.id
  }

  /** The message with this id was stored: the same packet id from now on is a new message. */
  stored(slot: string, id: string): void {
    // Only if the slot still holds this message (a newer one may have taken it).
    if (this.pending.get(slot)?.id === id) this.pending.delete(slot)
  }

  /**
   * The message with this id was not stored (the device will deliver it again): keep its
   * id for the window, and of its payload only a digest, to know the redelivery.
   */
  notStored(slot: string, id: string): void {
    const p = this.pending.get(slot)
    if (p === undefined || p.id !== id || p.payload === undefined) return
    p.digest = digestOf(p.payload)
    p.payload = undefined
  }

  /** Forgets ids older than the window (devices that went away without redelivering). */
  sweep(now: number): void {
    this.lastSweep = now
    for (const [slot, p] of this.pending) {
      if (now - p.at >= this.windowMs) this.pending.delete(slot)
    }
  }
}

function samePayload(p: Pending, payload: Buffer): boolean {
  if (p.payload !== undefined) return p.payload.equals(payload)
  return p.digest !== undefined && p.digest === digestOf(payload)
}
