import { HttpError, InfluxDBClient, setLogger } from '@influxdata/influxdb3-client'
import { SinkError, type RejectedLine, type Sink } from './sink.js'

export interface InfluxSinkOptions {
  url: string
  token: string | undefined
  database: string
  gzip: boolean
  timeoutMs: number
}

// Bodies above this many bytes are sent gzipped (when gzip is on); a batch is usually far larger.
const GZIP_THRESHOLD_BYTES = 1000

// The client prints every failed write to the console; the batcher logs them once, with context.
setLogger({ error() {}, warn() {} })

/** InfluxDB 3 through the official client, precision pinned to ns, gzip on unless turned off. */
export function createInfluxSink(opts: InfluxSinkOptions): Sink {
  const gzipThreshold = opts.gzip ? GZIP_THRESHOLD_BYTES : Number.MAX_SAFE_INTEGER
  const client = new InfluxDBClient({
    host: opts.url,
    // An empty token sends no Authorization header (a server started without auth).
    token: opts.token ?? '',
    database: opts.database,
    writeTimeout: opts.timeoutMs,
    writeOptions: { precision: 'ns', gzipThreshold },
  })
  const base = opts.url.replace(/\/+$/, '')
  return {
    name: 'influxdb',
    async write(text) {
      try {
        await client.write(text, opts.database, undefined, { precision: 'ns', gzipThreshold })
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
      await client.close()
    },
  }
}

export function classifyInfluxError(err: unknown): SinkError {
  if (err instanceof HttpError) {
    const status = err.statusCode
    const transient = status >= 500 || status === 429 || status === 408
    // The client already extracts InfluxDB's own message (per line for a partial write).
    const detail = (err.message || err.body || '').replace(/\s+/g, ' ').trim().slice(0, MAX_DETAIL_CHARS)
    const rejected = transient ? undefined : partialWrite(err.json)
    return new SinkError(`InfluxDB answered ${status}${detail ? `: ${detail}` : ''}`, transient, status, {
      cause: err,
      ...(rejected ? { rejected } : {}),
    })
  }
  const message = err instanceof Error ? err.message : String(err)
  return new SinkError(`InfluxDB unreachable: ${message}`, true, undefined, { cause: err })
}

/** InfluxDB 3's partial write: `{"error":"partial write…","data":[{"line_number","error_message",…}]}`. */
function partialWrite(json: unknown): RejectedLine[] | undefined {
  const data = (json as { data?: unknown } | undefined)?.data
  if (!Array.isArray(data) || data.length === 0) return undefined
  const lines: RejectedLine[] = []
  for (const d of data as Array<{ line_number?: unknown; error_message?: unknown; original_line?: unknown }>) {
    if (typeof d?.line_number !== 'number') return undefined
    lines.push({
      line: d.line_number,
      message: typeof d.error_message === 'string' ? d.error_message : 'rejected',
      ...(typeof d.original_line === 'string' ? { text: d.original_line } : {}),
    })
  }
  return lines
}

// An error message is repeated to clients and logs: long bodies are cut.
const MAX_DETAIL_CHARS = 300
