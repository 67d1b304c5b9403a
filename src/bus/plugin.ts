import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import type { Metrics } from '../observability/metrics.js'
import type { Bus } from './bus.js'
import { InProcessBus } from './in-process.js'
import { NatsBus, type BusObserver } from './nats.js'

declare module 'fastify' {
  interface FastifyInstance {
    bus: Bus
  }
}

export interface BusPluginOptions {
  config: Pick<Config, 'natsUrl' | 'nats'>
}

/**
 * `app.bus`: NATS when NATS_URL is set, else the in-process bus. Registered before its
 * users, so on close (reverse order) the broker stops taking publishes before the bus
 * drains.
 */
export default fp(
  async (app: FastifyInstance, opts: BusPluginOptions) => {
    const { natsUrl, nats } = opts.config
    const log = app.log.child({ component: 'bus' })
    let bus: Bus
    if (natsUrl !== undefined && natsUrl.trim() !== '') {
      const natsBus = new NatsBus({
        url: natsUrl,
        connectTimeoutMs: nats.connectTimeoutMs,
        publishTimeoutMs: nats.publishTimeoutMs,
        log,
        observer: observer(app.metrics),
      })
      log.info({ servers: natsBus.servers }, 'bus: connecting to NATS')
      // Usually up at once; a NATS that is down costs one attempt here, then retries run in the background.
      await natsBus.start()
      bus = natsBus
    } else {
      bus = new InProcessBus({ onHandlerError: (err, subject) => log.error({ err, subject }, 'bus subscriber failed') })
      log.warn({}, 'NATS_URL not set: the bus is in-process; forwarding to NATS is off')
    }
    app.decorate('bus', bus)
    app.metrics.trackBus({
      get up() {
        return bus.status().status === 'up'
      },
      mode: bus.mode,
    })
    app.addHook('onClose', () => bus.close())
  },
  { name: 'bus', dependencies: ['metrics'] },
)

/** Persist is a hot path: label children are resolved once, not per call. */
function observer(metrics: Metrics): BusObserver {
  const seconds = metrics.natsPublishSeconds.labels('jetstream')
  const persisted = {
    ok: metrics.natsPublishes.labels('jetstream', 'ok'),
    duplicate: metrics.natsPublishes.labels('jetstream', 'duplicate'),
    error: metrics.natsPublishes.labels('jetstream', 'error'),
  }
  const core = { ok: metrics.natsPublishes.labels('core', 'ok'), error: metrics.natsPublishes.labels('core', 'error') }
  return {
    persisted(s, outcome) {
      seconds.observe(s)
      persisted[outcome].inc()
    },
    published(outcome) {
      core[outcome].inc()
    },
  }
}
