/**
 * The last errors the gateway answered (docs/API.md section 10), for the admin dashboard:
 * bad lines, auth failures, sink refusals and outages, each with its time and who caused it. Free
 * of any HTTP framework. A fixed ring: recording is O(1) and memory is bounded by the
 * ring's size whatever the error rate; listeners (the admin feeds) hear each one as it
 * happens.
 */

export const ERROR_KINDS = ['bad_line', 'auth_failure', 'sink_refusal', 'sink_outage'] as const
export type ErrorKind = (typeof ERROR_KINDS)[number]

export const ERROR_ENDPOINTS = ['time-series', 'http-write', 'metrics-push', 'ws', 'mqtt', 'login', 'sink'] as const
export type ErrorEndpoint = (typeof ERROR_ENDPOINTS)[number]

/** What a call site knows; identity fields it does not know are left out. */
export interface ErrorInput {
  kind: ErrorKind
  endpoint: ErrorEndpoint
  /** The text as the client got it (e.g. `ERR line 2: ...`). */
  reason: string
  user?: string | null | undefined
  org?: string | null | undefined
  remote?: string | null | undefined
}

/** One kept error, as the admin API shows it. */
export interface ErrorEntry {
  /** Monotonic within the process: a page can tell which errors it has seen. */
  id: string
  /** RFC 3339 UTC. */
  at: string
  kind: ErrorKind
  endpoint: ErrorEndpoint
  reason: string
  user: string | null
  org: string | null
  remote: string | null
}

export type ErrorListener = (entry: ErrorEntry) => void

// A reason quotes what the client sent at most in part; a longer one is cut, so one
// error costs a bounded amount of memory whatever a client sends.
const MAX_REASON_CHARS = 500
const MAX_IDENTITY_CHARS = 256

const bounded = (text: string, max: number): string => (text.length > max ? `${text.slice(0, max - 1)}…` : text)
const identity = (v: string | null | undefined): string | null =>
  v === undefined || v === null || v === '' ? null : bounded(v, MAX_IDENTITY_CHARS)

export interface ErrorRecorderOptions {
  /** ADMIN_ERRORS_KEPT: the ring's size. */
  kept: number
  /** Epoch ms; injected by tests. */
  now?: () => number
  /** A listener that throws is reported here and kept: recording never fails its caller. */
  onListenerError?: (err: unknown) => void
}

export class ErrorRecorder {
  private readonly ring: Array<ErrorEntry | undefined>
  /** Where the next entry goes. */
  private next = 0
  private count = 0
  private seq = 0
  private readonly listeners = new Set<ErrorListener>()
  private lastSink: ErrorEntry | undefined
  private readonly now: () => number

  constructor(private readonly opts: ErrorRecorderOptions) {
    if (!Number.isSafeInteger(opts.kept) || opts.kept < 1) throw new RangeError('kept must be a positive integer')
    this.ring = new Array<ErrorEntry | undefined>(opts.kept)
    this.now = opts.now ?? Date.now
  }

  /** Keeps the error (the oldest kept one goes when the ring is full) and tells every listener. */
  record(input: ErrorInput): ErrorEntry {
    const entry: ErrorEntry = {
      id: String(++this.seq),
      at: new Date(this.now()).toISOString(),
      kind: input.kind,
      endpoint: input.endpoint,
      reason: bounded(input.reason, MAX_REASON_CHARS),
      user: identity(input.user),
      org: identity(input.org),
      remote: identity(input.remote),
    }
    this.ring[this.next] = entry
    this.next = (this.next + 1) % this.ring.length
    if (this.count < this.ring.length) this.count++
    if (entry.endpoint === 'sink') this.lastSink = entry
    for (const listener of this.listeners) {
      try {
        listener(entry)
      } catch (err) {
        this.opts.onListenerError?.(err)
      }
    }
    return entry
  }

  /** The kept errors, newest first. */
  list(): ErrorEntry[] {
    const out: ErrorEntry[] = []
    const size = this.ring.length
    for (let i = 1; i <= this.count; i++) out.push(this.ring[(this.next - i + size) % size] as ErrorEntry)
    return out
  }

  get size(): number {
    return this.count
  }

  /** The newest sink failure, kept even once the ring has moved past it (the sink's `last_error`). */
  get lastSinkError(): ErrorEntry | undefined {
    return this.lastSink
  }

  /** `fn` hears every error recorded from now on; the returned function stops that. */
  subscribe(fn: ErrorListener): () => void {
    this.listeners.add(fn)
    return () => {
      this.listeners.delete(fn)
    }
  }
}
