import WebSocket from 'ws'

/** A WebSocket client that queues what it receives, so tests can await the next reply. */
export class TestClient {
  readonly messages: string[] = []
  private waiters: Array<() => void> = []
  closed: { code: number; reason: string } | undefined
  private closeWaiters: Array<() => void> = []

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.messages.push(data.toString())
      this.wake()
    })
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() }
      this.wake()
      for (const w of this.closeWaiters.splice(0)) w()
    })
    ws.on('error', () => {})
  }

  static connect(url: string, options?: WebSocket.ClientOptions): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, options)
      const client = new TestClient(ws)
      ws.once('open', () => resolve(client))
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)))
      ws.once('error', reject)
    })
  }

  /** Connects to /time-series at `wsUrl` and authenticates; fails unless AUTH_SUCCESS comes back. */
  static async authenticated(wsUrl: string, token: string): Promise<TestClient> {
    const c = await TestClient.connect(`${wsUrl}/time-series`)
    c.send(`$AUTH ${token}`)
    const reply = await c.next()
    if (reply !== 'AUTH_SUCCESS') throw new Error(`expected AUTH_SUCCESS, got ${reply}`)
    return c
  }

  send(text: string | Buffer): void {
    this.ws.send(text)
  }

  /** The next unread message (waits up to timeoutMs). */
  private cursor = 0
  async next(timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs
    while (this.cursor >= this.messages.length) {
      if (this.closed) throw new Error(`socket closed (${this.closed.code}) before a message arrived`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error('timed out waiting for a message')
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
    return this.messages[this.cursor++] as string
  }

  /** Waits until `count` messages arrived in all. */
  async waitForCount(count: number, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.messages.length < count) {
      if (this.closed) throw new Error(`socket closed (${this.closed.code}) after ${this.messages.length} messages`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out with ${this.messages.length}/${count} messages`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }

  waitClosed(timeoutMs = 15_000): Promise<{ code: number; reason: string }> {
    if (this.closed) return Promise.resolve(this.closed)
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('timed out waiting for close')), timeoutMs)
      this.closeWaiters.push(() => {
        clearTimeout(t)
        resolve(this.closed as { code: number; reason: string })
      })
    })
  }

  close(): void {
    this.ws.close()
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w()
  }
}
