import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { registerCollector } from '../helpers/collectors.js'

const ADMIN_PASSWORD = 'admin-password-for-tests'

/** A registered collector: its id and token. */
async function newCollector(_t: TestApp, api: ApiClient, adminToken: string, hostname: string): Promise<{ id: string; token: string }> {
  const c = await registerCollector(api, { token: adminToken, hostname })
  return { id: c.collector_id, token: c.token }
}

describe('/api/v1/config/{collector_id}: versioned collector config', () => {
  let t: TestApp
  let api: ApiClient
  const tokens = { admin: '', operator: '', viewer: '' }
  let a = { id: '', token: '' }
  let b = { id: '', token: '' }

  const login = async (username: string, password: string) => {
    const res = await api.post('/api/v1/auth/login', { body: { username, password } })
    expect(res.status, res.text).toBe(200)
    return res.json.token as string
  }
  const put = (id: string, body: unknown, token = tokens.operator) => api.call('PUT', `/api/v1/config/${id}`, { token, body })

  beforeAll(async () => {
    t = await startTestApp({ ...FAST_PASSWORD_HASHING, ADMIN_PASSWORD, MQTT_ENABLED: 'false' })
    api = new ApiClient(t.url)
    tokens.admin = await login('admin', ADMIN_PASSWORD)
    for (const role of ['operator', 'viewer'] as const) {
      const res = await api.post('/api/v1/users', {
        token: tokens.admin,
        body: { username: `cfg-${role}`, password: 'correct horse', email: `${role}@example.com`, role },
      })
      expect(res.status, res.text).toBe(201)
      tokens[role] = await login(`cfg-${role}`, 'correct horse')
    }
    a = await newCollector(t, api, tokens.admin, 'cfg-a')
    b = await newCollector(t, api, tokens.admin, 'cfg-b')
  })
  afterAll(async () => {
    await t?.close()
  })

  it('starts at version 1 and answers 304 to a matching If-None-Match, with ETag and no-cache', async () => {
    const res = await api.get(`/api/v1/config/${a.id}`, { token: a.token })
    expect(res.status, res.text).toBe(200)
    expect(res.json).toEqual({ collector_id: a.id, version: 1, config: expect.any(Object) })
    expect(res.headers.get('etag')).toBe(`"${a.id}-v1"`)
    expect(res.headers.get('cache-control')).toBe('no-cache')
    const again = await api.get(`/api/v1/config/${a.id}`, { token: a.token, headers: { 'if-none-match': `"${a.id}-v1"` } })
    expect(again.status).toBe(304)
    expect(again.text).toBe('')
  })

  it('stores version + 1 on PUT, answers it, audits it, and the old ETag no longer matches', async () => {
    const res = await put(a.id, { config: { interval_s: 30, databases: ['app'] } })
    expect(res.status, res.text).toBe(200)
    expect(res.json).toEqual({ collector_id: a.id, version: 2, config: { interval_s: 30, databases: ['app'] } })
    const read = await api.get(`/api/v1/config/${a.id}`, { token: a.token, headers: { 'if-none-match': `"${a.id}-v1"` } })
    expect(read.status).toBe(200)
    expect(read.json.version).toBe(2)
    expect(read.headers.get('etag')).toBe(`"${a.id}-v2"`)
    const byViewer = await api.get(`/api/v1/config/${a.id}`, { token: tokens.viewer })
    expect(byViewer.json.config).toEqual({ interval_s: 30, databases: ['app'] })
    const audit = await api.get('/api/v1/audit?page_size=500', { token: tokens.admin })
    const entries = (audit.json.data as Array<Record<string, any>>).filter((e) => e.action === 'collector.config' && e.target === `collector:${a.id}`)
    expect(entries.map((e) => e.details)).toEqual([{ version: 2 }])
  })

  it('gives concurrent PUTs distinct versions', async () => {
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => put(b.id, { config: { n: i } })))
    expect(answers.map((r) => r.status)).toEqual(Array(8).fill(200))
    expect(answers.map((r) => r.json.version).sort((x, y) => x - y)).toEqual([2, 3, 4, 5, 6, 7, 8, 9])
  })

  it('lists every version newest first, paginated', async () => {
    const res = await api.get(`/api/v1/config/${b.id}/versions?page=1&page_size=3`, { token: tokens.viewer })
    expect(res.status, res.text).toBe(200)
    expect(res.json).toMatchObject({ page: 1, page_size: 3, total: 9 })
    expect(res.json.data.map((v: { version: number }) => v.version)).toEqual([9, 8, 7])
    expect(res.json.data[0]).toEqual({ version: 9, config: expect.any(Object), created_by: expect.stringMatching(/^user:/), created_at: expect.any(String) })
    const last = await api.get(`/api/v1/config/${b.id}/versions?page=3&page_size=4`, { token: tokens.viewer })
    expect(last.json.data.map((v: { version: number }) => v.version)).toEqual([1])
  })

  it('refuses a PUT by a viewer or a collector, a body that is no object, and another collector reading', async () => {
    expect((await put(a.id, { config: { x: 1 } }, tokens.viewer)).status).toBe(403)
    expect((await put(a.id, { config: { x: 1 } }, a.token)).status).toBe(401)
    expect((await put(a.id, { config: [1, 2] })).status).toBe(400)
    expect((await put(a.id, { config: 'x' })).status).toBe(400)
    expect((await api.get(`/api/v1/config/${a.id}`, { token: b.token })).status).toBe(403)
    expect((await api.get(`/api/v1/config/${a.id}/versions`, { token: a.token })).status).toBe(401)
    expect((await api.get(`/api/v1/config/${a.id}`)).status).toBe(401)
    expect((await api.get(`/api/v1/config/${a.id}`, { token: a.token })).json.version).toBe(2)
  })

  it('answers 404 for an unknown or malformed collector id', async () => {
    const unknown = randomUUID()
    expect((await api.get(`/api/v1/config/${unknown}`, { token: tokens.viewer })).status).toBe(404)
    expect((await api.get('/api/v1/config/not-a-uuid', { token: tokens.viewer })).status).toBe(404)
    expect((await put(unknown, { config: {} })).status).toBe(404)
    expect((await api.get(`/api/v1/config/${unknown}/versions`, { token: tokens.viewer })).status).toBe(404)
  })

  it('answers 404 for a deleted collector', async () => {
    const gone = await newCollector(t, api, tokens.admin, 'cfg-gone')
    await t.app.db.query('UPDATE collectors SET deleted_at = now() WHERE id = $1', [gone.id])
    expect((await api.get(`/api/v1/config/${gone.id}`, { token: tokens.viewer })).status).toBe(404)
    expect((await put(gone.id, { config: {} })).status).toBe(404)
  })
})
