import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { deviceAuthenticator } from './credentials.js'
import { DevicesRepo } from './repo.js'
import { deviceRoutes } from './routes.js'
import { DEFAULT_SESSION_TIMINGS, SessionTracker, type SessionTimings } from './sessions.js'
import type { DeviceDirectory } from './types.js'

declare module 'fastify' {
  interface FastifyInstance {
    devices: DeviceDirectory
  }
}

export interface DevicesPluginOptions {
  prefix: string
  /** How live sessions are shared between instances; default DEFAULT_SESSION_TIMINGS. */
  sessions?: SessionTimings
}

/**
 * Device provisioning (`/devices`) and the directory the embedded broker asks at CONNECT
 * (`app.devices`): credentials, generations, and the record of live sessions.
 */
export default fp(
  async (app: FastifyInstance, opts: DevicesPluginOptions) => {
    const timings = opts.sessions ?? DEFAULT_SESSION_TIMINGS
    const repo = new DevicesRepo(app.db, { sessionStaleAfterMs: timings.staleAfterMs })
    const sessions = new SessionTracker({ db: app.db, log: app.log.child({ component: 'device-sessions' }), timings })
    await sessions.start()
    // Registered before the broker, so this runs after the broker closed its sessions.
    app.addHook('onClose', () => sessions.close())

    app.decorate('devices', {
      authenticate: deviceAuthenticator({ repo }),
      generations: (ids) => repo.generations(ids),
      sessionOpened: (deviceId, sessionId) => sessions.opened(deviceId, sessionId),
      sessionClosed: (deviceId, sessionId) => sessions.closed(deviceId, sessionId),
    } satisfies DeviceDirectory)

    deviceRoutes(app, { prefix: opts.prefix, db: app.db, repo, audit: app.audit, bus: app.bus })
  },
  { name: 'devices', dependencies: ['db', 'access', 'audit', 'bus'] },
)
