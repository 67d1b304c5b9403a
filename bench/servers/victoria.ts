/**
 * A fresh victoria-metrics single-node server for one benchmark variant: its own data
 * directory and port, a 100-year retention (the bench lines carry 2023 timestamps), quiet
 * logs. It takes InfluxDB line protocol on /api/v2/write (the gateway's influx sink and
 * http-load post there) and counts what it stored in vm_rows_inserted_total{type="influx"}
 * (one row per field). Binary: $VICTORIA_METRICS_BIN, else `victoria-metrics` or
 * `victoria-metrics-prod` on PATH (Debian package `victoria-metrics`).
 * See test/helpers/victoria.ts for how it maps line protocol.
 */
import { spawn } from 'node:child_process'
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { addNote, procStats, retrying, row, track, trackDir, type Ctx, type GatewayRunStats, type LoadResult, type Row } from '../lib.js'
import { FIELDS_PER_LINE } from '../load/lines.js'

export interface Victoria {
  url: string
  pid: number
  /** Samples stored from line protocol so far (after a flush: all of them). */
  rowsInserted(): Promise<number>
  flush(): Promise<void>
  stop(): Promise<void>
}

export function victoriaBinary(): string | null {
  const executable = (p: string) => {
    try {
      accessSync(p, constants.X_OK)
      return true
    } catch {
      return false
    }
  }
  const fromEnv = process.env.VICTORIA_METRICS_BIN
  if (fromEnv) return executable(fromEnv) ? fromEnv : null
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    for (const name of ['victoria-metrics', 'victoria-metrics-prod']) {
      if (dir && executable(join(dir, name))) return join(dir, name)
    }
  }
  return null
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0))
    })
  })
}

export async function startVictoria(): Promise<Victoria> {
  const binary = victoriaBinary()
  if (!binary) throw new Error('victoria-metrics not installed (apt-get install victoria-metrics, or set VICTORIA_METRICS_BIN)')
  let lastError: Error | undefined
  for (let attempt = 0; attempt < 3; attempt++) {
    const dataDir = mkdtempSync(join(tmpdir(), 'mc-bench-vm-'))
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    const child = spawn(
      binary,
      [`-httpListenAddr=127.0.0.1:${port}`, `-storageDataPath=${dataDir}`, '-retentionPeriod=100y', '-loggerLevel=ERROR'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    track(child) // stopped with the bench's other children, killed if it exits
    trackDir(dataDir)
    let log = ''
    child.stderr?.setEncoding('utf8').on('data', (c: string) => {
      log = (log + c).slice(-4000)
    })
    const exited = new Promise<void>((r) => {
      child.once('exit', () => r())
      child.once('error', () => r())
    })
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000)
        await exited
        clearTimeout(killer)
      }
      rmSync(dataDir, { recursive: true, force: true })
    }
    const deadline = Date.now() + 20_000
    let healthy = false
    while (child.exitCode === null && Date.now() < deadline) {
      try {
        const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) })
        if (res.ok && (await res.text()).trim() === 'OK') {
          healthy = true
          break
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50))
    }
    if (!healthy) {
      await stop()
      lastError = new Error(`victoria-metrics did not start on ${url}: ${log}`)
      continue
    }
    return {
      url,
      pid: child.pid as number,
      async rowsInserted() {
        const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text()
        return Number(/^vm_rows_inserted_total\{type="influx"\} (\d+)/m.exec(text)?.[1] ?? NaN)
      },
      async flush() {
        await (await fetch(`${url}/internal/force_flush`, { signal: AbortSignal.timeout(30_000) })).text()
      },
      stop,
    }
  }
  throw lastError ?? new Error('victoria-metrics failed to start')
}

/**
 * Runs `drive` against a fresh victoria-metrics, then checks that it stored at least every
 * line that was acknowledged (its row count: one row per field), and notes its CPU
 * seconds. Measured again, on a new fresh victoria-metrics, when other processes took the
 * CPU meanwhile (`drive` must not retry by itself: gatewayRun with retry: false).
 */
export async function withVictoria(
  ctx: Ctx,
  scenario: string,
  variant: string,
  drive: (vm: Victoria) => Promise<{ result: LoadResult; stats?: GatewayRunStats }>,
): Promise<Row> {
  const once = async () => {
    const vm = await startVictoria()
    try {
      const cpuBefore = procStats(vm.pid).cpuS
      const { result, stats } = await drive(vm)
      const cpu = procStats(vm.pid).cpuS - cpuBefore
      await vm.flush()
      const stored = Math.floor((await vm.rowsInserted()) / FIELDS_PER_LINE)
      return { result, stats, cpu, stored }
    } finally {
      await vm.stop()
    }
  }
  const { result, stats, cpu, stored, attempts } = await retrying(ctx, `${scenario} ${variant}`, once, (x) => x.result.other_cpu_pct)
  const r = row(scenario, variant, { ...result, attempts }, stats)
  r.extra = { ...r.extra, sink_cpu_s: Number(cpu.toFixed(2)), lines_acked_total: result.lines_acked_total, lines_stored: stored }
  if (!(stored >= result.lines_acked_total)) {
    addNote(r, `victoria-metrics holds ${stored} lines, fewer than the ${result.lines_acked_total} acknowledged`)
  }
  addNote(r, `victoria cpu ${cpu.toFixed(1)} s`)
  return r
}
