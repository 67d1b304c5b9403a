/**
 * A sink that answers InfluxDB's write API with 204 as soon as the body is read: the
 * gateway's own ceiling, with no database cost. With `--status=503` it answers that
 * instead (a sink that is down: the gateway spools). Prints {"port"} once listening; on
 * SIGTERM prints {"requests","bytes"} and exits.
 */
import { createServer } from 'node:http'

const status = Number(/^--status=(\d{3})$/.exec(process.argv[2] ?? '')?.[1] ?? 204)
let requests = 0
let bytes = 0
const server = createServer((req, res) => {
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length
  })
  req.on('end', () => {
    requests++
    if (status === 204) res.writeHead(204).end()
    else res.writeHead(status, { 'content-type': 'application/json' }).end('{"error":"down","data":null}')
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  process.stdout.write(JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 }) + '\n')
})
process.on('SIGTERM', () => {
  process.stdout.write(JSON.stringify({ requests, bytes }) + '\n')
  process.exit(0)
})
