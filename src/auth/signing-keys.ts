import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type JsonWebKey, type KeyObject } from 'node:crypto'
import type { Db, Queryable } from '../db/index.js'

/**
 * The gateway's own signing keys (docs/API.md section 3). The current key signs user
 * access, refresh and collector tokens; keys retired by a rotation keep verifying what
 * they signed until it has expired, then they leave the JWKS and the database. The keys
 * live in the database, so every instance signs and verifies with the same ones.
 */
export const SIGNING_ALG = 'ES256'

export interface SigningKey {
  kid: string
  privateKey: KeyObject
  publicKey: KeyObject
  publicJwk: PublicJwk
  createdAt: Date
  retiredAt: Date | null
}

export interface PublicJwk {
  kty: string
  crv: string
  x: string
  y: string
  kid: string
  alg: typeof SIGNING_ALG
  use: 'sig'
}

export interface RotationResult {
  /** The new current key. */
  kid: string
  /** Keys that stopped signing (still verifying). */
  retired: string[]
  /** Keys past their retention, deleted. */
  dropped: string[]
}

interface Row {
  kid: string
  private_pem: string
  public_jwk: PublicJwk
  created_at: Date
  retired_at: Date | null
}

export interface SigningKeyStoreOptions {
  /**
   * How long a retired key must still verify: the longest lifetime of a token it signed,
   * plus the clock skew allowed, plus how late another instance may notice the rotation.
   */
  retainRetiredS: number
  /** Reloads from the database (an unknown kid) are at most this frequent. */
  minReloadIntervalMs: number
  now?: () => number
}

// Serialises key creation and rotation across instances sharing a database (the first
// admin uses ...002, migrations ...001).
const SIGNING_KEY_LOCK_KEY = 7_142_015_003

export class SigningKeyStore {
  private keys = new Map<string, SigningKey>()
  private currentKey: SigningKey | undefined
  private lastLoadAt = Number.NEGATIVE_INFINITY
  private loading: Promise<void> | undefined
  /** A reload asked for and not started yet. */
  private nextLoad: Promise<void> | undefined
  private readonly now: () => number

  constructor(
    private readonly db: Pick<Db, 'query' | 'transaction'>,
    private readonly opts: SigningKeyStoreOptions,
  ) {
    this.now = opts.now ?? Date.now
  }

  /** Loads the keys, creating the first one when the database has none (first start). */
  async init(): Promise<void> {
    await this.db.transaction(async (tx) => {
      await lock(tx)
      const [current] = await tx.query<{ kid: string }>('SELECT kid FROM signing_keys WHERE retired_at IS NULL')
      if (current === undefined) await insertNewKey(tx)
    })
    await this.load()
  }

  /** The key new tokens are signed with. */
  current(): SigningKey {
    if (this.currentKey === undefined) throw new Error('signing keys not loaded: call init() first')
    return this.currentKey
  }

  get(kid: string): SigningKey | undefined {
    return this.keys.get(kid)
  }

  /** Public keys of every key that may still have signed a live token (RFC 7517 key set). */
  jwks(): { keys: PublicJwk[] } {
    return { keys: [...this.keys.values()].map((k) => k.publicJwk) }
  }

  /**
   * Reloads from the database, for a kid this instance does not know: it may be another
   * instance's new key. The load starts after this call (so it sees every key committed
   * before), but at most once per minReloadIntervalMs: a flood of forged kids waits for
   * the same load instead of becoming a flood of queries.
   */
  refresh(): Promise<void> {
    if (this.nextLoad !== undefined) return this.nextLoad
    const waitMs = Math.max(0, this.lastLoadAt + this.opts.minReloadIntervalMs - this.now())
    const next = async () => {
      await new Promise<void>((resolve) => setTimeout(resolve, waitMs).unref())
      // One running now began too early to be sure to see the key: let it end, then read again.
      await this.loading?.catch(() => {})
      this.nextLoad = undefined
      await this.load()
    }
    this.nextLoad = next()
    return this.nextLoad
  }

  /** Reloads unless the keys were loaded less than minReloadIntervalMs ago (never waits for the interval). */
  async refreshIfStale(): Promise<void> {
    if (this.loading !== undefined) return this.loading
    if (this.now() - this.lastLoadAt < this.opts.minReloadIntervalMs) return
    await this.load()
  }

  /**
   * A new key becomes current; the old one is retired (still verifying), and keys
   * retired longer ago than retainRetiredS are deleted. `also` runs in the same
   * transaction (the audit entry commits with the rotation, or neither does).
   */
  async rotate(
    also: (tx: Queryable, rotated: RotationResult) => Promise<void> = async () => {},
  ): Promise<RotationResult> {
    const result = await this.db.transaction(async (tx) => {
      await lock(tx)
      const retired = await tx.query<{ kid: string }>(
        'UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL RETURNING kid',
      )
      const dropped = await tx.query<{ kid: string }>(
        `DELETE FROM signing_keys WHERE retired_at < now() - make_interval(secs => $1) RETURNING kid`,
        [this.opts.retainRetiredS],
      )
      const kid = await insertNewKey(tx)
      const rotated = { kid, retired: retired.map((r) => r.kid), dropped: dropped.map((r) => r.kid) }
      await also(tx, rotated)
      return rotated
    })
    // A load already running may have read before the commit: read again after it.
    await this.loading?.catch(() => {})
    await this.load()
    return result
  }

  private load(): Promise<void> {
    this.loading ??= this.readAll().finally(() => {
      this.loading = undefined
    })
    return this.loading
  }

  private async readAll(): Promise<void> {
    // When the read starts: a key committed later may be missing from it.
    this.lastLoadAt = this.now()
    const rows = await this.db.query<Row>(
      `SELECT kid, private_pem, public_jwk, created_at, retired_at FROM signing_keys
        WHERE retired_at IS NULL OR retired_at >= now() - make_interval(secs => $1)
        ORDER BY created_at`,
      [this.opts.retainRetiredS],
    )
    const keys = new Map<string, SigningKey>()
    let current: SigningKey | undefined
    for (const row of rows) {
      const privateKey = createPrivateKey(row.private_pem)
      const key: SigningKey = {
        kid: row.kid,
        privateKey,
        publicKey: createPublicKey(privateKey),
        publicJwk: row.public_jwk,
        createdAt: row.created_at,
        retiredAt: row.retired_at,
      }
      keys.set(key.kid, key)
      if (key.retiredAt === null) current = key
    }
    // Keep signing with the key in hand if another instance is mid-rotation (none current for a moment).
    if (current !== undefined) this.currentKey = current
    else if (this.currentKey !== undefined) keys.set(this.currentKey.kid, this.currentKey)
    this.keys = keys
  }
}

async function lock(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [SIGNING_KEY_LOCK_KEY])
}

async function insertNewKey(tx: Queryable): Promise<string> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const jwk = publicKey.export({ format: 'jwk' }) as JsonWebKey
  const kid = thumbprint(jwk)
  const publicJwk: PublicJwk = {
    kty: jwk.kty as string,
    crv: jwk.crv as string,
    x: jwk.x as string,
    y: jwk.y as string,
    kid,
    alg: SIGNING_ALG,
    use: 'sig',
  }
  await tx.query('INSERT INTO signing_keys (kid, alg, private_pem, public_jwk) VALUES ($1, $2, $3, $4::jsonb)', [
    kid,
    SIGNING_ALG,
    privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
    JSON.stringify(publicJwk),
  ])
  return kid
}

/** RFC 7638: SHA-256 of the required members in lexicographic order, base64url. */
function thumbprint(jwk: JsonWebKey): string {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })
  return createHash('sha256').update(canonical).digest('base64url')
}
