import { z } from 'zod'
import { timestamp, toTimestamp } from '../api-schemas.js'
import type { DeviceRow } from './repo.js'

/**
 * Request and response shapes of /devices (docs/API.md section 8). Responses are
 * allow-lists: the password hash has no field to travel in, and the password itself only
 * in the answers to create and rotate.
 */

const MAX_TYPE_CHARS = 64
// Printable: no control, format, surrogate, private-use or unassigned code points, and no
// line or paragraph separators. The type travels in a NATS header (Device-Type) and a
// line-protocol tag, where such characters would break or hide things. `u` counts code points.
const PRINTABLE_TYPE = new RegExp(`^[^\\p{C}\\p{Zl}\\p{Zp}]{1,${MAX_TYPE_CHARS}}$`, 'u')

export const deviceType = z
  .string({ error: 'required, a string' })
  .min(1, 'must not be empty')
  .regex(PRINTABLE_TYPE, `must be 1 to ${MAX_TYPE_CHARS} printable characters (no control characters)`)

export const createDeviceBody = z.object({ type: deviceType }).meta({ examples: [{ type: 'test-device' }] })

/** Any string: an id that is no device's (not even a UUID) is answered 404, as an unknown one. */
export const deviceParams = z.object({ id: z.string().describe('The device id (also its mqtt_user)') })

export const deviceView = z.object({
  id: z.string(),
  type: z.string(),
  mqtt_user: z.string().describe('The MQTT user name: equals id'),
  created_at: timestamp,
  connected: z.boolean().describe('An MQTT session of the device is open on some gateway instance'),
})

export const deviceCreated = z.object({
  id: z.string(),
  type: z.string(),
  mqtt_user: z.string(),
  mqtt_password: z.string().describe('Shown in this answer only; stored as a hash'),
  created_at: timestamp,
})

export const deviceCredentials = z.object({
  id: z.string(),
  mqtt_user: z.string(),
  mqtt_password: z.string().describe('The new password, shown in this answer only; the old one stops working'),
})

export const toDeviceView = (d: DeviceRow): z.infer<typeof deviceView> => ({
  id: d.id,
  type: d.type,
  mqtt_user: d.id,
  created_at: toTimestamp(d.created_at),
  connected: d.connected,
})
