// @ts-check
// Numbers and times for people: "12.4k lines/s", "3 min ago", "1.2 MB".

const COUNT_UNITS = ['', 'k', 'M', 'G', 'T']
const BYTE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB']

/**
 * 0 → "0", 0.25 → "0.25", 7.5 → "7.5", 950 → "950", 12400 → "12.4k", 3_100_000 → "3.1M".
 * @param {number | null | undefined} n
 * @returns {string}
 */
export function formatCount(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—'
  const sign = n < 0 ? '-' : ''
  let v = Math.abs(n)
  if (v < 999.5) return sign + trim(v, v < 10 ? 2 : v < 100 ? 1 : 0)
  let unit = 0
  // Rounding may carry into the next unit (999_960 is "1M", not "1000k").
  while (unit < COUNT_UNITS.length - 1 && Math.round(v * 10) / 10 >= 1000) {
    v /= 1000
    unit++
  }
  return sign + trim(v, v < 100 ? 1 : 0) + COUNT_UNITS[unit]
}

/**
 * @param {number | null | undefined} perS
 * @param {string} [what]
 */
export function formatRate(perS, what = 'lines') {
  return `${formatCount(perS)} ${what}/s`
}

/**
 * Decimal units, as disks and networks count: 1234567 → "1.2 MB".
 * @param {number | null | undefined} n
 */
export function formatBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—'
  let v = Math.max(0, n)
  let unit = 0
  while (unit < BYTE_UNITS.length - 1 && Math.round(v * 10) / 10 >= 1000) {
    v /= 1000
    unit++
  }
  return `${unit === 0 ? String(Math.round(v)) : trim(v, v < 100 ? 1 : 0)} ${BYTE_UNITS[unit]}`
}

/**
 * 4 → "4 ms", 1234 → "1.2 s"; null (nothing measured yet) → "—".
 * @param {number | null | undefined} ms
 */
export function formatMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—'
  if (ms < 1) return `${trim(ms, 2)} ms`
  if (ms < 1000) return `${Math.round(ms)} ms`
  return `${trim(ms / 1000, 1)} s`
}

/**
 * A length of time, coarse: 42 → "42 s", 3720 → "1 h 2 min", 200000 → "2 d 7 h".
 * @param {number | null | undefined} s
 */
export function formatDuration(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return '—'
  const total = Math.max(0, Math.floor(s))
  if (total < 60) return `${total} s`
  const min = Math.floor(total / 60)
  if (min < 60) return `${min} min`
  const h = Math.floor(min / 60)
  if (h < 24) return min % 60 === 0 ? `${h} h` : `${h} h ${min % 60} min`
  const d = Math.floor(h / 24)
  return h % 24 === 0 ? `${d} d` : `${d} d ${h % 24} h`
}

/**
 * How long ago an instant was: "just now", "12 s ago", "3 min ago", "2 h ago", "4 d ago".
 * @param {string | number | null | undefined} at an RFC 3339 time or epoch ms
 * @param {number} now epoch ms
 */
export function formatAgo(at, now) {
  if (at === null || at === undefined) return 'never'
  const t = typeof at === 'number' ? at : Date.parse(at)
  if (!Number.isFinite(t)) return '—'
  const s = Math.floor((now - t) / 1000)
  if (s < 5) return 'just now'
  if (s < 60) return `${s} s ago`
  const min = Math.floor(s / 60)
  if (min < 60) return `${min} min ago`
  const h = Math.floor(min / 60)
  if (h < 24) return `${h} h ago`
  return `${Math.floor(h / 24)} d ago`
}

/**
 * A local wall-clock time for tables: "14:03:27".
 * @param {string | number} at
 */
export function formatClock(at) {
  const d = new Date(at)
  if (Number.isNaN(d.getTime())) return '—'
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0')
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
}

/**
 * The top of a chart's y axis: the smallest of 1, 2, 2.5, 5 × 10^k at or above `max`.
 * @param {number} max
 */
export function niceCeiling(max) {
  if (!(max > 0)) return 1
  const magnitude = 10 ** Math.floor(Math.log10(max))
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= max) return step * magnitude
  }
  return 10 * magnitude
}

/**
 * @param {number} v
 * @param {number} digits
 */
function trim(v, digits) {
  return String(Number(v.toFixed(digits)))
}

/**
 * "1 line", "3 lines", "12.4k lines".
 * @param {number | null | undefined} n
 * @param {string} one
 * @param {string} [many]
 */
export function plural(n, one, many = `${one}s`) {
  return `${formatCount(n)} ${n === 1 ? one : many}`
}
