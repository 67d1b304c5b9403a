import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { decodeJwt } from 'jose'
import { z } from 'zod'
import { errorBody, limitOffset, pageOf, pageQuery, timestamp, toTimestamp } from '../api-schemas.js'
import { isApiToken } from '../auth/api-tokens.js'
import type { UserPrincipal } from '../auth/guards.js'
import { bearerToken } from '../auth/plugin.js'
import { AppError, forbidden, notFound } from '../errors.js'
import { security } from '../observability/openapi.js'
import { CollectorConfigRepo, ConfigRaceError, type ConfigVersion } from './config-repo.js'
import { COLLECTOR_AUDIT } from './types.js'

export interface CollectorConfigOptions {
  prefix: string
}

/** Largest PUT body: a collector's config is a page of settings, not data. */
const MAX_CONFIG_BODY_BYTES = 256 * 1024

const params = z.object({ collector_id: z.string() })
const configObject = z.record(z.string(), z.unknown()).describe('a JSON object')
const configView = z.object({ collector_id: z.string(), version: z.number().int().min(1), config: configObject })
const versionView = z.object({ version: z.number().int().min(1), config: configObject, created_by: z.string().nullable(), created_at: timestamp })
const putBody = z.object({ config: configObject }).meta({ examples: [{ config: { interval_s: 60, databases: ['app'] } }] })
const refusals = { 401: errorBody, 403: errorBody, 404: errorBody }

const noSuchCollector = () => notFound('no such collector')
const etagOf = (collectorId: string, version: number): string => `"${collectorId}-v${version}"`
const actorOf = (p: UserPrincipal): string => (p.via === 'api_token' && p.apiTokenId ? `api_token:${p.apiTokenId}` : `user:${p.id}`)

/** Whether an If-None-Match header (a list of entity tags, weak or not, or `*`) names `etag`. */
export function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  return header.split(',').some((tag) => {
    const t = tag.trim()
    return t === '*' || t === etag || t === `W/${etag}`
  })
}

/**
 * The collectors' versioned config (docs/API.md section 7). Collectors poll `GET` with
 * `If-None-Match` and get `304` until an operator `PUT`s a new version; every version stays
 * readable under `/versions`.
 */
export default fp(
  async (app: FastifyInstance, opts: CollectorConfigOptions) => {
    const repo = new CollectorConfigRepo(app.db)
    const r = app.withTypeProvider<ZodTypeProvider>()
    const base = `${opts.prefix}/api/v1/config/:collector_id`
    const viewer = app.requireRole('viewer')
    const operator = app.requireRole('operator')

    // A collector token (of a live collector) reads its own config only; a user token, any.
    // The token's type only picks the guard, which verifies it.
    const collectorOrUser = async (request: FastifyRequest): Promise<void> => {
      const token = bearerToken(request)
      let type: unknown
      try {
        type = isApiToken(token) ? undefined : decodeJwt(token).type
      } catch {
        // Not a JWT: the user guard refuses it with its own answer.
      }
      if (type !== 'collector') return viewer(request)
      await app.requireActiveCollector(request)
      const { collector_id } = request.params as { collector_id?: string }
      if (request.collectorPrincipal?.collectorId !== collector_id) throw forbidden('a collector reads only its own config')
    }

    const view = (collectorId: string, v: ConfigVersion) => ({ collector_id: collectorId, version: v.version, config: v.config })

    r.get(
      base,
      {
        schema: {
          summary: "A collector's current config; 304 for a matching If-None-Match",
          tags: ['collectors'],
          security: security.collectorOrUser,
          params,
          response: { 200: configView, 304: z.null().describe('Not modified'), ...refusals },
        },
        onRequest: collectorOrUser,
      },
      async (request, reply) => {
        const id = request.params.collector_id
        const current = await repo.current(id)
        if (current === undefined) throw noSuchCollector()
        const etag = etagOf(id, current.version)
        // Collectors poll: the answer is revalidated every time, never reused unchecked.
        reply.header('etag', etag).header('cache-control', 'no-cache')
        if (matchesIfNoneMatch(request.headers['if-none-match'], etag)) return reply.code(304).send(null)
        return view(id, current)
      },
    )

    r.put(
      base,
      {
        bodyLimit: MAX_CONFIG_BODY_BYTES,
        schema: {
          summary: "Store a new version of a collector's config",
          tags: ['collectors'],
          security: security.user,
          params,
          body: putBody,
          response: { 200: configView, 400: errorBody, ...refusals, 413: errorBody, 503: errorBody },
        },
        onRequest: operator,
      },
      async (request, reply) => {
        const id = request.params.collector_id
        const principal = request.principal as UserPrincipal
        const stored = await app.db
          .transaction(async (tx) => {
            const made = await repo.put(id, request.body.config, actorOf(principal), tx)
            if (made === undefined) throw noSuchCollector()
            await app.audit.record(
              { action: COLLECTOR_AUDIT.config, actor: actorOf(principal), target: `collector:${id}`, ip: request.ip, details: { version: made.version } },
              tx,
            )
            return made
          })
          .catch((err: unknown) => {
            if (err instanceof ConfigRaceError) throw new AppError(503, 'busy', 'too many concurrent config changes: retry', { cause: err })
            throw err
          })
        reply.header('etag', etagOf(id, stored.version))
        return view(id, stored)
      },
    )

    r.get(
      `${base}/versions`,
      {
        schema: {
          summary: "Every version of a collector's config, newest first",
          tags: ['collectors'],
          security: security.user,
          params,
          querystring: pageQuery,
          response: { 200: pageOf(versionView), 400: errorBody, ...refusals },
        },
        onRequest: viewer,
      },
      async (request) => {
        const q = request.query
        const found = await repo.versions(request.params.collector_id, ...limitOffset(q))
        if (found === undefined) throw noSuchCollector()
        return {
          data: found.versions.map((v) => ({ ...v, created_at: toTimestamp(v.created_at) })),
          page: q.page,
          page_size: q.page_size,
          total: found.total,
        }
      },
    )
  },
  { name: 'collector-config', dependencies: ['collectors', 'access', 'audit'] },
)
