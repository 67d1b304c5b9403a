/**
 * The do-nothing WebSocket server: answers AUTH_SUCCESS to the first frame and OK to
 * every later one without reading it. What the load generator reaches against it is the
 * ceiling of the setup on this machine. Prints {"port"} once listening.
 */
import { WebSocketServer } from 'ws'

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 1 << 20 })
wss.on('connection', (ws) => {
  let first = true
  ws.on('message', () => {
    if (first) {
      first = false
      ws.send('AUTH_SUCCESS')
    } else {
      ws.send('OK')
    }
  })
})
wss.on('listening', () => {
  const address = wss.address()
  process.stdout.write(JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 }) + '\n')
})
process.on('SIGTERM', () => process.exit(0))
