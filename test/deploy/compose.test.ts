import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse as parseDotenv } from 'dotenv'
import { parse as parseYaml } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { REPO_ROOT } from '../helpers/process.js'
import { requireService } from '../helpers/services.js'
import { isPinnedImage } from './image-ref.js'

// `docker-compose config` (Debian's docker-compose; .ci/run installs it) resolves the file the
// way `docker compose up` would, without a docker engine: interpolation from .env, env_file,
// defaults. The checks below read what it resolved, not the file's text.

const COMPOSE = 'docker-compose'
const composeText = readFileSync(join(REPO_ROOT, 'docker-compose.yml'), 'utf8')
const envExampleText = readFileSync(join(REPO_ROOT, '.env.example'), 'utf8')
const envExample = parseDotenv(envExampleText)

const haveCompose = spawnSync(COMPOSE, ['version'], { stdio: 'ignore' }).status === 0
const runCompose = await requireService(`${COMPOSE} (apt-get install docker-compose)`, haveCompose)

/** Variables the file interpolates (`${VAR}`, `${VAR:-x}`, `${VAR:?why}`, `$VAR`); `$$` is a literal `$`. */
function interpolated(text: string): { all: Set<string>; required: Set<string> } {
  const all = new Set<string>()
  const required = new Set<string>()
  for (const m of text.matchAll(/(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))/g)) {
    const name = m[1] ?? m[3]!
    all.add(name)
    if (m[2]?.startsWith(':?') || m[2]?.startsWith('?')) required.add(name)
  }
  return { all, required }
}

/** Compose durations: `40s`, `1m30s`, `500ms`. */
function durationMs(value: string | number): number {
  if (typeof value === 'number') return value * 1000
  let ms = 0
  for (const [, n, unit] of value.matchAll(/(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)/g)) {
    ms += Number(n) * { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, ns: 0.000001 }[unit as 'h']
  }
  return ms
}

interface Service {
  image?: string
  build?: { context: string } | string
  environment?: Record<string, string | null>
  depends_on?: Record<string, { condition: string }> | string[]
  healthcheck?: { test: string[] | string; disable?: boolean }
  ports?: ({ published: number | string; target: number; protocol?: string } | string)[]
  volumes?: (string | { type?: string; source?: string; target: string })[]
  command?: string[] | string
  entrypoint?: string[] | string
  stop_grace_period?: string
}
interface Resolved {
  services: Record<string, Service>
  volumes?: Record<string, unknown>
}

function mounts(service: Service): { source: string | undefined; target: string }[] {
  return (service.volumes ?? []).map((v) => {
    if (typeof v !== 'string') return { source: v.source, target: v.target }
    const [source, target] = v.split(':')
    return { source, target: target! }
  })
}
function published(service: Service): { published: string; target: string; protocol: string }[] {
  return (service.ports ?? []).map((p) => {
    if (typeof p !== 'string') return { published: String(p.published), target: String(p.target), protocol: p.protocol ?? 'tcp' }
    const [ports, protocol = 'tcp'] = p.split('/')
    const parts = ports!.split(':')
    return { published: parts.at(-2) ?? parts.at(-1)!, target: parts.at(-1)!, protocol }
  })
}
const healthTest = (s: Service) => (Array.isArray(s.healthcheck?.test) ? s.healthcheck.test.join(' ') : (s.healthcheck?.test ?? ''))

describe('docker-compose.yml (text)', () => {
  it('uses only variables that .env.example lists', () => {
    const { all } = interpolated(composeText)
    expect(all.size).toBeGreaterThan(0)
    const missing = [...all].filter((v) => !(v in envExample) && !new RegExp(`^\\s*#\\s*${v}=`, 'm').test(envExampleText))
    expect(missing, 'variables of docker-compose.yml missing from .env.example').toEqual([])
  })
})

describe.runIf(runCompose)('docker-compose.yml resolved by docker-compose config', () => {
  let dir: string
  // Values an operator must set (the file's ${VAR:?…}); .env.example leaves them empty.
  const filled: Record<string, string> = {
    JWT_SECRET: 'compose-test-jwt-secret-0123456789abcdef',
    ALLOWED_ORIGINS: 'https://gateway.example.test',
    POSTGRES_PASSWORD: 'composetest0password',
    INFLUXDB_TOKEN: 'apiv3_composeTestToken-0123456789',
    DOMAIN: 'gateway.example.test',
    TLS_EMAIL: 'ops@example.test',
  }
  let resolved: Resolved

  function config(envText: string): { status: number | null; stdout: string; stderr: string } {
    writeFileSync(join(dir, '.env'), envText)
    const r = spawnSync(COMPOSE, ['--project-directory', dir, '-f', join(dir, 'docker-compose.yml'), 'config'], {
      cwd: dir,
      encoding: 'utf8',
      // Only the .env of the copy: nothing of this machine's environment leaks in.
      env: { PATH: process.env.PATH ?? '', HOME: dir },
    })
    return { status: r.status, stdout: r.stdout, stderr: r.stderr }
  }

  function envWith(values: Record<string, string>): string {
    const lines = envExampleText.split('\n').map((line) => {
      const m = /^([A-Z][A-Z0-9_]*)=/.exec(line)
      return m && m[1]! in values ? `${m[1]}=${values[m[1]!]}` : line
    })
    for (const [k, v] of Object.entries(values)) if (!(k in envExample)) lines.push(`${k}=${v}`)
    return lines.join('\n')
  }

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mc-compose-'))
    copyFileSync(join(REPO_ROOT, 'docker-compose.yml'), join(dir, 'docker-compose.yml'))
    if (existsSync(join(REPO_ROOT, 'Caddyfile'))) copyFileSync(join(REPO_ROOT, 'Caddyfile'), join(dir, 'Caddyfile'))
    const r = config(envWith(filled))
    expect(r.status, r.stderr).toBe(0)
    resolved = parseYaml(r.stdout) as Resolved
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('refuses .env.example as it is, naming a variable the operator must set', () => {
    const { required } = interpolated(composeText)
    const unset = [...required].filter((v) => (envExample[v] ?? '') === '')
    expect(unset.length).toBeGreaterThan(0)
    const r = config(envExampleText)
    expect(r.status).not.toBe(0)
    expect(unset.some((v) => r.stderr.includes(v)), r.stderr).toBe(true)
    // And the test's own values cover every one of them.
    expect(unset.filter((v) => !(v in filled))).toEqual([])
  })

  it('has the five services, every image pinned to a version', () => {
    expect(Object.keys(resolved.services).sort()).toEqual(['caddy', 'influxdb3-core', 'matt-collector', 'nats', 'postgres'])
    for (const [name, s] of Object.entries(resolved.services)) {
      if (s.image === undefined) {
        expect(s.build, `${name}: neither image nor build`).toBeDefined()
        continue
      }
      expect(isPinnedImage(s.image), `${name}: ${s.image}`).toBe(true)
    }
    expect(resolved.services['matt-collector']!.build).toBeDefined()
    expect(resolved.services['influxdb3-core']!.image).toMatch(/^influxdb:3\.\d+\.\d+-core$/)
  })

  it('starts the gateway only once its dependencies are healthy, and Caddy once the gateway is', () => {
    const s = resolved.services
    expect(s['matt-collector']!.depends_on).toEqual({
      postgres: { condition: 'service_healthy' },
      nats: { condition: 'service_healthy' },
      'influxdb3-core': { condition: 'service_healthy' },
    })
    expect(s.caddy!.depends_on).toEqual({ 'matt-collector': { condition: 'service_healthy' } })
    for (const name of ['postgres', 'nats', 'influxdb3-core', 'matt-collector']) {
      expect(s[name]!.healthcheck?.disable, name).not.toBe(true)
      expect(healthTest(s[name]!), `${name} health check`).not.toBe('')
    }
    expect(healthTest(s.postgres!)).toMatch(/pg_isready/)
    expect(healthTest(s.nats!)).toMatch(/:8222\/healthz/)
    expect(healthTest(s['influxdb3-core']!)).toMatch(/:8181\/health\b/)
    expect(healthTest(s['matt-collector']!)).toMatch(/\/healthz/)
  })

  it('gives the gateway longer to stop than its drain may take', () => {
    const gw = resolved.services['matt-collector']!
    const grace = durationMs(gw.stop_grace_period ?? '10s')
    const drain = loadConfig(gw.environment as Record<string, string>).shutdownGraceMs
    expect(drain).toBe(Number(envExample.SHUTDOWN_GRACE_MS))
    expect(grace).toBeGreaterThan(drain)
  })

  it('hands the gateway a configuration it starts with, pointing at the other services', () => {
    const env = resolved.services['matt-collector']!.environment as Record<string, string>
    const config = loadConfig(env) // throws a ConfigError naming any bad variable
    expect(config.env).toBe('production')
    expect(config.trustProxy).toBe(true)
    expect(config.jwtSecret).toBe(filled.JWT_SECRET)
    expect(config.allowedOrigins).toEqual([filled.ALLOWED_ORIGINS])
    const db = new URL(config.databaseUrl!)
    expect(db.hostname).toBe('postgres')
    const pg = resolved.services.postgres!.environment!
    expect(decodeURIComponent(db.password)).toBe(pg.POSTGRES_PASSWORD)
    expect(decodeURIComponent(db.username)).toBe(pg.POSTGRES_USER)
    expect(db.pathname).toBe(`/${pg.POSTGRES_DB}`)
    expect(config.natsUrl).toBe('nats://nats:4222')
    expect(config.influx?.url).toBe('http://influxdb3-core:8181')
    expect(config.influx?.database).not.toBe('')
    // The token InfluxDB creates its operator token from is the gateway's.
    expect(config.influx?.token).toBe(resolved.services['influxdb3-core']!.environment!.INFLUXDB_TOKEN)
    expect(config.influx?.token).toBe(filled.INFLUXDB_TOKEN)
    expect(config.port).toBe(8080)
    expect(config.mqtt).toMatchObject({ enabled: true, port: 1883 })
  })

  it('keeps DATA_DIR and every store on a named volume', () => {
    const s = resolved.services
    const named = new Set(Object.keys(resolved.volumes ?? {}))
    const volumeAt = (name: string, target: string) => mounts(s[name]!).find((m) => m.target === target)?.source
    const dataDir = (s['matt-collector']!.environment as Record<string, string>).DATA_DIR!
    for (const [service, target] of [
      ['matt-collector', dataDir],
      ['postgres', '/var/lib/postgresql/data'],
      ['influxdb3-core', '/var/lib/influxdb3'],
      ['nats', '/data'],
      ['caddy', '/data'],
      ['caddy', '/config'],
    ] as const) {
      const source = volumeAt(service, target)
      expect(source !== undefined && named.has(source), `${service}: a named volume at ${target}`).toBe(true)
    }
    const nats = s.nats!.command as string[]
    expect(nats).toContain('-js')
    expect(nats[nats.indexOf('-sd') + 1]).toBe('/data')
    const influx = [...(s['influxdb3-core']!.entrypoint as string[]), ...(s['influxdb3-core']!.command as string[])].join(' ')
    expect(influx).toMatch(/--data-dir[= ]\/var\/lib\/influxdb3\//)
    expect(influx).toMatch(/--admin-token-file[= ]\/var\/lib\/influxdb3\//)
  })

  it('publishes only Caddy (80, 443) and MQTT (1883) from the gateway', () => {
    const s = resolved.services
    expect(published(s['matt-collector']!)).toEqual([{ published: '1883', target: '1883', protocol: 'tcp' }])
    expect(published(s.caddy!).filter((p) => p.protocol === 'tcp').map((p) => p.target).sort()).toEqual(['443', '80'])
    for (const name of ['postgres', 'nats', 'influxdb3-core']) expect(published(s[name]!), name).toEqual([])
  })

  it("runs Caddy from the project's Caddyfile with DOMAIN and TLS_EMAIL of .env", () => {
    const caddy = resolved.services.caddy!
    const file = mounts(caddy).find((m) => m.target === '/etc/caddy/Caddyfile')
    expect(file?.source).toBe(join(dir, 'Caddyfile'))
    expect(existsSync(join(REPO_ROOT, 'Caddyfile'))).toBe(true)
    expect(caddy.environment).toMatchObject({ DOMAIN: filled.DOMAIN, TLS_EMAIL: filled.TLS_EMAIL })
    expect(caddy.environment?.GATEWAY_UPSTREAMS).toBe('matt-collector:8080')
    const gateway = resolved.services['matt-collector']!.environment as Record<string, string>
    expect(caddy.environment?.GATEWAY_PATH_PREFIX ?? '').toBe(gateway.PATH_PREFIX ?? '')
    // Every variable handed to Caddy is one the Caddyfile reads (a renamed one would be ignored).
    const caddyfile = readFileSync(join(REPO_ROOT, 'Caddyfile'), 'utf8')
    const read = new Set([...caddyfile.matchAll(/\{\$([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]!))
    expect(Object.keys(caddy.environment ?? {}).filter((k) => !read.has(k))).toEqual([])
  })
})
