import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The dashboard's files: `page/` beside this module, so src/admin/page when the gateway
 * runs from source (tsx, tests) and dist/admin/page when built (`npm run build` copies
 * them there with scripts/copy-admin-assets.mjs, since tsc copies only what it compiles).
 */
export const PAGE_ASSETS_DIR = fileURLToPath(new URL('./page/', import.meta.url))

/** The file types the page is made of; anything else in the folder is not served. */
export const PAGE_CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
}

export interface PageAsset {
  body: Buffer
  contentType: string
  etag: string
}

export interface PageAssets {
  index: PageAsset
  /** By file name: what `/admin/assets/{name}` may answer. */
  files: Map<string, PageAsset>
}

// index.html names its base as the unprefixed page; the configured PATH_PREFIX goes in front.
const BASE_HREF = '<base href="/admin/">'

/**
 * Reads the folder once; undefined when it has no index.html (the page was not built).
 * `pageBase` (`<prefix>/admin/`) becomes the page's `<base href>`, so its relative links
 * to `assets/...` and `../api/v1/...` resolve under any PATH_PREFIX.
 */
export async function loadPageAssets(dir: string, pageBase: string): Promise<PageAssets | undefined> {
  let names: string[]
  try {
    names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  if (!names.includes('index.html')) return undefined
  const files = new Map<string, PageAsset>()
  let index: PageAsset | undefined
  for (const name of names.sort()) {
    const contentType = PAGE_CONTENT_TYPES[extname(name)]
    if (contentType === undefined) continue
    let body = await readFile(join(dir, name))
    if (name === 'index.html') {
      const html = body.toString('utf8')
      if (!html.includes(BASE_HREF)) throw new Error(`${join(dir, name)} must contain ${BASE_HREF}`)
      body = Buffer.from(html.replace(BASE_HREF, `<base href="${escapeAttribute(pageBase)}">`), 'utf8')
      index = asset(body, contentType)
    } else {
      files.set(name, asset(body, contentType))
    }
  }
  return index === undefined ? undefined : { index, files }
}

function asset(body: Buffer, contentType: string): PageAsset {
  const digest = createHash('sha256').update(body).digest('base64url').slice(0, 22)
  return { body, contentType, etag: `"${digest}"` }
}

function escapeAttribute(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('"', '&quot;').replaceAll('<', '&lt;')
}
