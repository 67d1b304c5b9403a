import { z } from 'zod'

/**
 * Shapes every part of the API shares (docs/API.md): the error body and the
 * pagination of lists, `{"data":[...],"page","page_size","total"}`.
 */

export const errorBody = z.object({ error: z.string(), message: z.string() })

const MAX_PAGE_SIZE = 500

export const pageQuery = z.object({
  page: z.coerce.number().int().min(1).default(1),
  page_size: z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(50),
})

export type PageQuery = z.infer<typeof pageQuery>

export const pageOf = <T extends z.ZodType>(item: T) =>
  z.object({ data: z.array(item), page: z.number().int(), page_size: z.number().int(), total: z.number().int() })

/** SQL LIMIT and OFFSET of a page. */
export const limitOffset = (q: PageQuery): [number, number] => [q.page_size, (q.page - 1) * q.page_size]

/** RFC 3339 UTC, as every timestamp of the API. */
export const timestamp = z.string().describe('RFC 3339 UTC timestamp')

export const toTimestamp = (d: Date | string): string => (d instanceof Date ? d : new Date(d)).toISOString()
