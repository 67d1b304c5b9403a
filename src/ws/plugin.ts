import websocket from '@fastify/websocket'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { CLOSE_GOING_AWAY } from '../ingest/stream-session.js'

export interface WsOptions {
  maxFrameBytes: number
  maxConnections: number
  /** `undefined`: any origin. */
  allowedOrigins: string[] | undefined
}

type ShutdownHandler = () => Promise<void>

declare module 'fastify' {
  interface FastifyInstance {
    /** preValidation hook for WebSocket routes: capacity, origin and shutdown checks before the 101. */
    wsGate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
    /** Called on close before sockets are dropped, so an endpoint can answer what it received. */
    onWsShutdown: (handler: ShutdownHandler) => void
  }
}

/**
 * WebSocket support shared by every endpoint: one `ws` server (frames over maxFrameBytes
 * close the connection with 1009), one connection limit across endpoints, the origin
 * allow-list, and an ordered shutdown (endpoints answer first, leftovers get 1001).
 */
export default fp(
  async (app: FastifyInstance, opts: WsOptions) => {
    const handlers: ShutdownHandler[] = []
    let shuttingDown = false

    await app.register(websocket, {
      options: { maxPayload: opts.maxFrameBytes, perMessageDeflate: false },
      // ws has already closed the socket with the right code (1009 too big, 1007 bad UTF-8):
      // a client's protocol error is not the server's error.
      errorHandler(error, socket, request) {
        request.log.debug({ err: error }, 'websocket protocol error')
        socket.terminate()
      },
      preClose(done) {
        shuttingDown = true
        Promise.allSettled(handlers.map((h) => h())).then(() => {
          for (const client of app.websocketServer.clients) client.close(CLOSE_GOING_AWAY, 'server shutting down')
          app.websocketServer.close(() => done())
        })
      },
    })

    app.decorate('onWsShutdown', (handler: ShutdownHandler) => {
      handlers.push(handler)
    })

    app.decorate('wsGate', async (request: FastifyRequest, reply: FastifyReply) => {
      if (shuttingDown) {
        return reply.code(503).send({ error: 'shutting_down', message: 'server is shutting down' })
      }
      if (app.websocketServer.clients.size >= opts.maxConnections) {
        return reply.code(503).send({ error: 'too_many_connections', message: 'connection limit reached' })
      }
      const origin = request.headers.origin
      if (opts.allowedOrigins !== undefined && origin !== undefined && !opts.allowedOrigins.includes(origin)) {
        return reply.code(403).send({ error: 'origin_not_allowed', message: `origin ${origin} is not allowed` })
      }
    })
  },
  { name: 'ws' },
)
