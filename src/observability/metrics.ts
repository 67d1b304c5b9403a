import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/** One registry per app instance (tests build many apps in one process). */
export function createMetrics() {
  const registry = new Registry()
  // Hot paths count in plain numbers and hand them over when a scrape reads these counters.
  const flushers: Array<() => void> = []
  const flush = () => {
    for (const f of flushers) f()
  }
  collectDefaultMetrics({ register: registry, prefix: 'mc_process_' })
  const wsConnections = new Gauge({
    name: 'mc_ws_connections',
    help: 'Open WebSocket connections per endpoint',
    labelNames: ['endpoint'] as const,
    registers: [registry],
  })
  const frames = new Counter({
    name: 'mc_frames_total',
    help: 'Line-protocol frames and request bodies answered, by result',
    labelNames: ['result'] as const,
    registers: [registry],
    collect: flush,
  })
  const linesAccepted = new Counter({
    name: 'mc_lines_accepted_total',
    help: 'Lines durably accepted',
    registers: [registry],
    collect: flush,
  })
  const linesRejected = new Counter({
    name: 'mc_lines_rejected_total',
    help: 'Frames refused for a bad line (nothing of the frame written)',
    registers: [registry],
    collect: flush,
  })
  const batches = new Counter({
    name: 'mc_batches_flushed_total',
    help: 'Batches flushed, by outcome: ok (the sink took it), spooled (fsynced to the spool), error (neither)',
    labelNames: ['sink', 'outcome'] as const,
    registers: [registry],
  })
  const batchLines = new Histogram({
    name: 'mc_batch_lines',
    help: 'Lines per batch written',
    buckets: [1, 10, 100, 1000, 5000, 10000, 50000],
    registers: [registry],
  })
  const batchSeconds = new Histogram({
    name: 'mc_batch_flush_seconds',
    help: 'Time the sink took to accept a batch',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    labelNames: ['sink'] as const,
    registers: [registry],
  })
  const sinkErrors = new Counter({
    name: 'mc_sink_errors_total',
    help: 'Failed sink writes of batches (replays: mc_spool_replay_failures_total), transient (kept) or permanent (lines refused)',
    labelNames: ['sink', 'kind'] as const,
    registers: [registry],
  })
  const linesRefusedBySink = new Counter({
    name: 'mc_lines_refused_by_sink_total',
    help: 'Lines the sink refused after the gateway accepted them (type conflicts and the like)',
    registers: [registry],
  })
  const spoolReplayedLines = new Counter({
    name: 'mc_spool_replayed_lines_total',
    help: 'Spooled lines delivered to the sink by the replayer',
    registers: [registry],
  })
  const replayWrites = new Counter({
    name: 'mc_spool_replay_writes_total',
    help: 'Sink writes made by the spool replayer',
    registers: [registry],
  })
  const replayFailures = new Counter({
    name: 'mc_spool_replay_failures_total',
    help: 'Replay writes the sink failed, by reason (records kept and retried; "lines refused": moved to the dead-letter file)',
    labelNames: ['reason'] as const,
    registers: [registry],
  })
  const deadLetterRecords = new Counter({
    name: 'mc_dead_letter_records_total',
    help: 'Spooled records (or their refused lines) moved to the dead-letter file',
    registers: [registry],
  })
  const deadLetterLines = new Counter({
    name: 'mc_dead_letter_lines_total',
    help: 'Acknowledged lines the sink refused for good, moved to the dead-letter file',
    registers: [registry],
  })
  let spool: { spool: { bytes: number; lines: number; records: number }; mode: string; name: string; up: boolean } | undefined
  new Gauge({
    name: 'mc_spool_bytes',
    help: 'Bytes of batches waiting in the on-disk spool',
    registers: [registry],
    collect() {
      this.set(spool?.spool.bytes ?? 0)
    },
  })
  new Gauge({
    name: 'mc_spool_lines',
    help: 'Lines waiting in the on-disk spool',
    registers: [registry],
    collect() {
      this.set(spool?.spool.lines ?? 0)
    },
  })
  new Gauge({
    name: 'mc_spooling',
    help: '1 while batches go to the spool (the sink failed and the spool is not drained yet)',
    registers: [registry],
    collect() {
      this.set(spool?.mode === 'spooling' ? 1 : 0)
    },
  })
  new Gauge({
    name: 'mc_sink_up',
    help: '1 when batches go to the sink directly and its last write succeeded; 0 while spooling or failing',
    labelNames: ['sink'] as const,
    registers: [registry],
    collect() {
      this.reset()
      if (spool) this.set({ sink: spool.name }, spool.up ? 1 : 0)
    },
  })
  return {
    registry,
    wsConnections,
    frames,
    linesAccepted,
    linesRejected,
    batches,
    batchLines,
    batchSeconds,
    sinkErrors,
    linesRefusedBySink,
    spoolReplayedLines,
    replayWrites,
    replayFailures,
    deadLetterRecords,
    deadLetterLines,
    /** `fn` moves counts kept elsewhere into the counters; called before they are read. */
    beforeScrape(fn: () => void) {
      flushers.push(fn)
    },
    /** Reports this sink's state, its spool's size and mode in the gauges above. */
    trackSpool(s: NonNullable<typeof spool>) {
      spool = s
    },
  }
}

export type Metrics = ReturnType<typeof createMetrics>
