/**
 * Counts failed logins per key (a username, an address) in fixed windows. A key that
 * reached its limit is refused until its window ends, whatever the password: a
 * password guesser learns nothing more until then.
 *
 * Counts live in this process: with several gateway instances each keeps its own, so
 * the effective limit is the configured one times the number of instances.
 */
export interface LimiterRule {
  max: number
  windowMs: number
}

interface Window {
  failures: number
  endsAt: number
}

// Beyond this many keys, windows are swept before another is added (bounded memory).
const SWEEP_THRESHOLD = 10_000

export class FailureLimiter {
  private readonly windows = new Map<string, Window>()

  constructor(
    private readonly rule: LimiterRule,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds until `key` may try again; 0 when it may now. */
  retryAfterMs(key: string): number {
    const w = this.current(key)
    return w !== undefined && w.failures >= this.rule.max ? w.endsAt - this.now() : 0
  }

  fail(key: string): void {
    const w = this.current(key)
    if (w !== undefined) {
      w.failures++
      return
    }
    if (this.windows.size >= SWEEP_THRESHOLD) this.sweep()
    this.windows.set(key, { failures: 1, endsAt: this.now() + this.rule.windowMs })
  }

  /** Takes back one failure counted earlier (a reservation that turned out not to be one). */
  unfail(key: string): void {
    const w = this.current(key)
    if (w === undefined) return
    if (w.failures <= 1) this.windows.delete(key)
    else w.failures--
  }

  reset(key: string): void {
    this.windows.delete(key)
  }

  private current(key: string): Window | undefined {
    const w = this.windows.get(key)
    if (w === undefined) return undefined
    if (w.endsAt <= this.now()) {
      this.windows.delete(key)
      return undefined
    }
    return w
  }

  private sweep(): void {
    const now = this.now()
    for (const [key, w] of this.windows) if (w.endsAt <= now) this.windows.delete(key)
    // Still full (a flood of distinct keys inside one window): drop the oldest tenth at
    // once, so sweeps stay rare instead of running on every new key.
    for (const key of this.windows.keys()) {
      if (this.windows.size < SWEEP_THRESHOLD * 0.9) break
      this.windows.delete(key)
    }
  }
}

export interface LoginLimitOptions {
  windowS: number
  maxFailuresPerUsername: number
  maxFailuresPerIp: number
}

/** Failed logins per username and per client address. */
export class LoginLimiter {
  private readonly byUsername: FailureLimiter
  private readonly byIp: FailureLimiter

  constructor(opts: LoginLimitOptions, now: () => number = Date.now) {
    const windowMs = opts.windowS * 1000
    this.byUsername = new FailureLimiter({ max: opts.maxFailuresPerUsername, windowMs }, now)
    this.byIp = new FailureLimiter({ max: opts.maxFailuresPerIp, windowMs }, now)
  }

  /** Whole seconds to wait before another attempt, or 0. */
  retryAfterS(username: string, ip: string): number {
    const ms = Math.max(this.byUsername.retryAfterMs(usernameKey(username)), this.byIp.retryAfterMs(ip))
    return ms > 0 ? Math.ceil(ms / 1000) : 0
  }

  /**
   * Checks and counts in one step, before the password is verified: the attempt counts
   * as a failure until `succeeded` or `release` says otherwise. Checking first and
   * counting after the (slow) hash let any number of parallel guesses through; this way
   * at most the limit of them reach the hasher. Answers the seconds to wait (nothing
   * reserved) or 0 (reserved).
   */
  reserve(username: string, ip: string): number {
    const retryAfterS = this.retryAfterS(username, ip)
    if (retryAfterS > 0) return retryAfterS
    this.byUsername.fail(usernameKey(username))
    this.byIp.fail(ip)
    return 0
  }

  /** The attempt was never judged (the hasher was busy, the database failed): uncount it. */
  release(username: string, ip: string): void {
    this.byUsername.unfail(usernameKey(username))
    this.byIp.unfail(ip)
  }

  /**
   * A correct password clears the username's count, and uncounts this attempt at the
   * address without clearing the address's earlier failures: otherwise a guesser could
   * clear its own count by logging into an account of its own.
   */
  succeeded(username: string, ip: string): void {
    this.byUsername.reset(usernameKey(username))
    this.byIp.unfail(ip)
  }
}

const usernameKey = (username: string) => username.toLowerCase()
