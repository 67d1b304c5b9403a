/**
 * Malformed MQTT from a device that authenticated: raw TCP sockets writing packets built
 * with mqtt-packet (or bytes edited by hand where generate() cannot make them). Each one
 * closes the connection, and nothing of it reaches NATS: a marker published afterwards
 * on the same device's topic must be the only message there.
 */
import { connect as tcpConnect, type Socket } from 'node:net'
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node'
import { generate, parser, type Packet } from 'mqtt-packet'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ApiClient } from '../helpers/api.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { adminToken, connectDevice, MQTT_TEST_ENV, MqttClients, provisionDevice, type Device } from '../helpers/mqtt.js'
import { natsReachable, natsUrlForTests } from '../helpers/nats.js'
import { requireService } from '../helpers/services.js'
import { waitUntil } from '../helpers/wait.js'

const natsUp = await requireService(`NATS at ${natsUrlForTests}`, await natsReachable())

const MAX_PACKET_BYTES = 1024

type Version = 4 | 5

/** A bare MQTT connection: the test writes exactly the bytes it wants. */
class RawMqtt {
  readonly packets: Packet[] = []
  isClosed = false
  private constructor(
    private readonly socket: Socket,
    readonly version: Version,
  ) {
    socket.once('close', () => (this.isClosed = true))
  }

  /** Connects and sends CONNECT; resolves once the CONNACK accepted it. */
  static async connect(port: number, device: Device, version: Version): Promise<RawMqtt> {
    const socket = tcpConnect({ host: '127.0.0.1', port })
    const raw = new RawMqtt(socket, version)
    const p = parser({ protocolVersion: version })
    p.on('packet', (packet) => raw.packets.push(packet))
    // A reply the parser cannot read is not what these tests look at.
    p.on('error', () => {})
    socket.on('data', (chunk) => p.parse(chunk))
    socket.on('error', () => {})
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve())
      socket.once('error', reject)
    })
    raw.write(
      generate(
        {
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: version,
          clientId: `raw-${device.id.slice(0, 8)}`,
          clean: true,
          keepalive: 60,
          username: device.mqtt_user,
          password: Buffer.from(device.mqtt_password),
        },
        { protocolVersion: version },
      ),
    )
    await waitUntil(() => raw.packets.some((x) => x.cmd === 'connack'), 5000, 'CONNACK')
    const connack = raw.packets.find((x) => x.cmd === 'connack') as { returnCode?: number; reasonCode?: number }
    expect(connack.returnCode ?? connack.reasonCode).toBe(0)
    return raw
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes)
  }

  publish(topic: string, payload: Buffer | string, qos: 0 | 1, messageId = 1): Buffer {
    return generate({ cmd: 'publish', topic, payload, qos, messageId, dup: false, retain: false }, { protocolVersion: this.version })
  }

  destroy(): void {
    this.socket.destroy()
  }

  /** The reason code of a DISCONNECT the broker sent (MQTT 5), if any. */
  disconnectReason(): number | undefined {
    const d = this.packets.find((x) => x.cmd === 'disconnect') as { reasonCode?: number } | undefined
    return d?.reasonCode
  }
}

describe.runIf(natsUp).each([4, 5] as const)('malformed packets, MQTT %i', (version) => {
  let t: TestApp
  let api: ApiClient
  let admin: string
  let nc: NatsConnection
  const raws: RawMqtt[] = []
  const clients = new MqttClients()

  beforeAll(async () => {
    t = await startTestApp({
      ...MQTT_TEST_ENV,
      NATS_URL: natsUrlForTests,
      MQTT_MAX_PACKET_BYTES: String(MAX_PACKET_BYTES),
      MQTT_AUTH_MAX_FAILURES_PER_ADDRESS: '10000',
    })
    api = new ApiClient(t.url)
    admin = await adminToken(api)
    nc = await natsConnect({ servers: natsUrlForTests })
  })
  afterEach(async () => {
    for (const r of raws.splice(0)) r.destroy()
    await clients.closeAll()
  })
  afterAll(async () => {
    await nc?.close()
    await t?.close()
  })

  /**
   * Sends what `malformed` builds on an authenticated raw connection, waits until the
   * broker closed it, then publishes a marker with a well-behaved client: the marker must
   * be all that reached the device's subjects on NATS.
   */
  async function expectClosedAndNothingForwarded(malformed: (raw: RawMqtt, device: Device) => Buffer): Promise<RawMqtt> {
    const device = await provisionDevice(api, admin)
    const got: string[] = []
    const subs = [`raw.${device.id}`, `raw.${device.id}.>`].map((s) =>
      nc.subscribe(s, { callback: (_err, m) => void got.push(`${m.subject} ${Buffer.from(m.data).toString()}`) }),
    )
    await nc.flush()
    try {
      const raw = await RawMqtt.connect(t.app.broker.port as number, device, version)
      raws.push(raw)
      raw.write(malformed(raw, device))
      await waitUntil(() => raw.isClosed, 10_000, 'the broker closing the connection')
      const c = clients.track(await connectDevice(t, device, { protocolVersion: version }))
      // PUBACK only once JetStream has it: by then it is on the subject too.
      await c.publishAsync(`raw.${device.id}`, 'marker', { qos: 1 })
      await waitUntil(() => got.length > 0, 5000, 'the marker on NATS')
      expect(got).toEqual([`raw.${device.id} marker`])
      return raw
    } finally {
      for (const s of subs) s.unsubscribe()
    }
  }

  it('QoS 3 (both QoS bits set): closed, nothing forwarded', async () => {
    await expectClosedAndNothingForwarded((raw, d) => {
      const bytes = raw.publish(`raw.${d.id}`, 'qos three', 1)
      // [MQTT-3.3.1-4] generate() refuses QoS 3: set both bits of the fixed header by hand.
      bytes[0] = (bytes[0] as number) | 0x06
      return bytes
    })
  })

  it('packet id 0 on QoS 1: closed, nothing forwarded', async () => {
    const raw = await expectClosedAndNothingForwarded((r, d) => r.publish(`raw.${d.id}`, 'id zero', 1, 0))
    expect(raw.packets.some((p) => p.cmd === 'puback')).toBe(false)
    if (version === 5) expect(raw.disconnectReason()).toBe(0x82)
  })

  it.each(['+', '#', 'a/+/b'])('a wildcard in the publish topic (%s): closed, nothing forwarded', async (wild) => {
    const raw = await expectClosedAndNothingForwarded((r, d) => r.publish(`raw.${d.id}/${wild}`, 'wildcard', 1))
    expect(raw.packets.some((p) => p.cmd === 'puback')).toBe(false)
  })

  it('a packet over MQTT_MAX_PACKET_BYTES: closed, nothing forwarded', async () => {
    const raw = await expectClosedAndNothingForwarded((r, d) => r.publish(`raw.${d.id}`, Buffer.alloc(MAX_PACKET_BYTES, 0x61), 1))
    if (version === 5) expect(raw.disconnectReason()).toBe(0x95)
  })

  it('an oversize length announced in the fixed header: closed before the body arrives', async () => {
    await expectClosedAndNothingForwarded((r, d) => {
      const whole = r.publish(`raw.${d.id}`, Buffer.alloc(10 * 1024 * 1024, 0x62), 1)
      // The header and the start of the body only: the broker must not wait for the rest.
      return whole.subarray(0, 64)
    })
  })

  it('bytes that are no MQTT before CONNECT: closed', async () => {
    const socket = tcpConnect({ host: '127.0.0.1', port: t.app.broker.port as number })
    socket.on('error', () => {})
    let closed = false
    socket.once('close', () => (closed = true))
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
    socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
    await waitUntil(() => closed, 10_000, 'the broker closing the connection')
    const metrics = await (await fetch(`${t.url}/metrics`)).text()
    expect(metrics).toMatch(/^mc_mqtt_connections_total\{result="protocol_error"\} [1-9]\d*$/m)
  })
})
