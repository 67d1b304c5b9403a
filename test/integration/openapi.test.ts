import SwaggerParser from '@apidevtools/swagger-parser'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { CHROMIUM_ARGS, findChromium } from '../helpers/chromium.js'
import { requireService } from '../helpers/services.js'

type Json = Record<string, any>
interface Op {
  key: string
  op: Json
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head']
const WEBSOCKETS = ['/time-series', '/ws', '/mqtt']
/** 4xx/5xx answers whose body is not an error: /readyz's 503 is the readiness report itself. */
const NOT_ERROR_BODIES = ['GET /readyz 503']

const operations = (doc: Json): Op[] =>
  Object.entries<Json>(doc.paths).flatMap(([path, item]) =>
    Object.entries<Json>(item)
      .filter(([method]) => METHODS.includes(method))
      .map(([method, op]) => ({ key: `${method.toUpperCase()} ${path}`, op })),
  )

/** Fastify's `/a/:id` as OpenAPI writes it, `/a/{id}`. */
const openapiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')

/** Every URL a page's <script src> and <link href> load. */
const assetUrls = (html: string): string[] => [...html.matchAll(/<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string)

async function getDoc(t: TestApp): Promise<Json> {
  const res = await fetch(`${t.url}/docs/json`)
  expect(res.status).toBe(200)
  return (await res.json()) as Json
}

describe('/docs/json', () => {
  let t: TestApp
  let doc: Json
  beforeAll(async () => {
    t = await startTestApp()
    doc = await getDoc(t)
  })
  afterAll(async () => {
    await t?.close()
  })

  it('validates as OpenAPI 3', async () => {
    expect(doc.openapi).toMatch(/^3\./)
    // The parser dereferences in place: it gets a copy.
    await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeTruthy()
  })

  it("documents every route in the app's route table, and nothing that is not one", () => {
    const routes = t.app.docsRoutes
    // The table is complete from the first route on: health and the docs themselves are in it.
    expect(routes.map((r) => `${r.method} ${r.url}`)).toEqual(expect.arrayContaining(['GET /health', 'GET /docs/json', 'POST /api/v2/write']))
    const documented = new Set(operations(doc).map((o) => o.key))
    const missing = routes.filter((r) => !r.hidden && !documented.has(`${r.method} ${openapiPath(r.url)}`))
    expect(missing, 'routes missing from /docs/json (give them a schema with summary, tags, security and responses)').toEqual([])
    // Only the docs' own UI routes are left out.
    expect(routes.filter((r) => r.hidden && !r.url.startsWith('/docs')), 'hidden routes').toEqual([])
    for (const { key } of operations(doc)) {
      const [method, path] = key.split(' ') as [string, string]
      const url = path.replace(/\{([A-Za-z0-9_]+)\}/g, ':$1')
      expect(t.app.hasRoute({ method: method as 'GET', url }), `${key} is a route`).toBe(true)
    }
  })

  it('gives every operation a summary, a tag, a success answer, the error answers and its security', () => {
    const schemes = Object.keys(doc.components.securitySchemes)
    expect(doc.components.schemas.Error.required).toEqual(['error', 'message'])
    const problems: string[] = []
    for (const { key, op } of operations(doc)) {
      const say = (what: string) => problems.push(`${key}: ${what}`)
      if (typeof op.summary !== 'string' || op.summary.length === 0) say('no summary')
      if (!Array.isArray(op.tags) || op.tags.length === 0) say('no tag')
      const statuses = Object.keys(op.responses)
      if (!statuses.some((s) => /^(2\d\d|101)$/.test(s))) say('no 2xx (or 101) answer')
      if (op.responses.default?.content?.['application/json']?.schema?.$ref !== '#/components/schemas/Error') say('no default error answer')
      for (const s of statuses.filter((x) => /^[45]/.test(x) && !NOT_ERROR_BODIES.includes(`${key} ${x}`))) {
        const schema = op.responses[s].content?.['application/json']?.schema
        if (schema?.required?.join() !== 'error,message') say(`${s} is not {"error","message"}`)
      }
      if (!Array.isArray(op.security)) say('no security requirement (not even an explicit [])')
      else {
        for (const name of op.security.flatMap((r: Json) => Object.keys(r))) if (!schemes.includes(name)) say(`unknown scheme ${name}`)
        if (op.security.length > 0 && !statuses.includes('401') && !statuses.includes('403')) say('secured, without a 401/403 answer')
      }
      for (const [type, media] of Object.entries<Json>(op.requestBody?.content ?? {})) {
        if (media.example === undefined && media.examples === undefined && media.schema?.examples === undefined) say(`no example for ${type}`)
      }
      for (const s of ['101', '204', '304']) if (op.responses[s]?.content !== undefined) say(`${s} with a body`)
    }
    expect(problems).toEqual([])
  })

  it('names each auth scheme where it applies', () => {
    const byKey = new Map(operations(doc).map((o) => [o.key, o.op]))
    const schemesOf = (key: string) => (byKey.get(key)?.security as Json[]).map((r) => Object.keys(r).sort().join('+'))
    expect(schemesOf('GET /health')).toEqual([])
    expect(schemesOf('POST /api/v1/auth/login')).toEqual([])
    expect(schemesOf('POST /mock-auth')).toEqual(['backendToken'])
    expect(schemesOf('POST /api/v2/write')).toContain('influxToken')
    expect(doc.components.securitySchemes.influxToken).toMatchObject({ type: 'apiKey', in: 'header', name: 'Authorization' })
    expect(schemesOf('POST /api/v1/collectors/register')).toEqual(['registrationSecret', 'accessToken', 'apiToken'])
    expect(schemesOf('POST /api/v1/collectors/{id}/token')).toEqual(['collectorToken', 'collectorSignature+collectorTimestamp'])
    expect(schemesOf('GET /api/v1/users')).toEqual(['accessToken'])
    expect(schemesOf('POST /devices')).toEqual(['accessToken', 'apiToken'])
    expect(doc.components.securitySchemes.apiToken).toMatchObject({ type: 'http', scheme: 'bearer', bearerFormat: 'mc_…' })
  })

  it('shows request bodies from the zod schemas, with examples, also for raw bodies', () => {
    const login = doc.paths['/api/v1/auth/login'].post.requestBody.content['application/json']
    expect(login.schema.required).toEqual(['username', 'password'])
    expect(login.example).toEqual({ username: 'admin', password: expect.any(String) })
    const write = doc.paths['/api/v2/write'].post.requestBody.content['text/plain']
    expect(write.example).toMatch(/^temperature,location=room1 value=23.5/)
    const push = doc.paths['/api/v1/metrics/push'].post.requestBody.content['application/json']
    expect(push.schema.required).toEqual(expect.arrayContaining(['collector_id', 'hostname', 'metrics']))
    expect(push.example.metrics[0].name).toBe('pg_stat_database')
    // A refinement in the path parameters still documents the parameter.
    expect(doc.paths['/api/v1/channels/{channelId}/events'].post.parameters).toEqual([
      expect.objectContaining({ in: 'path', name: 'channelId', required: true }),
    ])
    expect(doc.paths['/metrics'].get.responses['200'].content['text/plain']).toBeDefined()
  })

  it('lists the WebSocket endpoints by their upgrade, and points to docs/API.md for their protocols', () => {
    for (const path of WEBSOCKETS) {
      const op = doc.paths[path]?.get
      expect(op?.responses['101'], path).toBeDefined()
      expect(op.description, path).toMatch(/docs\/API\.md section \d/)
    }
    expect(doc.info.description).toContain('docs/API.md')
    for (const path of WEBSOCKETS) expect(doc.info.description).toContain(`\`GET ${path}\``)
  })
})

describe('/docs (Swagger UI)', () => {
  let t: TestApp
  beforeAll(async () => {
    t = await startTestApp()
  })
  afterAll(async () => {
    await t?.close()
  })

  it.each(['/docs', '/docs/'])('%s answers the UI, loading only assets of this origin, all there', async (path) => {
    const page = `${t.url}${path}`
    const res = await fetch(page)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    const html = await res.text()
    // No inline script: every <script> has a src and nothing inside.
    expect([...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)].map((m) => [/\bsrc=/.test(m[1] ?? ''), (m[2] ?? '').trim()])).toEqual([
      [true, ''],
      [true, ''],
      [true, ''],
    ])
    const urls = assetUrls(html).map((u) => new URL(u, page))
    expect(urls.length).toBeGreaterThanOrEqual(5)
    for (const url of urls) {
      expect(url.origin, url.href).toBe(new URL(t.url).origin)
      expect(url.pathname.startsWith('/docs/static/'), url.href).toBe(true)
      const asset = await fetch(url)
      expect(asset.status, url.href).toBe(200)
      await asset.arrayBuffer()
    }
  })

  it('/docs/index.html (where Service-MQTT had it) leads to the same UI', async () => {
    const first = await fetch(`${t.url}/docs/index.html`, { redirect: 'manual' })
    expect(first.status).toBe(302)
    expect(first.headers.get('location')).toBe('/docs/')
    const followed = await fetch(`${t.url}/docs/index.html`)
    expect(followed.status).toBe(200)
    expect(followed.url).toBe(`${t.url}/docs/`)
    expect(await followed.text()).toContain('swagger-ui-bundle.js')
  })

  it('serves the bundle from the package itself', async () => {
    const res = await fetch(`${t.url}/docs/static/swagger-ui-bundle.js`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/javascript/)
    expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(100_000)
  })

  it('renders every operation in a real browser, with no Content-Security-Policy violation', async () => {
    const executable = findChromium()
    if (!(await requireService('chromium (Debian package)', executable !== undefined))) return
    const { chromium } = await import('playwright-core')
    const browser = await chromium.launch({ executablePath: executable, headless: true, args: CHROMIUM_ARGS })
    try {
      const page = await browser.newPage()
      const problems: string[] = []
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(`console: ${m.text()}`)
      })
      page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
      // Strings, not functions: they run in the page, and this file is typed for Node.
      await page.addInitScript(
        "document.addEventListener('securitypolicyviolation', (e) => { (window.violations ??= []).push(e.violatedDirective + ' ' + e.blockedURI) })",
      )
      const answer = await page.goto(`${t.url}/docs`)
      expect(answer?.headers()['content-security-policy']).toContain("script-src 'self'")
      const count = operations(await getDoc(t)).length
      // Swagger UI draws one .opblock per operation once it has fetched and read /docs/json.
      // A function, not a string: Playwright polls a string predicate with eval in the page,
      // which this page's CSP refuses whenever the first check comes before the drawing.
      type Page = { document: { querySelectorAll(selector: string): { length: number } } }
      await page.waitForFunction((n) => (globalThis as unknown as Page).document.querySelectorAll('.opblock').length === n, count, {
        timeout: 30_000,
      })
      const violations = await page.evaluate<string[]>('window.violations ?? []')
      expect(violations).toEqual([])
      expect(problems).toEqual([])
    } finally {
      await browser.close()
    }
  })
})

describe('/docs under PATH_PREFIX', () => {
  let t: TestApp
  beforeAll(async () => {
    t = await startTestApp({ PATH_PREFIX: '/chatbox' })
  })
  afterAll(async () => {
    await t?.close()
  })

  it('/chatbox/docs/json documents the routes with their prefix', async () => {
    expect(t.url.endsWith('/chatbox')).toBe(true)
    const doc = await getDoc(t)
    await SwaggerParser.validate(structuredClone(doc) as never)
    const paths = Object.keys(doc.paths)
    expect(paths.filter((p) => !p.startsWith('/chatbox/'))).toEqual([])
    expect(paths).toEqual(expect.arrayContaining(['/chatbox/healthz', '/chatbox/readyz', '/chatbox/api/v2/write', '/chatbox/ws']))
    const documented = new Set(operations(doc).map((o) => o.key))
    expect(t.app.docsRoutes.filter((r) => !r.hidden && !documented.has(`${r.method} ${openapiPath(r.url)}`))).toEqual([])
  })

  it('/chatbox/docs and /chatbox/docs/index.html answer the UI with assets under the prefix', async () => {
    const page = `${t.url}/docs`
    const html = await (await fetch(page)).text()
    for (const u of assetUrls(html)) {
      const url = new URL(u, page)
      expect(url.pathname.startsWith('/chatbox/docs/static/'), url.href).toBe(true)
      expect((await fetch(url)).status, url.href).toBe(200)
    }
    const first = await fetch(`${t.url}/docs/index.html`, { redirect: 'manual' })
    expect(first.headers.get('location')).toBe('/chatbox/docs/')
    expect((await fetch(`${t.url}/docs/index.html`)).status).toBe(200)
    expect((await fetch(`${t.url}/docs/json`)).status).toBe(200)
  })
})

/** An executable on PATH, as the shell would find it. */
