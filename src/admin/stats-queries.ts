import { toTimestamp } from '../api-schemas.js'
import type { Queryable } from '../db/index.js'

/**
 * The devices and collectors the admin stats count, read from their tables (the admin
 * API runs whether those contexts are idle or busy; their tables exist from the start).
 * The database's clock on both sides of every comparison: instances' clocks may differ.
 */

export interface DeviceCounts {
  total: number
  /** Devices with a session on an instance whose heartbeat is recent (as GET /devices tells `connected`). */
  connected: number
  /** The newest connect among those sessions. */
  last_seen_at: string | null
}

export interface CollectorCounts {
  total: number
  active: number
  last_push_at: string | null
}

export async function deviceCounts(db: Queryable, staleAfterMs: number): Promise<DeviceCounts> {
  const [row] = await db.query<{ total: number; connected: number; last_seen_at: Date | string | null }>(
    `WITH live AS (
       SELECT s.device_id, s.opened_at
         FROM device_sessions s
         JOIN gateway_instances i ON i.id = s.instance_id
         JOIN devices d ON d.id = s.device_id AND d.deleted_at IS NULL
        WHERE i.heartbeat_at > now() - make_interval(secs => $1)
     )
     SELECT (SELECT count(*)::int FROM devices WHERE deleted_at IS NULL) AS total,
            (SELECT count(DISTINCT device_id)::int FROM live) AS connected,
            (SELECT max(opened_at) FROM live) AS last_seen_at`,
    [staleAfterMs / 1000],
  )
  return {
    total: row?.total ?? 0,
    connected: row?.connected ?? 0,
    last_seen_at: row?.last_seen_at ? toTimestamp(row.last_seen_at) : null,
  }
}

/** `active`: live collectors that pushed within `activeWithinS` (pushes are written a few seconds late, coalesced). */
export async function collectorCounts(db: Queryable, activeWithinS: number): Promise<CollectorCounts> {
  const [row] = await db.query<{ total: number; active: number; last_push_at: Date | string | null }>(
    `SELECT count(*)::int AS total,
            (count(*) FILTER (WHERE last_push_at > now() - make_interval(secs => $1)))::int AS active,
            max(last_push_at) AS last_push_at
       FROM collectors WHERE deleted_at IS NULL`,
    [activeWithinS],
  )
  return {
    total: row?.total ?? 0,
    active: row?.active ?? 0,
    last_push_at: row?.last_push_at ? toTimestamp(row.last_push_at) : null,
  }
}
