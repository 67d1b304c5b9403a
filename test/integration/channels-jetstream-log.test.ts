/**
 * The channels' JetStream log against its own nats-server (so the CHANNELS stream is this
 * file's alone, and the server can be killed): offsets and live order, events a backend
 * publishes on core NATS, dropped messages, history reads (ok, expired by the per-subject
 * limit and by age, unknown offset), and delivery across a NATS kill and restart and
 * across a replaced connection, with no gap and no duplicate.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { NatsBus } from '../../src/bus/nats.js'
import { JetStreamChannelLog, type DropReason } from '../../src/channels/jetstream-log.js'
import { ChannelLogError, CHANNEL_STREAM_NAME, type LoggedEvent } from '../../src/channels/types.js'
import { deleteStreams, startNatsServer, streamMessages, uniqueName, withJsm } from '../helpers/nats.js'
import { requireService } from '../helpers/services.js'
import { waitFor, waitUntil } from '../helpers/wait.js'

const started = await startNatsServer().catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))))
const haveServer = await requireService(`an own nats-server (${started instanceof Error ? started.message : 'ok'})`, !(started instanceof Error))
const server = started instanceof Error ? undefined : started

/** The stream most tests share keeps this many per channel: more than any test appends. */
const LONG_HISTORY = 10_000
/** The per-subject limit test's own stream. */
const SHORT_HISTORY = 5
const EVENT_MAX_BYTES = 1024

interface LogLine {
  level: string
  obj: Record<string, unknown>
  msg: string
}

interface Instance {
  bus: NatsBus
  log: JetStreamChannelLog
  events: LoggedEvent[]
  dropped: DropReason[]
  lines: LogLine[]
  /** log.start()'s promise. */
  started: Promise<void>
  of(channelId: string): LoggedEvent[]
}

const made: Instance[] = []

/** A bus and a started log on this file's server (one gateway instance, as far as the log knows). */
async function instance(opts: { historyMaxAgeS?: number; historySize?: number; waitLive?: boolean } = {}): Promise<Instance> {
  // A stream with other limits than the one left by the test before: made anew by this log.
  if (opts.historyMaxAgeS !== undefined || opts.historySize !== undefined) await deleteStreams(server!.url, CHANNEL_STREAM_NAME)
  const lines: LogLine[] = []
  const at = (level: string) => (obj: object, msg: string) => void lines.push({ level, obj: obj as Record<string, unknown>, msg })
  const logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
  const bus = new NatsBus({ url: server!.url, connectTimeoutMs: 2000, publishTimeoutMs: 2000, log: logger })
  const dropped: DropReason[] = []
  const log = new JetStreamChannelLog({
    bus,
    historySize: opts.historySize ?? LONG_HISTORY,
    historyMaxAgeS: opts.historyMaxAgeS ?? 3600,
    eventMaxBytes: EVENT_MAX_BYTES,
    log: logger,
    onDropped: (r) => dropped.push(r),
  })
  const events: LoggedEvent[] = []
  void bus.start()
  const started = log.start((e) => events.push(e))
  const inst: Instance = { bus, log, events, dropped, lines, started, of: (id) => events.filter((e) => e.channelId === id) }
  made.push(inst)
  if (opts.waitLive !== false) await started
  return inst
}

async function closeAll(): Promise<void> {
  for (const i of made.splice(0)) {
    await i.log.close()
    await i.bus.close()
  }
}

/** Appends, retrying while the log is unavailable (NATS restarting); the offsets of what was stored. */
async function appendRetrying(log: JetStreamChannelLog, channelId: string, n: number): Promise<number> {
  for (;;) {
    try {
      return (await log.append(channelId, { type: 'message:created', data: { n } })).offset
    } catch (err) {
      if (!(err instanceof ChannelLogError) || err.kind !== 'unavailable') throw err
      await new Promise((r) => setTimeout(r, 50))
    }
  }
}

const rawPublish = (subject: string, body: string | Uint8Array) =>
  withJsm(server!.url, async (_jsm, nc) => {
    nc.publish(subject, body)
    await nc.flush()
  })

describe.runIf(haveServer)('channels: JetStream log', () => {
  afterEach(async () => {
    await closeAll()
    // Limits a test set are not the next one's.
    await deleteStreams(server!.url, CHANNEL_STREAM_NAME)
  })
  afterAll(async () => {
    await closeAll()
    await server?.cleanup()
  })

  it('gives appended events increasing offsets and delivers them live, in order, with the same frame on every instance', async () => {
    const a = await instance()
    const b = await instance()
    const channel = uniqueName('room')
    const appended: LoggedEvent[] = []
    for (let n = 0; n < 10; n++) appended.push(await a.log.append(channel, { type: 'message:created', data: { n } }))
    for (let i = 1; i < appended.length; i++) expect(appended[i]!.offset).toBeGreaterThan(appended[i - 1]!.offset)
    for (const inst of [a, b]) {
      await waitUntil(() => inst.of(channel).length === 10, 10_000, 'all 10 events delivered')
      expect(inst.of(channel).map((e) => e.frame)).toEqual(appended.map((e) => e.frame))
    }
    const first = JSON.parse(appended[0]!.frame) as Record<string, unknown>
    expect(Object.keys(first)).toEqual(['type', 'channelId', 'timestamp', 'offset', 'data'])
    expect(first).toMatchObject({ type: 'message:created', channelId: channel, offset: appended[0]!.offset, data: { n: 0 } })
    expect(a.log.position()).toBeGreaterThanOrEqual(appended[9]!.offset)
    expect(a.log.status()).toEqual({ status: 'up', kind: 'jetstream' })
  })

  it('refuses what is no event, and an event larger than the limit', async () => {
    const a = await instance()
    const channel = uniqueName('room')
    await expect(a.log.append(channel, { type: 'presence:join', data: null })).rejects.toMatchObject({ kind: 'refused' })
    await expect(a.log.append('bad channel', { type: 'x', data: null })).rejects.toMatchObject({ kind: 'refused' })
    const big = 'x'.repeat(EVENT_MAX_BYTES)
    await expect(a.log.append(channel, { type: 'message:created', data: big })).rejects.toMatchObject({ kind: 'refused' })
  })

  it("delivers a backend's raw core publish, and drops (logs, counts) what is no event while moving on", async () => {
    const a = await instance()
    const channel = uniqueName('room')
    const subject = `channel.${channel}`
    await rawPublish(subject, '{"type":"message:created","data":{"text":"hi"}}')
    await rawPublish(subject, 'not json {')
    await rawPublish(subject, '{"type":"typing:start","data":null}')
    await rawPublish(subject, `{"type":"message:created","data":"${'y'.repeat(EVENT_MAX_BYTES)}"}`)
    await rawPublish(subject, '{"type":"message:created","channelId":"another","data":1}')
    await rawPublish(subject, '{"type":"message:updated","timestamp":1700000000000,"data":{"text":"edited"}}')
    await waitUntil(() => a.of(channel).length === 2, 10_000, 'the two valid events')
    const [created, updated] = a.of(channel)
    const stored = (await streamMessages(server!.url, CHANNEL_STREAM_NAME)).filter((m) => m.subject === subject)
    expect(stored).toHaveLength(6)
    expect(created).toMatchObject({ type: 'message:created', channelId: channel, data: { text: 'hi' }, offset: stored[0]!.seq })
    // No timestamp in the message: the stream's own time (the same on every instance), not the receiver's clock.
    expect(Math.abs(created!.timestamp - Date.now())).toBeLessThan(60_000)
    expect(updated).toMatchObject({ type: 'message:updated', timestamp: 1700000000000, offset: stored[5]!.seq })
    expect(a.dropped).toEqual(['not_json', 'invalid', 'too_large', 'invalid'])
    expect(a.lines.filter((l) => l.level === 'warn' && l.msg.includes('dropped'))).toHaveLength(4)
    expect(a.log.position()).toBe(stored[5]!.seq)
    // The same raw events come back from the history, decoded the same way.
    const read = await a.log.readSince(channel, stored[0]!.seq - 1)
    expect(read).toEqual({ ok: true, events: [created, updated] })
  })

  it('reads a channel since an offset; expired once the per-subject limit dropped events after it; unknown beyond the end', async () => {
    const a = await instance({ historySize: SHORT_HISTORY })
    const channel = uniqueName('room')
    const other = uniqueName('room')
    const offsets: number[] = []
    for (let n = 0; n < SHORT_HISTORY + 2; n++) {
      offsets.push((await a.log.append(channel, { type: 'message:created', data: { n } })).offset)
      // Another channel's events between this one's: offsets of a channel are not consecutive.
      await a.log.append(other, { type: 'message:created', data: { n } })
    }
    await waitUntil(() => a.of(channel).length === offsets.length, 10_000, 'all delivered')
    // Kept: the newest SHORT_HISTORY, offsets[2..]; offsets[0] and [1] were dropped by the per-subject limit.
    expect(await a.log.readSince(channel, offsets[2]!)).toEqual({ ok: true, events: a.of(channel).slice(3) })
    expect(await a.log.readSince(channel, offsets[4]!)).toEqual({ ok: true, events: a.of(channel).slice(5) })
    // Missed more than the history keeps: offsets[1] is gone.
    expect(await a.log.readSince(channel, offsets[0]!)).toEqual({ ok: false, reason: 'expired' })
    expect(await a.log.readSince(channel, offsets.at(-1)!)).toEqual({ ok: true, events: [] })
    expect(await a.log.readSince(channel, a.log.position() + 1000)).toEqual({ ok: false, reason: 'unknown_offset' })
    expect(await a.log.readSince(uniqueName('quiet'), offsets[4]!)).toEqual({ ok: true, events: [] })
  })

  it('says expired when the stream aged out events after the offset', async () => {
    const a = await instance({ historyMaxAgeS: 1 })
    const channel = uniqueName('room')
    const first = await a.log.append(channel, { type: 'message:created', data: 1 })
    await a.log.append(channel, { type: 'message:created', data: 2 })
    await waitFor(
      () => withJsm(server!.url, (jsm) => jsm.streams.info(CHANNEL_STREAM_NAME)),
      (info) => info.state.messages === 0,
      'the stream aged out both events',
    )
    const third = await a.log.append(channel, { type: 'message:created', data: 3 })
    expect(await a.log.readSince(channel, first.offset)).toEqual({ ok: false, reason: 'expired' })
    await waitUntil(() => a.of(channel).length === 3, 10_000, 'all three delivered live')
    expect(await a.log.readSince(channel, third.offset)).toEqual({ ok: true, events: [] })
  })

  it('delivers every event appended before, during and after a NATS kill and restart once, in order', async () => {
    const a = await instance()
    const b = await instance()
    const channel = uniqueName('room')
    const acked: number[] = []
    let stop = false
    const writer = (async () => {
      for (let n = 0; !stop; n++) acked.push(await appendRetrying(a.log, channel, n))
    })()
    await waitUntil(() => b.of(channel).length >= 20, 20_000, 'events flowing before the kill')
    await server!.kill()
    await waitUntil(() => a.bus.status().status === 'down' && b.bus.status().status === 'down', 20_000, 'both buses down')
    await server!.start()
    const countAtRestart = acked.length
    await waitUntil(() => acked.length >= countAtRestart + 20, 30_000, 'appends stored again after the restart')
    stop = true
    await writer
    const stored = (await streamMessages(server!.url, CHANNEL_STREAM_NAME)).filter((m) => m.subject === `channel.${channel}`).map((m) => m.seq)
    for (const inst of [a, b]) {
      await waitUntil(() => inst.of(channel).length >= stored.length, 30_000, 'everything stored delivered')
      const offsets = inst.of(channel).map((e) => e.offset)
      expect(offsets).toEqual(stored)
      for (const seq of acked) expect(offsets).toContain(seq)
    }
  })

  it('starts while NATS is down, refusing appends as unavailable, and goes live once NATS is up', async () => {
    await server!.stop()
    const a = await instance({ waitLive: false })
    let live = false
    void a.started.then(() => (live = true))
    await waitUntil(() => a.lines.some((l) => l.msg.includes('NATS not reachable')), 20_000, 'the bus trying to connect')
    expect(live).toBe(false)
    expect(a.log.status().status).toBe('down')
    await expect(a.log.append(uniqueName('room'), { type: 'message:created', data: 1 })).rejects.toMatchObject({ kind: 'unavailable' })
    await expect(a.log.readSince(uniqueName('room'), 0)).rejects.toMatchObject({ kind: 'unavailable' })
    await server!.start()
    await a.started
    expect(a.log.status()).toEqual({ status: 'up', kind: 'jetstream' })
    const channel = uniqueName('room')
    const stored = await a.log.append(channel, { type: 'message:created', data: 2 })
    await waitUntil(() => a.of(channel).length === 1, 10_000, 'the event delivered')
    expect(a.of(channel)[0]!.frame).toBe(stored.frame)
  })

  it('resumes after the last delivered event when the bus replaces its connection', async () => {
    const a = await instance()
    const channel = uniqueName('room')
    for (let n = 0; n < 5; n++) await a.log.append(channel, { type: 'message:created', data: { n } })
    await waitUntil(() => a.of(channel).length === 5, 10_000, 'five delivered')
    const old = a.bus.connection()!
    // nats.js giving up on a connection looks like this to the bus: it makes a new one.
    await old.close()
    await waitUntil(() => a.bus.connection() !== undefined && a.bus.connection() !== old && a.log.status().status === 'up', 20_000, 'a new connection, live again')
    // Stored by another connection meanwhile and after: all reach this instance once.
    const other = await instance()
    for (let n = 5; n < 10; n++) await other.log.append(channel, { type: 'message:created', data: { n } })
    await waitUntil(() => a.of(channel).length >= 10, 10_000, 'ten delivered')
    expect(a.of(channel).map((e) => (e.data as { n: number }).n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  })
})
