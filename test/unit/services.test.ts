import { createServer, type Server } from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { requireService, tcpReachable } from '../helpers/services.js'

// The rule every service-backed test relies on: an unreachable service skips its tests on a
// developer's machine, and fails the run under CI=true, where every test must run.

function listen(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((s) => s.destroy())
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })
}

const portOf = (server: Server) => (server.address() as { port: number }).port
const closeServer = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()))

describe('requireService', () => {
  afterEach(() => vi.restoreAllMocks())

  it('runs the tests of a reachable service, in CI or not', async () => {
    expect(await requireService('thing', true, false)).toBe(true)
    expect(await requireService('thing', true, true)).toBe(true)
  })

  it('skips the tests of an unreachable service outside CI, saying why', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    expect(await requireService('PostgreSQL at 127.0.0.1:1', false, false)).toBe(false)
    expect(warn).toHaveBeenCalledWith('skipping tests that need PostgreSQL at 127.0.0.1:1: not reachable')
  })

  it('fails the run for an unreachable service under CI=true', async () => {
    await expect(requireService('PostgreSQL at 127.0.0.1:1', false, true)).rejects.toThrow(
      'PostgreSQL at 127.0.0.1:1 is not reachable, and CI=true requires it',
    )
  })
})

describe('tcpReachable', () => {
  it('is true for a listening port and false once nothing listens there', async () => {
    const server = await listen()
    const port = portOf(server)
    expect(await tcpReachable('127.0.0.1', port)).toBe(true)
    await closeServer(server)
    // A closed loopback port refuses at once (ECONNREFUSED): no timeout is involved.
    expect(await tcpReachable('127.0.0.1', port)).toBe(false)
  })
})
