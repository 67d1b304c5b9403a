import { escapeMeasurement, escapeStringField, escapeTagKey, escapeTagValue } from '../ingest/line-protocol/index.js'
import {
  FIELD_VALUE_MESSAGE,
  NO_FIELDS_MESSAGE,
  keyProblem,
  measurementProblem,
  stringFieldProblem,
  tagValueProblem,
  timestampNs,
} from './metrics-schema.js'

export type MetricsLines = { ok: true; text: string; lines: number } | { ok: false; message: string }

type Obj = Record<string, unknown>

const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)
const fail = (message: string): MetricsLines => ({ ok: false, message })

/** Escaped forms of the names already seen in this body: a push repeats its names thousands of times. */
class Escaped {
  private readonly seen = new Map<string, string>()

  constructor(
    private readonly problem: (s: string) => string | null,
    private readonly escape: (s: string) => string,
  ) {}

  /** The escaped name, or undefined with `this.why` set. */
  get(s: string): string | undefined {
    let e = this.seen.get(s)
    if (e !== undefined) return e
    const problem = this.problem(s)
    if (problem !== null) {
      this.why = problem
      return undefined
    }
    e = this.escape(s)
    this.seen.set(s, e)
    return e
  }

  why = ''
}

/**
 * Checks a parsed metrics push (docs/API.md section 7) and writes it as line protocol in
 * one pass: one line per metric, its tags then `collector_id` and `hostname` (its own tags
 * of those names replaced), JSON numbers as float fields, the timestamp the metric's, else
 * the request's, else `receiveTime()`. The first problem is named by its path, as zod would
 * (`metrics[17].fields.usage: ...`), and nothing is returned but the message. `source` is
 * the JSON text `body` was parsed from: integers past 2^53 are read from it exactly.
 * `collector_id` is not compared with anyone's here (the route does that).
 */
export function metricsToLines(body: unknown, source: string, receiveTime: () => string): MetricsLines {
  if (!isObject(body)) return fail('the body must be a JSON object')
  const { collector_id: collectorId, hostname, metrics } = body
  if (typeof collectorId !== 'string') return fail('collector_id: must be a string')
  if (typeof hostname !== 'string') return fail('hostname: must be a string')
  const hostnameProblem = tagValueProblem(hostname)
  if (hostnameProblem !== null) return fail(`hostname: ${hostnameProblem}`)
  const collectorProblem = tagValueProblem(collectorId)
  if (collectorProblem !== null) return fail(`collector_id: ${collectorProblem}`)

  let exact: ExactTimestamps | undefined
  const exactOf = (): ExactTimestamps => (exact ??= exactTimestamps(source))
  let defaultNs: string | undefined
  if (body.timestamp !== undefined) {
    const r = timestampNs(body.timestamp, () => exactOf().top)
    if ('problem' in r) return fail(`timestamp: ${r.problem}`)
    defaultNs = r.ns
  }
  if (!Array.isArray(metrics)) return fail('metrics: must be an array')

  const suffix = `,collector_id=${escapeTagValue(collectorId)},hostname=${escapeTagValue(hostname)}`
  const names = new Escaped(measurementProblem, escapeMeasurement)
  const keys = new Escaped(keyProblem, escapeTagKey)
  const values = new Escaped(tagValueProblem, escapeTagValue)
  // Pushes mostly stamp all their metrics alike: the last conversion is kept.
  let lastTs: unknown
  let lastNs = ''
  let out = ''
  for (let i = 0; i < metrics.length; i++) {
    const m: unknown = metrics[i]
    const at = `metrics[${i}]`
    if (!isObject(m)) return fail(`${at}: must be an object`)
    if (typeof m.name !== 'string') return fail(`${at}.name: must be a string`)
    let line = names.get(m.name)
    if (line === undefined) return fail(`${at}.name: ${names.why}`)

    const tags = m.tags
    if (tags !== undefined) {
      if (!isObject(tags)) return fail(`${at}.tags: must be an object of strings`)
      for (const k in tags) {
        const v = tags[k]
        const ek = keys.get(k)
        if (ek === undefined) return fail(`${at}.tags.${k}: ${keys.why}`)
        if (typeof v !== 'string') return fail(`${at}.tags.${k}: must be a string`)
        const ev = values.get(v)
        if (ev === undefined) return fail(`${at}.tags.${k}: ${values.why}`)
        if (k === 'collector_id' || k === 'hostname') continue
        line += ',' + ek + '=' + ev
      }
    }
    line += suffix

    const fields = m.fields
    if (!isObject(fields)) return fail(`${at}.fields: must be an object`)
    let sep = ' '
    for (const k in fields) {
      const ek = keys.get(k)
      if (ek === undefined) return fail(`${at}.fields.${k}: ${keys.why}`)
      const v = fields[k]
      let text: string
      if (typeof v === 'number') {
        if (!Number.isFinite(v)) return fail(`${at}.fields.${k}: ${FIELD_VALUE_MESSAGE}`)
        // No "i" suffix: line protocol reads 3 as the float 3.
        text = Object.is(v, -0) ? '-0' : String(v)
      } else if (typeof v === 'boolean') text = v ? 'true' : 'false'
      else if (typeof v === 'string') {
        const problem = stringFieldProblem(v)
        if (problem !== null) return fail(`${at}.fields.${k}: ${problem}`)
        text = '"' + escapeStringField(v) + '"'
      } else return fail(`${at}.fields.${k}: ${FIELD_VALUE_MESSAGE}`)
      // The sink refuses a field named like a tag of its line.
      if (k === 'collector_id' || k === 'hostname' || (tags !== undefined && Object.hasOwn(tags, k))) {
        return fail(`${at}.fields.${k}: is also a tag key`)
      }
      line += sep + ek + '=' + text
      sep = ','
    }
    if (sep === ' ') return fail(`${at}.fields: ${NO_FIELDS_MESSAGE}`)

    let ns: string
    const ts = m.timestamp
    if (ts === undefined) ns = defaultNs ??= receiveTime()
    else if (ts === lastTs && typeof ts === 'string') ns = lastNs
    else {
      const r = timestampNs(ts, () => exactOf().metrics.get(i))
      if ('problem' in r) return fail(`${at}.timestamp: ${r.problem}`)
      ns = r.ns
      lastTs = ts
      lastNs = ns
    }
    out += line + ' ' + ns + '\n'
  }
  return { ok: true, text: out, lines: metrics.length }
}

/** The literal digits of the integer timestamps of a push: the request's, and each metric's by index. */
export interface ExactTimestamps {
  top: string | undefined
  metrics: Map<number, string>
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COLON = 0x3a
const OPEN_ARRAY = 0x5b
const OPEN_OBJECT = 0x7b
const CLOSE_ARRAY = 0x5d
/** Nesting of the body: 1 inside the body, 2 inside its metrics array, 3 inside a metric. */
const BODY_DEPTH = 1
const METRICS_DEPTH = 2
const METRIC_DEPTH = 3
const INTEGER = /-?\d+(?![\d.eE])/y

/**
 * Reads `"timestamp": <integer>` of the body and of each metric from the JSON text itself,
 * because JSON.parse keeps 53 bits and epoch ns need 61 (Node 20 has no JSON.parse source
 * access). Only called for a push that has such an integer. The text is valid JSON (it was
 * parsed): strings are skipped whole, so only structure is seen; the last of duplicate keys
 * wins, as in JSON.parse. Metrics are counted by the objects of the metrics array, which
 * holds for every metric up to the first that is no object (the checker stops there).
 */
export function exactTimestamps(text: string): ExactTimestamps {
  const found: ExactTimestamps = { top: undefined, metrics: new Map() }
  const structure = /["{}[\]]/g
  let depth = 0
  let metricsNext = false // the value after a "metrics" key of the body comes next
  let inMetrics = false
  let index = -1
  for (let m = structure.exec(text); m !== null; m = structure.exec(text)) {
    const i = m.index
    const c = text.charCodeAt(i)
    const opensMetrics = metricsNext && c === OPEN_ARRAY
    metricsNext = false
    if (c === QUOTE) {
      const end = stringEnd(text, i)
      structure.lastIndex = end + 1
      const colon = skipSpace(text, end + 1)
      if (text.charCodeAt(colon) !== COLON) continue
      const inMetric = inMetrics && depth === METRIC_DEPTH
      if (depth !== BODY_DEPTH && !inMetric) continue
      const key = keyText(text, i, end)
      if (key === 'metrics' && depth === BODY_DEPTH) metricsNext = true
      if (key !== 'timestamp') continue
      INTEGER.lastIndex = skipSpace(text, colon + 1)
      const digits = INTEGER.exec(text)?.[0]
      if (digits === undefined) continue
      if (inMetric) found.metrics.set(index, digits)
      else found.top = digits
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      depth++
      if (opensMetrics) {
        inMetrics = true
        index = -1
        found.metrics = new Map()
      } else if (inMetrics && depth === METRIC_DEPTH && c === OPEN_OBJECT) index++
    } else {
      if (inMetrics && depth === METRICS_DEPTH && c === CLOSE_ARRAY) inMetrics = false
      depth--
    }
  }
  return found
}

/** Index of the quote closing the string that opens at `start`. */
function stringEnd(text: string, start: number): number {
  for (let q = text.indexOf('"', start + 1); q >= 0; q = text.indexOf('"', q + 1)) {
    let backslashes = 0
    while (text.charCodeAt(q - 1 - backslashes) === BACKSLASH) backslashes++
    if (backslashes % 2 === 0) return q
  }
  return text.length
}

function skipSpace(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i)
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return i
    i++
  }
}

/** A key as JSON.parse reads it ("time\u0073tamp" is "timestamp"). */
function keyText(text: string, start: number, end: number): string {
  const raw = text.slice(start + 1, end)
  return raw.indexOf('\\') < 0 ? raw : (JSON.parse(text.slice(start, end + 1)) as string)
}
