/**
 * The collectors scenario's fleet: `count` collectors registered with the shared secret
 * (`POST /api/v1/collectors/register`, docs/API.md section 7) on a gateway of their own, so
 * that key generation is in no measured run. The database is shared by every gateway of a
 * bench run and the tokens are signed with the bench's JWT secret: the fleet stays valid on
 * the fresh gateways the scenario measures.
 */
import type { CollectorCredentials } from './collectors-payload.js'

/**
 * Registrations under way at once: each generates an RSA-2048 key pair on libuv's thread
 * pool (4 threads by default); more would only queue there, on a machine of 2 cores.
 */
const REGISTER_CONCURRENCY = 4
/** One registration: key generation takes well under a second, unless the machine is swamped. */
const REGISTER_TIMEOUT_MS = 60_000

export type Registered = { ok: true; collectors: CollectorCredentials[] } | { ok: false; reason: string }

/** Registers `count` collectors named bench-collector-<n> on hosts bench-db-<n>. */
export async function registerCollectors(port: number, secret: string, count: number): Promise<Registered> {
  const collectors: CollectorCredentials[] = new Array(count)
  let next = 0
  let failure: string | undefined
  const worker = () => registerSome().catch((err: unknown) => {
    failure ??= `registration failed: ${(err as Error)?.message ?? String(err)}`
  })
  async function registerSome(): Promise<void> {
    while (failure === undefined && next < count) {
      const i = next++
      const n = String(i).padStart(4, '0')
      const hostname = `bench-db-${n}`
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/collectors/register`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Registration-Secret': secret },
        body: JSON.stringify({ name: `bench-collector-${n}`, hostname }),
        signal: AbortSignal.timeout(REGISTER_TIMEOUT_MS),
      })
      const text = await res.text()
      if (res.status !== 201) {
        failure ??= res.status === 404 ? 'registration endpoint not available (HTTP 404)' : `registration answered HTTP ${res.status}: ${text.slice(0, 200)}`
        return
      }
      let body: { collector_id?: unknown; token?: unknown }
      try {
        body = JSON.parse(text) as typeof body
      } catch {
        failure ??= `registration answered 201 with a body that is not JSON: ${text.slice(0, 200)}`
        return
      }
      if (typeof body.collector_id !== 'string' || typeof body.token !== 'string') {
        failure ??= `registration answered 201 without collector_id and token: ${text.slice(0, 200)}`
        return
      }
      collectors[i] = { collector_id: body.collector_id, token: body.token, hostname }
    }
  }
  // A failed worker stops the others at their next registration; all are waited for, so
  // none is left talking to a gateway being stopped.
  await Promise.all(Array.from({ length: Math.min(REGISTER_CONCURRENCY, count) }, worker))
  return failure === undefined ? { ok: true, collectors } : { ok: false, reason: failure }
}
