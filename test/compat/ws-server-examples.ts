import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import WebSocket from 'ws'
import { sharedFile } from '../helpers/shared.js'

/**
 * The examples of a seed document (../shared/seeds), taken from its text at test time so a
 * test runs what the document prints: fenced code blocks, shell commands run by a real shell,
 * and browser snippets run with `ws` standing in for the browser's WebSocket.
 */

export interface CodeBlock {
  /** The fence's language tag (`bash`, `json`, `javascript`, ''). */
  lang: string
  /** The block's text, its list indentation removed. */
  code: string
  /** The document's text before the block (for finding a block by the words above it). */
  before: string
}

/** The seed's text, or undefined when ../shared is not there (sharedFile warns, or throws in CI). */
export function readSeed(file: string): string | undefined {
  const path = sharedFile('seeds', file)
  return path === undefined ? undefined : readFileSync(path, 'utf8')
}

/** Every fenced block, also those indented under a list item. */
export function codeBlocks(text: string): CodeBlock[] {
  const blocks: CodeBlock[] = []
  for (const m of text.matchAll(/^([ \t]*)```(\w*)[ \t]*\n([\s\S]*?)^\1```/gm)) {
    const indent = m[1] as string
    const code = (m[3] as string)
      .split('\n')
      .map((line) => (line.startsWith(indent) ? line.slice(indent.length) : line))
      .join('\n')
    blocks.push({ lang: m[2] as string, code, before: text.slice(0, m.index) })
  }
  return blocks
}

/** The one block that matches; a seed that changed makes the test fail here, naming what it looked for. */
export function oneBlock(text: string, what: string, match: (b: CodeBlock) => boolean): CodeBlock {
  const found = codeBlocks(text).filter(match)
  if (found.length !== 1) throw new Error(`expected one block with ${what} in the seed, found ${found.length}`)
  return found[0] as CodeBlock
}

/** Replaces `from` (which must be there) in an example: every substitution a test makes is visible. */
export function substitute(code: string, from: string | RegExp, to: string): string {
  const next = code.replace(from, to)
  if (next === code) throw new Error(`the example does not contain ${String(from)}`)
  return next
}

export interface ShellResult {
  code: number
  stdout: string
  stderr: string
}

const SHELL_TIMEOUT_MS = 20_000

/** Runs a command line as a user types it, with /bin/sh (curl, redis-cli are real processes). */
export function runShell(command: string): Promise<ShellResult> {
  return new Promise((resolve) => {
    execFile('/bin/sh', ['-c', command], { timeout: SHELL_TIMEOUT_MS, env: { PATH: process.env.PATH ?? '' } }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, stdout, stderr })
    })
  })
}

export interface BrowserRun {
  /** Every console.log call of the snippet, its arguments as given. */
  logs: unknown[][]
  /** The WebSockets the snippet opened, in order (a test sends on them as a page would). */
  sockets: WebSocket[]
  /** The `data` of every `console.log("Message:", event.data)`, parsed as JSON. */
  messages(): any[]
  close(): void
}

/**
 * Runs a browser snippet as written: its `WebSocket` is the `ws` package's (the same
 * `onopen`/`onmessage`/`event.data` interface), its `console` records what it logs.
 */
export function runBrowserSnippet(code: string): BrowserRun {
  const logs: unknown[][] = []
  const sockets: WebSocket[] = []
  class BrowserWebSocket extends WebSocket {
    constructor(url: string) {
      super(url)
      sockets.push(this)
      // A browser reports a failed connection as an event; an unhandled 'error' must not end the test process.
      this.on('error', () => {})
    }
  }
  const console = { log: (...args: unknown[]) => logs.push(args) }
  new Function('WebSocket', 'console', code)(BrowserWebSocket, console)
  return {
    logs,
    sockets,
    messages: () => logs.filter((l) => l[0] === 'Message:').map((l) => JSON.parse(String(l[1]))),
    close: () => {
      for (const s of sockets) s.close()
    },
  }
}
