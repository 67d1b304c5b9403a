import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../../config.js'
import { Batcher } from '../batcher.js'
import { DeadLetterFile } from '../spool/dead-letter.js'
import { DurableSink } from './durable-sink.js'
import { createInfluxSink } from './influx-sink.js'
import type { Sink } from './sink.js'
import { Spool } from '../spool/spool.js'
import { createSqlSink } from './sql-sink.js'

declare module 'fastify' {
  interface FastifyInstance {
    sink: DurableSink
    batcher: Batcher
  }
}

export interface SinkPluginOptions {
  config: Pick<Config, 'influx' | 'batch' | 'sinkTimeoutMs' | 'spool' | 'dataDir' | 'shutdownGraceMs'>
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
    const deadLetters = await DeadLetterFile.open({ dir: config.dataDir })
    const dead = deadLetters.summary
    if (dead.records > 0) {
      app.log.warn({ file: dead.file, records: dead.records, lines: dead.lines }, 'dead-letter file holds lines the sink refused')
    }
    const spool = await Spool.open({
      dir: join(config.dataDir, 'spool'),
      maxBytes: config.spool.maxBytes,
      segmentBytes: config.spool.segmentBytes,
    })
    if (spool.recovered.tornBytes > 0) {
      app.log.warn({ torn_bytes: spool.recovered.tornBytes }, 'spool: cut off torn or corrupt bytes found at start-up')
    }
    const ok = m.batches.labels(sink.name, 'ok')
    const spooled = m.batches.labels(sink.name, 'spooled')
    const failed = m.batches.labels(sink.name, 'error')
    const durable = new DurableSink({
      sink,
      spool,
      deadLetters,
      log: app.log.child({ component: 'spool' }),
      retryMinMs: config.spool.retryMinMs,
      retryMaxMs: config.spool.retryMaxMs,
      // A replay write is as large as a batch may be.
      replayMaxRecords: config.batch.maxLines,
      replayMaxBytes: config.batch.maxBytes,
      onReplay: ({ lines, delivered }) => {
        if (delivered) return m.spoolReplayedLines.inc(lines)
        m.linesRefusedBySink.inc(lines)
        m.deadLetterLines.inc(lines)
        m.deadLetterRecords.inc()
        app.adminErrors.record({ kind: 'sink_refusal', endpoint: 'sink', reason: `${lines} spooled lines refused by the sink: moved to the dead-letter file` })
      },
      onBatch: (outcome) => (outcome === 'ok' ? ok.inc() : spooled.inc()),
      onReplayWrite: () => m.replayWrites.inc(),
      onFailure: (err, during) => {
        // Transient failures once per outage (and change of reason), not per retry.
        if (err.transient && durable.outage?.reason !== err.reason) app.adminErrors.record({ kind: 'sink_outage', endpoint: 'sink', reason: `sink writes failing (${err.reason}): ${during === 'write' ? 'batches go to the spool' : 'spooled lines wait'}` })
        if (during === 'replay') m.replayFailures.inc({ reason: err.reason })
        else m.sinkErrors.inc({ sink: sink.name, kind: err.transient ? 'transient' : 'permanent' })
      },
    })
    m.trackSpool(durable)
    const seconds = m.batchSeconds.labels(sink.name)
    // A batch neither the sink nor the spool took is logged when that starts, not per batch.
    let failing = false
    const batcher = new Batcher(durable, config.batch, (r) => {
      seconds.observe(r.durationMs / 1000)
      m.batchLines.observe(r.lines)
      if (r.error === undefined) {
        failing = false
        return
      }
      failed.inc()
      if (r.error.transient) {
        if (!failing) app.log.warn({ sink: sink.name, lines: r.lines, err: r.error, reason: r.error.reason }, 'batches refused: sink and spool unavailable')
        failing = true
        return
      }
      // Refused by the sink itself: not retried; the offending lines go to the log.
      const rejected = r.error.rejected
      m.linesRefusedBySink.inc(rejected?.length ?? r.lines)
      app.adminErrors.record({ kind: 'sink_refusal', endpoint: 'sink', reason: `rejected by the time-series sink: ${r.error.message} (${rejected?.length ?? r.lines} of ${r.lines} lines)` })
      app.log.warn(
        {
          sink: sink.name,
          lines: r.lines,
          detail: r.error.detail,
          refused: rejected?.slice(0, MAX_LOGGED_LINES).map((l) => ({ line: l.line, detail: l.detail ?? l.message, text: l.text })),
        },
        'sink refused lines',
      )
    })
    app.decorate('sink', durable)
    app.decorate('batcher', batcher)
    app.log.info({ sink: sink.name }, 'time-series sink ready')
    // Shutdown starts here, before the endpoints wait for their replies: whatever is not
    // durable by the grace minus one sink timeout is answered `ERR busy: retry` / 503, which
    // leaves a sink write already under way the time to end before the process must exit.
    let closing: Promise<void> | undefined
    app.addHook('preClose', (done) => {
      closing = batcher.close(config.shutdownGraceMs - config.sinkTimeoutMs)
      done()
    })
    app.addHook('onClose', async () => {
      await (closing ?? batcher.close(config.shutdownGraceMs - config.sinkTimeoutMs))
      await durable.close()
      await deadLetters.close()
    })
  },
  { name: 'sink', dependencies: ['db', 'metrics'] },
)
