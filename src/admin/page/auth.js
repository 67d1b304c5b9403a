// @ts-check
// The admin's login: tokens live in this object only (never in localStorage or a cookie,
// so another tab or a script reading storage finds nothing), and the access token is
// renewed with the single-use refresh token before it expires.

/** @typedef {{ id: string, username: string, email: string, role: string }} User */

// Renew this long before expiry, or a fifth of the token's lifetime when that is shorter.
const RENEW_BEFORE_MS = 60_000
// A refresh that could not reach the gateway is tried again after this.
const RENEW_RETRY_MS = 5_000

export class LoginError extends Error {
  /**
   * @param {'invalid' | 'denied' | 'throttled' | 'busy' | 'network' | 'other'} kind
   * @param {string} message
   * @param {User} [user] who logged in, for `denied`
   */
  constructor(kind, message, user) {
    super(message)
    this.name = 'LoginError'
    this.kind = kind
    this.user = user
  }
}

export class Auth {
  /**
   * @param {URL} apiBase `<prefix>/api/v1/`
   * @param {(why: string) => void} onEnded called when the session cannot be renewed
   */
  constructor(apiBase, onEnded) {
    this.apiBase = apiBase
    this.onEnded = onEnded
    /** @type {string | undefined} */ this.token = undefined
    /** @type {User | undefined} */ this.user = undefined
    /** @private @type {string | undefined} */ this.refreshToken = undefined
    /** @private */ this.expiresAt = 0
    /** @private @type {ReturnType<typeof setTimeout> | undefined} */ this.timer = undefined
    /** @private @type {Promise<string> | undefined} */ this.renewing = undefined
  }

  /**
   * @param {string} username
   * @param {string} password
   * @returns {Promise<User>}
   */
  async login(username, password) {
    let res
    try {
      res = await fetch(new URL('auth/login', this.apiBase), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username, password }),
      })
    } catch {
      throw new LoginError('network', 'cannot reach the gateway')
    }
    const body = await res.json().catch(() => ({}))
    if (res.status === 401) throw new LoginError('invalid', 'invalid username or password')
    if (res.status === 429) throw new LoginError('throttled', `too many failed logins: try again in ${retryAfter(res)}`)
    if (res.status === 503) throw new LoginError('busy', `the gateway is busy: try again in ${retryAfter(res)}`)
    if (!res.ok) throw new LoginError('other', typeof body.message === 'string' ? body.message : `login failed (HTTP ${res.status})`)
    if (body.user?.role !== 'admin') {
      // Its tokens are dropped, not kept: this page has nothing to show a non-admin.
      throw new LoginError('denied', 'admin only', body.user)
    }
    this.keep(body)
    return body.user
  }

  logout() {
    clearTimeout(this.timer)
    this.token = undefined
    this.refreshToken = undefined
    this.user = undefined
    this.renewing = undefined
  }

  /**
   * A token to use after `used` was refused or expired: the current one when it was
   * renewed meanwhile, else a renewed one.
   * @param {string | undefined} used
   * @returns {Promise<string>}
   */
  async freshToken(used) {
    if (this.token !== undefined && this.token !== used && Date.now() < this.expiresAt) return this.token
    return this.renew()
  }

  /**
   * fetch() with the access token, renewing it once when refused with 401.
   * @param {string} path relative to /api/v1/
   * @param {RequestInit} [init]
   */
  async fetch(path, init = {}) {
    const call = (/** @type {string | undefined} */ token) =>
      fetch(new URL(path, this.apiBase), { ...init, headers: { ...init.headers, authorization: `Bearer ${token}` } })
    const used = this.token
    const res = await call(used)
    if (res.status !== 401) return res
    return call(await this.freshToken(used))
  }

  /**
   * One renewal at a time: the refresh token is single use, and a second use would revoke
   * the whole family.
   * @returns {Promise<string>}
   */
  renew() {
    this.renewing ??= this.doRenew().finally(() => {
      this.renewing = undefined
    })
    return this.renewing
  }

  /** @private */
  async doRenew() {
    const refreshToken = this.refreshToken
    if (refreshToken === undefined) throw new Error('not logged in')
    let res
    try {
      res = await fetch(new URL('auth/refresh', this.apiBase), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refresh_token: refreshToken }),
      })
    } catch (err) {
      this.schedule(RENEW_RETRY_MS)
      throw err
    }
    if (this.refreshToken !== refreshToken) throw new Error('logged out')
    // Throttled, busy or failing: the refresh token was not used up, so it is tried again.
    if (res.status === 429 || res.status >= 500) {
      this.schedule(RENEW_RETRY_MS)
      throw new Error(`refresh not answered now (HTTP ${res.status})`)
    }
    if (!res.ok) {
      this.logout()
      this.onEnded('your session ended: log in again')
      throw new Error(`refresh refused (HTTP ${res.status})`)
    }
    const body = await res.json()
    this.keep(body)
    return /** @type {string} */ (this.token)
  }

  /**
   * @private
   * @param {{ token: string, refresh_token: string, expires_at: string, user?: User }} body
   */
  keep(body) {
    this.token = body.token
    this.refreshToken = body.refresh_token
    if (body.user !== undefined) this.user = body.user
    this.expiresAt = Date.parse(body.expires_at)
    const lifetime = this.expiresAt - Date.now()
    this.schedule(lifetime - Math.min(RENEW_BEFORE_MS, lifetime / 5))
  }

  /**
   * @private
   * @param {number} inMs
   */
  schedule(inMs) {
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.renew().catch(() => {})
    }, Math.max(1000, inMs))
  }
}

/** @param {Response} res */
function retryAfter(res) {
  const s = Number(res.headers.get('retry-after'))
  return Number.isFinite(s) && s > 0 ? `${s} s` : 'a moment'
}
