import { unlink } from 'node:fs/promises'
import { resolve } from 'node:path'
import { SegmentReader } from './reader.js'
import { recoverDir, type RecoveredDir, type SpoolRecovery } from './recovery.js'
import { RECORD_FIELD_MAX, RECORD_HEADER_BYTES, syncDir, writeCursor, type Segment } from './segment.js'
import { SegmentWriter } from './writer.js'

export type { SpoolRecovery } from './recovery.js'

export interface SpoolOptions {
  /** Created if missing. One Spool per directory: a second open in this process throws. */
  dir: string
  /** Bytes of undelivered records (12-byte header + UTF-8 payload each, appends under way included). */
  maxBytes: number
  /** Roll to a new segment file once the next record would take the current one past this. */
  segmentBytes?: number
  /**
   * One group-commit write takes queued appends up to this many bytes, then syncs
   * (default 1 MiB). Measured: 1 MB appends from 64 writers reached ~2x the MB/s with
   * 1 MiB writes than with one 30 MB write per sync; 10 KB appends were unaffected.
   */
  groupCommitBytes?: number
  /** Default true; false only for benchmarks (then nothing survives a machine crash). */
  fsync?: boolean
}

export interface SpoolRecord {
  /** Increases across segments and restarts; gaps appear where an append failed. */
  id: number
  /** The appended bytes, as they were given. */
  body: Buffer
  lines: number
}

export class SpoolFullError extends Error {
  override name = 'SpoolFullError'
  constructor(
    readonly recordBytes: number,
    readonly usedBytes: number,
    readonly maxBytes: number,
  ) {
    super(`spool full: ${usedBytes} + ${recordBytes} bytes would exceed ${maxBytes}`)
  }
}

export class SpoolClosedError extends Error {
  override name = 'SpoolClosedError'
  constructor() {
    super('spool is closed')
  }
}

const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
const DEFAULT_GROUP_COMMIT_BYTES = 1024 * 1024

/** Directories with an open Spool in this process: two writers on one spool would corrupt it. */
const openDirs = new Set<string>()

/**
 * An append-only, checksummed on-disk queue of batches that the sink could not take.
 * `append` resolves once the record is fsynced, sharing one write and one fdatasync among
 * every append made meanwhile (group commit). A replayer reads the oldest record with
 * `peek` (or several with `peekMany`) and confirms delivery with `ack` (`ackThrough`),
 * which moves a durable cursor and deletes segment files that are fully delivered.
 * Memory holds one small entry per segment file, never payloads. Reads and acks run one
 * at a time, in call order; appends go on meanwhile. Format: segment.ts.
 */
export class Spool {
  readonly recovered: SpoolRecovery
  private readonly segments: Segment[]
  private readonly writer: SegmentWriter
  private readonly reader = new SegmentReader()
  private readonly undelivered: { records: number; lines: number; bytes: number }
  /** The id of the last delivered record, as the cursor file has it. */
  private delivered: number
  private ops: Promise<unknown> = Promise.resolve()
  private closing: Promise<void> | undefined
  /** Size and lines of the records the last peek returned, so acking them needs no reads. */
  private peeked: Array<{ id: number; size: number; lines: number }> = []
  private readonly maxBytes: number
  private readonly fsync: boolean

  private constructor(
    private readonly dir: string,
    opts: SpoolOptions,
    found: RecoveredDir,
  ) {
    this.maxBytes = opts.maxBytes
    this.fsync = opts.fsync ?? true
    this.recovered = found.recovered
    this.segments = found.segments
    this.delivered = found.delivered
    const { records, lines, bytes } = found.recovered
    this.undelivered = { records, lines, bytes }
    this.writer = new SegmentWriter({
      dir,
      segmentBytes: opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES,
      groupCommitBytes: opts.groupCommitBytes ?? DEFAULT_GROUP_COMMIT_BYTES,
      fsync: this.fsync,
      nextId: found.nextId,
      nextSeq: found.nextSeq,
      onSegment: (seg) => this.segments.push(seg),
      onCommit: (records, lines, bytes) => {
        this.undelivered.records += records
        this.undelivered.lines += lines
        this.undelivered.bytes += bytes
      },
    })
  }

  static async open(opts: SpoolOptions): Promise<Spool> {
    if (!(opts.maxBytes > 0)) throw new RangeError('spool: maxBytes must be positive')
    for (const key of ['segmentBytes', 'groupCommitBytes'] as const) {
      const value = opts[key]
      if (value !== undefined && !(value > 0)) throw new RangeError(`spool: ${key} must be positive`)
    }
    const dir = resolve(opts.dir)
    if (openDirs.has(dir)) throw new Error(`spool: ${dir} is already open in this process`)
    openDirs.add(dir)
    try {
      return new Spool(dir, opts, await recoverDir(dir, opts.fsync ?? true))
    } catch (err) {
      openDirs.delete(dir)
      throw err
    }
  }

  /** Undelivered records on disk (appends still being written are not counted). */
  get bytes(): number {
    return this.undelivered.bytes
  }
  get lines(): number {
    return this.undelivered.lines
  }
  get records(): number {
    return this.undelivered.records
  }
  /**
   * Appends accepted but not yet durable: not in `records`, not visible to `peek`. A peek
   * that finds nothing while this is above 0 will find those records once they resolve.
   */
  get pending(): number {
    return this.writer.pendingRecords
  }
  /** fdatasync calls made on segment files so far: far fewer than appends under load. */
  get syncs(): number {
    return this.writer.syncs
  }
  /** Segment files holding undelivered records (the size of the in-memory index). */
  get segmentCount(): number {
    return this.segments.length
  }

  /**
   * Resolves with the record's id once it is durable. Rejects with SpoolFullError, writing
   * nothing, when it would take the spool past maxBytes; with SpoolClosedError after close().
   * `payload` is written as it is, not copied: it must not change until this settles.
   */
  async append(payload: Buffer, lines: number): Promise<number> {
    if (this.closing) throw new SpoolClosedError()
    if (!Number.isInteger(lines) || lines < 0 || lines > RECORD_FIELD_MAX) throw new RangeError(`spool: bad line count ${lines}`)
    if (payload.length > RECORD_FIELD_MAX) throw new RangeError(`spool: record of ${payload.length} bytes is too large`)
    const size = RECORD_HEADER_BYTES + payload.length
    const used = this.undelivered.bytes + this.writer.pendingBytes
    if (used + size > this.maxBytes) throw new SpoolFullError(size, used, this.maxBytes)
    return this.writer.append(payload, lines)
  }

  /** The oldest undelivered record, read from disk; undefined when everything is delivered. */
  async peek(): Promise<SpoolRecord | undefined> {
    return (await this.peekMany(1))[0]
  }

  /**
   * Up to `maxRecords` of the oldest undelivered records, oldest first, stopping before
   * their payloads pass `maxBytes` (the first record comes whatever its size). For a
   * replayer that writes several records to the sink at once, then calls `ackThrough`
   * once: one cursor write for all of them instead of one each.
   */
  peekMany(maxRecords: number, maxBytes = Infinity): Promise<SpoolRecord[]> {
    return this.serial(async () => {
      const out: SpoolRecord[] = []
      let bytes = 0
      this.peeked = []
      await this.head()
      for (const seg of this.segments) {
        for (let index = seg.readIndex, offset = seg.readOffset; index < seg.count; index++) {
          if (out.length >= maxRecords) return out
          const { size, lines } = await this.reader.header(seg, offset)
          if (out.length > 0 && bytes + size - RECORD_HEADER_BYTES > maxBytes) return out
          const payload = await this.reader.payload(seg, offset, size)
          const id = seg.firstId + index
          out.push({ id, body: payload, lines })
          this.peeked.push({ id, size, lines })
          bytes += payload.length
          offset += size
        }
      }
      return out
    })
  }

  /**
   * Record `id` was delivered. It must be the oldest undelivered record (RangeError
   * otherwise, nothing changed); an id already delivered is a no-op. Resolves once the
   * cursor is durable, then deletes segment files left fully delivered.
   */
  ack(id: number): Promise<void> {
    return this.deliverThrough(id, true)
  }

  /** Every record up to and including `id` was delivered (one cursor write for all); otherwise as `ack`. */
  ackThrough(id: number): Promise<void> {
    return this.deliverThrough(id, false)
  }

  private deliverThrough(id: number, oldestOnly: boolean): Promise<void> {
    return this.serial(async () => {
      if (id <= this.delivered) return
      // Work out where every segment's read position moves before changing anything, so a
      // refused ack or a failed cursor write leaves the spool as it was.
      const moves: Array<{ seg: Segment; index: number; offset: number }> = []
      const done = { records: 0, lines: 0, bytes: 0 }
      let found = false
      const head = await this.head()
      for (const seg of this.segments) {
        const move = { seg, index: seg.readIndex, offset: seg.readOffset }
        while (!found && move.index < seg.count) {
          const recId = seg.firstId + move.index
          if (recId > id || (oldestOnly && done.records > 0)) break
          const cached = this.peeked[done.records]
          const { size, lines } = cached?.id === recId ? cached : await this.reader.header(seg, move.offset)
          move.index++
          move.offset += size
          done.records++
          done.lines += lines
          done.bytes += size
          found = recId === id
        }
        moves.push(move)
        if (found || move.index < seg.count) break
      }
      if (!found) {
        const oldest = head && head.firstId + head.readIndex
        throw new RangeError(`spool: ack(${id}) but the oldest undelivered record is ${oldest ?? 'none'}`)
      }
      await writeCursor(this.dir, id, this.fsync)
      this.delivered = id
      this.peeked = []
      for (const { seg, index, offset } of moves) {
        seg.readIndex = index
        seg.readOffset = offset
      }
      this.undelivered.records -= done.records
      this.undelivered.lines -= done.lines
      this.undelivered.bytes -= done.bytes
      await this.head()
    })
  }

  /** Waits for pending appends (they are written), then for peek/ack under way; later calls reject. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.writer.drain()
        await this.ops
        await this.writer.close()
        await this.reader.close()
      } finally {
        openDirs.delete(this.dir)
      }
    })()
    return this.closing
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new SpoolClosedError())
    const run = this.ops.then(fn)
    this.ops = run.catch(() => {})
    return run
  }

  /** The first segment with an undelivered record, deleting fully delivered ones before it. */
  private async head(): Promise<Segment | undefined> {
    for (let seg = this.segments[0]; seg; seg = this.segments[0]) {
      if (seg.readIndex < seg.count) return seg
      if (seg === this.writer.segment) return undefined
      this.segments.shift()
      await this.reader.forget(seg)
      // A file that cannot be removed now is removed on the next open: the cursor says it is delivered.
      const removed = await unlink(seg.path).then(
        () => true,
        () => false,
      )
      // The removal made durable, so after a crash the directory matches the cursor (best
      // effort: a file that comes back is delivered by the cursor and removed on open).
      if (removed && this.fsync) await syncDir(this.dir).catch(() => {})
    }
    return undefined
  }
}
