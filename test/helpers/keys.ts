import { generateKeyPairSync, type JsonWebKey } from 'node:crypto'
import type { SigningKey } from '../../src/auth/signing-keys.js'
import { TokenService, type OwnKeys } from '../../src/auth/tokens.js'

/** A signing key made in memory, as the database store would load it. */
export function memoryKey(kid: string): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const jwk = publicKey.export({ format: 'jwk' }) as JsonWebKey
  return {
    kid,
    privateKey,
    publicKey,
    publicJwk: { kty: 'EC', crv: 'P-256', x: jwk.x as string, y: jwk.y as string, kid, alg: 'ES256', use: 'sig' },
    createdAt: new Date(),
    retiredAt: null,
  }
}

/** A key ring without a database; `loadable` keys appear only after a refresh(). */
export class MemoryKeys implements OwnKeys {
  readonly keys = new Map<string, SigningKey>()
  readonly loadable: SigningKey[] = []
  refreshes = 0

  constructor(private currentKey: SigningKey = memoryKey('k1')) {
    this.keys.set(currentKey.kid, currentKey)
  }

  current(): SigningKey {
    return this.currentKey
  }

  get(kid: string): SigningKey | undefined {
    return this.keys.get(kid)
  }

  async refresh(): Promise<void> {
    this.refreshes++
    for (const k of this.loadable.splice(0)) {
      this.keys.set(k.kid, k)
      this.currentKey = k
    }
  }
}

export const TEST_ISSUER = 'matt-collector'

export function testTokenService(secret: string, keys: OwnKeys = new MemoryKeys(), streamTokenTtlS = 86_400) {
  return new TokenService({ secret, clockSkewS: 30, streamTokenTtlS, issuer: TEST_ISSUER }, keys)
}
