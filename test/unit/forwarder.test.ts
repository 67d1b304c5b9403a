import { Writable } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import {
  BusError,
  type Bus,
  type BusErrorKind,
  type BusHeaders,
  type BusStatus,
  type PersistOptions,
  type PersistResult,
  type StreamSpec,
} from '../../src/bus/bus.js'
import { InProcessBus } from '../../src/bus/in-process.js'
import { DeviceLines, mayBeLineProtocol } from '../../src/devices/device-lines.js'
import { createForwarder, RAW_STREAM, type ForwardInput, type Forwarder } from '../../src/devices/forwarder.js'
import { ForwardTimeoutError } from '../../src/devices/types.js'
import type { Ack } from '../../src/ingest/batcher.js'
import { SinkError } from '../../src/ingest/sinks/sink.js'
import { createMetrics, type Metrics } from '../../src/observability/metrics.js'
import { waitUntil } from '../helpers/wait.js'

interface Attempt {
  subject: string
  data: Uint8Array
  opts: PersistOptions
}

/** A Bus whose persist answers as the test says: `failures` in turn, then stored. */
class FakeBus implements Bus {
  readonly mode = 'nats' as const
  attempts: Attempt[] = []
  published: Array<{ subject: string; data: Uint8Array; headers: BusHeaders | undefined }> = []
  ensureCalls: StreamSpec[] = []
  /** Kinds thrown by the next persists, one per call; after them, `then`. */
  failures: BusErrorKind[] = []
  then: 'store' | BusErrorKind = 'store'
  /** persist fails with this while ensureStream has been called fewer than this many times. */
  noStreamUntilEnsured = 0
  publishThrows: BusErrorKind | undefined
  private seq = 0

  status(): BusStatus {
    return { status: 'up', mode: this.mode }
  }
  onStatusChange(): void {}
  publish(subject: string, data: Uint8Array, headers?: BusHeaders): void {
    if (this.publishThrows) throw new BusError(this.publishThrows, 'publish failed')
    this.published.push({ subject, data, headers })
  }
  async persist(subject: string, data: Uint8Array, opts: PersistOptions = {}): Promise<PersistResult> {
    this.attempts.push({ subject, data, opts })
    if (this.ensureCalls.length < this.noStreamUntilEnsured) throw new BusError('no_stream', 'no stream')
    const kind = this.failures.shift() ?? (this.then === 'store' ? undefined : this.then)
    if (kind !== undefined) throw new BusError(kind, `fake ${kind}`)
    return { stream: 'RAW', seq: ++this.seq, duplicate: false }
  }
  subscribe() {
    return { unsubscribe() {} }
  }
  async ensureStream(spec: StreamSpec): Promise<'created' | 'exists'> {
    this.ensureCalls.push(spec)
    return 'exists'
  }
  async close(): Promise<void> {}
}

/** A batcher that records what it is given and answers with `err`. */
class FakeBatcher {
  frames: Array<{ text: string; lines: number }> = []
  err: SinkError | undefined
  // Decoded at once: the caller may reuse its bytes after submit returns, as with the real batcher.
  submit(frame: Uint8Array, lines: number, ack: Ack): void {
    this.frames.push({ text: Buffer.from(frame).toString('utf8'), lines })
    ack(this.err)
  }
}

function capturingLog(): { log: FastifyBaseLogger; records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line !== '') records.push(JSON.parse(line) as Record<string, unknown>)
      cb()
    },
  })
  return { log: pino({ level: 'info' }, stream) as unknown as FastifyBaseLogger, records }
}

async function counter(metrics: Metrics, name: string, result: string): Promise<number> {
  const text = await metrics.registry.metrics()
  const m = text.match(new RegExp(`^${name}\\{result="${result}"\\} (\\d+)$`, 'm'))
  return m ? Number(m[1]) : 0
}

let seqNo = 0
function request(over: Partial<ForwardInput> = {}): ForwardInput {
  return {
    deviceId: 'dev-1',
    deviceType: 'thermo',
    subject: 'raw.dev-1',
    topic: 'raw.dev-1',
    payload: Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, ++seqNo & 0xff]),
    qos: 1,
    packetId: 7,
    dup: false,
    receivedAt: Date.now(),
    ...over,
  }
}

const open: Forwarder[] = []
function forwarder(bus: Bus, over: { forwardTimeoutMs?: number; batcher?: FakeBatcher; log?: FastifyBaseLogger } = {}) {
  const metrics = createMetrics()
  const batcher = over.batcher ?? new FakeBatcher()
  const f = createForwarder({
    bus,
    batcher,
    log: over.log ?? (pino({ level: 'silent' }) as unknown as FastifyBaseLogger),
    metrics,
    forwardTimeoutMs: over.forwardTimeoutMs ?? 5_000,
    publishTimeoutMs: 1_000,
  })
  open.push(f)
  return { f, metrics, batcher }
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((f) => f.close()))
})

describe('forwarder, QoS 1', () => {
  it('retries a transient failure with the same msgId until stored, then resolves', async () => {
    const bus = new FakeBus()
    bus.failures = ['disconnected', 'timeout', 'disconnected', 'no_stream']
    const { f, metrics } = forwarder(bus)
    const req = request()
    const done = f.forward(req)
    expect(f.held).toBe(1)
    await done
    expect(f.held).toBe(0)
    expect(bus.attempts).toHaveLength(5)
    const ids = new Set(bus.attempts.map((a) => a.opts.msgId))
    expect(ids.size).toBe(1)
    expect([...ids][0]).toMatch(/\S+/)
    for (const a of bus.attempts) {
      expect(a.subject).toBe('raw.dev-1')
      expect(Buffer.from(a.data).equals(req.payload)).toBe(true)
      expect(a.opts.headers).toEqual({
        'Device-Id': 'dev-1',
        'Device-Type': 'thermo',
        'Mqtt-Topic': 'raw.dev-1',
        'Received-At': new Date(req.receivedAt).toISOString(),
      })
      expect(a.opts.timeoutMs).toBeGreaterThan(0)
      expect(a.opts.timeoutMs).toBeLessThanOrEqual(1_000)
    }
    expect(await counter(metrics, 'mc_mqtt_messages_total', 'forwarded')).toBe(1)
  })

  it('gives up after the forward timeout with ForwardTimeoutError, holding nothing', async () => {
    const bus = new FakeBus()
    bus.then = 'disconnected'
    const { f, metrics } = forwarder(bus, { forwardTimeoutMs: 300 })
    const started = Date.now()
    const done = f.forward(request())
    expect(f.held).toBe(1)
    await expect(done).rejects.toBeInstanceOf(ForwardTimeoutError)
    expect(Date.now() - started).toBeGreaterThanOrEqual(290)
    expect(f.held).toBe(0)
    expect(bus.attempts.length).toBeGreaterThan(1)
    expect(new Set(bus.attempts.map((a) => a.opts.msgId)).size).toBe(1)
    expect(await counter(metrics, 'mc_mqtt_messages_total', 'timed_out')).toBe(1)
    expect(await counter(metrics, 'mc_mqtt_messages_total', 'forwarded')).toBe(0)
  })

  it('a redelivery after a timeout is stored under the first msgId (DUP flag or not); a reused packet id after PUBACK gets a new one', async () => {
    const bus = new FakeBus()
    bus.then = 'disconnected'
    const { f } = forwarder(bus, { forwardTimeoutMs: 100 })
    const payload = Buffer.from('reading 42')
    await expect(f.forward(request({ packetId: 3, payload }))).rejects.toBeInstanceOf(ForwardTimeoutError)
    const firstId = bus.attempts[0]?.opts.msgId
    await expect(f.forward(request({ packetId: 3, payload, dup: true }))).rejects.toBeInstanceOf(ForwardTimeoutError)
    expect(bus.attempts.at(-1)?.opts.msgId).toBe(firstId)
    bus.then = 'store'
    // mqtt.js redelivers without the DUP flag: still the same message.
    await f.forward(request({ packetId: 3, payload, dup: false }))
    expect(bus.attempts.at(-1)?.opts.msgId).toBe(firstId)
    // Stored: the packet id is free again, and the next message in it is new, same bytes or not.
    await f.forward(request({ packetId: 3, payload, dup: false }))
    const reusedId = bus.attempts.at(-1)?.opts.msgId
    expect(reusedId).not.toBe(firstId)
    // Even a DUP after the PUBACK is stored as new (at least once; never dropped as a duplicate).
    await f.forward(request({ packetId: 3, payload, dup: true }))
    expect(bus.attempts.at(-1)?.opts.msgId).not.toBe(reusedId)
  })

  it('two copies of one unacknowledged publish in flight at once carry one msgId', async () => {
    const bus = new FakeBus()
    const { f } = forwarder(bus)
    const payload = Buffer.from([1, 2, 3])
    await Promise.all([f.forward(request({ packetId: 5, payload })), f.forward(request({ packetId: 5, payload, dup: true }))])
    expect(bus.attempts).toHaveLength(2)
    expect(bus.attempts[0]?.opts.msgId).toBe(bus.attempts[1]?.opts.msgId)
  })

  it("creates the stream again when a publish finds no stream ('no_stream')", async () => {
    const bus = new FakeBus()
    const { f } = forwarder(bus)
    await f.start()
    await waitUntil(() => bus.ensureCalls.length === 1, 5_000, 'the start-up ensureStream')
    expect(bus.ensureCalls[0]).toEqual(RAW_STREAM)
    expect(RAW_STREAM).toEqual({ name: 'RAW', subjects: ['raw.>'] })
    bus.noStreamUntilEnsured = 2
    await f.forward(request())
    expect(bus.ensureCalls.length).toBeGreaterThanOrEqual(2)
    expect(bus.attempts.length).toBeGreaterThan(1)
  })

  it('start() does not wait for NATS: the stream is ensured in the background, retried until done', async () => {
    const bus = new FakeBus()
    let failures = 3
    let release: () => void = () => {}
    const gate = new Promise<void>((r) => (release = r))
    bus.ensureStream = async (spec: StreamSpec) => {
      bus.ensureCalls.push(spec)
      if (failures-- > 0) throw new BusError('disconnected', 'not connected')
      await gate
      return 'created'
    }
    const { f } = forwarder(bus)
    await f.start() // resolves while ensureStream is still failing
    await waitUntil(() => bus.ensureCalls.length === 4, 10_000, 'three retries of ensureStream')
    release()
  })

  it("a refused message is not acknowledged: ForwardTimeoutError at once, counted 'failed'", async () => {
    const bus = new FakeBus()
    bus.then = 'refused'
    const { f, metrics } = forwarder(bus)
    await expect(f.forward(request())).rejects.toBeInstanceOf(ForwardTimeoutError)
    expect(bus.attempts).toHaveLength(1)
    expect(f.held).toBe(0)
    expect(await counter(metrics, 'mc_mqtt_messages_total', 'failed')).toBe(1)
  })

  it('without JetStream falls back to a core publish with every header, and warns once', async () => {
    const bus = new FakeBus()
    bus.then = 'no_jetstream'
    const { log, records } = capturingLog()
    const { f } = forwarder(bus, { log })
    await f.forward(request({ packetId: 1 }))
    await f.forward(request({ packetId: 2 }))
    expect(bus.published).toHaveLength(2)
    const h = bus.published[0]?.headers
    expect(h?.['Nats-Msg-Id']).toBe(bus.attempts[0]?.opts.msgId)
    expect(h).toMatchObject({ 'Device-Id': 'dev-1', 'Device-Type': 'thermo', 'Mqtt-Topic': 'raw.dev-1' })
    // The second went straight to core NATS: no JetStream attempt for a while.
    expect(bus.attempts).toHaveLength(1)
    expect(records.filter((r) => r.level === 40 && String(r.msg).includes('no JetStream'))).toHaveLength(1)
  })

  it('close() takes no new publishes, and lets go of held ones by the forward timeout', async () => {
    const bus = new FakeBus()
    bus.then = 'disconnected'
    const { f } = forwarder(bus, { forwardTimeoutMs: 400 })
    const held = f.forward(request())
    const rejected = expect(held).rejects.toBeInstanceOf(ForwardTimeoutError)
    const closing = f.close()
    await expect(f.forward(request({ packetId: 8 }))).rejects.toBeInstanceOf(ForwardTimeoutError)
    await closing
    await rejected
    expect(f.held).toBe(0)
    await f.close() // twice is fine
  })

  it('a held publish that gets stored while closing is acknowledged', async () => {
    const bus = new FakeBus()
    bus.failures = ['disconnected', 'disconnected', 'disconnected']
    const { f } = forwarder(bus, { forwardTimeoutMs: 5_000 })
    const held = f.forward(request())
    await f.close()
    await expect(held).resolves.toBeUndefined()
  })
})

describe('forwarder, QoS 0', () => {
  it('publishes best effort with every header and never rejects', async () => {
    const bus = new FakeBus()
    const { f, metrics } = forwarder(bus)
    const req = request({ qos: 0, packetId: undefined, topic: 'raw.dev-1/a/b', subject: 'raw.dev-1.a.b' })
    await f.forward(req)
    expect(f.held).toBe(0)
    expect(bus.attempts).toHaveLength(0)
    expect(bus.published[0]?.subject).toBe('raw.dev-1.a.b')
    expect(bus.published[0]?.headers).toMatchObject({ 'Mqtt-Topic': 'raw.dev-1/a/b', 'Device-Id': 'dev-1' })
    expect(bus.published[0]?.headers?.['Nats-Msg-Id']).toMatch(/\S+/)
    bus.publishThrows = 'closed'
    await expect(f.forward(req)).resolves.toBeUndefined()
    expect(await counter(metrics, 'mc_mqtt_messages_total', 'forwarded')).toBe(1)
    expect(await counter(metrics, 'mc_mqtt_messages_total', 'failed')).toBe(1)
    await f.close()
    await expect(f.forward(req)).resolves.toBeUndefined()
  })
})

describe('forwarder over the in-process bus', () => {
  it('stores in RAW once per msgId and delivers to subscribers with the headers', async () => {
    const bus = new InProcessBus()
    const got: Array<{ subject: string; headers: BusHeaders | undefined }> = []
    bus.subscribe('raw.>', (m) => got.push({ subject: m.subject, headers: m.headers }))
    const { f } = forwarder(bus)
    await f.start()
    await waitUntil(async () => (await bus.ensureStream(RAW_STREAM)) === 'exists', 5_000, 'RAW in the in-process bus')
    await f.forward(request({ packetId: 11 }))
    await waitUntil(() => got.length === 1, 5_000, 'the delivery')
    expect(got[0]?.headers).toMatchObject({ 'Device-Id': 'dev-1', 'Device-Type': 'thermo' })
    expect(got[0]?.headers?.['Nats-Msg-Id']).toMatch(/\S+/)
    expect(got[0]?.headers?.['Received-At']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    await bus.close()
  })
})

describe('line protocol from devices', () => {
  it('submits a line-protocol payload tagged with the device, replacing its own device_id and device_type', async () => {
    const batcher = new FakeBatcher()
    const { f, metrics } = forwarder(new FakeBus(), { batcher })
    await f.forward(
      request({ payload: Buffer.from('temp,device_id=fake,room=k1,device_type=x value=21.5 1700000000000000000\ncpu load=1i\n') }),
    )
    expect(batcher.frames).toHaveLength(1)
    const [first, second] = batcher.frames[0]!.text.split('\n')
    expect(first).toBe('temp,room=k1,device_id=dev-1,device_type=thermo value=21.5 1700000000000000000')
    expect(second).toMatch(/^cpu,device_id=dev-1,device_type=thermo load=1i \d{19}$/)
    expect(batcher.frames[0]!.lines).toBe(2)
    expect(await counter(metrics, 'mc_mqtt_lines_total', 'submitted')).toBe(1)
  })

  it('does not submit payloads that are not line protocol (binary, JSON, invalid, comments only)', async () => {
    const batcher = new FakeBatcher()
    const { f, metrics } = forwarder(new FakeBus(), { batcher })
    const payloads = [
      Buffer.from([0x00, 0x01, 0x20, 0x3d, 0xff]),
      Buffer.from([0x6d, 0x20, 0x66, 0x3d, 0x31, 0xc3]), // "m f=1" and a torn UTF-8 sequence
      Buffer.from('{"temp": 21.5}'),
      Buffer.from('temp value=oops'),
      Buffer.from('# only = a comment\n'),
      Buffer.alloc(0),
    ]
    for (const [i, payload] of payloads.entries()) await f.forward(request({ payload, packetId: 100 + i }))
    expect(batcher.frames).toHaveLength(0)
    expect(await counter(metrics, 'mc_mqtt_lines_total', 'not_line_protocol')).toBe(payloads.length)
  })

  it("the batcher's failure never fails the forward; a DUP redelivery is not submitted twice", async () => {
    const bus = new FakeBus()
    bus.failures = ['disconnected']
    const batcher = new FakeBatcher()
    batcher.err = new SinkError('batch queue full', true)
    const { f, metrics } = forwarder(bus, { batcher, forwardTimeoutMs: 2_000 })
    await f.forward(request({ payload: Buffer.from('m f=1'), packetId: 40 }))
    expect(await counter(metrics, 'mc_mqtt_lines_total', 'refused')).toBe(1)
    bus.then = 'disconnected'
    const timedOut = f.forward(request({ payload: Buffer.from('m f=2'), packetId: 41, receivedAt: Date.now() - 1_900 }))
    await expect(timedOut).rejects.toBeInstanceOf(ForwardTimeoutError)
    bus.then = 'store'
    await f.forward(request({ payload: Buffer.from('m f=2'), packetId: 41, dup: true }))
    expect(batcher.frames.map((b) => b.text.split(' ')[1])).toEqual(['f=1', 'f=2'])
  })

  it('rules out binary payloads without decoding them', () => {
    expect(mayBeLineProtocol(Buffer.from('m f=1'))).toBe(true)
    expect(mayBeLineProtocol(Buffer.from('m,a=b f="x y" 1'))).toBe(true)
    expect(mayBeLineProtocol(Buffer.from('no fields'))).toBe(false)
    expect(mayBeLineProtocol(Buffer.from('m=1'))).toBe(false)
    expect(mayBeLineProtocol(Buffer.from('m f=1\u0000'))).toBe(false)
    expect(mayBeLineProtocol(Buffer.from([0x6d, 0x20, 0x66, 0x3d, 0xfe]))).toBe(false)
  })

  it('a device type that cannot be a tag value leaves its lines out, counted refused', () => {
    const batcher = new FakeBatcher()
    const lines = new DeviceLines(batcher)
    expect(lines.offer('dev-9', 'ends-with\\', Buffer.from('m f=1'))).toBe(false)
    expect(lines.offer('dev-9', 'ok type', Buffer.from('m f=1'))).toBe(true)
    expect(batcher.frames[0]?.text).toMatch(/^m,device_id=dev-9,device_type=ok\\ type f=1 \d+\n$/)
    expect(lines.counts).toEqual({ submitted: 1, refused: 1, notLineProtocol: 0 })
  })
})
