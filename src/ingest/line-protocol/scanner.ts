/**
 * The single validation core of line protocol: LineScanner validates one line of UTF-8
 * bytes and records where each of its tokens is, so that the frame rewrite (frame.ts)
 * and the codec (codec.ts) read the same facts and can never disagree. Scanning
 * allocates nothing: positions go to the scanner's own typed arrays, read by the caller
 * right after the call. Errors are codes with a position; `reason()` turns the last one
 * into text, on the error path only.
 *
 * The grammar follows the Go decoder github.com/influxdata/line-protocol/v2
 * (lineprotocol/decoder.go); where this core is stricter the rule is marked "sink:"
 * (lines InfluxDB 3 would refuse after we acked them) or "gateway:". Decisions where the
 * reference is silent are listed in test/unit/line-protocol.corpus.test.ts:
 * - leading spaces are skipped (as in Go); a line of spaces and tabs is blank; tab is not
 *   white space anywhere else (Go), and control characters are refused everywhere except
 *   in string fields, where only NUL is refused;
 * - bytes must be UTF-8 (gateway: the sink stores text): an invalid sequence is refused
 *   where a name or string may hold one, and an encoded UTF-16 surrogate (which a string
 *   with a lone surrogate becomes, see codec.ts) is refused as such;
 * - `\\` is not an escape in names (Go); in string fields only `\"` and `\\` are;
 * - measurement, keys, tag values and string values are capped at MAX_TOKEN_BYTES bytes,
 *   measured on the token as written (escapes included);
 * - duplicate tag keys, a `time` key, a field key that is also a tag key (the client's or
 *   a server-side one) and one field repeated with different types are refused.
 * Columns in error texts count UTF-16 code units, as clients count characters.
 */

/** Longest measurement, key, tag value or string field value, in UTF-8 bytes. */
export const MAX_TOKEN_BYTES = 65_536

export const LINE_OK = 0
export const LINE_SKIP = 1 // blank line or comment

export const KIND_FLOAT = 1
export const KIND_INT = 2
export const KIND_UINT = 3
export const KIND_BOOL = 4
export const KIND_STRING = 5

/** `zeros` value asking the scanner to guess each timestamp's precision. */
export const AUTO_PRECISION = -1

// Error codes (> LINE_SKIP).
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
const E_UTF8 = 29

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
// InfluxDB 3's guess for precision=auto, by magnitude: |t| < 5e9 s, < 5e12 ms, < 5e15 us, else ns.
const AUTO_LIMITS = ['4999999999', '4999999999999', '4999999999999999']
const AUTO_ZEROS = [9, 6, 3]

// Byte classes of names: 0 ordinary, 1 terminator, 2 backslash, 3 control, 4 non-ASCII.
const ORDINARY = 0
const TERMINATOR = 1
const BACKSLASH = 2
const CONTROL = 3
const NON_ASCII = 4
const KEY_CLASS = new Uint8Array(256)
const MEASUREMENT_CLASS = new Uint8Array(256)
for (let c = 0; c < 0x20; c++) KEY_CLASS[c] = MEASUREMENT_CLASS[c] = CONTROL
KEY_CLASS[0x7f] = MEASUREMENT_CLASS[0x7f] = CONTROL
for (let c = 0x80; c < 0x100; c++) KEY_CLASS[c] = MEASUREMENT_CLASS[c] = NON_ASCII
KEY_CLASS[BSL] = MEASUREMENT_CLASS[BSL] = BACKSLASH
KEY_CLASS[COMMA] = KEY_CLASS[SPACE] = KEY_CLASS[EQ] = TERMINATOR
MEASUREMENT_CLASS[COMMA] = MEASUREMENT_CLASS[SPACE] = TERMINATOR

const INITIAL_SLOTS = 16
const SHOWN_KEY_UNITS = 64

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39
}

/**
 * Validates lines and records the tokens of the last one. One instance per caller; the
 * state is only meaningful right after scan() returned, until the next call.
 */
export class LineScanner {
  lineStart = 0
  mStart = 0
  mEnd = 0
  tagsEnd = 0
  /** Where the first field key starts. */
  fieldsStart = 0
  fieldsEnd = 0
  tsStart = -1
  tsEnd = -1
  /** Zeros that make the timestamp ns (the precision's, or guessed under `auto`). */
  tsZeros = 0
  nTags = 0
  nDrop = 0
  nFields = 0
  tKS = new Int32Array(INITIAL_SLOTS)
  tKE = new Int32Array(INITIAL_SLOTS)
  tVS = new Int32Array(INITIAL_SLOTS)
  tVE = new Int32Array(INITIAL_SLOTS)
  tDrop = new Uint8Array(INITIAL_SLOTS)
  fKS = new Int32Array(INITIAL_SLOTS)
  fKE = new Int32Array(INITIAL_SLOTS)
  fVS = new Int32Array(INITIAL_SLOTS)
  fVE = new Int32Array(INITIAL_SLOTS)
  fKind = new Uint8Array(INITIAL_SLOTS)
  private numberKind = 0
  private err = 0
  private errPos = 0
  /** The key the error is about, as a raw range [errKS, errKE), or errKS = -1. */
  private errKS = -1
  private errKE = -1
  private errWhat = ''
  /** Bit n set: a reserved key's length is n (mod 32); most keys are told apart by length alone. */
  private reservedMask = 0
  private maskOf: readonly Uint8Array[] = []

  /**
   * Validates the line s[start, end) (no '\n', a trailing '\r' already removed) and
   * records its tokens. `zeros` is the precision (0 ns, 3 us, 6 ms, 9 s, AUTO_PRECISION);
   * `reserved` holds the raw keys of the server-side tags: client tags with those keys
   * are marked dropped (tDrop). Returns LINE_OK, LINE_SKIP or an error code.
   */
  scan(s: Uint8Array, start: number, end: number, zeros: number, reserved: readonly Uint8Array[]): number {
    this.lineStart = start
    this.err = 0
    if (reserved !== this.maskOf) this.setReserved(reserved)
    const rmask = this.reservedMask
    let i = start
    // The Go decoder skips leading spaces (not tabs). A line of spaces and tabs is blank.
    while (i < end && s[i] === SPACE) i++
    if (i === end) return LINE_SKIP
    let c = s[i]!
    if (c === HASH) return this.scanComment(s, i + 1, end)
    if (c === TAB) {
      let j = i
      while (j < end && (s[j] === SPACE || s[j] === TAB)) j++
      if (j === end) return LINE_SKIP
      return this.stop(E_CTRL, i)
    }

    this.mStart = i
    const mEnd = this.scanToken(s, i, end, MEASUREMENT_CLASS, false)
    if (mEnd < 0) return this.err
    if (mEnd === i) return this.stop(E_NO_MEASUREMENT, i)
    if (mEnd - i > MAX_TOKEN_BYTES) return this.tooBig(i, 'measurement')
    this.mEnd = i = mEnd

    let nTags = 0
    let nDrop = 0
    c = i < end ? s[i]! : -1
    while (c === COMMA) {
      const ks = i + 1
      const ke = this.scanToken(s, ks, end, KEY_CLASS, true)
      if (ke < 0) return this.err
      if (ke === ks) return this.stop(E_EMPTY_TAG_KEY, ks)
      if (ke === end || s[ke] !== EQ) return this.stopKey(E_TAG_NO_EQ, ke, ks, ke)
      const vs = ke + 1
      const ve = this.scanToken(s, vs, end, KEY_CLASS, true)
      if (ve < 0) return this.err
      if (ve === vs) return this.stopKey(E_EMPTY_TAG_VALUE, vs, ks, ke)
      if (ke - ks > MAX_TOKEN_BYTES) return this.tooBig(ks, 'tag key')
      if (ve - vs > MAX_TOKEN_BYTES) return this.tooBig(vs, 'tag value')
      if (nTags === this.tKS.length) this.growTags()
      this.tKS[nTags] = ks
      this.tKE[nTags] = ke
      this.tVS[nTags] = vs
      this.tVE[nTags] = ve
      let drop = 0
      if (((rmask >>> ((ke - ks) & 31)) & 1) !== 0) {
        for (let r = 0; r < reserved.length; r++) {
          if (sameAs(s, ks, ke, reserved[r]!)) drop = 1
        }
      }
      this.tDrop[nTags] = drop
      nDrop += drop
      nTags++
      i = ve
      c = i < end ? s[i]! : -1
    }
    this.nTags = nTags
    this.nDrop = nDrop
    this.tagsEnd = i
    if (c !== SPACE) return this.stop(c === -1 ? E_NO_FIELDS : E_UNEXPECTED, i)
    while (i < end && s[i] === SPACE) i++
    if (i === end) return this.stop(E_NO_FIELDS, i)
    this.fieldsStart = i

    let nFields = 0
    let ve = i
    for (;;) {
      const ks = i
      const ke = this.scanToken(s, i, end, KEY_CLASS, true)
      if (ke < 0) return this.err
      if (ke === ks) return this.stop(E_EMPTY_FIELD_KEY, ks)
      if (ke === end || s[ke] !== EQ) return this.stopKey(E_FIELD_NO_EQ, ke, ks, ke)
      if (ke - ks > MAX_TOKEN_BYTES) return this.tooBig(ks, 'field key')
      const vs = ke + 1
      c = vs < end ? s[vs]! : -1
      let kind: number
      if (c === QUOTE) {
        ve = this.scanString(s, vs, end, ks, ke)
        if (ve < 0) return this.err
        kind = KIND_STRING
      } else if (isDigit(c) || c === MINUS || c === DOT) {
        ve = this.scanNumber(s, vs, end, ks, ke)
        if (ve < 0) return this.err
        kind = this.numberKind
      } else if (c === 0x74 || c === 0x54 || c === 0x66 || c === 0x46) {
        ve = scanBool(s, vs, end)
        if (ve < 0) return this.stopKey(E_BAD_FIELD_VALUE, vs, ks, ke)
        kind = KIND_BOOL
      } else if (c === -1 || c === COMMA || c === SPACE) {
        return this.stopKey(E_NO_FIELD_VALUE, vs, ks, ke)
      } else return this.stopKey(E_BAD_FIELD_VALUE, vs, ks, ke)
      if (nFields === this.fKS.length) this.growFields()
      this.fKS[nFields] = ks
      this.fKE[nFields] = ke
      this.fVS[nFields] = vs
      this.fVE[nFields] = ve
      this.fKind[nFields] = kind
      nFields++
      i = ve
      if (i === end) break
      c = s[i]!
      if (c === COMMA) {
        i++
        continue
      }
      if (c !== SPACE) return this.stopKey(E_AFTER_FIELD, i, ks, ke)
      break
    }
    this.nFields = nFields
    this.fieldsEnd = ve

    this.tsStart = -1
    while (i < end && s[i] === SPACE) i++
    if (i < end) {
      const ts = i
      const neg = s[i] === MINUS
      if (neg) i++
      const ds = i
      while (i < end && isDigit(s[i]!)) i++
      if (i === ds || (i < end && s[i] !== SPACE)) return this.stop(E_BAD_TIME, ts)
      const z = zeros === AUTO_PRECISION ? guessZeros(s, ds, i) : zeros
      if (exceeds(s, ds, i, z, neg ? INT64_MIN_ABS : INT64_MAX)) return this.stop(E_TIME_RANGE, ts)
      this.tsZeros = z
      this.tsStart = ts
      this.tsEnd = i
      while (i < end && s[i] === SPACE) i++
      if (i < end) return this.stop(E_AFTER_TIME, i)
    }
    return nTags + nFields > 24 ? this.checkKeysLarge(s, reserved) : this.checkKeys(s, reserved)
  }

  /**
   * The text of the last error, given the line it was found in (UTF-16, as decoded by
   * decodeForReason): positions are turned from bytes into code units of that text.
   */
  reason(s: Uint8Array, text: string): string {
    const pos = units(s, this.lineStart, this.errPos)
    const at = ` at column ${pos + 1}`
    let key = ''
    if (this.errKS >= 0) {
      const ks = units(s, this.lineStart, this.errKS)
      const ke = ks + units(s, this.errKS, this.errKE)
      key = `"${text.slice(ks, Math.min(ke, ks + SHOWN_KEY_UNITS))}${ke - ks > SHOWN_KEY_UNITS ? '...' : ''}"`
    }
    const ch = pos < text.length ? text.charCodeAt(pos) : -1
    const shown = ch < 0 ? 'end of line' : `"${String.fromCharCode(ch)}"`
    // An error found on bytes that are not UTF-8 is reported as that; one whose reason
    // would quote an encoded lone surrogate names it instead, so that no reply quotes one.
    if (this.errPos < s.length && s[this.errPos]! >= 0x80) {
      const last = utf8End(s, this.errPos, s.length)
      if (last === -E_UTF8) return `invalid UTF-8${at}`
      if (last === -E_SURROGATE && quotes(this.err)) return `unpaired UTF-16 surrogate${at}`
    }
    switch (this.err) {
      case E_CTRL:
        return `control character U+${ch.toString(16).toUpperCase().padStart(4, '0')}${at}`
      case E_SURROGATE: return `unpaired UTF-16 surrogate${at}`
      case E_UTF8: return `invalid UTF-8${at}`
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
      case E_TOO_BIG: return `${this.errWhat} exceeds ${MAX_TOKEN_BYTES} bytes${at}`
      default: return `invalid line${at}`
    }
  }

  /** 1-based column (UTF-16 code units) of the last error. */
  errorColumn(s: Uint8Array): number {
    return units(s, this.lineStart, this.errPos) + 1
  }

  /** Scans an escaped name with the given class table; returns its end or -1. */
  private scanToken(s: Uint8Array, i: number, end: number, cls: Uint8Array, escEq: boolean): number {
    for (; i < end; i++) {
      const k = cls[s[i]!]
      if (k === ORDINARY) continue
      if (k === TERMINATOR) return i
      if (k === NON_ASCII) {
        const last = utf8End(s, i, end)
        if (last < 0) return this.fail(-last, i)
        i = last
      } else if (k === CONTROL) return this.fail(E_CTRL, i)
      // Backslash: escapes `,` and space (and `=` outside measurements), else literal.
      else if (i + 1 < end) {
        const n = s[i + 1]
        if (n === COMMA || n === SPACE || (escEq && n === EQ)) i++
      }
    }
    return i
  }

  /**
   * A string field value from its opening quote; returns its end (after the closing
   * quote) or -1. `\"` and `\\` are escapes, any other backslash is literal. NUL is
   * refused (gateway: Postgres text cannot hold it); '\n' cannot occur (lines are split).
   */
  private scanString(s: Uint8Array, vs: number, end: number, ks: number, ke: number): number {
    let j = vs + 1
    for (; j < end; j++) {
      const d = s[j]!
      if (d === QUOTE) break
      if (d === BSL) {
        if (j + 1 < end && (s[j + 1] === QUOTE || s[j + 1] === BSL)) j++
      } else if (d === 0) return this.failKey(E_NUL, j, ks, ke)
      else if (d >= 0x80) {
        const last = utf8End(s, j, end)
        if (last < 0) return this.fail(-last, j)
        j = last
      }
    }
    if (j >= end) return this.failKey(E_UNTERMINATED, vs, ks, ke)
    if (j - vs - 1 <= MAX_TOKEN_BYTES) return j + 1
    this.tooBig(vs + 1, 'string field')
    return -1
  }

  /**
   * Scans a numeric field value starting at a in one pass; returns its end (numberKind
   * set) or -1. Syntax of Go's ParseInt/ParseUint/ParseFloat in base 10: `-?\d+i`,
   * `\d+u`, and `-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?`: no hex, underscores, Inf or NaN.
   * Ranges are checked on the digits; only a float in the decade below overflow is parsed.
   */
  private scanNumber(s: Uint8Array, a: number, end: number, ks: number, ke: number): number {
    const neg = s[a] === MINUS
    let p = neg ? a + 1 : a
    const intStart = p
    while (p < end && isDigit(s[p]!)) p++
    const intEnd = p
    const c = p < end ? s[p]! : -1
    if (c === 0x69 || c === 0x75) {
      // `i` (int64) or `u` (uint64)
      const unsigned = c === 0x75
      if (intEnd === intStart || (neg && unsigned) || !endsValue(s, p + 1, end)) return this.failKey(E_BAD_FIELD_VALUE, a, ks, ke)
      if (unsigned) {
        if (intEnd - intStart > 19 && exceeds(s, intStart, intEnd, 0, UINT64_MAX)) return this.failKey(E_UINT_RANGE, a, ks, ke)
        this.numberKind = KIND_UINT
      } else {
        if (intEnd - intStart > 18 && exceeds(s, intStart, intEnd, 0, neg ? INT64_MIN_ABS : INT64_MAX)) {
          return this.failKey(E_INT_RANGE, a, ks, ke)
        }
        this.numberKind = KIND_INT
      }
      return p + 1
    }
    let fracStart = p
    if (c === DOT) {
      fracStart = ++p
      while (p < end && isDigit(s[p]!)) p++
    }
    const fracEnd = p
    if (intEnd === intStart && fracEnd === fracStart) return this.failKey(E_BAD_FIELD_VALUE, a, ks, ke)
    let exp = 0
    if (p < end && (s[p]! | 0x20) === 0x65) {
      p++
      const sign = p < end && (s[p] === MINUS || s[p] === 0x2b) ? s[p++]! : 0
      const ds = p
      while (p < end && isDigit(s[p]!)) {
        if (exp < 1e8) exp = exp * 10 + s[p]! - 0x30
        p++
      }
      if (p === ds) return this.failKey(E_BAD_FIELD_VALUE, a, ks, ke)
      if (sign === MINUS) exp = -exp
    }
    if (!endsValue(s, p, end)) return this.failKey(E_BAD_FIELD_VALUE, a, ks, ke)
    this.numberKind = KIND_FLOAT
    if (exp <= 0 && intEnd - intStart <= 308) return p
    // Overflow without parsing: value = 0.d1d2... x 10^mag. Finite below 10^308,
    // infinite from 10^309 (max double ~ 1.8e308); parse only the decade in between.
    let q = intStart
    while (q < intEnd && s[q] === 0x30) q++
    let mag: number
    if (q < intEnd) mag = intEnd - q + exp
    else {
      q = fracStart
      while (q < fracEnd && s[q] === 0x30) q++
      if (q === fracEnd) return p // zero
      mag = fracStart - q + exp
    }
    if (mag <= 308) return p
    if (mag === 309 && Number.isFinite(Number(ascii(s, a, p)))) return p
    return this.failKey(E_FLOAT_RANGE, a, ks, ke)
  }

  private scanComment(s: Uint8Array, i: number, end: number): number {
    for (; i < end; i++) {
      const c = s[i]!
      if (c < 0x20 || c === 0x7f) return this.stop(E_CTRL, i)
      if (c >= 0x80) {
        const last = utf8End(s, i, end)
        if (last < 0) return this.stop(-last, i)
        i = last
      }
    }
    return LINE_SKIP
  }

  /**
   * Key rules beyond the grammar, checked on raw bytes (unescaping is injective):
   * - duplicate tag keys among the client's tags (the Go corpus harness refuses them too);
   * - sink: `time` as a tag or field key; a field key equal to a tag key or to a
   *   server-side tag key; the same field twice with different types. InfluxDB 3 refuses
   *   such lines, and the gateway must not ack what the sink will refuse.
   * Duplicate fields of one type are allowed (last wins in InfluxDB), as in the Go decoder.
   */
  private checkKeys(s: Uint8Array, reserved: readonly Uint8Array[]): number {
    const { tKS, tKE, fKS, fKE, fKind, nTags, nFields, reservedMask } = this
    for (let a = 0; a < nTags; a++) {
      const ks = tKS[a]!
      const ke = tKE[a]!
      const len = ke - ks
      if (len === 4 && isTime(s, ks)) return this.stopKey(E_TIME_KEY, ks, ks, ke)
      for (let b = 0; b < a; b++) {
        if (tKE[b]! - tKS[b]! === len && sameBytes(s, ks, tKS[b]!, len)) return this.stopKey(E_DUP_TAG, ks, ks, ke)
      }
    }
    for (let a = 0; a < nFields; a++) {
      const ks = fKS[a]!
      const ke = fKE[a]!
      const len = ke - ks
      if (len === 4 && isTime(s, ks)) return this.stopKey(E_TIME_KEY, ks, ks, ke)
      if (((reservedMask >>> (len & 31)) & 1) !== 0) {
        for (let r = 0; r < reserved.length; r++) {
          if (sameAs(s, ks, ke, reserved[r]!)) return this.stopKey(E_FIELD_RESERVED, ks, ks, ke)
        }
      }
      for (let b = 0; b < nTags; b++) {
        if (tKE[b]! - tKS[b]! === len && sameBytes(s, ks, tKS[b]!, len)) return this.stopKey(E_FIELD_IS_TAG, ks, ks, ke)
      }
      for (let b = 0; b < a; b++) {
        if (fKE[b]! - fKS[b]! === len && fKind[b] !== fKind[a] && sameBytes(s, ks, fKS[b]!, len)) {
          return this.stopKey(E_FIELD_TYPES, ks, ks, ke)
        }
      }
    }
    return LINE_OK
  }

  /** Same rules as checkKeys with a Map, so a line of thousands of keys stays linear. */
  private checkKeysLarge(s: Uint8Array, reserved: readonly Uint8Array[]): number {
    const seen = new Map<string, number>() // key -> 0 for a tag, else the field kind
    const reservedKeys = reserved.map((r) => ascii(r, 0, r.length))
    for (let a = 0; a < this.nTags; a++) {
      const ks = this.tKS[a]!
      const ke = this.tKE[a]!
      const k = ascii(s, ks, ke)
      if (k === 'time') return this.stopKey(E_TIME_KEY, ks, ks, ke)
      if (seen.has(k)) return this.stopKey(E_DUP_TAG, ks, ks, ke)
      seen.set(k, 0)
    }
    for (let a = 0; a < this.nFields; a++) {
      const ks = this.fKS[a]!
      const ke = this.fKE[a]!
      const k = ascii(s, ks, ke)
      if (k === 'time') return this.stopKey(E_TIME_KEY, ks, ks, ke)
      if (reservedKeys.includes(k)) return this.stopKey(E_FIELD_RESERVED, ks, ks, ke)
      const prev = seen.get(k)
      if (prev === 0) return this.stopKey(E_FIELD_IS_TAG, ks, ks, ke)
      if (prev !== undefined && prev !== this.fKind[a]) return this.stopKey(E_FIELD_TYPES, ks, ks, ke)
      seen.set(k, this.fKind[a]!)
    }
    return LINE_OK
  }

  private setReserved(reserved: readonly Uint8Array[]): void {
    let mask = 0
    for (const r of reserved) mask |= 1 << (r.length & 31)
    this.reservedMask = mask
    this.maskOf = reserved
  }

  private fail(code: number, pos: number): number {
    this.err = code
    this.errPos = pos
    this.errKS = -1
    return -1
  }

  private failKey(code: number, pos: number, ks: number, ke: number): number {
    this.stopKey(code, pos, ks, ke)
    return -1
  }

  /** Records an error and returns its code (scan's return value). */
  private stop(code: number, pos: number): number {
    this.fail(code, pos)
    return code
  }

  private stopKey(code: number, pos: number, ks: number, ke: number): number {
    this.err = code
    this.errPos = pos
    this.errKS = ks
    this.errKE = ke
    return code
  }

  private tooBig(pos: number, what: string): number {
    this.errWhat = what
    return this.stop(E_TOO_BIG, pos)
  }

  private growTags(): void {
    const n = this.tKS.length * 2
    this.tKS = grow(this.tKS, n)
    this.tKE = grow(this.tKE, n)
    this.tVS = grow(this.tVS, n)
    this.tVE = grow(this.tVE, n)
    const d = new Uint8Array(n)
    d.set(this.tDrop)
    this.tDrop = d
  }

  private growFields(): void {
    const n = this.fKS.length * 2
    this.fKS = grow(this.fKS, n)
    this.fKE = grow(this.fKE, n)
    this.fVS = grow(this.fVS, n)
    this.fVE = grow(this.fVE, n)
    const k = new Uint8Array(n)
    k.set(this.fKind)
    this.fKind = k
  }
}

function grow(a: Int32Array<ArrayBuffer>, n: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(n)
  b.set(a)
  return b
}

/**
 * The index of the last byte of the UTF-8 sequence starting at s[i] (a byte >= 0x80),
 * or -E_UTF8 / -E_SURROGATE (an encoded UTF-16 surrogate, ED A0..BF ..).
 */
export function utf8End(s: Uint8Array, i: number, end: number): number {
  const b = s[i]!
  let need: number
  let lo = 0x80
  let hi = 0xbf
  if (b >= 0xc2 && b <= 0xdf) need = 1
  else if (b >= 0xe0 && b <= 0xef) {
    need = 2
    if (b === 0xe0) lo = 0xa0
    else if (b === 0xed) hi = 0x9f
  } else if (b >= 0xf0 && b <= 0xf4) {
    need = 3
    if (b === 0xf0) lo = 0x90
    else if (b === 0xf4) hi = 0x8f
  } else return -E_UTF8
  if (i + need >= end) return -E_UTF8
  const b1 = s[i + 1]!
  if (b1 < lo || b1 > hi) return b === 0xed && b1 >= 0xa0 && b1 <= 0xbf && i + 2 < end && isCont(s[i + 2]!) ? -E_SURROGATE : -E_UTF8
  for (let k = 2; k <= need; k++) if (!isCont(s[i + k]!)) return -E_UTF8
  return i + need
}

/** Whether the reason for this error code quotes the character at the error. */
function quotes(code: number): boolean {
  return code === E_UNEXPECTED || code === E_AFTER_FIELD || code === E_TAG_NO_EQ || code === E_FIELD_NO_EQ
}

function isCont(b: number): boolean {
  return (b & 0xc0) === 0x80
}

/**
 * The text of s[a, b) for an error message: UTF-8 decoded, an encoded surrogate back to
 * its lone code unit (as the string it came from held it), any other invalid byte U+FFFD.
 */
export function lineText(s: Uint8Array, a: number, b: number): string {
  let out = ''
  for (let i = a; i < b; i++) {
    const c = s[i]!
    if (c < 0x80) {
      out += String.fromCharCode(c)
      continue
    }
    const last = utf8End(s, i, b)
    if (last === -E_SURROGATE) {
      out += String.fromCharCode(((c & 0x0f) << 12) | ((s[i + 1]! & 0x3f) << 6) | (s[i + 2]! & 0x3f))
      i += 2
    } else if (last < 0) out += '\ufffd'
    else {
      out += Buffer.from(s.buffer, s.byteOffset + i, last + 1 - i).toString('utf8')
      i = last
    }
  }
  return out
}

/** UTF-16 code units of the (valid) UTF-8 bytes s[a, b): 2 for a 4-byte sequence, 0 for continuations. */
function units(s: Uint8Array, a: number, b: number): number {
  let n = 0
  for (let i = a; i < b; i++) {
    const c = s[i]!
    if (c < 0x80 || c >= 0xc0) n += c >= 0xf0 ? 2 : 1
  }
  return n
}

/** Whether s[p] ends a field value: `,`, space or the end of the line. */
function endsValue(s: Uint8Array, p: number, end: number): boolean {
  if (p === end) return true
  const c = s[p]
  return c === COMMA || c === SPACE
}

/** Scans a boolean field value (t, T, true, True, TRUE and the same for false); returns its end or -1. */
function scanBool(s: Uint8Array, a: number, end: number): number {
  let p = a + 1
  while (p < end && s[p] !== COMMA && s[p] !== SPACE) p++
  const n = p - a
  if (n === 1) return p // t, T, f or F: the caller checked the first byte
  const upper = s[a + 1] === 0x52 || s[a + 1] === 0x41 // TRUE / FALSE
  const first = s[a]
  const word = first === 0x74 || first === 0x54 ? 'rue' : 'alse'
  if (n !== word.length + 1 || (upper && first !== 0x54 && first !== 0x46)) return -1
  for (let j = 0; j < word.length; j++) {
    const w = word.charCodeAt(j)
    if (s[a + 1 + j] !== (upper ? w - 0x20 : w)) return -1
  }
  return p
}

/** The zeros that make the digits s[p, b) ns under precision=auto. */
function guessZeros(s: Uint8Array, p: number, b: number): number {
  for (let k = 0; k < AUTO_LIMITS.length; k++) {
    if (!exceeds(s, p, b, 0, AUTO_LIMITS[k]!)) return AUTO_ZEROS[k]!
  }
  return 0
}

/**
 * Whether the decimal integer s[p, b) (digits only) followed by `zeros` zeros exceeds
 * `limit` (a decimal without leading zeros). No BigInt: compare lengths, then digits.
 */
function exceeds(s: Uint8Array, p: number, b: number, zeros: number, limit: string): boolean {
  while (p < b && s[p] === 0x30) p++
  if (p === b) return false
  const len = b - p + zeros
  if (len !== limit.length) return len > limit.length
  for (let j = 0; j < len; j++) {
    const c = j < b - p ? s[p + j]! : 0x30
    const l = limit.charCodeAt(j)
    if (c !== l) return c > l
  }
  return false
}

function isTime(s: Uint8Array, p: number): boolean {
  return s[p] === 0x74 && s[p + 1] === 0x69 && s[p + 2] === 0x6d && s[p + 3] === 0x65
}

/** Whether s[a, b) holds exactly the bytes of t. */
function sameAs(s: Uint8Array, a: number, b: number, t: Uint8Array): boolean {
  if (b - a !== t.length) return false
  for (let j = 0; j < t.length; j++) if (s[a + j] !== t[j]) return false
  return true
}

function sameBytes(s: Uint8Array, a: number, b: number, len: number): boolean {
  for (let j = 0; j < len; j++) if (s[a + j] !== s[b + j]) return false
  return true
}

/** s[a, b) as a string of one char per byte (for ASCII, and as a Map key for raw bytes). */
function ascii(s: Uint8Array, a: number, b: number): string {
  return Buffer.from(s.buffer, s.byteOffset + a, b - a).toString('latin1')
}
