import { describe, expect, it } from 'vitest'
import { PasswordHasher } from '../../src/auth/passwords.js'

const cheap = { scryptLog2N: 10, scryptP: 1, maxConcurrent: 2 }

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

  it('runs at most maxConcurrent derivations at once', async () => {
    const h = new PasswordHasher({ ...cheap, maxConcurrent: 1 })
    const stored = await h.hash('pw-12345')
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => h.verify(stored, i % 2 === 0 ? 'pw-12345' : 'no')))
    expect(results).toEqual([true, false, true, false, true, false])
  })

  it('normalises Unicode, so the same password typed two ways matches', async () => {
    const h = new PasswordHasher(cheap)
    const stored = await h.hash('caf\u00e9-1234')
    expect(await h.verify(stored, 'cafe\u0301-1234')).toBe(true)
  })
})
