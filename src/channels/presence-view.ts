import type { Member, PresenceChange } from './types.js'

type Listener = (channelId: string, member: Member, change: PresenceChange) => void

interface Entry {
  member: Member
  /** Epoch ms of the last put seen for this key (the sweep's clock). */
  seenAt: number
}

/** One key of the presence bucket: a member of a channel, as one instance announced it. */
export interface PresenceEntry {
  channelId: string
  instanceId: string
  member: Member
  seenAt: number
}

/**
 * Which members other instances have, per channel, user and instance, and the join and
 * leave that changes to it make: a user joins with their first entry in a channel (on
 * any instance) and leaves after their last one went. Plain state, no NATS: KvPresence
 * feeds it from the bucket's watch.
 */
export class RemotePresenceView {
  private readonly channels = new Map<string, Map<string, Map<string, Entry>>>()

  constructor(private readonly emit: Listener) {}

  put(e: PresenceEntry): void {
    let users = this.channels.get(e.channelId)
    if (users === undefined) this.channels.set(e.channelId, (users = new Map()))
    let instances = users.get(e.member.user_id)
    if (instances === undefined) users.set(e.member.user_id, (instances = new Map()))
    const first = instances.size === 0
    instances.set(e.instanceId, { member: e.member, seenAt: e.seenAt })
    if (first) this.emit(e.channelId, e.member, 'join')
  }

  remove(channelId: string, userId: string, instanceId: string): void {
    const users = this.channels.get(channelId)
    const instances = users?.get(userId)
    const entry = instances?.get(instanceId)
    if (users === undefined || instances === undefined || entry === undefined) return
    instances.delete(instanceId)
    if (instances.size > 0) return
    users.delete(userId)
    if (users.size === 0) this.channels.delete(channelId)
    this.emit(channelId, entry.member, 'leave')
  }

  /** Drops entries not renewed since `before` (an instance that stopped renewing: crashed, or cut off). */
  sweep(before: number): void {
    const stale: Array<[string, string, string]> = []
    for (const [channelId, users] of this.channels) {
      for (const [userId, instances] of users) {
        for (const [instanceId, entry] of instances) if (entry.seenAt < before) stale.push([channelId, userId, instanceId])
      }
    }
    for (const [channelId, userId, instanceId] of stale) this.remove(channelId, userId, instanceId)
  }

  /**
   * Makes the view what a fresh read of the bucket says (after a reconnect: deletes may
   * have been missed), telling only the differences: who is gone leaves, who is new joins.
   */
  replaceWith(entries: PresenceEntry[]): void {
    const fresh = new Set(entries.map((e) => keyOf(e.channelId, e.member.user_id, e.instanceId)))
    const gone: Array<[string, string, string]> = []
    for (const [channelId, users] of this.channels) {
      for (const [userId, instances] of users) {
        for (const instanceId of instances.keys()) if (!fresh.has(keyOf(channelId, userId, instanceId))) gone.push([channelId, userId, instanceId])
      }
    }
    for (const [channelId, userId, instanceId] of gone) this.remove(channelId, userId, instanceId)
    for (const e of entries) this.put(e)
  }

  members(channelId: string): Member[] {
    const users = this.channels.get(channelId)
    if (users === undefined) return []
    const out: Member[] = []
    for (const instances of users.values()) {
      const first = instances.values().next()
      if (first.done !== true) out.push(first.value.member)
    }
    return out
  }

  has(channelId: string, userId: string): boolean {
    return this.channels.get(channelId)?.has(userId) ?? false
  }
}

// JSON of the parts: no separator a channel or user id could contain.
const keyOf = (channelId: string, userId: string, instanceId: string) => JSON.stringify([channelId, userId, instanceId])
