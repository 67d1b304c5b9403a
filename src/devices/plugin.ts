import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { DeviceDirectory } from './types.js'

declare module 'fastify' {
  interface FastifyInstance {
    devices: DeviceDirectory
  }
}

export interface DevicesPluginOptions {
  prefix: string
}

// SKELETON (the devices helper replaces this file).
export default fp(
  async (app: FastifyInstance, _opts: DevicesPluginOptions) => {
    app.decorate('devices', {
      authenticate: async () => ({ ok: false, reason: 'unknown' }) as const,
      generations: async () => new Map<string, number>(),
      sessionOpened: () => {},
      sessionClosed: () => {},
    } satisfies DeviceDirectory)
  },
  { name: 'devices', dependencies: ['db', 'access', 'audit', 'bus'] },
)
