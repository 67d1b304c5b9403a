import { afterEach, describe, expect, it } from 'vitest'
import { eventFrame } from '../../src/channels/events.js'
import { MemoryChannelLog, type MemoryChannelLogOptions } from '../../src/channels/memory-log.js'
import { ChannelLogError, type LoggedEvent } from '../../src/channels/types.js'

describe('MemoryChannelLog', () => {
  const logs: MemoryChannelLog[] = []
  const make = (opts: Partial<MemoryChannelLogOptions> = {}) => {
    const log = new MemoryChannelLog({ historySize: 3, historyMaxAgeS: 60, eventMaxBytes: 1024, ...opts })
    logs.push(log)
    return log
  }
  afterEach(async () => {
    for (const log of logs.splice(0)) await log.close()
  })

  it('gives increasing offsets above this process’s start time in µs and delivers each event before append resolves', async () => {
    const startedUs = Date.now() * 1000
    const log = make()
    const delivered: LoggedEvent[] = []
    await log.start((e) => delivered.push(e))
    const before = log.position()
    expect(before).toBeGreaterThanOrEqual(startedUs - 1)
    const a = await log.append('c1', { type: 'message:created', data: { n: 1 } })
    expect(delivered).toEqual([a])
    const b = await log.append('c2', { type: 'message:created', data: { n: 2 }, timestamp: 5 })
    expect(delivered).toEqual([a, b])
    expect(a.offset).toBeGreaterThan(before)
    expect(b.offset).toBeGreaterThan(a.offset)
    expect(log.position()).toBe(b.offset)
    expect(b.timestamp).toBe(5)
    expect(b.frame).toBe(eventFrame({ type: 'message:created', channelId: 'c2', timestamp: 5, offset: b.offset, data: { n: 2 } }))
    expect(JSON.parse(a.frame)).toEqual({ type: 'message:created', channelId: 'c1', timestamp: a.timestamp, offset: a.offset, data: { n: 1 } })
  })

  it('refuses an event larger than eventMaxBytes, taking no offset for it', async () => {
    const log = make({ eventMaxBytes: 200 })
    const before = log.position()
    const err = await log.append('c', { type: 'message:created', data: 'x'.repeat(300) }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ChannelLogError)
    expect((err as ChannelLogError).kind).toBe('refused')
    expect(log.position()).toBe(before)
  })

  it('reads the events of one channel after since, from before the first event on', async () => {
    const log = make()
    const start = log.position()
    const a = await log.append('c', { type: 't', data: 1 })
    await log.append('other', { type: 't', data: 'x' })
    const b = await log.append('c', { type: 't', data: 2 })
    expect(await log.readSince('c', start)).toEqual({ ok: true, events: [a, b] })
    expect(await log.readSince('c', a.offset)).toEqual({ ok: true, events: [b] })
    expect(await log.readSince('c', b.offset)).toEqual({ ok: true, events: [] })
    expect(await log.readSince('never-used', start)).toEqual({ ok: true, events: [] })
  })

  it('answers unknown_offset beyond its position and expired before this process', async () => {
    const log = make()
    const a = await log.append('c', { type: 't', data: 1 })
    expect(await log.readSince('c', a.offset + 1)).toEqual({ ok: false, reason: 'unknown_offset' })
    expect(await log.readSince('c', 1)).toEqual({ ok: false, reason: 'expired' })
  })

  it('answers expired once events after since were pushed out of the ring', async () => {
    const log = make({ historySize: 3 })
    const events: LoggedEvent[] = []
    for (let i = 0; i < 5; i++) events.push(await log.append('c', { type: 't', data: i }))
    const [e0, e1, e2, e3, e4] = events as [LoggedEvent, LoggedEvent, LoggedEvent, LoggedEvent, LoggedEvent]
    // Kept: e2, e3, e4; e1 is gone, so a client that saw only e0 missed it.
    expect(await log.readSince('c', e0.offset)).toEqual({ ok: false, reason: 'expired' })
    expect(await log.readSince('c', e1.offset)).toEqual({ ok: true, events: [e2, e3, e4] })
  })

  it('drops events older than the max age, and remembers how far a channel’s history reached', async () => {
    let now = 1_000_000
    const log = make({ historyMaxAgeS: 10, now: () => now })
    const old = await log.append('c', { type: 't', data: 'old' })
    now += 5_000
    const newer = await log.append('c', { type: 't', data: 'newer' })
    now += 6_000
    // `old` is 11 s old: gone; `newer` is 6 s old: kept.
    expect(await log.readSince('c', old.offset - 1)).toEqual({ ok: false, reason: 'expired' })
    expect(await log.readSince('c', old.offset)).toEqual({ ok: true, events: [newer] })
    now += 10_000
    // Everything aged out: a client that had `old` only missed `newer`; one that had `newer` missed nothing.
    expect(await log.readSince('c', old.offset)).toEqual({ ok: false, reason: 'expired' })
    expect(await log.readSince('c', newer.offset)).toEqual({ ok: true, events: [] })
    const next = await log.append('c', { type: 't', data: 'next' })
    expect(await log.readSince('c', newer.offset)).toEqual({ ok: true, events: [next] })
    expect(await log.readSince('c', old.offset)).toEqual({ ok: false, reason: 'expired' })
  })

  it('is unavailable once closed', async () => {
    const log = make()
    await log.close()
    expect(log.status()).toEqual({ status: 'down', kind: 'memory', reason: 'closed' })
    await expect(log.append('c', { type: 't', data: 1 })).rejects.toMatchObject({ kind: 'unavailable' })
    await expect(log.readSince('c', log.position())).rejects.toMatchObject({ kind: 'unavailable' })
  })
})
