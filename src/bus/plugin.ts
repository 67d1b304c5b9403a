import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import type { Bus } from './bus.js'
import { InProcessBus } from './in-process.js'

declare module 'fastify' {
  interface FastifyInstance {
    bus: Bus
  }
}

export interface BusPluginOptions {
  config: Pick<Config, 'natsUrl' | 'nats'>
}

// SKELETON (the bus helper replaces this file): in-process only for now.
export default fp(
  async (app: FastifyInstance, _opts: BusPluginOptions) => {
    const bus = new InProcessBus({ onHandlerError: (err, subject) => app.log.error({ err, subject }, 'bus subscriber failed') })
    app.decorate('bus', bus)
    app.metrics.trackBus({ get up() { return bus.status().status === 'up' }, mode: bus.mode })
    app.addHook('onClose', () => bus.close())
  },
  { name: 'bus', dependencies: ['metrics'] },
)
