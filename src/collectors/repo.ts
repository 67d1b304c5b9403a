import type { Queryable } from '../db/index.js'
import type { CollectorStatus } from './types.js'

/** A live collector as the API lists it. */
export interface CollectorRow {
  id: string
  name: string
  hostname: string
  created_at: Date
  last_push_at: Date | null
  metrics_count: number
}

/** What a renewal by signature needs: the stored certificate, and whether it is deleted. */
export interface CollectorKeyRow {
  id: string
  hostname: string
  certificate: string
  deleted: boolean
}

export interface NewCollector {
  id: string
  name: string
  hostname: string
  certificate: string
  thumbprint: string
  /** "user:<id>", "api_token:<id>" or "secret". */
  registeredBy: string
}

/** Counts of pushes not written yet, per collector. */
export interface PendingPush {
  id: string
  metrics: number
  lastPushAt: Date
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** Collector ids are canonical (lower-case) UUIDs; anything else is no collector's, without a query. */
export const isCollectorId = (s: string): boolean => UUID.test(s)

// metrics_count is bigint (pg hands it over as text); counts stay far below 2^53.
const COLUMNS = 'id, name, hostname, created_at, last_push_at, metrics_count::float8 AS metrics_count'
/** The default config every collector starts with (collector_configs version 1, created_by null). */
const DEFAULT_CONFIG_VERSION = 1

/**
 * SQL for collectors and collector_signatures. Deleted collectors stay as tombstones
 * (deleted_at): every read here but `findKey` and `status` treats them as absent. Methods
 * taking `tx` run inside the caller's transaction.
 */
export class CollectorsRepo {
  constructor(private readonly db: Queryable) {}

  /** The collector and its default config version 1 (`{}`). */
  async insert(c: NewCollector, tx: Queryable = this.db): Promise<CollectorRow> {
    const [row] = await tx.query<CollectorRow>(
      `INSERT INTO collectors (id, name, hostname, certificate, thumbprint, registered_by)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
      [c.id, c.name, c.hostname, c.certificate, c.thumbprint, c.registeredBy],
    )
    await tx.query(`INSERT INTO collector_configs (collector_id, version, config, created_by) VALUES ($1, $2, '{}'::jsonb, NULL)`, [
      c.id,
      DEFAULT_CONFIG_VERSION,
    ])
    return row as CollectorRow
  }

  async find(id: string): Promise<CollectorRow | undefined> {
    if (!isCollectorId(id)) return undefined
    const rows = await this.db.query<CollectorRow>(`SELECT ${COLUMNS} FROM collectors WHERE id = $1 AND deleted_at IS NULL`, [id])
    return rows[0]
  }

  /** Newest first. */
  async list(limit: number, offset: number): Promise<{ collectors: CollectorRow[]; total: number }> {
    const [collectors, count] = await Promise.all([
      this.db.query<CollectorRow>(
        `SELECT ${COLUMNS} FROM collectors WHERE deleted_at IS NULL ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2`,
        [limit, offset],
      ),
      this.db.query<{ n: number }>('SELECT count(*)::int AS n FROM collectors WHERE deleted_at IS NULL'),
    ])
    return { collectors, total: count[0]?.n ?? 0 }
  }

  /** Tombstones the collector; undefined when it is unknown or already deleted. */
  async markDeleted(id: string, tx: Queryable = this.db): Promise<CollectorRow | undefined> {
    if (!isCollectorId(id)) return undefined
    const [row] = await tx.query<CollectorRow>(
      `UPDATE collectors SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL RETURNING ${COLUMNS}`,
      [id],
    )
    return row
  }

  /**
   * The collectors deleted at or after `since` (the database's clock), and the database's
   * time now: the next poll asks from there.
   */
  async deletedSince(since: Date): Promise<{ at: Date; ids: string[] }> {
    const [row] = await this.db.query<{ at: Date; ids: string[] }>(
      `SELECT now() AS at, coalesce((SELECT array_agg(id::text) FROM collectors WHERE deleted_at >= $1), '{}') AS ids`,
      [since],
    )
    return { at: new Date(row?.at ?? Date.now()), ids: row?.ids ?? [] }
  }

  async status(id: string): Promise<CollectorStatus> {
    if (!isCollectorId(id)) return 'unknown'
    const [row] = await this.db.query<{ deleted: boolean }>('SELECT deleted_at IS NOT NULL AS deleted FROM collectors WHERE id = $1', [id])
    if (row === undefined) return 'unknown'
    return row.deleted ? 'deleted' : 'active'
  }

  /** The stored certificate, tombstones included (the caller refuses them). */
  async findKey(id: string): Promise<CollectorKeyRow | undefined> {
    if (!isCollectorId(id)) return undefined
    const [row] = await this.db.query<CollectorKeyRow>(
      'SELECT id, hostname, certificate, deleted_at IS NOT NULL AS deleted FROM collectors WHERE id = $1',
      [id],
    )
    return row
  }

  /**
   * Remembers a used signature until `expiresAt`; false when it was already used (a
   * replay): the primary key makes the check and the insert one atomic step, so two
   * instances given the same proof at once accept it once between them.
   */
  async useSignature(signatureHash: string, collectorId: string, expiresAt: Date, tx: Queryable = this.db): Promise<boolean> {
    const rows = await tx.query(
      `INSERT INTO collector_signatures (signature_hash, collector_id, expires_at) VALUES ($1, $2, $3)
       ON CONFLICT (signature_hash) DO NOTHING RETURNING 1 AS inserted`,
      [signatureHash, collectorId, expiresAt],
    )
    return rows.length === 1
  }

  /** Forgets signatures that expired more than `graceS` ago (by the database's clock); how many. */
  async sweepSignatures(graceS: number): Promise<number> {
    const [row] = await this.db.query<{ n: number }>(
      `WITH gone AS (DELETE FROM collector_signatures WHERE expires_at < now() - make_interval(secs => $1) RETURNING 1)
       SELECT count(*)::int AS n FROM gone`,
      [graceS],
    )
    return row?.n ?? 0
  }

  /**
   * Adds pending push counts, every collector in one statement (one round trip however many
   * collectors pushed): `metrics_count` grows, `last_push_at` only moves forward.
   */
  async addPushes(pending: readonly PendingPush[]): Promise<void> {
    if (pending.length === 0) return
    await this.db.query(
      `UPDATE collectors AS c
          SET metrics_count = c.metrics_count + p.metrics,
              last_push_at = GREATEST(c.last_push_at, p.last_push_at)
         FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[]) AS p(id, metrics, last_push_at)
        WHERE c.id = p.id`,
      [pending.map((p) => p.id), pending.map((p) => p.metrics), pending.map((p) => p.lastPushAt)],
    )
  }
}
