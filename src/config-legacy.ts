/**
 * Variables of the systems the gateway replaces (docs/MIGRATING.md): an operator who
 * carries an old `.env` over is told, at start-up, which variable now does that job.
 *
 * Only variables with a replacement are here. Old variables the gateway reads under the same
 * name (`SERVER_PORT`, `JWT_SECRET`, `KINDE_ISSUER_URL`, `REDIS_URL`, `NATS_URL`, ...) need no
 * word, and those of features the gateway does not have (MongoDB, S3, LLM providers, SMTP)
 * have nothing to name; docs/MIGRATING.md lists both. test/unit/migrating-doc.test.ts keeps
 * that document's tables and this list in step.
 */
export interface LegacyVariable {
  /** The old variable, as found in the environment. */
  name: string
  /** The variable that does its job now. */
  replacement: string
  /** What to do, in a few words. */
  note: string
}

interface Mapping {
  name: string
  replacement: string
  /** What the replacement does, and how it differs; never a value of the environment. */
  why: string
  /**
   * The old value as the replacement would spell it (units, format); undefined when there is
   * no equivalent (the warning then stays until the old variable is removed). Default: as is.
   */
  convert?: (old: string) => string | undefined
  /** The value may hold a password or a secret: the note never shows it. */
  secret?: boolean
}

const secondsToMs = (old: string): string | undefined => (/^\d+$/.test(old) ? String(Number(old) * 1000) : undefined)

const GO_DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** A Go duration (`15m`, `1h30m`, `90s`) in whole seconds; undefined when it is none. */
export function goDurationSeconds(text: string): number | undefined {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)]
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) return undefined
  const ms = parts.reduce((sum, p) => sum + Number(p[1]) * (GO_DURATION_UNIT_MS[p[2] as string] as number), 0)
  return Math.round(ms / 1000)
}

/** `15m` → `900`, `900` → `900`; anything else gives no suggestion. */
function durationOrSeconds(old: string): string | undefined {
  if (/^\d+$/.test(old)) return old
  const s = goDurationSeconds(old)
  return s === undefined ? undefined : String(s)
}

const MAPPINGS: readonly Mapping[] = [
  // The Go WebSocket server and pgAnalytics.
  { name: 'PORT', replacement: 'SERVER_PORT', why: 'the HTTP and WebSocket port is SERVER_PORT' },
  // The Chatbox service.
  {
    name: 'CHATBOX_PATH_PREFIX',
    replacement: 'PATH_PREFIX',
    why: 'the prefix of every route is PATH_PREFIX (no trailing "/"; empty by default, not /chatbox)',
    convert: (old) => old.replace(/\/+$/, ''),
  },
  {
    name: 'RECONNECT_TIMEOUT',
    replacement: 'CHANNEL_HISTORY_MAX_AGE_S',
    why: 'a reconnecting /ws client recovers what it missed (since=) for CHANNEL_HISTORY_MAX_AGE_S, in seconds',
    convert: (old) => {
      const s = goDurationSeconds(old)
      return s === undefined ? undefined : String(s)
    },
  },
  {
    name: 'RATE_LIMIT',
    replacement: 'CHANNEL_CLIENT_FRAMES_PER_S',
    why: 'client frames are limited per connection and second by CHANNEL_CLIENT_FRAMES_PER_S',
    convert: () => undefined,
  },
  // Service-MQTT (its internal/config; the README names no variables).
  {
    name: 'LISTEN_ADDR',
    replacement: 'SERVER_PORT',
    why: 'the HTTP API listens on SERVER_HOST:SERVER_PORT, with every other route',
    convert: (old) => /:(\d+)$/.exec(old)?.[1],
  },
  { name: 'DATABASE_DSN', replacement: 'DATABASE_URL', why: 'the Postgres connection string is DATABASE_URL', secret: true },
  {
    name: 'PUBLISH_TIMEOUT_SEC',
    replacement: 'NATS_PUBLISH_TIMEOUT_MS',
    why: 'how long a JetStream publish waits for its ack is NATS_PUBLISH_TIMEOUT_MS, in milliseconds',
    convert: secondsToMs,
  },
  // pgAnalytics (its internal/config; the progress notes name no variables).
  { name: 'ENVIRONMENT', replacement: 'NODE_ENV', why: 'development or production is NODE_ENV' },
  {
    name: 'TIMESCALE_URL',
    replacement: 'DATABASE_URL',
    why: 'time series go to InfluxDB 3 with INFLUXDB_URL, else to the metrics table of DATABASE_URL',
    secret: true,
  },
  {
    name: 'REGISTRATION_SECRET',
    replacement: 'COLLECTOR_REGISTRATION_SECRET',
    why: 'collectors present COLLECTOR_REGISTRATION_SECRET (at least 16 characters) in X-Registration-Secret',
    secret: true,
  },
  // A Go service reads these as durations (`15m`) or as seconds: either gives seconds here.
  { name: 'JWT_EXPIRATION', replacement: 'ACCESS_TOKEN_TTL_S', why: 'the access token lifetime is ACCESS_TOKEN_TTL_S, in seconds', convert: durationOrSeconds },
  {
    name: 'JWT_REFRESH_EXPIRATION',
    replacement: 'REFRESH_TOKEN_TTL_S',
    why: 'the refresh token lifetime is REFRESH_TOKEN_TTL_S, in seconds',
    convert: durationOrSeconds,
  },
  {
    name: 'REQUEST_TIMEOUT',
    replacement: 'HTTP_REQUEST_TIMEOUT_MS',
    why: 'the whole-request timeout is HTTP_REQUEST_TIMEOUT_MS, in milliseconds',
    convert: secondsToMs,
  },
  {
    name: 'SHUTDOWN_TIMEOUT',
    replacement: 'SHUTDOWN_GRACE_MS',
    why: 'the graceful shutdown takes at most SHUTDOWN_GRACE_MS, in milliseconds, more than SINK_TIMEOUT_MS',
    convert: secondsToMs,
  },
]

/** Every old variable the gateway warns about, with its replacement (docs/MIGRATING.md's tables). */
export const LEGACY_REPLACEMENTS: ReadonlyMap<string, string> = new Map(MAPPINGS.map((m) => [m.name, m.replacement]))

const present = (value: string | undefined): string | undefined =>
  value === undefined || value.trim() === '' ? undefined : value.trim()

/**
 * The old variables set in `source` whose job the gateway's variable does not do with the same
 * value yet: an operator who already set the replacement to the old value (converted to its
 * units) hears nothing; one who did not, or set it to something else, is told which is used.
 */
export function legacyVariables(source: Record<string, string | undefined>): LegacyVariable[] {
  const found: LegacyVariable[] = []
  for (const m of MAPPINGS) {
    const old = present(source[m.name])
    if (old === undefined) continue
    const wanted = (m.convert ?? ((v: string) => v))(old)
    const current = present(source[m.replacement])
    if (wanted !== undefined && current === wanted) continue
    const todo =
      current !== undefined
        ? `${m.replacement} is set${wanted === undefined ? '' : ' to another value'}, and that one is used`
        : wanted === undefined || m.secret
          ? `set ${m.replacement} instead`
          : `set ${m.replacement}=${wanted} instead`
    found.push({ name: m.name, replacement: m.replacement, note: `${m.why}; ${todo}` })
  }
  return found
}
