import type { Queryable } from '../db/index.js'
import { isDeviceId, type DeviceCredentials } from './credentials.js'

/** A live device as the API shows it. */
export interface DeviceRow {
  id: string
  type: string
  created_at: Date
  generation: number
  /** A session of it is open on a gateway instance whose heartbeat is recent. */
  connected: boolean
}

export interface DeviceRepoOptions {
  /** Sessions of an instance whose heartbeat is older than this do not count as connected. */
  sessionStaleAfterMs: number
}

const COLUMNS = 'd.id, d.type, d.created_at, d.generation'

/**
 * `connected` of device `d`, the staleness (seconds) in parameter `$n`. The database's
 * clock on both sides of the comparison: the instances' clocks may differ.
 */
const connectedColumn = (n: number) => `EXISTS (
  SELECT 1 FROM device_sessions s JOIN gateway_instances i ON i.id = s.instance_id
   WHERE s.device_id = d.id AND i.heartbeat_at > now() - make_interval(secs => $${n})
) AS connected`

/**
 * SQL for the devices table. Deleted devices stay as tombstones (deleted_at): every read
 * here but `findCredentials` treats them as absent. Methods taking `tx` run inside the
 * caller's transaction; an id that is no canonical UUID is absent without a query.
 */
export class DevicesRepo {
  private readonly staleS: number

  constructor(
    private readonly db: Queryable,
    opts: DeviceRepoOptions,
  ) {
    this.staleS = opts.sessionStaleAfterMs / 1000
  }

  async insert(
    device: { id: string; type: string; passwordHash: string },
    tx: Queryable = this.db,
  ): Promise<DeviceRow> {
    const [row] = await tx.query<DeviceRow>(
      `INSERT INTO devices AS d (id, type, password_hash) VALUES ($1, $2, $3)
       RETURNING ${COLUMNS}, false AS connected`,
      [device.id, device.type, device.passwordHash],
    )
    return row as DeviceRow
  }

  async find(id: string): Promise<DeviceRow | undefined> {
    if (!isDeviceId(id)) return undefined
    const rows = await this.db.query<DeviceRow>(
      `SELECT ${COLUMNS}, ${connectedColumn(2)} FROM devices d WHERE d.id = $1 AND d.deleted_at IS NULL`,
      [id, this.staleS],
    )
    return rows[0]
  }

  /** Newest first. */
  async list(limit: number, offset: number): Promise<{ devices: DeviceRow[]; total: number }> {
    const [devices, count] = await Promise.all([
      this.db.query<DeviceRow>(
        `SELECT ${COLUMNS}, ${connectedColumn(3)} FROM devices d WHERE d.deleted_at IS NULL
          ORDER BY d.created_at DESC, d.id DESC LIMIT $1 OFFSET $2`,
        [limit, offset, this.staleS],
      ),
      this.db.query<{ n: number }>('SELECT count(*)::int AS n FROM devices WHERE deleted_at IS NULL'),
    ])
    return { devices, total: count[0]?.n ?? 0 }
  }

  /** New password hash, generation + 1; undefined when the device is unknown or deleted. */
  async rotate(id: string, passwordHash: string, tx: Queryable = this.db): Promise<DeviceRow | undefined> {
    if (!isDeviceId(id)) return undefined
    const [row] = await tx.query<DeviceRow>(
      `UPDATE devices AS d SET password_hash = $2, generation = generation + 1, updated_at = now()
        WHERE d.id = $1 AND d.deleted_at IS NULL RETURNING ${COLUMNS}, false AS connected`,
      [id, passwordHash],
    )
    return row
  }

  /** Tombstones the device; undefined when it is unknown or already deleted. */
  async markDeleted(id: string, tx: Queryable = this.db): Promise<DeviceRow | undefined> {
    if (!isDeviceId(id)) return undefined
    const [row] = await tx.query<DeviceRow>(
      `UPDATE devices AS d SET deleted_at = now(), updated_at = now()
        WHERE d.id = $1 AND d.deleted_at IS NULL RETURNING ${COLUMNS}, false AS connected`,
      [id],
    )
    return row
  }

  /** CONNECT's one lookup, by primary key; tombstones included. */
  async findCredentials(id: string): Promise<DeviceCredentials | undefined> {
    if (!isDeviceId(id)) return undefined
    const [row] = await this.db.query<{
      id: string
      type: string
      created_at: Date
      generation: number
      password_hash: string
      deleted: boolean
    }>(
      `SELECT id, type, created_at, generation, password_hash, deleted_at IS NOT NULL AS deleted
         FROM devices WHERE id = $1`,
      [id],
    )
    if (row === undefined) return undefined
    return {
      id: row.id,
      type: row.type,
      createdAt: row.created_at,
      generation: row.generation,
      passwordHash: row.password_hash,
      deleted: row.deleted,
    }
  }

  /** Current generations of live devices among `ids`, in one query. */
  async generations(ids: readonly string[]): Promise<Map<string, number>> {
    const wanted = [...new Set(ids.filter(isDeviceId))]
    const out = new Map<string, number>()
    if (wanted.length === 0) return out
    const rows = await this.db.query<{ id: string; generation: number }>(
      'SELECT id, generation FROM devices WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL',
      [wanted],
    )
    for (const r of rows) out.set(r.id, r.generation)
    return out
  }
}
