import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody, limitOffset, pageOf, pageQuery, toTimestamp } from '../api-schemas.js'
import type { AuditEvent, AuditLog } from '../audit/audit-log.js'
import type { Guards, UserPrincipal } from '../auth/guards.js'
import type { TokenService } from '../auth/tokens.js'
import type { Config } from '../config.js'
import type { Db } from '../db/index.js'
import { forbidden, notFound, unauthorized } from '../errors.js'
import { security } from '../observability/openapi.js'
import { createCollectorCertificate } from './certificates.js'
import type { CollectorDirectoryService } from './directory.js'
import type { CollectorsRepo } from './repo.js'
import { collectorParams, collectorView, registerBody, registered, renewed, toCollectorView } from './schemas.js'
import { checkProof, hasProof } from './signatures.js'
import { COLLECTOR_AUDIT } from './types.js'

export interface CollectorRoutesOptions {
  prefix: string
  config: Config['collectors']
  db: Pick<Db, 'transaction'>
  repo: Pick<CollectorsRepo, 'insert' | 'find' | 'list' | 'markDeleted' | 'findKey' | 'useSignature'>
  directory: Pick<CollectorDirectoryService, 'status' | 'markDeleted'>
  audit: Pick<AuditLog, 'record'>
  tokens: Pick<TokenService, 'sign'>
  guards: Pick<Guards, 'user' | 'collector'>
}

const refusals = { 401: errorBody, 403: errorBody }
const noSuchCollector = () => notFound('no such collector')
const badSignature = (reason: string) => unauthorized(reason, 'invalid_signature')
const actorOf = (p: UserPrincipal): string => (p.via === 'api_token' && p.apiTokenId ? `api_token:${p.apiTokenId}` : `user:${p.id}`)
const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest()
/** One header's text; a repeated header is no valid value of any of these. */
const headerOf = (request: FastifyRequest, name: string): string | undefined => {
  const v = request.headers[name]
  return Array.isArray(v) ? v.join(',') : v
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the registration guard: "user:<id>", "api_token:<id>" or "secret". */
    registeredBy: string | null
  }
}

/**
 * `/api/v1/collectors` (docs/API.md section 7): registration (by the shared secret or an
 * operator), token renewal (by the current token, or by a signature made with the
 * collector's key), and the list, one collector, deletion.
 */
export function collectorRoutes(app: FastifyInstance, opts: CollectorRoutesOptions): void {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { config, db, repo, directory, audit, tokens, guards } = opts
  const base = `${opts.prefix}/api/v1/collectors`
  const secretDigest = config.registrationSecret === undefined ? undefined : digest(config.registrationSecret)
  app.decorateRequest('registeredBy', null)

  /** Failures are audited best effort: a broken audit write must not turn a 401 into a 500. */
  const auditFailure = async (event: Omit<AuditEvent, 'outcome'>, request: FastifyRequest) => {
    try {
      await audit.record({ ...event, outcome: 'failure', ip: request.ip })
    } catch (err) {
      request.log.warn({ err, action: event.action }, 'could not audit a refused collector request')
    }
  }

  const issueToken = (collectorId: string, hostname: string) => {
    const { token, exp } = tokens.sign('collector', { collector_id: collectorId, hostname, sub: `collector:${collectorId}` }, config.tokenTtlS)
    return { token, expires_at: toTimestamp(new Date(exp * 1000)) }
  }

  // Before the body is read: X-Registration-Secret when sent (it then decides alone), else an
  // operator's token. Both digests are 32 bytes, so the comparison is constant-time whatever
  // was presented.
  const registrationGuard = async (request: FastifyRequest): Promise<void> => {
    const presented = headerOf(request, 'x-registration-secret')
    if (presented === undefined) {
      const principal = await guards.user(request, 'operator')
      request.principal = principal
      request.registeredBy = actorOf(principal)
      return
    }
    if (secretDigest === undefined) throw unauthorized('registration by secret is off (COLLECTOR_REGISTRATION_SECRET is not set)', 'registration_secret_off')
    if (!timingSafeEqual(digest(presented), secretDigest)) {
      await auditFailure({ action: COLLECTOR_AUDIT.register, details: { reason: 'wrong registration secret' } }, request)
      throw unauthorized('wrong registration secret', 'invalid_secret')
    }
    request.registeredBy = 'secret'
  }

  r.post(
    `${base}/register`,
    {
      schema: {
        summary: 'Register a collector: a key pair, a self-signed certificate and a token (the private key is in this answer only)',
        tags: ['collectors'],
        security: security.registration,
        body: registerBody,
        response: { 201: registered, 400: errorBody, ...refusals },
      },
      onRequest: registrationGuard,
    },
    async (request, reply) => {
      const { name, hostname } = request.body
      const registeredBy = request.registeredBy as string
      const id = randomUUID()
      const made = await createCollectorCertificate(id, config.certValidityDays)
      await db.transaction(async (tx) => {
        await repo.insert({ id, name, hostname, certificate: made.certificatePem, thumbprint: made.thumbprint, registeredBy }, tx)
        await audit.record(
          {
            action: COLLECTOR_AUDIT.register,
            actor: request.principal === null ? null : registeredBy,
            target: `collector:${id}`,
            ip: request.ip,
            details: { name, hostname, via: registeredBy === 'secret' ? 'registration_secret' : 'token', thumbprint: made.thumbprint },
          },
          tx,
        )
      })
      // A private key must not sit in any cache on the way.
      reply.code(201).header('cache-control', 'no-store')
      return { collector_id: id, ...issueToken(id, hostname), certificate: made.certificatePem, private_key: made.privateKeyPem }
    },
  )

  const renewByToken = async (request: FastifyRequest, id: string) => {
    const principal = await guards.collector(request)
    if (principal.collectorId !== id) throw forbidden("the token is another collector's")
    const status = await directory.status(id)
    if (status !== 'active') throw unauthorized(status === 'deleted' ? 'collector deleted' : 'unknown collector', 'invalid_token')
    return issueToken(id, principal.hostname)
  }

  const renewBySignature = async (request: FastifyRequest, id: string) => {
    const found = await repo.findKey(id)
    if (found === undefined) throw badSignature('unknown collector')
    const target = `collector:${id}`
    const refuse = async (reason: string) => {
      await auditFailure({ action: COLLECTOR_AUDIT.renew, actor: target, target, details: { reason } }, request)
      return badSignature(reason)
    }
    if (found.deleted) throw await refuse('collector deleted')
    const proof = checkProof({
      collectorId: id,
      timestamp: headerOf(request, 'x-collector-timestamp'),
      signature: headerOf(request, 'x-collector-signature'),
      key: found.certificate,
      nowS: Math.floor(Date.now() / 1000),
      maxSkewS: config.signatureMaxSkewS,
    })
    if (!proof.ok) throw await refuse(proof.reason)
    const fresh = await db.transaction(async (tx) => {
      if (!(await repo.useSignature(proof.signatureHash, id, new Date(proof.acceptableUntilS * 1000), tx))) return false
      await audit.record({ action: COLLECTOR_AUDIT.renew, actor: target, target, ip: request.ip, details: { via: 'signature' } }, tx)
      return true
    })
    if (!fresh) throw await refuse('signature already used')
    return issueToken(id, found.hostname)
  }

  r.post(
    `${base}/:id/token`,
    {
      schema: {
        summary: "A new collector token, for the collector's current token or a signature made with its key",
        tags: ['collectors'],
        security: security.renewal,
        params: collectorParams,
        response: { 200: renewed, ...refusals },
      },
    },
    async (request, reply) => {
      const id = request.params.id
      // The signature headers, when sent, decide alone: a collector whose token expired may
      // still send it beside its proof.
      const proof = hasProof(request.headers['x-collector-timestamp'], request.headers['x-collector-signature'])
      const answer = proof ? await renewBySignature(request, id) : await renewByToken(request, id)
      reply.header('cache-control', 'no-store')
      return answer
    },
  )

  const read = app.requireRole('viewer')
  const write = app.requireRole('operator')

  r.get(
    base,
    {
      schema: {
        summary: 'List collectors, newest first',
        tags: ['collectors'],
        security: security.user,
        querystring: pageQuery,
        response: { 200: pageOf(collectorView), 400: errorBody, ...refusals },
      },
      onRequest: read,
    },
    async (request) => {
      const q = request.query
      const { collectors, total } = await repo.list(...limitOffset(q))
      return { data: collectors.map(toCollectorView), page: q.page, page_size: q.page_size, total }
    },
  )

  r.get(
    `${base}/:id`,
    {
      schema: {
        summary: 'One collector',
        tags: ['collectors'],
        security: security.user,
        params: collectorParams,
        response: { 200: collectorView, ...refusals, 404: errorBody },
      },
      onRequest: read,
    },
    async (request) => {
      const found = await repo.find(request.params.id)
      if (found === undefined) throw noSuchCollector()
      return toCollectorView(found)
    },
  )

  r.delete(
    `${base}/:id`,
    {
      schema: {
        summary: "Delete a collector: its tokens and signatures stop working (within COLLECTOR_STATUS_CACHE_MS on other instances)",
        tags: ['collectors'],
        security: security.user,
        params: collectorParams,
        response: { 204: z.null().describe('Deleted'), ...refusals, 404: errorBody },
      },
      onRequest: write,
    },
    async (request, reply) => {
      const principal = request.principal as UserPrincipal
      await db.transaction(async (tx) => {
        const gone = await repo.markDeleted(request.params.id, tx)
        if (gone === undefined) throw noSuchCollector()
        await audit.record(
          {
            action: COLLECTOR_AUDIT.delete,
            actor: actorOf(principal),
            target: `collector:${gone.id}`,
            ip: request.ip,
            details: { name: gone.name, hostname: gone.hostname },
          },
          tx,
        )
      })
      directory.markDeleted(request.params.id)
      return reply.code(204).send(null)
    },
  )
}
