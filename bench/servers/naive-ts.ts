/**
 * The naive design of DESIGN.md's targets, as the Go original streamed: a connection
 * authenticates with `$AUTH <jwt>`, then for each frame the server tags its lines with the
 * token's user and org, awaits one write of them to the sink, answers `OK`, and only then
 * takes the connection's next frame. Written as a plain Node server would be: the frame as
 * a string, split on newlines, the tags spliced in before each line's first space, joined
 * and posted with node:http on a keep-alive agent (uncompressed, as the gateway's sink
 * sends by default). It validates nothing, so its cost per line is a floor for any server
 * built this way. Its replies are corked per tick like the ceiling's (ok-ws.ts).
 *
 * Two more modes measure what this machine allows any server that hands every line to the
 * sink over HTTP, beside the load generator and the sink (no such server does less):
 * - `forward`, the pass-through: each frame's bytes go to the sink as they arrived (no
 *   decoding, no tags, no checks), one awaited write per frame as above;
 * - `forward-group`, the same with group commit: the frames of every connection are
 *   gathered while a write is under way and go out as the next write, one at a time, and
 *   each frame is answered when its write is done (so each connection's replies keep
 *   their order).
 *
 * argv[2]: JSON {secret, sink: "http://host:port", database, mode?}. Prints {"port"} once
 * listening.
 */
import { Agent, request } from 'node:http'
import type { Socket } from 'node:net'
import jwt from 'jsonwebtoken'
import { WebSocketServer, type RawData, type WebSocket } from 'ws'

const { secret, sink, database, mode = 'naive' } = JSON.parse(process.argv[2] ?? '{}') as {
  secret: string
  sink: string
  database: string
  mode?: 'naive' | 'forward' | 'forward-group'
}
const target = new URL(`/api/v3/write_lp?db=${encodeURIComponent(database)}&precision=nanosecond`, sink)
const agent = new Agent({ keepAlive: true, maxSockets: 256 })

function write(body: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      target,
      { method: 'POST', agent, headers: { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        res.resume()
        res.on('end', () => (res.statusCode !== undefined && res.statusCode < 300 ? resolve() : reject(new Error(`sink ${res.statusCode}`))))
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

function tagged(frame: string, tags: string): string {
  const out: string[] = []
  for (const line of frame.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const space = line.indexOf(' ')
    out.push(space < 0 ? line : line.slice(0, space) + tags + line.slice(space))
  }
  return out.join('\n')
}

/** forward-group: the frames waiting for the next write, and their replies. */
let gathered: Buffer[] = []
let waiting: Array<(text: string) => void> = []
let writing = false

function gather(frame: Buffer, reply: (text: string) => void): void {
  gathered.push(frame)
  waiting.push(reply)
  if (!writing) writeGathered()
}

function writeGathered(): void {
  const body = Buffer.concat(gathered)
  const replies = waiting
  gathered = []
  waiting = []
  writing = true
  const done = (text: string) => {
    for (const reply of replies) reply(text)
    writing = false
    if (waiting.length > 0) writeGathered()
  }
  write(body).then(
    () => done('OK'),
    (e: unknown) => done(`ERR ${(e as Error).message}`),
  )
}

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 16 << 20 })
wss.on('connection', (ws: WebSocket) => {
  const tcp = (ws as unknown as { _socket?: Socket })._socket
  let corked = false
  const uncork = () => {
    corked = false
    tcp?.uncork()
  }
  const reply = (text: string) => {
    if (!corked && tcp) {
      corked = true
      tcp.cork()
      process.nextTick(uncork)
    }
    ws.send(text)
  }
  let tags: string | undefined
  let queue = Promise.resolve()
  const handle = async (data: RawData) => {
    if (tags !== undefined && mode === 'forward') {
      try {
        await write(data as Buffer)
        reply('OK')
      } catch (e) {
        reply(`ERR ${(e as Error).message}`)
      }
      return
    }
    const text = data.toString()
    if (tags === undefined) {
      try {
        const claims = jwt.verify(text.replace(/^\$AUTH /, ''), secret) as { user: string; org: string }
        tags = `,user=${claims.user},org=${claims.org}`
        reply('AUTH_SUCCESS')
      } catch (e) {
        reply(`ERR ${(e as Error).message}`)
        ws.close()
      }
      return
    }
    try {
      await write(tagged(text, tags))
      reply('OK')
    } catch (e) {
      reply(`ERR ${(e as Error).message}`)
    }
  }
  ws.on('message', (data) => {
    if (tags !== undefined && mode === 'forward-group') gather(data as Buffer, reply)
    else queue = queue.then(() => handle(data))
  })
})
wss.on('listening', () => {
  const address = wss.address()
  process.stdout.write(JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 }) + '\n')
})
process.on('SIGTERM', () => process.exit(0))
