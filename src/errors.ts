/**
 * The short list of errors the API answers with. Each carries its HTTP status and a
 * stable `code`; the one error handler in app.ts maps them to {"error","message"}.
 */
export class AppError extends Error {
  override name = 'AppError'
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

export const badRequest = (message: string, code = 'invalid_request') => new AppError(400, code, message)
export const unauthorized = (message: string, code = 'unauthorized') => new AppError(401, code, message)
export const forbidden = (message: string, code = 'forbidden') => new AppError(403, code, message)
export const notFound = (message: string, code = 'not_found') => new AppError(404, code, message)
export const unavailable = (message: string, code = 'unavailable') => new AppError(503, code, message)
