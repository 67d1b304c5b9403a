import { spawnSync } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { DbError } from './db.js'

/**
 * Who runs the embedded Postgres. Postgres refuses to run as root, so a gateway started
 * as root runs it as another user: the owner of an existing cluster, else `postgres`
 * (created when missing). A gateway started as anyone else runs it as itself.
 */
export interface ServerUser {
  name: string
  uid: number
  gid: number
}

export interface ServerUserOptions {
  /** The user a new cluster gets when this process is root. */
  name: string
  /** Tried in order to create that user when it does not exist (first that works wins). */
  createCommands: ReadonlyArray<readonly [string, ...string[]]>
  /** The user database read for names and ids (no `id` binary needed: distroless has none). */
  passwdFile: string
}

export const defaultServerUserOptions: ServerUserOptions = {
  name: 'postgres',
  createCommands: [
    ['useradd', '--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'],
    ['adduser', '-S', '-D', '-H', '-s', '/sbin/nologin', 'postgres'], // busybox (Alpine)
  ],
  passwdFile: '/etc/passwd',
}

/** undefined: run the server as this process's own user. */
export function serverUser(pgdata: string, opts: ServerUserOptions): ServerUser | undefined {
  const me = process.getuid?.()
  const owner = ownerOf(pgdata)
  if (me !== 0) {
    if (owner !== undefined && me !== undefined && owner.uid !== me) {
      const name = userName(owner.uid, opts.passwdFile)
      throw new DbError(
        `${pgdata} belongs to user ${name}, and this process runs as ${userName(me, opts.passwdFile)}: start as root (the server then runs as ${name}) or as ${name}, or use another DATA_DIR`,
      )
    }
    return undefined
  }
  if (owner !== undefined && owner.uid !== 0) {
    return { name: userName(owner.uid, opts.passwdFile), uid: owner.uid, gid: owner.gid }
  }
  if (owner !== undefined && hasCluster(pgdata)) {
    throw new DbError(`${pgdata} belongs to root, and Postgres refuses to run as root: chown -R ${opts.name} ${pgdata}, or use another DATA_DIR`)
  }
  return findUser(opts.name, opts.passwdFile) ?? createUser(opts)
}

function ownerOf(path: string): { uid: number; gid: number } | undefined {
  try {
    const st = statSync(path)
    return { uid: st.uid, gid: st.gid }
  } catch {
    return undefined
  }
}

function hasCluster(pgdata: string): boolean {
  return ownerOf(resolve(pgdata, 'PG_VERSION')) !== undefined
}

function passwd(file: string): ServerUser[] {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return []
  }
  return text.split('\n').flatMap((line) => {
    const [name, , uid, gid] = line.split(':')
    return name && uid && gid ? [{ name, uid: Number(uid), gid: Number(gid) }] : []
  })
}

function findUser(name: string, file: string): ServerUser | undefined {
  return passwd(file).find((u) => u.name === name)
}

function userName(uid: number, file: string): string {
  return passwd(file).find((u) => u.uid === uid)?.name ?? `uid ${uid}`
}

function createUser(opts: ServerUserOptions): ServerUser {
  const failures: string[] = []
  for (const [cmd, ...args] of opts.createCommands) {
    const made = spawnSync(cmd, args, { encoding: 'utf8' })
    if (made.error) continue // not installed here
    const user = findUser(opts.name, opts.passwdFile)
    if (made.status === 0 && user) return user
    failures.push(`${cmd} exited with ${made.status ?? made.signal}: ${(made.stderr ?? '').trim() || 'no output'}`)
  }
  const tried = opts.createCommands.map(([cmd]) => cmd).join(' or ')
  const why = failures.length === 0 ? `there is no ${tried} to create one` : `creating it failed (${failures.join('; ')})`
  throw new DbError(
    `running as root, the embedded Postgres must run as another user, and there is no "${opts.name}" user; ${why}: create a system user named ${opts.name}, start as a non-root user, or set DATABASE_URL`,
  )
}

/**
 * Whether `user` can pass through every folder down to `path` (mode bits only; supplementary
 * groups and ACLs are not consulted, so the answer errs on "no", which only costs a copy).
 */
export function canReach(path: string, user: { uid: number; gid: number }): boolean {
  if (user.uid === 0) return true
  for (let dir = resolve(path); ; dir = dirname(dir)) {
    let st
    try {
      st = statSync(dir)
    } catch {
      return false
    }
    const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001
    if ((st.mode & bit) === 0) return false
    if (dir === dirname(dir)) return true
  }
}
