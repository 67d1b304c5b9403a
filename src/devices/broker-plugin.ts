import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import type { BrokerHandle } from './types.js'

declare module 'fastify' {
  interface FastifyInstance {
    broker: BrokerHandle
  }
}

export interface BrokerPluginOptions {
  prefix: string
  config: Pick<Config, 'mqtt' | 'natsUrl' | 'trustProxy'>
}

// SKELETON (the broker helper replaces this file).
export default fp(
  async (app: FastifyInstance, _opts: BrokerPluginOptions) => {
    app.decorate('broker', { port: null, status: () => ({ status: 'absent' as const, reason: 'not built yet' }) })
  },
  { name: 'broker', dependencies: ['bus', 'devices', 'sink', 'ws', 'metrics'] },
)
