// @ts-check
// Elements built with DOM calls: text goes in as text (never as HTML), so a session's name
// or an error's reason cannot become markup.

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, string | undefined>} [attrs] `class`, `data-*`, `aria-*`, ...
 * @param {...(Node | string | null | undefined)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) node.setAttribute(k, v)
  for (const c of children) if (c !== null && c !== undefined) node.append(c)
  return node
}

/**
 * @param {string} tag
 * @param {Record<string, string | number>} [attrs]
 * @returns {SVGElement}
 */
export function svg(tag, attrs = {}) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v))
  return node
}

/**
 * The element with this id; a page that lacks it is a bug worth a loud error.
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} [type]
 * @returns {T}
 */
export function byId(id, type) {
  const node = document.getElementById(id)
  if (node === null) throw new Error(`#${id} is missing from the page`)
  if (type !== undefined && !(node instanceof type)) throw new Error(`#${id} is not a ${type.name}`)
  return /** @type {T} */ (node)
}

/**
 * Sets text only when it changed, so a screen reader's live region speaks only news.
 * @param {Element} node
 * @param {string} text
 */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text
}
