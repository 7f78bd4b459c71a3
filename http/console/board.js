// The case board beside the map: the filters, the order, and the rows. It is virtualised: only
// the rows in view (and a few more) exist in the page, so 1,000+ live cases stay smooth.
import { STATES, SYSTEMS, compare, isDone, matches, rank } from './cases.js';
import { $, esc, option } from './dom.js';
import { fmtSpan, localName, stateName, t } from './i18n.js';
import { applyMarkerFilter } from './map.js';
import { serverNow, state } from './state.js';

/** A row's height in px (app.css's `--row` agrees). */
const ROW_H = 46;
/** Rows kept beyond each edge of the view, so a quick scroll shows no gap. */
const OVERSCAN = 8;
/** The filters' select elements. */
const FILTER_IDS = ['f-state', 'f-priority', 'f-system', 'f-street', 'f-community', 'f-department'];

/** Wires the board: a click or Enter on a row calls `select(id)`; a filter's change `invalidate()`. */
export function initBoard(select, invalidate) {
  const list = $('board-list');
  list.addEventListener('scroll', () => renderRows(), { passive: true });
  list.addEventListener('click', (e) => { const row = e.target.closest('.row'); if (row) select(row.dataset.caseId); });
  list.addEventListener('keydown', (e) => {
    const row = e.target.closest('.row');
    if (row && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); select(row.dataset.caseId); }
  });
  for (const id of FILTER_IDS) $(id).onchange = invalidate;
}

function fillSelect(id, all, items) {
  const el = $(id), keep = el.value;
  el.innerHTML = option('', all) + items.map(([v, l]) => option(v, l)).join('');
  el.value = keep;
}

/** The filters' options, in the page's language; what is chosen stays chosen. */
export function fillFilters() {
  fillSelect('f-state', t('all_states'), STATES.map((s) => [s, stateName(s)]));
  fillSelect('f-priority', t('all_priorities'), [1, 2, 3, 4].map((p) => [String(p), t('priority_n', p)]));
  fillSelect('f-system', t('all_systems'), SYSTEMS.map((s) => [s, t('system_' + s)]));
  const streets = (state.region.areas || []).filter((a) => a.level === 'sub_district');
  fillSelect('f-street', t('all_streets'), streets.map((a) => [a.code, a.name]).sort((a, b) => a[1].localeCompare(b[1])));
  $('f-street').hidden = streets.length === 0; // San Francisco has no 街道
  fillSelect('f-community', t('all_communities'), state.region.communities.map((c) => [c.id, c.name]).sort((a, b) => a[1].localeCompare(b[1])));
  fillSelect('f-department', t('all_departments'), state.region.departments.map((d) => [d.id, localName(d)]).sort((a, b) => a[1].localeCompare(b[1])));
}

function filters() {
  const street = $('f-street').value;
  return {
    state: $('f-state').value, priority: $('f-priority').value, system: $('f-system').value, community: $('f-community').value, department: $('f-department').value,
    inStreet: street ? new Set(streetCommunities(street)) : null,
  };
}

/** The ids of the communities of the 街道 (sub-district) `code`. */
export function streetCommunities(code) { return state.region.communities.filter((c) => c.sub_district === code).map((c) => c.id); }

/** Orders the cases that pass the filters, shows only those on the map, and writes the rows. */
export function orderAndRender() {
  const f = filters();
  state.order = [];
  for (const c of state.cases.values()) if (matches(c, f)) state.order.push(c);
  state.order.sort(compare);
  state.dirty = false;
  $('board-count').textContent = t('shown', state.order.length, state.cases.size);
  $('board-spacer').style.height = `${state.order.length * ROW_H}px`;
  applyMarkerFilter(f);
  renderRows();
}

function communityName(id) { return state.region.communities.find((c) => c.id === id)?.name; }

/** A category's name in the region, else its id. */
/** A department's name in the page's language, by id (the id where the region has none). */
export function departmentName(id) { return localName(state.region.departments.find((d) => d.id === id)) || id; }

export function categoryName(id) { return localName(state.region.categories.find((c) => c.id === id)) || id; }

/** A case's countdown as `[text, overdue]`: the deadline that runs, else (at the top of the
 * escalation ladder, where none runs) the time since it was reported; '' once done. */
export function dueText(c) {
  if (!c.deadline) return isDone(c) ? ['', false] : [t('since', fmtSpan(serverNow() - Date.parse(c.created_at))), false];
  const left = Date.parse(c.deadline) - serverNow();
  return left >= 0 ? [t('due_in', fmtSpan(left)), false] : [t('overdue', fmtSpan(left)), true];
}
function rowClass(c) {
  return ['row', c.escalation_open ? 'escalated' : rank(c) === 1 ? 'unaccepted' : '', c.id === state.selected ? 'selected' : ''].join(' ');
}
function rowInner(c) {
  const [due, overdue] = dueText(c);
  const merged = c.source_ids.length > 1 ? ` <span class="badge merged">${esc(t('reports_n', c.source_ids.length))}</span>` : '';
  const escBadge = c.escalation_open ? ` <span class="badge esc">${esc(t('escalated'))}</span>` : '';
  const dept = (c.accepted_by ? [c.accepted_by] : c.departments).map(departmentName).join(', ');
  return `<span class="prio p${c.priority}">${c.priority}</span>` +
    `<span class="title">${esc(categoryName(c.category))} · ${esc(communityName(c.community) || t('no_community'))}${merged}${escBadge}</span>` +
    `<span class="badge s-${c.state}">${esc(stateName(c.state))}</span>` +
    `<span class="sub">${esc(c.source_ids[0])} · ${esc(dept)}</span>` +
    `<span class="due${overdue ? ' overdue' : ''}">${esc(due)}</span>`;
}

/** Writes the rows in view. Their elements are kept and only what changed is written, so a row
 * under the pointer is not replaced by a countdown tick. */
export function renderRows() {
  const list = $('board-list'), rows = $('board-rows');
  const first = Math.max(0, Math.floor(list.scrollTop / ROW_H) - OVERSCAN);
  const last = Math.min(state.order.length, Math.ceil((list.scrollTop + list.clientHeight) / ROW_H) + OVERSCAN);
  const n = Math.max(0, last - first);
  rows.style.transform = `translateY(${first * ROW_H}px)`;
  while (rows.children.length < n) rows.appendChild(document.createElement('div'));
  while (rows.children.length > n) rows.lastChild.remove();
  for (let i = 0; i < n; i++) {
    const c = state.order[first + i], el = rows.children[i];
    const cls = rowClass(c), inner = rowInner(c);
    if (el.className !== cls) { el.className = cls; el.tabIndex = 0; }
    if (el.dataset.caseId !== c.id) el.dataset.caseId = c.id;
    if (el.linkbusInner !== inner) { el.innerHTML = inner; el.linkbusInner = inner; }
  }
  state.stats.renders++;
}

/** Frame times over `ms` milliseconds while the board scrolls through every case, and
 * `eachFrame(n)` (if given) does something more at the `n`th frame: resolves to `{frames, mean,
 * p50, p95, max}` (ms). For the tests and for measuring by hand. */
export function measureFrames(ms, eachFrame) {
  return new Promise((resolve) => {
    const list = $('board-list'), times = [];
    let last = performance.now();
    const end = last + ms;
    const step = (ts) => {
      times.push(ts - last); last = ts;
      list.scrollTop = (list.scrollTop + 3 * ROW_H) % Math.max(1, list.scrollHeight - list.clientHeight);
      eachFrame?.(times.length);
      if (ts < end) requestAnimationFrame(step);
      else {
        times.shift();
        const sorted = [...times].sort((a, b) => a - b);
        const at = (q) => sorted[Math.floor(sorted.length * q)] || 0;
        resolve({ frames: times.length, mean: times.reduce((a, b) => a + b, 0) / Math.max(1, times.length), p50: at(0.5), p95: at(0.95), max: sorted[sorted.length - 1] || 0 });
      }
    };
    requestAnimationFrame((ts) => { last = ts; requestAnimationFrame(step); });
  });
}
