/**
 * What every benchmark scenario needs: child processes (the gateway, sinks, load
 * generators), their CPU time and peak RSS from /proc, and the result rows.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import jwt from 'jsonwebtoken'

export const ROOT = fileURLToPath(new URL('../', import.meta.url))
export const SECRET = 'bench-secret-bench-secret-bench-secret-0001'
const CLOCK_TICKS_PER_S = 100 // Linux USER_HZ

export interface Row {
  scenario: string
  variant: string
  lines_per_s: number
  frames_per_s: number
  p50_ms: number | null
  p99_ms: number | null
  gateway_cpu_s: number | null
  gateway_peak_rss_mb: number | null
  errors: number
  /** Variant this row is compared with, and the ratio of lines/s to it. */
  baseline?: string
  ratio?: number
  note?: string
}

export interface Ctx {
  durationMs: number
  warmupMs: number
  quick: boolean
  rows: Row[]
  log(msg: string): void
}

const children = new Set<ChildProcess>()
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL')
})

export interface Proc {
  child: ChildProcess
  /** The first JSON line the process printed. */
  hello: Record<string, unknown>
  /** Lines printed after the first. */
  lines: string[]
  stop(): Promise<void>
}

/** Starts a process and waits for the first JSON line on its stdout. */
export function startProc(args: string[], env: Record<string, string> = {}, matcher = (_: Record<string, unknown>) => true): Promise<Proc> {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  const lines: string[] = []
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    stderr = (stderr + c).slice(-4000)
  })
  return new Promise((resolve, reject) => {
    let hello: Record<string, unknown> | undefined
    let buf = ''
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')} did not start: ${stderr}`)), 60_000)
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk
      let nl: number
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        if (hello === undefined) {
          try {
            const parsed = JSON.parse(line) as Record<string, unknown>
            if (!matcher(parsed)) continue
            hello = parsed
            clearTimeout(timer)
            resolve({
              child,
              hello,
              lines,
              stop: () =>
                new Promise<void>((r) => {
                  if (child.exitCode !== null || child.signalCode !== null) return r()
                  child.once('exit', () => r())
                  child.kill('SIGTERM')
                  setTimeout(() => child.kill('SIGKILL'), 10_000).unref()
                }),
            })
          } catch {
            // not JSON yet
          }
        } else {
          lines.push(line)
        }
      }
    })
    child.once('exit', (code) => {
      children.delete(child)
      if (hello === undefined) {
        clearTimeout(timer)
        reject(new Error(`${args.join(' ')} exited ${code}: ${stderr}`))
      }
    })
  })
}

/** /proc figures of a process: CPU seconds (user+system) and peak RSS in MB. */
export function procStats(pid: number): { cpuS: number; peakRssMb: number; rssMb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const cpuS = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0)
  return { cpuS, peakRssMb: kb('VmHWM') / 1024, rssMb: kb('VmRSS') / 1024 }
}

export interface Gateway extends Proc {
  port: number
  pid: number
}

/** The built gateway (dist/main.js) as its own process, on a fresh data dir. */
export async function startGateway(env: Record<string, string>): Promise<Gateway> {
  const { mkdtempSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const dataDir = mkdtempSync(join(tmpdir(), 'mc-bench-'))
  const proc = await startProc(
    ['dist/main.js'],
    {
      SERVER_HOST: '127.0.0.1',
      SERVER_PORT: '0',
      MQTT_PORT: '0',
      DATA_DIR: dataDir,
      JWT_SECRET: SECRET,
      LOG_LEVEL: 'warn',
      MAX_CONNECTIONS: '100000',
      ...env,
    },
    (j) => j.msg === 'listening',
  )
  const { rm } = await import('node:fs/promises')
  return {
    ...proc,
    port: proc.hello.http_port as number,
    pid: proc.child.pid as number,
    async stop() {
      await proc.stop()
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}

export function streamToken(): string {
  return jwt.sign(
    { user: 'bench', user_id: '1', org: 'bench_org', org_id: '1', account_id: '1', type: 'stream' },
    SECRET,
    { expiresIn: 3600 },
  )
}

export interface WsLoadResult {
  frames: number
  lines: number
  frames_per_s: number
  lines_per_s: number
  p50_ms: number | null
  p99_ms: number | null
  errors: number
  first_error: string | null
}

/** Runs the WebSocket load generator as its own process and returns its result. */
export async function wsLoad(
  ctx: Ctx,
  url: string,
  o: { connections: number; inflight: number; linesPerFrame: number; localAddresses?: string[] },
): Promise<WsLoadResult> {
  const proc = await startProc([
    '--import',
    'tsx',
    'bench/load/ws-load.ts',
    JSON.stringify({ url, token: streamToken(), durationMs: ctx.durationMs, warmupMs: ctx.warmupMs, ...o }),
  ])
  await new Promise<void>((r) => (proc.child.exitCode !== null ? r() : proc.child.once('exit', () => r())))
  return proc.hello as unknown as WsLoadResult
}

/** A row from a load result and the gateway's /proc figures over the run. */
export function row(
  scenario: string,
  variant: string,
  r: WsLoadResult,
  gateway?: { before: { cpuS: number }; after: { cpuS: number; peakRssMb: number } },
): Row {
  return {
    scenario,
    variant,
    lines_per_s: Math.round(r.lines_per_s),
    frames_per_s: Math.round(r.frames_per_s),
    p50_ms: r.p50_ms === null ? null : Number(r.p50_ms.toFixed(3)),
    p99_ms: r.p99_ms === null ? null : Number(r.p99_ms.toFixed(3)),
    gateway_cpu_s: gateway ? Number((gateway.after.cpuS - gateway.before.cpuS).toFixed(2)) : null,
    gateway_peak_rss_mb: gateway ? Math.round(gateway.after.peakRssMb) : null,
    errors: r.errors,
    ...(r.first_error ? { note: `first non-OK reply: ${r.first_error}` } : {}),
  }
}

/** Runs a load against a gateway started with `env`, recording its CPU and memory. */
export async function gatewayRun<T>(env: Record<string, string>, drive: (gw: Gateway) => Promise<T>) {
  const gw = await startGateway(env)
  try {
    const before = procStats(gw.pid)
    const result = await drive(gw)
    const after = procStats(gw.pid)
    return { result, stats: { before, after } }
  } finally {
    await gw.stop()
  }
}

export function compare(rows: Row[], variant: string, baseline: string): void {
  const base = rows.find((r) => r.variant === baseline)
  const r = rows.find((x) => x.variant === variant)
  if (!base || !r || base.lines_per_s === 0) return
  r.baseline = baseline
  r.ratio = Number((r.lines_per_s / base.lines_per_s).toFixed(3))
}
