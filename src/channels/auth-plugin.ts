import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import type { Admission } from './types.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The `/ws` upgrade check: token, channel id and channel policy; throws an AppError (400/401/403). */
    channelAuth: { admit(request: FastifyRequest): Promise<Admission> }
  }
}

export interface ChannelAuthPluginOptions {
  config: Pick<Config, 'oidc' | 'jwt'>
}

// STUB: replaced by the OIDC / channel-auth work.
export default fp(
  async (app: FastifyInstance, _opts: ChannelAuthPluginOptions) => {
    app.decorate('channelAuth', {
      admit: async () => {
        throw new Error('channel auth not built yet')
      },
    })
  },
  { name: 'channel-auth', dependencies: ['auth', 'access', 'metrics'] },
)
