import { describe, expect, it } from 'vitest'
import { exactTimestamps, metricsToLines } from '../../src/collectors/metrics-lines.js'
import { issueText, metricsPushBody, rfc3339ToNs, timestampNs } from '../../src/collectors/metrics-schema.js'
import { decodeLines } from '../../src/ingest/line-protocol/index.js'

const RECEIVED = '1700000000000000042'
const received = () => RECEIVED

/** Builds from the body's own JSON text, as the route does. */
function build(body: unknown, text = JSON.stringify(body)) {
  return metricsToLines(JSON.parse(text), text, received)
}

const push = (metrics: unknown[], extra: Record<string, unknown> = {}) => ({ collector_id: 'c-1', hostname: 'db 1', metrics, ...extra })

describe('metricsToLines', () => {
  it('writes one line per metric with collector_id and hostname replacing its own, and escapes names', () => {
    const r = build(
      push([
        { name: 'pg stat,x', tags: { 'db name': 'a=b', hostname: 'spoofed', collector_id: 'spoofed' }, fields: { 'n,1': 3 }, timestamp: 5 },
      ]),
    )
    expect(r).toEqual({ ok: true, lines: 1, text: 'pg\\ stat\\,x,db\\ name=a\\=b,collector_id=c-1,hostname=db\\ 1 n\\,1=3 5\n' })
  })

  it('writes JSON numbers as floats (even 3), booleans as booleans, strings escaped', () => {
    const r = build(push([{ name: 'm', fields: { i: 3, f: -0.5, big: 1e21, b: true, s: 'say "hi" \\o/' }, timestamp: '1' }]))
    expect(r.ok).toBe(true)
    if (!r.ok) return
    const [p] = decodeLines(r.text)
    expect(p?.fields).toEqual([
      ['i', { float: 3 }],
      ['f', { float: -0.5 }],
      ['big', { float: 1e21 }],
      ['b', { bool: true }],
      ['s', { string: 'say "hi" \\o/' }],
    ])
  })

  it('takes the metric timestamp, else the request timestamp, else the receive time', () => {
    const withDefault = build(
      push(
        [
          { name: 'a', fields: { v: 1 }, timestamp: '2025-01-02T03:04:05.123456789Z' },
          { name: 'b', fields: { v: 1 } },
          { name: 'c', fields: { v: 1 }, timestamp: '1700000000000000001' },
        ],
        { timestamp: '2025-01-02T04:04:05+01:00' },
      ),
    )
    expect(withDefault.ok && decodeLines(withDefault.text).map((p) => p.timeNs)).toEqual([
      '1735787045123456789',
      '1735787045000000000',
      '1700000000000000001',
    ])
    const without = build(push([{ name: 'b', fields: { v: 1 } }]))
    expect(without.ok && decodeLines(without.text)[0]?.timeNs).toBe(RECEIVED)
  })

  it('keeps the exact digits of JSON integers past 2^53 (JSON.parse alone rounds them)', () => {
    const text =
      '{"collector_id":"c","hostname":"h","timestamp":1700000000000000007,"metrics":[' +
      '{"name":"a","fields":{"timestamp":1700000000000000009,"s":"\\"timestamp\\": 1"},"timestamp":1700000000000000001},' +
      '{"name":"b","fields":{"v":1}},' +
      '{"timestamp":1,"name":"c","fields":{"v":1},"time\\u0073tamp":1700000000000000003}]}'
    expect(JSON.parse(text).timestamp).toBe(1700000000000000000)
    const r = metricsToLines(JSON.parse(text), text, received)
    expect(r.ok && decodeLines(r.text).map((p) => p.timeNs)).toEqual(['1700000000000000001', '1700000000000000007', '1700000000000000003'])
    expect(exactTimestamps(text)).toEqual({ top: '1700000000000000007', metrics: new Map([[0, '1700000000000000001'], [2, '1700000000000000003']]) })
  })

  it('names the first bad metric by its index, and returns no lines', () => {
    const good = { name: 'm', fields: { v: 1 } }
    const metrics = Array.from({ length: 20 }, () => good) as unknown[]
    metrics[17] = { name: 'm', fields: { v: 'a\nb' } }
    metrics[18] = { name: 'm', fields: {} }
    expect(build(push(metrics))).toEqual({ ok: false, message: 'metrics[17].fields.v: contains a newline' })
  })

  it.each([
    ['an empty tag value', { name: 'm', tags: { a: '' }, fields: { v: 1 } }, 'metrics[0].tags.a: is empty'],
    ['a tag that is no string', { name: 'm', tags: { a: 1 }, fields: { v: 1 } }, 'metrics[0].tags.a: must be a string'],
    ['no fields', { name: 'm', fields: {} }, 'metrics[0].fields: at least one field is required'],
    ['a null field', { name: 'm', fields: { v: null } }, 'metrics[0].fields.v: must be a finite number, a boolean or a string'],
    ['an infinite field', { name: 'm', fields: { v: 1e999 } }, 'metrics[0].fields.v: must be a finite number, a boolean or a string'],
    ['a field named like a tag', { name: 'm', tags: { a: 'x' }, fields: { a: 1 } }, 'metrics[0].fields.a: is also a tag key'],
    ['a field named hostname', { name: 'm', fields: { hostname: 1 } }, 'metrics[0].fields.hostname: is also a tag key'],
    ['a time key', { name: 'm', fields: { time: 1 } }, 'metrics[0].fields.time: "time" cannot be a tag or field key'],
    ['a comment measurement', { name: '#m', fields: { v: 1 } }, 'metrics[0].name: cannot start with "#"'],
    ['a trailing backslash', { name: 'm\\', fields: { v: 1 } }, 'metrics[0].name: ends with a backslash'],
    ['a control character', { name: 'm\t', fields: { v: 1 } }, 'metrics[0].name: contains a control character'],
    ['a fractional timestamp', { name: 'm', fields: { v: 1 }, timestamp: 1.5 }, 'metrics[0].timestamp: must be an RFC 3339'],
    ['an invalid date', { name: 'm', fields: { v: 1 }, timestamp: '2025-02-30T00:00:00Z' }, 'metrics[0].timestamp: must be an RFC 3339'],
    ['a date out of range', { name: 'm', fields: { v: 1 }, timestamp: '2300-01-01T00:00:00Z' }, 'metrics[0].timestamp: is out of the range'],
    ['digits out of range', { name: 'm', fields: { v: 1 }, timestamp: '9223372036854775808' }, 'metrics[0].timestamp: is out of the range'],
  ])('refuses %s, as the zod schema does', (_what, metric, message) => {
    const r = build(push([metric]))
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.message.startsWith(message)).toBe(true)
    const z = metricsPushBody.safeParse(push([metric]))
    expect(z.success).toBe(false)
    // The same path; the same words except for record keys, which zod wraps in its own issue.
    if (!z.success && !message.includes('.tags.a: is') && !message.includes('"time"')) {
      expect(issueText(z.error.issues[0]!)).toBe(r.ok ? '' : r.message)
    }
  })

  it('accepts what the zod schema accepts', () => {
    const body = push([{ name: 'm', tags: { a: 'b' }, fields: { v: 1, s: 'x', b: false }, timestamp: '2025-01-02T03:04:05Z' }], { timestamp: 7 })
    expect(metricsPushBody.safeParse(body).success).toBe(true)
    expect(build(body).ok).toBe(true)
  })

  it('refuses a bad hostname or request timestamp before any metric', () => {
    expect(build(push([], { hostname: '' }))).toEqual({ ok: false, message: 'hostname: is empty' })
    expect(build(push([], { timestamp: 'yesterday' }))).toMatchObject({ ok: false, message: expect.stringMatching(/^timestamp: /) })
    expect(build({ collector_id: 'c', hostname: 'h' })).toEqual({ ok: false, message: 'metrics: must be an array' })
    expect(build([1])).toEqual({ ok: false, message: 'the body must be a JSON object' })
  })
})

describe('timestamps', () => {
  it('reads RFC 3339 to the nanosecond, with offsets, lower case and truncation past nine digits', () => {
    expect(rfc3339ToNs('1970-01-01T00:00:00Z')).toEqual({ ns: '0' })
    expect(rfc3339ToNs('1969-12-31T23:59:59.5Z')).toEqual({ ns: '-500000000' })
    expect(rfc3339ToNs('2025-01-02t03:04:05.1234567891z')).toEqual({ ns: '1735787045123456789' })
    expect(rfc3339ToNs('2025-01-02T05:34:05.000000001+02:30')).toEqual({ ns: '1735787045000000001' })
    expect(rfc3339ToNs('2024-02-29T00:00:00Z')).toHaveProperty('ns')
    expect(rfc3339ToNs('2025-01-02T03:04:60Z')).toHaveProperty('problem')
    expect(rfc3339ToNs('2025-01-02 03:04:05Z')).toHaveProperty('problem')
    expect(rfc3339ToNs('0050-01-01T00:00:00Z')).toHaveProperty('problem')
  })

  it('takes digits and safe JSON integers as epoch ns', () => {
    expect(timestampNs('-5')).toEqual({ ns: '-5' })
    expect(timestampNs(123)).toEqual({ ns: '123' })
    expect(timestampNs(true)).toHaveProperty('problem')
  })
})
