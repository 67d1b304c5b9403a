import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { DockerfileParser, type Instruction } from 'dockerfile-ast'
import { afterEach, describe, expect, it } from 'vitest'
import { GATEWAY_NODE_FLAGS } from '../../bench/gateway-flags.js'
import { REPO_ROOT } from '../helpers/process.js'
import { isPinnedImage } from './image-ref.js'

// No docker engine runs here: the Dockerfile is read, not built. What can run without one
// does (the HEALTHCHECK command against a real HTTP server).

const text = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8')
const dockerfile = DockerfileParser.parse(text)

interface Stage {
  from: Instruction
  name: string | undefined
  instructions: Instruction[]
}

function stages(): Stage[] {
  const out: Stage[] = []
  for (const i of dockerfile.getInstructions()) {
    if (i.getKeyword() === 'FROM') {
      const args = i.getArguments().map((a) => a.getValue())
      const as = args.findIndex((a) => a.toUpperCase() === 'AS')
      out.push({ from: i, name: as === -1 ? undefined : args[as + 1], instructions: [] })
    } else {
      out.at(-1)?.instructions.push(i)
    }
  }
  return out
}

const all = stages()
const final = all.at(-1)!
const of = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.getKeyword() === keyword)
const argsText = (i: Instruction) => i.getArguments().map((a) => a.getValue()).join(' ')
/** COPY --from=<stage>, or undefined. */
const copyFrom = (i: Instruction) =>
  (i as Instruction & { getFlags(): { getName(): string; getValue(): string | null }[] }).getFlags().find((f) => f.getName() === 'from')?.getValue() ?? undefined
/** An exec-form instruction's JSON array, or undefined when it is in shell form. */
function jsonForm(i: Instruction): string[] | undefined {
  const raw = (i.getArgumentsContent() ?? '').trim()
  const json = i.getKeyword() === 'HEALTHCHECK' ? raw.replace(/^(--\S+\s+)*CMD\s+/, '') : raw
  if (!json.startsWith('[')) return undefined
  return JSON.parse(json) as string[]
}

describe('Dockerfile', () => {
  it('is multi-stage: a build stage runs npm ci with dev dependencies and npm run build', () => {
    expect(all.length).toBeGreaterThanOrEqual(2)
    const build = all.find((s) => of(s, 'RUN').some((r) => /\bnpm run build\b/.test(argsText(r))))
    expect(build, 'a stage running `npm run build`').toBeDefined()
    expect(build).not.toBe(final)
    const ci = of(build!, 'RUN').map(argsText).filter((r) => /\bnpm ci\b/.test(r))
    expect(ci.length).toBeGreaterThan(0)
    // tsc is a dev dependency: the build stage must install it.
    for (const run of ci) expect(run).not.toMatch(/--omit[= ]dev|--production/)
    const env = of(build!, 'ENV').map(argsText).join(' ')
    expect(env).not.toMatch(/NODE_ENV=production/)
  })

  it('pins every base image to a version', () => {
    const stageNames = new Set(all.map((s) => s.name).filter((n) => n !== undefined))
    for (const stage of all) {
      const image = stage.from.getArguments()[0]!.getValue()
      if (stageNames.has(image)) continue
      expect(isPinnedImage(image), `FROM ${image}`).toBe(true)
    }
    expect(final.from.getArguments()[0]!.getValue()).toMatch(/^node:20\.\d+\.\d+-bookworm-slim$/)
  })

  it('installs only production dependencies in the final stage and copies the build output', () => {
    const runs = of(final, 'RUN').map(argsText)
    expect(runs.some((r) => /\bnpm ci\b.*--omit[= ]dev\b/.test(r))).toBe(true)
    for (const r of runs.filter((r) => /\bnpm (ci|install|i)\b/.test(r))) expect(r).toMatch(/--omit[= ]dev/)
    // The embedded Postgres is an optional dependency: it must not be left out.
    for (const r of runs) expect(r).not.toMatch(/--omit[= ]optional|--no-optional|--ignore-scripts/)
    const copies = of(final, 'COPY').map((c) => ({ from: copyFrom(c), raw: argsText(c) }))
    const buildStages = new Set(all.slice(0, -1).map((s) => s.name))
    const fromBuild = copies.find((c) => c.from !== undefined && buildStages.has(c.from) && /\/dist\b/.test(c.raw))
    expect(fromBuild, 'COPY --from=<build stage> …/dist').toBeDefined()
    // migrations/ is read at run time, next to dist/ (src/db/migrate.ts: ../../migrations/).
    expect(copies.some((c) => /\bmigrations\b/.test(c.raw))).toBe(true)
  })

  it('runs as a user that is not root, declared before CMD', () => {
    const users = of(final, 'USER')
    expect(users.length).toBeGreaterThan(0)
    const user = argsText(users.at(-1)!).split(':')[0]!
    expect(['root', '0', '']).not.toContain(user)
    const lines = (i: Instruction) => i.getRange().start.line
    expect(lines(users.at(-1)!)).toBeLessThan(lines(of(final, 'CMD').at(-1)!))
  })

  it('declares DATA_DIR as a VOLUME, made and owned by that user before it is declared', () => {
    const env = of(final, 'ENV').map(argsText).join(' ')
    const dataDir = /\bDATA_DIR=(\S+)/.exec(env)?.[1]
    expect(dataDir, 'ENV DATA_DIR=…').toBeDefined()
    const volumes = of(final, 'VOLUME').flatMap((v) => jsonForm(v) ?? v.getArguments().map((a) => a.getValue()))
    expect(volumes).toContain(dataDir)
    const volumeLine = of(final, 'VOLUME')[0]!.getRange().start.line
    const user = argsText(of(final, 'USER').at(-1)!).split(':')[0]!
    // A change to a volume's path after VOLUME is discarded: the chown must come first.
    const chown = of(final, 'RUN').find((r) => r.getRange().start.line < volumeLine && new RegExp(`chown\\s+${user}\\b[^&;]*\\s${dataDir}\\b`).test(argsText(r)))
    expect(chown, `RUN … chown ${user} … ${dataDir} before VOLUME`).toBeDefined()
  })

  it('exposes 8080 and 1883', () => {
    const ports = of(final, 'EXPOSE').flatMap((e) => e.getArguments().map((a) => a.getValue().split('/')[0]))
    expect(ports).toEqual(expect.arrayContaining(['8080', '1883']))
  })

  it('starts node itself in exec form, on the file `npm run build` produces', () => {
    const cmds = of(final, 'CMD')
    expect(cmds).toHaveLength(1)
    expect(jsonForm(cmds[0]!)).toEqual(['node', ...GATEWAY_NODE_FLAGS, 'dist/main.js'])
    // npm start runs the gateway with the same V8 flags (and so does the bench).
    const start = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start
    expect(start).toContain(['node', ...GATEWAY_NODE_FLAGS, 'dist/main.js'].join(' '))
    // An ENTRYPOINT would run before node (a shell form one would keep SIGTERM from it).
    expect(of(final, 'ENTRYPOINT')).toHaveLength(0)
    expect(of(final, 'WORKDIR').length).toBeGreaterThan(0)
    expect(existsSync(join(REPO_ROOT, 'src', 'main.ts'))).toBe(true)
    const build = JSON.parse(readFileSync(join(REPO_ROOT, 'tsconfig.build.json'), 'utf8')) as { compilerOptions: { rootDir: string; outDir: string } }
    expect(build.compilerOptions).toMatchObject({ rootDir: 'src', outDir: 'dist' })
  })

  it('sets NODE_ENV=production (the gateway then refuses to start without its secrets)', () => {
    expect(of(final, 'ENV').map(argsText).join(' ')).toMatch(/\bNODE_ENV=production\b/)
  })
})

describe('Dockerfile HEALTHCHECK', () => {
  const healthchecks = of(final, 'HEALTHCHECK')
  const command = healthchecks.length === 1 ? jsonForm(healthchecks[0]!) : undefined
  let server: Server | undefined

  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
    server = undefined
  })

  /** Serves `status` on `path` (404 elsewhere); returns the port. */
  async function serve(path: string, status: number): Promise<number> {
    server = createServer((req, res) => {
      res.statusCode = req.url === path ? status : 404
      res.end(res.statusCode === 200 ? '{"status":"ok"}' : '')
    })
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
    return (server.address() as AddressInfo).port
  }

  /** Runs the HEALTHCHECK command as Docker would, with this node for `node`. */
  function runCheck(env: Record<string, string>): Promise<number | null> {
    const [bin, ...args] = command!
    const child = spawn(bin === 'node' ? process.execPath : bin!, args, { env: { PATH: process.env.PATH ?? '', ...env }, stdio: 'ignore' })
    return new Promise((resolve) => child.once('exit', (code) => resolve(code)))
  }

  it('is one exec-form CMD that needs no curl', () => {
    expect(healthchecks).toHaveLength(1)
    expect(command?.[0]).toBe('node')
    expect(command!.join(' ')).toContain('/healthz')
  })

  it('passes while /healthz answers 200', async () => {
    const port = await serve('/healthz', 200)
    expect(await runCheck({ SERVER_PORT: String(port) })).toBe(0)
  })

  it('follows PATH_PREFIX', async () => {
    const port = await serve('/gw/healthz', 200)
    expect(await runCheck({ SERVER_PORT: String(port), PATH_PREFIX: '/gw' })).toBe(0)
    expect(await runCheck({ SERVER_PORT: String(port) })).not.toBe(0)
  })

  it('fails on another status, and when nothing listens', async () => {
    const port = await serve('/healthz', 503)
    expect(await runCheck({ SERVER_PORT: String(port) })).not.toBe(0)
    await new Promise<void>((resolve) => server!.close(() => resolve()))
    server = undefined
    expect(await runCheck({ SERVER_PORT: String(port) })).not.toBe(0)
  })
})

describe('.dockerignore', () => {
  const patterns = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))

  /** Docker's rule: the last matching pattern wins, `!` re-includes. */
  function ignored(path: string): boolean {
    let out = false
    for (const p of patterns) {
      const negated = p.startsWith('!')
      const glob = negated ? p.slice(1) : p
      const re = new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*/g, '\u0000').replace(/\*/g, '[^/]*').replace(/\u0000/g, '.*')}(/.*)?$`)
      if (re.test(path)) out = !negated
    }
    return out
  }

  it('keeps local state, secrets and build output out of the context', () => {
    for (const path of ['node_modules', 'dist', 'data', '.git', '.env', 'node_modules/x/y.js']) expect(ignored(path), path).toBe(true)
  })

  it('keeps what the build and the image need', () => {
    for (const path of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src/main.ts', 'migrations', 'scripts']) {
      expect(ignored(path), path).toBe(false)
    }
    // Every file the Dockerfile copies from the context exists and is sent.
    for (const stage of all) {
      for (const copy of of(stage, 'COPY')) {
        if (copyFrom(copy) !== undefined) continue
        const sources = copy.getArguments().map((a) => a.getValue()).slice(0, -1)
        for (const source of sources) {
          if (source === '.') continue
          expect(existsSync(join(REPO_ROOT, source)), `COPY ${source}`).toBe(true)
          expect(ignored(source), `COPY ${source} is in .dockerignore`).toBe(false)
        }
      }
    }
  })
})
