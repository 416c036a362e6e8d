// A cron schedule in words. Covers the common shapes; anything else is described field by field
// (the server is the judge of validity: it answers 422 for a schedule it refuses).

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const DAY_NAMES = { SUN: 0, MON: 1, TUE: 2, WED: 3, THU: 4, FRI: 5, SAT: 6 };
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August',
  'September', 'October', 'November', 'December'];
const MONTH_NAMES = Object.fromEntries(MONTHS.map((m, i) => [m.slice(0, 3).toUpperCase(), i + 1]));

const ALIASES = {
  '@hourly': 'every hour, on the hour',
  '@daily': 'every day at 00:00',
  '@midnight': 'every day at 00:00',
  '@weekly': 'every Sunday at 00:00',
  '@monthly': 'on the 1st of every month at 00:00',
  '@yearly': 'every 1 January at 00:00',
  '@annually': 'every 1 January at 00:00',
};

const isNum = (x) => /^\d+$/.test(x);
const pad = (n) => String(n).padStart(2, '0');

function ordinal(n) {
  const v = n % 100;
  const suffix = (v >= 11 && v <= 13) ? 'th' : ({ 1: 'st', 2: 'nd', 3: 'rd' }[n % 10] || 'th');
  return `${n}${suffix}`;
}

function dayName(x) {
  const up = x.toUpperCase();
  if (up in DAY_NAMES) return DAYS[DAY_NAMES[up]];
  if (isNum(x)) return DAYS[Number(x) % 7];
  return x;
}

function monthName(x) {
  const up = x.toUpperCase();
  if (up in MONTH_NAMES) return MONTHS[MONTH_NAMES[up] - 1];
  if (isNum(x) && Number(x) >= 1 && Number(x) <= 12) return MONTHS[Number(x) - 1];
  return x;
}

function list(items) {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

function weekdays(field) {
  return list(field.split(',').map((part) => {
    const [a, b] = part.split('-');
    if (b !== undefined) return `${dayName(a)} to ${dayName(b)}`;
    if (part.includes('#')) {
      const [d, n] = part.split('#');
      return `the ${ordinal(Number(n))} ${dayName(d)} of the month`;
    }
    if (part.endsWith('L')) return `the last ${dayName(part.slice(0, -1))} of the month`;
    return dayName(part);
  }));
}

function generic(name, field, namer = (x) => x) {
  if (field === '*' || field === '?') return null;
  const step = field.match(/^(\*|\d+(?:-\d+)?)\/(\d+)$/);
  if (step) {
    const from = step[1] === '*' ? '' : ` from ${step[1]}`;
    return `every ${step[2]} ${name}s${from}`;
  }
  return `${name} ${list(field.split(',').map((p) => p.split('-').map(namer).join(' to ')))}`;
}

/** Describes a five-field cron expression (or an alias) in English. */
export function describe(schedule) {
  const text = String(schedule || '').trim();
  if (!text) return '';
  if (ALIASES[text.toLowerCase()]) return ALIASES[text.toLowerCase()];
  const f = text.split(/\s+/);
  if (f.length !== 5) return `not five fields (minute hour day-of-month month day-of-week): ${text}`;
  const [min, hour, dom, mon, dow] = f;
  let when;
  if (isNum(min) && isNum(hour)) when = `at ${pad(hour)}:${pad(min)}`;
  else if (min === '*' && hour === '*') when = 'every minute';
  else if (/^\*\/\d+$/.test(min) && hour === '*') when = `every ${min.slice(2)} minutes`;
  else if (isNum(min) && hour === '*') when = min === '0' ? 'every hour, on the hour' : `at ${Number(min)} minutes past every hour`;
  else if (isNum(min) && /^\*\/\d+$/.test(hour)) when = `at minute ${Number(min)} of every ${hour.slice(2)} hours`;
  else when = [generic('minute', min), generic('hour', hour)].filter(Boolean).join(', ') || 'every minute';
  const parts = [when];
  const anyDom = dom === '*' || dom === '?';
  const anyDow = dow === '*' || dow === '?';
  if (!anyDom) {
    let d;
    if (dom === 'L') d = 'on the last day of the month';
    else if (dom === 'LW') d = 'on the last weekday of the month';
    else if (/^\d+W$/.test(dom)) d = `on the weekday nearest the ${ordinal(Number(dom.slice(0, -1)))}`;
    else if (/^[\d,]+$/.test(dom)) d = `on the ${list(dom.split(',').map((x) => ordinal(Number(x))))}`;
    else d = `on ${generic('day', dom)}`;
    parts.push(d);
  }
  if (!anyDow) parts.push(`${anyDom ? 'on' : 'or on'} ${weekdays(dow)}`);
  if (anyDom && anyDow && isNum(min) && isNum(hour)) parts.push('every day');
  if (mon !== '*' && mon !== '?') parts.push(`in ${generic('month', mon, monthName).replace(/^month /, '')}`);
  return parts.join(' ');
}
