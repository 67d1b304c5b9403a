import { isUtf8 } from 'node:buffer'
import type { Ack, Batcher } from '../ingest/batcher.js'
import { FrameRewriter, makeTagging, type Tagging } from '../ingest/line-protocol/index.js'
import { receiveTimeNs } from '../ingest/receive-time.js'

export interface DeviceLineCounts {
  /** Payloads handed to the batcher. */
  submitted: number
  /** Of those, the ones the batcher answered with an error (nothing written). */
  refused: number
  /** Payloads that are no valid line protocol (or only blank and comment lines). */
  notLineProtocol: number
}

/** Tagging cache size; past it the cache starts over (makeTagging is cheap, just not per message). */
const MAX_CACHED_TAGGINGS = 10_000

const SPACE = 0x20
const EQUALS = 0x3d

/**
 * Rules a payload out without decoding it: every data line has a space before its
 * fields and an `=` in them, NUL is refused everywhere, and the text must be UTF-8
 * (decoding invalid bytes would change them). Binary payloads almost always fail one
 * of these native scans, so they never cost a parse.
 */
export function mayBeLineProtocol(payload: Buffer): boolean {
  return (
    payload.length > 0 &&
    payload.indexOf(EQUALS) >= 0 &&
    payload.indexOf(SPACE) >= 0 &&
    payload.indexOf(0) < 0 &&
    isUtf8(payload)
  )
}

/**
 * Device payloads that are line protocol also go to the time-series sink (the batcher
 * of /time-series), tagged `device_id` and `device_type` (a client's own tags of those
 * names are replaced). Fire-and-forget: the batcher's answer is only counted, so the
 * sink never holds up or fails forwarding to NATS.
 */
export class DeviceLines {
  readonly counts: DeviceLineCounts = { submitted: 0, refused: 0, notLineProtocol: 0 }
  /** Per device id: the tagging for the type it was last seen with (null: the type cannot be a tag value). */
  private readonly taggings = new Map<string, { type: string; tagging: Tagging | null }>()
  private readonly rewriter = new FrameRewriter()
  // One callback for every submission: no closure per message.
  private readonly onAck: Ack = (err) => {
    if (err !== undefined) this.counts.refused++
  }

  constructor(private readonly batcher: Pick<Batcher, 'submit'>) {}

  /** Submits the payload when it is line protocol; returns whether it did. Never throws for the payload. */
  offer(deviceId: string, deviceType: string, payload: Buffer): boolean {
    if (!mayBeLineProtocol(payload)) {
      this.counts.notLineProtocol++
      return false
    }
    const tagging = this.taggingOf(deviceId, deviceType)
    if (tagging === null) {
      this.counts.refused++
      return false
    }
    if (!this.rewriter.rewrite(payload, tagging, receiveTimeNs) || this.rewriter.lines === 0) {
      this.counts.notLineProtocol++
      return false
    }
    this.counts.submitted++
    this.batcher.submit(this.rewriter.output, this.rewriter.lines, this.onAck)
    return true
  }

  private taggingOf(deviceId: string, deviceType: string): Tagging | null {
    const cached = this.taggings.get(deviceId)
    if (cached !== undefined && cached.type === deviceType) return cached.tagging
    let tagging: Tagging | null
    try {
      tagging = makeTagging([
        ['device_id', deviceId],
        ['device_type', deviceType],
      ])
    } catch {
      // A type such as one ending in a backslash is no valid tag value: its lines are not written.
      tagging = null
    }
    if (this.taggings.size >= MAX_CACHED_TAGGINGS) this.taggings.clear()
    this.taggings.set(deviceId, { type: deviceType, tagging })
    return tagging
  }
}
