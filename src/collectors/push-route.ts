import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'

export interface MetricsPushOptions {
  prefix: string
  config: Pick<Config, 'collectors' | 'httpWrite'>
}

// STUB: replaced by the metrics push work.
export default fp(async (_app: FastifyInstance, _opts: MetricsPushOptions) => {}, {
  name: 'collector-metrics',
  dependencies: ['collectors', 'sink', 'access', 'metrics'],
})
