import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { waitUntil } from './wait.js'

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))

export interface GatewayProcess {
  child: ChildProcess
  httpPort: number
  mqttPort: number | null
  /** Every log line printed so far (stdout and stderr). */
  output: string[]
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/**
 * How long a start may take before a test calls it failed. A first start creates an
 * embedded database cluster (initdb), which takes seconds alone and far longer on a busy
 * two-core machine running several test files: this is a deadline for a start that must
 * come, not an expectation of speed.
 */
const START_TIMEOUT_MS = 120_000

/**
 * Runs src/main.ts as its own process (the way `npm start` runs the built file) and
 * resolves once it logged its "listening" line.
 */
export function startGatewayProcess(env: Record<string, string>, timeoutMs = START_TIMEOUT_MS): Promise<GatewayProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info', MQTT_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const output: string[] = []
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  )
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`gateway did not log "listening" in ${timeoutMs} ms:\n${output.join('\n')}`))
    }, timeoutMs)
    const onLine = (line: string) => {
      output.push(line)
      if (!line.includes('"msg":"listening"')) return
      clearTimeout(timer)
      const log = JSON.parse(line) as { http_port: number; mqtt_port: number | null }
      resolve({
        child,
        httpPort: log.http_port,
        mqttPort: log.mqtt_port,
        output,
        exited,
        async stop(signal = 'SIGTERM') {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal)
          return exited
        },
      })
    }
    for (const stream of [child.stdout, child.stderr]) {
      let buffered = ''
      stream?.setEncoding('utf8').on('data', (chunk: string) => {
        buffered += chunk
        let nl: number
        while ((nl = buffered.indexOf('\n')) !== -1) {
          onLine(buffered.slice(0, nl))
          buffered = buffered.slice(nl + 1)
        }
      })
    }
    void exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`gateway exited (${code ?? signal}) before listening:\n${output.join('\n')}`))
    })
  })
}

/** Runs the gateway expecting it to refuse to start; resolves with its exit code and output. */
export function runGatewayExpectingFailure(
  env: Record<string, string>,
  timeoutMs = START_TIMEOUT_MS,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout?.setEncoding('utf8').on('data', (c: string) => (output += c))
    child.stderr?.setEncoding('utf8').on('data', (c: string) => (output += c))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })
}

/**
 * A SIGKILLed gateway leaves its embedded Postgres running (the next start on the same
 * DATA_DIR stops it). A test that does not start again stops it here, and removes its
 * socket folder, instead of leaving it to notice its data folder is gone a minute later.
 */
export async function stopLeftoverPostgres(dataDir: string): Promise<void> {
  let lines: string[]
  try {
    lines = (await readFile(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8')).split('\n')
  } catch {
    return
  }
  const pid = Number(lines[0])
  const socketDir = lines[4]?.trim()
  if (Number.isInteger(pid) && pid > 0 && running(pid)) {
    try {
      process.kill(pid, 'SIGINT')
      await waitUntil(() => !running(pid), 15_000, `embedded Postgres ${pid} to stop`)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
    }
  }
  if (socketDir) await rm(socketDir, { recursive: true, force: true })
}

/** Alive, not a zombie waiting for an init that may never reap it. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}
