import type { Logger } from 'pino'
import type { Queryable } from '../db/index.js'

/** Who a session acts for, as far as the watcher checks it (a `/time-series` StreamIdentity fits). */
export interface RevocableIdentity {
  /** For the log line. */
  user?: string
  /** The gateway user behind the session; ended when that user is deleted. */
  userId?: string
  /** The API token in use; ended when it is revoked. */
  apiTokenId?: string
}

/** What the watcher needs of a live session (`/time-series` or `/ws`). */
export interface RevocableSession {
  readonly currentIdentity: RevocableIdentity | undefined
  revoke(): void
}

export interface RevocationWatcherDeps {
  db: Queryable
  /** The live sessions at the time of a check. */
  sessions: () => Iterable<RevocableSession>
  log: Pick<Logger, 'info' | 'warn'>
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * Ends the sessions whose API token was revoked or whose user was deleted. An API token
 * never expires and an access token lives 15 min, so without this a session outlives
 * the revocation of what opened it. One query per check for all sessions; it reads the
 * database, so a revocation made through any instance sharing it is seen by all.
 */
export class RevocationWatcher {
  private running: Promise<void> | undefined
  private queued: Promise<void> | undefined

  constructor(private readonly deps: RevocationWatcherDeps) {}

  /**
   * Checks now. A check asked for while one runs runs once more after it (the revocation
   * may have committed after that one's query), however many ask.
   */
  check(): Promise<void> {
    if (this.queued !== undefined) return this.queued
    if (this.running === undefined) {
      this.running = this.run().finally(() => {
        this.running = undefined
      })
      return this.running
    }
    this.queued = this.running.then(() => {
      this.queued = undefined
      return this.check()
    })
    return this.queued
  }

  private async run(): Promise<void> {
    const tokenIds = new Set<string>()
    const userIds = new Set<string>()
    const live: RevocableSession[] = []
    for (const session of this.deps.sessions()) {
      const id = session.currentIdentity
      if (id === undefined || (id.apiTokenId === undefined && id.userId === undefined)) continue
      live.push(session)
      if (id.apiTokenId !== undefined && UUID.test(id.apiTokenId)) tokenIds.add(id.apiTokenId)
      if (id.userId !== undefined && UUID.test(id.userId)) userIds.add(id.userId)
    }
    if (live.length === 0) return
    let gone: Array<{ kind: 'token' | 'user'; id: string }>
    try {
      gone = await this.deps.db.query(
        `SELECT 'token' AS kind, g.id::text AS id FROM unnest($1::uuid[]) AS g(id)
          WHERE NOT EXISTS (SELECT 1 FROM api_tokens t WHERE t.id = g.id)
         UNION ALL
         SELECT 'user' AS kind, g.id::text AS id FROM unnest($2::uuid[]) AS g(id)
          WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = g.id)`,
        [[...tokenIds], [...userIds]],
      )
    } catch (err) {
      // The next check tries again; sessions are not ended on a guess.
      this.deps.log.warn({ err }, 'could not check for revoked tokens')
      return
    }
    if (gone.length === 0) return
    const goneTokens = new Set(gone.filter((g) => g.kind === 'token').map((g) => g.id))
    const goneUsers = new Set(gone.filter((g) => g.kind === 'user').map((g) => g.id))
    for (const session of live) {
      const id = session.currentIdentity
      if (id === undefined) continue
      // Postgres prints UUIDs in lower case.
      const tokenGone = id.apiTokenId !== undefined && goneTokens.has(id.apiTokenId.toLowerCase())
      const userGone = id.userId !== undefined && goneUsers.has(id.userId.toLowerCase())
      if (!tokenGone && !userGone) continue
      this.deps.log.info(
        { user: id.user, user_id: id.userId, api_token_id: id.apiTokenId, reason: tokenGone ? 'api_token_revoked' : 'user_deleted' },
        'ending a session: its token was revoked or its user deleted',
      )
      session.revoke()
    }
  }
}
