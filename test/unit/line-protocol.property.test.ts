/**
 * Property tests of the byte line-protocol scanner against the reference decoder (the
 * earlier string scanner, test/reference/line-protocol/): for any valid frame the byte
 * path and the reference agree on every point, its output is canonical and decodes to
 * the input plus the server-side tags, and invalid UTF-8 and every error class of the
 * scanner give the same `ERR line N` as before. The seed is not fixed: fast-check prints
 * it with the counterexample on failure.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeLines, makeTagging, scanFrame, type Point, type Precision } from '../../src/ingest/line-protocol/index.js'
import * as ref from '../reference/line-protocol/line-protocol.js'
import { LINE_OK, line as refLine, scanLine as refScanLine } from '../reference/line-protocol/line-protocol-scan.js'
import { escapeFieldKey, escapeMeasurement, escapeStringField, escapeTagKey, escapeTagValue } from '../reference/line-protocol/line-protocol-escape.js'

type Tags = Array<[string, string]>

const D = '1700000000123456789'
const ZEROS: Record<Precision, number> = { ns: 0, us: 3, ms: 6, s: 9, auto: 0 }
/** Keys the generated lines never use except as the dropped client tag. */
const RESERVED = ['time', 'user', 'org']
/** Asked for by a frame whose every line has a timestamp: must not be called. */
const noDefault = (): string => {
  throw new Error('default time asked for, but every line has a timestamp')
}

// Names mix ordinary characters with every separator, quote, backslash and multi-unit ones.
const nameChar = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('a', 'b', 'z', 'Q', '0', '7', '_', '-', '.', ':') },
  { weight: 2, arbitrary: fc.constantFrom(',', '=', ' ', '\\', '"', '#', "'", '+') },
  { weight: 1, arbitrary: fc.constantFrom('é', 'ß', '中', '€', '😀', '𝄞') },
)
/** An unescaped name that round-trips (no trailing backslash: it would escape the separator). */
const name = fc.string({ unit: nameChar, minLength: 1, maxLength: 8 }).map((s) => (s.endsWith('\\') ? `${s}x` : s))
const measurement = name.map((s) => (s.startsWith('#') ? `m${s}` : s))
const key = name.filter((k) => !RESERVED.includes(k))

const floatValue = fc.oneof(
  fc.stringMatching(/^-?(\d{1,6}(\.\d{0,4})?|\.\d{1,4})([eE][-+]?\d{1,2})?$/),
  fc.constantFrom('0', '-0', '.5', '-.5', '1.', '1E+10', '1e308', '1.7976931348623157e308', '5e-324', '-1e-400', '0e999', '00012.50'),
)
const intValue = fc.oneof(
  fc.stringMatching(/^-?\d{1,18}i$/),
  fc.constantFrom('9223372036854775807i', '-9223372036854775808i', '0i', '-0i', '007i'),
)
const uintValue = fc.oneof(fc.stringMatching(/^\d{1,19}u$/), fc.constantFrom('18446744073709551615u', '0u'))
const boolValue = fc.constantFrom('t', 'T', 'true', 'True', 'TRUE', 'f', 'F', 'false', 'False', 'FALSE')
// String contents as written: escapes, literal backslashes, control characters (only NUL is refused).
const stringPiece = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('a', 'Z', '9', ' ', ',', '=', '#', "'", 'é', '中', '😀', '𝄞', '\t', '\r', '\x01', '\x7f') },
  { weight: 1, arbitrary: fc.constantFrom('\\"', '\\\\', '\\a', '\\n', '\\ ', '\\,', '\\=', '\\é', '\\😀') },
)
const stringValue = fc.array(stringPiece, { maxLength: 10 }).map((p) => `"${p.join('')}"`)
const fieldValue = fc.oneof(floatValue, intValue, uintValue, boolValue, stringValue, fc.constant(`"${escapeStringField('say "hi" \\o/')}"`))

const spaces = fc.constantFrom(' ', ' ', ' ', '  ', '   ')

/** A timestamp as written at the precision, in int64 range once made ns; leading zeros sometimes. */
function timestamp(precision: Precision): fc.Arbitrary<string> {
  const max = 10n ** BigInt(18 - ZEROS[precision]) - 1n
  return fc
    .tuple(fc.bigInt({ min: -max, max }), fc.constantFrom('', '', '', '0', '000'))
    .map(([t, zeros]) => (t < 0n ? `-${zeros}${-t}` : `${zeros}${t}`))
}

/** A valid data line, with the spans (UTF-16 offsets in the line) where a character may be inserted. */
interface DataLine {
  text: string
  spots: Array<[number, number]>
}

/** `keys` caps the tags and the fields of a line (over 24 keys in all the scanner checks them another way). */
function dataLine(precision: Precision, keys: number): fc.Arbitrary<DataLine> {
  return fc
    .record({
      lead: fc.constantFrom('', '', '', ' ', '  '),
      m: measurement,
      tagKeys: fc.uniqueArray(key, { maxLength: keys }),
      tagValues: fc.array(name, { minLength: keys, maxLength: keys }),
      fieldKeys: fc.uniqueArray(key, { minLength: 1, maxLength: keys }),
      values: fc.array(fieldValue, { minLength: keys, maxLength: keys }),
      client: fc.option(fc.record({ key: fc.constantFrom('user', 'org'), value: name, at: fc.nat() })),
      sp1: spaces,
      sp2: spaces,
      ts: fc.option(timestamp(precision)),
      trailing: fc.constantFrom('', '', '', ' ', '  '),
    })
    .filter((r) => !r.fieldKeys.some((k) => r.tagKeys.includes(k)))
    .map((r) => {
      const spots: Array<[number, number]> = []
      let text = r.lead
      const token = (raw: string): void => {
        spots.push([text.length, text.length + raw.length])
        text += raw
      }
      token(escapeMeasurement(r.m))
      const tags: Tags = r.tagKeys.map((k, i) => [k, r.tagValues[i]!])
      if (r.client !== null) tags.splice(r.client.at % (tags.length + 1), 0, [r.client.key, r.client.value])
      for (const [k, v] of tags) {
        text += `,${escapeTagKey(k)}=`
        token(escapeTagValue(v))
      }
      text += r.sp1
      r.fieldKeys.forEach((k, i) => {
        if (i > 0) text += ','
        token(escapeFieldKey(k))
        const v = r.values[i]!
        text += '='
        if (v.startsWith('"')) {
          text += '"'
          token(v.slice(1, -1))
          text += '"'
        } else text += v
      })
      if (r.ts !== null) text += r.sp2 + r.ts
      return { text: text + r.trailing, spots }
    })
}

const blankLine = fc.constantFrom('', ' ', '  ', '\t', ' \t ')
const commentLine = fc
  .tuple(fc.constantFrom('', ' '), fc.string({ unit: fc.constantFrom('a', ' ', '#', ',', '=', '"', '\\', 'é', '😀'), maxLength: 10 }))
  .map(([lead, s]) => `${lead}#${s}`)

/** A frame as its lines (each with its terminator), data lines marked. */
interface Frame {
  precision: Precision
  lines: Array<{ text: string; eol: string; data?: DataLine }>
}

function frameOf(keys: number): fc.Arbitrary<Frame> {
  return fc.constantFrom<Precision>('ns', 'us', 'ms', 's', 'auto').chain((precision) =>
    fc
      .record({
        lines: fc.array(
          fc.record({
            line: fc.oneof(
              { weight: 6, arbitrary: dataLine(precision, keys).map((d) => ({ text: d.text, data: d })) },
              { weight: 1, arbitrary: blankLine.map((text) => ({ text })) },
              { weight: 1, arbitrary: commentLine.map((text) => ({ text })) },
            ),
            eol: fc.constantFrom('\n', '\n', '\r\n'),
          }),
          { minLength: 1, maxLength: 8 },
        ),
        lastEol: fc.boolean(),
      })
      .map(({ lines, lastEol }) => ({
        precision,
        lines: lines.map(({ line, eol }, i) => ({ ...line, eol: i === lines.length - 1 && !lastEol ? '' : eol })),
      })),
  )
}

const frameArb = frameOf(5)

function textOf(f: Frame): string {
  return f.lines.map((l) => l.text + l.eol).join('')
}

const serverTags: fc.Arbitrary<Tags> = fc.tuple(name, name).map(([u, o]) => [['user', u], ['org', o]])
const defaultTime = fc.oneof(fc.constant(D), fc.bigInt({ min: -(2n ** 62n), max: 2n ** 62n }).map(String))

/** What the output must decode to: the reference's points, client user/org replaced by the server's. */
function expectedPoints(text: string, precision: Precision, def: string, tags: Tags): Point[] {
  return ref.decodeLines(text, precision, def).map((p) => ({
    ...p,
    tags: [...p.tags.filter(([k]) => k !== 'user' && k !== 'org'), ...tags],
  }))
}

/**
 * Canonical line protocol, checked with the reference scanner's token positions: every
 * line ends with '\n' (a '\r' before it would spoil the timestamp), starts with the
 * measurement, has one space before the fields and one before an ns timestamp that ends the line.
 */
function expectCanonical(out: string): void {
  expect(out === '' || out.endsWith('\n'), 'ends with a newline').toBe(true)
  for (let ls = 0; ls < out.length; ) {
    const nl = out.indexOf('\n', ls)
    const where = JSON.stringify(out.slice(ls, nl + 1))
    expect(refScanLine(out, ls, nl, 0, []), where).toBe(LINE_OK)
    expect(refLine.mStart, `leading space in ${where}`).toBe(ls)
    expect(refLine.fKS[0], `one space before the fields in ${where}`).toBe(refLine.tagsEnd + 1)
    expect(refLine.tsStart, `one space before the timestamp in ${where}`).toBe(refLine.fieldsEnd + 1)
    expect(refLine.tsEnd, `nothing after the timestamp in ${where}`).toBe(nl)
    ls = nl + 1
  }
}

function ok<R extends { ok: boolean }>(r: R): Extract<R, { ok: true }> {
  if (!r.ok) throw new Error(`refused: ${JSON.stringify(r)}`)
  return r as Extract<R, { ok: true }>
}

/** A result without its output, to compare refusals (and acceptance) between paths. */
function verdict(r: { ok: boolean; line?: number; reason?: string }): object {
  return r.ok ? { ok: true } : { ok: false, line: r.line, reason: r.reason }
}

/**
 * The reference's verdict, but with the two reasons the byte scanner words differently:
 * - where a key runs into the end of a line inside a frame, the reference quoted the '\r'
 *   or '\n' itself (a line break inside an `ERR line N: ...` reply); the byte scanner says
 *   "end of line", as the reference did at the frame's end;
 * - where it quoted an unpaired surrogate as the unexpected character, the byte scanner
 *   names it ("unpaired UTF-16 surrogate at column N"), so no reply quotes one.
 */
function refVerdict(r: { ok: boolean; line?: number; reason?: string }, text: string): object {
  if (r.ok) return verdict(r)
  let reason = r.reason?.replace(/, found "[\r\n]" at/, ', found end of line at')
  const quoted = reason?.match(/^(?:unexpected|expected "=" after .*, found) "[\uD800-\uDFFF]".* at column (\d+)$/)
  if (quoted && r.line !== undefined) {
    const column = Number(quoted[1])
    const lineText = text.split('\n')[r.line - 1] ?? ''
    // The character at the column: the first half of a pair is shown as before.
    if (!wellFormed(lineText.slice(column - 1, column + 1))) reason = `unpaired UTF-16 surrogate at column ${column}`
  }
  return verdict({ ...r, reason })
}

/** Whether Buffer.from(s) holds s exactly (no unpaired surrogate to become U+FFFD). */
function wellFormed(s: string): boolean {
  return !/\p{Cs}/u.test(s)
}

describe('line protocol byte scanner against the reference', () => {
  it.each([
    { keys: 5, runs: 300 },
    { keys: 20, runs: 20 },
  ])('accepts every valid frame (up to $keys tags and fields a line), as a string and as bytes, and decodes to the reference points plus the server tags', ({ keys, runs }) => {
    fc.assert(
      fc.property(frameOf(keys), serverTags, defaultTime, fc.boolean(), (frame, tags, def, lazy) => {
        const text = textOf(frame)
        const tagging = makeTagging(tags)
        const expected = expectedPoints(text, frame.precision, def, tags)
        const fromText = ok(scanFrame(text, tagging, lazy ? () => def : def, frame.precision))
        expect(fromText.bytes.toString('utf8')).toBe(fromText.text)
        // Bytes as a Buffer, as a view into the middle of a larger buffer (a WebSocket
        // frame often is one), and as a plain Uint8Array.
        const utf8 = Buffer.from(text)
        const inside = Buffer.concat([Buffer.from([0xff, 0x0a]), utf8, Buffer.from([0x0a, 0xff])]).subarray(2, 2 + utf8.length)
        for (const bytes of [utf8, inside, new Uint8Array(utf8)]) {
          const fromBytes = ok(scanFrame(bytes, tagging, def, frame.precision))
          expect(fromBytes.bytes.equals(fromText.bytes)).toBe(true)
          expect(fromBytes.text).toBe(fromText.text)
        }
        expect(fromText.lines).toBe(expected.length)
        expect(decodeLines(fromText.text)).toEqual(expected)
        expect(decodeLines(fromText.bytes)).toEqual(expected)
        expect(ref.decodeLines(fromText.text)).toEqual(expected)
      }),
      { numRuns: runs },
    )
  })

  it('writes canonical line protocol, which it and the reference pass through unchanged', () => {
    fc.assert(
      fc.property(frameArb, serverTags, (frame, tags) => {
        const tagging = makeTagging(tags)
        const out = ok(scanFrame(textOf(frame), tagging, D, frame.precision)).text
        expectCanonical(out)
        // Its own server tags are dropped and appended again; no line needs the default time.
        expect(ok(scanFrame(out, tagging, noDefault)).text).toBe(out)
        expect(ok(scanFrame(out, makeTagging([]), noDefault)).text).toBe(out)
        expect(ok(ref.scanFrame(out, ref.makeTagging(tags), noDefault)).text).toBe(out)
      }),
      { numRuns: 300 },
    )
  })

  // Edits from an alphabet rich in separators, number syntax, controls and lone surrogates.
  const editChar = fc.constantFrom(
    ',', '=', ' ', '"', '\\', '#', '\t', '\r', '\n', '0', '9', 'a', 'i', 'u', 'e', 'E', '.', '-', '+', 't', 'F',
    '\x00', '\x01', '\x7f', 'é', '😀', '\ud800', '\udc00',
  )
  const edit = fc.record({ op: fc.constantFrom('insert', 'delete', 'replace'), at: fc.nat(), ch: editChar })
  const mutated = fc
    .tuple(frameArb, fc.array(edit, { minLength: 1, maxLength: 4 }))
    .map(([frame, edits]) => {
      let s = textOf(frame)
      for (const { op, at, ch } of edits) {
        const i = at % (s.length + 1)
        s = s.slice(0, i) + (op === 'delete' ? '' : ch) + s.slice(op === 'insert' ? i : i + 1)
      }
      return { text: s, precision: frame.precision }
    })
  const random = fc.record({
    text: fc.oneof(fc.string({ unit: editChar, maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 })),
    precision: fc.constantFrom<Precision>('ns', 's', 'auto'),
  })

  it('agrees with the reference on any text: the same refusal, or points that decode alike', () => {
    const tags: Tags = [['user', 'u'], ['org', 'o']]
    const tagging = makeTagging(tags)
    const refTagging = ref.makeTagging(tags)
    fc.assert(
      fc.property(fc.oneof(mutated, random), ({ text, precision }) => {
        const mine = scanFrame(text, tagging, D, precision)
        const theirs = ref.scanFrame(text, refTagging, D, precision)
        expect(verdict(mine)).toEqual(refVerdict(theirs, text))
        if (wellFormed(text)) {
          const fromBytes = scanFrame(Buffer.from(text), tagging, D, precision)
          expect(verdict(fromBytes)).toEqual(verdict(mine))
          if (fromBytes.ok && mine.ok) expect(fromBytes.bytes.equals(mine.bytes)).toBe(true)
        }
        if (mine.ok && theirs.ok) {
          expectCanonical(mine.text)
          expect(decodeLines(mine.text)).toEqual(ref.decodeLines(theirs.text))
        }
      }),
      { numRuns: 1200 },
    )
  })

  // Lone continuation, truncated leads, overlong forms, beyond U+10FFFF, never-valid bytes.
  const badUtf8 = fc.constantFrom(
    [0x80], [0xbf], [0xc3], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80],
    [0xe0, 0x9f, 0xbf], [0xf0, 0x80, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf5], [0xf8, 0x88], [0xfe], [0xff],
  )
  // UTF-8 for U+D800..U+DFFF, which a UTF-16 string cannot hold unpaired.
  const surrogateUtf8 = fc.constantFrom([0xed, 0xa0, 0x80], [0xed, 0xaf, 0xbf], [0xed, 0xb0, 0x80], [0xed, 0xbf, 0xbf])

  it('refuses invalid UTF-8 inside a name or a string field on its line, at its column', () => {
    const tagging = makeTagging([['user', 'u'], ['org', 'o']])
    const withData = frameArb.filter((f) => f.lines.some((l) => l.data !== undefined))
    fc.assert(
      fc.property(withData, fc.nat(), fc.nat(), fc.nat(), fc.oneof(badUtf8, surrogateUtf8), (frame, pickLine, pickSpot, pickAt, bad) => {
        const data = frame.lines.flatMap((l, i) => (l.data === undefined ? [] : [{ i, data: l.data }]))
        const { i, data: d } = data[pickLine % data.length]!
        const [a, b] = d.spots[pickSpot % d.spots.length]!
        let at = a + (pickAt % (b - a + 1))
        if (/[\udc00-\udfff]/.test(d.text[at] ?? '')) at-- // never between the halves of a pair
        const before = frame.lines.slice(0, i).map((l) => l.text + l.eol).join('') + d.text.slice(0, at)
        const bytes = Buffer.concat([Buffer.from(before), Buffer.from(bad), Buffer.from(textOf(frame).slice(before.length))])
        const r = scanFrame(bytes, tagging, D, frame.precision)
        expect(r.ok).toBe(false)
        if (r.ok) return
        expect(r.line).toBe(i + 1)
        const surrogate = bad[0] === 0xed ? '|unpaired UTF-16 surrogate' : ''
        expect(r.reason).toMatch(new RegExp(`^(invalid UTF-8${surrogate}) at column ${at + 1}(\\D|$)`))
      }),
      { numRuns: 400 },
    )
  })

  // Bad bytes where no name or value can absorb them: after a string field, in a comment or a blank line, after a timestamp.
  it.each([
    { before: 'm f="x"', bad: [0xed, 0xa0, 0x80], after: '' },
    { before: 'm f="x"', bad: [0xff], after: ' 1' },
    { before: 'm f="x",g="y"', bad: [0xf0, 0x9f, 0x98], after: '' },
    { before: '#c', bad: [0xff], after: '' },
    { before: ' #', bad: [0xed, 0xbf, 0xbf], after: 'c' },
    { before: '  ', bad: [0x80], after: '' },
    { before: 'm f=1 ', bad: [0xc3], after: '' },
    { before: 'm f=1 1 ', bad: [0xe0, 0x80, 0x80], after: '' },
    { before: 'm f="a', bad: [0xff], after: '' },
  ])('refuses $bad after $before as invalid UTF-8 at its column', ({ before, bad, after }) => {
    const r = scanFrame(Buffer.concat([Buffer.from(`m f=1\n${before}`), Buffer.from(bad), Buffer.from(`${after}\nm f=2`)]), makeTagging([]), D)
    const surrogate = bad[0] === 0xed ? '|unpaired UTF-16 surrogate' : ''
    expect(verdict(r)).toEqual({ ok: false, line: 2, reason: expect.stringMatching(new RegExp(`^(invalid UTF-8${surrogate}) at column ${before.length + 1}(\\D|$)`)) })
  })

  it('refuses invalid UTF-8 anywhere, unless the reference refused an earlier line or (reading it as U+FFFD) an earlier column', () => {
    const tags: Tags = [['user', 'u'], ['org', 'o']]
    const tagging = makeTagging(tags)
    const refTagging = ref.makeTagging(tags)
    const validOrNot = fc.oneof(
      frameArb.map((f) => ({ text: textOf(f), precision: f.precision })),
      mutated.filter((m) => wellFormed(m.text)),
    )
    fc.assert(
      fc.property(validOrNot, fc.nat(), fc.oneof(badUtf8, surrogateUtf8), ({ text, precision }, pick, bad) => {
        let at = pick % (text.length + 1)
        if (/[\udc00-\udfff]/.test(text[at] ?? '')) at--
        const before = text.slice(0, at)
        const lineNo = before.split('\n').length
        const column = at - before.lastIndexOf('\n')
        const surrogate = bad[0] === 0xed ? '|unpaired UTF-16 surrogate' : ''
        const utf8Reason = new RegExp(`^(invalid UTF-8${surrogate}) at column ${column}(\\D|$)`)
        const bytes = Buffer.concat([Buffer.from(before), Buffer.from(bad), Buffer.from(text.slice(at))])
        const mine = scanFrame(bytes, tagging, D, precision)
        const theirs = ref.scanFrame(bytes.toString('utf8'), refTagging, D, precision)
        expect(mine.ok).toBe(false)
        if (mine.ok) return
        if (!theirs.ok && theirs.line < lineNo) {
          expect(verdict(mine)).toEqual(refVerdict(theirs, bytes.toString('utf8')))
          return
        }
        expect(mine.line).toBe(lineNo)
        // An error the reference places at or before the bad bytes (a field value that starts
        // with them is not a value) may be found before them or after.
        const earlier = !theirs.ok && theirs.line === lineNo && Number(/ at column (\d+)$/.exec(theirs.reason)?.[1]) <= column
        if (earlier && !utf8Reason.test(mine.reason)) expect(verdict(mine)).toEqual(refVerdict(theirs, bytes.toString('utf8')))
        else expect(mine.reason).toMatch(utf8Reason)
      }),
      { numRuns: 400 },
    )
  })

  const big = 65_537
  const many = (n: number): string => Array.from({ length: n }, (_, i) => `,k${i}=v`).join('')
  /** One line per error class of the scanner, with the start of the reason it must give. */
  const errors: Array<{ line: string; reason: RegExp; stringOnly?: boolean }> = [
    { line: 'm\x01 f=1', reason: /^control character U\+0001 at column 2$/ },
    { line: '\tm f=1', reason: /^control character U\+0009 at column 1$/ },
    { line: 'm,t=é\x7f f=1', reason: /^control character U\+007F at column 6$/ },
    { line: '#😀 a\x02', reason: /^control character U\+0002 at column 6$/ },
    { line: 'm f=1 1\x1b', reason: /^invalid timestamp at column 7$/ },
    { line: 'm\ud800 f=1', reason: /^unpaired UTF-16 surrogate at column 2$/, stringOnly: true },
    { line: 'm f="a\udc00"', reason: /^unpaired UTF-16 surrogate at column 7$/, stringOnly: true },
    { line: '# \ud83d', reason: /^unpaired UTF-16 surrogate at column 3$/, stringOnly: true },
    { line: ',t=1 f=1', reason: /^missing measurement at column 1$/ },
    { line: 'm,=v f=1', reason: /^empty tag key at column 3$/ },
    { line: 'm,t f=1', reason: /^expected "=" after tag key "t", found " " at column 4$/ },
    { line: 'm,t', reason: /^expected "=" after tag key "t", found end of line at column 4$/ },
    { line: 'm f', reason: /^expected "=" after field key "f", found end of line at column 4$/ },
    { line: 'm,t= f=1', reason: /^empty tag value for "t" at column 5$/ },
    { line: 'm,t=a=b f=1', reason: /^unexpected "=" at column 6$/ },
    { line: 'm,t=a', reason: /^missing field$/ },
    { line: 'm   ', reason: /^missing field$/ },
    { line: 'm =1', reason: /^empty field key at column 3$/ },
    { line: 'm f 1', reason: /^expected "=" after field key "f", found " " at column 4$/ },
    { line: 'm f=', reason: /^missing value for field "f" at column 5$/ },
    { line: 'm f=1,g= 1', reason: /^missing value for field "g" at column 9$/ },
    { line: 'm f=x', reason: /^invalid field value for "f" at column 5$/ },
    { line: 'm f=1.2.3', reason: /^invalid field value for "f" at column 5$/ },
    { line: 'm f=-1u', reason: /^invalid field value for "f" at column 5$/ },
    { line: 'm f=tru', reason: /^invalid field value for "f" at column 5$/ },
    { line: 'm f=1e', reason: /^invalid field value for "f" at column 5$/ },
    { line: 'm f=9223372036854775808i', reason: /^integer out of range for "f" at column 5$/ },
    { line: 'm f=-9223372036854775809i', reason: /^integer out of range for "f" at column 5$/ },
    { line: 'm f=18446744073709551616u', reason: /^unsigned integer out of range for "f" at column 5$/ },
    { line: 'm f=1e309', reason: /^float out of range for "f" at column 5$/ },
    { line: 'm f=-17976931348623159e292', reason: /^float out of range for "f" at column 5$/ },
    { line: 'm f="abc', reason: /^unterminated string for field "f" at column 5$/ },
    { line: 'm f="a\\"', reason: /^unterminated string for field "f" at column 5$/ },
    { line: 'm f="a\x00b"', reason: /^NUL character in string field "f" at column 7$/ },
    { line: 'm f="a"x', reason: /^unexpected "x" after field "f" at column 8$/ },
    { line: 'm f=1x', reason: /^invalid field value for "f" at column 5$/ },
    { line: 'm f=1 12a', reason: /^invalid timestamp at column 7$/ },
    { line: 'm f=1 -', reason: /^invalid timestamp at column 7$/ },
    { line: 'm f=1 9223372036854775808', reason: /^timestamp out of range at column 7$/ },
    { line: 'm f=1 1 2', reason: /^unexpected text after timestamp at column 9$/ },
    { line: 'm,a=1,a=2 f=1', reason: /^duplicate tag key "a"$/ },
    { line: `m${many(30)},k7=w f=1`, reason: /^duplicate tag key "k7"$/ },
    { line: 'm time=1', reason: /^"time" cannot be a tag or field key at column 3$/ },
    { line: 'm,time=1 f=1', reason: /^"time" cannot be a tag or field key at column 3$/ },
    { line: 'm user=1', reason: /^field key "user" is reserved for a server-side tag at column 3$/ },
    { line: 'm,a=1 a=2', reason: /^field key "a" is also a tag key at column 7$/ },
    { line: 'm a=1,a=2i', reason: /^field "a" repeated with a different type at column 7$/ },
    { line: `m${many(30)} a=1,a="x"`, reason: /^field "a" repeated with a different type at column \d+$/ },
    { line: `${'m'.repeat(big)} f=1`, reason: /^measurement exceeds 65536 bytes at column 1$/ },
    { line: `m,${'é'.repeat(32_769)}=v f=1`, reason: /^tag key exceeds 65536 bytes at column 3$/ },
    { line: `m,t=${'😀'.repeat(16_385)} f=1`, reason: /^tag value exceeds 65536 bytes at column 5$/ },
    { line: `m ${'k'.repeat(big)}=1`, reason: /^field key exceeds 65536 bytes at column 3$/ },
    { line: `m f="${'中'.repeat(21_846)}"`, reason: /^string field exceeds 65536 bytes at column 6$/ },
  ]

  it.each(errors)('refuses $reason at its line, as the reference does', ({ line, reason, stringOnly }) => {
    const tags: Tags = [['user', 'u'], ['org', 'o']]
    const tagging = makeTagging(tags)
    const refTagging = ref.makeTagging(tags)
    fc.assert(
      fc.property(frameArb, fc.nat(), fc.constantFrom('', ' '), fc.constantFrom('\n', '\r\n'), (frame, pick, lead, eol) => {
        const at = pick % (frame.lines.length + 1)
        const lines = frame.lines.map((l) => l.text)
        lines.splice(at, 0, lead + line)
        const text = lines.join(eol)
        const theirs = refVerdict(ref.scanFrame(text, refTagging, D, frame.precision), text)
        expect(theirs).toEqual({ ok: false, line: at + 1, reason: expect.stringMatching(lead === '' ? reason : /./) })
        expect(verdict(scanFrame(text, tagging, D, frame.precision))).toEqual(theirs)
        if (!stringOnly) expect(verdict(scanFrame(Buffer.from(text), tagging, D, frame.precision))).toEqual(theirs)
      }),
      { numRuns: line.length > 30_000 ? 3 : 15 },
    )
  })
})
