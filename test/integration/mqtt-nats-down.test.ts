/**
 * NATS goes away under a device publishing QoS 1: nothing is acknowledged while JetStream
 * cannot store, and after NATS is back every acknowledged publish is in the stream exactly
 * once. The test runs its own nats-server (the machine's on 4222 is shared and is never
 * stopped), kills it with SIGKILL and starts it again on the same port and store.
 */
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import type { Bus } from '../../src/bus/bus.js'
import { RAW_STREAM } from '../../src/devices/forwarder.js'
import { ApiClient } from '../helpers/api.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { adminToken, connectDevice, MQTT_TEST_ENV, MqttClients, provisionDevice } from '../helpers/mqtt.js'
import { startNatsServer, streamMessages, withJsm, type NatsServer } from '../helpers/nats.js'
import { requireService } from '../helpers/services.js'
import { waitFor, waitUntil } from '../helpers/wait.js'

// The test's own server; without a nats-server binary the file is skipped (failed under CI=true).
const started = await startNatsServer().catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))))
const haveServer = await requireService(`an own nats-server (${started instanceof Error ? started.message : 'ok'})`, !(started instanceof Error))

async function metric(t: TestApp, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${t.url}/metrics`)).text()
  const key = labels === '' ? `${name} ` : `${name}{${labels}} `
  const line = text.split('\n').find((l) => l.startsWith(key))
  return line === undefined ? 0 : Number(line.split(' ')[1])
}

const forwarded = (t: TestApp) => metric(t, 'mc_mqtt_messages_total', 'result="forwarded"')
const held = (t: TestApp) => metric(t, 'mc_mqtt_held_publishes')

/** Watches the app's JetStream publish attempts (the forwarder's retries while NATS is down) and their msgIds per payload. */
function watchPersists(bus: Bus): { readonly calls: number; readonly msgIds: Map<string, Set<string>> } {
  const seen = { calls: 0, msgIds: new Map<string, Set<string>>() }
  const persist = bus.persist.bind(bus)
  bus.persist = (subject, data, opts) => {
    seen.calls++
    const key = Buffer.from(data).toString()
    const ids = seen.msgIds.get(key) ?? new Set<string>()
    if (opts?.msgId !== undefined) ids.add(opts.msgId)
    seen.msgIds.set(key, ids)
    return persist(subject, data, opts)
  }
  return seen
}

/** How often each `seq:<n>` payload on `subject` is in the server's RAW stream. */
async function storedSeqs(server: NatsServer, subject: string): Promise<Map<number, number>> {
  const counts = new Map<number, number>()
  for (const m of await streamMessages(server.url, RAW_STREAM.name)) {
    if (m.subject !== subject) continue
    const seq = Number(/^seq:(\d+)$/.exec(Buffer.from(m.data).toString())?.[1])
    counts.set(seq, (counts.get(seq) ?? 0) + 1)
  }
  return counts
}

/** QoS 1 publishes of `seq:<n>` payloads, `window` unacknowledged at most, until stopped. */
class Publisher {
  next = 0
  readonly acked = new Set<number>()
  readonly errors: unknown[] = []
  private running = true

  constructor(
    private readonly client: MqttClient,
    private readonly topic: string,
    private readonly window: number,
  ) {
    this.pump()
  }

  get outstanding(): number {
    return this.next - this.acked.size
  }

  stop(): void {
    this.running = false
  }

  private pump(): void {
    while (this.running && this.outstanding < this.window) {
      const seq = this.next++
      this.client.publish(this.topic, `seq:${seq}`, { qos: 1 }, (err) => {
        if (err) this.errors.push(err)
        else this.acked.add(seq)
        this.pump()
      })
    }
  }
}

describe.runIf(haveServer)('MQTT forwarding while NATS is down', () => {
  const server = started as NatsServer
  let serverUp = true
  const apps: TestApp[] = []
  const clients = new MqttClients()

  afterEach(async () => {
    await clients.closeAll()
    // Back up first: an app closing while NATS is down would hold its publishes to the forward timeout.
    if (!serverUp) {
      await server.start()
      serverUp = true
    }
    await Promise.all(apps.splice(0).map((t) => t.close()))
  })

  afterAll(async () => {
    await server?.cleanup()
  })

  async function app(env: Record<string, string>) {
    const t = await startTestApp({ ...MQTT_TEST_ENV, NATS_URL: server.url, ...env })
    apps.push(t)
    await waitUntil(
      () => withJsm(server.url, async (jsm) => (await jsm.streams.info(RAW_STREAM.name)).config.subjects.includes('raw.>')),
      20_000,
      'the forwarder to create RAW',
    )
    const api = new ApiClient(t.url)
    const device = await provisionDevice(api, await adminToken(api))
    return { t, device }
  }

  async function kill(t: TestApp) {
    await server.kill()
    serverUp = false
    await waitFor(() => t.app.bus.status(), (s) => s.status === 'down', 'the bus to see NATS gone')
  }

  async function restart() {
    await server.start()
    serverUp = true
  }

  it('holds QoS 1 publishes without PUBACK while NATS is down; afterwards every acknowledged one is stored exactly once', async () => {
    const { t, device } = await app({ MQTT_FORWARD_TIMEOUT_MS: '60000', NATS_PUBLISH_TIMEOUT_MS: '2000' })
    const persists = watchPersists(t.app.bus)
    const client = clients.track(await connectDevice(t, device))
    let closes = 0
    client.on('close', () => closes++)
    const topic = `raw.${device.id}`
    const pub = new Publisher(client, topic, 10)
    await waitUntil(() => pub.acked.size >= 100, 30_000, '100 publishes acknowledged')

    await kill(t)
    // Whatever was stored before the kill has been counted now; nothing can be stored until the restart.
    const heldNow = await waitFor(() => held(t), (n) => n > 0, 'publishes held by the forwarder')
    const forwardedAtKill = await forwarded(t)
    // The later marker: every held publish was tried again and again, and still nothing was acknowledged.
    const callsAtKill = persists.calls
    await waitUntil(() => persists.calls >= callsAtKill + 5 * heldNow, 30_000, 'retries while NATS is down')
    expect(await forwarded(t)).toBe(forwardedAtKill)
    expect(pub.acked.size).toBeLessThanOrEqual(forwardedAtKill)
    expect(await held(t)).toBeGreaterThan(0)
    expect(pub.outstanding).toBeGreaterThan(0)
    const ackedWhileDown = pub.acked.size

    await restart()
    await waitUntil(() => pub.acked.size >= ackedWhileDown + 100, 60_000, 'publishes acknowledged again after the restart')
    pub.stop()
    await waitUntil(() => pub.outstanding === 0, 60_000, 'every publish acknowledged')
    expect(pub.errors).toEqual([])
    expect(closes).toBe(0)
    expect(await held(t)).toBe(0)

    const stored = await storedSeqs(server, topic)
    for (const seq of pub.acked) expect(stored.get(seq), `seq ${seq}`).toBe(1)
    expect([...stored.values()].every((n) => n === 1)).toBe(true)
    expect(stored.size).toBe(pub.next)
  })

  it('past MQTT_FORWARD_TIMEOUT_MS the client is disconnected without PUBACK, delivers again after reconnecting, and the message is stored once', async () => {
    const { t, device } = await app({ MQTT_FORWARD_TIMEOUT_MS: '1000', NATS_PUBLISH_TIMEOUT_MS: '500' })
    const persists = watchPersists(t.app.bus)
    const client = clients.track(await connectDevice(t, device, { reconnectPeriod: 100 }))
    const topic = `raw.${device.id}`
    await client.publishAsync(topic, 'seq:0', { qos: 1 })
    let closes = 0
    let reconnects = 0
    const sent: number[] = []
    client.on('close', () => closes++)
    // mqtt.js emits 'connect' again only once its redelivered messages are acknowledged.
    client.on('reconnect', () => reconnects++)
    client.on('packetsend', (p) => {
      if (p.cmd === 'publish') sent.push(p.messageId ?? -1)
    })

    await kill(t)
    let acked = false
    client.publish(topic, 'seq:1', { qos: 1 }, (err) => {
      if (!err) acked = true
    })
    const packetId = await waitFor(() => sent[0], (id) => id !== undefined, 'the publish sent')
    await waitUntil(
      () => closes >= 1 && reconnects >= 1 && sent.filter((id) => id === packetId).length >= 2,
      30_000,
      'a disconnect, a reconnect and the redelivery',
    )
    expect(acked).toBe(false)
    expect(await metric(t, 'mc_mqtt_messages_total', 'result="timed_out"')).toBeGreaterThanOrEqual(1)

    await restart()
    await waitUntil(() => acked, 60_000, 'the PUBACK after NATS is back')
    const stored = await storedSeqs(server, topic)
    expect(stored.get(0)).toBe(1)
    expect(stored.get(1)).toBe(1)
    // Every delivery of it, over several connections (mqtt.js sets no DUP flag), carried one Nats-Msg-Id.
    expect(persists.msgIds.get('seq:1')?.size).toBe(1)
  })
})
