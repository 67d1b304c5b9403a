import type { Sink } from '../../src/ingest/sinks/sink.js'

/**
 * A sink whose writes hang until the test releases them: a sink that is slow or stuck,
 * without any timing in the test. close() releases what is still waiting.
 */
export class GatedSink implements Sink {
  readonly name = 'gated'
  readonly lines: string[] = []
  private waiting: Array<() => void> = []

  /** Writes waiting for release(). */
  get pending(): number {
    return this.waiting.length
  }

  write(body: Buffer): Promise<void> {
    const text = body.toString('utf8')
    return new Promise((resolve) =>
      this.waiting.push(() => {
        this.lines.push(...text.split('\n').filter((l) => l !== ''))
        resolve()
      }),
    )
  }

  /** Lets every waiting write complete (stored, in order). */
  release(): void {
    for (const w of this.waiting.splice(0)) w()
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    this.release()
  }
}
