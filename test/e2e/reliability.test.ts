import { readdir, stat, truncate, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import jwt from 'jsonwebtoken'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startFakeInflux, type FakeInflux } from '../helpers/fake-influx.js'
import { startGatewayProcess, type GatewayProcess } from '../helpers/process.js'
import { waitUntil } from '../helpers/wait.js'
import { TestClient } from '../helpers/ws-client.js'

// Nothing acknowledged is lost: sink outages, a SIGKILLed gateway, a full spool, a torn
// spool record. The gateway runs as its own process here, on a data dir of the test's.

const SECRET = 'reliability-secret-reliability-secret-01'
const token = jwt.sign(
  { user: 'rel', user_id: '1', org: 'org', org_id: '1', account_id: '1', type: 'stream' },
  SECRET,
  { expiresIn: 3600 },
)


/** Frame i carries the single line `rel,i=<i> v=<i> <i+1>`; returns the ids of OK'd frames. */
function idOf(line: string): number {
  return Number(/,i=(\d+)/.exec(line)?.[1])
}

describe('reliability of the ingest path', () => {
  let influx: FakeInflux
  let dataDir: string
  let gateways: GatewayProcess[] = []
  beforeEach(async () => {
    influx = await startFakeInflux()
    dataDir = await mkdtemp(join(tmpdir(), 'mc-rel-'))
    gateways = []
  })
  afterEach(async () => {
    for (const g of gateways) await g.stop('SIGKILL')
    await influx.close()
    await rm(dataDir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 })
  })

  const start = async (env: Record<string, string> = {}) => {
    const g = await startGatewayProcess({
      DATA_DIR: dataDir,
      SERVER_HOST: '127.0.0.1',
      SERVER_PORT: '0',
      MQTT_PORT: '0',
      JWT_SECRET: SECRET,
      INFLUXDB_URL: influx.url,
      INFLUXDB_DATABASE: 'db',
      SINK_TIMEOUT_MS: '1000',
      SINK_RETRY_MIN_MS: '50',
      SINK_RETRY_MAX_MS: '200',
      LOG_LEVEL: 'warn',
      ...env,
    })
    gateways.push(g)
    return g
  }

  const connect = (g: GatewayProcess) => TestClient.authenticated(`ws://127.0.0.1:${g.httpPort}`, token)

  it('sink down for 5 s (503, then dropped connections) while 5,000 frames stream: every OK is stored exactly once', async () => {
    const g = await start()
    const clients = await Promise.all([connect(g), connect(g), connect(g), connect(g)])
    const sent: number[][] = [[], [], [], []]
    influx.setMode('status503')
    const outage = (async () => {
      await new Promise((r) => setTimeout(r, 2500))
      influx.setMode('drop')
      await new Promise((r) => setTimeout(r, 2500))
      influx.setMode('ok')
    })()
    // 5,000 frames over about 5 s, spread over four connections.
    for (let i = 0; i < 5000; i++) {
      const k = i % 4
      clients[k]?.send(`rel,i=${i} v=${i} ${i + 1}`)
      sent[k]?.push(i)
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 50))
    }
    await outage
    await Promise.all(clients.map((c, k) => c.waitForCount(1 + (sent[k]?.length ?? 0), 60_000)))
    const acked: number[] = []
    clients.forEach((c, k) => {
      c.messages.slice(1).forEach((m, j) => {
        expect(['OK', 'ERR busy: retry']).toContain(m)
        if (m === 'OK') acked.push(sent[k]?.[j] as number)
      })
    })
    expect(acked.length).toBeGreaterThan(0)
    await waitUntil(() => new Set(influx.lines.map(idOf)).size >= acked.length, 30_000, 'the spool to drain')
    const stored = influx.lines.map(idOf)
    for (const id of acked) expect(stored).toContain(id)
    expect(stored.length).toBe(new Set(stored).size) // none twice
    for (const c of clients) c.close()
  }, 120_000)

  it('SIGKILLed mid-stream while the sink is down: after a restart every acknowledged line is delivered', async () => {
    influx.setMode('status503')
    const g = await start()
    const c = await connect(g)
    let i = 0
    const acked = new Set<number>()
    const ids: number[] = []
    // Stream until a good number are acknowledged (spooled), then kill without warning.
    while (acked.size < 1500) {
      for (let k = 0; k < 100; k++, i++) {
        c.send(`rel,i=${i} v=${i} ${i + 1}`)
        ids.push(i)
      }
      await new Promise((r) => setTimeout(r, 20))
      c.messages.slice(1).forEach((m, j) => m === 'OK' && acked.add(ids[j] as number))
    }
    await g.stop('SIGKILL')
    c.messages.slice(1).forEach((m, j) => m === 'OK' && acked.add(ids[j] as number))
    expect(influx.lines).toEqual([])

    influx.setMode('ok')
    await start()
    await waitUntil(() => [...acked].every((id) => influx.lines.some((l) => idOf(l) === id)), 30_000, 'replay after restart')
    const stored = new Set(influx.lines.map(idOf))
    for (const id of acked) expect(stored.has(id)).toBe(true)
  }, 120_000)

  it('spool full: ERR busy: retry, memory stays bounded, and nothing acknowledged is lost', async () => {
    influx.setMode('status503')
    const g = await start({ SPOOL_MAX_BYTES: String(2 * 1024 * 1024) })
    const c = await connect(g)
    const line = (i: number) => `rel,i=${i} v=${i},pad="${'p'.repeat(900)}" ${i + 1}`
    // About 40 MB offered against a 2 MiB spool.
    const total = 40_000
    for (let i = 0; i < total; i++) {
      c.send(line(i))
      if (i % 500 === 499) await new Promise((r) => setTimeout(r, 5))
    }
    await c.waitForCount(1 + total, 90_000)
    const replies = c.messages.slice(1)
    const acked = replies.flatMap((m, i) => (m === 'OK' ? [i] : []))
    expect(replies.filter((m) => m === 'ERR busy: retry').length).toBeGreaterThan(total / 2)
    expect(replies.every((m) => m === 'OK' || m === 'ERR busy: retry')).toBe(true)
    const status = await readFile(`/proc/${g.child.pid}/status`, 'utf8')
    const peakMb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]) / 1024
    expect(peakMb).toBeLessThan(400)

    influx.setMode('ok')
    await waitUntil(() => new Set(influx.lines.map(idOf)).size >= acked.length, 60_000, 'the spool to drain')
    const stored = new Set(influx.lines.map(idOf))
    for (const id of acked) expect(stored.has(id)).toBe(true)
    c.close()
  }, 180_000)

  it('a torn last spool record is detected at start-up and skipped; the rest is replayed', async () => {
    influx.setMode('status503')
    const g = await start({ BATCH_LINGER_MS: '1' })
    const c = await connect(g)
    // Frames one at a time, so each is its own spool record.
    for (let i = 0; i < 20; i++) {
      c.send(`rel,i=${i} v=${i} ${i + 1}`)
      expect(await c.next()).toBe('OK')
    }
    c.close()
    expect((await g.stop('SIGTERM')).code).toBe(0)

    const spoolDir = join(dataDir, 'spool')
    const segments = (await readdir(spoolDir)).filter((f) => f.endsWith('.seg')).sort()
    const last = join(spoolDir, segments.at(-1) as string)
    await truncate(last, (await stat(last)).size - 3)

    influx.setMode('ok')
    const again = await start({ LOG_LEVEL: 'info' })
    await waitUntil(() => influx.lines.length >= 19, 30_000, 'replay of the intact records')
    await new Promise((r) => setTimeout(r, 300))
    expect(influx.lines.map(idOf).sort((a, b) => a - b)).toEqual([...Array(19).keys()])
    expect(again.output.some((l) => l.includes('torn'))).toBe(true)
  }, 120_000)

  it('SIGTERM waits for what it owes; a second signal exits at once', async () => {
    influx.setMode('hang')
    const g = await start({ SINK_TIMEOUT_MS: '60000' })
    const c = await connect(g)
    c.send('rel,i=1 v=1 2')
    await waitUntil(() => influx.writes.length > 0, 10_000, 'the write to reach the sink')
    g.child.kill('SIGTERM')
    // The batch is still under way: the process must not have exited.
    await new Promise((r) => setTimeout(r, 500))
    expect(g.child.exitCode).toBeNull()
    g.child.kill('SIGTERM')
    const exit = await g.exited
    expect(exit.code).toBe(1)
    expect(g.output.some((l) => l.includes('second SIGTERM'))).toBe(true)
  }, 60_000)

  it('/readyz and /metrics show the sink down and the spool growing while it is down', async () => {
    influx.setMode('status503')
    const g = await start()
    const c = await connect(g)
    for (let i = 0; i < 10; i++) c.send(`rel,i=${i} v=${i} ${i + 1}`)
    await c.waitForCount(11)
    const ready = await fetch(`http://127.0.0.1:${g.httpPort}/readyz`)
    expect(ready.status).toBe(503)
    const body = (await ready.json()) as { components: { sink: Record<string, unknown> } }
    expect(body.components.sink).toMatchObject({ status: 'down', mode: 'spooling', spool_lines: 10 })
    const metrics = await (await fetch(`http://127.0.0.1:${g.httpPort}/metrics`)).text()
    expect(metrics).toMatch(/^mc_spool_lines 10$/m)
    expect(metrics).toMatch(/^mc_spooling 1$/m)
    influx.setMode('ok')
    await waitUntil(() => influx.lines.length === 10, 15_000, 'the spool to drain')
    const after = await (await fetch(`http://127.0.0.1:${g.httpPort}/metrics`)).text()
    expect(after).toMatch(/^mc_spool_lines 0$/m)
    expect(after).toMatch(/^mc_spool_replayed_lines_total 10$/m)
    expect((await fetch(`http://127.0.0.1:${g.httpPort}/readyz`)).status).toBe(200)
    c.close()
  }, 60_000)
})
