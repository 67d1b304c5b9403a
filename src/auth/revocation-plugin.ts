import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { CLOSE_REVOKED, type ChannelSessionView } from '../channels/types.js'
import { RevocationWatcher, type RevocableSession } from './revocation.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Ends `/time-series` sessions of revoked API tokens and deleted users, and `/ws` sessions of deleted users. */
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
 * sessions are read when a check runs, from the time-series and channels plugins when
 * they are there.
 */
export default fp(
  async (app: FastifyInstance, opts: RevocationPluginOptions) => {
    const watcher = new RevocationWatcher({
      db: app.db,
      sessions: function* () {
        if (app.hasDecorator('streamSessions')) yield* app.streamSessions
        if (app.hasDecorator('channelSessions')) for (const s of app.channelSessions()) yield channelRevocable(s)
      },
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

/** A `/ws` session: only access tokens name a gateway user; a deleted user's session is closed with 4403. */
function channelRevocable(session: ChannelSessionView): RevocableSession {
  const userId = session.principal.userId
  return {
    currentIdentity: userId === undefined ? undefined : { user: session.principal.member.name, userId },
    revoke: () => session.close(CLOSE_REVOKED, 'user deleted'),
  }
}
