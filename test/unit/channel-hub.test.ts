import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { InProcessBus } from '../../src/bus/in-process.js'
import type { ChannelSocket, DisconnectReason } from '../../src/channels/connection.js'
import { eventFrame } from '../../src/channels/events.js'
import { ChannelHub, type HubStats } from '../../src/channels/hub.js'
import type {
  Admission,
  ChannelLog,
  LoggedEvent,
  Member,
  PresenceChange,
  PresenceDirectory,
  ReadSinceResult,
} from '../../src/channels/types.js'

// The hub with fake sockets, log and presence; the real in-process bus carries typing.

class FakeSocket implements ChannelSocket {
  readonly buffers: Buffer[] = []
  bufferedAmount = 0
  closed: { code: number; reason: string } | undefined
  terminated = false
  pings = 0
  send(data: Buffer): void {
    this.buffers.push(data)
  }
  close(code: number, reason: string): void {
    this.closed = { code, reason }
  }
  terminate(): void {
    this.terminated = true
  }
  ping(): void {
    this.pings++
  }
  get frames(): any[] {
    return this.buffers.map((b) => JSON.parse(b.toString()))
  }
  types(): string[] {
    return this.frames.map((f) => f.type)
  }
  ofType(type: string): any[] {
    return this.frames.filter((f) => f.type === type)
  }
}

class FakeLog implements ChannelLog {
  readonly kind = 'memory' as const
  onEvent: ((e: LoggedEvent) => void) | undefined
  pos = 100
  reads: Array<{ since: number; resolve: (r: ReadSinceResult) => void; reject: (e: unknown) => void }> = []
  async start(onEvent: (e: LoggedEvent) => void) {
    this.onEvent = onEvent
  }
  async append(): Promise<LoggedEvent> {
    throw new Error('not used')
  }
  position() {
    return this.pos
  }
  readSince(_channelId: string, since: number): Promise<ReadSinceResult> {
    return new Promise((resolve, reject) => this.reads.push({ since, resolve, reject }))
  }
  status() {
    return { status: 'up' as const, kind: this.kind }
  }
  async close() {}
  /** Delivers an event as the log would. */
  emit(channelId: string, offset: number, data: unknown = offset): LoggedEvent {
    const logged = loggedEvent(channelId, offset, data)
    this.pos = Math.max(this.pos, offset)
    this.onEvent?.(logged)
    return logged
  }
}

function loggedEvent(channelId: string, offset: number, data: unknown = offset): LoggedEvent {
  const e = { type: 'message:created', channelId, timestamp: 1, data, offset }
  return { ...e, frame: eventFrame(e) }
}

class FakePresence implements PresenceDirectory {
  readonly kind = 'kv' as const
  remote = new Map<string, Member[]>()
  announced: Array<[string, string]> = []
  withdrawn: Array<[string, string]> = []
  listener: ((c: string, m: Member, change: PresenceChange) => void) | undefined
  async start() {}
  announce(channelId: string, m: Member) {
    this.announced.push([channelId, m.user_id])
  }
  withdraw(channelId: string, userId: string) {
    this.withdrawn.push([channelId, userId])
  }
  remoteMembers(channelId: string) {
    return this.remote.get(channelId) ?? []
  }
  remoteHas(channelId: string, userId: string) {
    return this.remoteMembers(channelId).some((m) => m.user_id === userId)
  }
  onRemoteChange(l: (c: string, m: Member, change: PresenceChange) => void) {
    this.listener = l
  }
  async close() {}
  /** Another instance's member appears or goes. */
  change(channelId: string, m: Member, change: PresenceChange) {
    const list = this.remoteMembers(channelId).filter((x) => x.user_id !== m.user_id)
    this.remote.set(channelId, change === 'join' ? [...list, m] : list)
    this.listener?.(channelId, m, change)
  }
}

const member = (id: string): Member => ({ user_id: id, name: `name-${id}` })
const admission = (userId: string, channelId = 'c', since?: number, exp = Math.floor(Date.now() / 1000) + 3600): Admission => ({
  principal: { member: member(userId), org: '', orgId: '', exp, source: 'stream' },
  channelId,
  since,
})
const flush = () => new Promise((r) => setImmediate(r))

describe('ChannelHub', () => {
  let log: FakeLog
  let presence: FakePresence
  let bus: InProcessBus
  let hub: ChannelHub
  let now: number
  let disconnects: DisconnectReason[]
  let recoveries: string[]
  const limits = { maxBufferedBytes: 1000, maxClientFrameBytes: 200, clientFramesPerS: 3, pingIntervalMs: 60_000 }

  const open = (userId: string, channelId = 'c', since?: number) => {
    const socket = new FakeSocket()
    const conn = hub.open(socket, admission(userId, channelId, since), '127.0.0.1')
    return { socket, conn }
  }
  const frame = (obj: unknown) => Buffer.from(JSON.stringify(obj))

  beforeEach(async () => {
    log = new FakeLog()
    presence = new FakePresence()
    bus = new InProcessBus()
    now = 1_000_000
    disconnects = []
    recoveries = []
    const stats: HubStats = {
      opened() {},
      closed() {},
      eventIn() {},
      framesOut() {},
      recovery: (r) => recoveries.push(r),
      disconnect: (r) => disconnects.push(r),
    }
    hub = new ChannelHub({ log, presence, bus, limits, msUntilExpiry: (exp) => exp * 1000 - Date.now(), logger: { debug() {}, warn() {} }, stats, now: () => now })
    await hub.start()
  })
  afterEach(async () => {
    await hub.close()
    await bus.close()
  })

  it('sends presence:state first with local and remote members once each, the joiner included, and the offset', () => {
    presence.remote.set('c', [member('r1'), member('a')])
    open('a')
    const { socket } = open('b')
    const [state] = socket.frames
    expect(state).toEqual({ type: 'presence:state', channelId: 'c', timestamp: now, offset: 100, data: { members: [member('a'), member('b'), member('r1')] } })
    expect(hub.memberCount()).toBe(3)
  })

  it('announces a user on the first connection and tells the others of a join only when the user was not present', () => {
    const a = open('a')
    open('b')
    open('b')
    expect(presence.announced).toEqual([
      ['c', 'a'],
      ['c', 'b'],
    ])
    expect(a.socket.ofType('presence:join').map((f) => f.data)).toEqual([member('b')])
    // Present on another instance already: no join, but announced here.
    presence.remote.set('c', [member('r')])
    open('r')
    expect(a.socket.ofType('presence:join')).toHaveLength(1)
    expect(presence.announced.at(-1)).toEqual(['c', 'r'])
  })

  it('withdraws after the last local connection, and sends a leave unless the user is still present elsewhere', () => {
    const a = open('a')
    const b1 = open('b')
    const b2 = open('b')
    hub.closed(b1.conn)
    expect(a.socket.ofType('presence:leave')).toEqual([])
    expect(presence.withdrawn).toEqual([])
    hub.closed(b2.conn)
    hub.closed(b2.conn)
    expect(presence.withdrawn).toEqual([['c', 'b']])
    expect(a.socket.ofType('presence:leave').map((f) => f.data)).toEqual([member('b')])
    presence.remote.set('c', [member('r')])
    const r = open('r')
    hub.closed(r.conn)
    expect(a.socket.ofType('presence:leave')).toHaveLength(1)
    expect(hub.connectionsOf('b')).toBe(0)
  })

  it('passes remote joins and leaves to local connections, except for users with connections here', () => {
    const a = open('a')
    presence.change('c', member('r'), 'join')
    presence.change('c', member('a'), 'join')
    presence.change('other', member('x'), 'join')
    presence.change('c', member('r'), 'leave')
    expect(a.socket.types()).toEqual(['presence:state', 'presence:join', 'presence:leave'])
    expect(a.socket.frames[1].data).toEqual(member('r'))
  })

  it('sends each logged event once to every connection of its channel, one buffer for all', () => {
    const a = open('a')
    const b = open('b')
    const other = open('x', 'elsewhere')
    log.emit('c', 101)
    log.emit('c', 101)
    log.emit('c', 102)
    const eventsOf = (s: FakeSocket) => s.ofType('message:created').map((f) => f.offset)
    expect(eventsOf(a.socket)).toEqual([101, 102])
    expect(eventsOf(b.socket)).toEqual([101, 102])
    expect(eventsOf(other.socket)).toEqual([])
    expect(a.socket.buffers.at(-1)).toBe(b.socket.buffers.at(-1))
  })

  it('does not send events at or below the offset of the join', () => {
    log.pos = 200
    const a = open('a')
    log.emit('c', 150)
    log.emit('c', 201)
    expect(a.socket.ofType('message:created').map((f) => f.offset)).toEqual([201])
  })

  it('recovers: missed events, then the live ones held meanwhile, no gap and no duplicate', async () => {
    const a = open('a', 'c', 90)
    expect(log.reads.map((r) => r.since)).toEqual([90])
    // Live while the history is read: held.
    log.emit('c', 101)
    log.emit('c', 102)
    expect(a.socket.types()).toEqual(['presence:state'])
    log.reads[0]?.resolve({ ok: true, events: [95, 100, 101].map((o) => loggedEvent('c', o)) })
    await flush()
    log.emit('c', 103)
    expect(a.socket.ofType('message:created').map((f) => f.offset)).toEqual([95, 100, 101, 102, 103])
    expect(recoveries).toEqual(['recovered'])
  })

  it('sends recovery:failed when the history does not reach back, then live events from the join', async () => {
    const a = open('a', 'c', 10)
    log.emit('c', 101)
    log.reads[0]?.resolve({ ok: false, reason: 'expired' })
    await flush()
    expect(a.socket.frames.slice(1).map((f) => [f.type, f.offset ?? f.data])).toEqual([
      ['recovery:failed', { since: 10, reason: 'expired' }],
      ['message:created', 101],
    ])
    const b = open('b', 'c', 10)
    log.reads[1]?.reject(new Error('down'))
    await flush()
    expect(b.socket.ofType('recovery:failed')[0].data).toEqual({ since: 10, reason: 'unavailable' })
    expect(recoveries).toEqual(['failed', 'failed'])
  })

  it('relays typing through the bus to the others, never to the sender’s own connections', async () => {
    const a = open('a')
    const b1 = open('b')
    const b2 = open('b')
    hub.onFrame(b1.conn, frame({ type: 'typing:start', channelId: 'c' }))
    await flush()
    expect(a.socket.ofType('typing:start')).toEqual([{ type: 'typing:start', channelId: 'c', timestamp: now, data: member('b') }])
    expect(b1.socket.ofType('typing:start')).toEqual([])
    expect(b2.socket.ofType('typing:start')).toEqual([])
  })

  it('drops a typing message from the bus that is not one', async () => {
    const a = open('a')
    bus.publish('mc.typing.c', Buffer.from('not json'))
    bus.publish('mc.typing.c', Buffer.from(JSON.stringify({ type: 'typing:start', channelId: 'other', timestamp: 1, data: member('x') })))
    bus.publish('mc.typing.c', Buffer.from(JSON.stringify({ type: 'typing:start', channelId: 'c', timestamp: 1, data: 'x' })))
    await flush()
    expect(a.socket.types()).toEqual(['presence:state'])
  })

  it('answers bad frames and frames over the budget with an error frame, and stays open', async () => {
    const a = open('a')
    hub.onFrame(a.conn, Buffer.from('{'))
    hub.onFrame(a.conn, Buffer.from('x'.repeat(201)))
    hub.onFrame(a.conn, frame({ type: 'typing:start' }))
    // Budget of 3 per second: the fourth in the same second is refused, the next second's taken.
    hub.onFrame(a.conn, frame({ type: 'typing:start' }))
    now += 1000
    hub.onFrame(a.conn, frame({ type: 'typing:start' }))
    const errors = a.socket.ofType('error').map((f) => f.data.message)
    expect(errors).toEqual(['frame is not JSON', 'frame is larger than 200 bytes', 'more than 3 frames per second'])
    expect(a.socket.closed).toBeUndefined()
    expect(a.conn.framesReceived).toBe(5)
  })

  it('cuts off a slow consumer with 1008, sends it nothing more, and counts it gone', () => {
    const slow = open('slow')
    const b = open('b')
    slow.socket.bufferedAmount = limits.maxBufferedBytes + 1
    log.emit('c', 101)
    expect(slow.socket.closed).toEqual({ code: 1008, reason: 'slow consumer' })
    log.emit('c', 102)
    expect(slow.socket.ofType('message:created').map((f) => f.offset)).toEqual([101])
    expect(disconnects).toEqual(['slow_consumer'])
    expect([...hub.sessions()]).toEqual([b.conn])
    expect(b.socket.ofType('presence:leave').map((f) => f.data)).toEqual([member('slow')])
  })

  it('cuts off a client whose held events pass the cap while it recovers', () => {
    const a = open('a', 'c', 10)
    log.emit('c', 101, 'x'.repeat(limits.maxBufferedBytes))
    expect(a.socket.closed?.code).toBe(1008)
  })

  it('shuts down: withdraws every member, closes every connection with 1001, tells no one of leaves', () => {
    const a = open('a')
    const b = open('b', 'd')
    hub.shutdown()
    expect(presence.withdrawn).toEqual([
      ['c', 'a'],
      ['d', 'b'],
    ])
    expect(a.socket.closed).toEqual({ code: 1001, reason: 'server shutting down' })
    expect(b.socket.closed?.code).toBe(1001)
    expect(a.socket.ofType('presence:leave')).toEqual([])
    expect(hub.ready).toBe(false)
  })
})

describe('ChannelConnection health', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  const hubWith = (stats: Partial<HubStats>) =>
    new ChannelHub({
      log: new FakeLog(),
      presence: new FakePresence(),
      bus: new InProcessBus(),
      limits: { maxBufferedBytes: 1000, maxClientFrameBytes: 200, clientFramesPerS: 3, pingIntervalMs: 60_000 },
      msUntilExpiry: (exp) => exp * 1000 - Date.now(),
      logger: { debug() {}, warn() {} },
      stats: { opened() {}, closed() {}, eventIn() {}, framesOut() {}, recovery() {}, disconnect() {}, ...stats },
    })

  it('pings, and terminates a client after two pings without a pong', () => {
    const reasons: string[] = []
    const hub = hubWith({ disconnect: (r) => reasons.push(r) })
    const live = new FakeSocket()
    const dead = new FakeSocket()
    const liveConn = hub.open(live, admission('a'), '')
    const deadConn = hub.open(dead, admission('b'), '')
    for (let i = 0; i < 3; i++) {
      liveConn.checkHealth()
      deadConn.checkHealth()
      liveConn.onPong()
    }
    expect(dead.pings).toBe(2)
    expect(dead.terminated).toBe(true)
    expect(live.pings).toBe(3)
    expect(live.terminated).toBe(false)
    expect(reasons).toEqual(['ping_timeout'])
    expect([...hub.sessions()]).toEqual([liveConn])
  })

  it('closes with 4401 when the token expires', () => {
    vi.useFakeTimers()
    const reasons: string[] = []
    const hub = hubWith({ disconnect: (r) => reasons.push(r) })
    const socket = new FakeSocket()
    hub.open(socket, admission('a', 'c', undefined, Math.floor(Date.now() / 1000) + 10), '')
    vi.advanceTimersByTime(5_000)
    expect(socket.closed).toBeUndefined()
    vi.advanceTimersByTime(6_000)
    expect(socket.closed).toEqual({ code: 4401, reason: 'token expired' })
    expect(reasons).toEqual(['token_expired'])
  })
})
