/**
 * What the collector routes share (docs/API.md section 7): the registration and token
 * routes own the collectors (plugin.ts); the metrics push and the config routes ask them
 * whether a collector still exists and tell them about pushes.
 */

export type CollectorStatus = 'active' | 'deleted' | 'unknown'

export interface CollectorDirectory {
  /**
   * Whether the collector exists and is not deleted. Cached at most COLLECTOR_STATUS_CACHE_MS
   * (a deletion through this instance is seen at once), so a deleted collector's tokens and
   * signatures stop working within that time on every instance.
   */
  status(collectorId: string): Promise<CollectorStatus>
  /**
   * A push of `metrics` metrics, durable at `at`: kept in memory and written coalesced
   * (`last_push_at`, `metrics_count`) every COLLECTOR_STATS_FLUSH_MS and on close.
   */
  recordPush(collectorId: string, metrics: number, at: Date): void
}

/** The audit actions of collectors. */
export const COLLECTOR_AUDIT = {
  register: 'collector.register',
  renew: 'collector.renew',
  delete: 'collector.delete',
  config: 'collector.config',
} as const
