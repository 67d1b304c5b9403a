import { pathToFileURL } from 'node:url'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { REPO_ROOT } from '../helpers/process.js'

// The /admin page's pure modules (plain browser JavaScript, no DOM needed): formatting for
// people and the event-stream parser. Imported by URL: they are not part of the TypeScript
// project (tsconfig.admin.json checks them).
const pageModule = (name: string) => import(pathToFileURL(join(REPO_ROOT, 'src', 'admin', 'page', name)).href)

interface Format {
  formatCount(n: number | null): string
  formatRate(n: number | null, what?: string): string
  formatBytes(n: number | null): string
  formatMs(n: number | null): string
  formatDuration(s: number | null): string
  formatAgo(at: string | number | null, now: number): string
  niceCeiling(max: number): number
  plural(n: number, one: string, many?: string): string
}
interface SseEvent {
  event: string
  data: string
  id: string | undefined
}
interface Sse {
  SseParser: new () => { push(text: string): SseEvent[]; comments: number }
}

const f = (await pageModule('format.js')) as Format
const { SseParser } = (await pageModule('sse.js')) as Sse

describe('numbers for people', () => {
  it('counts with k and M', () => {
    expect(f.formatCount(0)).toBe('0')
    expect(f.formatCount(0.25)).toBe('0.25')
    expect(f.formatCount(7.5)).toBe('7.5')
    expect(f.formatCount(950)).toBe('950')
    expect(f.formatCount(12_400)).toBe('12.4k')
    expect(f.formatCount(123_456)).toBe('123k')
    expect(f.formatCount(999_960)).toBe('1M')
    expect(f.formatCount(3_100_000)).toBe('3.1M')
    expect(f.formatCount(null)).toBe('—')
    expect(f.formatRate(12_400)).toBe('12.4k lines/s')
  })

  it('bytes in decimal units', () => {
    expect(f.formatBytes(0)).toBe('0 B')
    expect(f.formatBytes(999)).toBe('999 B')
    expect(f.formatBytes(1_234_567)).toBe('1.2 MB')
    expect(f.formatBytes(5_000_000_000)).toBe('5 GB')
  })

  it('times: durations, ago, milliseconds', () => {
    const now = Date.parse('2026-12-02T08:00:00Z')
    expect(f.formatAgo('2026-12-02T07:57:00Z', now)).toBe('3 min ago')
    expect(f.formatAgo(now - 2000, now)).toBe('just now')
    expect(f.formatAgo(now - 42_000, now)).toBe('42 s ago')
    expect(f.formatAgo(now - 5 * 3600_000, now)).toBe('5 h ago')
    expect(f.formatAgo(now - 3 * 86400_000, now)).toBe('3 d ago')
    expect(f.formatAgo(null, now)).toBe('never')
    expect(f.formatDuration(42)).toBe('42 s')
    expect(f.formatDuration(900)).toBe('15 min')
    expect(f.formatDuration(3720)).toBe('1 h 2 min')
    expect(f.formatDuration(200_000)).toBe('2 d 7 h')
    expect(f.formatMs(4.2)).toBe('4 ms')
    expect(f.formatMs(0.5)).toBe('0.5 ms')
    expect(f.formatMs(1234)).toBe('1.2 s')
    expect(f.formatMs(null)).toBe('—')
  })

  it('a chart top of 1, 2, 2.5 or 5 times a power of ten; plurals', () => {
    expect(f.niceCeiling(0)).toBe(1)
    expect(f.niceCeiling(0.3)).toBe(0.5)
    expect(f.niceCeiling(14_000)).toBe(20_000)
    expect(f.niceCeiling(2100)).toBe(2500)
    expect(f.niceCeiling(5000)).toBe(5000)
    expect(f.plural(1, 'line')).toBe('1 line')
    expect(f.plural(12_400, 'line')).toBe('12.4k lines')
    expect(f.plural(2, 'batch', 'batches')).toBe('2 batches')
  })
})

describe('the event-stream parser', () => {
  it('reads events split anywhere across chunks, with CRLF, multi-line data and comments', () => {
    const p = new SseParser()
    const text = ': ping\r\nevent: snapshot\r\ndata: {"a":\r\ndata: 1}\r\n\r\n: ping\n\nevent: error\ndata: {"id":"7"}\nid: 7\n\ndata:plain\n\n'
    const events: SseEvent[] = []
    // One character at a time: every split point, a CR apart from its LF included.
    for (const ch of text) events.push(...p.push(ch))
    expect(events).toEqual([
      { event: 'snapshot', data: '{"a":\n1}', id: undefined },
      { event: 'error', data: '{"id":"7"}', id: '7' },
      { event: 'message', data: 'plain', id: '7' },
    ])
    expect(p.comments).toBe(2)
  })

  it('holds an event until its blank line', () => {
    const p = new SseParser()
    expect(p.push('event: expired\ndata: {}\n')).toEqual([])
    expect(p.push('\n')).toEqual([{ event: 'expired', data: '{}', id: undefined }])
  })
})

interface AuthModule {
  Auth: new (
    apiBase: URL,
    onEnded: (why: string) => void,
  ) => { token: string | undefined; login(u: string, p: string): Promise<unknown>; renew(): Promise<string>; logout(): void }
}
const { Auth } = (await pageModule('auth.js')) as AuthModule

describe('the page keeps its session through a refresh the gateway cannot answer now', () => {
  const tokens = (n: number) => ({
    token: `access-${n}`,
    refresh_token: `refresh-${n}`,
    expires_at: new Date(Date.now() + 900_000).toISOString(),
    user: { id: 'u1', username: 'admin', email: 'a@example.com', role: 'admin' },
  })
  const answer = (status: number, body: unknown = { error: 'x', message: 'x' }) =>
    new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })

  it('stays logged in on 429, 503 and 500, and ends only when the refresh is refused', async () => {
    vi.useFakeTimers()
    const answers: Response[] = [answer(200, tokens(1))]
    const sent: string[] = []
    vi.stubGlobal('fetch', async (url: URL) => {
      sent.push(url.pathname)
      return answers.shift() ?? answer(599)
    })
    try {
      const ended: string[] = []
      const auth = new Auth(new URL('http://127.0.0.1/api/v1/'), (why) => ended.push(why))
      await auth.login('admin', 'pw')
      for (const status of [429, 503, 500]) {
        answers.push(answer(status))
        await expect(auth.renew()).rejects.toThrow(`HTTP ${status}`)
        expect(auth.token).toBe('access-1')
      }
      expect(ended).toEqual([])
      answers.push(answer(200, tokens(2)))
      await expect(auth.renew()).resolves.toBe('access-2')
      answers.push(answer(401))
      await expect(auth.renew()).rejects.toThrow('HTTP 401')
      expect(auth.token).toBeUndefined()
      expect(ended).toEqual(['your session ended: log in again'])
      expect(sent).toEqual(['/api/v1/auth/login', ...Array(5).fill('/api/v1/auth/refresh')])
      auth.logout()
    } finally {
      vi.unstubAllGlobals()
      vi.useRealTimers()
    }
  })
})
