import type { Endpoint, SessionItem } from './schemas.js'

/**
 * The live sessions of this instance, gathered from every endpoint that has them, for
 * `GET/DELETE /api/v1/admin/sessions`. Free of any HTTP framework: each endpoint's
 * sessions come through a SessionSource (session-sources.ts).
 */

/** One live session: its listing, and how an administrator ends it. */
export interface LiveSession {
  readonly id: string
  /** Built when listed: the counters are read at that moment. */
  view(): SessionItem
  disconnect(): void
}

export interface SessionSource {
  readonly endpoint: Endpoint
  sessions(): Iterable<LiveSession>
}

export interface SessionFilter {
  endpoint?: Endpoint | undefined
  user?: string | undefined
}

/** Whether a session acts as `user` (a name or an id); devices and unauthenticated sessions never do. */
export function actsAs(item: SessionItem, user: string): boolean {
  switch (item.endpoint) {
    case 'time-series':
      return item.user === user || item.user_id === user
    case 'ws':
      return item.user_id === user || item.name === user
    case 'mqtt':
      return false
  }
}

/** Newest first, as every list of the API; sessions connected in the same millisecond by id. */
const newestFirst = (a: SessionItem, b: SessionItem): number =>
  a.connected_at === b.connected_at ? (a.id < b.id ? -1 : 1) : a.connected_at < b.connected_at ? 1 : -1

/** One page of the sessions that pass the filter, and how many pass it. */
export function listSessions(
  sources: readonly SessionSource[],
  filter: SessionFilter,
  page: { limit: number; offset: number },
): { items: SessionItem[]; total: number } {
  const items: SessionItem[] = []
  for (const source of sources) {
    if (filter.endpoint !== undefined && source.endpoint !== filter.endpoint) continue
    for (const session of source.sessions()) {
      const item = session.view()
      if (filter.user === undefined || actsAs(item, filter.user)) items.push(item)
    }
  }
  // RFC 3339 UTC strings of one length sort as the instants they name.
  items.sort(newestFirst)
  return { items: items.slice(page.offset, page.offset + page.limit), total: items.length }
}

/** The live session with this id, whichever endpoint holds it. */
export function findSession(sources: readonly SessionSource[], id: string): LiveSession | undefined {
  for (const source of sources) {
    for (const session of source.sessions()) if (session.id === id) return session
  }
  return undefined
}
