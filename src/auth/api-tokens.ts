import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { Queryable } from '../db/index.js'
import type { Role, Scope } from './roles.js'

/**
 * API tokens for backends (docs/API.md section 3): opaque `mc_<random>` strings, shown
 * once, stored as their SHA-256 (the token carries 256 random bits, so a plain hash is
 * enough: nobody can guess a token from its hash), scoped, acting as their owner.
 */
export const API_TOKEN_PREFIX = 'mc_'
const RANDOM_BYTES = 32
const SHAPE = /^mc_[A-Za-z0-9_-]{43}$/
// Characters of the token kept in clear so tokens can be told apart in lists.
const SHOWN_CHARS = API_TOKEN_PREFIX.length + 4
// last_used_at is written at most this often per token: a busy ingest token must not
// cost one UPDATE per request.
const LAST_USED_WRITE_INTERVAL_MS = 60_000

export const isApiToken = (token: string): boolean => token.startsWith(API_TOKEN_PREFIX)

export const hashApiToken = (token: string): string => createHash('sha256').update(token).digest('hex')

export interface ApiTokenRecord {
  id: string
  user_id: string
  name: string
  token_prefix: string
  scopes: Scope[]
  created_by: string | null
  created_at: Date
  last_used_at: Date | null
}

export interface ApiTokenOwner {
  id: string
  username: string
  email: string
  role: Role
  org: string
  org_id: string
}

export interface AuthenticatedApiToken {
  id: string
  scopes: readonly Scope[]
  owner: ApiTokenOwner
}

const COLUMNS = 'id, user_id, name, token_prefix, scopes, created_by, created_at, last_used_at'

export class ApiTokenService {
  private readonly lastUsedWrites = new Map<string, number>()

  constructor(
    private readonly db: Queryable,
    private readonly log: Pick<Logger, 'warn'>,
  ) {}

  /** The new token in clear (to show once) and its stored record. */
  async create(
    input: { userId: string; name: string; scopes: readonly Scope[]; createdBy: string },
    tx: Queryable = this.db,
  ): Promise<{ token: string; record: ApiTokenRecord }> {
    const token = API_TOKEN_PREFIX + randomBytes(RANDOM_BYTES).toString('base64url')
    const [record] = await tx.query<ApiTokenRecord>(
      `INSERT INTO api_tokens (id, user_id, name, token_hash, token_prefix, scopes, created_by)
       VALUES ($1, $2, $3, $4, $5, $6::text[], $7) RETURNING ${COLUMNS}`,
      [randomUUID(), input.userId, input.name, hashApiToken(token), token.slice(0, SHOWN_CHARS), [...new Set(input.scopes)], input.createdBy],
    )
    return { token, record: record as ApiTokenRecord }
  }

  async list(limit: number, offset: number): Promise<{ tokens: ApiTokenRecord[]; total: number }> {
    const [tokens, count] = await Promise.all([
      this.db.query<ApiTokenRecord>(`SELECT ${COLUMNS} FROM api_tokens ORDER BY created_at, id LIMIT $1 OFFSET $2`, [
        limit,
        offset,
      ]),
      this.db.query<{ n: number }>('SELECT count(*)::int AS n FROM api_tokens'),
    ])
    return { tokens, total: count[0]?.n ?? 0 }
  }

  /** Deletes the token; it stops working at once. */
  async revoke(id: string, tx: Queryable = this.db): Promise<ApiTokenRecord | undefined> {
    const [record] = await tx.query<ApiTokenRecord>(`DELETE FROM api_tokens WHERE id = $1 RETURNING ${COLUMNS}`, [id])
    this.lastUsedWrites.delete(id)
    return record
  }

  /**
   * The token and its owner, or undefined. One indexed lookup by hash; last_used_at is
   * written afterwards, without holding up the answer.
   */
  async authenticate(presented: string): Promise<AuthenticatedApiToken | undefined> {
    if (!SHAPE.test(presented)) return undefined
    const [row] = await this.db.query<{
      id: string
      scopes: Scope[]
      user_id: string
      username: string
      email: string
      role: Role
      org: string
      org_id: string
    }>(
      `SELECT t.id, t.scopes, u.id AS user_id, u.username, u.email, u.role, u.org, u.org_id
         FROM api_tokens t JOIN users u ON u.id = t.user_id
        WHERE t.token_hash = $1`,
      [hashApiToken(presented)],
    )
    if (row === undefined) return undefined
    this.touch(row.id)
    return {
      id: row.id,
      scopes: row.scopes,
      owner: { id: row.user_id, username: row.username, email: row.email, role: row.role, org: row.org, org_id: row.org_id },
    }
  }

  private touch(id: string): void {
    const now = Date.now()
    const last = this.lastUsedWrites.get(id)
    if (last !== undefined && now - last < LAST_USED_WRITE_INTERVAL_MS) return
    this.lastUsedWrites.set(id, now)
    this.db.query('UPDATE api_tokens SET last_used_at = now() WHERE id = $1', [id]).catch((err: unknown) => {
      this.log.warn({ err, api_token_id: id }, 'could not record API token use')
    })
  }
}
