import { readFileSync } from 'node:fs'
import { STATUS_CODES } from 'node:http'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { createJsonSchemaTransform } from 'fastify-type-provider-zod'
import { securitySchemes } from './openapi.js'

export interface DocsOptions {
  prefix: string
}

// The same path from src/ (tsx) and from dist/ (the build): both sit beside package.json.
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

/** A route as Fastify registered it, kept so that tests can hold `/docs/json` against the route table. */
export interface SeenRoute {
  method: string
  url: string
  /** `schema.hide`: left out of the document on purpose (the docs' own UI routes). */
  hidden: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route registered after the docs plugin, HEAD routes aside (a GET documents them). */
    docsRoutes: readonly SeenRoute[]
  }
}

const DESCRIPTION = `The HTTP API of the matt-collector gateway, generated from the schemas that validate its requests.

Every error answer is \`{"error":"<code>","message":"<human text>"}\` (the \`default\` answer of each operation).

Three endpoints are WebSocket upgrades, listed here with their HTTP answers (the \`101\` and the refusals before it); what flows after the upgrade is described in the project's **docs/API.md**:
- \`GET /time-series\`: line protocol over WebSocket, authenticated by a first \`$AUTH <token>\` frame (docs/API.md section 5);
- \`GET /ws\`: live channels of the Go WebSocket server (docs/API.md section 9);
- \`GET /mqtt\`: MQTT 3.1.1 and 5 over WebSocket, subprotocol \`mqtt\`; the same broker listens on TCP \`MQTT_PORT\` (docs/API.md section 8).`

const errorComponent = {
  type: 'object' as const,
  required: ['error', 'message'],
  properties: {
    error: { type: 'string' as const, description: 'A stable code, e.g. `invalid_request`, `invalid_token`, `forbidden`' },
    message: { type: 'string' as const, description: 'What went wrong, for a human' },
  },
}

/**
 * The one inline <style> element Swagger UI's bundle (5.x, in @fastify/swagger-ui 6.1.3)
 * inserts, allowed by its hash on the docs' pages only; the rest of the gateway's CSP stays
 * as it is. Another swagger-ui version may insert another: test/integration/openapi.test.ts
 * loads the UI in Chromium and fails on any CSP violation, naming the hash to put here.
 */
const SWAGGER_UI_STYLE_HASH = "'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='"

/** Answers that carry no body in HTTP: zod's `z.null()` must not become a JSON body there. */
const BODILESS = new Set(['101', '204', '304'])

interface Operation {
  responses?: Record<string, { content?: unknown; description?: string }>
}

/**
 * `GET /docs` (Swagger UI, from @fastify/swagger-ui's own files: no CDN), `GET /docs/json`
 * (OpenAPI 3.1) and `GET /docs/index.html` (where Service-MQTT had its Swagger UI), under
 * PATH_PREFIX. The document is built from the routes' zod schemas, so it says what the
 * validation does. Registered before the route plugins: @fastify/swagger collects routes
 * as they are added (onRoute).
 */
export default fp(
  async (app: FastifyInstance, opts: DocsOptions) => {
    const base = `${opts.prefix}/docs`
    const seen: SeenRoute[] = []
    app.decorate('docsRoutes', seen)
    app.addHook('onRoute', (route: RouteOptions) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method]
      for (const method of methods) {
        if (method === 'HEAD') continue
        seen.push({ method, url: route.url, hidden: route.schema?.hide === true && route.websocket !== true })
      }
    })

    const zodTransform = createJsonSchemaTransform({ skipList: [] })
    await app.register(fastifySwagger, {
      openapi: {
        openapi: '3.1.0',
        info: { title: 'matt-collector', version: VERSION, description: DESCRIPTION },
        components: { securitySchemes: { ...securitySchemes }, schemas: { Error: errorComponent } },
        tags: [
          { name: 'health', description: 'Probes, metrics and keys (no token)' },
          { name: 'auth', description: 'Logins, tokens and signing keys' },
          { name: 'users' },
          { name: 'tokens', description: 'API tokens for backends' },
          { name: 'audit' },
          { name: 'ingest', description: 'Line protocol in: InfluxDB write APIs and /time-series' },
          { name: 'channels', description: '/ws channels and their publishers' },
          { name: 'devices', description: 'MQTT devices and the broker' },
          { name: 'collectors', description: 'pgAnalytics collectors' },
          { name: 'admin' },
        ],
      },
      transform(input) {
        // @fastify/websocket hides its routes; here they are documented by their upgrade.
        const document = input.route.websocket === true ? { ...input, schema: { ...input.schema, hide: false } } : input
        const raw = document.schema?.rawBody
        if (raw === undefined) return zodTransform(document)
        const { rawBody: _, ...rest } = document.schema
        if ('schema' in raw) {
          // The zod schema goes through the same conversion as a validated body.
          const out = zodTransform({ ...document, schema: { ...rest, body: raw.schema, consumes: raw.contentTypes } })
          Object.assign(out.schema.body as object, { description: raw.description })
          return out
        }
        const out = zodTransform({ ...document, schema: rest })
        const media = { schema: { type: 'string', description: raw.description, examples: [raw.example] } }
        const body = { description: raw.description, content: Object.fromEntries(raw.contentTypes.map((type) => [type, media])) }
        return { schema: { ...out.schema, body }, url: out.url }
      },
      transformObject(document) {
        if (!('openapiObject' in document)) return document.swaggerObject
        const openapiObject = document.openapiObject
        for (const item of Object.values(openapiObject.paths ?? {})) {
          for (const operation of Object.values(item as Record<string, Operation>)) {
            if (typeof operation !== 'object' || operation === null || operation.responses === undefined) continue
            for (const [status, answer] of Object.entries(operation.responses)) {
              if (BODILESS.has(status)) delete answer.content
              // @fastify/swagger's placeholder for an answer whose schema has no description.
              if (answer.description === 'Default Response') answer.description = STATUS_CODES[status] ?? status
            }
            // One error handler answers every route (src/app.ts): whatever else fails has this shape.
            operation.responses.default ??= {
              description: 'Any other error',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
            }
          }
        }
        return openapiObject
      },
    })

    await app.register(fastifySwaggerUi, {
      routePrefix: base,
      // The gateway's own Content-Security-Policy (http-hardening.ts) allows what the UI
      // loads: its files from this origin, the document by fetch(), the logo as data:; only
      // its one inline style is added, by hash.
      staticCSP: false,
      transformStaticCSP: (header) => header.replace("style-src 'self'", `style-src 'self' ${SWAGGER_UI_STYLE_HASH}`),
      uiConfig: { deepLinking: true },
      // Every asset from this origin: no online validator badge.
      validatorUrl: false,
    })

    // Service-MQTT's address of the UI. The UI finds its document relative to the page's
    // own URL (`./json`), so it is sent to the one page whose relative URLs work.
    app.get(`${base}/index.html`, { schema: { hide: true } }, (_request, reply) => reply.redirect(`${base}/`))
  },
  { name: 'docs' },
)
