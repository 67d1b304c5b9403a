import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config.js'

describe('HTTP server configuration', () => {
  it('has the documented defaults', () => {
    expect(loadConfig({}).http).toEqual({
      requestTimeoutMs: 120_000,
      headersTimeoutMs: 30_000,
      keepAliveTimeoutMs: 72_000,
      timeoutCheckIntervalMs: 1000,
      jsonMaxBodyBytes: 65_536,
    })
  })

  it('refuses a headers timeout longer than the request timeout (Node would not start)', () => {
    const load = () => loadConfig({ HTTP_REQUEST_TIMEOUT_MS: '10000', HTTP_HEADERS_TIMEOUT_MS: '20000' })
    expect(load).toThrow(ConfigError)
    expect(load).toThrow('HTTP_HEADERS_TIMEOUT_MS must not exceed HTTP_REQUEST_TIMEOUT_MS (10000)')
  })

  it('takes any headers timeout when requests have none (0), and an equal one', () => {
    expect(loadConfig({ HTTP_REQUEST_TIMEOUT_MS: '0', HTTP_HEADERS_TIMEOUT_MS: '900000' }).http.headersTimeoutMs).toBe(900_000)
    expect(loadConfig({ HTTP_REQUEST_TIMEOUT_MS: '5000', HTTP_HEADERS_TIMEOUT_MS: '5000' }).http.requestTimeoutMs).toBe(5000)
  })

  it('refuses a JSON body limit that is not a positive integer', () => {
    expect(() => loadConfig({ HTTP_JSON_MAX_BODY_BYTES: '0' })).toThrow('HTTP_JSON_MAX_BODY_BYTES')
  })
})
