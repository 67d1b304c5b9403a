import { createHash } from 'node:crypto'
import * as crypto from 'node:crypto'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  DEVICE_PASSWORD_BYTES,
  deviceAuthenticator,
  hashDevicePassword,
  isDeviceId,
  newDevicePassword,
  verifyDevicePassword,
  type DeviceCredentials,
} from '../../src/devices/credentials.js'

// Spy on the comparison the module uses, keeping its behaviour. The setup file has already
// loaded the module (through the app), so the test that spies imports a fresh copy.
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>()
  return { ...real, timingSafeEqual: vi.fn(real.timingSafeEqual) }
})

afterEach(() => {
  vi.mocked(crypto.timingSafeEqual).mockClear()
})

describe('device passwords', () => {
  it('are 32 random bytes in base64url: 43 characters, no padding', () => {
    expect(DEVICE_PASSWORD_BYTES * 8).toBeGreaterThanOrEqual(128)
    for (let i = 0; i < 50; i++) {
      const pw = newDevicePassword()
      expect(pw).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(Buffer.from(pw, 'base64url')).toHaveLength(DEVICE_PASSWORD_BYTES)
    }
  })

  it('do not repeat, and their bits look uniformly random', () => {
    const n = 2000
    const seen = new Set<string>()
    let ones = 0
    for (let i = 0; i < n; i++) {
      const pw = newDevicePassword()
      seen.add(pw)
      for (const byte of Buffer.from(pw, 'base64url')) {
        for (let b = byte; b > 0; b >>= 1) ones += b & 1
      }
    }
    expect(seen.size).toBe(n)
    // 512,000 fair bits: mean 256,000, standard deviation about 358; 10 deviations is no fluke.
    const bits = n * DEVICE_PASSWORD_BYTES * 8
    expect(Math.abs(ones - bits / 2)).toBeLessThan(3600)
  })

  it('are stored as the hex SHA-256 of their bytes, never in clear', () => {
    const pw = newDevicePassword()
    const stored = hashDevicePassword(pw)
    expect(stored).toBe(createHash('sha256').update(pw, 'utf8').digest('hex'))
    expect(stored).toMatch(/^[0-9a-f]{64}$/)
    expect(stored).not.toContain(pw)
    expect(hashDevicePassword(Buffer.from(pw))).toBe(stored)
  })

  it('verify: the right password (string or the Buffer MQTT hands over), nothing else', () => {
    const pw = newDevicePassword()
    const stored = hashDevicePassword(pw)
    expect(verifyDevicePassword(pw, stored)).toBe(true)
    expect(verifyDevicePassword(Buffer.from(pw), stored)).toBe(true)
    expect(verifyDevicePassword(newDevicePassword(), stored)).toBe(false)
    expect(verifyDevicePassword(pw.slice(0, -1), stored)).toBe(false)
    expect(verifyDevicePassword(`${pw}x`, stored)).toBe(false)
    expect(verifyDevicePassword('', stored)).toBe(false)
    expect(verifyDevicePassword(stored, stored)).toBe(false)
  })

  it('verify never accepts against a malformed stored hash', () => {
    const pw = newDevicePassword()
    expect(verifyDevicePassword(pw, '')).toBe(false)
    expect(verifyDevicePassword(pw, hashDevicePassword(pw).toUpperCase())).toBe(false)
    expect(verifyDevicePassword('', '0'.repeat(63))).toBe(false)
    // The all-zero digest stands in for a malformed hash: no password reaches it by accident.
    expect(verifyDevicePassword(pw, 'z'.repeat(64))).toBe(false)
  })

  it('verify takes the constant-time path for every input: two 32-byte digests in timingSafeEqual', async () => {
    vi.resetModules()
    const fresh = await import('../../src/devices/credentials.js')
    const pw = newDevicePassword()
    const stored = hashDevicePassword(pw)
    const inputs: Array<string | Buffer> = [pw, newDevicePassword(), '', 'x', 'y'.repeat(10_000), Buffer.alloc(3)]
    expect(inputs.map((input) => fresh.verifyDevicePassword(input, stored))).toEqual([true, false, false, false, false, false])
    expect(fresh.verifyDevicePassword(pw, 'malformed')).toBe(false)
    const calls = vi.mocked(crypto.timingSafeEqual).mock.calls
    expect(calls).toHaveLength(inputs.length + 1)
    for (const [a, b] of calls) {
      expect((a as Buffer).length).toBe(32)
      expect((b as Buffer).length).toBe(32)
    }
  })
})

describe('device ids', () => {
  it('are canonical lower-case UUIDs only (safe as subject tokens and topic levels)', () => {
    const id = crypto.randomUUID()
    expect(isDeviceId(id)).toBe(true)
    expect(isDeviceId(id.toUpperCase())).toBe(false)
    for (const bad of ['', 'raw', `${id}.x`, `${id} `, '*', '>', id.slice(1), `{${id}}`]) expect(isDeviceId(bad)).toBe(false)
  })
})

describe('deviceAuthenticator', () => {
  const pw = newDevicePassword()
  const id = crypto.randomUUID()
  const row = (deleted: boolean): DeviceCredentials => ({
    id,
    type: 'sensor',
    createdAt: new Date(0),
    generation: 3,
    passwordHash: hashDevicePassword(pw),
    deleted,
  })
  const withRow = (found: DeviceCredentials | undefined) => {
    const findCredentials = vi.fn(async () => found)
    return { auth: deviceAuthenticator({ repo: { findCredentials } }), findCredentials }
  }

  it('answers ok with the device for the right password', async () => {
    const { auth } = withRow(row(false))
    expect(await auth(id, Buffer.from(pw))).toEqual({
      ok: true,
      device: { id, type: 'sensor', createdAt: new Date(0), generation: 3 },
    })
  })

  it('tells a wrong password, a deleted device and an unknown one apart', async () => {
    expect(await withRow(row(false)).auth(id, Buffer.from('nope'))).toEqual({ ok: false, reason: 'bad_password' })
    expect(await withRow(row(true)).auth(id, Buffer.from(pw))).toEqual({ ok: false, reason: 'deleted' })
    // A deleted device is only named so to a holder of its password.
    expect(await withRow(row(true)).auth(id, Buffer.from('nope'))).toEqual({ ok: false, reason: 'bad_password' })
    expect(await withRow(undefined).auth(id, Buffer.from(pw))).toEqual({ ok: false, reason: 'unknown' })
  })

  it('does not ask the database for a user name that is no device id, or without a password', async () => {
    const { auth, findCredentials } = withRow(row(false))
    expect(await auth('admin', Buffer.from(pw))).toEqual({ ok: false, reason: 'unknown' })
    expect(await auth(id.toUpperCase(), Buffer.from(pw))).toEqual({ ok: false, reason: 'unknown' })
    expect(await auth(id, undefined)).toEqual({ ok: false, reason: 'unknown' })
    expect(findCredentials).not.toHaveBeenCalled()
  })
})
