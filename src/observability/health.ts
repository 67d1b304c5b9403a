import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { z } from 'zod'

const componentSchema = z.object({ status: z.enum(['up', 'down']) }).catchall(z.unknown())

const readySchema = z.object({
  status: z.enum(['ok', 'degraded']),
  components: z.object({ database: componentSchema, sink: componentSchema, bus: componentSchema }),
})

type Component = z.infer<typeof componentSchema>

// A check that takes longer than this counts as down.
const CHECK_TIMEOUT_MS = 2000

async function check(name: string, probe: () => Promise<void>, detail: Record<string, unknown>): Promise<Component> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      probe(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${name} check timed out`)), CHECK_TIMEOUT_MS)
      }),
    ])
    return { status: 'up', ...detail }
  } catch (err) {
    return { status: 'down', ...detail, error: (err as Error).message }
  } finally {
    clearTimeout(timer)
  }
}

/** /health (Matt Collector's, unchanged), /healthz (liveness), /readyz (per component), /metrics. */
export default fp(
  async (app: FastifyInstance, opts: { prefix: string }) => {
    const p = opts.prefix
    app.get(`${p}/health`, { schema: { response: { 200: z.object({ status: z.literal('ok') }) } } }, async () => ({
      status: 'ok' as const,
    }))
    app.get(`${p}/healthz`, { schema: { response: { 200: z.object({ status: z.literal('ok') }) } } }, async () => ({
      status: 'ok' as const,
    }))
    // Writes failing (batches going to the spool) is down, even if the sink answers a ping.
    const sinkProbe = async () => {
      if (app.sink.mode === 'spooling') throw new Error('sink writes are failing: batches go to the spool')
      await app.sink.ping()
    }
    app.get(`${p}/readyz`, { schema: { response: { 200: readySchema, 503: readySchema } } }, async (_req, reply) => {
      const [database, sink] = await Promise.all([
        check('database', () => app.db.ping(), { engine: app.db.engine }),
        check('sink', sinkProbe, {
          name: app.sink.name,
          mode: app.sink.mode,
          pending_lines: app.batcher.pendingLines,
          spool_lines: app.sink.spool.lines,
          spool_bytes: app.sink.spool.bytes,
        }),
      ])
      const bus: Component = { status: 'up', mode: 'in-process' }
      const components = { database, sink, bus }
      const allUp = Object.values(components).every((c) => c.status === 'up')
      return reply.code(allUp ? 200 : 503).send({ status: allUp ? 'ok' : 'degraded', components })
    })
    app.get(`${p}/metrics`, { schema: { hide: true } }, async (_req, reply) => {
      reply.header('content-type', app.metrics.registry.contentType)
      return app.metrics.registry.metrics()
    })
  },
  { name: 'health', dependencies: ['db', 'sink', 'metrics'] },
)
