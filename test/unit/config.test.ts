import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config.js'

describe('loadConfig', () => {
  it('gives the documented defaults with an empty environment', () => {
    const c = loadConfig({})
    expect(c.env).toBe('development')
    expect(c.host).toBe('0.0.0.0')
    expect(c.port).toBe(8080)
    expect(c.pathPrefix).toBe('')
    expect(c.dataDir).toBe('./data')
    expect(c.jwtSecret).toBeUndefined()
    expect(c.databaseUrl).toBeUndefined()
    expect(c.influx).toBeUndefined()
    expect(c.mqtt).toEqual({
      enabled: true,
      port: 1883,
      portExplicit: false,
      forwardTimeoutMs: 30_000,
      maxPacketBytes: 256 * 1024,
      connectTimeoutMs: 10_000,
      maxConnectionsPerAddress: 1000,
      auth: { maxFailuresPerAddress: 20, windowS: 60 },
      keepaliveMaxS: 3600,
    })
    expect(c.nats).toEqual({ connectTimeoutMs: 5000, publishTimeoutMs: 5000 })
    expect(c.allowedOrigins).toBeUndefined()
    expect(c.maxConnections).toBe(10_000)
    expect(c.batch).toEqual({
      maxLines: 10_000,
      maxBytes: 8 * 1024 * 1024,
      lingerMs: 5,
      maxInflight: 4,
      maxQueuedBytes: 128 * 1024 * 1024,
    })
    expect(c.ws.maxFrameBytes).toBe(1_048_576)
    expect(c.ws.authTimeoutMs).toBe(10_000)
    expect(c.ws.maxHeldBytes).toBe(8 * 1024 * 1024)
    expect(c.ws.pingIntervalMs).toBe(25_000)
    expect(c.oidc).toBeUndefined()
    expect(c.channels).toEqual({
      historySize: 100,
      historyMaxAgeS: 3600,
      maxBufferedBytes: 1024 * 1024,
      maxConnectionsPerUser: 20,
      eventMaxBytes: 64 * 1024,
      presenceTtlMs: 30_000,
      maxClientFrameBytes: 4096,
      clientFramesPerS: 20,
    })
    expect(c.httpWrite.maxInflightBytes).toBe(256 * 1024 * 1024)
    expect(c.jwt).toEqual({ clockSkewS: 30, streamTokenTtlS: 86_400, issuer: 'matt-collector', revocationCheckMs: 2000 })
    expect(c.sinkTimeoutMs).toBe(10_000)
    expect(c.shutdownGraceMs).toBe(25_000)
  })

  it('coerces numbers and booleans and trims lists', () => {
    const c = loadConfig({
      SERVER_PORT: '0',
      MQTT_ENABLED: 'false',
      MQTT_PORT: '0',
      BATCH_MAX_LINES: '1',
      ALLOWED_ORIGINS: 'https://a.example, https://b.example',
      PATH_PREFIX: '/collector',
      INFLUXDB_URL: 'http://127.0.0.1:8181',
      INFLUXDB_DATABASE: 'telemetry',
      INFLUXDB_TOKEN: 'tok',
    })
    expect(c.port).toBe(0)
    expect(c.mqtt).toMatchObject({ enabled: false, port: 0, portExplicit: true })
    expect(c.batch.maxLines).toBe(1)
    expect(c.allowedOrigins).toEqual(['https://a.example', 'https://b.example'])
    expect(c.pathPrefix).toBe('/collector')
    expect(c.influx).toEqual({ url: 'http://127.0.0.1:8181', token: 'tok', database: 'telemetry', gzip: false, gzipLevel: 1 })
    expect(loadConfig({ INFLUXDB_URL: 'http://127.0.0.1:8181', INFLUXDB_DATABASE: 'x', INFLUXDB_GZIP: 'true' }).influx?.gzip).toBe(true)
    expect(loadConfig({ INFLUXDB_URL: 'http://127.0.0.1:8181', INFLUXDB_DATABASE: 'x', INFLUXDB_GZIP_LEVEL: '0' }).influx?.gzipLevel).toBe(0)
  })

  it('treats * in ALLOWED_ORIGINS as any origin', () => {
    expect(loadConfig({ ALLOWED_ORIGINS: '*' }).allowedOrigins).toBeUndefined()
  })

  it.each([
    [{ SERVER_PORT: 'eighty' }, 'SERVER_PORT'],
    [{ SERVER_PORT: '70000' }, 'SERVER_PORT'],
    [{ PATH_PREFIX: 'api' }, 'PATH_PREFIX'],
    [{ PATH_PREFIX: '/api/' }, 'PATH_PREFIX'],
    [{ BATCH_MAX_LINES: '0' }, 'BATCH_MAX_LINES'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ MQTT_ENABLED: 'maybe' }, 'MQTT_ENABLED'],
    [{ INFLUXDB_URL: 'not a url', INFLUXDB_DATABASE: 'x' }, 'INFLUXDB_URL'],
    [{ INFLUXDB_URL: 'http://127.0.0.1:8181' }, 'INFLUXDB_DATABASE'],
    [{ INFLUXDB_GZIP_LEVEL: '10' }, 'INFLUXDB_GZIP_LEVEL'],
    [{ INFLUXDB_GZIP_LEVEL: '1.5' }, 'INFLUXDB_GZIP_LEVEL'],
    [{ SINK_TIMEOUT_MS: '30000' }, 'SHUTDOWN_GRACE_MS must be larger than SINK_TIMEOUT_MS (30000)'],
    [{ SHUTDOWN_GRACE_MS: '10000' }, 'SHUTDOWN_GRACE_MS'],
    [{ WS_MAX_HELD_BYTES: '0' }, 'WS_MAX_HELD_BYTES'],
    [{ ADMIN_FEED_INTERVAL_MS: '20000' }, 'ADMIN_FEED_INTERVAL_MS'],
    [{ REDIS_URL: 'http://127.0.0.1:6379' }, 'REDIS_URL'],
    [{ REDIS_URL: 'redis://a b' }, 'REDIS_URL'],
    [{ REDIS_URL: 'redis://127.0.0.1:6379/abc' }, 'REDIS_URL'],
    [{ REDIS_URL: '127.0.0.1:6379' }, 'REDIS_URL'],
  ])('refuses %o naming %s', (env, variable) => {
    expect(() => loadConfig(env)).toThrow(ConfigError)
    expect(() => loadConfig(env)).toThrow(variable)
  })

  it('requires a JWT_SECRET of at least 32 characters in production', () => {
    const base = { NODE_ENV: 'production', ALLOWED_ORIGINS: 'https://app.example' }
    expect(() => loadConfig(base)).toThrow(/JWT_SECRET is required in production and must be at least 32 characters/)
    expect(() => loadConfig({ ...base, JWT_SECRET: 'short' })).toThrow(/JWT_SECRET/)
    expect(loadConfig({ ...base, JWT_SECRET: 'x'.repeat(32) }).jwtSecret).toBe('x'.repeat(32))
  })

  it('requires ALLOWED_ORIGINS in production', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(40) })).toThrow(/ALLOWED_ORIGINS/)
  })

  it('refuses a NATS_URL naming no server, without showing its credentials', () => {
    expect(loadConfig({ NATS_URL: 'nats://user:secret@127.0.0.1:4222,127.0.0.1:4223' }).natsUrl).toBe(
      'nats://user:secret@127.0.0.1:4222,127.0.0.1:4223',
    )
    expect(() => loadConfig({ NATS_URL: ' , ' })).toThrow(/NATS_URL names no server/)
    let message = ''
    try {
      loadConfig({ NATS_URL: 'nats://user:secret@:bad port' })
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError)
      message = (err as Error).message
    }
    expect(message).toMatch(/NATS_URL .* is not a server URL/)
    expect(message).not.toContain('secret')
  })

  it('takes the OIDC issuer from OIDC_ISSUER_URL or its alias KINDE_ISSUER_URL, refusing two different ones', () => {
    const kinde = 'https://example.kinde.com'
    expect(loadConfig({ KINDE_ISSUER_URL: kinde }).oidc).toEqual({
      issuer: kinde,
      audience: undefined,
      jwksUrl: undefined,
      jwksMaxAgeS: 86_400,
      jwksCooldownMs: 30_000,
      timeoutMs: 5000,
    })
    expect(loadConfig({ OIDC_ISSUER_URL: kinde, KINDE_ISSUER_URL: kinde, OIDC_AUDIENCE: 'api' }).oidc).toMatchObject({
      issuer: kinde,
      audience: 'api',
    })
    expect(() => loadConfig({ OIDC_ISSUER_URL: kinde, KINDE_ISSUER_URL: 'https://other.kinde.com' })).toThrow(/KINDE_ISSUER_URL/)
    expect(() => loadConfig({ OIDC_ISSUER_URL: 'not a url' })).toThrow(/OIDC_ISSUER_URL/)
  })

  it('requires DEVICE_SESSION_STALE_AFTER_MS to exceed the heartbeat', () => {
    expect(() => loadConfig({ DEVICE_SESSION_HEARTBEAT_MS: '5000', DEVICE_SESSION_STALE_AFTER_MS: '5000' })).toThrow(
      /DEVICE_SESSION_STALE_AFTER_MS must be larger than DEVICE_SESSION_HEARTBEAT_MS/,
    )
  })
})
