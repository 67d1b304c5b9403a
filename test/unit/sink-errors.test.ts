import { HttpError, RequestTimedOutError } from '@influxdata/influxdb3-client'
import { describe, expect, it } from 'vitest'
import { classifyInfluxError } from '../../src/ingest/sinks/influx-sink.js'
import { SINK_REFUSED, SINK_UNAVAILABLE } from '../../src/ingest/sinks/sink.js'
import { classifySqlError } from '../../src/ingest/sinks/sql-sink.js'

const http = (status: number, json?: unknown, body = '') => {
  const e = new HttpError(status, undefined, json === undefined ? body : JSON.stringify(json))
  if (json !== undefined) e.json = json
  return classifyInfluxError(e)
}
const partial = (n: number) => ({
  error: 'partial write of line protocol occurred',
  data: Array.from({ length: n }, (_, i) => ({ line_number: i + 1, error_message: 'invalid column type for column v', original_line: 'x' })),
})

describe('classifyInfluxError: only a reason in the lines themselves is permanent', () => {
  it.each([
    [401, 'unauthorized'],
    [403, 'forbidden'],
    [404, 'database not found'],
    [413, 'request too large'],
    [408, 'timeout'],
    [429, 'throttled'],
    [503, 'throttled'],
    [500, 'server error'],
    [409, 'unexpected answer'],
    [302, 'unexpected answer'],
  ] as const)('HTTP %i is transient (%s)', (status, reason) => {
    const e = http(status, { error: 'the sink says something secret-ish' })
    expect([e.transient, e.reason, e.statusCode, e.message]).toEqual([true, reason, status, SINK_UNAVAILABLE])
    expect(e.detail).toContain('secret-ish') // the sink's words go to the log only
  })

  it('a 400 that names no line (a malformed header, a bad database name) is transient', () => {
    expect(http(400, { error: 'Authorization header was malformed' }).transient).toBe(true)
    expect(http(400, undefined, 'write buffer error: no lines').transient).toBe(true)
  })

  it('a partial write names the refused lines with stable reasons; a 422 or a parse failure refuses all', () => {
    const e = http(400, partial(2))
    expect([e.transient, e.message, e.rejected?.map((r) => [r.line, r.message])]).toEqual([false, SINK_REFUSED, [[1, 'field type conflict'], [2, 'field type conflict']]])
    expect(e.rejected?.[0]?.detail).toBe('invalid column type for column v')
    expect(http(422, { message: 'points beyond retention policy' })).toMatchObject({ transient: false, rejected: undefined })
    const parse = http(400, { error: 'parsing failed for write_lp endpoint', data: { line_number: 1, error_message: 'bad' } })
    expect(parse).toMatchObject({ transient: false, rejected: undefined })
  })

  it('a partial write listing 100 lines (Core lists no more) refuses the whole batch: unnamed lines may be refused too', () => {
    expect(http(400, partial(99)).rejected).toHaveLength(99)
    expect(http(400, partial(100))).toMatchObject({ transient: false, rejected: undefined })
  })

  it('network errors and timeouts are transient', () => {
    expect(classifyInfluxError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toMatchObject({ transient: true, reason: 'unreachable', message: SINK_UNAVAILABLE })
    expect(classifyInfluxError(new RequestTimedOutError())).toMatchObject({ transient: true, reason: 'timeout' })
  })
})

describe('classifySqlError', () => {
  const pgError = (code: string) => Object.assign(new Error(`server says ${code}`), { code, severity: 'ERROR' })
  it.each(['22P05', '22003', '23505', '23502'])('SQLSTATE %s (data or constraint) is permanent', (code) => {
    expect(classifySqlError(pgError(code))).toMatchObject({ transient: false, message: SINK_REFUSED })
  })
  it.each(['57P01', '08006', '53100', 'XX000'])('SQLSTATE %s is transient', (code) => {
    expect(classifySqlError(pgError(code))).toMatchObject({ transient: true, reason: 'database error', message: SINK_UNAVAILABLE })
  })
  it('a socket error (no SQLSTATE, though its code has five letters) is transient', () => {
    expect(classifySqlError(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))).toMatchObject({ transient: true, reason: 'unreachable' })
  })
})
