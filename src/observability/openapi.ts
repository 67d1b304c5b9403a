import { z } from 'zod'
import { errorBody } from '../api-schemas.js'

/**
 * What every route schema may use to describe itself in `/docs/json`: the security schemes
 * (one name per way a caller proves who it is, docs/API.md section 3) and the requirement
 * lists built from them. Each route names its own requirement next to its guard, so the
 * document says what the guard checks; `/docs/json` refuses (test/integration/openapi.test.ts)
 * a documented route that names none.
 */

export const securitySchemes = {
  accessToken: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'A user access token from `POST /api/v1/auth/login` (15 min; `role` admin, operator or viewer).',
  },
  apiToken: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'mc_…',
    description: 'An API token `mc_<random>` (`POST /api/v1/tokens`), acting as its owner within its scopes.',
  },
  streamToken: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'A stream token from `POST /mock-auth` (HS256, `type:"stream"`).',
  },
  backendToken: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'A backend token made by mattpm-backend with `JWT_SECRET` (HS256, claims `userId`, `email`).',
  },
  influxToken: {
    type: 'apiKey',
    in: 'header',
    name: 'Authorization',
    description:
      '`Token <token>`, as InfluxDB clients and Telegraf send it; the token is a stream token, an access token or an API token with `ingest:write` (`Bearer <token>` works too).',
  },
  collectorToken: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'A collector token (`type:"collector"`, 30 min) from registration or renewal.',
  },
  registrationSecret: {
    type: 'apiKey',
    in: 'header',
    name: 'X-Registration-Secret',
    description: 'COLLECTOR_REGISTRATION_SECRET; without the header an operator token is required instead.',
  },
  collectorSignature: {
    type: 'apiKey',
    in: 'header',
    name: 'X-Collector-Signature',
    description: "A signature made with the collector's private key over its id and X-Collector-Timestamp (docs/API.md section 7).",
  },
  collectorTimestamp: {
    type: 'apiKey',
    in: 'header',
    name: 'X-Collector-Timestamp',
    description: 'Unix seconds, within COLLECTOR_SIGNATURE_MAX_SKEW_S of the server clock; sent with X-Collector-Signature.',
  },
  queryToken: {
    type: 'apiKey',
    in: 'query',
    name: 'token',
    description: 'A token in the query string, where browsers cannot set headers on a WebSocket upgrade.',
  },
} as const

type Scheme = keyof typeof securitySchemes
type Requirement = ReadonlyArray<Partial<Record<Scheme, readonly string[]>>>

const any = (...schemes: Scheme[]): Requirement => schemes.map((s) => ({ [s]: [] }))

/** Requirement lists (any one entry suffices), named for the guards that check them. */
export const security = {
  /** Open to anyone: health, keys, the docs themselves. */
  none: [] as Requirement,
  /** `requireRole(role)` without a scope: a user access token only. */
  user: any('accessToken'),
  /** `requireRole(role, { scope })`: a user access token, or an API token with the scope. */
  userOrApiToken: any('accessToken', 'apiToken'),
  backend: any('backendToken'),
  /** The line-protocol ingest (and /time-series `$AUTH`): stream, access or `ingest:write` API token. */
  ingest: [...any('influxToken'), ...any('streamToken', 'accessToken', 'apiToken')] as Requirement,
  collector: any('collectorToken'),
  /** Collector registration: the shared secret, or an operator's token. */
  registration: [...any('registrationSecret'), ...any('accessToken', 'apiToken')] as Requirement,
  /** Token renewal: the current collector token, or a signature with its timestamp (both headers). */
  renewal: [{ collectorToken: [] }, { collectorSignature: [], collectorTimestamp: [] }] as Requirement,
  collectorOrUser: any('collectorToken', 'accessToken'),
  /** `/ws`: an access, stream or OIDC token in `?token=` or `Authorization: Bearer`. */
  channelMember: any('queryToken', 'accessToken', 'streamToken'),
} satisfies Record<string, Requirement>

/**
 * A body the route reads raw (line protocol, gzip bodies), so it has no `body` schema for
 * Fastify to validate: `/docs/json` shows it from this, with `schema` when a zod schema
 * describes it (the route checks it by other means), else as text with `example`.
 */
export type RawBodyDoc = { description: string; contentTypes: string[] } & ({ example: string } | { schema: z.ZodType })

declare module 'fastify' {
  interface FastifySchema {
    rawBody?: RawBodyDoc
  }
}

/**
 * The HTTP answers of a WebSocket endpoint: its 101, and the refusals sent before it (the
 * shared gate: 403 origin, 503 shutdown or MAX_CONNECTIONS).
 */
export const upgradeResponses = {
  101: z.null().describe('Switching Protocols: the WebSocket session begins (see docs/API.md for its frames)'),
  403: errorBody.describe('The Origin is not in ALLOWED_ORIGINS'),
  503: errorBody.describe('Shutting down, or MAX_CONNECTIONS reached'),
}
