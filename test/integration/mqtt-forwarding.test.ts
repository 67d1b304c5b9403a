/**
 * Device publishes into the machine's NATS JetStream (127.0.0.1:4222) through the
 * embedded broker: subjects, headers, payloads byte for byte, Nats-Msg-Id de-duplication
 * of redeliveries, QoS 0, and line protocol into the sink. The stream RAW is shared with
 * other tests and runs, so every test reads only the subjects of its own devices.
 */
import { connect as tcpConnect, type Socket } from 'node:net'
import { generate, parser, type IPublishPacket, type Packet } from 'mqtt-packet'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { RAW_STREAM } from '../../src/devices/forwarder.js'
import { ApiClient } from '../helpers/api.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { adminToken, connectDevice, MQTT_TEST_ENV, MqttClients, provisionDevice, type Device } from '../helpers/mqtt.js'
import { natsReachable, natsUrlForTests, withJsm } from '../helpers/nats.js'
import { RecordingSink } from '../helpers/recording-sink.js'
import { requireService } from '../helpers/services.js'
import { waitFor, waitUntil } from '../helpers/wait.js'

const machineNats = await requireService(`NATS at ${natsUrlForTests}`, await natsReachable())

interface Stored {
  subject: string
  data: Uint8Array
  headers: Record<string, string>
}

/** Messages RAW holds per subject matching `filter` (the stream's own per-subject counts). */
async function countsOn(filter: string): Promise<Record<string, number>> {
  return withJsm(natsUrlForTests, async (jsm) => (await jsm.streams.info(RAW_STREAM.name, { subjects_filter: filter })).state.subjects ?? {})
}

async function countOn(subject: string): Promise<number> {
  return (await countsOn(subject))[subject] ?? 0
}

/** The last message RAW holds on `subject`. */
async function lastOn(subject: string): Promise<Stored> {
  return withJsm(natsUrlForTests, async (jsm) => {
    const m = await jsm.streams.getMessage(RAW_STREAM.name, { last_by_subj: subject })
    if (m === null) throw new Error(`no message on ${subject}`)
    const headers: Record<string, string> = {}
    if (m.header !== undefined) for (const [k, v] of m.header) headers[k] = v[0] ?? ''
    return { subject: m.subject, data: m.data, headers }
  })
}

/** A bare MQTT 3.1.1 connection over TCP: the test writes packets exactly as it wants them. */
class RawMqtt {
  readonly packets: Packet[] = []
  private constructor(private readonly socket: Socket) {}

  static async connect(port: number, device: Device, clientId: string): Promise<RawMqtt> {
    const socket = tcpConnect({ host: '127.0.0.1', port })
    const raw = new RawMqtt(socket)
    const p = parser({ protocolVersion: 4 })
    p.on('packet', (packet) => raw.packets.push(packet))
    socket.on('data', (chunk) => p.parse(chunk))
    socket.on('error', () => {})
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    raw.write({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId,
      keepalive: 60,
      username: device.mqtt_user,
      password: Buffer.from(device.mqtt_password),
    })
    const connack = await waitFor(() => raw.packets.find((x) => x.cmd === 'connack'), (x) => x !== undefined, 'CONNACK')
    expect(connack).toMatchObject({ returnCode: 0 })
    return raw
  }

  /** All packets in one write: they reach the broker in one read. */
  write(...packets: Packet[]): void {
    this.socket.write(Buffer.concat(packets.map((p) => generate(p))))
  }

  pubacks(messageId: number): number {
    return this.packets.filter((p) => p.cmd === 'puback' && p.messageId === messageId).length
  }

  close(): void {
    this.socket.destroy()
  }
}

function publishPacket(topic: string, payload: Buffer, messageId: number, dup: boolean): IPublishPacket {
  return { cmd: 'publish', topic, payload, qos: 1, messageId, dup, retain: false }
}

async function metricsText(t: TestApp): Promise<string> {
  const res = await fetch(`${t.url}/metrics`)
  return res.text()
}

function metricValue(text: string, name: string, labels: string): number {
  const key = labels === '' ? `${name} ` : `${name}{${labels}} `
  const line = text.split('\n').find((l) => l.startsWith(key))
  return line === undefined ? 0 : Number(line.split(' ')[1])
}

describe.runIf(machineNats)('MQTT forwarding into JetStream', () => {
  let t: TestApp
  let api: ApiClient
  let admin: string
  const sink = new RecordingSink()
  const clients = new MqttClients()
  const raws: RawMqtt[] = []

  beforeAll(async () => {
    t = await startTestApp({ ...MQTT_TEST_ENV, NATS_URL: natsUrlForTests }, { sink })
    api = new ApiClient(t.url)
    admin = await adminToken(api)
    // The forwarder ensures RAW in the background at start-up (created, or there already).
    await waitUntil(
      () => withJsm(natsUrlForTests, async (jsm) => (await jsm.streams.info(RAW_STREAM.name)).config.subjects.includes('raw.>')),
      20_000,
      'stream RAW on raw.>',
    )
  })

  afterEach(async () => {
    await clients.closeAll()
    for (const r of raws.splice(0)) r.close()
  })

  afterAll(async () => {
    await clients.closeAll()
    await t?.close()
  })

  it('a QoS 1 publish to the own topic is in the stream when PUBACK arrives, with every header and the payload byte for byte', async () => {
    const device = await provisionDevice(api, admin, 'thermo-9000')
    const client = clients.track(await connectDevice(t, device))
    const topic = `raw.${device.id}`
    // Every byte value, NUL and invalid UTF-8 included.
    const payload = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7) & 0xff))
    const before = Date.now()
    await client.publishAsync(topic, payload, { qos: 1 })
    const after = Date.now()
    // No wait: PUBACK is sent only once JetStream has it.
    expect(await countOn(topic)).toBe(1)
    const stored = await lastOn(topic)
    expect(stored.subject).toBe(topic)
    expect(Buffer.from(stored.data).equals(payload)).toBe(true)
    expect(stored.headers['Device-Id']).toBe(device.id)
    expect(stored.headers['Device-Type']).toBe('thermo-9000')
    expect(stored.headers['Mqtt-Topic']).toBe(topic)
    expect(stored.headers['Nats-Msg-Id']).toMatch(/^\S+$/)
    const at = stored.headers['Received-At'] ?? ''
    expect(at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    expect(Date.parse(at)).toBeGreaterThanOrEqual(before - 1)
    expect(Date.parse(at)).toBeLessThanOrEqual(after + 1)
    // MQTT 5 too.
    const v5 = clients.track(await connectDevice(t, device, { protocolVersion: 5 }))
    await v5.publishAsync(topic, Buffer.from('v5'), { qos: 1 })
    expect(await countOn(topic)).toBe(2)
    expect(Buffer.from((await lastOn(topic)).data).toString()).toBe('v5')
  })

  it('a sub-topic maps to a subject with dots, Mqtt-Topic verbatim', async () => {
    const device = await provisionDevice(api, admin)
    const client = clients.track(await connectDevice(t, device))
    await client.publishAsync(`raw.${device.id}/a/b`, Buffer.from('slashes'), { qos: 1 })
    await client.publishAsync(`raw.${device.id}.c.d`, Buffer.from('dots'), { qos: 1 })
    expect(await countsOn(`raw.${device.id}.>`)).toEqual({ [`raw.${device.id}.a.b`]: 1, [`raw.${device.id}.c.d`]: 1 })
    const slashes = await lastOn(`raw.${device.id}.a.b`)
    expect(slashes.headers['Mqtt-Topic']).toBe(`raw.${device.id}/a/b`)
    expect(Buffer.from(slashes.data).toString()).toBe('slashes')
    expect((await lastOn(`raw.${device.id}.c.d`)).headers['Mqtt-Topic']).toBe(`raw.${device.id}.c.d`)
  })

  it('a DUP redelivery of an unacknowledged publish becomes one stream message', async () => {
    const device = await provisionDevice(api, admin)
    const raw = await RawMqtt.connect(t.app.broker.port!, device, `dup-${device.id}`)
    raws.push(raw)
    const topic = `raw.${device.id}`
    const payload = Buffer.from('once, please')
    // The first delivery and its redelivery arrive together: the second comes before the first is acknowledged.
    raw.write(publishPacket(topic, payload, 7, false), publishPacket(topic, payload, 7, true))
    await waitUntil(() => raw.pubacks(7) === 2, 10_000, 'PUBACK for both copies')
    expect(await countOn(topic)).toBe(1)
  })

  it('a packet id reused after its PUBACK is a new message, even with the same payload (two stream messages)', async () => {
    const device = await provisionDevice(api, admin)
    const raw = await RawMqtt.connect(t.app.broker.port!, device, `reuse-${device.id}`)
    raws.push(raw)
    const topic = `raw.${device.id}`
    const payload = Buffer.from('same bytes')
    raw.write(publishPacket(topic, payload, 9, false))
    await waitUntil(() => raw.pubacks(9) === 1, 10_000, 'the first PUBACK')
    raw.write(publishPacket(topic, payload, 9, false))
    await waitUntil(() => raw.pubacks(9) === 2, 10_000, 'the second PUBACK')
    expect(await countOn(topic)).toBe(2)
  })

  it('QoS 0 arrives (best effort, a core publish JetStream stores)', async () => {
    const device = await provisionDevice(api, admin)
    const client = clients.track(await connectDevice(t, device))
    await client.publishAsync(`raw.${device.id}/q0`, Buffer.from('fire and forget'), { qos: 0 })
    await waitUntil(async () => (await countOn(`raw.${device.id}.q0`)) === 1, 10_000, 'the QoS 0 message in RAW')
    const stored = await lastOn(`raw.${device.id}.q0`)
    expect(Buffer.from(stored.data).toString()).toBe('fire and forget')
    expect(stored.headers).toMatchObject({ 'Device-Id': device.id, 'Mqtt-Topic': `raw.${device.id}/q0` })
    expect(stored.headers['Nats-Msg-Id']).toMatch(/^\S+$/)
  })

  it('a line-protocol payload also reaches the sink, tagged with the device (its own tags of those names replaced)', async () => {
    const device = await provisionDevice(api, admin, 'weather-station')
    const client = clients.track(await connectDevice(t, device))
    const measurement = `m_${device.id.replace(/[^a-z0-9]/gi, '')}`
    await client.publishAsync(`raw.${device.id}`, `${measurement},device_id=spoofed,site=roof temp=21.5,hum=40i 1700000000000000000`, {
      qos: 1,
    })
    // A payload that is not line protocol is forwarded but not written.
    await client.publishAsync(`raw.${device.id}`, Buffer.from([0x00, 0xff, 0x3d, 0x20]), { qos: 1 })
    const line = await waitFor(
      () => sink.lines.find((l) => l.startsWith(`${measurement},`)),
      (l) => l !== undefined,
      'the device line in the sink',
    )
    expect(line).toBe(`${measurement},site=roof,device_id=${device.id},device_type=weather-station temp=21.5,hum=40i 1700000000000000000`)
    expect(await countOn(`raw.${device.id}`)).toBe(2)
    const text = await metricsText(t)
    expect(metricValue(text, 'mc_mqtt_lines_total', 'result="submitted"')).toBeGreaterThanOrEqual(1)
    expect(metricValue(text, 'mc_mqtt_lines_total', 'result="not_line_protocol"')).toBeGreaterThanOrEqual(1)
    expect(metricValue(text, 'mc_mqtt_messages_total', 'result="forwarded"')).toBeGreaterThanOrEqual(2)
    expect(metricValue(text, 'mc_mqtt_held_publishes', '')).toBe(0)
  })
})
