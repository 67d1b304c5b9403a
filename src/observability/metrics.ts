import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/** One registry per app instance (tests build many apps in one process). */
export function createMetrics() {
  const registry = new Registry()
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
  })
  const linesAccepted = new Counter({
    name: 'mc_lines_accepted_total',
    help: 'Lines durably accepted',
    registers: [registry],
  })
  const linesRejected = new Counter({
    name: 'mc_lines_rejected_total',
    help: 'Frames refused for a bad line (nothing of the frame written)',
    registers: [registry],
  })
  const batches = new Counter({
    name: 'mc_batches_flushed_total',
    help: 'Batches written to the sink, by outcome',
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
    help: 'Failed sink writes, transient (retryable) or permanent',
    labelNames: ['sink', 'kind'] as const,
    registers: [registry],
  })
  const linesRefusedBySink = new Counter({
    name: 'mc_lines_refused_by_sink_total',
    help: 'Lines the sink refused after the gateway accepted them (type conflicts and the like)',
    registers: [registry],
  })
  const sinkUp = new Gauge({
    name: 'mc_sink_up',
    help: '1 when the last sink write or ping succeeded',
    labelNames: ['sink'] as const,
    registers: [registry],
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
    sinkUp,
  }
}

export type Metrics = ReturnType<typeof createMetrics>
