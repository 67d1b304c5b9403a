// The earlier string scanner (src/ingest/line-protocol*.ts before the byte rewrite), kept
// unchanged as the reference decoder the byte path is tested against.
/**
 * Escaping and unescaping of line-protocol tokens, and the error type.
 *
 * The rules follow the InfluxDB line-protocol reference and the Go decoder
 * (github.com/influxdata/line-protocol/v2): a backslash escapes only the characters
 * listed for each token; before any other character it is a literal backslash.
 * That makes unescaping injective, so two raw (escaped) tokens are equal exactly when
 * their unescaped forms are; the scanner relies on this to compare keys without
 * unescaping them.
 *
 * None of this is on the hot path (scanFrame copies tokens verbatim).
 */

/** Longest measurement, key, tag value or string field value, in UTF-8 bytes. */
export const MAX_TOKEN_BYTES = 65_536

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

export function unescapeMeasurement(raw: string): string {
  return raw.indexOf('\\') < 0 ? raw : raw.replace(/\\([, ])/g, '$1')
}

/** Tag keys, tag values and field keys share one escape set. */
export function unescapeKey(raw: string): string {
  return raw.indexOf('\\') < 0 ? raw : raw.replace(/\\([,= ])/g, '$1')
}

export function unescapeStringField(raw: string): string {
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
