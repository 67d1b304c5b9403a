import { describe, expect, it } from 'vitest'
import { DEDUP_WINDOW_MS, MessageIds, slotOf } from '../../src/devices/msg-ids.js'

const T0 = 1_700_000_000_000
const TOPIC = 'raw.dev-1'
const payload = (s: string) => Buffer.from(s)

describe('MessageIds', () => {
  it('gives a redelivery of an unacknowledged message the id of its first delivery', () => {
    const ids = new MessageIds()
    const slot = slotOf('dev-1', undefined, 7)
    const first = ids.idFor(slot, TOPIC, payload('a'), T0)
    expect(ids.redelivered).toBe(false)
    // While the first is still under way (two copies in one read) ...
    expect(ids.idFor(slot, TOPIC, payload('a'), T0 + 1)).toBe(first)
    expect(ids.redelivered).toBe(true)
    // ... and after it failed (the device delivers again), as often as it does.
    ids.notStored(slot, first)
    expect(ids.idFor(slot, TOPIC, payload('a'), T0 + 1_000)).toBe(first)
    ids.notStored(slot, first)
    expect(ids.idFor(slot, TOPIC, payload('a'), T0 + 2_000)).toBe(first)
    expect(ids.redelivered).toBe(true)
  })

  it('gives a new message a fresh id even when its packet id was used (and acknowledged) before', () => {
    const ids = new MessageIds()
    const slot = slotOf('dev-1', undefined, 7)
    const first = ids.idFor(slot, TOPIC, payload('same'), T0)
    ids.stored(slot, first)
    // Same packet id, same payload: after the PUBACK it is a new message.
    const second = ids.idFor(slot, TOPIC, payload('same'), T0 + 1)
    expect(ids.redelivered).toBe(false)
    expect(second).not.toBe(first)
    ids.stored(slot, second)
    expect(ids.size).toBe(0)
  })

  it('a different payload or topic in an unacknowledged slot is a new message (a client that started over)', () => {
    const ids = new MessageIds()
    const slot = slotOf('dev-1', undefined, 1)
    const old = ids.idFor(slot, TOPIC, payload('old'), T0)
    ids.notStored(slot, old)
    const other = ids.idFor(slot, TOPIC, payload('new'), T0 + 5)
    expect(ids.redelivered).toBe(false)
    expect(other).not.toBe(old)
    const otherTopic = ids.idFor(slot, `${TOPIC}/x`, payload('new'), T0 + 6)
    expect(otherTopic).not.toBe(other)
    // Storing an older message does not forget the newer one in its slot.
    ids.stored(slot, old)
    expect(ids.idFor(slot, `${TOPIC}/x`, payload('new'), T0 + 7)).toBe(otherTopic)
  })

  it('finds the redelivery after the device reconnected (slots are per device and client id, not per connection)', () => {
    const ids = new MessageIds()
    const slot = slotOf('dev-1', 'client-a', 3)
    const before = ids.idFor(slot, TOPIC, payload('m'), T0)
    ids.notStored(slot, before)
    // A new connection of the same client: the same slot.
    expect(ids.idFor(slotOf('dev-1', 'client-a', 3), TOPIC, payload('m'), T0 + 10_000)).toBe(before)
    // Another client of the same device, or another device, is another session.
    expect(ids.idFor(slotOf('dev-1', 'client-b', 3), TOPIC, payload('m'), T0 + 10_000)).not.toBe(before)
    expect(ids.idFor(slotOf('dev-2', 'client-a', 3), TOPIC, payload('m'), T0 + 10_000)).not.toBe(before)
    expect(slotOf('dev-1', undefined, 3)).not.toBe(slotOf('dev-1', 'client-a', 3))
  })

  it('never derives an id from the packet id: every id is unique, across instances too', () => {
    const a = new MessageIds()
    const b = new MessageIds()
    expect(a.bootId).not.toBe(b.bootId)
    const seen = new Set<string>()
    for (let i = 0; i < 1_000; i++) {
      const slot = slotOf('d', undefined, 1)
      for (const ids of [a, b]) {
        const id = ids.idFor(slot, TOPIC, payload('x'), T0)
        seen.add(id)
        ids.stored(slot, id)
      }
      seen.add(a.next())
    }
    expect(seen.size).toBe(3_000)
    for (const id of seen) expect(id).toMatch(/^[A-Za-z0-9_-]+-[0-9a-z]+$/)
  })

  it('holds at most one id per packet id of a device', () => {
    const ids = new MessageIds()
    for (let round = 0; round < 2; round++) {
      for (let packetId = 1; packetId <= 65_535; packetId++) {
        ids.idFor(slotOf('dev-1', undefined, packetId), TOPIC, payload(`${round}`), T0)
      }
    }
    expect(ids.size).toBe(65_535)
  })

  it('forgets ids older than the dedup window (a device that never came back)', () => {
    const ids = new MessageIds()
    ids.idFor(slotOf('gone', undefined, 1), TOPIC, payload('a'), T0)
    ids.idFor(slotOf('gone', undefined, 2), TOPIC, payload('a'), T0)
    const slot = slotOf('active', undefined, 1)
    const kept = ids.idFor(slot, TOPIC, payload('a'), T0 + DEDUP_WINDOW_MS - 1_000)
    ids.sweep(T0 + DEDUP_WINDOW_MS)
    expect(ids.size).toBe(1)
    expect(ids.idFor(slot, TOPIC, payload('a'), T0 + DEDUP_WINDOW_MS)).toBe(kept)
    // Past the window it is not reused (JetStream would not deduplicate it any more).
    expect(ids.idFor(slot, TOPIC, payload('a'), T0 + 3 * DEDUP_WINDOW_MS)).not.toBe(kept)
  })

  it('sweeps on access, without a timer', () => {
    const ids = new MessageIds({ windowMs: 1_000 })
    for (let p = 1; p <= 100; p++) ids.idFor(slotOf('gone', undefined, p), TOPIC, payload('a'), T0)
    expect(ids.size).toBe(100)
    ids.idFor(slotOf('other', undefined, 1), TOPIC, payload('a'), T0 + 60_000)
    expect(ids.size).toBe(1)
  })
})
