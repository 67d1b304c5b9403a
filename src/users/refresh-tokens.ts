import type { Queryable } from '../db/index.js'

/**
 * Refresh tokens by `jti`. Each is single use; all tokens that descend from one login
 * form a family, and spending a token twice revokes its whole family (the thief and the
 * owner both have to log in again).
 */
export type SpendResult =
  /** The token was live and is now spent. */
  | { kind: 'spent'; familyId: string; userId: string }
  /** The token had been spent before: its family is now revoked. */
  | { kind: 'reused'; familyId: string; userId: string; revoked: number }
  /** Unused, but its family was revoked earlier (or it was never issued here). */
  | { kind: 'invalid' }

export class RefreshTokens {
  async issue(
    tx: Queryable,
    t: { jti: string; familyId: string; userId: string; expiresAt: Date },
  ): Promise<void> {
    await tx.query('INSERT INTO refresh_tokens (jti, family_id, user_id, expires_at) VALUES ($1, $2, $3, $4)', [
      t.jti,
      t.familyId,
      t.userId,
      t.expiresAt,
    ])
  }

  /** Run inside a transaction: the spend and the token that replaces it commit together. */
  async spend(tx: Queryable, jti: string): Promise<SpendResult> {
    // One conditional UPDATE: of two concurrent refreshes with one token, exactly one wins.
    const [live] = await tx.query<{ family_id: string; user_id: string }>(
      `UPDATE refresh_tokens SET used_at = now()
        WHERE jti = $1 AND used_at IS NULL AND revoked_at IS NULL
        RETURNING family_id, user_id`,
      [jti],
    )
    if (live !== undefined) return { kind: 'spent', familyId: live.family_id, userId: live.user_id }
    const [row] = await tx.query<{ family_id: string; user_id: string; used: boolean }>(
      'SELECT family_id, user_id, used_at IS NOT NULL AS used FROM refresh_tokens WHERE jti = $1',
      [jti],
    )
    if (row === undefined || !row.used) return { kind: 'invalid' }
    // Spent tokens are dead already: revoking the unused ones ends the family.
    const revoked = await tx.query(
      'UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND used_at IS NULL AND revoked_at IS NULL RETURNING jti',
      [row.family_id],
    )
    return { kind: 'reused', familyId: row.family_id, userId: row.user_id, revoked: revoked.length }
  }

  /** After a password change: every session of the user has to log in again. */
  async revokeUser(tx: Queryable, userId: string): Promise<void> {
    await tx.query('UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL', [userId])
  }

  /** Rows past their expiry serve no purpose: their tokens fail verification anyway. */
  async pruneExpired(tx: Queryable, userId: string): Promise<void> {
    await tx.query('DELETE FROM refresh_tokens WHERE user_id = $1 AND expires_at < now()', [userId])
  }
}
