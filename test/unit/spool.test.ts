import { spawn } from 'node:child_process'
import { mkdtemp, open, readFile, readdir, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import fc from 'fast-check'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Spool, SpoolClosedError, SpoolFullError, type SpoolOptions, type SpoolRecord } from '../../src/ingest/spool/spool.js'
import { canSpyOnSyncs, realJoin, spyOnSyncs } from '../helpers/fsync-spy.js'
import { REPO_ROOT } from '../helpers/process.js'
import { spoolWriterLines, spoolWriterText } from '../helpers/spool-writer.js'
import { waitUntil } from '../helpers/wait.js'

const HEADER = 12
const recordBytes = (text: string) => HEADER + Buffer.byteLength(text)
const bytes = (text: string) => Buffer.from(text)
const textOf = (r: SpoolRecord) => r.body.toString('utf8')

const dirs: string[] = []
const spools: Spool[] = []

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'spool-test-'))
  dirs.push(dir)
  return dir
}

async function openSpool(opts: SpoolOptions): Promise<Spool> {
  const spool = await Spool.open(opts)
  spools.push(spool)
  return spool
}

afterEach(async () => {
  vi.restoreAllMocks()
  await Promise.all(spools.splice(0).map((s) => s.close()))
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith('.seg')).sort()
}

/** Reads and acknowledges everything left, oldest first. */
async function drain(spool: Spool): Promise<SpoolRecord[]> {
  const out: SpoolRecord[] = []
  for (let r = await spool.peek(); r; r = await spool.peek()) {
    out.push(r)
    await spool.ack(r.id)
  }
  return out
}

const line = (i: number) => `cpu,host=h${i} usage=${i}.5 ${1_700_000_000_000_000_000 + i}\n`

describe('Spool', () => {
  it('hands records back in order across segments, with increasing ids and right totals', async () => {
    const dir = await tempDir()
    const spool = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 200 })
    const texts = Array.from({ length: 12 }, (_, i) => line(i).repeat(1 + (i % 3)))
    texts.push('température,lieu=café v=21.5 1\nemoji,k=😀 v=1i 2\n')
    const ids: number[] = []
    for (const t of texts.slice(0, 6)) ids.push(await spool.append(bytes(t), t.split('\n').length - 1))
    ids.push(...(await Promise.all(texts.slice(6).map((t) => spool.append(bytes(t), t.split('\n').length - 1)))))
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1]!)
    expect(spool.records).toBe(texts.length)
    expect(spool.lines).toBe(texts.reduce((n, t) => n + t.split('\n').length - 1, 0))
    expect(spool.bytes).toBe(texts.reduce((n, t) => n + recordBytes(t), 0))
    const before = await segmentFiles(dir)
    expect(before.length).toBeGreaterThan(3)

    const firstHalf: SpoolRecord[] = []
    for (let i = 0; i < 7; i++) {
      const r = (await spool.peek())!
      expect(await spool.peek()).toEqual(r) // peek does not consume
      firstHalf.push(r)
      await spool.ack(r.id)
    }
    expect(firstHalf.map((r) => r.id)).toEqual(ids.slice(0, 7))
    expect(firstHalf.map(textOf)).toEqual(texts.slice(0, 7))
    expect(spool.records).toBe(texts.length - 7)
    expect(spool.bytes).toBe(texts.slice(7).reduce((n, t) => n + recordBytes(t), 0))
    const middle = await segmentFiles(dir)
    expect(middle.length).toBeLessThan(before.length)
    expect(middle[0]! > before[0]!).toBe(true) // the oldest files went first

    const rest = await drain(spool)
    expect(rest.map(textOf)).toEqual(texts.slice(7))
    expect(rest.map((r) => r.id)).toEqual(ids.slice(7))
    expect(rest.at(-1)!.lines).toBe(2)
    expect([spool.records, spool.lines, spool.bytes]).toEqual([0, 0, 0])
    expect(await spool.peek()).toBeUndefined()
    // Only the segment still taking appends is left.
    expect(await segmentFiles(dir)).toHaveLength(1)
  })

  it('brings back undelivered records after a reopen, and not the delivered ones', async () => {
    const dir = await tempDir()
    const texts = Array.from({ length: 10 }, (_, i) => line(i))
    // Four records to a segment: five acks leave the read position inside the second one.
    const opts = { dir, maxBytes: 1 << 20, segmentBytes: 20 + 4 * recordBytes(line(0)) }
    let spool = await Spool.open(opts)
    for (const t of texts) await spool.append(bytes(t), 1)
    for (let i = 0; i < 5; i++) await spool.ack((await spool.peek())!.id)
    await spool.close()

    spool = await openSpool(opts)
    expect(spool.recovered).toMatchObject({ records: 5, lines: 5, tornBytes: 0, segments: 2, cursor: 'ok' })
    expect(spool.recovered.bytes).toBe(texts.slice(5).reduce((n, t) => n + recordBytes(t), 0))
    expect([spool.records, spool.lines, spool.bytes]).toEqual([5, 5, spool.recovered.bytes])
    const nextId = await spool.append(bytes('after,reopen=1 v=1i 1\n'), 1)
    expect(nextId).toBe(11)
    const all = await drain(spool)
    expect(all.map((r) => r.id)).toEqual([6, 7, 8, 9, 10, 11])
    expect(all.map(textOf)).toEqual([...texts.slice(5), 'after,reopen=1 v=1i 1\n'])
  })

  it('starts from the beginning when the cursor file is missing, and ignores files it does not know', async () => {
    const dir = await tempDir()
    let spool = await Spool.open({ dir, maxBytes: 1 << 20 })
    for (let i = 0; i < 3; i++) await spool.append(bytes(line(i)), 1)
    await spool.ack(1)
    await spool.close()
    await unlink(join(dir, 'cursor.json'))
    await writeFile(join(dir, 'notes.txt'), 'not a segment')
    await writeFile(join(dir, '00000009.seg.bak'), 'not a segment either')

    spool = await openSpool({ dir, maxBytes: 1 << 20 })
    expect(spool.recovered).toMatchObject({ records: 3, cursor: 'missing', tornBytes: 0 })
    expect((await drain(spool)).map(textOf)).toEqual([line(0), line(1), line(2)])
    expect(await readFile(join(dir, 'notes.txt'), 'utf8')).toBe('not a segment')
  })

  describe('torn tail', () => {
    async function spoolWithFive(dir: string) {
      const spool = await Spool.open({ dir, maxBytes: 1 << 20, segmentBytes: 300 })
      const texts = Array.from({ length: 5 }, (_, i) => line(i))
      for (const t of texts) await spool.append(bytes(t), 1)
      await spool.close()
      const last = join(dir, (await segmentFiles(dir)).at(-1)!)
      return { texts, last }
    }

    async function expectRecovered(dir: string, texts: string[], cutBytes: number) {
      const spool = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 300 })
      expect(spool.recovered.tornBytes).toBe(cutBytes)
      expect(spool.recovered.records).toBe(4)
      const id = await spool.append(bytes('fresh,after=torn v=1i 1\n'), 1)
      expect(id).toBe(5) // the torn record was never acknowledged, so its id is free
      const all = await drain(spool)
      expect(all.map(textOf)).toEqual([...texts.slice(0, 4), 'fresh,after=torn v=1i 1\n'])
      expect(all.map((r) => r.id)).toEqual([1, 2, 3, 4, 5])
    }

    it('cuts off a record truncated by a crash', async () => {
      const dir = await tempDir()
      const { texts, last } = await spoolWithFive(dir)
      const size = (await stat(last)).size
      await truncate(last, size - 3)
      await expectRecovered(dir, texts, recordBytes(texts[4]!) - 3)
    })

    it('cuts off a record whose payload no longer matches its CRC', async () => {
      const dir = await tempDir()
      const { texts, last } = await spoolWithFive(dir)
      const bytes = await readFile(last)
      bytes[bytes.length - 5]! ^= 0x20
      await writeFile(last, bytes)
      await expectRecovered(dir, texts, recordBytes(texts[4]!))
    })

    it('keeps ids increasing when the cursor points past a torn tail', async () => {
      const dir = await tempDir()
      let spool = await Spool.open({ dir, maxBytes: 1 << 20 })
      for (let i = 0; i < 3; i++) await spool.append(bytes(line(i)), 1)
      await drain(spool)
      await spool.close()
      const [seg] = await segmentFiles(dir)
      await truncate(join(dir, seg!), (await stat(join(dir, seg!))).size - 1)

      spool = await openSpool({ dir, maxBytes: 1 << 20 })
      expect(spool.recovered).toMatchObject({ records: 0, tornBytes: recordBytes(line(2)) - 1 })
      expect(await spool.peek()).toBeUndefined()
      expect(await spool.append(bytes(line(9)), 1)).toBe(4)
      expect(await drain(spool)).toEqual([{ id: 4, body: bytes(line(9)), lines: 1 }])
    })
  })

  it('keeps every acknowledged record when the writing process is killed mid-stream', async () => {
    const dir = await tempDir()
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/spool-writer.ts', dir, '2048'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const acked = new Map<number, number>()
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)))
    await new Promise<void>((resolve, reject) => {
      let buffered = ''
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        buffered += chunk
        const lines = buffered.split('\n')
        buffered = lines.pop()!
        for (const l of lines) {
          const [id, n] = l.split(' ').map(Number)
          acked.set(id!, n!)
        }
        if (acked.size >= 400) {
          child.kill('SIGKILL')
          resolve()
        }
      })
      void exited.then(() => reject(new Error(`writer exited early: ${stderr}`)))
    })
    expect(await exited).toBe('SIGKILL')

    const spool = await openSpool({ dir, maxBytes: 1 << 30, segmentBytes: 2048 })
    const records = await drain(spool)
    const byId = new Map(records.map((r) => [r.id, r]))
    for (const [id, n] of acked) {
      expect(byId.get(id), `acknowledged record ${id}`).toEqual({ id, body: bytes(spoolWriterText(n)), lines: spoolWriterLines(n) })
    }
    // Records in flight at the kill may be there too, but only whole and in order.
    for (let i = 1; i < records.length; i++) expect(records[i]!.id).toBeGreaterThan(records[i - 1]!.id)
    for (const r of records) {
      const n = Number(/^m,n=(\d+) /.exec(textOf(r))?.[1])
      expect(textOf(r)).toBe(spoolWriterText(n))
    }
  })

  it('refuses an append past maxBytes, writing nothing, and takes it again once ack frees space', async () => {
    const dir = await tempDir()
    const text = line(1)
    const spool = await openSpool({ dir, maxBytes: 3 * recordBytes(text) })
    // Concurrent appends reserve their bytes in call order: the last two do not fit.
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => spool.append(bytes(text), 1)))
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected'])
    const sizeBefore = (await stat(join(dir, (await segmentFiles(dir))[0]!))).size
    await expect(spool.append(bytes(text), 1)).rejects.toBeInstanceOf(SpoolFullError)
    await expect(spool.append(bytes('x'), 0)).rejects.toMatchObject({ name: 'SpoolFullError' })
    expect((await stat(join(dir, (await segmentFiles(dir))[0]!))).size).toBe(sizeBefore)
    expect(spool.records).toBe(3)

    await spool.ack((await spool.peek())!.id)
    expect(await spool.append(bytes(text), 1)).toBe(4)
    await expect(spool.append(bytes(text), 1)).rejects.toBeInstanceOf(SpoolFullError)
    expect((await drain(spool)).map((r) => r.id)).toEqual([2, 3, 4])
  })

  it('shares one write and one fdatasync among concurrent appends (group commit)', async () => {
    const dir = await tempDir()
    const spool = await openSpool({ dir, maxBytes: 1 << 24 })
    const appends = Array.from({ length: 200 }, (_, i) => spool.append(bytes(line(i)), 1))
    expect([spool.pending, spool.records]).toEqual([200, 0])
    const ids = await Promise.all(appends)
    expect([spool.pending, spool.records]).toEqual([0, 200])
    expect(ids).toEqual(Array.from({ length: 200 }, (_, i) => i + 1)) // ids follow call order
    expect(spool.syncs).toBeGreaterThan(0)
    expect(spool.syncs).toBeLessThanOrEqual(5)
    // Appends made while a sync is under way go out together in the next one.
    const more = Array.from({ length: 50 }, (_, i) => spool.append(bytes(line(i)), 1))
    await new Promise((r) => setImmediate(r))
    more.push(...Array.from({ length: 50 }, (_, i) => spool.append(bytes(line(i)), 1)))
    await Promise.all(more)
    expect(spool.syncs).toBeLessThanOrEqual(10)
    expect(spool.records).toBe(300)
  })

  it('rejects the appends of a failed write or sync, keeps the spool usable, and never reuses their ids', async () => {
    const dir = await tempDir()
    // FileHandle is not exported; its prototype is reachable from any open handle.
    const probe = await open(join(dir, 'probe'), 'w')
    const fileHandle = Object.getPrototypeOf(probe) as { writev: () => Promise<unknown>; datasync: () => Promise<void> }
    await probe.close()
    let spool = await Spool.open({ dir, maxBytes: 1 << 20 })
    await spool.append(bytes(line(1)), 1)
    await spool.append(bytes(line(2)), 1)

    vi.spyOn(fileHandle, 'writev').mockRejectedValueOnce(Object.assign(new Error('no space left'), { code: 'ENOSPC' }))
    const failed = await Promise.allSettled([spool.append(bytes(line(3)), 1), spool.append(bytes(line(4)), 1)])
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected'])
    expect([spool.records, spool.pending]).toEqual([2, 0])

    // Written but not synced: the bytes reached the file, yet the appends must fail and the
    // record must not come back later.
    vi.spyOn(fileHandle, 'datasync').mockRejectedValueOnce(Object.assign(new Error('i/o error'), { code: 'EIO' }))
    await expect(spool.append(bytes(line(5)), 1)).rejects.toThrow('i/o error')

    const id = await spool.append(bytes(line(6)), 1)
    expect(id).toBe(6)
    expect(spool.bytes).toBe(recordBytes(line(1)) + recordBytes(line(2)) + recordBytes(line(6)))
    await spool.close()
    spool = await openSpool({ dir, maxBytes: 1 << 20 })
    expect(spool.recovered.tornBytes).toBe(0)
    expect((await drain(spool)).map((r) => [r.id, textOf(r)])).toEqual([
      [1, line(1)],
      [2, line(2)],
      [6, line(6)],
    ])
  })

  it('reads several records at once and acknowledges them with one cursor write (peekMany, ackThrough)', async () => {
    const dir = await tempDir()
    const texts = Array.from({ length: 10 }, (_, i) => line(i))
    const spool = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 20 + 3 * recordBytes(line(0)) })
    for (const t of texts) await spool.append(bytes(t), 1)
    expect(await segmentFiles(dir)).toHaveLength(4)

    const four = await spool.peekMany(4)
    expect(four.map((r) => [r.id, textOf(r)])).toEqual(texts.slice(0, 4).map((t, i) => [i + 1, t]))
    const capped = await spool.peekMany(100, 2 * Buffer.byteLength(line(0)))
    expect(capped.map((r) => r.id)).toEqual([1, 2])
    expect((await spool.peekMany(5, 1)).map((r) => r.id)).toEqual([1]) // the first comes whatever its size

    await spool.ackThrough(4)
    expect([spool.records, spool.lines]).toEqual([6, 6])
    expect(await readFile(join(dir, 'cursor.json'), 'utf8')).toContain('"delivered":4')
    expect(await segmentFiles(dir)).toHaveLength(3)
    expect((await spool.peek())?.id).toBe(5)

    await expect(spool.ackThrough(11)).rejects.toBeInstanceOf(RangeError)
    await spool.ackThrough(3) // already delivered
    // Without a peek first, the sizes come from the record headers on disk.
    await spool.ackThrough(9)
    expect([spool.records, spool.bytes]).toEqual([1, recordBytes(texts[9]!)])
    expect(await spool.peekMany(10)).toEqual([{ id: 10, body: bytes(texts[9]!), lines: 1 }])
    await spool.ackThrough(10)
    expect([spool.records, spool.lines, spool.bytes]).toEqual([0, 0, 0])
    expect(await spool.peekMany(10)).toEqual([])
    expect(await segmentFiles(dir)).toHaveLength(1)
  })

  it('refuses an out-of-order ack, treats a repeated ack as done, and validates input', async () => {
    const dir = await tempDir()
    const spool = await openSpool({ dir, maxBytes: 1 << 20 })
    for (let i = 0; i < 3; i++) await spool.append(bytes(line(i)), 1)
    await expect(spool.ack(2)).rejects.toBeInstanceOf(RangeError)
    await expect(spool.ack(99)).rejects.toBeInstanceOf(RangeError)
    expect(spool.records).toBe(3)
    await spool.ack(1)
    await spool.ack(1)
    expect(spool.records).toBe(2)
    expect((await spool.peek())?.id).toBe(2)
    await expect(spool.append(bytes('x'), -1)).rejects.toBeInstanceOf(RangeError)
    await expect(spool.append(bytes('x'), 1.5)).rejects.toBeInstanceOf(RangeError)
    await expect(Spool.open({ dir, maxBytes: 1 })).rejects.toThrow(/already open/)
  })

  it('close waits for pending appends, is safe twice, and later calls reject', async () => {
    const dir = await tempDir()
    let spool = await Spool.open({ dir, maxBytes: 1 << 20 })
    const pending = Array.from({ length: 20 }, (_, i) => spool.append(bytes(line(i)), 1))
    const closed = spool.close()
    await expect(spool.append(bytes('late'), 1)).rejects.toBeInstanceOf(SpoolClosedError)
    await expect(spool.peek()).rejects.toBeInstanceOf(SpoolClosedError)
    await closed
    await spool.close()
    expect(await Promise.all(pending)).toHaveLength(20)
    spool = await openSpool({ dir, maxBytes: 1 << 20 })
    expect(spool.recovered.records).toBe(20)
  })

  it('holds an index per segment, not the payloads, after 20,000 appends', async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const dir = await tempDir()
    const spool = await openSpool({ dir, maxBytes: 1 << 30, segmentBytes: 16 << 20 })
    const measure = () => {
      gc()
      const m = process.memoryUsage()
      return m.heapUsed + m.external
    }
    const payload = 'x'.repeat(4000)
    let payloadBytes = 0
    const appendChunks = async (tag: string, chunks: number) => {
      for (let chunk = 0; chunk < chunks; chunk++) {
        const appends: Array<Promise<number>> = []
        for (let i = 0; i < 1000; i++) {
          const text = `m,${tag}=${chunk},i=${i} v="${payload}" ${i}\n` // a fresh string each time
          payloadBytes += text.length
          appends.push(spool.append(bytes(text), 1))
        }
        await Promise.all(appends)
      }
    }
    // Warm up first: compiled code and lazily built internals count in the heap too.
    await appendChunks('warm', 2)
    const before = measure()
    payloadBytes = 0
    await appendChunks('chunk', 20)
    const grown = measure() - before
    expect(spool.records).toBe(22_000)
    expect(spool.segmentCount).toBe((await segmentFiles(dir)).length)
    expect(spool.segmentCount).toBeLessThan(10)
    // 80 MB of payloads went through; holding them would show as at least that much, while
    // the heap moves by a few MB between two measurements in a test worker anyway.
    expect(grown).toBeLessThan(payloadBytes / 4)
    const first = await spool.peek()
    expect(first && textOf(first).startsWith('m,warm=0,i=0 ')).toBe(true)
  })

  it('keeps the same queue as a model through any appends, acks and reopens (property)', async () => {
    type Op = { kind: 'append'; texts: string[] } | { kind: 'ack'; count: number; through: boolean } | { kind: 'reopen' }
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('append' as const), texts: fc.array(fc.string({ unit: 'binary', maxLength: 40 }), { minLength: 1, maxLength: 4 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('ack' as const), count: fc.integer({ min: 1, max: 4 }), through: fc.boolean() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('reopen' as const) }) },
    )
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 25 }), fc.integer({ min: 30, max: 400 }), fc.integer({ min: 60, max: 600 }), async (ops, segmentBytes, maxBytes) => {
        const dir = await mkdtemp(join(tmpdir(), 'spool-prop-'))
        const opts = { dir, maxBytes, segmentBytes }
        let spool = await Spool.open(opts)
        try {
          const model: SpoolRecord[] = []
          let lastId = 0
          const check = async () => {
            expect(spool.records).toBe(model.length)
            expect(spool.lines).toBe(model.reduce((n, r) => n + r.lines, 0))
            expect(spool.bytes).toBe(model.reduce((n, r) => n + HEADER + r.body.length, 0))
            expect(await spool.peek()).toEqual(model[0])
          }
          for (const o of ops) {
            if (o.kind === 'append') {
              let used = spool.bytes
              const fits = o.texts.map((t) => (used + recordBytes(t) <= maxBytes ? ((used += recordBytes(t)), true) : false))
              const results = await Promise.allSettled(o.texts.map((t) => spool.append(bytes(t), t.length % 7)))
              for (const [i, r] of results.entries()) {
                if (!fits[i]) {
                  expect(r.status === 'rejected' && r.reason instanceof SpoolFullError).toBe(true)
                  continue
                }
                expect(r.status).toBe('fulfilled')
                const id = (r as PromiseFulfilledResult<number>).value
                expect(id).toBeGreaterThan(lastId)
                lastId = id
                model.push({ id, body: bytes(o.texts[i]!), lines: o.texts[i]!.length % 7 })
              }
            } else if (o.kind === 'ack' && o.through) {
              const some = await spool.peekMany(o.count)
              expect(some).toEqual(model.slice(0, o.count))
              if (some.length > 0) await spool.ackThrough(some.at(-1)!.id)
              model.splice(0, some.length)
            } else if (o.kind === 'ack') {
              for (let i = 0; i < o.count && model.length > 0; i++) {
                expect(await spool.peek()).toEqual(model[0])
                await spool.ack(model.shift()!.id)
              }
            } else {
              await spool.close()
              spool = await Spool.open(opts)
              expect(spool.recovered.tornBytes).toBe(0)
            }
            await check()
          }
        } finally {
          await spool.close()
          await rm(dir, { recursive: true, force: true })
        }
      }),
      { numRuns: 60 },
    )
  })
})

// The SIGKILL tests survive through the page cache: only a spy shows that each sync is made.
describe.skipIf(!canSpyOnSyncs)('Spool fsyncs', () => {
  const flushLoop = async () => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
  }

  it("an append resolves only after its segment's fdatasync, and a new segment's directory entry is synced", async () => {
    const dir = await tempDir()
    const spool = await openSpool({ dir, maxBytes: 1 << 20 })
    const syncs = await spyOnSyncs()
    const release = syncs.gate((c) => c.kind === 'datasync' && c.path.endsWith('.seg'))
    let resolved = false
    const appended = spool.append(bytes(line(1)), 1).then(() => (resolved = true))
    await waitUntil(() => syncs.calls.length > 0, 5000, 'the segment fdatasync')
    await flushLoop()
    expect(resolved).toBe(false)
    release()
    await appended
    expect(syncs.names(dir)).toEqual(['datasync 00000001.seg', 'sync <dir>'])
    // The next append to the same segment: its data is synced, no directory sync needed.
    await spool.append(bytes(line(2)), 1)
    expect(syncs.names(dir).slice(2)).toEqual(['datasync 00000001.seg'])
  })

  it('an ack syncs the cursor file before its rename and the directory after, before it resolves', async () => {
    const dir = await tempDir()
    const spool = await openSpool({ dir, maxBytes: 1 << 20 })
    await spool.append(bytes(line(1)), 1)
    await spool.append(bytes(line(2)), 1)
    const syncs = await spyOnSyncs()
    const release = syncs.gate((c) => c.kind === 'sync' && c.path === realJoin(dir, ''))
    let resolved = false
    const acked = spool.ack(1).then(() => (resolved = true))
    await waitUntil(() => syncs.calls.length === 2, 5000, 'the cursor syncs')
    await flushLoop()
    expect(resolved).toBe(false)
    release()
    await acked
    expect(syncs.names(dir)).toEqual(['sync cursor.json.tmp', 'sync <dir>'])
  })

  it('removing a delivered segment syncs the directory, at run time and on open', async () => {
    const dir = await tempDir()
    let spool = await Spool.open({ dir, maxBytes: 1 << 20, segmentBytes: 100 })
    for (let i = 1; i <= 4; i++) await spool.append(bytes(line(i)), 1) // one record per segment
    expect(await segmentFiles(dir)).toHaveLength(4)
    const syncs = await spyOnSyncs()
    await spool.ack(1)
    await spool.peek() // moves on to the next segment, removing the delivered one
    expect(await segmentFiles(dir)).toHaveLength(3)
    expect(syncs.names(dir)).toEqual(['sync cursor.json.tmp', 'sync <dir>', 'sync <dir>'])
    await spool.close()

    // On open: a segment the cursor has passed is removed, a torn tail cut off and synced.
    await writeFile(join(dir, 'cursor.json'), JSON.stringify({ version: 1, delivered: 2 }))
    const last = join(dir, (await segmentFiles(dir)).at(-1)!)
    await truncate(last, (await stat(last)).size - 3)
    syncs.calls.length = 0
    spool = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 100 })
    expect(spool.recovered.tornBytes).toBeGreaterThan(0)
    expect(syncs.names(dir)).toEqual(['datasync 00000004.seg', 'sync <dir>'])
  })
})
