/**
 * What the bench reads about processes and the machine from /proc: CPU seconds, RSS,
 * open-file limits, and how much CPU processes outside the bench took.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { cpus } from 'node:os'

const CLOCK_TICKS_PER_S = 100 // Linux USER_HZ

export interface ProcStats {
  cpuS: number
  peakRssMb: number
  rssMb: number
  rssAnonMb: number
}

/** /proc figures of a process: CPU seconds (user+system), peak RSS, RSS and its anonymous part, in MB. */
export function procStats(pid: number): ProcStats {
  const cpuS = statCpuS(`/proc/${pid}/stat`)
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0)
  return { cpuS, peakRssMb: kb('VmHWM') / 1024, rssMb: kb('VmRSS') / 1024, rssAnonMb: kb('RssAnon') / 1024 }
}

/** CPU seconds (user+system) of a process's main thread and of the whole process. */
export interface CpuTimes {
  mainS: number
  processS: number
}

/**
 * CPU seconds of `pid`'s main thread (its task of the same id: for Node, the JavaScript
 * thread, without libuv's pool, the GC helpers or the compiler threads) and of the whole
 * process. In clock ticks of 10 ms: read over several seconds to be accurate to a few %.
 */
export function cpuTimes(pid: number): CpuTimes {
  return { mainS: statCpuS(`/proc/${pid}/task/${pid}/stat`), processS: statCpuS(`/proc/${pid}/stat`) }
}

function statCpuS(path: string): number {
  const stat = readFileSync(path, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S
}

/**
 * CPU seconds used on the whole machine and by this process tree (the bench, its load
 * generators, the gateway and its Postgres, the sinks), children that exited included.
 * Their difference over a run is what other processes took from the two cores meanwhile
 * (plus kernel time not charged to any process): a run that shared the CPU with
 * someone else's build or tests is not comparable, and its row says so.
 */
export interface CpuSnapshot {
  atMs: number
  machineS: number
  oursS: number
}

export function cpuSnapshot(): CpuSnapshot {
  const atMs = performance.now()
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]?.trim().split(/\s+/).slice(1).map(Number) ?? []
  // user nice system idle iowait irq softirq steal
  const busy = (cpu[0] ?? 0) + (cpu[1] ?? 0) + (cpu[2] ?? 0) + (cpu[5] ?? 0) + (cpu[6] ?? 0) + (cpu[7] ?? 0)
  const parent = new Map<number, number>()
  const ticks = new Map<number, number>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      parent.set(Number(entry), Number(f[1]))
      // utime stime cutime cstime: the last two hold the children it has reaped
      ticks.set(Number(entry), Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]))
    } catch {
      // exited meanwhile
    }
  }
  let ours = 0
  for (const [pid, t] of ticks) {
    for (let p: number | undefined = pid; p !== undefined && p > 1; p = parent.get(p)) {
      if (p === process.pid) {
        ours += t
        break
      }
    }
  }
  return { atMs, machineS: busy / CLOCK_TICKS_PER_S, oursS: ours / CLOCK_TICKS_PER_S }
}

/** Share of the machine's CPU capacity (all cores) that other processes used between two snapshots, in %. */
export function otherCpuPercent(a: CpuSnapshot, b: CpuSnapshot): number {
  const capacity = ((b.atMs - a.atMs) / 1000) * cpus().length
  const other = b.machineS - a.machineS - (b.oursS - a.oursS)
  return capacity > 0 ? Number(Math.max(0, (100 * other) / capacity).toFixed(1)) : 0
}

/** The soft open-file limit of a process (`hard`: its hard limit, the most it can raise it to). */
export function fdLimitOf(pid: number | 'self', which: 'soft' | 'hard' = 'soft'): number {
  const m = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))
  const v = m?.[which === 'soft' ? 1 : 2]
  return v === undefined ? 0 : v === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(v)
}
