import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse as parseDotenv } from 'dotenv'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { LEGACY_REPLACEMENTS } from '../../src/config-legacy.js'
import { REPO_ROOT } from '../helpers/process.js'
import { sharedFile } from '../helpers/shared.js'

// .env.example is the one list of variables an operator copies (`cp .env.example .env`): it
// must hold every variable the gateway reads, every one the docs name, and every one
// docker-compose.yml interpolates. A `# NAME=…` line counts: some variables change behaviour
// by being set at all (MQTT_PORT), so they are listed commented out.

const exampleText = readFileSync(join(REPO_ROOT, '.env.example'), 'utf8')
const listed = new Set([...exampleText.matchAll(/^[ \t]*#?[ \t]*([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!))

/** The variables in the first column of section 1's table of an API document. */
function sectionOneVariables(markdown: string): string[] {
  const start = markdown.search(/^## 1\. /m)
  expect(start, 'a "## 1." section').toBeGreaterThanOrEqual(0)
  const rest = markdown.slice(start + 1)
  // Up to the next section; the old systems' variables (docs/API.md) are not the gateway's.
  const end = rest.search(/^## |^### Variables of the replaced systems/m)
  const section = rest.slice(0, end === -1 ? undefined : end)
  const names = section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .flatMap((line) => [...line.split('|')[1]!.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]!))
  return [...new Set(names)]
}

/** Every variable loadConfig reads, seen by a source object that records what is asked of it. */
function configVariables(): string[] {
  const read = new Set<string>()
  const source = new Proxy({} as Record<string, string | undefined>, {
    get(target, key) {
      if (typeof key === 'string') read.add(key)
      return Reflect.get(target, key) as string | undefined
    },
  })
  loadConfig(source)
  // The replaced systems' names are looked at only to warn about them.
  return [...read].filter((k) => /^[A-Z][A-Z0-9_]*$/.test(k) && !LEGACY_REPLACEMENTS.has(k)).sort()
}

describe('.env.example', () => {
  it('lists every variable of docs/API.md section 1', () => {
    const documented = sectionOneVariables(readFileSync(join(REPO_ROOT, 'docs', 'API.md'), 'utf8'))
    expect(documented.length).toBeGreaterThan(40)
    expect(documented).toContain('SHUTDOWN_GRACE_MS')
    expect(documented.filter((v) => !listed.has(v))).toEqual([])
  })

  it("lists every variable of the shared contract's section 1", () => {
    const file = sharedFile('API.md')
    if (file === undefined) return
    const documented = sectionOneVariables(readFileSync(file, 'utf8'))
    expect(documented).toEqual(expect.arrayContaining(['DOMAIN', 'TLS_EMAIL']))
    expect(documented.filter((v) => !listed.has(v))).toEqual([])
  })

  it('lists every variable src/config.ts reads', () => {
    const read = configVariables()
    // The recording source must see the schema's keys, or this test proves nothing.
    expect(read.length).toBeGreaterThan(50)
    expect(read).toEqual(expect.arrayContaining(['JWT_SECRET', 'DATA_DIR', 'SHUTDOWN_GRACE_MS', 'NATS_URL']))
    expect(read.filter((v) => !listed.has(v))).toEqual([])
  })

  it('docs/API.md section 1 documents every variable src/config.ts reads', () => {
    const documented = new Set(sectionOneVariables(readFileSync(join(REPO_ROOT, 'docs', 'API.md'), 'utf8')))
    expect(configVariables().filter((v) => !documented.has(v))).toEqual([])
  })

  it('lists nothing that neither the gateway nor docker-compose.yml reads (a typo would go unnoticed)', () => {
    const compose = readFileSync(join(REPO_ROOT, 'docker-compose.yml'), 'utf8')
    const composeVars = new Set([...compose.matchAll(/(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]!))
    const read = new Set(configVariables())
    expect([...listed].filter((v) => !read.has(v) && !composeVars.has(v))).toEqual([])
  })

  it('is a configuration the gateway starts with, copied as it is (development defaults)', () => {
    const config = loadConfig(parseDotenv(exampleText))
    expect(config.env).toBe('development')
    expect(config.shutdownGraceMs).toBeGreaterThan(config.sinkTimeoutMs)
  })
})
