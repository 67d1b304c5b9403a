import { afterEach, describe, expect, it, vi } from 'vitest'
import { BusError, subjectMatches, type BusMessage } from '../../src/bus/bus.js'
import { IN_PROCESS_MAX_DEDUP_IDS, InProcessBus } from '../../src/bus/in-process.js'
import { waitUntil } from '../helpers/wait.js'

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array) => new TextDecoder().decode(b)

/** Delivery is deferred (as over a network): a marker published last proves what came before it. */
async function drained(bus: InProcessBus, seen: BusMessage[], subject = 'marker.done'): Promise<void> {
  const before = seen.length
  bus.publish(subject, bytes('marker'))
  await waitUntil(() => seen.slice(before).some((m) => m.subject === subject), 2000, `marker on ${subject}`)
}

describe('subjectMatches', () => {
  it.each([
    ['a.b.c', 'a.b.c', true],
    ['a.b.c', 'a.b', false],
    ['a.b', 'a.b.c', false],
    ['a.*.c', 'a.x.c', true],
    ['a.*.c', 'a.x.y.c', false],
    ['*', 'a', true],
    ['*', 'a.b', false],
    ['a.>', 'a.b', true],
    ['a.>', 'a.b.c.d', true],
    ['a.>', 'a', false],
    ['>', 'a', true],
    ['>', 'a.b', true],
    ['raw.*.>', 'raw.dev1.x', true],
    ['raw.*.>', 'raw.dev1', false],
    ['cmd.dev1', 'cmd.dev10', false],
    ['cmd.dev1.>', 'cmd.dev10.x', false],
  ])('%s vs %s → %s', (pattern, subject, expected) => {
    expect(subjectMatches(pattern, subject)).toBe(expected)
  })
})

describe('InProcessBus', () => {
  let bus: InProcessBus
  afterEach(async () => {
    await bus?.close()
    vi.useRealTimers()
  })

  it('is up, in-process, until closed, and tells its listeners of the change', async () => {
    bus = new InProcessBus()
    expect(bus.status()).toEqual({ status: 'up', mode: 'in-process' })
    const changes: string[] = []
    bus.onStatusChange((s) => changes.push(`${s.status}:${s.reason}`))
    await bus.close()
    expect(bus.status()).toMatchObject({ status: 'down', reason: 'closed' })
    expect(changes).toEqual(['down:closed'])
    await bus.close()
    expect(changes).toEqual(['down:closed'])
  })

  it('delivers by subject and wildcard, with headers, after the publisher returns', async () => {
    bus = new InProcessBus()
    const exact: BusMessage[] = []
    const wild: BusMessage[] = []
    const all: BusMessage[] = []
    bus.subscribe('cmd.dev1', (m) => exact.push(m))
    bus.subscribe('cmd.*.>', (m) => wild.push(m))
    bus.subscribe('>', (m) => all.push(m))
    bus.publish('cmd.dev1', bytes('one'), { 'Device-Id': 'dev1' })
    bus.publish('cmd.dev1.a.b', bytes('two'))
    bus.publish('cmd.dev2', bytes('three'))
    expect(all).toHaveLength(0)
    await drained(bus, all)
    expect(exact.map((m) => [m.subject, text(m.data), m.headers])).toEqual([['cmd.dev1', 'one', { 'Device-Id': 'dev1' }]])
    expect(wild.map((m) => [m.subject, m.headers])).toEqual([['cmd.dev1.a.b', undefined]])
    expect(all.map((m) => m.subject)).toEqual(['cmd.dev1', 'cmd.dev1.a.b', 'cmd.dev2', 'marker.done'])
  })

  it('gives each message to one member of a queue group, in turn, and a copy to every plain subscriber', async () => {
    bus = new InProcessBus()
    const a: string[] = []
    const b: string[] = []
    const plain: string[] = []
    const marker: BusMessage[] = []
    bus.subscribe('work.>', (m) => a.push(text(m.data)), { queue: 'workers' })
    bus.subscribe('work.>', (m) => b.push(text(m.data)), { queue: 'workers' })
    bus.subscribe('work.>', (m) => plain.push(text(m.data)))
    bus.subscribe('marker.done', (m) => marker.push(m))
    for (let i = 0; i < 6; i++) bus.publish('work.x', bytes(String(i)))
    await drained(bus, marker)
    expect(a.length + b.length).toBe(6)
    expect(a).toHaveLength(3)
    expect(new Set([...a, ...b]).size).toBe(6)
    expect(plain).toEqual(['0', '1', '2', '3', '4', '5'])
  })

  it('stops delivering to a subscription once unsubscribed', async () => {
    bus = new InProcessBus()
    const got: string[] = []
    const marker: BusMessage[] = []
    const sub = bus.subscribe('x', (m) => got.push(text(m.data)))
    bus.subscribe('marker.done', (m) => marker.push(m))
    bus.publish('x', bytes('1'))
    await drained(bus, marker)
    sub.unsubscribe()
    bus.publish('x', bytes('2'))
    await drained(bus, marker)
    expect(got).toEqual(['1'])
  })

  it('keeps delivering to the others when one handler throws, and reports the error', async () => {
    const errors: Array<[unknown, string]> = []
    bus = new InProcessBus({ onHandlerError: (err, subject) => errors.push([err, subject]) })
    const got: string[] = []
    bus.subscribe('s', () => {
      throw new Error('handler broke')
    })
    bus.subscribe('s', (m) => got.push(text(m.data)))
    bus.publish('s', bytes('a'))
    bus.publish('s', bytes('b'))
    await waitUntil(() => got.length === 2, 2000, 'both messages delivered')
    expect(got).toEqual(['a', 'b'])
    expect(errors).toHaveLength(2)
    expect(errors[0]?.[1]).toBe('s')
    expect(String(errors[0]?.[0])).toContain('handler broke')
  })

  it('persists with increasing seq per stream and de-duplicates a msgId within the window', async () => {
    bus = new InProcessBus()
    expect(await bus.ensureStream({ name: 'RAW', subjects: ['raw.>'], duplicateWindowMs: 60_000 })).toBe('created')
    expect(await bus.ensureStream({ name: 'RAW', subjects: ['other.>'] })).toBe('exists')
    const seen: BusMessage[] = []
    bus.subscribe('raw.>', (m) => seen.push(m))
    const first = await bus.persist('raw.dev1', bytes('a'), { msgId: 'm1', headers: { 'Device-Id': 'dev1' } })
    const again = await bus.persist('raw.dev1', bytes('a'), { msgId: 'm1' })
    const other = await bus.persist('raw.dev1.x', bytes('b'), { msgId: 'm2' })
    const noId = await bus.persist('raw.dev1', bytes('c'))
    expect(first).toEqual({ stream: 'RAW', seq: 1, duplicate: false })
    expect(again).toEqual({ stream: 'RAW', seq: 1, duplicate: true })
    expect(other).toEqual({ stream: 'RAW', seq: 2, duplicate: false })
    expect(noId).toEqual({ stream: 'RAW', seq: 3, duplicate: false })
    // The existing stream kept its first config: other.> is not covered.
    expect(await bus.persist('other.x', bytes('d'))).toEqual({ stream: '', seq: 0, duplicate: false })
    await waitUntil(() => seen.length === 4, 2000, 'four deliveries on raw.>')
    expect(seen[0]?.headers).toEqual({ 'Device-Id': 'dev1', 'Nats-Msg-Id': 'm1' })
  })

  it('stores a msgId again once the de-duplication window has passed', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    bus = new InProcessBus()
    await bus.ensureStream({ name: 'S', subjects: ['s.>'], duplicateWindowMs: 1000 })
    expect(await bus.persist('s.a', bytes('x'), { msgId: 'id' })).toMatchObject({ seq: 1, duplicate: false })
    vi.advanceTimersByTime(999)
    expect(await bus.persist('s.a', bytes('x'), { msgId: 'id' })).toMatchObject({ seq: 1, duplicate: true })
    vi.advanceTimersByTime(2)
    expect(await bus.persist('s.a', bytes('x'), { msgId: 'id' })).toMatchObject({ seq: 2, duplicate: false })
  })

  it('keeps at most IN_PROCESS_MAX_DEDUP_IDS msgIds per stream, forgetting the oldest first', async () => {
    bus = new InProcessBus()
    await bus.ensureStream({ name: 'B', subjects: ['b.>'] })
    for (let i = 0; i <= IN_PROCESS_MAX_DEDUP_IDS; i++) await bus.persist('b.x', bytes('x'), { msgId: `id-${i}` })
    // id-0 was the oldest: it fell out, so it is stored again; the newest is still known.
    expect(await bus.persist('b.x', bytes('x'), { msgId: `id-${IN_PROCESS_MAX_DEDUP_IDS}` })).toMatchObject({ duplicate: true })
    expect(await bus.persist('b.x', bytes('x'), { msgId: 'id-1' })).toMatchObject({ duplicate: true })
    expect(await bus.persist('b.x', bytes('x'), { msgId: 'id-0' })).toMatchObject({ seq: IN_PROCESS_MAX_DEDUP_IDS + 2, duplicate: false })
  })

  it('sees streams created and subscriptions made after a subject was first used', async () => {
    bus = new InProcessBus()
    const marker: BusMessage[] = []
    bus.subscribe('marker.done', (m) => marker.push(m))
    expect(await bus.persist('late.a', bytes('1'))).toEqual({ stream: '', seq: 0, duplicate: false })
    bus.publish('late.a', bytes('nobody'))
    await bus.ensureStream({ name: 'LATE', subjects: ['late.>'] })
    expect(await bus.persist('late.a', bytes('2'))).toEqual({ stream: 'LATE', seq: 1, duplicate: false })
    const got: string[] = []
    const sub = bus.subscribe('late.*', (m) => got.push(text(m.data)))
    await bus.persist('late.a', bytes('3'))
    bus.publish('late.a', bytes('4'))
    await drained(bus, marker)
    sub.unsubscribe()
    bus.publish('late.a', bytes('5'))
    await drained(bus, marker)
    expect(got).toEqual(['3', '4'])
  })

  it('persists to a subject no stream covers as stream "" and still delivers it', async () => {
    bus = new InProcessBus()
    const seen: BusMessage[] = []
    bus.subscribe('loose.>', (m) => seen.push(m))
    expect(await bus.persist('loose.x', bytes('p'), { msgId: 'z' })).toEqual({ stream: '', seq: 0, duplicate: false })
    await waitUntil(() => seen.length === 1, 2000, 'delivery')
    expect(seen[0]?.headers).toEqual({ 'Nats-Msg-Id': 'z' })
  })

  it('refuses everything with BusError closed after close', async () => {
    bus = new InProcessBus()
    await bus.close()
    const kind = (fn: () => unknown) => {
      try {
        fn()
      } catch (err) {
        return err instanceof BusError ? err.kind : String(err)
      }
      return 'no error'
    }
    expect(kind(() => bus.publish('a', bytes('x')))).toBe('closed')
    expect(kind(() => bus.subscribe('a', () => {}))).toBe('closed')
    await expect(bus.persist('a', bytes('x'))).rejects.toMatchObject({ name: 'BusError', kind: 'closed' })
    await expect(bus.ensureStream({ name: 'X', subjects: ['x'] })).rejects.toMatchObject({ kind: 'closed' })
    expect(new BusError('closed', 'x').transient).toBe(false)
    expect(new BusError('disconnected', 'x').transient).toBe(true)
  })
})
