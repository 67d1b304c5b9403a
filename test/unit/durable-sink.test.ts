import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HttpError } from '@influxdata/influxdb3-client'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { DEAD_LETTER_FILE, DeadLetterFile } from '../../src/ingest/spool/dead-letter.js'
import { DurableSink } from '../../src/ingest/sinks/durable-sink.js'
import { classifyInfluxError } from '../../src/ingest/sinks/influx-sink.js'
import { SinkError, type Sink } from '../../src/ingest/sinks/sink.js'
import { Spool } from '../../src/ingest/spool/spool.js'
import { canSpyOnSyncs, spyOnSyncs } from '../helpers/fsync-spy.js'
import { waitUntil } from '../helpers/wait.js'

/** A sink that answers each write with the next scripted outcome (then `otherwise`). */
class ScriptedSink implements Sink {
  readonly name = 'scripted'
  /** Every write made, delivered or not. */
  readonly attempts: string[] = []
  /** Lines the sink stored. */
  readonly stored: string[] = []
  readonly script: Array<(text: string) => Error | undefined> = []
  otherwise: (text: string) => Error | undefined = () => undefined

  async write(body: Buffer): Promise<void> {
    const text = body.toString('utf8')
    this.attempts.push(text)
    const err = (this.script.shift() ?? this.otherwise)(text)
    if (err && !(err instanceof SinkError && err.rejected)) throw err
    const refused = new Set(err instanceof SinkError ? err.rejected?.map((r) => r.line) : [])
    text.split('\n').filter((l) => l !== '').forEach((l, i) => refused.has(i + 1) || this.stored.push(l))
    if (err) throw err
  }
  async ping(): Promise<void> {}
  async close(): Promise<void> {}
}

const influx = (status: number, body = '', json?: unknown) => {
  const e = new HttpError(status, undefined, json === undefined ? body : JSON.stringify(json), 'application/json')
  if (json !== undefined) e.json = json
  return classifyInfluxError(e)
}
const poison = (marker: string) => (text: string) => (text.includes(marker) ? new SinkError('refused', false, 400) : undefined)
const line = (i: number) => `m,i=${i} v=${i} ${i}\n`
const bytes = (text: string) => Buffer.from(text)

const dirs: string[] = []
const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  vi.restoreAllMocks()
  for (const c of closers.splice(0).reverse()) await c()
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

async function setup(opts: { maxRecords?: number } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'durable-test-'))
  dirs.push(dir)
  const sink = new ScriptedSink()
  const spool = await Spool.open({ dir: join(dir, 'spool'), maxBytes: 1 << 20 })
  const deadLetters = await DeadLetterFile.open({ dir })
  const events = { batches: [] as string[], failures: [] as string[], replayed: 0, refused: 0, replayWrites: 0 }
  const log = { info: vi.fn(), warn: vi.fn(), error: vi.fn() }
  let durable: DurableSink | undefined
  const make = () =>
    (durable = new DurableSink({
      sink,
      spool,
      deadLetters,
      log,
      retryMinMs: 1,
      retryMaxMs: 5,
      replayMaxRecords: opts.maxRecords ?? 100,
      replayMaxBytes: 1 << 20,
      onReplay: ({ lines, delivered }) => (delivered ? (events.replayed += lines) : (events.refused += lines)),
      onBatch: (o) => events.batches.push(o),
      onReplayWrite: () => events.replayWrites++,
      onFailure: (e, during) => events.failures.push(`${during}:${e.reason}`),
    }))
  closers.push(async () => {
    await (durable?.close() ?? spool.close())
    await deadLetters.close()
  })
  /** Spools `n` records by failing the sink transiently, then lets `script` answer the replay. */
  const spoolRecords = async (texts: string[]) => {
    sink.otherwise = () => influx(503)
    make()
    for (const t of texts) await durable!.write(bytes(t), t.split('\n').length - 1)
    await waitUntil(() => events.failures.some((f) => f.startsWith('replay:')), 5000, 'a failed replay')
  }
  const deadLetterText = () => readFile(join(dir, DEAD_LETTER_FILE), 'utf8')
  return { dir, sink, spool, deadLetters, events, log, make, spoolRecords, deadLetterText, get durable() { return durable! } }
}

describe('DurableSink', () => {
  it('writes to the sink directly while it takes writes: up, outcome ok, nothing spooled', async () => {
    const s = await setup()
    const d = s.make()
    await d.write(bytes(line(1)), 1)
    expect(s.sink.stored).toEqual([line(1).trim()])
    expect([d.mode, d.up, d.outage, s.spool.records]).toEqual(['direct', true, undefined, 0])
    expect(s.events.batches).toEqual(['ok'])
  })

  it('spools on a transient failure (outcome spooled, down, reason kept) and throws a refusal of the lines back', async () => {
    const s = await setup()
    const d = s.make()
    s.sink.otherwise = () => new SinkError('refused', false, 422)
    await expect(d.write(bytes(line(1)), 1)).rejects.toMatchObject({ transient: false })
    expect([s.spool.records, d.up]).toEqual([0, true]) // a refusal is the sink answering, not an outage
    s.sink.otherwise = () => influx(401)
    await d.write(bytes(line(2)), 1)
    expect([d.mode, d.up, d.outage?.reason, d.outage?.statusCode]).toEqual(['spooling', false, 'unauthorized', 401])
    expect(s.events.batches).toEqual(['spooled'])
    s.sink.otherwise = () => undefined
    await waitUntil(() => d.mode === 'direct', 5000, 'the spool drained')
    expect([d.up, d.outage]).toEqual([true, undefined])
    expect(s.sink.stored).toEqual([line(2).trim()])
  })

  it('keeps acknowledged records through 401, 403, 404, 413, 429, 5xx, unknown errors and a 400 naming no line, then delivers all', async () => {
    const s = await setup()
    const texts = [line(1), line(2), line(3) + line(4), line(5)]
    await s.spoolRecords(texts)
    const failures = [
      influx(401),
      influx(403, '{"error":"forbidden"}'),
      influx(404, '', { error: 'database not found: x' }),
      influx(413, '<html>too large</html>'),
      influx(413),
      influx(429),
      influx(500, 'boom'),
      influx(400, '', { error: 'Authorization header was malformed' }),
      new Error('something nobody classified'),
    ]
    s.sink.script.push(...failures.map((e) => () => e))
    s.sink.otherwise = () => undefined
    await waitUntil(() => s.spool.records === 0, 5000, 'every record delivered')
    expect(s.sink.stored).toEqual(texts.join('').trim().split('\n'))
    expect(s.events.refused).toBe(0)
    expect(s.events.failures).toEqual(expect.arrayContaining(['replay:unauthorized', 'replay:forbidden', 'replay:database not found', 'replay:request too large', 'replay:throttled', 'replay:server error', 'replay:unexpected answer']))
    await expect(s.deadLetterText()).rejects.toThrow(/ENOENT/)
    // One warning per change of reason, not per attempt.
    const warned = s.log.warn.mock.calls.filter((c) => c[1] === 'sink writes failing').map((c) => (c[0] as { reason: string }).reason)
    expect(warned).toEqual(['throttled', 'unauthorized', 'forbidden', 'database not found', 'throttled', 'server error', 'unexpected answer', 'unknown'])
  })

  it('splits a replay write the sink finds too large (413) and keeps a single record it cannot take', async () => {
    const s = await setup()
    const texts = [line(1), line(2), line(3), line(4), line(5)]
    await s.spoolRecords(texts)
    // Too large: more than two records at once; record 5 alone too (a limit the operator must raise).
    s.sink.otherwise = (text) => (text.split('\n').length - 1 > 2 || text.includes('i=5') ? influx(413) : undefined)
    await waitUntil(() => s.spool.records === 1, 5000, 'records 1-4 delivered')
    expect(s.sink.stored).toEqual(texts.slice(0, 4).map((t) => t.trim()))
    await waitUntil(() => s.events.failures.filter((f) => f === 'replay:request too large').length > 5, 5000, 'retries of record 5')
    expect([s.spool.records, s.durable.outage?.reason, s.events.refused]).toEqual([1, 'request too large', 0])
    s.sink.otherwise = () => undefined
    await waitUntil(() => s.spool.records === 0, 5000, 'record 5 delivered')
    expect(s.sink.stored).toEqual(texts.map((t) => t.trim()))
  })

  it('moves only the record whose lines are refused to the dead-letter file, the others delivered in order', async () => {
    const s = await setup()
    const texts = [line(1), line(2), 'bad,i=3 v=3 3\n', line(4), line(5), line(6)]
    await s.spoolRecords(texts)
    s.sink.otherwise = poison('bad,')
    await waitUntil(() => s.spool.records === 0, 5000, 'the spool drained')
    expect(s.sink.stored).toEqual([1, 2, 4, 5, 6].map((i) => line(i).trim()))
    expect([s.events.refused, s.events.replayed]).toEqual([1, 5])
    const file = await s.deadLetterText()
    expect(file).toMatch(/^# dead-letter time=\S+ sink=scripted status=400 lines=1 reason="lines refused"\n/)
    expect(file.split('\n').filter((l) => !l.startsWith('#'))).toEqual(['bad,i=3 v=3 3', ''])
    expect(s.deadLetters.summary).toMatchObject({ file: 'dead-letter.lp', records: 1, lines: 1, last_reason: 'lines refused' })
    // Reopened, the file is counted again.
    const again = await DeadLetterFile.open({ dir: s.dir })
    expect(again.summary).toMatchObject({ records: 1, lines: 1, last_reason: 'lines refused' })
    await again.close()
  })

  it('maps a partial write of a joined replay back to its records: only the named lines are dead-lettered, nothing written twice', async () => {
    const s = await setup()
    const texts = [line(1), line(2) + line(3), line(4)]
    await s.spoolRecords(texts)
    const before = s.sink.attempts.length
    s.sink.script.push(() =>
      influx(400, '', {
        error: 'partial write of line protocol occurred',
        data: [{ line_number: 3, error_message: "invalid column type for column 'v', expected iox::column_type::field::integer", original_line: 'x' }],
      }),
    )
    await waitUntil(() => s.spool.records === 0, 5000, 'the spool drained')
    expect(s.sink.attempts.length - before).toBe(1)
    expect(s.sink.stored).toEqual([1, 2, 4].map((i) => line(i).trim()))
    const file = await s.deadLetterText()
    expect(file).toContain('reason="field type conflict"')
    expect(file).toContain("# line 3: invalid column type for column 'v'") // the sink's words, for the operator
    expect(file.split('\n').filter((l) => !l.startsWith('#'))).toEqual([line(3).trim(), ''])
    expect([s.events.refused, s.events.replayed]).toEqual([1, 3])
  })

  it('dead-letters a record the sink refuses whole (422) and goes on with the next', async () => {
    const s = await setup()
    await s.spoolRecords([line(1)])
    s.sink.script.push(() => influx(422, '', { code: 'unprocessable entity', message: 'points beyond retention policy dropped=1' }))
    s.sink.otherwise = () => undefined
    await waitUntil(() => s.durable.mode === 'direct', 5000, 'the spool drained')
    expect(s.sink.stored).toEqual([])
    expect(await s.deadLetterText()).toContain(`status=422 lines=1 reason="lines refused"\n`)
    await s.durable.write(bytes(line(2)), 1)
    expect(s.sink.stored).toEqual([line(2).trim()])
  })

  it.skipIf(!canSpyOnSyncs)('fsyncs the dead-letter file (and its new directory entry) before the spool cursor moves past the record', async () => {
    const s = await setup()
    await s.spoolRecords(['bad,i=1 v=1 1\n'])
    const syncs = await spyOnSyncs()
    s.sink.otherwise = poison('bad,')
    await waitUntil(() => s.spool.records === 0, 5000, 'the spool drained')
    const names = syncs.names(s.dir)
    const at = (n: string) => names.indexOf(n)
    expect(at('datasync dead-letter.lp')).toBeGreaterThanOrEqual(0)
    expect(at('sync <dir>')).toBeGreaterThanOrEqual(0) // the file was created
    expect(at('sync spool/cursor.json.tmp')).toBeGreaterThan(at('datasync dead-letter.lp'))
  })
})
