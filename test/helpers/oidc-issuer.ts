import { generateKeyPairSync, randomUUID, type JsonWebKey, type KeyObject } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import jwt from 'jsonwebtoken'

export type IssuerAlg = 'RS256' | 'ES256'

interface IssuerKey {
  kid: string
  alg: IssuerAlg
  privateKey: KeyObject
  jwk: JsonWebKey
}

export const DISCOVERY_PATH = '/.well-known/openid-configuration'
export const JWKS_PATH = '/jwks'
const RSA_BITS = 2048

export interface SignOptions {
  /** Default: the newest published key. */
  kid?: string
  /** Seconds from now; default 60. Negative: already expired. */
  expiresInS?: number
}

/**
 * A local OpenID Connect issuer on 127.0.0.1 (any free port) for tests: its discovery
 * document names its JWKS; keys (RS256, ES256) can be added, rotated, withdrawn or made
 * and never published; it signs tokens with any claims and kid, counts the requests per
 * path, and can play "down" (every connection dropped without an answer).
 */
export class LocalOidcIssuer {
  /** http://127.0.0.1:<port>, the `iss` of its tokens; set by start(). */
  issuer = ''
  /** Requests per path (the query left out), answered or not. */
  readonly requests = new Map<string, number>()
  /** While true, every request is dropped unanswered (a crashed or unreachable issuer). */
  down = false
  private readonly keys = new Map<string, IssuerKey>()
  private readonly published = new Set<string>()
  private server: Server | undefined

  get jwksUrl(): string {
    return this.issuer + JWKS_PATH
  }

  count(path: string): number {
    return this.requests.get(path) ?? 0
  }

  async start(): Promise<this> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0] as string
      this.requests.set(path, this.count(path) + 1)
      if (this.down) {
        req.socket.destroy()
        return
      }
      const body =
        path === DISCOVERY_PATH
          ? { issuer: this.issuer, jwks_uri: this.jwksUrl, id_token_signing_alg_values_supported: ['RS256', 'ES256'] }
          : path === JWKS_PATH
            ? { keys: [...this.published].map((kid) => (this.keys.get(kid) as IssuerKey).jwk) }
            : undefined
      // A connection per request: a kept-alive socket the server closes while the client
      // reuses it would fail a fetch for a reason no test is about.
      res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'application/json', connection: 'close' })
      res.end(JSON.stringify(body ?? { error: 'not_found' }))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    this.server = server
    this.issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    return this
  }

  async stop(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (server === undefined) return
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /** Makes a key; published in the JWKS unless `publish` is false (a key the issuer never showed). */
  addKey(alg: IssuerAlg, opts: { kid?: string; publish?: boolean } = {}): string {
    const kid = opts.kid ?? `${alg.toLowerCase()}-${randomUUID()}`
    const { privateKey, publicKey } =
      alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: RSA_BITS }) : generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const jwk = { ...(publicKey.export({ format: 'jwk' }) as JsonWebKey), kid, alg, use: 'sig' }
    this.keys.set(kid, { kid, alg, privateKey, jwk })
    if (opts.publish !== false) this.published.add(kid)
    return kid
  }

  /** A new key of `alg` replaces every published key in the JWKS; returns its kid. */
  rotate(alg: IssuerAlg): string {
    this.published.clear()
    return this.addKey(alg)
  }

  /** Withdraws a key from the JWKS (tokens signed with it can still be made). */
  removeKey(kid: string): void {
    this.published.delete(kid)
  }

  /** A token signed by one of the issuer's keys: `iss` and `exp` filled in unless given in `claims` (undefined: left out). */
  sign(claims: Record<string, unknown>, opts: SignOptions = {}): string {
    const kid = opts.kid ?? [...this.published].at(-1)
    const key = kid === undefined ? undefined : this.keys.get(kid)
    if (key === undefined) throw new Error(`no key ${kid ?? '(none published)'}`)
    const exp = Math.floor(Date.now() / 1000) + (opts.expiresInS ?? 60)
    // A claim given as undefined is left out (a token without exp or iss).
    const payload = Object.fromEntries(Object.entries({ iss: this.issuer, exp, ...claims }).filter(([, v]) => v !== undefined))
    return jwt.sign(payload, key.privateKey, { algorithm: key.alg, keyid: key.kid })
  }
}

export async function startOidcIssuer(): Promise<LocalOidcIssuer> {
  return new LocalOidcIssuer().start()
}
