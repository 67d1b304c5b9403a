import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  LineProtocolError,
  decodeLine,
  decodeLines,
  encodePoint,
  escapeFieldKey,
  escapeMeasurement,
  escapeStringField,
  escapeTagKey,
  escapeTagValue,
  makeTagging,
  scanFrame,
  type FieldValue,
  type Point,
  type Precision,
} from '../../src/ingest/line-protocol/index.js'
import { nameProblem } from '../../src/ingest/line-protocol/index.js'

const D = '1700000000000000000'
const tagging = makeTagging([['user', 'john_doe'], ['org', 'acme_corp']])
const TAGS = ',user=john_doe,org=acme_corp'

function accept(frame: string, precision?: Precision, defaultTime = D): string {
  const r = scanFrame(frame, tagging, defaultTime, precision)
  if (!r.ok) throw new Error(`line ${r.line}: ${r.reason}`)
  return r.text
}

function reject(frame: string, precision?: Precision): { line: number; reason: string } {
  const r = scanFrame(frame, tagging, D, precision)
  if (r.ok) throw new Error(`accepted ${JSON.stringify(frame)} as ${JSON.stringify(r.text)}`)
  return { line: r.line, reason: r.reason }
}

/** The decoded value of a single field `f`. */
function value(v: string): FieldValue {
  return decodeLine(`m f=${v} 1`).fields[0]![1]
}

function reasonOf(line: string): string {
  try {
    decodeLine(line, 'ns', '0')
  } catch (e) {
    if (e instanceof LineProtocolError) {
      // The hot path and the decoder share one core: they must agree on every line.
      expect(reject(line).reason).toBe(e.reason)
      return e.reason
    }
    throw e
  }
  throw new Error(`accepted ${JSON.stringify(line)}`)
}

describe('rewriting with server-side tags', () => {
  it('appends user and org to the tag set and the default time to a line without one', () => {
    expect(accept('temperature,location=room1 value=23.5')).toBe(
      'temperature,location=room1,user=john_doe,org=acme_corp value=23.5 1700000000000000000\n',
    )
  })

  it('replaces a spoofed user or org tag wherever it is, never duplicating it', () => {
    expect(accept('m,user=evil,a=1 f=1i 5')).toBe(`m,a=1${TAGS} f=1i 5\n`)
    expect(accept('m,a=1,org=evil,b=2,user=evil f=1i 5')).toBe(`m,a=1,b=2${TAGS} f=1i 5\n`)
    expect(accept('m,org=x f=1 5')).toBe(`m${TAGS} f=1 5\n`)
    // Keys compare unescaped: `us\er` is not `user`, and an escaped key is still the key.
    expect(accept('m,us\\er=x f=1 5')).toBe(`m,us\\er=x${TAGS} f=1 5\n`)
  })

  it('refuses a duplicated client tag even when it is a server-side key', () => {
    expect(reject('m,user=a,user=b f=1').reason).toBe('duplicate tag key "user"')
  })

  it('refuses a field named like a server-side tag (the sink refuses a tag and field of one name)', () => {
    expect(reject('m user="x"').reason).toBe('field key "user" is reserved for a server-side tag at column 3')
    expect(decodeLine('m user="x" 1').fields).toEqual([['user', { string: 'x' }]])
  })

  it('escapes server-side tag keys and values', () => {
    const t = makeTagging([['user', 'John Doe'], ['org', 'a,b=c\\d'], ['my key', 'v']])
    const r = scanFrame('m f=1 5', t, D)
    expect(r).toMatchObject({ ok: true, text: 'm,user=John\\ Doe,org=a\\,b\\=c\\d,my\\ key=v f=1 5\n', lines: 1 })
    expect(decodeLine('m,user=John\\ Doe,org=a\\,b\\=c\\d f=1 5').tags).toEqual([['user', 'John Doe'], ['org', 'a,b=c\\d']])
    expect(scanFrame('m,my\\ key=spoof f=1 5', t, D)).toMatchObject({ text: r.ok ? r.text : '' })
  })

  it('refuses server-side tags that cannot be written', () => {
    expect(() => makeTagging([['user', '']])).toThrow(TypeError)
    expect(() => makeTagging([['', 'x']])).toThrow(TypeError)
    expect(() => makeTagging([['user', 'a\nb']])).toThrow(/control character/)
    expect(() => makeTagging([['user', 'x\\']])).toThrow(/backslash/)
    expect(() => makeTagging([['user', 'a'], ['user', 'b']])).toThrow(/duplicate/)
    expect(() => makeTagging([['time', 'a']])).toThrow(/time/)
    expect(makeTagging([]).suffix).toBe('')
  })

  it('copies the rest of the line verbatim, escapes included', () => {
    const line = 'a\\ b\\,c,k\\=1=v\\ 2 f\\,x="q\\"\\\\",g=-1.5e3,h=7u,i=T 123'
    expect(accept(line)).toBe(`a\\ b\\,c,k\\=1=v\\ 2${TAGS} f\\,x="q\\"\\\\",g=-1.5e3,h=7u,i=T 123\n`)
  })

  it('drops leading spaces, trailing spaces and extra blank lines', () => {
    expect(accept('   m f=1 5   \n\n  \n')).toBe(`m${TAGS} f=1 5\n`)
    expect(accept("m  f=1   5")).toBe(`m${TAGS} f=1 5\n`)
    expect(accept('m f=1   ')).toBe(`m${TAGS} f=1 ${D}\n`)
  })

  it('returns an empty text for an empty or blank frame', () => {
    expect(scanFrame('', tagging, D)).toMatchObject({ ok: true, text: '', lines: 0 })
    expect(scanFrame('\n\n# only a comment\n', tagging, D)).toMatchObject({ ok: true, text: '', lines: 0 })
  })
})

describe('lines, comments and line numbers', () => {
  it('skips blank and comment lines but counts them', () => {
    const frame = 'm f=1 1\n\n# comment\n   # indented comment\n \t \n#m f=2\nm f=3 3\n'
    expect(scanFrame(frame, tagging, D)).toMatchObject({ ok: true, text: `m${TAGS} f=1 1\nm${TAGS} f=3 3\n`, lines: 2 })
    expect(reject('m f=1\n\n# c\n\t\nm f=\nm f=2')).toEqual({ line: 5, reason: 'missing value for field "f" at column 5' })
  })

  it('reports the first bad line only', () => {
    expect(reject('m f=1\nbad\nworse,').line).toBe(2)
  })

  it('accepts CRLF line endings and a final line without newline', () => {
    expect(accept('m f=1 5\r\nm f=2 6\r\nm f=3 7')).toBe(`m${TAGS} f=1 5\nm${TAGS} f=2 6\nm${TAGS} f=3 7\n`)
    expect(accept('m f=1\r\n')).toBe(`m${TAGS} f=1 ${D}\n`)
    expect(reject('m\r f=1').reason).toBe('control character U+000D at column 2')
    expect(reject('m f=1\r 5').reason).toBe('invalid field value for "f" at column 5')
  })

  it('refuses control characters in comments (as the Go decoder does)', () => {
    expect(reject('# a\tb').reason).toBe('control character U+0009 at column 4')
  })

  it('follows the Go decoder on leading white space: spaces skipped, tab refused', () => {
    expect(accept('  m f=1 5')).toBe(`m${TAGS} f=1 5\n`)
    expect(reject('\tm f=1').reason).toBe('control character U+0009 at column 1')
  })
})

describe('structure errors', () => {
  it.each([
    ['m', 'missing field'],
    ['m ', 'missing field'],
    ['m,a=1', 'missing field'],
    ['m,a=1  ', 'missing field'],
    [',a=1 f=1', 'missing measurement at column 1'],
    ['m,=1 f=1', 'empty tag key at column 3'],
    ['m, f=1', 'empty tag key at column 3'],
    ['m,a f=1', 'expected "=" after tag key "a", found " " at column 4'],
    ['m,a= f=1', 'empty tag value for "a" at column 5'],
    ['m,a=1, f=1', 'empty tag key at column 7'],
    ['m,a=1=2 f=1', 'unexpected "=" at column 6'],
    ['m =1', 'empty field key at column 3'],
    ['m f', 'expected "=" after field key "f", found end of line at column 4'],
    ['m f=1,', 'empty field key at column 7'],
    ['m f=1, g=2', 'empty field key at column 7'],
    ['m f=,g=1', 'missing value for field "f" at column 5'],
    ['m f="abc', 'unterminated string for field "f" at column 5'],
    ['m f="a\\"', 'unterminated string for field "f" at column 5'],
    ['m f="a"b', 'unexpected "b" after field "f" at column 8'],
    ['m f=1 5 6', 'unexpected text after timestamp at column 9'],
    ['weather,location=home temp=oops', 'invalid field value for "temp" at column 28'],
  ])('%j: %s', (line, reason) => {
    expect(reasonOf(line)).toBe(reason)
  })
})

describe('escapes', () => {
  it('measurement: "\\," and "\\ " escape, "=" needs none, "\\=" and "\\\\" stay literal', () => {
    expect(decodeLine('a\\,b\\ c=d\\=e\\\\f x=1 1').measurement).toBe('a,b c=d\\=e\\\\f')
  })

  it('tag keys, tag values, field keys: "\\,", "\\=", "\\ " escape, other backslashes are literal', () => {
    const p = decodeLine('m,k\\,1\\=\\ =v\\,1\\=\\ \\x f\\=\\,\\ \\y=1 1')
    expect(p.tags).toEqual([['k,1= ', 'v,1= \\x']])
    expect(p.fields).toEqual([['f=, \\y', { float: 1 }]])
    // `\\` is not an escape (as in the Go decoder): `a\\,b` is `a\` followed by an escaped comma.
    expect(decodeLine('m,k=a\\\\,b f=1 1').tags).toEqual([['k', 'a\\,b']])
    expect(reasonOf('m,k=a\\\\,b=c f=1')).toBe('unexpected "=" at column 10')
  })

  it('string fields: "\\"" and "\\\\" escape, other backslashes are literal', () => {
    expect(value('"a\\"b\\\\c\\nd\\te"')).toEqual({ string: 'a"b\\c\\nd\\te' })
    expect(value('"x, y=z \\\\"')).toEqual({ string: 'x, y=z \\' })
  })

  it('escape functions produce what the decoder reads back', () => {
    expect(escapeMeasurement('a, b=c')).toBe('a\\,\\ b=c')
    expect(escapeTagKey('a, b=c')).toBe('a\\,\\ b\\=c')
    expect(escapeTagValue('John Doe')).toBe('John\\ Doe')
    expect(escapeFieldKey('x=y')).toBe('x\\=y')
    expect(escapeStringField('say "hi" \\o/')).toBe('say \\"hi\\" \\\\o/')
  })
})

describe('field values', () => {
  it.each(['t', 'T', 'true', 'True', 'TRUE'])('boolean %s is true', (b) => expect(value(b)).toEqual({ bool: true }))
  it.each(['f', 'F', 'false', 'False', 'FALSE'])('boolean %s is false', (b) => expect(value(b)).toEqual({ bool: false }))
  it.each(['tRUE', 'tr', 'yes', 'truee', 'fAlse'])('refuses boolean spelling %s', (b) => {
    expect(reasonOf(`m f=${b}`)).toBe('invalid field value for "f" at column 5')
  })

  it('integers: int64 bounds exactly, one past refused', () => {
    expect(value('9223372036854775807i')).toEqual({ int: '9223372036854775807' })
    expect(value('-9223372036854775808i')).toEqual({ int: '-9223372036854775808' })
    expect(value('007i')).toEqual({ int: '7' })
    expect(value('-0i')).toEqual({ int: '0' })
    expect(reasonOf('m f=9223372036854775808i')).toBe('integer out of range for "f" at column 5')
    expect(reasonOf('m f=-9223372036854775809i')).toBe('integer out of range for "f" at column 5')
    expect(reasonOf('m f=00000000000000000000000009223372036854775808i')).toMatch(/out of range/)
    for (const bad of ['1.5i', '-i', '1e3i', '--1i', '1ii']) expect(reasonOf(`m f=${bad}`)).toMatch(/invalid field value/)
    expect(reasonOf('m f=+1i')).toMatch(/invalid field value/)
  })

  it('unsigned integers: uint64 bounds exactly, one past refused, no sign', () => {
    expect(value('0u')).toEqual({ uint: '0' })
    expect(value('18446744073709551615u')).toEqual({ uint: '18446744073709551615' })
    expect(reasonOf('m f=18446744073709551616u')).toBe('unsigned integer out of range for "f" at column 5')
    expect(reasonOf('m f=-1u')).toMatch(/invalid field value/)
    expect(reasonOf('m f=-0u')).toMatch(/invalid field value/)
  })

  it('floats: Go ParseFloat decimal syntax', () => {
    const cases: Array<[string, number]> = [
      ['1', 1], ['1.5', 1.5], ['-1e-4', -1e-4], ['.5', 0.5], ['1.', 1], ['-.5', -0.5], ['1E5', 1e5],
      ['1e+5', 1e5], ['007.5', 7.5], ['-0', -0], ['1e-400', 0], ['1.7976931348623157e308', Number.MAX_VALUE],
      ['0.00000000000000000000000000001e337', 1e308],
    ]
    for (const [text, n] of cases) expect(value(text), text).toEqual({ float: n })
    for (const bad of ['+1.0', '1e', '.', '-', '1.2.3', '0x1p3', '1_000', '1e5.0', '1,5', 'e5', '--1']) {
      expect(() => decodeLine(`m f=${bad} 1`), bad).toThrow(LineProtocolError)
    }
  })

  it('floats: NaN and Inf refused in any case, overflow to Infinity refused', () => {
    for (const bad of ['NaN', 'nan', '-NaN', 'Inf', 'inf', '-Inf', '-inf', 'Infinity', '-Infinity', '+Inf']) {
      expect(reasonOf(`m f=${bad}`), bad).toBe('invalid field value for "f" at column 5')
    }
    expect(reasonOf('m f=1e309')).toBe('float out of range for "f" at column 5')
    expect(reasonOf('m f=-1.7976931348623159e308')).toBe('float out of range for "f" at column 5')
    expect(reasonOf('m f=1e99999999999999999999')).toBe('float out of range for "f" at column 5')
  })

  it('duplicate fields of one type are allowed (last wins in InfluxDB); different types refused', () => {
    expect(decodeLine('m f=1,f=2 1').fields).toEqual([['f', { float: 1 }], ['f', { float: 2 }]])
    expect(reasonOf('m f=1,f=2i')).toBe('field "f" repeated with a different type at column 7')
  })

  it('refuses a field key that is also a tag key, and "time" as a key (InfluxDB refuses both)', () => {
    expect(reasonOf('m,a=1 a=2')).toBe('field key "a" is also a tag key at column 7')
    expect(reasonOf('m,time=1 a=2')).toBe('"time" cannot be a tag or field key at column 3')
    expect(reasonOf('m time=2')).toBe('"time" cannot be a tag or field key at column 3')
    expect(decodeLine('time,Time=1 times=2 1').tags).toEqual([['Time', '1']])
  })
})

describe('tags', () => {
  it('refuses duplicate tag keys, compared unescaped', () => {
    expect(reasonOf('m,host=a,x=1,host=b f=1')).toBe('duplicate tag key "host"')
    expect(reasonOf('m,a\\ b=1,a\\ b=2 f=1')).toBe('duplicate tag key "a\\ b"')
    expect(decodeLine('m,a\\ b=1,a\\\\ b=2 f=1 1').tags).toEqual([['a b', '1'], ['a\\ b', '2']])
  })

  it('keeps the client order of tags', () => {
    expect(decodeLine('m,z=1,a=2 f=1 1').tags).toEqual([['z', '1'], ['a', '2']])
  })

  it('checks many tags in linear time', () => {
    const tags = Array.from({ length: 5000 }, (_, i) => `,k${i}=v`).join('')
    expect(accept(`m${tags} f=1 1`)).toBe(`m${tags}${TAGS} f=1 1\n`)
    expect(reasonOf(`m${tags},k42=x f=1 1`)).toBe('duplicate tag key "k42"')
    expect(reasonOf(`m${tags} k4999=1`)).toMatch(/field key "k4999" is also a tag key/)
    expect(reject(`m${tags},user=x user=1`).reason).toMatch(/reserved for a server-side tag/)
  })
})

describe('timestamps and precision', () => {
  it('accepts int64 bounds, refuses one past', () => {
    expect(decodeLine('m f=1 9223372036854775807').timeNs).toBe('9223372036854775807')
    expect(decodeLine('m f=1 -9223372036854775808').timeNs).toBe('-9223372036854775808')
    expect(reasonOf('m f=1 9223372036854775808')).toBe('timestamp out of range at column 7')
    expect(reasonOf('m f=1 -9223372036854775809')).toBe('timestamp out of range at column 7')
  })

  it('refuses malformed timestamps', () => {
    for (const bad of ['+5', '1.5', '5x', '-', '1-2', '0x10', '1e9']) expect(reasonOf(`m f=1 ${bad}`), bad).toBe('invalid timestamp at column 7')
  })

  it('converts us, ms and s to ns', () => {
    expect(accept('m f=1 5', 'us')).toBe(`m${TAGS} f=1 5000\n`)
    expect(accept('m f=1 5', 'ms')).toBe(`m${TAGS} f=1 5000000\n`)
    expect(accept('m f=1 -5', 's')).toBe(`m${TAGS} f=1 -5000000000\n`)
    expect(accept('m f=1 0007', 's')).toBe(`m${TAGS} f=1 7000000000\n`)
    expect(accept('m f=1 -0', 'ms')).toBe(`m${TAGS} f=1 0\n`)
    expect(decodeLine('m f=1 9223372036', 's').timeNs).toBe('9223372036000000000')
    expect(decodeLine('m f=1 -9223372036854', 'ms').timeNs).toBe('-9223372036854000000')
    expect(() => decodeLine('m f=1 9223372037', 's')).toThrow('timestamp out of range at column 7')
    expect(reject('m f=1 9223372036855', 'ms').reason).toBe('timestamp out of range at column 7')
  })

  it('gives lines without a timestamp the default time truncated to the precision (as InfluxDB does)', () => {
    expect(accept('m f=1', 's', '1700000000123456789')).toBe(`m${TAGS} f=1 1700000000000000000\n`)
    expect(accept('m f=1', 'us', '-1500')).toBe(`m${TAGS} f=1 -2000\n`)
    expect(decodeLine('m f=1', 'ms', '1700000000123456789').timeNs).toBe('1700000000123000000')
    expect(() => decodeLine('m f=1')).toThrow('missing timestamp and no default time')
    expect(() => scanFrame('m f=1', tagging, '17e8')).toThrow(TypeError)
  })
})

describe('characters', () => {
  it('refuses control characters outside string fields', () => {
    expect(reasonOf('m\x01 f=1')).toBe('control character U+0001 at column 2')
    expect(reasonOf('m,k\x02=v f=1')).toBe('control character U+0002 at column 4')
    expect(reasonOf('m,k=v\x1f f=1')).toBe('control character U+001F at column 6')
    expect(reasonOf('m f\x7f=1')).toBe('control character U+007F at column 4')
    expect(reasonOf('m f=1\t5')).toMatch(/invalid field value/)
    expect(reasonOf('m\tf=1')).toBe('control character U+0009 at column 2')
  })

  it('allows control characters but NUL in string fields', () => {
    expect(value('"a\tb\x01c\x7f\rd"')).toEqual({ string: 'a\tb\x01c\x7f\rd' })
    expect(reasonOf('m f="a\x00b"')).toBe('NUL character in string field "f" at column 7')
  })

  it('accepts non-ASCII text and refuses unpaired surrogates', () => {
    expect(decodeLine('mé,ключ=値 😀="ü" 1')).toEqual({
      measurement: 'mé', tags: [['ключ', '値']], fields: [['😀', { string: 'ü' }]], timeNs: '1',
    })
    expect(reasonOf('m\ud800 f=1')).toBe('unpaired UTF-16 surrogate at column 2')
    expect(reasonOf('m f="\udc00"')).toBe('unpaired UTF-16 surrogate at column 6')
  })
})

describe('64 KiB cap (UTF-8 bytes of the token as written)', () => {
  const MAX = 65_536
  it.each([
    ['measurement', (t: string) => `${t} f=1`],
    ['tag key', (t: string) => `m,${t}=v f=1`],
    ['tag value', (t: string) => `m,k=${t} f=1`],
    ['field key', (t: string) => `m ${t}=1`],
    ['string field', (t: string) => `m f="${t}"`],
  ])('%s', (what, line) => {
    expect(accept(line('a'.repeat(MAX)))).toContain('aaa')
    expect(accept(line('é'.repeat(MAX / 2)))).toContain('éé')
    expect(reject(line('a'.repeat(MAX + 1))).reason).toMatch(new RegExp(`^${what} exceeds 65536 bytes at column \\d+$`))
    expect(reject(line('é'.repeat(MAX / 2) + 'a')).reason).toMatch(/exceeds 65536 bytes/)
  })
})

describe('decodeLine, decodeLines and encodePoint', () => {
  it('decodeLine throws LineProtocolError with reason and column', () => {
    try {
      decodeLine('m f=x 1')
      expect.unreachable()
    } catch (e) {
      expect(e).toBeInstanceOf(LineProtocolError)
      expect(e).toMatchObject({ name: 'LineProtocolError', reason: 'invalid field value for "f" at column 5', column: 5 })
    }
    expect(() => decodeLine('# comment')).toThrow('blank or comment line')
    expect(() => decodeLine('m f=1 1\nm f=2 2')).toThrow('more than one line')
    expect(decodeLine('m f=1 1\r\n').timeNs).toBe('1')
  })

  it('decodeLines reports the line', () => {
    expect(decodeLines('m f=1 1\n\nm g=2i 2').map((p) => p.fields)).toEqual([[['f', { float: 1 }]], [['g', { int: '2' }]]])
    expect(() => decodeLines('m f=1 1\n\nm g=')).toThrow(expect.objectContaining({ line: 3, message: 'line 3: missing value for field "g" at column 5' }))
  })

  it('encodePoint writes escaped lines with ns timestamps', () => {
    const p: Point = {
      measurement: 'cpu load',
      tags: [['host', 'a,b'], ['k=', 'John Doe']],
      fields: [['f', { float: -0 }], ['i', { int: '-5' }], ['u', { uint: '5' }], ['b', { bool: false }], ['s', { string: 'x"\\y' }]],
      timeNs: '-1',
    }
    const line = encodePoint(p)
    expect(line).toBe('cpu\\ load,host=a\\,b,k\\==John\\ Doe f=-0,i=-5i,u=5u,b=false,s="x\\"\\\\y" -1')
    expect(decodeLine(line)).toEqual(p)
  })

  it('encodePoint refuses points that cannot round-trip', () => {
    const base: Point = { measurement: 'm', tags: [], fields: [['f', { float: 1 }]], timeNs: '1' }
    expect(() => encodePoint({ ...base, measurement: '' })).toThrow(LineProtocolError)
    expect(() => encodePoint({ ...base, measurement: '#m' })).toThrow(/#/)
    expect(() => encodePoint({ ...base, tags: [['k', 'v\\']] })).toThrow(/backslash/)
    expect(() => encodePoint({ ...base, fields: [] })).toThrow('missing field')
    expect(() => encodePoint({ ...base, fields: [['f', { float: Number.NaN }]] })).toThrow(/non-finite/)
    expect(() => encodePoint({ ...base, fields: [['f', { float: Infinity }]] })).toThrow(/non-finite/)
    expect(() => encodePoint({ ...base, fields: [['f', { string: 'a\nb' }]] })).toThrow(/newline/)
    expect(() => encodePoint({ ...base, fields: [['f', { int: '9223372036854775808' }]] })).toThrow(/out of range/)
    expect(() => encodePoint({ ...base, timeNs: 'now' })).toThrow(/timestamp/)
  })
})

// ---------------------------------------------------------------------------------
// Properties

const LP_CHARS = [',', '=', '\\', '"', ' ', '\n', '\r', '\t', '#', '0', '1', '9', 'i', 'u', 't', 'f', 'e', 'E', '.', '-', '+', 'm', 'a', 'é', '😀', '\x00', '\x7f']

const lpSoup = fc.string({ unit: fc.constantFrom(...LP_CHARS), maxLength: 80 })
const anyText = fc.oneof(
  lpSoup,
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b).toString('utf8')),
  fc.array(fc.constantFrom('m', 'm,a=1', ' f=1', ',g="x y"', ' 5', 'i', 'u', '\n', '\\', ' ', '=', ',', '#'), { maxLength: 20 }).map((a) => a.join('')),
)

const NAME_UNITS = ['a', 'b', 'Z', '0', '9', '_', '-', '.', ',', '=', ' ', '\\', '"', '#', 'é', '😀', 'ü']
const name = fc.string({ unit: fc.constantFrom(...NAME_UNITS), minLength: 1, maxLength: 8 }).filter((s) => nameProblem(s) === null)
const measurement = name.filter((s) => !s.startsWith('#'))
const reservedKey = (k: string): boolean => k === 'time' || k === 'user' || k === 'org'
const key = name.filter((k) => !reservedKey(k))
const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String)
const fieldValue: fc.Arbitrary<FieldValue> = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((float) => ({ float })),
  int64.map((int) => ({ int })),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((u) => ({ uint: String(u) })),
  fc.boolean().map((bool) => ({ bool })),
  fc.string({ unit: fc.constantFrom('a', ' ', '"', '\\', ',', '=', '\t', '\r', '\x01', 'é', '😀'), maxLength: 10 }).map((string) => ({ string })),
)

function pointArb(time: fc.Arbitrary<string>): fc.Arbitrary<Point> {
  return fc
    .record({
      measurement,
      tags: fc.uniqueArray(fc.tuple(key, name), { maxLength: 4, selector: (t) => t[0] }),
      fields: fc.uniqueArray(fc.tuple(key, fieldValue), { minLength: 1, maxLength: 4, selector: (f) => f[0] }),
      timeNs: time,
    })
    .filter((p) => p.fields.every(([k]) => !p.tags.some(([t]) => t === k)))
}

const TAGGING_TAGS: Array<[string, string]> = [['user', 'John Doe'], ['org', 'a,b=c\\d']]
const propTagging = makeTagging(TAGGING_TAGS)

describe('properties', () => {
  it('(a) scanFrame never throws on arbitrary text, and agrees with decodeLines on the verdict and the line', () => {
    const none = makeTagging([])
    fc.assert(
      fc.property(anyText, fc.constantFrom<Precision>('ns', 'us', 'ms', 's'), (text, precision) => {
        const r = scanFrame(text, propTagging, D, precision)
        let decoded: LineProtocolError | null = null
        try {
          decodeLines(text, precision, D)
        } catch (e) {
          if (!(e instanceof LineProtocolError)) throw e
          decoded = e
        }
        if (r.ok) {
          // scanFrame is only ever stricter than decodeLines (fields named like a server-side tag).
          expect(decoded).toBeNull()
          expect(r.text === '' || r.text.endsWith('\n')).toBe(true)
        } else {
          expect(r.line).toBeGreaterThanOrEqual(1)
          expect(r.reason.length).toBeGreaterThan(0)
          const plain = scanFrame(text, none, D, precision)
          if (!plain.ok) expect({ line: decoded?.line, reason: decoded?.reason }).toEqual({ line: plain.line, reason: plain.reason })
        }
      }),
      { numRuns: 3000 },
    )
  })

  it('(b) an encoded point decodes back to itself, and scanFrame adds exactly the server-side tags', () => {
    fc.assert(
      fc.property(pointArb(int64), (p) => {
        const line = encodePoint(p)
        expect(decodeLine(line)).toEqual(p)
        const r = scanFrame(line, propTagging, D)
        expect(r.ok && r.lines).toBe(1)
        if (r.ok) expect(decodeLine(r.text)).toEqual({ ...p, tags: [...p.tags, ...TAGGING_TAGS] })
      }),
      { numRuns: 1000 },
    )
  })

  it('(c) scanFrame output is valid, means what the input meant, and rescanning it changes nothing', () => {
    // A receive time: far enough from int64 min that truncating it to seconds stays in range.
    const defaultTime = fc.bigInt({ min: -(2n ** 63n) + 10n ** 9n, max: 2n ** 63n - 1n }).map(String)
    const smallTime = fc.bigInt({ min: -(10n ** 9n), max: 10n ** 9n }).map(String)
    const spoof = fc.option(fc.constantFrom<[string, string]>(['user', 'evil'], ['org', 'evil co']), { nil: undefined })
    const entry = fc.record({
      point: pointArb(smallTime),
      spoof,
      withTime: fc.boolean(),
      lead: fc.constantFrom('', ' ', '   '),
      trail: fc.constantFrom('', ' ', '  '),
      eol: fc.constantFrom('\n', '\r\n'),
      noise: fc.constantFrom('', '\n', '# note\n', ' \t \n', '\r\n'),
    })
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 6 }), fc.constantFrom<Exclude<Precision, 'auto'>>('ns', 'us', 'ms', 's'), defaultTime, fc.boolean(), (entries, precision, def, finalEol) => {
        let frame = ''
        const expected: Point[] = []
        const zeros = { ns: '', us: '000', ms: '000000', s: '000000000' }[precision]
        const unit = 10n ** BigInt(zeros.length)
        const defBig = BigInt(def)
        const truncated = String(defBig - (((defBig % unit) + unit) % unit))
        entries.forEach((e, i) => {
          const tags = e.spoof ? [e.spoof, ...e.point.tags] : e.point.tags
          let line = encodePoint({ ...e.point, tags })
          if (!e.withTime) line = line.slice(0, line.lastIndexOf(' '))
          const last = i === entries.length - 1 && !finalEol
          frame += e.noise + e.lead + line + e.trail + (last ? '' : e.eol)
          const t = BigInt(e.point.timeNs) * unit
          expected.push({ ...e.point, tags: [...e.point.tags, ...TAGGING_TAGS], timeNs: e.withTime ? String(t) : truncated })
        })
        const r = scanFrame(frame, propTagging, def, precision)
        if (!r.ok) throw new Error(`line ${r.line}: ${r.reason} in ${JSON.stringify(frame)}`)
        expect(r.lines).toBe(entries.length)
        expect(decodeLines(r.text)).toEqual(expected)
        expect(scanFrame(r.text, propTagging, '0', 'ns')).toEqual(r)
      }),
      { numRuns: 1000 },
    )
  })
})

describe('precision auto (InfluxDB 3 guesses each timestamp by magnitude)', () => {
  const t = makeTagging([['user', 'u'], ['org', 'o']])
  it.each([
    ['1700000000', '1700000000000000000'], // s
    ['4999999999', '4999999999000000000'], // s, the last one
    ['5000000000', '5000000000000000'], // ms from 5e9
    ['1700000000123', '1700000000123000000'], // ms
    ['1700000000123456', '1700000000123456000'], // us
    ['1700000000123456789', '1700000000123456789'], // ns
    ['-1700000000', '-1700000000000000000'], // by magnitude
  ])('reads %s as %s ns', (ts, ns) => {
    expect(scanFrame(`m v=1 ${ts}`, t, '1', 'auto')).toMatchObject({ ok: true, text: `m,user=u,org=o v=1 ${ns}\n`, lines: 1 })
    expect(decodeLine(`m v=1 ${ts}`, 'auto').timeNs).toBe(ns)
  })

  it('guesses per line, and stamps lines without a time in ns', () => {
    const r = scanFrame('a v=1 1700000000\nb v=1 1700000000123\nc v=1', t, '1700000000123456789', 'auto')
    expect(r).toMatchObject({
      ok: true,
      text: 'a,user=u,org=o v=1 1700000000000000000\nb,user=u,org=o v=1 1700000000123000000\nc,user=u,org=o v=1 1700000000123456789\n',
      lines: 3,
    })
  })
})
