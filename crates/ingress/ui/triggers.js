// A trigger: its URL (copy, rotate), state and limits, schedule, dry run, the activity log with
// request details, its recent runs and the per-minute chart. The activity, runs and chart refresh
// every 2 s while the tab is visible.

import { ApiError, api, query, seg } from './api.js';
import {
  h, replace, badge, time, json, facts, table, flash, field, confirmAction, parseJsonField,
  duration, copyToClipboard,
} from './dom.js';
import { describe } from './cron.js';
import { chart } from './chart.js';
import { link, code, formatBytes, submitting } from './pages.js';
import { runRows, RUN_HEADERS } from './runs.js';
import { reload } from './app.js';

const PAGE = 25;
const POLL_MS = 2000;

async function copyText(text, input, status) {
  if (await copyToClipboard(text)) {
    status.textContent = 'Copied to the clipboard.';
  } else {
    // Neither way is allowed here: select it for Ctrl+C / long-press.
    input.focus();
    input.select();
    status.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
  }
  status.dataset.copied = text;
}

function urlBlock(trigger) {
  const input = h('input', { id: 'webhook-url', class: 'mono url', readonly: true, value: trigger.url, 'aria-label': 'Webhook URL' });
  const status = h('span', { id: 'copy-status', class: 'hint', 'aria-live': 'polite' });
  const button = h('button', { type: 'button', id: 'copy-url', onclick: () => copyText(trigger.url, input, status) }, 'Copy');
  return h('div', { class: 'url-row' }, input, button, status);
}

function rotateForm(trigger) {
  const grace = h('input', { id: 'rotate-grace', inputmode: 'numeric', value: '0', size: 8 });
  const form = h('form', { class: 'inline-form', id: 'rotate-form' },
    field('Grace period (seconds)', grace, { path: 'grace_seconds', hint: 'The old URL keeps working this long (at most 7 days = 604800); 0 stops it at once.' }),
    h('button', { type: 'submit', id: 'rotate', class: 'danger' }, 'Rotate URL'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const g = grace.value.trim() === '' ? 0 : Number(grace.value.trim());
    const when = g ? `keeps working for ${g} s` : 'stops working immediately';
    if (!await confirmAction(`Rotate the URL of this trigger? The current URL ${when}; senders must be given the new one.`, 'Rotate')) return;
    await submitting(form, async () => {
      const body = Number.isNaN(g) ? { grace_seconds: grace.value.trim() } : { grace_seconds: g };
      const rotated = await api('POST', `/triggers/${seg(trigger.id)}/rotate`, body);
      flash(rotated.previous_token_valid_until
        ? `Rotated. The old URL works until ${rotated.previous_token_valid_until}.`
        : 'Rotated. The old URL no longer works.', 'ok');
      reload();
    });
  });
  return form;
}

function limitsForm(trigger) {
  const c = trigger.config || {};
  const rate = h('input', { id: 'edit-rate', inputmode: 'numeric', value: String(c.rate_limit_per_minute ?? ''), size: 8 });
  const body = h('input', { id: 'edit-body-limit', inputmode: 'numeric', value: String(c.max_body_bytes ?? ''), size: 10 });
  const form = h('form', { class: 'inline-form', id: 'limits-form' },
    field('Rate limit per minute', rate, { path: 'config.rate_limit_per_minute', hint: '0 = none' }),
    field('Body limit (bytes)', body, { path: 'config.max_body_bytes' }),
    h('button', { type: 'submit' }, 'Save limits'));
  const num = (v) => (/^-?\d+$/.test(v.trim()) ? Number(v.trim()) : v.trim());
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitting(form, async () => {
      await api('PATCH', `/triggers/${seg(trigger.id)}`, {
        config: { rate_limit_per_minute: num(rate.value), max_body_bytes: num(body.value) },
      });
      flash('Limits saved.', 'ok');
      reload();
    });
  });
  return form;
}

function dryRunForm(trigger) {
  const method = h('select', { id: 'test-method' }, ['POST', 'GET', 'PUT', 'PATCH', 'DELETE'].map((m) => h('option', { value: m }, m)));
  const body = h('textarea', { id: 'test-body', rows: 6, class: 'mono', spellcheck: 'false', placeholder: '{"customer": {"email": "ada@example.com"}}' });
  const headers = h('textarea', { id: 'test-headers', rows: 2, class: 'mono', spellcheck: 'false', placeholder: '{"x-event": "order.created"}' });
  const q = h('textarea', { id: 'test-query', rows: 2, class: 'mono', spellcheck: 'false', placeholder: '{"currency": "USD"}' });
  const result = h('div', { id: 'test-result', 'aria-live': 'polite' });
  const form = h('form', { class: 'card', id: 'dry-run-form' },
    h('h2', {}, 'Dry run'),
    h('p', { class: 'hint' }, 'Maps and validates a sample request like a real one would be — no run, no log row, no rate-limit token, no signature check.'),
    h('div', { class: 'row wrap' }, field('Method', method, { path: 'method' })),
    field('Body (JSON)', body, { path: 'body' }),
    h('div', { class: 'row wrap' },
      field('Headers (JSON)', headers, { path: 'headers' }),
      field('Query (JSON)', q, { path: 'query' })),
    h('button', { type: 'submit', id: 'dry-run', class: 'primary' }, 'Try it'),
    result);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    result.replaceChildren();
    submitting(form, async () => {
      const payload = { method: method.value, body: parseJsonField(body, null) };
      const hd = parseJsonField(headers, undefined);
      if (hd !== undefined) payload.headers = hd;
      const qq = parseJsonField(q, undefined);
      if (qq !== undefined) payload.query = qq;
      try {
        const answer = await api('POST', `/triggers/${seg(trigger.id)}/test`, payload);
        replace(result, h('div', { class: 'result ok', id: 'test-ok' },
          h('h3', {}, badge('accepted'), ' The workflow would start with this input'),
          json(answer.input, { summary: 'Input', open: true }),
          h('details', {}, h('summary', {}, 'Trigger input (what templates see as trigger)'), json(answer.trigger_input, { open: true }))));
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 422) throw e;
        replace(result, h('div', { class: 'result bad', id: 'test-refused' },
          h('h3', {}, badge('invalid_input'), ` A real request would be refused: ${e.status} ${e.code}`),
          h('p', {}, e.message),
          Array.isArray(e.details) ? h('ul', { class: 'details-list' }, e.details.map((d) =>
            h('li', {}, h('strong', {}, d.input || d.path || ''), ': ', d.message))) : null));
      }
    });
  });
  return form;
}

function nextFire(t) {
  return t.next_fire_at ? time(t.next_fire_at) : (t.enabled ? 'none (a one-time trigger that fired)' : 'none (disabled)');
}

function firedView(t) {
  const n = t.fire_count;
  const what = t.trigger_type === 'cron' ? `${n} time${n === 1 ? '' : 's'}` : `${n} run${n === 1 ? '' : 's'} started`;
  return h('span', { id: 'fired' }, `${what}; last `, time(t.last_fired_at));
}

function cronFacts(t) {
  const c = t.config || {};
  return facts([
    c.at ? ['Fires once at', time(c.at)] : ['Schedule', h('span', {}, h('span', { id: 'schedule-words' }, describe(c.schedule)), ' ', code(c.schedule))],
    ['Time zone', c.timezone || 'UTC'],
    ['Next fire', h('span', { id: 'next-fire' }, nextFire(t))],
    ['Fired', firedView(t)],
    ['Missed slots', c.catch_up || 'latest'],
    ['Input', json(c.input || {}, { summary: 'Input' })],
  ]);
}

function webhookFacts(t) {
  const c = t.config || {};
  return facts([
    ['URL', urlBlock(t)],
    ['Signature', c.secret_configured ? `${(c.signature && c.signature.scheme) || 'hmac-sha256'} (secret set)` : 'none (unsigned)'],
    c.api_keys_configured ? ['API keys', `${c.api_keys_configured}: ${(c.api_key_names || []).join(', ')}`] : null,
    ['Rate limit', c.rate_limit_per_minute ? `${c.rate_limit_per_minute} per minute` : 'none'],
    ['Body limit', formatBytes(c.max_body_bytes)],
    ['Methods', (c.methods || ['POST']).join(', ')],
    ['Response', (c.response && c.response.mode) || 'async'],
    ['Input mapping', c.input_mapping ? json(c.input_mapping, { summary: 'Mapping' }) : 'each input reads the body field of its name'],
    c.filter ? ['Filter', json(c.filter, { summary: 'Filter' })] : null,
    ['Fired', firedView(t)],
  ]);
}

export async function triggerPage(ctx, id) {
  const trigger = await api('GET', `/triggers/${seg(id)}`);
  const deployment = await api('GET', `/deployments/${seg(trigger.deployment_id)}`).catch(() => null);
  const isWebhook = trigger.trigger_type === 'webhook';

  const toggle = h('button', { type: 'button', id: 'toggle-enabled' }, trigger.enabled ? 'Disable' : 'Enable');
  toggle.addEventListener('click', async () => {
    toggle.disabled = true;
    try {
      await api('PATCH', `/triggers/${seg(trigger.id)}`, { enabled: !trigger.enabled });
      flash(trigger.enabled ? 'Trigger disabled.' : 'Trigger enabled.', 'ok');
      reload();
    } catch (e) { flash(e.message, 'bad'); toggle.disabled = false; }
  });
  const remove = h('button', { type: 'button', id: 'remove-trigger', class: 'danger' }, 'Remove');
  remove.addEventListener('click', async () => {
    if (!await confirmAction(`Remove trigger ${trigger.name || trigger.id}? ${isWebhook ? 'Its URL stops working at once. ' : ''}Its runs stay readable.`, 'Remove')) return;
    try {
      await api('DELETE', `/triggers/${seg(trigger.id)}`);
      flash('Trigger removed.', 'ok');
      location.hash = `#/deployments/${seg(trigger.deployment_id)}`;
    } catch (e) { flash(e.message, 'bad'); }
  });

  const chartBox = h('div', { id: 'chart-box' });
  const activityBox = h('div', { id: 'activity' });
  const detailBox = h('div', { id: 'request-detail', 'aria-live': 'polite' });
  const runsBox = h('div', { id: 'trigger-runs' });

  replace(ctx.root,
    h('p', { class: 'crumbs' }, link('#/', 'Workflows'), ' / ',
      deployment ? [link(`#/workflows/${seg(deployment.workflow)}`, deployment.workflow), ' / ',
        link(`#/deployments/${seg(deployment.id)}`, deployment.name), ' / '] : null,
      trigger.name || trigger.id),
    h('h1', {}, trigger.name || trigger.id, ' ', badge(trigger.enabled ? 'enabled' : 'disabled'),
      ' ', h('span', { class: 'muted' }, trigger.trigger_type)),
    h('div', { class: 'row wrap actions' }, toggle, remove,
      link(`#/runs${query({ trigger_id: trigger.id })}`, 'All runs of this trigger', { class: 'button' })),
    isWebhook ? webhookFacts(trigger) : cronFacts(trigger),
    isWebhook ? h('section', {}, h('h2', {}, 'Requests per minute'), chartBox) : null,
    isWebhook ? h('section', {}, h('h2', {}, 'Activity'),
      h('p', { class: 'hint' }, 'Every request to this URL, accepted or refused, newest first; refreshed every 2 s. Select a row for its details.'),
      activityBox, detailBox) : null,
    h('section', {}, h('h2', {}, 'Recent runs'), runsBox),
    isWebhook ? dryRunForm(trigger) : null,
    isWebhook ? h('div', { class: 'row wrap cards' },
      h('section', { class: 'card' }, h('h2', {}, 'Rotate the URL'), rotateForm(trigger)),
      h('section', { class: 'card' }, h('h2', {}, 'Limits'), limitsForm(trigger))) : null);

  // The trigger's counters and the runs it started (first page), live.
  const refreshTrigger = async () => {
    const now = await api('GET', `/triggers/${seg(trigger.id)}`);
    const fired = ctx.root.querySelector('#fired');
    if (fired) fired.replaceWith(firedView(now));
    const next = ctx.root.querySelector('#next-fire');
    if (next) replace(next, nextFire(now));
  };
  // Each live part is rebuilt only when its data changed, so a row is not replaced under the
  // pointer or the keyboard focus every 2 s.
  let runsKey = null;
  const refreshRuns = async () => {
    const page = await api('GET', `/runs${query({ trigger_id: trigger.id, limit: 10 })}`);
    const key = JSON.stringify(page.data.map((r) => [r.id, r.status, r.finished_at]));
    if (key === runsKey) return;
    runsKey = key;
    replace(runsBox, page.data.length ? table(RUN_HEADERS, runRows(page.data), { id: 'trigger-runs-table' })
      : h('p', { class: 'empty' }, 'No runs yet.'));
  };

  if (!isWebhook) {
    const refresh = () => Promise.all([refreshRuns(), refreshTrigger()]);
    await refresh();
    ctx.poll(refresh, POLL_MS);
    return;
  }

  // Activity: pages by cursor; "Newer" pops the stack of cursors.
  const cursors = [null];
  let selected = null;
  let activityKey = null;
  const refreshActivity = async (force) => {
    const cursor = cursors[cursors.length - 1];
    const page = await api('GET', `/triggers/${seg(trigger.id)}/requests${query({ limit: PAGE, cursor })}`);
    const key = JSON.stringify([cursors.length, page.next_cursor, page.data.map((r) => r.id)]);
    if (key === activityKey && force !== true) return;
    activityKey = key;
    const rows = page.data.map((r) => {
      const tr = h('tr', {
        tabindex: 0, class: `clickable${selected === r.id ? ' selected' : ''}`, dataset: { request: r.id },
        'aria-label': `Request ${r.id}, ${r.outcome}`,
      },
      h('td', {}, time(r.received_at)),
      h('td', {}, r.method),
      h('td', {}, badge(r.outcome)),
      h('td', {}, String(r.status_code)),
      h('td', {}, code(r.id)),
      h('td', {}, r.run_id ? link(`#/runs/${seg(r.run_id)}`, r.run_id) : (r.error || '')),
      h('td', {}, duration(r.duration_ms)));
      const open = () => { selected = r.id; showRequest(trigger, r, detailBox); for (const x of tr.parentNode.children) x.classList.toggle('selected', x === tr); };
      tr.addEventListener('click', (ev) => { if (!ev.target.closest('a')) open(); });
      tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); open(); } });
      return tr;
    });
    const newer = h('button', { type: 'button', id: 'activity-newer', disabled: cursors.length === 1 }, '← Newer');
    newer.addEventListener('click', () => { cursors.pop(); refreshActivity(true); });
    const older = h('button', { type: 'button', id: 'activity-older', disabled: !page.next_cursor }, 'Older →');
    older.addEventListener('click', () => { cursors.push(page.next_cursor); refreshActivity(true); });
    // Keep keyboard focus on the same row across refreshes.
    const focused = document.activeElement && document.activeElement.dataset && document.activeElement.dataset.request;
    replace(activityBox,
      rows.length ? table(['Received', 'Method', 'Outcome', 'Status', 'Request id', 'Run or error', 'Took'], rows, { id: 'activity-table' })
        : h('p', { class: 'empty' }, 'No requests yet. Send one to the URL above.'),
      h('div', { class: 'row pager' }, newer, h('span', { class: 'muted' }, `page ${cursors.length}`), older));
    if (focused) { const again = activityBox.querySelector(`[data-request="${CSS.escape(focused)}"]`); if (again) again.focus(); }
  };

  let chartKey = null;
  const refreshChart = async () => {
    // The last hour of activity, at most 1,000 rows (the default retention).
    const since = Date.now() - 3600 * 1000;
    const rows = [];
    let cursor = null;
    for (let i = 0; i < 5; i += 1) {
      const page = await api('GET', `/triggers/${seg(trigger.id)}/requests${query({ limit: 200, cursor })}`);
      rows.push(...page.data);
      cursor = page.next_cursor;
      const last = page.data[page.data.length - 1];
      if (!cursor || !last || Date.parse(last.received_at) < since) break;
    }
    // The figure's padding and border: 2 × (0.6rem + 1px).
    const width = chartBox.clientWidth - 22;
    // Redrawn when a request arrived, the minute turned or the width changed.
    const key = JSON.stringify([Math.floor(Date.now() / 60000), width, rows.length, rows[0] && rows[0].id]);
    if (key === chartKey) return;
    chartKey = key;
    replace(chartBox, chart(rows, width));
  };

  const refreshAll = () => Promise.all([refreshActivity(), refreshRuns(), refreshChart(), refreshTrigger()]);
  await refreshAll();
  ctx.poll(refreshAll, POLL_MS);
}

function bodyView(req) {
  if (req.body === undefined || req.body === null || req.body === '') return h('p', { class: 'muted' }, 'No body.');
  if (req.body_encoding === 'base64') {
    return h('div', {}, h('p', { class: 'hint' }, 'Binary body, base64:'), h('pre', { class: 'json' }, String(req.body)));
  }
  if (typeof req.body === 'string') {
    try { return json(JSON.parse(req.body), { summary: 'Body', open: true }); } catch { return h('pre', { class: 'json' }, req.body); }
  }
  return json(req.body, { summary: 'Body', open: true });
}

async function showRequest(trigger, row, box) {
  replace(box, h('p', { class: 'muted' }, `Loading ${row.id}…`));
  const header = h('h3', {}, 'Request ', code(row.id), ' ', badge(row.outcome));
  const basics = facts([
    ['Received', time(row.received_at)],
    ['Method', row.method],
    ['Status', String(row.status_code)],
    ['Run', row.run_id ? link(`#/runs/${seg(row.run_id)}`, row.run_id) : '—'],
    ['Error', row.error || '—'],
    ['Body size', `${row.body_bytes} bytes`],
    ['From', row.remote_addr || '—'],
  ]);
  let detail;
  try {
    detail = await api('GET', `/triggers/${seg(trigger.id)}/requests/${seg(row.id)}`);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 405)) {
      replace(box, h('div', { class: 'card', id: 'request-card' }, header, basics,
        h('p', { class: 'notice', id: 'request-unavailable' },
          'The stored headers, query and body of this request are not available: this server does not keep request details yet, or the row was removed by retention.')));
      return;
    }
    replace(box, h('div', { class: 'card', id: 'request-card' }, header, basics, h('p', { class: 'form-error', role: 'alert' }, e.message)));
    return;
  }
  const req = detail.request;
  const replayOut = h('div', { id: 'replay-result', 'aria-live': 'polite' });
  const replay = h('button', { type: 'button', id: 'replay' }, 'Replay through the current mapping');
  // A request refused for its signature or API key is replayed only when asked explicitly.
  const unauthenticated = ['bad_signature', 'unauthorized'].includes(row.outcome)
    ? h('input', { type: 'checkbox', id: 'replay-unauthenticated' }) : null;
  replay.addEventListener('click', async () => {
    replay.disabled = true;
    try {
      const body = unauthenticated && unauthenticated.checked ? { allow_unauthenticated: true } : {};
      const answer = await api('POST', `/triggers/${seg(trigger.id)}/requests/${seg(row.id)}/replay`, body);
      replace(replayOut, h('p', {}, 'Replayed: ', answer && answer.run_id ? link(`#/runs/${seg(answer.run_id)}`, answer.run_id) : ''), json(answer, { summary: 'Answer' }));
    } catch (e) {
      replace(replayOut, h('p', { class: 'form-error', role: 'alert' }, `${e.status === 404 ? 'Replay is not available on this server. ' : ''}${e.message}`),
        Array.isArray(e.details) ? h('ul', {}, e.details.map((d) => h('li', {}, `${d.input || d.path || ''}: ${d.message}`))) : null);
    } finally { replay.disabled = false; }
  });
  const kept = req ? [
    h('h4', {}, 'Path'), h('pre', { class: 'json' }, req.path || '/'),
    h('h4', {}, 'Query'), json(req.query || {}, { summary: 'Query' }),
    h('h4', {}, 'Headers (secrets redacted)'), json(req.headers || {}, { summary: 'Headers' }),
    h('h4', {}, 'Body ', req.body_truncated ? h('span', { class: 'badge badge-warn' }, 'truncated') : null), bodyView(req),
  ] : h('p', { class: 'notice' }, 'The headers and body of this request were not kept.');
  replace(box, h('div', { class: 'card', id: 'request-card' }, header, basics, kept,
    detail.details ? [h('h4', {}, 'Why it was refused'), json(detail.details, { summary: 'Details', open: true })] : null,
    h('div', { class: 'row wrap' }, replay,
      unauthenticated ? h('label', {}, unauthenticated, ' even though the sender was not authenticated') : null),
    replayOut));
}

