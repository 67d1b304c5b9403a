/**
 * InfluxDB line protocol: the frame rewrite every ingest path uses (frame.ts), the codec
 * for sinks that store values and for line builders (codec.ts), both over one scanner
 * (scanner.ts).
 */
export { FrameRewriter, makeTagging, scanFrame, type ScanErr, type ScanOk, type Tagging } from './frame.js'
export {
  LineProtocolError,
  MAX_TOKEN_BYTES,
  decodeLine,
  decodeLines,
  encodePoint,
  escapeFieldKey,
  escapeMeasurement,
  escapeStringField,
  escapeTagKey,
  escapeTagValue,
  nameProblem,
  utf8Length,
  type FieldValue,
  type Point,
  type Precision,
} from './codec.js'
