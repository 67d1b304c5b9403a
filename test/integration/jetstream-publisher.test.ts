import { connect, type NatsConnection } from '@nats-io/transport-node'
import { afterEach, describe, expect, it } from 'vitest'
import { BusError } from '../../src/bus/bus.js'
import { JetStreamPublisher } from '../../src/bus/jetstream-publisher.js'
import { NatsBus } from '../../src/bus/nats.js'
import {
  deleteStreams,
  natsReachable,
  natsUrlForTests,
  startNatsServer,
  streamMessages,
  uniqueName,
  withJsm,
  type NatsServer,
} from '../helpers/nats.js'
import { requireService } from '../helpers/services.js'
import { waitFor } from '../helpers/wait.js'

const machineNats = await requireService(`NATS at ${natsUrlForTests}`, await natsReachable())

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array) => new TextDecoder().decode(b)
const quiet = { debug() {}, info() {}, warn() {}, error() {} }

async function rejection(p: Promise<unknown>): Promise<BusError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(BusError)
  return err as BusError
}

const connections: NatsConnection[] = []
const publishers: JetStreamPublisher[] = []
const buses: NatsBus[] = []
const streams: string[] = []
let server: NatsServer | undefined

afterEach(async () => {
  for (const p of publishers.splice(0)) p.close('closed', 'test over')
  await Promise.all(buses.splice(0).map((b) => b.close()))
  await Promise.all(connections.splice(0).map((nc) => nc.close().catch(() => {})))
  if (streams.length > 0) await deleteStreams(natsUrlForTests, ...streams.splice(0))
  await server?.cleanup()
  server = undefined
})

async function publisherOn(url: string, opts: { coalesce?: boolean; jetstream?: boolean } = {}) {
  const nc = await connect({ servers: url, noAsyncTraces: true })
  connections.push(nc)
  const p = new JetStreamPublisher(nc, { jetstreamEnabled: () => opts.jetstream ?? true, coalesce: opts.coalesce ?? false, sweepMs: 50 })
  publishers.push(p)
  return { nc, p }
}

async function newStream(url = natsUrlForTests): Promise<string> {
  const name = uniqueName('JP')
  if (url === natsUrlForTests) streams.push(name)
  await withJsm(url, (jsm) => jsm.streams.add({ name, subjects: [`${name}.>`] }))
  return name
}

/** A core subscriber that takes the messages and never answers: interest without an ack. */
async function swallow(nc: NatsConnection, subject: string) {
  nc.subscribe(subject, { callback: () => {} })
  await nc.flush()
}

describe.skipIf(!machineNats)('JetStreamPublisher on the machine NATS', () => {
  it('maps acks to {stream, seq, duplicate} and stores the headers and the msgId', async () => {
    const name = await newStream()
    const { p } = await publisherOn(natsUrlForTests)
    const headers = { 'Device-Id': 'd1', 'Mqtt-Topic': 'raw.d1/a' }
    expect(await p.publish(`${name}.d1`, bytes('one'), 'id-1', headers, 5000)).toEqual({ stream: name, seq: 1, duplicate: false })
    expect(await p.publish(`${name}.d1`, bytes('one'), 'id-1', headers, 5000)).toEqual({ stream: name, seq: 1, duplicate: true })
    expect(await p.publish(`${name}.d1`, bytes('two'), undefined, undefined, 5000)).toEqual({ stream: name, seq: 2, duplicate: false })
    const stored = await streamMessages(natsUrlForTests, name)
    expect(stored.map((m) => [m.seq, text(m.data)])).toEqual([
      [1, 'one'],
      [2, 'two'],
    ])
    expect(stored[0]!.headers).toEqual({ ...headers, 'Nats-Msg-Id': 'id-1' })
    expect(p.pending).toBe(0)
  })

  it('says no_stream for a subject no stream takes, and no_jetstream when the account has none', async () => {
    const { p } = await publisherOn(natsUrlForTests)
    expect((await rejection(p.publish(uniqueName('nostream'), bytes('x'), 'x', undefined, 5000))).kind).toBe('no_stream')
    const off = await publisherOn(natsUrlForTests, { jetstream: false })
    expect((await rejection(off.p.publish(uniqueName('nostream'), bytes('x'), 'x', undefined, 5000))).kind).toBe('no_jetstream')
  })

  it('refuses a header value with CR or LF before sending anything', async () => {
    const { p } = await publisherOn(natsUrlForTests)
    const err = await rejection(p.publish('x.y', bytes('x'), undefined, { 'Device-Type': 'a\r\nInjected: 1' }, 5000))
    expect(err.kind).toBe('refused')
    expect(p.pending).toBe(0)
  })

  it.each([false, true])('resolves 400 publishes in flight with distinct seqs (coalesce %s)', async (coalesce) => {
    const name = await newStream()
    const { p } = await publisherOn(natsUrlForTests, { coalesce })
    const acks = await Promise.all(
      Array.from({ length: 400 }, (_, i) => p.publish(`${name}.d${i % 20}`, bytes(String(i)), `m-${i}`, { 'Device-Id': `d${i % 20}` }, 10_000)),
    )
    expect(acks.every((a) => a.stream === name && !a.duplicate)).toBe(true)
    expect(new Set(acks.map((a) => a.seq)).size).toBe(400)
    expect(Math.max(...acks.map((a) => a.seq))).toBe(400)
  })

  it('rejects with timeout from the sweep when nothing acks (interest but no stream)', async () => {
    const { nc, p } = await publisherOn(natsUrlForTests)
    const subject = uniqueName('swallowed')
    await swallow(nc, subject)
    const started = performance.now()
    const err = await rejection(p.publish(subject, bytes('x'), 'x', undefined, 200))
    expect(err.kind).toBe('timeout')
    expect(err.transient).toBe(true)
    const took = performance.now() - started
    expect(took).toBeGreaterThanOrEqual(199)
    expect(p.pending).toBe(0)
  })

  it('fails what is pending with closed on close, and takes nothing afterwards', async () => {
    const { nc, p } = await publisherOn(natsUrlForTests)
    const subject = uniqueName('swallowed')
    await swallow(nc, subject)
    const pending = rejection(p.publish(subject, bytes('x'), undefined, undefined, 60_000))
    await waitFor(() => p.pending, (n) => n === 1, 'one publish pending')
    p.close('closed', 'bus is closed')
    expect((await pending).kind).toBe('closed')
    expect((await rejection(p.publish(subject, bytes('x'), undefined, undefined, 1000))).kind).toBe('closed')
  })

  it('fails what is pending with closed when the bus closes', async () => {
    const bus = new NatsBus({ url: natsUrlForTests, connectTimeoutMs: 2000, publishTimeoutMs: 2000, log: quiet })
    buses.push(bus)
    await bus.start()
    await waitFor(() => bus.status(), (s) => s.status === 'up', 'bus up')
    const subject = uniqueName('swallowed')
    await swallow(bus.connection()!, subject)
    const pending = rejection(bus.persist(subject, bytes('x'), { timeoutMs: 60_000 }))
    await bus.close()
    expect((await pending).kind).toBe('closed')
  })
})

describe('JetStreamPublisher with its own nats-server', () => {
  it('fails pending persists with disconnected at once when the server dies, new ones too, and works after the restart', async () => {
    server = await startNatsServer()
    const bus = new NatsBus({ url: server.url, connectTimeoutMs: 2000, publishTimeoutMs: 2000, log: quiet })
    buses.push(bus)
    await bus.start()
    await waitFor(() => bus.status(), (s) => s.status === 'up', 'bus up')
    const name = await newStream(server.url)
    expect(await bus.persist(`${name}.a`, bytes('before'), { msgId: 'b' })).toMatchObject({ stream: name, seq: 1 })

    // Pending for good: a subscriber takes them and nobody acks; their timeout is far away.
    const subject = uniqueName('swallowed')
    await swallow(bus.connection()!, subject)
    const pending = Array.from({ length: 20 }, () => rejection(bus.persist(subject, bytes('x'), { timeoutMs: 60_000 })))
    await server.kill()
    const started = performance.now()
    const errs = await Promise.all(pending)
    expect(errs.map((e) => e.kind)).toEqual(Array(20).fill('disconnected'))
    // Far before the 60 s timeout: the disconnect failed them.
    expect(performance.now() - started).toBeLessThan(10_000)
    await waitFor(() => bus.status(), (s) => s.status === 'down', 'bus down')
    const at = performance.now()
    expect((await rejection(bus.persist(`${name}.a`, bytes('during'), { msgId: 'd' }))).kind).toBe('disconnected')
    expect(performance.now() - at).toBeLessThan(1000)

    await server.start()
    await waitFor(() => bus.status(), (s) => s.status === 'up', 'bus up after the restart')
    // The inbox subscription came back with nats.js' reconnect.
    expect(await bus.persist(`${name}.a`, bytes('after'), { msgId: 'a' })).toMatchObject({ stream: name, seq: 2, duplicate: false })
    expect(await bus.persist(`${name}.a`, bytes('before'), { msgId: 'b' })).toMatchObject({ seq: 1, duplicate: true })
  })
})
