// @ts-check
// The one live feed (GET /api/v1/admin/feed, text/event-stream) read with fetch(), so the
// access token goes in the Authorization header. Reconnects with backoff; `expired` (the
// token this connection used ran out) renews the token and reconnects at once.
import { SseParser } from './sse.js'

const BACKOFF_FIRST_MS = 500
const BACKOFF_MAX_MS = 15_000
// The server sends a snapshot every ADMIN_FEED_INTERVAL_MS (at most 10 s), or a ping while one
// is being made: this much silence is a dead connection (a laptop that slept, a proxy that
// dropped it) even if no error came.
const SILENCE_MS = 20_000

/** @typedef {'connecting' | 'live' | 'retrying' | 'denied' | 'stopped'} FeedState */

/**
 * @typedef {object} FeedOptions
 * @property {import('./auth.js').Auth} auth
 * @property {(event: import('./sse.js').SseEvent) => void} onEvent
 * @property {(state: FeedState, detail?: string) => void} onState
 */

export class Feed {
  /** @param {FeedOptions} opts */
  constructor(opts) {
    this.opts = opts
    /** @private @type {AbortController | undefined} */ this.abort = undefined
    /** @private */ this.running = false
    /** @private */ this.backoffMs = BACKOFF_FIRST_MS
    /** @private @type {(() => void) | undefined} */ this.wakeSleep = undefined
  }

  start() {
    if (this.running) return
    this.running = true
    this.loop().catch(() => {})
  }

  stop() {
    this.running = false
    this.abort?.abort()
    this.wakeSleep?.()
    this.opts.onState('stopped')
  }

  /** @private */
  async loop() {
    /** @type {string | undefined} */
    let token = this.opts.auth.token
    while (this.running) {
      this.opts.onState('connecting')
      const outcome = await this.connect(token).catch((err) => ({ kind: 'error', detail: String(err?.message ?? err) }))
      if (!this.running) return
      if (outcome.kind === 'denied') {
        this.running = false
        this.opts.onState('denied')
        return
      }
      if (outcome.kind === 'expired' || outcome.kind === 'unauthorized') {
        try {
          token = await this.opts.auth.freshToken(token)
          if (outcome.kind === 'expired') continue
        } catch {
          // Renewal failed: Auth has ended the session (or will retry the network).
        }
      } else {
        token = this.opts.auth.token
      }
      const wait = this.backoffMs
      this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs * 2)
      this.opts.onState('retrying', `reconnecting in ${Math.ceil(wait / 1000)} s`)
      await this.sleep(wait)
      token = this.opts.auth.token ?? token
    }
  }

  /**
   * One connection, until it ends.
   * @private
   * @param {string | undefined} token
   * @returns {Promise<{ kind: 'denied' | 'expired' | 'unauthorized' | 'ended' | 'error', detail?: string }>}
   */
  async connect(token) {
    const abort = new AbortController()
    this.abort = abort
    let silence = setTimeout(() => abort.abort(), SILENCE_MS)
    const heard = () => {
      clearTimeout(silence)
      silence = setTimeout(() => abort.abort(), SILENCE_MS)
    }
    try {
      const res = await fetch(new URL('admin/feed', this.opts.auth.apiBase), {
        headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
        cache: 'no-store',
        signal: abort.signal,
      })
      if (res.status === 401) return { kind: 'unauthorized' }
      if (res.status === 403) return { kind: 'denied' }
      if (!res.ok || res.body === null) return { kind: 'error', detail: `HTTP ${res.status}` }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
      const parser = new SseParser()
      for (;;) {
        const { value, done } = await reader.read()
        if (done) return { kind: 'ended' }
        heard()
        for (const ev of parser.push(value)) {
          if (ev.event === 'expired') {
            abort.abort()
            return { kind: 'expired' }
          }
          if (ev.event === 'snapshot') {
            this.backoffMs = BACKOFF_FIRST_MS
            this.opts.onState('live')
          }
          this.opts.onEvent(ev)
        }
      }
    } finally {
      clearTimeout(silence)
      abort.abort()
    }
  }

  /**
   * @private
   * @param {number} ms
   */
  sleep(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms)
      const self = this
      function done() {
        clearTimeout(t)
        self.wakeSleep = undefined
        resolve(undefined)
      }
      this.wakeSleep = done
    })
  }
}
