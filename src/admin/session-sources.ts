import { toTimestamp } from '../api-schemas.js'
import { CLOSE_POLICY, type ChannelSessionView } from '../channels/types.js'
import { CLOSE_DISCONNECTED, type StreamSession } from '../ingest/stream-session.js'
import type { SessionSource } from './sessions.js'

/** The close reason every endpoint's client sees when an administrator ends its session. */
export const ADMIN_DISCONNECT_REASON = 'disconnected by an administrator'

/** `/time-series`: the session answers the frames it received, then closes with 1008. */
export function timeSeriesSource(live: () => Iterable<StreamSession>): SessionSource {
  return {
    endpoint: 'time-series',
    *sessions() {
      for (const s of live()) {
        yield {
          id: s.id,
          view: () => {
            const identity = s.currentIdentity
            return {
              id: s.id,
              endpoint: 'time-series',
              connected_at: toTimestamp(s.connectedAt),
              remote: s.remote,
              authenticated: identity !== undefined,
              user: identity?.user ?? null,
              user_id: identity?.userId ?? null,
              org: identity?.org ?? null,
              frames: s.framesReceived,
              lines: s.linesAccepted,
              last_error: s.lastError ?? null,
            }
          },
          disconnect: () => s.disconnect(CLOSE_DISCONNECTED, ADMIN_DISCONNECT_REASON),
        }
      }
    },
  }
}

/**
 * `/ws`: closed with 1008 (counted as `admin` in mc_channel_disconnects_total). Not 4403:
 * that says the credentials were revoked, and an admin disconnect leaves them valid.
 */
export function channelSource(live: () => Iterable<ChannelSessionView>): SessionSource {
  return {
    endpoint: 'ws',
    *sessions() {
      for (const s of live()) {
        yield {
          id: s.id,
          view: () => ({
            id: s.id,
            endpoint: 'ws',
            connected_at: toTimestamp(new Date(s.connectedAt)),
            remote: s.remote,
            user_id: s.principal.member.user_id,
            name: s.principal.member.name,
            org: s.principal.org,
            channel: s.channelId,
            events_sent: s.eventsSent,
            frames_received: s.framesReceived,
            last_error: s.lastError ?? null,
          }),
          disconnect: () => s.close(CLOSE_POLICY, ADMIN_DISCONNECT_REASON),
        }
      }
    },
  }
}

/** One MQTT connection, as the broker can tell it. */
export interface MqttSessionFacts {
  id: string
  /** Undefined until CONNECT was authenticated. */
  deviceId: string | undefined
  transport: 'tcp' | 'ws'
  remote: string
  /** Epoch milliseconds. */
  connectedAt: number
  /** Undefined until CONNECT was authenticated. */
  deviceType?: string | undefined
  /** PUBLISH packets received. */
  messages?: number
  /** Why its last PUBLISH or CONNECT was refused. */
  lastError?: string | undefined
}

/** What the broker offers the admin API: its open connections, and ending one its own way. */
export interface MqttSessionDirectory {
  sessions(): Iterable<MqttSessionFacts>
  /** False when no open connection has this id. */
  disconnect(id: string): boolean
}

/** MQTT: the broker ends the session (MQTT 5: DISCONNECT 0x98 administrative action). */
export function mqttSource(directory: () => MqttSessionDirectory | undefined): SessionSource {
  return {
    endpoint: 'mqtt',
    *sessions() {
      const broker = directory()
      if (broker === undefined) return
      for (const s of broker.sessions()) {
        yield {
          id: s.id,
          view: () => ({
            id: s.id,
            endpoint: 'mqtt',
            connected_at: toTimestamp(new Date(s.connectedAt)),
            remote: s.remote,
            device_id: s.deviceId ?? null,
            transport: s.transport,
            device_type: s.deviceType ?? null,
            org: null,
            messages: s.messages ?? 0,
            last_error: s.lastError ?? null,
          }),
          disconnect: () => {
            broker.disconnect(s.id)
          },
        }
      }
    },
  }
}
