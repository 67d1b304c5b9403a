/**
 * The Service-MQTT README (../shared/seeds/004_3137f88f47bf1bf2.txt): its `curl`
 * provisioning and its `mosquitto_pub` publish, run as written with Debian's
 * mosquitto-clients, the message arriving on the machine's NATS; the API it documents
 * and its Swagger page. Substitutions (docs/MIGRATING.md): host and ports; an operator's
 * token on `POST /devices` (the original let anyone provision); `mosquitto_pub` run
 * directly instead of inside `docker run … eclipse-mosquitto`.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { RAW_STREAM } from '../../src/devices/forwarder.js'
import { ApiClient } from '../helpers/api.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { MQTT_TEST_ENV, adminToken } from '../helpers/mqtt.js'
import { natsReachable, natsUrlForTests, withJsm } from '../helpers/nats.js'
import { requireService } from '../helpers/services.js'
import { waitFor } from '../helpers/wait.js'
import { codeBlocks, curl, readSeed, rebase, requireBinary, run, section, shellWords } from './seed-examples.js'

const seed = readSeed('004_3137f88f47bf1bf2.txt')
const ready =
  seed !== undefined &&
  (await requireBinary('curl', 'curl')) &&
  (await requireBinary('mosquitto_pub', 'mosquitto-clients')) &&
  (await requireService(`NATS at ${natsUrlForTests}`, await natsReachable()))

interface Provisioned {
  id: string
  type: string
  mqtt_user: string
  mqtt_password: string
  created_at: string
}

describe.skipIf(!ready)('Service-MQTT README examples', () => {
  const text = seed as string
  const api = section(text, '### Add a New Device')
  const publishing = section(text, '## Publishing a Message')
  const [provisionCommand, publishCommand] = codeBlocks(publishing)
    .filter((b) => b.lang === 'sh')
    .map((b) => b.code.trim())

  let t: TestApp
  let nc: NatsConnection
  let admin = ''

  /** The README's curl, its URL pointed at the gateway and, where given, a bearer token added. */
  const provision = (token: string | undefined) => {
    const words = shellWords(provisionCommand as string).map((w) => rebase(w, t.url))
    return curl([...words, ...(token === undefined ? [] : ['-H', `Authorization: Bearer ${token}`])])
  }

  /**
   * The README's publish command: what runs inside `docker run … eclipse-mosquitto`, with
   * the broker's host and port and the device's credentials put in.
   */
  const publishWords = (device: Pick<Provisioned, 'mqtt_user' | 'mqtt_password'>): string[] => {
    const words = shellWords(publishCommand as string)
    const at = words.indexOf('mosquitto_pub')
    expect(words.slice(0, at)).toEqual(['docker', 'run', '--rm', '-it', '--network=host', 'eclipse-mosquitto'])
    const port = t.app.broker.port
    if (port === null) throw new Error('the gateway has no MQTT broker')
    const out = words.slice(at + 1)
    const option = (flag: string, from: string, to: string) => {
      const i = out.indexOf(flag)
      expect(out[i + 1], `${flag} in the README's command`).toBe(from)
      out[i + 1] = to
    }
    option('-h', 'localhost', '127.0.0.1')
    option('-p', '1883', String(port))
    return out.map((w) => w.replaceAll('<YOUR_USERNAME>', device.mqtt_user).replaceAll('<YOUR_PASSWORD>', device.mqtt_password))
  }

  beforeAll(async () => {
    t = await startTestApp({ ...MQTT_TEST_ENV, NATS_URL: natsUrlForTests })
    admin = await adminToken(new ApiClient(t.url))
    nc = await connect({ servers: natsUrlForTests, timeout: 5000 })
  })
  afterAll(async () => {
    await nc?.close()
    await t?.close()
  })

  it("provisions a device with the README's curl (a token added) and answers the documented fields", async () => {
    expect(provisionCommand).toBe(`curl -X POST http://localhost:9091/devices -d '{"type":"test-device"}'`)
    const res = await provision(admin)
    expect(res.status, res.body).toBe(200)
    // The API section's success response, field for field.
    const documented = JSON.parse(codeBlocks(api).filter((b) => b.lang === 'json')[1]?.code as string) as Record<string, string>
    expect(api).toContain('**Success Response (200 OK)**')
    expect(Object.keys(res.json).sort()).toEqual(Object.keys(documented).sort())
    for (const key of Object.keys(documented)) expect(typeof res.json[key], key).toBe(documented[key])
    // "an `mqtt_user` (which is the same as the `id`) and an `mqtt_password`"
    expect(res.json.type).toBe('test-device')
    expect(res.json.mqtt_user).toBe(res.json.id)
    expect(res.json.mqtt_password.length).toBeGreaterThan(0)
  })

  it('refuses the curl without a token: provisioning needs an operator now', async () => {
    const res = await provision(undefined)
    expect(res.status, res.body).toBe(401)
    expect(Object.keys(res.json).sort()).toEqual(['error', 'message'])
  })

  it("publishes with the README's mosquitto_pub, and the message reaches NATS on raw.<user>", async () => {
    const device = (await provision(admin)).json as Provisioned
    const subject = `raw.${device.mqtt_user}`
    const received: Array<{ data: string; headers: Record<string, string> }> = []
    const sub = nc.subscribe(subject, {
      callback: (_err, msg) => {
        const headers: Record<string, string> = {}
        if (msg.headers !== undefined) for (const [k, v] of msg.headers) headers[k] = v[0] ?? ''
        received.push({ data: msg.string(), headers })
      },
    })
    try {
      await nc.flush()
      const words = publishWords(device)
      expect(words).toEqual(['-h', '127.0.0.1', '-p', String(t.app.broker.port), '-u', device.mqtt_user, '-P', device.mqtt_password, '-t', subject, '-m', 'Hello from my new device!'])
      const res = await run('mosquitto_pub', words)
      expect(res.code, res.stderr).toBe(0)
      await waitFor(() => received.length, (n) => n >= 1, `the message on ${subject}`)
      expect(received).toHaveLength(1)
      expect(received[0]?.data).toBe('Hello from my new device!')
      expect(received[0]?.headers).toMatchObject({ 'Device-Id': device.id, 'Device-Type': 'test-device', 'Mqtt-Topic': subject })
    } finally {
      sub.unsubscribe()
    }
    // "publishes the data to a NATS stream": JetStream's RAW holds it too.
    const stored = await waitFor(
      () => withJsm(natsUrlForTests, (jsm) => jsm.streams.getMessage(RAW_STREAM.name, { last_by_subj: subject })),
      (m) => m !== null,
      `the message in the stream ${RAW_STREAM.name}`,
    )
    expect(new TextDecoder().decode(stored?.data)).toBe('Hello from my new device!')
  })

  it('refuses the mosquitto_pub of a wrong password, as the broker checks credentials', async () => {
    const device = (await provision(admin)).json as Provisioned
    const res = await run('mosquitto_pub', publishWords({ mqtt_user: device.mqtt_user, mqtt_password: 'not-the-password' }))
    expect(res.code).not.toBe(0)
    expect(res.stderr).toMatch(/bad user name or password/i)
  })

  it('takes the ports the README names: MQTT 1883 by default, HTTP 9091 with SERVER_PORT', () => {
    const ports = /MQTT broker will be available on port `(\d+)`[\s\S]*HTTP API will be available on port `(\d+)`/.exec(text)
    expect(ports?.slice(1)).toEqual(['1883', '9091'])
    const config = loadConfig({ SERVER_PORT: ports?.[2] })
    expect(config.mqtt.port).toBe(Number(ports?.[1]))
    expect(config.port).toBe(Number(ports?.[2]))
  })

  it('answers the Swagger UI at /docs/index.html', async () => {
    const path = /available at the `(\/docs\/index\.html)` endpoint/.exec(api)?.[1]
    expect(path).toBe('/docs/index.html')
    // -L: a browser follows a redirect to the page itself.
    const res = await curl(['curl', '-L', `${t.url}${path as string}`])
    expect(res.status, res.body.slice(0, 200)).toBe(200)
    expect(res.body).toMatch(/<html/i)
    expect(res.body).toMatch(/swagger-ui/i)
  })
})
