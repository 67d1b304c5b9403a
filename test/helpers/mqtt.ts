/**
 * Devices for MQTT tests: provision one over the HTTP API with an admin token, then connect
 * a real `mqtt` client (TCP or WebSocket, MQTT 3.1.1 or 5) to the app's embedded broker.
 *
 *   const t = await startTestApp(MQTT_TEST_ENV)
 *   const api = new ApiClient(t.url)
 *   const admin = await adminToken(api)
 *   const device = await provisionDevice(api, admin)
 *   const clients = new MqttClients()            // afterEach(() => clients.closeAll())
 *   const c = clients.track(await connectDevice(t, device, { protocolVersion: 5 }))
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { expect } from 'vitest'
import { FAST_PASSWORD_HASHING, type ApiClient } from './api.js'
import type { TestApp } from './app.js'

export const MQTT_TEST_ADMIN_PASSWORD = 'admin-password-for-mqtt-tests'

/** Env for startTestApp: an admin whose password the helpers know, and cheap hashing. */
export const MQTT_TEST_ENV: Record<string, string> = { ...FAST_PASSWORD_HASHING, ADMIN_PASSWORD: MQTT_TEST_ADMIN_PASSWORD }

export interface Device {
  id: string
  type: string
  mqtt_user: string
  mqtt_password: string
  created_at: string
}

/** An admin access token (the app must run with MQTT_TEST_ENV, or pass its ADMIN_PASSWORD). */
export async function adminToken(api: ApiClient, password = MQTT_TEST_ADMIN_PASSWORD): Promise<string> {
  const res = await api.post('/api/v1/auth/login', { body: { username: 'admin', password } })
  expect(res.status, res.text).toBe(200)
  return res.json.token as string
}

export async function provisionDevice(api: ApiClient, token: string, type = 'test-device'): Promise<Device> {
  const res = await api.post<Device>('/devices', { token, body: { type } })
  expect(res.status, res.text).toBe(200)
  return res.json
}

/** POST /devices/{id}/credentials: answers the new password (the old one stops working). */
export async function rotateDevice(api: ApiClient, token: string, id: string): Promise<string> {
  const res = await api.post<{ mqtt_password: string }>(`/devices/${id}/credentials`, { token })
  expect(res.status, res.text).toBe(200)
  return res.json.mqtt_password
}

export async function deleteDevice(api: ApiClient, token: string, id: string): Promise<void> {
  const res = await api.delete(`/devices/${id}`, { token })
  expect(res.status, res.text).toBe(204)
}

/** The broker's URL: `mqtt://127.0.0.1:<port>` or `ws://127.0.0.1:<http port><prefix>/mqtt`. */
export function brokerUrl(t: TestApp, transport: 'tcp' | 'ws' = 'tcp'): string {
  if (transport === 'ws') return `${t.wsUrl}/mqtt`
  const port = t.app.broker.port
  if (port === null) throw new Error('the app has no MQTT broker (MQTT_ENABLED=false?)')
  return `mqtt://127.0.0.1:${port}`
}

export interface ConnectOptions extends IClientOptions {
  transport?: 'tcp' | 'ws'
}

export type Credentials = Pick<Device, 'mqtt_user' | 'mqtt_password'>

function clientOptions(creds: Credentials | undefined, opts: ConnectOptions): IClientOptions {
  const { transport: _transport, ...rest } = opts
  return {
    protocolVersion: 4,
    // A test decides itself whether to connect again; mqtt.js must not.
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    clean: true,
    ...(creds ? { username: creds.mqtt_user, password: creds.mqtt_password } : {}),
    ...rest,
  }
}

/**
 * A connected client (the CONNACK accepted it); rejects with mqtt.js's error (`code`: the
 * CONNACK return code, or for MQTT 5 the reason code) when refused or closed before.
 */
export function connectDevice(t: TestApp, creds: Credentials | undefined, opts: ConnectOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(brokerUrl(t, opts.transport), clientOptions(creds, opts))
  client.on('close', () => closedClients.add(client))
  return new Promise((resolve, reject) => {
    const fail = (err: Error) => {
      client.removeListener('connect', ok)
      client.removeListener('close', closed)
      client.end(true)
      reject(err)
    }
    const ok = () => {
      client.removeListener('error', fail)
      client.removeListener('close', closed)
      resolve(client)
    }
    const closed = () => fail(new Error('connection closed before CONNACK'))
    client.once('connect', ok)
    client.once('error', fail)
    client.once('close', closed)
  })
}

/**
 * The code of the CONNACK a CONNECT with these credentials gets: 0 accepted (the client
 * is then closed), else the return code (3.1.1) or reason code (5); `closed` when the
 * broker closed the connection without a CONNACK.
 */
export async function connackCode(t: TestApp, creds: Credentials | undefined, opts: ConnectOptions = {}): Promise<number | 'closed'> {
  try {
    const client = await connectDevice(t, creds, opts)
    await client.endAsync(true)
    return 0
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'number') return code
    // Closed by the broker before any CONNACK: mqtt.js says so, or the socket errors (EPIPE, ECONNRESET).
    if (typeof code === 'string' || String((err as Error).message).includes('closed before CONNACK')) return 'closed'
    throw err
  }
}

const closedClients = new WeakSet<MqttClient>()

/**
 * Resolves when the connection of a client from connectDevice closes (already closed: at
 * once); rejects after `timeoutMs`, a deadline for a close that must come.
 */
export function closed(client: MqttClient, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (closedClients.has(client)) return resolve()
    const timer = setTimeout(() => reject(new Error(`the MQTT connection was not closed within ${timeoutMs} ms`)), timeoutMs)
    client.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}

/** Every client a test opened, ended in afterEach whatever happened. */
export class MqttClients {
  private readonly clients = new Set<MqttClient>()

  track(client: MqttClient): MqttClient {
    this.clients.add(client)
    return client
  }

  async closeAll(): Promise<void> {
    const all = [...this.clients]
    this.clients.clear()
    await Promise.all(all.map((c) => c.endAsync(true).catch(() => {})))
  }
}
