/**
 * The embedded broker with real `mqtt` clients (MQTT 3.1.1 and 5, TCP and WebSocket):
 * CONNECT return codes, revocation of live sessions (also across instances), the ACL on
 * publish and subscribe, commands from the bus to devices, the limits, /readyz, and what
 * happens when the MQTT port is taken.
 */
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect as tcpConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node'
import type { MqttClient } from 'mqtt'
import WebSocket from 'ws'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import type { BusMessage } from '../../src/bus/bus.js'
import { loadConfig, type Config } from '../../src/config.js'
import { ApiClient } from '../helpers/api.js'
import { TEST_SECRET, startTestApp, type TestApp } from '../helpers/app.js'
import { embeddedEngine, postgresAvailable, postgresEngine, type TestDb } from '../helpers/db.js'
import {
  adminToken,
  closed,
  connackCode,
  connectDevice,
  deleteDevice,
  MQTT_TEST_ENV,
  MqttClients,
  provisionDevice,
  rotateDevice,
  type Device,
} from '../helpers/mqtt.js'
import { natsReachable, natsUrlForTests, startNatsServer, type NatsServer } from '../helpers/nats.js'
import { requireService } from '../helpers/services.js'
import { waitFor, waitUntil } from '../helpers/wait.js'

const enc = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array) => Buffer.from(b).toString('utf8')

// All clients of a test connect from 127.0.0.1: the failure throttle gets its own test.
const ENV = { ...MQTT_TEST_ENV, MQTT_AUTH_MAX_FAILURES_PER_ADDRESS: '10000' }

/** Messages a test receives on an mqtt client, in order. */
function inbox(client: MqttClient): Array<{ topic: string; payload: string; qos: number; retain: boolean }> {
  const got: Array<{ topic: string; payload: string; qos: number; retain: boolean }> = []
  client.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain }))
  return got
}

async function metricsOf(t: TestApp): Promise<string> {
  return (await fetch(`${t.url}/metrics`)).text()
}

/** Messages on `raw.>` of an app's bus (in-process: what the forwarder published). */
function busTap(t: TestApp, subject = 'raw.>'): { got: BusMessage[]; stop(): void } {
  const got: BusMessage[] = []
  const sub = t.app.bus.subscribe(subject, (m) => got.push(m))
  return { got, stop: () => sub.unsubscribe() }
}

describe.each([4, 5] as const)('embedded broker, MQTT protocol version %i', (protocolVersion) => {
  let t: TestApp
  let api: ApiClient
  let admin: string
  const clients = new MqttClients()
  const v5 = protocolVersion === 5
  const BAD_CREDENTIALS = v5 ? 0x86 : 4
  const NOT_AUTHORIZED = v5 ? 0x87 : 5
  const SUBACK_REFUSED = v5 ? 0x87 : 0x80
  const connectAs = async (d: Device, opts: Parameters<typeof connectDevice>[2] = {}) =>
    clients.track(await connectDevice(t, d, { protocolVersion, ...opts }))

  beforeAll(async () => {
    t = await startTestApp(ENV)
    api = new ApiClient(t.url)
    admin = await adminToken(api)
  })
  afterEach(() => clients.closeAll())
  afterAll(async () => {
    await t?.close()
  })

  it('answers CONNECT with the right return code: right, wrong, unknown, rotated, deleted', async () => {
    const d = await provisionDevice(api, admin)
    expect(await connackCode(t, d, { protocolVersion })).toBe(0)
    expect(await connackCode(t, { ...d, mqtt_password: `${d.mqtt_password}x` }, { protocolVersion })).toBe(BAD_CREDENTIALS)
    expect(await connackCode(t, { mqtt_user: randomUUID(), mqtt_password: d.mqtt_password }, { protocolVersion })).toBe(BAD_CREDENTIALS)
    expect(await connackCode(t, { mqtt_user: 'not-a-device', mqtt_password: 'x' }, { protocolVersion })).toBe(BAD_CREDENTIALS)
    expect(await connackCode(t, undefined, { protocolVersion })).toBe(BAD_CREDENTIALS)
    // The user name must be the device's own mqtt_user, whatever the client id says.
    const other = await provisionDevice(api, admin)
    expect(await connackCode(t, { mqtt_user: other.mqtt_user, mqtt_password: d.mqtt_password }, { protocolVersion, clientId: d.id })).toBe(
      BAD_CREDENTIALS,
    )

    const fresh = await rotateDevice(api, admin, d.id)
    expect(await connackCode(t, d, { protocolVersion })).toBe(BAD_CREDENTIALS)
    expect(await connackCode(t, { ...d, mqtt_password: fresh }, { protocolVersion })).toBe(0)

    await deleteDevice(api, admin, d.id)
    expect(await connackCode(t, { ...d, mqtt_password: fresh }, { protocolVersion })).toBe(NOT_AUTHORIZED)
  })

  it('closes a live session when the credentials are rotated, and when the device is deleted', async () => {
    const d = await provisionDevice(api, admin)
    const reasons: number[] = []
    const first = await connectAs(d)
    first.on('disconnect', (p) => reasons.push(p.reasonCode ?? -1))
    const fresh = await rotateDevice(api, admin, d.id)
    await closed(first)
    if (v5) await waitUntil(() => reasons.includes(0x98), 5000, 'DISCONNECT 0x98 (administrative action)')

    // A session with the new credentials survives the rotation that made them...
    const second = await connectAs({ ...d, mqtt_password: fresh })
    await second.publishAsync(`raw.${d.id}`, 'still here', { qos: 1 })
    // ...and ends with the deletion.
    await deleteDevice(api, admin, d.id)
    await closed(second)
    await waitUntil(() => t.app.broker.status().clients === 0, 5000, 'no MQTT client left')
  })

  it("refuses subscriptions to # and to another device's commands, grants its own", async () => {
    const d = await provisionDevice(api, admin)
    const other = await provisionDevice(api, admin)
    const c = await connectAs(d)
    const filters = ['#', `cmd.${other.id}`, '+/x', `cmd.${d.id}`, `cmd.${d.id}/#`]
    const qos = [1, 1, 0, 1, 0] as const
    // mqtt.js rejects when any filter is refused; the SUBACK rides on the error.
    const granted = await c.subscribeAsync(Object.fromEntries(filters.map((f, i) => [f, { qos: qos[i] as 0 | 1 }]))).then(
      (g) => g.map((x) => x.qos),
      (err: { packet?: { granted?: number[] } }) => err.packet?.granted,
    )
    expect(granted).toEqual([SUBACK_REFUSED, SUBACK_REFUSED, SUBACK_REFUSED, 1, 0])
    // The connection stays usable after a refused subscription.
    await c.publishAsync(`raw.${d.id}`, 'ok', { qos: 1 })
  })

  it('delivers a command on the bus to the matching subscriptions of that device only', async () => {
    const d = await provisionDevice(api, admin)
    const other = await provisionDevice(api, admin)
    const c = await connectAs(d)
    const o = await connectAs(other)
    const got = inbox(c)
    const otherGot = inbox(o)
    await c.subscribeAsync({ [`cmd.${d.id}`]: { qos: 1 }, [`cmd.${d.id}.led`]: { qos: 1 } })
    await o.subscribeAsync({ [`cmd.${other.id}`]: { qos: 1 } })

    t.app.bus.publish(`cmd.${d.id}.led`, enc('on'))
    t.app.bus.publish(`cmd.${d.id}.unsubscribed`, enc('nobody'))
    t.app.bus.publish(`cmd.${d.id}`, enc('reboot'))
    t.app.bus.publish(`cmd.${other.id}`, enc('marker'))
    await waitUntil(() => got.length >= 2 && otherGot.length >= 1, 5000, 'the commands')
    // Two topics: MQTT orders messages per topic only.
    const byTopic = (a: { topic: string }, b: { topic: string }) => a.topic.localeCompare(b.topic)
    expect(got.sort(byTopic)).toEqual(
      [
        { topic: `cmd.${d.id}.led`, payload: 'on', qos: 1, retain: false },
        { topic: `cmd.${d.id}`, payload: 'reboot', qos: 1, retain: false },
      ].sort(byTopic),
    )
    // The other device got its own marker, and nothing of the first device's.
    expect(otherGot).toEqual([{ topic: `cmd.${other.id}`, payload: 'marker', qos: 1, retain: false }])
  })

  it("refuses a publish to another device's topic and never forwards it", async () => {
    const d = await provisionDevice(api, admin)
    const other = await provisionDevice(api, admin)
    const tap = busTap(t)
    try {
      let c = await connectAs(d)
      if (v5) {
        // MQTT 5: PUBACK 0x87, the connection stays.
        await expect(c.publishAsync(`raw.${other.id}`, 'forged', { qos: 1 })).rejects.toMatchObject({ code: 0x87 })
        await expect(c.publishAsync(`cmd.${d.id}`, 'wrong way', { qos: 1 })).rejects.toMatchObject({ code: 0x87 })
        await expect(c.publishAsync(`raw.${d.id}//x`, 'bad subject', { qos: 1 })).rejects.toMatchObject({ code: 0x87 })
      } else {
        // 3.1.1 has no negative PUBACK: the connection is closed.
        c.publish(`raw.${other.id}`, 'forged', { qos: 1 }, () => {})
        await closed(c)
        c = await connectAs(d)
      }
      await c.publishAsync(`raw.${d.id}`, 'marker', { qos: 1 })
      await waitUntil(() => tap.got.some((m) => text(m.data) === 'marker'), 5000, 'the marker on the bus')
      expect(tap.got.map((m) => [m.subject, text(m.data)])).toEqual([[`raw.${d.id}`, 'marker']])
    } finally {
      tap.stop()
    }
  })

  it('forwards QoS 2 like QoS 1 (PUBREC after the store) and does not keep retained messages', async () => {
    const d = await provisionDevice(api, admin)
    const other = await provisionDevice(api, admin)
    const tap = busTap(t)
    try {
      const c = await connectAs(d)
      await c.publishAsync(`raw.${d.id}/q2`, 'exactly once', { qos: 2 })
      await c.publishAsync(`raw.${d.id}/kept`, 'retained', { qos: 1, retain: true })
      if (v5) await expect(c.publishAsync(`raw.${other.id}`, 'forged retained', { qos: 1, retain: true })).rejects.toMatchObject({ code: 0x87 })
      expect(tap.got.map((m) => [m.subject, text(m.data)])).toEqual([
        [`raw.${d.id}.q2`, 'exactly once'],
        [`raw.${d.id}.kept`, 'retained'],
      ])
    } finally {
      tap.stop()
    }
  })

  it('takes wills under the same ACL', async () => {
    const d = await provisionDevice(api, admin)
    const other = await provisionDevice(api, admin)
    const tap = busTap(t)
    try {
      const before = t.app.broker.status().clients as number
      const forged = await connectAs(d, { will: { topic: `raw.${other.id}`, payload: Buffer.from('forged will'), qos: 1, retain: false } })
      await waitUntil(() => t.app.broker.status().clients === before + 1)
      forged.stream.destroy()
      await waitUntil(() => t.app.broker.status().clients === before, 5000, 'the first session gone')
      const honest = await connectAs(d, { will: { topic: `raw.${d.id}/status`, payload: Buffer.from('offline'), qos: 1, retain: true } })
      await waitUntil(() => t.app.broker.status().clients === before + 1)
      honest.stream.destroy()
      await waitUntil(() => tap.got.length > 0, 5000, 'the honest will on the bus')
      expect(tap.got.map((m) => [m.subject, text(m.data)])).toEqual([[`raw.${d.id}.status`, 'offline']])
    } finally {
      tap.stop()
    }
  })

  it('speaks MQTT over WebSocket at <prefix>/mqtt (subprotocol mqtt): CONNECT, PUBLISH, PUBACK, commands', async () => {
    const d = await provisionDevice(api, admin)
    const tap = busTap(t)
    try {
      const c = await connectAs(d, { transport: 'ws' })
      await c.publishAsync(`raw.${d.id}/ws`, 'over websocket', { qos: 1 })
      expect(tap.got.map((m) => [m.subject, text(m.data)])).toEqual([[`raw.${d.id}.ws`, 'over websocket']])
      const got = inbox(c)
      await c.subscribeAsync(`cmd.${d.id}`, { qos: 1 })
      t.app.bus.publish(`cmd.${d.id}`, enc('to ws'))
      await waitUntil(() => got.length === 1, 5000, 'the command over WebSocket')
      expect(got[0]?.payload).toBe('to ws')
      expect(await connackCode(t, { ...d, mqtt_password: 'wrong' }, { protocolVersion, transport: 'ws' })).toBe(BAD_CREDENTIALS)
      // The subprotocol mqtt.js asks for is the one the server answers.
      const ws = new WebSocket(`${t.wsUrl}/mqtt`, 'mqtt')
      try {
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve())
          ws.once('error', reject)
        })
        expect(ws.protocol).toBe('mqtt')
      } finally {
        ws.terminate()
      }
    } finally {
      tap.stop()
    }
  })

  it('accepts a keep-alive of 0 and of 60 (MQTT 5: told the maximum as Server Keep Alive)', async () => {
    const d = await provisionDevice(api, admin)
    const none = await connectAs(d, { keepalive: 0 })
    await none.publishAsync(`raw.${d.id}`, 'k0', { qos: 1 })
    const usual = await connectAs(d, { keepalive: 60 })
    await usual.publishAsync(`raw.${d.id}`, 'k60', { qos: 1 })
    if (v5) {
      const props = (none as unknown as { _serverProperties?: { serverKeepAlive?: number } })._serverProperties
      expect(props?.serverKeepAlive).toBe(t.config.mqtt.keepaliveMaxS)
    }
  })

  it('keeps client ids per device: the same client id of another device takes nothing over', async () => {
    const a = await provisionDevice(api, admin)
    const b = await provisionDevice(api, admin)
    const clientId = `shared-${protocolVersion}`
    const ca = await connectAs(a, { clientId })
    const cb = await connectAs(b, { clientId })
    await ca.publishAsync(`raw.${a.id}`, 'a still connected', { qos: 1 })
    await cb.publishAsync(`raw.${b.id}`, 'b connected', { qos: 1 })
    expect(ca.connected && cb.connected).toBe(true)
    // The same device with the same client id does take its own session over.
    const ca2 = await connectAs(a, { clientId })
    await closed(ca)
    await ca2.publishAsync(`raw.${a.id}`, 'a again', { qos: 1 })
  })
})

describe('embedded broker: /readyz, metrics, MQTT_ENABLED=false', () => {
  const apps: TestApp[] = []
  const clients = new MqttClients()
  afterEach(() => clients.closeAll())
  afterAll(async () => {
    for (const t of apps) await t.close()
  })

  it('shows the broker in /readyz and counts in /metrics', async () => {
    const t = await startTestApp(ENV)
    apps.push(t)
    const api = new ApiClient(t.url)
    const d = await provisionDevice(api, await adminToken(api))
    const c = clients.track(await connectDevice(t, d))
    await c.publishAsync(`raw.${d.id}`, 'counted', { qos: 1 })
    const ready = await api.get('/readyz')
    expect(ready.status).toBe(200)
    expect(ready.json.components.broker).toEqual({ status: 'up', port: t.app.broker.port, clients: 1, ws_path: '/mqtt' })
    const metrics = await metricsOf(t)
    expect(metrics).toMatch(/^mc_mqtt_clients 1$/m)
    expect(metrics).toMatch(/^mc_mqtt_connections_total\{result="accepted"\} 1$/m)
    expect(metrics).toMatch(/^mc_mqtt_messages_total\{result="received"\} 1$/m)
    expect(metrics).toMatch(/^mc_mqtt_messages_total\{result="forwarded"\} 1$/m)
  })

  it('app.close() sends MQTT clients away (MQTT 5: DISCONNECT 0x8B), over TCP and WebSocket', async () => {
    const t = await startTestApp(ENV)
    apps.push(t)
    const api = new ApiClient(t.url)
    const d = await provisionDevice(api, await adminToken(api))
    const reasons: Record<string, number[]> = { tcp: [], ws: [] }
    const opened: MqttClient[] = []
    for (const transport of ['tcp', 'ws'] as const) {
      const c = clients.track(await connectDevice(t, d, { protocolVersion: 5, transport }))
      c.on('disconnect', (p) => reasons[transport]?.push(p.reasonCode ?? -1))
      opened.push(c)
    }
    const v4 = clients.track(await connectDevice(t, d, { protocolVersion: 4 }))
    // An idle socket that never sent CONNECT does not hold the close up either.
    const idle = tcpConnect({ host: '127.0.0.1', port: t.app.broker.port as number })
    idle.on('error', () => {})
    let idleClosed = false
    idle.once('close', () => (idleClosed = true))
    await new Promise<void>((resolve) => idle.once('connect', () => resolve()))
    await t.app.close()
    for (const c of [...opened, v4]) await closed(c)
    await waitUntil(() => idleClosed, 10_000, 'the idle socket closed')
    expect(reasons).toEqual({ tcp: [0x8b], ws: [0x8b] })
  })

  it('MQTT_ENABLED=false: no broker, no WebSocket route, readyz says absent', async () => {
    const t = await startTestApp({ ...ENV, MQTT_ENABLED: 'false' })
    apps.push(t)
    expect(t.app.broker.port).toBeNull()
    const api = new ApiClient(t.url)
    const ready = await api.get('/readyz')
    expect(ready.status).toBe(200)
    expect(ready.json.components.broker.status).toBe('absent')
    expect((await api.get('/mqtt')).status).toBe(404)
  })
})

describe('embedded broker limits', () => {
  const apps: TestApp[] = []
  const clients = new MqttClients()
  const sockets: Socket[] = []
  afterEach(async () => {
    await clients.closeAll()
    for (const s of sockets.splice(0)) s.destroy()
  })
  afterAll(async () => {
    for (const t of apps) await t.close()
  })
  const start = async (env: Record<string, string>) => {
    const t = await startTestApp({ ...ENV, ...env })
    apps.push(t)
    const api = new ApiClient(t.url)
    return { t, api, admin: await adminToken(api) }
  }

  it('caps connections per address (TCP and WebSocket together) before any MQTT is read', async () => {
    const { t, api, admin } = await start({ MQTT_MAX_CONNECTIONS_PER_ADDRESS: '2' })
    const d = await provisionDevice(api, admin)
    const one = clients.track(await connectDevice(t, d))
    clients.track(await connectDevice(t, d, { transport: 'ws' }))
    expect(await connackCode(t, d)).toBe('closed')
    expect(await connackCode(t, d, { transport: 'ws' })).toBe('closed')
    // A raw socket over the cap is closed without a byte read or written.
    const raw = tcpConnect({ host: '127.0.0.1', port: t.app.broker.port as number })
    sockets.push(raw)
    let bytes = 0
    let rawClosed = false
    raw.on('data', (b) => (bytes += b.length))
    raw.on('error', () => {})
    raw.once('close', () => (rawClosed = true))
    await waitUntil(() => rawClosed, 10_000, 'the socket over the cap closed')
    expect(bytes).toBe(0)
    const metrics = await metricsOf(t)
    expect(metrics).toMatch(/^mc_mqtt_connections_total\{result="over_limit"\} 3$/m)
    // A slot given back is taken again.
    await one.endAsync()
    await waitFor(() => connackCode(t, d), (code) => code === 0, 'a connection after one closed')
  })

  it('closes a socket that sends no CONNECT within MQTT_CONNECT_TIMEOUT_MS', async () => {
    const { t } = await start({ MQTT_CONNECT_TIMEOUT_MS: '300' })
    const raw = tcpConnect({ host: '127.0.0.1', port: t.app.broker.port as number })
    sockets.push(raw)
    raw.on('error', () => {})
    let rawClosed = false
    raw.once('close', () => (rawClosed = true))
    await new Promise<void>((resolve) => raw.once('connect', () => resolve()))
    await waitUntil(() => rawClosed, 10_000, 'the idle socket closed')
    const metrics = await metricsOf(t)
    expect(metrics).toMatch(/^mc_mqtt_connections_total\{result="protocol_error"\} 1$/m)
  })

  it.each([4, 5] as const)('throttles an address after repeated failures, without checking the password (v%i)', async (protocolVersion) => {
    const { t, api, admin } = await start({ MQTT_AUTH_MAX_FAILURES_PER_ADDRESS: '3' })
    const d = await provisionDevice(api, admin)
    const wrong = { ...d, mqtt_password: 'wrong' }
    for (let i = 0; i < 3; i++) expect(await connackCode(t, wrong, { protocolVersion })).toBe(protocolVersion === 5 ? 0x86 : 4)
    // Right credentials now: refused as "server unavailable" until the window ends.
    expect(await connackCode(t, d, { protocolVersion })).toBe(protocolVersion === 5 ? 0x88 : 3)
    expect(await connackCode(t, d, { protocolVersion, transport: 'ws' })).toBe(protocolVersion === 5 ? 0x88 : 3)
    const metrics = await metricsOf(t)
    expect(metrics).toMatch(/^mc_mqtt_connections_total\{result="throttled"\} 2$/m)
    expect(metrics).toMatch(/^mc_mqtt_connections_total\{result="bad_credentials"\} 3$/m)
  })
})

describe('revocation between instances without the bus event (periodic check)', () => {
  let a: TestApp
  let b: TestApp
  let testDb: TestDb
  const clients = new MqttClients()
  beforeAll(async () => {
    // Two in-process buses: B never hears of A's change, only the directory tells.
    testDb = await embeddedEngine.create()
    a = await startTestApp(ENV, { testDb })
    b = await startTestApp({ ...ENV, TOKEN_REVOCATION_CHECK_MS: '200' }, { testDb })
  })
  afterEach(() => clients.closeAll())
  afterAll(async () => {
    await a?.close()
    await b?.close()
    await testDb?.drop()
  })

  it('closes the session on B of a device rotated, then deleted, on A', async () => {
    const api = new ApiClient(a.url)
    const admin = await adminToken(api)
    const d = await provisionDevice(api, admin)
    const old = clients.track(await connectDevice(b, d, { protocolVersion: 5 }))
    const fresh = await rotateDevice(api, admin, d.id)
    await closed(old)
    const current = clients.track(await connectDevice(b, { ...d, mqtt_password: fresh }, { protocolVersion: 5 }))
    await deleteDevice(api, admin, d.id)
    await closed(current)
  })
})

const natsUp = await requireService(`NATS at ${natsUrlForTests}`, await natsReachable())

describe.runIf(natsUp)('embedded broker with the real NATS', () => {
  let t: TestApp
  let api: ApiClient
  let admin: string
  let nc: NatsConnection
  const clients = new MqttClients()

  /** Messages on these NATS subjects, subscribed on the server before this resolves. */
  async function natsTap(...subjects: string[]): Promise<{ got: Array<{ subject: string; data: string }>; stop(): void }> {
    const got: Array<{ subject: string; data: string }> = []
    const subs = subjects.map((s) => nc.subscribe(s, { callback: (_err, m) => void got.push({ subject: m.subject, data: text(m.data) }) }))
    await nc.flush()
    return { got, stop: () => subs.forEach((s) => s.unsubscribe()) }
  }

  beforeAll(async () => {
    t = await startTestApp({ ...ENV, NATS_URL: natsUrlForTests })
    api = new ApiClient(t.url)
    admin = await adminToken(api)
    nc = await natsConnect({ servers: natsUrlForTests })
  })
  afterEach(() => clients.closeAll())
  afterAll(async () => {
    await nc?.close()
    await t?.close()
  })

  it.each([4, 5] as const)('delivers a command published on NATS to the device (v%i)', async (protocolVersion) => {
    const d = await provisionDevice(api, admin)
    const c = clients.track(await connectDevice(t, d, { protocolVersion }))
    const got = inbox(c)
    await c.subscribeAsync(`cmd.${d.id}/#`, { qos: 1 })
    await c.subscribeAsync(`cmd.${d.id}.set`, { qos: 1 })
    // Published until it arrives: the gateway's subscription reaches the server on its own time.
    await waitFor(
      async () => {
        nc.publish(`cmd.${d.id}.set`, 'temp=21')
        await nc.flush()
        return got.length
      },
      (n) => n > 0,
      'the command from NATS',
    )
    expect(got[0]).toEqual({ topic: `cmd.${d.id}.set`, payload: 'temp=21', qos: 1, retain: false })
  })

  it.each([4, 5] as const)("never forwards a publish to another device's topic to NATS (v%i)", async (protocolVersion) => {
    const d = await provisionDevice(api, admin)
    const other = await provisionDevice(api, admin)
    const tap = await natsTap(`raw.${other.id}`, `raw.${other.id}.>`, `raw.${d.id}`)
    try {
      let c = clients.track(await connectDevice(t, d, { protocolVersion }))
      if (protocolVersion === 5) {
        await expect(c.publishAsync(`raw.${other.id}`, 'forged', { qos: 1 })).rejects.toMatchObject({ code: 0x87 })
      } else {
        c.publish(`raw.${other.id}/a`, 'forged', { qos: 1 }, () => {})
        await closed(c)
        c = clients.track(await connectDevice(t, d, { protocolVersion }))
      }
      // Stored in JetStream before PUBACK, so on the subject before this resolves.
      await c.publishAsync(`raw.${d.id}`, 'marker', { qos: 1 })
      await waitUntil(() => tap.got.length > 0, 5000, 'the marker on NATS')
      expect(tap.got).toEqual([{ subject: `raw.${d.id}`, data: 'marker' }])
    } finally {
      tap.stop()
    }
  })
})

describe.runIf(natsUp)('a message NATS cannot store in time', () => {
  let nats: NatsServer
  let t: TestApp
  const clients = new MqttClients()
  beforeAll(async () => {
    nats = await startNatsServer()
    t = await startTestApp({ ...ENV, NATS_URL: nats.url, MQTT_FORWARD_TIMEOUT_MS: '300', NATS_PUBLISH_TIMEOUT_MS: '200' })
  })
  afterEach(() => clients.closeAll())
  afterAll(async () => {
    await t?.close()
    await nats?.cleanup()
  })

  it.each([5, 4] as const)('disconnects the device without any PUBACK, never with 0x87 (v%i)', async (protocolVersion) => {
    const api = new ApiClient(t.url)
    const d = await provisionDevice(api, await adminToken(api))
    // The case before this one restarted the server: the bus reconnects on its own time, and
    // JetStream stores again only once it has recovered its streams.
    await waitFor(
      () => t.app.bus.persist(`raw.${d.id}`, new TextEncoder().encode('probe')),
      (r) => r.seq > 0,
      'JetStream storing again',
      30_000,
    )
    const c = clients.track(await connectDevice(t, d, { protocolVersion }))
    // Stored while NATS is up (the stream exists then).
    await c.publishAsync(`raw.${d.id}`, 'stored', { qos: 1 })
    await nats.kill()
    try {
      const reasons: number[] = []
      c.on('disconnect', (p) => reasons.push(p.reasonCode ?? -1))
      const answers: unknown[] = []
      c.publish(`raw.${d.id}`, 'held', { qos: 1 }, (err) => answers.push(err ?? 'puback'))
      await closed(c)
      expect(answers).toEqual([])
      expect(reasons).toEqual(protocolVersion === 5 ? [0x89] : [])
    } finally {
      await nats.start()
    }
  })
})

const pgUp = natsUp && (await postgresAvailable())

describe.runIf(pgUp)('revocation across instances: one Postgres, the real NATS', () => {
  let a: TestApp
  let b: TestApp
  let testDb: TestDb
  const clients = new MqttClients()
  beforeAll(async () => {
    testDb = await postgresEngine.create()
    a = await startTestApp({ ...ENV, NATS_URL: natsUrlForTests }, { testDb })
    // B's periodic check is far off: only the bus event can close its sessions in time.
    b = await startTestApp({ ...ENV, NATS_URL: natsUrlForTests, TOKEN_REVOCATION_CHECK_MS: '600000' }, { testDb })
  })
  afterEach(() => clients.closeAll())
  afterAll(async () => {
    await a?.close()
    await b?.close()
    await testDb?.drop()
  })

  it('a deletion on A closes the session on B; a rotation on A closes the old session on B', async () => {
    const api = new ApiClient(a.url)
    const admin = await adminToken(api)
    const d = await provisionDevice(api, admin)
    // The revocation subscription of B must be live on the server: a session on B closed by
    // a rotation made on A says so (retried: the rotation is what is tested).
    let password = d.mqtt_password
    const onB = clients.track(await connectDevice(b, d, { protocolVersion: 5 }))
    const reasons: number[] = []
    onB.on('disconnect', (p) => reasons.push(p.reasonCode ?? -1))
    password = await rotateDevice(api, admin, d.id)
    await closed(onB)
    expect(reasons).toEqual([0x98])

    const again = clients.track(await connectDevice(b, { ...d, mqtt_password: password }, { protocolVersion: 4 }))
    await deleteDevice(api, admin, d.id)
    await closed(again)
    expect(await connackCode(b, { ...d, mqtt_password: password })).toBe(5)
  })
})

describe('the MQTT port', () => {
  let holder: Server
  let held: number
  let testDb: TestDb
  const dirs: string[] = []
  const apps: Array<{ close(): Promise<unknown> }> = []

  /** An app built as src/main.ts builds it, with this config, and its log lines. */
  async function build(env: Record<string, string>, mutate: (c: Config) => Config = (c) => c) {
    const dataDir = await mkdtemp(join(tmpdir(), 'mc-test-'))
    dirs.push(dataDir)
    const config = mutate(loadConfig({ JWT_SECRET: TEST_SECRET, DATA_DIR: dataDir, SERVER_HOST: '127.0.0.1', SERVER_PORT: '0', ...env }))
    const lines: string[] = []
    const app = await buildApp(config, { db: testDb.db, logger: { level: 'warn', stream: { write: (l: string) => lines.push(l) } } })
    apps.push(app)
    return { app, lines }
  }

  beforeAll(async () => {
    testDb = await embeddedEngine.create()
    holder = createServer()
    await new Promise<void>((resolve) => holder.listen({ host: '127.0.0.1', port: 0 }, () => resolve()))
    held = (holder.address() as AddressInfo).port
  })
  afterAll(async () => {
    for (const app of apps) await app.close()
    await new Promise((resolve) => holder.close(resolve))
    for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 })
    await testDb?.drop()
  })

  it('MQTT_PORT not set and the default taken: a free port and a warning', async () => {
    // The default is 1883; this test's own taken port stands in for it.
    const { app, lines } = await build({}, (c) => ({ ...c, mqtt: { ...c.mqtt, port: held, portExplicit: false } }))
    expect(app.broker.port).not.toBe(held)
    expect(app.broker.port).toBeGreaterThan(0)
    expect(lines.join('\n')).toContain(`MQTT port ${held} is taken and MQTT_PORT is not set`)
  })

  it('MQTT_PORT set and taken: the start fails with a one-line message', async () => {
    const err = await build({ MQTT_PORT: String(held) }).then(
      () => undefined,
      (e: unknown) => e as Error,
    )
    expect(err?.name).toBe('BrokerListenError')
    expect(err?.message).toBe(
      `cannot listen for MQTT on 127.0.0.1:${held}: the port is already in use (set MQTT_PORT to a free port, 0 for any, or MQTT_ENABLED=false)`,
    )
  })
})
