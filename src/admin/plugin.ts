import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

export interface AdminPluginOptions {
  prefix: string
}

// STUB: replaced by the admin sessions work.
export default fp(
  async (_app: FastifyInstance, _opts: AdminPluginOptions) => {},
  { name: 'admin', dependencies: ['access', 'time-series', 'channels'] },
)
