import { FailureLimiter } from '../auth/login-limiter.js'

export interface ConnectionGuardOptions {
  /** Open MQTT connections (TCP and WebSocket together) one address may hold. */
  maxConnectionsPerAddress: number
  /** Failed CONNECTs one address may make per window before it is refused outright. */
  maxAuthFailuresPerAddress: number
  authWindowMs: number
}

/**
 * Per-address limits of the embedded broker: a connection cap checked before any MQTT is
 * read, and a throttle on failed CONNECTs. Counts live in this process (like the login
 * limits): with several gateway instances each applies its own.
 */
export class ConnectionGuard {
  private readonly open = new Map<string, number>()
  private readonly failures: FailureLimiter

  constructor(
    private readonly opts: ConnectionGuardOptions,
    now: () => number = Date.now,
  ) {
    this.failures = new FailureLimiter({ max: opts.maxAuthFailuresPerAddress, windowMs: opts.authWindowMs }, now)
  }

  /** Takes a connection slot for `address`; false (nothing taken) when it holds its cap already. */
  admit(address: string): boolean {
    const n = this.open.get(address) ?? 0
    if (n >= this.opts.maxConnectionsPerAddress) return false
    this.open.set(address, n + 1)
    return true
  }

  /** Gives back a slot taken by admit (once per admitted connection). */
  release(address: string): void {
    const n = this.open.get(address) ?? 0
    if (n <= 1) this.open.delete(address)
    else this.open.set(address, n - 1)
  }

  connections(address: string): number {
    return this.open.get(address) ?? 0
  }

  /**
   * Checks and counts in one step, before the password is verified (as the login limiter
   * does): an attempt counts as a failure until `succeeded` or `release` takes it back, so
   * parallel guesses cannot all slip in before the first failure is counted. False: the
   * address is throttled and nothing was counted.
   */
  reserveAttempt(address: string): boolean {
    if (this.failures.retryAfterMs(address) > 0) return false
    this.failures.fail(address)
    return true
  }

  /**
   * Right credentials: the attempt is taken back, earlier failures stay (a guesser must not
   * clear its count by connecting a device of its own).
   */
  succeeded(address: string): void {
    this.failures.unfail(address)
  }

  /** The attempt was never judged (the directory failed): uncount it. */
  unjudged(address: string): void {
    this.failures.unfail(address)
  }
}
