import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorBody, limitOffset, pageOf, pageQuery } from '../api-schemas.js'
import type { AuditLog } from '../audit/audit-log.js'
import type { UserPrincipal } from '../auth/guards.js'
import type { Bus } from '../bus/bus.js'
import type { Db } from '../db/index.js'
import { notFound } from '../errors.js'
import { security } from '../observability/openapi.js'
import { hashDevicePassword, newDevicePassword } from './credentials.js'
import type { DevicesRepo } from './repo.js'
import { createDeviceBody, deviceCreated, deviceCredentials, deviceParams, deviceView, toDeviceView } from './schemas.js'
import { DEVICE_REVOKED_SUBJECT, type DeviceRevokedEvent } from './types.js'

const refusals = { 401: errorBody, 403: errorBody }
const noSuchDevice = () => notFound('no such device')

export interface DeviceRoutesOptions {
  prefix: string
  db: Pick<Db, 'transaction'>
  repo: Pick<DevicesRepo, 'insert' | 'find' | 'list' | 'rotate' | 'markDeleted'>
  audit: Pick<AuditLog, 'record'>
  bus: Pick<Bus, 'publish'>
}

/** Who acted, for the audit log: the API token itself when one was used. */
const actorOf = (p: UserPrincipal): string => (p.via === 'api_token' && p.apiTokenId ? `api_token:${p.apiTokenId}` : `user:${p.id}`)

/**
 * `/devices` (docs/API.md section 8; no /api/v1 prefix, as the contract has it):
 * provisioning of MQTT devices. Operators and admins (or an API token with
 * `devices:write`) change devices; viewers and up read them.
 */
export function deviceRoutes(app: FastifyInstance, opts: DeviceRoutesOptions): void {
  const r = app.withTypeProvider<ZodTypeProvider>()
  const { db, repo, audit, bus } = opts
  const base = `${opts.prefix}/devices`
  const write = app.requireRole('operator', { scope: 'devices:write' })
  const read = app.requireRole('viewer', { scope: 'devices:write' })

  // After the commit: every instance (this one too) closes the device's sessions. A bus
  // failure must not undo a committed change; the broker's periodic generation check
  // closes the sessions anyway.
  const announce = (event: DeviceRevokedEvent, log: FastifyBaseLogger) => {
    try {
      bus.publish(DEVICE_REVOKED_SUBJECT, Buffer.from(JSON.stringify(event)))
    } catch (err) {
      log.warn({ err, device_id: event.id, reason: event.reason }, 'could not announce a device revocation on the bus')
    }
  }

  r.post(
    base,
    {
      schema: {
        summary: 'Provision a device; its MQTT password is in this answer only',
        tags: ['devices'],
        security: security.userOrApiToken,
        body: createDeviceBody,
        response: { 200: deviceCreated, 400: errorBody, ...refusals },
      },
      onRequest: write,
    },
    async (request) => {
      const principal = request.principal as UserPrincipal
      const password = newDevicePassword()
      const device = await db.transaction(async (tx) => {
        const made = await repo.insert({ id: randomUUID(), type: request.body.type, passwordHash: hashDevicePassword(password) }, tx)
        await audit.record(
          { action: 'device.create', actor: actorOf(principal), target: `device:${made.id}`, ip: request.ip, details: { type: made.type } },
          tx,
        )
        return made
      })
      const view = toDeviceView(device)
      return { id: view.id, type: view.type, mqtt_user: view.mqtt_user, mqtt_password: password, created_at: view.created_at }
    },
  )

  r.get(
    base,
    {
      schema: {
        summary: 'List devices, newest first (never their passwords)',
        tags: ['devices'],
        security: security.userOrApiToken,
        querystring: pageQuery,
        response: { 200: pageOf(deviceView), 400: errorBody, ...refusals },
      },
      onRequest: read,
    },
    async (request) => {
      const q = request.query
      const { devices, total } = await repo.list(...limitOffset(q))
      return { data: devices.map(toDeviceView), page: q.page, page_size: q.page_size, total }
    },
  )

  r.get(
    `${base}/:id`,
    {
      schema: {
        summary: 'One device',
        tags: ['devices'],
        security: security.userOrApiToken,
        params: deviceParams,
        response: { 200: deviceView, ...refusals, 404: errorBody },
      },
      onRequest: read,
    },
    async (request) => {
      const device = await repo.find(request.params.id)
      if (device === undefined) throw noSuchDevice()
      return toDeviceView(device)
    },
  )

  r.delete(
    `${base}/:id`,
    {
      schema: {
        summary: 'Delete a device: it can no longer connect, and its live MQTT sessions are closed',
        tags: ['devices'],
        security: security.userOrApiToken,
        params: deviceParams,
        response: { 204: z.null().describe('Deleted'), ...refusals, 404: errorBody },
      },
      onRequest: write,
    },
    async (request, reply) => {
      const principal = request.principal as UserPrincipal
      await db.transaction(async (tx) => {
        const gone = await repo.markDeleted(request.params.id, tx)
        if (gone === undefined) throw noSuchDevice()
        await audit.record(
          { action: 'device.delete', actor: actorOf(principal), target: `device:${gone.id}`, ip: request.ip, details: { type: gone.type } },
          tx,
        )
      })
      announce({ id: request.params.id, reason: 'deleted' }, request.log)
      return reply.code(204).send(null)
    },
  )

  r.post(
    `${base}/:id/credentials`,
    {
      schema: {
        summary: 'Rotate the MQTT password: the old one stops working and live sessions are closed',
        tags: ['devices'],
        security: security.userOrApiToken,
        params: deviceParams,
        response: { 200: deviceCredentials, ...refusals, 404: errorBody },
      },
      onRequest: write,
    },
    async (request) => {
      const principal = request.principal as UserPrincipal
      const password = newDevicePassword()
      const device = await db.transaction(async (tx) => {
        const rotated = await repo.rotate(request.params.id, hashDevicePassword(password), tx)
        if (rotated === undefined) throw noSuchDevice()
        await audit.record(
          { action: 'device.rotate', actor: actorOf(principal), target: `device:${rotated.id}`, ip: request.ip, details: { type: rotated.type } },
          tx,
        )
        return rotated
      })
      announce({ id: device.id, reason: 'rotated', generation: device.generation }, request.log)
      return { id: device.id, mqtt_user: device.id, mqtt_password: password }
    },
  )
}
