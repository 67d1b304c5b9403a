import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody } from '../api-schemas.js'
import { security } from '../observability/openapi.js'
import { loadPageAssets, PAGE_ASSETS_DIR, type PageAsset } from './page-assets.js'

export interface AdminPagePluginOptions {
  prefix: string
  /** Where index.html, style.css and the scripts are; default: `page/` beside this module. */
  assetsDir?: string
}

/**
 * What the page may load: only itself. No inline script or style and no other host, so a
 * script injected through a session's name or an error's text could not run. Set here
 * too, not only by the HTTP hardening's policy for every answer: the page relies on it,
 * and with it the page's answers carry the same policy whatever else is registered.
 */
export const ADMIN_PAGE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "frame-ancestors 'none'",
  "base-uri 'self'",
  "form-action 'self'",
].join('; ')

const ASSET_NAME_MAX_LENGTH = 64

const assetParams = z.object({ name: z.string().min(1).max(ASSET_NAME_MAX_LENGTH) })

/**
 * `GET /admin` (and `/admin/`): the dashboard page, and `GET /admin/assets/{name}` its
 * files (docs/API.md section 10). The files are read once at start into memory from an
 * allow-list (the folder's files of known types), so a name is only a map key: nothing a
 * request says reaches the file system. Each answer carries an ETag and `no-cache`: a
 * browser revalidates (a 304 costs a header) and never runs yesterday's script with
 * today's page.
 */
export default fp(
  async (app: FastifyInstance, opts: AdminPagePluginOptions) => {
    const r = app.withTypeProvider<ZodTypeProvider>()
    const pageBase = `${opts.prefix}/admin/`
    const assets = await loadPageAssets(opts.assetsDir ?? PAGE_ASSETS_DIR, pageBase)
    if (assets === undefined) {
      app.log.warn({ assets_dir: opts.assetsDir ?? PAGE_ASSETS_DIR }, 'the /admin page is not built: run `npm run build`')
    }

    const missing = (reply: FastifyReply) =>
      reply.code(503).send({ error: 'unavailable', message: 'the admin page is not built: run `npm run build`' })

    const page = async (request: FastifyRequest, reply: FastifyReply) => {
      if (assets === undefined) return missing(reply)
      return sendAsset(request, reply, assets.index)
    }
    const pageSchema = {
      summary: 'The admin dashboard (HTML; it logs in with /api/v1/auth/login, admin only)',
      tags: ['admin'],
      security: security.none,
      response: { 200: z.string().describe('text/html'), 304: z.null(), 503: errorBody },
    }
    r.get(`${opts.prefix}/admin`, { schema: pageSchema }, page)
    r.get(pageBase, { schema: pageSchema }, page)

    r.get(
      `${pageBase}assets/:name`,
      {
        schema: {
          summary: "The admin dashboard's scripts, style sheet and icon",
          tags: ['admin'],
          security: security.none,
          params: assetParams,
          response: { 200: z.string().describe('the file'), 304: z.null(), 400: errorBody, 404: errorBody, 503: errorBody },
        },
      },
      async (request, reply) => {
        if (assets === undefined) return missing(reply)
        const asset = assets.files.get(request.params.name)
        if (asset === undefined) return reply.code(404).send({ error: 'not_found', message: 'no such asset' })
        return sendAsset(request, reply, asset)
      },
    )
  },
  { name: 'admin-page' },
)

function sendAsset(request: FastifyRequest, reply: FastifyReply, asset: PageAsset) {
  reply
    .header('etag', asset.etag)
    .header('cache-control', 'no-cache')
    .header('content-security-policy', ADMIN_PAGE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY')
  if (etagMatches(request.headers['if-none-match'], asset.etag)) return reply.code(304).send(null)
  // A Buffer goes out as it is: no serializer runs on it.
  return reply.header('content-type', asset.contentType).send(asset.body)
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  return header.split(',').some((t) => {
    const tag = t.trim()
    return tag === '*' || tag === etag || tag === `W/${etag}`
  })
}
