import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'
import { AppError } from '../errors.js'

/**
 * Password hashing with node's scrypt (no native addon). Hashes are self-describing,
 * `scrypt$<log2 N>$<r>$<p>$<salt>$<hash>` (base64url), so the cost can be raised later
 * and old hashes still verify (and are upgraded at the next login: needsRehash).
 */

export interface PasswordHasherOptions {
  /** N = 2^scryptLog2N. */
  scryptLog2N: number
  scryptP: number
  /**
   * scrypt runs on libuv's thread pool, which file and gzip work share; a cap keeps
   * a burst of logins from starving the spool.
   */
  maxConcurrent: number
  /**
   * Derivations waiting for a slot; one more is refused with HasherBusyError at once
   * rather than queued, so a flood of logins costs bounded memory and bounded delay.
   */
  maxQueue: number
}

// What a refused caller is told to wait: a slot frees within one derivation (tens of ms).
const BUSY_RETRY_AFTER_S = 1

/** The wait queue is full: a 503 with Retry-After, nothing was checked. */
export class HasherBusyError extends AppError {
  override name = 'HasherBusyError'
  readonly retryAfterS = BUSY_RETRY_AFTER_S
  constructor() {
    super(503, 'busy', 'too many password checks in progress; retry shortly')
  }
}

// Block size 8 is scrypt's standard; the cost is tuned with N and p.
const BLOCK_SIZE_R = 8
const SALT_BYTES = 16
const KEY_BYTES = 64
const PREFIX = 'scrypt'

interface Parsed {
  log2N: number
  r: number
  p: number
  salt: Buffer
  hash: Buffer
}

export class PasswordHasher {
  private running = 0
  private readonly waiting: Array<() => void> = []
  /**
   * A well-formed hash no password matches: verifying an unknown user against it costs
   * exactly what a real verification costs, so the answer time reveals nothing.
   */
  private readonly dummy: Parsed

  constructor(private readonly opts: PasswordHasherOptions) {
    this.dummy = {
      log2N: opts.scryptLog2N,
      r: BLOCK_SIZE_R,
      p: opts.scryptP,
      salt: randomBytes(SALT_BYTES),
      hash: randomBytes(KEY_BYTES),
    }
  }

  async hash(password: string): Promise<string> {
    const salt = randomBytes(SALT_BYTES)
    const params = { log2N: this.opts.scryptLog2N, r: BLOCK_SIZE_R, p: this.opts.scryptP }
    const hash = await this.derive(password, salt, params, KEY_BYTES)
    return format({ ...params, salt, hash })
  }

  /** Constant-time comparison; `undefined` (no such user) is checked against a dummy hash. */
  async verify(stored: string | undefined, password: string): Promise<boolean> {
    const parsed = stored === undefined ? undefined : parse(stored)
    const target = parsed ?? this.dummy
    const actual = await this.derive(password, target.salt, target, target.hash.length)
    return timingSafeEqual(actual, target.hash) && parsed !== undefined
  }

  /** Whether a stored hash was made with other parameters than the current ones. */
  needsRehash(stored: string): boolean {
    const parsed = parse(stored)
    return (
      parsed === undefined ||
      parsed.log2N !== this.opts.scryptLog2N ||
      parsed.r !== BLOCK_SIZE_R ||
      parsed.p !== this.opts.scryptP
    )
  }

  private async derive(
    password: string,
    salt: Buffer,
    params: { log2N: number; r: number; p: number },
    keyBytes: number,
  ): Promise<Buffer> {
    await this.acquire()
    try {
      const N = 2 ** params.log2N
      const options: ScryptOptions = { N, r: params.r, p: params.p, maxmem: 2 * 128 * N * params.r + 1024 * 1024 }
      return await new Promise<Buffer>((resolve, reject) => {
        scrypt(password.normalize('NFKC'), salt, keyBytes, options, (err, key) => (err ? reject(err) : resolve(key)))
      })
    } finally {
      this.release()
    }
  }

  /** Derivations running and waiting now. */
  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length }
  }

  private acquire(): Promise<void> {
    if (this.running < this.opts.maxConcurrent) {
      this.running++
      return Promise.resolve()
    }
    if (this.waiting.length >= this.opts.maxQueue) return Promise.reject(new HasherBusyError())
    return new Promise((resolve) => this.waiting.push(resolve))
  }

  private release(): void {
    const next = this.waiting.shift()
    // The slot passes straight to the next waiter; `running` stays the same.
    if (next !== undefined) next()
    else this.running--
  }
}

function format(p: Parsed): string {
  return [PREFIX, p.log2N, p.r, p.p, p.salt.toString('base64url'), p.hash.toString('base64url')].join('$')
}

function parse(stored: string): Parsed | undefined {
  const parts = stored.split('$')
  if (parts.length !== 6 || parts[0] !== PREFIX) return undefined
  const [log2N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number]
  if (![log2N, r, p].every((n) => Number.isInteger(n) && n > 0) || log2N > 24) return undefined
  const salt = Buffer.from(parts[4] as string, 'base64url')
  const hash = Buffer.from(parts[5] as string, 'base64url')
  if (salt.length === 0 || hash.length === 0) return undefined
  return { log2N, r, p, salt, hash }
}
