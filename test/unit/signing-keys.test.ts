import { afterEach, describe, expect, it, vi } from 'vitest'
import { SigningKeyStore } from '../../src/auth/signing-keys.js'
import type { Queryable } from '../../src/db/index.js'

interface Row {
  kid: string
  private_pem: string
  public_jwk: unknown
  created_at: Date
  retired_at: Date | null
}

/** The signing_keys table in memory (share `rows` between instances), counting this instance's reads. */
function fakeDb(rows: Row[] = []) {
  let reads = 0
  const tx: Queryable = {
    async query<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
      if (sql.includes('pg_advisory_xact_lock')) return []
      if (sql.startsWith('SELECT kid FROM signing_keys WHERE retired_at IS NULL')) {
        return rows.filter((r) => r.retired_at === null).map((r) => ({ kid: r.kid })) as T[]
      }
      if (sql.startsWith('INSERT INTO signing_keys')) {
        const [kid, , private_pem, jwk] = params as [string, string, string, string]
        rows.push({ kid, private_pem, public_jwk: JSON.parse(jwk), created_at: new Date(), retired_at: null })
        return []
      }
      if (sql.startsWith('UPDATE signing_keys SET retired_at')) {
        const retired = rows.filter((r) => r.retired_at === null)
        for (const r of retired) r.retired_at = new Date()
        return retired.map((r) => ({ kid: r.kid })) as T[]
      }
      if (sql.startsWith('DELETE FROM signing_keys')) return []
      if (sql.includes('FROM signing_keys')) {
        reads++
        return rows.map((r) => ({ ...r })) as T[]
      }
      throw new Error(`unexpected SQL: ${sql}`)
    },
  }
  return {
    rows,
    reads: () => reads,
    db: { query: tx.query, transaction: <T>(fn: (t: Queryable) => Promise<T>) => fn(tx) },
  }
}

afterEach(() => {
  vi.useRealTimers()
})

describe('SigningKeyStore', () => {
  it('makes one key on first start, none on the next, and publishes only public parts', async () => {
    const f = fakeDb()
    const first = new SigningKeyStore(f.db, { retainRetiredS: 90_000, minReloadIntervalMs: 1000 })
    await first.init()
    await new SigningKeyStore(fakeDb(f.rows).db, { retainRetiredS: 90_000, minReloadIntervalMs: 1000 }).init()
    expect(f.rows).toHaveLength(1)
    const [jwk] = first.jwks().keys
    expect(jwk).toMatchObject({ kid: first.current().kid, kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' })
    expect(jwk).not.toHaveProperty('d')
  })

  it('reloads for an unknown kid at most once per interval, however many ask, and only after being asked', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'Date'] })
    const f = fakeDb()
    const store = new SigningKeyStore(f.db, { retainRetiredS: 90_000, minReloadIntervalMs: 1000 })
    await store.init()
    expect(f.reads()).toBe(1)
    await store.refreshIfStale()
    expect(f.reads()).toBe(1)

    // Another instance rotates right after this one loaded.
    await new SigningKeyStore(fakeDb(f.rows).db, { retainRetiredS: 90_000, minReloadIntervalMs: 1000 }).rotate()
    const newKid = f.rows.find((r) => r.retired_at === null)?.kid as string
    expect(store.get(newKid)).toBeUndefined()
    const waiting = Promise.all(Array.from({ length: 50 }, () => store.refresh()))
    await vi.advanceTimersByTimeAsync(999)
    expect(f.reads()).toBe(1)
    await vi.advanceTimersByTimeAsync(1)
    await waiting
    expect(f.reads()).toBe(2)
    expect(store.get(newKid)?.kid).toBe(newKid)
    expect(store.current().kid).toBe(newKid)
    // The retired key still verifies.
    expect(store.jwks().keys).toHaveLength(2)
  })
})
