import Fastify, { type FastifyInstance } from 'fastify'
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod'
import jwt from 'jsonwebtoken'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import accessPlugin from '../../src/auth/access-plugin.js'
import authPlugin from '../../src/auth/plugin.js'
import type { Role, Scope } from '../../src/auth/roles.js'
import dbPlugin from '../../src/db/plugin.js'
import { UsersRepo } from '../../src/users/repo.js'
import { TEST_SECRET } from '../helpers/app.js'
import { engines, type TestDb } from '../helpers/db.js'

/** Signed with JWT_SECRET: what the backend could make. */
const sign = (claims: Record<string, unknown>, expiresIn = 300) => jwt.sign(claims, TEST_SECRET, { expiresIn })
const userClaims = (id: string, role: Role) => ({
  user_id: id,
  username: `u-${role}`,
  email: `${role}@example.com`,
  role,
  org: 'o',
  org_id: '1',
  sub: `user:${id}`,
})

// Each guard takes its own kind of token and refuses every other kind, on both engines
// (API tokens are looked up in the database).
describe.each(await engines())('route guards on $name', (engine) => {
  let testDb: TestDb
  let app: FastifyInstance
  const ids: Record<Role, string> = {
    admin: '00000000-0000-4000-8000-00000000000a',
    operator: '00000000-0000-4000-8000-00000000000b',
    viewer: '00000000-0000-4000-8000-00000000000c',
  }
  const access: Partial<Record<Role, string>> = {}
  const apiToken = async (role: Role, scopes: Scope[]) =>
    (await app.apiTokens.create({ userId: ids[role], name: 'guard test', scopes, createdBy: ids.admin })).token

  /** Signed with the gateway's own key, as login and collector registration do. */
  const own = (type: 'access' | 'refresh' | 'collector', claims: Record<string, unknown>) => app.tokens.sign(type, claims, 300).token
  const tokens = {
    access: () => access.operator as string,
    refresh: () => own('refresh', { ...userClaims(ids.operator, 'operator'), jti: crypto.randomUUID() }),
    stream: () => sign({ user: 'john', user_id: '1', org: 'acme', org_id: '2', account_id: '3', type: 'stream' }),
    collector: () => own('collector', { collector_id: 'c-1', hostname: 'db1', sub: 'collector:c-1' }),
    backend: () => sign({ userId: '123', email: 'b@example.com' }),
  }

  const call = async (url: string, token?: string) => {
    const res = await app.inject({ method: 'GET', url, headers: token ? { authorization: `Bearer ${token}` } : {} })
    return { status: res.statusCode, json: res.json() as Record<string, any> }
  }

  beforeAll(async () => {
    testDb = await engine.create()
    const repo = new UsersRepo(testDb.db)
    for (const role of ['admin', 'operator', 'viewer'] as const) {
      await repo.insert({ id: ids[role], username: `u-${role}`, email: `${role}@example.com`, org: 'o', org_id: '1', password_hash: 'x', role })
    }
    app = Fastify()
    app.setValidatorCompiler(validatorCompiler)
    app.setSerializerCompiler(serializerCompiler)
    await app.register(dbPlugin, { db: testDb.db, owned: false })
    await app.register(authPlugin, {
      prefix: '',
      secret: TEST_SECRET,
      clockSkewS: 30,
      streamTokenTtlS: 3600,
      issuer: 'matt-collector',
      maxOwnTokenTtlS: 86_400,
    })
    await app.register(accessPlugin)
    app.get('/viewer', { onRequest: app.requireRole('viewer') }, async (r) => r.principal)
    app.get('/operator', { onRequest: app.requireRole('operator') }, async (r) => r.principal)
    app.get('/admin', { onRequest: app.requireRole('admin') }, async (r) => r.principal)
    app.get('/devices', { onRequest: app.requireRole('operator', { scope: 'devices:write' }) }, async (r) => r.principal)
    app.get('/collector', { onRequest: app.requireCollector() }, async (r) => r.collectorPrincipal)
    app.get('/stream', { onRequest: app.requireStream() }, async (r) => r.streamPrincipal)
    await app.ready()
    for (const role of ['admin', 'operator', 'viewer'] as const) access[role] = own('access', userClaims(ids[role], role))
  })
  afterAll(async () => {
    await app?.close()
    await testDb?.drop()
  })

  it('requireRole takes access tokens of that role or above, and refuses lower roles with 403', async () => {
    expect((await call('/viewer', access.viewer)).json).toMatchObject({ id: ids.viewer, role: 'viewer', via: 'access' })
    expect((await call('/operator', access.admin)).status).toBe(200)
    expect((await call('/operator', access.viewer)).status).toBe(403)
    expect((await call('/admin', access.operator)).status).toBe(403)
    expect((await call('/admin', access.admin)).status).toBe(200)
  })

  it.each(['/viewer', '/collector', '/stream'])('%s refuses a missing, malformed, expired or forged token with 401', async (url) => {
    expect((await call(url)).status).toBe(401)
    expect((await call(url, 'garbage')).status).toBe(401)
    expect((await call(url, app.tokens.sign('access', userClaims(ids.admin, 'admin'), -120).token)).json.message).toBe('token expired')
    expect((await call(url, jwt.sign({ type: 'stream', user: 'x', org: 'y' }, 'f'.repeat(40), { expiresIn: 60 }))).json).toMatchObject({
      code: 'invalid_token',
      message: 'invalid signature',
    })
  })

  it.each([
    ['/viewer', 'access', userClaims('00000000-0000-4000-8000-00000000000a', 'admin')],
    ['/collector', 'collector', { collector_id: 'c-1', hostname: 'db1' }],
  ] as const)('%s refuses a %s token signed with JWT_SECRET: the shared secret mints no user or collector', async (url, type, claims) => {
    const forged = sign({ ...claims, type, iss: 'matt-collector' })
    expect(await call(url, forged)).toMatchObject({
      status: 401,
      json: { code: 'invalid_token', message: `wrong signing key: ${type} tokens are signed by the gateway's own key` },
    })
  })

  it('/stream refuses a stream token signed with the gateway key', async () => {
    const token = jwt.sign(
      { type: 'stream', user: 'john', org: 'acme', iss: 'matt-collector' },
      app.signingKeys.current().privateKey,
      { algorithm: 'ES256', keyid: app.signingKeys.current().kid, expiresIn: 60 },
    )
    expect((await call('/stream', token)).json).toMatchObject({
      code: 'invalid_token',
      message: 'wrong signing key: a stream token is not signed by the gateway',
    })
  })

  it.each([
    ['/viewer', ['refresh', 'stream', 'collector', 'backend']],
    ['/collector', ['access', 'refresh', 'stream', 'backend']],
    ['/stream', ['access', 'refresh', 'collector', 'backend']],
  ] as const)('%s refuses tokens of the wrong type with 401', async (url, wrong) => {
    for (const kind of wrong) {
      const res = await call(url, tokens[kind]())
      expect(res.status, `${url} with a ${kind} token`).toBe(401)
      expect(res.json.message).toMatch(/^wrong token type: expected /)
    }
  })

  it('the collector and stream guards expose the token identity', async () => {
    expect((await call('/collector', tokens.collector())).json).toMatchObject({ collectorId: 'c-1', hostname: 'db1' })
    expect((await call('/stream', tokens.stream())).json).toMatchObject({ user: 'john', org: 'acme', user_id: '1' })
  })

  it('an API token acts as its owner within its scopes', async () => {
    // The right scope and an owner of the role: allowed, as that owner.
    const ok = await call('/devices', await apiToken('operator', ['devices:write']))
    expect(ok.status).toBe(200)
    expect(ok.json).toMatchObject({ id: ids.operator, role: 'operator', via: 'api_token', scopes: ['devices:write'] })
    // Another scope: refused.
    const wrongScope = await call('/devices', await apiToken('admin', ['channels:publish', 'ingest:write']))
    expect(wrongScope.status).toBe(403)
    expect(wrongScope.json.message).toContain('devices:write')
    // The right scope, but an owner without the role: refused.
    expect((await call('/devices', await apiToken('viewer', ['devices:write']))).status).toBe(403)
    // Routes that name no scope take no API token at all.
    expect((await call('/viewer', await apiToken('admin', ['devices:write', 'ingest:write', 'channels:publish']))).status).toBe(403)
    // Unknown, and not API tokens where only JWTs go.
    expect((await call('/devices', `mc_${'x'.repeat(43)}`)).status).toBe(401)
    expect((await call('/collector', await apiToken('admin', ['devices:write']))).status).toBe(401)
    expect((await call('/stream', await apiToken('admin', ['ingest:write']))).status).toBe(401)
  })
})
