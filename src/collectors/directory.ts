import type { FastifyBaseLogger } from 'fastify'
import { isCollectorId, type CollectorsRepo, type PendingPush } from './repo.js'
import type { CollectorDirectory, CollectorStatus } from './types.js'

/**
 * Statuses remembered at most: beyond it the oldest is forgotten (and asked again). Only
 * ids from verified collector tokens get here, so this bounds memory against a flood of
 * stale tokens, not against normal fleets, which stay far below it.
 */
const MAX_STATUS_ENTRIES = 100_000

/**
 * Each poll for deletions asks from this long before the previous one's time: a deletion
 * whose transaction began before a poll but committed after it is found by the next one
 * (also covers the gateway's and the database's clocks differing by up to this much for
 * the first poll, which asks from the directory's start).
 */
const DELETION_POLL_OVERLAP_MS = 60_000

export interface DirectoryDeps {
  repo: Pick<CollectorsRepo, 'status' | 'addPushes' | 'deletedSince'>
  log: FastifyBaseLogger
  /** A status is reused this long (0: asked on every use). */
  statusCacheMs: number
  /** Pending push counts are written this often. */
  statsFlushMs: number
  /** Milliseconds clock; tests pass their own. */
  now?: () => number
}

interface CachedStatus {
  status: Promise<CollectorStatus>
  atMs: number
}

/**
 * `app.collectors` (src/collectors/types.ts): whether a collector is still alive, asked on
 * every use of its token and cached briefly; and the push counts of collectors, added up in
 * memory and written in one statement per flush instead of one round trip per push.
 */
export class CollectorDirectoryService implements CollectorDirectory {
  private readonly statuses = new Map<string, CachedStatus>()
  private pending = new Map<string, PendingPush>()
  private timer: NodeJS.Timeout | undefined
  private flushing: Promise<void> | undefined
  private readonly now: () => number
  /** Where the next poll for deletions asks from (the database's clock). */
  private pollFrom: Date
  /** When the last successful poll began (this clock): statuses are as fresh as it. */
  private polledAtMs: number | undefined
  private polling: Promise<void> | undefined

  constructor(private readonly deps: DirectoryDeps) {
    this.now = deps.now ?? Date.now
    this.pollFrom = new Date(this.now() - DELETION_POLL_OVERLAP_MS)
  }

  /**
   * A collector's status, at most statusCacheMs old. A fleet of collectors each pushing less
   * often than that would make a lookup of nearly every push: instead a known collector
   * stays active until a poll for deletions, one query for all of them made at most once
   * per statusCacheMs when a status is asked for, finds it deleted.
   */
  async status(collectorId: string): Promise<CollectorStatus> {
    if (!isCollectorId(collectorId)) return 'unknown'
    if (this.deps.statusCacheMs <= 0) return this.deps.repo.status(collectorId)
    const known = this.statuses.get(collectorId)
    // A deletion is final: a tombstone never comes back, so 'deleted' is kept however old.
    if (known !== undefined && known.atMs === Number.POSITIVE_INFINITY) return known.status
    await this.freshDeletions()
    const cached = this.statuses.get(collectorId)
    if (cached !== undefined) return cached.status
    return this.lookUp(collectorId)
  }

  /** Polls for deletions unless the last poll began less than statusCacheMs ago; callers share one poll. */
  private freshDeletions(): Promise<void> | undefined {
    const nowMs = this.now()
    if (this.polledAtMs !== undefined && nowMs - this.polledAtMs < this.deps.statusCacheMs) return undefined
    if (this.polling !== undefined) return this.polling
    const from = this.pollFrom
    this.polling = this.deps.repo
      .deletedSince(from)
      .then(({ at, ids }) => {
        for (const id of ids) this.markDeleted(id)
        this.pollFrom = new Date(at.getTime() - DELETION_POLL_OVERLAP_MS)
        this.polledAtMs = nowMs
      })
      .finally(() => {
        this.polling = undefined
      })
    return this.polling
  }

  private lookUp(collectorId: string): Promise<CollectorStatus> {
    const status = this.deps.repo.status(collectorId)
    // Callers arriving while the query runs share it; from then on the polls keep it true.
    this.remember(collectorId, { status, atMs: this.now() })
    const mine = () => this.statuses.get(collectorId)?.status === status
    status.then(
      (s) => {
        if (s === 'deleted' && mine()) this.markDeleted(collectorId)
        // Not remembered: a collector unknown now (another instance's, not yet visible) may exist later.
        if (s === 'unknown' && mine()) this.statuses.delete(collectorId)
      },
      () => {
        // A failed lookup is not remembered: the next use asks again (the caller sees the error).
        if (mine()) this.statuses.delete(collectorId)
      },
    )
    return status
  }

  /** A deletion made through this instance: its tokens and signatures are refused from now on. */
  markDeleted(collectorId: string): void {
    this.remember(collectorId, { status: Promise.resolve('deleted'), atMs: Number.POSITIVE_INFINITY })
  }

  recordPush(collectorId: string, metrics: number, at: Date): void {
    // A bad id would make the one UPDATE of every pending count fail on each flush.
    if (!isCollectorId(collectorId) || !Number.isSafeInteger(metrics) || metrics < 0 || Number.isNaN(at.getTime())) return
    this.add({ id: collectorId, metrics, lastPushAt: at })
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.flushing === undefined) void this.flush()
    }, this.deps.statsFlushMs)
    // Counts are statistics: they never keep the process alive (close() writes the rest).
    this.timer.unref()
  }

  /** Writes what is pending; a failed write keeps the counts for the next flush. Never rejects. */
  flush(): Promise<void> {
    if (this.flushing !== undefined) return this.flushing.then(() => this.flush())
    if (this.pending.size === 0) return Promise.resolve()
    const batch = this.pending
    this.pending = new Map()
    this.flushing = this.deps.repo
      .addPushes([...batch.values()])
      .catch((err: unknown) => {
        this.deps.log.warn({ err, collectors: batch.size }, 'could not write collector push counts; kept for the next flush')
        for (const p of batch.values()) this.add(p)
      })
      .finally(() => {
        this.flushing = undefined
      })
    return this.flushing
  }

  /** Stops the timer and writes what is left (the database must still be open). */
  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    await this.flush()
    if (this.pending.size > 0) {
      this.deps.log.error({ collectors: this.pending.size }, 'collector push counts could not be written before shutdown')
    }
  }

  private add(p: PendingPush): void {
    const had = this.pending.get(p.id)
    if (had === undefined) {
      this.pending.set(p.id, { ...p })
      return
    }
    had.metrics += p.metrics
    if (p.lastPushAt > had.lastPushAt) had.lastPushAt = p.lastPushAt
  }

  private remember(collectorId: string, entry: CachedStatus): void {
    // Re-inserted at the end, so the Map's first key is always the least recently asked.
    this.statuses.delete(collectorId)
    if (this.statuses.size >= MAX_STATUS_ENTRIES) {
      const oldest = this.statuses.keys().next()
      if (oldest.done !== true) this.statuses.delete(oldest.value)
    }
    this.statuses.set(collectorId, entry)
  }
}
