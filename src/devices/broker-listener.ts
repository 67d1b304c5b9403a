import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'

/** The broker could not listen where it was told to (MQTT_PORT taken, no permission). */
export class BrokerListenError extends Error {
  override name = 'BrokerListenError'
}

export interface ListenOptions {
  host: string
  port: number
  /** MQTT_PORT was set: a taken port fails the start instead of falling back to a free one. */
  portExplicit: boolean
}

/**
 * The MQTT TCP listener. The default port (1883) may be held by another broker on a
 * development machine, and `npm start` must still work there: when MQTT_PORT was not set,
 * a taken port means a free one and a warning; when it was set, a clear error.
 */
export async function listenMqtt(
  opts: ListenOptions,
  log: FastifyBaseLogger,
  onSocket: (socket: Socket) => void,
): Promise<{ server: Server; port: number }> {
  // PUBACK is one small write answering one small read: Nagle would only delay it.
  const server = createServer({ noDelay: true }, onSocket)
  const { host, port, portExplicit } = opts
  try {
    return { server, port: await listenOn(server, host, port) }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EADDRINUSE' && !portExplicit && port !== 0) {
      log.warn({ port, host }, `MQTT port ${port} is taken and MQTT_PORT is not set: listening on a free port instead`)
      return { server, port: await listenOn(server, host, 0) }
    }
    const why = code === 'EADDRINUSE' ? 'the port is already in use' : code === 'EACCES' ? 'permission denied' : String((err as Error).message)
    throw new BrokerListenError(
      `cannot listen for MQTT on ${host}:${port}: ${why} (set MQTT_PORT to a free port, 0 for any, or MQTT_ENABLED=false)`,
      { cause: err },
    )
  }
}

function listenOn(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.removeListener('listening', onListening)
      reject(err)
    }
    const onListening = () => {
      server.removeListener('error', onError)
      resolve((server.address() as AddressInfo).port)
    }
    server.once('error', onError)
    server.once('listening', onListening)
    server.listen({ host, port })
  })
}
