import jwt from 'jsonwebtoken'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { findSession, listSessions } from '../../src/admin/sessions.js'
import { mqttSource, type MqttSessionDirectory, type MqttSessionFacts } from '../../src/admin/session-sources.js'
import { EmbeddedBroker } from '../../src/devices/broker.js'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { TEST_SECRET, startTestApp, type TestApp } from '../helpers/app.js'
import { ChannelClient, streamToken as channelToken } from '../helpers/channels.js'
import { MqttClients, connectDevice, provisionDevice } from '../helpers/mqtt.js'
import { RecordingSink } from '../helpers/recording-sink.js'
import { waitFor, waitUntil } from '../helpers/wait.js'
import { TestClient } from '../helpers/ws-client.js'

const ADMIN_PASSWORD = 'admin-password-for-tests'
const ENV = { ...FAST_PASSWORD_HASHING, ADMIN_PASSWORD, MQTT_ENABLED: 'false', BATCH_LINGER_MS: '2' }
const SESSIONS = '/api/v1/admin/sessions'
const ADMIN_CLOSE = { code: 1008, reason: 'disconnected by an administrator' }

const TIME_SERIES_KEYS = ['authenticated', 'connected_at', 'endpoint', 'frames', 'id', 'last_error', 'lines', 'org', 'remote', 'user', 'user_id']
const WS_KEYS = ['channel', 'connected_at', 'endpoint', 'events_sent', 'frames_received', 'id', 'last_error', 'name', 'org', 'remote', 'user_id']

/** A stream token for /time-series, as /mock-auth makes them. */
const timeSeriesToken = (user: string, org = 'acme_corp') =>
  jwt.sign({ user, user_id: `id-${user}`, org, org_id: '456', account_id: '789', type: 'stream' }, TEST_SECRET, { expiresIn: 3600 })

async function login(api: ApiClient, username: string, password: string): Promise<{ token: string; id: string }> {
  const res = await api.post('/api/v1/auth/login', { body: { username, password } })
  expect(res.status, res.text).toBe(200)
  return { token: res.json.token, id: res.json.user.id }
}

describe('/api/v1/admin/sessions', () => {
  let t: TestApp
  let api: ApiClient
  let admin: { token: string; id: string }
  const tokens: Record<string, string> = {}
  const sink = new RecordingSink()
  // Every client a test opens; each test starts with no session left from the one before.
  const opened: Array<{ close(): void }> = []
  const track = <T extends { close(): void }>(c: T): T => {
    opened.push(c)
    return c
  }

  const list = async (query = '', token = admin.token) => {
    const res = await api.get(`${SESSIONS}${query}`, { token })
    expect(res.status, res.text).toBe(200)
    return res.json as { data: Array<Record<string, any>>; page: number; page_size: number; total: number }
  }
  /** Polls the list until `accept` holds for the items of `user`. */
  const sessionsOf = (user: string, accept: (items: Array<Record<string, any>>) => boolean, what: string) =>
    waitFor(async () => (await list(`?user=${encodeURIComponent(user)}`)).data, accept, what)
  const adminDisconnects = async () => {
    const text = await (await fetch(`${t.url}/metrics`)).text()
    return Number(/^mc_channel_disconnects_total\{reason="admin"\} (\d+)$/m.exec(text)?.[1] ?? 0)
  }
  const auditEntries = async (sessionId: string) => {
    const res = await api.get('/api/v1/audit?page_size=500', { token: admin.token })
    expect(res.status).toBe(200)
    return (res.json.data as Array<Record<string, any>>).filter((e) => e.target === `session:${sessionId}`)
  }

  beforeAll(async () => {
    t = await startTestApp(ENV, { sink })
    api = new ApiClient(t.url)
    admin = await login(api, 'admin', ADMIN_PASSWORD)
    for (const role of ['operator', 'viewer'] as const) {
      const res = await api.post('/api/v1/users', {
        token: admin.token,
        body: { username: `adm-${role}`, password: 'correct horse', email: `${role}@example.com`, role },
      })
      expect(res.status, res.text).toBe(201)
      tokens[role] = (await login(api, `adm-${role}`, 'correct horse')).token
    }
    const res = await api.post('/api/v1/tokens', {
      token: admin.token,
      body: { name: 'every scope', scopes: ['ingest:write', 'channels:publish', 'devices:write'] },
    })
    expect(res.status, res.text).toBe(201)
    tokens.apiToken = res.json.token
  })
  afterEach(async () => {
    for (const c of opened.splice(0)) c.close()
    await waitFor(async () => (await list()).total, (n) => n === 0, 'every session of the test to be gone')
  })
  afterAll(async () => {
    await t?.close()
  })

  it('is for admins only: 401 without a token, 403 for viewers, operators and API tokens', async () => {
    const c = track(await TestClient.authenticated(t.wsUrl, timeSeriesToken('guarded')))
    const [session] = await sessionsOf('guarded', (items) => items.length === 1, 'the session to be listed')
    expect((await api.get(SESSIONS)).status).toBe(401)
    for (const who of ['viewer', 'operator', 'apiToken']) {
      const res = await api.get(SESSIONS, { token: tokens[who] })
      expect(res.status, who).toBe(403)
      expect(Object.keys(res.json).sort()).toEqual(['error', 'message'])
      const del = await api.delete(`${SESSIONS}/${session?.id}`, { token: tokens[who] })
      expect(del.status, who).toBe(403)
    }
    // Still connected and still listed: none of the refused DELETEs did anything.
    c.send('m v=1 1')
    expect(await c.next()).toBe('OK')
    expect((await list('?user=guarded')).data.map((s) => s.id)).toEqual([session?.id])
  })

  it('lists a /time-series session with its facts, before and after $AUTH, and counts frames and lines as they come', async () => {
    const before = Date.now()
    const c = track(await TestClient.connect(`${t.wsUrl}/time-series`))
    const pending = await waitFor(
      async () => (await list('?endpoint=time-series')).data.filter((s) => !s.authenticated),
      (items) => items.length === 1,
      'the unauthenticated session',
    )
    expect(pending[0]).toMatchObject({ endpoint: 'time-series', authenticated: false, user: null, user_id: null, org: null, frames: 0, lines: 0 })
    expect(Object.keys(pending[0] as object).sort()).toEqual(TIME_SERIES_KEYS)

    c.send(`$AUTH ${timeSeriesToken('counted')}`)
    expect(await c.next()).toBe('AUTH_SUCCESS')
    const [authed] = await sessionsOf('counted', (items) => items.length === 1, 'the session under its user')
    expect(authed).toMatchObject({ id: pending[0]?.id, authenticated: true, user: 'counted', user_id: null, org: 'acme_corp', frames: 1, lines: 0, remote: '127.0.0.1' })
    const connectedAt = Date.parse(authed?.connected_at)
    expect(connectedAt).toBeGreaterThanOrEqual(before - 1000)
    expect(connectedAt).toBeLessThanOrEqual(Date.now())

    c.send('a v=1 1\nb v=2 2')
    c.send('c v=3 3\n# a comment\nd v=4 4\ne v=5 5')
    c.send('bad line')
    expect([await c.next(), await c.next(), await c.next()]).toEqual(['OK', 'OK', expect.stringMatching(/^ERR line 1:/)])
    const [counted] = await sessionsOf('counted', (items) => items[0]?.frames === 4, 'four frames counted')
    expect(counted).toMatchObject({ frames: 4, lines: 5 })
  })

  it('names the gateway user of a session opened with an access token', async () => {
    track(await TestClient.authenticated(t.wsUrl, admin.token))
    const [s] = await sessionsOf(admin.id, (items) => items.length === 1, 'the session by user id')
    expect(s).toMatchObject({ endpoint: 'time-series', user: 'admin', user_id: admin.id, authenticated: true })
    expect((await list('?user=admin')).data.map((x) => x.id)).toEqual([s?.id])
  })

  it('lists a /ws session with its channel and counts, and filters by endpoint and user, a page at a time', async () => {
    track(await TestClient.authenticated(t.wsUrl, timeSeriesToken('pager')))
    const [older] = await sessionsOf('pager', (items) => items.length === 1, 'the /time-series session')
    // A later millisecond, so "newest first" has one answer.
    await waitUntil(() => Date.now() > Date.parse(older?.connected_at), 1000, 'the clock to pass the first connection')
    const ws = track(await ChannelClient.joined(t.wsUrl, { token: channelToken({ id: 'ws-user-1', name: 'Wanda' }), channelId: 'room.admin' }))
    const [s] = await sessionsOf('ws-user-1', (items) => items.length === 1, 'the /ws session')
    expect(Object.keys(s as object).sort()).toEqual(WS_KEYS)
    expect(s).toMatchObject({ endpoint: 'ws', user_id: 'ws-user-1', name: 'Wanda', org: 'acme', channel: 'room.admin', remote: '127.0.0.1', frames_received: 0 })
    expect(s?.events_sent).toBeGreaterThanOrEqual(1)
    expect((await list('?user=Wanda')).data.map((x) => x.id)).toEqual([s?.id])

    ws.send({ type: 'typing:start', channelId: 'room.admin' })
    await sessionsOf('ws-user-1', (items) => items[0]?.frames_received === 1, 'the typing frame counted')

    const sent = s?.events_sent as number
    const published = await api.post('/api/v1/channels/room.admin/events', { token: admin.token, body: { type: 'message:created', data: 1 } })
    expect(published.status, published.text).toBe(202)
    await ws.waitFor((f) => f.type === 'message:created', 'the event')
    await sessionsOf('ws-user-1', (items) => items[0]?.events_sent === sent + 1, 'the event counted')

    expect(s?.last_error).toBeNull()
    ws.send('not json')
    await ws.waitFor((f) => f.type === 'error', 'the error frame')
    const [refused] = await sessionsOf('ws-user-1', (items) => items[0]?.last_error !== null, 'the refusal kept')
    expect(refused?.last_error).toMatch(/json/i)

    const onlyWs = await list('?endpoint=ws')
    expect(onlyWs.data.every((x) => x.endpoint === 'ws')).toBe(true)
    expect(onlyWs.data.map((x) => x.id)).toContain(s?.id)
    const onlyTs = await list('?endpoint=time-series')
    expect(onlyTs.data.every((x) => x.endpoint === 'time-series')).toBe(true)
    expect(onlyTs.data.map((x) => x.id)).toEqual([older?.id])
    expect((await api.get(`${SESSIONS}?endpoint=telnet`, { token: admin.token })).status).toBe(400)

    // Newest first: the /ws session connected after the /time-series one.
    const all = await list()
    expect(all).toMatchObject({ page: 1, page_size: 50, total: 2 })
    expect(all.data.map((x) => x.id)).toEqual([s?.id, older?.id])
    const first = await list('?page=1&page_size=1')
    const second = await list('?page=2&page_size=1')
    const third = await list('?page=3&page_size=1')
    expect([first.total, second.total, third.total]).toEqual([2, 2, 2])
    expect([first.page, first.page_size, second.page]).toEqual([1, 1, 2])
    expect([first.data, second.data, third.data].map((d) => d.map((x) => x.id))).toEqual([[s?.id], [older?.id], []])
  })

  it('disconnects a /ws session with 1008, audited, counted as an admin disconnect', async () => {
    const ws = track(await ChannelClient.joined(t.wsUrl, { token: channelToken({ id: 'ws-kicked' }), channelId: 'room.kick' }))
    const [s] = await sessionsOf('ws-kicked', (items) => items.length === 1, 'the /ws session')
    const counted = await adminDisconnects()
    const res = await api.delete(`${SESSIONS}/${s?.id}`, { token: admin.token })
    expect(res.status, res.text).toBe(204)
    expect(await ws.waitClosed()).toEqual(ADMIN_CLOSE)
    expect(await adminDisconnects()).toBe(counted + 1)
    await sessionsOf('ws-kicked', (items) => items.length === 0, 'the session to go')
    const [entry, ...more] = await auditEntries(s?.id)
    expect(more).toEqual([])
    expect(entry).toMatchObject({
      action: 'session.disconnect',
      outcome: 'success',
      actor: `user:${admin.id}`,
      details: { endpoint: 'ws', user_id: 'ws-kicked', channel: 'room.kick' },
    })
    expect((await api.delete(`${SESSIONS}/${s?.id}`, { token: admin.token })).status).toBe(404)
  })

  it('disconnects a /time-series session after answering what it received, audited', async () => {
    const c = track(await TestClient.authenticated(t.wsUrl, timeSeriesToken('kicked')))
    c.send('kept v=1 1')
    expect(await c.next()).toBe('OK')
    const [s] = await sessionsOf('kicked', (items) => items.length === 1, 'the session')
    const res = await api.delete(`${SESSIONS}/${s?.id}`, { token: admin.token })
    expect(res.status, res.text).toBe(204)
    expect(await c.waitClosed()).toEqual(ADMIN_CLOSE)
    await sessionsOf('kicked', (items) => items.length === 0, 'the session to go')
    expect(sink.lines).toContain('kept,user=kicked,org=acme_corp v=1 1')
    const [entry] = await auditEntries(s?.id)
    expect(entry).toMatchObject({ action: 'session.disconnect', actor: `user:${admin.id}`, details: { endpoint: 'time-series', user: 'kicked', lines: 1 } })
  })

  it('answers 404 for an unknown id, and nothing is audited', async () => {
    const id = '00000000-0000-4000-8000-000000000000'
    const res = await api.delete(`${SESSIONS}/${id}`, { token: admin.token })
    expect(res.status).toBe(404)
    expect(res.json.error).toBe('not_found')
    expect(await auditEntries(id)).toEqual([])
  })
})

// The broker offers no session directory yet: its source is checked against one here.
describe('MQTT sessions through a broker directory', () => {
  const facts: MqttSessionFacts[] = [
    { id: 'm-1', deviceId: 'dev-1', transport: 'tcp', remote: '10.0.0.1', connectedAt: Date.UTC(2025, 0, 1) },
    { id: 'm-2', deviceId: undefined, transport: 'ws', remote: '10.0.0.2', connectedAt: Date.UTC(2025, 0, 2) },
  ]
  const ended: string[] = []
  const directory: MqttSessionDirectory = {
    sessions: () => facts,
    disconnect: (id) => {
      ended.push(id)
      return true
    },
  }

  it('lists the connections newest first and ends one through the broker', () => {
    const sources = [mqttSource(() => directory)]
    const { items, total } = listSessions(sources, {}, { limit: 50, offset: 0 })
    expect(total).toBe(2)
    expect(items).toEqual([
      { id: 'm-2', endpoint: 'mqtt', connected_at: '2025-01-02T00:00:00.000Z', remote: '10.0.0.2', device_id: null, transport: 'ws', device_type: null, org: null, messages: 0, last_error: null },
      { id: 'm-1', endpoint: 'mqtt', connected_at: '2025-01-01T00:00:00.000Z', remote: '10.0.0.1', device_id: 'dev-1', transport: 'tcp', device_type: null, org: null, messages: 0, last_error: null },
    ])
    // A device is no user: a user filter leaves MQTT sessions out.
    expect(listSessions(sources, { user: 'dev-1' }, { limit: 50, offset: 0 }).total).toBe(0)
    findSession(sources, 'm-1')?.disconnect()
    expect(ended).toEqual(['m-1'])
    expect(findSession(sources, 'nope')).toBeUndefined()
    expect(listSessions([mqttSource(() => undefined)], {}, { limit: 50, offset: 0 })).toEqual({ items: [], total: 0 })
  })
})

// Until the broker lists its connections (the change proposed to src/devices/), there are
// none to show; from then on this runs by itself.
const brokerListsSessions = 'listSessions' in EmbeddedBroker.prototype

describe.runIf(brokerListsSessions)('MQTT sessions of the embedded broker', () => {
  let t: TestApp
  let api: ApiClient
  let admin: string
  const clients = new MqttClients()

  beforeAll(async () => {
    // The admin of the first gateway: the gateways of this file share one database.
    t = await startTestApp({ ...ENV, MQTT_ENABLED: 'true' })
    api = new ApiClient(t.url)
    admin = (await login(api, 'admin', ADMIN_PASSWORD)).token
  })
  afterAll(async () => {
    await clients.closeAll()
    await t?.close()
  })

  it('lists a connected device and disconnects it (MQTT 5: DISCONNECT 0x98), audited', async () => {
    const device = await provisionDevice(api, admin)
    const before = Date.now()
    const c = clients.track(await connectDevice(t, device, { protocolVersion: 5 }))
    const listed = await waitFor(
      async () => ((await api.get(`${SESSIONS}?endpoint=mqtt`, { token: admin })).json.data as Array<Record<string, any>>).filter((s) => s.device_id === device.id),
      (items) => items.length === 1,
      'the device session',
    )
    const s = listed[0] as Record<string, any>
    expect(Object.keys(s).sort()).toEqual(['connected_at', 'device_id', 'device_type', 'endpoint', 'id', 'last_error', 'messages', 'org', 'remote', 'transport'])
    expect(s).toMatchObject({ endpoint: 'mqtt', transport: 'tcp', remote: '127.0.0.1', device_type: device.type, org: null, messages: 0, last_error: null })
    expect(Date.parse(s.connected_at)).toBeGreaterThanOrEqual(before - 1000)

    // One publish taken, one refused by the ACL (MQTT 5: PUBACK 0x87, the connection stays).
    await c.publishAsync(`raw.${device.id}`, 'm v=1', { qos: 1 })
    await c.publishAsync('raw.someone-else', 'm v=1', { qos: 1 }).catch(() => {})
    const counted = await waitFor(
      async () => ((await api.get(`${SESSIONS}?endpoint=mqtt`, { token: admin })).json.data as Array<Record<string, any>>).find((x) => x.id === s.id),
      (x) => x?.messages === 2 && x?.last_error !== null,
      'both publishes counted, the refusal as its last error',
    )
    expect(counted?.last_error).toBe('not authorized to publish to raw.someone-else')
    // A wrong password is one of the dashboard's errors, under the device's MQTT user name.
    await expect(connectDevice(t, { ...device, mqtt_password: 'wrong' }, { protocolVersion: 5 })).rejects.toThrow()
    const refused = await waitFor(
      async () => ((await api.get('/api/v1/admin/stats', { token: admin })).json.errors as Array<Record<string, any>>).filter((e) => e.endpoint === 'mqtt'),
      (errors) => errors.length > 0,
      'the refused CONNECT in the errors',
    )
    expect(refused[0]).toMatchObject({ kind: 'auth_failure', user: device.mqtt_user, remote: '127.0.0.1', reason: 'CONNECT refused: bad user name or password' })

    const reason = new Promise<number | undefined>((resolve) => c.once('disconnect', (packet) => resolve(packet.reasonCode)))
    const res = await api.delete(`${SESSIONS}/${s.id}`, { token: admin })
    expect(res.status, res.text).toBe(204)
    expect(await reason).toBe(0x98)
    await waitFor(
      async () => ((await api.get(`${SESSIONS}?endpoint=mqtt`, { token: admin })).json.data as Array<Record<string, any>>).length,
      (n) => n === 0,
      'the session to go',
    )
    const audit = await api.get('/api/v1/audit?page_size=500', { token: admin })
    const entry = (audit.json.data as Array<Record<string, any>>).find((e) => e.target === `session:${s.id}`)
    expect(entry).toMatchObject({ action: 'session.disconnect', details: { endpoint: 'mqtt', device_id: device.id } })
  })
})
