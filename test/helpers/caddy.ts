/**
 * Caddy for tests: validates, adapts and runs the project's Caddyfile with a given
 * environment, in a private temporary HOME (Caddy writes its state, certificates and
 * autosave there and nowhere else), on a free loopback port, plain HTTP
 * (`DOMAIN=http://127.0.0.1:<port>`, `CADDY_BIND=127.0.0.1`, `CADDY_ADMIN=off`).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REPO_ROOT } from './process.js'
import { tcpReachable } from './services.js'
import { waitUntil } from './wait.js'

export const PROJECT_CADDYFILE = join(REPO_ROOT, 'Caddyfile')

/** A start that does not answer on its port within this is a failure, with Caddy's output. */
const START_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 10_000
/** A free port can be taken by someone else between our probe and Caddy's bind: try again. */
const START_ATTEMPTS = 3

export function caddyBinary(): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/bin']) {
    if (dir !== '' && existsSync(join(dir, 'caddy'))) return join(dir, 'caddy')
  }
  return undefined
}

/** A port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** The environment of a Caddy child: only what is given, HOME and XDG dirs in `home`. */
function caddyEnv(home: string, env: Record<string, string>): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    XDG_DATA_HOME: join(home, 'data'),
    XDG_CONFIG_HOME: join(home, 'config'),
    XDG_CACHE_HOME: join(home, 'cache'),
    ...env,
  }
}

export interface CaddyCommandResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs one `caddy <args>` to its end (validate, adapt) with `env`, in a temporary HOME. */
export async function runCaddy(args: string[], env: Record<string, string>, timeoutMs = 20_000): Promise<CaddyCommandResult> {
  const bin = caddyBinary()
  if (bin === undefined) throw new Error('caddy is not installed')
  const home = await mkdtemp(join(tmpdir(), 'mc-caddy-'))
  try {
    return await new Promise<CaddyCommandResult>((resolve, reject) => {
      const child = spawn(bin, args, { cwd: home, env: caddyEnv(home, env), stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error(`caddy ${args.join(' ')} did not end within ${timeoutMs} ms; stderr: ${stderr}`))
      }, timeoutMs)
      child.once('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
      child.once('exit', (code) => {
        clearTimeout(timer)
        resolve({ code, stdout, stderr })
      })
    })
  } finally {
    await rm(home, { recursive: true, force: true })
  }
}

export const validateCaddyfile = (env: Record<string, string>, file = PROJECT_CADDYFILE) =>
  runCaddy(['validate', '--config', file, '--adapter', 'caddyfile'], env)

/** The JSON config Caddy makes of the Caddyfile with `env` (fails when it does not adapt). */
export async function adaptCaddyfile(env: Record<string, string>, file = PROJECT_CADDYFILE): Promise<any> {
  const r = await runCaddy(['adapt', '--config', file, '--adapter', 'caddyfile'], env)
  if (r.code !== 0) throw new Error(`caddy adapt failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout)
}

/** The environment that makes the project's Caddyfile serve plain HTTP on a loopback port. */
export function plainHttpEnv(port: number, upstreams: string[]): Record<string, string> {
  return {
    DOMAIN: `http://127.0.0.1:${port}`,
    CADDY_BIND: '127.0.0.1',
    CADDY_ADMIN: 'off',
    GATEWAY_UPSTREAMS: upstreams.join(' '),
  }
}

export interface RunningCaddy {
  port: number
  /** http://127.0.0.1:<port> */
  url: string
  /** ws://127.0.0.1:<port> */
  wsUrl: string
  pid: number
  /** Every line Caddy printed (its JSON log). */
  output: string[]
  /** SIGTERM by pid, SIGKILL if it does not end in time; removes its temporary HOME. */
  stop(): Promise<void>
}

/**
 * Runs `caddy run` on the Caddyfile in front of `upstreams` (host:port), resolving once its
 * port accepts connections. `extraEnv` overrides the plain-HTTP environment.
 */
export async function startCaddy(upstreams: string[], extraEnv: Record<string, string> = {}, file = PROJECT_CADDYFILE): Promise<RunningCaddy> {
  let lastError: unknown
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    try {
      return await startOnce(await freePort(), upstreams, extraEnv, file)
    } catch (err) {
      lastError = err
      if (!String(err).includes('address already in use')) throw err
    }
  }
  throw lastError
}

async function startOnce(port: number, upstreams: string[], extraEnv: Record<string, string>, file: string): Promise<RunningCaddy> {
  const bin = caddyBinary()
  if (bin === undefined) throw new Error('caddy is not installed')
  const home = await mkdtemp(join(tmpdir(), 'mc-caddy-'))
  const env = caddyEnv(home, { ...plainHttpEnv(port, upstreams), ...extraEnv })
  const child: ChildProcess = spawn(bin, ['run', '--config', file, '--adapter', 'caddyfile'], {
    cwd: home,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const output: string[] = []
  const collect = (d: Buffer) => output.push(...d.toString().split('\n').filter((l) => l !== ''))
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal }
      resolve()
    })
    // Not started at all (no exit event follows).
    child.once('error', (err) => {
      output.push(String(err))
      exit ??= { code: null, signal: null }
      resolve()
    })
  })
  const cleanup = async () => {
    if (exit === undefined && child.pid !== undefined) {
      process.kill(child.pid, 'SIGTERM')
      const timer = setTimeout(() => exit === undefined && child.pid !== undefined && process.kill(child.pid, 'SIGKILL'), STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    }
    await rm(home, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })
  }
  try {
    // Done waiting when the port answers or Caddy ended (a bad config, a port taken).
    await waitUntil(async () => exit !== undefined || (await tcpReachable('127.0.0.1', port)), START_TIMEOUT_MS, `caddy answering on 127.0.0.1:${port}`)
    if (exit !== undefined) throw new Error(`caddy exited (${exit.code ?? exit.signal}): ${output.join('\n')}`)
  } catch (err) {
    await cleanup()
    throw err
  }
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    pid: child.pid as number,
    output,
    stop: cleanup,
  }
}
