import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import jwt from 'jsonwebtoken'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startFakeInflux, type FakeInflux } from '../helpers/fake-influx.js'
import { startGatewayProcess, type GatewayProcess } from '../helpers/process.js'
import { waitUntil } from '../helpers/wait.js'
import { TestClient } from '../helpers/ws-client.js'

const SECRET = 'shutdown-secret-shutdown-secret-shutdown-01'
const token = jwt.sign({ user: 'sd', org: 'org', type: 'stream' }, SECRET, { expiresIn: 3600 })

describe('SIGTERM with a sink that hangs', () => {
  let influx: FakeInflux
  let dataDir: string
  let gateway: GatewayProcess | undefined
  beforeEach(async () => {
    influx = await startFakeInflux()
    dataDir = await mkdtemp(join(tmpdir(), 'mc-shutdown-'))
  })
  afterEach(async () => {
    await gateway?.stop('SIGKILL')
    await influx.close()
    await rm(dataDir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 })
  })

  it('answers every frame exactly once (OK, or ERR busy: retry for what is not durable in time), closes 1001, exits 0', async () => {
    // A sink timeout longer than the 25 s the grace used to be: a write under way then
    // outlived the grace and the process exited with its replies owed.
    gateway = await startGatewayProcess({
      DATA_DIR: dataDir,
      SERVER_HOST: '127.0.0.1',
      SERVER_PORT: '0',
      MQTT_PORT: '0',
      JWT_SECRET: SECRET,
      INFLUXDB_URL: influx.url,
      INFLUXDB_DATABASE: 'db',
      SINK_TIMEOUT_MS: '30000',
      SHUTDOWN_GRACE_MS: '32000',
      LOG_LEVEL: 'warn',
    })
    const c = await TestClient.authenticated(`ws://127.0.0.1:${gateway.httpPort}`, token)
    c.send('sd,i=0 v=0 1')
    expect(await c.next()).toBe('OK')

    influx.setMode('hang')
    const frames = 10
    for (let i = 1; i <= frames; i++) c.send(`sd,i=${i} v=${i} ${i + 1}`)
    // The gateway answers a ping once it has read every frame before it: all were received.
    const pong = new Promise((resolve) => c.ws.once('pong', resolve))
    c.ws.ping()
    await pong
    await waitUntil(() => influx.writes.some((w) => w.status === 'hung'), 20_000, 'a write the sink never answers')

    gateway.child.kill('SIGTERM')
    const closed = await c.waitClosed(60_000)
    expect(closed.code).toBe(1001)
    // Exactly one reply per frame, in order, all sent before the close.
    expect(c.messages).toEqual(['AUTH_SUCCESS', 'OK', ...Array(frames).fill('ERR busy: retry')])
    // Exit code 0: the shutdown ended before the grace did (close-with-grace exits 1 then).
    const exit = await gateway.exited
    expect(exit.code).toBe(0)
    expect(gateway.output.some((l) => l.includes('killed by timeout'))).toBe(false)
  }, 120_000)
})
