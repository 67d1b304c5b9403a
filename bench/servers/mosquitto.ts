/**
 * The machine's MQTT broker as a peer of the mqtt scenario (Mosquitto at 127.0.0.1:1883
 * unless MOSQUITTO_URL says otherwise). It is not the bench's child, so its CPU would
 * count as another process disturbing the run: the scenario finds its pid, by the socket
 * listening on the port, and the load accounts for it (lib.ts load, `peer`).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'

export const MOSQUITTO_URL = process.env.MOSQUITTO_URL ?? 'mqtt://127.0.0.1:1883'

/** The pid of the local process listening on `url`'s TCP port; undefined when not local or not found. */
export function localListenerPid(url: string): number | undefined {
  const u = new URL(url)
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) return undefined
  const hex = `:${Number(u.port || 1883).toString(16).toUpperCase().padStart(4, '0')}`
  const inodes = new Set<string>()
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
        const cols = line.trim().split(/\s+/)
        // local_address rem_address st ... inode; st 0A = LISTEN
        if (cols[1]?.endsWith(hex) && cols[3] === '0A' && cols[9]) inodes.add(cols[9])
      }
    } catch {
      // no such table
    }
  }
  if (inodes.size === 0) return undefined
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let fds: string[]
    try {
      fds = readdirSync(`/proc/${entry}/fd`)
    } catch {
      continue // exited, or not ours to read
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${entry}/fd/${fd}`))
        if (m && inodes.has(m[1] as string)) return Number(entry)
      } catch {
        // closed meanwhile
      }
    }
  }
  return undefined
}
