import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

/**
 * What the page sees of the headless browser: the flags without which Chromium keeps trying
 * Google's hosts (refused on a closed network). As root (CI containers) Chromium runs only
 * without its sandbox.
 */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** Debian's chromium on PATH (or at /usr/bin/chromium), like `which chromium`. */
export function findChromium(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin']
  for (const name of ['chromium', 'chromium-browser']) {
    for (const dir of dirs) {
      if (dir === '') continue
      try {
        accessSync(join(dir, name), constants.X_OK)
        return join(dir, name)
      } catch {
        // not here
      }
    }
  }
  return undefined
}
