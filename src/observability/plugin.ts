import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { createMetrics, type Metrics } from './metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

export default fp(
  async (app: FastifyInstance) => {
    app.decorate('metrics', createMetrics())
  },
  { name: 'metrics' },
)
