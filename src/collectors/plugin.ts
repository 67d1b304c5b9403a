import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { forbidden } from '../errors.js'
import type { CollectorDirectory } from './types.js'

declare module 'fastify' {
  interface FastifyInstance {
    collectors: CollectorDirectory
    /** onRequest hook: a collector token of a collector that is not deleted; sets `request.collectorPrincipal`. */
    requireActiveCollector: (request: FastifyRequest) => Promise<void>
  }
}

export interface CollectorsPluginOptions {
  prefix: string
  config: Pick<Config, 'collectors'>
}

// STUB: replaced by the registration / token work.
export default fp(
  async (app: FastifyInstance, _opts: CollectorsPluginOptions) => {
    app.decorate('collectors', {
      status: async () => 'active' as const,
      recordPush: () => {},
    })
    app.decorate('requireActiveCollector', async (request: FastifyRequest) => {
      await app.requireCollector()(request)
      if (request.collectorPrincipal === null) throw forbidden('not a collector')
    })
  },
  { name: 'collectors', dependencies: ['db', 'auth', 'access', 'audit', 'metrics'] },
)
