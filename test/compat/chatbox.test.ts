import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { afterEach, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { ChannelClient, streamToken } from '../helpers/channels.js'
import { runGatewayExpectingFailure } from '../helpers/process.js'
import { oneBlock, readSeed, runShell, substitute } from './ws-server-examples.js'

// The Chatbox service's README (seed 003): the parts the gateway took over (health probes,
// metrics, the path prefix, the WebSocket endpoint's place) run as the README prints them,
// with the gateway's host and port. AI chat, uploads, voice, MongoDB and notifications are not
// the gateway's; docs/MIGRATING.md lists them and every change made here.
const seed = readSeed('003_1bf1c750f362b576.txt')
const text = seed ?? ''

let apps: TestApp[] = []
afterEach(async () => {
  await Promise.all(apps.map((a) => a.close()))
  apps = []
})

async function gateway(env: Record<string, string>, logs?: string[]): Promise<TestApp> {
  const t = await startTestApp(env, logs ? { logger: { level: 'warn', stream: { write: (l: string) => logs.push(l) } } } : {})
  apps.push(t)
  return t
}

/** The gateway's http://127.0.0.1:<port>, for the README's http://localhost:8080. */
const origin = (t: TestApp) => t.url.slice(0, t.url.length - t.config.pathPrefix.length)

/** `curl -s <url>` with the README's host and port replaced: what the user sees, and the status. */
async function curl(t: TestApp, url: string): Promise<{ body: string; status: string }> {
  const r = await runShell(`curl -s -w '\\n%{http_code}' '${substitute(url, /^(ws|http):\/\/localhost:8080/, origin(t))}'`)
  expect(r.code, r.stderr).toBe(0)
  const cut = r.stdout.lastIndexOf('\n')
  return { body: r.stdout.slice(0, cut), status: r.stdout.slice(cut + 1) }
}

/** A `/ws` client at the README's WebSocket URL: the gateway's channel protocol wants a token and a channel. */
async function joinAt(t: TestApp, url: string): Promise<ChannelClient> {
  const wsOrigin = origin(t).replace(/^http/, 'ws')
  const base = substitute(url, 'ws://localhost:8080', wsOrigin)
  expect(base.endsWith('/ws')).toBe(true)
  return ChannelClient.joined(base.slice(0, -'/ws'.length), { token: streamToken({ id: 'chat-user' }), channelId: 'support' })
}

/** `# - Health: http://…` lines of a block: name → URL. */
function commentedUrls(code: string): Map<string, string> {
  return new Map([...code.matchAll(/^#\s*-?\s*(\w+): ((?:ws|http):\/\/\S+)$/gm)].map((m) => [m[1] as string, m[2] as string]))
}

describe.skipIf(seed === undefined)('Chatbox README: the access points of its docker compose', () => {
  const block = () => oneBlock(text, 'the access points', (b) => b.code.includes('# Access points:')).code

  it('Health at {prefix}/healthz answers 200 {"status":"ok"}', async () => {
    const urls = commentedUrls(block())
    expect([...urls.keys()]).toEqual(['WebSocket', 'Health', 'Metrics'])
    const t = await gateway({ PATH_PREFIX: '/chat' })
    const health = await curl(t, urls.get('Health') as string)
    expect(health).toEqual({ status: '200', body: '{"status":"ok"}' })
  })

  it('Metrics are under the prefix too: {prefix}/metrics, not /metrics', async () => {
    const t = await gateway({ PATH_PREFIX: '/chat' })
    const printed = commentedUrls(block()).get('Metrics') as string
    expect(printed).toBe('http://localhost:8080/metrics')
    expect((await curl(t, printed)).status).toBe('404')
    const prefixed = await curl(t, printed.replace('/metrics', '/chat/metrics'))
    expect(prefixed.status).toBe('200')
    expect(prefixed.body).toMatch(/^# HELP mc_/m)
    expect(prefixed.body).toContain('mc_ws_connections')
  })

  it("the WebSocket at {prefix}/ws is the gateway's /ws (channels: a token and a channelId)", async () => {
    const t = await gateway({ PATH_PREFIX: '/chat' })
    const c = await joinAt(t, commentedUrls(block()).get('WebSocket') as string)
    try {
      expect(c.frames[0]).toMatchObject({ type: 'presence:state', channelId: 'support' })
    } finally {
      c.close()
    }
  })
})

describe.skipIf(seed === undefined)('Chatbox README: routes under the path prefix', () => {
  const routes = () => oneBlock(text, 'the routes affected', (b) => b.code.includes('{path_prefix}/healthz')).code

  it('{path_prefix}/healthz and {path_prefix}/readyz answer under PATH_PREFIX=/chatbox (the Chatbox default), not at the root', async () => {
    const listed = [...routes().matchAll(/^\{path_prefix\}(\S+)/gm)].map((m) => m[1])
    expect(listed).toEqual(['/ws', '/sessions', '/admin/*', '/healthz', '/readyz'])
    const t = await gateway({ PATH_PREFIX: '/chatbox' })
    expect(await curl(t, 'http://localhost:8080/chatbox/healthz')).toEqual({ status: '200', body: '{"status":"ok"}' })
    const ready = await curl(t, 'http://localhost:8080/chatbox/readyz')
    expect(ready.status).toBe('200')
    expect(JSON.parse(ready.body)).toMatchObject({ status: 'ok', components: { database: { status: 'up' }, sink: { status: 'up' } } })
    expect((await curl(t, 'http://localhost:8080/healthz')).status).toBe('404')
    expect((await curl(t, 'http://localhost:8080/readyz')).status).toBe('404')
  })

  it('{path_prefix}/admin/* is the gateway\'s admin dashboard: {prefix}/admin answers its page', async () => {
    const t = await gateway({ PATH_PREFIX: '/chatbox' })
    const page = await curl(t, 'http://localhost:8080/chatbox/admin')
    expect(page.status).toBe('200')
    expect(page.body).toMatch(/<html/i)
  })

  it('every example prefix: its Health URL answers and its WebSocket URL upgrades, with PATH_PREFIX set to it', async () => {
    const block = oneBlock(text, 'the prefix examples', (b) => b.lang === 'bash' && b.code.includes('CHATBOX_PATH_PREFIX="/chatbox"')).code
    const examples = block.split(/\n(?=#[^\n]*\nCHATBOX_PATH_PREFIX=)/)
    const parsed = examples.map((e) => ({ prefix: /^CHATBOX_PATH_PREFIX="([^"]+)"$/m.exec(e)?.[1], urls: commentedUrls(e) }))
    expect(parsed.map((p) => p.prefix)).toEqual(['/chatbox', '/api/v1/chat', '/services/chat'])
    for (const { prefix, urls } of parsed) {
      // The variable is PATH_PREFIX now (the old name only gets a warning: see below).
      const t = await gateway({ PATH_PREFIX: prefix as string })
      expect(await curl(t, urls.get('Health') as string), `${prefix} health`).toEqual({ status: '200', body: '{"status":"ok"}' })
      const c = await joinAt(t, urls.get('WebSocket') as string)
      c.close()
    }
  })
})

describe.skipIf(seed === undefined)('Chatbox README: its configuration carried over', () => {
  const configMap = () => parseYaml(oneBlock(text, 'the ConfigMap', (b) => b.lang === 'yaml' && b.code.includes('kind: ConfigMap')).code)

  it('the ConfigMap as printed: the gateway starts, warns that CHATBOX_PATH_PREFIX is not read naming PATH_PREFIX, and has no prefix', async () => {
    const cm = configMap()
    expect(cm.data).toEqual({ CHATBOX_PATH_PREFIX: '/api/chat' })
    const logs: string[] = []
    const t = await gateway(cm.data, logs)
    const warnings = logs.map((l) => JSON.parse(l)).filter((l) => l.variable === 'CHATBOX_PATH_PREFIX')
    expect(warnings).toEqual([
      expect.objectContaining({
        level: 40,
        variable: 'CHATBOX_PATH_PREFIX',
        replacement: 'PATH_PREFIX',
        msg: 'CHATBOX_PATH_PREFIX is not read by this gateway: the prefix of every route is PATH_PREFIX (no trailing "/"; empty by default, not /chatbox); set PATH_PREFIX=/api/chat instead',
      }),
    ])
    expect(t.config.pathPrefix).toBe('')
    expect((await curl(t, 'http://localhost:8080/healthz')).status).toBe('200')
    expect((await curl(t, 'http://localhost:8080/api/chat/healthz')).status).toBe('404')
  })

  it('the ConfigMap with its key renamed to PATH_PREFIX: the routes move under it, and nothing is warned', async () => {
    const data = configMap().data as Record<string, string>
    const logs: string[] = []
    const t = await gateway({ PATH_PREFIX: data.CHATBOX_PATH_PREFIX as string }, logs)
    expect(logs.filter((l) => l.includes('is not read by this gateway'))).toEqual([])
    expect(await curl(t, 'http://localhost:8080/api/chat/healthz')).toEqual({ status: '200', body: '{"status":"ok"}' })
  })

  it('an invalid prefix stops the start-up with a clear message (exit 78); an empty one is no prefix', async () => {
    expect(text).toContain('Invalid configuration causes startup failure with clear error message')
    const dataDir = await mkdtemp(join(tmpdir(), 'mc-compat-'))
    try {
      const r = await runGatewayExpectingFailure({ PATH_PREFIX: 'chat', DATA_DIR: dataDir })
      expect(r.code).toBe(78)
      expect(r.output).toContain('PATH_PREFIX must start with "/" and have no trailing "/"')
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
    const t = await gateway({ PATH_PREFIX: '' })
    expect((await curl(t, 'http://localhost:8080/healthz')).status).toBe('200')
  })
})
