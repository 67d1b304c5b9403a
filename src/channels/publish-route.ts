import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'

export interface ChannelPublishOptions {
  prefix: string
  config: Pick<Config, 'channels'>
}

// STUB: replaced by the publish route work.
export default fp(
  async (_app: FastifyInstance, _opts: ChannelPublishOptions) => {},
  { name: 'channel-publish', dependencies: ['channels', 'access', 'metrics'] },
)
