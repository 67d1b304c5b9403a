// @ts-check
// The live sessions table: rows keyed by session id and updated in place each snapshot, so
// a Disconnect button keeps the keyboard focus while numbers change around it.
import { el, setText } from './dom.js'
import { formatAgo, formatClock, formatCount } from './format.js'

/**
 * A session as GET /api/v1/admin/sessions and the feed list it (fields by endpoint).
 * @typedef {{ id: string, endpoint: 'time-series' | 'ws' | 'mqtt', connected_at: string, remote: string,
 *   user?: string | null, user_id?: string | null, org?: string | null, authenticated?: boolean,
 *   frames?: number, lines?: number, name?: string, channel?: string, events_sent?: number,
 *   frames_received?: number, device_id?: string | null, device_type?: string | null,
 *   transport?: string, messages?: number, last_error?: string | null }} Session
 */

/** @typedef {{ who: string, detail: string, org: string, where: string, activity: string, lastError: string }} Shown */

/** @type {Record<string, string>} */
const ENDPOINT_LABEL = { 'time-series': 'time-series', ws: 'channel', mqtt: 'MQTT' }

/**
 * @param {Session} s
 * @returns {Shown}
 */
export function describeSession(s) {
  const lastError = s.last_error ?? ''
  if (s.endpoint === 'time-series') {
    return {
      who: s.user ?? s.user_id ?? (s.authenticated ? '?' : 'not authenticated yet'),
      detail: s.user_id && s.user && s.user_id !== s.user ? s.user_id : '',
      org: s.org ?? '—',
      where: '/time-series',
      activity: `${formatCount(s.lines ?? 0)} lines · ${formatCount(s.frames ?? 0)} frames`,
      lastError,
    }
  }
  if (s.endpoint === 'ws') {
    return {
      who: s.name ?? s.user_id ?? '?',
      detail: s.user_id && s.user_id !== s.name ? s.user_id : '',
      org: s.org ?? '—',
      where: `/ws · ${s.channel ?? '?'}`,
      activity: `${formatCount(s.events_sent ?? 0)} sent · ${formatCount(s.frames_received ?? 0)} received`,
      lastError,
    }
  }
  return {
    who: s.device_id ?? 'not authenticated yet',
    detail: s.device_type ?? '',
    org: s.org ?? '—',
    where: `MQTT · ${s.transport ?? '?'}`,
    activity: s.messages === undefined ? '—' : `${formatCount(s.messages)} messages`,
    lastError,
  }
}

/**
 * @typedef {object} Row
 * @property {HTMLTableRowElement} tr
 * @property {Record<string, HTMLElement>} cells
 * @property {HTMLButtonElement} button
 * @property {Session} session
 * @property {string} haystack lower-case text the filter matches
 */

export class SessionsTable {
  /**
   * @param {{ body: HTMLTableSectionElement, empty: HTMLElement, count: HTMLElement,
   *   filter: HTMLInputElement, endpoint: HTMLSelectElement }} parts
   * @param {(s: Session, label: string) => void} onDisconnect
   */
  constructor(parts, onDisconnect) {
    this.parts = parts
    this.onDisconnect = onDisconnect
    /** @type {Map<string, Row>} */ this.rows = new Map()
    /** @type {Session[]} */ this.sessions = []
    this.now = Date.now()
    parts.filter.addEventListener('input', () => this.applyFilter())
    parts.endpoint.addEventListener('change', () => this.applyFilter())
  }

  /**
   * @param {Session[]} sessions newest first
   * @param {number} now the server's clock, epoch ms
   */
  update(sessions, now) {
    this.sessions = sessions
    this.now = now
    const seen = new Set()
    const body = this.parts.body
    sessions.forEach((s, i) => {
      seen.add(s.id)
      let row = this.rows.get(s.id)
      if (row === undefined) {
        row = this.makeRow(s)
        this.rows.set(s.id, row)
      }
      this.fill(row, s)
      // Moves only a row out of place (a new one, mostly): moving a row holding focus would drop it.
      if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] ?? null)
    })
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.tr.remove()
        this.rows.delete(id)
      }
    }
    this.applyFilter()
  }

  /**
   * @private
   * @param {Session} s
   * @returns {Row}
   */
  makeRow(s) {
    /** @type {Record<string, HTMLElement>} */
    const cells = {}
    const cell = (/** @type {string} */ key, /** @type {string} */ label) => {
      const td = el('td', { 'data-label': label, class: `col-${key}` })
      cells[key] = td
      return td
    }
    const button = el('button', { type: 'button', class: 'btn btn-danger btn-small' }, 'Disconnect')
    button.addEventListener('click', () => {
      const row = this.rows.get(s.id)
      if (row !== undefined) this.onDisconnect(row.session, describeSession(row.session).who)
    })
    const endpoint = el('span', { class: `badge badge-${s.endpoint}` }, ENDPOINT_LABEL[s.endpoint] ?? s.endpoint)
    const tr = el(
      'tr',
      { 'data-session-id': s.id, 'data-endpoint': s.endpoint },
      el('td', { 'data-label': 'Endpoint', class: 'col-endpoint' }, endpoint),
      cell('who', 'Who'),
      cell('org', 'Org'),
      cell('where', 'Where'),
      cell('since', 'Connected'),
      cell('activity', 'Sent'),
      cell('error', 'Last error'),
      el('td', { 'data-label': '', class: 'col-action' }, button),
    )
    return { tr, cells, button, session: s, haystack: '' }
  }

  /**
   * @private
   * @param {Row} row
   * @param {Session} s
   */
  fill(row, s) {
    const shown = describeSession(s)
    row.session = s
    const who = /** @type {HTMLElement} */ (row.cells.who)
    if (who.dataset.value !== `${shown.who}\n${shown.detail}`) {
      who.dataset.value = `${shown.who}\n${shown.detail}`
      // One element in the cell: at phone width the cell is a label and a value side by side.
      const value = el('div', {}, el('span', { class: 'who' }, shown.who))
      if (shown.detail) value.append(el('span', { class: 'sub' }, shown.detail))
      who.replaceChildren(value)
    }
    setText(/** @type {HTMLElement} */ (row.cells.org), shown.org)
    setText(/** @type {HTMLElement} */ (row.cells.where), shown.where)
    const since = /** @type {HTMLElement} */ (row.cells.since)
    setText(since, formatAgo(s.connected_at, this.now))
    since.title = `${formatClock(s.connected_at)} (${s.connected_at}) from ${s.remote}`
    setText(/** @type {HTMLElement} */ (row.cells.activity), shown.activity)
    const error = /** @type {HTMLElement} */ (row.cells.error)
    setText(error, shown.lastError || '—')
    error.classList.toggle('has-error', shown.lastError !== '')
    row.button.setAttribute('aria-label', `Disconnect ${shown.who} (${ENDPOINT_LABEL[s.endpoint] ?? s.endpoint})`)
    row.haystack = [s.id, s.endpoint, shown.who, shown.detail, shown.org, shown.where, s.remote, shown.lastError].join('\n').toLowerCase()
  }

  /** @private */
  applyFilter() {
    const text = this.parts.filter.value.trim().toLowerCase()
    const endpoint = this.parts.endpoint.value
    let shown = 0
    for (const row of this.rows.values()) {
      const match = (endpoint === '' || row.session.endpoint === endpoint) && (text === '' || row.haystack.includes(text))
      row.tr.hidden = !match
      if (match) shown++
    }
    const total = this.rows.size
    setText(this.parts.count, shown === total ? `${total} live` : `${shown} of ${total} shown`)
    this.parts.empty.hidden = shown > 0
    setText(this.parts.empty, total === 0 ? 'No live sessions.' : 'No session matches the filter.')
  }
}
