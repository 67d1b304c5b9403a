import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import forge from 'node-forge'
import { beforeAll, describe, expect, it } from 'vitest'
import { COLLECTOR_KEY_BITS, createCollectorCertificate, normaliseFingerprint, thumbprintOf, type CollectorCertificate } from '../../src/collectors/certificates.js'

const ID = '3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b'
const VALIDITY_DAYS = 365
const MS_PER_DAY = 86_400_000
// A fixed instant with a millisecond part, to see it dropped (X.509 times are to the second).
const NOW = new Date('2026-03-04T05:06:07.890Z')

describe('collector certificates', () => {
  let made: CollectorCertificate
  let x509: X509Certificate

  beforeAll(async () => {
    made = await createCollectorCertificate(ID, VALIDITY_DAYS, NOW)
    x509 = new X509Certificate(made.certificatePem)
  })

  it('is a self-signed certificate whose signature node verifies with its own public key', () => {
    expect(x509.verify(x509.publicKey)).toBe(true)
    expect(x509.checkIssued(x509)).toBe(true)
    // And not with another key: the check above can fail.
    const other = generateKeyPairSync('rsa', { modulusLength: COLLECTOR_KEY_BITS })
    expect(x509.verify(other.publicKey)).toBe(false)
  })

  it('has CN = the collector id as subject and issuer', () => {
    expect(x509.subject).toBe(`CN=${ID}`)
    expect(x509.issuer).toBe(`CN=${ID}`)
  })

  it('is signed SHA-256 with RSA, over a 2048-bit RSA key', () => {
    const parsed = forge.pki.certificateFromPem(made.certificatePem)
    expect(parsed.signatureOid).toBe(forge.pki.oids.sha256WithRSAEncryption)
    expect(parsed.siginfo.algorithmOid).toBe(forge.pki.oids.sha256WithRSAEncryption)
    expect(x509.publicKey.asymmetricKeyType).toBe('rsa')
    expect(x509.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048)
    // forge's own verification agrees with node's.
    expect(parsed.verify(parsed)).toBe(true)
  })

  it('matches the returned private key (PKCS#8 PEM)', () => {
    expect(made.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/)
    expect(x509.checkPrivateKey(createPrivateKey(made.privateKeyPem))).toBe(true)
    const stranger = generateKeyPairSync('rsa', { modulusLength: COLLECTOR_KEY_BITS })
    expect(x509.checkPrivateKey(stranger.privateKey)).toBe(false)
  })

  it('is valid from now (to the second) for the configured days', () => {
    const from = new Date(x509.validFrom)
    const to = new Date(x509.validTo)
    expect(from.toISOString()).toBe('2026-03-04T05:06:07.000Z')
    expect(to.getTime() - from.getTime()).toBe(VALIDITY_DAYS * MS_PER_DAY)
    expect(made.notBefore).toEqual(from)
    expect(made.notAfter).toEqual(to)
  })

  it('has a positive, minimally encoded 16-byte random serial, different each time', async () => {
    const again = await createCollectorCertificate(ID, VALIDITY_DAYS, NOW)
    const serials = [x509.serialNumber, new X509Certificate(again.certificatePem).serialNumber]
    for (const s of serials) {
      expect(s).toMatch(/^[0-9A-F]{32}$/)
      const first = Number.parseInt(s.slice(0, 2), 16)
      expect(first).toBeGreaterThan(0)
      expect(first).toBeLessThan(0x80)
    }
    expect(serials[0]).not.toBe(serials[1])
    expect(again.privateKeyPem).not.toBe(made.privateKeyPem)
  })

  it('is no CA, and carries no key usage that would stop it from being its own issuer', () => {
    expect(x509.ca).toBe(false)
    const parsed = forge.pki.certificateFromPem(made.certificatePem)
    expect(parsed.getExtension('keyUsage')).toBeNull()
    expect(parsed.getExtension('subjectKeyIdentifier')).not.toBeNull()
  })

  it("gives the thumbprint as the certificate DER's SHA-256: hex, lower case, no colons", () => {
    const der = x509.raw
    const expected = createHash('sha256').update(der).digest('hex')
    expect(made.thumbprint).toBe(expected)
    expect(thumbprintOf(made.certificatePem)).toBe(expected)
    expect(made.thumbprint).toMatch(/^[0-9a-f]{64}$/)
    expect(normaliseFingerprint('AB:CD:0F')).toBe('abcd0f')
  })

  it("puts the certificate's public key with the private key it returned", () => {
    const fromPrivate = createPublicKey(createPrivateKey(made.privateKeyPem)).export({ type: 'spki', format: 'der' })
    expect(Buffer.compare(fromPrivate, x509.publicKey.export({ type: 'spki', format: 'der' }))).toBe(0)
  })
})
