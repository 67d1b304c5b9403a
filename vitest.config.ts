import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    // Deadlines, not expectations: two cores run several test files at once, and a gateway
    // start (it creates an embedded Postgres cluster) took over 30 s in one run. A test that
    // waits for a state (test/helpers/wait.ts) is slow on a busy machine, never red for it.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
  },
})
