import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { OidcVerifier } from '../auth/oidc.js'
import type { Config } from '../config.js'
import { createChannelAuthenticator, type ChannelAuthenticator } from './channel-auth.js'
import { defaultChannelPolicy } from './policy.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The `/ws` upgrade check: token, channel id and channel policy; throws an AppError (400/401/403/503). */
    channelAuth: ChannelAuthenticator
  }
}

export interface ChannelAuthPluginOptions {
  config: Pick<Config, 'oidc' | 'jwt'>
}

/** `app.channelAuth`: the gateway's own tokens, and the OIDC issuer's when OIDC_ISSUER_URL is set. */
export default fp(
  async (app: FastifyInstance, opts: ChannelAuthPluginOptions) => {
    const { oidc } = opts.config
    const verifier =
      oidc === undefined
        ? undefined
        : new OidcVerifier(
            { ...oidc, clockSkewS: opts.config.jwt.clockSkewS },
            {
              log: app.log.child({ oidcIssuer: oidc.issuer }),
              onFetch: ({ result }) => app.metrics.oidcJwksFetches.inc({ result }),
            },
          )
    app.decorate(
      'channelAuth',
      createChannelAuthenticator({
        tokens: app.tokens,
        policy: defaultChannelPolicy,
        ...(verifier !== undefined && oidc !== undefined ? { oidc: { verifier, issuer: oidc.issuer } } : {}),
      }),
    )
  },
  { name: 'channel-auth', dependencies: ['auth', 'access', 'metrics'] },
)
