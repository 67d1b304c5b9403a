/**
 * The replaced systems' own examples (../shared/seeds), read at test time and run as
 * their users run them: `curl` and `mosquitto_pub` as child processes, JavaScript
 * snippets with `ws` as the browser's WebSocket. A test substitutes only what the
 * migration guide lists (host, port, a token); if a seed's example and the gateway part
 * ways, the test fails.
 */
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import WebSocket from 'ws'
import { expect } from 'vitest'
import { requireService } from '../helpers/services.js'
import { sharedFile } from '../helpers/shared.js'

/** The text of a seed, or undefined when ../shared is not there (skipped locally, an error in CI). */
export function readSeed(name: string): string | undefined {
  const file = sharedFile('seeds', name)
  return file === undefined ? undefined : readFileSync(file, 'utf8')
}

/** The text from a heading line (the seed's, or its start) to the next heading of its level or above. */
export function section(text: string, heading: string): string {
  const lines = text.split('\n')
  const start = lines.findIndex((l) => l.trim().startsWith(heading))
  if (start === -1) throw new Error(`no heading "${heading}" in the seed`)
  const level = /^#+/.exec(heading)?.[0].length ?? 1
  const end = lines.findIndex((l, i) => i > start && /^#+ /.test(l) && (/^#+/.exec(l)?.[0].length ?? 99) <= level)
  return lines.slice(start + 1, end === -1 ? undefined : end).join('\n')
}

export interface CodeBlock {
  lang: string
  code: string
}

/** The fenced code blocks of a text, in order (indented fences included, their indent removed). */
export function codeBlocks(text: string): CodeBlock[] {
  const out: CodeBlock[] = []
  const re = /^([ \t]*)```(\w*)\n([\s\S]*?)^[ \t]*```/gm
  for (const m of text.matchAll(re)) {
    const indent = m[1] ?? ''
    const code = (m[3] ?? '')
      .split('\n')
      .map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l))
      .join('\n')
    out.push({ lang: m[2] ?? '', code })
  }
  return out
}

/** The one block of `lang` in `text` (a section, usually); fails when there is not exactly one. */
export function onlyBlock(text: string, lang: string): string {
  const blocks = codeBlocks(text).filter((b) => b.lang === lang)
  expect(blocks.map((b) => b.code), `exactly one \`\`\`${lang} block`).toHaveLength(1)
  return (blocks[0] as CodeBlock).code
}

/**
 * A POSIX shell command line split into words as sh would: single and double quotes,
 * backslash escapes and backslash-newline continuations. No expansions: the seeds'
 * commands have none (a `$` or backtick outside single quotes is refused, so a test
 * never runs something other than what the seed prints).
 */
export function shellWords(command: string): string[] {
  const words: string[] = []
  let word: string | undefined
  const text = command.replace(/\\\n/g, '')
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string
    if (c === "'") {
      const end = text.indexOf("'", i + 1)
      if (end === -1) throw new Error(`unterminated ' in: ${command}`)
      word = (word ?? '') + text.slice(i + 1, end)
      i = end
    } else if (c === '"') {
      let j = i + 1
      let part = ''
      for (; j < text.length && text[j] !== '"'; j++) {
        const d = text[j] as string
        if (d === '$' || d === '`') throw new Error(`shell expansion in: ${command}`)
        if (d === '\\' && j + 1 < text.length && '"\\$`'.includes(text[j + 1] as string)) part += text[++j]
        else part += d
      }
      if (j >= text.length) throw new Error(`unterminated " in: ${command}`)
      word = (word ?? '') + part
      i = j
    } else if (c === '\\') {
      word = (word ?? '') + (text[++i] ?? '')
    } else if (c === ' ' || c === '\t' || c === '\n') {
      if (word !== undefined) words.push(word)
      word = undefined
    } else if ('$`;|&<>()'.includes(c)) {
      throw new Error(`shell syntax "${c}" in: ${command}`)
    } else {
      word = (word ?? '') + c
    }
  }
  if (word !== undefined) words.push(word)
  return words
}

/** Replaces the host and port of every `http(s)://` or `ws(s)://` URL in a word by `base`'s (scheme and path kept). */
export function rebase(word: string, base: string): string {
  const { host } = new URL(base)
  return word.replace(/\b(https?|wss?):\/\/[^/\s'"]+/g, (_m, scheme: string) => `${scheme}://${host}`)
}

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs a program (no shell) and resolves with its exit code and output, whatever the code. */
export function run(file: string, args: readonly string[], timeoutMs = 20_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') return reject(new Error(`${file} could not run: ${err.message}\n${stderr}`))
      resolve({ code: err === null ? 0 : (err.code as number), stdout, stderr })
    })
  })
}

/** Whether a program is on PATH (or at /usr/bin), as requireService gates services. */
export async function requireBinary(name: string, debianPackage: string): Promise<boolean> {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/bin']
  const found = dirs.some((d) => d !== '' && existsSync(join(d, name)))
  return requireService(`${name} (Debian package ${debianPackage})`, found)
}

/**
 * Marker `curl` prints after the body (`-w`), so a test sees the status without changing
 * what the command sends: `-sS` and `-w` only shape curl's own output.
 */
const STATUS_MARK = '\n--curl-status--'

export interface CurlAnswer {
  status: number
  body: string
  json: any
  /** The argv that ran, for failure messages. */
  argv: string[]
}

/** Runs `curl` with these words (the seed's command with its substitutions) and reads the answer. */
export async function curl(words: readonly string[]): Promise<CurlAnswer> {
  expect(words[0]).toBe('curl')
  const argv = ['-sS', '-w', `${STATUS_MARK}%{http_code}`, ...words.slice(1)]
  const res = await run('curl', argv)
  expect(res.code, `curl ${argv.join(' ')}: ${res.stderr}`).toBe(0)
  const at = res.stdout.lastIndexOf(STATUS_MARK)
  const body = res.stdout.slice(0, at)
  const status = Number(res.stdout.slice(at + STATUS_MARK.length))
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch {
    json = undefined
  }
  return { status, body, json, argv: ['curl', ...argv] }
}

/**
 * An `http` block of a seed (`METHOD /path`, then `Header: value` lines) as curl's words
 * against `base`, with `headers` replacing the values of placeholders the seed shows in
 * angle brackets, and `body` sent with `-d`.
 */
export function httpBlockAsCurl(block: string, base: string, opts: { headers?: Record<string, string>; body?: string } = {}): string[] {
  const [requestLine, ...headerLines] = block.trim().split('\n')
  const m = /^([A-Z]+) (\/\S*)$/.exec(requestLine ?? '')
  if (m === null) throw new Error(`not an HTTP request line: ${requestLine}`)
  const words = ['curl', '-X', m[1] as string, `${base}${m[2] as string}`]
  for (const line of headerLines) {
    const h = /^([\w-]+):\s*(.*)$/.exec(line.trim())
    if (h === null) continue
    const name = h[1] as string
    const value = opts.headers?.[name] ?? (h[2] as string)
    if (/<[^>]+>/.test(value)) throw new Error(`header ${name} keeps a placeholder: ${value}`)
    words.push('-H', `${name}: ${value}`)
  }
  if (opts.body !== undefined) words.push('-d', opts.body)
  return words
}

/** A JSON block of a README as JSON text: `// …` annotations after a value removed (JSON has no comments). */
export function withoutAnnotations(block: string): string {
  return block
    .split('\n')
    .map((l) => l.replace(/\s+\/\/.*$/, ''))
    .join('\n')
}

/** The keys of `{a, b, c}` as the pgAnalytics notes write them. */
export function braceKeys(text: string): string[] {
  return text
    .replace(/^\{|\}$/g, '')
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k !== '')
}

export interface Snippet {
  /** Every WebSocket the snippet opened. */
  sockets: WebSocket[]
  /** What it logged, one string per console.log call (arguments joined by a space). */
  logs: string[]
  closeAll(): void
}

/**
 * Runs a browser JavaScript snippet with `ws` as its WebSocket and a console that
 * records: the snippet's own code, nothing added.
 */
export function runBrowserSnippet(code: string): Snippet {
  const sockets: WebSocket[] = []
  const logs: string[] = []
  class BrowserLikeWebSocket extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols)
      sockets.push(this)
      // A browser reports a failed connection as an event; `ws` must not throw it instead.
      this.on('error', () => {})
    }
  }
  const consoleLike = { log: (...args: unknown[]) => logs.push(args.map(String).join(' ')) }
  new Function('WebSocket', 'console', code)(BrowserLikeWebSocket, consoleLike)
  return {
    sockets,
    logs,
    closeAll() {
      for (const s of sockets) s.terminate()
    },
  }
}
