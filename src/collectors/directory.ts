import type { FastifyBaseLogger } from 'fastify'
import { isCollectorId, type CollectorsRepo, type PendingPush } from './repo.js'
import type { CollectorDirectory, CollectorStatus } from './types.js'

/**
 * Statuses remembered at most: beyond it the oldest is forgotten (and asked again). Only
 * ids from verified collector tokens get here, so this bounds memory against a flood of
 * stale tokens, not against normal fleets, which stay far below it.
 */
const MAX_STATUS_ENTRIES = 100_000

export interface DirectoryDeps {
  repo: Pick<CollectorsRepo, 'status' | 'addPushes'>
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

  constructor(private readonly deps: DirectoryDeps) {
    this.now = deps.now ?? Date.now
  }

  status(collectorId: string): Promise<CollectorStatus> {
    if (!isCollectorId(collectorId)) return Promise.resolve('unknown')
    const nowMs = this.now()
    const cached = this.statuses.get(collectorId)
    // A deletion is final: a tombstone never comes back, so 'deleted' is kept however old.
    if (cached !== undefined && (cached.atMs === Number.POSITIVE_INFINITY || nowMs - cached.atMs < this.deps.statusCacheMs)) {
      return cached.status
    }
    const status = this.deps.repo.status(collectorId)
    if (this.deps.statusCacheMs > 0) {
      // Callers arriving while the query runs share it (a fleet's pushes after the cache expired).
      this.remember(collectorId, { status, atMs: nowMs })
      status.then(
        (s) => {
          if (s === 'deleted' && this.statuses.get(collectorId)?.status === status) this.markDeleted(collectorId)
        },
        () => {
          // A failed lookup is not remembered: the next use asks again (the caller sees the error).
          if (this.statuses.get(collectorId)?.status === status) this.statuses.delete(collectorId)
        },
      )
    }
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
