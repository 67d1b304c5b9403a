import type { Queryable } from '../db/index.js'

/**
 * The audit log: who did what, when, from where. Services call `record`; the admin
 * reads it through `GET /api/v1/audit`. Details must never hold a secret.
 */
export interface AuditEvent {
  /** Dotted verb, e.g. `auth.login`, `api_token.create`, `device.delete`. */
  action: string
  outcome?: 'success' | 'failure'
  /** Who acted: `user:<id>`, `api_token:<id>`, `collector:<id>`; null when anonymous. */
  actor?: string | null
  /** What was acted on, in the same form. */
  target?: string | null
  ip?: string | null
  details?: Record<string, unknown>
}

export interface AuditEntry {
  id: string
  created_at: Date
  action: string
  outcome: 'success' | 'failure'
  actor: string | null
  target: string | null
  ip: string | null
  details: Record<string, unknown>
}

export class AuditLog {
  constructor(private readonly db: Queryable) {}

  /** Written in `tx` when given, so the entry commits (or not) with the change it describes. */
  async record(event: AuditEvent, tx: Queryable = this.db): Promise<void> {
    await tx.query(
      `INSERT INTO audit_log (action, outcome, actor, target, ip, details) VALUES ($1, $2, $3, $4, $5, $6::jsonb)`,
      [
        event.action,
        event.outcome ?? 'success',
        event.actor ?? null,
        event.target ?? null,
        event.ip ?? null,
        JSON.stringify(event.details ?? {}),
      ],
    )
  }

  /** Newest first. */
  async list(limit: number, offset: number): Promise<{ entries: AuditEntry[]; total: number }> {
    const [entries, count] = await Promise.all([
      this.db.query<AuditEntry>(
        `SELECT id::text AS id, created_at, action, outcome, actor, target, ip, details
           FROM audit_log ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2`,
        [limit, offset],
      ),
      this.db.query<{ total: number }>('SELECT count(*)::int AS total FROM audit_log'),
    ])
    return { entries, total: count[0]?.total ?? 0 }
  }
}
