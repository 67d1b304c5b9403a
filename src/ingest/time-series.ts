import type { Socket } from 'node:net'
import type { WebSocket } from 'ws'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { security, upgradeResponses } from '../observability/openapi.js'
import { FrameRewriter } from './line-protocol/index.js'
import { StreamSession, type FrameSocket } from './stream-session.js'

declare module 'fastify' {
  interface FastifyInstance {
    streamSessions: ReadonlySet<StreamSession>
  }
}

export interface TimeSeriesOptions {
  prefix: string
  authTimeoutMs: number
  maxPendingFrames: number
  /** Per connection: bytes of frames held while an asynchronous `$AUTH` is checked. */
  maxHeldBytes: number
}

/** `GET /time-series`: line protocol over WebSocket (docs/API.md section 5). */
export default fp(
  async (app: FastifyInstance, opts: TimeSeriesOptions) => {
    const sessions = new Set<StreamSession>()
    // Live sessions, for whoever must end some of them (token revocation, the admin API).
    app.decorate('streamSessions', sessions as ReadonlySet<StreamSession>)
    // Stream tokens, user access tokens and ingest:write API tokens (docs/API.md section 5).
    const authenticate = app.ingestAuthenticator
    const rewriter = new FrameRewriter()
    const gauge = app.metrics.wsConnections.labels('time-series')
    // Counted in plain numbers per frame; the counters get them when /metrics is read.
    const counts = { ok: 0, lines: 0, error: 0, rejectedLines: 0 }
    const framesOk = app.metrics.frames.labels('ok')
    const framesError = app.metrics.frames.labels('error')
    app.metrics.beforeScrape(() => {
      if (counts.ok > 0) framesOk.inc(counts.ok)
      if (counts.lines > 0) app.metrics.linesAccepted.inc(counts.lines)
      if (counts.error > 0) {
        framesError.inc(counts.error)
        app.metrics.linesRejected.inc(counts.rejectedLines)
      }
      counts.ok = counts.lines = counts.error = counts.rejectedLines = 0
    })
    const stats = {
      frameAccepted: (lines: number) => {
        counts.ok++
        counts.lines += lines
      },
      frameRejected: (lines: number) => {
        counts.error++
        counts.rejectedLines += lines
      },
      refused: (s: StreamSession, kind: 'bad_line' | 'auth_failure', reason: string) =>
        app.adminErrors.record({ kind, endpoint: 'time-series', reason, user: s.user, org: s.org, remote: s.remote }),
    }

    app.onWsShutdown(async () => {
      await Promise.all([...sessions].map((s) => s.shutdown()))
    })

    const schema = {
      summary: 'Line protocol over WebSocket (Matt Collector): `$AUTH <token>`, then frames of lines, one reply each',
      description:
        'A WebSocket upgrade; the token comes in the first frame, not in the request (docs/API.md section 5). Frames: `$AUTH <token>` → `AUTH_SUCCESS`; then line protocol → `OK`, `ERR line N: …` or `ERR busy: retry`.',
      tags: ['ingest'],
      security: security.none,
      response: upgradeResponses,
    }
    app.get(`${opts.prefix}/time-series`, { websocket: true, preValidation: app.wsGate, schema }, (socket, request) => {
      const log = request.log.child({ endpoint: 'time-series', remote: request.ip })
      const session = new StreamSession(frameSocket(socket), {
        authenticate,
        batcher: app.batcher,
        rewriter,
        msUntilExpiry: (exp) => app.tokens.msUntilExpiry(exp),
        authTimeoutMs: opts.authTimeoutMs,
        maxPendingFrames: opts.maxPendingFrames,
        maxHeldBytes: opts.maxHeldBytes,
        log,
        stats,
        remote: request.ip,
      })
      sessions.add(session)
      gauge.inc()
      // Attached before any await: frames that arrive early must not be lost.
      socket.on('message', (data) => {
        session.onFrame(asBuffer(data))
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

/** A message as one Buffer (ws gives one unless binaryType was changed, which it is not here). */
function asBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)
}

// The reply almost every frame gets, encoded once.
const OK = Buffer.from('OK')
const TEXT = { binary: false }
// The same as whole WebSocket frames (RFC 6455 5.2: FIN + text opcode, unmasked from a
// server, length 2), OK_RUN of them in a row: a run of OKs is one write of a slice of this.
const OK_RUN = 256
const OK_FRAMES = Buffer.alloc(4 * OK_RUN)
for (let i = 0; i < OK_RUN; i++) OK_FRAMES.set([0x81, 0x02, 0x4f, 0x4b], 4 * i)

/**
 * The protocol's view of a `ws` socket, with corking of the TCP socket underneath. Runs of
 * OKs are written to the TCP socket as prepared frames, bypassing ws's sender: ws writes
 * every frame to the socket as it is sent (no permessage-deflate here, src/ws/plugin.ts,
 * and nothing but strings and Buffers is sent), so the order of replies is kept.
 */
function frameSocket(ws: WebSocket): FrameSocket {
  const tcp = (ws as unknown as { _socket?: Socket })._socket
  return {
    send: (data) => (data === 'OK' ? ws.send(OK, TEXT) : ws.send(data)),
    sendOk: (count) => {
      if (tcp === undefined || ws.readyState !== ws.OPEN) {
        for (let i = 0; i < count; i++) ws.send(OK, TEXT)
        return
      }
      for (let left = count; left > 0; left -= OK_RUN) tcp.write(OK_FRAMES.subarray(0, 4 * Math.min(left, OK_RUN)))
    },
    close: (code, reason) => ws.close(code, reason),
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    cork: () => tcp?.cork(),
    uncork: () => tcp?.uncork(),
  }
}
