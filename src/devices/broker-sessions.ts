import { randomUUID } from 'node:crypto'
import type { Client } from 'aedes'
import type { DeviceRecord } from './types.js'

export type Transport = 'tcp' | 'ws'

/** What the broker knows of one network connection, from accept to close. */
export interface Session {
  /** For app.devices.sessionOpened/Closed. */
  readonly id: string
  readonly transport: Transport
  readonly address: string
  /** Epoch milliseconds: when the connection was accepted (the admin API lists it). */
  readonly connectedAt: number
  /** Set once CONNECT was authenticated. */
  device: DeviceRecord | undefined
  /** The gateway ends it (revoked, shutting down, forwarding gave up): nothing more is taken, no will. */
  ended: boolean
  /** The connection is gone. */
  gone: boolean
  /** Publishes received from it (the admin API lists them). */
  messages: number
  /** Why the last publish or CONNECT of it was refused. */
  lastError: string | undefined
}

/** A revocation seen this recently also refuses a CONNECT whose credential check raced with it. */
const REVOCATION_MEMORY_MS = 10_000

/**
 * The broker's connections: every open one, the authenticated ones by device (for
 * revocations and commands), and the revocations heard lately.
 */
export class BrokerSessions {
  private readonly open = new Map<Client, Session>()
  // Also after the connection closed: a delayed MQTT 5 will is published later.
  private readonly of = new WeakMap<Client, Session>()
  private readonly byDevice = new Map<string, Set<Client>>()
  private readonly revoked = new Map<string, { deleted: boolean; generation: number; at: number }>()
  private authenticatedCount = 0

  add(client: Client, transport: Transport, address: string): Session {
    const s: Session = { id: randomUUID(), transport, address, connectedAt: Date.now(), device: undefined, ended: false, gone: false, messages: 0, lastError: undefined }
    this.open.set(client, s)
    this.of.set(client, s)
    return s
  }

  get(client: Client): Session | undefined {
    return this.of.get(client)
  }

  /** Open connections (authenticated or not). */
  entries(): IterableIterator<[Client, Session]> {
    return this.open.entries()
  }

  authenticated(client: Client, s: Session, device: DeviceRecord): void {
    s.device = device
    let set = this.byDevice.get(device.id)
    if (set === undefined) this.byDevice.set(device.id, (set = new Set()))
    set.add(client)
    this.authenticatedCount++
  }

  /** The connection closed; false when it was already accounted for. */
  remove(client: Client, s: Session): boolean {
    if (s.gone) return false
    s.gone = true
    this.open.delete(client)
    if (s.device === undefined) return true
    const set = this.byDevice.get(s.device.id)
    if (set?.delete(client) === true) {
      this.authenticatedCount--
      if (set.size === 0) this.byDevice.delete(s.device.id)
    }
    return true
  }

  /** Authenticated connections now. */
  get authenticatedClients(): number {
    return this.authenticatedCount
  }

  hasDevice(deviceId: string): boolean {
    return this.byDevice.has(deviceId)
  }

  clientsOf(deviceId: string): Client[] {
    return [...(this.byDevice.get(deviceId) ?? [])]
  }

  deviceIds(): string[] {
    return [...this.byDevice.keys()]
  }

  rememberRevocation(deviceId: string, deleted: boolean, generation: number): void {
    const now = Date.now()
    const prev = this.revoked.get(deviceId)
    for (const [id, r] of this.revoked) if (now - r.at > REVOCATION_MEMORY_MS) this.revoked.delete(id)
    this.revoked.set(deviceId, {
      deleted: deleted || prev?.deleted === true,
      generation: Math.max(generation, prev?.generation ?? 0),
      at: now,
    })
  }

  /** Whether a revocation heard lately outdates this record: 'deleted', 'rotated' or undefined. */
  revocationOf(device: DeviceRecord): 'deleted' | 'rotated' | undefined {
    const r = this.revoked.get(device.id)
    if (r === undefined || Date.now() - r.at > REVOCATION_MEMORY_MS) return undefined
    if (r.deleted) return 'deleted'
    return device.generation < r.generation ? 'rotated' : undefined
  }
}

/** What the admin API lists of a session beyond its connection. */
export interface SessionActivity {
  deviceType: string | undefined
  messages: number
  lastError: string | undefined
}
