import { expect } from 'vitest'
import type { Queryable } from '../../src/db/index.js'

/**
 * Every JSON answer is free of secrets: no key naming a password, hash or secret, and
 * no stored password hash, salt or API-token hash anywhere in a value.
 */
export async function assertNoSecrets(db: Queryable, answers: readonly string[]): Promise<void> {
  const stored = await db.query<{ h: string }>(
    'SELECT password_hash AS h FROM users UNION ALL SELECT token_hash AS h FROM api_tokens',
  )
  // A password hash is scrypt$N$r$p$salt$hash: the salt and the hash must not leak either.
  const needles = stored.flatMap((r) => r.h.split('$').filter((part) => part.length >= 16))
  expect(needles.length).toBeGreaterThan(0)
  expect(answers.length).toBeGreaterThan(0)
  for (const text of answers) {
    if (text === '') continue
    walk(JSON.parse(text), (key, value) => {
      expect(key, text).not.toMatch(/password|hash|secret|salt/i)
      if (typeof value !== 'string') return
      expect(value, text).not.toContain('scrypt$')
      for (const needle of needles) expect(value.includes(needle), text).toBe(false)
    })
  }
}

function walk(node: unknown, visit: (key: string, value: unknown) => void, key = ''): void {
  visit(key, node)
  if (Array.isArray(node)) node.forEach((v) => walk(v, visit, key))
  else if (typeof node === 'object' && node !== null) {
    for (const [k, v] of Object.entries(node)) walk(v, visit, k)
  }
}
