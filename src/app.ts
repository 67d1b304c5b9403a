import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { hasZodFastifySchemaValidationErrors, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod'
import accessPlugin from './auth/access-plugin.js'
import authPlugin from './auth/plugin.js'
import revocationPlugin from './auth/revocation-plugin.js'
import adminPlugin from './admin/plugin.js'
import adminPagePlugin from './admin/page-plugin.js'
import adminRecorderPlugin from './admin/recorder-plugin.js'
import auditPlugin from './audit/plugin.js'
import { loadOrCreateDevSecret } from './auth/secret.js'
import type { Config } from './config.js'
import busPlugin from './bus/plugin.js'
import channelAuthPlugin from './channels/auth-plugin.js'
import { CHANNEL_ID_MAX_LENGTH } from './channels/events.js'
import channelsPlugin from './channels/plugin.js'
import channelPublishPlugin from './channels/publish-route.js'
import channelRedisPlugin from './channels/redis-plugin.js'
import { openDb, type Db } from './db/index.js'
import { lockDataDir } from './db/data-dir-lock.js'
import collectorConfigPlugin from './collectors/config-routes.js'
import collectorsPlugin from './collectors/plugin.js'
import collectorMetricsPlugin from './collectors/push-route.js'
import dbPlugin from './db/plugin.js'
import brokerPlugin from './devices/broker-plugin.js'
import devicesPlugin from './devices/plugin.js'
import { AppError } from './errors.js'
import sinkPlugin from './ingest/sinks/plugin.js'
import type { Sink } from './ingest/sinks/sink.js'
import httpWritePlugin from './ingest/http-write.js'
import jsonBodyPlugin from './json-body.js'
import timeSeriesPlugin from './ingest/time-series.js'
import usersPlugin from './users/plugin.js'
import healthPlugin from './observability/health.js'
import docsPlugin from './observability/docs.js'
import httpHardeningPlugin, { clientErrorHandler } from './observability/http-hardening.js'
import metricsPlugin from './observability/plugin.js'
import wsPlugin from './ws/plugin.js'

export interface BuildOverrides {
  /** Use this database instead of opening the configured one (the caller closes it). */
  db?: Db
  /** Use this time-series sink instead of the configured one. */
  sink?: Sink
  /** pino options or `false`; default: JSON logs at config.logLevel. */
  logger?: boolean | object
}

/**
 * Builds the whole gateway for a configuration and never listens: src/main.ts and every
 * test build it the same way.
 */
export async function buildApp(config: Config, overrides: BuildOverrides = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: overrides.logger ?? { level: config.logLevel },
    // Behind Caddy the client address comes from X-Forwarded-For (per-address login limits).
    trustProxy: config.trustProxy,
    // Per-request logs would cost more than an ingest request itself; errors are logged.
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: 'idle',
    // What Node's parser refuses before any route (408, 431, 400) in the API's error shape.
    clientErrorHandler,
    // Path parameters as long as a channel id may be (find-my-way's default is 100), with
    // room past it so a longer id gets the publish route's own 400 naming the limit.
    routerOptions: { maxParamLength: 2 * CHANNEL_ID_MAX_LENGTH },
    // avvio applies this to every preClose hook too: the ws plugin's waits for owed replies,
    // which may take up to the shutdown grace (src/main.ts bounds the whole shutdown).
    pluginTimeout: config.shutdownGraceMs,
    requestTimeout: config.http.requestTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
  })
  // Fastify has no option for it; Node's default (60 s) is longer than a slow-headers attack needs.
  app.server.headersTimeout = config.http.headersTimeoutMs
  for (const old of config.legacyVariables) {
    app.log.warn({ variable: old.name, replacement: old.replacement }, `${old.name} is not read by this gateway: ${old.note}`)
  }
  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({ error: 'not_found', message: `no route ${request.method} ${request.url}` })
  })

  // One gateway per DATA_DIR (its spool and embedded Postgres live there): a second one is
  // refused here, before either opens. Its hook is added first, so it runs last on close.
  const lock = await lockDataDir(config.dataDir)
  app.addHook('onClose', () => lock.release())

  let secret = config.jwtSecret
  if (secret === undefined) {
    const dev = await loadOrCreateDevSecret(config.dataDir)
    secret = dev.secret
    if (dev.created) app.log.warn({ data_dir: config.dataDir }, 'JWT_SECRET not set: generated one and kept it in DATA_DIR')
  }

  // A database handed in stays its owner's to close; one opened here closes with the app.
  const db =
    overrides.db ??
    (await openDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, log: app.log }).catch(async (err: unknown) => {
      await lock.release()
      throw err
    }))
  const prefix = config.pathPrefix
  try {
    // First: contexts copy the body parsers of their parent when they are made.
    await app.register(jsonBodyPlugin)
    // Before every route: both act on routes as they are added (onRoute).
    await app.register(httpHardeningPlugin, config.http)
    await app.register(docsPlugin, { prefix })
    await app.register(dbPlugin, { db, owned: overrides.db === undefined })
    await app.register(metricsPlugin)
    await app.register(adminRecorderPlugin, { config })
    await app.register(sinkPlugin, { config, ...(overrides.sink ? { sink: overrides.sink } : {}) })
    // Before every user of the bus: onClose runs in reverse order, so the bus drains last.
    await app.register(busPlugin, { config })
    await app.register(authPlugin, {
      prefix,
      secret,
      ...config.jwt,
      maxOwnTokenTtlS: Math.max(config.users.accessTokenTtlS, config.users.refreshTokenTtlS, config.collectors.tokenTtlS),
    })
    await app.register(accessPlugin)
    await app.register(revocationPlugin, { checkMs: config.jwt.revocationCheckMs })
    await app.register(auditPlugin, { prefix })
    await app.register(usersPlugin, { prefix, env: config.env, users: config.users })
    await app.register(wsPlugin, {
      maxFrameBytes: config.ws.maxFrameBytes,
      maxConnections: config.maxConnections,
      allowedOrigins: config.allowedOrigins,
    })
    await app.register(healthPlugin, { prefix })
    await app.register(timeSeriesPlugin, {
      prefix,
      authTimeoutMs: config.ws.authTimeoutMs,
      maxPendingFrames: config.ws.maxPendingFrames,
      maxHeldBytes: config.ws.maxHeldBytes,
    })
    await app.register(httpWritePlugin, { prefix, ...config.httpWrite })
    await app.register(channelAuthPlugin, { config })
    await app.register(channelsPlugin, { prefix, config })
    await app.register(channelPublishPlugin, { prefix, config })
    await app.register(channelRedisPlugin, { config })
    await app.register(adminPlugin, { prefix })
    await app.register(adminPagePlugin, { prefix })
    await app.register(devicesPlugin, { prefix, sessions: config.deviceSessions })
    await app.register(collectorsPlugin, { prefix, config })
    await app.register(collectorMetricsPlugin, { prefix, config })
    await app.register(collectorConfigPlugin, { prefix })
    // Last: it stops taking publishes first on close, before the bus drains.
    await app.register(brokerPlugin, { prefix, config })
    await app.ready()
  } catch (err) {
    await app.close().catch(() => {})
    throw err
  }
  return app
}

/** The one error handler: {"error","message"}; details of a 5xx stay in the log. */
function errorHandler(err: FastifyError | AppError | Error, request: FastifyRequest, reply: FastifyReply) {
  if (hasZodFastifySchemaValidationErrors(err)) {
    const issue = err.validation[0]
    const where = err.validationContext ?? 'request'
    const field = issue?.instancePath.replace(/^\//, '').replaceAll('/', '.') ?? ''
    const message =
      issue === undefined
        ? `invalid ${where}`
        : field === ''
          ? `invalid ${where}: ${issue.message}`
          : `invalid ${where} field "${field}": ${issue.message}`
    return reply.code(400).send({ error: 'invalid_request', message })
  }
  const statusCode = (err as { statusCode?: number }).statusCode ?? 500
  if (err instanceof AppError) return reply.code(err.statusCode).send({ error: err.code, message: err.message })
  if (statusCode >= 500) {
    request.log.error({ err }, 'request failed')
    return reply.code(statusCode).send({ error: 'internal_error', message: 'internal server error' })
  }
  const code = (err as FastifyError).code?.replace(/^FST_ERR_/, '').toLowerCase() ?? 'bad_request'
  return reply.code(statusCode).send({ error: code, message: err.message })
}
