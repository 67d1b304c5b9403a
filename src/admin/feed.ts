import type { ErrorEntry, ErrorRecorder } from './recorder.js'

/**
 * The admin dashboard's live feed (docs/API.md section 10), free of HTTP: server-sent
 * events to every open feed. One snapshot is made per interval for all feeds (not one
 * per feed), errors are sent as they are recorded, and each feed ends when its token
 * expires or the gateway closes.
 *
 * Bounded: a feed whose socket does not take what it is sent (write() said wait) is sent
 * nothing more until it drains: snapshots meanwhile are dropped (the next one says it
 * all), and errors are made good by the whole kept list once it drains. So a slow reader
 * holds at most a socket's buffer and one event, and the feeds are capped in number.
 */

/** The response a feed writes to (a Node ServerResponse fits). */
export interface FeedOutput {
  /** False: the chunk is buffered, wait for 'drain' before writing more. */
  write(chunk: string): boolean
  end(): void
  once(event: 'drain' | 'close', listener: () => void): unknown
}

export interface AdminFeedsOptions {
  /** At most this many feeds at once; open() refuses more. */
  maxFeeds: number
  /** ADMIN_FEED_INTERVAL_MS. */
  intervalMs: number
  /** The `snapshot` event's data, serialized (made once per interval). */
  snapshot(): Promise<string>
  errors: Pick<ErrorRecorder, 'list' | 'subscribe'>
  /** A snapshot that could not be made: feeds get a ping instead. */
  onSnapshotError?(err: unknown): void
}

const PING = ': ping\n\n'
const EXPIRED = 'event: expired\ndata: {}\n\n'

const event = (name: string, json: string) => `event: ${name}\ndata: ${json}\n\n`
const errorsEvent = (list: ErrorEntry[]) => event('errors', JSON.stringify(list))

class Feed {
  private congested = false
  private missedErrors = false
  private ended = false
  private expiry: NodeJS.Timeout | undefined

  constructor(
    private readonly out: FeedOutput,
    private readonly feeds: AdminFeeds,
  ) {}

  start(expiresInMs: number, errors: ErrorEntry[]): void {
    this.out.once('close', () => this.end())
    this.expiry = setTimeout(() => this.expire(), Math.max(0, expiresInMs))
    this.expiry.unref()
    this.send(errorsEvent(errors))
  }

  /** Sent unless the socket is still full; false when it was dropped. */
  send(chunk: string): boolean {
    if (this.ended || this.congested) return false
    if (!this.out.write(chunk)) {
      this.congested = true
      this.out.once('drain', this.drained)
    }
    return true
  }

  error(chunk: string): void {
    if (!this.send(chunk)) this.missedErrors = true
  }

  /** The token's time is up (or the gateway closes): a last event, then the end. */
  expire(): void {
    if (this.ended) return
    // Even to a full socket: it is the last thing this feed writes.
    this.out.write(EXPIRED)
    this.end()
  }

  end(): void {
    if (this.ended) return
    this.ended = true
    clearTimeout(this.expiry)
    this.out.end()
    this.feeds.closed(this)
  }

  private readonly drained = (): void => {
    this.congested = false
    if (!this.missedErrors) return
    this.missedErrors = false
    this.send(errorsEvent(this.feeds.errorList()))
  }
}

export class AdminFeeds {
  private readonly open = new Set<Feed>()
  private timer: NodeJS.Timeout | undefined
  private making = false
  private unsubscribe: (() => void) | undefined
  private isClosing = false

  constructor(private readonly opts: AdminFeedsOptions) {}

  get size(): number {
    return this.open.size
  }

  /** Shutting down: no new feed is taken. */
  get closing(): boolean {
    return this.isClosing
  }

  /**
   * Starts a feed on `out` (its headers already sent): the kept errors first, then a
   * snapshot, then one every interval. False (nothing written) when the feeds are at their
   * cap or closing.
   */
  add(out: FeedOutput, expiresInMs: number): boolean {
    if (this.isClosing || this.open.size >= this.opts.maxFeeds) return false
    const feed = new Feed(out, this)
    this.open.add(feed)
    if (this.open.size === 1) this.startTicking()
    feed.start(expiresInMs, this.opts.errors.list())
    // Its first snapshot now, not at the next tick.
    this.opts.snapshot().then(
      (json) => feed.send(event('snapshot', json)),
      (err: unknown) => {
        this.opts.onSnapshotError?.(err)
        feed.send(PING)
      },
    )
    return true
  }

  /** Ends every feed (shutdown): each gets `expired`, so a page knows not to wait. */
  close(): void {
    this.isClosing = true
    for (const feed of [...this.open]) feed.expire()
  }

  /** @internal */
  closed(feed: Feed): void {
    if (!this.open.delete(feed) || this.open.size > 0) return
    clearInterval(this.timer)
    this.timer = undefined
    this.unsubscribe?.()
    this.unsubscribe = undefined
  }

  /** @internal */
  errorList(): ErrorEntry[] {
    return this.opts.errors.list()
  }

  private startTicking(): void {
    this.unsubscribe = this.opts.errors.subscribe((entry) => {
      const chunk = event('error', JSON.stringify(entry))
      for (const feed of this.open) feed.error(chunk)
    })
    this.timer = setInterval(() => this.tick(), this.opts.intervalMs)
    this.timer.unref()
  }

  private tick(): void {
    // A snapshot still being made (a slow database) is not doubled up on; a ping keeps the
    // feeds from looking dead meanwhile.
    if (this.making) return this.broadcast(PING)
    this.making = true
    this.opts
      .snapshot()
      .then(
        (json) => this.broadcast(event('snapshot', json)),
        (err: unknown) => {
          this.opts.onSnapshotError?.(err)
          this.broadcast(PING)
        },
      )
      .finally(() => {
        this.making = false
      })
  }

  private broadcast(chunk: string): void {
    for (const feed of this.open) feed.send(chunk)
  }
}
