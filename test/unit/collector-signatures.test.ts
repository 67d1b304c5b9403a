import { createHash, generateKeyPairSync, sign } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import { createCollectorCertificate, type CollectorCertificate } from '../../src/collectors/certificates.js'
import { certificatePublicKey, checkProof, hasProof, signedMessage, type ProofInput } from '../../src/collectors/signatures.js'

const ID = '7a0e9c1d-2b3f-4c5d-8e6f-708192a3b4c5'
const MAX_SKEW_S = 300
const NOW_S = 1_800_000_000

const signB64 = (text: string, keyPem: string) => sign('sha256', Buffer.from(text, 'utf8'), keyPem).toString('base64')

describe('renewal proofs', () => {
  let cert: CollectorCertificate
  let otherKeyPem: string

  const input = (over: Partial<ProofInput> = {}): ProofInput => ({
    collectorId: ID,
    timestamp: String(NOW_S),
    signature: signB64(`${ID}.${NOW_S}`, cert.privateKeyPem),
    key: cert.certificatePem,
    nowS: NOW_S,
    maxSkewS: MAX_SKEW_S,
    ...over,
  })

  beforeAll(async () => {
    cert = await createCollectorCertificate(ID, 1)
    otherKeyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  })

  it('accepts "<id>.<timestamp>" signed RSA-SHA256 with the key of the certificate', () => {
    const sig = signB64(`${ID}.${NOW_S}`, cert.privateKeyPem)
    const result = checkProof(input({ signature: sig }))
    expect(result).toEqual({
      ok: true,
      signatureHash: createHash('sha256').update(Buffer.from(sig, 'base64')).digest('hex'),
      acceptableUntilS: NOW_S + MAX_SKEW_S,
    })
    // The same, given the key already parsed.
    expect(checkProof(input({ signature: sig, key: certificatePublicKey(cert.certificatePem) })).ok).toBe(true)
    expect(signedMessage(ID, NOW_S).toString()).toBe(`${ID}.${NOW_S}`)
  })

  it('accepts timestamps up to the skew on either side, and refuses one second more', () => {
    for (const ts of [NOW_S - MAX_SKEW_S, NOW_S + MAX_SKEW_S]) {
      const r = checkProof(input({ timestamp: String(ts), signature: signB64(`${ID}.${ts}`, cert.privateKeyPem) }))
      expect(r.ok, String(ts)).toBe(true)
    }
    for (const ts of [NOW_S - MAX_SKEW_S - 1, NOW_S + MAX_SKEW_S + 1]) {
      const r = checkProof(input({ timestamp: String(ts), signature: signB64(`${ID}.${ts}`, cert.privateKeyPem) }))
      expect(r).toEqual({ ok: false, reason: `X-Collector-Timestamp is more than ${MAX_SKEW_S} s from the gateway's clock` })
    }
  })

  it('refuses a signature by another key', () => {
    expect(checkProof(input({ signature: signB64(`${ID}.${NOW_S}`, otherKeyPem) }))).toEqual({ ok: false, reason: 'invalid signature' })
  })

  it('refuses a signature over another message (other id, other timestamp, other separator)', () => {
    for (const text of [`00000000-0000-4000-8000-000000000000.${NOW_S}`, `${ID}.${NOW_S - 1}`, `${ID}:${NOW_S}`, `${ID}.${NOW_S}\n`]) {
      expect(checkProof(input({ signature: signB64(text, cert.privateKeyPem) })).ok, JSON.stringify(text)).toBe(false)
    }
  })

  it('refuses malformed timestamps', () => {
    for (const ts of ['', ' 1800000000', '1800000000.5', '-1', '+1800000000', '1e9', '0x6b49d200', '1234567890123']) {
      const r = checkProof(input({ timestamp: ts }))
      expect(r, JSON.stringify(ts)).toEqual({ ok: false, reason: 'X-Collector-Timestamp must be unix seconds' })
    }
  })

  it('refuses malformed or oversized signatures without throwing', () => {
    for (const sig of ['', 'not base64!', 'AAAA', 'A'.repeat(5000), '====', Buffer.alloc(256).toString('base64')]) {
      const r = checkProof(input({ signature: sig }))
      expect(r.ok, sig.slice(0, 20)).toBe(false)
    }
  })

  it('refuses every proof when the stored certificate does not parse', () => {
    expect(checkProof(input({ key: 'not a certificate' }))).toEqual({ ok: false, reason: 'invalid signature' })
  })

  it('needs both headers', () => {
    const both = 'both X-Collector-Timestamp and X-Collector-Signature are required'
    expect(checkProof(input({ timestamp: undefined }))).toEqual({ ok: false, reason: both })
    expect(checkProof(input({ signature: undefined }))).toEqual({ ok: false, reason: both })
    expect(hasProof(undefined, undefined)).toBe(false)
    expect(hasProof('1', undefined)).toBe(true)
    expect(hasProof(undefined, 'x')).toBe(true)
  })

  it('hashes the signature bytes, not their spelling: the same proof without padding is the same use', () => {
    const sig = signB64(`${ID}.${NOW_S}`, cert.privateKeyPem)
    const a = checkProof(input({ signature: sig }))
    const b = checkProof(input({ signature: sig.replace(/=+$/, '') }))
    expect(a.ok && b.ok).toBe(true)
    if (a.ok && b.ok) expect(b.signatureHash).toBe(a.signatureHash)
  })
})
