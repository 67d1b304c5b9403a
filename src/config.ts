import { readFileSync } from 'node:fs'
import { parse as parseDotenv } from 'dotenv'
import { z } from 'zod'
import { parseNatsUrl } from './bus/nats-url.js'
import { legacyVariables, type LegacyVariable } from './config-legacy.js'

/**
 * The one place that reads the environment. Every tunable is a field here with its
 * unit in the name and the default of the API contract (docs/API.md section 1).
 */

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes')

const port = z.coerce.number().int().min(0).max(65535)
const positiveInt = z.coerce.number().int().positive()
const nonNegativeInt = z.coerce.number().int().min(0)
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()))

const envSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    SERVER_HOST: z.string().min(1).default('0.0.0.0'),
    SERVER_PORT: port.default(8080),
    PATH_PREFIX: z
      .string()
      .default('')
      .refine((v) => v === '' || (v.startsWith('/') && !v.endsWith('/')), 'must start with "/" and have no trailing "/"'),
    JWT_SECRET: optionalString,
    DATA_DIR: z.string().min(1).default('./data'),
    DATABASE_URL: optionalString,
    INFLUXDB_URL: optionalString.pipe(z.url().optional()),
    INFLUXDB_TOKEN: optionalString,
    INFLUXDB_DATABASE: optionalString,
    INFLUXDB_GZIP: bool.default(false),
    INFLUXDB_GZIP_LEVEL: z.coerce.number().int().min(0).max(9).default(1),
    NATS_URL: optionalString,
    MQTT_PORT: port.default(1883),
    MQTT_ENABLED: bool.default(true),
    MQTT_FORWARD_TIMEOUT_MS: positiveInt.default(30_000),
    MQTT_MAX_PACKET_BYTES: positiveInt.default(256 * 1024),
    MQTT_CONNECT_TIMEOUT_MS: positiveInt.default(10_000),
    MQTT_MAX_CONNECTIONS_PER_ADDRESS: positiveInt.default(1000),
    MQTT_AUTH_MAX_FAILURES_PER_ADDRESS: positiveInt.default(20),
    MQTT_AUTH_FAILURE_WINDOW_S: positiveInt.default(60),
    MQTT_KEEPALIVE_MAX_S: positiveInt.default(3600),
    DEVICE_SESSION_HEARTBEAT_MS: positiveInt.default(5_000),
    DEVICE_SESSION_STALE_AFTER_MS: positiveInt.default(20_000),
    DEVICE_INSTANCE_FORGET_AFTER_MS: positiveInt.default(600_000),
    NATS_CONNECT_TIMEOUT_MS: positiveInt.default(5000),
    NATS_PUBLISH_TIMEOUT_MS: positiveInt.default(5000),
    ALLOWED_ORIGINS: optionalString,
    MAX_CONNECTIONS: positiveInt.default(10_000),
    OIDC_ISSUER_URL: optionalString.pipe(z.url().optional()),
    KINDE_ISSUER_URL: optionalString.pipe(z.url().optional()),
    OIDC_AUDIENCE: optionalString,
    OIDC_JWKS_URL: optionalString.pipe(z.url().optional()),
    OIDC_JWKS_MAX_AGE_S: positiveInt.default(24 * 3600),
    OIDC_JWKS_COOLDOWN_MS: nonNegativeInt.default(30_000),
    OIDC_TIMEOUT_MS: positiveInt.default(5000),
    WS_PING_INTERVAL_MS: positiveInt.default(25_000),
    CHANNEL_HISTORY_SIZE: positiveInt.default(100),
    CHANNEL_HISTORY_MAX_AGE_S: positiveInt.default(3600),
    CHANNEL_MAX_BUFFERED_BYTES: positiveInt.default(1024 * 1024),
    CHANNEL_MAX_CONNECTIONS_PER_USER: positiveInt.default(20),
    CHANNEL_EVENT_MAX_BYTES: positiveInt.default(64 * 1024),
    CHANNEL_PRESENCE_TTL_MS: positiveInt.default(30_000),
    CHANNEL_MAX_CLIENT_FRAME_BYTES: positiveInt.default(4096),
    CHANNEL_CLIENT_FRAMES_PER_S: positiveInt.default(20),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    BATCH_MAX_LINES: positiveInt.default(10_000),
    BATCH_MAX_BYTES: positiveInt.default(8 * 1024 * 1024),
    BATCH_LINGER_MS: nonNegativeInt.default(5),
    BATCH_MAX_INFLIGHT: positiveInt.default(4),
    SINK_TIMEOUT_MS: positiveInt.default(10_000),
    WS_MAX_FRAME_BYTES: positiveInt.default(1024 * 1024),
    WS_AUTH_TIMEOUT_MS: positiveInt.default(10_000),
    WS_MAX_PENDING_FRAMES: positiveInt.default(4096),
    HTTP_WRITE_MAX_BODY_BYTES: positiveInt.default(10 * 1024 * 1024),
    SPOOL_MAX_BYTES: positiveInt.default(1024 * 1024 * 1024),
    SPOOL_SEGMENT_BYTES: positiveInt.default(64 * 1024 * 1024),
    SINK_RETRY_MIN_MS: positiveInt.default(100),
    SINK_RETRY_MAX_MS: positiveInt.default(5000),
    RETRY_AFTER_S: positiveInt.default(1),
    JWT_CLOCK_SKEW_S: nonNegativeInt.default(30),
    STREAM_TOKEN_TTL_S: positiveInt.default(24 * 3600),
    TRUST_PROXY: bool.default(false),
    ADMIN_USERNAME: z.string().trim().min(1).default('admin'),
    ADMIN_PASSWORD: optionalString.pipe(z.string().min(8, 'must be at least 8 characters').optional()),
    ADMIN_EMAIL: z.string().trim().min(1).default('admin@localhost'),
    ADMIN_ORG: z.string().trim().min(1).default('default'),
    ACCESS_TOKEN_TTL_S: positiveInt.default(15 * 60),
    REFRESH_TOKEN_TTL_S: positiveInt.default(24 * 3600),
    LOGIN_RATE_WINDOW_S: positiveInt.default(15 * 60),
    LOGIN_MAX_FAILURES_PER_USERNAME: positiveInt.default(10),
    LOGIN_MAX_FAILURES_PER_IP: positiveInt.default(50),
    PASSWORD_SCRYPT_LOG2_N: z.coerce.number().int().min(10).max(20).default(15),
    PASSWORD_SCRYPT_P: z.coerce.number().int().min(1).max(16).default(3),
    PASSWORD_HASH_MAX_CONCURRENT: positiveInt.default(2),
    PASSWORD_HASH_MAX_QUEUE: positiveInt.default(64),
    TOKEN_ISSUER: z.string().trim().min(1).default('matt-collector'),
    COLLECTOR_REGISTRATION_SECRET: optionalString,
    COLLECTOR_TOKEN_TTL_S: positiveInt.default(30 * 60),
    COLLECTOR_SIGNATURE_MAX_SKEW_S: positiveInt.default(300),
    COLLECTOR_CERT_VALIDITY_DAYS: positiveInt.default(365),
    COLLECTOR_STATS_FLUSH_MS: positiveInt.default(2000),
    COLLECTOR_STATUS_CACHE_MS: nonNegativeInt.default(1000),
    METRICS_PUSH_MAX_BODY_BYTES: positiveInt.default(10 * 1024 * 1024),
    TOKEN_REVOCATION_CHECK_MS: positiveInt.default(2000),
    SHUTDOWN_GRACE_MS: positiveInt.default(25_000),
    WS_MAX_HELD_BYTES: positiveInt.default(8 * 1024 * 1024),
    BATCH_MAX_QUEUED_BYTES: positiveInt.default(128 * 1024 * 1024),
    HTTP_WRITE_MAX_INFLIGHT_BYTES: positiveInt.default(256 * 1024 * 1024),
    REDIS_URL: optionalString,
    REDIS_LEADER_RETRY_MS: positiveInt.default(2000),
    HTTP_REQUEST_TIMEOUT_MS: nonNegativeInt.default(120_000),
    HTTP_HEADERS_TIMEOUT_MS: positiveInt.default(30_000),
    HTTP_KEEP_ALIVE_TIMEOUT_MS: positiveInt.default(72_000),
    HTTP_JSON_MAX_BODY_BYTES: positiveInt.default(64 * 1024),
    HTTP_TIMEOUT_CHECK_INTERVAL_MS: positiveInt.default(1000),
    ADMIN_ERRORS_KEPT: positiveInt.default(200),
    // At most 10 s: the page takes 20 s without a snapshot or ping for a dead feed.
    ADMIN_FEED_INTERVAL_MS: positiveInt.max(10_000).default(1000),
    ADMIN_RATE_WINDOW_S: positiveInt.default(900),
  })
  .superRefine((env, ctx) => {
    if (env.NODE_ENV === 'production') {
      if (env.JWT_SECRET === undefined || env.JWT_SECRET.length < 32) {
        ctx.addIssue({
          code: 'custom',
          path: ['JWT_SECRET'],
          message: 'is required in production and must be at least 32 characters',
        })
      }
      if (env.ALLOWED_ORIGINS === undefined) {
        ctx.addIssue({ code: 'custom', path: ['ALLOWED_ORIGINS'], message: 'is required in production' })
      }
    }
    if (env.SHUTDOWN_GRACE_MS <= env.SINK_TIMEOUT_MS) {
      // A shorter grace would exit while a sink write, and so a reply, is still owed.
      ctx.addIssue({
        code: 'custom',
        path: ['SHUTDOWN_GRACE_MS'],
        message: `must be larger than SINK_TIMEOUT_MS (${env.SINK_TIMEOUT_MS})`,
      })
    }
    if (env.NATS_URL !== undefined) {
      // Refused here, with the other bad variables (exit 78), not later by the bus.
      try {
        parseNatsUrl(env.NATS_URL)
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['NATS_URL'], message: (err as Error).message.replace(/^NATS_URL:?\s*/, '') })
      }
    }
    if (env.REDIS_URL !== undefined) {
      const problem = redisUrlProblem(env.REDIS_URL)
      if (problem !== undefined) ctx.addIssue({ code: 'custom', path: ['REDIS_URL'], message: problem })
    }
    if (env.DEVICE_SESSION_STALE_AFTER_MS <= env.DEVICE_SESSION_HEARTBEAT_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['DEVICE_SESSION_STALE_AFTER_MS'],
        message: `must be larger than DEVICE_SESSION_HEARTBEAT_MS (${env.DEVICE_SESSION_HEARTBEAT_MS})`,
      })
    }
    if (env.COLLECTOR_REGISTRATION_SECRET !== undefined && env.COLLECTOR_REGISTRATION_SECRET.length < 16) {
      ctx.addIssue({ code: 'custom', path: ['COLLECTOR_REGISTRATION_SECRET'], message: 'must be at least 16 characters (a short secret can be guessed)' })
    }
    if (env.OIDC_ISSUER_URL !== undefined && env.KINDE_ISSUER_URL !== undefined && env.OIDC_ISSUER_URL !== env.KINDE_ISSUER_URL) {
      ctx.addIssue({ code: 'custom', path: ['KINDE_ISSUER_URL'], message: 'differs from OIDC_ISSUER_URL (set one of them)' })
    }
    if (env.HTTP_REQUEST_TIMEOUT_MS > 0 && env.HTTP_HEADERS_TIMEOUT_MS > env.HTTP_REQUEST_TIMEOUT_MS) {
      // Node refuses to start the server otherwise (headersTimeout must be <= requestTimeout).
      ctx.addIssue({
        code: 'custom',
        path: ['HTTP_HEADERS_TIMEOUT_MS'],
        message: `must not exceed HTTP_REQUEST_TIMEOUT_MS (${env.HTTP_REQUEST_TIMEOUT_MS})`,
      })
    }
    if (env.INFLUXDB_URL !== undefined && env.INFLUXDB_DATABASE === undefined) {
      ctx.addIssue({ code: 'custom', path: ['INFLUXDB_DATABASE'], message: 'is required when INFLUXDB_URL is set' })
    }
  })

export type Env = z.infer<typeof envSchema>

/** Every variable the gateway reads (docs/MIGRATING.md's tables are checked against it). */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(envSchema.shape)

export interface Config {
  env: Env['NODE_ENV']
  host: string
  port: number
  pathPrefix: string
  /** Undefined means: generate one and keep it in dataDir (development only). */
  jwtSecret: string | undefined
  dataDir: string
  databaseUrl: string | undefined
  /**
   * `gzip`: compress write bodies (worth it over a network; CPU spent for nothing on one host).
   * `gzipLevel`: zlib level; 1 costs about a third of 6's CPU for bodies about a fifth larger.
   */
  influx: { url: string; token: string | undefined; database: string; gzip: boolean; gzipLevel: number } | undefined
  natsUrl: string | undefined
  /**
   * NATS client: `connectTimeoutMs` per connection attempt (reconnects go on forever);
   * `publishTimeoutMs`: how long one JetStream publish waits for its ack.
   */
  nats: { connectTimeoutMs: number; publishTimeoutMs: number }
  /**
   * The embedded broker. `portExplicit`: MQTT_PORT was set (a taken port then fails the
   * start; the default 1883 taken falls back to a free port with a warning).
   * `forwardTimeoutMs`: how long a QoS 1 publish is held while NATS cannot store it, then
   * the client is disconnected without PUBACK. `maxPacketBytes`: largest MQTT packet.
   * `connectTimeoutMs`: a socket must send CONNECT within it. `keepaliveMaxS`: a client
   * asking for a keep-alive of 0 or more than this is held to it (MQTT 5: told as Server
   * Keep Alive), not refused.
   */
  mqtt: {
    enabled: boolean
    port: number
    portExplicit: boolean
    forwardTimeoutMs: number
    maxPacketBytes: number
    connectTimeoutMs: number
    maxConnectionsPerAddress: number
    auth: { maxFailuresPerAddress: number; windowS: number }
    keepaliveMaxS: number
  }
  /**
   * Live MQTT sessions shared between instances through Postgres (`connected` in GET
   * /devices): each instance renews a heartbeat every `heartbeatMs`; a session counts while
   * its instance's heartbeat is younger than `staleAfterMs`; silent instances are deleted
   * after `forgetAfterMs`.
   */
  deviceSessions: { heartbeatMs: number; staleAfterMs: number; forgetAfterMs: number }
  /** `undefined` = any origin. */
  allowedOrigins: string[] | undefined
  maxConnections: number
  /**
   * An OpenID Connect issuer whose tokens `/ws` accepts (OIDC_ISSUER_URL or KINDE_ISSUER_URL).
   * `jwksUrl`: where its keys are; unset = from its discovery document. Keys are cached for
   * `jwksMaxAgeS`; a token naming an unknown `kid` refetches them, at most once per
   * `jwksCooldownMs`. `timeoutMs`: one discovery or JWKS request.
   */
  oidc:
    | { issuer: string; audience: string | undefined; jwksUrl: string | undefined; jwksMaxAgeS: number; jwksCooldownMs: number; timeoutMs: number }
    | undefined
  /**
   * The `/ws` hub (docs/API.md section 9). History: the last `historySize` events of each
   * channel, at most `historyMaxAgeS` old. `maxBufferedBytes`: a client whose unsent data
   * passes it is disconnected (1008). `presenceTtlMs`: a member of a silent (crashed)
   * instance leaves after it. Client frames: at most `maxClientFrameBytes`, and
   * `clientFramesPerS` per connection (more get an error frame).
   */
  channels: {
    historySize: number
    historyMaxAgeS: number
    maxBufferedBytes: number
    maxConnectionsPerUser: number
    eventMaxBytes: number
    presenceTtlMs: number
    maxClientFrameBytes: number
    clientFramesPerS: number
  }
  logLevel: Env['LOG_LEVEL']
  /** `maxQueuedBytes`: full batches waiting for a sink write slot; past it, `ERR busy: retry`. */
  batch: { maxLines: number; maxBytes: number; lingerMs: number; maxInflight: number; maxQueuedBytes: number }
  sinkTimeoutMs: number
  /** How long a graceful shutdown may take before the process exits anyway (> sinkTimeoutMs). */
  shutdownGraceMs: number
  /** On-disk spool under dataDir/spool for batches the sink cannot take; replay backoff. */
  spool: { maxBytes: number; segmentBytes: number; retryMinMs: number; retryMaxMs: number }
  /** `maxHeldBytes`: frames one connection may send while its `$AUTH` is being checked. */
  /** `pingIntervalMs`: `/ws` pings each client this often; two missed pongs end the connection. */
  ws: { maxFrameBytes: number; authTimeoutMs: number; maxPendingFrames: number; maxHeldBytes: number; pingIntervalMs: number }
  /**
   * HTTP line-protocol ingest: largest body (compressed or not); Retry-After on 503;
   * `maxInflightBytes`: bodies of all requests being handled at once, past it 503.
   */
  httpWrite: { maxBodyBytes: number; retryAfterS: number; maxInflightBytes: number }
  /**
   * `issuer`: `iss` of the gateway's own tokens; `revocationCheckMs`: how often open sessions
   * check that their API token and user still exist.
   */
  jwt: { clockSkewS: number; streamTokenTtlS: number; issuer: string; revocationCheckMs: number }
  /** Take the client address from X-Forwarded-For (behind Caddy or another proxy). */
  trustProxy: boolean
  /**
   * Collectors (docs/API.md section 7). `registrationSecret`: X-Registration-Secret (unset: the
   * header is refused). `signatureMaxSkewS`: a renewal signature's timestamp may be this far
   * from now. `statsFlushMs`: last_push_at and metrics_count are written at least this often.
   * `statusCacheMs`: how long a collector's status (deleted or not) may be reused.
   * `maxPushBodyBytes`: largest metrics push (compressed or not).
   */
  collectors: {
    registrationSecret: string | undefined
    tokenTtlS: number
    signatureMaxSkewS: number
    certValidityDays: number
    statsFlushMs: number
    statusCacheMs: number
    maxPushBodyBytes: number
  }
  users: UsersConfig
  /**
   * Redis publishers of the Go WebSocket server (`PUBLISH channel:<id>`); undefined without
   * REDIS_URL. One instance at a time subscribes (it holds a lease kept in Redis itself), so an
   * event enters the channel log once however many instances run; the others try to take
   * the lock every `leaderRetryMs`.
   */
  redis: { url: string; leaderRetryMs: number } | undefined
  /**
   * Node's HTTP server timeouts: a whole request (0 = none), its headers, and an idle
   * keep-alive connection (longer than a proxy's own idle timeout in front of it).
   * `timeoutCheckIntervalMs`: how often Node looks for requests past those timeouts (its
   * default, 30 s, would let a slow client hold a connection that much past them).
   * `jsonMaxBodyBytes`: the body limit of every route without one of its own (the JSON API).
   */
  http: {
    requestTimeoutMs: number
    headersTimeoutMs: number
    keepAliveTimeoutMs: number
    timeoutCheckIntervalMs: number
    jsonMaxBodyBytes: number
  }
  /**
   * The /admin dashboard: the last `errorsKept` errors, a feed update every `feedIntervalMs`,
   * the ingest rate kept for `rateWindowS`.
   */
  admin: { errorsKept: number; feedIntervalMs: number; rateWindowS: number }
  /** Variables of the replaced systems found in the environment, each with the one that replaces it. */
  legacyVariables: LegacyVariable[]
}

export interface UsersConfig {
  /** The first admin, created when no user exists; no password: generated in development. */
  admin: { username: string; password: string | undefined; email: string; org: string }
  accessTokenTtlS: number
  refreshTokenTtlS: number
  login: { windowS: number; maxFailuresPerUsername: number; maxFailuresPerIp: number }
  /** scrypt cost N = 2^log2N, block size r = 8, parallelism p. */
  /** `maxQueue`: hashes waiting for a slot; past it login answers 503. */
  password: { scryptLog2N: number; scryptP: number; maxConcurrent: number; maxQueue: number }
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

/** The process environment over a `.env` file in the working directory, if there is one. */
export function readEnvironment(dotenvPath = '.env'): Record<string, string | undefined> {
  let fromFile: Record<string, string> = {}
  try {
    fromFile = parseDotenv(readFileSync(dotenvPath))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  // Real environment variables win over .env.
  return { ...fromFile, ...process.env }
}

/** Parses the environment; throws a ConfigError naming every bad variable. */
export function loadConfig(source: Record<string, string | undefined> = readEnvironment()): Config {
  const parsed = envSchema.safeParse(source)
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'environment'} ${i.message}`)
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`)
  }
  const e = parsed.data
  const origins = e.ALLOWED_ORIGINS?.split(',').map((o) => o.trim()).filter((o) => o !== '')
  return {
    env: e.NODE_ENV,
    host: e.SERVER_HOST,
    port: e.SERVER_PORT,
    pathPrefix: e.PATH_PREFIX,
    jwtSecret: e.JWT_SECRET,
    dataDir: e.DATA_DIR,
    databaseUrl: e.DATABASE_URL,
    influx:
      e.INFLUXDB_URL === undefined
        ? undefined
        : {
            url: e.INFLUXDB_URL,
            token: e.INFLUXDB_TOKEN,
            database: e.INFLUXDB_DATABASE ?? '',
            gzip: e.INFLUXDB_GZIP,
            gzipLevel: e.INFLUXDB_GZIP_LEVEL,
          },
    natsUrl: e.NATS_URL,
    nats: { connectTimeoutMs: e.NATS_CONNECT_TIMEOUT_MS, publishTimeoutMs: e.NATS_PUBLISH_TIMEOUT_MS },
    mqtt: {
      enabled: e.MQTT_ENABLED,
      port: e.MQTT_PORT,
      portExplicit: source.MQTT_PORT !== undefined && source.MQTT_PORT.trim() !== '',
      forwardTimeoutMs: e.MQTT_FORWARD_TIMEOUT_MS,
      maxPacketBytes: e.MQTT_MAX_PACKET_BYTES,
      connectTimeoutMs: e.MQTT_CONNECT_TIMEOUT_MS,
      maxConnectionsPerAddress: e.MQTT_MAX_CONNECTIONS_PER_ADDRESS,
      auth: { maxFailuresPerAddress: e.MQTT_AUTH_MAX_FAILURES_PER_ADDRESS, windowS: e.MQTT_AUTH_FAILURE_WINDOW_S },
      keepaliveMaxS: e.MQTT_KEEPALIVE_MAX_S,
    },
    deviceSessions: {
      heartbeatMs: e.DEVICE_SESSION_HEARTBEAT_MS,
      staleAfterMs: e.DEVICE_SESSION_STALE_AFTER_MS,
      forgetAfterMs: e.DEVICE_INSTANCE_FORGET_AFTER_MS,
    },
    allowedOrigins: origins === undefined || origins.includes('*') ? undefined : origins,
    maxConnections: e.MAX_CONNECTIONS,
    oidc: oidcConfig(e),
    channels: {
      historySize: e.CHANNEL_HISTORY_SIZE,
      historyMaxAgeS: e.CHANNEL_HISTORY_MAX_AGE_S,
      maxBufferedBytes: e.CHANNEL_MAX_BUFFERED_BYTES,
      maxConnectionsPerUser: e.CHANNEL_MAX_CONNECTIONS_PER_USER,
      eventMaxBytes: e.CHANNEL_EVENT_MAX_BYTES,
      presenceTtlMs: e.CHANNEL_PRESENCE_TTL_MS,
      maxClientFrameBytes: e.CHANNEL_MAX_CLIENT_FRAME_BYTES,
      clientFramesPerS: e.CHANNEL_CLIENT_FRAMES_PER_S,
    },
    logLevel: e.LOG_LEVEL,
    batch: {
      maxLines: e.BATCH_MAX_LINES,
      maxBytes: e.BATCH_MAX_BYTES,
      lingerMs: e.BATCH_LINGER_MS,
      maxInflight: e.BATCH_MAX_INFLIGHT,
      maxQueuedBytes: e.BATCH_MAX_QUEUED_BYTES,
    },
    sinkTimeoutMs: e.SINK_TIMEOUT_MS,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    spool: {
      maxBytes: e.SPOOL_MAX_BYTES,
      segmentBytes: e.SPOOL_SEGMENT_BYTES,
      retryMinMs: e.SINK_RETRY_MIN_MS,
      retryMaxMs: e.SINK_RETRY_MAX_MS,
    },
    ws: {
      maxFrameBytes: e.WS_MAX_FRAME_BYTES,
      authTimeoutMs: e.WS_AUTH_TIMEOUT_MS,
      maxPendingFrames: e.WS_MAX_PENDING_FRAMES,
      maxHeldBytes: e.WS_MAX_HELD_BYTES,
      pingIntervalMs: e.WS_PING_INTERVAL_MS,
    },
    httpWrite: {
      maxBodyBytes: e.HTTP_WRITE_MAX_BODY_BYTES,
      retryAfterS: e.RETRY_AFTER_S,
      maxInflightBytes: e.HTTP_WRITE_MAX_INFLIGHT_BYTES,
    },
    jwt: {
      clockSkewS: e.JWT_CLOCK_SKEW_S,
      streamTokenTtlS: e.STREAM_TOKEN_TTL_S,
      issuer: e.TOKEN_ISSUER,
      revocationCheckMs: e.TOKEN_REVOCATION_CHECK_MS,
    },
    trustProxy: e.TRUST_PROXY,
    collectors: {
      registrationSecret: e.COLLECTOR_REGISTRATION_SECRET,
      tokenTtlS: e.COLLECTOR_TOKEN_TTL_S,
      signatureMaxSkewS: e.COLLECTOR_SIGNATURE_MAX_SKEW_S,
      certValidityDays: e.COLLECTOR_CERT_VALIDITY_DAYS,
      statsFlushMs: e.COLLECTOR_STATS_FLUSH_MS,
      statusCacheMs: e.COLLECTOR_STATUS_CACHE_MS,
      maxPushBodyBytes: e.METRICS_PUSH_MAX_BODY_BYTES,
    },
    redis: e.REDIS_URL === undefined ? undefined : { url: e.REDIS_URL, leaderRetryMs: e.REDIS_LEADER_RETRY_MS },
    http: {
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_MS,
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
      keepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      timeoutCheckIntervalMs: e.HTTP_TIMEOUT_CHECK_INTERVAL_MS,
      jsonMaxBodyBytes: e.HTTP_JSON_MAX_BODY_BYTES,
    },
    admin: { errorsKept: e.ADMIN_ERRORS_KEPT, feedIntervalMs: e.ADMIN_FEED_INTERVAL_MS, rateWindowS: e.ADMIN_RATE_WINDOW_S },
    legacyVariables: legacyVariables(source),
    users: {
      admin: { username: e.ADMIN_USERNAME, password: e.ADMIN_PASSWORD, email: e.ADMIN_EMAIL, org: e.ADMIN_ORG },
      accessTokenTtlS: e.ACCESS_TOKEN_TTL_S,
      refreshTokenTtlS: e.REFRESH_TOKEN_TTL_S,
      login: {
        windowS: e.LOGIN_RATE_WINDOW_S,
        maxFailuresPerUsername: e.LOGIN_MAX_FAILURES_PER_USERNAME,
        maxFailuresPerIp: e.LOGIN_MAX_FAILURES_PER_IP,
      },
      password: {
        scryptLog2N: e.PASSWORD_SCRYPT_LOG2_N,
        scryptP: e.PASSWORD_SCRYPT_P,
        maxConcurrent: e.PASSWORD_HASH_MAX_CONCURRENT,
        maxQueue: e.PASSWORD_HASH_MAX_QUEUE,
      },
    },
  }
}

function oidcConfig(e: Env): Config['oidc'] {
  const issuer = e.OIDC_ISSUER_URL ?? e.KINDE_ISSUER_URL
  if (issuer === undefined) return undefined
  return {
    issuer,
    audience: e.OIDC_AUDIENCE,
    jwksUrl: e.OIDC_JWKS_URL,
    jwksMaxAgeS: e.OIDC_JWKS_MAX_AGE_S,
    jwksCooldownMs: e.OIDC_JWKS_COOLDOWN_MS,
    timeoutMs: e.OIDC_TIMEOUT_MS,
  }
}

/** Why a REDIS_URL would not reach the Redis it names, or undefined: `redis[s]://[user:password@]host[:port][/db]`. */
function redisUrlProblem(value: string): string | undefined {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return 'must be a URL such as redis://127.0.0.1:6379/0 (rediss:// for TLS)'
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return `must start with redis:// or rediss://, not ${url.protocol}//`
  if (url.hostname === '') return 'names no host'
  if (url.pathname !== '' && url.pathname !== '/' && !/^\/\d{1,2}$/.test(url.pathname)) return 'its path must be a database number (/0 to /99) or nothing'
  return undefined
}
