import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { StreamSession } from './stream-session.js'

export interface TimeSeriesOptions {
  prefix: string
  authTimeoutMs: number
  maxPendingFrames: number
}

/** `GET /time-series`: line protocol over WebSocket (docs/API.md section 5). */
export default fp(
  async (app: FastifyInstance, opts: TimeSeriesOptions) => {
    const sessions = new Set<StreamSession>()
    // Stream tokens, user access tokens and ingest:write API tokens (docs/API.md section 5).
    const authenticate = app.ingestAuthenticator
    const gauge = app.metrics.wsConnections.labels('time-series')
    const stats = {
      frameAccepted: (lines: number) => {
        app.metrics.frames.inc({ result: 'ok' })
        app.metrics.linesAccepted.inc(lines)
      },
      frameRejected: () => {
        app.metrics.frames.inc({ result: 'error' })
        app.metrics.linesRejected.inc()
      },
    }

    app.onWsShutdown(async () => {
      await Promise.all([...sessions].map((s) => s.shutdown()))
    })

    app.get(`${opts.prefix}/time-series`, { websocket: true, preValidation: app.wsGate }, (socket, request) => {
      const log = request.log.child({ endpoint: 'time-series', remote: request.ip })
      const session = new StreamSession(socket, {
        authenticate,
        batcher: app.batcher,
        msUntilExpiry: (exp) => app.tokens.msUntilExpiry(exp),
        authTimeoutMs: opts.authTimeoutMs,
        maxPendingFrames: opts.maxPendingFrames,
        log,
        stats,
      })
      sessions.add(session)
      gauge.inc()
      // Attached before any await: frames that arrive early must not be lost.
      socket.on('message', (data) => {
        session.onFrame((data as Buffer).toString('utf8'))
      })
      socket.on('close', () => {
        sessions.delete(session)
        gauge.dec()
        session.onClosed()
      })
    })
  },
  { name: 'time-series', dependencies: ['ws', 'sink', 'auth', 'access', 'metrics'] },
)
