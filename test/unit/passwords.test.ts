import { describe, expect, it, vi } from 'vitest'

// scrypt, seen from the test: every call is counted, and while `held` is set each call
// waits there until the test lets it run, so "how many run at once" is a fact, not a race.
const gate = vi.hoisted(() => ({ started: 0, held: undefined as Array<() => void> | undefined }))
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>()
  const scrypt = (...args: unknown[]) => {
    gate.started++
    const run = () => (real.scrypt as (...a: unknown[]) => void)(...args)
    if (gate.held !== undefined) gate.held.push(run)
    else run()
  }
  return { ...real, scrypt }
})
// test/setup.ts loaded the module already, with the real scrypt: load it afresh.
vi.resetModules()
const { HasherBusyError, PasswordHasher } = await import('../../src/auth/passwords.js')

const cheap = { scryptLog2N: 10, scryptP: 1, maxConcurrent: 2, maxQueue: 64 }
/** Lets queued promise callbacks run (no timer, no I/O). */
const settle = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve()
}

describe('PasswordHasher', () => {
  it('hashes with a fresh salt into a self-describing string and verifies it', async () => {
    const h = new PasswordHasher(cheap)
    const a = await h.hash('correct horse')
    const b = await h.hash('correct horse')
    expect(a).toMatch(/^scrypt\$10\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{86}$/)
    expect(a).not.toBe(b)
    expect(a).not.toContain('correct horse')
    expect(await h.verify(a, 'correct horse')).toBe(true)
    expect(await h.verify(a, 'correct horsE')).toBe(false)
    expect(await h.verify(a, '')).toBe(false)
  })

  it('verifies hashes made with other parameters, and says they need a rehash', async () => {
    const old = await new PasswordHasher({ ...cheap, scryptLog2N: 11 }).hash('pw-12345')
    const h = new PasswordHasher(cheap)
    expect(await h.verify(old, 'pw-12345')).toBe(true)
    expect(h.needsRehash(old)).toBe(true)
    expect(h.needsRehash(await h.hash('pw-12345'))).toBe(false)
  })

  it('answers false for no user (checked against a dummy hash) and for a malformed hash', async () => {
    const h = new PasswordHasher(cheap)
    expect(await h.verify(undefined, 'anything')).toBe(false)
    expect(await h.verify('plain-text-password', 'plain-text-password')).toBe(false)
    expect(await h.verify('scrypt$99$8$1$AA$AA', 'x')).toBe(false)
  })

  it('runs at most maxConcurrent derivations at once; the others wait their turn, in order', async () => {
    const h = new PasswordHasher({ ...cheap, maxConcurrent: 2 })
    const stored = await h.hash('pw-12345')
    gate.started = 0
    gate.held = []
    try {
      const results = Array.from({ length: 6 }, (_, i) => h.verify(stored, i % 2 === 0 ? 'pw-12345' : 'no'))
      await settle()
      expect(gate.started).toBe(2)
      expect(h.load).toEqual({ running: 2, waiting: 4 })
      // One finishes: exactly one more starts.
      gate.held.shift()?.()
      await results[0]
      await settle()
      expect(gate.started).toBe(3)
      expect(h.load).toEqual({ running: 2, waiting: 3 })
      // Let everything run from here on.
      const held = gate.held
      gate.held = undefined
      for (const run of held.splice(0)) run()
      // The rest start as slots free up.
      expect(await Promise.all(results)).toEqual([true, false, true, false, true, false])
      expect(gate.started).toBe(6)
      expect(h.load).toEqual({ running: 0, waiting: 0 })
    } finally {
      gate.held = undefined
    }
  })

  it('refuses a derivation beyond maxQueue waiting ones at once with HasherBusyError (503), running none of it', async () => {
    const h = new PasswordHasher({ ...cheap, maxConcurrent: 1, maxQueue: 2 })
    gate.started = 0
    gate.held = []
    try {
      const admitted = [h.verify(undefined, 'a'), h.verify(undefined, 'b'), h.verify(undefined, 'c')]
      const refused = h.verify(undefined, 'd')
      await expect(refused).rejects.toBeInstanceOf(HasherBusyError)
      await expect(h.hash('another')).rejects.toMatchObject({ statusCode: 503, code: 'busy', retryAfterS: 1 })
      await settle()
      expect(gate.started).toBe(1)
      expect(h.load).toEqual({ running: 1, waiting: 2 })
      const held = gate.held
      gate.held = undefined
      for (const run of held.splice(0)) run()
      expect(await Promise.all(admitted)).toEqual([false, false, false])
      // Nothing refused was ever derived, and the slots all came back.
      expect(gate.started).toBe(3)
      expect(h.load).toEqual({ running: 0, waiting: 0 })
      expect(await h.verify(undefined, 'e')).toBe(false)
    } finally {
      gate.held = undefined
    }
  })

  it('normalises Unicode, so the same password typed two ways matches', async () => {
    const h = new PasswordHasher(cheap)
    const stored = await h.hash('caf\u00e9-1234')
    expect(await h.verify(stored, 'cafe\u0301-1234')).toBe(true)
  })
})
