import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { inCI } from './services.js'

/** The project's shared folder (contract, seeds, fixtures) sits beside the repository. */
export const SHARED_DIR = fileURLToPath(new URL('../../../shared/', import.meta.url))

/** Whether a file of the shared folder can be read; in CI its absence is an error. */
export function sharedFile(...parts: string[]): string | undefined {
  const file = join(SHARED_DIR, ...parts)
  if (existsSync(file)) return file
  if (inCI) throw new Error(`${join('..', 'shared', ...parts)} is missing, and CI=true requires it`)
  console.warn(`skipping: ${join('..', 'shared', ...parts)} is not there`)
  return undefined
}
