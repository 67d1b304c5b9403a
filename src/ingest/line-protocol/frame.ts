/**
 * The ingest hot path: a frame (a WebSocket message, an HTTP body, an MQTT payload) is
 * validated and rewritten as bytes into canonical line protocol, the form every sink gets:
 *   measurement[,client tags in the order received][,server-side tags] fields timestamp\n
 * with one space between the sections, no leading or trailing white space, no '\r', the
 * timestamp in ns (the default time when the line has none) without leading zeros, and
 * blank and comment lines removed. Client tags whose key is a server-side tag's are dropped.
 * The lenient spacing the InfluxData corpus accepts never reaches a sink.
 *
 * FrameRewriter first hands the frame to the WebAssembly fast path (wasm/rewrite.as.ts),
 * which rewrites the lines it is sure of and gives up on anything else (an error, UTF-8,
 * a dropped tag, precision=auto, limits). Then the scanner decides: it copies the frame
 * once into the back of its buffer and moves each line's pieces forward with copyWithin
 * (no allocation per line, no subarray per piece): the output grows from the front and
 * is kept ahead of the bytes still to be read. Errors are always the scanner's.
 */
import {
  LINE_OK,
  LINE_SKIP,
  LineScanner,
  lineText,
} from './scanner.js'
import { defaultTimestamp, escapeTagKey, escapeTagValue, nameProblem, toBytes, zerosOf, type Precision } from './codec.js'
import { REWRITE_WASM } from './wasm-module.js'

/** Server-side tags to add to every line; built once per connection/token by makeTagging. */
export interface Tagging {
  /** `,key=value...` pre-escaped, appended at the end of every line's tag set. */
  readonly suffix: string
  /** The escaped keys: a client tag with one of these keys is dropped. */
  readonly rawKeys: readonly string[]
  /** The suffix and the space after the tag set, as UTF-8 bytes. */
  readonly suffixBytes: Uint8Array
  /** rawKeys as UTF-8 bytes. */
  readonly reserved: readonly Uint8Array[]
}

const NO_KEYS: readonly Uint8Array[] = []
const SPACE = 0x20
const NL = 0x0a
const ZERO = 0x30
const MINUS = 0x2d
// Beyond its own bytes and the suffix, a line's output grows by at most a default time
// (' ' + 20 characters + '\n') or 9 zeros of precision: this bounds it with room to spare.
const LINE_GROWTH = 32
// A rewriter keeps a buffer up to this size between frames; a larger one is let go.
const KEEP_BYTES = 4 * 1024 * 1024

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
  // Self-check through the scanner: the suffix must make any valid line valid.
  const probe = toBytes(`m${suffix} f=1`)
  const scanner = new LineScanner()
  if (scanner.scan(probe, 0, probe.length, 0, NO_KEYS) !== LINE_OK) {
    throw new TypeError(`server-side tags: ${scanner.reason(probe, lineText(probe, 0, probe.length))}`)
  }
  return Object.freeze({
    suffix,
    rawKeys: Object.freeze(rawKeys),
    suffixBytes: Buffer.from(`${suffix} `),
    reserved: Object.freeze(rawKeys.map((k) => Buffer.from(k))),
  })
}

/** The parts of the WebAssembly API used here (the project's lib has no DOM types). */
interface WasmMemory {
  readonly buffer: ArrayBuffer
  grow(pages: number): number
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: object) => { exports: unknown }
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

/** The fast path's exports (wasm/rewrite.as.ts). */
interface FastExports {
  memory: WasmMemory
  heapBase(): number
  linesAt(): number
  rewrite(
    src: number,
    n: number,
    out: number,
    outCap: number,
    sufP: number,
    sufLen: number,
    tailP: number,
    tailLen: number,
    zeros: number,
    resP: number,
    resN: number,
  ): number
}

const FAST_MODULE = new Wasm.Module(Buffer.from(REWRITE_WASM, 'base64'))
const BAIL = -1
const NEED_TAIL = -2
const WASM_PAGE = 65_536
// The fast path's memory never shrinks: frames that would need more go to the scanner.
const FAST_MAX_BYTES = 16 * 1024 * 1024
// Room for the tail (` <default time>\n`) and the longest reserved key the fast path takes.
const TAIL_ROOM = 64
const MAX_RESERVED_KEY = 255
const COPY_OVERRUN = 64

function align16(n: number): number {
  return (n + 15) & ~15
}

/**
 * One instance of the fast path with its own memory: the server-side tags, the tail,
 * the reserved keys, then the frame and the output. Its output is valid until the next call.
 */
class FastPath {
  private readonly x: FastExports
  private mem: Buffer
  private tagging: Tagging | null = null
  private sufP: number
  private tailP = 0
  private resP = 0
  private resN = -1
  private srcP = 0
  private outP = 0
  /** The memory's size (memory.buffer is not read per frame). */
  private memBytes: number
  private readonly linesP: number

  constructor() {
    this.x = new Wasm.Instance(FAST_MODULE, {}).exports as unknown as FastExports
    this.sufP = align16(this.x.heapBase())
    this.mem = Buffer.from(this.x.memory.buffer)
    this.memBytes = this.mem.length
    this.linesP = this.x.linesAt()
  }

  get lines(): number {
    return this.mem.readInt32LE(this.linesP)
  }

  output(length: number): Uint8Array {
    return new Uint8Array(this.mem.buffer, this.outP, length)
  }

  /** The output's length, or BAIL (the scanner decides). The default time is asked for only when a line has none. */
  rewrite(src: Uint8Array, tagging: Tagging, zeros: number, defaultTimeNs: string | (() => string)): number {
    if (tagging !== this.tagging) this.setTagging(tagging)
    if (this.resN < 0) return BAIL
    const n = src.length
    const growth = tagging.suffixBytes.length + LINE_GROWTH
    const outCap = 2 * n + growth + 4096
    const srcP = this.srcP
    const outP = align16(srcP + n)
    // The fast path copies 16 bytes at a time: a piece may be read and written up to 15
    // bytes past its end (past the output's capacity for the last line's).
    if (!this.room(outP + outCap + COPY_OVERRUN)) return BAIL
    this.mem.set(src, srcP)
    this.outP = outP
    const sufLen = tagging.suffixBytes.length
    try {
      let r = this.x.rewrite(srcP, n, outP, outCap, this.sufP, sufLen, this.tailP, -1, zeros, this.resP, this.resN)
      if (r === NEED_TAIL) {
        const t = tailBytes(typeof defaultTimeNs === 'string' ? defaultTimeNs : defaultTimeNs(), zeros)
        if (t.length > TAIL_ROOM) return BAIL
        this.mem.set(t, this.tailP)
        r = this.x.rewrite(srcP, n, outP, outCap, this.sufP, sufLen, this.tailP, t.length, zeros, this.resP, this.resN)
      }
      return r < 0 ? BAIL : r
    } catch {
      // A trap (an access outside its memory) would be a bug of the fast path: the scanner decides.
      return BAIL
    }
  }

  /** Lays out the server-side tags and reserved keys; resN = -1 when the fast path cannot take them. */
  private setTagging(tagging: Tagging): void {
    this.tagging = tagging
    const suffix = tagging.suffixBytes
    this.tailP = align16(this.sufP + suffix.length)
    this.resP = this.tailP + TAIL_ROOM
    let size = 0
    for (const k of tagging.reserved) size += 1 + k.length
    this.srcP = align16(this.resP + size)
    this.resN = -1
    if (tagging.reserved.some((k) => k.length > MAX_RESERVED_KEY) || !this.room(this.srcP)) return
    this.mem.set(suffix, this.sufP)
    let p = this.resP
    for (const k of tagging.reserved) {
      this.mem[p] = k.length
      this.mem.set(k, p + 1)
      p += 1 + k.length
    }
    this.resN = tagging.reserved.length
  }

  /** Whether the memory holds `bytes` bytes, growing it up to FAST_MAX_BYTES. */
  private room(bytes: number): boolean {
    const have = this.memBytes
    if (bytes <= have) return true
    if (bytes > FAST_MAX_BYTES) return false
    this.x.memory.grow(Math.ceil((bytes - have) / WASM_PAGE))
    this.mem = Buffer.from(this.x.memory.buffer)
    this.memBytes = this.mem.length
    return true
  }
}

/** Digits only, no leading zero, within int64 (strings of equal length compare as numbers). */
function isPlainInt64(s: string): boolean {
  const n = s.length
  if (n === 0 || n > 19 || (n > 1 && s.charCodeAt(0) === ZERO)) return false
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c < ZERO || c > 0x39) return false
  }
  return n < 19 || s <= '9223372036854775807'
}

/**
 * Validates and rewrites frames. After rewrite() returned true, the canonical lines are
 * `output` (valid until the next call) and `lines` counts them; after false,
 * `errorLine` (1-based over the frame split at '\n', blank and comment lines counted)
 * and `reason` say what is wrong, and nothing of the frame may be written.
 * One instance serves any number of connections: each call is synchronous.
 */
export class FrameRewriter {
  lines = 0
  length = 0
  errorLine = 0
  reason = ''
  private readonly scanner = new LineScanner()
  private readonly fast: FastPath | null
  /** Whether the last output is the fast path's. */
  private fastOutput = false
  private buf = Buffer.allocUnsafe(0)
  /** Byte i of the frame being rewritten is buf[base + i]. */
  private base = 0
  /** ` <default time>\n`, made once per frame that needs it. */
  private tail = new Uint8Array(24)

  /** `fastPath: false` leaves every frame to the scanner (tests compare the two). */
  constructor(options: { fastPath?: boolean } = {}) {
    this.fast = options.fastPath === false ? null : new FastPath()
  }

  /** Whether the last successful rewrite() was the fast path's (for tests and the bench). */
  get fastPathUsed(): boolean {
    return this.fastOutput
  }

  /**
   * The rewritten lines of the last successful rewrite(): a plain view (no Buffer is made
   * for it, once per frame on the hot path), valid until the next call.
   */
  get output(): Uint8Array {
    return this.fastOutput && this.fast !== null ? this.fast.output(this.length) : new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.length)
  }

  /**
   * `defaultTimeNs` (decimal ns, or a function asked only when a line has no timestamp)
   * is truncated to the precision for lines without a timestamp.
   */
  rewrite(src: Uint8Array, tagging: Tagging, defaultTimeNs: string | (() => string), precision: Precision = 'ns'): boolean {
    const zeros = zerosOf(precision)
    if (this.fast !== null && zeros >= 0) {
      const r = this.fast.rewrite(src, tagging, zeros, defaultTimeNs)
      if (r >= 0) {
        this.fastOutput = true
        this.length = r
        this.lines = this.fast.lines
        return true
      }
    }
    this.fastOutput = false
    const L = this.scanner
    const reserved = tagging.reserved
    const suffix = tagging.suffixBytes
    const growth = suffix.length + LINE_GROWTH
    const n = src.length
    this.place(src, 2 * n + growth)
    let buf = this.buf
    let base = this.base
    let tailReady = false
    let w = 0
    let lineNo = 0
    let lines = 0
    for (let ls = 0; ls < n; ) {
      lineNo++
      let nl = src.indexOf(NL, ls)
      if (nl < 0) nl = n
      const le = nl > ls && src[nl - 1] === 0x0d ? nl - 1 : nl
      const r = L.scan(src, ls, le, zeros, reserved)
      if (r !== LINE_OK) {
        if (r === LINE_SKIP) {
          ls = nl + 1
          continue
        }
        this.errorLine = lineNo
        this.reason = L.reason(src, lineText(src, ls, le))
        return false
      }
      lines++
      // The output of this line must end before its own bytes start.
      if (w + (nl - ls) + growth > base + ls) {
        this.grow(src, w, ls, nl - ls + growth)
        buf = this.buf
        base = this.base
      }
      let from = L.mStart
      if (L.nDrop > 0) {
        for (let t = 0; t < L.nTags; t++) {
          if (L.tDrop[t] === 0) continue
          const upTo = L.tKS[t]! - 1 // the comma before the dropped tag
          buf.copyWithin(w, base + from, base + upTo)
          w += upTo - from
          from = L.tVE[t]!
        }
      }
      const tagsEnd = L.tagsEnd
      buf.copyWithin(w, base + from, base + tagsEnd)
      w += tagsEnd - from
      buf.set(suffix, w)
      w += suffix.length
      const fs = L.fieldsStart
      const fe = L.fieldsEnd
      const ts = L.tsStart
      if (ts < 0) {
        if (!tailReady) {
          this.tail = tailBytes(typeof defaultTimeNs === 'string' ? defaultTimeNs : defaultTimeNs(), zeros)
          tailReady = true
        }
        buf.copyWithin(w, base + fs, base + fe)
        w += fe - fs
        buf.set(this.tail, w)
        w += this.tail.length
      } else if (L.tsZeros === 0 && ts === fe + 1 && plainDigits(src, ts, L.tsEnd)) {
        // The common case: fields, one space and a timestamp as they stand.
        const te = L.tsEnd
        if (te === nl && nl < n) {
          buf.copyWithin(w, base + fs, base + nl + 1)
          w += nl + 1 - fs
        } else {
          buf.copyWithin(w, base + fs, base + te)
          w += te - fs
          buf[w++] = NL
        }
      } else {
        buf.copyWithin(w, base + fs, base + fe)
        w += fe - fs
        buf[w++] = SPACE
        w = writeTimestamp(buf, w, src, ts, L.tsEnd, L.tsZeros)
        buf[w++] = NL
      }
      ls = nl + 1
    }
    this.length = w
    this.lines = lines
    return true
  }

  /** Copies the frame to the back of a buffer of at least `size` bytes. */
  private place(src: Uint8Array, size: number): void {
    if (this.buf.length < size || (this.buf.length > KEEP_BYTES && size <= KEEP_BYTES)) {
      this.buf = Buffer.allocUnsafe(Math.max(size, Math.min(KEEP_BYTES, 2 * this.buf.length), 4096))
    }
    this.base = this.buf.length - src.length
    this.buf.set(src, this.base)
  }

  /** More room: the output so far to the front of a larger buffer, the unread frame bytes to its back. */
  private grow(src: Uint8Array, w: number, from: number, need: number): void {
    const rest = src.length - from
    const next = Buffer.allocUnsafe(2 * (w + rest + need))
    this.buf.copy(next, 0, 0, w)
    this.base = next.length - src.length
    next.set(src.subarray(from), this.base + from)
    this.buf = next
  }


}

/** ` <default time>\n` for lines without a timestamp, the time truncated to the precision. */
function tailBytes(defaultTimeNs: string, zeros: number): Uint8Array<ArrayBuffer> {
  const t = zeros <= 0 && isPlainInt64(defaultTimeNs) ? defaultTimeNs : defaultTimestamp(defaultTimeNs, Math.max(zeros, 0))
  const tail = new Uint8Array(t.length + 2)
  tail[0] = SPACE
  for (let i = 0; i < t.length; i++) tail[i + 1] = t.charCodeAt(i)
  tail[t.length + 1] = NL
  return tail
}

/** Whether the timestamp s[a, b) has no leading zero and is not `-0`. */
function plainDigits(s: Uint8Array, a: number, b: number): boolean {
  const d = s[a] === MINUS ? a + 1 : a
  return s[d] !== ZERO || (d === a && b - a === 1)
}

/** Writes the timestamp s[a, b) in ns (`zeros` appended) without leading zeros; returns the new end. */
function writeTimestamp(buf: Buffer, w: number, s: Uint8Array, a: number, b: number, zeros: number): number {
  const neg = s[a] === MINUS
  let p = neg ? a + 1 : a
  while (p < b - 1 && s[p] === ZERO) p++
  if (p === b - 1 && s[p] === ZERO) {
    buf[w] = ZERO
    return w + 1
  }
  if (neg) buf[w++] = MINUS
  for (; p < b; p++) buf[w++] = s[p]!
  for (let z = 0; z < zeros; z++) buf[w++] = ZERO
  return w
}

export interface ScanOk {
  ok: true
  /** The rewritten data lines, each terminated by '\n'. */
  bytes: Buffer
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

/** FrameRewriter.rewrite as a value, for callers off the hot path and tests. */
export function scanFrame(
  frame: string | Uint8Array,
  tagging: Tagging,
  defaultTimeNs: string | (() => string),
  precision: Precision = 'ns',
): ScanOk | ScanErr {
  const rw = new FrameRewriter()
  if (!rw.rewrite(toBytes(frame), tagging, defaultTimeNs, precision)) return { ok: false, line: rw.errorLine, reason: rw.reason }
  const bytes = Buffer.from(rw.output)
  return { ok: true, bytes, text: bytes.toString('utf8'), lines: rw.lines }
}
