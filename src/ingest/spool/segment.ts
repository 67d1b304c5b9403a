/**
 * The on-disk format of the spool: segment files of checksummed records, and the cursor
 * file that says how far delivery got. Plain functions over `fs/promises`; the Spool
 * class (spool.ts) owns the state.
 *
 * Segment file `<seq>.seg` (seq zero-padded to 8 digits, ordered numerically):
 *   header  [u32 magic 'MCSP'][u16 version][u16 0][u64 first record id][u32 crc32 of the 16 bytes before]
 *   records [u32 payload length][u32 lines][u32 crc32 of the 8 bytes before + payload][payload, UTF-8]
 * All integers little-endian. Record ids are implicit: the k-th record (from 0) has id
 * firstId + k, so a record costs 12 bytes of header and no id needs storing per record.
 *
 * Cursor file `cursor.json`: {"version":1,"delivered":<id>}, every record with an id up to
 * `delivered` has been delivered. Replaced atomically (temp file, fsync, rename, fsync dir).
 */
import { open, rename, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'

export const SEGMENT_HEADER_BYTES = 20
export const RECORD_HEADER_BYTES = 12
/** The largest payload or line count a record header can hold. */
export const RECORD_FIELD_MAX = 0xffff_ffff

const MAGIC = 0x5053_434d // 'MCSP' read as a little-endian u32
const VERSION = 1
const SEGMENT_NAME = /^(\d+)\.seg$/
const CURSOR_FILE = 'cursor.json'
const CURSOR_TEMP = 'cursor.json.tmp'
/** Scanning reads segments through a window of at least this many bytes. */
const SCAN_WINDOW_BYTES = 1 << 20

export const segmentName = (seq: number): string => `${String(seq).padStart(8, '0')}.seg`

/** The sequence number of a segment file name, or undefined for any other file. */
export function segmentSeq(name: string): number | undefined {
  const m = SEGMENT_NAME.exec(name)
  return m?.[1] === undefined ? undefined : Number(m[1])
}

export function encodeSegmentHeader(firstId: number): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_BYTES)
  b.writeUInt32LE(MAGIC, 0)
  b.writeUInt16LE(VERSION, 4)
  b.writeBigUInt64LE(BigInt(firstId), 8)
  b.writeUInt32LE(crc32(b.subarray(0, 16)), 16)
  return b
}

/** The first record id of a valid segment header, or undefined when it is not one. */
export function decodeSegmentHeader(b: Buffer): number | undefined {
  if (b.length < SEGMENT_HEADER_BYTES) return undefined
  if (b.readUInt32LE(0) !== MAGIC || b.readUInt16LE(4) !== VERSION) return undefined
  if (b.readUInt32LE(16) !== crc32(b.subarray(0, 16))) return undefined
  const firstId = b.readBigUInt64LE(8)
  return firstId > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(firstId)
}

/** The header of one record; the CRC covers the length and lines fields and the payload. */
export function encodeRecordHeader(payload: Uint8Array, lines: number): Buffer {
  const h = Buffer.alloc(RECORD_HEADER_BYTES)
  h.writeUInt32LE(payload.length, 0)
  h.writeUInt32LE(lines, 4)
  h.writeUInt32LE(crc32(payload, crc32(h.subarray(0, 8))), 8)
  return h
}

export interface RecordHeader {
  length: number
  lines: number
  crc: number
}

export function decodeRecordHeader(h: Buffer): RecordHeader {
  return { length: h.readUInt32LE(0), lines: h.readUInt32LE(4), crc: h.readUInt32LE(8) }
}

export const recordCrc = (h: Buffer, payload: Uint8Array): number => crc32(payload, crc32(h.subarray(0, 8)))

/** One segment file as the spool tracks it: a few numbers, never its records. */
export interface Segment {
  seq: number
  path: string
  firstId: number
  /** Committed (written and synced) records and the file bytes through the last of them. */
  count: number
  size: number
  /** Delivered records, and where the first undelivered one starts. */
  readIndex: number
  readOffset: number
}

/** What a scan found in one segment file. */
export interface SegmentScan {
  /** undefined when the file has no valid header. */
  firstId: number | undefined
  /** Valid records, in order. */
  count: number
  /** Bytes from the start of the file through the last valid record. */
  validBytes: number
  fileBytes: number
  /** Records with an id above `delivered`: where the first one starts and their totals. */
  readIndex: number
  readOffset: number
  undelivered: { records: number; lines: number; bytes: number }
}

/**
 * Reads a segment from the start and validates every record (length within the file,
 * CRC). Scanning stops at the first record that fails: everything from there on is a torn
 * or corrupt tail, never to be replayed.
 */
export async function scanSegment(fh: FileHandle, delivered: number): Promise<SegmentScan> {
  const fileBytes = (await fh.stat()).size
  const reader = new WindowReader(fh, fileBytes)
  const scan: SegmentScan = {
    firstId: undefined,
    count: 0,
    validBytes: 0,
    fileBytes,
    readIndex: 0,
    readOffset: SEGMENT_HEADER_BYTES,
    undelivered: { records: 0, lines: 0, bytes: 0 },
  }
  const header = await reader.read(0, SEGMENT_HEADER_BYTES)
  scan.firstId = header && decodeSegmentHeader(header)
  if (scan.firstId === undefined) return scan
  let pos = SEGMENT_HEADER_BYTES
  scan.validBytes = pos
  for (;;) {
    const h = await reader.read(pos, RECORD_HEADER_BYTES)
    if (!h) break
    const { length, lines, crc } = decodeRecordHeader(h)
    if (length > fileBytes - pos - RECORD_HEADER_BYTES) break
    // Copy the header: the next read may move the window under it.
    const hCopy = Buffer.from(h)
    const payload = await reader.read(pos + RECORD_HEADER_BYTES, length)
    if (!payload || recordCrc(hCopy, payload) !== crc) break
    const id = scan.firstId + scan.count
    const size = RECORD_HEADER_BYTES + length
    if (id <= delivered) {
      scan.readIndex = scan.count + 1
      scan.readOffset = pos + size
    } else {
      scan.undelivered.records++
      scan.undelivered.lines += lines
      scan.undelivered.bytes += size
    }
    scan.count++
    pos += size
    scan.validBytes = pos
  }
  return scan
}

/** Sequential reads through a reusable window, so a scan costs one read per MiB, not two per record. */
class WindowReader {
  private buf = Buffer.alloc(0)
  private start = 0
  private end = 0

  constructor(
    private readonly fh: FileHandle,
    private readonly fileBytes: number,
  ) {}

  /** `len` bytes at `pos`, valid until the next call; undefined past the end of the file. */
  async read(pos: number, len: number): Promise<Buffer | undefined> {
    if (pos + len > this.fileBytes) return undefined
    if (pos < this.start || pos + len > this.end) {
      const want = Math.min(Math.max(SCAN_WINDOW_BYTES, len), this.fileBytes - pos)
      if (this.buf.length < want) this.buf = Buffer.allocUnsafe(want)
      const got = await readFully(this.fh, this.buf, want, pos)
      this.start = pos
      this.end = pos + got
      if (got < len) return undefined
    }
    return this.buf.subarray(pos - this.start, pos - this.start + len)
  }
}

/** Reads up to `len` bytes at `pos` into the start of `buf`; fewer only at the end of the file. */
export async function readFully(fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<number> {
  let got = 0
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, pos + got)
    if (bytesRead === 0) break
    got += bytesRead
  }
  return got
}

/** Writes every byte of `buffers` at `pos`, looping over short writes. */
export async function writeFully(fh: FileHandle, buffers: Buffer[], pos: number): Promise<void> {
  let rest = buffers
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest, pos)
    if (bytesWritten === 0 && rest.some((b) => b.length > 0)) throw new Error('spool: write made no progress')
    pos += bytesWritten
    let skip = bytesWritten
    let i = 0
    while (i < rest.length && skip >= rest[i]!.length) skip -= rest[i++]!.length
    rest = rest.slice(i)
    if (skip > 0 && rest[0]) rest = [rest[0].subarray(skip), ...rest.slice(1)]
  }
}

/** Makes the directory's entries (a created, renamed or removed file) durable. */
export async function syncDir(dir: string): Promise<void> {
  const dh = await open(dir, 'r')
  try {
    await dh.sync()
  } finally {
    await dh.close()
  }
}

export type CursorState = 'ok' | 'missing' | 'invalid'

/** The id of the last delivered record (0: none), and whether the file was there and sound. */
export async function readCursor(dir: string): Promise<{ delivered: number; state: CursorState }> {
  let text: string
  try {
    const fh = await open(join(dir, CURSOR_FILE), 'r')
    try {
      text = await fh.readFile('utf8')
    } finally {
      await fh.close()
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { delivered: 0, state: 'missing' }
    throw err
  }
  try {
    const parsed = JSON.parse(text) as unknown
    if (typeof parsed === 'object' && parsed !== null && 'delivered' in parsed) {
      const delivered = parsed.delivered
      if (typeof delivered === 'number' && Number.isSafeInteger(delivered) && delivered >= 0) {
        return { delivered, state: 'ok' }
      }
    }
  } catch {
    // fall through: an unreadable cursor means replaying from the start (duplicates, not loss)
  }
  return { delivered: 0, state: 'invalid' }
}

/** Replaces the cursor atomically; with `fsync` it is durable when this resolves. */
export async function writeCursor(dir: string, delivered: number, fsync: boolean): Promise<void> {
  const temp = join(dir, CURSOR_TEMP)
  const fh = await open(temp, 'w')
  try {
    await fh.writeFile(`${JSON.stringify({ version: 1, delivered })}\n`)
    if (fsync) await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(temp, join(dir, CURSOR_FILE))
  if (fsync) await syncDir(dir)
}

export const cursorTempName = CURSOR_TEMP
