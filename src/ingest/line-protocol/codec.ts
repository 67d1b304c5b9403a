/**
 * Line protocol as values: escaping, decoding lines into Points and encoding Points,
 * for the metrics-table sink, the collectors' and devices' line builders, and tests.
 * Not the hot path (frame.ts is). Validation is the scanner's (scanner.ts), so a line
 * decodes here exactly when the frame rewrite accepts it.
 *
 * The escape rules follow the InfluxDB line-protocol reference and the Go decoder
 * (github.com/influxdata/line-protocol/v2): a backslash escapes only the characters
 * listed for each token; before any other character it is a literal backslash. That
 * makes unescaping injective, so two raw (escaped) tokens are equal exactly when their
 * unescaped forms are; the scanner relies on this to compare keys without unescaping.
 */
import {
  AUTO_PRECISION,
  KIND_BOOL,
  KIND_FLOAT,
  KIND_INT,
  KIND_STRING,
  KIND_UINT,
  LINE_OK,
  LINE_SKIP,
  LineScanner,
  MAX_TOKEN_BYTES,
  lineText,
} from './scanner.js'

export { MAX_TOKEN_BYTES }

/** `auto` guesses each timestamp's unit from its magnitude, as InfluxDB 3 does. */
export type Precision = 'ns' | 'us' | 'ms' | 's' | 'auto'

export type FieldValue = { float: number } | { int: string } | { uint: string } | { bool: boolean } | { string: string }

export interface Point {
  measurement: string
  tags: Array<[string, string]>
  fields: Array<[string, FieldValue]>
  /** Decimal int64 nanoseconds since the epoch, may be negative. */
  timeNs: string
}

export class LineProtocolError extends Error {
  override name = 'LineProtocolError'
  /** Short human-readable reason, e.g. `invalid field value for "temp" at column 18`. */
  readonly reason: string
  /** 1-based column (UTF-16 code units from the start of the line), when known. */
  readonly column?: number
  /** 1-based line number, when the error comes from a multi-line text. */
  readonly line?: number

  constructor(reason: string, column?: number, line?: number) {
    super(line === undefined ? reason : `line ${line}: ${reason}`)
    this.reason = reason
    if (column !== undefined) this.column = column
    if (line !== undefined) this.line = line
  }
}

const PRECISION_ZEROS: Readonly<Record<Precision, number>> = { ns: 0, us: 3, ms: 6, s: 9, auto: AUTO_PRECISION }
const NO_KEYS: readonly Uint8Array[] = []

/** The zeros that make a timestamp of this precision ns (AUTO_PRECISION for `auto`). */
export function zerosOf(precision: Precision): number {
  const z = PRECISION_ZEROS[precision]
  if (z === undefined) throw new TypeError(`unknown precision ${JSON.stringify(precision)}`)
  return z
}

/** Measurement: `,` and space are escaped. */
export function escapeMeasurement(s: string): string {
  return s.replace(/[, ]/g, '\\$&')
}

/** Tag key: `,`, `=` and space are escaped. */
export function escapeTagKey(s: string): string {
  return s.replace(/[,= ]/g, '\\$&')
}

/** Tag value: `,`, `=` and space are escaped. */
export function escapeTagValue(s: string): string {
  return s.replace(/[,= ]/g, '\\$&')
}

/** Field key: `,`, `=` and space are escaped. */
export function escapeFieldKey(s: string): string {
  return s.replace(/[,= ]/g, '\\$&')
}

/** String field value (without the surrounding quotes): `"` and `\` are escaped. */
export function escapeStringField(s: string): string {
  return s.replace(/["\\]/g, '\\$&')
}

function unescapeMeasurement(raw: string): string {
  return raw.indexOf('\\') < 0 ? raw : raw.replace(/\\([, ])/g, '$1')
}

/** Tag keys, tag values and field keys share one escape set. */
function unescapeKey(raw: string): string {
  return raw.indexOf('\\') < 0 ? raw : raw.replace(/\\([,= ])/g, '$1')
}

function unescapeStringField(raw: string): string {
  return raw.indexOf('\\') < 0 ? raw : raw.replace(/\\(["\\])/g, '$1')
}

/**
 * Why `s` cannot be a measurement, key or tag value that survives an encode/decode
 * round trip, or null if it can: empty, control characters, unpaired surrogates, or a
 * trailing backslash (it would escape the separator that follows it).
 */
export function nameProblem(s: string): string | null {
  if (s.length === 0) return 'is empty'
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return 'contains a control character'
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0
      if (c > 0xdbff || d < 0xdc00 || d > 0xdfff) return 'contains an unpaired surrogate'
      i++
    }
  }
  if (s.charCodeAt(s.length - 1) === 0x5c) return 'ends with a backslash'
  return null
}

/** UTF-8 length of s[start, end); unpaired surrogates count 3 (as U+FFFD would). */
export function utf8Length(s: string, start: number, end: number): number {
  let n = 0
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < end) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4
        i++
      } else n += 3
    } else n += 3
  }
  return n
}

/**
 * The bytes of a string to scan. A string with a lone surrogate is encoded as WTF-8
 * (the surrogate as the three bytes UTF-8 would give it), which the scanner refuses as
 * an unpaired surrogate at its place, instead of UTF-8's silent U+FFFD.
 */
export function toBytes(text: string | Uint8Array): Buffer {
  if (typeof text !== 'string') return Buffer.isBuffer(text) ? text : Buffer.from(text.buffer, text.byteOffset, text.byteLength)
  if ((text as unknown as { isWellFormed(): boolean }).isWellFormed()) return Buffer.from(text)
  const out = Buffer.allocUnsafe(utf8Length(text, 0, text.length))
  let w = 0
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00)
        i++
      }
    }
    if (c < 0x80) out[w++] = c
    else if (c < 0x800) {
      out[w++] = 0xc0 | (c >> 6)
      out[w++] = 0x80 | (c & 0x3f)
    } else if (c < 0x10000) {
      out[w++] = 0xe0 | (c >> 12)
      out[w++] = 0x80 | ((c >> 6) & 0x3f)
      out[w++] = 0x80 | (c & 0x3f)
    } else {
      out[w++] = 0xf0 | (c >> 18)
      out[w++] = 0x80 | ((c >> 12) & 0x3f)
      out[w++] = 0x80 | ((c >> 6) & 0x3f)
      out[w++] = 0x80 | (c & 0x3f)
    }
  }
  return out
}

/** The digits s[a, b) (an optional `-`, validated) as a decimal without leading zeros, then `zeros` zeros. */
export function decimal(s: Uint8Array, a: number, b: number, zeros: number): string {
  const neg = s[a] === 0x2d
  let p = neg ? a + 1 : a
  while (p < b - 1 && s[p] === 0x30) p++
  if (p === b - 1 && s[p] === 0x30) return '0'
  return (neg ? '-' : '') + Buffer.from(s.buffer, s.byteOffset + p, b - p).toString('latin1') + '0'.repeat(zeros)
}

/**
 * The default time validated and truncated (floored) to the precision's unit, as
 * InfluxDB does for a line without a timestamp.
 */
export function defaultTimestamp(defaultTimeNs: string, zeros: number): string {
  if (!/^-?\d{1,19}$/.test(defaultTimeNs)) throw new TypeError(`invalid default time ${JSON.stringify(defaultTimeNs)}`)
  let t = BigInt(defaultTimeNs)
  if (zeros > 0) {
    const unit = 10n ** BigInt(zeros)
    const r = t % unit
    t -= r < 0n ? r + unit : r
  }
  if (t > 9223372036854775807n || t < -9223372036854775808n) throw new RangeError('default time out of int64 range')
  return t.toString()
}

function utf8(s: Uint8Array, a: number, b: number): string {
  return Buffer.from(s.buffer, s.byteOffset + a, b - a).toString('utf8')
}

function decodeScanned(L: LineScanner, s: Uint8Array, zeros: number, defaultTimeNs: string | undefined): Point {
  const tags: Array<[string, string]> = []
  for (let t = 0; t < L.nTags; t++) {
    tags.push([unescapeKey(utf8(s, L.tKS[t]!, L.tKE[t]!)), unescapeKey(utf8(s, L.tVS[t]!, L.tVE[t]!))])
  }
  const fields: Array<[string, FieldValue]> = []
  for (let f = 0; f < L.nFields; f++) {
    const vs = L.fVS[f]!
    const ve = L.fVE[f]!
    let value: FieldValue
    switch (L.fKind[f]) {
      case KIND_FLOAT: value = { float: Number(utf8(s, vs, ve)) }; break
      case KIND_INT: value = { int: decimal(s, vs, ve - 1, 0) }; break
      case KIND_UINT: value = { uint: decimal(s, vs, ve - 1, 0) }; break
      case KIND_BOOL: value = { bool: (s[vs]! | 0x20) === 0x74 }; break
      case KIND_STRING: value = { string: unescapeStringField(utf8(s, vs + 1, ve - 1)) }; break
      default: throw new Error('unreachable: unknown field kind')
    }
    fields.push([unescapeKey(utf8(s, L.fKS[f]!, L.fKE[f]!)), value])
  }
  let timeNs: string
  if (L.tsStart >= 0) timeNs = decimal(s, L.tsStart, L.tsEnd, L.tsZeros)
  else if (defaultTimeNs !== undefined) timeNs = defaultTimestamp(defaultTimeNs, Math.max(zeros, 0))
  else throw new LineProtocolError('missing timestamp and no default time')
  return { measurement: unescapeMeasurement(utf8(s, L.mStart, L.mEnd)), tags, fields, timeNs }
}

function lineError(L: LineScanner, s: Uint8Array, end: number, lineNo?: number): LineProtocolError {
  return new LineProtocolError(L.reason(s, lineText(s, L.lineStart, end)), L.errorColumn(s), lineNo)
}

/**
 * Decodes one line (a trailing '\n' or '\r\n' is allowed) into a Point, unescaping
 * names and values. Throws LineProtocolError (with .reason and .column) when the line
 * is invalid, blank or a comment.
 */
export function decodeLine(text: string | Uint8Array, precision: Precision = 'ns', defaultTimeNs?: string): Point {
  const zeros = zerosOf(precision)
  const s = toBytes(text)
  let end = s.length
  if (end > 0 && s[end - 1] === 0x0a) end--
  if (end > 0 && s[end - 1] === 0x0d) end--
  const nl = s.indexOf(0x0a)
  if (nl >= 0 && nl < end) throw new LineProtocolError('more than one line', lineText(s, 0, nl).length + 1)
  const L = new LineScanner()
  const r = L.scan(s, 0, end, zeros, NO_KEYS)
  if (r === LINE_SKIP) throw new LineProtocolError('blank or comment line')
  if (r !== LINE_OK) throw lineError(L, s, end)
  return decodeScanned(L, s, zeros, defaultTimeNs)
}

/**
 * Decodes every data line of a text split at '\n' like the frame rewrite does (e.g. a
 * batch it produced, for a SQL sink). Throws LineProtocolError with .line on the first bad line.
 */
export function decodeLines(text: string | Uint8Array, precision: Precision = 'ns', defaultTimeNs?: string): Point[] {
  const zeros = zerosOf(precision)
  const s = toBytes(text)
  const L = new LineScanner()
  const points: Point[] = []
  let lineNo = 0
  for (let ls = 0; ls < s.length; ) {
    lineNo++
    let nl = s.indexOf(0x0a, ls)
    if (nl < 0) nl = s.length
    const le = nl > ls && s[nl - 1] === 0x0d ? nl - 1 : nl
    const r = L.scan(s, ls, le, zeros, NO_KEYS)
    if (r !== LINE_SKIP) {
      if (r !== LINE_OK) throw lineError(L, s, le, lineNo)
      try {
        points.push(decodeScanned(L, s, zeros, defaultTimeNs))
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
  const s = toBytes(text)
  const L = new LineScanner()
  if (L.scan(s, 0, s.length, 0, NO_KEYS) !== LINE_OK) throw lineError(L, s, s.length)
  return text
}
