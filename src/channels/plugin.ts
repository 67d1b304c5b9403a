import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import type { ChannelLog, ChannelSessionView } from './types.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The channels' event log (append: the publish route). */
    channelLog: ChannelLog
    /** The live `/ws` sessions of this instance. */
    channelSessions: () => Iterable<ChannelSessionView>
  }
}

export interface ChannelsPluginOptions {
  prefix: string
  config: Pick<Config, 'channels' | 'ws' | 'jwt' | 'natsUrl'>
}

// STUB: replaced by the hub work.
export default fp(
  async (_app: FastifyInstance, _opts: ChannelsPluginOptions) => {},
  { name: 'channels', dependencies: ['ws', 'bus', 'auth', 'access', 'metrics', 'channel-auth'] },
)
