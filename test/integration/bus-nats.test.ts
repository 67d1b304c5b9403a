import { createServer } from 'node:net'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { BusError, type BusMessage, type BusStatus } from '../../src/bus/bus.js'
import { NatsBus, parseNatsUrl } from '../../src/bus/nats.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import {
  deleteStreams,
  natsReachable,
  natsUrlForTests,
  startNatsServer,
  streamMessageCount,
  streamMessages,
  uniqueName,
  withJsm,
  type NatsServer,
} from '../helpers/nats.js'
import { requireService } from '../helpers/services.js'
import { waitFor, waitUntil } from '../helpers/wait.js'

const machineNats = await requireService(`NATS at ${natsUrlForTests}`, await natsReachable())

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array) => new TextDecoder().decode(b)

interface LogEntry {
  level: string
  obj: object
  msg: string
}

/** Buses made by a test, closed after it (even when it failed). */
const buses: NatsBus[] = []
function newBus(url: string, opts: { publishTimeoutMs?: number; connectTimeoutMs?: number } = {}) {
  const logs: LogEntry[] = []
  const at = (level: string) => (obj: object, msg: string) => void logs.push({ level, obj, msg })
  const bus = new NatsBus({
    url,
    connectTimeoutMs: opts.connectTimeoutMs ?? 2000,
    publishTimeoutMs: opts.publishTimeoutMs ?? 2000,
    log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') },
  })
  buses.push(bus)
  return { bus, logs }
}

async function closeBuses() {
  await Promise.all(buses.splice(0).map((b) => b.close()))
}

async function upBus(url = natsUrlForTests) {
  const made = newBus(url)
  await made.bus.start()
  await waitFor(() => made.bus.status(), (s) => s.status === 'up', 'bus up')
  return made
}

/** The server has the subscriptions this bus sent before (one round trip on its connection). */
const flushed = (bus: NatsBus) => bus.connection()!.flush()

async function rejection(p: Promise<unknown>): Promise<BusError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(BusError)
  return err as BusError
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => resolve(port))
    })
  })
}

describe('parseNatsUrl', () => {
  it('takes a comma list, adds the scheme, and lifts credentials out of the URLs', () => {
    expect(parseNatsUrl('nats://127.0.0.1:4222')).toMatchObject({ servers: ['nats://127.0.0.1:4222'], tls: false })
    expect(parseNatsUrl(' a:4222 , nats://b:4223 ')).toMatchObject({ servers: ['nats://a:4222', 'nats://b:4223'], display: 'nats://a:4222,nats://b:4223' })
    const user = parseNatsUrl('nats://al%40ice:s3cr%3At@h1:4222,nats://h2:4222')
    expect(user).toMatchObject({ user: 'al@ice', pass: 's3cr:t', servers: ['nats://h1:4222', 'nats://h2:4222'] })
    expect(user.display).not.toContain('s3cr')
    const token = parseNatsUrl('tls://T0KEN@nats.example:4222')
    expect(token).toMatchObject({ token: 'T0KEN', tls: true, servers: ['tls://nats.example:4222'] })
    expect(token.display).toBe('tls://nats.example:4222')
  })

  it('refuses an empty list or a bad URL without echoing credentials', () => {
    expect(() => parseNatsUrl(' , ')).toThrow(/names no server/)
    let message = ''
    try {
      parseNatsUrl('nats://user:secret@bad host:4222')
    } catch (err) {
      message = (err as Error).message
    }
    expect(message).toContain('not a server URL')
    expect(message).not.toContain('secret')
  })
})

describe.skipIf(!machineNats)('NatsBus on the machine NATS', () => {
  const streams: string[] = []
  afterEach(async () => {
    await closeBuses()
    if (streams.length > 0) await deleteStreams(natsUrlForTests, ...streams.splice(0))
  })

  it('is up with JetStream and shows the server without credentials', async () => {
    const { bus, logs } = await upBus('nats://someone:not-needed@127.0.0.1:4222')
    expect(bus.status()).toEqual({ status: 'up', mode: 'nats', jetstream: true, server: 'nats://127.0.0.1:4222' })
    expect(logs.some((l) => l.level === 'info' && l.msg.includes('bus up'))).toBe(true)
    expect(JSON.stringify(logs)).not.toContain('not-needed')
  })

  it('publishes and subscribes across two instances, with headers, wildcards and queue groups', async () => {
    const subj = uniqueName('bt')
    const a = (await upBus()).bus
    const b = (await upBus()).bus
    const plain: BusMessage[] = []
    const q1: string[] = []
    const q2: string[] = []
    a.subscribe(`${subj}.>`, (m) => plain.push(m))
    a.subscribe(`${subj}.work`, (m) => q1.push(text(m.data)), { queue: 'workers' })
    b.subscribe(`${subj}.work`, (m) => q2.push(text(m.data)), { queue: 'workers' })
    await Promise.all([flushed(a), flushed(b)])
    b.publish(`${subj}.x.y`, bytes('hello'), { 'Device-Id': 'dev-1', 'Mqtt-Topic': 'raw.dev-1/x' })
    b.publish(`${subj}.bare`, bytes('no headers'))
    for (let i = 0; i < 20; i++) b.publish(`${subj}.work`, bytes(String(i)))
    b.publish(`${subj}.marker`, bytes('last'))
    await waitUntil(() => plain.some((m) => m.subject === `${subj}.marker`), 10_000, 'the marker')
    expect(plain[0]).toMatchObject({ subject: `${subj}.x.y`, headers: { 'Device-Id': 'dev-1', 'Mqtt-Topic': 'raw.dev-1/x' } })
    expect(text(plain[0]!.data)).toBe('hello')
    expect(plain[1]).toMatchObject({ subject: `${subj}.bare`, headers: undefined })
    // The queue group got each of the 20 exactly once, spread over its members.
    await waitUntil(() => q1.length + q2.length === 20, 10_000, 'all 20 queue messages')
    expect(new Set([...q1, ...q2]).size).toBe(20)
  })

  it('keeps delivering when a handler throws, and logs it', async () => {
    const subj = uniqueName('bt')
    const { bus, logs } = await upBus()
    const got: string[] = []
    bus.subscribe(subj, () => {
      throw new Error('handler broke')
    })
    bus.subscribe(subj, (m) => got.push(text(m.data)))
    await flushed(bus)
    bus.publish(subj, bytes('1'))
    bus.publish(subj, bytes('2'))
    await waitUntil(() => got.length === 2, 10_000, 'both messages')
    expect(logs.filter((l) => l.level === 'error' && l.msg === 'bus subscriber failed')).toHaveLength(2)
  })

  it('creates a stream once and never alters it afterwards', async () => {
    const name = uniqueName('BT')
    streams.push(name)
    const { bus } = await upBus()
    expect(await bus.ensureStream({ name, subjects: [`${name}.>`], maxMsgs: 100, maxAgeMs: 60_000, duplicateWindowMs: 30_000 })).toBe('created')
    expect(await bus.ensureStream({ name, subjects: [`${name}.other.>`], maxMsgs: 5 })).toBe('exists')
    const config = await withJsm(natsUrlForTests, async (jsm) => (await jsm.streams.info(name)).config)
    expect(config).toMatchObject({ subjects: [`${name}.>`], max_msgs: 100, max_age: 60_000 * 1e6, duplicate_window: 30_000 * 1e6, storage: 'file' })
  })

  it('says created to one and exists to the other when two instances race', async () => {
    const name = uniqueName('BT')
    streams.push(name)
    const [a, b] = [(await upBus()).bus, (await upBus()).bus]
    const spec = { name, subjects: [`${name}.>`] }
    const results = await Promise.all([a.ensureStream(spec), b.ensureStream(spec)])
    expect(results.sort()).toEqual(['created', 'exists'])
  })

  it('stores a message once for one msgId, with its headers, and says duplicate the second time', async () => {
    const name = uniqueName('BT')
    streams.push(name)
    const { bus } = await upBus()
    await bus.ensureStream({ name, subjects: [`${name}.>`] })
    const headers = { 'Device-Id': 'd1', 'Received-At': '2026-01-01T00:00:00.000Z' }
    const first = await bus.persist(`${name}.d1`, bytes('payload'), { msgId: 'id-1', headers })
    const second = await bus.persist(`${name}.d1`, bytes('payload'), { msgId: 'id-1', headers })
    const third = await bus.persist(`${name}.d1.a`, bytes('other'))
    expect(first).toMatchObject({ stream: name, seq: 1, duplicate: false })
    expect(second).toMatchObject({ stream: name, seq: 1, duplicate: true })
    expect(third).toMatchObject({ stream: name, seq: 2, duplicate: false })
    const stored = await streamMessages(natsUrlForTests, name)
    expect(stored.map((m) => [m.seq, m.subject, text(m.data)])).toEqual([
      [1, `${name}.d1`, 'payload'],
      [2, `${name}.d1.a`, 'other'],
    ])
    expect(stored[0]!.headers).toEqual({ ...headers, 'Nats-Msg-Id': 'id-1' })
  })

  it('rejects a persist no stream takes with no_stream (transient: create the stream, retry)', async () => {
    const { bus } = await upBus()
    const err = await rejection(bus.persist(uniqueName('nostream'), bytes('x'), { msgId: 'x' }))
    expect(err.kind).toBe('no_stream')
    expect(err.transient).toBe(true)
  })

  it('delivers what was published before close() (drain), then is closed for good; close may be called twice', async () => {
    const subj = uniqueName('bt')
    const { bus } = await upBus()
    const listener = (await upBus()).bus
    const got: string[] = []
    listener.subscribe(subj, (m) => got.push(text(m.data)))
    await flushed(listener)
    for (let i = 0; i < 100; i++) bus.publish(subj, bytes(String(i)))
    await Promise.all([bus.close(), bus.close()])
    await bus.close()
    await waitUntil(() => got.length === 100, 10_000, 'all 100 published before close')
    expect(bus.status()).toMatchObject({ status: 'down', reason: 'closed' })
    expect(() => bus.publish('x', bytes('x'))).toThrow(expect.objectContaining({ kind: 'closed' }))
    expect(() => bus.subscribe('x', () => {})).toThrow(expect.objectContaining({ kind: 'closed' }))
    expect((await rejection(bus.persist('x', bytes('x')))).kind).toBe('closed')
    expect((await rejection(bus.ensureStream({ name: 'X', subjects: ['x'] }))).kind).toBe('closed')
  })
})

describe('NatsBus with its own nats-server', () => {
  let server: NatsServer | undefined
  afterEach(async () => {
    await closeBuses()
    await server?.cleanup()
    server = undefined
  })

  it('starts while NATS is down, comes up when it appears, and rides out a kill and restart', async () => {
    const port = await freePort()
    const url = `nats://127.0.0.1:${port}`
    const { bus, logs } = newBus(url, { publishTimeoutMs: 3000 })
    const changes: BusStatus[] = []
    bus.onStatusChange((s) => changes.push(s))
    await bus.start()
    expect(bus.status()).toMatchObject({ status: 'down', mode: 'nats', reason: 'connecting', server: url })
    expect((await rejection(bus.persist('raw.x', bytes('x')))).kind).toBe('disconnected')
    expect((await rejection(bus.ensureStream({ name: 'RAW', subjects: ['raw.>'] }))).kind).toBe('disconnected')
    // Before any connection: taken, not thrown.
    bus.publish('early.dropped', bytes('x'))
    const early: string[] = []
    bus.subscribe('early.>', (m) => early.push(text(m.data)))

    server = await startNatsServer({ port })
    await waitFor(() => bus.status(), (s) => s.status === 'up', 'bus up once the server exists')
    expect(bus.status()).toMatchObject({ jetstream: true, server: url })
    expect(changes.map((c) => c.status)).toEqual(['up'])
    const other = (await upBus(url)).bus
    await flushed(bus)
    other.publish('early.1', bytes('one'))
    await waitUntil(() => early.includes('one'), 10_000, 'the early subscription delivering')

    expect(await bus.ensureStream({ name: 'KEEP', subjects: ['keep.>'] })).toBe('created')
    for (let i = 0; i < 3; i++) await bus.persist('keep.a', bytes(String(i)), { msgId: `k${i}` })

    await server.kill()
    await waitFor(() => bus.status(), (s) => s.status === 'down', 'bus down after the kill')
    expect(bus.status()).toMatchObject({ status: 'down', mode: 'nats' })
    expect(['disconnected', 'reconnecting']).toContain(bus.status().reason)
    expect(Date.parse(bus.status().since!)).toBeGreaterThan(0)
    const err = await rejection(bus.persist('keep.a', bytes('during'), { msgId: 'during' }))
    expect(err.transient).toBe(true)
    // Made during the outage: it takes effect with the reconnect.
    const late: string[] = []
    bus.subscribe('late.>', (m) => late.push(text(m.data)))
    expect(logs.some((l) => l.level === 'warn' && l.msg.includes('bus down'))).toBe(true)

    await server.start()
    await waitFor(() => bus.status(), (s) => s.status === 'up', 'bus up after the restart')
    await waitFor(() => other.status(), (s) => s.status === 'up', 'the other bus up after the restart')
    expect(changes.map((c) => c.status)).toEqual(['up', 'down', 'up'])
    await flushed(bus)
    other.publish('early.2', bytes('two'))
    await waitUntil(() => early.includes('two'), 10_000, 'the subscription delivering after the restart')
    other.publish('late.1', bytes('late'))
    await waitUntil(() => late.includes('late'), 10_000, 'the subscription made while down delivering')
    expect(await streamMessageCount(url, 'KEEP')).toBe(3)
    expect(await bus.persist('keep.a', bytes('3'), { msgId: 'k3' })).toMatchObject({ stream: 'KEEP', seq: 4, duplicate: false })
    // The de-duplication window outlived the restart too.
    expect(await bus.persist('keep.a', bytes('0'), { msgId: 'k0' })).toMatchObject({ seq: 1, duplicate: true })
  })

  it('says no_jetstream when the server has JetStream off', async () => {
    server = await startNatsServer({ jetstream: false })
    const { bus } = await upBus(server.url)
    expect(bus.status()).toMatchObject({ status: 'up', jetstream: false })
    expect((await rejection(bus.persist('raw.x', bytes('x')))).kind).toBe('no_jetstream')
    expect((await rejection(bus.ensureStream({ name: 'RAW', subjects: ['raw.>'] }))).kind).toBe('no_jetstream')
  })

  it('connects with user and password or a token from the URL', async () => {
    server = await startNatsServer({ extraConfig: 'authorization { user: gw, password: "pa55word" }\n' })
    const { bus } = await upBus(`nats://gw:pa55word@127.0.0.1:${server.port}`)
    expect(bus.status().server).toBe(`nats://127.0.0.1:${server.port}`)
    const denied = newBus(`nats://gw:wrong@127.0.0.1:${server.port}`)
    await denied.bus.start()
    expect(denied.bus.status().status).toBe('down')
    expect(JSON.stringify(denied.logs)).not.toContain('wrong')
    await server.cleanup()

    server = await startNatsServer({ extraConfig: 'authorization { token: "t0k3n" }\n' })
    const t = await upBus(`nats://t0k3n@127.0.0.1:${server.port}`)
    expect(t.bus.status()).toMatchObject({ status: 'up', server: `nats://127.0.0.1:${server.port}` })
  })

  it('closes in bounded time while the server never came', async () => {
    const { bus } = newBus(`nats://127.0.0.1:${await freePort()}`)
    await bus.start()
    await bus.close()
    expect(bus.status()).toMatchObject({ status: 'down', reason: 'closed' })
  })
})

describe('the bus in the app', () => {
  let t: TestApp | undefined
  let server: NatsServer | undefined
  afterEach(async () => {
    await t?.close()
    t = undefined
    await server?.cleanup()
    server = undefined
  })

  const ready = async (app: TestApp) => {
    const res = await fetch(`${app.url}/readyz`)
    return { code: res.status, body: (await res.json()) as { components: { bus: BusStatus } } }
  }

  it.skipIf(!machineNats)('shows the NATS bus up in /readyz and counts JetStream publishes in /metrics', async () => {
    t = await startTestApp({ NATS_URL: natsUrlForTests })
    const r = await waitFor(() => ready(t!), (x) => x.body.components.bus.status === 'up', 'bus up in /readyz')
    expect(r.body.components.bus).toMatchObject({ status: 'up', mode: 'nats', jetstream: true, server: natsUrlForTests })
    expect(r.code).toBe(200)
    const name = uniqueName('BT')
    try {
      await t.app.bus.ensureStream({ name, subjects: [`${name}.>`] })
      await t.app.bus.persist(`${name}.a`, bytes('x'), { msgId: 'm' })
      await t.app.bus.persist(`${name}.a`, bytes('x'), { msgId: 'm' })
      t.app.bus.publish(`${name}.core`, bytes('x'))
    } finally {
      await deleteStreams(natsUrlForTests, name)
    }
    const metrics = await (await fetch(`${t.url}/metrics`)).text()
    expect(metrics).toContain('mc_bus_up{mode="nats"} 1')
    expect(metrics).toContain('mc_nats_publishes_total{kind="jetstream",outcome="ok"} 1')
    expect(metrics).toContain('mc_nats_publishes_total{kind="jetstream",outcome="duplicate"} 1')
    expect(metrics).toContain('mc_nats_publishes_total{kind="core",outcome="ok"} 1')
    expect(metrics).toMatch(/mc_nats_publish_seconds_count\{kind="jetstream"\} 2/)
  })

  it('answers 503 with the bus down once its NATS is killed', async () => {
    server = await startNatsServer()
    t = await startTestApp({ NATS_URL: server.url })
    await waitFor(() => ready(t!), (x) => x.body.components.bus.status === 'up', 'bus up in /readyz')
    await server.kill()
    const r = await waitFor(() => ready(t!), (x) => x.body.components.bus.status === 'down', 'bus down in /readyz')
    expect(r.code).toBe(503)
    expect(r.body.components.bus).toMatchObject({ status: 'down', mode: 'nats' })
    expect(typeof r.body.components.bus.since).toBe('string')
  })

  it('starts while its NATS is down, and is in-process with one warning without NATS_URL', async () => {
    const port = await freePort()
    t = await startTestApp({ NATS_URL: `nats://127.0.0.1:${port}` })
    const down = await ready(t)
    expect(down.body.components.bus).toMatchObject({ status: 'down', mode: 'nats', reason: 'connecting' })
    expect(down.code).toBe(503)
    await t.close()

    const logs: string[] = []
    t = await startTestApp({}, { logger: { level: 'warn', stream: { write: (line: string) => logs.push(line) } } })
    const r = await ready(t)
    expect(r.body.components.bus).toEqual({ status: 'up', mode: 'in-process' })
    const warnings = logs.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.msg.includes('NATS_URL not set'))
    expect(warnings).toHaveLength(1)
    expect(warnings[0]!.level).toBe(40)
  })
})

afterAll(async () => {
  await closeBuses()
})
