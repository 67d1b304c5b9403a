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
    help: 'Lines of /time-series frames answered ERR (a bad line, or the sink refused or could not take them): nothing of such a frame is written',
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
  // Bus and MQTT broker (src/bus/, src/devices/). Gauges read their sources at scrape time.
  let busSource: { up: boolean; mode: string } | undefined
  new Gauge({
    name: 'mc_bus_up',
    help: '1 while the bus is connected (NATS) or in-process; 0 while NATS is unreachable',
    labelNames: ['mode'] as const,
    registers: [registry],
    collect() {
      this.reset()
      if (busSource) this.set({ mode: busSource.mode }, busSource.up ? 1 : 0)
    },
  })
  let brokerSource: { clients: number; held: number } | undefined
  new Gauge({
    name: 'mc_mqtt_clients',
    help: 'MQTT clients connected to this instance (TCP and WebSocket)',
    registers: [registry],
    collect() {
      this.set(brokerSource?.clients ?? 0)
    },
  })
  new Gauge({
    name: 'mc_mqtt_held_publishes',
    help: 'QoS 1 publishes held without PUBACK, waiting for JetStream to store them',
    registers: [registry],
    collect() {
      this.set(brokerSource?.held ?? 0)
    },
  })
  const mqttConnections = new Counter({
    name: 'mc_mqtt_connections_total',
    help: 'MQTT CONNECTs answered, by result (accepted, bad_credentials, deleted, throttled, over_limit, protocol_error, unavailable: the device directory failed)',
    labelNames: ['result'] as const,
    registers: [registry],
  })
  const mqttMessages = new Counter({
    name: 'mc_mqtt_messages_total',
    help: 'MQTT publishes from devices, by result: received, forwarded (stored in JetStream or published to NATS), refused (ACL), timed_out (client disconnected without PUBACK), failed (QoS 0 not published, or a QoS 1 message NATS refused for good)',
    labelNames: ['result'] as const,
    registers: [registry],
  })
  const mqttCommands = new Counter({
    name: 'mc_mqtt_commands_total',
    help: 'NATS cmd.<device> messages delivered to devices connected here',
    registers: [registry],
  })
  const mqttLines = new Counter({
    name: 'mc_mqtt_lines_total',
    help: 'Line-protocol payloads from devices, by result: submitted (to the batcher), refused (the batcher refused), not_line_protocol',
    labelNames: ['result'] as const,
    registers: [registry],
  })
  const natsPublishSeconds = new Histogram({
    name: 'mc_nats_publish_seconds',
    help: 'Time from a JetStream publish to its ack (kind=jetstream), or of a core publish and flush (kind=core)',
    labelNames: ['kind'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [registry],
  })
  const natsPublishes = new Counter({
    name: 'mc_nats_publishes_total',
    help: 'Publishes to NATS, by kind (jetstream, core) and outcome (ok, duplicate, error)',
    labelNames: ['kind', 'outcome'] as const,
    registers: [registry],
  })
  // The /ws hub (src/channels/): the gauges read the hub when scraped.
  let channelSource: { channels: number; members: number } | undefined
  new Gauge({
    name: 'mc_channels',
    help: 'Channels with at least one /ws connection on this instance',
    registers: [registry],
    collect() {
      this.set(channelSource?.channels ?? 0)
    },
  })
  new Gauge({
    name: 'mc_channel_members',
    help: 'Members (distinct users per channel, every instance) of the channels with connections here',
    registers: [registry],
    collect() {
      this.set(channelSource?.members ?? 0)
    },
  })
  const channelEvents = new Counter({
    name: 'mc_channel_events_total',
    help: 'Channel events: in (stored events this instance received from the log, once each), out (frames sent to /ws clients: events, presence, typing)',
    labelNames: ['direction'] as const,
    registers: [registry],
    collect: flush,
  })
  const channelEventsDropped = new Counter({
    name: 'mc_channel_events_dropped_total',
    help: 'Messages on NATS channel.<id> dropped as no event, by reason (not_json, invalid, too_large)',
    labelNames: ['reason'] as const,
    registers: [registry],
  })
  const channelRecoveries = new Counter({
    name: 'mc_channel_recoveries_total',
    help: 'Reconnects with since=<offset>, by result (recovered, failed: recovery:failed sent)',
    labelNames: ['result'] as const,
    registers: [registry],
  })
  const channelDisconnects = new Counter({
    name: 'mc_channel_disconnects_total',
    help: '/ws connections ended by the gateway, by reason (slow_consumer, ping_timeout, token_expired, revoked, admin, shutdown)',
    labelNames: ['reason'] as const,
    registers: [registry],
  })
  const oidcJwksFetches = new Counter({
    name: 'mc_oidc_jwks_fetches_total',
    help: "Fetches of the OIDC issuer's discovery document or JWKS, by result (ok, error)",
    labelNames: ['result'] as const,
    registers: [registry],
  })
  const redisEvents = new Counter({
    name: 'mc_redis_events_total',
    help: 'Messages from Redis PUBLISH channel:<id>, by result (stored, not_json, invalid, too_large, refused, unavailable, overloaded, not_holder)',
    labelNames: ['result'] as const,
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
    mqttConnections,
    mqttMessages,
    mqttCommands,
    mqttLines,
    natsPublishSeconds,
    natsPublishes,
    channelEvents,
    channelEventsDropped,
    channelRecoveries,
    channelDisconnects,
    oidcJwksFetches,
    redisEvents,
    /** The hub's live counts for mc_channels and mc_channel_members. */
    trackChannels(s: NonNullable<typeof channelSource>) {
      channelSource = s
    },
    /** The bus's state for mc_bus_up. */
    trackBus(s: NonNullable<typeof busSource>) {
      busSource = s
    },
    /** The broker's live counts for mc_mqtt_clients and mc_mqtt_held_publishes. */
    trackBroker(s: NonNullable<typeof brokerSource>) {
      brokerSource = s
    },
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
