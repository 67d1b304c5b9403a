// The earlier string scanner (src/ingest/line-protocol*.ts before the byte rewrite), kept
// unchanged as the reference decoder the byte path is tested against.
/**
 * InfluxDB line protocol: validation and server-side tagging of client frames
 * (scanFrame, the ingest hot path), decoding (decodeLine/decodeLines) and encoding
 * (encodePoint). All validation is done by one core, scanLine in line-protocol-scan.ts.
 *
 * Decisions where the reference is silent or where we are deliberately stricter than
 * the Go decoder (github.com/influxdata/line-protocol/v2) are listed in
 * test/unit/line-protocol.corpus.test.ts with their counts on the public corpus.
 * In short:
 * - a frame is split at '\n' first, so a string field cannot span lines; a trailing
 *   '\r' is removed from every line;
 * - leading spaces are skipped (as in Go); a line of spaces and tabs is blank; tab is not
 *   white space anywhere else (Go), and control characters are refused everywhere except
 *   in string fields, where only NUL is refused; unpaired UTF-16 surrogates are refused;
 * - `\\` is not an escape in names (Go); in string fields only `\"` and `\\` are;
 * - measurement, keys, tag values and string values are capped at MAX_TOKEN_BYTES UTF-8
 *   bytes, measured on the token as written (escapes included);
 * - duplicate tag keys, a `time` key, a field key that is also a tag key (the client's or
 *   a server-side one) and one field repeated with different types are refused;
 * - without a timestamp, a line gets the default time truncated to the precision (as
 *   InfluxDB does); timestamps are written out in ns. Columns count UTF-16 code units.
 */
import {
  LINE_OK,
  LINE_SKIP,
  KIND_BOOL,
  KIND_FLOAT,
  KIND_INT,
  KIND_STRING,
  KIND_UINT,
  errorColumn,
  line as L,
  reasonOf,
  scanLine,
} from './line-protocol-scan.js'
import { AUTO_PRECISION } from './line-protocol-tokens.js'
import {
  LineProtocolError,
  escapeFieldKey,
  escapeMeasurement,
  escapeStringField,
  escapeTagKey,
  escapeTagValue,
  nameProblem,
  unescapeKey,
  unescapeMeasurement,
  unescapeStringField,
} from './line-protocol-escape.js'

export {
  LineProtocolError,
  MAX_TOKEN_BYTES,
  escapeFieldKey,
  escapeMeasurement,
  escapeStringField,
  escapeTagKey,
  escapeTagValue,
} from './line-protocol-escape.js'

/** `auto` guesses each timestamp's unit from its magnitude, as InfluxDB 3 does. */
export type Precision = 'ns' | 'us' | 'ms' | 's' | 'auto'

/** Server-side tags to add to every line; built once per connection/token by makeTagging. */
export interface Tagging {
  /** `,key=value...` pre-escaped, appended at the end of every line's tag set. */
  readonly suffix: string
  /** The escaped keys: a client tag with one of these keys is dropped. */
  readonly rawKeys: readonly string[]
}

export interface ScanOk {
  ok: true
  /** The rewritten data lines, each terminated by '\n'. */
  text: string
  /** Number of data lines (blank and comment lines are not counted). */
  lines: number
}

export interface ScanErr {
  ok: false
  /** 1-based over the frame split at '\n' (blank and comment lines count). */
  line: number
  reason: string
}

export type FieldValue = { float: number } | { int: string } | { uint: string } | { bool: boolean } | { string: string }

export interface Point {
  measurement: string
  tags: Array<[string, string]>
  fields: Array<[string, FieldValue]>
  /** Decimal int64 nanoseconds since the epoch, may be negative. */
  timeNs: string
}

const PRECISION_ZEROS: Readonly<Record<Precision, number>> = { ns: 0, us: 3, ms: 6, s: 9, auto: AUTO_PRECISION }
const ZEROS = ['', '0', '00', '000', '0000', '00000', '000000', '0000000', '00000000', '000000000']
const NO_KEYS: readonly string[] = []

function zerosOf(precision: Precision): number {
  const z = PRECISION_ZEROS[precision]
  if (z === undefined) throw new TypeError(`unknown precision ${JSON.stringify(precision)}`)
  return z
}

/**
 * Builds the server-side tags, e.g. [['user', 'john_doe'], ['org', 'acme_corp']].
 * Keys and values are escaped here; an empty key or value (invalid in line protocol),
 * a control character, a trailing backslash, a duplicate key or `time` throws.
 */
export function makeTagging(tags: ReadonlyArray<readonly [key: string, value: string]>): Tagging {
  let suffix = ''
  const rawKeys: string[] = []
  for (const [key, value] of tags) {
    const problem = nameProblem(key) ?? nameProblem(value)
    if (problem !== null) throw new TypeError(`server-side tag ${JSON.stringify(key)}: key or value ${problem}`)
    const rawKey = escapeTagKey(key)
    if (rawKeys.includes(rawKey)) throw new TypeError(`duplicate server-side tag ${JSON.stringify(key)}`)
    rawKeys.push(rawKey)
    suffix += `,${rawKey}=${escapeTagValue(value)}`
  }
  // Self-check through the shared core: the suffix must make any valid line valid.
  const probe = `m${suffix} f=1`
  if (scanLine(probe, 0, probe.length, 0, NO_KEYS) !== LINE_OK) throw new TypeError(`server-side tags: ${reasonOf(probe)}`)
  return Object.freeze({ suffix, rawKeys: Object.freeze(rawKeys) })
}

const INT64_MAX_DIGITS = '9223372036854775807'

/** Digits only, no leading zero, within int64 (strings of equal length compare as numbers). */
function isPlainInt64(s: string): boolean {
  const n = s.length
  if (n === 0 || n > 19 || (n > 1 && s.charCodeAt(0) === 0x30)) return false
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x30 || c > 0x39) return false
  }
  return n < 19 || s <= INT64_MAX_DIGITS
}

let lastDefault = ''
let lastZeros = -1
let lastDefaultTs = ''

/** defaultTimeNs validated and truncated (floored) to the precision; cached per frame. */
function defaultTimestamp(defaultTimeNs: string, zeros: number): string {
  if (defaultTimeNs === lastDefault && zeros === lastZeros) return lastDefaultTs
  // The common case, a new receive time every frame at ns precision: no BigInt needed.
  if (zeros === 0 && isPlainInt64(defaultTimeNs)) return defaultTimeNs
  if (!/^-?\d{1,19}$/.test(defaultTimeNs)) throw new TypeError(`invalid default time ${JSON.stringify(defaultTimeNs)}`)
  let t = BigInt(defaultTimeNs)
  if (zeros > 0) {
    const unit = 10n ** BigInt(zeros)
    const r = t % unit
    t -= r < 0n ? r + unit : r
  }
  if (t > 9223372036854775807n || t < -9223372036854775808n) throw new RangeError('default time out of int64 range')
  lastDefault = defaultTimeNs
  lastZeros = zeros
  lastDefaultTs = t.toString()
  return lastDefaultTs
}

/** The timestamp s[a, b) (validated) in ns, without leading zeros. */
function nsTimestamp(s: string, a: number, b: number, zeros: number): string {
  const neg = s.charCodeAt(a) === 0x2d
  let p = neg ? a + 1 : a
  while (p < b - 1 && s.charCodeAt(p) === 0x30) p++
  if (p === b - 1 && s.charCodeAt(p) === 0x30) return '0'
  return (neg ? '-' : '') + s.slice(p, b) + ZEROS[zeros]!
}

/**
 * Validates a frame and rewrites it: the server-side tags are appended to each line's
 * tag set (client tags with the same keys dropped), timestamps are made ns, lines
 * without one get the default time, blank and comment lines are removed. The output is
 * built from slices of the frame; nothing is allocated per line but the output string.
 */
export function scanFrame(
  frame: string,
  tagging: Tagging,
  defaultTimeNs: string | (() => string),
  precision: Precision = 'ns',
): ScanOk | ScanErr {
  const zeros = zerosOf(precision)
  // Asked for only when a line has no timestamp (a function: read the clock only then).
  let defaultSuffix: string | undefined
  const { suffix, rawKeys } = tagging
  const n = frame.length
  let out = ''
  let copyFrom = 0 // frame[copyFrom, ...) is pending verbatim output
  let lineNo = 0
  let lines = 0
  for (let ls = 0; ls < n; ) {
    lineNo++
    let nl = frame.indexOf('\n', ls)
    if (nl < 0) nl = n
    const le = nl > ls && frame.charCodeAt(nl - 1) === 0x0d ? nl - 1 : nl
    const r = scanLine(frame, ls, le, zeros, rawKeys)
    if (r === LINE_SKIP) {
      if (ls > copyFrom) out += frame.slice(copyFrom, ls)
      copyFrom = nl + 1
    } else if (r !== LINE_OK) {
      return { ok: false, line: lineNo, reason: reasonOf(frame) }
    } else {
      lines++
      if (L.mStart !== ls) {
        // Leading spaces are dropped.
        if (ls > copyFrom) out += frame.slice(copyFrom, ls)
        copyFrom = L.mStart
      }
      if (L.nDrop > 0) {
        for (let t = 0; t < L.nTags; t++) {
          if (L.tDrop[t] === 0) continue
          out += frame.slice(copyFrom, L.tKS[t]! - 1) // up to the comma before the tag
          copyFrom = L.tVE[t]!
        }
      }
      const tagsEnd = L.tagsEnd
      out += frame.slice(copyFrom, tagsEnd) + suffix
      copyFrom = tagsEnd
      if (L.tsStart < 0) {
        defaultSuffix ??= ` ${defaultTimestamp(typeof defaultTimeNs === 'string' ? defaultTimeNs : defaultTimeNs(), Math.max(zeros, 0))}\n`
        out += frame.slice(copyFrom, L.fieldsEnd) + defaultSuffix
        copyFrom = nl + 1
      } else if (L.tsZeros !== 0) {
        out += frame.slice(copyFrom, L.fieldsEnd) + ' ' + nsTimestamp(frame, L.tsStart, L.tsEnd, L.tsZeros) + '\n'
        copyFrom = nl + 1
      } else if (L.tsEnd !== nl || nl === n) {
        // Trailing spaces, '\r' or no final '\n': cut after the timestamp.
        out += frame.slice(copyFrom, L.tsEnd) + '\n'
        copyFrom = nl + 1
      } // else: the rest of the line and its '\n' stay pending, verbatim
    }
    ls = nl + 1
  }
  if (copyFrom < n) out += frame.slice(copyFrom, n)
  return { ok: true, text: out, lines }
}

function decodeScanned(s: string, zeros: number, defaultTimeNs: string | undefined): Point {
  const tags: Array<[string, string]> = []
  for (let t = 0; t < L.nTags; t++) {
    tags.push([unescapeKey(s.slice(L.tKS[t]!, L.tKE[t]!)), unescapeKey(s.slice(L.tVS[t]!, L.tVE[t]!))])
  }
  const fields: Array<[string, FieldValue]> = []
  for (let f = 0; f < L.nFields; f++) {
    const vs = L.fVS[f]!
    const ve = L.fVE[f]!
    let value: FieldValue
    switch (L.fKind[f]) {
      case KIND_FLOAT: value = { float: Number(s.slice(vs, ve)) }; break
      case KIND_INT: value = { int: nsTimestamp(s, vs, ve - 1, 0) }; break
      case KIND_UINT: value = { uint: nsTimestamp(s, vs, ve - 1, 0) }; break
      case KIND_BOOL: value = { bool: (s.charCodeAt(vs) | 0x20) === 0x74 }; break
      case KIND_STRING: value = { string: unescapeStringField(s.slice(vs + 1, ve - 1)) }; break
      default: throw new Error('unreachable: unknown field kind')
    }
    fields.push([unescapeKey(s.slice(L.fKS[f]!, L.fKE[f]!)), value])
  }
  let timeNs: string
  if (L.tsStart >= 0) timeNs = nsTimestamp(s, L.tsStart, L.tsEnd, L.tsZeros)
  else if (defaultTimeNs !== undefined) timeNs = defaultTimestamp(defaultTimeNs, Math.max(zeros, 0))
  else throw new LineProtocolError('missing timestamp and no default time')
  return { measurement: unescapeMeasurement(s.slice(L.mStart, L.mEnd)), tags, fields, timeNs }
}

/**
 * Decodes one line (a trailing '\n' or '\r\n' is allowed) into a Point, unescaping
 * names and values. Throws LineProtocolError (with .reason and .column) when the line
 * is invalid, blank or a comment. Not for the hot path.
 */
export function decodeLine(text: string, precision: Precision = 'ns', defaultTimeNs?: string): Point {
  const zeros = zerosOf(precision)
  let end = text.length
  if (end > 0 && text.charCodeAt(end - 1) === 0x0a) end--
  if (end > 0 && text.charCodeAt(end - 1) === 0x0d) end--
  const nl = text.indexOf('\n')
  if (nl >= 0 && nl < end) throw new LineProtocolError('more than one line', nl + 1)
  const r = scanLine(text, 0, end, zeros, NO_KEYS)
  if (r === LINE_SKIP) throw new LineProtocolError('blank or comment line')
  if (r !== LINE_OK) throw new LineProtocolError(reasonOf(text), errorColumn())
  return decodeScanned(text, zeros, defaultTimeNs)
}

/**
 * Decodes every data line of a text split at '\n' like scanFrame does (e.g. the text
 * scanFrame produced, for a SQL sink). Throws LineProtocolError with .line on the first bad line.
 */
export function decodeLines(text: string, precision: Precision = 'ns', defaultTimeNs?: string): Point[] {
  const zeros = zerosOf(precision)
  const points: Point[] = []
  let lineNo = 0
  for (let ls = 0; ls < text.length; ) {
    lineNo++
    let nl = text.indexOf('\n', ls)
    if (nl < 0) nl = text.length
    const le = nl > ls && text.charCodeAt(nl - 1) === 0x0d ? nl - 1 : nl
    const r = scanLine(text, ls, le, zeros, NO_KEYS)
    if (r !== LINE_SKIP) {
      if (r !== LINE_OK) throw new LineProtocolError(reasonOf(text), errorColumn(), lineNo)
      try {
        points.push(decodeScanned(text, zeros, defaultTimeNs))
      } catch (e) {
        throw e instanceof LineProtocolError ? new LineProtocolError(e.reason, e.column, lineNo) : e
      }
    }
    ls = nl + 1
  }
  return points
}

function encodeValue(v: FieldValue): string {
  if ('float' in v) {
    if (!Number.isFinite(v.float)) throw new LineProtocolError(`non-finite float ${v.float} cannot be encoded`)
    return Object.is(v.float, -0) ? '-0' : String(v.float)
  }
  if ('int' in v) return `${v.int}i`
  if ('uint' in v) return `${v.uint}u`
  if ('bool' in v) return v.bool ? 'true' : 'false'
  return `"${escapeStringField(v.string)}"`
}

/**
 * Encodes a point as one line (no '\n', timestamp in ns). Throws LineProtocolError for a
 * point that cannot round-trip: see nameProblem, a measurement starting with `#`, a
 * string field with a newline (frames are split at '\n'), a non-finite float, or anything the scanner refuses.
 */
export function encodePoint(p: Point): string {
  const check = (what: string, s: string): void => {
    const problem = nameProblem(s)
    if (problem !== null) throw new LineProtocolError(`${what} ${JSON.stringify(s)} ${problem}`)
  }
  check('measurement', p.measurement)
  if (p.measurement.charCodeAt(0) === 0x23) throw new LineProtocolError('measurement cannot start with "#"')
  let text = escapeMeasurement(p.measurement)
  for (const [k, v] of p.tags) {
    check('tag key', k)
    check('tag value', v)
    text += `,${escapeTagKey(k)}=${escapeTagValue(v)}`
  }
  if (p.fields.length === 0) throw new LineProtocolError('missing field')
  let sep = ' '
  for (const [k, v] of p.fields) {
    check('field key', k)
    if ('string' in v && v.string.includes('\n')) throw new LineProtocolError(`string field ${JSON.stringify(k)} contains a newline`)
    text += `${sep}${escapeFieldKey(k)}=${encodeValue(v)}`
    sep = ','
  }
  text += ` ${p.timeNs}`
  if (scanLine(text, 0, text.length, 0, NO_KEYS) !== LINE_OK) throw new LineProtocolError(reasonOf(text), errorColumn())
  return text
}
