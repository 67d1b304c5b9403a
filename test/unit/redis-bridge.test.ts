import { describe, expect, it } from 'vitest'
import { decodeRedisMessage } from '../../src/channels/redis-message.js'

const MAX = 256
const decode = (channel: string | Buffer, payload: string | Buffer) =>
  decodeRedisMessage(Buffer.isBuffer(channel) ? channel : Buffer.from(channel), Buffer.isBuffer(payload) ? payload : Buffer.from(payload), MAX)

describe('a Redis PUBLISH channel:<id> message, checked as POST checks its body', () => {
  it("takes the Go server README's message: the channel from the name, its channelId and timestamp kept", () => {
    const body = JSON.stringify({ type: 'message:created', channelId: '123', timestamp: 1234567890, data: { id: 'msg_1', content: 'Hello world' } })
    expect(decode('channel:123', body)).toEqual({
      ok: true,
      channelId: '123',
      draft: { type: 'message:created', timestamp: 1234567890, data: { id: 'msg_1', content: 'Hello world' } },
    })
  })

  it('fills in data as null and leaves the timestamp to the log', () => {
    expect(decode('channel:org:acme:general', '{"type":"message:deleted"}')).toEqual({
      ok: true,
      channelId: 'org:acme:general',
      draft: { type: 'message:deleted', data: null },
    })
  })

  it.each([
    ['channel:', 'channelId is required'],
    ['channel:has space', 'channelId may hold'],
    ['channel:a..b', 'channelId may hold'],
    [`channel:${'x'.repeat(129)}`, 'longer than 128'],
    ['other:1', 'not a channel:* channel'],
  ])('refuses the channel %j as invalid', (channel, reason) => {
    const r = decode(channel, '{"type":"message:created"}')
    expect(r.ok).toBe(false)
    if (!r.ok) {
      expect(r.result).toBe('invalid')
      expect(r.reason).toContain(reason)
    }
  })

  it('refuses a channel name that is not UTF-8', () => {
    const r = decode(Buffer.concat([Buffer.from('channel:a'), Buffer.from([0xff, 0xfe])]), '{"type":"x"}')
    expect(r).toMatchObject({ ok: false, result: 'invalid' })
  })

  it.each([
    ['plain text', 'Hello from Redis'],
    ['truncated JSON', '{"type":"message:created"'],
    ['invalid UTF-8 inside a JSON string', Buffer.concat([Buffer.from('{"type":"m","data":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')])],
    ['empty', ''],
  ])('counts %s as not_json', (_what, payload) => {
    expect(decode('channel:1', payload)).toMatchObject({ ok: false, result: 'not_json' })
  })

  it.each([
    ['no type', '{"data":{}}', 'type'],
    ['a reserved type', '{"type":"presence:join"}', 'sent by the gateway only'],
    ['an error type', '{"type":"error"}', 'sent by the gateway only'],
    ['a JSON array', '[1,2]', 'invalid'],
    ['a JSON string', '"hello"', 'invalid'],
    ['another channel', '{"type":"m","channelId":"other"}', 'is not the channel it was published to'],
    ['a negative timestamp', '{"type":"m","timestamp":-1}', 'timestamp'],
  ])('counts %s as invalid', (_what, payload, reason) => {
    const r = decode('channel:1', payload)
    expect(r).toMatchObject({ ok: false, result: 'invalid' })
    if (!r.ok) expect(r.reason.toLowerCase()).toContain(reason.toLowerCase())
  })

  it('counts a payload over the limit as too_large, and takes one at the limit', () => {
    const at = `{"type":"m","data":"${'a'.repeat(MAX - 22)}"}`
    expect(Buffer.byteLength(at)).toBe(MAX)
    expect(decode('channel:1', at).ok).toBe(true)
    expect(decode('channel:1', `${at} `)).toMatchObject({ ok: false, result: 'too_large' })
    // Checked before decoding: megabytes of garbage are refused by their length alone.
    expect(decode('channel:1', Buffer.alloc(10 * 1024 * 1024, 0xff))).toMatchObject({ ok: false, result: 'too_large' })
  })
})
