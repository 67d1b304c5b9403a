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
  /** The open connections, for the admin API; absent when MQTT_ENABLED=false. */
  sessions?(): BrokerSessionInfo[]
  /** An administrator ends one connection; false when none has this id. */
  disconnect?(sessionId: string): boolean
}

/** One open MQTT connection as the admin API lists it. */
export interface BrokerSessionInfo {
  id: string
  /** Undefined until CONNECT was authenticated. */
  deviceId: string | undefined
  transport: 'tcp' | 'ws'
  remote: string
  /** Epoch milliseconds. */
  connectedAt: number
}

/** One accepted device publish, as the broker hands it to the forwarder (src/devices/forwarder.ts). */
export interface ForwardRequest {
  deviceId: string
  deviceType: string
  /** The NATS subject (`raw.<id>` or `raw.<id>.a.b`), already checked by the ACL. */
  subject: string
  /** The MQTT topic verbatim (header Mqtt-Topic). */
  topic: string
  payload: Buffer
  qos: 0 | 1
  /** QoS 1: the packet id and its DUP flag (for the Nats-Msg-Id of redeliveries). */
  packetId: number | undefined
  dup: boolean
  /** Epoch ms the broker received the publish (header Received-At). */
  receivedAt: number
}

/** Forwarding gave up: QoS 1 was not stored within MQTT_FORWARD_TIMEOUT_MS (or the gateway is closing). */
export class ForwardTimeoutError extends Error {
  override name = 'ForwardTimeoutError'
}

/**
 * The broker's view of the forwarder. `forward` resolves once the message is stored in
 * JetStream (QoS 1; in-process or core NATS: once published) or sent best-effort (QoS 0,
 * never rejects); it rejects with ForwardTimeoutError when a QoS 1 message could not be
 * stored in time, and the broker then disconnects the client without PUBACK.
 */
export interface DeviceForwarder {
  forward(req: ForwardRequest): Promise<void>
  /** QoS 1 publishes waiting for JetStream now. */
  readonly held: number
  /** Stops taking new forwards; waits (bounded by the forward timeout) for held ones, which then fail. */
  close(): Promise<void>
}
