import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { AuditLog } from '../audit/audit-log.js'
import { errorBody } from '../api-schemas.js'
import { security } from '../observability/openapi.js'
import type { UserPrincipal } from './guards.js'
import type { SigningKeyStore } from './signing-keys.js'

const rotated = z.object({
  kid: z.string().describe('The new current key'),
  retired: z.array(z.string()).describe('Keys that stopped signing; they verify until their tokens expired'),
  dropped: z.array(z.string()).describe('Keys past that, removed from the JWKS'),
})

/** `POST /api/v1/auth/keys/rotate` (admin): a new signing key for the gateway's own tokens. */
export function keyRoutes(
  app: FastifyInstance,
  opts: { prefix: string; keys: Pick<SigningKeyStore, 'rotate'>; audit: Pick<AuditLog, 'record'> },
): void {
  app.withTypeProvider<ZodTypeProvider>().post(
    `${opts.prefix}/api/v1/auth/keys/rotate`,
    {
      schema: {
        summary: 'Rotate the signing key: new tokens get a new kid, tokens already issued stay valid',
        tags: ['auth'],
        security: security.user,
        response: { 200: rotated, 401: errorBody, 403: errorBody },
      },
      onRequest: app.requireRole('admin'),
    },
    async (request) => {
      const principal = request.principal as UserPrincipal
      return opts.keys.rotate(async (tx, result) => {
        await opts.audit.record(
          {
            action: 'signing_key.rotate',
            actor: `user:${principal.id}`,
            target: `signing_key:${result.kid}`,
            ip: request.ip,
            details: { retired: result.retired, dropped: result.dropped },
          },
          tx,
        )
      })
    },
  )
}
