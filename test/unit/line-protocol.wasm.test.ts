/**
 * The WebAssembly fast path of the frame rewrite (src/ingest/line-protocol/wasm/) against
 * the scanner: on any frame, a FrameRewriter with the fast path and one without give the
 * same verdict, the same bytes and the same line count (or the same error), and the fast
 * path does take the frames it is meant for. The frames are mostly ASCII (the fast path
 * leaves UTF-8 to the scanner) with every separator, escapes, each field type near its
 * range limits, and random bytes inserted. The seed is not fixed: fast-check prints it.
 */
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { FrameRewriter, makeTagging, type Precision, type Tagging } from '../../src/ingest/line-protocol/index.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const TAGGING = makeTagging([
  ['user', 'john_doe'],
  ['org', 'acme corp'],
])
const DEVICE = makeTagging([['device', 'd-1']])
const NOW = '1700000000123456789'

const nameChar = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('a', 'b', 'z', 'Q', '0', '7', '_', '-', '.', ':', '"', '#', "'", '+', 't') },
  { weight: 2, arbitrary: fc.constantFrom('\\,', '\\ ', '\\=', '\\', '\\\\', '\\a') },
)
const name = fc.string({ unit: nameChar, minLength: 1, maxLength: 20 }).map((s) => (s.endsWith('\\') ? `${s}x` : s))
const key = fc.oneof({ weight: 30, arbitrary: name }, { weight: 1, arbitrary: fc.constantFrom('time', 'user', 'org', 'device') })
const edgeValue = fc.oneof(
  fc.stringMatching(/^-?\d{17,20}[iu]$/),
  fc.constantFrom('9223372036854775807i', '-9223372036854775808i', '18446744073709551615u', '1e308', '1e309', '1E+2', '-0', '.', '1e', '1.5.5'),
  fc.constantFrom('tRUE', 'Fals', 'truex', '"a\nb"', '"unterminated'),
)
const value = fc.oneof(
  { weight: 3, arbitrary: fc.stringMatching(/^-?(\d{1,6}(\.\d{0,4})?|\.\d{1,4})([eE]-?\d{1,3})?$/) },
  { weight: 2, arbitrary: fc.stringMatching(/^\d{1,16}[iu]$|^-\d{1,16}i$/) },
  { weight: 1, arbitrary: fc.constantFrom('t', 'T', 'true', 'True', 'TRUE', 'f', 'F', 'false', 'False', 'FALSE') },
  {
    weight: 2,
    arbitrary: fc.string({ unit: fc.constantFrom('a', ' ', ',', '=', '\\"', '\\\\', '\\', '\t', '\r'), maxLength: 12 }).map((s) => `"${s}"`),
  },
  { weight: 1, arbitrary: edgeValue },
)
const timestamp = fc.oneof(
  { weight: 2, arbitrary: fc.constant('') },
  { weight: 4, arbitrary: fc.bigInt({ min: -(10n ** 9n), max: 10n ** 9n }).map((t) => ` ${t}`) },
  { weight: 1, arbitrary: fc.bigInt({ min: -(10n ** 19n), max: 10n ** 19n }).map((t) => ` ${t}`) },
  { weight: 1, arbitrary: fc.constantFrom(' 0', ' -0', ' 000123', ' 9223372036854775807', ' 9223372036854775808', ' -9223372036854775808', ' 1x') },
)
const spaces = fc.constantFrom(' ', ' ', ' ', '  ')

const dataLine = fc
  .record({
    lead: fc.constantFrom('', '', '', ' '),
    m: name,
    tags: fc.array(fc.tuple(key, name), { maxLength: 4 }),
    fields: fc.array(fc.tuple(key, value), { minLength: 1, maxLength: 4 }),
    gap1: spaces,
    gap2: spaces,
    ts: timestamp,
    cr: fc.constantFrom('', '', '', '\r'),
  })
  .map((l) => {
    const tags = l.tags.map(([k, v]) => `,${k}=${v}`).join('')
    const fields = l.fields.map(([k, v]) => `${k}=${v}`).join(',')
    return `${l.lead}${l.m}${tags}${l.gap1}${fields}${l.ts === '' ? '' : l.gap2.slice(1)}${l.ts}${l.cr}`
  })
const anyLine = fc.oneof({ weight: 10, arbitrary: dataLine }, { weight: 1, arbitrary: fc.constantFrom('', '  ', '# a comment', '#', '\t', ' \t ') })
const frame = fc.array(anyLine, { minLength: 1, maxLength: 8 }).map((l) => l.join('\n'))

/** Random bytes put into a frame: separators, control characters, UTF-8 and broken UTF-8. */
const noise = fc.constantFrom(0x00, 0x09, 0x0a, 0x0d, 0x20, 0x22, 0x2c, 0x3d, 0x5c, 0x23, 0x7f, 0x80, 0xc3, 0xe4, 0xff, 0x30, 0x69, 0x65, 0x2d)
const mutated = fc
  .tuple(frame, fc.array(fc.tuple(fc.nat(), noise), { minLength: 1, maxLength: 3 }))
  .map(([f, inserts]) => {
    const bytes = [...Buffer.from(f)]
    for (const [at, b] of inserts) bytes.splice(at % (bytes.length + 1), 0, b)
    return Buffer.from(bytes)
  })

const precision = fc.constantFrom<Precision>('ns', 'ns', 'ns', 'us', 'ms', 's', 'auto')

interface Verdict {
  ok: boolean
  out: string
  lines: number
  error: string
}

function run(rw: FrameRewriter, src: Uint8Array, tagging: Tagging, p: Precision): Verdict {
  const ok = rw.rewrite(src, tagging, () => NOW, p)
  return ok
    ? { ok, out: Buffer.from(rw.output).toString('latin1'), lines: rw.lines, error: '' }
    : { ok, out: '', lines: 0, error: `${rw.errorLine}: ${rw.reason}` }
}

describe('line protocol fast path (WebAssembly) against the scanner', () => {
  // One pair for the whole run: the fast path's memory and layout carry over between
  // frames and taggings, as they do in the gateway.
  const fast = new FrameRewriter()
  const scanner = new FrameRewriter({ fastPath: false })

  it('gives the same verdict, bytes and line count on any frame', () => {
    let taken = 0
    let accepted = 0
    fc.assert(
      fc.property(fc.oneof({ weight: 2, arbitrary: frame.map((f) => Buffer.from(f)) }, { weight: 1, arbitrary: mutated }), precision, fc.boolean(), (src, p, device) => {
        const tagging = device ? DEVICE : TAGGING
        const want = run(scanner, src, tagging, p)
        expect(run(fast, src, tagging, p)).toEqual(want)
        if (want.ok) accepted++
        if (fast.fastPathUsed) taken++
      }),
      { numRuns: 3000 },
    )
    // The generators make many frames the fast path takes, and many it leaves.
    console.log(`fast path: ${taken} of ${accepted} accepted frames (3000 run)`)
    expect(taken).toBeGreaterThan(150)
  })

  it('asks the key rules again for every line whose keys differ from the last checked line', () => {
    // Lines of one frame that share their keys are where the fast path reuses the last
    // verdict: each later line repeats the first one's keys or changes one of them by a
    // byte (also past the 16th), its value's type, or into another key of the line.
    const longName = fc.string({ unit: fc.constantFrom('a', 'b', '_', '\\ ', '\\,'), minLength: 1, maxLength: 40 })
    const kinds = ['1.5', '2i', '3u', 't', '"s"']
    const shape = fc.record({
      tags: fc.array(longName, { maxLength: 4 }),
      fields: fc.array(fc.tuple(longName, fc.nat(4)), { minLength: 1, maxLength: 4 }),
    })
    const change = fc.record({ what: fc.nat(4), which: fc.nat(7), other: fc.nat(7), at: fc.nat(40) })
    fc.assert(
      fc.property(shape, fc.array(change, { minLength: 1, maxLength: 6 }), (base, changes) => {
        const lineOf = (tags: string[], fields: Array<[string, number]>) =>
          `m${tags.map((k, i) => `,${k}=v${i}`).join('')} ${fields.map(([k, t]) => `${k}=${kinds[t]}`).join(',')} 1`
        const lines = [lineOf(base.tags, base.fields)]
        for (const c of changes) {
          const tags = [...base.tags]
          const fields = base.fields.map(([k, t]) => [k, t] as [string, number])
          const f = c.which % fields.length
          const g = c.other % fields.length
          if (c.what === 1) {
            const [k, t] = fields[f] as [string, number]
            const i = c.at % k.length
            fields[f] = [`${k.slice(0, i)}${k[i] === 'a' ? 'b' : 'a'}${k.slice(i + 1)}`, t]
          } else if (c.what === 2) fields[f] = [(fields[f] as [string, number])[0], (c.at % 4) + 1]
          else if (c.what === 3) fields[f] = [(fields[g] as [string, number])[0], c.at % 5]
          else if (c.what === 4 && tags.length > 0) {
            if (c.at % 2 === 0) tags[c.which % tags.length] = tags[c.other % tags.length] as string
            else fields[f] = [tags[c.other % tags.length] as string, (fields[f] as [string, number])[1]]
          }
          lines.push(lineOf(tags, fields))
        }
        const src = Buffer.from(lines.join('\n'))
        expect(run(fast, src, TAGGING, 'ns')).toEqual(run(scanner, src, TAGGING, 'ns'))
      }),
      { numRuns: 1000 },
    )
    // The same keys in another order are other keys to the fast path, and still fine.
    const swapped = Buffer.from('m,a=1,b=2 x=1,y=2 1\nm,b=1,a=2 y=1,x=2 2\nm,b=1,b=2 y=1,x=2 3')
    expect(run(fast, swapped, TAGGING, 'ns')).toEqual(run(scanner, swapped, TAGGING, 'ns'))
    expect(run(scanner, swapped, TAGGING, 'ns').error).toMatch(/^3: /)
    // A field repeated with its type is fine; the same keys with another type are not.
    const retyped = Buffer.from('m a=1,a=2 1\nm a=1,a=2i 2')
    expect(run(fast, retyped, TAGGING, 'ns')).toEqual(run(scanner, retyped, TAGGING, 'ns'))
    expect(run(scanner, retyped, TAGGING, 'ns').error).toMatch(/^2: /)
  })

  it('takes plain ASCII frames at every explicit precision, with and without timestamps', () => {
    const body = Buffer.from(
      ['cpu,host=a\\ b,region=us-west usage=98.2,n=3i,u=4u,ok=t,s="x \\"y\\"" 1700000000', 'm f=1', '', '# c', 'm,t=1  f=-1.5e-3   -12\r'].join('\n'),
    )
    for (const p of ['ns', 'us', 'ms', 's'] as const) {
      const want = run(scanner, body, TAGGING, p)
      expect(want.ok).toBe(true)
      expect(run(fast, body, TAGGING, p)).toEqual(want)
      expect(fast.fastPathUsed).toBe(true)
    }
  })

  it('leaves to the scanner what it does not take, with the same result', () => {
    const cases = [
      'cpu,user=mallory,host=a f=1 1', // a client tag with a server-side key: dropped by the scanner
      'cpu,host=é f=1 1', // UTF-8
      'cpu f=9223372036854775807i 1', // an integer at its limit
      'cpu f=1e300 1', // a positive exponent
      'cpu f=1 1\ncpu f= 2', // an error on line 2
      'cpu user=1 2', // a field named like a server-side tag
    ]
    for (const c of cases) {
      const src = Buffer.from(c)
      expect(run(fast, src, TAGGING, 'ns')).toEqual(run(scanner, src, TAGGING, 'ns'))
      expect(fast.fastPathUsed).toBe(false)
    }
    // precision=auto is the scanner's
    const src = Buffer.from('cpu f=1 1700000000')
    expect(run(fast, src, TAGGING, 'auto')).toEqual(run(scanner, src, TAGGING, 'auto'))
    expect(fast.fastPathUsed).toBe(false)
  })

  it('asks for the default time once per frame, only when a line has none', () => {
    let asked = 0
    const now = (): string => {
      asked++
      return NOW
    }
    expect(fast.rewrite(Buffer.from('m f=1 5\nm f=2 6'), TAGGING, now)).toBe(true)
    expect(asked).toBe(0)
    expect(fast.rewrite(Buffer.from('m f=1 5\nm f=2\nm f=3'), TAGGING, now)).toBe(true)
    expect(fast.fastPathUsed).toBe(true)
    expect(asked).toBe(1)
    expect(Buffer.from(fast.output).toString()).toBe(
      `m,user=john_doe,org=acme\\ corp f=1 5\nm,user=john_doe,org=acme\\ corp f=2 ${NOW}\nm,user=john_doe,org=acme\\ corp f=3 ${NOW}\n`,
    )
  })

  it('grows its memory for a large frame and still agrees after it, and leaves a huge one to the scanner', () => {
    const line = (i: number): string => `cpu,host=server${i % 100},region=us-west usage_idle=98.2,usage_user=1.1 ${1_700_000_000_000_000_000n + BigInt(i)}`
    for (const count of [10, 20_000, 3, 200_000, 1]) {
      const src = Buffer.from(Array.from({ length: count }, (_, i) => line(i)).join('\n'))
      const want = run(scanner, src, TAGGING, 'ns')
      expect(run(fast, src, TAGGING, 'ns')).toEqual(want)
      expect(want.lines).toBe(count)
      // 200,000 lines are about 16 MB: more than the fast path's memory may hold
      expect(fast.fastPathUsed).toBe(count < 200_000)
    }
  })

  it('is built from its source (scripts/build-wasm.mjs --check)', () => {
    // Throws (exit code 1) when src/ingest/line-protocol/wasm-module.ts is stale.
    execFileSync(process.execPath, ['scripts/build-wasm.mjs', '--check'], { cwd: ROOT, stdio: 'pipe' })
  }, 60_000)
})
