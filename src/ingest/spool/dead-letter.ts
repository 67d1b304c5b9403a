import { createReadStream } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { syncDir, writeFully } from './segment.js'

/** The file under DATA_DIR, relative (what /readyz shows). */
export const DEAD_LETTER_FILE = 'dead-letter.lp'

export interface DeadLetter {
  sink: string
  /** The sink's HTTP status, when it answered with one. */
  status?: number
  /** Stable words (a SinkFailure or a per-line reason such as "field type conflict"). */
  reason: string
  /** The sink's own words, kept in the file for the operator (never shown to clients). */
  detail?: string
  /** The refused lines, newline-terminated. */
  text: string
  lines: number
}

export interface DeadLetterStats {
  file: string
  records: number
  lines: number
  last_reason: string | undefined
  last_at: string | undefined
}

const HEADER = '# dead-letter '

/**
 * Lines the sink refused for good after the gateway had acknowledged them: never
 * deleted, appended to one line-protocol file with a `#` comment header per record
 * (time, sink, status, reason, lines; then the sink's own words), so an operator can read
 * it, fix the lines and write them again (`#` lines are comments in line protocol).
 * `append` resolves once the bytes are fdatasynced (and a new file's directory entry
 * synced): only then may the spool cursor move past them.
 */
export class DeadLetterFile {
  private fh: FileHandle | undefined
  private ops: Promise<unknown> = Promise.resolve()
  private closed = false

  private constructor(
    private readonly dir: string,
    private readonly fsync: boolean,
    private readonly stats: DeadLetterStats,
  ) {}

  /** Counts what an earlier run left in the file, so /readyz lists it too. */
  static async open(opts: { dir: string; fsync?: boolean }): Promise<DeadLetterFile> {
    const stats: DeadLetterStats = { file: DEAD_LETTER_FILE, records: 0, lines: 0, last_reason: undefined, last_at: undefined }
    try {
      const rl = createInterface({ input: createReadStream(join(opts.dir, DEAD_LETTER_FILE)), crlfDelay: Infinity })
      for await (const line of rl) {
        if (!line.startsWith(HEADER)) continue
        const h = parseHeader(line)
        stats.records++
        stats.lines += h.lines
        stats.last_reason = h.reason
        stats.last_at = h.time
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    return new DeadLetterFile(opts.dir, opts.fsync ?? true, stats)
  }

  get summary(): Readonly<DeadLetterStats> {
    return this.stats
  }

  /** Appends every record with one write and one fdatasync. */
  append(records: DeadLetter[]): Promise<void> {
    const run = this.ops.then(() => this.write(records))
    this.ops = run.catch(() => {})
    return run
  }

  async close(): Promise<void> {
    this.closed = true
    await this.ops
    const fh = this.fh
    this.fh = undefined
    await fh?.close()
  }

  private async write(records: DeadLetter[]): Promise<void> {
    if (records.length === 0) return
    if (this.closed) throw new Error('dead-letter file is closed')
    const at = new Date().toISOString()
    const chunks = records.map((r) => Buffer.from(format(r, at), 'utf8'))
    const fh = await this.handle()
    const { size } = await fh.stat()
    await writeFully(fh, chunks, size)
    if (this.fsync) await fh.datasync()
    for (const r of records) {
      this.stats.records++
      this.stats.lines += r.lines
      this.stats.last_reason = r.reason
    }
    this.stats.last_at = at
  }

  private async handle(): Promise<FileHandle> {
    if (this.fh) return this.fh
    const path = join(this.dir, DEAD_LETTER_FILE)
    try {
      this.fh = await open(path, 'wx')
      // A new file's directory entry must be durable too, or a crash can lose the file.
      if (this.fsync) await syncDir(this.dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      this.fh = await open(path, 'r+')
    }
    return this.fh
  }
}

function format(r: DeadLetter, at: string): string {
  const status = r.status === undefined ? '' : ` status=${r.status}`
  let out = `${HEADER}time=${at} sink=${r.sink}${status} lines=${r.lines} reason=${JSON.stringify(r.reason)}\n`
  if (r.detail) out += `# ${oneLine(r.detail)}\n`
  out += r.text.endsWith('\n') ? r.text : `${r.text}\n`
  return out
}

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim()

function parseHeader(line: string): { time: string | undefined; lines: number; reason: string | undefined } {
  const time = /\btime=(\S+)/.exec(line)?.[1]
  const lines = Number(/\blines=(\d+)/.exec(line)?.[1] ?? 0)
  const quoted = /\breason=("(?:[^"\\]|\\.)*")/.exec(line)?.[1]
  let reason: string | undefined
  try {
    reason = quoted === undefined ? undefined : (JSON.parse(quoted) as string)
  } catch {
    reason = undefined
  }
  return { time, lines, reason }
}
