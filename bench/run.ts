/**
 * `npm run bench`: every scenario against its baselines in one run, the gateway and the
 * load generators as separate processes on loopback. Prints a table (with the CPU per line
 * of the gateway and of victoria-metrics over each measured window) and the targets of
 * DESIGN.md and the issues, and writes bench/results/<timestamp>.json and (unless --only) bench/results/latest.json.
 *   --quick           a smoke run (about a second per measurement, 500 idle connections)
 *   --only=a,b        only these scenarios (ts-1line, ts-1000lines, http-write, spooling, idle, mqtt, ws-fanout, collectors)
 *   --duration=ms     measured time per run (default 10000)
 *   --idle=N          idle connections for the idle scenario (default 10000; 50000 = DESIGN)
 *   --cpu-prof        write a V8 CPU profile of every gateway run to bench/results/cpu-prof/
 *                     (summarise one with `node --import tsx bench/cpu-top.ts <file>`)
 *   --cpu-prof=a,b    only of the gateway runs whose label contains a or b (the file names:
 *                     e.g. --cpu-prof=mqtt-forward for the MQTT → JetStream gateway)
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { cleanup, OTHER_CPU_WARN_PERCENT, ROOT, stopAll, type Ctx, type Row } from './lib.js'
import * as collectors from './scenarios/collectors.js'
import * as httpWrite from './scenarios/http-write.js'
import * as idle from './scenarios/idle.js'
import * as mqtt from './scenarios/mqtt.js'
import * as spooling from './scenarios/spooling.js'
import * as ts1000 from './scenarios/ts-1000lines.js'
import * as ts1 from './scenarios/ts-1line.js'
import * as wsFanout from './scenarios/ws-fanout.js'
import { evaluateTargets, formatTargets } from './targets.js'

interface Scenario {
  name: string
  run(ctx: Ctx): Promise<Row[]>
}
const SCENARIOS: Scenario[] = [ts1, ts1000, httpWrite, spooling, idle, mqtt, wsFanout, collectors]

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string | undefined]))
const known = new Set(['quick', 'only', 'duration', 'idle', 'cpu-prof'])
for (const k of args.keys()) {
  if (!known.has(k)) {
    process.stderr.write(`bench: unknown option --${k} (known: ${[...known].map((x) => `--${x}`).join(', ')})\n`)
    process.exit(2)
  }
}
const quick = args.has('quick')
const only = args.get('only')?.split(',')
if (only) {
  const unknown = only.filter((o) => !SCENARIOS.some((s) => s.name === o))
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown scenario ${unknown.join(', ')} (known: ${SCENARIOS.map((s) => s.name).join(', ')})\n`)
    process.exit(2)
  }
}
const durationMs = Number(args.get('duration') ?? (quick ? 1500 : 10_000))
const idleConnections = Number(args.get('idle') ?? (quick ? 500 : 10_000))
if (!(durationMs > 0) || !(idleConnections > 0)) {
  process.stderr.write('bench: --duration and --idle take a positive number\n')
  process.exit(2)
}
const benchStarted = performance.now()
const ctx: Ctx = {
  durationMs,
  warmupMs: quick ? 300 : 2000,
  quick,
  idleConnections,
  cpuProf: args.has('cpu-prof'),
  ...(args.get('cpu-prof') ? { cpuProfOnly: (args.get('cpu-prof') as string).split(',') } : {}),
  rows: [],
  log: (m) => process.stderr.write(`bench [${((performance.now() - benchStarted) / 1000).toFixed(0).padStart(3)} s]: ${m}\n`),
}

let interrupted = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    if (interrupted) return
    interrupted = true
    process.stderr.write(`bench: ${signal}, stopping every process it started\n`)
    void stopAll().finally(() => {
      cleanup()
      process.exit(130)
    })
  })
}

/**
 * Versions of what shapes the figures beyond the gateway's code: ws, and whether its
 * native add-ons are installed (bufferutil masks and unmasks frames in C++; without it
 * the 1,000-line ceiling is several times lower, for the load generator as for the gateway).
 */
function packages(): Record<string, string | null> {
  const require = createRequire(import.meta.url)
  const version = (name: string) => {
    try {
      return (JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')) as { version: string }).version
    } catch {
      return null
    }
  }
  return { ws: version('ws'), bufferutil: version('bufferutil'), 'utf-8-validate': version('utf-8-validate'), fastify: version('fastify') }
}

async function main(): Promise<void> {
  const started = new Date()
  const pkgs = packages()
  ctx.log(`ws ${pkgs.ws}, bufferutil ${pkgs.bufferutil ?? 'not installed'}, utf-8-validate ${pkgs['utf-8-validate'] ?? 'not installed'}`)
  const loadBefore = loadavg()
  for (const s of SCENARIOS) {
    if (only && !only.includes(s.name)) continue
    const t0 = performance.now()
    ctx.rows.push(...(await s.run(ctx)))
    ctx.log(`${s.name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  }
  cleanup()
  const targets = evaluateTargets(ctx.rows)
  const result = {
    started_at: started.toISOString(),
    elapsed_s: Math.round((performance.now() - benchStarted) / 1000),
    duration_ms_per_run: durationMs,
    warmup_ms_per_run: ctx.warmupMs,
    quick,
    idle_connections: idleConnections,
    machine: {
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model,
      memory_gb: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      load_average_before: loadBefore.map((x) => Number(x.toFixed(2))),
    },
    packages: pkgs,
    rows: ctx.rows,
    targets,
  }
  const dir = join(ROOT, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  const text = JSON.stringify(result, null, 2) + '\n'
  const file = `${started.toISOString().replace(/[:.]/g, '-')}.json`
  writeFileSync(join(dir, file), text)
  // latest.json is the committed record of a whole run: a partial run (--only) never replaces it.
  if (!only) writeFileSync(join(dir, 'latest.json'), text)
  console.log(table(ctx.rows))
  console.log()
  console.log(formatTargets(targets))
  if (ctx.rows.some((r) => r.other_cpu_pct !== null && r.other_cpu_pct > OTHER_CPU_WARN_PERCENT)) {
    console.log(`\nwarning: in some runs other processes took more than ${OTHER_CPU_WARN_PERCENT} % of the CPU ("other cpu %"): their figures are not comparable; run again on a quiet machine`)
  }
  console.log(
    `\n${quick ? 'quick run' : 'run'} took ${result.elapsed_s} s (ws ${pkgs.ws}, bufferutil ${pkgs.bufferutil ?? 'not installed'}); results in bench/results/${only ? file : 'latest.json'}`,
  )
}

function table(rows: Row[]): string {
  const head = [
    'scenario',
    'variant',
    'lines/s',
    'frames/s',
    'p50 ms',
    'p99 ms',
    'gw cpu s',
    'gw main ns/line',
    'gw ns/line',
    'vm ns/line',
    'gw peak MB',
    'errors',
    'other cpu %',
    'vs baseline',
    'note',
  ]
  const num = (n: number | null) => (n === null ? '' : n.toLocaleString('en-US'))
  const body = rows.map((r) => [
    r.scenario,
    r.variant,
    num(r.lines_per_s),
    num(r.frames_per_s),
    r.p50_ms ?? '',
    r.p99_ms ?? '',
    r.gateway_cpu_s ?? '',
    num(r.cpu_ns_per_line ?? null),
    num(r.process_cpu_ns_per_line ?? null),
    num(r.vm_cpu_ns_per_line ?? null),
    r.gateway_peak_rss_mb ?? '',
    r.errors,
    r.other_cpu_pct ?? '',
    [...(r.ratio !== undefined ? [`${r.ratio}x ${r.baseline}`] : []), ...Object.entries(r.ratio_to ?? {}).map(([b, x]) => `${x}x ${b}`)].join('; '),
    r.note ?? '',
  ])
  const all = [head, ...body].map((cols) => cols.map(String))
  const widths = head.map((_, i) => Math.max(...all.map((c) => (c[i] ?? '').length)))
  const fmt = (c: string[]) => `| ${c.map((x, i) => x.padEnd(widths[i] ?? 0)).join(' | ')} |`
  return [fmt(all[0] as string[]), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...all.slice(1).map(fmt)].join('\n')
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`)
    void stopAll().finally(() => {
      cleanup()
      process.exit(1)
    })
  },
)
