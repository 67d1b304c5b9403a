import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { migrate } from '../../src/db/index.js'
import { createSqlSink } from '../../src/ingest/sinks/sql-sink.js'
import { engines, type TestDb } from '../helpers/db.js'

// The same tests on the embedded engine and on real Postgres (when reachable; always in CI).
describe.each(await engines())('metadata database on $name', (engine) => {
  let t: TestDb
  beforeAll(async () => {
    t = await engine.create()
  })
  afterAll(async () => {
    await t.drop()
  })

  it('records applied migrations and applies each only once', async () => {
    const rows = await t.db.query<{ version: string }>('SELECT version FROM schema_migrations ORDER BY version')
    expect(rows.map((r) => r.version)).toContain('001_metrics.sql')
    expect(await migrate(t.db)).toEqual([])
  })

  it('rolls a failed transaction back', async () => {
    await t.db.exec('CREATE TABLE tx_probe (v int)')
    await expect(
      t.db.transaction(async (tx) => {
        await tx.query('INSERT INTO tx_probe VALUES (1)')
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    expect(await t.db.query('SELECT * FROM tx_probe')).toEqual([])
  })

  it('stores points in the metrics table with exact int64 times and values', async () => {
    const sink = createSqlSink(t.db)
    await sink.write(
      Buffer.from(
        'cpu,host=a,user=u,org=o usage=0.5,count=9223372036854775807i,big=18446744073709551615u,ok=true,msg="hi \\"x\\"" -9223372036854775808\n' +
          'cpu,host=b,user=u,org=o usage=1 1700000000000000001\n',
      ),
      2,
    )
    const rows = await t.db.query<{ measurement: string; tags: unknown; fields: Record<string, unknown>; time: string }>(
      `SELECT measurement, tags, fields, time::text AS time, fields->>'count' AS count_text, fields->>'big' AS big_text
         FROM metrics WHERE measurement = 'cpu' ORDER BY time`,
    )
    expect(rows).toHaveLength(2)
    expect(rows[0]).toMatchObject({
      measurement: 'cpu',
      tags: { host: 'a', user: 'u', org: 'o' },
      time: '-9223372036854775808',
      count_text: '9223372036854775807',
      big_text: '18446744073709551615',
    })
    expect(rows[0]?.fields).toMatchObject({ usage: 0.5, ok: true, msg: 'hi "x"' })
    expect(rows[1]).toMatchObject({ tags: { host: 'b', user: 'u', org: 'o' }, time: '1700000000000000001' })
  })

  it('stores a replayed batch once, merging fields of the same point as InfluxDB does', async () => {
    const sink = createSqlSink(t.db)
    const batch = Buffer.from('replay,host=a v=1 5\nreplay,host=a w=2 5\nreplay,host=b v=3 5\n')
    await sink.write(batch, 3)
    await sink.write(batch, 3)
    const rows = await t.db.query<{ tags: { host: string }; fields: Record<string, number> }>(
      `SELECT tags, fields FROM metrics WHERE measurement = 'replay' ORDER BY tags->>'host'`,
    )
    expect(rows).toEqual([
      { tags: { host: 'a' }, fields: { v: 1, w: 2 } },
      { tags: { host: 'b' }, fields: { v: 3 } },
    ])
  })
})
