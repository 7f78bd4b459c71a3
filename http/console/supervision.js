// The supervision view (docs/supervision.md): the 街道 of a month ranked by a chosen rate, each
// with the three rates a hotline is judged by (三率: response, resolution, satisfaction), the cases
// received and the chosen rate's change from the month before, from GET /api/stats/ranking (the
// case book's figures, the same on every replica). A 街道's row opens its communities, ranked the
// same way (and "back" returns), the map zoomed to it; the row chosen is the place whose trend
// (sup_chart.js) is drawn below. While open, the map shades every community by the chosen rate: by its 街道's, or, inside
// a 街道, by its own. Below the table, the chosen place's categories rising this month against
// its own months before (GET /api/stats/rising) and its addresses with several cases this month
// (GET /api/stats/repeats: repeat complaints). Read again when the month, the rate or the period
// changes; drawn again in another language without asking again.
import { api } from './api.js';
import { categoryName, streetCommunities } from './board.js';
import { $, esc, option } from './dom.js';
import { errorText, t, tz } from './i18n.js';
import { shadeCommunities, zoomToCommunities } from './map.js';
import { drawTrend, trendRange } from './sup_chart.js';
import { serverNow, state } from './state.js';

const RATES = ['response_rate', 'resolution_rate', 'satisfaction_rate'];
/** What each rate divides by: a place with fewer of these is shaded grey, its rate not telling. */
const DENOMINATOR = { response_rate: 'due', resolution_rate: 'rated', satisfaction_rate: 'rated' };
/** The fewest cases a rate is shaded from (a rate of 1 of 2 says little). */
const MIN_DENOMINATOR = 5;
/** The map's classes: a rate below each bound (the last: any), worst red to best green. */
const CLASSES = [[0.6, '#d7191c'], [0.7, '#fdae61'], [0.8, '#ffffbf'], [0.9, '#a6d96a'], [Infinity, '#1a9641']];
/** The grey of a place with too few cases to rate. */
const TOO_FEW = '#bdbdbd';

/** What the view shows: the 街道 ranking read last, the 街道 opened (its code, its communities'
 * ranking) or none, the place chosen (`{group, key}`) or none, its rising categories and repeat
 * addresses; and how many rankings and places were asked for, so that only the last answer is
 * drawn (the month and the rate change quickly, answers come in any order). */
const view = { streets: null, street: null, communities: null, place: null, rising: null, repeats: null, asked: 0, placeAsked: 0 };

/** Wires the header button and the panel's controls. */
export function initSupervision() {
  $('supervision').onclick = () => {
    const panel = $('sup-panel');
    panel.hidden = !panel.hidden;
    if (panel.hidden) { shadeCommunities(new Map(), '', []); return; }
    if (!$('sup-month').value) $('sup-month').value = thisMonth();
    load();
  };
  $('sup-close').onclick = () => { $('sup-panel').hidden = true; shadeCommunities(new Map(), '', []); };
  $('sup-month').onchange = load;
  $('sup-rate').onchange = load;
  $('sup-period').onchange = loadPlace;
  $('sup-back').onclick = () => { Object.assign(view, { street: null, communities: null, place: null, rising: null, repeats: null }); draw(); };
  $('sup-rows').onclick = (e) => {
    const key = e.target.closest('tr')?.dataset.key;
    if (!key) return;
    if (view.street) { view.place = { group: 'community', key }; draw(); loadPlace(); } else openStreet(key);
  };
}

/** The month now in the region's time zone, `YYYY-MM`. */
function thisMonth() {
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone: tz(), year: 'numeric', month: '2-digit' }).formatToParts(new Date(serverNow()));
  return `${parts.find((p) => p.type === 'year').value}-${parts.find((p) => p.type === 'month').value}`;
}

/** The choices' options, in the page's language (keeping the choices), and the view again. */
export function renderSupervision() {
  const rate = $('sup-rate').value || 'satisfaction_rate';
  $('sup-rate').innerHTML = RATES.map((r) => option(r, t('sup_' + r))).join('');
  $('sup-rate').value = rate;
  const period = $('sup-period').value || 'month';
  $('sup-period').innerHTML = ['month', 'week'].map((p) => option(p, t('sup_by_' + p))).join('');
  $('sup-period').value = period;
  if (view.streets) draw();
}

/** The ranking of `by` (`sub_district` or `community`) in the month and rate chosen. */
const ranking = (by) => api(`/api/stats/ranking?by=${by}&rate=${encodeURIComponent($('sup-rate').value)}&month=${$('sup-month').value}`);

/** Reads the 街道 ranking (and the opened 街道's communities) again. */
async function load() {
  if (!/^\d{4}-\d{2}$/.test($('sup-month').value)) return;
  $('sup-msg').textContent = '';
  const asked = ++view.asked;
  try {
    const streets = await ranking('sub_district');
    const communities = view.street ? await ranking('community') : null;
    if (asked !== view.asked) return;
    [view.streets, view.communities] = [streets, communities];
    draw();
    loadPlace();
  } catch (err) {
    if (asked !== view.asked) return;
    view.streets = null;
    $('sup-rows').innerHTML = '';
    $('sup-msg').textContent = errorText(err);
  }
}

/** Opens the 街道 `code`: its communities, ranked, and its own trend. */
async function openStreet(code) {
  const asked = ++view.asked;
  try {
    const communities = await ranking('community');
    if (asked !== view.asked) return;
    view.communities = communities;
    view.street = code;
    view.place = { group: 'sub_district', key: code };
    draw();
    zoomToCommunities(streetCommunities(code), $('sup-panel'));
    loadPlace();
  } catch (err) { $('sup-msg').textContent = errorText(err); }
}

/** Reads and draws the chosen place's trend (nothing chosen: nothing drawn). */
async function loadPlace() {
  const place = view.place;
  $('sup-place').hidden = !place;
  if (!place) return;
  const [month, period] = [$('sup-month').value, $('sup-period').value];
  const { from, to } = trendRange(month, period);
  const where = `by=${place.group}&place=${encodeURIComponent(place.key)}&month=${month}`;
  const asked = ++view.placeAsked;
  try {
    const [trend, rising, repeats] = await Promise.all([
      api(`/api/stats?by=${place.group}&period=${period}&from=${from}&to=${to}&key=${encodeURIComponent(place.key)}`),
      api(`/api/stats/rising?${where}`),
      api(`/api/stats/repeats?${where}`),
    ]);
    if (asked !== view.placeAsked) return; // another place or month was chosen meanwhile
    drawTrend($('sup-trend'), trend.rows, $('sup-rate').value, month, period);
    [view.rising, view.repeats] = [rising, repeats];
    drawLists();
  } catch (err) { if (asked === view.placeAsked) $('sup-trend').textContent = errorText(err); }
}

/** The chosen place's rising categories and repeat addresses, as last read. */
function drawLists() {
  if (!view.rising) return;
  $('sup-rising').innerHTML = view.rising.rows.map((r) =>
    `<li data-category="${esc(r.category)}"><b>${esc(categoryName(r.category))}</b> ${esc(t('sup_rise', r.count, r.baseline.toFixed(1)))} · <span class="conf ${esc(r.confidence)}">${esc(t('sup_' + r.confidence))}</span></li>`).join('') ||
    `<li class="none">${esc(t('sup_no_rise', view.rising.baseline_months))}</li>`;
  $('sup-repeats').innerHTML = view.repeats.rows.map((r) =>
    `<li title="${esc(r.case_ids.join(' '))}">${esc(r.address)} · ${esc(t('sup_cases_n', r.count))}</li>`).join('') ||
    `<li class="none">${esc(t('sup_no_repeats'))}</li>`;
}

/** A rate as a percentage with one decimal, '—' without one. */
const pct = (v) => (v == null ? '—' : `${(v * 100).toFixed(1)}%`);
/** A change in percentage points, signed. */
const points = (v) => (v == null ? '—' : `${v > 0 ? '+' : ''}${(v * 100).toFixed(1)}`);

/** The names of the region's 街道 and communities by code or id. */
function names() {
  const byKey = new Map((state.region?.areas || []).filter((a) => a.level === 'sub_district').map((a) => [a.code, a.name]));
  for (const c of state.region?.communities || []) byKey.set(c.id, c.name);
  return byKey;
}

/** The colour a ranked place is shaded with by `rate`: grey with too few cases to tell. */
function shade(r, rate) {
  if (r.value == null || r.row[DENOMINATOR[rate]] < MIN_DENOMINATOR) return TOO_FEW;
  return CLASSES.find(([below]) => r.value < below)[1];
}

/** The legend of the map's shades (`[colour, label]`), in the page's language. */
function legend() {
  let low = 0;
  const items = CLASSES.map(([below, colour]) => {
    const label = below === Infinity ? `≥ ${low * 100}%` : `${low * 100}–${below * 100}%`;
    low = below;
    return [colour, label];
  });
  return [...items, [TOO_FEW, t('sup_too_few', MIN_DENOMINATOR)]];
}

/** Shades the map: every community by its 街道's rate, the opened 街道's by their own. */
function shadeMap() {
  const rate = view.streets.rate, fills = new Map();
  const streets = new Map(view.streets.rows.map((r) => [r.row.key, shade(r, rate)]));
  for (const c of state.region.communities) if (streets.has(c.sub_district)) fills.set(c.id, streets.get(c.sub_district));
  if (view.street) {
    const own = new Map(view.communities.rows.map((r) => [r.row.key, r]));
    for (const c of state.region.communities) if (c.sub_district === view.street) fills.set(c.id, own.has(c.id) ? shade(own.get(c.id), rate) : TOO_FEW);
  }
  shadeCommunities(fills, t('sup_' + rate), legend());
}

/** The table: the 街道, or the opened 街道's communities; and the map. */
function draw() {
  const byKey = names();
  const members = view.street ? new Set(state.region.communities.filter((c) => c.sub_district === view.street).map((c) => c.id)) : null;
  const ranked = view.street ? view.communities : view.streets;
  const rows = members ? ranked.rows.filter((r) => members.has(r.row.key)) : ranked.rows;
  $('sup-back').hidden = !view.street;
  $('sup-where').textContent = view.street ? t('sup_in_street', byKey.get(view.street) ?? view.street) : t('sup_title');
  $('sup-head').innerHTML = ['sup_rank', view.street ? 'sup_community' : 'sup_place', 'sup_received', ...RATES.map((r) => 'sup_' + r), 'sup_change']
    .map((k) => `<th>${esc(k === 'sup_change' ? t(k, t('sup_' + ranked.rate)) : t(k))}</th>`).join('');
  // Inside a 街道 the ranks are its communities' among themselves.
  let rank = 0;
  $('sup-rows').innerHTML = rows.map((r) => {
    const shownRank = r.rank == null ? '—' : (members ? ++rank : r.rank);
    const cells = [shownRank, byKey.get(r.row.key) ?? r.row.key, r.row.received, ...RATES.map((k) => pct(r.row[k])), points(r.change)];
    const chosen = view.place?.key === r.row.key ? ' class="chosen"' : '';
    return `<tr data-key="${esc(r.row.key)}"${chosen}>${cells.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`;
  }).join('');
  $('sup-msg').textContent = rows.length ? '' : t('sup_none');
  $('sup-place-name').textContent = view.place ? byKey.get(view.place.key) ?? view.place.key : '';
  $('sup-place').hidden = !view.place;
  drawLists();
  shadeMap();
}
