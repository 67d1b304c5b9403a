import { describe, expect, it } from 'vitest'
import { commandTarget, maySubscribe, publishSubject } from '../../src/devices/acl.js'
import { ConnectionGuard } from '../../src/devices/connection-guard.js'

const id = '3f1c2a9e-8d4b-4c6f-9a1e-2b7d5c0e4f11'
const other = '0b9e7c55-1d2a-4e3f-8c6b-7a4d9e2f1c30'

describe('publishSubject', () => {
  it('maps the own topic and topics under it to NATS subjects', () => {
    expect(publishSubject(id, `raw.${id}`)).toBe(`raw.${id}`)
    expect(publishSubject(id, `raw.${id}/a/b`)).toBe(`raw.${id}.a.b`)
    expect(publishSubject(id, `raw.${id}.a.b`)).toBe(`raw.${id}.a.b`)
    expect(publishSubject(id, `raw.${id}/a.b/c`)).toBe(`raw.${id}.a.b.c`)
    expect(publishSubject(id, `raw.${id}/temp-1_x`)).toBe(`raw.${id}.temp-1_x`)
  })

  it("refuses other devices' topics and anything outside raw.<id>", () => {
    for (const topic of [
      `raw.${other}`,
      `raw.${other}/a`,
      `raw.${id}x`,
      `raw.${id}-x/a`,
      `raw.${id.slice(0, -1)}`,
      `cmd.${id}`,
      'raw',
      'raw.',
      '',
      `RAW.${id}`,
      `$SYS/raw.${id}`,
      `/raw.${id}`,
    ]) {
      expect(publishSubject(id, topic), topic).toBeUndefined()
    }
  })

  it('refuses topics whose mapping is no valid NATS subject', () => {
    for (const topic of [
      `raw.${id}/`,
      `raw.${id}.`,
      `raw.${id}//a`,
      `raw.${id}/a//b`,
      `raw.${id}..a`,
      `raw.${id}/a b`,
      `raw.${id}/a\tb`,
      `raw.${id}/*`,
      `raw.${id}/a*`,
      `raw.${id}/>`,
      `raw.${id}.>`,
      `raw.${id}/+`,
      `raw.${id}/#`,
      `raw.${id}/a\u0000`,
      `raw.${id}/a\u0007`,
    ]) {
      expect(publishSubject(id, topic), JSON.stringify(topic)).toBeUndefined()
    }
  })

  it('never lets an unusable device id build a subject', () => {
    expect(publishSubject('', 'raw.')).toBeUndefined()
    expect(publishSubject('a.b', 'raw.a.b')).toBeUndefined()
    expect(publishSubject('*', 'raw.*')).toBeUndefined()
    expect(publishSubject('>', 'raw.>')).toBeUndefined()
    expect(publishSubject('a/b', 'raw.a/b')).toBeUndefined()
  })
})

describe('maySubscribe', () => {
  it('grants cmd.<id> and filters under it', () => {
    for (const filter of [
      `cmd.${id}`,
      `cmd.${id}/#`,
      `cmd.${id}/+`,
      `cmd.${id}/+/x`,
      `cmd.${id}/a/b`,
      `cmd.${id}.x`,
      `cmd.${id}.a.b`,
      `cmd.${id}.a/#`,
    ]) {
      expect(maySubscribe(id, filter), filter).toBe(true)
    }
  })

  it("refuses wildcards above the own level, other devices' filters and malformed ones", () => {
    for (const filter of [
      '#',
      '+',
      '+/#',
      `+/cmd.${id}`,
      'cmd.+',
      'cmd.+/#',
      `cmd.${other}`,
      `cmd.${other}/#`,
      `cmd.${id}x`,
      `cmd.${id}#`,
      `cmd.${id}+`,
      `cmd.${id}.`,
      `cmd.${id}..x`,
      `cmd.${id}.*`,
      `cmd.${id}.>`,
      `cmd.${id}.x y`,
      `cmd.${id}/#/x`,
      `cmd.${id}/a#`,
      `cmd.${id}/a+`,
      `cmd.${id}/\u0000`,
      `raw.${id}`,
      `raw.${id}/#`,
      `$share/g/cmd.${id}`,
      `$SYS/#`,
      '',
    ]) {
      expect(maySubscribe(id, filter), JSON.stringify(filter)).toBe(false)
    }
  })
})

describe('commandTarget', () => {
  it('finds the device and keeps the subject as the topic', () => {
    expect(commandTarget(`cmd.${id}`)).toEqual({ deviceId: id, topic: `cmd.${id}` })
    expect(commandTarget(`cmd.${id}.a.b`)).toEqual({ deviceId: id, topic: `cmd.${id}.a.b` })
    expect(commandTarget(`cmd.${id}.a/b`)).toEqual({ deviceId: id, topic: `cmd.${id}.a/b` })
  })

  it('ignores subjects that name no device or are no MQTT topic name', () => {
    for (const subject of ['cmd', 'cmd.', 'cmd..x', 'raw.x', `cmd.${id}.+`, `cmd.${id}.#`, `cmd.${id}.a\u0000`, 'cmd.a/b']) {
      expect(commandTarget(subject), JSON.stringify(subject)).toBeUndefined()
    }
  })
})

describe('ConnectionGuard (the per-address limits next to the ACL)', () => {
  it('caps open connections per address and gives slots back', () => {
    const g = new ConnectionGuard({ maxConnectionsPerAddress: 2, maxAuthFailuresPerAddress: 3, authWindowMs: 1000 })
    expect([g.admit('a'), g.admit('a'), g.admit('a'), g.admit('b')]).toEqual([true, true, false, true])
    g.release('a')
    expect(g.connections('a')).toBe(1)
    expect(g.admit('a')).toBe(true)
    g.release('a')
    g.release('a')
    expect(g.connections('a')).toBe(0)
  })

  it('throttles an address after its failures until the window ends; success takes back only its own attempt', () => {
    let now = 0
    const g = new ConnectionGuard({ maxConnectionsPerAddress: 10, maxAuthFailuresPerAddress: 2, authWindowMs: 1000 }, () => now)
    expect(g.reserveAttempt('a')).toBe(true)
    g.succeeded('a')
    expect(g.reserveAttempt('a')).toBe(true) // failed
    expect(g.reserveAttempt('a')).toBe(true)
    // A right password here does not clear the earlier failure.
    g.succeeded('a')
    expect(g.reserveAttempt('a')).toBe(true) // failed: two now
    expect(g.reserveAttempt('a')).toBe(false)
    expect(g.reserveAttempt('b')).toBe(true)
    now = 1000
    expect(g.reserveAttempt('a')).toBe(true)
    g.unjudged('a')
    expect(g.reserveAttempt('a')).toBe(true)
  })
})
