import type { FastifyBaseLogger } from 'fastify'
import type { Bus, BusSubscription } from '../bus/bus.js'
import { DEVICE_REVOKED_SUBJECT, type DeviceDirectory, type DeviceRevokedEvent } from './types.js'

export interface RevocationTarget {
  revoke(deviceId: string, reason: 'deleted' | 'rotated', generation?: number): number
  enforce(deviceId: string, generation: number | undefined): number
  connectedDeviceIds(): string[]
}

export interface RevocationWatchDeps {
  bus: Pick<Bus, 'subscribe'>
  devices: Pick<DeviceDirectory, 'generations'>
  broker: RevocationTarget
  log: FastifyBaseLogger
  /** How often the generations of connected devices are checked against the directory. */
  checkMs: number
}

/**
 * Closes the sessions of deleted and rotated devices: at once when the bus carries the
 * event (from whichever instance made the change), and as a safety net for an event the
 * bus lost (NATS down at that moment) by checking the connected devices' generations
 * every `checkMs`.
 */
export class RevocationWatch {
  private sub: BusSubscription | undefined
  private timer: NodeJS.Timeout | undefined
  private checking = false

  constructor(private readonly deps: RevocationWatchDeps) {}

  start(): void {
    this.sub = this.deps.bus.subscribe(DEVICE_REVOKED_SUBJECT, (msg) => {
      const event = parseEvent(msg.data)
      if (event === undefined) {
        this.deps.log.warn({ subject: msg.subject }, 'malformed device revocation event ignored')
        return
      }
      this.deps.broker.revoke(event.id, event.reason, event.generation)
    })
    this.timer = setInterval(() => void this.check(), this.deps.checkMs)
    this.timer.unref()
  }

  stop(): void {
    this.sub?.unsubscribe()
    this.sub = undefined
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** One pass of the safety net. */
  async check(): Promise<void> {
    if (this.checking) return
    const ids = this.deps.broker.connectedDeviceIds()
    if (ids.length === 0) return
    this.checking = true
    try {
      const current = await this.deps.devices.generations(ids)
      for (const id of ids) this.deps.broker.enforce(id, current.get(id))
    } catch (err) {
      this.deps.log.warn({ err }, 'device generation check failed: retried at the next one')
    } finally {
      this.checking = false
    }
  }
}

function parseEvent(data: Uint8Array): DeviceRevokedEvent | undefined {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'))
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null) return undefined
  const { id, reason, generation } = value as Record<string, unknown>
  if (typeof id !== 'string' || (reason !== 'deleted' && reason !== 'rotated')) return undefined
  if (generation !== undefined && (typeof generation !== 'number' || !Number.isInteger(generation))) return undefined
  if (reason === 'rotated' && generation === undefined) return undefined
  return { id, reason, ...(generation !== undefined ? { generation } : {}) }
}
