/**
 * Where a gateway run spent its CPU: summarises a V8 .cpuprofile written by
 * `npm run bench -- --cpu-prof` (bench/results/cpu-prof/<scenario>-<variant>.cpuprofile).
 *   node --import tsx bench/cpu-top.ts <file.cpuprofile> [top=25]
 * Prints self time by function and by module (a package under node_modules, a file of
 * the gateway, Node's internals, GC, idle).
 */
import { readFileSync } from 'node:fs'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

const file = process.argv[2]
if (!file) {
  process.stderr.write('usage: node --import tsx bench/cpu-top.ts <file.cpuprofile> [top]\n')
  process.exit(2)
}
const top = Number(process.argv[3] ?? 25)
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const selfUs = new Map<number, number>()
profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0)

function moduleOf(url: string, name: string): string {
  if (url === '') return name.startsWith('(') ? name : '(native)'
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (nm) return nm[1] as string
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/')
  const dist = /\/(dist\/.*)$/.exec(url)
  return dist ? (dist[1] as string) : url
}

const byFunction = new Map<string, number>()
const byModule = new Map<string, number>()
for (const [id, us] of selfUs) {
  const n = byId.get(id)
  if (!n) continue
  const { functionName, url, lineNumber } = n.callFrame
  const mod = moduleOf(url, functionName)
  const key = `${functionName || '(anonymous)'}  ${mod}${url ? `:${lineNumber + 1}` : ''}`
  byFunction.set(key, (byFunction.get(key) ?? 0) + us)
  byModule.set(mod, (byModule.get(mod) ?? 0) + us)
}
const print = (title: string, m: Map<string, number>) => {
  console.log(title)
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`  ${((100 * us) / totalUs).toFixed(1).padStart(5)} %  ${(us / 1e6).toFixed(2).padStart(7)} s  ${k}`)
  }
}
console.log(`${file}: ${(totalUs / 1e6).toFixed(1)} s sampled`)
print('self time by module:', byModule)
print('self time by function:', byFunction)
