// Workflows, their versions and deployments; a deployment's triggers and the form that creates
// one.

import { api, query, seg } from './api.js';
import {
  h, replace, badge, time, json, facts, table, flash, field, showErrors, clearErrors,
  parseJsonField, copyButton,
} from './dom.js';
import { describe } from './cron.js';

/** Every item of a list endpoint, following next_cursor (bounded: dashboards show recent data). */
export async function listAll(path, params = {}, maxPages = 5) {
  const out = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i += 1) {
    const page = await api('GET', `${path}${query({ ...params, limit: 200, cursor })}`);
    out.push(...page.data);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return out;
}

export function link(href, text, attrs = {}) {
  return h('a', { href, ...attrs }, text);
}

export function code(text) {
  return h('code', {}, text);
}

async function submitting(form, fn) {
  const button = form.querySelector('button[type=submit]');
  if (button) button.disabled = true;
  clearErrors(form);
  try {
    await fn();
  } catch (e) {
    showErrors(form, e);
  } finally {
    if (button) button.disabled = false;
  }
}
export { submitting };

export async function workflowsPage(ctx) {
  const [workflows, deployments] = await Promise.all([
    listAll('/workflows'), listAll('/deployments'),
  ]);
  const byWorkflow = new Map();
  for (const d of deployments) {
    if (!byWorkflow.has(d.workflow)) byWorkflow.set(d.workflow, []);
    byWorkflow.get(d.workflow).push(d);
  }
  const rows = workflows.map((w) => h('tr', {},
    h('td', {}, link(`#/workflows/${seg(w.name)}`, w.name)),
    h('td', {}, `v${w.latest_version}`),
    h('td', {}, time(w.updated_at)),
    h('td', {}, (byWorkflow.get(w.name) || []).map((d) =>
      h('span', { class: 'chip' }, link(`#/deployments/${seg(d.id)}`, d.name))))));
  const nameInput = h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9_-]{1,64}', autocomplete: 'off' });
  const defInput = h('textarea', { name: 'definition', rows: 10, spellcheck: 'false', class: 'mono' });
  defInput.value = JSON.stringify({ inputs: { email: { type: 'string', required: true } }, steps: [], output: { email: '{{ input.email }}' } }, null, 2);
  const form = h('form', { class: 'card', id: 'workflow-form' },
    h('h2', {}, 'Store a workflow definition'),
    h('p', { class: 'hint' }, 'Creates the workflow, or a new version when the definition changed (PUT /api/v1/workflows/{name}).'),
    field('Name', nameInput, { path: 'name' }),
    field('Definition (JSON)', defInput, { path: 'definition' }),
    h('button', { type: 'submit', class: 'primary' }, 'Save'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitting(form, async () => {
      const def = parseJsonField(defInput, {});
      if (def && typeof def === 'object' && !Array.isArray(def)) def.name = nameInput.value.trim();
      const put = await api('PUT', `/workflows/${seg(nameInput.value.trim())}`, def);
      flash(`Saved ${put.name} v${put.version}.`, 'ok');
      location.hash = `#/workflows/${seg(put.name)}`;
    });
  });
  replace(ctx.root,
    h('h1', {}, 'Workflows'),
    workflows.length
      ? table(['Workflow', 'Latest', 'Updated', 'Deployments'], rows, { id: 'workflows-table' })
      : h('p', { class: 'empty' }, 'No workflows yet. Store one below, or with `triggerd apply -f workflow.json --deploy production`.'),
    form);
}

export async function workflowPage(ctx, name) {
  const [workflow, versions, deployments] = await Promise.all([
    api('GET', `/workflows/${seg(name)}`),
    api('GET', `/workflows/${seg(name)}/versions?limit=200`),
    listAll('/deployments'),
  ]);
  const mine = deployments.filter((d) => d.workflow === name);
  const depName = h('input', { name: 'name', required: true, value: mine.length ? '' : 'production', autocomplete: 'off' });
  const version = h('select', { name: 'version' },
    h('option', { value: '' }, 'latest (follows new versions)'),
    versions.data.map((v) => h('option', { value: String(v.version) }, `v${v.version} (pinned)`)));
  const form = h('form', { class: 'card', id: 'deploy-form' },
    h('h2', {}, 'Deploy'),
    h('div', { class: 'row wrap' },
      field('Deployment name', depName, { path: 'name' }),
      field('Version', version, { path: 'version' })),
    h('button', { type: 'submit', class: 'primary' }, 'Deploy'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitting(form, async () => {
      const body = { name: depName.value.trim() };
      if (version.value) body.version = Number(version.value);
      const created = await api('POST', `/workflows/${seg(name)}/deployments`, body);
      flash(`Deployed ${name} as ${created.name}.`, 'ok');
      location.hash = `#/deployments/${seg(created.id)}`;
    });
  });
  replace(ctx.root,
    h('p', { class: 'crumbs' }, link('#/', 'Workflows'), ' / ', name),
    h('h1', {}, name, ' ', h('span', { class: 'muted' }, `v${workflow.latest_version}`)),
    workflow.description ? h('p', {}, workflow.description) : null,
    h('section', {},
      h('h2', {}, 'Deployments'),
      mine.length
        ? table(['Deployment', 'Version', 'Created', ''], mine.map((d) => h('tr', {},
          h('td', {}, link(`#/deployments/${seg(d.id)}`, d.name)),
          h('td', {}, d.tracks_latest ? `latest (v${workflow.latest_version})` : `v${d.version}`),
          h('td', {}, time(d.created_at)),
          h('td', {}, link(`#/runs${query({ deployment_id: d.id })}`, 'Runs')))), { id: 'deployments-table' })
        : h('p', { class: 'empty' }, 'Not deployed yet.')),
    form,
    h('section', {},
      h('h2', {}, 'Definition'),
      json(workflow.definition, { summary: `Definition v${workflow.latest_version}`, open: true })),
    h('section', {},
      h('h2', {}, 'Versions'),
      h('ol', { class: 'versions', reversed: true },
        versions.data.map((v) => h('li', {},
          h('details', {},
            h('summary', {}, `v${v.version} — `, time(v.created_at)),
            json(v.definition, { summary: 'Definition', open: true })))))));
}

/** One line describing a trigger's configuration. */
export function triggerSummary(t) {
  const c = t.config || {};
  if (t.trigger_type === 'cron') {
    return c.at ? `once at ${c.at}` : `${describe(c.schedule)} (${c.timezone || 'UTC'})`;
  }
  const parts = [];
  parts.push(c.secret_configured ? `signed (${(c.signature && c.signature.scheme) || 'hmac-sha256'})` : 'unsigned');
  if (c.api_keys_configured) parts.push(`${c.api_keys_configured} API key(s)`);
  parts.push(c.rate_limit_per_minute ? `${c.rate_limit_per_minute}/min` : 'no rate limit');
  parts.push(`≤ ${formatBytes(c.max_body_bytes)}`);
  return parts.join(' · ');
}

export function formatBytes(n) {
  if (n === undefined || n === null) return '—';
  if (n >= 1048576 && n % 1048576 === 0) return `${n / 1048576} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

export async function deploymentPage(ctx, id) {
  const deployment = await api('GET', `/deployments/${seg(id)}`);
  const [triggers, workflow] = await Promise.all([
    listAll(`/deployments/${seg(id)}/triggers`),
    api('GET', `/workflows/${seg(deployment.workflow)}`).catch(() => null),
  ]);
  const list = triggers.length
    ? table(['Trigger', 'Type', 'State', 'Configuration', 'Fired', 'Next'], triggers.map((t) => h('tr', { dataset: { trigger: t.id } },
      h('td', {}, link(`#/triggers/${seg(t.id)}`, t.name || t.id)),
      h('td', {}, t.trigger_type, t.url ? [' ', copyButton(t.url, { label: 'Copy URL' })] : null),
      h('td', {}, badge(t.enabled ? 'enabled' : 'disabled')),
      h('td', {}, triggerSummary(t)),
      h('td', {}, `${t.fire_count}× `, t.last_fired_at ? time(t.last_fired_at) : null),
      h('td', {}, t.trigger_type === 'cron' ? time(t.next_fire_at) : ''))), { id: 'triggers-table' })
    : h('p', { class: 'empty' }, 'No triggers yet: create one below.');
  replace(ctx.root,
    h('p', { class: 'crumbs' }, link('#/', 'Workflows'), ' / ',
      link(`#/workflows/${seg(deployment.workflow)}`, deployment.workflow), ' / ', deployment.name),
    h('h1', {}, `${deployment.workflow} · ${deployment.name}`),
    facts([
      ['Deployment id', code(deployment.id)],
      ['Version', deployment.tracks_latest ? `latest${workflow ? ` (v${workflow.latest_version})` : ''}` : `v${deployment.version}`],
      ['Created', time(deployment.created_at)],
      ['Runs', link(`#/runs${query({ deployment_id: deployment.id })}`, 'Show the runs of this deployment')],
    ]),
    h('section', {}, h('h2', {}, 'Triggers'), list),
    createTriggerForm(deployment, workflow));
}

const SCHEMES = ['hmac-sha256', 'github', 'stripe', 'slack', 'standard-webhooks'];

function createTriggerForm(deployment, workflow) {
  const inputs = workflow && workflow.definition && workflow.definition.inputs ? Object.keys(workflow.definition.inputs) : [];
  const type = h('select', { name: 'trigger_type', id: 'new-trigger-type' },
    h('option', { value: 'webhook' }, 'Webhook'), h('option', { value: 'cron' }, 'Cron schedule'));
  const name = h('input', { name: 'name', id: 'new-trigger-name', autocomplete: 'off', placeholder: 'e.g. crm' });
  // Webhook fields.
  const mapping = h('textarea', { id: 'new-trigger-mapping', rows: 4, class: 'mono', spellcheck: 'false',
    placeholder: inputs.length ? JSON.stringify(Object.fromEntries(inputs.map((i) => [i, i]))) : '{"email": "customer.email"}' });
  const secret = h('input', { id: 'new-trigger-secret', type: 'password', autocomplete: 'new-password' });
  const scheme = h('select', { id: 'new-trigger-scheme' }, SCHEMES.map((x) => h('option', { value: x }, x)));
  const rate = h('input', { id: 'new-trigger-rate', inputmode: 'numeric', placeholder: '60' });
  const bodyLimit = h('input', { id: 'new-trigger-body-limit', inputmode: 'numeric', placeholder: '262144' });
  const methods = h('input', { id: 'new-trigger-methods', placeholder: 'POST' });
  // Cron fields.
  const schedule = h('input', { id: 'new-trigger-schedule', placeholder: '0 9 * * 1', autocomplete: 'off' });
  const words = h('p', { class: 'hint', id: 'new-trigger-schedule-words', 'aria-live': 'polite' });
  schedule.addEventListener('input', () => { words.textContent = describe(schedule.value); });
  const zone = h('input', { id: 'new-trigger-timezone', value: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC', list: 'zones' });
  const zones = h('datalist', { id: 'zones' }, ['UTC', 'Europe/London', 'Europe/Paris', 'Europe/Berlin', 'America/New_York', 'America/Chicago', 'America/Los_Angeles', 'Asia/Tokyo', 'Asia/Kolkata', 'Australia/Sydney'].map((z) => h('option', { value: z })));
  const cronInput = h('textarea', { id: 'new-trigger-input', rows: 3, class: 'mono', spellcheck: 'false', placeholder: '{}' });
  const catchUp = h('select', { id: 'new-trigger-catch-up' },
    ['latest', 'none', 'all'].map((x) => h('option', { value: x }, x)));

  const webhookFields = h('fieldset', { class: 'kind-webhook' },
    h('legend', {}, 'Webhook'),
    field('Input mapping (JSON: input → path)', mapping, { path: 'config.input_mapping',
      hint: `Paths read the JSON body, or $headers.x, $query.x, $path, $method. Empty: each input reads the body field of its name${inputs.length ? ` (${inputs.join(', ')})` : ''}.` }),
    h('div', { class: 'row wrap' },
      field('Signing secret', secret, { path: 'config.secret', hint: 'Optional; senders must then sign each request.' }),
      field('Signature scheme', scheme, { path: 'config.signature' })),
    h('div', { class: 'row wrap' },
      field('Rate limit per minute', rate, { path: 'config.rate_limit_per_minute', hint: 'Default 60; 0 = none.' }),
      field('Body limit (bytes)', bodyLimit, { path: 'config.max_body_bytes', hint: 'Default 262144.' }),
      field('Methods', methods, { path: 'config.methods', hint: 'Comma-separated; default POST.' })));
  const cronFields = h('fieldset', { class: 'kind-cron', hidden: true },
    h('legend', {}, 'Cron'),
    field('Schedule (minute hour day-of-month month day-of-week)', schedule, { path: 'config.schedule' }),
    words,
    h('div', { class: 'row wrap' },
      field('Time zone', zone, { path: 'config.timezone' }), zones,
      field('Missed slots after downtime', catchUp, { path: 'config.catch_up' })),
    field('Input (JSON)', cronInput, { path: 'config.input' }));
  type.addEventListener('change', () => {
    webhookFields.hidden = type.value !== 'webhook';
    cronFields.hidden = type.value !== 'cron';
  });
  const form = h('form', { class: 'card', id: 'create-trigger-form', novalidate: true },
    h('h2', {}, 'Create a trigger'),
    h('div', { class: 'row wrap' },
      field('Type', type, { path: 'trigger_type' }),
      field('Name', name, { path: 'name', hint: 'Letters, digits, _ and -.' })),
    webhookFields, cronFields,
    h('button', { type: 'submit', class: 'primary', id: 'create-trigger' }, 'Create trigger'));

  const number = (el) => {
    const v = el.value.trim();
    if (!v) return undefined;
    return /^-?\d+$/.test(v) ? Number(v) : v; // let the server say what is wrong with it
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitting(form, async () => {
      const config = {};
      if (type.value === 'webhook') {
        const m = parseJsonField(mapping, undefined);
        if (m !== undefined) config.input_mapping = m;
        if (secret.value) {
          config.secret = secret.value;
          config.signature = { scheme: scheme.value };
        }
        const r = number(rate);
        if (r !== undefined) config.rate_limit_per_minute = r;
        const b = number(bodyLimit);
        if (b !== undefined) config.max_body_bytes = b;
        if (methods.value.trim()) config.methods = methods.value.split(',').map((x) => x.trim().toUpperCase()).filter(Boolean);
      } else {
        config.schedule = schedule.value.trim();
        config.timezone = zone.value.trim() || 'UTC';
        config.catch_up = catchUp.value;
        const i = parseJsonField(cronInput, undefined);
        if (i !== undefined) config.input = i;
      }
      const body = { trigger_type: type.value, config };
      if (name.value.trim()) body.name = name.value.trim();
      const created = await api('POST', `/deployments/${seg(deployment.id)}/triggers`, body);
      flash(`Created trigger ${created.name || created.id}.`, 'ok');
      location.hash = `#/triggers/${seg(created.id)}`;
    });
  });
  return form;
}
