import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { createWebSocketStream } from 'ws'
import type { Config } from '../config.js'
import { security, upgradeResponses } from '../observability/openapi.js'
import { EmbeddedBroker } from './broker.js'
import { subscribeCommands } from './commands.js'
import { ConnectionGuard } from './connection-guard.js'
import { createForwarder } from './forwarder.js'
import { RevocationWatch } from './revocation.js'
import type { BrokerHandle } from './types.js'

declare module 'fastify' {
  interface FastifyInstance {
    broker: BrokerHandle
  }
}

export interface BrokerPluginOptions {
  prefix: string
  config: Pick<Config, 'mqtt' | 'natsUrl' | 'trustProxy' | 'host' | 'nats' | 'jwt' | 'shutdownGraceMs'>
}

/**
 * The embedded MQTT broker (src/devices/broker.ts) on MQTT_PORT and at `<prefix>/mqtt`
 * over WebSocket, forwarding device messages to the bus, delivering `cmd.<id>` back, and
 * closing the sessions of revoked devices. MQTT_ENABLED=false: none of it.
 */
export default fp(
  async (app: FastifyInstance, opts: BrokerPluginOptions) => {
    const { mqtt } = opts.config
    if (!mqtt.enabled) {
      app.decorate('broker', { port: null, status: () => ({ status: 'absent' as const, reason: 'MQTT_ENABLED=false' }) })
      return
    }
    const log = app.log.child({ component: 'mqtt' })
    const forwarder = createForwarder({
      bus: app.bus,
      batcher: app.batcher,
      log: app.log,
      metrics: app.metrics,
      forwardTimeoutMs: mqtt.forwardTimeoutMs,
      publishTimeoutMs: opts.config.nats.publishTimeoutMs,
    })
    const guard = new ConnectionGuard({
      maxConnectionsPerAddress: mqtt.maxConnectionsPerAddress,
      maxAuthFailuresPerAddress: mqtt.auth.maxFailuresPerAddress,
      authWindowMs: mqtt.auth.windowS * 1000,
    })
    const broker = await EmbeddedBroker.start(
      {
        host: opts.config.host,
        port: mqtt.port,
        portExplicit: mqtt.portExplicit,
        maxPacketBytes: mqtt.maxPacketBytes,
        connectTimeoutMs: mqtt.connectTimeoutMs,
        keepaliveMaxS: mqtt.keepaliveMaxS,
      },
      { devices: app.devices, forwarder, guard, log, metrics: app.metrics, errors: app.adminErrors },
    )
    await forwarder.start()
    const commands = subscribeCommands(app.bus, broker)
    const revocations = new RevocationWatch({
      bus: app.bus,
      devices: app.devices,
      broker,
      log,
      // The same period as open WebSocket sessions re-checking their tokens.
      checkMs: opts.config.jwt.revocationCheckMs,
    })
    revocations.start()

    const wsPath = `${opts.prefix}/mqtt`
    app.decorate('broker', {
      port: broker.port,
      status() {
        const s = broker.status()
        return s.up
          ? { status: 'up' as const, port: broker.port, clients: broker.clients, ws_path: wsPath }
          : { status: 'down' as const, reason: s.reason, port: broker.port }
      },
      sessions: () => broker.listSessions(),
      disconnect: (sessionId: string) => broker.disconnectSession(sessionId),
    })
    app.metrics.trackBroker({
      get clients() {
        return broker.clients
      },
      get held() {
        return forwarder.held
      },
    })

    app.get(
      wsPath,
      {
        websocket: true,
        preValidation: app.wsGate,
        schema: {
          summary: 'MQTT over WebSocket (subprotocol mqtt)',
          description:
            'A WebSocket upgrade to the embedded broker (docs/API.md section 8): the device authenticates in its MQTT CONNECT (`mqtt_user`, `mqtt_password`), not in the request.',
          tags: ['devices'],
          security: security.none,
          response: upgradeResponses,
        },
      },
      (socket, request) => {
        // Wrapped at once: frames that arrive before the stream exists would be lost.
        const stream = createWebSocketStream(socket)
        // A client that goes away mid-frame makes the stream error; aedes sees the close.
        stream.on('error', () => {})
        broker.handle(stream, 'ws', request.ip, request.raw)
      },
    )

    // Held publishes get their PUBACK before clients are sent away, but the rest of the
    // shutdown (sink, bus) needs time too: they get at most half of the grace.
    const drainMs = Math.min(mqtt.forwardTimeoutMs, opts.config.shutdownGraceMs / 2)
    let stopping: Promise<void> | undefined
    const stop = () =>
      (stopping ??= (async () => {
        broker.stopAccepting()
        revocations.stop()
        commands.unsubscribe()
        let timer: NodeJS.Timeout | undefined
        await Promise.race([forwarder.close(), new Promise<void>((resolve) => (timer = setTimeout(resolve, drainMs)))])
        clearTimeout(timer)
        await broker.close()
      })())
    // WebSocket clients are sent away (MQTT 5: DISCONNECT 0x8B) before the ws plugin drops
    // every socket with 1001; onClose covers the TCP side when that hook did not run.
    app.onWsShutdown(stop)
    // Registered last of the bus users: this runs before the bus drains.
    app.addHook('onClose', stop)
  },
  { name: 'broker', dependencies: ['bus', 'devices', 'sink', 'ws', 'metrics'] },
)
