// The /admin page's files are served as they are (src/admin/page-assets.ts), and tsc copies
// only what it compiles: `npm run build` copies them beside the compiled plugin with this.
// Usage: node scripts/copy-admin-assets.mjs [target folder, default dist/admin/page]
import { cp, rm } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { relative, resolve } from 'node:path'

const root = fileURLToPath(new URL('..', import.meta.url))
const from = resolve(root, 'src/admin/page')
const to = process.argv[2] === undefined ? resolve(root, 'dist/admin/page') : resolve(process.argv[2])

// A file removed from the page must not linger in an older build.
await rm(to, { recursive: true, force: true })
await cp(from, to, { recursive: true })
console.log(`copied the admin page's files to ${relative(process.cwd(), to) || '.'}`)
