import { EventEmitter } from 'node:events'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { AdminFeeds, type FeedOutput } from '../../src/admin/feed.js'
import { ErrorRecorder } from '../../src/admin/recorder.js'

/** A response that takes `room` writes, then says wait until the test drains it. */
class FakeOutput extends EventEmitter implements FeedOutput {
  readonly chunks: string[] = []
  ended = false
  constructor(public room = Infinity) {
    super()
  }
  write(chunk: string): boolean {
    this.chunks.push(chunk)
    return --this.room > 0
  }
  end(): void {
    this.ended = true
    this.emit('close')
  }
  drain(room = Infinity): void {
    this.room = room
    this.emit('drain')
  }
  events(): string[] {
    return this.chunks.map((c) => (c.startsWith(':') ? 'ping' : (/^event: (\S+)/.exec(c)?.[1] ?? '?')))
  }
}

const INTERVAL_MS = 1000

function setUp(snapshot: () => Promise<string> = async () => '{"n":1}') {
  const errors = new ErrorRecorder({ kept: 10 })
  const made: number[] = []
  const feeds = new AdminFeeds({
    maxFeeds: 2,
    intervalMs: INTERVAL_MS,
    errors,
    snapshot: async () => {
      made.push(Date.now())
      return snapshot()
    },
  })
  return { errors, feeds, made }
}
const badLine = { kind: 'bad_line' as const, endpoint: 'time-series' as const, reason: 'ERR line 1: x' }

describe('AdminFeeds', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('sends the kept errors, a snapshot, then one snapshot per interval for all feeds, and errors as they come', async () => {
    vi.useFakeTimers()
    const { errors, feeds, made } = setUp()
    errors.record(badLine)
    const a = new FakeOutput()
    const b = new FakeOutput()
    expect(feeds.add(a, 60_000)).toBe(true)
    expect(feeds.add(b, 60_000)).toBe(true)
    await vi.advanceTimersByTimeAsync(0)
    expect(a.events()).toEqual(['errors', 'snapshot'])
    expect(JSON.parse(a.chunks[0]!.split('data: ')[1]!)).toMatchObject([{ id: '1', reason: 'ERR line 1: x' }])
    expect(a.chunks[1]).toBe('event: snapshot\ndata: {"n":1}\n\n')
    made.length = 0
    await vi.advanceTimersByTimeAsync(3 * INTERVAL_MS)
    // One snapshot per interval, shared by both feeds.
    expect(made).toHaveLength(3)
    expect(b.events()).toEqual(['errors', 'snapshot', 'snapshot', 'snapshot', 'snapshot'])
    errors.record(badLine)
    expect(a.events().at(-1)).toBe('error')
    expect(JSON.parse(a.chunks.at(-1)!.split('data: ')[1]!)).toMatchObject({ id: '2', kind: 'bad_line' })
  })

  it('refuses a feed past its cap, and stops working once the last feed is gone', async () => {
    vi.useFakeTimers()
    const { errors, feeds, made } = setUp()
    const a = new FakeOutput()
    const b = new FakeOutput()
    feeds.add(a, 60_000)
    feeds.add(b, 60_000)
    expect(feeds.add(new FakeOutput(), 60_000)).toBe(false)
    a.emit('close')
    expect(feeds.size).toBe(1)
    b.emit('close')
    expect(feeds.size).toBe(0)
    await vi.advanceTimersByTimeAsync(0)
    made.length = 0
    await vi.advanceTimersByTimeAsync(5 * INTERVAL_MS)
    expect(made).toHaveLength(0)
    errors.record(badLine)
    expect(a.chunks.some((c) => c.startsWith('event: error\n'))).toBe(false)
  })

  it('sends a slow reader nothing while its socket is full, then the kept errors again once it drains', async () => {
    vi.useFakeTimers()
    const { errors, feeds } = setUp()
    const slow = new FakeOutput(2)
    feeds.add(slow, 3_600_000)
    await vi.advanceTimersByTimeAsync(0)
    // errors, snapshot: the second write filled it.
    expect(slow.events()).toEqual(['errors', 'snapshot'])
    for (let i = 0; i < 100; i++) errors.record(badLine)
    await vi.advanceTimersByTimeAsync(100 * INTERVAL_MS)
    expect(slow.events()).toEqual(['errors', 'snapshot'])
    slow.drain()
    expect(slow.events()).toEqual(['errors', 'snapshot', 'errors'])
    const resent = JSON.parse(slow.chunks[2]!.split('data: ')[1]!) as Array<{ id: string }>
    expect(resent.map((e) => e.id)[0]).toBe('100')
    await vi.advanceTimersByTimeAsync(INTERVAL_MS)
    expect(slow.events().at(-1)).toBe('snapshot')
  })

  it('ends a feed with `expired` when its token expires, and every feed on close', async () => {
    vi.useFakeTimers()
    const { feeds } = setUp()
    const short = new FakeOutput()
    const long = new FakeOutput()
    feeds.add(short, 2_500)
    feeds.add(long, 3_600_000)
    await vi.advanceTimersByTimeAsync(2_499)
    expect(short.ended).toBe(false)
    await vi.advanceTimersByTimeAsync(1)
    expect(short.ended).toBe(true)
    expect(short.events().at(-1)).toBe('expired')
    expect(feeds.size).toBe(1)
    feeds.close()
    expect(long.ended).toBe(true)
    expect(long.events().at(-1)).toBe('expired')
    expect(feeds.add(new FakeOutput(), 60_000)).toBe(false)
  })

  it('pings instead of a snapshot that could not be made', async () => {
    vi.useFakeTimers()
    const { feeds } = setUp(async () => {
      throw new Error('database down')
    })
    const out = new FakeOutput()
    feeds.add(out, 60_000)
    await vi.advanceTimersByTimeAsync(INTERVAL_MS)
    expect(out.events()).toEqual(['errors', 'ping', 'ping'])
  })

  it('pings while a slow snapshot is still being made, instead of going silent', async () => {
    vi.useFakeTimers()
    let finish: (json: string) => void = () => {}
    let calls = 0
    const { feeds } = setUp(() => (++calls === 1 ? Promise.resolve('{"n":1}') : new Promise<string>((r) => (finish = r))))
    const out = new FakeOutput()
    feeds.add(out, 60_000)
    await vi.advanceTimersByTimeAsync(3 * INTERVAL_MS)
    // The first tick's snapshot hangs; the next two ticks find it still being made.
    expect(out.events()).toEqual(['errors', 'snapshot', 'ping', 'ping'])
    finish('{"n":2}')
    await vi.advanceTimersByTimeAsync(0)
    expect(out.events().at(-1)).toBe('snapshot')
  })

  it('takes no feed once closing, and says so', () => {
    const { feeds } = setUp()
    expect(feeds.closing).toBe(false)
    feeds.close()
    expect(feeds.closing).toBe(true)
    const out = new FakeOutput()
    expect(feeds.add(out, 60_000)).toBe(false)
    expect(out.chunks).toEqual([])
  })
})
