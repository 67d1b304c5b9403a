/**
 * The single validation core of line protocol, shared by scanFrame (hot path) and
 * decodeLine (tests, SQL sink), so the two can never disagree.
 *
 * scanLine validates one line s[start, end) (no '\n', trailing '\r' already removed)
 * and records where each token is in the preallocated `line` state below, instead of
 * building objects: scanning allocates nothing per line. Callers read `line` right
 * after the call (everything is synchronous). The grammar follows the Go decoder
 * github.com/influxdata/line-protocol/v2 (lineprotocol/decoder.go); where this core is
 * stricter, the rule is marked "sink:" (lines InfluxDB 3 would refuse after we acked
 * them) or "gateway:".
 */
import { MAX_TOKEN_BYTES, utf8Length } from './line-protocol-escape.js'

export const LINE_OK = 0
export const LINE_SKIP = 1 // blank line or comment

export const KIND_FLOAT = 1
export const KIND_INT = 2
export const KIND_UINT = 3
export const KIND_BOOL = 4
export const KIND_STRING = 5

// Error codes (> LINE_SKIP); reasonOf() turns them into text.
const E_CTRL = 2
const E_SURROGATE = 3
const E_NO_MEASUREMENT = 4
const E_EMPTY_TAG_KEY = 5
const E_TAG_NO_EQ = 6
const E_EMPTY_TAG_VALUE = 7
const E_UNEXPECTED = 8
const E_NO_FIELDS = 9
const E_EMPTY_FIELD_KEY = 10
const E_FIELD_NO_EQ = 11
const E_NO_FIELD_VALUE = 12
const E_BAD_FIELD_VALUE = 13
const E_INT_RANGE = 14
const E_UINT_RANGE = 15
const E_FLOAT_RANGE = 16
const E_UNTERMINATED = 17
const E_NUL = 18
const E_AFTER_FIELD = 19
const E_BAD_TIME = 20
const E_TIME_RANGE = 21
const E_AFTER_TIME = 22
const E_DUP_TAG = 23
const E_TIME_KEY = 24
const E_FIELD_RESERVED = 25
const E_FIELD_IS_TAG = 26
const E_FIELD_TYPES = 27
const E_TOO_BIG = 28

const SPACE = 0x20
const TAB = 0x09
const HASH = 0x23
const QUOTE = 0x22
const COMMA = 0x2c
const MINUS = 0x2d
const DOT = 0x2e
const EQ = 0x3d
const BSL = 0x5c

const INT64_MAX = '9223372036854775807'
const INT64_MIN_ABS = '9223372036854775808'
const UINT64_MAX = '18446744073709551615'
/** A token shorter than this many UTF-16 units cannot exceed MAX_TOKEN_BYTES in UTF-8. */
const FAST_TOKEN_UNITS = Math.floor(MAX_TOKEN_BYTES / 3)

// Character classes for ASCII: 0 ordinary, 1 terminator, 2 backslash, 3 control.
const KEY_CLASS = new Uint8Array(128)
const MEASUREMENT_CLASS = new Uint8Array(128)
for (let c = 0; c < 0x20; c++) KEY_CLASS[c] = MEASUREMENT_CLASS[c] = 3
KEY_CLASS[0x7f] = MEASUREMENT_CLASS[0x7f] = 3
KEY_CLASS[BSL] = MEASUREMENT_CLASS[BSL] = 2
KEY_CLASS[COMMA] = KEY_CLASS[SPACE] = KEY_CLASS[EQ] = 1
MEASUREMENT_CLASS[COMMA] = MEASUREMENT_CLASS[SPACE] = 1

/** Token positions of the line scanned last (indices into the scanned string). */
class LineState {
  lineStart = 0
  mStart = 0
  mEnd = 0
  tagsEnd = 0
  fieldsEnd = 0
  tsStart = -1
  tsEnd = -1
  nTags = 0
  nDrop = 0
  nFields = 0
  tKS = new Int32Array(16)
  tKE = new Int32Array(16)
  tVS = new Int32Array(16)
  tVE = new Int32Array(16)
  tDrop = new Uint8Array(16)
  fKS = new Int32Array(16)
  fKE = new Int32Array(16)
  fVS = new Int32Array(16)
  fVE = new Int32Array(16)
  fKind = new Uint8Array(16)
  err = 0
  errPos = 0
  /** The key the error is about, as a raw slice [errKS, errKE), or errKS = -1. */
  errKS = -1
  errKE = -1
  errWhat = ''
}

export const line = new LineState()

function fail(code: number, pos: number): number {
  line.err = code
  line.errPos = pos
  line.errKS = -1
  return -1
}

function failKey(code: number, pos: number, ks: number, ke: number): number {
  stopKey(code, pos, ks, ke)
  return -1
}

/** Records an error and returns its code (scanLine's return value). */
function stop(code: number, pos: number): number {
  fail(code, pos)
  return code
}

function stopKey(code: number, pos: number, ks: number, ke: number): number {
  line.err = code
  line.errPos = pos
  line.errKS = ks
  line.errKE = ke
  return code
}

function growTags(): void {
  const n = line.tKS.length * 2
  line.tKS = grow(line.tKS, n)
  line.tKE = grow(line.tKE, n)
  line.tVS = grow(line.tVS, n)
  line.tVE = grow(line.tVE, n)
  const d = new Uint8Array(n)
  d.set(line.tDrop)
  line.tDrop = d
}

function growFields(): void {
  const n = line.fKS.length * 2
  line.fKS = grow(line.fKS, n)
  line.fKE = grow(line.fKE, n)
  line.fVS = grow(line.fVS, n)
  line.fVE = grow(line.fVE, n)
  const k = new Uint8Array(n)
  k.set(line.fKind)
  line.fKind = k
}

function grow(a: Int32Array<ArrayBuffer>, n: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(n)
  b.set(a)
  return b
}

function tooBig(s: string, a: number, b: number): boolean {
  return b - a > FAST_TOKEN_UNITS && utf8Length(s, a, b) > MAX_TOKEN_BYTES
}

function tooBigAt(s: string, a: number, b: number, what: string): boolean {
  if (!tooBig(s, a, b)) return false
  line.errWhat = what
  fail(E_TOO_BIG, a)
  return true
}

/** Checks s[i] (a surrogate) starts a valid pair; returns the index of its last unit or -1. */
function pairEnd(s: string, i: number, end: number, c: number): number {
  if (c > 0xdbff || i + 1 >= end) return fail(E_SURROGATE, i)
  const d = s.charCodeAt(i + 1)
  return d >= 0xdc00 && d <= 0xdfff ? i + 1 : fail(E_SURROGATE, i)
}

/** Scans an escaped token with the given class table; returns its end or -1. */
function scanToken(s: string, i: number, end: number, cls: Uint8Array, escEq: boolean): number {
  for (; i < end; i++) {
    const c = s.charCodeAt(i)
    if (c < 128) {
      const k = cls[c]
      if (k === 0) continue
      if (k === 1) return i
      if (k === 3) return fail(E_CTRL, i)
      // Backslash: escapes `,` and space (and `=` outside measurements), else literal.
      if (i + 1 < end) {
        const n = s.charCodeAt(i + 1)
        if (n === COMMA || n === SPACE || (escEq && n === EQ)) i++
      }
    } else if (c >= 0xd800 && c <= 0xdfff) {
      i = pairEnd(s, i, end, c)
      if (i < 0) return -1
    }
  }
  return i
}

/** Field value tokens other than strings end at `,`, space or the end of the line. */
function tokenEnd(s: string, i: number, end: number): number {
  for (; i < end; i++) {
    const c = s.charCodeAt(i)
    if (c === COMMA || c === SPACE) return i
  }
  return i
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39
}

/**
 * Whether the decimal integer s[p, b) (digits only) followed by `zeros` zeros exceeds
 * `limit` (a decimal without leading zeros). No BigInt: compare lengths, then digits.
 */
function exceeds(s: string, p: number, b: number, zeros: number, limit: string): boolean {
  while (p < b && s.charCodeAt(p) === 0x30) p++
  if (p === b) return false
  const len = b - p + zeros
  if (len !== limit.length) return len > limit.length
  for (let j = 0; j < len; j++) {
    const c = j < b - p ? s.charCodeAt(p + j) : 0x30
    const l = limit.charCodeAt(j)
    if (c !== l) return c > l
  }
  return false
}

function allDigits(s: string, a: number, b: number): boolean {
  if (a >= b) return false
  for (let j = a; j < b; j++) if (!isDigit(s.charCodeAt(j))) return false
  return true
}

/** Validates a numeric field value s[a, b); returns its kind or -1 (error set). */
function scanNumber(s: string, a: number, b: number, ks: number, ke: number): number {
  const last = s.charCodeAt(b - 1)
  if (last === 0x69 || last === 0x75) {
    // `i` (int64) or `u` (uint64): Go ParseInt/ParseUint syntax in base 10.
    const neg = s.charCodeAt(a) === MINUS
    const p = neg ? a + 1 : a
    if ((neg && last === 0x75) || !allDigits(s, p, b - 1)) return failKey(E_BAD_FIELD_VALUE, a, ks, ke)
    if (last === 0x75) return exceeds(s, p, b - 1, 0, UINT64_MAX) ? failKey(E_UINT_RANGE, a, ks, ke) : KIND_UINT
    return exceeds(s, p, b - 1, 0, neg ? INT64_MIN_ABS : INT64_MAX) ? failKey(E_INT_RANGE, a, ks, ke) : KIND_INT
  }
  // Float: [-] (digits [. digits*] | . digits) [(e|E) [+|-] digits]; Go ParseFloat
  // without hex, underscores, Inf and NaN (which cannot start with `-`, digit or `.`
  // except as -Inf/-NaN, refused here by the grammar).
  let p = s.charCodeAt(a) === MINUS ? a + 1 : a
  const intStart = p
  while (p < b && isDigit(s.charCodeAt(p))) p++
  const intEnd = p
  let fracStart = p
  if (p < b && s.charCodeAt(p) === DOT) {
    fracStart = ++p
    while (p < b && isDigit(s.charCodeAt(p))) p++
  }
  const fracEnd = p
  if (intEnd === intStart && fracEnd === fracStart) return failKey(E_BAD_FIELD_VALUE, a, ks, ke)
  let exp = 0
  if (p < b && (s.charCodeAt(p) | 0x20) === 0x65) {
    p++
    const sign = p < b && (s.charCodeAt(p) === MINUS || s.charCodeAt(p) === 0x2b) ? s.charCodeAt(p++) : 0
    const ds = p
    while (p < b && isDigit(s.charCodeAt(p))) {
      if (exp < 1e8) exp = exp * 10 + s.charCodeAt(p) - 0x30
      p++
    }
    if (p === ds) return failKey(E_BAD_FIELD_VALUE, a, ks, ke)
    if (sign === MINUS) exp = -exp
  }
  if (p !== b) return failKey(E_BAD_FIELD_VALUE, a, ks, ke)
  // Overflow without parsing: value = 0.d1d2... x 10^mag. Finite below 10^308,
  // infinite from 10^309 (max double ~ 1.8e308); parse only the decade in between.
  let q = intStart
  while (q < intEnd && s.charCodeAt(q) === 0x30) q++
  let mag: number
  if (q < intEnd) mag = intEnd - q + exp
  else {
    q = fracStart
    while (q < fracEnd && s.charCodeAt(q) === 0x30) q++
    if (q === fracEnd) return KIND_FLOAT // zero
    mag = fracStart - q + exp
  }
  if (mag <= 308) return KIND_FLOAT
  if (mag === 309 && Number.isFinite(Number(s.slice(a, b)))) return KIND_FLOAT
  return failKey(E_FLOAT_RANGE, a, ks, ke)
}

function isBool(s: string, a: number, b: number): boolean {
  const n = b - a
  const c = s.charCodeAt(a)
  if (n === 1) return c === 0x74 || c === 0x54 || c === 0x66 || c === 0x46
  const w = s.slice(a, b) // short (<= 5 chars): V8 copies it, no rope
  return w === 'true' || w === 'True' || w === 'TRUE' || w === 'false' || w === 'False' || w === 'FALSE'
}

function scanComment(s: string, i: number, end: number): number {
  for (; i < end; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return stop(E_CTRL, i)
    if (c >= 0xd800 && c <= 0xdfff) {
      i = pairEnd(s, i, end, c)
      if (i < 0) return E_SURROGATE
    }
  }
  return LINE_SKIP
}

function sameSlice(s: string, a1: number, b1: number, a2: number, b2: number): boolean {
  if (b1 - a1 !== b2 - a2) return false
  for (let j = 0; j < b1 - a1; j++) if (s.charCodeAt(a1 + j) !== s.charCodeAt(a2 + j)) return false
  return true
}

function sameAs(s: string, a: number, b: number, t: string): boolean {
  if (b - a !== t.length) return false
  for (let j = 0; j < t.length; j++) if (s.charCodeAt(a + j) !== t.charCodeAt(j)) return false
  return true
}

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
    for (let r = 0; r < reserved.length; r++) if (sameAs(s, ks, ke, reserved[r]!)) drop = 1
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
      ve = tokenEnd(s, vs, end)
      kind = scanNumber(s, vs, ve, ks, ke)
      if (kind < 0) return L.err
    } else if (c === 0x74 || c === 0x54 || c === 0x66 || c === 0x46) {
      ve = tokenEnd(s, vs, end)
      if (!isBool(s, vs, ve)) return stopKey(E_BAD_FIELD_VALUE, vs, ks, ke)
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
    if (exceeds(s, ds, i, zeros, neg ? INT64_MIN_ABS : INT64_MAX)) return stop(E_TIME_RANGE, ts)
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
  const L = line
  for (let a = 0; a < L.nTags; a++) {
    const ks = L.tKS[a]!
    const ke = L.tKE[a]!
    if (sameAs(s, ks, ke, 'time')) return stopKey(E_TIME_KEY, ks, ks, ke)
    for (let b = 0; b < a; b++) {
      if (sameSlice(s, ks, ke, L.tKS[b]!, L.tKE[b]!)) return stopKey(E_DUP_TAG, ks, ks, ke)
    }
  }
  for (let a = 0; a < L.nFields; a++) {
    const ks = L.fKS[a]!
    const ke = L.fKE[a]!
    if (sameAs(s, ks, ke, 'time')) return stopKey(E_TIME_KEY, ks, ks, ke)
    for (let r = 0; r < reserved.length; r++) {
      if (sameAs(s, ks, ke, reserved[r]!)) return stopKey(E_FIELD_RESERVED, ks, ks, ke)
    }
    for (let b = 0; b < L.nTags; b++) {
      if (sameSlice(s, ks, ke, L.tKS[b]!, L.tKE[b]!)) return stopKey(E_FIELD_IS_TAG, ks, ks, ke)
    }
    for (let b = 0; b < a; b++) {
      if (L.fKind[b] !== L.fKind[a] && sameSlice(s, ks, ke, L.fKS[b]!, L.fKE[b]!)) {
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
