/**
 * `npm run bench`: every scenario against its baselines in one run, the gateway and the
 * load generators as separate processes on loopback. Prints a table and writes
 * bench/results/<timestamp>.json and bench/results/latest.json.
 *   --quick           a smoke run (about a second per measurement)
 *   --only=a,b        only these scenarios
 *   --duration=ms     measured time per run (default 10000)
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { ROOT, type Ctx, type Row } from './lib.js'
import * as ts1000 from './scenarios/ts-1000lines.js'
import * as ts1 from './scenarios/ts-1line.js'

interface Scenario {
  name: string
  run(ctx: Ctx): Promise<Row[]>
}
const SCENARIOS: Scenario[] = [ts1, ts1000]

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string | undefined]))
const quick = args.has('quick')
const only = args.get('only')?.split(',')
const durationMs = Number(args.get('duration') ?? (quick ? 1500 : 10_000))
const ctx: Ctx = {
  durationMs,
  warmupMs: quick ? 300 : 2000,
  quick,
  rows: [],
  log: (m) => process.stderr.write(`bench: ${m}\n`),
}

async function main(): Promise<void> {
  const started = new Date()
  for (const s of SCENARIOS) {
    if (only && !only.includes(s.name)) continue
    ctx.rows.push(...(await s.run(ctx)))
  }
  const result = {
    started_at: started.toISOString(),
    duration_ms_per_run: durationMs,
    quick,
    machine: { cpus: cpus().length, cpu_model: cpus()[0]?.model, memory_gb: Math.round(totalmem() / 2 ** 30), node: process.version },
    rows: ctx.rows,
  }
  const dir = join(ROOT, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  const text = JSON.stringify(result, null, 2) + '\n'
  writeFileSync(join(dir, `${started.toISOString().replace(/[:.]/g, '-')}.json`), text)
  writeFileSync(join(dir, 'latest.json'), text)
  console.log(table(ctx.rows))
}

function table(rows: Row[]): string {
  const head = ['scenario', 'variant', 'lines/s', 'frames/s', 'p50 ms', 'p99 ms', 'gw cpu s', 'gw peak MB', 'errors', 'vs baseline', 'note']
  const body = rows.map((r) => [
    r.scenario,
    r.variant,
    r.lines_per_s.toLocaleString('en-US'),
    r.frames_per_s.toLocaleString('en-US'),
    r.p50_ms ?? '',
    r.p99_ms ?? '',
    r.gateway_cpu_s ?? '',
    r.gateway_peak_rss_mb ?? '',
    r.errors,
    r.ratio !== undefined ? `${r.ratio}x ${r.baseline}` : '',
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
    process.exit(1)
  },
)
