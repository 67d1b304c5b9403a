/**
 * The pgAnalytics backend's phase-2 notes (../shared/seeds/001_182cfdc5ef4cc8a1.txt): its
 * flows (login, refresh, collector registration, the authenticated list), its metrics
 * push, its token structures and the routes it planned, run with curl against the gateway.
 * The notes give bodies as `{field, field}`; values are the test's. Where the notes and
 * docs/API.md section 7 differ, API.md wins, and each difference is named here.
 */
import { decodeJwt } from 'jose'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { COLLECTOR_TEST_ENV, TEST_REGISTRATION_SECRET } from '../helpers/collectors.js'
import { RecordingSink } from '../helpers/recording-sink.js'
import { braceKeys, codeBlocks, curl, readSeed, requireBinary, section, type CurlAnswer } from './seed-examples.js'

const ADMIN_PASSWORD = 'admin-password-for-pganalytics-compat'
const seed = readSeed('001_182cfdc5ef4cc8a1.txt')
const hasCurl = seed !== undefined && (await requireBinary('curl', 'curl'))

interface Flow {
  method: string
  path: string
  /** Body fields, as `{a, b}` in the notes. */
  fields: string[]
  /** `Header: …` lines. */
  headers: string[]
  /** Response fields. */
  response: string[]
}

/** The ``` block right after `**<label>**` in the notes, read as a flow. */
function flow(text: string, label: string): Flow {
  const at = text.indexOf(`**${label}**`)
  if (at === -1) throw new Error(`no flow "${label}" in the seed`)
  const block = codeBlocks(text.slice(at))[0]?.code as string
  const request = /→ (GET|POST|PUT|DELETE) (\S+)(?: (\{[^}]*\}))?/.exec(block)
  if (request === null) throw new Error(`flow "${label}" has no request line`)
  const response = /Response: (\{[^}]*\})/.exec(block)?.[1]
  return {
    method: request[1] as string,
    path: request[2] as string,
    fields: request[3] === undefined ? [] : braceKeys(request[3]),
    headers: [...block.matchAll(/Header: (.+)/g)].map((m) => (m[1] as string).trim()),
    response: response === undefined ? [] : braceKeys(response),
  }
}

/** A token structure of the notes: its JSON and the lifetime its heading gives, in seconds. */
function tokenStructure(text: string, label: string): { claims: Record<string, unknown>; ttlS: number } {
  const m = new RegExp(`\\*\\*${label} \\((\\d+) (min|hours)\\):\\*\\*`).exec(text)
  if (m === null) throw new Error(`no token structure "${label}" in the seed`)
  const claims = JSON.parse(codeBlocks(text.slice(m.index))[0]?.code as string) as Record<string, unknown>
  return { claims, ttlS: Number(m[1]) * (m[2] === 'min' ? 60 : 3600) }
}

/**
 * Where the gateway's tokens differ from the notes' structures, with docs/API.md section 3
 * deciding: no `nbf` (never needed: tokens are valid from `iat`); ids are UUID strings, not
 * numbers; a collector token's `type` is `collector`, so no access token can pass for one.
 */
const CLAIMS_NOT_MADE = ['nbf']
const TYPE_OF = { 'User Access Token': 'access', 'User Refresh Token': 'refresh', 'Collector Token': 'collector' } as const

describe.skipIf(!hasCurl)('pgAnalytics backend examples', () => {
  const text = seed as string
  const flows = section(text, '### Authentication Flow')
  const login = flow(flows, 'User Login:')
  const refresh = flow(flows, 'Token Refresh:')
  const register = flow(flows, 'Collector Registration:')
  const authenticated = flow(flows, 'API Requests (Authenticated):')

  let t: TestApp
  let sink: RecordingSink

  /** curl as a user types it: `-X`, the URL, `-H` per header, the body with `-d`. */
  const call = (method: string, path: string, opts: { headers?: string[]; body?: unknown } = {}): Promise<CurlAnswer> =>
    curl([
      'curl',
      '-X',
      method,
      `${t.url}${path}`,
      ...(opts.headers ?? []).flatMap((h) => ['-H', h]),
      ...(opts.body !== undefined ? ['-d', JSON.stringify(opts.body)] : []),
    ])

  /** A body of the notes' fields, each given a value by the test. */
  const bodyOf = (fields: string[], values: Record<string, unknown>) =>
    Object.fromEntries(
      fields.map((f) => {
        if (!(f in values)) throw new Error(`no value for the field ${f}`)
        return [f, values[f]]
      }),
    )

  const doLogin = async (): Promise<CurlAnswer> => {
    expect(login).toMatchObject({ method: 'POST', path: '/api/v1/auth/login', fields: ['username', 'password'] })
    const res = await call(login.method, login.path, { body: bodyOf(login.fields, { username: 'admin', password: ADMIN_PASSWORD }) })
    expect(res.status, res.body).toBe(200)
    return res
  }

  // Registration needs a secret or an operator's token now: X-Registration-Secret is added.
  const doRegister = async (hostname = 'db-server-01'): Promise<CurlAnswer> => {
    expect(register).toMatchObject({ method: 'POST', path: '/api/v1/collectors/register', fields: ['name', 'hostname'] })
    const res = await call(register.method, register.path, {
      headers: [`X-Registration-Secret: ${TEST_REGISTRATION_SECRET}`],
      body: bodyOf(register.fields, { name: `pgAnalytics collector on ${hostname}`, hostname }),
    })
    expect(res.status, res.body).toBe(201)
    return res
  }

  beforeAll(async () => {
    sink = new RecordingSink()
    t = await startTestApp({ ...FAST_PASSWORD_HASHING, ...COLLECTOR_TEST_ENV, ADMIN_PASSWORD, MQTT_ENABLED: 'false' }, { sink })
  })
  afterAll(async () => {
    await t?.close()
  })
  beforeEach(() => {
    sink.writes.length = 0
  })

  it('User Login: POST /api/v1/auth/login {username, password} answers {token, refresh_token, expires_at, user}', async () => {
    const res = await doLogin()
    expect(Object.keys(res.json).sort()).toEqual([...login.response].sort())
    expect(Object.keys(res.json.user).sort()).toEqual(['email', 'id', 'role', 'username'])
    expect(res.json.user).toMatchObject({ username: 'admin', role: 'admin' })

    const wrong = await call(login.method, login.path, { body: bodyOf(login.fields, { username: 'admin', password: 'not-the-password' }) })
    expect(wrong.status, wrong.body).toBe(401)
    expect(wrong.json.error).toBe('invalid_credentials')
  })

  it('Token Refresh: POST /api/v1/auth/refresh {refresh_token} answers the same shape with new tokens', async () => {
    const first = await doLogin()
    expect(refresh).toMatchObject({ method: 'POST', path: '/api/v1/auth/refresh', fields: ['refresh_token'] })
    const res = await call(refresh.method, refresh.path, { body: bodyOf(refresh.fields, { refresh_token: first.json.refresh_token }) })
    expect(res.status, res.body).toBe(200)
    expect(Object.keys(res.json).sort()).toEqual([...refresh.response].sort())
    expect(res.json.refresh_token).not.toBe(first.json.refresh_token)
    expect(res.json.user.id).toBe(first.json.user.id)
  })

  it('Collector Registration: POST /api/v1/collectors/register {name, hostname} answers {collector_id, token, certificate, private_key, expires_at}', async () => {
    const res = await doRegister()
    expect(Object.keys(res.json).sort()).toEqual([...register.response].sort())
    expect(res.json.certificate).toMatch(/^-----BEGIN CERTIFICATE-----/)
    expect(res.json.private_key).toMatch(/^-----BEGIN PRIVATE KEY-----/)

    // Without the secret (or an operator's token) the gateway refuses: the original let anyone register.
    const anonymous = await call(register.method, register.path, { body: { name: 'x', hostname: 'db-server-02' } })
    expect(anonymous.status, anonymous.body).toBe(401)
  })

  it('API Requests (Authenticated): GET /api/v1/collectors with Authorization: Bearer {jwt_token}, paginated', async () => {
    const registered = await doRegister('db-server-list')
    const { token } = (await doLogin()).json
    expect(authenticated).toMatchObject({ method: 'GET', path: '/api/v1/collectors', headers: ['Authorization: Bearer {jwt_token}'] })
    const headers = authenticated.headers.map((h) => h.replace('{jwt_token}', token))
    const res = await call(authenticated.method, authenticated.path, { headers })
    expect(res.status, res.body).toBe(200)
    expect(Object.keys(res.json).sort()).toEqual(['data', 'page', 'page_size', 'total'])
    expect(res.json.data.map((c: { collector_id: string }) => c.collector_id)).toContain(registered.json.collector_id)

    // "Pagination parameter handling"
    const page = await call('GET', `${authenticated.path}?page=1&page_size=1`, { headers })
    expect(page.status, page.body).toBe(200)
    expect(page.json).toMatchObject({ page: 1, page_size: 1 })
    expect(page.json.data).toHaveLength(1)

    const none = await call(authenticated.method, authenticated.path)
    expect(none.status).toBe(401)
  })

  it('POST /api/v1/metrics/push with a collector token: metrics received, collector id checked, the body as docs/API.md section 7 has it', async () => {
    const handlers = section(text, '### 11. ')
    expect(handlers).toContain('**POST /api/v1/metrics/push**')
    expect(handlers).toContain('Collector ID validation')
    const c = (await doRegister('db-server-push')).json
    // The notes name the DTO (MetricsPushRequest) without its fields: the body is API.md's.
    const body = {
      collector_id: c.collector_id,
      hostname: 'db-server-push',
      timestamp: '2026-12-02T08:00:00Z',
      metrics: [{ name: 'pg_stat_database', tags: { datname: 'app' }, fields: { xact_commit: 42, numbackends: 3 } }],
    }
    const res = await call('POST', '/api/v1/metrics/push', { headers: [`Authorization: Bearer ${c.token}`], body })
    expect(res.status, res.body).toBe(200)
    expect(res.json).toMatchObject({ status: 'accepted', metrics_inserted: 1 })
    expect(typeof res.json.processing_time_ms).toBe('number')
    expect(sink.lines).toEqual([
      `pg_stat_database,datname=app,collector_id=${c.collector_id},hostname=db-server-push xact_commit=42,numbackends=3 1796198400000000000`,
    ])

    const other = await call('POST', '/api/v1/metrics/push', {
      headers: [`Authorization: Bearer ${c.token}`],
      body: { ...body, collector_id: '550e8400-e29b-41d4-a716-446655440000' },
    })
    expect(other.status, other.body).toBe(403)
    const user = await call('POST', '/api/v1/metrics/push', { headers: [`Authorization: Bearer ${(await doLogin()).json.token}`], body })
    expect(user.status, user.body).toBe(401)
  })

  it.each(Object.keys(TYPE_OF) as Array<keyof typeof TYPE_OF>)('%s: the claims and lifetime of the notes, but for the differences API.md makes', async (label) => {
    const structure = tokenStructure(section(text, '### JWT Token Structure'), label)
    const token =
      label === 'Collector Token'
        ? (await doRegister(structure.claims.hostname as string)).json.token
        : (await doLogin()).json[label === 'User Access Token' ? 'token' : 'refresh_token']
    const claims = decodeJwt(token as string) as Record<string, unknown>
    for (const key of Object.keys(structure.claims)) {
      if (CLAIMS_NOT_MADE.includes(key)) expect(claims, key).not.toHaveProperty(key)
      else expect(claims, key).toHaveProperty(key)
    }
    expect((claims.exp as number) - (claims.iat as number)).toBe(structure.ttlS)
    expect(claims.type).toBe(TYPE_OF[label])
    if (label === 'Collector Token') {
      expect(structure.claims.type).toBe('access')
      expect(claims.sub).toBe(`collector:${claims.collector_id as string}`)
      expect(claims.hostname).toBe(structure.claims.hostname)
    } else {
      expect(structure.claims.type).toBe(TYPE_OF[label])
      expect(structure.claims.sub).toBe(`user:${structure.claims.user_id as number}`)
      expect(claims.sub).toBe(`user:${claims.user_id as string}`)
      expect(claims).toMatchObject({ username: 'admin', role: 'admin' })
    }
  })

  it('serves the collector routes the notes planned; servers and alerts are no part of the contract', async () => {
    const pending = section(text, '## Pending Tasks')
    const routes = [...pending.matchAll(/^\s*- (GET|POST|PUT|DELETE) (\/api\/\S+)/gm)].map((m) => `${m[1] as string} ${m[2] as string}`)
    const built = [
      'GET /api/v1/collectors',
      'GET /api/v1/collectors/{id}',
      'DELETE /api/v1/collectors/{id}',
      'GET /api/v1/config/{collector_id}',
      'PUT /api/v1/config/{collector_id}',
    ]
    const notInContract = [
      'GET /api/v1/servers',
      'GET /api/v1/servers/{id}',
      'GET /api/v1/servers/{id}/metrics',
      'GET /api/v1/alerts',
      'GET /api/v1/alerts/{id}',
      'POST /api/v1/alerts/{id}/acknowledge',
    ]
    expect([...routes].sort()).toEqual([...built, ...notInContract].sort())

    const c = (await doRegister('db-server-planned')).json
    const admin = `Authorization: Bearer ${(await doLogin()).json.token}`
    const one = await call('GET', `/api/v1/collectors/${c.collector_id}`, { headers: [admin] })
    expect(one.status, one.body).toBe(200)
    expect(one.json).toMatchObject({ collector_id: c.collector_id, hostname: 'db-server-planned', status: 'active' })

    const pulled = await call('GET', `/api/v1/config/${c.collector_id}`, { headers: [`Authorization: Bearer ${c.token}`] })
    expect(pulled.status, pulled.body).toBe(200)
    expect(pulled.json).toEqual({ collector_id: c.collector_id, version: 1, config: {} })
    const put = await call('PUT', `/api/v1/config/${c.collector_id}`, { headers: [admin], body: { config: { interval_s: 60 } } })
    expect(put.status, put.body).toBe(200)
    expect(put.json).toEqual({ collector_id: c.collector_id, version: 2, config: { interval_s: 60 } })

    const deleted = await call('DELETE', `/api/v1/collectors/${c.collector_id}`, { headers: [admin] })
    expect(deleted.status, deleted.body).toBe(204)
    const after = await call('GET', `/api/v1/collectors/${c.collector_id}`, { headers: [admin] })
    expect(after.status).toBe(404)
  })
})
