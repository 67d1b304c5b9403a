import { readdir, stat, truncate, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import jwt from 'jsonwebtoken'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startFakeInflux, type FakeInflux } from '../helpers/fake-influx.js'
import { startGatewayProcess, stopLeftoverPostgres, type GatewayProcess } from '../helpers/process.js'
import { waitFor, waitUntil } from '../helpers/wait.js'
import { TestClient } from '../helpers/ws-client.js'

// Nothing acknowledged is lost: sink outages, a SIGKILLed gateway, a full spool, a torn
// spool record. The gateway runs as its own process here, on a data dir of the test's.

const SECRET = 'reliability-secret-reliability-secret-01'
const token = jwt.sign(
  { user: 'rel', user_id: '1', org: 'org', org_id: '1', account_id: '1', type: 'stream' },
  SECRET,
  { expiresIn: 3600 },
)

// Test deadlines: a gateway start may take up to two minutes on a loaded machine (see
// test/helpers/process.ts), plus the time the scenario itself needs.
const ONE_START_MS = 200_000
const TWO_STARTS_MS = 330_000

/** Frame i carries the single line `rel,i=<i> v=<i> <i+1>`; a stored line's id is its i tag. */
function idOf(line: string): number {
  return Number(/,i=(\d+)/.exec(line)?.[1])
}

/** Whether every id in `ids` has arrived at the sink. */
function allStored(influx: FakeInflux, ids: Iterable<number>): boolean {
  const stored = new Set(influx.lines.map(idOf))
  for (const id of ids) if (!stored.has(id)) return false
  return true
}

/**
 * Delivery is at least once: a batch whose answer was lost (dropped connection, timeout) is
 * written again, so a line may arrive twice, but only as the same point (same series and
 * timestamp), which InfluxDB and the metrics table merge into one. Checks that, and returns
 * the distinct points by id.
 */
function distinctPoints(lines: string[]): Map<number, string> {
  const points = new Map<number, string>()
  for (const line of lines) {
    const id = idOf(line)
    const seen = points.get(id)
    if (seen !== undefined) expect(line, `line ${id} stored twice as different points`).toBe(seen)
    else points.set(id, line)
  }
  return points
}

interface SinkReadiness {
  status: number
  sink: { status: string; mode: string; spool_lines: number } & Record<string, unknown>
}

async function readiness(g: GatewayProcess): Promise<SinkReadiness> {
  const res = await fetch(`http://127.0.0.1:${g.httpPort}/readyz`)
  const body = (await res.json()) as { components: { sink: SinkReadiness['sink'] } }
  return { status: res.status, sink: body.components.sink }
}

/** The value of an unlabelled series in /metrics, or undefined when it is not there. */
async function metric(g: GatewayProcess, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${g.httpPort}/metrics`)).text()
  const value = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]
  return value === undefined ? undefined : Number(value)
}

/** Waits until the gateway reports its spool empty and writes to the sink directly again. */
async function waitDrained(g: GatewayProcess, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    () => readiness(g),
    (r) => r.sink.mode === 'direct' && r.sink.spool_lines === 0,
    '/readyz to show the spool drained',
    timeoutMs,
  )
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
    await stopLeftoverPostgres(dataDir)
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

  it('sink down (503, then dropped connections) while 5,000 frames stream: every OK is stored, a retried line only as the same point', async () => {
    const g = await start()
    const clients = await Promise.all([connect(g), connect(g), connect(g), connect(g)])
    const sent: number[][] = [[], [], [], []]
    const total = 5000
    // The outage follows the stream, not the clock: 503 for the first half of the frames,
    // dropped connections for the second half, each phase held until the gateway met it.
    influx.setMode('status503')
    for (let i = 0; i < total; i++) {
      if (i === total / 2) {
        await waitUntil(() => influx.writes.some((w) => w.status === 503), 30_000, 'a write answered 503')
        influx.setMode('drop')
      }
      const k = i % 4
      clients[k]?.send(`rel,i=${i} v=${i} ${i + 1}`)
      sent[k]?.push(i)
      // Paced so the frames spread over several batches and replay attempts.
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 50))
    }
    await waitUntil(() => influx.writes.some((w) => w.status === 'dropped'), 30_000, 'a write whose connection was dropped')
    influx.setMode('ok')
    await Promise.all(clients.map((c, k) => c.waitForCount(1 + (sent[k]?.length ?? 0), 60_000)))
    const acked: number[] = []
    clients.forEach((c, k) => {
      c.messages.slice(1).forEach((m, j) => {
        expect(['OK', 'ERR busy: retry']).toContain(m)
        if (m === 'OK') acked.push(sent[k]?.[j] as number)
      })
    })
    expect(acked.length).toBeGreaterThan(0)
    await waitUntil(() => allStored(influx, acked), 60_000, 'every acknowledged line to reach the sink')
    await waitDrained(g)
    const points = distinctPoints(influx.lines)
    for (const id of acked) expect(points.has(id), `acknowledged line ${id}`).toBe(true)
    for (const id of points.keys()) expect(id >= 0 && id < total, `stored line ${id} was sent`).toBe(true)
    for (const c of clients) c.close()
  }, ONE_START_MS)

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
    const again = await start()
    await waitUntil(() => allStored(influx, acked), 30_000, 'replay after restart')
    await waitDrained(again)
    const points = distinctPoints(influx.lines)
    for (const id of acked) expect(points.has(id), `acknowledged line ${id}`).toBe(true)
  }, TWO_STARTS_MS)

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
    await waitUntil(() => allStored(influx, acked), 60_000, 'every acknowledged line to reach the sink')
    await waitDrained(g, 60_000)
    const points = distinctPoints(influx.lines)
    for (const id of acked) expect(points.has(id), `acknowledged line ${id}`).toBe(true)
    c.close()
  }, ONE_START_MS)

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
    // Once the spool is drained nothing more can arrive: the torn record (i=19) never does.
    await waitDrained(again)
    const ids = [...distinctPoints(influx.lines).keys()].sort((a, b) => a - b)
    expect(ids).toEqual([...Array(19).keys()])
    expect(again.output.some((l) => l.includes('torn'))).toBe(true)
  }, TWO_STARTS_MS)

  it('SIGTERM waits for what it owes; a second signal exits at once', async () => {
    influx.setMode('hang')
    // The grace must exceed the sink timeout (config refuses it otherwise).
    const g = await start({ SINK_TIMEOUT_MS: '60000', SHUTDOWN_GRACE_MS: '120000', LOG_LEVEL: 'info' })
    const c = await connect(g)
    c.send('rel,i=1 v=1 2')
    await waitUntil(() => influx.writes.length > 0, 10_000, 'the write to reach the sink')
    g.child.kill('SIGTERM')
    await waitUntil(() => g.output.some((l) => l.includes('"msg":"shutting down"')), 10_000, 'the shutdown to begin')
    // The write is still under way and its reply owed, so the process is still waiting: the
    // second signal below finds it alive (it logs "second SIGTERM") and ends it at once.
    expect(influx.writes[0]?.status).toBe('hung')
    expect(c.messages.slice(1)).toEqual([])
    g.child.kill('SIGTERM')
    const exit = await g.exited
    expect(exit.code).toBe(1)
    expect(g.output.some((l) => l.includes('second SIGTERM'))).toBe(true)
  }, ONE_START_MS)

  it('one SIGTERM while a write hangs longer than 25 s: the grace outlasts the sink timeout, the frame is spooled and answered OK', async () => {
    influx.setMode('hang')
    // Longer than the 25 s grace that used to be hard-coded: a process still using it
    // exits with the reply owed.
    const sinkTimeoutMs = 26_000
    const g = await start({ SINK_TIMEOUT_MS: String(sinkTimeoutMs), SHUTDOWN_GRACE_MS: '90000', LOG_LEVEL: 'info' })
    const c = await connect(g)
    c.send('rel,i=1 v=1 2')
    await waitUntil(() => influx.writes.length > 0, 10_000, 'the write to reach the sink')
    g.child.kill('SIGTERM')
    // The sink times out within the grace, so the batch can be made durable: spooled, OK.
    await c.waitForCount(2, sinkTimeoutMs + 30_000)
    expect(c.messages[1]).toBe('OK')
    expect((await g.exited).code, g.output.join('\n')).toBe(0)
    influx.setMode('ok')
    const again = await start()
    await waitDrained(again)
    expect([...distinctPoints(influx.lines).keys()]).toEqual([1])
  }, TWO_STARTS_MS)

  it('/readyz and /metrics show the sink down and the spool growing while it is down', async () => {
    influx.setMode('status503')
    const g = await start()
    const c = await connect(g)
    for (let i = 0; i < 10; i++) c.send(`rel,i=${i} v=${i} ${i + 1}`)
    await c.waitForCount(11)
    expect(c.messages.slice(1)).toEqual(Array(10).fill('OK'))
    // Each state is awaited as the gateway reports it, not assumed from the replies.
    const down = await waitFor(
      () => readiness(g),
      (r) => r.status === 503 && r.sink.status === 'down' && r.sink.spool_lines === 10,
      '/readyz to show the sink down with 10 spooled lines',
    )
    expect(down.sink).toMatchObject({ status: 'down', mode: 'spooling', spool_lines: 10 })
    await waitFor(() => metric(g, 'mc_spool_lines'), (v) => v === 10, 'mc_spool_lines 10')
    expect(await metric(g, 'mc_spooling')).toBe(1)

    influx.setMode('ok')
    await waitDrained(g, 15_000)
    await waitFor(() => metric(g, 'mc_spool_replayed_lines_total'), (v) => v === 10, 'mc_spool_replayed_lines_total 10')
    expect(await metric(g, 'mc_spool_lines')).toBe(0)
    expect(await metric(g, 'mc_spooling')).toBe(0)
    const up = await waitFor(() => readiness(g), (r) => r.status === 200, '/readyz to answer 200')
    expect(up.sink).toMatchObject({ status: 'up', mode: 'direct', spool_lines: 0 })
    expect([...distinctPoints(influx.lines).keys()].sort((a, b) => a - b)).toEqual([...Array(10).keys()])
    c.close()
  }, ONE_START_MS)
})
