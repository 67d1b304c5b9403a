import { z } from 'zod'
import { pageOf, pageQuery, timestamp } from '../api-schemas.js'

/**
 * The admin sessions API's shapes (docs/API.md section 10). Items are allow-lists: a
 * session object holds more (tokens' claims, sockets), and only these fields leave.
 */

export const ENDPOINTS = ['time-series', 'ws', 'mqtt'] as const
export type Endpoint = (typeof ENDPOINTS)[number]

// Long enough for any id a source makes (UUIDs); a longer one names no session.
const SESSION_ID_MAX_LENGTH = 128
// Names and ids of users and devices are shorter than this everywhere in the gateway.
const USER_FILTER_MAX_LENGTH = 256

const common = {
  id: z.string(),
  connected_at: timestamp,
  remote: z.string().describe('The client address (X-Forwarded-For with TRUST_PROXY)'),
}

export const timeSeriesItem = z.object({
  ...common,
  endpoint: z.literal('time-series'),
  authenticated: z.boolean().describe('false until the first `$AUTH` succeeded'),
  user: z.string().nullable().describe('The `user` tag its lines get; null before `$AUTH`'),
  user_id: z.string().nullable().describe('The gateway user, for access and API tokens; null for stream tokens'),
  org: z.string().nullable(),
  frames: z.number().int().describe('Frames received, `$AUTH` included'),
  lines: z.number().int().describe('Lines of frames answered `OK`'),
  last_error: z.string().nullable().describe('The last `ERR ...` or `AUTH_FAILED: ...` reply it got'),
})

export const wsItem = z.object({
  ...common,
  endpoint: z.literal('ws'),
  user_id: z.string(),
  name: z.string(),
  org: z.string(),
  channel: z.string(),
  events_sent: z.number().int(),
  frames_received: z.number().int(),
  last_error: z.string().nullable().describe('The last `error` frame it got'),
})

export const mqttItem = z.object({
  ...common,
  endpoint: z.literal('mqtt'),
  device_id: z.string().nullable().describe('null until CONNECT was authenticated'),
  transport: z.enum(['tcp', 'ws']),
  device_type: z.string().nullable().describe('null until CONNECT was authenticated'),
  org: z.null().describe('Devices belong to no organization'),
  messages: z.number().int().describe('PUBLISH packets received'),
  last_error: z.string().nullable().describe('Why its last PUBLISH or CONNECT was refused'),
})

export const sessionItem = z.discriminatedUnion('endpoint', [timeSeriesItem, wsItem, mqttItem])
export type SessionItem = z.infer<typeof sessionItem>

export const sessionsQuery = pageQuery.extend({
  endpoint: z.enum(ENDPOINTS).optional(),
  user: z.string().min(1).max(USER_FILTER_MAX_LENGTH).optional().describe('A user name or id (time-series: `user` or `user_id`; ws: `user_id` or `name`)'),
})
export type SessionsQuery = z.infer<typeof sessionsQuery>

export const sessionsPage = pageOf(sessionItem)

export const sessionParams = z.object({ id: z.string().min(1).max(SESSION_ID_MAX_LENGTH) })
