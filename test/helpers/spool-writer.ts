/**
 * Run as a child process by the spool crash test: appends records in a loop, several at
 * once, and prints `<id> <n>` for every append that resolved (was acknowledged) until it
 * is killed. Usage: node --import tsx test/helpers/spool-writer.ts <dir> <segmentBytes>
 */
import { pathToFileURL } from 'node:url'
import { Spool } from '../../src/ingest/spool/spool.js'

const IN_FLIGHT = 8

/** The n-th record's text: its number first, so a recovered record says what it must be. */
export function spoolWriterText(n: number): string {
  return `m,n=${n} v=${n}i ${n}\n`.repeat(1 + (n % 13))
}

export const spoolWriterLines = (n: number): number => 1 + (n % 13)

async function main(dir: string, segmentBytes: number): Promise<void> {
  const spool = await Spool.open({ dir, maxBytes: 1 << 30, segmentBytes })
  let next = 0
  const appender = async (): Promise<never> => {
    for (;;) {
      const n = next++
      const id = await spool.append(Buffer.from(spoolWriterText(n)), spoolWriterLines(n))
      process.stdout.write(`${id} ${n}\n`)
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, appender))
}

const [, script, dir, segmentBytes] = process.argv
if (script && dir && import.meta.url === pathToFileURL(script).href) {
  main(dir, Number(segmentBytes ?? 4096)).catch((err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
