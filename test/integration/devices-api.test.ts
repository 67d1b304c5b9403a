import { createHash } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { BusSubscription } from '../../src/bus/bus.js'
import { createPostgresDb } from '../../src/db/postgres.js'
import { DEVICE_REVOKED_SUBJECT, type DeviceRevokedEvent } from '../../src/devices/types.js'
import { ApiClient, FAST_PASSWORD_HASHING, type ApiAnswer } from '../helpers/api.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { engines, postgresEngine, type TestDb } from '../helpers/db.js'
import { waitFor, waitUntil } from '../helpers/wait.js'

const ADMIN_PASSWORD = 'admin-password-for-tests'
// The broker is another part's; provisioning needs none of it.
const ENV = { ...FAST_PASSWORD_HASHING, ADMIN_PASSWORD, MQTT_ENABLED: 'false' }
const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000'

interface Created {
  id: string
  type: string
  mqtt_user: string
  mqtt_password: string
  created_at: string
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex')
const pw = (s: string) => Buffer.from(s)

async function login(api: ApiClient, username: string, password: string): Promise<string> {
  const res = await api.post('/api/v1/auth/login', { body: { username, password } })
  expect(res.status, res.text).toBe(200)
  return res.json.token
}

describe.each(await engines())('/devices on $name', (engine) => {
  let testDb: TestDb
  let t: TestApp
  let api: ApiClient
  const tokens = { admin: '', operator: '', viewer: '', apiWithScope: '', apiWithout: '', viewerApiWithScope: '' }
  const issued: string[] = []
  const gets: string[] = []

  const create = async (type: string, token = tokens.admin): Promise<Created> => {
    const res = await api.post('/devices', { token, body: { type } })
    expect(res.status, res.text).toBe(200)
    issued.push(res.json.mqtt_password)
    return res.json
  }
  const get = async (path: string, token = tokens.admin): Promise<ApiAnswer> => {
    const res = await api.get(path, { token })
    gets.push(res.text)
    return res
  }
  const deviceRows = async () =>
    (await testDb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM devices'))[0]?.n ?? 0
  const auditOf = async (id: string) => {
    const res = await api.get('/api/v1/audit?page_size=500', { token: tokens.admin })
    expect(res.status).toBe(200)
    return (res.json.data as Array<Record<string, any>>).filter((e) => e.target === `device:${id}`)
  }
  const newApiToken = async (scopes: string[], userId?: string) => {
    const res = await api.post('/api/v1/tokens', {
      token: tokens.admin,
      body: { name: scopes.join('+'), scopes, ...(userId ? { user_id: userId } : {}) },
    })
    expect(res.status, res.text).toBe(201)
    return res.json.token as string
  }

  beforeAll(async () => {
    testDb = await engine.create()
    t = await startTestApp(ENV, { testDb })
    api = new ApiClient(t.url)
    tokens.admin = await login(api, 'admin', ADMIN_PASSWORD)
    const users: Record<string, string> = {}
    for (const role of ['operator', 'viewer'] as const) {
      const res = await api.post('/api/v1/users', {
        token: tokens.admin,
        body: { username: `dev-${role}`, password: 'correct horse', email: `${role}@example.com`, role },
      })
      expect(res.status, res.text).toBe(201)
      users[role] = res.json.id
      tokens[role] = await login(api, `dev-${role}`, 'correct horse')
    }
    tokens.apiWithScope = await newApiToken(['devices:write'])
    tokens.apiWithout = await newApiToken(['ingest:write', 'channels:publish'])
    tokens.viewerApiWithScope = await newApiToken(['devices:write'], users.viewer)
  })
  afterAll(async () => {
    await t?.close()
    await testDb?.drop()
  })

  describe('who may call', () => {
    it('refuses every route without a token (401)', async () => {
      const d = await create('guarded')
      for (const [method, path] of [
        ['POST', '/devices'],
        ['GET', '/devices'],
        ['GET', `/devices/${d.id}`],
        ['DELETE', `/devices/${d.id}`],
        ['POST', `/devices/${d.id}/credentials`],
      ] as const) {
        const res = await api.call(method, path, method === 'POST' && path === '/devices' ? { body: { type: 'x' } } : {})
        expect(res.status, `${method} ${path}`).toBe(401)
        expect(Object.keys(res.json).sort()).toEqual(['error', 'message'])
      }
      expect((await get(`/devices/${d.id}`)).status).toBe(200)
    })

    it('lets a viewer read but not change (403), an operator change', async () => {
      const d = await create('viewed')
      const before = await deviceRows()
      const refused = await api.post('/devices', { token: tokens.viewer, body: { type: 'x' } })
      expect(refused.status).toBe(403)
      expect(Object.keys(refused.json).sort()).toEqual(['error', 'message'])
      expect((await api.delete(`/devices/${d.id}`, { token: tokens.viewer })).status).toBe(403)
      expect((await api.post(`/devices/${d.id}/credentials`, { token: tokens.viewer })).status).toBe(403)
      expect((await get('/devices', tokens.viewer)).status).toBe(200)
      expect((await get(`/devices/${d.id}`, tokens.viewer)).status).toBe(200)
      expect(await deviceRows()).toBe(before)

      const byOperator = await create('by-operator', tokens.operator)
      expect((await api.post(`/devices/${byOperator.id}/credentials`, { token: tokens.operator })).status).toBe(200)
      expect((await api.delete(`/devices/${byOperator.id}`, { token: tokens.operator })).status).toBe(204)
    })

    it('takes an API token with devices:write, refuses one without it (403)', async () => {
      const before = await deviceRows()
      const refused = await api.post('/devices', { token: tokens.apiWithout, body: { type: 'x' } })
      expect(refused.status).toBe(403)
      expect(refused.json.error).toBe('insufficient_scope')
      expect((await api.get('/devices', { token: tokens.apiWithout })).status).toBe(403)
      // The scope does not lift its owner's role: a viewer's token still cannot change devices.
      expect((await api.post('/devices', { token: tokens.viewerApiWithScope, body: { type: 'x' } })).status).toBe(403)
      expect(await deviceRows()).toBe(before)

      const made = await create('by-api-token', tokens.apiWithScope)
      expect((await get(`/devices/${made.id}`, tokens.apiWithScope)).status).toBe(200)
      expect((await get('/devices', tokens.apiWithScope)).status).toBe(200)
      expect((await api.post(`/devices/${made.id}/credentials`, { token: tokens.apiWithScope })).status).toBe(200)
      expect((await api.delete(`/devices/${made.id}`, { token: tokens.apiWithScope })).status).toBe(204)
      const actions = (await auditOf(made.id)).map((e) => [e.action, e.actor.split(':')[0]])
      expect(actions.sort()).toEqual([
        ['device.create', 'api_token'],
        ['device.delete', 'api_token'],
        ['device.rotate', 'api_token'],
      ])
    })
  })

  describe('the life of a device', () => {
    let events: DeviceRevokedEvent[]
    let sub: BusSubscription | undefined
    beforeAll(() => {
      events = []
      sub = t.app.bus.subscribe(DEVICE_REVOKED_SUBJECT, (msg) => events.push(JSON.parse(Buffer.from(msg.data).toString())))
    })
    afterAll(() => sub?.unsubscribe())

    it('creates, gets, lists, rotates and deletes; revocations go out on the bus; audit rows', async () => {
      const d = await create('test-device')
      expect(Object.keys(d).sort()).toEqual(['created_at', 'id', 'mqtt_password', 'mqtt_user', 'type'])
      expect(d.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      expect(d.mqtt_user).toBe(d.id)
      expect(d.type).toBe('test-device')
      expect(d.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
      expect(d.mqtt_password).toMatch(/^[A-Za-z0-9_-]{43}$/)

      const one = await get(`/devices/${d.id}`)
      expect(one.status).toBe(200)
      expect(one.json).toEqual({ id: d.id, type: 'test-device', mqtt_user: d.id, created_at: d.created_at, connected: false })
      const list = await get('/devices?page_size=500')
      expect(list.json.data).toContainEqual(one.json)

      const rotated = await api.post(`/devices/${d.id}/credentials`, { token: tokens.admin })
      expect(rotated.status, rotated.text).toBe(200)
      expect(Object.keys(rotated.json).sort()).toEqual(['id', 'mqtt_password', 'mqtt_user'])
      expect(rotated.json).toMatchObject({ id: d.id, mqtt_user: d.id })
      expect(rotated.json.mqtt_password).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(rotated.json.mqtt_password).not.toBe(d.mqtt_password)
      issued.push(rotated.json.mqtt_password)
      await waitUntil(() => events.some((e) => e.id === d.id), 10_000, 'the rotation on the bus')
      expect(events.filter((e) => e.id === d.id)).toEqual([{ id: d.id, reason: 'rotated', generation: 2 }])

      const deleted = await api.delete(`/devices/${d.id}`, { token: tokens.admin })
      expect(deleted.status).toBe(204)
      expect(deleted.text).toBe('')
      await waitUntil(() => events.filter((e) => e.id === d.id).length === 2, 10_000, 'the deletion on the bus')
      expect(events.filter((e) => e.id === d.id)[1]).toEqual({ id: d.id, reason: 'deleted' })

      expect((await get(`/devices/${d.id}`)).status).toBe(404)
      expect((await get('/devices?page_size=500')).json.data.map((x: { id: string }) => x.id)).not.toContain(d.id)

      const audit = await auditOf(d.id)
      expect(audit.map((e) => e.action).sort()).toEqual(['device.create', 'device.delete', 'device.rotate'])
      for (const e of audit) {
        expect(e).toMatchObject({ outcome: 'success', target: `device:${d.id}`, details: { type: 'test-device' } })
        expect(e.actor).toMatch(/^user:/)
        expect(e.ip).toEqual(expect.any(String))
      }
    })

    it('answers 404 for an unknown or deleted id, and announces nothing', async () => {
      const d = await create('short-lived')
      expect((await api.delete(`/devices/${d.id}`, { token: tokens.admin })).status).toBe(204)
      await waitUntil(() => events.some((e) => e.id === d.id), 10_000, 'the deletion on the bus')
      const auditBefore = (await auditOf(d.id)).length
      for (const id of [d.id, UNKNOWN_ID, 'not-a-uuid', d.id.toUpperCase()]) {
        for (const res of [
          await get(`/devices/${id}`),
          await api.delete(`/devices/${id}`, { token: tokens.admin }),
          await api.post(`/devices/${id}/credentials`, { token: tokens.admin }),
        ]) {
          expect(res.status, `${id}: ${res.text}`).toBe(404)
          expect(res.json).toEqual({ error: 'not_found', message: 'no such device' })
        }
      }
      expect((await auditOf(d.id)).length).toBe(auditBefore)
      // A marker after the refusals: had any of them announced, it would be here before it.
      t.app.bus.publish(DEVICE_REVOKED_SUBJECT, Buffer.from(JSON.stringify({ id: 'marker', reason: 'deleted' })))
      await waitUntil(() => events.some((e) => e.id === 'marker'), 10_000, 'the marker')
      expect(events.filter((e) => e.id === d.id)).toHaveLength(1)
      expect(events.filter((e) => e.id === UNKNOWN_ID)).toHaveLength(0)
    })
  })

  it('authenticates CONNECT credentials: right, wrong, rotated, deleted, unknown', async () => {
    const devices = t.app.devices
    const d = await create('sensor')
    const ok = await devices.authenticate(d.mqtt_user, pw(d.mqtt_password))
    expect(ok).toEqual({ ok: true, device: { id: d.id, type: 'sensor', createdAt: new Date(d.created_at), generation: 1 } })
    expect(await devices.authenticate(d.mqtt_user, pw('wrong'))).toEqual({ ok: false, reason: 'bad_password' })
    expect(await devices.authenticate(d.mqtt_user, undefined)).toEqual({ ok: false, reason: 'unknown' })
    expect(await devices.generations([d.id, UNKNOWN_ID, 'junk'])).toEqual(new Map([[d.id, 1]]))

    const rotated = (await api.post(`/devices/${d.id}/credentials`, { token: tokens.admin })).json
    issued.push(rotated.mqtt_password)
    expect(await devices.authenticate(d.mqtt_user, pw(d.mqtt_password))).toEqual({ ok: false, reason: 'bad_password' })
    const again = await devices.authenticate(d.mqtt_user, pw(rotated.mqtt_password))
    expect(again.ok && again.device.generation).toBe(2)
    expect(await devices.generations([d.id])).toEqual(new Map([[d.id, 2]]))

    expect((await api.delete(`/devices/${d.id}`, { token: tokens.admin })).status).toBe(204)
    expect(await devices.authenticate(d.mqtt_user, pw(rotated.mqtt_password))).toEqual({ ok: false, reason: 'deleted' })
    expect(await devices.generations([d.id])).toEqual(new Map())

    expect(await devices.authenticate(UNKNOWN_ID, pw(rotated.mqtt_password))).toEqual({ ok: false, reason: 'unknown' })
    expect(await devices.authenticate('admin', pw(ADMIN_PASSWORD))).toEqual({ ok: false, reason: 'unknown' })
  })

  it('paginates like the audit log: newest first', async () => {
    const first = await create('page-a')
    const second = await create('page-b')
    const p1 = await get('/devices?page=1&page_size=1')
    expect(p1.status).toBe(200)
    expect(Object.keys(p1.json).sort()).toEqual(['data', 'page', 'page_size', 'total'])
    expect(p1.json).toMatchObject({ page: 1, page_size: 1 })
    expect(p1.json.data.map((x: { id: string }) => x.id)).toEqual([second.id])
    const p2 = await get('/devices?page=2&page_size=1')
    expect(p2.json).toMatchObject({ page: 2, page_size: 1, total: p1.json.total })
    expect(p2.json.data.map((x: { id: string }) => x.id)).toEqual([first.id])
    expect(Object.keys(p2.json.data[0]).sort()).toEqual(['connected', 'created_at', 'id', 'mqtt_user', 'type'])
    const live = (await testDb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM devices WHERE deleted_at IS NULL'))[0]?.n
    expect(p1.json.total).toBe(live)
    const beyond = await get(`/devices?page=${live! + 1}&page_size=1`)
    expect(beyond.json.data).toEqual([])
    for (const q of ['page=0', 'page_size=0', 'page_size=501', 'page=x']) {
      const bad = await get(`/devices?${q}`)
      expect(bad.status, q).toBe(400)
      expect(Object.keys(bad.json).sort()).toEqual(['error', 'message'])
    }
  })

  it('validates type (1-64 printable characters) and bad JSON: 400, nothing stored', async () => {
    const before = { devices: await deviceRows(), audit: (await api.get('/api/v1/audit', { token: tokens.admin })).json.total }
    const post = (body: string, contentType = 'application/json') =>
      fetch(`${t.url}/devices`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tokens.admin}`, 'content-type': contentType },
        body,
      })
    const bodies = [
      '{}',
      '{"type":""}',
      JSON.stringify({ type: 'x'.repeat(65) }),
      JSON.stringify({ type: 'a\u0007b' }),
      JSON.stringify({ type: 'line\nbreak' }),
      JSON.stringify({ type: 'del\u007f' }),
      JSON.stringify({ type: 'nul\u0000' }),
      JSON.stringify({ type: 'bidi\u202e' }),
      JSON.stringify({ type: 7 }),
      JSON.stringify({ type: null }),
      '{"type":',
      'not json',
      '[{"type":"x"}]',
      '"x"',
      'null',
      '',
    ]
    for (const body of bodies) {
      const res = await post(body)
      const json = (await res.json()) as Record<string, unknown>
      expect(res.status, body).toBe(400)
      expect(Object.keys(json).sort(), body).toEqual(['error', 'message'])
    }
    const noBody = await fetch(`${t.url}/devices`, { method: 'POST', headers: { authorization: `Bearer ${tokens.admin}` } })
    expect(noBody.status).toBe(400)
    const message = (await (await post('{"type":""}')).json()) as { message: string }
    expect(message.message).toMatch(/type/)
    expect(await deviceRows()).toBe(before.devices)
    expect((await api.get('/api/v1/audit', { token: tokens.admin })).json.total).toBe(before.audit)

    // The limits themselves pass: 64 characters, counted as characters, not UTF-16 units.
    expect((await create('x'.repeat(64))).type).toBe('x'.repeat(64))
    expect((await create('🌡'.repeat(64))).type).toBe('🌡'.repeat(64))
    expect((await create('Température sensor #2 (hall)')).type).toBe('Température sensor #2 (hall)')
    expect((await post(JSON.stringify({ type: '🌡'.repeat(65) }))).status).toBe(400)
  })

  // Last in the file: it looks at every answer and every password the tests above got.
  it('never shows a password in a GET answer, and stores only its hash', async () => {
    const d = await create('secretive')
    await get(`/devices/${d.id}`)
    await get('/devices?page_size=500')
    expect(issued.length).toBeGreaterThan(5)
    expect(gets.length).toBeGreaterThan(5)
    for (const text of gets) {
      expect(text).not.toMatch(/password|hash/i)
      for (const secret of issued) expect(text.includes(secret)).toBe(false)
    }
    const [row] = await testDb.db.query<Record<string, unknown>>('SELECT * FROM devices WHERE id = $1', [d.id])
    expect(row?.password_hash).toBe(sha256(d.mqtt_password))
    const everything = JSON.stringify(
      await testDb.db.query(
        `SELECT (SELECT json_agg(d) FROM devices d) AS devices, (SELECT json_agg(a) FROM audit_log a) AS audit`,
      ),
    )
    for (const secret of issued) expect(everything.includes(secret)).toBe(false)
  })
})

// `connected` is shared through the database: what one instance records, another shows.
describe.runIf((await engines()).includes(postgresEngine))('connected across two gateway instances', () => {
  let testDb: TestDb
  let second: TestDb
  let a: TestApp
  let b: TestApp
  let api: { a: ApiClient; b: ApiClient }
  let admin: string

  beforeAll(async () => {
    testDb = await postgresEngine.create()
    // Its own pool on the same database, as another process would have.
    const db = createPostgresDb(testDb.url!, { max: 4 })
    second = { db, url: testDb.url, drop: () => db.close() }
    a = await startTestApp(ENV, { testDb })
    b = await startTestApp(ENV, { testDb: second })
    api = { a: new ApiClient(a.url), b: new ApiClient(b.url) }
    admin = await login(api.a, 'admin', ADMIN_PASSWORD)
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
    await second?.drop()
    await testDb?.drop()
  })
  const opened: Array<() => void> = []
  afterEach(() => {
    for (const close of opened.splice(0)) close()
  })

  const newDevice = async (): Promise<Created> => {
    const res = await api.a.post('/devices', { token: admin, body: { type: 'roaming' } })
    expect(res.status, res.text).toBe(200)
    return res.json
  }
  const connectedOn = async (client: ApiClient, id: string): Promise<boolean> => {
    const one = await client.get(`/devices/${id}`, { token: admin })
    const list = await client.get('/devices?page_size=500', { token: admin })
    const listed = (list.json.data as Array<{ id: string; connected: boolean }>).find((x) => x.id === id)
    if (one.json.connected !== listed?.connected) throw new Error(`GET one says ${one.json.connected}, the list ${listed?.connected}`)
    return one.json.connected
  }
  const waitConnected = (client: ApiClient, id: string, want: boolean, what: string, timeoutMs = 10_000) =>
    waitFor(() => connectedOn(client, id), (v) => v === want, what, timeoutMs)
  const instanceOf = async (sessionId: string) => {
    const rows = await waitFor(
      () => testDb.db.query<{ instance_id: string }>('SELECT instance_id FROM device_sessions WHERE session_id = $1', [sessionId]),
      (r) => r.length === 1,
      `session ${sessionId} recorded`,
    )
    return rows[0]!.instance_id
  }

  it('a session opened on one instance shows on the other, and its close too', async () => {
    const d = await newDevice()
    expect(await connectedOn(api.b, d.id)).toBe(false)
    a.app.devices.sessionOpened(d.id, 'session-1')
    opened.push(() => a.app.devices.sessionClosed(d.id, 'session-1'))
    await waitConnected(api.b, d.id, true, 'connected on the other instance')
    expect(await connectedOn(api.a, d.id)).toBe(true)
    a.app.devices.sessionClosed(d.id, 'session-1')
    await waitConnected(api.b, d.id, false, 'disconnected on the other instance')
  })

  it('keeps the latest state of a burst of opens and closes, in order', async () => {
    const d = await newDevice()
    for (let i = 0; i < 300; i++) a.app.devices.sessionOpened(d.id, `burst-${i}`)
    for (let i = 0; i < 299; i++) a.app.devices.sessionClosed(d.id, `burst-${i}`)
    // Reopened after its close: the latest state (open) is what counts.
    a.app.devices.sessionOpened(d.id, 'burst-0')
    a.app.devices.sessionClosed(d.id, 'burst-299')
    opened.push(() => a.app.devices.sessionClosed(d.id, 'burst-0'))
    await waitFor(
      () => testDb.db.query<{ session_id: string }>('SELECT session_id FROM device_sessions WHERE device_id = $1', [d.id]),
      (rows) => rows.length === 1 && rows[0]!.session_id === 'burst-0',
      'one session left',
    )
    expect(await connectedOn(api.b, d.id)).toBe(true)
  })

  it('ignores sessions of an instance whose heartbeat is old, and forgets such instances', async () => {
    const d = await newDevice()
    const ghost = '00000000-0000-4000-8000-0000000000ff'
    await testDb.db.query(`INSERT INTO gateway_instances (id, heartbeat_at) VALUES ($1, now() - interval '1 minute')`, [ghost])
    await testDb.db.query('INSERT INTO device_sessions (instance_id, session_id, device_id) VALUES ($1, $2, $3)', [ghost, 'g', d.id])
    expect(await connectedOn(api.b, d.id)).toBe(false)
    await testDb.db.query('UPDATE gateway_instances SET heartbeat_at = now() WHERE id = $1', [ghost])
    expect(await connectedOn(api.b, d.id)).toBe(true)
    // Silent for longer than instances are remembered: the next heartbeat of a live one deletes it.
    await testDb.db.query(`UPDATE gateway_instances SET heartbeat_at = now() - interval '1 day' WHERE id = $1`, [ghost])
    await waitFor(
      () => testDb.db.query('SELECT 1 FROM device_sessions WHERE instance_id = $1', [ghost]),
      (rows) => rows.length === 0,
      'the forgotten instance and its sessions deleted',
      30_000,
    )
  })

  it('rewrites its sessions when another instance forgot it', async () => {
    const d = await newDevice()
    a.app.devices.sessionOpened(d.id, 'kept')
    opened.push(() => a.app.devices.sessionClosed(d.id, 'kept'))
    const instance = await instanceOf('kept')
    // Deletes its sessions too (cascade); only the instance itself can bring them back.
    await testDb.db.query('DELETE FROM gateway_instances WHERE id = $1', [instance])
    // The next heartbeat recreates the instance and writes its sessions again.
    await waitConnected(api.b, d.id, true, 'the session written again', 30_000)
  })

  it('removes its sessions when it closes', async () => {
    const d = await newDevice()
    const c = await startTestApp(ENV, { testDb: second })
    let closed = false
    try {
      c.app.devices.sessionOpened(d.id, 'on-c')
      const instance = await instanceOf('on-c')
      await waitConnected(api.b, d.id, true, 'connected through the third instance')
      closed = true
      await c.close()
      expect(await connectedOn(api.b, d.id)).toBe(false)
      expect(await testDb.db.query('SELECT 1 FROM gateway_instances WHERE id = $1', [instance])).toEqual([])
    } finally {
      if (!closed) await c.close()
    }
  })
})
