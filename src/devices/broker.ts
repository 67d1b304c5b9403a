import type { IncomingMessage } from 'node:http'
import type { Server } from 'node:net'
import type { Duplex } from 'node:stream'
import {
  Aedes,
  type AedesPublishPacket,
  type AuthenticateError,
  type AuthErrorCode,
  type Client,
  type ConnectPacket,
  type PublishPacket,
  type Subscription,
} from 'aedes'
import type { FastifyBaseLogger } from 'fastify'
import type { ErrorRecorder } from '../admin/recorder.js'
import type { Metrics } from '../observability/metrics.js'
import { commandTarget, maySubscribe, publishSubject } from './acl.js'
import { listenMqtt, type ListenOptions } from './broker-listener.js'
import { BrokerSessions, type Session, type SessionActivity, type Transport } from './broker-sessions.js'
import type { ConnectionGuard } from './connection-guard.js'
import type { ForwardInput } from './forwarder.js'
import type { BrokerSessionInfo, DeviceDirectory, DeviceForwarder } from './types.js'

export { BrokerListenError } from './broker-listener.js'
export type { Transport } from './broker-sessions.js'

export interface BrokerOptions extends ListenOptions {
  maxPacketBytes: number
  connectTimeoutMs: number
  keepaliveMaxS: number
}

export interface BrokerDeps {
  devices: DeviceDirectory
  forwarder: DeviceForwarder & { forward(req: ForwardInput): Promise<void> }
  guard: ConnectionGuard
  log: FastifyBaseLogger
  metrics: Pick<Metrics, 'mqttConnections' | 'mqttMessages' | 'mqttCommands' | 'beforeScrape'>
  /** Refused CONNECTs go to the admin dashboard's last errors. */
  errors?: Pick<ErrorRecorder, 'record'>
}

// CONNACK return codes (MQTT 3.1.1 §3.2.2.3); aedes answers MQTT 5 clients with the
// reason codes 0x88, 0x86, 0x87. AuthErrorCode is a const enum, unusable under isolatedModules.
const SERVER_UNAVAILABLE = 3 as AuthErrorCode
const BAD_USERNAME_OR_PASSWORD = 4 as AuthErrorCode
const NOT_AUTHORIZED = 5 as AuthErrorCode

// MQTT 5 DISCONNECT reason codes (§3.14.2.1) for connections the gateway ends.
const PROTOCOL_ERROR = 0x82
const SERVER_BUSY = 0x89
const SERVER_SHUTTING_DOWN = 0x8b
const ADMINISTRATIVE_ACTION = 0x98

function authError(returnCode: AuthErrorCode, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode })
}

const refusedFor = (r: 'deleted' | 'rotated') =>
  r === 'deleted' ? authError(NOT_AUTHORIZED, 'device deleted') : authError(BAD_USERNAME_OR_PASSWORD, 'bad user name or password')

const noop = () => {}

/**
 * The embedded MQTT broker (aedes): authentication against the device directory, the
 * per-device ACL, and forwarding inside `authorizePublish`, because aedes writes the QoS 1
 * PUBACK (QoS 2: PUBREC) right after that hook calls back: the device is acknowledged
 * only once the forwarder has the message stored. aedes handles the packets of one read
 * chunk concurrently and reads the next chunk only when all are done, so a connection
 * whose publishes are held is not read meanwhile: that is the backpressure while NATS is
 * down, without any queue of ours.
 */
export class EmbeddedBroker {
  private readonly sessions = new BrokerSessions()
  private readonly counts = { received: 0, refused: 0 }
  private server: Server | undefined
  private boundPort: number | null = null
  private listenerError: Error | undefined
  private closing = false
  private closed: Promise<void> | undefined

  private constructor(
    private readonly aedes: Aedes,
    private readonly opts: BrokerOptions,
    private readonly deps: BrokerDeps,
  ) {
    const m = deps.metrics
    const received = m.mqttMessages.labels('received')
    const refused = m.mqttMessages.labels('refused')
    // Plain numbers per message; the counters get them when /metrics is read.
    m.beforeScrape(() => {
      if (this.counts.received > 0) received.inc(this.counts.received)
      if (this.counts.refused > 0) refused.inc(this.counts.refused)
      this.counts.received = this.counts.refused = 0
    })
    aedes.on('connectionError', (client, err) => {
      // Before an accepted CONNECT: a parser error, no CONNECT in time, a bad protocol version.
      m.mqttConnections.inc({ result: 'protocol_error' })
      deps.log.debug({ err, remote: this.sessions.get(client)?.address }, 'MQTT connection refused')
    })
    aedes.on('clientError', (client, err) => {
      const s = this.sessions.get(client)
      deps.log.debug({ err, device_id: s?.device?.id, mqtt_client: client.id, remote: s?.address }, 'MQTT client error')
    })
  }

  /** Builds the broker and listens on TCP (see ListenOptions.portExplicit for a taken port). */
  static async start(opts: BrokerOptions, deps: BrokerDeps): Promise<EmbeddedBroker> {
    let self: EmbeddedBroker | undefined
    const me = () => self as EmbeddedBroker
    const aedes = await Aedes.createBroker({
      connectTimeout: opts.connectTimeoutMs,
      // [MQTT-3.2.2-15] aedes enforces it for every protocol version, also before CONNECT.
      maximumPacketSize: opts.maxPacketBytes,
      // MQTT 5 clients asking for none or more get it as Server Keep Alive; 3.1.1: preConnect.
      keepaliveLimit: opts.keepaliveMaxS,
      preConnect: (_client, packet, cb) => me().preConnect(packet, cb),
      authenticate: (client, username, password, cb) => me().authenticate(client, username, password, cb),
      authorizePublish: (client, packet, cb) => me().authorizePublish(client, packet, cb),
      authorizeSubscribe: (client, sub, cb) => me().authorizeSubscribe(client, sub, cb),
      authorizeForward: (client, packet) => me().authorizeForward(client, packet),
    })
    self = new EmbeddedBroker(aedes, opts, deps)
    try {
      const { server, port } = await listenMqtt(opts, deps.log, (socket) => me().handle(socket, 'tcp', socket.remoteAddress ?? 'unknown'))
      self.server = server
      self.boundPort = port
      server.on('error', (err) => {
        me().listenerError = err
        deps.log.error({ err }, 'MQTT listener failed')
      })
    } catch (err) {
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      throw err
    }
    return self
  }

  /** The TCP port listened on. */
  get port(): number | null {
    return this.boundPort
  }

  /** Authenticated connections now. */
  get clients(): number {
    return this.sessions.authenticatedClients
  }

  status(): { up: boolean; reason?: string } {
    if (this.listenerError !== undefined) return { up: false, reason: `listener failed: ${this.listenerError.message}` }
    if (this.closing) return { up: false, reason: 'closing' }
    return { up: true }
  }

  /** Ids of the devices with a session here (for the periodic revocation check). */
  connectedDeviceIds(): string[] {
    return this.sessions.deviceIds()
  }

  /**
   * Takes a connection (TCP socket, or a WebSocket's stream), unless the gateway is closing
   * or the address holds its connection cap: then it is closed before any MQTT is read.
   */
  handle(stream: Duplex, transport: Transport, address: string, req?: IncomingMessage): boolean {
    if (this.closing) {
      stream.destroy()
      return false
    }
    if (!this.deps.guard.admit(address)) {
      this.deps.metrics.mqttConnections.inc({ result: 'over_limit' })
      this.deps.log.debug({ remote: address, transport }, 'MQTT connection over the per-address cap: closed')
      stream.destroy()
      return false
    }
    const client = this.aedes.handle(stream, req)
    const s = this.sessions.add(client, transport, address)
    stream.once('close', () => {
      if (!this.sessions.remove(client, s)) return
      this.deps.guard.release(s.address)
      if (s.device !== undefined) this.deps.devices.sessionClosed(s.device.id, s.id)
    })
    return true
  }

  /**
   * A revocation from the bus: closes the device's sessions here, all of them when it was
   * deleted, those of an older credential generation when it was rotated, and remembers it
   * briefly for CONNECTs whose credential check raced with it.
   */
  revoke(deviceId: string, reason: 'deleted' | 'rotated', generation = 0): number {
    this.sessions.rememberRevocation(deviceId, reason === 'deleted', generation)
    return this.enforce(deviceId, reason === 'deleted' ? undefined : generation)
  }

  /**
   * What the periodic check found: `generation` the device's current one (sessions of older
   * ones close), undefined when it is gone (all close). Nothing is remembered.
   */
  enforce(deviceId: string, generation: number | undefined): number {
    let closed = 0
    for (const client of this.sessions.clientsOf(deviceId)) {
      const s = this.sessions.get(client)
      if (s?.device === undefined || (generation !== undefined && s.device.generation >= generation)) continue
      const reason = generation === undefined ? 'deleted' : 'rotated'
      this.deps.log.info({ device_id: deviceId, mqtt_client: client.id, reason }, 'MQTT session closed: credentials revoked')
      this.end(client, s, ADMINISTRATIVE_ACTION)
      closed++
    }
    return closed
  }

  /**
   * Delivers a NATS `cmd.<id>[.a.b]` message to that device's matching subscriptions on the
   * topic of the same name, QoS 1, not retained. False when it names no device connected here.
   */
  deliverCommand(subject: string, data: Uint8Array): boolean {
    const target = commandTarget(subject)
    if (target === undefined || this.closing || !this.sessions.hasDevice(target.deviceId)) return false
    const packet: PublishPacket = {
      cmd: 'publish',
      topic: target.topic,
      payload: Buffer.from(data.buffer, data.byteOffset, data.byteLength),
      qos: 1,
      retain: false,
      dup: false,
    }
    this.aedes.publish(packet, (err) => {
      if (err) this.deps.log.warn({ err, subject }, 'command not delivered')
    })
    this.deps.metrics.mqttCommands.inc()
    return true
  }

  /** Every open connection, authenticated or not (the admin API's list). */
  listSessions(): Array<BrokerSessionInfo & SessionActivity> {
    const out: Array<BrokerSessionInfo & SessionActivity> = []
    for (const [, s] of this.sessions.entries()) {
      out.push({ id: s.id, deviceId: s.device?.id, transport: s.transport, remote: s.address, connectedAt: s.connectedAt, deviceType: s.device?.type, messages: s.messages, lastError: s.lastError })
    }
    return out
  }

  /**
   * An administrator ends a connection: MQTT 5 gets DISCONNECT 0x98, 3.1.1 a closed
   * connection, no will; one that has not sent CONNECT yet is simply closed.
   */
  disconnectSession(sessionId: string): boolean {
    for (const [client, s] of this.sessions.entries()) {
      if (s.id !== sessionId) continue
      this.deps.log.info({ device_id: s.device?.id, mqtt_client: client.id }, 'MQTT session closed by an administrator')
      if (s.device === undefined) client.conn.destroy()
      else this.end(client, s, ADMINISTRATIVE_ACTION)
      return true
    }
    return false
  }

  /** Stops listening and taking publishes; connected clients stay until close(). */
  stopAccepting(): void {
    if (this.closing) return
    this.closing = true
    this.server?.close()
  }

  /** Stops listening, then disconnects every client (MQTT 5: reason 0x8B) and closes aedes. Idempotent. */
  close(): Promise<void> {
    this.closed ??= this.shutdown()
    return this.closed
  }

  private async shutdown(): Promise<void> {
    this.stopAccepting()
    // No will from a client the gateway sends away: it did not lose its connection.
    for (const [, s] of this.sessions.entries()) s.ended = true
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()))
    // aedes closed the clients that sent CONNECT; the sockets of the others close here.
    for (const [client] of this.sessions.entries()) client.conn.destroy()
  }

  /**
   * 3.1.1 has no Server Keep Alive: a client asking for none (0) or more than the maximum
   * is held to the maximum instead of being refused (a server may close a connection it
   * finds inactive, whatever Keep Alive the client chose). The client id is put in the
   * namespace of the user name (the device, once authenticated), so one device can
   * neither take over nor read another device's session by using its client id.
   */
  private preConnect(packet: ConnectPacket, cb: (err: Error | null, ok: boolean) => void): void {
    const max = this.opts.keepaliveMaxS
    if (packet.protocolVersion !== 5 && (!packet.keepalive || packet.keepalive > max)) packet.keepalive = max
    // An empty id stays empty: aedes assigns a unique one (MQTT 5: and reports it).
    if (packet.clientId && packet.username !== undefined) packet.clientId = `${packet.username}:${packet.clientId}`
    cb(null, true)
  }

  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    cb: (err: AuthenticateError | null, ok: boolean | null) => void,
  ): void {
    const s = this.sessions.get(client)
    const { guard, metrics } = this.deps
    if (s === undefined || this.closing) return cb(authError(SERVER_UNAVAILABLE, 'server unavailable'), null)
    if (!guard.reserveAttempt(s.address)) {
      metrics.mqttConnections.inc({ result: 'throttled' })
      return cb(this.refused(s, username, authError(SERVER_UNAVAILABLE, 'too many failed attempts from this address')), null)
    }
    this.deps.devices.authenticate(username ?? '', password).then(
      (result) => {
        if (!result.ok) {
          const deleted = result.reason === 'deleted'
          metrics.mqttConnections.inc({ result: deleted ? 'deleted' : 'bad_credentials' })
          return cb(this.refused(s, username, refusedFor(deleted ? 'deleted' : 'rotated')), null)
        }
        guard.succeeded(s.address)
        const revoked = this.sessions.revocationOf(result.device)
        if (revoked !== undefined) {
          metrics.mqttConnections.inc({ result: revoked === 'deleted' ? 'deleted' : 'bad_credentials' })
          return cb(this.refused(s, username, refusedFor(revoked)), null)
        }
        // Closed while the directory answered: aedes drops the answer; nothing to record.
        if (s.gone || s.ended) return cb(authError(SERVER_UNAVAILABLE, 'connection closed'), null)
        this.sessions.authenticated(client, s, result.device)
        this.deps.devices.sessionOpened(result.device.id, s.id)
        metrics.mqttConnections.inc({ result: 'accepted' })
        cb(null, true)
      },
      (err: unknown) => {
        guard.unjudged(s.address)
        metrics.mqttConnections.inc({ result: 'unavailable' })
        this.deps.log.error({ err, remote: s.address }, 'MQTT CONNECT: device directory failed')
        cb(authError(SERVER_UNAVAILABLE, 'server unavailable'), null)
      },
    )
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, cb: (err?: Error | null) => void): void {
    // aedes clearing stale wills of a broker instance that is gone: nothing to forward here.
    if (client === null) return cb(null)
    const s = this.sessions.get(client)
    // A will is published while (or after) its client closes: no packet id, no PUBACK.
    const will = client.closed
    const device = s?.device
    if (s === undefined || device === undefined || s.ended || (will && this.sessions.revocationOf(device) !== undefined)) {
      return cb(new Error('not authorized'))
    }
    if (this.closing) {
      if (will) return cb(new Error('shutting down'))
      // Neither taken nor answered: the device delivers it again, to another instance or
      // after the restart.
      this.end(client, s, SERVER_SHUTTING_DOWN)
      return
    }
    this.counts.received++
    s.messages++
    if (!will && packet.qos > 0 && !packet.messageId) {
      // [MQTT-2.3.1-1] a QoS 1/2 PUBLISH needs a non-zero packet id; mqtt-packet parses 0.
      this.deps.log.debug({ device_id: device.id, mqtt_client: client.id }, 'PUBLISH with packet id 0: disconnected')
      this.end(client, s, PROTOCOL_ERROR)
      return
    }
    const subject = publishSubject(device.id, packet.topic)
    if (subject === undefined) {
      this.counts.refused++
      s.lastError = `not authorized to publish to ${packet.topic}`
      this.deps.log.debug({ device_id: device.id, topic: packet.topic }, 'MQTT publish refused by the ACL')
      // MQTT 5: PUBACK/PUBREC 0x87; 3.1.1: aedes closes the connection.
      return cb(new Error(`not authorized to publish to ${packet.topic}`))
    }
    // Nobody may subscribe to raw topics: a retained copy would only take memory.
    packet.retain = false
    this.deps.forwarder
      .forward({
        deviceId: device.id,
        deviceType: device.type,
        subject,
        topic: packet.topic,
        payload: typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload,
        // QoS 2 is stored like QoS 1: PUBREC follows the store.
        qos: packet.qos === 0 ? 0 : 1,
        packetId: will ? undefined : packet.messageId,
        dup: packet.dup === true,
        receivedAt: Date.now(),
        clientId: client.id,
      })
      .then(
        () => cb(null),
        (err: unknown) => {
          if (will) return cb(err as Error)
          // No error to aedes: for MQTT 5 it would answer PUBACK 0x87 and the device would
          // drop the message. Without PUBACK it delivers again after reconnecting.
          this.deps.log.warn({ err, device_id: device.id, mqtt_client: client.id }, 'device message not stored in time: disconnected without PUBACK')
          this.end(client, s, SERVER_BUSY)
        },
      )
  }

  private authorizeSubscribe(client: Client, sub: Subscription, cb: (err: Error | null, sub?: Subscription | null) => void): void {
    const s = this.sessions.get(client)
    if (s?.device !== undefined && !s.ended && maySubscribe(s.device.id, sub.topic)) return cb(null, sub)
    this.deps.log.debug({ device_id: s?.device?.id, filter: sub.topic }, 'MQTT subscription refused by the ACL')
    // SUBACK 0x80 (MQTT 5: 0x87) for this filter; the connection stays.
    cb(null, null)
  }

  /** Only the device's own commands reach it (the ACL on subscriptions already ensures it). */
  private authorizeForward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    const device = this.sessions.get(client)?.device
    return device !== undefined && commandTarget(packet.topic)?.deviceId === device.id ? packet : null
  }

  /** A CONNECT refused for its credentials (or their owner's failures): kept and recorded. */
  private refused(s: Session, username: string | undefined, err: AuthenticateError): AuthenticateError {
    s.lastError = `CONNECT refused: ${err.message}`
    this.deps.errors?.record({ kind: 'auth_failure', endpoint: 'mqtt', reason: s.lastError, user: username, remote: s.address })
    return err
  }

  /** The gateway ends a session: MQTT 5 gets DISCONNECT with `reasonCode`, 3.1.1 a closed connection. */
  private end(client: Client, s: Session, reasonCode: number): void {
    if (s.ended || s.gone) return
    s.ended = true
    client.disconnect({ reasonCode }, noop)
  }
}
