// The dashboard's entry point: sign-in, the hash router, the live-refresh and clock helpers.
// Pages live in pages.js (workflows, deployments), triggers.js and runs.js.

import { ApiError, api, clearToken, setToken, token } from './api.js';
import { h, replace, tick, flash } from './dom.js';
import { workflowsPage, workflowPage, deploymentPage } from './pages.js';
import { triggerPage } from './triggers.js';
import { runsPage, runPage, approvalsPage } from './runs.js';

const ROUTES = [
  [/^\/$/, workflowsPage, 'workflows'],
  [/^\/workflows\/([^/]+)$/, workflowPage, 'workflows'],
  [/^\/deployments\/([^/]+)$/, deploymentPage, 'workflows'],
  [/^\/triggers\/([^/]+)$/, triggerPage, 'workflows'],
  [/^\/runs$/, runsPage, 'runs'],
  [/^\/runs\/([^/]+)$/, runPage, 'runs'],
  [/^\/approvals$/, approvalsPage, 'approvals'],
];

let current = null;

/** What a page gets: its root element and helpers whose work stops when the page is left. */
class PageContext {
  constructor(root) {
    this.root = root;
    this.cleanups = [];
    this.left = false;
  }

  onLeave(fn) { this.cleanups.push(fn); }

  leave() {
    this.left = true;
    for (const fn of this.cleanups.splice(0)) fn();
  }

  /**
   * Calls `fn` every `ms` while the tab is visible (and at once when it becomes visible again),
   * never twice at the same time; stops when the page is left.
   */
  poll(fn, ms) {
    let busy = false;
    const run = async () => {
      if (busy || this.left || document.visibilityState !== 'visible') return;
      busy = true;
      try { await fn(); } catch (e) { if (!(e instanceof ApiError && e.status === 401)) console.warn(e); } finally { busy = false; }
    };
    const timer = setInterval(run, ms);
    const onVisible = () => { if (document.visibilityState === 'visible') run(); };
    document.addEventListener('visibilitychange', onVisible);
    this.onLeave(() => { clearInterval(timer); document.removeEventListener('visibilitychange', onVisible); });
  }
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, q = ''] = raw.split('?');
  return { path, params: new URLSearchParams(q) };
}

function signInPage(root, message) {
  const input = h('input', {
    id: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true,
    'aria-describedby': 'token-hint',
  });
  const error = h('p', { id: 'sign-in-error', class: 'form-error', role: 'alert', hidden: !message }, message || '');
  const button = h('button', { type: 'submit', id: 'sign-in', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'card sign-in', id: 'sign-in-form' },
    h('h1', {}, 'Sign in to triggerd'),
    h('label', { for: 'token' }, 'Admin API token'),
    input,
    h('p', { class: 'hint', id: 'token-hint' },
      'The token triggerd printed on its first start (or TRIGGERD_API_TOKEN). It is kept in this tab only (sessionStorage) and sent as a Bearer header.'),
    error,
    button);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    button.disabled = true;
    error.hidden = true;
    try {
      await api('GET', '/workflows?limit=1', undefined, { tokenOverride: value });
      setToken(value);
      input.value = '';
      route();
    } catch (e) {
      error.textContent = e instanceof ApiError && e.status === 401
        ? 'Wrong token: the server refused it (401 unauthorized). Use the admin API token printed when triggerd first started, or the value of TRIGGERD_API_TOKEN; `triggerd token reset` makes a new one.'
        : `Could not sign in: ${e.message}`;
      error.hidden = false;
      input.focus();
      input.select();
    } finally {
      button.disabled = false;
    }
  });
  replace(root, form);
  input.focus();
}

async function route() {
  const { path, params } = parseHash();
  if (!path.startsWith('/')) return; // an in-page anchor such as the skip link
  if (current) current.leave();
  const view = document.getElementById('view');
  const root = h('div', { class: 'page' });
  view.replaceChildren(root);
  const ctx = new PageContext(root);
  current = ctx;
  const nav = document.getElementById('nav');
  if (!token()) {
    nav.hidden = true;
    signInPage(root);
    return;
  }
  nav.hidden = false;
  const match = ROUTES.map(([re, page, section]) => [path.match(re), page, section]).find(([m]) => m);
  for (const a of nav.querySelectorAll('a')) {
    if (match && a.dataset.nav === match[2]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!match) {
    replace(root, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the workflows')));
    return;
  }
  const [m, page] = match;
  replace(root, h('p', { class: 'muted' }, 'Loading…'));
  try {
    await page(ctx, ...m.slice(1).map(decodeURIComponent), params);
  } catch (e) {
    if (ctx.left) return;
    if (e instanceof ApiError && e.status === 401) return; // signed out: the event re-routes
    replace(root,
      h('h1', {}, e instanceof ApiError && e.status === 404 ? 'Not found' : 'Something went wrong'),
      h('p', { class: 'form-error', role: 'alert' }, e.message),
      h('p', {}, h('a', { href: '#/' }, 'Back to the workflows')));
  }
}

/** Re-renders the current page (after an action changed what it shows). */
export function reload() {
  route();
}

window.addEventListener('hashchange', route);
window.addEventListener('triggerd:signed-out', (ev) => {
  if (current) current.leave();
  current = null;
  const root = h('div', { class: 'page' });
  document.getElementById('view').replaceChildren(root);
  document.getElementById('nav').hidden = true;
  signInPage(root, `Signed out: ${ev.detail}. Sign in again.`);
});
document.getElementById('sign-out').addEventListener('click', () => {
  clearToken();
  flash('Signed out.');
  route();
});
document.getElementById('skip-link').addEventListener('click', (ev) => {
  ev.preventDefault();
  document.getElementById('view').focus();
});
setInterval(tick, 1000);
route();
