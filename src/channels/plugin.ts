import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { NatsBus } from '../bus/nats.js'
import type { Config } from '../config.js'
import type { Metrics } from '../observability/metrics.js'
import { ChannelHub, type HubStats, type HubStatus } from './hub.js'
import { JetStreamChannelLog } from './jetstream-log.js'
import { KvPresence } from './kv-presence.js'
import { LocalPresence } from './local-presence.js'
import { MemoryChannelLog } from './memory-log.js'
import type { ChannelLog, ChannelSessionView, PresenceDirectory } from './types.js'
import { registerChannelRoute } from './ws-route.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The channels' event log (append: the publish route). */
    channelLog: ChannelLog
    /** The live `/ws` sessions of this instance. */
    channelSessions: () => Iterable<ChannelSessionView>
    /** The hub, its log and its presence directory, for /readyz. */
    channelsStatus: () => HubStatus
  }
}

export interface ChannelsPluginOptions {
  prefix: string
  config: Pick<Config, 'channels' | 'ws' | 'jwt' | 'natsUrl'>
}

/**
 * The `/ws` channels (docs/API.md section 9): the hub with the JetStream log and KV
 * presence when the bus is NATS, or an in-memory log and local presence in one process.
 * The log and presence start in the background (with NATS down the gateway starts
 * anyway; `/ws` answers 503 until they are live).
 */
export default fp(
  async (app: FastifyInstance, opts: ChannelsPluginOptions) => {
    const { channels, ws, jwt } = opts.config
    const logger = app.log.child({ component: 'channels' })
    let log: ChannelLog
    let presence: PresenceDirectory
    if (app.bus instanceof NatsBus) {
      const bus = app.bus
      log = new JetStreamChannelLog({
        bus,
        historySize: channels.historySize,
        historyMaxAgeS: channels.historyMaxAgeS,
        eventMaxBytes: channels.eventMaxBytes,
        log: logger,
        onDropped: (reason) => app.metrics.channelEventsDropped.inc({ reason }),
      })
      presence = new KvPresence({ bus, ttlMs: channels.presenceTtlMs, instanceId: randomUUID(), log: logger })
    } else {
      log = new MemoryChannelLog(channels)
      presence = new LocalPresence()
    }
    const hub = new ChannelHub({
      log,
      presence,
      bus: app.bus,
      limits: { ...channels, pingIntervalMs: ws.pingIntervalMs },
      msUntilExpiry: (exp) => (exp + jwt.clockSkewS) * 1000 - Date.now(),
      logger,
      stats: hubStats(app.metrics),
    })
    app.decorate('channelLog', log)
    app.decorate('channelSessions', () => hub.sessions())
    app.decorate('channelsStatus', () => hub.status())
    app.metrics.trackChannels({
      get channels() {
        return hub.channelCount
      },
      get members() {
        return hub.memberCount()
      },
    })

    hub.start().catch((err: unknown) => logger.error({ err }, 'channels did not start'))
    // Before the ws plugin closes what is left with 1001: members leave presence first.
    app.onWsShutdown(async () => hub.shutdown())
    // Registered after the bus: this runs first on close, and the bus drains after it.
    app.addHook('onClose', () => hub.close())

    registerChannelRoute(app, { prefix: opts.prefix, hub, maxConnectionsPerUser: channels.maxConnectionsPerUser })
  },
  { name: 'channels', dependencies: ['ws', 'bus', 'auth', 'access', 'metrics', 'channel-auth'] },
)

/** Per-frame counts stay plain numbers; the counters get them when /metrics is read. */
function hubStats(metrics: Metrics): HubStats {
  const gauge = metrics.wsConnections.labels('ws')
  const counts = { in: 0, out: 0 }
  const eventsIn = metrics.channelEvents.labels('in')
  const eventsOut = metrics.channelEvents.labels('out')
  metrics.beforeScrape(() => {
    if (counts.in > 0) eventsIn.inc(counts.in)
    if (counts.out > 0) eventsOut.inc(counts.out)
    counts.in = counts.out = 0
  })
  return {
    opened: () => gauge.inc(),
    closed: () => gauge.dec(),
    eventIn: () => {
      counts.in++
    },
    framesOut: (n) => {
      counts.out += n
    },
    recovery: (result) => metrics.channelRecoveries.inc({ result }),
    disconnect: (reason) => metrics.channelDisconnects.inc({ reason }),
  }
}
