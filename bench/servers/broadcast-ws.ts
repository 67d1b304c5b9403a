/**
 * The do-nothing broadcaster, the baseline of the ws-fanout scenario: a `ws` server that
 * accepts `/ws?channelId=<id>` (any token, never checked), greets each socket with an empty
 * `presence:state`, and on `POST /api/v1/channels/<id>/events` builds the event's frame once
 * (the gateway's shape: type, channelId, timestamp, offset, data) and sends that same buffer
 * to every socket of the channel, then answers `202`. The publish trigger is that HTTP POST,
 * the gateway's own route, so the publisher and subscriber processes are the same in both
 * runs. Nothing is stored, authorized, counted or logged. Prints {"port"} once listening.
 *
 * The frames sent in one tick leave in one write per socket (each socket corked until the
 * end of the tick), as a well-made broadcaster's do: a baseline paying one system call per
 * event per socket where it need not would stop being a ceiling.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import WebSocket, { WebSocketServer } from 'ws'

/** Larger bodies are refused: the bench publishes a few dozen bytes per event. */
const MAX_BODY_BYTES = 64 * 1024
const EVENTS_PATH = /^\/api\/v1\/channels\/([^/]+)\/events$/
const TEXT = { binary: false }

const channels = new Map<string, Set<WebSocket>>()
let offset = 0

const corked = new Set<Socket>()
const uncorkAll = () => {
  for (const s of corked) s.uncork()
  corked.clear()
}

function broadcast(channelId: string, frame: Buffer): void {
  const members = channels.get(channelId)
  if (members === undefined) return
  if (corked.size === 0) process.nextTick(uncorkAll)
  for (const ws of members) {
    const tcp = (ws as unknown as { _socket?: Socket })._socket
    if (tcp !== undefined && !corked.has(tcp)) {
      tcp.cork()
      corked.add(tcp)
    }
    ws.send(frame, TEXT)
  }
}

function answer(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

function publish(req: IncomingMessage, res: ServerResponse, channelId: string): void {
  const parts: Buffer[] = []
  let size = 0
  req.on('data', (c: Buffer) => {
    size += c.length
    if (size <= MAX_BODY_BYTES) parts.push(c)
  })
  req.on('end', () => {
    if (size > MAX_BODY_BYTES) return answer(res, 413, '{"error":"payload_too_large"}')
    let body: { type?: unknown; data?: unknown }
    try {
      body = JSON.parse(Buffer.concat(parts).toString('utf8')) as { type?: unknown; data?: unknown }
    } catch {
      return answer(res, 400, '{"error":"bad_request"}')
    }
    if (typeof body !== 'object' || body === null || typeof body.type !== 'string') return answer(res, 400, '{"error":"bad_request"}')
    offset++
    // The gateway's frame, key for key (src/channels/events.ts eventFrame), made once.
    const frame = Buffer.from(
      `{"type":${JSON.stringify(body.type)},"channelId":${JSON.stringify(channelId)},"timestamp":${Date.now()},"offset":${offset},"data":${JSON.stringify(body.data ?? null)}}`,
    )
    broadcast(channelId, frame)
    answer(res, 202, `{"offset":${offset}}`)
  })
}

const server = createServer((req, res) => {
  const m = req.method === 'POST' ? EVENTS_PATH.exec((req.url ?? '').split('?')[0] as string) : null
  if (m === null) return answer(res, 404, '{"error":"not_found"}')
  publish(req, res, decodeURIComponent(m[1] as string))
})
// The publisher keeps its connections for the whole run.
server.keepAliveTimeout = 120_000

const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 4096 })
wss.on('connection', (ws, req) => {
  const channelId = new URL(req.url ?? '/', 'http://x').searchParams.get('channelId') ?? ''
  let members = channels.get(channelId)
  if (members === undefined) channels.set(channelId, (members = new Set()))
  members.add(ws)
  ws.on('error', () => ws.terminate())
  ws.on('close', () => {
    members.delete(ws)
    if (members.size === 0) channels.delete(channelId)
  })
  ws.send(`{"type":"presence:state","channelId":${JSON.stringify(channelId)},"timestamp":${Date.now()},"data":{"members":[]}}`)
})

server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  process.stdout.write(JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 }) + '\n')
})
process.on('SIGTERM', () => process.exit(0))
