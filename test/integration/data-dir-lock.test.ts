import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { DataDirLockedError, lockDataDir } from '../../src/db/data-dir-lock.js'
import { TEST_SECRET } from '../helpers/app.js'
import { runGatewayExpectingFailure, startGatewayProcess, type GatewayProcess } from '../helpers/process.js'

const made: string[] = []
const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 })
})

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mc-lock-'))
  made.push(dir)
  return dir
}

async function postmasterPid(dir: string): Promise<number> {
  return Number((await readFile(join(dir, 'postgres', 'postmaster.pid'), 'utf8')).split('\n')[0])
}

describe('one gateway per DATA_DIR', () => {
  it('refuses a second app on the same DATA_DIR at once, and the first keeps serving with its database untouched', async () => {
    const dir = await dataDir()
    const config = loadConfig({ JWT_SECRET: TEST_SECRET, DATA_DIR: dir, LOG_LEVEL: 'error' })
    const first = await buildApp(config, { logger: false })
    cleanups.push(() => first.close())
    const pid = await postmasterPid(dir)

    const second = buildApp(config, { logger: false })
    await expect(second).rejects.toThrow(DataDirLockedError)
    await expect(second).rejects.toThrow(
      `DATA_DIR ${dir} is in use by another matt-collector (pid ${process.pid}): stop that one, or start this one with another DATA_DIR`,
    )

    expect(await postmasterPid(dir)).toBe(pid)
    expect(existsSync(`/proc/${pid}`)).toBe(true)
    await first.db.ping()
    expect((await first.inject({ url: '/health' })).json()).toEqual({ status: 'ok' })
  })

  it('is free again once the app closes', async () => {
    const dir = await dataDir()
    const config = loadConfig({ JWT_SECRET: TEST_SECRET, DATA_DIR: dir, LOG_LEVEL: 'error' })
    await (await buildApp(config, { logger: false })).close()
    const again = await buildApp(config, { logger: false })
    cleanups.push(() => again.close())
    expect((await again.inject({ url: '/health' })).statusCode).toBe(200)
  })

  it('refuses a second gateway process; after the first is SIGKILLed, a restart takes over', async () => {
    const dir = await dataDir()
    const env = { DATA_DIR: dir, JWT_SECRET: TEST_SECRET, SERVER_HOST: '127.0.0.1', SERVER_PORT: '0', MQTT_PORT: '0' }
    const first = await startGatewayProcess(env)
    cleanups.push(() => first.stop('SIGKILL'))
    const pid = await postmasterPid(dir)

    const refused = await runGatewayExpectingFailure(env)
    expect(refused.code).not.toBe(0)
    expect(refused.output).toContain(`DATA_DIR ${dir} is in use by another matt-collector (pid ${first.child.pid})`)
    expect(await postmasterPid(dir)).toBe(pid)
    expect((await fetch(`http://127.0.0.1:${first.httpPort}/health`)).status).toBe(200)

    // Killed: no close hook runs, its Postgres is left running; the kernel drops the lock.
    expect((await first.stop('SIGKILL')).signal).toBe('SIGKILL')
    const restarted: GatewayProcess = await startGatewayProcess(env)
    cleanups.push(() => restarted.stop('SIGKILL'))
    expect((await fetch(`http://127.0.0.1:${restarted.httpPort}/health`)).status).toBe(200)
    expect(existsSync(`/proc/${pid}`)).toBe(false)
    expect((await restarted.stop('SIGTERM')).code).toBe(0)
  })

  it('names the holder, and is free again after release (which is safe to call twice)', async () => {
    const dir = await dataDir()
    const held = await lockDataDir(dir)
    await expect(lockDataDir(dir)).rejects.toThrow(`DATA_DIR ${dir} is in use by another matt-collector (pid ${process.pid})`)
    await held.release()
    await held.release() // twice is fine
    const next = await lockDataDir(dir)
    await next.release()
  })
})
