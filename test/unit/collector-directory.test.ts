import { describe, expect, it } from 'vitest'
import { CollectorDirectoryService } from '../../src/collectors/directory.js'
import type { PendingPush } from '../../src/collectors/repo.js'
import type { CollectorStatus } from '../../src/collectors/types.js'

const silentLog = { warn() {}, error() {} } as never
const ID = '11111111-2222-4333-8444-555555555555'
const OTHER = '11111111-2222-4333-8444-666666666666'

/** A repository in memory that counts what the directory asks it. */
function fakeRepo() {
  const r = {
    statuses: new Map<string, CollectorStatus>(),
    deleted: [] as string[],
    lookups: 0,
    polls: 0,
    written: [] as PendingPush[][],
    failWrites: false,
    status: async (id: string) => (r.lookups++, r.statuses.get(id) ?? 'unknown'),
    deletedSince: async () => (r.polls++, { at: new Date(), ids: [...r.deleted] }),
    addPushes: async (p: readonly PendingPush[]) => {
      if (r.failWrites) throw new Error('database down')
      r.written.push(p.map((x) => ({ ...x })))
    },
  }
  return r
}

describe('the collector directory', () => {
  it('keeps the counts of a failed write for the next flush', async () => {
    const repo = fakeRepo()
    repo.failWrites = true
    const dir = new CollectorDirectoryService({ repo, log: silentLog, statusCacheMs: 0, statsFlushMs: 60_000 })
    dir.recordPush(ID, 3, new Date(1000))
    await dir.flush()
    expect(repo.written).toEqual([])
    dir.recordPush(ID, 4, new Date(2000))
    dir.recordPush('not-an-id', 9, new Date(3000))
    repo.failWrites = false
    await dir.close()
    expect(repo.written).toEqual([[{ id: ID, metrics: 7, lastPushAt: new Date(2000) }]])
  })

  it('looks a collector up once, then learns of its deletion from one poll per statusCacheMs for all collectors', async () => {
    let clock = 0
    const repo = fakeRepo()
    repo.statuses.set(ID, 'active').set(OTHER, 'active')
    const dir = new CollectorDirectoryService({ repo, log: silentLog, statusCacheMs: 1000, statsFlushMs: 60_000, now: () => clock })
    const [a, b] = await Promise.all([dir.status(ID), dir.status(ID)])
    expect([a, b, repo.lookups, repo.polls]).toEqual(['active', 'active', 1, 1])
    expect(await dir.status(OTHER)).toBe('active')
    clock = 999
    // Many uses within the period: no query at all.
    for (let i = 0; i < 10; i++) expect(await dir.status(i % 2 === 0 ? ID : OTHER)).toBe('active')
    expect([repo.lookups, repo.polls]).toEqual([2, 1])
    // Deleted elsewhere: the first use after the period polls, once for everyone.
    repo.deleted.push(ID)
    clock = 1000
    const [x, y] = await Promise.all([dir.status(ID), dir.status(OTHER)])
    expect([x, y, repo.polls, repo.lookups]).toEqual(['deleted', 'active', 2, 2])
    // A deletion is final, however long ago it was seen.
    repo.deleted.length = 0
    clock = 1_000_000
    expect(await dir.status(ID)).toBe('deleted')
    dir.markDeleted(OTHER)
    expect(await dir.status(OTHER)).toBe('deleted')
    await dir.close()
  })

  it('does not remember an unknown collector or a failed lookup, and asks every time with statusCacheMs 0', async () => {
    const repo = fakeRepo()
    const dir = new CollectorDirectoryService({ repo, log: silentLog, statusCacheMs: 1000, statsFlushMs: 60_000, now: () => 0 })
    expect(await dir.status(ID)).toBe('unknown')
    repo.statuses.set(ID, 'active')
    expect(await dir.status(ID)).toBe('active')
    const uncached = new CollectorDirectoryService({ repo, log: silentLog, statusCacheMs: 0, statsFlushMs: 60_000 })
    const before = repo.lookups
    await uncached.status(ID)
    await uncached.status(ID)
    expect(repo.lookups - before).toBe(2)
    expect(await dir.status('not-an-id')).toBe('unknown')
  })
})
