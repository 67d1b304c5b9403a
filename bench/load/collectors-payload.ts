/**
 * The points of the collectors scenario, in both forms the gateway takes them: a metrics
 * push (`POST /api/v1/metrics/push`, docs/API.md section 7) and the same points as line
 * protocol (`POST /api/v2/write`), so that the two variants differ only in the path.
 *
 * A push is one collector's snapshot of a PostgreSQL server: `metrics` metrics, each of
 * `fields` float fields, tagged with a database and a relation, all stamped with the
 * request's RFC 3339 timestamp (no per-metric timestamps: a collector reads one snapshot at
 * a time). The line-protocol form is what the gateway makes of that push: the metric's tags,
 * then `collector_id` and `hostname`, the fields in order, the request's time in ns.
 */

/** What a registration answered, as the load generator needs it. */
export interface CollectorCredentials {
  collector_id: string
  token: string
  hostname: string
}

export interface PayloadShape {
  metrics: number
  fields: number
}

// What pgAnalytics collects (pg_stat_user_tables and friends): realistic names and lengths.
const MEASUREMENTS = ['pg_stat_user_tables', 'pg_stat_user_indexes', 'pg_statio_user_tables', 'pg_stat_database']
const FIELD_NAMES = ['seq_scan', 'seq_tup_read', 'idx_scan', 'idx_tup_fetch', 'n_tup_ins', 'n_tup_upd', 'n_tup_del', 'n_live_tup', 'n_dead_tup', 'vacuum_count']
/** Databases a server's relations are spread over. */
const DATABASES = 10
/** 2023-11-14T22:13:20Z, as in bench/load/lines.ts; each collector's snapshot a few ns apart. */
const BASE_S = 1_700_000_000
const NS_DIGITS = 9

const fieldName = (k: number) => FIELD_NAMES[k % FIELD_NAMES.length] + (k < FIELD_NAMES.length ? '' : `_${k}`)
// Never integral (an exact binary fraction): both forms write it as String(v), a float either way.
const fieldValue = (metric: number, field: number) => metric * 31 + field * 7 + 0.25

interface Metric {
  name: string
  tags: Record<string, string>
  fields: Record<string, number>
}

function metric(j: number, fields: number): Metric {
  const f: Record<string, number> = {}
  for (let k = 0; k < fields; k++) f[fieldName(k)] = fieldValue(j, k)
  return {
    name: MEASUREMENTS[j % MEASUREMENTS.length] as string,
    tags: { database: `db${String(j % DATABASES).padStart(2, '0')}`, relation: `public.table_${String(j).padStart(4, '0')}` },
    fields: f,
  }
}

/** The snapshot time of collector number `index`, as RFC 3339 (ns) and as epoch ns. */
function snapshotTime(index: number): { rfc3339: string; ns: string } {
  const fraction = String(index).padStart(NS_DIGITS, '0')
  return {
    rfc3339: `${new Date(BASE_S * 1000).toISOString().slice(0, -'.000Z'.length)}.${fraction}Z`,
    ns: `${BASE_S}${fraction}`,
  }
}

/** The JSON push body of collector number `index`. */
export function pushBody(c: CollectorCredentials, index: number, shape: PayloadShape): Buffer {
  const metrics = Array.from({ length: shape.metrics }, (_, j) => metric(j, shape.fields))
  return Buffer.from(JSON.stringify({ collector_id: c.collector_id, hostname: c.hostname, timestamp: snapshotTime(index).rfc3339, metrics }))
}

/**
 * The same points as line protocol. No escaping is needed: every name and value above is
 * plain ASCII without spaces, commas or equals signs, and so are collector ids (UUIDs) and
 * the bench's host names.
 */
export function lineBody(c: CollectorCredentials, index: number, shape: PayloadShape): Buffer {
  const ns = snapshotTime(index).ns
  const lines: string[] = []
  for (let j = 0; j < shape.metrics; j++) {
    const m = metric(j, shape.fields)
    const tags = Object.entries(m.tags).map(([k, v]) => `,${k}=${v}`).join('')
    const fields = Object.entries(m.fields).map(([k, v]) => `${k}=${String(v)}`).join(',')
    lines.push(`${m.name}${tags},collector_id=${c.collector_id},hostname=${c.hostname} ${fields} ${ns}`)
  }
  return Buffer.from(lines.join('\n'))
}
