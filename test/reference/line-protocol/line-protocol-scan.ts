// The earlier string scanner (src/ingest/line-protocol*.ts before the byte rewrite), kept
// unchanged as the reference decoder the byte path is tested against.
/**
 * The single validation core of line protocol, shared by scanFrame (hot path) and
 * decodeLine (tests, SQL sink), so the two can never disagree.
 *
 * scanLine validates one line s[start, end) (no '\n', trailing '\r' already removed)
 * and records where each token is in the preallocated `line` state (line-protocol-tokens.ts)
 * instead of building objects: scanning allocates nothing per line. Callers read `line`
 * right after the call (everything is synchronous). The grammar follows the Go decoder
 * github.com/influxdata/line-protocol/v2 (lineprotocol/decoder.go); where this core is
 * stricter, the rule is marked "sink:" (lines InfluxDB 3 would refuse after we acked
 * them) or "gateway:".
 */
import { MAX_TOKEN_BYTES } from './line-protocol-escape.js'
import {
  BSL, COMMA, DOT, EQ, HASH, INT64_MAX, INT64_MIN_ABS, KEY_CLASS, KIND_BOOL, KIND_STRING, LINE_OK, LINE_SKIP,
  MEASUREMENT_CLASS, MINUS, QUOTE, SPACE, TAB,
  E_AFTER_FIELD, E_AFTER_TIME, E_BAD_FIELD_VALUE, E_BAD_TIME, E_CTRL, E_DUP_TAG, E_EMPTY_FIELD_KEY, E_EMPTY_TAG_KEY,
  E_EMPTY_TAG_VALUE, E_FIELD_IS_TAG, E_FIELD_NO_EQ, E_FIELD_RESERVED, E_FIELD_TYPES, E_FLOAT_RANGE, E_INT_RANGE,
  E_NO_FIELDS, E_NO_FIELD_VALUE, E_NO_MEASUREMENT, E_NUL, E_SURROGATE, E_TAG_NO_EQ, E_TIME_KEY, E_TIME_RANGE,
  E_TOO_BIG, E_UINT_RANGE, E_UNEXPECTED, E_UNTERMINATED,
  AUTO_PRECISION, exceeds, guessZeros, growFields, growTags, isDigit, line, pairEnd, sameAs, sameChars, scanBool, scanComment, scanNumber,
  scanToken, stop, stopKey, tooBigAt,
} from './line-protocol-tokens.js'

export { KIND_BOOL, KIND_FLOAT, KIND_INT, KIND_STRING, KIND_UINT, LINE_OK, LINE_SKIP, line } from './line-protocol-tokens.js'

/**
 * Validates the line s[start, end) and records its tokens in `line`.
 * `zeros` is the precision (0 ns, 3 us, 6 ms, 9 s); `reserved` lists the raw keys of
 * the server-side tags: client tags with those keys are marked dropped (tDrop).
 * Returns LINE_OK, LINE_SKIP or an error code (details in `line`).
 */
export function scanLine(s: string, start: number, end: number, zeros: number, reserved: readonly string[]): number {
  const L = line
  L.lineStart = start
  L.err = 0
  let i = start
  // The Go decoder skips leading spaces (not tabs). A line of spaces and tabs is blank.
  while (i < end && s.charCodeAt(i) === SPACE) i++
  if (i === end) return LINE_SKIP
  let c = s.charCodeAt(i)
  if (c === HASH) return scanComment(s, i + 1, end)
  if (c === TAB) {
    let j = i
    while (j < end && (s.charCodeAt(j) === SPACE || s.charCodeAt(j) === TAB)) j++
    if (j === end) return LINE_SKIP
    return stop(E_CTRL, i)
  }

  L.mStart = i
  const mEnd = scanToken(s, i, end, MEASUREMENT_CLASS, false)
  if (mEnd < 0) return L.err
  if (mEnd === i) return stop(E_NO_MEASUREMENT, i)
  if (tooBigAt(s, i, mEnd, 'measurement')) return E_TOO_BIG
  L.mEnd = i = mEnd

  let nTags = 0
  let nDrop = 0
  c = i < end ? s.charCodeAt(i) : -1
  while (c === COMMA) {
    const ks = i + 1
    const ke = scanToken(s, ks, end, KEY_CLASS, true)
    if (ke < 0) return L.err
    if (ke === ks) return stop(E_EMPTY_TAG_KEY, ks)
    if (ke === end || s.charCodeAt(ke) !== EQ) return stopKey(E_TAG_NO_EQ, ke, ks, ke)
    const vs = ke + 1
    const ve = scanToken(s, vs, end, KEY_CLASS, true)
    if (ve < 0) return L.err
    if (ve === vs) return stopKey(E_EMPTY_TAG_VALUE, vs, ks, ke)
    if (tooBigAt(s, ks, ke, 'tag key') || tooBigAt(s, vs, ve, 'tag value')) return E_TOO_BIG
    if (nTags === L.tKS.length) growTags()
    L.tKS[nTags] = ks
    L.tKE[nTags] = ke
    L.tVS[nTags] = vs
    L.tVE[nTags] = ve
    let drop = 0
    for (let r = 0; r < reserved.length; r++) {
      if (reserved[r]!.length === ke - ks && sameAs(s, ks, ke, reserved[r]!)) drop = 1
    }
    L.tDrop[nTags] = drop
    nDrop += drop
    nTags++
    i = ve
    c = i < end ? s.charCodeAt(i) : -1
  }
  L.nTags = nTags
  L.nDrop = nDrop
  L.tagsEnd = i
  if (c !== SPACE) {
    if (c === -1) return stop(E_NO_FIELDS, i)
    return stop(E_UNEXPECTED, i)
  }
  while (i < end && s.charCodeAt(i) === SPACE) i++
  if (i === end) return stop(E_NO_FIELDS, i)

  let nFields = 0
  let ve = i
  for (;;) {
    const ks = i
    const ke = scanToken(s, i, end, KEY_CLASS, true)
    if (ke < 0) return L.err
    if (ke === ks) return stop(E_EMPTY_FIELD_KEY, ks)
    if (ke === end || s.charCodeAt(ke) !== EQ) return stopKey(E_FIELD_NO_EQ, ke, ks, ke)
    if (tooBigAt(s, ks, ke, 'field key')) return E_TOO_BIG
    const vs = ke + 1
    c = vs < end ? s.charCodeAt(vs) : -1
    let kind: number
    if (c === QUOTE) {
      // String: `\"` and `\\` are escapes, any other backslash is literal. NUL is
      // refused (gateway: Postgres text cannot hold it); '\n' cannot occur (lines are split).
      let j = vs + 1
      for (; j < end; j++) {
        const d = s.charCodeAt(j)
        if (d === QUOTE) break
        if (d === BSL) {
          if (j + 1 < end && (s.charCodeAt(j + 1) === QUOTE || s.charCodeAt(j + 1) === BSL)) j++
        } else if (d === 0) return stopKey(E_NUL, j, ks, ke)
        else if (d >= 0xd800 && d <= 0xdfff) {
          j = pairEnd(s, j, end, d)
          if (j < 0) return E_SURROGATE
        }
      }
      if (j >= end) return stopKey(E_UNTERMINATED, vs, ks, ke)
      if (tooBigAt(s, vs + 1, j, 'string field')) return E_TOO_BIG
      ve = j + 1
      kind = KIND_STRING
    } else if (isDigit(c) || c === MINUS || c === DOT) {
      ve = scanNumber(s, vs, end, ks, ke)
      if (ve < 0) return L.err
      kind = line.numberKind
    } else if (c === 0x74 || c === 0x54 || c === 0x66 || c === 0x46) {
      ve = scanBool(s, vs, end)
      if (ve < 0) return stopKey(E_BAD_FIELD_VALUE, vs, ks, ke)
      kind = KIND_BOOL
    } else if (c === -1 || c === COMMA || c === SPACE) {
      return stopKey(E_NO_FIELD_VALUE, vs, ks, ke)
    } else return stopKey(E_BAD_FIELD_VALUE, vs, ks, ke)
    if (nFields === L.fKS.length) growFields()
    L.fKS[nFields] = ks
    L.fKE[nFields] = ke
    L.fVS[nFields] = vs
    L.fVE[nFields] = ve
    L.fKind[nFields] = kind
    nFields++
    i = ve
    if (i === end) break
    c = s.charCodeAt(i)
    if (c === COMMA) {
      i++
      continue
    }
    if (c !== SPACE) return stopKey(E_AFTER_FIELD, i, ks, ke)
    break
  }
  L.nFields = nFields
  L.fieldsEnd = ve

  L.tsStart = -1
  while (i < end && s.charCodeAt(i) === SPACE) i++
  if (i < end) {
    const ts = i
    const neg = s.charCodeAt(i) === MINUS
    if (neg) i++
    const ds = i
    while (i < end && isDigit(s.charCodeAt(i))) i++
    if (i === ds || (i < end && s.charCodeAt(i) !== SPACE)) return stop(E_BAD_TIME, ts)
    const z = zeros === AUTO_PRECISION ? guessZeros(s, ds, i) : zeros
    if (exceeds(s, ds, i, z, neg ? INT64_MIN_ABS : INT64_MAX)) return stop(E_TIME_RANGE, ts)
    L.tsZeros = z
    L.tsStart = ts
    L.tsEnd = i
    while (i < end && s.charCodeAt(i) === SPACE) i++
    if (i < end) return stop(E_AFTER_TIME, i)
  }
  return nTags + nFields > 24 ? checkKeysLarge(s, reserved) : checkKeys(s, reserved)
}

/**
 * Key rules beyond the grammar, checked on raw slices (unescaping is injective):
 * - duplicate tag keys among the client's tags (the Go corpus harness refuses them too);
 * - sink: `time` as a tag or field key; a field key equal to a tag key or to a
 *   server-side tag key; the same field twice with different types. InfluxDB 3 refuses
 *   such lines, and the gateway must not ack what the sink will refuse.
 * Duplicate fields of one type are allowed (last wins in InfluxDB), as in the Go decoder.
 */
function checkKeys(s: string, reserved: readonly string[]): number {
  const { tKS, tKE, fKS, fKE, fKind, nTags, nFields } = line
  for (let a = 0; a < nTags; a++) {
    const ks = tKS[a]!
    const ke = tKE[a]!
    const len = ke - ks
    if (len === 4 && sameAs(s, ks, ke, 'time')) return stopKey(E_TIME_KEY, ks, ks, ke)
    for (let b = 0; b < a; b++) {
      if (tKE[b]! - tKS[b]! === len && sameChars(s, ks, tKS[b]!, len)) return stopKey(E_DUP_TAG, ks, ks, ke)
    }
  }
  for (let a = 0; a < nFields; a++) {
    const ks = fKS[a]!
    const ke = fKE[a]!
    const len = ke - ks
    if (len === 4 && sameAs(s, ks, ke, 'time')) return stopKey(E_TIME_KEY, ks, ks, ke)
    for (let r = 0; r < reserved.length; r++) {
      if (reserved[r]!.length === len && sameAs(s, ks, ke, reserved[r]!)) return stopKey(E_FIELD_RESERVED, ks, ks, ke)
    }
    for (let b = 0; b < nTags; b++) {
      if (tKE[b]! - tKS[b]! === len && sameChars(s, ks, tKS[b]!, len)) return stopKey(E_FIELD_IS_TAG, ks, ks, ke)
    }
    for (let b = 0; b < a; b++) {
      if (fKE[b]! - fKS[b]! === len && fKind[b] !== fKind[a] && sameChars(s, ks, fKS[b]!, len)) {
        return stopKey(E_FIELD_TYPES, ks, ks, ke)
      }
    }
  }
  return LINE_OK
}

/** Same rules as checkKeys with a Map, so a line of thousands of keys stays linear. */
function checkKeysLarge(s: string, reserved: readonly string[]): number {
  const L = line
  const seen = new Map<string, number>() // key -> 0 for a tag, else the field kind
  for (let a = 0; a < L.nTags; a++) {
    const ks = L.tKS[a]!
    const ke = L.tKE[a]!
    const k = s.slice(ks, ke)
    if (k === 'time') return stopKey(E_TIME_KEY, ks, ks, ke)
    if (seen.has(k)) return stopKey(E_DUP_TAG, ks, ks, ke)
    seen.set(k, 0)
  }
  for (let a = 0; a < L.nFields; a++) {
    const ks = L.fKS[a]!
    const ke = L.fKE[a]!
    const k = s.slice(ks, ke)
    if (k === 'time') return stopKey(E_TIME_KEY, ks, ks, ke)
    if (reserved.includes(k)) return stopKey(E_FIELD_RESERVED, ks, ks, ke)
    const prev = seen.get(k)
    if (prev === 0) return stopKey(E_FIELD_IS_TAG, ks, ks, ke)
    if (prev !== undefined && prev !== L.fKind[a]) return stopKey(E_FIELD_TYPES, ks, ks, ke)
    seen.set(k, L.fKind[a]!)
  }
  return LINE_OK
}

const SHOWN_KEY_UNITS = 64

/** The reason text for the error recorded by the last scanLine on `s`. */
export function reasonOf(s: string): string {
  const L = line
  const at = ` at column ${L.errPos - L.lineStart + 1}`
  let key = ''
  if (L.errKS >= 0) {
    const raw = s.slice(L.errKS, Math.min(L.errKE, L.errKS + SHOWN_KEY_UNITS))
    key = `"${raw}${L.errKE - L.errKS > SHOWN_KEY_UNITS ? '...' : ''}"`
  }
  const ch = L.errPos < s.length ? s.charCodeAt(L.errPos) : -1
  const shown = ch < 0 ? 'end of line' : `"${String.fromCharCode(ch)}"`
  switch (L.err) {
    case E_CTRL:
      return `control character U+${ch.toString(16).toUpperCase().padStart(4, '0')}${at}`
    case E_SURROGATE: return `unpaired UTF-16 surrogate${at}`
    case E_NO_MEASUREMENT: return `missing measurement${at}`
    case E_EMPTY_TAG_KEY: return `empty tag key${at}`
    case E_TAG_NO_EQ: return `expected "=" after tag key ${key}, found ${shown}${at}`
    case E_EMPTY_TAG_VALUE: return `empty tag value for ${key}${at}`
    case E_UNEXPECTED: return `unexpected ${shown}${at}`
    case E_NO_FIELDS: return 'missing field'
    case E_EMPTY_FIELD_KEY: return `empty field key${at}`
    case E_FIELD_NO_EQ: return `expected "=" after field key ${key}, found ${shown}${at}`
    case E_NO_FIELD_VALUE: return `missing value for field ${key}${at}`
    case E_BAD_FIELD_VALUE: return `invalid field value for ${key}${at}`
    case E_INT_RANGE: return `integer out of range for ${key}${at}`
    case E_UINT_RANGE: return `unsigned integer out of range for ${key}${at}`
    case E_FLOAT_RANGE: return `float out of range for ${key}${at}`
    case E_UNTERMINATED: return `unterminated string for field ${key}${at}`
    case E_NUL: return `NUL character in string field ${key}${at}`
    case E_AFTER_FIELD: return `unexpected ${shown} after field ${key}${at}`
    case E_BAD_TIME: return `invalid timestamp${at}`
    case E_TIME_RANGE: return `timestamp out of range${at}`
    case E_AFTER_TIME: return `unexpected text after timestamp${at}`
    case E_DUP_TAG: return `duplicate tag key ${key}`
    case E_TIME_KEY: return `"time" cannot be a tag or field key${at}`
    case E_FIELD_RESERVED: return `field key ${key} is reserved for a server-side tag${at}`
    case E_FIELD_IS_TAG: return `field key ${key} is also a tag key${at}`
    case E_FIELD_TYPES: return `field ${key} repeated with a different type${at}`
    case E_TOO_BIG: return `${L.errWhat} exceeds ${MAX_TOKEN_BYTES} bytes${at}`
    default: return `invalid line${at}`
  }
}

/** 1-based column of the last error. */
export function errorColumn(): number {
  return line.errPos - line.lineStart + 1
}
