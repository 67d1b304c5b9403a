import jwt from 'jsonwebtoken'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { TEST_SECRET, startTestApp, type TestApp } from '../helpers/app.js'
import { RecordingSink, permanentFailure, transientFailure } from '../helpers/recording-sink.js'
import { waitFor } from '../helpers/wait.js'
import { TestClient } from '../helpers/ws-client.js'

const ADMIN_PASSWORD = 'admin-password-for-tests'
const ENV = { ...FAST_PASSWORD_HASHING, ADMIN_PASSWORD, MQTT_ENABLED: 'false', BATCH_LINGER_MS: '2', ADMIN_FEED_INTERVAL_MS: '200', ADMIN_RATE_WINDOW_S: '600' }
const STATS = '/api/v1/admin/stats'
const FEED = '/api/v1/admin/feed'
const STATS_KEYS = ['channels', 'collectors', 'devices', 'errors', 'ingest', 'instance', 'sessions', 'sink', 'spool']
const ERROR_KEYS = ['at', 'endpoint', 'id', 'kind', 'org', 'reason', 'remote', 'user']

type Json = Record<string, any>

/** A stream token for /time-series, as /mock-auth makes them. */
const streamToken = (user: string, org = 'acme_corp') =>
  jwt.sign({ user, user_id: `id-${user}`, org, org_id: '456', account_id: '789', type: 'stream' }, TEST_SECRET, { expiresIn: 3600 })

async function login(api: ApiClient, username: string, password: string): Promise<string> {
  const res = await api.post('/api/v1/auth/login', { body: { username, password } })
  expect(res.status, res.text).toBe(200)
  return res.json.token
}

interface SseEvent {
  event: string
  data: string
}

/**
 * A reader of a text/event-stream response, as the dashboard reads it (fetch and a
 * stream reader: EventSource cannot send the Authorization header). Comment lines come
 * out as events named `:`.
 */
class FeedReader {
  readonly events: SseEvent[] = []
  ended = false
  private buffer = ''
  private readonly reading: Promise<void>

  private constructor(readonly res: Response) {
    this.reading = this.read()
  }

  /**
   * Open until the gateway ends it (expiry, shutdown). Not aborted by the test: Node's
   * fetch then opens a new connection that sends nothing, and a closing server waits for
   * such a connection until its headers time out.
   */
  static async open(url: string, token: string): Promise<FeedReader> {
    return new FeedReader(await fetch(url, { headers: { authorization: `Bearer ${token}` } }))
  }

  private async read(): Promise<void> {
    const body = this.res.body
    if (body === null) return
    const decoder = new TextDecoder()
    const reader = body.getReader()
    try {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        this.buffer += decoder.decode(value, { stream: true })
        let end: number
        while ((end = this.buffer.indexOf('\n\n')) >= 0) {
          const block = this.buffer.slice(0, end)
          this.buffer = this.buffer.slice(end + 2)
          if (block.startsWith(':')) {
            this.events.push({ event: ':', data: block.slice(1).trim() })
            continue
          }
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message'
          const data = [...block.matchAll(/^data: (.*)$/gm)].map((m) => m[1]).join('\n')
          this.events.push({ event, data })
        }
      }
    } finally {
      this.ended = true
    }
  }

  /** The first event named `name` after index `from` that `accept` takes. */
  async next(name: string, accept: (data: any) => boolean = () => true, from = 0, what = `a ${name} event`): Promise<any> {
    const found = await waitFor(
      () => this.events.slice(from).find((e) => e.event === name && accept(e.data === '' ? undefined : JSON.parse(e.data))),
      (e) => e !== undefined || this.ended,
      what,
    )
    if (found === undefined) throw new Error(`the feed ended before ${what}; got ${this.events.map((e) => e.event).join(', ')}`)
    return JSON.parse(found.data)
  }

  async untilEnded(): Promise<void> {
    await this.reading
  }
}

describe('/api/v1/admin/stats and the feed', () => {
  let t: TestApp
  let api: ApiClient
  let admin: string
  const tokens: Record<string, string> = {}
  const sink = new RecordingSink()
  const opened: Array<{ close(): void }> = []
  const track = <T extends { close(): void }>(c: T): T => {
    opened.push(c)
    return c
  }

  const stats = async (token = admin): Promise<Json> => {
    const res = await api.get(STATS, { token })
    expect(res.status, res.text).toBe(200)
    return res.json
  }
  const errorsWhere = (accept: (e: Json) => boolean, what: string) =>
    waitFor(async () => ((await stats()).errors as Json[]).filter(accept), (found) => found.length > 0, what)

  beforeAll(async () => {
    t = await startTestApp(ENV, { sink })
    api = new ApiClient(t.url)
    admin = await login(api, 'admin', ADMIN_PASSWORD)
    for (const role of ['operator', 'viewer'] as const) {
      const res = await api.post('/api/v1/users', {
        token: admin,
        body: { username: `stats-${role}`, password: 'correct horse', email: `${role}@example.com`, role },
      })
      expect(res.status, res.text).toBe(201)
      tokens[role] = await login(api, `stats-${role}`, 'correct horse')
    }
  })
  afterEach(async () => {
    sink.failWith = undefined
    for (const c of opened.splice(0)) c.close()
    await waitFor(async () => (await stats()).sessions.time_series, (n) => n === 0, 'every session of the test to be gone')
  })
  afterAll(async () => {
    await t?.close()
  })

  it('is for admins only: 401 without a token, 403 for viewers and operators, on the stats and the feed', async () => {
    expect((await api.get(STATS)).status).toBe(401)
    expect((await api.get(FEED)).status).toBe(401)
    for (const who of ['viewer', 'operator']) {
      for (const path of [STATS, FEED]) {
        const res = await api.get(path, { token: tokens[who] })
        expect(res.status, `${who} ${path}`).toBe(403)
        expect(res.json).toMatchObject({ error: 'forbidden' })
        expect(Object.keys(res.json).sort()).toEqual(['error', 'message'])
      }
    }
  })

  it('tells the instance, sink, spool, sessions, devices, collectors and channels in the documented shape', async () => {
    const s = await stats()
    expect(Object.keys(s).sort()).toEqual(STATS_KEYS)
    expect(Date.parse(s.instance.started_at)).toBeLessThanOrEqual(Date.now())
    expect(s.instance.uptime_s).toBeGreaterThanOrEqual(0)
    expect(s.sink).toEqual({ name: 'recording', state: 'up', last_error: null })
    expect(s.spool).toEqual({ bytes: 0, lines: 0, dead_letter_records: 0, dead_letter_lines: 0 })
    expect(s.sessions).toEqual({ time_series: 0, ws: 0, mqtt: 0 })
    expect(s.devices).toEqual({ total: 0, connected: 0, last_seen_at: null })
    expect(s.collectors).toEqual({ total: 0, active: 0, last_push_at: null })
    expect(s.channels).toEqual({ count: 0, members: 0, list: [] })
    expect(s.ingest.rate.interval_s).toBe(5)
    expect(s.ingest.rate.window_s).toBe(600)
    expect(Object.keys(s.ingest.batch_flush_ms).sort()).toEqual(['count', 'p50', 'p99'])
  })

  it('counts streamed lines at once, then shows them in the rate and the flush latency', async () => {
    const before = (await stats()).ingest
    const c = track(await TestClient.authenticated(t.wsUrl, streamToken('rated')))
    expect((await stats()).sessions.time_series).toBe(1)
    for (let i = 0; i < 20; i++) {
      c.send(`m,host=a v=${i} ${i + 1}\nm,host=b v=${i} ${i + 1}`)
      expect(await c.next()).toBe('OK')
    }
    const after = (await stats()).ingest
    expect(after.lines_accepted_total - before.lines_accepted_total).toBe(40)
    expect(after.frames_total - before.frames_total).toBe(20)
    // A bucket closes every 5 s: the lines show in the next point that does.
    const rated = await waitFor(
      async () => (await stats()).ingest,
      (i) => i.rate.points.some((p: Json) => p.accepted > 0) && i.batch_flush_ms.count > 0,
      'a rate point with the lines, and their flushes',
    )
    const point = rated.rate.points.find((p: Json) => p.accepted > 0)
    expect(Object.keys(point).sort()).toEqual(['accepted', 'rejected', 't'])
    expect(point.accepted).toBeGreaterThan(0)
    expect(rated.batch_flush_ms.p50).toBeGreaterThanOrEqual(0)
    expect(rated.batch_flush_ms.p99).toBeGreaterThanOrEqual(rated.batch_flush_ms.p50)
  })

  it('lists a bad line with its reason and user, and the session shows it as its last error', async () => {
    const c = track(await TestClient.authenticated(t.wsUrl, streamToken('careless', 'bad_org')))
    const rejected = (await stats()).ingest.lines_rejected_total
    c.send('m v=1 1\nnot line protocol')
    const reply = await c.next()
    expect(reply).toMatch(/^ERR line 2: /)
    const [entry] = await errorsWhere((e) => e.user === 'careless', 'the bad line in the errors')
    expect(Object.keys(entry as Json).sort()).toEqual(ERROR_KEYS)
    expect(entry).toMatchObject({ kind: 'bad_line', endpoint: 'time-series', reason: reply, user: 'careless', org: 'bad_org', remote: '127.0.0.1' })
    expect(Date.now() - Date.parse((entry as Json).at)).toBeLessThan(60_000)
    // Both lines of the frame: none of it was written.
    expect((await stats()).ingest.lines_rejected_total).toBe(rejected + 2)
    const sessions = await api.get('/api/v1/admin/sessions?user=careless', { token: admin })
    expect(sessions.json.data[0]).toMatchObject({ user: 'careless', last_error: reply })
  })

  it('lists a wrong $AUTH, a wrong password, a refused /ws upgrade and a bad HTTP write', async () => {
    const c = track(await TestClient.connect(`${t.wsUrl}/time-series`))
    c.send('$AUTH not-a-token')
    const reply = await c.next()
    expect(reply).toMatch(/^AUTH_FAILED: /)
    await errorsWhere((e) => e.kind === 'auth_failure' && e.endpoint === 'time-series' && e.reason === reply, 'the failed $AUTH')

    const wrong = await api.post('/api/v1/auth/login', { body: { username: 'admin', password: 'not the password' }, ip: '10.200.0.7' })
    // Without TRUST_PROXY the address is the socket's, not X-Forwarded-For.
    expect(wrong.status).toBe(401)
    const [failed] = await errorsWhere((e) => e.endpoint === 'login', 'the failed login')
    expect(failed).toMatchObject({ kind: 'auth_failure', user: 'admin', remote: '127.0.0.1', reason: wrong.json.message })

    await expect(TestClient.connect(`${t.wsUrl}/ws?channelId=c1&token=nope`)).rejects.toThrow('HTTP 401')
    await errorsWhere((e) => e.kind === 'auth_failure' && e.endpoint === 'ws', 'the refused /ws upgrade')

    const write = await fetch(`${t.url}/api/v2/write`, {
      method: 'POST',
      headers: { authorization: `Bearer ${streamToken('writer')}` },
      body: 'ok v=1 1\nbroken',
    })
    expect(write.status).toBe(400)
    const body = (await write.json()) as Json
    const [bad] = await errorsWhere((e) => e.endpoint === 'http-write', 'the bad HTTP write')
    expect(bad).toMatchObject({ kind: 'bad_line', user: 'writer', org: 'acme_corp', reason: body.message })
  })

  it('lists a batch the sink refused as a sink refusal, and the sink shows it as its last error', async () => {
    const c = track(await TestClient.authenticated(t.wsUrl, streamToken('refused')))
    sink.failWith = permanentFailure()
    c.send('m v=1 1')
    expect(await c.next()).toMatch(/^ERR rejected: /)
    const [entry] = await errorsWhere((e) => e.kind === 'sink_refusal', 'the sink refusal')
    expect(entry).toMatchObject({ endpoint: 'sink', user: null, remote: null })
    expect((entry as Json).reason).toContain(permanentFailure().message)
    const s = await stats()
    expect(s.sink.last_error).toBe((entry as Json).reason)
    expect(s.sink.state).toBe('up')
  })

  it('lists an outage of the sink as a sink outage while the spool takes the lines, and the sink back up after it', async () => {
    const c = track(await TestClient.authenticated(t.wsUrl, streamToken('outage')))
    sink.failWith = transientFailure()
    c.send('m v=1 1')
    // Acknowledged from the spool.
    expect(await c.next()).toBe('OK')
    const [entry] = await errorsWhere((e) => e.kind === 'sink_outage', 'the sink outage')
    expect(entry).toMatchObject({ endpoint: 'sink', user: null, remote: null })
    expect((entry as Json).reason).toContain('sink writes failing')
    expect(await waitFor(stats, (s) => s.sink.state === 'spooling', 'the sink spooling')).toMatchObject({ sink: { last_error: (entry as Json).reason } })
    sink.failWith = undefined
    await waitFor(stats, (s) => s.sink.state === 'up' && s.spool.lines === 0, 'the spool replayed')
    expect(sink.lines).toContain('m,user=outage,org=acme_corp v=1 1')
  })

  it('feeds the kept errors, snapshots with the sessions, and each new error as it happens', async () => {
    // Ended by the app's close after the last test.
    const feed = await FeedReader.open(`${t.url}${FEED}`, admin)
    expect(feed.res.status).toBe(200)
    expect(feed.res.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const kept = await feed.next('errors')
    expect(Array.isArray(kept)).toBe(true)
    expect(feed.events[0]?.event).toBe('errors')

    const c = track(await TestClient.authenticated(t.wsUrl, streamToken('fed')))
    const snapshot = await feed.next('snapshot', (d) => d.sessions.some((s: Json) => s.user === 'fed'), 0, 'a snapshot with the session')
    expect(Object.keys(snapshot).sort()).toEqual(['sessions', 'stats'])
    expect(Object.keys(snapshot.stats).sort()).toEqual(STATS_KEYS.filter((k) => k !== 'errors'))
    expect(snapshot.stats.sessions.time_series).toBe(1)

    const seen = feed.events.length
    c.send('m v=1 1\nm v=oops= 2')
    const reply = await c.next()
    expect(reply).toMatch(/^ERR line 2: /)
    const error = await feed.next('error', (e) => e.user === 'fed', seen, 'the bad line on the feed')
    expect(error).toMatchObject({ kind: 'bad_line', endpoint: 'time-series', reason: reply, org: 'acme_corp' })
    expect(Object.keys(error).sort()).toEqual(ERROR_KEYS)
    // Snapshots keep coming after it.
    const after = feed.events.length
    await feed.next('snapshot', () => true, after, 'a snapshot after the error')
  })
})

describe('the feed ends', () => {
  const apps: TestApp[] = []
  afterAll(async () => {
    for (const app of apps) await app.close()
  })

  it('with `expired` when the token expires', async () => {
    const t = await startTestApp({ ...ENV, ACCESS_TOKEN_TTL_S: '2' })
    apps.push(t)
    const feed = await FeedReader.open(`${t.url}${FEED}`, await login(new ApiClient(t.url), 'admin', ADMIN_PASSWORD))
    expect(feed.res.status).toBe(200)
    await feed.next('snapshot')
    await feed.next('expired')
    await feed.untilEnded()
    expect(feed.events.at(-1)?.event).toBe('expired')
  })

  it('with `expired` on shutdown, without holding the shutdown up', async () => {
    const t = await startTestApp(ENV)
    const feed = await FeedReader.open(`${t.url}${FEED}`, await login(new ApiClient(t.url), 'admin', ADMIN_PASSWORD))
    await feed.next('snapshot')
    // An open feed the shutdown did not end would hold its connection, and close() with it.
    await t.close()
    await feed.untilEnded()
    expect(feed.events.at(-1)?.event).toBe('expired')
  })
})
