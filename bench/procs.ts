/**
 * The processes of a benchmark run: the gateway, sinks and load generators as children
 * that print one JSON line when ready, the shared gateway data directory, and the
 * clean-up that leaves nothing behind (also on SIGINT).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { GATEWAY_NODE_FLAGS } from './gateway-flags.js'

export const ROOT = fileURLToPath(new URL('../', import.meta.url))
export const SECRET = 'bench-secret-bench-secret-bench-secret-0001'
/**
 * The admin every bench gateway creates on the run's first start (the database is shared
 * by all of them), for scenarios that call the REST API (the mqtt scenario provisions
 * devices with it).
 */
export const ADMIN_USERNAME = 'admin'
export const ADMIN_PASSWORD = 'bench-admin-password'

const children = new Set<ChildProcess>()
const tempDirs = new Set<string>()
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL')
  killLeftoverPostgres()
})

/** A child process started elsewhere (victoria-metrics), stopped with the others on SIGINT. */
export function track(child: ChildProcess): void {
  children.add(child)
  child.once('exit', () => children.delete(child))
}

/** A temporary directory removed by cleanup() unless its owner removed it first. */
export function trackDir(dir: string): void {
  tempDirs.add(dir)
}

/** Stops every child gracefully (the gateway stops its embedded Postgres); for SIGINT. */
export async function stopAll(): Promise<void> {
  await Promise.all(
    [...children].map(
      (c) =>
        new Promise<void>((r) => {
          if (c.exitCode !== null || c.signalCode !== null) return r()
          c.once('exit', () => r())
          c.kill('SIGTERM')
          setTimeout(() => c.kill('SIGKILL'), 5000).unref()
        }),
    ),
  )
}

export interface Proc {
  child: ChildProcess
  pid: number
  /** The first JSON line the process printed. */
  hello: Record<string, unknown>
  /** The last lines printed after the first (at most 200). */
  lines: string[]
  /** Lines after the first whose JSON `level` is warn or worse (pino: >= 40). */
  warnings: { count: number; first: string | undefined }
  /** Resolves once the process has exited. */
  exited: Promise<void>
  stop(): Promise<void>
}

export interface StartOptions {
  /** Raise the open-file limit of the process (through a `sh -c 'ulimit -n'` wrapper). */
  fdLimit?: number
  /** How long to wait for the first JSON line (default 60 s). */
  timeoutMs?: number
}

/** Starts a process and waits for the first JSON line on its stdout. */
export function startProc(
  args: string[],
  env: Record<string, string> = {},
  matcher = (_: Record<string, unknown>) => true,
  opts: StartOptions = {},
): Promise<Proc> {
  const fullEnv = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }
  // `exec` keeps the pid: the wrapper's pid is the process's pid.
  const child =
    opts.fdLimit === undefined
      ? spawn(process.execPath, args, { cwd: ROOT, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(
          'sh',
          ['-c', `ulimit -n ${opts.fdLimit} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`, process.execPath, ...args],
          { cwd: ROOT, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] },
        )
  children.add(child)
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const lines: string[] = []
  const warnings: Proc['warnings'] = { count: 0, first: undefined }
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    stderr = (stderr + c).slice(-4000)
  })
  return new Promise((resolve, reject) => {
    let hello: Record<string, unknown> | undefined
    let buf = ''
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')} did not start: ${stderr}`)), opts.timeoutMs ?? 60_000)
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk
      let nl: number
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        if (hello === undefined) {
          let parsed: Record<string, unknown>
          try {
            parsed = JSON.parse(line) as Record<string, unknown>
          } catch {
            continue // not JSON yet
          }
          if (!matcher(parsed)) continue
          hello = parsed
          clearTimeout(timer)
          resolve({
            child,
            pid: child.pid as number,
            hello,
            lines,
            warnings,
            exited,
            stop: () =>
              new Promise<void>((r) => {
                if (child.exitCode !== null || child.signalCode !== null) return r()
                child.once('exit', () => r())
                child.kill('SIGTERM')
                setTimeout(() => child.kill('SIGKILL'), 30_000).unref()
              }),
          })
        } else {
          lines.push(line)
          if (lines.length > 200) lines.shift()
          if (/"level":\s*(4|5|6)\d\b/.test(line)) {
            warnings.count++
            // Whole (bounded), so the summary can parse it: a cut JSON line would be shown raw, stack and all.
            warnings.first ??= line.slice(0, 65_536)
          }
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

/** Starts a process and resolves with its first JSON line once it has exited (a load generator). */
export async function runToEnd<T>(args: string[], opts: StartOptions = {}): Promise<T> {
  const proc = await startProc(args, {}, () => true, opts)
  await proc.exited
  return proc.hello as T
}

export interface Gateway extends Proc {
  port: number
  /** The embedded MQTT broker's TCP port (`mqtt_port` of the listening line); null when it is off. */
  mqttPort: number | null
}

// One DATA_DIR for every gateway of the run: the embedded Postgres cluster is created
// once (initdb takes seconds) and then only started by each gateway, one at a time. The
// database is not on any measured path (time series go to the influx sink).
let sharedDataDir: string | undefined

function killLeftoverPostgres(): void {
  if (sharedDataDir === undefined) return
  try {
    const pid = Number(readFileSync(join(sharedDataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0])
    if (Number.isInteger(pid) && pid > 0 && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(sharedDataDir)) {
      process.kill(pid, 'SIGKILL')
    }
  } catch {
    // no server, or already gone
  }
}

/** Removes the shared gateway data directory (after the last gateway stopped) and the other temporary directories. */
export function cleanup(): void {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
  tempDirs.clear()
  if (sharedDataDir === undefined) return
  killLeftoverPostgres()
  rmSync(sharedDataDir, { recursive: true, force: true })
  sharedDataDir = undefined
}

export interface GatewayOptions {
  /** Name of the CPU profile (with ctx.cpuProf). */
  profileName?: string
  cpuProf?: boolean
  fdLimit?: number
}

/** The built gateway (dist/main.js) as its own process. */
export async function startGateway(env: Record<string, string>, o: GatewayOptions = {}): Promise<Gateway> {
  if (!existsSync(join(ROOT, 'dist', 'main.js'))) throw new Error('dist/main.js missing: run `npm run build` (npm run bench does)')
  sharedDataDir ??= mkdtempSync(join(tmpdir(), 'mc-bench-'))
  // Shared is only the database: every gateway starts with an empty spool, so that none
  // replays what an earlier variant left into its own sink.
  rmSync(join(sharedDataDir, 'spool'), { recursive: true, force: true })
  const profDir = join(ROOT, 'bench', 'results', 'cpu-prof')
  if (o.cpuProf) mkdirSync(profDir, { recursive: true })
  const proc = await startProc(
    [
      ...GATEWAY_NODE_FLAGS,
      ...(o.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${o.profileName ?? 'gateway'}.cpuprofile`] : []),
      'dist/main.js',
    ],
    {
      SERVER_HOST: '127.0.0.1',
      SERVER_PORT: '0',
      MQTT_PORT: '0',
      DATA_DIR: sharedDataDir,
      JWT_SECRET: SECRET,
      ADMIN_USERNAME,
      ADMIN_PASSWORD,
      LOG_LEVEL: 'warn',
      MAX_CONNECTIONS: '100000',
      ...env,
    },
    (j) => j.msg === 'listening',
    o.fdLimit !== undefined ? { fdLimit: o.fdLimit } : {},
  )
  const mqttPort = proc.hello.mqtt_port
  return { ...proc, port: proc.hello.http_port as number, mqttPort: typeof mqttPort === 'number' && mqttPort > 0 ? mqttPort : null }
}
