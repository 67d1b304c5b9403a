import { toTimestamp } from '../api-schemas.js'
import type { ChannelSessionView } from '../channels/types.js'
import type { Queryable } from '../db/index.js'
import type { DurableSink } from '../ingest/sinks/durable-sink.js'
import type { AdminRecording } from './recorder-plugin.js'
import type { ErrorRecorder } from './recorder.js'
import type { Endpoint } from './schemas.js'
import type { SessionSource } from './sessions.js'
import { collectorCounts, deviceCounts } from './stats-queries.js'
import type { StatsBody } from './stats-schemas.js'

/**
 * The numbers of `GET /api/v1/admin/stats` and of the feed's snapshots, gathered from the
 * parts of the gateway that hold them: the counters (read, not kept twice), the rate
 * history, the sink and its spool, the live sessions, and the devices' and collectors'
 * tables. Free of HTTP.
 */
export interface StatsDeps {
  recording: Pick<AdminRecording, 'startedAt' | 'rates' | 'readCounters' | 'deviceStaleAfterMs' | 'rateWindowS'>
  errors: Pick<ErrorRecorder, 'list' | 'lastSinkError'>
  sink: Pick<DurableSink, 'name' | 'mode' | 'outage' | 'spool' | 'deadLetters'>
  sources: readonly SessionSource[]
  channelSessions: () => Iterable<ChannelSessionView>
  db: Queryable
  now?: () => number
}

export type Stats = Omit<StatsBody, 'errors'>

export async function collectStats(deps: StatsDeps): Promise<Stats> {
  const now = (deps.now ?? Date.now)()
  const { recording, sink } = deps
  const [counters, devices, collectors] = await Promise.all([
    recording.readCounters(),
    deviceCounts(deps.db, recording.deviceStaleAfterMs),
    collectorCounts(deps.db, recording.rateWindowS),
  ])
  const current = recording.rates.current()
  const dead = sink.deadLetters
  return {
    instance: {
      started_at: toTimestamp(recording.startedAt),
      uptime_s: Math.max(0, Math.floor((now - recording.startedAt.getTime()) / 1000)),
    },
    ingest: {
      lines_accepted_total: counters.accepted,
      lines_rejected_total: counters.rejected,
      frames_total: counters.frames,
      lines_accepted_per_s: current.accepted,
      lines_rejected_per_s: current.rejected,
      rate: { interval_s: recording.rates.intervalS, window_s: recording.rates.windowS, points: recording.rates.points() },
      batch_flush_ms: recording.rates.flushLatency(),
    },
    sink: {
      name: sink.name,
      // As /readyz tells it: failing writes are down; spooling once the spool takes the batches.
      state: sink.mode === 'spooling' ? 'spooling' : sink.outage !== undefined ? 'down' : 'up',
      last_error: deps.errors.lastSinkError?.reason ?? null,
    },
    spool: {
      bytes: sink.spool.bytes,
      lines: sink.spool.lines,
      dead_letter_records: dead.records,
      dead_letter_lines: dead.lines,
    },
    sessions: sessionCounts(deps.sources),
    devices,
    collectors,
    channels: channelCounts(deps.channelSessions()),
  }
}

function sessionCounts(sources: readonly SessionSource[]): Stats['sessions'] {
  const counts: Record<Endpoint, number> = { 'time-series': 0, ws: 0, mqtt: 0 }
  for (const source of sources) for (const _ of source.sessions()) counts[source.endpoint]++
  return { time_series: counts['time-series'], ws: counts.ws, mqtt: counts.mqtt }
}

// The list names the busiest channels only: a snapshot goes out every second.
const MAX_LISTED_CHANNELS = 100

/** The channels with a connection here: members are the distinct users connected here. */
function channelCounts(sessions: Iterable<ChannelSessionView>): Stats['channels'] {
  const byChannel = new Map<string, { users: Set<string>; connections: number }>()
  for (const s of sessions) {
    let c = byChannel.get(s.channelId)
    if (c === undefined) byChannel.set(s.channelId, (c = { users: new Set(), connections: 0 }))
    c.users.add(s.principal.member.user_id)
    c.connections++
  }
  const list = [...byChannel].map(([channel_id, c]) => ({ channel_id, members: c.users.size, connections: c.connections }))
  list.sort((a, b) => b.connections - a.connections || (a.channel_id < b.channel_id ? -1 : 1))
  return { count: list.length, members: list.reduce((n, c) => n + c.members, 0), list: list.slice(0, MAX_LISTED_CHANNELS) }
}
