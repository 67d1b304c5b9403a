import { z } from 'zod'
import { errorBody } from '../api-schemas.js'
import { MAX_TOKEN_BYTES, nameProblem, utf8Length } from '../ingest/line-protocol/index.js'

/**
 * The metrics push body (docs/API.md section 7) and the rules its parts follow. The route
 * validates with the hand-written checker of metrics-lines.ts (zod over 10,000 metrics costs
 * about 2.5 times the JSON parse); this zod schema documents the same body and shares every
 * rule and message through the functions below, and a unit test holds the two to the same
 * answers.
 */

/** The line-protocol names the collector tags every metric with; a metric's own are replaced. */
export const SERVER_TAG_KEYS = ['collector_id', 'hostname'] as const

/** Why `s` cannot be a measurement, or null. */
export function measurementProblem(s: string): string | null {
  const problem = nameProblem(s)
  if (problem !== null) return problem
  // A line starting with "#" is a comment.
  if (s.charCodeAt(0) === 0x23) return 'cannot start with "#"'
  return tooLong(s)
}

/** Why `s` cannot be a tag or field key, or null. */
export function keyProblem(s: string): string | null {
  if (s === 'time') return '"time" cannot be a tag or field key'
  return nameProblem(s) ?? tooLong(s)
}

/** Why `s` cannot be a tag value (empty values included), or null. */
export function tagValueProblem(s: string): string | null {
  return nameProblem(s) ?? tooLong(s)
}

/** Why `s` cannot be a string field value, or null. */
export function stringFieldProblem(s: string): string | null {
  // Frames are split at "\n", and the sink refuses NUL.
  if (s.indexOf('\n') >= 0) return 'contains a newline'
  if (s.indexOf('\0') >= 0) return 'contains a NUL character'
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0
      if (c > 0xdbff || d < 0xdc00 || d > 0xdfff) return 'contains an unpaired surrogate'
      i++
    }
  }
  return tooLong(s)
}

/** A token shorter than this many UTF-16 units cannot exceed MAX_TOKEN_BYTES in UTF-8, even escaped. */
const FAST_TOKEN_UNITS = Math.floor(MAX_TOKEN_BYTES / 6)

/** Measured with every character escaped at worst (the sink measures tokens as written). */
function tooLong(s: string): string | null {
  if (s.length <= FAST_TOKEN_UNITS) return null
  let escapes = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x2c || c === 0x3d || c === 0x20 || c === 0x22 || c === 0x5c) escapes++
  }
  return utf8Length(s, 0, s.length) + escapes > MAX_TOKEN_BYTES ? `exceeds ${MAX_TOKEN_BYTES} bytes` : null
}

export const FIELD_VALUE_MESSAGE = 'must be a finite number, a boolean or a string'
export const NO_FIELDS_MESSAGE = 'at least one field is required'
export const TIMESTAMP_MESSAGE = 'must be an RFC 3339 timestamp or integer epoch nanoseconds (a number or a string of digits)'
export const TIMESTAMP_RANGE_MESSAGE = 'is out of the range of int64 nanoseconds (years 1677 to 2262)'

const INT64_MAX = 9223372036854775807n
const INT64_MIN = -9223372036854775808n
const DIGITS = /^-?\d+$/
/** More digits than int64 has (19, and a sign). */
const MAX_INT64_CHARS = 20
/** Date.UTC reads years 0-99 as 1900-1999; they are out of range anyway. */
const FIRST_FOUR_DIGIT_YEAR = 100
/** RFC 3339 (section 5.6); "t" and "z" may be lower case, as the RFC allows. */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/
const NS_PER_S = 1_000_000_000n
const NS_DIGITS = 9
const MS_PER_MINUTE = 60_000

export type TimestampResult = { ns: string } | { problem: string }

/** Integer epoch ns as decimal digits (a string: JSON numbers past 2^53 arrive as strings of their literal). */
export function digitsToNs(s: string): TimestampResult {
  if (!DIGITS.test(s)) return { problem: TIMESTAMP_MESSAGE }
  if (s.length > MAX_INT64_CHARS) return { problem: TIMESTAMP_RANGE_MESSAGE }
  const t = BigInt(s)
  if (t > INT64_MAX || t < INT64_MIN) return { problem: TIMESTAMP_RANGE_MESSAGE }
  return { ns: t.toString() }
}

/**
 * An RFC 3339 timestamp in epoch ns, exact to the nanosecond (Date keeps milliseconds only);
 * digits past the ninth are truncated, as Go's time.Parse (InfluxDB, Telegraf) does. A leap
 * second (60) is refused, as Go refuses it.
 */
export function rfc3339ToNs(s: string): TimestampResult {
  const m = RFC3339.exec(s)
  if (m === null) return { problem: TIMESTAMP_MESSAGE }
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i]))
  if (year! < FIRST_FOUR_DIGIT_YEAR) return { problem: TIMESTAMP_RANGE_MESSAGE }
  const utcMs = Date.UTC(year!, month! - 1, day!, hour!, minute!, second!)
  const date = new Date(utcMs)
  // Date.UTC rolls 2025-02-30 over to March: a field out of range shows as a changed one.
  if (
    month! < 1 || date.getUTCMonth() !== month! - 1 || date.getUTCDate() !== day ||
    hour! > 23 || minute! > 59 || second! > 59
  ) {
    return { problem: TIMESTAMP_MESSAGE }
  }
  let ms = date.getTime()
  if (m[8] === undefined) {
    const offsetMin = Number(m[10]) * 60 + Number(m[11])
    if (Number(m[10]) > 23 || Number(m[11]) > 59) return { problem: TIMESTAMP_MESSAGE }
    ms -= (m[9] === '-' ? -offsetMin : offsetMin) * MS_PER_MINUTE
  }
  const fraction = (m[7] ?? '').slice(0, NS_DIGITS).padEnd(NS_DIGITS, '0')
  const t = (BigInt(ms) / 1000n) * NS_PER_S + BigInt(fraction)
  if (t > INT64_MAX || t < INT64_MIN) return { problem: TIMESTAMP_RANGE_MESSAGE }
  return { ns: t.toString() }
}

/**
 * A timestamp of the body: an RFC 3339 string, a string of digits (epoch ns), or a JSON
 * integer. `exact` gives the literal digits of a JSON integer past 2^53, which JSON.parse
 * has rounded to the nearest double (1.7e18 ns is rounded to a multiple of 256).
 */
export function timestampNs(value: unknown, exact?: () => string | undefined): TimestampResult {
  if (typeof value === 'string') return DIGITS.test(value) ? digitsToNs(value) : rfc3339ToNs(value)
  if (typeof value !== 'number' || !Number.isInteger(value)) return { problem: TIMESTAMP_MESSAGE }
  if (Number.isSafeInteger(value)) return { ns: String(value) }
  const digits = exact?.()
  return digits !== undefined ? digitsToNs(digits) : digitsToNs(BigInt(value).toString())
}

// --- The zod schema: documentation, and the reference the checker is tested against. ---

const refineWith = (problem: (s: string) => string | null) => (s: string, ctx: z.RefinementCtx) => {
  const p = problem(s)
  if (p !== null) ctx.addIssue({ code: 'custom', message: p })
}

const timestampSchema = z
  .union([z.string(), z.number()])
  .superRefine((v, ctx) => {
    const r = timestampNs(v)
    if ('problem' in r) ctx.addIssue({ code: 'custom', message: r.problem })
  })
  .describe('RFC 3339, or integer epoch nanoseconds (a JSON integer or a string of digits)')

const fieldValue = z.union([z.number(), z.boolean(), z.string()], { error: FIELD_VALUE_MESSAGE }).superRefine((v, ctx) => {
  if (typeof v === 'number' && !Number.isFinite(v)) ctx.addIssue({ code: 'custom', message: FIELD_VALUE_MESSAGE })
  if (typeof v === 'string') refineWith(stringFieldProblem)(v, ctx)
})

export const pushedMetric = z
  .object({
    name: z.string().superRefine(refineWith(measurementProblem)).describe('the measurement'),
    tags: z
      .record(z.string().superRefine(refineWith(keyProblem)), z.string({ error: 'must be a string' }).superRefine(refineWith(tagValueProblem)))
      .optional()
      .describe('collector_id and hostname are replaced by the collector\'s'),
    fields: z
      .record(z.string().superRefine(refineWith(keyProblem)), fieldValue)
      .describe('JSON numbers are written as float fields'),
    timestamp: timestampSchema.optional().describe("default: the request's timestamp, else the receive time"),
  })
  .superRefine((m, ctx) => {
    const keys = Object.keys(m.fields)
    if (keys.length === 0) ctx.addIssue({ code: 'custom', path: ['fields'], message: NO_FIELDS_MESSAGE })
    for (const k of keys) {
      if ((SERVER_TAG_KEYS as readonly string[]).includes(k) || (m.tags !== undefined && Object.hasOwn(m.tags, k))) {
        ctx.addIssue({ code: 'custom', path: ['fields', k], message: 'is also a tag key' })
      }
    }
  })

export const metricsPushBody = z.object({
  collector_id: z.string().describe("the collector token's"),
  hostname: z.string().superRefine(refineWith(tagValueProblem)).describe('written as the hostname tag'),
  timestamp: timestampSchema.optional(),
  metrics: z.array(pushedMetric),
}).meta({
  examples: [
    {
      collector_id: '5f0c6b1e-8a3d-4c52-9f7e-2b1d0c9a8e77',
      hostname: 'db-1',
      timestamp: '2026-01-01T00:00:00Z',
      metrics: [{ name: 'pg_stat_database', tags: { datname: 'app' }, fields: { xact_commit: 1024, numbackends: 3 } }],
    },
  ],
})

export type MetricsPushBody = z.infer<typeof metricsPushBody>

export const metricsPushAccepted = z.object({
  status: z.literal('accepted'),
  metrics_inserted: z.number().int(),
  processing_time_ms: z.number().int(),
})

export const metricsPushResponses = {
  200: metricsPushAccepted.describe('every metric is durable (in the sink or the spool)'),
  400: errorBody,
  401: errorBody,
  403: errorBody,
  413: errorBody,
  415: errorBody,
  503: errorBody,
}

/** A zod issue as the checker words it: `metrics[17].fields.usage: message`. */
export function issueText(issue: { path: ReadonlyArray<PropertyKey>; message: string }): string {
  let path = ''
  for (const p of issue.path) path += typeof p === 'number' ? `[${p}]` : path === '' ? String(p) : `.${String(p)}`
  return path === '' ? issue.message : `${path}: ${issue.message}`
}
