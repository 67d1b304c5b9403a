/**
 * A sink takes newline-terminated, already validated and tagged line protocol with ns
 * timestamps, as UTF-8 bytes (one buffer per batch: nothing on the way re-encodes it).
 * `write` resolves only once the sink has accepted every line durably. The body is the
 * caller's again once the promise settles (the batcher reuses it): a sink that needs the
 * bytes later copies them.
 */
export interface Sink {
  readonly name: string
  write(body: Buffer, lines: number): Promise<void>
  /** Resolves when the sink answers; rejects with the reason otherwise (for /readyz). */
  ping(): Promise<void>
  close(): Promise<void>
}

/**
 * Why a write failed, in words that never change and hold nothing the sink said: what
 * /readyz, metric labels and dead-letter headers show. The sink's own text is `detail`.
 */
export type SinkFailure =
  | 'unreachable'
  | 'timeout'
  | 'unauthorized'
  | 'forbidden'
  | 'database not found'
  | 'request too large'
  | 'throttled'
  | 'server error'
  | 'unexpected answer'
  | 'unknown'
  | 'database error'
  | 'spool full'
  | 'spool failed'
  | 'lines refused'

/** What clients are told: stable, never the sink's own text (that goes to the log). */
export const SINK_UNAVAILABLE = 'sink unavailable'
export const SINK_REFUSED = 'sink refused the lines'

/**
 * `transient`: the sink may take the same batch later; everything that lies in the sink's
 * state or configuration (connection, timeout, 5xx, 429, 401, 403, 404, 413, anything
 * unknown). Not transient: the sink refused these lines themselves (a partial write
 * naming lines, a 422, a data error), so retrying them is useless.
 * `message` is safe to show a client; `detail` is the sink's own text, for the log only.
 */
export class SinkError extends Error {
  override name = 'SinkError'
  readonly reason: SinkFailure
  readonly detail: string | undefined
  constructor(
    message: string,
    readonly transient: boolean,
    readonly statusCode?: number,
    options?: { cause?: unknown; rejected?: RejectedLine[]; reason?: SinkFailure; detail?: string },
  ) {
    super(message, options)
    this.rejected = options?.rejected
    this.reason = options?.reason ?? (transient ? 'unreachable' : 'lines refused')
    this.detail = options?.detail
  }

  /**
   * A partial write (InfluxDB 3 writes the good lines of a body and names the bad ones):
   * the refused lines, numbered from 1 over the written text. Undefined: all refused.
   */
  readonly rejected: RejectedLine[] | undefined
}

export interface RejectedLine {
  line: number
  /** Stable, safe for a client (e.g. "field type conflict"). */
  message: string
  /** The sink's own words about this line, for the log and the dead-letter file. */
  detail?: string
  /** The refused line as the sink quoted it, when it did. */
  text?: string
}

/**
 * The data lines of a text (or of its UTF-8 bytes) as a sink numbers them: blank lines
 * and `#` comments skipped. For the dead-letter path, where decoding costs nothing that matters.
 */
export function dataLines(text: string | Uint8Array): string[] {
  const s = typeof text === 'string' ? text : Buffer.from(text.buffer, text.byteOffset, text.byteLength).toString('utf8')
  return s.split('\n').filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'))
}
