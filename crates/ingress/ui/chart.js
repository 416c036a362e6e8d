// Webhooks per minute by outcome over the last hour, as an inline SVG built with DOM calls.

import { h, s } from './dom.js';

const MINUTES = 60;
const H = 160;
const PAD_LEFT = 30;
const PAD_BOTTOM = 18;

/** Counts `rows` (activity rows) per minute and outcome over the hour before `now`. */
export function bucket(rows, now = Date.now()) {
  const end = Math.floor(now / 60000) * 60000 + 60000;
  const start = end - MINUTES * 60000;
  const buckets = Array.from({ length: MINUTES }, (_, i) => ({ at: start + i * 60000, counts: {} }));
  for (const row of rows) {
    const t = Date.parse(row.received_at);
    if (Number.isNaN(t) || t < start || t >= end) continue;
    const b = buckets[Math.floor((t - start) / 60000)];
    b.counts[row.outcome] = (b.counts[row.outcome] || 0) + 1;
  }
  return buckets;
}

function order(outcomes) {
  // Accepted first (bottom of each bar), then the rest alphabetically: stable colours per name.
  return [...outcomes].sort((a, b) => (a === 'accepted' ? -1 : b === 'accepted' ? 1 : a.localeCompare(b)));
}

/**
 * The chart element (a figure with the SVG and a legend), `width` pixels wide: one SVG unit is
 * one pixel, so the labels keep their size on a phone and on a wide screen.
 */
export function chart(rows, width = 600, now = Date.now()) {
  const W = Math.max(300, Math.round(width));
  const buckets = bucket(rows, now);
  const outcomes = order(new Set(buckets.flatMap((b) => Object.keys(b.counts))));
  const max = Math.max(1, ...buckets.map((b) => Object.values(b.counts).reduce((x, y) => x + y, 0)));
  const plotW = W - PAD_LEFT;
  const plotH = H - PAD_BOTTOM;
  const barW = plotW / MINUTES;
  const total = buckets.reduce((n, b) => n + Object.values(b.counts).reduce((x, y) => x + y, 0), 0);
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'chart', role: 'img',
    'aria-label': `Webhooks per minute over the last hour: ${total} in all`,
  });
  svg.append(
    s('line', { x1: PAD_LEFT, y1: plotH, x2: W, y2: plotH, class: 'axis' }),
    s('text', { x: PAD_LEFT - 4, y: 10, class: 'tick', 'text-anchor': 'end' }, String(max)),
    s('text', { x: PAD_LEFT - 4, y: plotH, class: 'tick', 'text-anchor': 'end' }, '0'),
    s('text', { x: PAD_LEFT, y: H - 4, class: 'tick' }, '60 min ago'),
    s('text', { x: PAD_LEFT + plotW / 2, y: H - 4, class: 'tick', 'text-anchor': 'middle' }, '30 min ago'),
    s('text', { x: W, y: H - 4, class: 'tick', 'text-anchor': 'end' }, 'now'),
  );
  buckets.forEach((b, i) => {
    let y = plotH;
    const x = PAD_LEFT + i * barW;
    const label = new Date(b.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const parts = order(Object.keys(b.counts));
    const g = s('g', { class: 'bar' },
      s('title', {}, parts.length
        ? `${label}: ${parts.map((o) => `${o} ${b.counts[o]}`).join(', ')}`
        : `${label}: none`));
    for (const o of parts) {
      const hgt = (b.counts[o] / max) * (plotH - 12);
      y -= hgt;
      g.append(s('rect', {
        x: x + 0.5, y, width: Math.max(1, barW - 1), height: hgt,
        class: `seg o-${o}`, dataset: { outcome: o, count: b.counts[o] },
      }));
    }
    svg.append(g);
  });
  const legend = h('ul', { class: 'legend' },
    outcomes.length
      ? outcomes.map((o) => h('li', {}, h('span', { class: `swatch o-${o}` }), o))
      : h('li', { class: 'muted' }, 'No requests in the last hour'));
  return h('figure', { class: 'chart-figure', id: 'activity-chart' },
    svg, h('figcaption', {}, 'Webhooks per minute, by outcome, over the last hour'), legend);
}
