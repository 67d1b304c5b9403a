import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { CHANNEL_ID_MAX_LENGTH } from '../../src/channels/events.js'
import { ChannelLogError } from '../../src/channels/types.js'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { ChannelClient, streamToken, type ChannelFrame } from '../helpers/channels.js'
import { natsReachable, natsUrlForTests, startNatsServer, type NatsServer } from '../helpers/nats.js'
import { requireService } from '../helpers/services.js'
import { waitFor } from '../helpers/wait.js'

const ADMIN_PASSWORD = 'admin-password-for-tests'
// Small, so an oversized body is cheap to make.
const EVENT_MAX_BYTES = 4096
const ENV = {
  ...FAST_PASSWORD_HASHING,
  ADMIN_PASSWORD,
  MQTT_ENABLED: 'false',
  CHANNEL_EVENT_MAX_BYTES: String(EVENT_MAX_BYTES),
  RETRY_AFTER_S: '7',
}

/** A 202's body, or (other statuses) an error's. */
interface Published {
  channelId: string
  offset: number
  timestamp: number
  error?: string
  message?: string
}

async function login(api: ApiClient, username: string, password: string): Promise<string> {
  const res = await api.post('/api/v1/auth/login', { body: { username, password } })
  expect(res.status, res.text).toBe(200)
  return res.json.token
}

/**
 * Users of every role and API tokens with and without channels:publish. `prefix` tells the
 * users of each gateway apart: the gateways of this file share one database.
 */
async function withUsers(t: TestApp, prefix: string) {
  const api = new ApiClient(t.url)
  const admin = await login(api, 'admin', ADMIN_PASSWORD)
  const tokens: Record<string, string> = { admin }
  for (const role of ['operator', 'viewer'] as const) {
    const res = await api.post('/api/v1/users', {
      token: admin,
      body: { username: `${prefix}-${role}`, password: 'correct horse', email: `${prefix}-${role}@example.com`, role },
    })
    expect(res.status, res.text).toBe(201)
    tokens[role] = await login(api, `${prefix}-${role}`, 'correct horse')
  }
  for (const [name, scopes] of [
    ['apiPublish', ['channels:publish']],
    ['apiIngest', ['ingest:write', 'devices:write']],
  ] as const) {
    const res = await api.post('/api/v1/tokens', { token: admin, body: { name: `${prefix}-${name}`, scopes } })
    expect(res.status, res.text).toBe(201)
    tokens[name] = res.json.token
  }
  return { api, tokens }
}

const eventsOf = (c: ChannelClient) => c.frames.filter((f) => f.offset !== undefined)

describe('POST /api/v1/channels/{channelId}/events (in-process log)', () => {
  let t: TestApp
  let api: ApiClient
  let tokens: Record<string, string>
  let member: ChannelClient
  const CHANNEL = 'room.publish-1'
  const publish = (body: unknown, token = tokens.admin, channelId = CHANNEL) =>
    api.post<Published>(`/api/v1/channels/${encodeURIComponent(channelId)}/events`, { token, body })
  /** Publishes an event and waits until the member received it: everything refused before it was not delivered. */
  const publishAndReceive = async (data: unknown, token = tokens.admin): Promise<{ res: Published; frame: ChannelFrame }> => {
    const res = await publish({ type: 'message:created', data }, token)
    expect(res.status, res.text).toBe(202)
    const frame = await member.waitFor((f) => f.offset === res.json.offset, `offset ${res.json.offset}`)
    return { res: res.json, frame }
  }

  beforeAll(async () => {
    t = await startTestApp(ENV)
    ;({ api, tokens } = await withUsers(t, 'memory'))
    member = await ChannelClient.joined(t.wsUrl, { token: streamToken({ id: 'member-1' }), channelId: CHANNEL })
  })
  afterAll(async () => {
    member?.close()
    await t?.close()
  })

  it('answers 202 with the offset, and the event reaches the member with it', async () => {
    const before = Date.now()
    const res = await publish({ type: 'message:created', data: { id: 'm1', text: 'hello' } })
    expect(res.status, res.text).toBe(202)
    expect(Object.keys(res.json).sort()).toEqual(['channelId', 'offset', 'timestamp'])
    expect(res.json.channelId).toBe(CHANNEL)
    expect(Number.isInteger(res.json.offset)).toBe(true)
    expect(res.json.timestamp).toBeGreaterThanOrEqual(before)
    expect(res.json.timestamp).toBeLessThanOrEqual(Date.now())
    const frame = await member.waitFor((f) => f.type === 'message:created' && f.offset === res.json.offset, 'the event')
    expect(frame).toEqual({
      type: 'message:created',
      channelId: CHANNEL,
      timestamp: res.json.timestamp,
      offset: res.json.offset,
      data: { id: 'm1', text: 'hello' },
    })
  })

  it('keeps a given timestamp, makes absent data null, and refuses a body naming another channel', async () => {
    const kept = await publish({ type: 'message:updated', timestamp: 1_700_000_000_000, channelId: CHANNEL })
    expect(kept.status, kept.text).toBe(202)
    expect(kept.json.timestamp).toBe(1_700_000_000_000)
    const frame = await member.waitFor((f) => f.offset === kept.json.offset, 'the updated event')
    expect(frame.data).toBeNull()
    expect(frame.timestamp).toBe(1_700_000_000_000)

    const other = await publish({ type: 'message:created', channelId: 'room.other', data: 1 })
    expect(other.status).toBe(400)
    expect(other.json.error).toBe('invalid_request')
    expect(other.json.message).toContain('room.other')
  })

  // Needs the router to take path parameters this long (app.ts routerOptions.maxParamLength; 100 by default).
  it(`takes channel ids of every allowed character up to ${CHANNEL_ID_MAX_LENGTH} long, and refuses a longer one with 400`, async () => {
    for (const channelId of ['org:acme:room=1', 'a@b+c-d_e', 'x'.repeat(CHANNEL_ID_MAX_LENGTH)]) {
      const res = await publish({ type: 'message:created' }, tokens.admin, channelId)
      expect(res.status, `${channelId}: ${res.text}`).toBe(202)
      expect(res.json.channelId).toBe(channelId)
    }
    const tooLong = await publish({ type: 'message:created' }, tokens.admin, 'x'.repeat(CHANNEL_ID_MAX_LENGTH + 1))
    expect(tooLong.status).toBe(400)
    expect(tooLong.json).toEqual({
      error: 'invalid_request',
      message: `invalid params field "channelId": channelId is longer than ${CHANNEL_ID_MAX_LENGTH} characters`,
    })
  })

  it('gives increasing offsets, delivered in order', async () => {
    const offsets: number[] = []
    for (let i = 0; i < 5; i++) offsets.push((await publishAndReceive({ i })).res.offset)
    for (let i = 1; i < offsets.length; i++) expect(offsets[i]).toBeGreaterThan(offsets[i - 1] as number)
    const received = eventsOf(member).filter((f) => offsets.includes(f.offset as number))
    expect(received.map((f) => f.offset)).toEqual(offsets)
    expect(received.map((f) => f.data.i)).toEqual([0, 1, 2, 3, 4])
  })

  it('lets operators and channels:publish API tokens publish; refuses viewers, other scopes and no token', async () => {
    const seen = eventsOf(member).length
    const viewer = await publish({ type: 'message:created', data: 'v' }, tokens.viewer)
    expect(viewer.status).toBe(403)
    expect(Object.keys(viewer.json).sort()).toEqual(['error', 'message'])
    const wrongScope = await publish({ type: 'message:created', data: 'w' }, tokens.apiIngest)
    expect(wrongScope.status).toBe(403)
    expect(wrongScope.json.error).toBe('insufficient_scope')
    expect(wrongScope.json.message).toContain('channels:publish')
    const anonymous = await api.post(`/api/v1/channels/${CHANNEL}/events`, { body: { type: 'message:created' } })
    expect(anonymous.status).toBe(401)

    const byOperator = await publishAndReceive('by operator', tokens.operator)
    const byApiToken = await publishAndReceive('by api token', tokens.apiPublish)
    expect(byOperator.frame.data).toBe('by operator')
    expect(byApiToken.frame.data).toBe('by api token')
    // The two accepted events are all the member got since: nothing of the refused ones.
    expect(eventsOf(member).slice(seen).map((f) => f.data)).toEqual(['by operator', 'by api token'])
  })

  it('refuses bad channel ids, reserved, missing and malformed types, and oversized bodies; nothing is delivered', async () => {
    const seen = eventsOf(member).length
    for (const bad of ['a b', 'room..x', 'room.*', 'room.>', 'room/x']) {
      const res = await publish({ type: 'message:created', data: 1 }, tokens.admin, bad)
      expect(res.status, bad).toBe(400)
      expect(res.json.error).toBe('invalid_request')
      expect(res.json.message, bad).toContain('channelId')
    }
    for (const [body, field] of [
      [{ type: 'presence:join', data: { user_id: 'x', name: 'forged' } }, 'gateway only'],
      [{ type: 'typing:start' }, 'gateway only'],
      [{ type: 'recovery:failed' }, 'gateway only'],
      [{ type: 'error', data: { message: 'forged' } }, 'gateway only'],
      [{ data: { no: 'type' } }, '"type"'],
      [{ type: '' }, '"type"'],
      [{ type: 'has space' }, '"type"'],
      [{ type: 'message:created', timestamp: 'yesterday' }, '"timestamp"'],
      [[{ type: 'message:created' }], 'body'],
    ] as const) {
      const res = await publish(body)
      expect(res.status, JSON.stringify(body)).toBe(400)
      expect(res.json.error).toBe('invalid_request')
      expect(res.json.message, JSON.stringify(body)).toContain(field)
    }
    const tooLarge = await publish({ type: 'message:created', data: 'x'.repeat(EVENT_MAX_BYTES) })
    expect(tooLarge.status).toBe(413)
    expect(tooLarge.json).toEqual({ error: 'event_too_large', message: `an event body may be at most ${EVENT_MAX_BYTES} bytes` })
    const emptyBody = await api.post(`/api/v1/channels/${CHANNEL}/events`, {
      token: tokens.admin,
      headers: { 'content-type': 'application/json' },
      body: undefined,
    })
    expect(emptyBody.status).toBe(400)

    const after = await publishAndReceive('after the refusals')
    expect(eventsOf(member).slice(seen).map((f) => f.data)).toEqual(['after the refusals'])
    expect(after.frame.type).toBe('message:created')
  })

  it('answers 503 channels_unavailable with Retry-After when the log cannot store, 400 when it refuses', async () => {
    const append = vi.spyOn(t.app.channelLog, 'append')
    try {
      append.mockRejectedValueOnce(new ChannelLogError('unavailable', 'JetStream did not acknowledge'))
      const down = await publish({ type: 'message:created', data: 1 })
      expect(down.status).toBe(503)
      expect(down.json.error).toBe('channels_unavailable')
      expect(down.headers.get('retry-after')).toBe('7')

      append.mockRejectedValueOnce(new ChannelLogError('refused', 'event is larger than the stream allows'))
      const refused = await publish({ type: 'message:created', data: 2 })
      expect(refused.status).toBe(400)
      expect(refused.json).toEqual({ error: 'event_refused', message: 'event is larger than the stream allows' })
    } finally {
      append.mockRestore()
    }
    const real = await publishAndReceive('stored again')
    expect(real.frame.data).toBe('stored again')
  })
})

describe.runIf(await requireService('NATS at 127.0.0.1:4222', await natsReachable()))('POST …/events with NATS (JetStream)', () => {
  let t: TestApp
  let api: ApiClient
  let tokens: Record<string, string>
  // Unique per run: the machine's CHANNELS stream outlives this test.
  const CHANNEL = `test.publish.${process.pid}.${Date.now()}`

  beforeAll(async () => {
    t = await startTestApp({ ...ENV, NATS_URL: natsUrlForTests })
    ;({ api, tokens } = await withUsers(t, 'nats'))
  })
  afterAll(async () => {
    await t?.close()
  })

  it('answers 202 once JetStream stored the event, and a member gets it under that offset', async () => {
    const member = await ChannelClient.joined(t.wsUrl, { token: streamToken({ id: 'nats-member' }), channelId: CHANNEL })
    try {
      const offsets: number[] = []
      for (let i = 0; i < 3; i++) {
        const res = await api.post<Published>(`/api/v1/channels/${CHANNEL}/events`, {
          token: tokens.apiPublish,
          body: { type: 'message:created', data: { i } },
        })
        expect(res.status, res.text).toBe(202)
        offsets.push(res.json.offset)
      }
      for (let i = 1; i < offsets.length; i++) expect(offsets[i]).toBeGreaterThan(offsets[i - 1] as number)
      await member.waitForCount(3, ['message:created'])
      expect(member.ofType('message:created').map((f) => [f.offset, f.data.i])).toEqual(offsets.map((o, i) => [o, i]))
    } finally {
      member.close()
    }
  })
})

describe.runIf(await requireService('NATS at 127.0.0.1:4222', await natsReachable()))('POST …/events while NATS is down', () => {
  let nats: NatsServer
  let t: TestApp
  let api: ApiClient
  let tokens: Record<string, string>

  beforeAll(async () => {
    // Our own server: the machine's NATS is shared and must never be stopped.
    nats = await startNatsServer()
    t = await startTestApp({ ...ENV, NATS_URL: nats.url, NATS_PUBLISH_TIMEOUT_MS: '1000' })
    ;({ api, tokens } = await withUsers(t, 'nats-down'))
  })
  afterAll(async () => {
    await t?.close()
    await nats?.cleanup()
  })

  it('answers 503 channels_unavailable with Retry-After, and 202 again once NATS is back', async () => {
    const ok = await api.post(`/api/v1/channels/room.down/events`, { token: tokens.admin, body: { type: 'message:created' } })
    expect(ok.status, ok.text).toBe(202)
    await nats.stop()
    const down = await api.post(`/api/v1/channels/room.down/events`, { token: tokens.admin, body: { type: 'message:created' } })
    expect(down.status, down.text).toBe(503)
    expect(down.json.error).toBe('channels_unavailable')
    expect(down.headers.get('retry-after')).toBe('7')
    await nats.start()
    // The bus reconnects on its own schedule: publish until the log stores again.
    const again = await waitFor(
      () => api.post(`/api/v1/channels/room.down/events`, { token: tokens.admin, body: { type: 'message:created' } }),
      (res) => res.status === 202,
      'a publish to be stored after NATS came back',
      30_000,
    )
    expect(again.json.offset).toBeGreaterThan(ok.json.offset)
  })
})
