import { describe, expect, it } from 'vitest'
import { FailureLimiter, LoginLimiter } from '../../src/auth/login-limiter.js'

function clock(start = 1_000_000) {
  let now = start
  return { now: () => now, advance: (ms: number) => (now += ms) }
}

describe('FailureLimiter', () => {
  it('refuses a key that reached its failures until its window ends', () => {
    const c = clock()
    const l = new FailureLimiter({ max: 3, windowMs: 60_000 }, c.now)
    l.fail('k')
    l.fail('k')
    expect(l.retryAfterMs('k')).toBe(0)
    l.fail('k')
    expect(l.retryAfterMs('k')).toBe(60_000)
    c.advance(59_000)
    expect(l.retryAfterMs('k')).toBe(1_000)
    expect(l.retryAfterMs('other')).toBe(0)
    c.advance(1_000)
    expect(l.retryAfterMs('k')).toBe(0)
    l.fail('k') // a new window
    expect(l.retryAfterMs('k')).toBe(0)
  })

  it('forgets a key on reset', () => {
    const l = new FailureLimiter({ max: 1, windowMs: 1000 })
    l.fail('k')
    expect(l.retryAfterMs('k')).toBeGreaterThan(0)
    l.reset('k')
    expect(l.retryAfterMs('k')).toBe(0)
  })

  it('keeps memory bounded under a flood of distinct keys', () => {
    const l = new FailureLimiter({ max: 1, windowMs: 60_000 })
    for (let i = 0; i < 50_000; i++) l.fail(`k${i}`)
    expect((l as unknown as { windows: Map<string, unknown> }).windows.size).toBeLessThanOrEqual(10_000)
  })
})

describe('LoginLimiter', () => {
  const opts = { windowS: 900, maxFailuresPerUsername: 2, maxFailuresPerIp: 3 }

  it('limits per username whatever its case, in whole seconds', () => {
    const c = clock()
    const l = new LoginLimiter(opts, c.now)
    expect(l.reserve('Alice', '10.0.0.1')).toBe(0)
    expect(l.reserve('alice', '10.0.0.2')).toBe(0)
    expect(l.retryAfterS('ALICE', '10.0.0.3')).toBe(900)
    expect(l.reserve('ALICE', '10.0.0.3')).toBe(900)
    c.advance(500)
    expect(l.retryAfterS('alice', '10.0.0.3')).toBe(900)
    expect(l.retryAfterS('bob', '10.0.0.3')).toBe(0)
  })

  it('limits per address across usernames', () => {
    const l = new LoginLimiter(opts)
    for (const u of ['a', 'b', 'c']) expect(l.reserve(u, '10.0.0.9')).toBe(0)
    expect(l.reserve('d', '10.0.0.9')).toBeGreaterThan(0)
    expect(l.retryAfterS('d', '10.0.0.10')).toBe(0)
  })

  it('counts an attempt when it is reserved: parallel guesses get at most the limit through', () => {
    const l = new LoginLimiter({ ...opts, maxFailuresPerUsername: 3, maxFailuresPerIp: 100 })
    // 20 guesses arrive before any password check has finished.
    const admitted = Array.from({ length: 20 }, (_, i) => l.reserve('alice', `10.1.0.${i}`)).filter((s) => s === 0)
    expect(admitted).toHaveLength(3)
  })

  it('a reservation released (never judged) does not count; one that succeeded clears the username', () => {
    const l = new LoginLimiter(opts)
    expect(l.reserve('alice', '10.0.0.1')).toBe(0)
    expect(l.reserve('alice', '10.0.0.1')).toBe(0)
    expect(l.reserve('alice', '10.0.0.1')).toBeGreaterThan(0)
    l.release('alice', '10.0.0.1')
    expect(l.reserve('alice', '10.0.0.1')).toBe(0)
    l.succeeded('alice', '10.0.0.1')
    expect(l.retryAfterS('alice', '10.0.0.5')).toBe(0)
  })

  it('clears the username count on success, not the address count', () => {
    const l = new LoginLimiter(opts)
    l.reserve('alice', '10.0.0.1')
    l.reserve('mallory', '10.0.0.1')
    l.reserve('mallory', '10.0.0.1')
    expect(l.retryAfterS('carol', '10.0.0.1')).toBeGreaterThan(0)
    // Alice, from elsewhere, with the right password.
    expect(l.reserve('alice', '10.0.0.2')).toBe(0)
    l.succeeded('alice', '10.0.0.2')
    expect(l.retryAfterS('alice', '10.0.0.2')).toBe(0)
    // Her success took back her own attempt at 10.0.0.2 only: 10.0.0.1 stays blocked.
    expect(l.retryAfterS('alice', '10.0.0.1')).toBeGreaterThan(0)
    for (let i = 0; i < 2; i++) expect(l.reserve(`u${i}`, '10.0.0.2')).toBe(0)
  })
})
