import { describe, expect, it } from 'vitest'
import { goDurationSeconds, LEGACY_REPLACEMENTS, legacyVariables } from '../../src/config-legacy.js'
import { loadConfig } from '../../src/config.js'

describe('legacyVariables', () => {
  it('says nothing for an environment without old variables', () => {
    expect(legacyVariables({})).toEqual([])
    expect(legacyVariables({ SERVER_PORT: '8080', JWT_SECRET: 'x', KINDE_ISSUER_URL: 'https://a.kinde.com', REDIS_URL: 'redis://h' })).toEqual([])
  })

  it('names the replacement of an old variable that is set, with the value to give it', () => {
    expect(legacyVariables({ CHATBOX_PATH_PREFIX: '/chatbox' })).toEqual([
      {
        name: 'CHATBOX_PATH_PREFIX',
        replacement: 'PATH_PREFIX',
        note: 'the prefix of every route is PATH_PREFIX (no trailing "/"; empty by default, not /chatbox); set PATH_PREFIX=/chatbox instead',
      },
    ])
    expect(legacyVariables({ PORT: '9000' })).toEqual([
      { name: 'PORT', replacement: 'SERVER_PORT', note: 'the HTTP and WebSocket port is SERVER_PORT; set SERVER_PORT=9000 instead' },
    ])
  })

  it('ignores an old variable set to an empty value', () => {
    expect(legacyVariables({ PORT: '', CHATBOX_PATH_PREFIX: '  ' })).toEqual([])
  })

  it('is quiet once the replacement holds the same value, in its own units and format', () => {
    expect(legacyVariables({ CHATBOX_PATH_PREFIX: '/chat', PATH_PREFIX: '/chat' })).toEqual([])
    expect(legacyVariables({ CHATBOX_PATH_PREFIX: '/chat/', PATH_PREFIX: '/chat' })).toEqual([])
    expect(legacyVariables({ PORT: '8080', SERVER_PORT: '8080' })).toEqual([])
    expect(legacyVariables({ LISTEN_ADDR: ':9091', SERVER_PORT: '9091' })).toEqual([])
    expect(legacyVariables({ PUBLISH_TIMEOUT_SEC: '5', NATS_PUBLISH_TIMEOUT_MS: '5000' })).toEqual([])
    expect(legacyVariables({ RECONNECT_TIMEOUT: '15m', CHANNEL_HISTORY_MAX_AGE_S: '900' })).toEqual([])
    expect(legacyVariables({ SHUTDOWN_TIMEOUT: '30', SHUTDOWN_GRACE_MS: '30000' })).toEqual([])
  })

  it('says which value is used when the replacement is set to another one', () => {
    const [w] = legacyVariables({ PORT: '3000', SERVER_PORT: '8080' })
    expect(w?.note).toBe('the HTTP and WebSocket port is SERVER_PORT; SERVER_PORT is set to another value, and that one is used')
    expect(legacyVariables({ PUBLISH_TIMEOUT_SEC: '5', NATS_PUBLISH_TIMEOUT_MS: '5' })).toHaveLength(1)
  })

  it('converts units in the value it suggests', () => {
    expect(legacyVariables({ PUBLISH_TIMEOUT_SEC: '5' })[0]?.note).toMatch(/set NATS_PUBLISH_TIMEOUT_MS=5000 instead$/)
    expect(legacyVariables({ RECONNECT_TIMEOUT: '1h30m' })[0]?.note).toMatch(/set CHANNEL_HISTORY_MAX_AGE_S=5400 instead$/)
    expect(legacyVariables({ LISTEN_ADDR: '0.0.0.0:9091' })[0]?.note).toMatch(/set SERVER_PORT=9091 instead$/)
    expect(legacyVariables({ REQUEST_TIMEOUT: '30' })[0]?.note).toMatch(/set HTTP_REQUEST_TIMEOUT_MS=30000 instead$/)
    // Token lifetimes as Go durations or as seconds.
    expect(legacyVariables({ JWT_EXPIRATION: '15m' })[0]?.note).toMatch(/set ACCESS_TOKEN_TTL_S=900 instead$/)
    expect(legacyVariables({ JWT_EXPIRATION: '900' })[0]?.note).toMatch(/set ACCESS_TOKEN_TTL_S=900 instead$/)
    expect(legacyVariables({ JWT_REFRESH_EXPIRATION: '168h' })[0]?.note).toMatch(/set REFRESH_TOKEN_TTL_S=604800 instead$/)
    expect(legacyVariables({ JWT_EXPIRATION: 'a while' })[0]?.note).toMatch(/; set ACCESS_TOKEN_TTL_S instead$/)
  })

  it('keeps warning about a variable without an equivalent value, and never suggests one', () => {
    expect(legacyVariables({ RATE_LIMIT: '100' })[0]?.note).toMatch(/; set CHANNEL_CLIENT_FRAMES_PER_S instead$/)
    expect(legacyVariables({ RATE_LIMIT: '20', CHANNEL_CLIENT_FRAMES_PER_S: '20' })[0]?.note).toMatch(
      /; CHANNEL_CLIENT_FRAMES_PER_S is set, and that one is used$/,
    )
    // Not a Go duration: no suggestion either.
    expect(legacyVariables({ RECONNECT_TIMEOUT: 'soon' })[0]?.note).toMatch(/; set CHANNEL_HISTORY_MAX_AGE_S instead$/)
  })

  it('never shows the value of a variable that may hold a password or a secret', () => {
    const dsn = 'postgres://user:hunter2hunter2@db:5432/servicedb?sslmode=disable'
    const warned = legacyVariables({ DATABASE_DSN: dsn, TIMESCALE_URL: dsn, REGISTRATION_SECRET: 'a-secret-of-the-collectors' })
    expect(warned.map((w) => [w.name, w.replacement])).toEqual([
      ['DATABASE_DSN', 'DATABASE_URL'],
      ['TIMESCALE_URL', 'DATABASE_URL'],
      ['REGISTRATION_SECRET', 'COLLECTOR_REGISTRATION_SECRET'],
    ])
    for (const w of warned) {
      expect(w.note).not.toContain('hunter2')
      expect(w.note).not.toContain('a-secret-of-the-collectors')
      expect(w.note).toMatch(/set \w+ instead$/)
    }
  })

  it('lists one warning per old variable, in a fixed order', () => {
    const all = Object.fromEntries([...LEGACY_REPLACEMENTS.keys()].map((name) => [name, 'x']))
    const warned = legacyVariables(all)
    expect(warned.map((w) => w.name)).toEqual([...LEGACY_REPLACEMENTS.keys()])
    for (const w of warned) {
      expect(w.replacement).toBe(LEGACY_REPLACEMENTS.get(w.name))
      expect(w.note).toContain(w.replacement)
    }
  })

  it('reaches loadConfig, which reads the old variable no further', () => {
    const c = loadConfig({ CHATBOX_PATH_PREFIX: '/chatbox', PORT: '9999' })
    expect(c.pathPrefix).toBe('')
    expect(c.port).toBe(8080)
    expect(c.legacyVariables.map((w) => w.name)).toEqual(['PORT', 'CHATBOX_PATH_PREFIX'])
  })
})

describe('goDurationSeconds', () => {
  it('reads Go durations', () => {
    expect(goDurationSeconds('15m')).toBe(900)
    expect(goDurationSeconds('1h30m')).toBe(5400)
    expect(goDurationSeconds('120s')).toBe(120)
    expect(goDurationSeconds('1500ms')).toBe(2)
    expect(goDurationSeconds('1.5h')).toBe(5400)
  })

  it('refuses what is not one', () => {
    for (const bad of ['', '15', 'm', '15 m', '15x', '-5m', '5m junk']) expect(goDurationSeconds(bad), bad).toBeUndefined()
  })
})
