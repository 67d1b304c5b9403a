import { readFileSync } from 'node:fs'
import jwt from 'jsonwebtoken'
import WebSocket from 'ws'
import { describe, expect, it } from 'vitest'
import { TEST_SECRET, startTestApp } from '../helpers/app.js'
import { RecordingSink } from '../helpers/recording-sink.js'
import { sharedFile } from '../helpers/shared.js'
import { waitUntil } from '../helpers/wait.js'

// The JavaScript example client of the original Matt Collector README, run as written:
// only its URL and its placeholder token are replaced.
const seed = sharedFile('seeds', '000_dee237ce67952e14.txt')

describe.skipIf(seed === undefined)('the original README example client', () => {
  it('connects, authenticates, sends a line and receives OK', async () => {
    const text = readFileSync(seed as string, 'utf8')
    const block = /\*\*Example Client \(JavaScript\):\*\*\s*```javascript\n([\s\S]*?)```/.exec(text)?.[1]
    expect(block, 'example block in the seed').toBeDefined()
    const sink = new RecordingSink()
    const t = await startTestApp({}, { sink })
    try {
      const token = jwt.sign(
        { user: 'john_doe', user_id: '1', org: 'acme_corp', org_id: '2', account_id: '3', type: 'stream' },
        TEST_SECRET,
        { expiresIn: 600 },
      )
      const code = (block as string)
        .replace('ws://localhost:8080/time-series', `${t.wsUrl}/time-series`)
        .replace(/\$AUTH eyJ[\w.-]*\.\.\./, `$AUTH ${token}`)
      expect(code).toContain(token)
      const seen: string[] = []
      const sockets: WebSocket[] = []
      // The browser WebSocket API the example was written for, provided by `ws`.
      class BrowserLikeWebSocket extends WebSocket {
        constructor(url: string) {
          super(url)
          sockets.push(this)
        }
      }
      const consoleLike = { log: (_label: string, data: unknown) => seen.push(String(data)) }
      new Function('WebSocket', 'console', code)(BrowserLikeWebSocket, consoleLike)
      // Wait for the two replies the example logs, then check them.
      await waitUntil(() => seen.length >= 2, 20_000, 'the example client to log two replies')
      expect(seen).toEqual(['AUTH_SUCCESS', 'OK'])
      expect(sink.lines).toHaveLength(1)
      expect(sink.lines[0]).toMatch(/^temperature,location=room1,user=john_doe,org=acme_corp value=23\.5 \d{19}$/)
      for (const s of sockets) s.close()
    } finally {
      await t.close()
    }
  })
})
