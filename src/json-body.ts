import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { badRequest } from './errors.js'

/**
 * Every body of a JSON route is read as JSON, whatever its Content-Type says (none, form
 * encoding, text/plain, anything): `curl -d '{...}'`, as the replaced systems' READMEs
 * print it, sends JSON as `application/x-www-form-urlencoded`, and Fastify's own parsers
 * would answer that 415. A body that is not JSON is a 400 `invalid_json` naming why.
 *
 * Registered at the root before every other plugin: contexts copy their parent's parsers
 * when they are created, so a context made earlier would keep Fastify's. The line-protocol
 * writes and the metrics push replace all parsers in their own encapsulated contexts.
 *
 * No `bodyLimit` here: the server's limit, or a route's own `bodyLimit`, applies as before.
 */
export default fp(
  async (app: FastifyInstance) => {
    // Fastify's JSON parser with its defaults (a "__proto__" key, or "constructor" with a
    // "prototype", is refused): bodies reach code that may merge them into objects.
    const secureParse = app.getDefaultJsonParser('error', 'error')
    app.removeAllContentTypeParsers()
    app.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
      const text = body as string
      // No body: the route's schema decides (its usual 400 when a body is required).
      if (text.length === 0) return done(null, undefined)
      secureParse(request, text, (err: Error | null, value?: unknown) => {
        if (err === null) return done(null, value)
        done(badRequest(`the body is not JSON (${sentAs(request)}): ${whyNotJson(text)}`, 'invalid_json'), undefined)
      })
    })
  },
  { name: 'json-body' },
)

function sentAs(request: FastifyRequest): string {
  const type = request.headers['content-type']
  return type === undefined ? 'sent without a Content-Type' : `sent as ${type.split(';')[0]?.trim()}`
}

/** JSON.parse's own words say where the text stops being JSON; secure parsing refuses more. */
function whyNotJson(text: string): string {
  try {
    JSON.parse(text)
  } catch (err) {
    return (err as Error).message
  }
  return 'it holds a "__proto__" key, or a "constructor" key with a "prototype", which are refused'
}
