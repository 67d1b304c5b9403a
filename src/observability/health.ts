import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { z } from 'zod'
import { security } from './openapi.js'

const componentSchema = z.object({ status: z.enum(['up', 'down', 'absent']) }).catchall(z.unknown())

const readySchema = z.object({
  status: z.enum(['ok', 'degraded']),
  components: z.object({
    database: componentSchema,
    sink: componentSchema,
    bus: componentSchema,
    broker: componentSchema,
    channels: componentSchema,
    /** Only with REDIS_URL; never makes /readyz 503 (Redis publishers are optional next to POST and NATS). */
    redis: componentSchema.optional(),
  }),
})

type Component = z.infer<typeof componentSchema>

// A check that takes longer than this counts as down.
const CHECK_TIMEOUT_MS = 2000

class CheckTimeout extends Error {
  override name = 'CheckTimeout'
}

/** A probe's failure as a stable reason ('timeout', 'unreachable'), with the error for the log. */
async function probe(run: () => Promise<void>): Promise<{ reason: string; err: unknown } | undefined> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      run(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new CheckTimeout(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS)
      }),
    ])
    return undefined
  } catch (err) {
    return { reason: err instanceof CheckTimeout ? 'timeout' : 'unreachable', err }
  } finally {
    clearTimeout(timer)
  }
}

/** /health (Matt Collector's, unchanged), /healthz (liveness), /readyz (per component), /metrics. */
export default fp(
  async (app: FastifyInstance, opts: { prefix: string }) => {
    const p = opts.prefix
    const ok = z.object({ status: z.literal('ok') })
    const probeSchema = (summary: string) => ({ summary, tags: ['health'], security: security.none, response: { 200: ok } })
    app.get(`${p}/health`, { schema: probeSchema("Matt Collector's health check: always {\"status\":\"ok\"}") }, async () => ({
      status: 'ok' as const,
    }))
    app.get(`${p}/healthz`, { schema: probeSchema('Liveness: 200 while the process runs') }, async () => ({
      status: 'ok' as const,
    }))
    // /readyz is unauthenticated: it shows stable reasons; the errors go to the log, once
    // per change of state rather than per request.
    const logged = new Map<string, string>()
    const note = (component: string, failure: { reason: string; err: unknown } | undefined) => {
      const state = failure?.reason ?? 'up'
      const before = logged.get(component) ?? 'up'
      logged.set(component, state)
      if (before === state) return
      if (failure) app.log.warn({ component, reason: failure.reason, err: failure.err }, 'readiness check failed')
      else app.log.info({ component }, 'readiness check passes again')
    }
    const database = async (): Promise<Component> => {
      const failure = await probe(() => app.db.ping())
      note('database', failure)
      return { status: failure ? 'down' : 'up', engine: app.db.engine, ...(failure ? { reason: failure.reason } : {}) }
    }
    const sinkComponent = async (): Promise<Component> => {
      const sink = app.sink
      const outage = sink.outage
      const detail = {
        name: sink.name,
        mode: sink.mode,
        pending_lines: app.batcher.pendingLines,
        spool_lines: sink.spool.lines,
        spool_bytes: sink.spool.bytes,
        dead_letters: sink.deadLetters,
      }
      // Writes failing (batches going to the spool) is down, even if the sink answers a ping.
      if (outage !== undefined) {
        return {
          status: 'down',
          reason: outage.reason,
          ...(outage.statusCode !== undefined ? { http_status: outage.statusCode } : {}),
          since: new Date(outage.since).toISOString(),
          ...detail,
        }
      }
      if (sink.mode === 'spooling') return { status: 'down', reason: 'writes failing', ...detail }
      const failure = await probe(() => sink.ping())
      note('sink', failure)
      return failure ? { status: 'down', reason: failure.reason, ...detail } : { status: 'up', ...detail }
    }
    const readyzSchema = {
      summary: 'Readiness: 200 when no component is down, else 503, with each component and a stable reason',
      tags: ['health'],
      security: security.none,
      response: { 200: readySchema, 503: readySchema.describe('A component is down') },
    }
    app.get(`${p}/readyz`, { schema: readyzSchema }, async (_req, reply) => {
      const [db, sink] = await Promise.all([database(), sinkComponent()])
      // The broker is registered after this plugin: read at request time.
      // The channels plugin is registered after this one too.
      const channels: Component = app.hasDecorator('channelsStatus') ? { ...app.channelsStatus() } : { status: 'absent' }
      const components = { database: db, sink, bus: { ...app.bus.status() }, broker: app.broker.status() as Component, channels }
      // Absent is not down: a broker turned off cannot fail.
      const allUp = Object.values(components).every((c) => c.status !== 'down')
      // Shown, but not counted: with Redis down the instance still serves everything else.
      const redis = app.channelRedisStatus?.()
      const shown = redis === undefined ? components : { ...components, redis }
      return reply.code(allUp ? 200 : 503).send({ status: allUp ? 'ok' : 'degraded', components: shown })
    })
    const metricsSchema = {
      summary: 'Prometheus metrics (text exposition format)',
      tags: ['health'],
      security: security.none,
      response: {
        200: {
          description: 'The mc_* metrics (docs/API.md section 2)',
          content: { 'text/plain': { schema: z.string().meta({ examples: ['# TYPE mc_lines_accepted_total counter\nmc_lines_accepted_total 42\n'] }) } },
        },
      },
    }
    app.get(`${p}/metrics`, { schema: metricsSchema }, async (_req, reply) => {
      reply.header('content-type', app.metrics.registry.contentType)
      return app.metrics.registry.metrics()
    })
  },
  { name: 'health', dependencies: ['db', 'sink', 'metrics', 'bus'] },
)
