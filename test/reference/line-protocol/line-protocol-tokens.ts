// The earlier string scanner (src/ingest/line-protocol*.ts before the byte rewrite), kept
// unchanged as the reference decoder the byte path is tested against.
/**
 * Tokens of a line-protocol line: character classes, the preallocated state that
 * records where each token of the last scanned line is, error codes, and the scanners
 * for names, numbers, booleans and comments. Used by scanLine (line-protocol-scan.ts);
 * nothing here allocates on the success path.
 */
import { MAX_TOKEN_BYTES, utf8Length } from './line-protocol-escape.js'

export const LINE_OK = 0
export const LINE_SKIP = 1 // blank line or comment

export const KIND_FLOAT = 1
export const KIND_INT = 2
export const KIND_UINT = 3
export const KIND_BOOL = 4
export const KIND_STRING = 5

// Error codes (> LINE_SKIP); reasonOf() in line-protocol-scan.ts turns them into text.
export const E_CTRL = 2
export const E_SURROGATE = 3
export const E_NO_MEASUREMENT = 4
export const E_EMPTY_TAG_KEY = 5
export const E_TAG_NO_EQ = 6
export const E_EMPTY_TAG_VALUE = 7
export const E_UNEXPECTED = 8
export const E_NO_FIELDS = 9
export const E_EMPTY_FIELD_KEY = 10
export const E_FIELD_NO_EQ = 11
export const E_NO_FIELD_VALUE = 12
export const E_BAD_FIELD_VALUE = 13
export const E_INT_RANGE = 14
export const E_UINT_RANGE = 15
export const E_FLOAT_RANGE = 16
export const E_UNTERMINATED = 17
export const E_NUL = 18
export const E_AFTER_FIELD = 19
export const E_BAD_TIME = 20
export const E_TIME_RANGE = 21
export const E_AFTER_TIME = 22
export const E_DUP_TAG = 23
export const E_TIME_KEY = 24
export const E_FIELD_RESERVED = 25
export const E_FIELD_IS_TAG = 26
export const E_FIELD_TYPES = 27
export const E_TOO_BIG = 28

export const SPACE = 0x20
export const TAB = 0x09
export const HASH = 0x23
export const QUOTE = 0x22
export const COMMA = 0x2c
export const MINUS = 0x2d
export const DOT = 0x2e
export const EQ = 0x3d
export const BSL = 0x5c

export const INT64_MAX = '9223372036854775807'
export const INT64_MIN_ABS = '9223372036854775808'
const UINT64_MAX = '18446744073709551615'
/** A token shorter than this many UTF-16 units cannot exceed MAX_TOKEN_BYTES in UTF-8. */
const FAST_TOKEN_UNITS = Math.floor(MAX_TOKEN_BYTES / 3)

// Character classes for ASCII: 0 ordinary, 1 terminator, 2 backslash, 3 control.
export const KEY_CLASS = new Uint8Array(128)
export const MEASUREMENT_CLASS = new Uint8Array(128)
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
  /** Zeros that make the timestamp ns (the precision's, or guessed under `auto`). */
  tsZeros = 0
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
  /** Kind of the number scanNumber scanned last. */
  numberKind = 0
  err = 0
  errPos = 0
  /** The key the error is about, as a raw slice [errKS, errKE), or errKS = -1. */
  errKS = -1
  errKE = -1
  errWhat = ''
}

export const line = new LineState()

export function fail(code: number, pos: number): number {
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
export function stop(code: number, pos: number): number {
  fail(code, pos)
  return code
}

export function stopKey(code: number, pos: number, ks: number, ke: number): number {
  line.err = code
  line.errPos = pos
  line.errKS = ks
  line.errKE = ke
  return code
}

export function growTags(): void {
  const n = line.tKS.length * 2
  line.tKS = grow(line.tKS, n)
  line.tKE = grow(line.tKE, n)
  line.tVS = grow(line.tVS, n)
  line.tVE = grow(line.tVE, n)
  const d = new Uint8Array(n)
  d.set(line.tDrop)
  line.tDrop = d
}

export function growFields(): void {
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

export function tooBigAt(s: string, a: number, b: number, what: string): boolean {
  if (!tooBig(s, a, b)) return false
  line.errWhat = what
  fail(E_TOO_BIG, a)
  return true
}

/** Checks s[i] (a surrogate) starts a valid pair; returns the index of its last unit or -1. */
export function pairEnd(s: string, i: number, end: number, c: number): number {
  if (c > 0xdbff || i + 1 >= end) return fail(E_SURROGATE, i)
  const d = s.charCodeAt(i + 1)
  return d >= 0xdc00 && d <= 0xdfff ? i + 1 : fail(E_SURROGATE, i)
}

/** Scans an escaped token with the given class table; returns its end or -1. */
export function scanToken(s: string, i: number, end: number, cls: Uint8Array, escEq: boolean): number {
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

export function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39
}

/** `zeros` value asking scanLine to guess each timestamp's precision. */
export const AUTO_PRECISION = -1

// InfluxDB 3's guess for precision=auto, by magnitude: |t| < 5e9 s, < 5e12 ms, < 5e15 us, else ns.
const AUTO_LIMITS = ['4999999999', '4999999999999', '4999999999999999']
const AUTO_ZEROS = [9, 6, 3]

/** The zeros that make the digits s[p, b) ns under precision=auto. */
export function guessZeros(s: string, p: number, b: number): number {
  for (let k = 0; k < AUTO_LIMITS.length; k++) {
    if (!exceeds(s, p, b, 0, AUTO_LIMITS[k] as string)) return AUTO_ZEROS[k] as number
  }
  return 0
}

/**
 * Whether the decimal integer s[p, b) (digits only) followed by `zeros` zeros exceeds
 * `limit` (a decimal without leading zeros). No BigInt: compare lengths, then digits.
 */
export function exceeds(s: string, p: number, b: number, zeros: number, limit: string): boolean {
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

/** Whether s[p] ends a field value: `,`, space or the end of the line. */
function endsValue(s: string, p: number, end: number): boolean {
  if (p === end) return true
  const c = s.charCodeAt(p)
  return c === COMMA || c === SPACE
}

/**
 * Scans a numeric field value starting at a in one pass; returns its end (numberKind
 * set) or -1. Syntax of Go's ParseInt/ParseUint/ParseFloat in base 10: `-?\d+i`,
 * `\d+u`, and `-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?`: no hex, underscores, Inf or NaN.
 */
export function scanNumber(s: string, a: number, end: number, ks: number, ke: number): number {
  const neg = s.charCodeAt(a) === MINUS
  let p = neg ? a + 1 : a
  const intStart = p
  while (p < end && isDigit(s.charCodeAt(p))) p++
  const intEnd = p
  const c = p < end ? s.charCodeAt(p) : -1
  if (c === 0x69 || c === 0x75) {
    // `i` (int64) or `u` (uint64)
    const unsigned = c === 0x75
    if (intEnd === intStart || (neg && unsigned) || !endsValue(s, p + 1, end)) return failKey(E_BAD_FIELD_VALUE, a, ks, ke)
    if (unsigned) {
      if (intEnd - intStart > 19 && exceeds(s, intStart, intEnd, 0, UINT64_MAX)) return failKey(E_UINT_RANGE, a, ks, ke)
      line.numberKind = KIND_UINT
    } else {
      if (intEnd - intStart > 18 && exceeds(s, intStart, intEnd, 0, neg ? INT64_MIN_ABS : INT64_MAX)) return failKey(E_INT_RANGE, a, ks, ke)
      line.numberKind = KIND_INT
    }
    return p + 1
  }
  let fracStart = p
  if (c === DOT) {
    fracStart = ++p
    while (p < end && isDigit(s.charCodeAt(p))) p++
  }
  const fracEnd = p
  if (intEnd === intStart && fracEnd === fracStart) return failKey(E_BAD_FIELD_VALUE, a, ks, ke)
  let exp = 0
  if (p < end && (s.charCodeAt(p) | 0x20) === 0x65) {
    p++
    const sign = p < end && (s.charCodeAt(p) === MINUS || s.charCodeAt(p) === 0x2b) ? s.charCodeAt(p++) : 0
    const ds = p
    while (p < end && isDigit(s.charCodeAt(p))) {
      if (exp < 1e8) exp = exp * 10 + s.charCodeAt(p) - 0x30
      p++
    }
    if (p === ds) return failKey(E_BAD_FIELD_VALUE, a, ks, ke)
    if (sign === MINUS) exp = -exp
  }
  if (!endsValue(s, p, end)) return failKey(E_BAD_FIELD_VALUE, a, ks, ke)
  line.numberKind = KIND_FLOAT
  if (exp <= 0 && intEnd - intStart <= 308) return p
  // Overflow without parsing: value = 0.d1d2... x 10^mag. Finite below 10^308,
  // infinite from 10^309 (max double ~ 1.8e308); parse only the decade in between.
  let q = intStart
  while (q < intEnd && s.charCodeAt(q) === 0x30) q++
  let mag: number
  if (q < intEnd) mag = intEnd - q + exp
  else {
    q = fracStart
    while (q < fracEnd && s.charCodeAt(q) === 0x30) q++
    if (q === fracEnd) return p // zero
    mag = fracStart - q + exp
  }
  if (mag <= 308) return p
  if (mag === 309 && Number.isFinite(Number(s.slice(a, p)))) return p
  return failKey(E_FLOAT_RANGE, a, ks, ke)
}

/** Scans a boolean field value (t, T, true, True, TRUE and the same for false); returns its end or -1. */
export function scanBool(s: string, a: number, end: number): number {
  let p = a + 1
  while (p < end && s.charCodeAt(p) !== COMMA && s.charCodeAt(p) !== SPACE) p++
  const n = p - a
  if (n === 1) return p // t, T, f or F: the caller checked the first character
  const upper = s.charCodeAt(a + 1) === 0x52 || s.charCodeAt(a + 1) === 0x41 // TRUE / FALSE
  const first = s.charCodeAt(a)
  const word = first === 0x74 || first === 0x54 ? 'rue' : 'alse'
  if (n !== word.length + 1 || (upper && first !== 0x54 && first !== 0x46)) return -1
  for (let j = 0; j < word.length; j++) {
    const w = word.charCodeAt(j)
    if (s.charCodeAt(a + 1 + j) !== (upper ? w - 0x20 : w)) return -1
  }
  return p
}

export function scanComment(s: string, i: number, end: number): number {
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

/** Whether s[a, a + len) and s[b, b + len) hold the same characters. */
export function sameChars(s: string, a: number, b: number, len: number): boolean {
  for (let j = 0; j < len; j++) if (s.charCodeAt(a + j) !== s.charCodeAt(b + j)) return false
  return true
}

export function sameAs(s: string, a: number, b: number, t: string): boolean {
  if (b - a !== t.length) return false
  for (let j = 0; j < t.length; j++) if (s.charCodeAt(a + j) !== t.charCodeAt(j)) return false
  return true
}
