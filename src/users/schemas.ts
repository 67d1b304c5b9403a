import { z } from 'zod'
import { timestamp, toTimestamp } from '../api-schemas.js'
import type { ApiTokenRecord } from '../auth/api-tokens.js'
import { ROLES, SCOPES } from '../auth/roles.js'
import type { UserRecord } from './repo.js'
import type { Session } from './sessions.js'

/**
 * Request and response shapes of the users context. Responses are allow-lists: a
 * password hash or a token hash has no field to travel in.
 */

const MAX_PASSWORD_CHARS = 1024

export const username = z
  .string({ error: 'required, a string' })
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, 'letters, digits and . _ @ - only, at most 64, starting with a letter or digit')
export const password = z
  .string({ error: 'required, a string' })
  .min(8, 'must be at least 8 characters')
  .max(MAX_PASSWORD_CHARS, `must be at most ${MAX_PASSWORD_CHARS} characters`)
const email = z
  .string({ error: 'required, a string' })
  .max(254)
  .regex(/^[^\s@]+@[^\s@]+$/, 'must be an email address')
const label = z.string().trim().min(1, 'must not be empty').max(200)
const role = z.enum(ROLES)

export const idParams = z.object({ id: z.uuid('must be a UUID') })

export const loginBody = z.object({
  username: z.string({ error: 'required, a string' }).min(1, 'must not be empty').max(256),
  password: z.string({ error: 'required, a string' }).min(1, 'must not be empty').max(MAX_PASSWORD_CHARS),
}).meta({ examples: [{ username: 'admin', password: 'correct horse battery staple' }] })

export const refreshBody = z
  .object({ refresh_token: z.string({ error: 'required, a string' }).min(1, 'must not be empty') })
  .meta({ examples: [{ refresh_token: 'eyJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLiJ9...' }] })

export const sessionView = z.object({
  token: z.string(),
  refresh_token: z.string(),
  expires_at: timestamp,
  user: z.object({ id: z.string(), username: z.string(), email: z.string(), role }),
})

export const userView = z.object({
  id: z.string(),
  username: z.string(),
  email: z.string(),
  role,
  org: z.string(),
  org_id: z.string(),
  created_at: timestamp,
  last_login_at: timestamp.nullable(),
})

export const createUserBody = z.object({
  username,
  password,
  email,
  role: role.default('viewer'),
  /** Default: the org of the admin who creates the user. */
  org: label.optional(),
  org_id: label.optional(),
}).meta({ examples: [{ username: 'jane', password: 'a long passphrase', email: 'jane@example.com', role: 'operator' as const }] })

export const updateUserBody = z
  .object({ username, password, email, role, org: label, org_id: label })
  .partial()
  .refine((b) => Object.values(b).some((v) => v !== undefined), 'name at least one field to change')
  .meta({ examples: [{ role: 'admin' as const }] })

export const apiTokenView = z.object({
  id: z.string(),
  name: z.string(),
  user_id: z.string(),
  scopes: z.array(z.enum(SCOPES)),
  /** The first characters of the token, to tell tokens apart. */
  token_prefix: z.string(),
  created_at: timestamp,
  last_used_at: timestamp.nullable(),
})

export const apiTokenCreated = apiTokenView.extend({
  /** The token itself: shown in this answer only. */
  token: z.string(),
})

export const createApiTokenBody = z.object({
  name: label,
  scopes: z.array(z.enum(SCOPES)).min(1, 'name at least one scope'),
  /** The owner; default: the admin who creates the token. */
  user_id: z.uuid('must be a UUID').optional(),
}).meta({ examples: [{ name: 'telegraf on host-1', scopes: ['ingest:write' as const] }] })

export const toUserView = (u: UserRecord): z.infer<typeof userView> => ({
  id: u.id,
  username: u.username,
  email: u.email,
  role: u.role,
  org: u.org,
  org_id: u.org_id,
  created_at: toTimestamp(u.created_at),
  last_login_at: u.last_login_at === null ? null : toTimestamp(u.last_login_at),
})

export const toSessionView = (s: Session): z.infer<typeof sessionView> => ({
  token: s.token,
  refresh_token: s.refresh_token,
  expires_at: toTimestamp(s.expires_at),
  user: { id: s.user.id, username: s.user.username, email: s.user.email, role: s.user.role },
})

export const toApiTokenView = (t: ApiTokenRecord): z.infer<typeof apiTokenView> => ({
  id: t.id,
  name: t.name,
  user_id: t.user_id,
  scopes: t.scopes,
  token_prefix: t.token_prefix,
  created_at: toTimestamp(t.created_at),
  last_used_at: t.last_used_at === null ? null : toTimestamp(t.last_used_at),
})
