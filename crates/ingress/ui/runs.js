// Runs: the filtered list, one run (input, trigger input, step timeline, output, error, cancel),
// and the runs waiting for an approval.

import { ApiError, api, query, seg } from './api.js';
import { h, replace, badge, time, json, facts, table, flash, confirmAction, duration } from './dom.js';
import { link, code, listAll } from './pages.js';
import { reload } from './app.js';

const STATUSES = ['pending', 'running', 'waiting', 'completed', 'failed', 'cancelled'];
const ACTIVE = new Set(['pending', 'running', 'waiting']);
const POLL_MS = 2000;

export const RUN_HEADERS = ['Run', 'Status', 'Workflow', 'Source', 'Created', 'Took'];

function took(run) {
  if (!run.started_at || !run.finished_at) return '—';
  return duration(Date.parse(run.finished_at) - Date.parse(run.started_at));
}

/** Table rows for a list of runs. */
export function runRows(runs) {
  return runs.map((r) => h('tr', { dataset: { run: r.id, status: r.status } },
    h('td', {}, link(`#/runs/${seg(r.id)}`, r.id, { class: 'mono' })),
    h('td', {}, badge(r.status)),
    h('td', {}, `${r.workflow} v${r.workflow_version}`),
    h('td', {}, r.source),
    h('td', {}, time(r.created_at)),
    h('td', {}, took(r))));
}

export async function runsPage(ctx, params) {
  const filters = {
    deployment_id: params.get('deployment_id') || '',
    trigger_id: params.get('trigger_id') || '',
    status: params.get('status') || '',
  };
  const deployments = await listAll('/deployments');
  const dep = h('select', { id: 'filter-deployment', name: 'deployment_id' },
    h('option', { value: '' }, 'All deployments'),
    deployments.map((d) => h('option', { value: d.id, selected: d.id === filters.deployment_id }, `${d.workflow} · ${d.name}`)));
  const trg = h('input', { id: 'filter-trigger', name: 'trigger_id', value: filters.trigger_id, placeholder: 'trg_…', autocomplete: 'off' });
  const status = h('select', { id: 'filter-status', name: 'status' },
    h('option', { value: '' }, 'Any status'),
    STATUSES.map((x) => h('option', { value: x, selected: x === filters.status }, x)));
  const form = h('form', { class: 'row wrap filters', id: 'runs-filter', role: 'search' },
    h('label', {}, 'Deployment ', dep), h('label', {}, 'Trigger ', trg), h('label', {}, 'Status ', status),
    h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = `#/runs${query({ deployment_id: dep.value, trigger_id: trg.value.trim(), status: status.value })}`;
  });
  for (const el of [dep, status]) el.addEventListener('change', () => form.requestSubmit());
  const box = h('div', { id: 'runs' });
  replace(ctx.root, h('h1', {}, 'Runs'), form, box);

  const cursors = [null];
  let shown = null;
  const refresh = async (force) => {
    const page = await api('GET', `/runs${query({ ...filters, limit: 50, cursor: cursors[cursors.length - 1] })}`);
    // Rebuilt only when something changed, so rows are not replaced under the pointer.
    const key = JSON.stringify([cursors.length, page.next_cursor, page.data.map((r) => [r.id, r.status, r.finished_at])]);
    if (key === shown && force !== true) return;
    shown = key;
    const newer = h('button', { type: 'button', disabled: cursors.length === 1 }, '← Newer');
    newer.addEventListener('click', () => { cursors.pop(); refresh(true); });
    const older = h('button', { type: 'button', disabled: !page.next_cursor }, 'Older →');
    older.addEventListener('click', () => { cursors.push(page.next_cursor); refresh(true); });
    replace(box,
      page.data.length ? table(RUN_HEADERS, runRows(page.data), { id: 'runs-table' }) : h('p', { class: 'empty' }, 'No runs match.'),
      h('div', { class: 'row pager' }, newer, h('span', { class: 'muted' }, `page ${cursors.length}`), older));
  };
  await refresh();
  ctx.poll(refresh, POLL_MS);
}

function timeline(steps) {
  if (!Array.isArray(steps) || !steps.length) return h('p', { class: 'empty' }, 'No step executions (yet).');
  return h('ol', { class: 'timeline', id: 'timeline' }, steps.map((x) => h('li', { dataset: { status: x.status } },
    h('div', { class: 'row wrap' },
      h('strong', {}, x.step_id), h('span', { class: 'muted' }, x.type), badge(x.status),
      x.attempt > 1 ? h('span', { class: 'muted' }, `attempt ${x.attempt}`) : null,
      h('span', {}, 'started ', time(x.started_at)),
      x.finished_at ? h('span', { class: 'muted' }, `took ${duration(Date.parse(x.finished_at) - Date.parse(x.started_at))}`) : null),
    x.output !== null && x.output !== undefined ? json(x.output, { summary: 'Output' }) : null,
    x.error ? h('pre', { class: 'json error' }, typeof x.error === 'string' ? x.error : JSON.stringify(x.error, null, 2)) : null)));
}

export async function runPage(ctx, id) {
  let deployment = null;
  const render = async () => {
    const run = await api('GET', `/runs/${seg(id)}`);
    if (!deployment) deployment = await api('GET', `/deployments/${seg(run.deployment_id)}`).catch(() => ({ id: run.deployment_id }));
    const actions = h('div', { class: 'row wrap actions' });
    if (ACTIVE.has(run.status)) {
      const cancel = h('button', { type: 'button', id: 'cancel-run', class: 'danger' }, 'Cancel run');
      cancel.addEventListener('click', async () => {
        if (!await confirmAction(`Cancel run ${run.id}? A running step is interrupted; the run ends as cancelled.`, 'Cancel run')) return;
        try {
          await api('POST', `/runs/${seg(run.id)}/cancel`, {});
          flash('Run cancelled.', 'ok');
        } catch (e) {
          flash(e instanceof ApiError && e.status === 409 ? `Already finished: ${e.message}` : e.message, 'bad');
        }
        reload();
      });
      actions.append(cancel);
    }
    const waiting = run.status === 'waiting' ? h('section', { class: 'card notice' },
      h('h2', {}, `Waiting for ${run.waiting_reason === 'approval' ? 'an approval' : run.waiting_reason || 'an event'}`),
      run.waiting_expires_at ? h('p', {}, 'Expires ', time(run.waiting_expires_at)) : null,
      run.waiting_payload && run.waiting_payload.review_url
        ? h('p', {}, h('a', { href: run.waiting_payload.review_url, target: '_blank', rel: 'noopener noreferrer', id: 'review-link', class: 'button primary' }, 'Open the review page'))
        : null,
      run.waiting_payload && run.waiting_payload.resume_url
        ? h('p', {}, 'Resume URL: ', code(run.waiting_payload.resume_url)) : null) : null;
    replace(ctx.root,
      h('p', { class: 'crumbs' }, link('#/runs', 'Runs'), ' / ', run.id),
      h('h1', {}, 'Run ', h('span', { class: 'mono' }, run.id), ' ', badge(run.status)),
      actions,
      facts([
        ['Workflow', link(`#/workflows/${seg(run.workflow)}`, `${run.workflow} v${run.workflow_version}`)],
        ['Deployment', link(`#/deployments/${seg(run.deployment_id)}`, deployment.name || run.deployment_id)],
        ['Trigger', run.trigger_id ? link(`#/triggers/${seg(run.trigger_id)}`, run.trigger_id) : '—'],
        ['Source', run.source],
        ['Created', time(run.created_at)],
        ['Started', time(run.started_at)],
        ['Finished', time(run.finished_at)],
        ['Took', took(run)],
      ]),
      waiting,
      run.error ? h('section', { class: 'card bad', id: 'run-error' }, h('h2', {}, 'Error'),
        h('p', {}, code(run.error.code || ''), ' ', run.error.message || JSON.stringify(run.error))) : null,
      h('section', {}, h('h2', {}, 'Input'), json(run.input, { summary: 'Input', open: true })),
      h('section', {}, h('h2', {}, 'Trigger input'), json(run.trigger_input, { summary: 'Trigger input' })),
      h('section', {}, h('h2', {}, 'Steps'), timeline(run.step_executions)),
      h('section', {}, h('h2', {}, 'Final output'), run.final_output === null || run.final_output === undefined
        ? h('p', { class: 'muted' }, ACTIVE.has(run.status) ? 'Not finished yet.' : 'None.')
        : json(run.final_output, { summary: 'Final output', open: true })),
      run.context && Object.keys(run.context).length ? h('section', {}, h('h2', {}, 'Context'), json(run.context, { summary: 'Context' })) : null);
    return run;
  };
  const run = await render();
  if (ACTIVE.has(run.status)) {
    let last = JSON.stringify(run);
    ctx.poll(async () => {
      const now = await api('GET', `/runs/${seg(id)}`);
      const text = JSON.stringify(now);
      if (text !== last) { last = text; await render(); }
    }, POLL_MS);
  }
}

export async function approvalsPage(ctx) {
  const box = h('div', { id: 'approvals' });
  replace(ctx.root, h('h1', {}, 'Pending approvals'),
    h('p', { class: 'hint' }, 'Runs parked at an approval step. The review page shows the run\'s input and lets a person approve or reject it.'),
    box);
  let shown = null;
  const refresh = async () => {
    const waiting = (await listAll('/runs', { status: 'waiting' }, 3)).filter((r) => r.waiting_reason === 'approval');
    const key = JSON.stringify(waiting.map((r) => r.id));
    if (key === shown) return;
    shown = key;
    replace(box, waiting.length
      ? table(['Run', 'Workflow', 'Waiting since', 'Expires', 'Review'], waiting.map((r) => {
        const step = Array.isArray(r.step_executions) && r.step_executions.length ? r.step_executions[r.step_executions.length - 1] : null;
        return h('tr', { dataset: { run: r.id } },
          h('td', {}, link(`#/runs/${seg(r.id)}`, r.id, { class: 'mono' })),
          h('td', {}, `${r.workflow} v${r.workflow_version}`),
          h('td', {}, time(step ? step.started_at : r.created_at)),
          h('td', {}, time(r.waiting_expires_at)),
          h('td', {}, r.waiting_payload && r.waiting_payload.review_url
            ? h('a', { href: r.waiting_payload.review_url, target: '_blank', rel: 'noopener noreferrer', class: 'review-link' }, 'Review')
            : '—'));
      }), { id: 'approvals-table' })
      : h('p', { class: 'empty' }, 'Nothing is waiting for an approval.'));
  };
  await refresh();
  ctx.poll(refresh, 5000);
}
