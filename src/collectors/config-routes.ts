import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

export interface CollectorConfigOptions {
  prefix: string
}

// STUB: replaced by the config work.
export default fp(async (_app: FastifyInstance, _opts: CollectorConfigOptions) => {}, {
  name: 'collector-config',
  dependencies: ['collectors', 'access', 'audit'],
})
