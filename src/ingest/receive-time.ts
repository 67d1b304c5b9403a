/**
 * The receive time stamped on lines that carry none, in ns as decimal digits: the wall
 * clock's milliseconds followed by a six-digit counter, so that every frame the process
 * receives gets a distinct, increasing time even within one millisecond (two frames of
 * the same series must not overwrite each other in InfluxDB).
 */
let lastMs = 0
let seq = 0

export function receiveTimeNs(): string {
  const ms = Date.now()
  if (ms > lastMs) {
    lastMs = ms
    seq = 0
  } else if (++seq > 999_999) {
    // A million frames in one millisecond: borrow the next millisecond.
    lastMs++
    seq = 0
  }
  return `${lastMs}${String(seq).padStart(6, '0')}`
}
