import { open, type FileHandle } from 'node:fs/promises'
import { RECORD_HEADER_BYTES, decodeRecordHeader, readFully, type Segment } from './segment.js'

/**
 * Reads records of already validated, committed segments, keeping one file open at a
 * time (the replayer reads segments in order, so that is the one it reads next).
 */
export class SegmentReader {
  private current: { seg: Segment; fh: FileHandle } | undefined

  /** Size on disk (header included) and lines of the record at `offset`. */
  async header(seg: Segment, offset: number): Promise<{ size: number; lines: number }> {
    const buf = Buffer.alloc(RECORD_HEADER_BYTES)
    await this.readAt(seg, buf, offset)
    const { length, lines } = decodeRecordHeader(buf)
    return { size: RECORD_HEADER_BYTES + length, lines }
  }

  /** The payload of the record at `offset`, whose size the header gave. */
  async payload(seg: Segment, offset: number, size: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(size - RECORD_HEADER_BYTES)
    await this.readAt(seg, buf, offset + RECORD_HEADER_BYTES)
    return buf
  }

  /** Closes the segment's file if it is the open one (before the file is deleted). */
  async forget(seg: Segment): Promise<void> {
    if (this.current?.seg === seg) await this.close()
  }

  async close(): Promise<void> {
    const current = this.current
    this.current = undefined
    await current?.fh.close()
  }

  private async readAt(seg: Segment, buf: Buffer, pos: number): Promise<void> {
    if (this.current?.seg !== seg) {
      await this.close()
      this.current = { seg, fh: await open(seg.path, 'r') }
    }
    const got = await readFully(this.current.fh, buf, buf.length, pos)
    if (got !== buf.length) throw new Error(`spool: ${seg.path} ends early at ${pos + got}`)
  }
}
