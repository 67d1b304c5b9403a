import { connect } from 'node:net'

/** CI must run every test: there an unreachable service fails instead of skipping. */
export const inCI = process.env.CI === 'true'

export function tcpReachable(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

/**
 * Whether tests needing `what` should run: true when reachable; when not, false outside
 * CI (the suite is reported as skipped) and an error in CI. `ci` is for this helper's own
 * test; callers leave it to the environment.
 */
export async function requireService(what: string, reachable: boolean, ci = inCI): Promise<boolean> {
  if (reachable) return true
  if (ci) throw new Error(`${what} is not reachable, and CI=true requires it`)
  console.warn(`skipping tests that need ${what}: not reachable`)
  return false
}
