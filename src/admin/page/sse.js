// @ts-check
// Server-sent events read from a fetch() body: EventSource cannot send an Authorization
// header, so the page reads the stream itself. This is the parsing half of the
// WHATWG "event stream interpretation", without `retry:` (the page has its own backoff).

/** @typedef {{ event: string, data: string, id: string | undefined }} SseEvent */

export class SseParser {
  constructor() {
    /** @private */ this.buffer = ''
    /** @private */ this.event = ''
    /** @private @type {string[]} */ this.data = []
    /** @private @type {string | undefined} */ this.id = undefined
    /** Comment lines seen (`: ping`): a live connection shows up even between events. */
    this.comments = 0
  }

  /**
   * Feeds decoded text; returns the events it completed.
   * @param {string} text
   * @returns {SseEvent[]}
   */
  push(text) {
    this.buffer += text
    /** @type {SseEvent[]} */
    const out = []
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer)
      if (m === null) break
      // A lone \r at the end may be the first half of \r\n: wait for the next chunk.
      if (m[0] === '\r' && m.index === this.buffer.length - 1) break
      const line = this.buffer.slice(0, m.index)
      this.buffer = this.buffer.slice(m.index + m[0].length)
      const done = this.line(line)
      if (done !== undefined) out.push(done)
    }
    return out
  }

  /**
   * @private
   * @param {string} line
   * @returns {SseEvent | undefined}
   */
  line(line) {
    if (line === '') {
      if (this.data.length === 0) {
        this.event = ''
        return undefined
      }
      const ev = { event: this.event || 'message', data: this.data.join('\n'), id: this.id }
      this.event = ''
      this.data = []
      return ev
    }
    if (line.startsWith(':')) {
      this.comments++
      return undefined
    }
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'event') this.event = value
    else if (field === 'data') this.data.push(value)
    else if (field === 'id') this.id = value
    return undefined
  }
}
