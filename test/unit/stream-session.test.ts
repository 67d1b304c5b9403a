import { afterEach, describe, expect, it, vi } from 'vitest'
import type { Ack } from '../../src/ingest/batcher.js'
import { FrameRewriter, makeTagging } from '../../src/ingest/line-protocol/index.js'
import { SinkError } from '../../src/ingest/sinks/sink.js'
import {
  CLOSE_AUTH,
  CLOSE_AUTH_TIMEOUT,
  CLOSE_GOING_AWAY,
  StreamSession,
  type FrameSocket,
  type StreamIdentity,
  type StreamSessionDeps,
} from '../../src/ingest/stream-session.js'

/** Records what the session does to its socket. */
class FakeSocket implements FrameSocket {
  sent: string[] = []
  closed: { code: number; reason: string | undefined } | undefined
  pauses = 0
  resumes = 0
  get paused(): boolean {
    return this.pauses > this.resumes
  }
  send(data: string): void {
    if (this.closed !== undefined) throw new Error(`send after close: ${data}`)
    this.sent.push(data)
  }
  close(code: number, reason?: string): void {
    this.closed = { code, reason }
  }
  pause(): void {
    this.pauses++
  }
  resume(): void {
    this.resumes++
  }
}

/** A batcher whose frames are acknowledged only when the test says so. */
class FakeBatcher {
  frames: Array<{ text: string; lines: number; ack: Ack }> = []
  // Decoded at once: the caller may reuse its bytes after submit returns, as with the real batcher.
  submit(frame: Uint8Array, lines: number, ack: Ack): void {
    this.frames.push({ text: Buffer.from(frame).toString('utf8'), lines, ack })
  }
  ackAll(err?: SinkError): void {
    for (const f of this.frames.splice(0)) f.ack(err)
  }
}

/** Frames given as text are sent as their UTF-8 bytes, as ws delivers them. */
class TestSession extends StreamSession {
  override onFrame(frame: Buffer | string): void {
    super.onFrame(typeof frame === 'string' ? Buffer.from(frame) : frame)
  }
}

/** An authenticate whose answers the test gives by hand, one Promise per call. */
function manualAuth() {
  const calls: Array<{ token: string; resolve: (id: StreamIdentity) => void; reject: (e: Error) => void }> = []
  const authenticate = (token: string) =>
    new Promise<StreamIdentity>((resolve, reject) => calls.push({ token, resolve, reject }))
  return { calls, authenticate }
}

const identity = (user = 'ann', exp = Number.POSITIVE_INFINITY): StreamIdentity => ({
  user,
  org: 'acme',
  exp,
  tagging: makeTagging([
    ['user', user],
    ['org', 'acme'],
  ]),
})

// Settles the promise chain of an authentication (then, finally).
const settle = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve()
}

function start<S extends FakeSocket = FakeSocket>(overrides: Partial<StreamSessionDeps> = {}, socket: S = new FakeSocket() as S) {
  const batcher = new FakeBatcher()
  const session = new TestSession(socket, {
    authenticate: () => identity(),
    batcher,
    rewriter: new FrameRewriter(),
    msUntilExpiry: () => 3_600_000,
    authTimeoutMs: 10_000,
    maxPendingFrames: 4096,
    maxHeldBytes: 1 << 20,
    log: { debug() {}, info() {}, warn() {} },
    ...overrides,
  })
  return { socket, batcher, session }
}

describe('StreamSession', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('answers frames in arrival order though the batcher acknowledges them out of order', () => {
    const { socket, batcher, session } = start()
    session.onFrame('$AUTH t')
    session.onFrame('a v=1 1')
    session.onFrame('b v=')
    session.onFrame('c v=1 1')
    expect(socket.sent).toEqual(['AUTH_SUCCESS'])
    batcher.frames[1]?.ack(undefined) // c first
    expect(socket.sent).toEqual(['AUTH_SUCCESS'])
    batcher.frames[0]?.ack(new SinkError('down', true))
    expect(socket.sent).toEqual(['AUTH_SUCCESS', 'ERR busy: retry', expect.stringMatching(/^ERR line 1: /), 'OK'])
  })

  it('sends the OKs of a burst with sendOk as one write at uncork, in order with the other replies', async () => {
    class RunSocket extends FakeSocket {
      runs: number[] = []
      corks = 0
      sendOk(count: number): void {
        this.runs.push(count)
        for (let i = 0; i < count; i++) this.send('OK')
      }
      cork(): void {
        this.corks++
      }
      uncork(): void {
        this.corks--
      }
    }
    const { socket, batcher, session } = start({}, new RunSocket())
    session.onFrame('$AUTH t')
    for (const f of ['a v=1 1', 'b v=1 1', 'bad v=', 'c v=1 1', 'd v=1 1', 'e v=1 1']) session.onFrame(f)
    batcher.ackAll()
    // The OKs before the ERR go out before it; the last three wait for the uncork.
    expect(socket.sent).toEqual(['AUTH_SUCCESS', 'OK', 'OK', expect.stringMatching(/^ERR line 1: /)])
    expect(socket.corks).toBe(1)
    await new Promise((resolve) => process.nextTick(resolve))
    expect(socket.sent).toEqual(['AUTH_SUCCESS', 'OK', 'OK', expect.stringMatching(/^ERR line 1: /), 'OK', 'OK', 'OK'])
    expect(socket.runs).toEqual([2, 3])
    expect(socket.corks).toBe(0)
    // A close after a burst: the OKs owed leave before the close frame.
    session.onFrame('f v=1 1')
    batcher.ackAll()
    void session.shutdown()
    expect(socket.sent.at(-1)).toBe('OK')
    expect(socket.closed?.code).toBe(1001)
  })

  it('refuses a frame that is not UTF-8 with the line it is on, and writes nothing of it', () => {
    const { socket, batcher, session } = start()
    session.onFrame('$AUTH t')
    session.onFrame(Buffer.concat([Buffer.from('a v=1 1\nb,host=x'), Buffer.from([0xc3, 0x28]), Buffer.from(' v=1 1')]))
    session.onFrame('c v="é" 1')
    expect(socket.sent).toEqual(['AUTH_SUCCESS', 'ERR line 2: invalid UTF-8 at column 9'])
    expect(batcher.frames.map((f) => f.text)).toEqual(['c,user=ann,org=acme v="é" 1\n'])
  })

  it('holds frames during an asynchronous $AUTH and answers them after AUTH_SUCCESS, in order', async () => {
    const auth = manualAuth()
    const { socket, batcher, session } = start({ authenticate: auth.authenticate })
    session.onFrame('$AUTH api-token')
    session.onFrame('a v=1 1')
    session.onFrame('b v=1 1')
    expect(batcher.frames).toHaveLength(0)
    auth.calls[0]?.resolve(identity())
    await settle()
    expect(batcher.frames.map((f) => f.text)).toEqual(['a,user=ann,org=acme v=1 1\n', 'b,user=ann,org=acme v=1 1\n'])
    batcher.ackAll()
    expect(socket.sent).toEqual(['AUTH_SUCCESS', 'OK', 'OK'])
  })

  it('stays closed when the 4408 timeout fires during an asynchronous $AUTH that succeeds later', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const auth = manualAuth()
    const { socket, batcher, session } = start({ authenticate: auth.authenticate, authTimeoutMs: 50 })
    session.onFrame('$AUTH api-token')
    session.onFrame('held v=1 1')
    vi.advanceTimersByTime(50)
    expect(socket.closed?.code).toBe(CLOSE_AUTH_TIMEOUT)
    auth.calls[0]?.resolve(identity())
    await settle()
    expect(socket.sent).toEqual([]) // no AUTH_SUCCESS
    expect(batcher.frames).toHaveLength(0) // no held frame written
    expect(session.currentIdentity).toBeUndefined()
  })

  it('stays closed when the client leaves during an asynchronous $AUTH (success or failure)', async () => {
    for (const outcome of ['resolve', 'reject'] as const) {
      const auth = manualAuth()
      const { socket, batcher, session } = start({ authenticate: auth.authenticate })
      session.onFrame('$AUTH api-token')
      session.onFrame('held v=1 1')
      session.onClosed()
      if (outcome === 'resolve') auth.calls[0]?.resolve(identity())
      else auth.calls[0]?.reject(new Error('invalid API token'))
      await settle()
      expect(socket.sent).toEqual([])
      expect(socket.closed).toBeUndefined() // the socket is gone already: nothing to close
      expect(batcher.frames).toHaveLength(0)
    }
  })

  it('after a renewal that resolves once the session closed, writes nothing and adopts nothing', async () => {
    const auth = manualAuth()
    let calls = 0
    const { socket, batcher, session } = start({
      authenticate: (token) => (calls++ === 0 ? identity() : auth.authenticate(token)),
    })
    session.onFrame('$AUTH first')
    session.onFrame('$AUTH renewal')
    session.onFrame('held v=1 1')
    session.onClosed()
    auth.calls[0]?.resolve(identity('mallory'))
    await settle()
    expect(socket.sent).toEqual(['AUTH_SUCCESS'])
    expect(batcher.frames).toHaveLength(0)
    expect(session.user).toBe('ann')
  })

  it('pauses the socket once held frames reach maxHeldBytes, and resumes once the token is checked', async () => {
    const auth = manualAuth()
    const { socket, batcher, session } = start({ authenticate: auth.authenticate, maxHeldBytes: 20 })
    session.onFrame('$AUTH api-token')
    session.onFrame('a v=1 1') // 7
    session.onFrame('b v=1 1') // 14
    expect(socket.paused).toBe(false)
    session.onFrame('c v=1 1') // 21: over
    expect(socket.paused).toBe(true)
    session.onFrame('d v=1 1') // what the paused socket still had buffered is kept, not lost
    auth.calls[0]?.resolve(identity())
    await settle()
    expect(socket.paused).toBe(false)
    expect(batcher.frames).toHaveLength(4)
    batcher.ackAll()
    expect(socket.sent).toEqual(['AUTH_SUCCESS', 'OK', 'OK', 'OK', 'OK'])
  })

  it('holds frames behind an asynchronous renewal, within the same byte bound', async () => {
    const auth = manualAuth()
    let calls = 0
    const { socket, batcher, session } = start({
      authenticate: (token) => (calls++ === 0 ? identity() : auth.authenticate(token)),
      maxHeldBytes: 10,
    })
    session.onFrame('$AUTH first')
    session.onFrame('$AUTH renewal')
    session.onFrame('a v=1 1')
    session.onFrame('b v=1 1')
    expect(socket.paused).toBe(true)
    auth.calls[0]?.resolve(identity('bob'))
    await settle()
    expect(socket.paused).toBe(false)
    expect(batcher.frames.map((f) => f.text)).toEqual(['a,user=bob,org=acme v=1 1\n', 'b,user=bob,org=acme v=1 1\n'])
    batcher.ackAll()
    expect(socket.sent).toEqual(['AUTH_SUCCESS', 'AUTH_SUCCESS', 'OK', 'OK'])
  })

  it('on shutdown during a renewal answers the renewal and every held frame (ERR busy: retry), then closes 1001', async () => {
    const auth = manualAuth()
    let calls = 0
    const { socket, batcher, session } = start({
      authenticate: (token) => (calls++ === 0 ? identity() : auth.authenticate(token)),
    })
    session.onFrame('$AUTH first')
    session.onFrame('before v=1 1')
    session.onFrame('$AUTH renewal')
    session.onFrame('held v=1 1')
    let done = false
    const shutdown = session.shutdown().then(() => (done = true))
    batcher.ackAll()
    auth.calls[0]?.resolve(identity('bob'))
    await settle()
    await shutdown
    expect(done).toBe(true)
    expect(socket.sent).toEqual(['AUTH_SUCCESS', 'OK', 'AUTH_SUCCESS', 'ERR busy: retry'])
    expect(socket.closed?.code).toBe(CLOSE_GOING_AWAY)
    expect(batcher.frames).toHaveLength(0) // the held frame was not taken
  })

  it('on shutdown answers what is owed, frames arriving meanwhile get ERR busy: retry, then 1001', async () => {
    const { socket, batcher, session } = start()
    session.onFrame('$AUTH t')
    session.onFrame('a v=1 1')
    const shutdown = session.shutdown()
    session.onFrame('late v=1 1')
    expect(socket.closed).toBeUndefined()
    batcher.ackAll(new SinkError('not made durable before the shutdown deadline', true))
    await shutdown
    expect(socket.sent).toEqual(['AUTH_SUCCESS', 'ERR busy: retry', 'ERR busy: retry'])
    expect(socket.closed?.code).toBe(CLOSE_GOING_AWAY)
  })

  it('revoke() answers what is owed, then AUTH_EXPIRED and 4401; a late ack changes nothing', () => {
    const { socket, batcher, session } = start()
    session.onFrame('$AUTH t')
    session.onFrame('a v=1 1')
    session.revoke()
    expect(socket.closed).toBeUndefined()
    session.onFrame('late v=1 1')
    batcher.ackAll()
    expect(socket.sent).toEqual(['AUTH_SUCCESS', 'OK', 'AUTH_EXPIRED', 'ERR busy: retry'])
    expect(socket.closed).toEqual({ code: CLOSE_AUTH, reason: 'token revoked' })
    session.revoke() // twice: nothing more
    expect(socket.sent).toHaveLength(4)
  })

  it('revoke() before AUTH_SUCCESS does nothing', () => {
    const { socket, session } = start()
    session.revoke()
    expect(socket.sent).toEqual([])
    expect(socket.closed).toBeUndefined()
  })

  it('sends AUTH_EXPIRED and closes 4401 when the token lapses (an injected clock, no real wait)', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    let nowMs = 0
    const expMs = 60_000
    const { socket, session } = start({
      authenticate: () => identity('ann', expMs / 1000),
      msUntilExpiry: (exp) => exp * 1000 - nowMs,
    })
    session.onFrame('$AUTH t')
    nowMs = 59_999
    vi.advanceTimersByTime(59_999)
    expect(socket.closed).toBeUndefined()
    nowMs = 60_000
    vi.advanceTimersByTime(1)
    expect(socket.sent).toEqual(['AUTH_SUCCESS', 'AUTH_EXPIRED'])
    expect(socket.closed?.code).toBe(CLOSE_AUTH)
  })

  it('pauses at maxPendingFrames owed replies and resumes below half of it', () => {
    const { socket, batcher, session } = start({ maxPendingFrames: 4 })
    session.onFrame('$AUTH t')
    for (let i = 0; i < 4; i++) session.onFrame(`m v=${i} 1`)
    expect(socket.paused).toBe(true)
    for (let i = 0; i < 2; i++) batcher.frames[i]?.ack(undefined)
    expect(socket.paused).toBe(true) // 2 owed: not below half
    batcher.frames[2]?.ack(undefined)
    expect(socket.paused).toBe(false)
  })
})
