/**
 * A small JSON client for the REST API that keeps every answer it got, so a test can
 * check that none of them ever carried a secret.
 */
export interface ApiAnswer<T = any> {
  status: number
  headers: Headers
  text: string
  json: T
}

export interface CallOptions {
  token?: string
  body?: unknown
  /** Sent as X-Forwarded-For (apps under test trust it): a fresh one per call unless given. */
  ip?: string
  headers?: Record<string, string>
}

let ipCounter = 0
/** A distinct client address, so per-address login limits of one test do not touch another. */
export const freshIp = (): string => {
  ipCounter++
  return `10.${(ipCounter >> 16) & 255}.${(ipCounter >> 8) & 255}.${ipCounter & 255}`
}

export class ApiClient {
  readonly answers: string[] = []

  constructor(readonly baseUrl: string) {}

  async call<T = any>(method: string, path: string, opts: CallOptions = {}): Promise<ApiAnswer<T>> {
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(opts.token !== undefined ? { authorization: `Bearer ${opts.token}` } : {}),
        'x-forwarded-for': opts.ip ?? freshIp(),
        ...opts.headers,
      },
      ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    })
    const text = await res.text()
    this.answers.push(text)
    return { status: res.status, headers: res.headers, text, json: text === '' ? undefined : JSON.parse(text) }
  }

  get = <T = any>(path: string, opts?: CallOptions) => this.call<T>('GET', path, opts)
  post = <T = any>(path: string, opts?: CallOptions) => this.call<T>('POST', path, opts)
  patch = <T = any>(path: string, opts?: CallOptions) => this.call<T>('PATCH', path, opts)
  delete = <T = any>(path: string, opts?: CallOptions) => this.call<T>('DELETE', path, opts)
}

/** Cheap password hashing for tests that do not measure it. */
export const FAST_PASSWORD_HASHING = { PASSWORD_SCRYPT_LOG2_N: '10', PASSWORD_SCRYPT_P: '1' }
