import { HttpError, RequestTimedOutError } from '@influxdata/influxdb3-client'
import { createInfluxWriter } from './influx-write.js'
import { SINK_REFUSED, SINK_UNAVAILABLE, SinkError, type RejectedLine, type Sink, type SinkFailure } from './sink.js'

export interface InfluxSinkOptions {
  url: string
  token: string | undefined
  database: string
  gzip: boolean
  /** zlib level (0-9) of gzipped bodies. */
  gzipLevel: number
  timeoutMs: number
}

/** InfluxDB 3 through its v2 write endpoint, precision pinned to ns, gzip on unless turned off. */
export function createInfluxSink(opts: InfluxSinkOptions): Sink {
  const writer = createInfluxWriter({
    url: opts.url,
    token: opts.token,
    database: opts.database,
    gzipLevel: opts.gzip ? opts.gzipLevel : undefined,
    timeoutMs: opts.timeoutMs,
  })
  const base = opts.url.replace(/\/+$/, '')
  return {
    name: 'influxdb',
    async write(body) {
      try {
        await writer.write(body)
      } catch (err) {
        throw classifyInfluxError(err)
      }
    },
    async ping() {
      // /health answers without auth on InfluxDB 3 Core; any HTTP answer means reachable.
      const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(opts.timeoutMs) })
      await res.body?.cancel()
      if (res.status >= 500) throw new Error(`InfluxDB answered ${res.status}`)
    },
    async close() {
      writer.close()
    },
  }
}

/**
 * Only a reason that lies in the lines themselves is permanent: a partial write naming
 * them, or a 422. Everything that lies in the sink's configuration or state (401, 403,
 * 404, 413, a 400 that names no line, 5xx, 408, 429, network, timeout, anything unknown)
 * is transient: the batch is kept and tried again, since it may already be acknowledged.
 */
export function classifyInfluxError(err: unknown): SinkError {
  if (err instanceof HttpError) {
    const status = err.statusCode
    // HttpError already extracts InfluxDB's own message (per line for a partial write).
    const detail = (err.message || err.body || '').replace(/\s+/g, ' ').trim().slice(0, MAX_DETAIL_CHARS)
    const base = { cause: err, detail: `InfluxDB answered ${status}${detail ? `: ${detail}` : ''}` }
    if (status === 422) return new SinkError(SINK_REFUSED, false, status, base)
    if (status === 400) {
      const refusal = lineRefusal(err.json)
      if (refusal === 'whole') return new SinkError(SINK_REFUSED, false, status, base)
      if (refusal !== undefined) return new SinkError(SINK_REFUSED, false, status, { ...base, rejected: refusal })
    }
    return new SinkError(SINK_UNAVAILABLE, true, status, { ...base, reason: failureOf(status) })
  }
  const message = err instanceof Error ? err.message : String(err)
  const timedOut = err instanceof RequestTimedOutError || (err as Error)?.name === 'TimeoutError'
  return new SinkError(SINK_UNAVAILABLE, true, undefined, {
    cause: err,
    reason: timedOut ? 'timeout' : 'unreachable',
    detail: `InfluxDB unreachable: ${message}`,
  })
}

function failureOf(status: number): SinkFailure {
  if (status === 401) return 'unauthorized'
  if (status === 403) return 'forbidden'
  if (status === 404) return 'database not found'
  if (status === 413) return 'request too large'
  if (status === 408) return 'timeout'
  if (status === 429 || status === 503) return 'throttled'
  if (status >= 500) return 'server error'
  return 'unexpected answer'
}

/**
 * A 400 that names lines: InfluxDB 3's partial write `{"error":"partial write…","data":
 * [{"line_number","error_message",…}]}` (the other lines were written), or a parse failure
 * naming one line with nothing written ('whole'). Undefined: the 400 names no line (a
 * malformed header, a bad database name…), which is a configuration problem.
 */
function lineRefusal(json: unknown): RejectedLine[] | 'whole' | undefined {
  const body = json as { error?: unknown; data?: unknown } | undefined
  const data = body?.data
  if (typeof (data as { line_number?: unknown } | null | undefined)?.line_number === 'number') return 'whole'
  if (!Array.isArray(data) || data.length === 0) return undefined
  const partial = typeof body?.error === 'string' && body.error.startsWith('partial write')
  // Core names at most this many lines: a full list may leave refused lines unnamed, so
  // naming only these would acknowledge lines that were never written.
  if (!partial || data.length >= PARTIAL_WRITE_LIST_MAX) return 'whole'
  const lines: RejectedLine[] = []
  for (const d of data as Array<{ line_number?: unknown; error_message?: unknown; original_line?: unknown }>) {
    if (typeof d?.line_number !== 'number') return 'whole'
    const detail = typeof d.error_message === 'string' ? d.error_message : undefined
    lines.push({
      line: d.line_number,
      message: /column type|type conflict/i.test(detail ?? '') ? 'field type conflict' : 'refused by the sink',
      ...(detail !== undefined ? { detail: detail.slice(0, MAX_DETAIL_CHARS) } : {}),
      ...(typeof d.original_line === 'string' ? { text: d.original_line } : {}),
    })
  }
  return lines
}

// A sink's message goes to the log and the dead-letter file: long bodies are cut.
const MAX_DETAIL_CHARS = 300
// InfluxDB 3 Core reports at most 100 refused lines per write.
const PARTIAL_WRITE_LIST_MAX = 100
