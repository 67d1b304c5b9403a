import { isIPv6 } from 'node:net'
import { z } from 'zod'
import { timestamp, toTimestamp } from '../api-schemas.js'
import type { CollectorRow } from './repo.js'

/**
 * Request and response shapes of /api/v1/collectors (docs/API.md section 7). Responses are
 * allow-lists: the certificate leaves the gateway only in the answer to registration, the
 * private key only there and is never stored.
 */

const MAX_TEXT_CHARS = 255
// Printable: no control, format, surrogate, private-use or unassigned code points, and no
// line or paragraph separators (names show in logs, the admin page and line-protocol tags).
const PRINTABLE = new RegExp(`^[^\\p{C}\\p{Zl}\\p{Zp}]{1,${MAX_TEXT_CHARS}}$`, 'u')
// A DNS name (RFC 1123 labels of letters, digits and hyphens, not starting or ending with a
// hyphen; underscores too, as container and Windows host names have them), which covers
// IPv4 addresses; IPv6 addresses are checked apart. A full name is at most 253 characters.
const MAX_HOSTNAME_CHARS = 253
const HOSTNAME_LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?'
const HOSTNAME = new RegExp(`^${HOSTNAME_LABEL}(?:\\.${HOSTNAME_LABEL})*$`)

const printable = (what: string) =>
  z
    .string({ error: 'required, a string' })
    .min(1, 'must not be empty')
    .regex(PRINTABLE, `${what} must be 1 to ${MAX_TEXT_CHARS} printable characters (no control characters)`)

export const isPlausibleHostname = (s: string): boolean => (s.length <= MAX_HOSTNAME_CHARS && HOSTNAME.test(s)) || isIPv6(s)

export const registerBody = z.object({
  name: printable('name'),
  hostname: printable('hostname').refine(isPlausibleHostname, {
    error: `must be a host name (letters, digits, "-", "_" in dot-separated labels of at most 63, ${MAX_HOSTNAME_CHARS} in all) or an IP address`,
  }),
}).meta({ examples: [{ name: 'production database', hostname: 'db-1.example.com' }] })

/** Any string: an id that is no collector's (not even a UUID) is answered as an unknown one. */
export const collectorParams = z.object({ id: z.string().describe('The collector id') })

export const registered = z.object({
  collector_id: z.string(),
  token: z.string().describe('A collector token'),
  certificate: z.string().describe('The self-signed X.509 certificate (PEM); its SHA-256 thumbprint is stored'),
  private_key: z.string().describe('The private key (PKCS#8 PEM): in this answer only, never stored'),
  expires_at: timestamp.describe("The token's expiry"),
})

export const renewed = z.object({ token: z.string(), expires_at: timestamp.describe("The token's expiry") })

export const collectorView = z.object({
  collector_id: z.string(),
  name: z.string(),
  hostname: z.string(),
  status: z.literal('active'),
  created_at: timestamp,
  last_push_at: timestamp.nullable().describe('Written coalesced, at most COLLECTOR_STATS_FLUSH_MS late'),
  metrics_count: z.number().int(),
})

export const toCollectorView = (c: CollectorRow): z.infer<typeof collectorView> => ({
  collector_id: c.id,
  name: c.name,
  hostname: c.hostname,
  status: 'active',
  created_at: toTimestamp(c.created_at),
  last_push_at: c.last_push_at === null ? null : toTimestamp(c.last_push_at),
  metrics_count: Number(c.metrics_count),
})
