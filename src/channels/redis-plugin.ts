import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { RedisBridge, type RedisBridgeStatus } from './redis-bridge.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Only with REDIS_URL: the Redis publishers' bridge, for /readyz. */
    channelRedisStatus?: () => RedisBridgeStatus
  }
}

export interface ChannelRedisOptions {
  config: Pick<Config, 'redis' | 'channels'>
}

/**
 * Redis publishers of the Go WebSocket server (docs/API.md section 9): with REDIS_URL, one
 * instance at a time takes `PUBLISH channel:<id>` into the channel log. Without it nothing
 * is created, not even a client. The gateway starts with Redis down; the bridge keeps trying.
 */
export default fp(
  async (app: FastifyInstance, opts: ChannelRedisOptions) => {
    const redis = opts.config.redis
    if (redis === undefined) return
    const bridge = new RedisBridge({
      url: redis.url,
      leaderRetryMs: redis.leaderRetryMs,
      eventMaxBytes: opts.config.channels.eventMaxBytes,
      channelLog: app.channelLog,
      metrics: app.metrics,
      log: app.log.child({ component: 'channel-redis' }),
    })
    app.decorate('channelRedisStatus', () => bridge.status())
    bridge.start()
    // Registered after the channels: this runs before the log closes, so nothing is taken
    // from Redis that could not be stored, and the lease is handed back at once.
    app.addHook('onClose', () => bridge.close())
  },
  { name: 'channel-redis', dependencies: ['channels', 'metrics'] },
)
