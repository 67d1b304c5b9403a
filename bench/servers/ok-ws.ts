/**
 * The do-nothing WebSocket server: answers AUTH_SUCCESS to the first frame and OK to
 * every later one without reading it. What the load generator reaches against it is the
 * ceiling of the setup on this machine. Prints {"port"} once listening.
 *
 * The OKs for the frames of one read leave in one write (the TCP socket is corked until
 * the end of the tick), as the gateway's replies do: a ceiling that wrote each OK with its
 * own system call would cost the load generator more per reply than the gateway does,
 * and would stop being a ceiling.
 */
import type { Socket } from 'node:net'
import { WebSocketServer } from 'ws'

const OK = Buffer.from('OK')
const TEXT = { binary: false }

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 1 << 20 })
wss.on('connection', (ws) => {
  const tcp = (ws as unknown as { _socket?: Socket })._socket
  let first = true
  let corked = false
  const uncork = () => {
    corked = false
    tcp?.uncork()
  }
  ws.on('message', () => {
    if (!corked && tcp) {
      corked = true
      tcp.cork()
      process.nextTick(uncork)
    }
    if (first) {
      first = false
      ws.send('AUTH_SUCCESS')
    } else {
      ws.send(OK, TEXT)
    }
  })
})
wss.on('listening', () => {
  const address = wss.address()
  process.stdout.write(JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 }) + '\n')
})
process.on('SIGTERM', () => process.exit(0))
