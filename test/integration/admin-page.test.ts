import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import Fastify, { type FastifyInstance } from 'fastify'
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pagePlugin, { ADMIN_PAGE_CSP } from '../../src/admin/page-plugin.js'
import { PAGE_ASSETS_DIR } from '../../src/admin/page-assets.js'
import { REPO_ROOT } from '../helpers/process.js'

// The /admin page's route plugin on its own (no database, no browser): what it serves,
// how it caches, what it refuses; and that the build's copy step brings every file along.
// test/e2e/admin-dashboard.test.ts runs the page itself in Chromium.

async function pageApp(opts: { assetsDir?: string } = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)
  await app.register(pagePlugin, { prefix: '/gw', ...opts })
  await app.ready()
  return app
}

describe('GET /admin', () => {
  let app: FastifyInstance
  beforeAll(async () => {
    app = await pageApp()
  })
  afterAll(async () => {
    await app?.close()
  })

  it('answers the page at /admin and /admin/, its base under PATH_PREFIX, with the CSP and an ETag', async () => {
    const res = await app.inject({ url: '/gw/admin' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(res.headers['content-security-policy']).toBe(ADMIN_PAGE_CSP)
    expect(ADMIN_PAGE_CSP).toContain("script-src 'self'")
    expect(ADMIN_PAGE_CSP).toContain("frame-ancestors 'none'")
    expect(res.headers['x-content-type-options']).toBe('nosniff')
    expect(res.headers['cache-control']).toBe('no-cache')
    expect(res.headers.etag).toMatch(/^"[\w-]{22}"$/)
    expect(res.body).toContain('<base href="/gw/admin/">')
    const slash = await app.inject({ url: '/gw/admin/' })
    expect(slash.statusCode).toBe(200)
    expect(slash.body).toBe(res.body)
    const again = await app.inject({ url: '/gw/admin', headers: { 'if-none-match': res.headers.etag as string } })
    expect(again.statusCode).toBe(304)
    expect(again.body).toBe('')
  })

  it('serves each asset with its type and ETag; 304 when unchanged', async () => {
    const types: Record<string, string> = {
      'app.js': 'text/javascript; charset=utf-8',
      'style.css': 'text/css; charset=utf-8',
      'icon.svg': 'image/svg+xml',
    }
    for (const [name, type] of Object.entries(types)) {
      const res = await app.inject({ url: `/gw/admin/assets/${name}` })
      expect(res.statusCode, name).toBe(200)
      expect(res.headers['content-type']).toBe(type)
      expect(res.body).toBe(await readFile(join(PAGE_ASSETS_DIR, name), 'utf8'))
      const again = await app.inject({ url: `/gw/admin/assets/${name}`, headers: { 'if-none-match': `W/${res.headers.etag}, "x"` } })
      expect(again.statusCode).toBe(304)
    }
  })

  it('answers 404 for unknown names and for anything reaching out of the folder', async () => {
    for (const url of [
      '/gw/admin/assets/nope.js',
      '/gw/admin/assets/index.html',
      '/gw/admin/assets/..%2Fpage-plugin.ts',
      '/gw/admin/assets/%2e%2e%2f%2e%2e%2fapp.ts',
      '/gw/admin/assets/../page-plugin.ts',
      '/gw/admin/assets/..%5Cpage-plugin.ts',
      '/gw/admin/page-plugin.ts',
      '/admin',
    ]) {
      const res = await app.inject({ url })
      expect(res.statusCode, url).toBe(404)
      expect(res.body).not.toContain('import ')
    }
  })
})

describe("the page's files", () => {
  const read = async (name: string) => readFile(join(PAGE_ASSETS_DIR, name), 'utf8')

  it('reference only files the plugin serves, and no other host', async () => {
    const names = await readdir(PAGE_ASSETS_DIR)
    const html = await read('index.html')
    const wanted = new Set<string>()
    for (const m of html.matchAll(/(?:src|href)="assets\/([^"]+)"/g)) wanted.add(m[1] as string)
    for (const name of names.filter((n) => n.endsWith('.js'))) {
      for (const m of (await read(name)).matchAll(/from '\.\/([^']+)'/g)) wanted.add(m[1] as string)
    }
    expect([...wanted].sort()).toEqual(names.filter((n) => n !== 'index.html').sort())
    for (const name of names) {
      // The SVG namespace is a name, not a request.
      const text = (await read(name)).replaceAll('http://www.w3.org/2000/svg', '')
      expect(text, name).not.toMatch(/https?:\/\/|url\(\s*['"]?\/\/|@import/)
    }
  })

  it('hold no inline script, style or event handler (the CSP would block them), and build no HTML from strings', async () => {
    const html = await read('index.html')
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/)
    expect(html).not.toMatch(/<style/)
    expect(html).not.toMatch(/\sstyle=/)
    expect(html).not.toMatch(/\son[a-z]+=/)
    for (const name of (await readdir(PAGE_ASSETS_DIR)).filter((n) => n.endsWith('.js'))) {
      const js = await read(name)
      expect(js, name).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function|(local|session)Storage\s*[.[]|document\.cookie/)
    }
  })
})

describe('a gateway without the built page', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mc-admin-page-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('starts, and /admin says what to run', async () => {
    const app = await pageApp({ assetsDir: join(dir, 'missing') })
    try {
      const res = await app.inject({ url: '/gw/admin' })
      expect(res.statusCode).toBe(503)
      expect(res.json()).toEqual({ error: 'unavailable', message: 'the admin page is not built: run `npm run build`' })
      expect((await app.inject({ url: '/gw/admin/assets/app.js' })).statusCode).toBe(503)
    } finally {
      await app.close()
    }
  })

  it("gets every file from the build's copy step (scripts/copy-admin-assets.mjs)", async () => {
    const target = join(dir, 'built')
    await promisify(execFile)(process.execPath, [join(REPO_ROOT, 'scripts', 'copy-admin-assets.mjs'), target], { cwd: REPO_ROOT })
    expect((await readdir(target)).sort()).toEqual((await readdir(PAGE_ASSETS_DIR)).sort())
    const app = await pageApp({ assetsDir: target })
    try {
      expect((await app.inject({ url: '/gw/admin/assets/app.js' })).statusCode).toBe(200)
    } finally {
      await app.close()
    }
  })
})
