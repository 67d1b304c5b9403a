import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config.js'

describe('loadConfig: users, tokens and login limits', () => {
  it('gives the documented defaults', () => {
    const c = loadConfig({})
    expect(c.trustProxy).toBe(false)
    expect(c.users).toEqual({
      admin: { username: 'admin', password: undefined, email: 'admin@localhost', org: 'default' },
      accessTokenTtlS: 900,
      refreshTokenTtlS: 86_400,
      login: { windowS: 900, maxFailuresPerUsername: 10, maxFailuresPerIp: 50 },
      password: { scryptLog2N: 15, scryptP: 3, maxConcurrent: 2, maxQueue: 64 },
    })
  })

  it('reads the admin and the tunables', () => {
    const c = loadConfig({
      ADMIN_USERNAME: 'root',
      ADMIN_PASSWORD: 'long enough',
      ADMIN_EMAIL: 'root@example.com',
      ADMIN_ORG: 'Acme',
      LOGIN_MAX_FAILURES_PER_USERNAME: '3',
      PASSWORD_SCRYPT_LOG2_N: '16',
      TRUST_PROXY: 'true',
    })
    expect(c.users.admin).toEqual({ username: 'root', password: 'long enough', email: 'root@example.com', org: 'Acme' })
    expect(c.users.login.maxFailuresPerUsername).toBe(3)
    expect(c.users.password.scryptLog2N).toBe(16)
    expect(c.trustProxy).toBe(true)
  })

  it.each([
    [{ ADMIN_PASSWORD: 'short' }, 'ADMIN_PASSWORD'],
    [{ PASSWORD_SCRYPT_LOG2_N: '4' }, 'PASSWORD_SCRYPT_LOG2_N'],
    [{ LOGIN_MAX_FAILURES_PER_IP: '0' }, 'LOGIN_MAX_FAILURES_PER_IP'],
    [{ ACCESS_TOKEN_TTL_S: '-1' }, 'ACCESS_TOKEN_TTL_S'],
  ])('refuses %o naming %s', (env, variable) => {
    expect(() => loadConfig(env)).toThrow(ConfigError)
    expect(() => loadConfig(env)).toThrow(variable)
  })
})
