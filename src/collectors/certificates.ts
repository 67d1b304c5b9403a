import { generateKeyPair, randomBytes, sign, X509Certificate } from 'node:crypto'
import { promisify } from 'node:util'
import forge from 'node-forge'

/**
 * A collector's identity (docs/API.md section 7): an RSA key pair and a self-signed X.509
 * certificate whose subject and issuer CN is the collector id. The gateway keeps the
 * certificate and its thumbprint; the private key goes to the collector once.
 *
 * node's crypto has no certificate builder, so node-forge lays out the TBSCertificate, but
 * node signs it: forge signs RSA in pure JavaScript (about 80 ms of a blocked event loop for
 * 2048 bits), node in OpenSSL. Key generation runs on libuv's thread pool (async).
 */

const generateKeyPairAsync = promisify(generateKeyPair)
// Exported by node-forge (lib/x509.js, what its cert.sign uses) but missing from @types/node-forge.
const { getTBSCertificate } = forge.pki as unknown as { getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1 }

/** RSA-2048, as the contract says: what every collector's tooling (openssl) handles. */
export const COLLECTOR_KEY_BITS = 2048
/** Random serial size: RFC 5280 allows up to 20 octets; 16 random bytes make collisions negligible. */
const SERIAL_BYTES = 16
const MS_PER_DAY = 86_400_000
// X.509 validity is at second precision: a fraction would be dropped in the certificate anyway.
const MS_PER_S = 1000

export interface CollectorCertificate {
  /** PEM. */
  certificatePem: string
  /** PKCS#8 PEM: handed to the collector, never stored or logged. */
  privateKeyPem: string
  /** SHA-256 of the certificate's DER: hex, lower case, no separators. */
  thumbprint: string
  notBefore: Date
  notAfter: Date
}

/** The SHA-256 thumbprint of a PEM certificate, as stored: hex, lower case, no colons. */
export function thumbprintOf(certificatePem: string): string {
  return normaliseFingerprint(new X509Certificate(certificatePem).fingerprint256)
}

/** `AB:CD:...` (node's fingerprint256) → `abcd...`. */
export const normaliseFingerprint = (fingerprint: string): string => fingerprint.replaceAll(':', '').toLowerCase()

/**
 * SERIAL_BYTES random bytes as hex. forge writes these bytes as the DER INTEGER's content
 * unchanged, so the first byte must keep the number positive (top bit clear) and the
 * encoding minimal (not zero): it is forced into 0x01-0x7f.
 */
function randomSerialHex(): string {
  const serial = randomBytes(SERIAL_BYTES)
  serial[0] = ((serial[0] as number) & 0x7f) | 0x01
  return serial.toString('hex')
}

/**
 * A fresh key pair and a self-signed certificate for `collectorId`, valid from now (to the
 * second) for `validityDays` days, signed SHA-256 with RSA.
 */
export async function createCollectorCertificate(collectorId: string, validityDays: number, now = new Date()): Promise<CollectorCertificate> {
  const { publicKey, privateKey } = await generateKeyPairAsync('rsa', {
    modulusLength: COLLECTOR_KEY_BITS,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  })

  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey)
  cert.serialNumber = randomSerialHex()
  const notBefore = new Date(Math.floor(now.getTime() / MS_PER_S) * MS_PER_S)
  const notAfter = new Date(notBefore.getTime() + validityDays * MS_PER_DAY)
  cert.validity.notBefore = notBefore
  cert.validity.notAfter = notAfter
  const name = [{ name: 'commonName', value: collectorId }]
  cert.setSubject(name)
  cert.setIssuer(name)
  // Not a CA. No keyUsage: one without keyCertSign makes OpenSSL deny that a certificate
  // issued itself, so it could not be pinned as its own trust anchor (mTLS, curl --cacert).
  cert.setExtensions([{ name: 'basicConstraints', cA: false }, { name: 'subjectKeyIdentifier' }])

  // What forge's cert.sign does, with node doing the RSA: the algorithm goes into the
  // TBSCertificate too, so it is set before the TBSCertificate is built.
  cert.signatureOid = forge.pki.oids.sha256WithRSAEncryption as string
  cert.siginfo.algorithmOid = cert.signatureOid
  const tbs = getTBSCertificate(cert)
  const tbsDer = Buffer.from(forge.asn1.toDer(tbs).getBytes(), 'binary')
  const signature = sign('sha256', tbsDer, privateKey)
  // forge holds bytes as binary strings.
  cert.signature = signature.toString('binary')
  cert.tbsCertificate = tbs

  const certificatePem = forge.pki.certificateToPem(cert)
  return { certificatePem, privateKeyPem: privateKey, thumbprint: thumbprintOf(certificatePem), notBefore, notAfter }
}
