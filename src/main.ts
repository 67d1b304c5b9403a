import closeWithGrace from 'close-with-grace'
import type { AddressInfo } from 'node:net'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'

// How long a graceful shutdown may take before the process exits anyway.
const SHUTDOWN_GRACE_MS = 25_000

async function main(): Promise<void> {
  let config
  try {
    config = loadConfig()
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`matt-collector: ${err.message}\n`)
      process.exit(78) // EX_CONFIG
    }
    throw err
  }
  const app = await buildApp(config)
  // A second signal during the grace period exits at once (close-with-grace does that).
  closeWithGrace({ delay: SHUTDOWN_GRACE_MS, logger: app.log }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
    else app.log.info({ signal }, 'shutting down')
    await app.close()
  })
  await app.listen({ host: config.host, port: config.port })
  const address = app.server.address() as AddressInfo
  // Printed whatever LOG_LEVEL says: operators and tests read the ports from it.
  app.log
    .child({}, { level: 'info' })
    .info({ http_port: address.port, mqtt_port: null, path_prefix: config.pathPrefix }, 'listening')
}

main().catch((err: unknown) => {
  process.stderr.write(`matt-collector: failed to start: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
})
