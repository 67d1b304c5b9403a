import { z } from 'zod'
import { timestamp } from '../api-schemas.js'
import { ERROR_ENDPOINTS, ERROR_KINDS } from './recorder.js'
import { sessionItem } from './schemas.js'

/**
 * The shapes of `GET /api/v1/admin/stats` and of the feed's events (docs/API.md section
 * 10). Allow-lists, like every response of the API.
 */

const count = z.number().int().min(0)
const rate = z.number().min(0).describe('lines/s')
const when = timestamp.nullable()

export const errorEntry = z.object({
  id: z.string().describe('Monotonic within the instance (a decimal number)'),
  at: timestamp,
  kind: z.enum(ERROR_KINDS),
  endpoint: z.enum(ERROR_ENDPOINTS),
  reason: z.string().describe('The text as the client got it (e.g. `ERR line 2: ...`)'),
  user: z.string().nullable().describe('The user, device (MQTT user name), collector or login name, when known'),
  org: z.string().nullable(),
  remote: z.string().nullable().describe('The client address'),
})

export const statsBody = z.object({
  instance: z.object({ started_at: timestamp, uptime_s: count }),
  ingest: z.object({
    lines_accepted_total: count,
    lines_rejected_total: count.describe('Lines of /time-series frames answered `ERR`: a bad line, a sink refusal, `ERR busy` (mc_lines_rejected_total)'),
    frames_total: count.describe('Frames and request bodies answered, any result'),
    lines_accepted_per_s: rate.describe('Over the last full bucket'),
    lines_rejected_per_s: rate,
    rate: z.object({
      interval_s: z.number().int().positive(),
      window_s: z.number().int().positive().describe('ADMIN_RATE_WINDOW_S: the span the chart covers'),
      points: z
        .array(z.object({ t: z.number().int().describe('Epoch ms: the bucket start'), accepted: rate, rejected: rate }))
        .describe('Oldest first, covering ADMIN_RATE_WINDOW_S at most'),
    }),
    batch_flush_ms: z
      .object({ p50: z.number().nullable(), p99: z.number().nullable(), count })
      .describe('Sink write time of the batches flushed within ADMIN_RATE_WINDOW_S (from mc_batch_flush_seconds)'),
  }),
  sink: z.object({
    name: z.string(),
    state: z.enum(['up', 'spooling', 'down']),
    last_error: z.string().nullable().describe('The newest sink failure seen since start'),
  }),
  spool: z.object({ bytes: count, lines: count, dead_letter_records: count, dead_letter_lines: count }),
  sessions: z.object({ time_series: count, ws: count, mqtt: count }),
  devices: z.object({ total: count, connected: count, last_seen_at: when.describe('The newest connect of a device connected now') }),
  collectors: z.object({
    total: count,
    active: count.describe('Pushed within ADMIN_RATE_WINDOW_S'),
    last_push_at: when,
  }),
  channels: z.object({
    count: count.describe('Channels with a /ws connection on this instance'),
    members: count,
    list: z
      .array(z.object({ channel_id: z.string(), members: count, connections: count }))
      .describe('The 100 channels with the most connections here, most first'),
  }),
  errors: z.array(errorEntry).describe('Newest first, at most ADMIN_ERRORS_KEPT'),
})
export type StatsBody = z.infer<typeof statsBody>

/** The feed's `snapshot` event: the stats without their errors (those come one by one). */
export const snapshotEvent = z.object({
  stats: statsBody.omit({ errors: true }),
  sessions: z.array(sessionItem).describe('Every live session of this instance, newest first'),
})
export type SnapshotEvent = z.infer<typeof snapshotEvent>
