import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { Db } from '../db/index.js'
import { isDeviceId } from './credentials.js'

/**
 * Records this instance's live MQTT sessions in Postgres, so GET /devices on any instance
 * tells whether a device is connected anywhere. Each instance renews its row in
 * gateway_instances every `heartbeatMs`; readers count a session only while its
 * instance's heartbeat is recent, so the sessions of a crashed instance stop counting
 * by themselves, and rows of instances silent for `forgetAfterMs` are deleted.
 *
 * The broker must never wait for the database: `opened`/`closed` only note the change.
 * One writer per instance applies the changes in order; changes noted while a write is
 * running are coalesced (for each session only its latest state matters), so a
 * reconnect storm costs a few batched statements, not one round trip per session. A
 * failed write is logged and repaired by rewriting this instance's sessions from memory
 * at the next heartbeat.
 */
export interface SessionTimings {
  heartbeatMs: number
  /** Readers ignore sessions of an instance whose heartbeat is older than this. */
  staleAfterMs: number
  /** Instances (and their sessions) silent this long are deleted. */
  forgetAfterMs: number
}

export const DEFAULT_SESSION_TIMINGS: SessionTimings = {
  heartbeatMs: 5_000,
  staleAfterMs: 20_000,
  forgetAfterMs: 10 * 60_000,
}

export interface SessionTrackerDeps {
  db: Pick<Db, 'query' | 'transaction'>
  log: Pick<Logger, 'warn'>
  timings?: SessionTimings
  instanceId?: string
}

export class SessionTracker {
  readonly instanceId: string
  private readonly timings: SessionTimings
  /** This instance's open sessions: session id → device id (the truth a resync writes). */
  private readonly live = new Map<string, string>()
  /** Changes not written yet: session id → device id (open) or null (closed). */
  private pending = new Map<string, string | null>()
  private resyncNeeded = false
  private writer: Promise<void> = Promise.resolve()
  private writeQueued = false
  private heartbeating = false
  private timer: NodeJS.Timeout | undefined
  private stopped = false

  constructor(private readonly deps: SessionTrackerDeps) {
    this.instanceId = deps.instanceId ?? randomUUID()
    this.timings = deps.timings ?? DEFAULT_SESSION_TIMINGS
  }

  /** Registers the instance (a failure fails the start: the database is needed anyway), then beats. */
  async start(): Promise<void> {
    await this.beat()
    this.timer = setInterval(() => this.tick(), this.timings.heartbeatMs)
    this.timer.unref()
  }

  opened(deviceId: string, sessionId: string): void {
    if (this.stopped) return
    if (!isDeviceId(deviceId)) {
      this.deps.log.warn({ device_id: deviceId, session_id: sessionId }, 'session of a device id that is no UUID not recorded')
      return
    }
    this.live.set(sessionId, deviceId)
    this.note(sessionId, deviceId)
  }

  closed(_deviceId: string, sessionId: string): void {
    if (this.stopped || !this.live.delete(sessionId)) return
    this.note(sessionId, null)
  }

  /** Resolves once every change noted so far has been written (or its failure logged). */
  async flushed(): Promise<void> {
    while (this.writeQueued || this.pending.size > 0) await this.writer
    await this.writer
  }

  /** Stops the heartbeat, writes what is pending, then removes this instance and its sessions. */
  async close(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearInterval(this.timer)
    await this.flushed()
    this.live.clear()
    await this.serial(async () => {
      await this.deps.db.query('DELETE FROM gateway_instances WHERE id = $1', [this.instanceId])
    }).catch((err: unknown) => this.deps.log.warn({ err }, 'could not remove this instance from gateway_instances'))
  }

  private note(sessionId: string, deviceId: string | null): void {
    this.pending.set(sessionId, deviceId)
    if (this.writeQueued) return
    this.writeQueued = true
    void this.serial(async () => {
      this.writeQueued = false
      await this.writePending()
    })
  }

  /** Runs `job` after every job queued before it; a failed job does not stop the next one. */
  private serial(job: () => Promise<void>): Promise<void> {
    const run = this.writer.then(job)
    this.writer = run.catch(() => {})
    return run
  }

  private async writePending(): Promise<void> {
    const changes = this.pending
    this.pending = new Map()
    if (changes.size === 0) return
    const gone: string[] = []
    const open: { sessions: string[]; devices: string[] } = { sessions: [], devices: [] }
    for (const [sessionId, deviceId] of changes) {
      if (deviceId === null) gone.push(sessionId)
      else {
        open.sessions.push(sessionId)
        open.devices.push(deviceId)
      }
    }
    try {
      await this.deps.db.transaction(async (tx) => {
        if (gone.length > 0) {
          await tx.query('DELETE FROM device_sessions WHERE instance_id = $1 AND session_id = ANY($2::text[])', [
            this.instanceId,
            gone,
          ])
        }
        if (open.sessions.length > 0) await insertSessions(tx, this.instanceId, open.sessions, open.devices)
      })
    } catch (err) {
      this.resyncNeeded = true
      this.deps.log.warn({ err, sessions: changes.size }, 'could not record MQTT sessions; rewriting them at the next heartbeat')
    }
  }

  private tick(): void {
    if (this.heartbeating || this.stopped) return
    this.heartbeating = true
    this.serial(() => this.beat())
      .catch((err: unknown) => this.deps.log.warn({ err }, 'gateway instance heartbeat failed'))
      .finally(() => {
        this.heartbeating = false
      })
  }

  private async beat(): Promise<void> {
    const [row] = await this.deps.db.query<{ inserted: boolean }>(
      `INSERT INTO gateway_instances AS i (id) VALUES ($1)
       ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
       RETURNING (xmax = 0) AS inserted`,
      [this.instanceId],
    )
    // Recreated: another instance forgot this one (silent too long) and deleted its sessions.
    if (row?.inserted === true && this.live.size > 0) this.resyncNeeded = true
    if (this.resyncNeeded) await this.resync()
    await this.deps.db.query('DELETE FROM gateway_instances WHERE heartbeat_at < now() - make_interval(secs => $1)', [
      this.timings.forgetAfterMs / 1000,
    ])
  }

  /** Rewrites this instance's sessions from memory (after a failed write). */
  private async resync(): Promise<void> {
    // Everything pending is already reflected in `live`.
    this.pending.clear()
    const sessions = [...this.live.keys()]
    const devices = [...this.live.values()]
    await this.deps.db.transaction(async (tx) => {
      await tx.query('DELETE FROM device_sessions WHERE instance_id = $1', [this.instanceId])
      if (sessions.length > 0) await insertSessions(tx, this.instanceId, sessions, devices)
    })
    this.resyncNeeded = false
  }
}

async function insertSessions(
  tx: Pick<Db, 'query'>,
  instanceId: string,
  sessions: readonly string[],
  devices: readonly string[],
): Promise<void> {
  await tx.query(
    `INSERT INTO device_sessions (instance_id, session_id, device_id)
     SELECT $1, s, d FROM unnest($2::text[], $3::uuid[]) AS u (s, d)
     ON CONFLICT (instance_id, session_id) DO UPDATE SET device_id = EXCLUDED.device_id, opened_at = now()`,
    [instanceId, sessions, devices],
  )
}
