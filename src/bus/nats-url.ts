import { BusError } from './bus.js'

export interface ParsedNatsUrl {
  servers: string[]
  user?: string
  pass?: string
  token?: string
  tls: boolean
  /** The servers as shown in logs and /readyz: no credentials. */
  display: string
}

/**
 * NATS_URL → nats.js options. nats.js takes credentials as options, not inside server
 * URLs, so they are lifted out here (the first server carrying any wins: one connection
 * has one identity). `nats://token@host` is a token; `nats://user:pass@host` a user.
 */
export function parseNatsUrl(raw: string): ParsedNatsUrl {
  const out: ParsedNatsUrl = { servers: [], tls: false, display: '' }
  for (const part of raw.split(',')) {
    const item = part.trim()
    if (item === '') continue
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(item) ? item : `nats://${item}`
    let u: URL
    try {
      u = new URL(withScheme)
    } catch {
      throw new BusError('refused', `NATS_URL: "${item.replace(/\/\/[^@/]*@/, '//***@')}" is not a server URL`)
    }
    if (u.protocol === 'tls:') out.tls = true
    const user = decodeURIComponent(u.username)
    const pass = decodeURIComponent(u.password)
    if (user !== '' && out.user === undefined && out.token === undefined) {
      if (u.password === '') out.token = user
      else Object.assign(out, { user, pass })
    }
    out.servers.push(`${u.protocol}//${u.host}`)
  }
  if (out.servers.length === 0) throw new BusError('refused', 'NATS_URL names no server')
  out.display = out.servers.join(',')
  return out
}
