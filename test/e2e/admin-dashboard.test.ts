import { mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { MqttClient } from 'mqtt'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ApiClient, FAST_PASSWORD_HASHING } from '../helpers/api.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { ChannelClient, streamToken } from '../helpers/channels.js'
import { CHROMIUM_ARGS, findChromium } from '../helpers/chromium.js'
import { adminToken, connectDevice, provisionDevice } from '../helpers/mqtt.js'
import { REPO_ROOT } from '../helpers/process.js'
import { RecordingSink } from '../helpers/recording-sink.js'
import { requireService } from '../helpers/services.js'
import { waitFor } from '../helpers/wait.js'
import { TestClient } from '../helpers/ws-client.js'

// The /admin dashboard in a real browser (Debian's chromium, driven by playwright-core):
// login errors, the live sessions table, the rate chart, the errors list, a disconnect from
// the page, and no request leaving 127.0.0.1. Screenshots go to test-output/admin/, and with
// UPDATE_SCREENSHOTS=1 the README's picture to docs/images/admin-dashboard.png.

const ADMIN_PASSWORD = 'admin-password-for-the-dashboard'
const VIEWER = { username: 'dash-viewer', password: 'viewer-password-123', email: 'viewer@example.test', role: 'viewer' }
const OUT_DIR = join(REPO_ROOT, 'test-output', 'admin')
const README_SHOT = join(REPO_ROOT, 'docs', 'images', 'admin-dashboard.png')
// The bound for a new session to show in the table.
const SESSION_VISIBLE_MS = 2000
// Deadlines for states that must come; a busy machine makes them slow, not red.
const STATE_MS = 30_000
// A feed snapshot every 500 ms (default 1000): the 2 s bound above keeps room on a busy machine.
const FEED_INTERVAL_MS = '500'
// Access tokens of 10 s (default 15 min): during the test the page renews its token several
// times, and the feed ends each connection with `expired` when its token does.
const ACCESS_TOKEN_TTL_S = '10'
const chromiumPath = findChromium()
const haveChromium = await requireService('chromium (Debian package `chromium`)', chromiumPath !== undefined)

describe.runIf(haveChromium)('the /admin dashboard in Chromium', () => {
  let t: TestApp
  let api: ApiClient
  let browser: Browser | undefined
  let context: BrowserContext
  let page: Page
  const sink = new RecordingSink()
  const requested: string[] = []
  const problems: string[] = []
  const sockets: Array<{ close(): void }> = []
  const mqttClients: MqttClient[] = []
  let streamer: TestClient
  let sessionId: string | null

  // One frame of good lines; resolves with the gateway's reply.
  let seq = 0
  async function sendLines(client: TestClient, count: number): Promise<string> {
    const lines = Array.from({ length: count }, () => `dashboard_test,host=e2e value=${seq++}i`)
    client.send(lines.join('\n'))
    return client.next()
  }

  const login = async (username: string, password: string) => {
    await page.getByLabel('Username').fill(username)
    await page.getByLabel('Password').fill(password)
    await page.getByRole('button', { name: 'Sign in', exact: true }).click()
  }

  beforeAll(async () => {
    mkdirSync(OUT_DIR, { recursive: true })
    t = await startTestApp({ ...FAST_PASSWORD_HASHING, ADMIN_PASSWORD, ADMIN_FEED_INTERVAL_MS: FEED_INTERVAL_MS, ACCESS_TOKEN_TTL_S }, { sink })
    api = new ApiClient(t.url)
    const res = await api.post('/api/v1/users', { token: await adminToken(api, ADMIN_PASSWORD), body: VIEWER })
    expect(res.status, res.text).toBe(201)
    // launch() gives Chromium a fresh, empty profile in a temporary folder, removed on close.
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_ARGS })
    context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' })
    page = await context.newPage()
    page.on('request', (r) => requested.push(r.url()))
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
    // A refused login shows up as a console error ("Failed to load resource: 401"): only
    // what says the page itself broke is a problem.
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused to|Uncaught/i.test(m.text())) problems.push(`console: ${m.text()}`)
    })
  })

  afterAll(async () => {
    for (const s of sockets) s.close()
    await Promise.all(mqttClients.map((c) => c.endAsync(true).catch(() => {})))
    await browser?.close().catch(() => {})
    await t?.close()
  })

  it('serves the page and its assets from the gateway, under a strict CSP', async () => {
    const res = await page.goto(`${t.url}/admin`)
    expect(res?.status()).toBe(200)
    expect(res?.headers()['content-security-policy']).toContain("script-src 'self'")
    await page.getByRole('heading', { name: 'Sign in' }).waitFor({ timeout: STATE_MS })
  })

  it('shows "invalid username or password" for a wrong password', async () => {
    await login('admin', 'not-the-password')
    await page.locator('#login-error', { hasText: 'invalid username or password' }).waitFor({ timeout: STATE_MS })
    await expect(page.locator('#dashboard').isHidden()).resolves.toBe(true)
  })

  it('tells a viewer that the dashboard is admin only', async () => {
    await login(VIEWER.username, VIEWER.password)
    await page.getByRole('heading', { name: 'Admin only' }).waitFor({ timeout: STATE_MS })
    expect(await page.locator('#denied-text').textContent()).toContain('admin only')
    await expect(page.locator('#dashboard').isHidden()).resolves.toBe(true)
    await page.getByRole('button', { name: 'Sign in as another user' }).click()
  })

  it('logs an admin in and goes live on the feed', async () => {
    await login('admin', ADMIN_PASSWORD)
    await page.locator('#feed-state[data-state="live"]').waitFor({ timeout: STATE_MS })
    await page.locator('#dashboard').waitFor({ state: 'visible', timeout: STATE_MS })
  })

  it('shows a new /time-series session in the sessions table within 2 s', async () => {
    streamer = await TestClient.authenticated(t.wsUrl, streamToken({ id: 'u-dash', name: 'dash-tester' }))
    sockets.push(streamer)
    const row = page.locator('#sessions-body tr', { hasText: 'dash-tester' })
    await row.waitFor({ state: 'visible', timeout: SESSION_VISIBLE_MS })
    sessionId = await row.getAttribute('data-session-id')
    expect(sessionId).toBeTruthy()
    expect(await row.getAttribute('data-endpoint')).toBe('time-series')
  })

  it('moves the rate chart when lines stream in', async () => {
    const chart = page.locator('#rate-chart')
    // Streams until the chart shows a bucket with accepted lines (a bucket counts once full).
    await waitFor(
      async () => {
        expect(await sendLines(streamer, 200)).toBe('OK')
        return Number(await chart.getAttribute('data-peak-accepted'))
      },
      (peak) => peak > 0,
      'the chart to show accepted lines',
      STATE_MS,
    )
    expect(Number(await chart.getAttribute('data-points'))).toBeGreaterThan(0)
    expect(await page.locator('#rate-plot path.line.accepted').count()).toBe(1)
  })

  it('lists a bad line in the errors list', async () => {
    streamer.send('dashboard_test,host=e2e')
    expect(await streamer.next()).toMatch(/^ERR line 1: /)
    const row = page.locator('#errors-body tr[data-kind="bad_line"]', { hasText: 'dash-tester' })
    await row.waitFor({ state: 'visible', timeout: STATE_MS })
    expect(await row.textContent()).toContain('ERR line 1')
  })

  it('filters the sessions table by text and by endpoint', async () => {
    const ours = page.locator('#sessions-body tr', { hasText: 'dash-tester' })
    await page.getByLabel('Filter').fill('no-such-session')
    await ours.waitFor({ state: 'hidden', timeout: STATE_MS })
    await page.locator('#sessions-empty', { hasText: 'No session matches the filter.' }).waitFor({ timeout: STATE_MS })
    await page.getByLabel('Filter').fill('DASH-test')
    await ours.waitFor({ state: 'visible', timeout: STATE_MS })
    await page.getByLabel('Endpoint').selectOption('mqtt')
    await ours.waitFor({ state: 'hidden', timeout: STATE_MS })
    await page.getByLabel('Endpoint').selectOption('time-series')
    await ours.waitFor({ state: 'visible', timeout: STATE_MS })
    await page.getByLabel('Filter').fill('')
    await page.getByLabel('Endpoint').selectOption('')
  })

  it('works with the keyboard: Disconnect is a button, the dialog closes with Escape', async () => {
    const button = page.locator('#sessions-body tr', { hasText: 'dash-tester' }).getByRole('button', { name: 'Disconnect dash-tester (time-series)' })
    await button.focus()
    await page.keyboard.press('Enter')
    const dialog = page.getByRole('dialog')
    await dialog.waitFor({ state: 'visible', timeout: STATE_MS })
    // Focus starts on Cancel: Enter by habit does not disconnect.
    expect(await page.evaluate<string | undefined>('document.activeElement?.id')).toBe('confirm-cancel')
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'hidden', timeout: STATE_MS })
    expect(streamer.closed).toBeUndefined()
  })

  it('takes screenshots at desktop and phone width', async () => {
    // More of what an operator sees: a channel member, an MQTT device and a second stream.
    const viewer = await ChannelClient.joined(t.wsUrl, { token: streamToken({ id: 'u-ops', name: 'ops-console' }), channelId: 'plant-7' })
    sockets.push(viewer)
    const device = await provisionDevice(api, await adminToken(api, ADMIN_PASSWORD), 'thermostat')
    mqttClients.push(await connectDevice(t, device))
    const second = await TestClient.authenticated(t.wsUrl, streamToken({ id: 'u-line', name: 'line-bot', orgId: 'org-2' }))
    sockets.push(second)
    await page.locator('#sessions-body tr').nth(3).waitFor({ timeout: STATE_MS })
    await page.locator('#channels-body tr', { hasText: 'plant-7' }).waitFor({ timeout: STATE_MS })
    // A refused token: an auth failure in the errors list.
    const refused = await TestClient.connect(`${t.wsUrl}/time-series`)
    sockets.push(refused)
    refused.send('$AUTH not-a-token')
    expect(await refused.next()).toMatch(/^AUTH_FAILED/)
    // A chart worth a picture: traffic of changing size over a few 5 s buckets, with a
    // bad frame now and then (the rejected line and the errors list).
    const chart = page.locator('#rate-chart')
    let round = 0
    await waitFor(
      async () => {
        round++
        const size = 40 + 160 * Math.round(2 + 2 * Math.sin(round / 25))
        expect(await sendLines(streamer, size)).toBe('OK')
        expect(await sendLines(second, size / 2)).toBe('OK')
        if (round === 60) {
          second.send('dashboard_test,host=e2e value=')
          expect(await second.next()).toMatch(/^ERR line 1: /)
        }
        return Number(await chart.getAttribute('data-busy-points'))
      },
      (busy) => busy >= 4,
      'four buckets of traffic on the chart',
      STATE_MS * 2,
    )

    // No focus ring from the keyboard test in the pictures.
    await page.evaluate('document.activeElement instanceof HTMLElement && document.activeElement.blur()')
    const desktop = join(OUT_DIR, 'dashboard-desktop.png')
    await page.screenshot({ path: desktop, fullPage: true })
    // The README's picture is this test's too, taken anew only when asked (a run leaves the tree clean).
    if (process.env.UPDATE_SCREENSHOTS === '1') {
      mkdirSync(dirname(README_SHOT), { recursive: true })
      await page.screenshot({ path: README_SHOT, fullPage: true })
    }
    await page.setViewportSize({ width: 390, height: 844 })
    // At phone width the page must not scroll sideways: the tables became cards.
    await waitFor(
      () => page.evaluate<number>('document.documentElement.scrollWidth'),
      (w) => w <= 390,
      'the page to fit 390 px',
      STATE_MS,
    )
    await page.screenshot({ path: join(OUT_DIR, 'dashboard-phone.png'), fullPage: true })
    await page.setViewportSize({ width: 1280, height: 800 })
  })

  it('disconnects a session from the page, and the client is closed', async () => {
    const row = page.locator(`#sessions-body tr[data-session-id="${sessionId}"]`)
    await row.getByRole('button', { name: /^Disconnect/ }).click()
    const dialog = page.getByRole('dialog')
    await dialog.waitFor({ state: 'visible', timeout: STATE_MS })
    await dialog.getByRole('button', { name: 'Disconnect' }).click()
    const closed = await streamer.waitClosed(STATE_MS)
    expect(closed.code).toBe(1008)
    await row.waitFor({ state: 'detached', timeout: STATE_MS })
    await page.locator('#toast', { hasText: 'disconnected' }).waitFor({ timeout: STATE_MS })
    const audit = await api.get('/api/v1/audit?page_size=50', { token: await adminToken(api, ADMIN_PASSWORD) })
    expect(audit.json.data.some((e: { action: string; target: string }) => e.action === 'session.disconnect' && e.target === `session:${sessionId}`)).toBe(true)
  })

  it('renewed its access token and followed it on the feed, never asking to log in again', async () => {
    const count = (path: string) => requested.filter((u) => new URL(u).pathname === path).length
    // Tokens live 10 s; renewal comes before expiry, a new feed connection after it.
    await waitFor(
      () => ({ refreshes: count('/api/v1/auth/refresh'), feeds: count('/api/v1/admin/feed') }),
      (n) => n.refreshes >= 1 && n.feeds >= 2,
      'a token renewal and a second feed connection',
      STATE_MS,
    )
    await page.locator('#feed-state[data-state="live"]').waitFor({ timeout: STATE_MS })
    expect(await page.locator('#login-view').isHidden()).toBe(true)
  })

  it('made no request outside 127.0.0.1 and broke no CSP rule', () => {
    expect(requested.length).toBeGreaterThan(0)
    const elsewhere = requested.filter((u) => new URL(u).hostname !== '127.0.0.1')
    expect(elsewhere).toEqual([])
    expect(problems).toEqual([])
  })
})
