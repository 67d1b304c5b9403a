import type { Member, PresenceDirectory } from './types.js'

/**
 * Presence without NATS: one process, so no member is anywhere but in this hub, which
 * already knows its own. Announcing and withdrawing have no one to tell.
 */
export class LocalPresence implements PresenceDirectory {
  readonly kind = 'local' as const

  async start(): Promise<void> {}

  announce(_channelId: string, _member: Member): void {}

  withdraw(_channelId: string, _userId: string): void {}

  remoteMembers(_channelId: string): Member[] {
    return []
  }

  remoteHas(_channelId: string, _userId: string): boolean {
    return false
  }

  onRemoteChange(): void {}

  async close(): Promise<void> {}
}
