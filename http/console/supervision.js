// The supervision view (docs/supervision.md): the 街道 of a month ranked by a chosen rate, each
// with the three rates a hotline is judged by (三率: response, resolution, satisfaction), the cases
// received and the chosen rate's change from the month before, from GET /api/stats/ranking (the
// case book's figures, the same on every replica). Opened from the header; the table is read
// again when the month or the rate changes, or the language.
import { api } from './api.js';
import { $, esc, option } from './dom.js';
import { t, tz } from './i18n.js';
import { serverNow, state } from './state.js';

const RATES = ['response_rate', 'resolution_rate', 'satisfaction_rate'];
/** The last ranking read, drawn again in another language without asking again. */
let last = null;

/** Wires the header button and the panel's controls. */
export function initSupervision() {
  $('supervision').onclick = () => {
    const panel = $('sup-panel');
    panel.hidden = !panel.hidden;
    if (!panel.hidden) {
      if (!$('sup-month').value) $('sup-month').value = thisMonth();
      load();
    }
  };
  $('sup-close').onclick = () => { $('sup-panel').hidden = true; };
  $('sup-month').onchange = load;
  $('sup-rate').onchange = load;
}

/** The month now in the region's time zone, `YYYY-MM`. */
function thisMonth() {
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone: tz(), year: 'numeric', month: '2-digit' }).formatToParts(new Date(serverNow()));
  return `${parts.find((p) => p.type === 'year').value}-${parts.find((p) => p.type === 'month').value}`;
}

/** The rate choice's options, in the page's language (keeping the choice). */
export function renderSupervision() {
  const rate = $('sup-rate').value || 'satisfaction_rate';
  $('sup-rate').innerHTML = RATES.map((r) => option(r, t('sup_' + r))).join('');
  $('sup-rate').value = rate;
  if (last) draw(last);
}

async function load() {
  const month = $('sup-month').value;
  if (!/^\d{4}-\d{2}$/.test(month)) return;
  $('sup-msg').textContent = '';
  try {
    last = await api(`/api/stats/ranking?by=sub_district&rate=${encodeURIComponent($('sup-rate').value)}&month=${month}`);
    draw(last);
  } catch (err) {
    last = null;
    $('sup-rows').innerHTML = '';
    $('sup-msg').textContent = t('refused', err.message);
  }
}

/** A rate as a percentage with one decimal, '—' without one. */
const pct = (v) => (v == null ? '—' : `${(v * 100).toFixed(1)}%`);
/** A change in percentage points, signed. */
const points = (v) => (v == null ? '—' : `${v > 0 ? '+' : ''}${(v * 100).toFixed(1)}`);

/** The names of the region's 街道 by code. */
function names() {
  return new Map((state.region?.areas || []).filter((a) => a.level === 'sub_district').map((a) => [a.code, a.name]));
}

function draw(ranking) {
  const byCode = names();
  $('sup-head').innerHTML = ['sup_rank', 'sup_place', 'sup_received', ...RATES.map((r) => 'sup_' + r), 'sup_change']
    .map((k) => `<th>${esc(k === 'sup_change' ? t(k, t('sup_' + ranking.rate)) : t(k))}</th>`).join('');
  $('sup-rows').innerHTML = ranking.rows.map((r) => {
    const cells = [r.rank ?? '—', byCode.get(r.row.key) ?? r.row.key, r.row.received, ...RATES.map((k) => pct(r.row[k])), points(r.change)];
    return `<tr data-key="${esc(r.row.key)}">${cells.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`;
  }).join('');
  $('sup-msg').textContent = ranking.rows.length ? '' : t('sup_none');
}
