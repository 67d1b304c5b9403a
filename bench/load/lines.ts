/**
 * The line-protocol content every load generator sends, so that WebSocket frames and HTTP
 * bodies carry the same lines: 100 hosts, one region, three float fields, explicit ns
 * timestamps (Nov 2023: kept by victoria-metrics only with a long retention).
 */

/** The tags the gateway appends to every line for the bench stream token (lib.ts streamToken). */
export const GATEWAY_TAGS = ',user=bench,org=bench_org'

/** Line i; `extraTags` (`,k=v...`) is appended to the tag set, as the gateway does. */
export function line(i: number, extraTags = ''): string {
  return `cpu,host=server${String(i % 100).padStart(2, '0')},region=us-west${extraTags} usage_idle=98.2,usage_user=1.1,usage_system=0.7 ${1_700_000_000_000_000_000n + BigInt(i)}`
}

/** Fields per line: victoria-metrics stores one sample per field. */
export const FIELDS_PER_LINE = 3

/** `count` lines joined by `\n` (no trailing newline), as one frame or request body. */
export function body(count: number, extraTags = ''): Buffer {
  return Buffer.from(Array.from({ length: count }, (_, i) => line(i, extraTags)).join('\n'))
}
