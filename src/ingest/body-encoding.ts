import { promisify } from 'node:util'
import { gunzip } from 'node:zlib'
import { AppError, badRequest } from '../errors.js'

const gunzipAsync = promisify(gunzip)

/** A request body as text: see decodeBody. */
export async function decodeBodyText(raw: Buffer, contentEncoding: string | undefined, maxBytes: number): Promise<string> {
  return (await decodeBody(raw, contentEncoding, maxBytes)).toString('utf8')
}

/**
 * A request body's bytes, gunzipped when `Content-Encoding: gzip` (the HTTP write API and
 * the metrics push): another encoding is a 415, a body that decompresses past `maxBytes` a 413.
 */
export async function decodeBody(raw: Buffer, contentEncoding: string | undefined, maxBytes: number): Promise<Buffer> {
  const encoding = contentEncoding?.trim().toLowerCase()
  if (encoding === undefined || encoding === '' || encoding === 'identity') return raw
  if (encoding !== 'gzip') throw new AppError(415, 'unsupported_encoding', `Content-Encoding ${encoding} is not supported (gzip is)`)
  try {
    // The limit holds after decompression too: a small gzip body cannot expand past it.
    return await gunzipAsync(raw, { maxOutputLength: maxBytes })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new AppError(413, 'body_too_large', `the decompressed body exceeds ${maxBytes} bytes`)
    }
    throw badRequest('the body is not valid gzip', 'invalid_gzip')
  }
}
