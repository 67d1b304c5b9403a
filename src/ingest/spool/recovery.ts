import { mkdir, open, readdir, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import {
  SEGMENT_HEADER_BYTES,
  cursorTempName,
  readCursor,
  scanSegment,
  segmentSeq,
  syncDir,
  type CursorState,
  type Segment,
} from './segment.js'

export interface SpoolRecovery {
  /** Undelivered records found on open, their lines and bytes. */
  records: number
  lines: number
  bytes: number
  /** Bytes cut off (or set aside as `.corrupt`) because they failed validation. */
  tornBytes: number
  /** Segment files found on open, including the ones then deleted as delivered or torn. */
  segments: number
  /** Whether the cursor file was there and readable ('missing' and 'invalid' replay from the start). */
  cursor: CursorState
}

export interface RecoveredDir {
  /** Segments holding undelivered records, oldest first. */
  segments: Segment[]
  nextId: number
  nextSeq: number
  /** The id of the last delivered record, from the cursor (0: none). */
  delivered: number
  recovered: SpoolRecovery
}

/**
 * Brings a spool directory to a consistent state on start-up: validates every record of
 * every segment, cuts off torn or corrupt tails, deletes segments the cursor says are
 * delivered, and finds where ids continue. Files it does not know are left alone.
 */
export async function recoverDir(dir: string, fsync: boolean): Promise<RecoveredDir> {
  await mkdir(dir, { recursive: true })
  const cursor = await readCursor(dir)
  const names = await readdir(dir)
  if (names.includes(cursorTempName)) await unlink(join(dir, cursorTempName))
  const files = names
    .map((name) => ({ name, seq: segmentSeq(name) }))
    .filter((f): f is { name: string; seq: number } => f.seq !== undefined)
    .sort((a, b) => a.seq - b.seq)
  const recovered: SpoolRecovery = { records: 0, lines: 0, bytes: 0, tornBytes: 0, segments: files.length, cursor: cursor.state }
  const segments: Segment[] = []
  // Ids continue after both the cursor and every record on disk: the cursor may point past
  // a tail that was torn after delivery, and delivered segments may all be gone.
  let nextId = cursor.delivered + 1
  let prevEnd = 0
  let dirChanged = false
  for (const [i, { name, seq }] of files.entries()) {
    const path = join(dir, name)
    const fh = await open(path, 'r+')
    let scan
    try {
      scan = await scanSegment(fh, cursor.delivered)
      if (scan.firstId !== undefined && scan.validBytes < scan.fileBytes) {
        // A torn or corrupt tail is cut off so it is never replayed as garbage.
        await fh.truncate(scan.validBytes)
        if (fsync) await fh.datasync()
        recovered.tornBytes += scan.fileBytes - scan.validBytes
      }
    } finally {
      await fh.close()
    }
    if (scan.firstId === undefined) {
      dirChanged = true
      recovered.tornBytes += scan.fileBytes
      // A bad header on the last file is a creation cut short by a crash; elsewhere it is
      // damage, and the file is set aside for a human rather than deleted.
      if (i === files.length - 1 || scan.fileBytes < SEGMENT_HEADER_BYTES) await unlink(path)
      else await rename(path, `${path}.corrupt`)
      continue
    }
    if (scan.firstId < prevEnd) throw new Error(`spool: ${name} starts at id ${scan.firstId}, before the previous segment ends`)
    prevEnd = scan.firstId + scan.count
    nextId = Math.max(nextId, prevEnd)
    if (scan.readIndex >= scan.count) {
      dirChanged = true
      await unlink(path)
      continue
    }
    segments.push({ seq, path, firstId: scan.firstId, count: scan.count, size: scan.validBytes, readIndex: scan.readIndex, readOffset: scan.readOffset })
    recovered.records += scan.undelivered.records
    recovered.lines += scan.undelivered.lines
    recovered.bytes += scan.undelivered.bytes
  }
  if (dirChanged && fsync) await syncDir(dir)
  return { segments, nextId, nextSeq: (files.at(-1)?.seq ?? 0) + 1, delivered: cursor.delivered, recovered }
}
