import type { Db } from '../../db/index.js'
import { decodeLine, type FieldValue } from '../line-protocol/index.js'
import { SINK_REFUSED, SINK_UNAVAILABLE, SinkError, type Sink } from './sink.js'

/**
 * Time series in the metadata database's `metrics` table, so a gateway started with no
 * configuration keeps its data. Points are keyed as InfluxDB keys them (measurement, tag
 * set, time) and a repeated point merges its fields, so replaying a batch stores nothing twice.
 */
export function createSqlSink(db: Db): Sink {
  return {
    name: 'metrics-table',
    async write(body) {
      let rows: string[]
      try {
        rows = toRows(body.toString('utf8'))
      } catch (err) {
        // A line that cannot be converted will never convert: retrying it would block replay.
        throw new SinkError(SINK_REFUSED, false, undefined, { cause: err, detail: `line not convertible: ${(err as Error).message}` })
      }
      if (rows.length === 0) return
      try {
        await db.query(
          `INSERT INTO metrics (measurement, tags, fields, time)
           SELECT r.measurement, r.tags, r.fields, r.time::bigint
             FROM jsonb_to_recordset($1::jsonb) AS r(measurement text, tags jsonb, fields jsonb, time text)
           ON CONFLICT (measurement, time, tags) DO UPDATE SET fields = metrics.fields || excluded.fields`,
          [`[${rows.join(',')}]`],
        )
      } catch (err) {
        throw classifySqlError(err)
      }
    },
    async ping() {
      await db.ping()
    },
    async close() {},
  }
}

/**
 * SQLSTATE class 22 (data exception: a value jsonb or bigint cannot hold, such as a NUL in
 * a string) and 23 (integrity constraint) lie in the rows: permanent. Anything else
 * (connection lost, server shutting down, out of disk, no SQLSTATE at all) is transient.
 */
export function classifySqlError(err: unknown): SinkError {
  // A server's error (pg's DatabaseError) has a severity; a socket error's `code` is no SQLSTATE.
  const e = err as { code?: unknown; severity?: unknown } | undefined
  const sqlState = typeof e?.severity === 'string' && typeof e.code === 'string' ? e.code : undefined
  const detail = `metrics table write failed${sqlState ? ` (SQLSTATE ${sqlState})` : ''}: ${(err as Error)?.message ?? String(err)}`
  if (sqlState?.startsWith('22') || sqlState?.startsWith('23')) {
    return new SinkError(SINK_REFUSED, false, undefined, { cause: err, detail })
  }
  return new SinkError(SINK_UNAVAILABLE, true, undefined, { cause: err, detail, reason: sqlState ? 'database error' : 'unreachable' })
}

/**
 * One JSON row per distinct point; fields of a repeated point are merged here, because
 * one INSERT ... ON CONFLICT cannot touch the same row twice.
 */
function toRows(text: string): string[] {
  const byPoint = new Map<string, { measurement: string; tags: string; fields: Map<string, string>; time: string }>()
  let start = 0
  while (start < text.length) {
    let end = text.indexOf('\n', start)
    if (end === -1) end = text.length
    if (end > start) {
      const p = decodeLine(text.slice(start, end))
      const tags = JSON.stringify(Object.fromEntries([...p.tags].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))))
      const key = `${p.measurement}\u0000${tags}\u0000${p.timeNs}`
      let row = byPoint.get(key)
      if (row === undefined) {
        row = { measurement: p.measurement, tags, fields: new Map(), time: p.timeNs }
        byPoint.set(key, row)
      }
      for (const [k, v] of p.fields) row.fields.set(k, fieldJson(v))
    }
    start = end + 1
  }
  const rows: string[] = []
  for (const r of byPoint.values()) {
    const fields = [...r.fields].map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')
    rows.push(
      `{"measurement":${JSON.stringify(r.measurement)},"tags":${r.tags},"fields":{${fields}},"time":"${r.time}"}`,
    )
  }
  return rows
}

/** int64/uint64 go into jsonb as exact numerics (written as digits, never through a double). */
function fieldJson(v: FieldValue): string {
  if ('float' in v) return JSON.stringify(v.float)
  if ('int' in v) return v.int
  if ('uint' in v) return v.uint
  if ('bool' in v) return v.bool ? 'true' : 'false'
  return JSON.stringify(v.string)
}
