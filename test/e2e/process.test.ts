import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import jwt from 'jsonwebtoken'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresAvailable, postgresEngine } from '../helpers/db.js'
import { runGatewayExpectingFailure, startGatewayProcess } from '../helpers/process.js'
import { requireService } from '../helpers/services.js'
import { TestClient } from '../helpers/ws-client.js'

describe('the gateway process on embedded defaults', () => {
  let dataDir: string
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'mc-e2e-'))
  })
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 })
  })

  it('starts with no configuration, keeps streamed data across a restart, and stops on SIGTERM', async () => {
    const env = { DATA_DIR: dataDir, SERVER_HOST: '127.0.0.1', SERVER_PORT: '0', MQTT_PORT: '0' }
    const first = await startGatewayProcess(env)
    expect(first.httpPort).toBeGreaterThan(0)
    expect(first.output.some((l) => l.includes('JWT_SECRET not set'))).toBe(true)
    const secret = (await readFile(join(dataDir, 'jwt-secret'), 'utf8')).trim()
    expect(secret.length).toBeGreaterThanOrEqual(32)

    const health = await fetch(`http://127.0.0.1:${first.httpPort}/health`)
    expect(await health.json()).toEqual({ status: 'ok' })

    // A backend holding the generated secret mints a stream token, then streams a line.
    const backend = jwt.sign({ userId: '7', email: 'a@example.com' }, secret, { expiresIn: 60 })
    const minted = await fetch(`http://127.0.0.1:${first.httpPort}/mock-auth`, {
      method: 'POST',
      headers: { authorization: `Bearer ${backend}`, 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'ann', user_id: '7', org: 'acme', org_id: '1', account_id: '2' }),
    })
    const { token } = (await minted.json()) as { token: string }
    const c = await TestClient.connect(`ws://127.0.0.1:${first.httpPort}/time-series`)
    c.send(`$AUTH ${token}`)
    expect(await c.next()).toBe('AUTH_SUCCESS')
    c.send('weather,station=s1 temp=21.5 1700000000000000000')
    expect(await c.next()).toBe('OK')

    const stopped = await first.stop('SIGTERM')
    expect(stopped.code).toBe(0)
    expect((await c.waitClosed()).code).toBe(1001)

    // Same DATA_DIR: same secret (the old token still works) and the data is still there.
    const second = await startGatewayProcess(env)
    try {
      expect(second.output.some((l) => l.includes('JWT_SECRET not set'))).toBe(false)
      const c2 = await TestClient.connect(`ws://127.0.0.1:${second.httpPort}/time-series`)
      c2.send(`$AUTH ${token}`)
      expect(await c2.next()).toBe('AUTH_SUCCESS')
      c2.close()
    } finally {
      expect((await second.stop()).code).toBe(0)
    }
    const { openDb } = await import('../../src/db/index.js')
    const db = await openDb({ databaseUrl: undefined, dataDir, log: { info() {}, warn() {} } })
    try {
      const rows = await db.query<{ tags: Record<string, string>; fields: Record<string, number> }>(
        "SELECT tags, fields FROM metrics WHERE measurement = 'weather'",
      )
      expect(rows).toEqual([{ tags: { station: 's1', user: 'ann', org: 'acme' }, fields: { temp: 21.5 } }])
    } finally {
      await db.close()
    }
  }, 60_000)

  it('restarts on the same DATA_DIR after being SIGKILLed (the embedded server it left running is stopped first)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mc-e2e-kill-'))
    const env = { DATA_DIR: dir, SERVER_HOST: '127.0.0.1', SERVER_PORT: '0', MQTT_PORT: '0', JWT_SECRET: 'k'.repeat(40) }
    try {
      const first = await startGatewayProcess(env)
      const pidFile = join(dir, 'postgres', 'postmaster.pid')
      const orphan = Number((await readFile(pidFile, 'utf8')).split('\n')[0])
      expect((await first.stop('SIGKILL')).signal).toBe('SIGKILL')
      expect(() => process.kill(orphan, 0)).not.toThrow() // still running, now an orphan
      const second = await startGatewayProcess(env)
      try {
        expect(second.output.some((l) => l.includes('left running by an earlier process'))).toBe(true)
        expect(() => process.kill(orphan, 0)).toThrow()
        expect((await fetch(`http://127.0.0.1:${second.httpPort}/readyz`)).status).toBe(200)
      } finally {
        expect((await second.stop()).code).toBe(0)
      }
    } finally {
      await rm(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 })
    }
  }, 60_000)

  it('refuses to start in production with a short JWT_SECRET, naming it', async () => {
    const { code, output } = await runGatewayExpectingFailure({
      NODE_ENV: 'production',
      JWT_SECRET: 'too-short',
      ALLOWED_ORIGINS: 'https://app.example',
      DATA_DIR: dataDir,
    })
    expect(code).not.toBe(0)
    expect(output).toMatch(/JWT_SECRET is required in production and must be at least 32 characters/)
  })
})

describe('the first start in production', () => {
  it('without ADMIN_PASSWORD and no user yet: one line naming it, exit 78', async () => {
    if (!(await requireService('PostgreSQL at 127.0.0.1:5432', await postgresAvailable()))) return
    const fresh = await postgresEngine.create()
    const dataDir = await mkdtemp(join(tmpdir(), 'mc-e2e-'))
    try {
      const { code, output } = await runGatewayExpectingFailure({
        NODE_ENV: 'production',
        JWT_SECRET: 'a-production-secret-of-at-least-32-characters',
        ALLOWED_ORIGINS: 'https://app.example',
        DATABASE_URL: fresh.url as string,
        MQTT_ENABLED: 'false',
        SERVER_PORT: '0',
        DATA_DIR: dataDir,
      })
      expect(output).toContain('matt-collector: ADMIN_PASSWORD is required to create the first admin user')
      // A configuration to fix, not a crash: no stack trace.
      expect(output).not.toMatch(/\n\s+at /)
      expect(code).toBe(78)
    } finally {
      await fresh.drop()
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})
