// Tests wait for the state they assert, never for a fixed time: a bounded poll is only a
// deadline for a state that must come, so a slow machine makes a test slower, not red.

const POLL_MS = 20

/** Polls `cond` until it holds; fails naming `what` after timeoutMs. */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = 'a condition',
): Promise<void> {
  await waitFor(cond, (ok) => ok, what, timeoutMs)
}

/**
 * Polls `probe` until `accept` holds for what it returned, and returns that value. On
 * timeout the error names `what` and shows the last value seen (or the last error thrown),
 * so a red test says which state never came.
 */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  accept: (value: T) => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: { value: T } | { error: unknown } | undefined
  for (;;) {
    try {
      const value = await probe()
      if (accept(value)) return value
      last = { value }
    } catch (error) {
      last = { error }
    }
    if (Date.now() > deadline) {
      const seen = last === undefined ? 'nothing' : 'value' in last ? show(last.value) : `an error: ${String(last.error)}`
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last saw ${seen}`)
    }
    await new Promise((r) => setTimeout(r, POLL_MS))
  }
}

function show(value: unknown): string {
  const text = typeof value === 'string' ? value : String(JSON.stringify(value))
  return text.length > 2000 ? `${text.slice(0, 2000)}…` : text
}
