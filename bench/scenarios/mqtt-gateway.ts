/**
 * What the mqtt scenario asks of a bench gateway over HTTP: devices provisioned with the
 * admin's access token (docs/API.md sections 7 and 8), and the gateway's own MQTT and
 * NATS counters after a load.
 */
import { ADMIN_PASSWORD, ADMIN_USERNAME, type Gateway } from '../lib.js'

export interface BenchDevice {
  id: string
  mqttUser: string
  mqttPassword: string
}

const HTTP_TIMEOUT_MS = 30_000

async function call(gw: Gateway, method: string, path: string, body: unknown, token?: string): Promise<{ status: number; json: Record<string, unknown> | undefined; text: string }> {
  const res = await fetch(`http://127.0.0.1:${gw.port}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  })
  const text = await res.text()
  let json: Record<string, unknown> | undefined
  try {
    json = JSON.parse(text) as Record<string, unknown>
  } catch {
    json = undefined
  }
  return { status: res.status, json, text }
}

/**
 * `count` new devices of `type`, or why they could not be made (the devices API missing
 * or refusing: the caller reports it instead of measuring).
 */
export async function provisionDevices(gw: Gateway, count: number, type: string): Promise<BenchDevice[] | string> {
  const login = await call(gw, 'POST', '/api/v1/auth/login', { username: ADMIN_USERNAME, password: ADMIN_PASSWORD })
  const token = login.json?.token
  if (login.status !== 200 || typeof token !== 'string') return `admin login answered HTTP ${login.status}: ${login.text.slice(0, 200)}`
  const devices: BenchDevice[] = []
  for (let i = 0; i < count; i++) {
    const res = await call(gw, 'POST', '/devices', { type }, token)
    const { id, mqtt_user: mqttUser, mqtt_password: mqttPassword } = res.json ?? {}
    if (res.status !== 200 || typeof id !== 'string' || typeof mqttUser !== 'string' || typeof mqttPassword !== 'string') {
      return `POST /devices answered HTTP ${res.status}: ${res.text.slice(0, 200)}`
    }
    devices.push({ id, mqttUser, mqttPassword })
  }
  return devices
}

/**
 * The gateway's mc_mqtt_*, mc_nats_* and mc_bus_* series after a load, each with its
 * labels (histograms as their _sum and _count): what it received, forwarded, refused and
 * held, and how long the NATS publishes took.
 */
export async function mqttMetrics(gw: Gateway): Promise<Record<string, number> | undefined> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${gw.port}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
    const out: Record<string, number> = {}
    for (const line of text.split('\n')) {
      const m = /^(mc_(?:mqtt|nats|bus)_[a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line)
      if (!m || m[1]?.endsWith('_bucket')) continue
      out[`${m[1]}${m[2] ?? ''}`] = Number(Number(m[3]).toFixed(6))
    }
    return out
  } catch {
    return undefined
  }
}
