import { mkdir, open, readFile, type FileHandle } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { tryLock } from 'fs-native-extensions'

/**
 * One gateway per DATA_DIR: two on one folder would share spool segments and cursor, and
 * the second would stop the first one's Postgres. The lock is an open-file-description
 * lock (fcntl F_OFD_SETLK) on DATA_DIR/gateway.lock, held for the life of the app: the
 * kernel drops it when the process dies however it dies, so a crash never leaves a stale
 * lock, and it holds across containers that share the folder (unlike an abstract socket,
 * which is per network namespace). The file is never deleted (deleting a lock file races
 * with the next taker); it holds the holder's pid for the refusal message only.
 */
export const LOCK_FILE = 'gateway.lock'

export class DataDirLockedError extends Error {
  override name = 'DataDirLockedError'
}

export interface DataDirLock {
  readonly path: string
  /** Safe to call twice. */
  release(): Promise<void>
}

export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  const dir = resolve(dataDir)
  const path = join(dir, LOCK_FILE)
  await mkdir(dir, { recursive: true })
  const file = await open(path, 'a+', 0o600)
  let locked: boolean
  try {
    locked = tryLock(file.fd)
  } catch (err) {
    await file.close()
    throw new DataDirLockedError(`could not lock DATA_DIR ${dir} (${(err as Error).message}): put DATA_DIR on a local file system`, {
      cause: err,
    })
  }
  if (!locked) {
    await file.close()
    const holder = await holderPid(path)
    throw new DataDirLockedError(
      `DATA_DIR ${dir} is in use by another matt-collector${holder ? ` (pid ${holder})` : ''}: stop that one, or start this one with another DATA_DIR`,
    )
  }
  await writePid(file)
  let released: Promise<void> | undefined
  return {
    path,
    release() {
      released ??= file.close()
      return released
    },
  }
}

async function writePid(file: FileHandle): Promise<void> {
  await file.truncate(0)
  await file.write(`${process.pid}\n`, 0)
}

async function holderPid(path: string): Promise<number | undefined> {
  const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim())
  return Number.isInteger(pid) && pid > 0 ? pid : undefined
}
