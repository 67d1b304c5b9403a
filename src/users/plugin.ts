import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { keyRoutes } from '../auth/key-routes.js'
import { LoginLimiter } from '../auth/login-limiter.js'
import { PasswordHasher } from '../auth/passwords.js'
import type { Config, UsersConfig } from '../config.js'
import { authRoutes } from './auth-routes.js'
import { RefreshTokens } from './refresh-tokens.js'
import { UsersRepo } from './repo.js'
import { UsersService } from './service.js'
import { SessionService } from './sessions.js'
import { tokenRoutes } from './token-routes.js'
import { userRoutes } from './user-routes.js'

declare module 'fastify' {
  interface FastifyInstance {
    users: UsersService
    /** The one hasher (its slots and wait queue bound every password check of this process). */
    passwordHasher: PasswordHasher
  }
}

export interface UsersPluginOptions {
  prefix: string
  env: Config['env']
  users: UsersConfig
}

/**
 * Users, login and refresh, API tokens (docs/API.md sections 3 and 7). Creates the
 * first admin when the database has no user.
 */
export default fp(
  async (app: FastifyInstance, opts: UsersPluginOptions) => {
    const cfg = opts.users
    const hasher = new PasswordHasher({
      scryptLog2N: cfg.password.scryptLog2N,
      scryptP: cfg.password.scryptP,
      maxConcurrent: cfg.password.maxConcurrent,
      maxQueue: cfg.password.maxQueue,
    })
    const repo = new UsersRepo(app.db)
    const refreshTokens = new RefreshTokens()
    const users = new UsersService({ db: app.db, users: repo, refreshTokens, hasher, audit: app.audit })
    const sessions = new SessionService({
      db: app.db,
      users: repo,
      refreshTokens,
      hasher,
      tokens: app.tokens,
      audit: app.audit,
      limiter: new LoginLimiter(cfg.login),
      accessTokenTtlS: cfg.accessTokenTtlS,
      refreshTokenTtlS: cfg.refreshTokenTtlS,
      log: app.log,
    })
    app.decorate('users', users)
    app.decorate('passwordHasher', hasher)

    const boot = await users.bootstrap(cfg.admin, { production: opts.env === 'production' })
    if (boot.created && boot.generatedPassword !== undefined) {
      // Shown once, here; only its hash is kept.
      app.log.warn(
        { username: boot.user.username, password: boot.generatedPassword },
        'created the first admin user with a generated password: note it now, it is not shown again',
      )
    } else if (boot.created) {
      app.log.info({ username: boot.user.username }, 'created the first admin user')
    }

    authRoutes(app, { prefix: opts.prefix, sessions })
    keyRoutes(app, { prefix: opts.prefix, keys: app.signingKeys, audit: app.audit })
    userRoutes(app, { prefix: opts.prefix, users, revocations: app.revocations })
    tokenRoutes(app, {
      prefix: opts.prefix,
      db: app.db,
      apiTokens: app.apiTokens,
      users: repo,
      audit: app.audit,
      revocations: app.revocations,
    })
  },
  { name: 'users', dependencies: ['db', 'auth', 'access', 'audit', 'revocation'] },
)
