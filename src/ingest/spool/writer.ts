import { open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import {
  RECORD_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  encodeRecordHeader,
  encodeSegmentHeader,
  segmentName,
  syncDir,
  writeFully,
  type Segment,
} from './segment.js'

export interface SegmentWriterOptions {
  dir: string
  segmentBytes: number
  /** One write + sync takes queued appends up to this many bytes (at least one). */
  groupCommitBytes: number
  fsync: boolean
  /** The id of the next record and the sequence number of the next segment file. */
  nextId: number
  nextSeq: number
  /** A segment file was created; records will be committed to it. */
  onSegment: (seg: Segment) => void
  /** Records became durable (called before their appends resolve). */
  onCommit: (records: number, lines: number, bytes: number) => void
}

interface PendingAppend {
  header: Buffer
  payload: Buffer
  size: number
  lines: number
  resolve: (id: number) => void
  reject: (err: unknown) => void
}

/**
 * The append side of the spool, as group commit: appends queue while a write is under
 * way, then the whole queue goes out as one writev and one fdatasync per segment it
 * lands in, and every append resolves with its id. Segments roll past `segmentBytes`.
 */
export class SegmentWriter {
  /** Appends queued or being written, and their bytes. */
  pendingRecords = 0
  pendingBytes = 0
  /** fdatasync calls made on segment files. */
  syncs = 0
  private current: { seg: Segment; fh: FileHandle } | undefined
  private queue: PendingAppend[] = []
  private flushing: Promise<void> | undefined
  private nextId: number
  private nextSeq: number

  constructor(private readonly opts: SegmentWriterOptions) {
    this.nextId = opts.nextId
    this.nextSeq = opts.nextSeq
  }

  /** The segment appends go to; undefined until the next append opens one. */
  get segment(): Segment | undefined {
    return this.current?.seg
  }

  /** Resolves with the record's id once it is written and synced; rejects with the I/O error. */
  append(payload: Buffer, lines: number): Promise<number> {
    const size = RECORD_HEADER_BYTES + payload.length
    this.pendingRecords++
    this.pendingBytes += size
    const header = encodeRecordHeader(payload, lines)
    return new Promise<number>((resolve, reject) => {
      this.queue.push({ header, payload, size, lines, resolve, reject })
      this.flushing ??= this.flushLoop()
    })
  }

  /** Resolves once every append made so far has settled. */
  async drain(): Promise<void> {
    while (this.flushing) await this.flushing
  }

  async close(): Promise<void> {
    await this.drain()
    const current = this.current
    this.current = undefined
    await current?.fh.close()
  }

  private async flushLoop(): Promise<void> {
    // Appends made in the same tick as the first one join its write.
    await null
    try {
      while (this.queue.length > 0) {
        await this.writeBatch(this.takeBatch())
      }
    } finally {
      this.flushing = undefined
    }
  }

  /** The oldest queued appends, up to groupCommitBytes (at least one). */
  private takeBatch(): PendingAppend[] {
    let n = 0
    let bytes = 0
    while (n < this.queue.length && (n === 0 || bytes + this.queue[n]!.size <= this.opts.groupCommitBytes)) {
      bytes += this.queue[n++]!.size
    }
    return this.queue.splice(0, n)
  }

  /** Settles every append of the batch; never rejects. */
  private async writeBatch(batch: PendingAppend[]): Promise<void> {
    const { segmentBytes } = this.opts
    let i = 0
    while (i < batch.length) {
      const seg = this.current?.seg
      const roll = seg === undefined || (seg.size > SEGMENT_HEADER_BYTES && seg.size + batch[i]!.size > segmentBytes)
      let end = roll ? SEGMENT_HEADER_BYTES : seg.size
      const run: PendingAppend[] = []
      for (; i < batch.length && (run.length === 0 || end + batch[i]!.size <= segmentBytes); i++) {
        run.push(batch[i]!)
        end += batch[i]!.size
      }
      // Ids are taken before the write: a failed run leaves a gap, and the next run goes to
      // a fresh segment, so ids stay unique even if the failed bytes survive on disk.
      const firstId = this.nextId
      this.nextId += run.length
      try {
        if (roll) await this.roll(firstId)
        await this.writeRun(run, roll)
      } catch (err) {
        await this.abandon()
        for (const p of run) {
          this.pendingRecords--
          this.pendingBytes -= p.size
          p.reject(err)
        }
        continue
      }
      this.commit(run, firstId)
    }
  }

  private commit(run: PendingAppend[], firstId: number): void {
    const seg = this.current!.seg
    let lines = 0
    let bytes = 0
    for (const p of run) {
      seg.count++
      seg.size += p.size
      this.pendingRecords--
      this.pendingBytes -= p.size
      lines += p.lines
      bytes += p.size
    }
    this.opts.onCommit(run.length, lines, bytes)
    for (const [k, p] of run.entries()) p.resolve(firstId + k)
  }

  private async roll(firstId: number): Promise<void> {
    const previous = this.current
    this.current = undefined
    await previous?.fh.close()
    const seq = this.nextSeq++
    const path = join(this.opts.dir, segmentName(seq))
    const fh = await open(path, 'wx')
    const seg: Segment = { seq, path, firstId, count: 0, size: 0, readIndex: 0, readOffset: SEGMENT_HEADER_BYTES }
    this.current = { seg, fh }
    this.opts.onSegment(seg)
  }

  private async writeRun(run: PendingAppend[], fresh: boolean): Promise<void> {
    const { seg, fh } = this.current!
    const buffers = fresh ? [encodeSegmentHeader(seg.firstId)] : []
    for (const p of run) buffers.push(p.header, p.payload)
    await writeFully(fh, buffers, seg.size)
    if (this.opts.fsync) {
      await fh.datasync()
      this.syncs++
      // The new file's directory entry must be durable too, or a crash can lose the file.
      if (fresh) await syncDir(this.opts.dir)
    }
    if (fresh) seg.size = SEGMENT_HEADER_BYTES
  }

  /** After a failed write: cut the segment back to its committed bytes (best effort) and append no more to it. */
  private async abandon(): Promise<void> {
    const current = this.current
    if (!current) return
    this.current = undefined
    try {
      await current.fh.truncate(current.seg.size)
      if (this.opts.fsync) await current.fh.datasync()
    } catch {
      // Whatever survives holds ids already given up, so it can only come back as a replay.
    }
    await current.fh.close().catch(() => {})
  }
}
