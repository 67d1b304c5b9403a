/**
 * A sink takes newline-terminated, already validated and tagged line protocol with ns
 * timestamps. `write` resolves only once the sink has accepted every line durably.
 */
export interface Sink {
  readonly name: string
  write(text: string, lines: number): Promise<void>
  /** Resolves when the sink answers; rejects with the reason otherwise (for /readyz). */
  ping(): Promise<void>
  close(): Promise<void>
}

/**
 * `transient`: the sink may take the same batch later (connection refused or reset,
 * timeout, 5xx, 429); otherwise the sink refused the data itself and retrying is useless.
 */
export class SinkError extends Error {
  override name = 'SinkError'
  constructor(
    message: string,
    readonly transient: boolean,
    readonly statusCode?: number,
    options?: { cause?: unknown; rejected?: RejectedLine[] },
  ) {
    super(message, options)
    this.rejected = options?.rejected
  }

  /**
   * A partial write (InfluxDB 3 writes the good lines of a body and names the bad ones):
   * the refused lines, numbered from 1 over the written text. Undefined: all refused.
   */
  readonly rejected: RejectedLine[] | undefined
}

export interface RejectedLine {
  line: number
  message: string
  /** The refused line as the sink quoted it, when it did. */
  text?: string
}
