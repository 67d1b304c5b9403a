/**
 * Conformance against the public InfluxData line-protocol corpus (MIT), read from the
 * shared fixtures folder beside the repository, never copied into it. Expected outputs
 * there come from the Go decoder github.com/influxdata/line-protocol/v2, whose corpus
 * harness sorts tags by key and refuses duplicate tag keys.
 *
 * Every decode case with a supported precision must give the same result as the Go
 * decoder, except the deliberate differences in DEVIATIONS, each with a reason and a
 * bound on how many corpus cases it may explain.
 */
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  LineProtocolError,
  decodeLines,
  makeTagging,
  scanFrame,
  type FieldValue,
  type Point,
  type Precision,
} from '../../src/ingest/line-protocol/index.js'

const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
const corpusFile = path.resolve(repoRoot, '..', 'shared', 'fixtures', 'line-protocol-corpus', 'corpus.json')
const present = existsSync(corpusFile)
const inCI = process.env.CI === 'true'
if (!present && !inCI) console.warn(`line-protocol corpus not found at ${corpusFile}: corpus suite skipped`)

const PRECISIONS: Record<string, Precision | undefined> = { '1ns': 'ns', '1µs': 'us', '1ms': 'ms', '1s': 's' }

interface CorpusValue { int?: string; uint?: string; float?: number; bool?: boolean; string?: string; binary?: string }
interface CorpusPoint {
  time: string
  name: string | { binary: string }
  tags: Array<{ key: string; value: string }>
  fields: Array<{ key: string; value: CorpusValue }>
}
interface DecodeEntry {
  input: { key: string; text: string | { binary: string }; defaultTime: string; precision: string }
  output: { result?: CorpusPoint[]; error?: string }
}

/** One corpus case after running it through our decoder. */
interface Outcome {
  key: string
  text: string
  precision: Precision
  defaultTime: string
  expected: Point[] | null // null: the Go decoder refused it
  goLine: number | null // line of the Go error, when it names one
  ours: Point[] | null
  ourError: LineProtocolError | null
}

interface Deviation {
  id: string
  reason: string
  /** Most corpus cases this rule may explain; a regression cannot hide behind it. */
  max: number
  matches(o: Outcome): boolean
}

const hasControl = (s: string): boolean => /[\x00-\x1f\x7f]/.test(s)

const DEVIATIONS: Deviation[] = [
  {
    id: 'string-field-spans-lines',
    reason: 'frames are split at "\\n" before parsing (ERR line N counts those lines), so a string field cannot contain a raw newline; the Go decoder accepts one',
    max: 5,
    matches: (o) => o.ours === null && (o.expected?.some((p) => p.fields.some(([, v]) => 'string' in v && v.string.includes('\n'))) ?? false),
  },
  {
    id: 'time-key',
    reason: 'sink: InfluxDB refuses "time" as a tag or field key (it is the timestamp column); the Go decoder accepts it',
    max: 2,
    matches: (o) => o.ours === null && /"time" cannot be a tag or field key/.test(o.ourError?.reason ?? ''),
  },
  {
    id: 'tab-only-blank-line',
    reason: 'a line of only spaces and tabs is skipped as blank; the Go decoder skips only spaces',
    max: 2,
    matches: (o) => o.expected === null && o.ours !== null && o.text.split('\n').some((l) => /^[ \t]*\t[ \t]*\r?$/.test(l)),
  },
  {
    id: 'control-char-in-tag-value',
    reason: 'control characters are refused everywhere outside string fields; this corpus version of the Go decoder lets them through in tag values (and then fails on a later line, or not at all)',
    max: 5,
    matches: (o) =>
      o.ourError !== null &&
      /^control character/.test(o.ourError.reason) &&
      ((o.expected?.some((p) => p.tags.some(([, v]) => hasControl(v))) ?? false) ||
        (o.expected === null && o.goLine !== null && o.goLine > (o.ourError.line ?? 0))),
  },
]

function corpusValue(v: CorpusValue): FieldValue {
  if (v.int !== undefined) return { int: v.int }
  if (v.uint !== undefined) return { uint: v.uint }
  if (v.float !== undefined) return { float: v.float }
  if (v.bool !== undefined) return { bool: v.bool }
  if (v.string !== undefined) return { string: v.string }
  throw new Error(`unexpected corpus value ${JSON.stringify(v)}`)
}

const byKey = (a: [string, string], b: [string, string]): number => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)

/** Tags sorted by key, as the Go corpus harness reports them. */
function normalise(points: Point[]): Point[] {
  return points.map((p) => ({ ...p, tags: [...p.tags].sort(byKey) }))
}

function loadCorpus(): Record<string, DecodeEntry> {
  // Integers in the corpus exceed 2^53: keep time, defaultTime, int and uint as strings.
  const raw = readFileSync(corpusFile, 'utf8').replace(/"(time|defaultTime|int|uint)":\s*(-?\d+)/g, '"$1": "$2"')
  return (JSON.parse(raw) as { decode: Record<string, DecodeEntry> }).decode
}

const GATEWAY_TAGS = [['gw_user', 'John Doe'], ['gw_org', 'acme,corp']] as const

describe.skipIf(!present && !inCI)('line-protocol corpus (InfluxData, Go decoder outputs)', () => {
  const outcomes: Outcome[] = []
  const skipped = new Map<string, number>()
  const invalidUtf8: Buffer[] = [] // inputs that are not UTF-8
  const skip = (why: string): void => void skipped.set(why, (skipped.get(why) ?? 0) + 1)

  beforeAll(() => {
    expect(present, `line-protocol corpus missing at ${corpusFile} (required when CI=true)`).toBe(true)
    for (const entry of Object.values(loadCorpus())) {
      const { input, output } = entry
      const precision = PRECISIONS[input.precision]
      if (precision === undefined) {
        skip(`precision ${input.precision} not supported (API takes ns, us, ms, s)`)
        continue
      }
      let text: string
      if (typeof input.text === 'string') text = input.text
      else {
        const bytes = Buffer.from(input.text.binary, 'base64')
        try {
          text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
        } catch {
          // Not comparable with the Go decoder's output: the gateway refuses what is not UTF-8.
          skip('invalid UTF-8: refused (see the test below)')
          invalidUtf8.push(bytes)
          continue
        }
      }
      let expected: Point[] | null = null
      if (output.result !== undefined) {
        expected = output.result.map((p) => {
          if (typeof p.name !== 'string') throw new Error(`binary name in a UTF-8 case ${input.key}`)
          return {
            measurement: p.name,
            tags: p.tags.map((t): [string, string] => [t.key, t.value]),
            fields: p.fields.map((f): [string, FieldValue] => [f.key, corpusValue(f.value)]),
            timeNs: p.time,
          }
        })
      }
      const goLine = /at line (\d+):/.exec(output.error ?? '')?.[1]
      let ours: Point[] | null = null
      let ourError: LineProtocolError | null = null
      try {
        ours = decodeLines(text, precision, input.defaultTime)
      } catch (e) {
        if (!(e instanceof LineProtocolError)) throw e
        ourError = e
      }
      outcomes.push({
        key: input.key,
        text,
        precision,
        defaultTime: input.defaultTime,
        expected,
        goLine: goLine === undefined ? null : Number(goLine),
        ours,
        ourError,
      })
    }
  })

  const deviationOf = (o: Outcome): Deviation | undefined => DEVIATIONS.find((d) => d.matches(o))
  const agreesWithGo = (o: Outcome): boolean =>
    o.expected === null
      ? o.ours === null && (o.goLine === null || o.goLine === o.ourError?.line)
      : o.ours !== null && JSON.stringify(normalise(o.ours)) === JSON.stringify(normalise(o.expected))

  it('accepts every valid case with the same points, and rejects every invalid case on the same line', () => {
    const unexplained = outcomes.filter((o) => !agreesWithGo(o) && deviationOf(o) === undefined)
    const show = unexplained.slice(0, 10).map((o) => ({
      key: o.key,
      text: o.text.slice(0, 200),
      expected: o.expected === null ? `error on line ${o.goLine}` : JSON.stringify(normalise(o.expected)).slice(0, 300),
      ours: o.ours === null ? o.ourError?.message : JSON.stringify(normalise(o.ours)).slice(0, 300),
    }))
    expect(show).toEqual([])
  })

  it('keeps each deliberate difference within its stated bound', () => {
    const counts = Object.fromEntries(DEVIATIONS.map((d) => [d.id, 0]))
    for (const o of outcomes) {
      if (agreesWithGo(o)) continue
      const d = deviationOf(o)
      if (d !== undefined) counts[d.id]! += 1
    }
    for (const d of DEVIATIONS) expect(counts[d.id], `${d.id}: ${d.reason}`).toBeLessThanOrEqual(d.max)
  })

  it('scanFrame accepts and refuses exactly what decodeLines does, on the same line', () => {
    const tagging = makeTagging([])
    for (const o of outcomes) {
      const r = scanFrame(o.text, tagging, o.defaultTime, o.precision)
      if (o.ours !== null) expect(r.ok, o.key).toBe(true)
      else expect(r, o.key).toEqual({ ok: false, line: o.ourError?.line, reason: o.ourError?.reason })
    }
  })

  it('rewrites every accepted case into ns lines carrying the server-side tags, idempotently', () => {
    const tagging = makeTagging(GATEWAY_TAGS)
    for (const o of outcomes) {
      if (o.ours === null) continue
      const r = scanFrame(o.text, tagging, o.defaultTime, o.precision)
      if (!r.ok) throw new Error(`${o.key}: ${r.reason}`)
      expect(r.lines, o.key).toBe(o.ours.length)
      const withTags = o.ours.map((p) => ({ ...p, tags: [...p.tags, ...GATEWAY_TAGS.map(([k, v]): [string, string] => [k, v])] }))
      expect(decodeLines(r.text, 'ns'), o.key).toEqual(withTags)
      const again = scanFrame(r.text, tagging, '0', 'ns')
      expect(again, o.key).toMatchObject({ ok: true, text: r.text, lines: r.lines })
    }
  })

  it('refuses every input that is not UTF-8 (a binary frame, an HTTP body), naming its line', () => {
    expect(invalidUtf8.length).toBeGreaterThan(0)
    const tagging = makeTagging(GATEWAY_TAGS)
    for (const bytes of invalidUtf8) {
      const r = scanFrame(bytes, tagging, '0')
      expect(r.ok, bytes.toString('hex')).toBe(false)
      if (!r.ok) expect(r.line).toBeGreaterThan(0)
    }
  })

  afterAll(() => {
    if (outcomes.length === 0) return
    const accepted = outcomes.filter((o) => o.ours !== null).length
    const counts = DEVIATIONS.map((d) => `${d.id}=${outcomes.filter((o) => !agreesWithGo(o) && deviationOf(o) === d).length}/${d.max}`)
    const skips = [...skipped].map(([why, n]) => `${n} skipped (${why})`)
    console.info(
      `line-protocol corpus: ${outcomes.length} cases run, ${accepted} accepted, ${outcomes.length - accepted} rejected; ` +
        `${skips.join('; ') || 'none skipped'}; deliberate differences: ${counts.join(', ')}`,
    )
  })
})
