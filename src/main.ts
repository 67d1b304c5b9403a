import closeWithGrace from 'close-with-grace'
import type { AddressInfo } from 'node:net'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'
import { DataDirLockedError } from './db/data-dir-lock.js'
import { DbError } from './db/db.js'
import { BrokerListenError } from './devices/broker-listener.js'
import { BootstrapError } from './users/service.js'

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
  // SHUTDOWN_GRACE_MS, longer than a sink write may take (config.ts insists): every owed
  // reply goes out before it ends. A second signal during it exits at once.
  closeWithGrace({ delay: config.shutdownGraceMs, logger: app.log }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
    else app.log.info({ signal }, 'shutting down')
    await app.close()
  })
  await app.listen({ host: config.host, port: config.port })
  const address = app.server.address() as AddressInfo
  // Printed whatever LOG_LEVEL says: operators and tests read the ports from it.
  app.log
    .child({}, { level: 'info' })
    .info({ http_port: address.port, mqtt_port: app.broker.port, path_prefix: config.pathPrefix }, 'listening')
}

main().catch((err: unknown) => {
  // A configuration the first start cannot go on with (no ADMIN_PASSWORD in production): as a
  // bad variable, one line and EX_CONFIG.
  if (err instanceof BootstrapError) {
    process.stderr.write(`matt-collector: ${err.message}\n`)
    process.exit(78)
  }
  // A refusal that says what to do (the database cannot start, DATA_DIR or MQTT_PORT is in use) is one
  // line; anything else is a bug, shown with its stack.
  const said = err instanceof DbError || err instanceof DataDirLockedError || err instanceof BrokerListenError
  process.stderr.write(`matt-collector: failed to start: ${said ? err.message : ((err as Error)?.stack ?? String(err))}\n`)
  process.exit(1)
})
