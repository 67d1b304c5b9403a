import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { LEGACY_REPLACEMENTS } from '../../src/config-legacy.js'
import { CONFIG_VARIABLES } from '../../src/config.js'
import { REPO_ROOT } from '../helpers/process.js'

// docs/MIGRATING.md's variable tables, checked against what the gateway reads (src/config.ts)
// and what it warns about (src/config-legacy.ts), so the guide cannot drift from the code.

const HEADER = '| old variable | gateway variable | notes |'
const doc = readFileSync(join(REPO_ROOT, 'docs', 'MIGRATING.md'), 'utf8')
const caddyfile = readFileSync(join(REPO_ROOT, 'Caddyfile'), 'utf8')
const known = new Set(CONFIG_VARIABLES)

interface Row {
  section: string
  line: number
  olds: string[]
  target: string
}

/** Every row of every variable table, with the `## ` section it is in. */
function tableRows(): Row[] {
  const rows: Row[] = []
  let section = ''
  let inTable = false
  doc.split('\n').forEach((text, i) => {
    if (text.startsWith('## ')) section = text.slice(3)
    if (text === HEADER) return void (inTable = true)
    if (!inTable) return
    if (!text.startsWith('|')) return void (inTable = false)
    if (/^\|[-| ]+\|$/.test(text)) return
    const cells = text.split('|').slice(1, -1).map((c) => c.trim())
    expect(cells, `line ${i + 1}: three cells`).toHaveLength(3)
    rows.push({ section, line: i + 1, olds: names(cells[0] as string), target: cells[1] as string })
  })
  return rows
}

/** The `code` spans of a cell. */
function names(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string)
}

/** A real variable name, not a pattern such as `LLM_PROVIDER_<n>_…`. */
const isName = (s: string) => /^[A-Z][A-Z0-9_]*$/.test(s)

const rows = tableRows()

describe('docs/MIGRATING.md variable tables', () => {
  it('has one table per replaced system', () => {
    expect([...new Set(rows.map((r) => r.section))]).toEqual([
      'Matt Collector (Go)',
      'pgAnalytics backend (Go, phase 2)',
      'Go WebSocket server',
      'Chatbox service (Go): health, metrics, limits, admin, path prefix',
      'Service-MQTT (Go)',
    ])
    for (const r of rows) expect(r.olds.length, `line ${r.line}: an old variable`).toBeGreaterThan(0)
  })

  it('a variable kept under its name ("same") is read by the gateway, or by its Caddyfile, and gets no warning', () => {
    for (const r of rows.filter((r) => r.target.startsWith('same'))) {
      for (const old of r.olds) {
        expect(isName(old), `line ${r.line}: ${old}`).toBe(true)
        if (r.target === 'same (Caddy)') expect(caddyfile, `line ${r.line}: ${old} in the Caddyfile`).toContain(`{$${old}`)
        else {
          expect(r.target, `line ${r.line}`).toBe('same')
          expect(known.has(old), `line ${r.line}: ${old} is a variable of src/config.ts`).toBe(true)
        }
        expect(LEGACY_REPLACEMENTS.has(old), `line ${r.line}: ${old} is not warned about`).toBe(false)
      }
    }
  })

  it('a replaced variable names one gateway variable, and config-legacy.ts warns about it with that replacement', () => {
    for (const r of rows.filter((r) => !r.target.startsWith('same') && !r.target.startsWith('not needed: '))) {
      const replacement = names(r.target)
      expect(replacement, `line ${r.line}: one gateway variable`).toHaveLength(1)
      expect(r.target, `line ${r.line}: only the variable`).toBe(`\`${replacement[0]}\``)
      expect(known.has(replacement[0] as string), `line ${r.line}: ${replacement[0]} is a variable of src/config.ts`).toBe(true)
      for (const old of r.olds) {
        expect(known.has(old), `line ${r.line}: ${old} is not read under its own name`).toBe(false)
        expect(LEGACY_REPLACEMENTS.get(old), `line ${r.line}: the warning for ${old}`).toBe(replacement[0])
      }
    }
  })

  it('a variable that is not needed is neither read nor warned about', () => {
    for (const r of rows.filter((r) => r.target.startsWith('not needed: '))) {
      for (const old of r.olds.filter(isName)) {
        expect(known.has(old), `line ${r.line}: ${old} would be read`).toBe(false)
        expect(LEGACY_REPLACEMENTS.has(old), `line ${r.line}: ${old} is warned about`).toBe(false)
      }
    }
  })

  it('every warning of config-legacy.ts is in a table, with the same replacement, and no variable is mapped two ways', () => {
    const inDoc = new Map<string, Set<string>>()
    for (const r of rows) {
      const target = r.target.startsWith('same') ? 'same' : r.target.startsWith('not needed: ') ? 'not needed' : r.target
      for (const old of r.olds) inDoc.set(old, (inDoc.get(old) ?? new Set()).add(target))
    }
    for (const [old, targets] of inDoc) expect([...targets], `${old}: one mapping in every table it is in`).toHaveLength(1)
    for (const [old, replacement] of LEGACY_REPLACEMENTS) {
      expect([...(inDoc.get(old) ?? [])], `${old} in docs/MIGRATING.md`).toEqual([`\`${replacement}\``])
    }
  })

  it('the gateway variables named in the prose exist too', () => {
    // Every `UPPER_CASE` span with an underscore outside the tables, but the /time-series replies.
    const prose = doc
      .split('\n')
      .filter((l) => !l.startsWith('|'))
      .join('\n')
    const named = new Set([...prose.matchAll(/`([A-Z][A-Z0-9]*_[A-Z0-9_]+)(?:=[^`]*)?`/g)].map((m) => m[1] as string))
    for (const reply of ['AUTH_SUCCESS', 'AUTH_FAILED', 'AUTH_EXPIRED']) named.delete(reply)
    const old = new Set(rows.flatMap((r) => r.olds))
    for (const name of named) {
      if (old.has(name) && !known.has(name)) continue
      expect(known.has(name) || caddyfile.includes(`{$${name}`), `${name} named in the prose`).toBe(true)
    }
  })
})
