/**
 * Collectors for tests (docs/API.md section 7): register one over the HTTP API, and prove
 * possession of its key the way a collector renews its token.
 *
 *   const c = await registerCollector(api, { token: adminToken })
 *   const res = await api.post(`/api/v1/collectors/${c.collector_id}/token`, { headers: signatureHeaders(c) })
 */
import { sign } from 'node:crypto'
import { expect } from 'vitest'
import type { ApiClient } from './api.js'

/** A registration secret long enough for the config's rule (16 characters at least). */
export const TEST_REGISTRATION_SECRET = 'registration-secret-for-tests-0123'

/** Env for startTestApp: registration by secret on. */
export const COLLECTOR_TEST_ENV = { COLLECTOR_REGISTRATION_SECRET: TEST_REGISTRATION_SECRET }

/** The 201 answer of POST /api/v1/collectors/register. */
export interface RegisteredCollector {
  collector_id: string
  token: string
  /** PEM. */
  certificate: string
  /** PEM (PKCS#8); the gateway keeps no copy. */
  private_key: string
  expires_at: string
}

export interface RegisterOptions {
  /** An operator or admin access token. */
  token?: string
  /** X-Registration-Secret. */
  secret?: string
  name?: string
  hostname?: string
}

let counter = 0

/**
 * Registers a collector (by token or secret; one of them must be given) and expects 201.
 * Name and hostname default to fresh ones.
 */
export async function registerCollector(api: ApiClient, opts: RegisterOptions): Promise<RegisteredCollector> {
  counter++
  const hostname = opts.hostname ?? `db-${process.pid}-${counter}.example.com`
  const res = await api.post('/api/v1/collectors/register', {
    ...(opts.token !== undefined ? { token: opts.token } : {}),
    ...(opts.secret !== undefined ? { headers: { 'x-registration-secret': opts.secret } } : {}),
    body: { name: opts.name ?? `collector ${counter}`, hostname },
  })
  expect(res.status, res.text).toBe(201)
  return res.json as RegisteredCollector
}

/** The base64 RSA-SHA256 signature of "<collector_id>.<timestamp>", as `openssl dgst -sha256 -sign` makes it. */
export function renewalSignature(collectorId: string, timestampS: number, privateKeyPem: string): string {
  return sign('sha256', Buffer.from(`${collectorId}.${timestampS}`, 'utf8'), privateKeyPem).toString('base64')
}

/**
 * Headers of a renewal by signature: X-Collector-Timestamp (now, or `timestampS`) and
 * X-Collector-Signature, signed with `privateKeyPem` (default: the collector's own key).
 */
export function signatureHeaders(
  c: Pick<RegisteredCollector, 'collector_id' | 'private_key'>,
  opts: { timestampS?: number; privateKeyPem?: string } = {},
): Record<string, string> {
  const ts = opts.timestampS ?? Math.floor(Date.now() / 1000)
  return {
    'x-collector-timestamp': String(ts),
    'x-collector-signature': renewalSignature(c.collector_id, ts, opts.privateKeyPem ?? c.private_key),
  }
}
