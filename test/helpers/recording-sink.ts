import { SinkError, type Sink } from '../../src/ingest/sinks/sink.js'

/**
 * An in-process sink for protocol tests: records each write, and fails on demand with a
 * transient or permanent SinkError. Tests against real sinks use fake-influx/victoria.
 */
export class RecordingSink implements Sink {
  readonly name = 'recording'
  readonly writes: string[] = []
  failWith: SinkError | undefined
  delayMs = 0

  get lines(): string[] {
    return this.writes.flatMap((w) => w.split('\n').filter((l) => l !== ''))
  }

  /** Each write is kept as its text, decoded from the body's bytes. */
  async write(body: Buffer): Promise<void> {
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs))
    if (this.failWith) throw this.failWith
    this.writes.push(body.toString('utf8'))
  }

  async ping(): Promise<void> {
    if (this.failWith?.transient) throw this.failWith
  }

  async close(): Promise<void> {}
}

export const transientFailure = () => new SinkError('sink down', true, 503)
export const permanentFailure = () => new SinkError('sink refused: field type conflict', false, 400)
