// @ts-check
// The overview cards, devices and collectors, channels and the last errors.
import { byId, el, setText } from './dom.js'
import { formatAgo, formatBytes, formatClock, formatCount, formatDuration, formatMs, formatRate, plural } from './format.js'

/**
 * The parts of GET /api/v1/admin/stats the page shows; every field may be missing (a
 * gateway older or newer than the page), and shows as "—" then.
 * @typedef {Record<string, any>} Stats
 */

/**
 * @typedef {{ id: string, at: string, kind: string, endpoint: string, reason: string,
 *   user: string | null, org: string | null, remote: string | null }} ErrorRecord
 */

// The newest this many errors are shown; the server keeps ADMIN_ERRORS_KEPT.
const ERRORS_SHOWN = 200

/** @type {Record<string, string>} */
const KIND_LABEL = { bad_line: 'bad line', auth_failure: 'auth failure', sink_refusal: 'sink refusal', sink_outage: 'sink outage' }

/**
 * @param {string} id
 * @param {string} value
 * @param {string} [sub]
 */
function card(id, value, sub = '') {
  setText(byId(`v-${id}`), value)
  setText(byId(`s-${id}`), sub)
}

/**
 * @param {Stats} stats
 * @param {number} now the server's clock, epoch ms
 */
export function renderOverview(stats, now) {
  const ingest = stats.ingest ?? {}
  card('accepted', formatRate(ingest.lines_accepted_per_s), `${plural(ingest.lines_accepted_total, 'line')} in all`)
  card('rejected', formatRate(ingest.lines_rejected_per_s), `${plural(ingest.lines_rejected_total, 'line')} in all`)
  const flush = ingest.batch_flush_ms ?? {}
  card('flush', `p50 ${formatMs(flush.p50)}`, `p99 ${formatMs(flush.p99)} · ${plural(flush.count, 'batch', 'batches')}`)

  const sink = stats.sink ?? {}
  const state = typeof sink.state === 'string' ? sink.state : 'unknown'
  const sinkValue = byId('v-sink')
  sinkValue.replaceChildren(el('span', { class: `state state-${state}` }, state))
  setText(byId('s-sink'), sink.last_error ? `${sink.name ?? ''}: ${sink.last_error}` : (sink.name ?? ''))

  const spool = stats.spool ?? {}
  card('spool', formatBytes(spool.bytes), `${plural(spool.lines, 'line')} waiting`)
  card('dead', plural(spool.dead_letter_lines, 'line'), plural(spool.dead_letter_records, 'record'))
  byId('v-dead').classList.toggle('warn', (spool.dead_letter_lines ?? 0) > 0)

  const sessions = stats.sessions ?? {}
  const total = (sessions.time_series ?? 0) + (sessions.ws ?? 0) + (sessions.mqtt ?? 0)
  card(
    'sessions',
    formatCount(total),
    `${formatCount(sessions.time_series)} time-series · ${formatCount(sessions.ws)} ws · ${formatCount(sessions.mqtt)} MQTT`,
  )
  const instance = stats.instance ?? {}
  card('uptime', formatDuration(instance.uptime_s), instance.started_at ? `since ${formatClock(instance.started_at)}` : '')

  const devices = stats.devices ?? {}
  setText(byId('f-devices'), formatCount(devices.total))
  setText(byId('f-devices-connected'), formatCount(devices.connected))
  setText(byId('f-devices-seen'), formatAgo(devices.last_seen_at, now))
  const collectors = stats.collectors ?? {}
  setText(byId('f-collectors'), formatCount(collectors.total))
  setText(byId('f-collectors-active'), formatCount(collectors.active))
  setText(byId('f-collectors-push'), formatAgo(collectors.last_push_at, now))

  renderChannels(stats.channels ?? {})
}

/** @param {Stats} channels */
function renderChannels(channels) {
  /** @type {Array<{ channel_id: string, members: number, connections: number }>} */
  const list = Array.isArray(channels.list) ? channels.list : []
  setText(byId('channels-count'), `${plural(channels.count ?? list.length, 'channel')} · ${plural(channels.members, 'member')}`)
  const body = byId('channels-body')
  const key = JSON.stringify(list)
  if (body.dataset.key === key) return
  body.dataset.key = key
  body.replaceChildren(
    ...list.map((c) =>
      el(
        'tr',
        {},
        el('td', { 'data-label': 'Channel' }, c.channel_id),
        el('td', { 'data-label': 'Members', class: 'num' }, formatCount(c.members)),
        el('td', { 'data-label': 'Connections', class: 'num' }, formatCount(c.connections)),
      ),
    ),
  )
  byId('channels-empty').hidden = list.length > 0
}

export class ErrorsList {
  constructor() {
    /** @type {ErrorRecord[]} */ this.errors = []
    /** @private @type {Map<string, HTMLTableRowElement>} */ this.rows = new Map()
  }

  /** @param {ErrorRecord[]} list newest first (the feed's `errors` event) */
  replace(list) {
    this.errors = list.slice(0, ERRORS_SHOWN)
  }

  /** @param {ErrorRecord} e one new error (the feed's `error` event) */
  add(e) {
    if (this.errors.some((x) => x.id === e.id)) return
    this.errors.unshift(e)
    this.errors.length = Math.min(this.errors.length, ERRORS_SHOWN)
  }

  /** @param {number} now */
  render(now) {
    const body = byId('errors-body')
    const wanted = new Set(this.errors.map((e) => e.id))
    for (const [id, tr] of this.rows) {
      if (!wanted.has(id)) {
        tr.remove()
        this.rows.delete(id)
      }
    }
    this.errors.forEach((e, i) => {
      let tr = this.rows.get(e.id)
      if (tr === undefined) {
        tr = errorRow(e)
        this.rows.set(e.id, tr)
      }
      const time = /** @type {HTMLElement} */ (tr.firstElementChild)
      setText(time, formatAgo(e.at, now))
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] ?? null)
    })
    byId('errors-empty').hidden = this.errors.length > 0
    setText(byId('errors-count'), this.errors.length === 0 ? '' : `${formatCount(this.errors.length)} kept`)
  }
}

/** @param {ErrorRecord} e */
function errorRow(e) {
  const who = [e.user, e.org ? `org ${e.org}` : null, e.remote].filter((x) => x).join(' · ') || '—'
  const time = el('td', { 'data-label': 'Time', class: 'col-time', title: `${formatClock(e.at)} (${e.at})` })
  return el(
    'tr',
    { 'data-error-id': e.id, 'data-kind': e.kind },
    time,
    el('td', { 'data-label': 'Kind' }, el('span', { class: `badge badge-${e.kind}` }, KIND_LABEL[e.kind] ?? e.kind)),
    el('td', { 'data-label': 'Where' }, e.endpoint),
    el('td', { 'data-label': 'Reason', class: 'col-reason' }, e.reason),
    el('td', { 'data-label': 'Identity' }, who),
  )
}
