import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import { buildApp, type BuildOverrides } from '../../src/app.js'
import { loadConfig, type Config } from '../../src/config.js'
import { embeddedEngine, type TestDb } from './db.js'

export const TEST_SECRET = 'test-secret-that-is-long-enough-for-production-0123'

export interface TestApp {
  app: FastifyInstance
  config: Config
  /** http://127.0.0.1:<port><prefix> */
  url: string
  /** ws://127.0.0.1:<port><prefix> */
  wsUrl: string
  dataDir: string
  close(): Promise<void>
}

let shared: Promise<TestDb> | undefined
/**
 * One embedded database for all the apps a test file starts (creating a cluster takes a
 * second); tests that look at its tables use their own rows or their own TestDb.
 */
function sharedEmbedded(): Promise<TestDb> {
  shared ??= embeddedEngine.create()
  return shared
}

/** Stops the shared database; test/setup.ts calls it after each test file. */
export async function dropSharedDb(): Promise<void> {
  const db = shared
  shared = undefined
  await (await db)?.drop()
}

/**
 * A gateway built exactly as src/main.ts builds it, listening on 127.0.0.1 port 0, with
 * a fresh data dir and (unless given) an in-memory embedded database.
 */
export async function startTestApp(
  env: Record<string, string> = {},
  overrides: BuildOverrides & { testDb?: TestDb } = {},
): Promise<TestApp> {
  const dataDir = await mkdtemp(join(tmpdir(), 'mc-test-'))
  const config = loadConfig({
    JWT_SECRET: TEST_SECRET,
    DATA_DIR: dataDir,
    LOG_LEVEL: 'error',
    SERVER_HOST: '127.0.0.1',
    SERVER_PORT: '0',
    // Mosquitto may hold 1883 here; the embedded broker takes any free port in tests.
    MQTT_PORT: '0',
    ...env,
  })
  const testDb = overrides.testDb ?? (config.databaseUrl === undefined ? await sharedEmbedded() : undefined)
  const app = await buildApp(config, {
    logger: overrides.logger ?? { level: config.logLevel },
    ...(testDb ? { db: testDb.db } : {}),
    ...(overrides.sink ? { sink: overrides.sink } : {}),
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  return {
    app,
    config,
    url: `http://127.0.0.1:${port}${config.pathPrefix}`,
    wsUrl: `ws://127.0.0.1:${port}${config.pathPrefix}`,
    dataDir,
    async close() {
      await app.close()
      await rm(dataDir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 })
    },
  }
}
