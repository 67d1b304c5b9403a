import jwt from 'jsonwebtoken'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { TEST_SECRET, startTestApp, type TestApp } from '../helpers/app.js'
import { RecordingSink, permanentFailure, transientFailure } from '../helpers/recording-sink.js'
import { GatedSink } from '../helpers/gated-sink.js'
import { waitUntil } from '../helpers/wait.js'
import { TestClient } from '../helpers/ws-client.js'

function streamToken(claims: Record<string, unknown> = {}, expiresInS = 3600): string {
  return jwt.sign(
    { user: 'john_doe', user_id: '123', org: 'acme_corp', org_id: '456', account_id: '789', type: 'stream', ...claims },
    TEST_SECRET,
    { expiresIn: expiresInS },
  )
}

const authed = (t: TestApp, token = streamToken()) => TestClient.authenticated(t.wsUrl, token)

describe('/time-series', () => {
  let t: TestApp
  let sink: RecordingSink
  beforeEach(async () => {
    sink = new RecordingSink()
    t = await startTestApp({ BATCH_LINGER_MS: '2', SINK_RETRY_MIN_MS: '20', SINK_RETRY_MAX_MS: '50' }, { sink })
  })
  afterEach(async () => {
    await t.close()
  })

  it('tags every line with user and org, stamps a receive time, and answers OK', async () => {
    const c = await authed(t)
    const before = BigInt(Date.now()) * 1_000_000n
    c.send('temperature,location=room1 value=23.5')
    expect(await c.next()).toBe('OK')
    const [line] = sink.lines
    const m = /^temperature,location=room1,user=john_doe,org=acme_corp value=23\.5 (\d+)$/.exec(line ?? '')
    expect(m, line).not.toBeNull()
    const ts = BigInt(m?.[1] as string)
    expect(ts >= before && ts <= BigInt(Date.now() + 1) * 1_000_000n).toBe(true)
    c.close()
  })

  it('replaces user and org tags sent by the client instead of duplicating them', async () => {
    const c = await authed(t)
    c.send('cpu,user=mallory,host=a,org=evil usage=1i 1700000000000000000')
    expect(await c.next()).toBe('OK')
    expect(sink.lines).toEqual(['cpu,host=a,user=john_doe,org=acme_corp usage=1i 1700000000000000000'])
    c.close()
  })

  it('escapes user and org claims as line protocol requires', async () => {
    const c = await authed(t, streamToken({ user: 'John Doe', org: 'Acme, Inc=1' }))
    c.send('m v=1 1')
    expect(await c.next()).toBe('OK')
    expect(sink.lines).toEqual(['m,user=John\\ Doe,org=Acme\\,\\ Inc\\=1 v=1 1'])
    c.close()
  })

  it('takes several lines per frame, skipping blank lines and comments', async () => {
    const c = await authed(t)
    c.send('# header\na v=1 1\n\nb v=2 2\n')
    expect(await c.next()).toBe('OK')
    expect(sink.lines).toEqual([
      'a,user=john_doe,org=acme_corp v=1 1',
      'b,user=john_doe,org=acme_corp v=2 2',
    ])
    c.close()
  })

  it('answers ERR line N for the first bad line and writes nothing of that frame', async () => {
    const c = await authed(t)
    c.send('good v=1 1\n# comment\n\nbad v=\ngood v=2 2')
    const reply = await c.next()
    expect(reply).toMatch(/^ERR line 4: /)
    c.send('after v=1 1\nafter v=2 2')
    expect(await c.next()).toBe('OK')
    expect(sink.lines).toEqual(['after,user=john_doe,org=acme_corp v=1 1', 'after,user=john_doe,org=acme_corp v=2 2'])
    const metrics = await (await fetch(`${t.url}/metrics`)).text()
    expect(metrics).toMatch(/^mc_frames_total\{result="ok"\} 1$/m)
    expect(metrics).toMatch(/^mc_frames_total\{result="error"\} 1$/m)
    expect(metrics).toMatch(/^mc_lines_accepted_total 2$/m)
    c.close()
  })

  it('answers pipelined frames in order, mixing OK and ERR', async () => {
    sink.delayMs = 5
    const c = await authed(t)
    const expected: string[] = []
    for (let i = 0; i < 200; i++) {
      if (i % 7 === 3) {
        c.send(`bad${i} v=oops`)
        expected.push('ERR line 1')
      } else {
        c.send(`m,i=${i} v=${i} ${i + 1}`)
        expected.push('OK')
      }
    }
    await c.waitForCount(1 + 200)
    const replies = c.messages.slice(1).map((m) => (m.startsWith('ERR line 1') ? 'ERR line 1' : m))
    expect(replies).toEqual(expected)
    const written = sink.lines.map((l) => Number(/,i=(\d+)/.exec(l)?.[1]))
    expect(written.sort((a, b) => a - b)).toEqual([...Array(200).keys()].filter((i) => i % 7 !== 3))
    c.close()
  })

  it('refuses a first frame that is not $AUTH with AUTH_FAILED and 4401', async () => {
    const c = await TestClient.connect(`${t.wsUrl}/time-series`)
    c.send('temperature value=1')
    expect(await c.next()).toMatch(/^AUTH_FAILED: /)
    expect((await c.waitClosed()).code).toBe(4401)
    expect(sink.writes).toHaveLength(0)
  })

  it.each([
    ['a foreign secret', jwt.sign({ user: 'u', org: 'o', type: 'stream' }, 'x'.repeat(40), { expiresIn: 60 })],
    ['an expired token', streamToken({}, -120)],
    ['a token of another type', streamToken({ type: 'access' })],
    ['garbage', 'not-a-jwt'],
  ])('refuses %s with AUTH_FAILED and 4401', async (_what, token) => {
    const c = await TestClient.connect(`${t.wsUrl}/time-series`)
    c.send(`$AUTH ${token}`)
    expect(await c.next()).toMatch(/^AUTH_FAILED: \S/)
    expect((await c.waitClosed()).code).toBe(4401)
  })

  it('renews the token mid-session, answering in reply order', async () => {
    const c = await authed(t)
    c.send('a v=1 1')
    c.send(`$AUTH ${streamToken({ user: 'jane', org: 'other' })}`)
    c.send('b v=1 1')
    c.send('$AUTH bad-token')
    c.send('c v=1 1')
    await c.waitForCount(6)
    expect(c.messages.slice(1, 5)).toEqual(['OK', 'AUTH_SUCCESS', 'OK', expect.stringMatching(/^AUTH_FAILED: /)])
    expect(c.messages[5]).toBe('OK')
    expect(sink.lines.sort()).toEqual([
      'a,user=john_doe,org=acme_corp v=1 1',
      'b,user=jane,org=other v=1 1',
      'c,user=jane,org=other v=1 1', // a failed renewal keeps the old token
    ])
    expect(c.closed).toBeUndefined()
    c.close()
  })

  it('closes with 1009 a frame over 1 MiB, and accepts one of exactly 1 MiB', async () => {
    const c = await authed(t)
    const line = 'm v=1 1\n'
    const exact = line.repeat(Math.floor(1_048_576 / line.length))
    const padded = exact + '#'.repeat(1_048_576 - exact.length)
    expect(Buffer.byteLength(padded)).toBe(1_048_576)
    c.send(padded)
    expect(await c.next(15_000)).toBe('OK')
    c.send(padded + '#')
    expect((await c.waitClosed()).code).toBe(1009)
  })

  it('spools while the sink is down (OK), replays in order once it is back, and refuses what the sink refuses', async () => {
    const c = await authed(t)
    sink.failWith = transientFailure()
    c.send('down v=1 1')
    c.send('down v=2 2')
    expect(await c.next()).toBe('OK') // durable in the spool, not in the sink
    expect(await c.next()).toBe('OK')
    expect(sink.lines).toEqual([])
    expect(t.app.sink.mode).toBe('spooling')
    sink.failWith = undefined
    await waitUntil(() => sink.lines.length === 2)
    expect(sink.lines).toEqual(['down,user=john_doe,org=acme_corp v=1 1', 'down,user=john_doe,org=acme_corp v=2 2'])
    await waitUntil(() => t.app.sink.mode === 'direct')
    sink.failWith = permanentFailure()
    c.send('refused v=1 1')
    expect(await c.next()).toMatch(/^ERR rejected: /)
    sink.failWith = undefined
    c.send('after v=1 1')
    expect(await c.next()).toBe('OK')
    expect(sink.lines).toHaveLength(3)
    c.close()
  })

  it('keeps frames sent right behind $AUTH (the handler is attached before any await)', async () => {
    const c = await TestClient.connect(`${t.wsUrl}/time-series`)
    c.send(`$AUTH ${streamToken()}`)
    c.send('early v=1 1')
    c.send('early v=2 2')
    await c.waitForCount(3)
    expect(c.messages).toEqual(['AUTH_SUCCESS', 'OK', 'OK'])
    c.close()
  })
})

describe('/time-series limits and timeouts', () => {
  it('sends AUTH_EXPIRED and closes with 4401 when the token lapses (after the clock skew)', async () => {
    const t = await startTestApp({ JWT_CLOCK_SKEW_S: '1' }, { sink: new RecordingSink() })
    try {
      // Valid for 2 to 3 s more (exp + 1 s of skew): far from any second boundary at $AUTH,
      // and soon enough to lapse during the test.
      const token = jwt.sign({ user: 'u', org: 'o', type: 'stream', exp: Math.floor(Date.now() / 1000) + 2 }, TEST_SECRET)
      const c = await authed(t, token)
      const closed = await c.waitClosed(10_000)
      expect(c.messages).toEqual(['AUTH_SUCCESS', 'AUTH_EXPIRED'])
      expect(closed.code).toBe(4401)
    } finally {
      await t.close()
    }
  })

  it('closes with 4408 when no $AUTH arrives in time', async () => {
    const t = await startTestApp({ WS_AUTH_TIMEOUT_MS: '200' }, { sink: new RecordingSink() })
    try {
      const c = await TestClient.connect(`${t.wsUrl}/time-series`)
      expect((await c.waitClosed()).code).toBe(4408)
    } finally {
      await t.close()
    }
  })

  it('answers HTTP 503 to upgrades beyond MAX_CONNECTIONS', async () => {
    const t = await startTestApp({ MAX_CONNECTIONS: '2' }, { sink: new RecordingSink() })
    try {
      const a = await TestClient.connect(`${t.wsUrl}/time-series`)
      const b = await TestClient.connect(`${t.wsUrl}/time-series`)
      await expect(TestClient.connect(`${t.wsUrl}/time-series`)).rejects.toThrow('HTTP 503')
      a.close()
      await a.waitClosed()
      // The client saw the close; the server drops the connection from its count just after.
      await waitUntil(() => t.app.websocketServer.clients.size < 2, 10_000, 'the server to drop the closed connection')
      const c = await TestClient.connect(`${t.wsUrl}/time-series`)
      b.close()
      c.close()
    } finally {
      await t.close()
    }
  })

  it('refuses an origin outside ALLOWED_ORIGINS with 403', async () => {
    const t = await startTestApp({ ALLOWED_ORIGINS: 'https://app.example' }, { sink: new RecordingSink() })
    try {
      await expect(
        TestClient.connect(`${t.wsUrl}/time-series`, { headers: { origin: 'https://evil.example' } }),
      ).rejects.toThrow('HTTP 403')
      const ok = await TestClient.connect(`${t.wsUrl}/time-series`, { headers: { origin: 'https://app.example' } })
      ok.close()
    } finally {
      await t.close()
    }
  })

  it('serves every route under PATH_PREFIX', async () => {
    const sink = new RecordingSink()
    const t = await startTestApp({ PATH_PREFIX: '/collector' }, { sink })
    try {
      expect(t.url.endsWith('/collector')).toBe(true)
      const c = await authed(t)
      c.send('m v=1 1')
      expect(await c.next()).toBe('OK')
      c.close()
      expect((await fetch(`${t.url}/health`)).status).toBe(200)
      expect((await fetch(t.url.replace('/collector', '') + '/health')).status).toBe(404)
    } finally {
      await t.close()
    }
  })

  it('on close answers every frame received, then closes sockets with 1001', async () => {
    const sink = new RecordingSink()
    sink.delayMs = 50
    const t = await startTestApp({}, { sink })
    const c = await authed(t)
    for (let i = 0; i < 20; i++) c.send(`m,i=${i} v=1 1`)
    // Every frame received before the shutdown starts (one arriving after gets ERR busy: retry).
    await waitUntil(() => [...t.app.streamSessions][0]?.framesReceived === 21, 10_000, 'the 20 frames to arrive')
    await t.close()
    const closed = await c.waitClosed()
    expect(closed.code).toBe(1001)
    const replies = c.messages.slice(1)
    expect(replies).toHaveLength(20)
    expect(replies.every((r) => r === 'OK')).toBe(true)
    expect(sink.lines).toHaveLength(20)
  })

  it('answers ERR busy: retry to a frame that would pass BATCH_MAX_QUEUED_BYTES, in reply order, writing nothing of it', async () => {
    const sink = new GatedSink()
    // One write at a time, one frame per batch: the second frame waits in the queue.
    const t = await startTestApp(
      { BATCH_MAX_INFLIGHT: '1', BATCH_MAX_LINES: '1', BATCH_MAX_QUEUED_BYTES: '60' },
      { sink },
    )
    try {
      const c = await authed(t)
      c.send('first v=1 1') // written: the sink holds it
      await waitUntil(() => sink.pending === 1, 10_000, 'the first write')
      c.send('second v=1 1') // queued: about 40 bytes once tagged
      c.send('third v=1 1') // about 40 more would pass 60: refused
      await waitUntil(() => [...t.app.streamSessions][0]?.framesReceived === 4, 10_000, 'the frames to arrive')
      expect(c.messages).toEqual(['AUTH_SUCCESS']) // the refusal waits for its turn
      sink.release()
      await waitUntil(() => sink.pending === 1, 10_000, 'the second write')
      sink.release()
      await c.waitForCount(4)
      expect(c.messages).toEqual(['AUTH_SUCCESS', 'OK', 'OK', 'ERR busy: retry'])
      expect(sink.lines.map((l) => l.split(',')[0])).toEqual(['first', 'second'])
      c.close()
    } finally {
      await t.close()
    }
  })

  it('on close with a stuck sink answers ERR busy: retry at the deadline (grace minus sink timeout), then 1001', async () => {
    const sink = new GatedSink()
    const t = await startTestApp({ SINK_TIMEOUT_MS: '1000', SHUTDOWN_GRACE_MS: '1200' }, { sink })
    const c = await authed(t)
    for (let i = 0; i < 5; i++) c.send(`m,i=${i} v=1 1`)
    await waitUntil(() => sink.pending > 0 && [...t.app.streamSessions][0]?.framesReceived === 6, 10_000, 'the frames')
    await t.close() // the gated sink never answers before its close
    expect((await c.waitClosed()).code).toBe(1001)
    expect(c.messages).toEqual(['AUTH_SUCCESS', ...Array(5).fill('ERR busy: retry')])
  })
})
