// @ts-check
// The /admin page: log in, then show what the one feed sends. No framework: a few small
// modules, DOM calls only (the page's CSP forbids inline scripts and styles).
import { Auth, LoginError } from './auth.js'
import { drawRateChart } from './chart.js'
import { byId, setText } from './dom.js'
import { Feed } from './feed.js'
import { ErrorsList, renderOverview } from './panels.js'
import { SessionsTable } from './sessions.js'

// The page's <base href> is `<prefix>/admin/`, so this is `<prefix>/api/v1/`.
const apiBase = new URL('../api/v1/', document.baseURI)
const TOAST_MS = 4000
// The chart's window when the server does not say (ADMIN_RATE_WINDOW_S's default).
const DEFAULT_WINDOW_S = 900

const views = {
  login: byId('login-view'),
  denied: byId('denied-view'),
  dashboard: byId('dashboard'),
  bar: byId('session-bar'),
}
const form = byId('login-form', HTMLFormElement)
const username = byId('username', HTMLInputElement)
const password = byId('password', HTMLInputElement)
const loginError = byId('login-error')
const submit = byId('login-submit', HTMLButtonElement)
const feedState = byId('feed-state')
const dialog = byId('confirm-dialog', HTMLDialogElement)
const toast = byId('toast')

const auth = new Auth(apiBase, (why) => showLogin(why))
const errors = new ErrorsList()
// The server's clock minus ours, from each snapshot: "3 min ago" is the server's 3 minutes.
let clockOffsetMs = 0
const serverNow = () => Date.now() + clockOffsetMs

const sessions = new SessionsTable(
  {
    body: byId('sessions-body', HTMLTableSectionElement),
    empty: byId('sessions-empty'),
    count: byId('sessions-count'),
    filter: byId('session-filter', HTMLInputElement),
    endpoint: byId('session-endpoint', HTMLSelectElement),
  },
  (s, label) => confirmDisconnect(s, label),
)

const chartParts = {
  box: byId('rate-chart'),
  plot: /** @type {SVGSVGElement} */ (/** @type {unknown} */ (byId('rate-plot'))),
  yMax: byId('chart-y-max'),
  yMid: byId('chart-y-mid'),
  xLabels: [...byId('chart-x').children],
  span: byId('rate-span'),
  summary: byId('rate-summary'),
}

const feed = new Feed({
  auth,
  onState(state, detail) {
    const text = { connecting: 'connecting…', live: 'live', retrying: detail ?? 'reconnecting', denied: 'admin only', stopped: 'offline' }[state]
    setText(feedState, text)
    feedState.dataset.state = state
    if (state === 'denied') showDenied('The live feed is admin only: this account is not an administrator.')
  },
  onEvent(ev) {
    let data
    try {
      data = JSON.parse(ev.data)
    } catch {
      return
    }
    if (ev.event === 'snapshot') onSnapshot(data)
    else if (ev.event === 'errors' && Array.isArray(data)) {
      errors.replace(data)
      errors.render(serverNow())
    } else if (ev.event === 'error' && data && typeof data === 'object') {
      errors.add(data)
      errors.render(serverNow())
    }
  },
})

/** @param {any} data */
function onSnapshot(data) {
  const stats = data?.stats ?? {}
  const instance = stats.instance ?? {}
  if (typeof instance.started_at === 'string' && typeof instance.uptime_s === 'number') {
    clockOffsetMs = Date.parse(instance.started_at) + instance.uptime_s * 1000 - Date.now()
  }
  const now = serverNow()
  renderOverview(stats, now)
  const rate = stats.ingest?.rate ?? {}
  drawRateChart(chartParts, Array.isArray(rate.points) ? rate.points : [], rate.window_s ?? DEFAULT_WINDOW_S, rate.interval_s ?? 5)
  sessions.update(Array.isArray(data?.sessions) ? data.sessions : [], now)
  errors.render(now)
}

/** @param {keyof typeof views | 'none'} which */
function show(which) {
  views.login.hidden = which !== 'login'
  views.denied.hidden = which !== 'denied'
  views.dashboard.hidden = which !== 'dashboard'
  views.bar.hidden = which !== 'dashboard'
}

/** @param {string} [why] */
function showLogin(why = '') {
  feed.stop()
  auth.logout()
  show('login')
  setText(loginError, why)
  password.value = ''
  username.focus()
}

/** @param {string} text */
function showDenied(text) {
  feed.stop()
  auth.logout()
  setText(byId('denied-text'), text)
  show('denied')
  byId('denied-back').focus()
}

form.addEventListener('submit', async (event) => {
  event.preventDefault()
  if (username.value.trim() === '' || password.value === '') {
    setText(loginError, 'enter a username and a password')
    return
  }
  submit.disabled = true
  setText(loginError, '')
  try {
    const user = await auth.login(username.value.trim(), password.value)
    password.value = ''
    setText(byId('whoami'), user.username)
    show('dashboard')
    feed.start()
  } catch (err) {
    if (err instanceof LoginError && err.kind === 'denied') {
      const who = err.user ? `${err.user.username} is a ${err.user.role}` : 'this account is not an administrator'
      showDenied(`This dashboard is admin only: ${who}. Sign in with an admin account.`)
    } else {
      setText(loginError, err instanceof Error ? err.message : String(err))
      password.select()
    }
  } finally {
    submit.disabled = false
  }
})

byId('denied-back').addEventListener('click', () => showLogin())
byId('logout').addEventListener('click', () => showLogin())

/** @type {{ id: string, label: string } | undefined} */
let pending
/**
 * @param {import('./sessions.js').Session} s
 * @param {string} label
 */
function confirmDisconnect(s, label) {
  pending = { id: s.id, label }
  setText(
    byId('confirm-text'),
    `${label} (${s.endpoint}, from ${s.remote}) will be disconnected. Its token stays valid, so it may connect again. The action is recorded in the audit log.`,
  )
  dialog.returnValue = ''
  dialog.showModal()
  byId('confirm-cancel').focus()
}

dialog.addEventListener('close', async () => {
  const target = pending
  pending = undefined
  if (dialog.returnValue !== 'disconnect' || target === undefined) return
  try {
    const res = await auth.fetch(`admin/sessions/${encodeURIComponent(target.id)}`, { method: 'DELETE' })
    if (res.status === 204) say(`${target.label} disconnected`)
    else if (res.status === 404) say(`${target.label} had already gone`)
    else say(`could not disconnect ${target.label} (HTTP ${res.status})`)
  } catch {
    say(`could not disconnect ${target.label}: the gateway did not answer`)
  }
})

/** @type {ReturnType<typeof setTimeout> | undefined} */
let toastTimer
/** @param {string} text */
function say(text) {
  setText(toast, text)
  toast.classList.add('shown')
  clearTimeout(toastTimer)
  toastTimer = setTimeout(() => {
    toast.classList.remove('shown')
    setText(toast, '')
  }, TOAST_MS)
}

show('login')
username.focus()
