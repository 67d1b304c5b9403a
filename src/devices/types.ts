/**
 * What the device directory (provisioning, src/devices/plugin.ts) offers the embedded
 * broker (src/devices/broker-plugin.ts), and the bus subject between instances.
 */

export interface DeviceRecord {
  id: string
  type: string
  createdAt: Date
  /** Starts at 1; every credential rotation adds one. A session of an older generation is closed. */
  generation: number
}

export type DeviceAuthResult =
  | { ok: true; device: DeviceRecord }
  /** unknown: no such mqtt_user (or no password); bad_password; deleted: the device existed and was deleted. */
  | { ok: false; reason: 'unknown' | 'bad_password' | 'deleted' }

export interface DeviceDirectory {
  /** CONNECT: user name = mqtt_user, password compared in constant time against the stored hash. */
  authenticate(mqttUser: string, password: Buffer | undefined): Promise<DeviceAuthResult>
  /** The current generation of each of these devices; a device deleted or unknown is absent. */
  generations(ids: readonly string[]): Promise<Map<string, number>>
  /** A device's MQTT session began on this instance (for `connected` in GET /devices, across instances). */
  sessionOpened(deviceId: string, sessionId: string): void
  /** ...and ended. */
  sessionClosed(deviceId: string, sessionId: string): void
}

/** Published on the bus (core NATS) after a delete or a rotation; every instance closes that device's sessions. */
export const DEVICE_REVOKED_SUBJECT = 'mc.devices.revoked'

export interface DeviceRevokedEvent {
  id: string
  reason: 'deleted' | 'rotated'
  /** rotated: the new generation (sessions of older ones close). */
  generation?: number
}

/** What the rest of the gateway sees of the embedded broker (`app.broker`). */
export interface BrokerHandle {
  /** The MQTT TCP port listened on; null when the broker is off. */
  readonly port: number | null
  /** For /readyz: `absent` when MQTT_ENABLED=false. */
  status(): { status: 'up' | 'down' | 'absent' } & Record<string, unknown>
}
