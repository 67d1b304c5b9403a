import { afterAll } from 'vitest'
import { dropSharedDb } from './helpers/app.js'

// Each test file that started apps on the shared embedded database stops it when done.
afterAll(async () => {
  await dropSharedDb()
})
