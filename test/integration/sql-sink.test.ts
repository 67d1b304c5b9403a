import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createPostgresDb } from '../../src/db/postgres.js'
import { DEAD_LETTER_FILE, DeadLetterFile } from '../../src/ingest/spool/dead-letter.js'
import { DurableSink } from '../../src/ingest/sinks/durable-sink.js'
import { SINK_REFUSED, SinkError } from '../../src/ingest/sinks/sink.js'
import { Spool } from '../../src/ingest/spool/spool.js'
import { createSqlSink } from '../../src/ingest/sinks/sql-sink.js'
import { engines, type TestDb } from '../helpers/db.js'
import { waitUntil } from '../helpers/wait.js'

const failureOf = async (p: Promise<unknown>): Promise<SinkError> => {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(SinkError)
    return err as SinkError
  }
  throw new Error('expected the write to fail')
}

describe.each(await engines())('the metrics-table sink on $name', (engine) => {
  let testDb: TestDb
  beforeAll(async () => {
    testDb = await engine.create()
  })
  afterAll(async () => {
    await testDb?.drop()
  })
  const rows = (measurement: string) =>
    testDb.db.query<{ tags: unknown; fields: unknown; time: string }>(
      'SELECT tags, fields, time::text AS time FROM metrics WHERE measurement = $1 ORDER BY time',
      [measurement],
    )

  it('writes points, merging a repeated point (so a replay stores nothing twice)', async () => {
    const sink = createSqlSink(testDb.db)
    await sink.write(Buffer.from('sq,host=a v=1,n=2i 10\nsq,host=a w=3u 10\nsq,host=b v=1 11\n'), 3)
    await sink.write(Buffer.from('sq,host=a v=1,n=2i 10\n'), 1)
    expect(await rows('sq')).toEqual([
      { tags: { host: 'a' }, fields: { v: 1, n: 2, w: 3 }, time: '10' },
      { tags: { host: 'b' }, fields: { v: 1 }, time: '11' },
    ])
  })

  it('refuses for good a line it cannot convert, inside its error handling (a SinkError, not a crash)', async () => {
    const e = await failureOf(createSqlSink(testDb.db).write(Buffer.from('sq-bad,host=a 1\n'), 1))
    expect([e.transient, e.message]).toEqual([false, SINK_REFUSED])
    expect(e.detail).toMatch(/^line not convertible: /)
  })

  // The scanner refuses every value jsonb cannot hold (NUL, unpaired surrogates), so the
  // database's own errors are provoked here: what matters is the real server's error shape.
  const failingWith = (sql: string) => createSqlSink({ ...testDb.db, query: (_sql: string) => testDb.db.query(sql) })

  it('refuses for good what the database rejects as data (SQLSTATE class 22 or 23)', async () => {
    const e = await failureOf(failingWith('SELECT 1/0').write(Buffer.from('sq-22 v=1 1\n'), 1))
    expect([e.transient, e.message]).toEqual([false, SINK_REFUSED])
    expect(e.detail).toMatch(/SQLSTATE 22012/)
  })

  it('keeps a batch on any other database error (e.g. a missing table: 42P01)', async () => {
    const e = await failureOf(failingWith('SELECT * FROM no_such_table').write(Buffer.from('sq-42 v=1 1\n'), 1))
    expect([e.transient, e.reason, e.message]).toEqual([true, 'database error', 'sink unavailable'])
  })

  it('keeps a batch when the database is unreachable (transient)', async () => {
    const down = createPostgresDb('postgres://nobody@127.0.0.1:1/none', { max: 1 })
    try {
      const e = await failureOf(createSqlSink(down).write(Buffer.from('sq-down v=1 1\n'), 1))
      expect([e.transient, e.reason]).toEqual([true, 'unreachable'])
    } finally {
      await down.close()
    }
  })

  it('a poison record in the spool does not block replay: it goes to the dead-letter file, the others are stored', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sql-sink-test-'))
    try {
      const spoolDir = join(dir, 'spool')
      const before = await Spool.open({ dir: spoolDir, maxBytes: 1 << 20 })
      for (const text of ['sq-replay v=1 1\n', 'sq-replay,t=x 2\n', 'sq-replay v=3 3\n', 'sq-replay v= 4\n', 'sq-replay v=5 5\n']) {
        await before.append(Buffer.from(text), 1)
      }
      await before.close()
      const spool = await Spool.open({ dir: spoolDir, maxBytes: 1 << 20 })
      const deadLetters = await DeadLetterFile.open({ dir })
      const durable = new DurableSink({
        sink: createSqlSink(testDb.db),
        spool,
        deadLetters,
        log: { info: vi.fn(), warn: vi.fn(), error: vi.fn() },
        retryMinMs: 1,
        retryMaxMs: 5,
        replayMaxRecords: 100,
        replayMaxBytes: 1 << 20,
      })
      await waitUntil(() => durable.mode === 'direct', 10_000, 'the spool replayed')
      expect((await rows('sq-replay')).map((r) => r.time)).toEqual(['1', '3', '5'])
      const file = await readFile(join(dir, DEAD_LETTER_FILE), 'utf8')
      expect(file.split('\n').filter((l) => l !== '' && !l.startsWith('#'))).toEqual(['sq-replay,t=x 2', 'sq-replay v= 4'])
      expect(file.match(/^# dead-letter .* sink=metrics-table lines=1 reason="lines refused"$/gm)).toHaveLength(2)
      expect(durable.deadLetters).toMatchObject({ records: 2, lines: 2 })
      await durable.close()
      await deadLetters.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
