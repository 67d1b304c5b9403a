import type { Queryable } from '../db/index.js'

/** One version of a collector's config. */
export interface ConfigVersion {
  version: number
  config: Record<string, unknown>
  /** "user:<id>" / "api_token:<id>", or null for the default version made at registration. */
  created_by: string | null
  created_at: Date
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Every collector has version 1, `{}`, from its registration, stored or not. */
export const DEFAULT_VERSION = 1

/**
 * Two PUTs that read the same latest version race for the same number: the loser's insert
 * does nothing and is retried with a fresh snapshot, where it sees the winner's version.
 * Every retry means another PUT won, so a handful is plenty; past them the PUT fails.
 */
const MAX_INSERT_ATTEMPTS = 10

export class ConfigRaceError extends Error {
  override name = 'ConfigRaceError'
}

/**
 * SQL for collector_configs. A collector that is deleted, or whose id is no UUID, has no
 * config (undefined, without a query for a malformed id). A collector registered without a
 * stored version 1 is read as having the default one (DEFAULT_VERSION, `{}`, made when the
 * collector was), so the numbering is the same either way.
 */
export class CollectorConfigRepo {
  constructor(private readonly db: Queryable) {}

  async current(collectorId: string): Promise<ConfigVersion | undefined> {
    if (!UUID.test(collectorId)) return undefined
    const [row] = await this.db.query<ConfigVersion>(
      `SELECT COALESCE(v.version, ${DEFAULT_VERSION}) AS version, COALESCE(v.config, '{}'::jsonb) AS config,
              v.created_by, COALESCE(v.created_at, c.created_at) AS created_at
         FROM collectors c
         LEFT JOIN LATERAL (
           SELECT version, config, created_by, created_at FROM collector_configs
            WHERE collector_id = c.id ORDER BY version DESC LIMIT 1
         ) v ON true
        WHERE c.id = $1 AND c.deleted_at IS NULL`,
      [collectorId],
    )
    return row
  }

  /**
   * Stores `config` as the version after the latest, in one statement per attempt (see
   * MAX_INSERT_ATTEMPTS): two PUTs never get the same version. Undefined: no such live collector.
   */
  async put(collectorId: string, config: Record<string, unknown>, createdBy: string, tx: Queryable = this.db): Promise<ConfigVersion | undefined> {
    if (!UUID.test(collectorId)) return undefined
    for (let attempt = 0; attempt < MAX_INSERT_ATTEMPTS; attempt++) {
      const [row] = await tx.query<ConfigVersion>(
        `INSERT INTO collector_configs (collector_id, version, config, created_by)
         SELECT c.id, COALESCE((SELECT max(version) FROM collector_configs WHERE collector_id = c.id), ${DEFAULT_VERSION}) + 1,
                $2::jsonb, $3
           FROM collectors c WHERE c.id = $1 AND c.deleted_at IS NULL
         ON CONFLICT (collector_id, version) DO NOTHING
         RETURNING version, config, created_by, created_at`,
        [collectorId, JSON.stringify(config), createdBy],
      )
      if (row !== undefined) return row
      const [live] = await tx.query(`SELECT 1 FROM collectors WHERE id = $1 AND deleted_at IS NULL`, [collectorId])
      if (live === undefined) return undefined
    }
    throw new ConfigRaceError(`${MAX_INSERT_ATTEMPTS} concurrent config changes won over this one`)
  }

  /** Newest first; undefined: no such live collector. Versions run from 1 to the current one without gaps. */
  async versions(collectorId: string, limit: number, offset: number): Promise<{ versions: ConfigVersion[]; total: number } | undefined> {
    const current = await this.current(collectorId)
    if (current === undefined) return undefined
    const versions = await this.db.query<ConfigVersion>(
      `SELECT version, config, created_by, created_at FROM collector_configs WHERE collector_id = $1
       UNION ALL
       SELECT ${DEFAULT_VERSION}, '{}'::jsonb, NULL, c.created_at FROM collectors c
        WHERE c.id = $1 AND NOT EXISTS (SELECT 1 FROM collector_configs WHERE collector_id = $1 AND version = ${DEFAULT_VERSION})
       ORDER BY version DESC LIMIT $2 OFFSET $3`,
      [collectorId, limit, offset],
    )
    return { versions, total: current.version }
  }
}
