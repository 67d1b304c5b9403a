import { readlinkSync, realpathSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { vi } from 'vitest'

export interface SyncCall {
  kind: 'datasync' | 'sync'
  /** The synced file or directory, as the kernel names it (symlinks resolved). */
  path: string
}

/** Only Linux names an open descriptor's file (/proc/self/fd); elsewhere these tests skip. */
export const canSpyOnSyncs = process.platform === 'linux'

/**
 * Records every fdatasync and fsync made through a FileHandle, in order, with the path it
 * synced; `gate(match)` makes the matching syncs wait until released. The SIGKILL tests
 * survive through the page cache, so only this can show that a sync is made at all.
 * Restored by vi.restoreAllMocks().
 */
export async function spyOnSyncs() {
  // FileHandle is not exported; its prototype is reachable from any open handle.
  const probe = await open(tmpdir(), 'r')
  const proto = Object.getPrototypeOf(probe) as Record<'datasync' | 'sync', (this: { fd: number }) => Promise<void>>
  await probe.close()
  const calls: SyncCall[] = []
  const gates: Array<{ match: (c: SyncCall) => boolean; opened: Promise<void> }> = []
  for (const kind of ['datasync', 'sync'] as const) {
    const original = proto[kind]
    vi.spyOn(proto, kind).mockImplementation(async function (this: { fd: number }) {
      const call = { kind, path: readlinkSync(`/proc/self/fd/${this.fd}`) }
      calls.push(call)
      for (const g of gates) if (g.match(call)) await g.opened
      return original.call(this)
    })
  }
  return {
    calls,
    /** Syncs matching `match` wait until the returned function is called. */
    gate(match: (c: SyncCall) => boolean): () => void {
      let release!: () => void
      gates.push({ match, opened: new Promise<void>((r) => (release = r)) })
      return () => release()
    },
    /** The calls as `kind path` with `dir` shown as `<dir>`, for readable assertions. */
    names(dir: string): string[] {
      const real = realpathSync(dir)
      return calls.map((c) => `${c.kind} ${c.path === real ? '<dir>' : c.path.startsWith(`${real}/`) ? c.path.slice(real.length + 1) : c.path}`)
    },
  }
}

export const realJoin = (dir: string, name: string) => join(realpathSync(dir), name)
