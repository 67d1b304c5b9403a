import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { unauthorized } from '../errors.js'
import { CollectorDirectoryService } from './directory.js'
import { CollectorsRepo } from './repo.js'
import { collectorRoutes } from './routes.js'
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

const MS_PER_S = 1000

/**
 * Collectors (docs/API.md section 7): the registration, token and list routes, the
 * directory the push and config routes ask (`app.collectors`), and the guard they use.
 */
export default fp(
  async (app: FastifyInstance, opts: CollectorsPluginOptions) => {
    const config = opts.config.collectors
    const log = app.log.child({ component: 'collectors' })
    const repo = new CollectorsRepo(app.db)
    const directory = new CollectorDirectoryService({ repo, log, statusCacheMs: config.statusCacheMs, statsFlushMs: config.statsFlushMs })
    directory.start()

    // Used signatures are kept until their timestamp can no longer be accepted, plus one more
    // skew window: an instance whose clock runs behind the database's still finds them. One
    // sweep per window keeps the table at about the renewals of two windows.
    const skewS = config.signatureMaxSkewS
    let sweeping: Promise<unknown> | undefined
    const sweep = setInterval(() => {
      if (sweeping !== undefined) return
      sweeping = repo
        .sweepSignatures(skewS)
        .catch((err: unknown) => log.warn({ err }, 'could not delete expired collector signatures'))
        .finally(() => {
          sweeping = undefined
        })
    }, skewS * MS_PER_S)
    sweep.unref()

    // The database closes after this (it was registered first): pending counts are written.
    app.addHook('onClose', async () => {
      clearInterval(sweep)
      await sweeping
      await directory.close()
    })

    app.decorate('collectors', directory satisfies CollectorDirectory)

    const collectorToken = app.requireCollector()
    app.decorate('requireActiveCollector', async (request: FastifyRequest) => {
      await collectorToken(request)
      const id = request.collectorPrincipal?.collectorId
      const status = id === undefined ? 'unknown' : await directory.status(id)
      if (status !== 'active') throw unauthorized(status === 'deleted' ? 'collector deleted' : 'unknown collector', 'invalid_token')
    })

    collectorRoutes(app, {
      prefix: opts.prefix,
      config,
      db: app.db,
      repo,
      directory,
      audit: app.audit,
      tokens: app.tokens,
      guards: app.guards,
    })
  },
  { name: 'collectors', dependencies: ['db', 'auth', 'access', 'audit', 'metrics'] },
)
