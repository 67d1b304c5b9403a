import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { WebSocket } from 'ws'
import { errorBody } from '../api-schemas.js'
import { AppError, unavailable } from '../errors.js'
import { security, upgradeResponses } from '../observability/openapi.js'
import type { ChannelHub } from './hub.js'
import type { Admission } from './types.js'

export interface ChannelRouteOptions {
  prefix: string
  hub: ChannelHub
  /** CHANNEL_MAX_CONNECTIONS_PER_USER: one user's `/ws` connections on this instance. */
  maxConnectionsPerUser: number
}

/** An admitted upgrade between its checks and its socket: it holds one of its user's connection slots. */
interface Pending {
  admission: Admission
  release(): void
}

/**
 * `GET /ws?token=&channelId=[&since=]` (docs/API.md section 9). Every refusal is an HTTP
 * answer before the 101, in this order: shutdown, MAX_CONNECTIONS (shared with
 * /time-series) and origin (wsGate); token and channel policy (channelAuth, 400/401/403);
 * the per-user cap (429); the channels not started yet (503).
 */
export function registerChannelRoute(app: FastifyInstance, opts: ChannelRouteOptions): void {
  const { hub, maxConnectionsPerUser } = opts
  const pending = new WeakMap<FastifyRequest, Pending>()
  // Upgrades admitted but not open yet count against their user's cap, so concurrent
  // upgrades cannot all pass it.
  const reserved = new Map<string, number>()

  const checkCap = (admission: Admission): void => {
    const userId = admission.principal.member.user_id
    if (hub.connectionsOf(userId) + (reserved.get(userId) ?? 0) >= maxConnectionsPerUser) {
      throw new AppError(429, 'too_many_connections', `at most ${maxConnectionsPerUser} /ws connections per user`)
    }
  }

  const reserve = (request: FastifyRequest, admission: Admission): void => {
    const userId = admission.principal.member.user_id
    reserved.set(userId, (reserved.get(userId) ?? 0) + 1)
    let held = true
    const release = () => {
      if (!held) return
      held = false
      const left = (reserved.get(userId) ?? 1) - 1
      if (left > 0) reserved.set(userId, left)
      else reserved.delete(userId)
    }
    // An upgrade that never opens (the client went away, a later hook failed) frees its slot too.
    request.raw.socket.once('close', release)
    pending.set(request, { admission, release })
  }

  app.get(
    `${opts.prefix}/ws`,
    {
      websocket: true,
      // No querystring schema: channelAuth checks the query itself, in the order above.
      schema: {
        summary: 'Live channels (the Go WebSocket server): `?token=&channelId=[&since=]`, then JSON event frames',
        description:
          'A WebSocket upgrade (docs/API.md section 9). Query: `token` (or `Authorization: Bearer`), `channelId` (at most 128 characters), `since` (an offset to recover from). After the 101: `presence:*`, the events of the channel and `typing:*` frames.',
        tags: ['channels'],
        security: security.channelMember,
        response: {
          ...upgradeResponses,
          400: errorBody.describe('A missing or malformed channelId or since'),
          401: errorBody.describe('No token, or a bad one'),
          403: errorBody.describe('The Origin is not allowed, or the channel policy refuses the token'),
          429: errorBody.describe('CHANNEL_MAX_CONNECTIONS_PER_USER reached on this instance'),
          503: errorBody.describe('Shutting down, MAX_CONNECTIONS reached, or the channels are starting'),
        },
      },
      preValidation: async (request, reply) => {
        await app.wsGate(request, reply)
        if (reply.sent) return reply
        const admission = await app.channelAuth.admit(request)
        checkCap(admission)
        if (!hub.ready) throw unavailable('channels are starting or unavailable: retry', 'channels_unavailable')
        reserve(request, admission)
      },
      // A refused token or channel (401/403) is one of the admin dashboard's last errors.
      onError: async (request, _reply, err) => {
        if (err.statusCode === 401 || err.statusCode === 403) app.adminErrors.record({ kind: 'auth_failure', endpoint: 'ws', reason: err.message, remote: request.ip })
      },
    },
    (socket: WebSocket, request) => {
      const admitted = pending.get(request)
      if (admitted === undefined) {
        // Not possible through preValidation; never open a channel without its checks.
        socket.terminate()
        return
      }
      pending.delete(request)
      const conn = hub.open(socket, admitted.admission, request.ip)
      admitted.release()
      // Attached before any await: frames that arrive early must not be lost.
      socket.on('message', (data) => {
        hub.onFrame(conn, Buffer.isBuffer(data) ? data : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]))
      })
      socket.on('pong', () => conn.onPong())
      socket.on('close', () => hub.closed(conn))
    },
  )
}
