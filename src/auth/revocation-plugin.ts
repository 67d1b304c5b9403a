import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { RevocationWatcher } from './revocation.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Ends `/time-series` sessions of revoked API tokens and deleted users. */
    revocations: RevocationWatcher
  }
}

export interface RevocationPluginOptions {
  /** TOKEN_REVOCATION_CHECK_MS: how often every live session is checked. */
  checkMs: number
}

/**
 * The revocation watcher, checking on a timer (other instances' revocations) and at
 * once when asked (this instance's). Registered before the routes that revoke; the
 * sessions are read when a check runs, from the time-series plugin when it is there.
 */
export default fp(
  async (app: FastifyInstance, opts: RevocationPluginOptions) => {
    const watcher = new RevocationWatcher({
      db: app.db,
      sessions: () => (app.hasDecorator('streamSessions') ? app.streamSessions : []),
      log: app.log,
    })
    app.decorate('revocations', watcher)
    const check = () => {
      watcher.check().catch((err: unknown) => app.log.warn({ err }, 'revocation check failed'))
    }
    let timer: NodeJS.Timeout | undefined
    app.addHook('onReady', async () => {
      timer = setInterval(check, opts.checkMs)
      timer.unref()
    })
    app.addHook('onClose', async () => clearInterval(timer))
  },
  { name: 'revocation', dependencies: ['db'] },
)
