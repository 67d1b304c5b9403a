import { afterEach, describe, expect, it, vi } from 'vitest'
import { Batcher, type FlushReport } from '../../src/ingest/batcher.js'
import { SinkError } from '../../src/ingest/sinks/sink.js'

/** A sink whose writes complete only when the test says so. */
class ManualSink {
  writes: Array<{ body: Buffer; text: string; lines: number; resolve: () => void; reject: (e: Error) => void }> = []
  write(body: Buffer, lines: number): Promise<void> {
    return new Promise((resolve, reject) => this.writes.push({ body, text: body.toString('utf8'), lines, resolve, reject }))
  }
}

const bytes = (text: string) => Buffer.from(text)

const tick = () => new Promise((r) => setImmediate(r))
// Unbounded unless a test is about the bound.
const UNBOUNDED = Number.MAX_SAFE_INTEGER

function collect() {
  const acks: Array<string> = []
  const ack = (name: string) => (err: SinkError | undefined) => acks.push(err ? `${name}:${err.message}` : name)
  return { acks, ack }
}

describe('Batcher', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('writes many frames in one sink call once maxLines is reached, then acks each', async () => {
    const sink = new ManualSink()
    const b = new Batcher(sink, { maxLines: 3, maxBytes: 1 << 20, lingerMs: 1000, maxInflight: 1, maxQueuedBytes: UNBOUNDED })
    const { acks, ack } = collect()
    b.submit(bytes('a 1\n'), 1, ack('f1'))
    b.submit(bytes('b 1\n'), 1, ack('f2'))
    expect(sink.writes).toHaveLength(0)
    b.submit(bytes('c 1\n'), 1, ack('f3'))
    expect(sink.writes).toHaveLength(1)
    expect(sink.writes[0]).toMatchObject({ text: 'a 1\nb 1\nc 1\n', lines: 3 })
    expect(acks).toEqual([])
    sink.writes[0]?.resolve()
    await tick()
    expect(acks).toEqual(['f1', 'f2', 'f3'])
  })

  it('reuses a written batch buffer only once its write has settled', async () => {
    const sink = new ManualSink()
    const b = new Batcher(sink, { maxLines: 1, maxBytes: 1 << 20, lingerMs: 1000, maxInflight: 2, maxQueuedBytes: UNBOUNDED })
    const { acks, ack } = collect()
    b.submit(bytes('a 1\n'), 1, ack('f1'))
    b.submit(bytes('b 2\n'), 1, ack('f2'))
    // Two writes under way: each has its own bytes.
    expect(sink.writes.map((w) => w.body.toString())).toEqual(['a 1\n', 'b 2\n'])
    expect(sink.writes[0]?.body.buffer).not.toBe(sink.writes[1]?.body.buffer)
    sink.writes[0]?.resolve()
    await tick()
    b.submit(bytes('c 3\n'), 1, ack('f3'))
    // The third batch is written in the first one's buffer, never in the one still being written.
    expect(sink.writes[2]?.body.buffer).toBe(sink.writes[0]?.body.buffer)
    expect(sink.writes[1]?.body.toString()).toBe('b 2\n')
    expect(sink.writes[2]?.body.toString()).toBe('c 3\n')
    sink.writes[1]?.resolve()
    sink.writes[2]?.resolve()
    await tick()
    expect(acks).toEqual(['f1', 'f2', 'f3'])
  })

  it('flushes a partial batch after lingerMs', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const sink = new ManualSink()
    const b = new Batcher(sink, { maxLines: 100, maxBytes: 1 << 20, lingerMs: 20, maxInflight: 1, maxQueuedBytes: UNBOUNDED })
    const { acks, ack } = collect()
    b.submit(bytes('a 1\n'), 1, ack('f1'))
    vi.advanceTimersByTime(19)
    expect(sink.writes).toHaveLength(0)
    vi.advanceTimersByTime(1)
    expect(sink.writes).toHaveLength(1)
    sink.writes[0]?.resolve()
    await tick()
    expect(acks).toEqual(['f1'])
  })

  it('flushes on maxBytes and never splits a frame', async () => {
    const sink = new ManualSink()
    const b = new Batcher(sink, { maxLines: 1000, maxBytes: 10, lingerMs: 1000, maxInflight: 4, maxQueuedBytes: UNBOUNDED })
    const { ack } = collect()
    b.submit(bytes('aaaa 1\n'), 1, ack('f1')) // 7 bytes
    b.submit(bytes('bbbb 1\ncccc 1\n'), 2, ack('f2')) // would pass 10: f1 goes alone, f2 fills the next
    expect(sink.writes.map((w) => w.text)).toEqual(['aaaa 1\n', 'bbbb 1\ncccc 1\n'])
  })

  it('grows the batch buffer past its first capacity, handing the sink exactly the frames concatenated in order', () => {
    const sink = new ManualSink()
    const b = new Batcher(sink, { maxLines: 1_000_000, maxBytes: 1 << 20, lingerMs: 60_000, maxInflight: 1, maxQueuedBytes: UNBOUNDED })
    const { ack } = collect()
    // Frames of varied sizes, 200 KB in all: past the 64 KiB a batch starts with, under maxBytes.
    const frames = Array.from({ length: 2000 }, (_, i) => bytes(`m,i=${i},pad=${'x'.repeat(i % 97)} v=${i}i ${i}\n`))
    for (const f of frames) b.submit(f, 1, ack('f'))
    void b.flush()
    expect(sink.writes).toHaveLength(1)
    const body = sink.writes[0]!.body
    expect(body.length).toBeGreaterThan(64 * 1024)
    expect(body.equals(Buffer.concat(frames))).toBe(true)
    expect(sink.writes[0]!.lines).toBe(2000)
  })

  it('copies a frame at submit: a caller overwriting its buffer afterwards does not change what the sink gets', () => {
    const sink = new ManualSink()
    const b = new Batcher(sink, { maxLines: 100, maxBytes: 1 << 20, lingerMs: 60_000, maxInflight: 1, maxQueuedBytes: UNBOUNDED })
    const { ack } = collect()
    const reused = Buffer.alloc(32)
    const n1 = reused.write('a v=1 1\n')
    b.submit(reused.subarray(0, n1), 1, ack('f1'))
    reused.fill(0x7a)
    const n2 = reused.write('bb v=2 2\n', 5)
    b.submit(reused.subarray(5, 5 + n2), 1, ack('f2'))
    reused.fill(0x7a)
    void b.flush()
    expect(sink.writes.map((w) => w.text)).toEqual(['a v=1 1\nbb v=2 2\n'])
  })

  it('counts UTF-8 bytes, and writes a frame larger than maxBytes whole in a batch of its own', () => {
    const sink = new ManualSink()
    const b = new Batcher(sink, { maxLines: 100, maxBytes: 100, lingerMs: 60_000, maxInflight: 4, maxQueuedBytes: UNBOUNDED })
    const { ack } = collect()
    const small = bytes('température,lieu=café v=1 1\n')
    b.submit(small, 1, ack('f1'))
    expect(b.queued).toBe(Buffer.byteLength('température,lieu=café v=1 1\n'))
    const big = bytes(`big v="${'y'.repeat(300)}" 2\n`)
    b.submit(big, 1, ack('f2'))
    expect(sink.writes.map((w) => w.body)).toEqual([small, big])
  })

  it('with maxLines 1 makes one sink write per frame (the naive baseline)', () => {
    const sink = new ManualSink()
    const b = new Batcher(sink, { maxLines: 1, maxBytes: 1 << 20, lingerMs: 5, maxInflight: 64, maxQueuedBytes: UNBOUNDED })
    const { ack } = collect()
    for (let i = 0; i < 5; i++) b.submit(bytes(`m v=${i}\n`), 1, ack(`f${i}`))
    expect(sink.writes).toHaveLength(5)
  })

  it('keeps gathering while every slot is busy, then writes the rest in one call', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const sink = new ManualSink()
    const b = new Batcher(sink, { maxLines: 2, maxBytes: 1 << 20, lingerMs: 1, maxInflight: 1, maxQueuedBytes: UNBOUNDED })
    const { acks, ack } = collect()
    b.submit(bytes('a 1\n'), 1, ack('f1'))
    b.submit(bytes('b 1\n'), 1, ack('f2')) // full: written
    b.submit(bytes('c 1\n'), 1, ack('f3'))
    vi.advanceTimersByTime(10) // linger passes while the only slot is busy
    expect(sink.writes).toHaveLength(1)
    b.submit(bytes('d 1\n'), 1, ack('f4'))
    sink.writes[0]?.resolve()
    await tick()
    expect(sink.writes).toHaveLength(2)
    expect(sink.writes[1]?.text).toBe('c 1\nd 1\n')
    sink.writes[1]?.resolve()
    await tick()
    expect(acks).toEqual(['f1', 'f2', 'f3', 'f4'])
  })

  it('fails every frame of a failed batch with the sink error, and reports it', async () => {
    const sink = new ManualSink()
    const reports: FlushReport[] = []
    const b = new Batcher(sink, { maxLines: 2, maxBytes: 1 << 20, lingerMs: 1000, maxInflight: 1, maxQueuedBytes: UNBOUNDED }, (r) =>
      reports.push(r),
    )
    const { acks, ack } = collect()
    b.submit(bytes('a 1\n'), 1, ack('f1'))
    b.submit(bytes('b 1\n'), 1, ack('f2'))
    sink.writes[0]?.reject(new SinkError('down', true, 503))
    await tick()
    expect(acks).toEqual(['f1:down', 'f2:down'])
    expect(reports).toHaveLength(1)
    expect(reports[0]).toMatchObject({ lines: 2, frames: 2 })
    expect(reports[0]?.error?.transient).toBe(true)
  })

  it('wraps a non-SinkError failure as transient', async () => {
    const b = new Batcher({ write: () => Promise.reject(new Error('ECONNRESET')) }, {
      maxLines: 1,
      maxBytes: 1 << 20,
      lingerMs: 1,
      maxInflight: 1,
      maxQueuedBytes: UNBOUNDED,
    })
    const errors: Array<SinkError | undefined> = []
    b.submit(bytes('a 1\n'), 1, (e) => errors.push(e))
    await tick()
    expect(errors[0]).toBeInstanceOf(SinkError)
    expect(errors[0]?.transient).toBe(true)
  })

  it('flush() writes what is gathered and waits for writes under way', async () => {
    const sink = new ManualSink()
    const b = new Batcher(sink, { maxLines: 100, maxBytes: 1 << 20, lingerMs: 60_000, maxInflight: 2, maxQueuedBytes: UNBOUNDED })
    const { acks, ack } = collect()
    b.submit(bytes('a 1\n'), 1, ack('f1'))
    let flushed = false
    const done = b.flush().then(() => (flushed = true))
    expect(sink.writes).toHaveLength(1)
    await tick()
    expect(flushed).toBe(false)
    sink.writes[0]?.resolve()
    await done
    expect(acks).toEqual(['f1'])
    expect(b.pendingLines).toBe(0)
  })

  it('refuses a frame that would pass maxQueuedBytes at once (transient), and takes frames again once the queue drains', async () => {
    const sink = new ManualSink()
    // One slot, one line per batch: everything behind the first write waits in the queue.
    const b = new Batcher(sink, { maxLines: 1, maxBytes: 1 << 20, lingerMs: 1000, maxInflight: 1, maxQueuedBytes: 8 })
    const errors: Array<string> = []
    const ack = (name: string) => (err: SinkError | undefined) =>
      errors.push(err === undefined ? `${name}:ok` : `${name}:${err.transient ? 'transient' : 'permanent'}`)
    b.submit(bytes('a 1\n'), 1, ack('f1')) // written at once: not queued
    b.submit(bytes('b 1\n'), 1, ack('f2')) // queued: 4 bytes
    b.submit(bytes('c 1\n'), 1, ack('f3')) // queued: 8 bytes, at the bound
    expect(b.queued).toBe(8)
    b.submit(bytes('d 1\n'), 1, ack('f4')) // would be 12: refused, written nowhere
    expect(errors).toEqual(['f4:transient'])
    expect(b.queued).toBe(8)
    sink.writes[0]?.resolve()
    await tick()
    expect(b.queued).toBe(4)
    b.submit(bytes('e 1\n'), 1, ack('f5'))
    expect(b.queued).toBe(8)
    for (let i = 1; i <= 3; i++) {
      sink.writes[i]?.resolve()
      await tick()
    }
    expect(sink.writes.map((w) => w.text)).toEqual(['a 1\n', 'b 1\n', 'c 1\n', 'e 1\n'])
    expect(errors).toEqual(['f4:transient', 'f1:ok', 'f2:ok', 'f3:ok', 'f5:ok'])
    expect(b.queued).toBe(0)
  })

  it('takes a frame larger than maxQueuedBytes when nothing is queued (it could never be written otherwise)', () => {
    const sink = new ManualSink()
    const b = new Batcher(sink, { maxLines: 100, maxBytes: 1 << 20, lingerMs: 1000, maxInflight: 1, maxQueuedBytes: 2 })
    const errors: Array<SinkError | undefined> = []
    b.submit(bytes('big v=1 1\n'), 1, (e) => errors.push(e))
    expect(errors).toEqual([])
    expect(b.queued).toBe(10)
  })

  it('close() writes what is gathered and resolves once every frame is answered', async () => {
    const sink = new ManualSink()
    const b = new Batcher(sink, { maxLines: 100, maxBytes: 1 << 20, lingerMs: 60_000, maxInflight: 1, maxQueuedBytes: UNBOUNDED })
    const { acks, ack } = collect()
    b.submit(bytes('a 1\n'), 1, ack('f1'))
    let closed = false
    const done = b.close(60_000).then(() => (closed = true))
    expect(sink.writes).toHaveLength(1)
    await tick()
    expect(closed).toBe(false)
    sink.writes[0]?.resolve()
    await done
    expect(acks).toEqual(['f1'])
  })

  it('close() refuses frames submitted after it (transient), writing nothing of them', async () => {
    const sink = new ManualSink()
    const b = new Batcher(sink, { maxLines: 100, maxBytes: 1 << 20, lingerMs: 1, maxInflight: 1, maxQueuedBytes: UNBOUNDED })
    await b.close(1000)
    const errors: Array<SinkError | undefined> = []
    b.submit(bytes('late 1\n'), 1, (e) => errors.push(e))
    expect(errors).toHaveLength(1)
    expect(errors[0]?.transient).toBe(true)
    expect(sink.writes).toHaveLength(0)
  })

  it('at the close deadline answers every frame not yet durable with a transient error, once, and ignores the late outcome', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const sink = new ManualSink()
    const reports: FlushReport[] = []
    const b = new Batcher(
      sink,
      { maxLines: 1, maxBytes: 1 << 20, lingerMs: 60_000, maxInflight: 1, maxQueuedBytes: UNBOUNDED },
      (r) => reports.push(r),
    )
    const seen: string[] = []
    const ack = (name: string) => (err: SinkError | undefined) =>
      seen.push(err === undefined ? `${name}:ok` : `${name}:${err.transient ? 'busy' : 'rejected'}`)
    b.submit(bytes('a 1\n'), 1, ack('f1')) // written: the sink hangs
    b.submit(bytes('b 1\n'), 1, ack('f2')) // waits for the slot
    let closed = false
    const done = b.close(5000).then(() => (closed = true))
    vi.advanceTimersByTime(4999)
    await Promise.resolve()
    expect(seen).toEqual([])
    expect(closed).toBe(false)
    vi.advanceTimersByTime(1)
    await done
    expect(seen).toEqual(['f1:busy', 'f2:busy'])
    expect(sink.writes).toHaveLength(1) // the queued batch was never written
    expect(b.queued).toBe(0)
    // The hung write lands after all: its frames were answered already, and are not answered twice.
    sink.writes[0]?.resolve()
    vi.useRealTimers()
    await tick()
    expect(seen).toEqual(['f1:busy', 'f2:busy'])
    expect(reports).toHaveLength(1)
    expect(sink.writes).toHaveLength(1)
    await b.flush() // nothing owed: resolves at once
  })
})
