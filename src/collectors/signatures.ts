import { createHash, verify, X509Certificate, type KeyObject } from 'node:crypto'

/**
 * Proof of possession of a collector's key (docs/API.md section 7): once its token has
 * expired, a collector renews it with `X-Collector-Timestamp: <unix s>` and
 * `X-Collector-Signature: <base64 RSA-SHA256 of "<collector_id>.<timestamp>">`, what
 * `openssl dgst -sha256 -sign key.pem` makes. This module only checks a proof; remembering
 * the signatures already used (each is accepted once) is the repo's.
 *
 * Why the signature's digest identifies a use: RSA PKCS#1 v1.5 signatures are deterministic
 * and OpenSSL accepts exactly one byte string per message (the modulus' length, below the
 * modulus, the DigestInfo re-encoded and compared), so a proof cannot be replayed in another
 * spelling. The base64 text can be spelled several ways; the decoded bytes are what is hashed.
 */

/** Unix seconds as sent: digits only, no sign, no fraction (12 digits reach past year 30000). */
const UNIX_SECONDS = /^\d{1,12}$/
/** Canonical-alphabet base64, padding optional. */
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/
/** A 2048-bit signature is 344 base64 characters; room for larger keys, a bound for hostile headers. */
const MAX_SIGNATURE_CHARS = 2048

export type ProofResult =
  | { ok: true; /** hex SHA-256 of the signature bytes */ signatureHash: string; /** when the proof can no longer be accepted, unix s */ acceptableUntilS: number }
  | { ok: false; reason: string }

export interface ProofInput {
  collectorId: string
  /** The headers as received (undefined when absent). */
  timestamp: string | undefined
  signature: string | undefined
  /** The collector's stored certificate (PEM), or its public key already parsed. */
  key: string | KeyObject
  nowS: number
  maxSkewS: number
}

/** The bytes a collector signs. */
export const signedMessage = (collectorId: string, timestampS: number): Buffer => Buffer.from(`${collectorId}.${timestampS}`, 'utf8')

/** The public key of a PEM certificate. */
export const certificatePublicKey = (certificatePem: string): KeyObject => new X509Certificate(certificatePem).publicKey

/** Whether a request carries a proof at all (either header): it then decides, not the bearer token. */
export const hasProof = (timestamp: string | string[] | undefined, signature: string | string[] | undefined): boolean =>
  timestamp !== undefined || signature !== undefined

/**
 * Checks a renewal proof: the timestamp within ±maxSkewS of now, the signature RSA-SHA256
 * over "<collector_id>.<timestamp>" by the key of the certificate. Never throws for bad
 * input: every refusal is a reason the caller can answer with.
 */
export function checkProof(input: ProofInput): ProofResult {
  const { timestamp, signature } = input
  if (timestamp === undefined || signature === undefined) {
    return { ok: false, reason: 'both X-Collector-Timestamp and X-Collector-Signature are required' }
  }
  if (!UNIX_SECONDS.test(timestamp)) return { ok: false, reason: 'X-Collector-Timestamp must be unix seconds' }
  const ts = Number(timestamp)
  if (Math.abs(input.nowS - ts) > input.maxSkewS) {
    return { ok: false, reason: `X-Collector-Timestamp is more than ${input.maxSkewS} s from the gateway's clock` }
  }
  const text = signature.trim()
  if (text.length === 0 || text.length > MAX_SIGNATURE_CHARS || !BASE64.test(text)) {
    return { ok: false, reason: 'X-Collector-Signature must be base64' }
  }
  const bytes = Buffer.from(text, 'base64')
  let valid: boolean
  try {
    const key = typeof input.key === 'string' ? certificatePublicKey(input.key) : input.key
    valid = verify('sha256', signedMessage(input.collectorId, ts), key, bytes)
  } catch {
    // An unparsable stored certificate, or a key of another type: no proof can pass.
    valid = false
  }
  if (!valid) return { ok: false, reason: 'invalid signature' }
  return { ok: true, signatureHash: createHash('sha256').update(bytes).digest('hex'), acceptableUntilS: ts + input.maxSkewS }
}
