/**
 * The frame rewrite's fast path, in AssemblyScript compiled to WebAssembly
 * (scripts/build-wasm.mjs writes ../wasm-module.ts; never edit that file by hand).
 *
 * It does what FrameRewriter.rewrite (frame.ts) does for the lines it is sure of, and no
 * more: any line it is not sure of makes it give up on the whole frame (BAIL), and the
 * TypeScript scanner then decides, giving the error or handling the case. So the
 * TypeScript scanner stays the only place where the grammar's errors are worded, and
 * this path only has to agree with it on what it accepts; the property tests in
 * test/unit/line-protocol.wasm.test.ts check that both ways. It bails on: any byte
 * >= 0x80 (UTF-8 is validated by the scanner), any error, a client tag or field whose key
 * is a server-side tag's, more than MAX_KEYS keys, precision=auto, an integer or float
 * near its range limits, and names longer than MAX_TOKEN_BYTES.
 *
 * The caller lays out memory from heapBase(): the server-side tag suffix (with its
 * trailing space), the tail (` <default time>\n`), the reserved keys (each as a 1-byte
 * length and its bytes), the frame, and room for the output. No allocation here.
 */

const BAIL: i32 = -1
const NEED_TAIL: i32 = -2
const NEED_ROOM: i32 = -3

const MAX_TOKEN_BYTES: i32 = 65536
const MAX_KEYS: i32 = 24
// Beyond its own bytes and the suffix, a line's output grows by at most a default time
// (' ' + 20 characters + '\n') or 9 zeros of precision (frame.ts LINE_GROWTH).
const LINE_GROWTH: i32 = 32

const SPACE: u8 = 0x20
const TAB: u8 = 0x09
const HASH: u8 = 0x23
const QUOTE: u8 = 0x22
const COMMA: u8 = 0x2c
const MINUS: u8 = 0x2d
const DOT: u8 = 0x2e
const EQ: u8 = 0x3d
const BSL: u8 = 0x5c
const NL: u8 = 0x0a
const CR: u8 = 0x0d
const ZERO: u8 = 0x30

// int64 limits as digits.
const INT64_MAX: usize = memory.data<u8>([57, 50, 50, 51, 51, 55, 50, 48, 51, 54, 56, 53, 52, 55, 55, 53, 56, 48, 55])
const INT64_MIN_ABS: usize = memory.data<u8>([57, 50, 50, 51, 51, 55, 50, 48, 51, 54, 56, 53, 52, 55, 55, 53, 56, 48, 56])

// Positions of the current line's keys: starts and ends of tags, then of fields, and the kinds.
const TKS: usize = memory.data(4 * MAX_KEYS)
const TKE: usize = memory.data(4 * MAX_KEYS)
const FKS: usize = memory.data(4 * MAX_KEYS)
const FKE: usize = memory.data(4 * MAX_KEYS)
const FKIND: usize = memory.data(MAX_KEYS)
// The same for the last line keysOk passed in this call: a line with the very same keys
// (bytes and field kinds) would get the same verdict, so it is not asked again.
const PTKS: usize = memory.data(4 * MAX_KEYS)
const PTKE: usize = memory.data(4 * MAX_KEYS)
const PFKS: usize = memory.data(4 * MAX_KEYS)
const PFKE: usize = memory.data(4 * MAX_KEYS)
const PFKIND: usize = memory.data(MAX_KEYS)

// Data lines of the last successful rewrite, where the caller reads them (no call needed).
const LINES_OUT: usize = memory.data(4, 4)

/** Where the caller's memory starts (after this module's static data). */
export function heapBase(): i32 {
  return <i32>__heap_base
}

/** The address of the line count of the last successful rewrite (an i32). */
export function linesAt(): i32 {
  return <i32>LINES_OUT
}

@inline function at(p: i32): u8 {
  return load<u8>(<usize>p)
}

@inline function put(p: i32, c: u8): void {
  store<u8>(<usize>p, c)
}

/**
 * Copies [src, src + len) to dst 16 bytes at a time: up to 15 bytes past dst + len are
 * overwritten and up to 15 past src + len read (the caller's layout leaves room for both).
 * memory.copy is a call into the engine, slow for the short pieces of a line.
 */
@inline function copy(dst: i32, src: i32, len: i32): void {
  for (let k = 0; k < len; k += 16) v128.store(<usize>(dst + k), v128.load(<usize>(src + k)))
}

@inline function isDigit(c: u8): bool {
  return <u32>(c - ZERO) < 10
}

/**
 * The bytes of the 16 at p that stop a name: `,`, space, backslash, control characters,
 * DEL and bytes >= 0x80, and `=` when `eq` is set (keys and tag values), as a bit mask.
 */
@inline function stops(p: i32, eq: bool): i32 {
  const v = v128.load(<usize>p)
  let m = v128.or(v128.or(i8x16.eq(v, i8x16.splat(COMMA)), i8x16.eq(v, i8x16.splat(SPACE))), i8x16.eq(v, i8x16.splat(BSL)))
  // c < 0x20 or c >= 0x7f: c - 0x20 (mod 256) >= 0x5f
  m = v128.or(m, i8x16.ge_u(i8x16.sub(v, i8x16.splat(SPACE)), i8x16.splat(0x5f)))
  if (eq) m = v128.or(m, i8x16.eq(v, i8x16.splat(EQ)))
  return i8x16.bitmask(m)
}

/**
 * An escaped name from i, 16 bytes at a time; its end, or BAIL (a control character or
 * a byte >= 0x80). `eq`: `=` ends the name and `\=` is an escape (keys and tag values).
 * Reads up to 15 bytes past end (the caller's layout leaves room).
 */
@inline function token(i: i32, end: i32, eq: bool): i32 {
  while (i < end) {
    const m = stops(i, eq)
    if (m == 0) {
      i += 16
      continue
    }
    const j = i + ctz(m)
    if (j >= end) return end
    const c = at(j)
    if (c == COMMA || c == SPACE || c == EQ) return j
    if (c != BSL) return BAIL
    // Backslash: escapes `,` and space (and `=` when eq), else literal.
    if (j + 1 >= end) return end
    const n = at(j + 1)
    i = n == COMMA || n == SPACE || (eq && n == EQ) ? j + 2 : j + 1
  }
  return end
}

/** The digits among the 16 bytes at p, as a bit mask. */
@inline function digitMask(p: i32): i32 {
  return i8x16.bitmask(i8x16.lt_u(i8x16.sub(v128.load(<usize>p), i8x16.splat(ZERO)), i8x16.splat(10)))
}

/** The end of the digits from i (at most end), 16 bytes at a time. */
@inline function digits(i: i32, end: i32): i32 {
  while (i < end) {
    const m = ~digitMask(i) & 0xffff
    if (m != 0) {
      const j = i + ctz(m)
      return j < end ? j : end
    }
    i += 16
  }
  return end
}

/** The first '\n' from i, or end. */
@inline function lineEnd(i: i32, end: i32): i32 {
  while (i < end) {
    const m = i8x16.bitmask(i8x16.eq(v128.load(<usize>i), i8x16.splat(NL)))
    if (m != 0) {
      const j = i + ctz(m)
      return j < end ? j : end
    }
    i += 16
  }
  return end
}

/** Whether [a, a + len) and [b, b + len) hold the same bytes; reads up to 15 bytes past both. */
function sameBytes(a: i32, b: i32, len: i32): bool {
  for (let k = 0; k < len; k += 16) {
    const differ = ~i8x16.bitmask(i8x16.eq(v128.load(<usize>(a + k)), v128.load(<usize>(b + k)))) & 0xffff
    const rest = len - k
    if ((rest >= 16 ? differ : differ & ((1 << rest) - 1)) != 0) return false
  }
  return true
}

/** Whether the n keys at (starts, ends) hold the bytes of the n at (pStarts, pEnds). */
function sameSpans(starts: usize, ends: usize, pStarts: usize, pEnds: usize, n: i32): bool {
  for (let a = 0; a < n; a++) {
    const ks = load<i32>(starts + 4 * a)
    const ps = load<i32>(pStarts + 4 * a)
    const len = load<i32>(ends + 4 * a) - ks
    if (load<i32>(pEnds + 4 * a) - ps != len || !sameBytes(ks, ps, len)) return false
  }
  return true
}

/** Whether the current line's keys (and field kinds) are those of the last line keysOk passed. */
function sameKeys(nTags: i32, nFields: i32, pTags: i32, pFields: i32): bool {
  if (nTags != pTags || nFields != pFields) return false
  for (let a = 0; a < nFields; a++) if (load<u8>(FKIND + a) != load<u8>(PFKIND + a)) return false
  return sameSpans(TKS, TKE, PTKS, PTKE, nTags) && sameSpans(FKS, FKE, PFKS, PFKE, nFields)
}

/** Remembers the current line's keys as the last ones keysOk passed. */
function keepKeys(nTags: i32, nFields: i32): void {
  memory.copy(PTKS, TKS, 4 * nTags)
  memory.copy(PTKE, TKE, 4 * nTags)
  memory.copy(PFKS, FKS, 4 * nFields)
  memory.copy(PFKE, FKE, 4 * nFields)
  memory.copy(PFKIND, FKIND, nFields)
}

@inline function isTime(p: i32, len: i32): bool {
  return len == 4 && at(p) == 0x74 && at(p + 1) == 0x69 && at(p + 2) == 0x6d && at(p + 3) == 0x65
}

/** Whether the key s[ks, ke) is one of the reserved keys. */
function isReserved(ks: i32, ke: i32, resP: i32, resN: i32): bool {
  const len = ke - ks
  let p = resP
  for (let r = 0; r < resN; r++) {
    const rl = <i32>at(p)
    if (rl == len && sameBytes(ks, p + 1, len)) return true
    p += 1 + rl
  }
  return false
}

/** Whether the digits [p, b) followed by `zeros` zeros exceed the 19-digit limit at `limit`. */
function exceeds(p: i32, b: i32, zeros: i32, limit: usize): bool {
  while (p < b && at(p) == ZERO) p++
  if (p == b) return false
  const len = b - p + zeros
  if (len != 19) return len > 19
  for (let j = 0; j < len; j++) {
    const c: u8 = j < b - p ? at(p + j) : ZERO
    const l = load<u8>(limit + <usize>j)
    if (c != l) return c > l
  }
  return false
}

@inline function endsValue(p: i32, end: i32): bool {
  if (p == end) return true
  const c = at(p)
  return c == COMMA || c == SPACE
}

/**
 * A numeric field value from a; its end, or BAIL. Sets numberKind (1 float, 2 int, 3 uint).
 * A plain decimal (digits, an optional `.` and digits) within 16 bytes is read from one
 * 16-byte load; anything else (a suffix, an exponent, a longer number) goes the long way.
 */
let numberKind: u8 = 0
function number(a: i32, end: i32): i32 {
  const p = at(a) == MINUS ? a + 1 : a
  const room = end - p
  if (room > 0) {
    let dm = digitMask(p)
    if (room < 16) dm &= (1 << room) - 1
    const nd = ctz(~dm)
    if (nd > 0 && nd < 16 && endsValue(p + nd, end)) {
      numberKind = 1
      return p + nd
    }
    if (nd < 15 && at(p + nd) == DOT && p + nd < end) {
      const nf = ctz(~(dm >> (nd + 1)))
      const q = p + nd + 1 + nf
      if (nd + 1 + nf < 16 && nd + nf > 0 && endsValue(q, end)) {
        numberKind = 1
        return q
      }
    }
  }
  return longNumber(a, end)
}

function longNumber(a: i32, end: i32): i32 {
  const neg = at(a) == MINUS
  let p = neg ? a + 1 : a
  const intStart = p
  p = digits(p, end)
  const intEnd = p
  const c: i32 = p < end ? <i32>at(p) : -1
  if (c == 0x69 || c == 0x75) {
    const unsigned = c == 0x75
    // Range checks near the limits are the scanner's.
    if (intEnd == intStart || (neg && unsigned) || intEnd - intStart > 18 || !endsValue(p + 1, end)) return BAIL
    numberKind = unsigned ? 3 : 2
    return p + 1
  }
  let fracStart = p
  if (c == DOT) {
    fracStart = ++p
    p = digits(p, end)
  }
  const fracEnd = p
  if (intEnd == intStart && fracEnd == fracStart) return BAIL
  if (p < end && (at(p) | 0x20) == 0x65) {
    // An exponent: only a non-positive one is surely in range.
    p++
    let sign: u8 = 0
    if (p < end && (at(p) == MINUS || at(p) == 0x2b)) sign = at(p++)
    const ds = p
    let nonZero = false
    while (p < end && isDigit(at(p))) {
      if (at(p) != ZERO) nonZero = true
      p++
    }
    if (p == ds || (nonZero && sign != MINUS)) return BAIL
  }
  if (!endsValue(p, end) || intEnd - intStart > 308) return BAIL
  numberKind = 1
  return p
}

/** A boolean field value from a (its first byte is t, T, f or F); its end, or BAIL. */
function boolean(a: i32, end: i32): i32 {
  let p = a + 1
  while (p < end && at(p) != COMMA && at(p) != SPACE) p++
  const n = p - a
  if (n == 1) return p
  const first = at(a)
  const t = first == 0x74 || first == 0x54
  const upper = at(a + 1) == 0x52 || at(a + 1) == 0x41
  if (upper && first != 0x54 && first != 0x46) return BAIL
  const lo: u8 = upper ? 0 : 0x20
  if (t) {
    if (n != 4 || at(a + 1) != (0x52 | lo) || at(a + 2) != (0x55 | lo) || at(a + 3) != (0x45 | lo)) return BAIL
  } else if (n != 5 || at(a + 1) != (0x41 | lo) || at(a + 2) != (0x4c | lo) || at(a + 3) != (0x53 | lo) || at(a + 4) != (0x45 | lo)) {
    return BAIL
  }
  return p
}

/** A string field value from its opening quote; its end after the closing quote, or BAIL. */
function quoted(vs: i32, end: i32): i32 {
  let j = vs + 1
  for (; j < end; j++) {
    const d = at(j)
    if (d == QUOTE) break
    if (d == BSL) {
      if (j + 1 < end && (at(j + 1) == QUOTE || at(j + 1) == BSL)) j++
    } else if (d == 0 || d >= 0x80) return BAIL
  }
  if (j >= end || j - vs - 1 > MAX_TOKEN_BYTES) return BAIL
  return j + 1
}

/** A comment's bytes after '#': fine if printable ASCII. */
function comment(i: i32, end: i32): bool {
  for (; i < end; i++) {
    const c = at(i)
    if (c < 0x20 || c >= 0x7f) return false
  }
  return true
}

/**
 * Key rules beyond the grammar (scanner.ts checkKeys): no `time` key, no duplicate tag
 * key, no field key equal to a tag key or a reserved one, no field repeated with another
 * type. Tag keys equal to a reserved one were refused while scanning.
 */
function keysOk(nTags: i32, nFields: i32, resP: i32, resN: i32): bool {
  for (let a = 0; a < nTags; a++) {
    const ks = load<i32>(TKS + 4 * a)
    const len = load<i32>(TKE + 4 * a) - ks
    if (isTime(ks, len)) return false
    for (let b = 0; b < a; b++) {
      const bs = load<i32>(TKS + 4 * b)
      if (load<i32>(TKE + 4 * b) - bs == len && sameBytes(ks, bs, len)) return false
    }
  }
  for (let a = 0; a < nFields; a++) {
    const ks = load<i32>(FKS + 4 * a)
    const ke = load<i32>(FKE + 4 * a)
    const len = ke - ks
    if (isTime(ks, len)) return false
    if (resN > 0 && isReserved(ks, ke, resP, resN)) return false
    for (let b = 0; b < nTags; b++) {
      const bs = load<i32>(TKS + 4 * b)
      if (load<i32>(TKE + 4 * b) - bs == len && sameBytes(ks, bs, len)) return false
    }
    const kind = load<u8>(FKIND + a)
    for (let b = 0; b < a; b++) {
      const bs = load<i32>(FKS + 4 * b)
      if (load<i32>(FKE + 4 * b) - bs == len && load<u8>(FKIND + b) != kind && sameBytes(ks, bs, len)) return false
    }
  }
  return true
}

/**
 * Rewrites the frame [src, src + n) into canonical lines at out (at most outCap bytes);
 * returns the output's length, or BAIL, NEED_TAIL (a line has no timestamp and tailLen
 * is negative) or NEED_ROOM (outCap too small). `zeros` is the precision (0, 3, 6, 9).
 */
export function rewrite(
  src: i32,
  n: i32,
  out: i32,
  outCap: i32,
  sufP: i32,
  sufLen: i32,
  tailP: i32,
  tailLen: i32,
  zeros: i32,
  resP: i32,
  resN: i32,
): i32 {
  if (zeros < 0) return BAIL
  const frameEnd = src + n
  const growth = sufLen + LINE_GROWTH
  let w = out
  const wEnd = out + outCap
  let count = 0
  // Keys of the last line keysOk passed in this call (-1: none yet).
  let pTags = -1
  let pFields = -1
  for (let ls = src; ls < frameEnd; ) {
    const nl = lineEnd(ls, frameEnd)
    const end = nl > ls && at(nl - 1) == CR ? nl - 1 : nl
    const next = nl + 1
    let i = ls
    while (i < end && at(i) == SPACE) i++
    if (i == end) {
      ls = next
      continue
    }
    let c = at(i)
    if (c == HASH) {
      if (!comment(i + 1, end)) return BAIL
      ls = next
      continue
    }
    if (c == TAB) return BAIL

    const mStart = i
    const mEnd = token(i, end, false)
    if (mEnd <= mStart || mEnd - mStart > MAX_TOKEN_BYTES) return BAIL
    i = mEnd
    let nTags = 0
    while (i < end && at(i) == COMMA) {
      const ks = i + 1
      const ke = token(ks, end, true)
      if (ke <= ks || ke == end || at(ke) != EQ) return BAIL
      const vs = ke + 1
      const ve = token(vs, end, true)
      if (ve <= vs || ke - ks > MAX_TOKEN_BYTES || ve - vs > MAX_TOKEN_BYTES || nTags == MAX_KEYS) return BAIL
      if (resN > 0 && isReserved(ks, ke, resP, resN)) return BAIL
      store<i32>(TKS + 4 * nTags, ks)
      store<i32>(TKE + 4 * nTags, ke)
      nTags++
      i = ve
    }
    const tagsEnd = i
    if (i == end || at(i) != SPACE) return BAIL
    while (i < end && at(i) == SPACE) i++
    if (i == end) return BAIL
    const fs = i

    let nFields = 0
    let ve = i
    for (;;) {
      const ks = i
      const ke = token(i, end, true)
      if (ke <= ks || ke == end || at(ke) != EQ || ke - ks > MAX_TOKEN_BYTES || nTags + nFields == MAX_KEYS) return BAIL
      const vs = ke + 1
      if (vs == end) return BAIL
      c = at(vs)
      let kind: u8
      if (c == QUOTE) {
        ve = quoted(vs, end)
        kind = 5
      } else if (isDigit(c) || c == MINUS || c == DOT) {
        ve = number(vs, end)
        kind = numberKind
      } else if (c == 0x74 || c == 0x54 || c == 0x66 || c == 0x46) {
        ve = boolean(vs, end)
        kind = 4
      } else return BAIL
      if (ve < 0) return BAIL
      store<i32>(FKS + 4 * nFields, ks)
      store<i32>(FKE + 4 * nFields, ke)
      store<u8>(FKIND + nFields, kind)
      nFields++
      i = ve
      if (i == end) break
      c = at(i)
      if (c == COMMA) {
        i++
        continue
      }
      if (c != SPACE) return BAIL
      break
    }
    const fe = ve

    let ts = -1
    let te = -1
    while (i < end && at(i) == SPACE) i++
    if (i < end) {
      ts = i
      const neg = at(i) == MINUS
      if (neg) i++
      const ds = i
      i = digits(i, end)
      if (i == ds || (i < end && at(i) != SPACE)) return BAIL
      if (exceeds(ds, i, zeros, neg ? INT64_MIN_ABS : INT64_MAX)) return BAIL
      te = i
      while (i < end && at(i) == SPACE) i++
      if (i < end) return BAIL
    }
    if (!sameKeys(nTags, nFields, pTags, pFields)) {
      if (!keysOk(nTags, nFields, resP, resN)) return BAIL
      keepKeys(nTags, nFields)
      pTags = nTags
      pFields = nFields
    }

    // The line is valid: write it.
    if (w + (nl - ls) + growth > wEnd) return NEED_ROOM
    count++
    copy(w, mStart, tagsEnd - mStart)
    w += tagsEnd - mStart
    copy(w, sufP, sufLen)
    w += sufLen
    if (ts < 0) {
      if (tailLen < 0) return NEED_TAIL
      copy(w, fs, fe - fs)
      w += fe - fs
      copy(w, tailP, tailLen)
      w += tailLen
      ls = next
      continue
    }
    copy(w, fs, fe - fs)
    w += fe - fs
    put(w++, SPACE)
    let p = ts
    if (at(p) == MINUS) p++
    while (p < te - 1 && at(p) == ZERO) p++
    if (p == te - 1 && at(p) == ZERO) put(w++, ZERO)
    else {
      if (at(ts) == MINUS) put(w++, MINUS)
      copy(w, p, te - p)
      w += te - p
      for (let z = 0; z < zeros; z++) put(w++, ZERO)
    }
    put(w++, NL)
    ls = next
  }
  store<i32>(LINES_OUT, count)
  return w - out
}
