import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Db } from './db.js'

declare module 'fastify' {
  interface FastifyInstance {
    db: Db
  }
}

/** The metadata database, opened (and migrated) by buildApp; closed last when the app owns it. */
export default fp(
  async (app: FastifyInstance, opts: { db: Db; owned: boolean }) => {
    app.decorate('db', opts.db)
    if (!opts.owned) return
    app.addHook('onClose', async () => {
      await opts.db.close()
    })
  },
  { name: 'db' },
)
