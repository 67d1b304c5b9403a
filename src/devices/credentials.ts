import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { DeviceAuthResult, DeviceRecord } from './types.js'

/**
 * MQTT passwords of devices: 32 random bytes (256 bits) in base64url, shown once and
 * stored as their SHA-256.
 *
 * Why SHA-256 and not scrypt (as user passwords): a slow hash protects guessable,
 * human-chosen secrets. These are random 256-bit secrets nobody can guess from a hash, so
 * a slow hash adds no safety, while it would make every CONNECT cost tens of
 * milliseconds of CPU: a few thousand devices reconnecting at once would stall the
 * gateway. The API tokens (src/auth/api-tokens.ts) are stored the same way.
 */
export const DEVICE_PASSWORD_BYTES = 32
const DIGEST_BYTES = 32
const STORED_HASH = /^[0-9a-f]{64}$/

/** Device ids are canonical (lower-case) UUIDs: safe as NATS subject tokens and MQTT topic levels. */
const DEVICE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export const isDeviceId = (s: string): boolean => DEVICE_ID.test(s)

export const newDevicePassword = (): string => randomBytes(DEVICE_PASSWORD_BYTES).toString('base64url')

const digest = (password: string | Buffer): Buffer => createHash('sha256').update(password).digest()

/** What is stored: the hex SHA-256 of the password's bytes (UTF-8 for a string). */
export const hashDevicePassword = (password: string | Buffer): string => digest(password).toString('hex')

/**
 * Whether `presented` is the password behind `storedHash`. Both sides are 32-byte
 * digests whatever was presented, so the comparison is constant-time
 * (timingSafeEqual) and its duration says nothing about how much of the hash matched.
 */
export function verifyDevicePassword(presented: string | Buffer, storedHash: string): boolean {
  // A malformed stored value still costs one comparison, against a digest no password has.
  const stored = STORED_HASH.test(storedHash) ? Buffer.from(storedHash, 'hex') : Buffer.alloc(DIGEST_BYTES)
  const ok = timingSafeEqual(digest(presented), stored)
  return ok && STORED_HASH.test(storedHash)
}

/** A device's row as CONNECT needs it. */
export interface DeviceCredentials extends DeviceRecord {
  passwordHash: string
  deleted: boolean
}

export interface AuthenticatorDeps {
  repo: { findCredentials(id: string): Promise<DeviceCredentials | undefined> }
}

const UNKNOWN: DeviceAuthResult = { ok: false, reason: 'unknown' }

/**
 * CONNECT: user name = mqtt_user (the device id). A name that is no device id, or a
 * missing password, is 'unknown' without asking the database. A deleted device is
 * reported as 'deleted' only to a client holding its last password: anyone else learns
 * no more than 'bad_password'.
 */
export function deviceAuthenticator({ repo }: AuthenticatorDeps) {
  return async (mqttUser: string, password: Buffer | undefined): Promise<DeviceAuthResult> => {
    if (password === undefined || !isDeviceId(mqttUser)) return UNKNOWN
    const found = await repo.findCredentials(mqttUser)
    if (found === undefined) return UNKNOWN
    if (!verifyDevicePassword(password, found.passwordHash)) return { ok: false, reason: 'bad_password' }
    if (found.deleted) return { ok: false, reason: 'deleted' }
    return { ok: true, device: { id: found.id, type: found.type, createdAt: found.createdAt, generation: found.generation } }
  }
}
