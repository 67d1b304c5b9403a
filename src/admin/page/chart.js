// @ts-check
// The ingest rate over the last window as an SVG drawn with DOM calls (the CSP allows no
// inline style or script). The plot stretches to its box (preserveAspectRatio="none",
// non-scaling strokes in style.css); the axis labels are HTML beside it, so text never
// stretches.
import { setText, svg } from './dom.js'
import { formatCount, formatDuration, niceCeiling } from './format.js'

const W = 600
const H = 160

/** @typedef {{ t: number, accepted: number, rejected: number }} RatePoint */

/**
 * @typedef {{ plot: SVGSVGElement, yMax: Element, yMid: Element, xLabels: Element[], span: Element,
 *   summary: Element, box: HTMLElement }} ChartParts
 */

/**
 * A gateway younger than the window has no older buckets: the chart spans what there is,
 * from its first bucket, rather than a mostly empty window.
 * @param {ChartParts} parts
 * @param {RatePoint[]} points oldest first
 * @param {number} windowS
 * @param {number} intervalS
 */
export function drawRateChart(parts, points, windowS, intervalS) {
  const { plot } = parts
  const last = points.length > 0 ? /** @type {RatePoint} */ (points[points.length - 1]).t + intervalS * 1000 : Date.now()
  const oldest = points.length > 0 ? /** @type {RatePoint} */ (points[0]).t : last - intervalS * 1000
  const first = Math.max(last - windowS * 1000, oldest)
  const spanS = (last - first) / 1000
  let peak = 0
  let peakAccepted = 0
  let peakRejected = 0
  for (const p of points) {
    peakAccepted = Math.max(peakAccepted, p.accepted)
    peakRejected = Math.max(peakRejected, p.rejected)
  }
  peak = Math.max(peakAccepted, peakRejected)
  const top = niceCeiling(peak)
  const x = (/** @type {number} */ t) => ((t - first) / (last - first)) * W
  const y = (/** @type {number} */ v) => H - (v / top) * H

  plot.replaceChildren()
  plot.setAttribute('viewBox', `0 0 ${W} ${H}`)
  plot.setAttribute('preserveAspectRatio', 'none')
  for (const frac of [0.25, 0.5, 0.75]) {
    plot.append(svg('line', { class: 'grid', x1: 0, x2: W, y1: H * frac, y2: H * frac }))
  }
  const visible = points.filter((p) => p.t + intervalS * 1000 > first)
  if (visible.length > 0) {
    // Each bucket's value at its middle; the area closes along the bottom.
    const mid = (/** @type {RatePoint} */ p) => x(p.t + (intervalS * 1000) / 2)
    const line = (/** @type {'accepted' | 'rejected'} */ key) =>
      visible.map((p, i) => `${i === 0 ? 'M' : 'L'}${mid(p).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' ')
    const firstX = mid(/** @type {RatePoint} */ (visible[0])).toFixed(1)
    const lastX = mid(/** @type {RatePoint} */ (visible[visible.length - 1])).toFixed(1)
    plot.append(svg('path', { class: 'area accepted', d: `${line('accepted')} L${lastX},${H} L${firstX},${H} Z` }))
    plot.append(svg('path', { class: 'line accepted', d: line('accepted') }))
    plot.append(svg('path', { class: 'line rejected', d: line('rejected') }))
  }
  setText(parts.yMax, formatCount(top))
  setText(parts.yMid, formatCount(top / 2))
  const ticks = [`${formatDuration(spanS)} ago`, formatDuration((spanS * 2) / 3), formatDuration(spanS / 3), 'now']
  parts.xLabels.forEach((label, i) => setText(label, ticks[i] ?? ''))
  setText(parts.span, spanS >= windowS ? `last ${formatDuration(windowS)}` : `since start ${formatDuration(spanS)} ago`)
  const nowPoint = visible[visible.length - 1]
  // For tests and for anyone reading the DOM: what the chart shows, as numbers.
  parts.box.dataset.points = String(visible.length)
  parts.box.dataset.busyPoints = String(visible.filter((p) => p.accepted > 0).length)
  parts.box.dataset.peakAccepted = String(peakAccepted)
  parts.box.dataset.peakRejected = String(peakRejected)
  setText(
    parts.summary,
    `Peak over the last ${formatDuration(spanS)}: ${formatCount(peakAccepted)} accepted and ` +
      `${formatCount(peakRejected)} rejected lines per second; latest ${formatCount(nowPoint?.accepted ?? 0)} accepted.`,
  )
}
