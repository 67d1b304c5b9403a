import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

const SECRET_FILE = 'jwt-secret'

/**
 * The JWT secret in development when none is configured: generated once and kept in
 * the data directory, so tokens survive a restart. Production never gets here (config
 * refuses to start without a strong JWT_SECRET).
 */
export async function loadOrCreateDevSecret(dataDir: string): Promise<{ secret: string; created: boolean }> {
  const file = join(dataDir, SECRET_FILE)
  try {
    const secret = (await readFile(file, 'utf8')).trim()
    if (secret.length >= 32) return { secret, created: false }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  await mkdir(dataDir, { recursive: true })
  const secret = randomBytes(48).toString('base64url')
  await writeFile(file, secret + '\n', { mode: 0o600 })
  return { secret, created: true }
}
