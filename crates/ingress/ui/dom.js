// DOM helpers. Every value reaches the page through textContent or an attribute set with
// setAttribute: never through innerHTML, so data from the API cannot become markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'text') {
      el.textContent = String(value);
    } else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'selected') {
      el[key] = value;
    } else if (key === 'dataset') {
      for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
    } else {
      el.setAttribute(key === 'className' ? 'class' : key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h('a', {href: '#/'}, 'text', otherNode). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, built the same way. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const STATUS_KIND = {
  completed: 'ok', accepted: 'ok', enabled: 'ok', delivered: 'ok',
  running: 'info', pending: 'muted', waiting: 'warn', filtered: 'muted', duplicate: 'muted',
  failed: 'bad', cancelled: 'muted', disabled: 'muted',
  bad_signature: 'bad', unauthorized: 'bad', invalid_input: 'bad', malformed: 'bad',
  too_large: 'bad', rate_limited: 'warn', method_not_allowed: 'bad',
};

/** A coloured badge for a status or an outcome. */
export function badge(status) {
  const kind = STATUS_KIND[status] || 'muted';
  return h('span', { class: `badge badge-${kind}`, dataset: { status } }, status);
}

/** "3 min ago" / "in 12 s" for an RFC 3339 instant. */
export function relative(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso);
  const secs = Math.round((t - now) / 1000);
  const abs = Math.abs(secs);
  let text;
  if (abs < 5) return secs >= 0 ? 'now' : 'just now';
  if (abs < 60) text = `${abs} s`;
  else if (abs < 3600) text = `${Math.floor(abs / 60)} min${abs < 600 ? ` ${abs % 60} s` : ''}`;
  else if (abs < 86400) text = `${Math.floor(abs / 3600)} h ${Math.floor((abs % 3600) / 60)} min`;
  else text = `${Math.floor(abs / 86400)} d ${Math.floor((abs % 86400) / 3600)} h`;
  return secs >= 0 ? `in ${text}` : `${text} ago`;
}

/**
 * A relative time with the exact instant on hover (title) and for screen readers (<time>).
 * It keeps itself fresh: the ticker in app.js updates every [data-time] once a second.
 */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const local = new Date(iso);
  const title = Number.isNaN(local.getTime()) ? iso : `${iso} (${local.toLocaleString()})`;
  return h('time', { datetime: iso, title, dataset: { time: iso } }, relative(iso));
}

/** Refreshes every relative time on the page. */
export function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll('[data-time]')) {
    const text = relative(el.dataset.time, now);
    if (el.textContent !== text) el.textContent = text;
  }
}

/** Formatted JSON; folded into <details> when large. */
export function json(value, { summary = 'JSON', open = false } = {}) {
  const text = JSON.stringify(value === undefined ? null : value, null, 2);
  const pre = h('pre', { class: 'json' }, text);
  const lines = text.split('\n').length;
  if (lines <= 12 && text.length <= 600) return pre;
  return h('details', { class: 'json-fold', open },
    h('summary', {}, `${summary} (${lines} lines)`), pre);
}

/** A duration in ms as "850 ms" / "2.4 s" / "3 min 5 s". */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

/** A definition list from [label, value] pairs (values may be nodes). */
export function facts(pairs) {
  return h('dl', { class: 'facts' },
    pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** A table: headers and rows of cells; rows may be given as <tr> nodes. */
export function table(headers, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows)));
}

/** A short flash message in the live region. */
export function flash(text, kind = 'info') {
  const region = document.getElementById('flash');
  const msg = h('p', { class: `flash flash-${kind}` }, text);
  region.replaceChildren(msg);
  setTimeout(() => { if (msg.isConnected) msg.remove(); }, 6000);
}

/** Asks for confirmation in a modal dialog; resolves to true when confirmed. */
export function confirmAction(message, confirmLabel = 'Confirm') {
  const dialog = document.getElementById('confirm-dialog');
  document.getElementById('confirm-message').textContent = message;
  document.getElementById('confirm-yes').textContent = confirmLabel;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
    document.getElementById('confirm-no').focus();
  });
}

/** A labelled form field; `path` names the API field whose 422 details belong next to it. */
export function field(label, control, { path, hint } = {}) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  if (path) control.dataset.path = path;
  const wrap = h('div', { class: 'field', dataset: path ? { field: path } : {} },
    h('label', { for: id }, label), control);
  if (hint) {
    const hintEl = h('p', { class: 'hint', id: `${id}-hint` }, hint);
    control.setAttribute('aria-describedby', hintEl.id);
    wrap.append(hintEl);
  }
  return wrap;
}

/** Clears the error messages a previous submission left on `form`. */
export function clearErrors(form) {
  for (const el of form.querySelectorAll('.field-error, .form-error')) el.remove();
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

/**
 * Shows an API error on `form`: each 422 detail next to the field whose data-path is the
 * longest prefix of the detail's path (or input), the rest and the message at the top.
 */
export function showErrors(form, error) {
  clearErrors(form);
  const fields = [...form.querySelectorAll('[data-path]')];
  const general = [];
  for (const d of (Array.isArray(error.details) ? error.details : [])) {
    const path = d.path || (d.input !== undefined ? `input.${d.input}` : '');
    const message = d.message || JSON.stringify(d);
    let best = null;
    for (const f of fields) {
      const p = f.dataset.path;
      const hit = path === p || path.startsWith(`${p}.`) || path.startsWith(`${p}[`);
      if (hit && (!best || p.length > best.dataset.path.length)) best = f;
    }
    if (best) {
      best.setAttribute('aria-invalid', 'true');
      const where = best.closest('.field') || best;
      const text = path === best.dataset.path ? message : `${path}: ${message}`;
      where.append(h('p', { class: 'field-error', role: 'alert' }, text));
    } else {
      general.push(path ? `${path}: ${message}` : message);
    }
  }
  const top = h('div', { class: 'form-error', role: 'alert' },
    h('p', {}, `${error.message}${error.code ? ` (${error.status} ${error.code})` : ''}`),
    general.length ? h('ul', {}, general.map((g) => h('li', {}, g))) : null);
  const heading = form.querySelector('h2');
  if (heading) heading.after(top); else form.prepend(top);
}

/** Parses a JSON text field; an empty field gives `fallback`. Throws a field-shaped error. */
export function parseJsonField(control, fallback) {
  const text = control.value.trim();
  if (!text) return fallback;
  try {
    return JSON.parse(text);
  } catch (e) {
    const err = new Error('Fix the JSON in the highlighted field.');
    err.details = [{ path: control.dataset.path, message: `not valid JSON: ${e.message}` }];
    throw err;
  }
}

/** Copies `text` to the clipboard; false when the browser allows neither way. */
export async function copyToClipboard(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard permission (e.g. a plain-HTTP origin other than localhost): the old way.
    const area = h('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true' });
    area.value = text;
    document.body.append(area);
    area.select();
    let done = false;
    try { done = document.execCommand('copy'); } catch { done = false; }
    area.remove();
    return done;
  }
}

/** A "Copy" button for `text` with a spoken confirmation next to it. */
export function copyButton(text, { label = 'Copy', id } = {}) {
  const status = h('span', { class: 'hint copy-status', 'aria-live': 'polite' });
  const button = h('button', { type: 'button', id, 'aria-label': `${label}: ${text}` }, label);
  button.addEventListener('click', async () => {
    const done = await copyToClipboard(text);
    status.textContent = done ? 'Copied.' : 'Copy failed: select the text and press Ctrl+C.';
    if (done) status.dataset.copied = text;
  });
  return h('span', { class: 'copy' }, button, status);
}
