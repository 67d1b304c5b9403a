import { describe, expect, it } from 'vitest'
import { ErrorRecorder, type ErrorEntry } from '../../src/admin/recorder.js'

const badLine = (n: number) => ({ kind: 'bad_line' as const, endpoint: 'time-series' as const, reason: `ERR line ${n}: bad`, user: 'u', org: 'o', remote: '10.0.0.1' })

describe('ErrorRecorder', () => {
  it('keeps the last `kept` errors, newest first, with time, identity and monotonic ids', () => {
    let now = Date.UTC(2026, 0, 1)
    const r = new ErrorRecorder({ kept: 3, now: () => now })
    expect(r.list()).toEqual([])
    for (let n = 1; n <= 5; n++) {
      r.record(badLine(n))
      now += 1000
    }
    expect(r.size).toBe(3)
    const list = r.list()
    expect(list.map((e) => e.reason)).toEqual(['ERR line 5: bad', 'ERR line 4: bad', 'ERR line 3: bad'])
    expect(list.map((e) => e.id)).toEqual(['5', '4', '3'])
    expect(list[0]).toEqual({
      id: '5',
      at: '2026-01-01T00:00:04.000Z',
      kind: 'bad_line',
      endpoint: 'time-series',
      reason: 'ERR line 5: bad',
      user: 'u',
      org: 'o',
      remote: '10.0.0.1',
    })
  })

  it('shows unknown or empty identity as null, and cuts long reasons and names', () => {
    const r = new ErrorRecorder({ kept: 10 })
    const e = r.record({ kind: 'auth_failure', endpoint: 'login', reason: 'x'.repeat(10_000), user: '', remote: undefined })
    expect(e.user).toBeNull()
    expect(e.org).toBeNull()
    expect(e.remote).toBeNull()
    expect(e.reason.length).toBeLessThanOrEqual(500)
    expect(e.reason.endsWith('…')).toBe(true)
    expect(r.record({ kind: 'auth_failure', endpoint: 'mqtt', reason: 'r', user: 'y'.repeat(1000) }).user?.length).toBeLessThanOrEqual(256)
  })

  it('tells each listener every error as it is recorded, until it unsubscribes; a throwing listener harms nothing', () => {
    const failures: unknown[] = []
    const r = new ErrorRecorder({ kept: 2, onListenerError: (err) => failures.push(err) })
    const heard: ErrorEntry[] = []
    r.subscribe(() => {
      throw new Error('listener broke')
    })
    const stop = r.subscribe((e) => heard.push(e))
    const first = r.record(badLine(1))
    expect(heard).toEqual([first])
    expect(failures).toHaveLength(1)
    stop()
    r.record(badLine(2))
    expect(heard).toHaveLength(1)
    expect(r.size).toBe(2)
  })

  it('keeps the newest sink failure after the ring has moved past it', () => {
    const r = new ErrorRecorder({ kept: 2 })
    expect(r.lastSinkError).toBeUndefined()
    r.record({ kind: 'sink_outage', endpoint: 'sink', reason: 'sink writes failing (unreachable): batches go to the spool' })
    for (let n = 0; n < 5; n++) r.record(badLine(n))
    expect(r.list().some((e) => e.endpoint === 'sink')).toBe(false)
    expect(r.lastSinkError?.reason).toBe('sink writes failing (unreachable): batches go to the spool')
  })

  it('records in constant time: a full ring of 200 takes 200k errors without growing', () => {
    const r = new ErrorRecorder({ kept: 200 })
    const input = badLine(1)
    for (let n = 0; n < 200_000; n++) r.record(input)
    expect(r.size).toBe(200)
    expect(r.list()[0]?.id).toBe('200000')
    expect(r.list()[199]?.id).toBe('199801')
  })

  it('refuses a ring size that is no positive integer', () => {
    expect(() => new ErrorRecorder({ kept: 0 })).toThrow(RangeError)
    expect(() => new ErrorRecorder({ kept: 1.5 })).toThrow(RangeError)
  })
})
