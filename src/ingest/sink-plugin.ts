import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { Batcher } from './batcher.js'
import { DurableSink } from './durable-sink.js'
import { createInfluxSink } from './influx-sink.js'
import type { Sink } from './sink.js'
import { Spool } from './spool.js'
import { createSqlSink } from './sql-sink.js'

declare module 'fastify' {
  interface FastifyInstance {
    sink: DurableSink
    batcher: Batcher
  }
}

export interface SinkPluginOptions {
  config: Pick<Config, 'influx' | 'batch' | 'sinkTimeoutMs' | 'spool' | 'dataDir'>
  /** A sink built by the caller (tests, embedding) instead of the configured one. */
  sink?: Sink
}

// A refusal of many lines logs the first few only.
const MAX_LOGGED_LINES = 10

/** The time-series sink (InfluxDB 3, or the metrics table) and its group-commit batcher. */
export default fp(
  async (app: FastifyInstance, opts: SinkPluginOptions) => {
    const { config } = opts
    const sink =
      opts.sink ??
      (config.influx !== undefined
        ? createInfluxSink({ ...config.influx, timeoutMs: config.sinkTimeoutMs })
        : createSqlSink(app.db))
    const m = app.metrics
    const spool = await Spool.open({
      dir: join(config.dataDir, 'spool'),
      maxBytes: config.spool.maxBytes,
      segmentBytes: config.spool.segmentBytes,
    })
    if (spool.recovered.tornBytes > 0) {
      app.log.warn({ torn_bytes: spool.recovered.tornBytes }, 'spool: cut off torn or corrupt bytes found at start-up')
    }
    const durable = new DurableSink({
      sink,
      spool,
      log: app.log.child({ component: 'spool' }),
      retryMinMs: config.spool.retryMinMs,
      retryMaxMs: config.spool.retryMaxMs,
      // A replay write is as large as a batch may be.
      replayMaxRecords: config.batch.maxLines,
      replayMaxBytes: config.batch.maxBytes,
      onReplay: ({ lines, delivered }) => (delivered ? m.spoolReplayedLines.inc(lines) : m.linesRefusedBySink.inc(lines)),
    })
    m.trackSpool(durable)
    const ok = m.batches.labels(sink.name, 'ok')
    const failed = m.batches.labels(sink.name, 'error')
    const seconds = m.batchSeconds.labels(sink.name)
    const up = m.sinkUp.labels(sink.name)
    const batcher = new Batcher(durable, config.batch, (r) => {
      seconds.observe(r.durationMs / 1000)
      m.batchLines.observe(r.lines)
      if (r.error === undefined) {
        ok.inc()
        up.set(1)
        return
      }
      failed.inc()
      m.sinkErrors.inc({ sink: sink.name, kind: r.error.transient ? 'transient' : 'permanent' })
      if (r.error.transient) up.set(0)
      if (r.error.transient) {
        app.log.warn({ sink: sink.name, lines: r.lines, err: r.error }, 'sink write failed')
        return
      }
      // Refused by the sink itself: not retried; the offending lines go to the log.
      const rejected = r.error.rejected
      m.linesRefusedBySink.inc(rejected?.length ?? r.lines)
      app.log.warn(
        { sink: sink.name, lines: r.lines, refused: rejected?.slice(0, MAX_LOGGED_LINES) ?? r.error.message },
        'sink refused lines',
      )
    })
    app.decorate('sink', durable)
    app.decorate('batcher', batcher)
    app.log.info({ sink: sink.name }, 'time-series sink ready')
    app.addHook('onClose', async () => {
      await batcher.flush()
      await durable.close()
    })
  },
  { name: 'sink', dependencies: ['db', 'metrics'] },
)
