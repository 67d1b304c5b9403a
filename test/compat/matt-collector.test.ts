/**
 * The Matt Collector README (../shared/seeds/000_dee237ce67952e14.txt), its client-facing
 * examples run as written: `/health`, `/mock-auth` with curl, the `/time-series` protocol,
 * the JavaScript client (with `ws` as the browser's WebSocket), the Go client's frames and
 * the tagging example. Substitutions (docs/MIGRATING.md): host and port; the placeholder
 * tokens by real ones (a backend token signed with JWT_SECRET, a stream token from /mock-auth).
 */
import jwt from 'jsonwebtoken'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { TEST_SECRET, startTestApp, type TestApp } from '../helpers/app.js'
import { RecordingSink } from '../helpers/recording-sink.js'
import { waitUntil } from '../helpers/wait.js'
import { TestClient } from '../helpers/ws-client.js'
import { codeBlocks, curl, httpBlockAsCurl, onlyBlock, readSeed, rebase, requireBinary, runBrowserSnippet, section, withoutAnnotations } from './seed-examples.js'

const seed = readSeed('000_dee237ce67952e14.txt')
const hasCurl = seed !== undefined && (await requireBinary('curl', 'curl'))

/** `{ userId: string, email: string, iat: number, exp: number }` as the README states it. */
function backendTokenKeys(text: string): string[] {
  const m = /Token structure: `\{([^}]*)\}`/.exec(text)
  if (m === null) throw new Error('no backend token structure in the seed')
  return (m[1] as string).split(',').map((pair) => (pair.split(':')[0] as string).trim())
}

describe.skipIf(!hasCurl)('Matt Collector README examples', () => {
  const text = seed as string
  const health = section(text, '### Health Check')
  const mockAuth = section(text, '### Mock Authentication')
  const timeSeries = section(text, '### Time Series WebSocket')
  const howItWorks = section(text, '## How It Works')
  /** The request body of the README, its `// …` annotation removed (JSON has no comments). */
  const mockAuthText = withoutAnnotations(codeBlocks(mockAuth).filter((b) => b.lang === 'json')[0]?.code ?? '')
  const mockAuthBody = JSON.parse(mockAuthText) as Record<string, string>

  let t: TestApp
  let sink: RecordingSink

  /** A token as mattpm-backend makes it: the README's claims (iat and exp added by signing). */
  const backendToken = (userId: string): string => {
    const keys = backendTokenKeys(mockAuth)
    expect(keys).toEqual(['userId', 'email', 'iat', 'exp'])
    return jwt.sign({ userId, email: 'john.doe@example.com' }, TEST_SECRET, { expiresIn: 600 })
  }

  /**
   * The README's /mock-auth request, run with curl: its body text (or `body`), with
   * `token` (default: a backend token of the body's user_id; null: no Authorization).
   */
  const mockAuthCurl = (body?: Record<string, string>, token: string | null = backendToken((body ?? mockAuthBody).user_id as string)) => {
    const block = onlyBlock(mockAuth, 'http')
    const words = httpBlockAsCurl(token === null ? block.replace(/^Authorization:.*\n/m, '') : block, t.url, {
      headers: token === null ? {} : { Authorization: `Bearer ${token}` },
      body: body === undefined ? mockAuthText : JSON.stringify(body),
    })
    return curl(words)
  }

  /** A stream token from /mock-auth, for `body`. */
  const streamToken = async (body: Record<string, string> = mockAuthBody): Promise<string> => {
    const res = await mockAuthCurl(body, backendToken(body.user_id as string))
    expect(res.status, res.body).toBe(200)
    return res.json.token
  }

  beforeAll(async () => {
    sink = new RecordingSink()
    t = await startTestApp({ MQTT_ENABLED: 'false' }, { sink })
  })
  afterAll(async () => {
    await t?.close()
  })
  beforeEach(() => {
    sink.writes.length = 0
  })

  it('GET /health answers the README\'s response exactly', async () => {
    const res = await curl(httpBlockAsCurl(onlyBlock(health, 'http'), t.url))
    expect(res.status).toBe(200)
    expect(res.body).toBe(JSON.stringify(JSON.parse(onlyBlock(health, 'json'))))
    expect(res.body).toBe('{"status":"ok"}')
  })

  it('POST /mock-auth with the README\'s request and a backend token answers {"token"}, a stream token for that body', async () => {
    const res = await mockAuthCurl()
    expect(res.status, res.body).toBe(200)
    const shown = JSON.parse(codeBlocks(mockAuth).filter((b) => b.lang === 'json')[1]?.code as string)
    expect(Object.keys(res.json)).toEqual(Object.keys(shown))
    // The README's token starts with the header every HS256 JWT of jsonwebtoken has.
    const header = (shown.token as string).split('.')[0] as string
    expect((res.json.token as string).split('.')[0]).toBe(header)
    const claims = jwt.verify(res.json.token, TEST_SECRET) as Record<string, unknown>
    expect(claims).toMatchObject({ ...mockAuthBody, type: 'stream' })
  })

  it('POST /mock-auth refuses a user_id other than the backend token\'s (the README\'s security rule)', async () => {
    const res = await mockAuthCurl({ ...mockAuthBody, user_id: '999' }, backendToken(mockAuthBody.user_id as string))
    expect(res.status, res.body).toBe(403)
    expect(res.json.error).toBe('user_mismatch')
  })

  it('POST /mock-auth is protected: without a backend token it answers 401', async () => {
    const res = await mockAuthCurl(undefined, null)
    expect(res.status, res.body).toBe(401)
  })

  it('speaks the README\'s /time-series protocol: $AUTH, AUTH_SUCCESS, a line, OK', async () => {
    const [endpoint, auth, authReply, line, ack] = codeBlocks(timeSeries).filter((b) => b.lang === '').map((b) => b.code.trim())
    expect(endpoint).toBe('ws://localhost:8080/time-series')
    expect(auth).toBe('$AUTH <jwt-token>')
    const client = await TestClient.connect(rebase(endpoint as string, t.wsUrl))
    try {
      client.send((auth as string).replace('<jwt-token>', await streamToken()))
      expect(await client.next()).toBe(authReply)
      client.send(line as string)
      expect(await client.next()).toBe(ack)
      expect(sink.lines).toEqual([(line as string).replace(' value=', ',user=John\\ Doe,org=Acme\\ Corp value=')])
    } finally {
      client.ws.terminate()
    }
  })

  it('runs the README\'s JavaScript client: AUTH_SUCCESS, then OK, and its line reaches the sink tagged with user and org', async () => {
    const js = onlyBlock(timeSeries, 'javascript')
    const token = await streamToken()
    const code = rebase(js, t.wsUrl).replace(/\$AUTH eyJ[\w.-]*\.\.\./, `$AUTH ${token}`)
    expect(code).toContain(token)
    const snippet = runBrowserSnippet(code)
    try {
      await waitUntil(() => snippet.logs.length >= 2, 20_000, 'the JavaScript client to log two replies')
      expect(snippet.logs).toEqual(['Server: AUTH_SUCCESS', 'Server: OK'])
      expect(sink.lines).toHaveLength(1)
      expect(sink.lines[0]).toMatch(/^temperature,location=room1,user=John\\ Doe,org=Acme\\ Corp value=23\.5 \d{19}$/)
    } finally {
      snippet.closeAll()
    }
  })

  it('answers the frames of the README\'s Go client as its comments expect (replayed with ws: no Go toolchain needed)', async () => {
    const go = onlyBlock(timeSeries, 'go')
    const url = /Dial\("([^"]+)"/.exec(go)?.[1]
    expect(url).toBe('ws://localhost:8080/time-series')
    // The client's steps in order: a frame it writes, or a reply it reads and prints.
    const steps: Array<{ send: string } | { expect: string }> = [
      ...go.matchAll(/WriteMessage\(websocket\.TextMessage, \[\]byte\("([^"]*)"\)\)|fmt\.Println\(string\(msg\)\) \/\/ "([^"]*)"/g),
    ].map((m) => (m[1] !== undefined ? { send: m[1] } : { expect: m[2] as string }))
    expect(steps).toEqual([
      { send: '$AUTH your-jwt-token-here' },
      { expect: 'AUTH_SUCCESS' },
      { send: 'temperature,location=room1 value=23.5' },
      { expect: 'OK' },
    ])
    const token = await streamToken()
    const client = await TestClient.connect(rebase(url as string, t.wsUrl))
    try {
      for (const step of steps) {
        if ('send' in step) client.send(step.send.replace('your-jwt-token-here', token))
        else expect(await client.next()).toBe(step.expect)
      }
    } finally {
      client.ws.terminate()
    }
    expect(sink.lines).toHaveLength(1)
  })

  it('tags a line as the README\'s example transformation shows', async () => {
    const example = codeBlocks(howItWorks).find((b) => b.code.includes('# Client sends:'))?.code as string
    const [sent, written] = example
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
    expect(sent).toBe('temperature,location=room1 value=23.5')
    // The user and org of the example, as /mock-auth would put them into a stream token.
    const user = /,user=([^,\s]+)/.exec(written as string)?.[1] as string
    const org = /,org=([^,\s]+)/.exec(written as string)?.[1] as string
    const client = await TestClient.connect(`${t.wsUrl}/time-series`)
    try {
      client.send(`$AUTH ${await streamToken({ ...mockAuthBody, user, org })}`)
      expect(await client.next()).toBe('AUTH_SUCCESS')
      client.send(sent as string)
      expect(await client.next()).toBe('OK')
    } finally {
      client.ws.terminate()
    }
    // The README's line, with the receive time the gateway adds to a line without one.
    expect(sink.lines).toHaveLength(1)
    expect(sink.lines[0]).toMatch(new RegExp(`^${escapeRegExp(written as string)} \\d{19}$`))
  })
})

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
