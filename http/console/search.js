// The search above the board, and the link to one case.
//
// The field asks GET /api/cases?q= (the case book's index over case and source ids, address, the
// reporter's name and phone; closed cases that left memory too) once typing pauses, and lists
// what it finds under the field, newest first; a click opens the case and folds the list away
// (focusing the field again shows it). `/#case/<id>` opens a case
// on load and whenever the hash changes to it; the detail offers that link (detail.js).
import { api } from './api.js';
import { categoryName } from './board.js';
import { select } from './detail.js';
import { $, esc } from './dom.js';
import { errorText, fmtTime, stateName, t } from './i18n.js';

/** How long typing must pause before the field asks the server, ms. */
const DEBOUNCE_MS = 250;
/** How many matches are listed. */
const LIMIT = 20;
/** The fewest letters or digits a search has (as the API requires: shorter ones are not sent). */
const MIN_CHARS = 2;

/** The pending debounce, and the number of the last search sent (an older answer is dropped). */
let timer = null, asked = 0;

/** Wires the field, its list and the hash; the placeholder follows the page's language. */
export function initSearch() {
  const input = $('search');
  const hint = () => { input.placeholder = t('search_hint'); input.setAttribute('aria-label', t('search_hint')); };
  hint();
  new MutationObserver(hint).observe(document.documentElement, { attributes: true, attributeFilter: ['lang'] });
  input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(run, DEBOUNCE_MS); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { clearTimeout(timer); run(); }
    if (e.key === 'Escape') { input.value = ''; show(null); }
  });
  $('search-results').addEventListener('click', (e) => {
    const item = e.target.closest('[data-case]');
    if (item) { show(null); openCase(item.dataset.case); }
  });
  input.addEventListener('focus', () => { if (input.value.trim() && $('search-results').hidden) run(); });
  window.addEventListener('hashchange', openFromHash);
}

/** Opens the case `/#case/<id>` names, if it names one. */
export function openFromHash() {
  const match = /^#case\/(.+)$/.exec(location.hash);
  if (match) select(decodeURIComponent(match[1]));
}

/** Opens case `id` through its link (so the address bar holds it), or at once if it already does. */
function openCase(id) {
  const hash = '#case/' + encodeURIComponent(id);
  if (location.hash === hash) select(id);
  else location.hash = hash;
}

/** Asks the server for what the field holds, and lists it. */
async function run() {
  const q = $('search').value.trim();
  const n = ++asked;
  if (!q) { show(null); return; }
  if ((q.match(/[\p{L}\p{N}]/gu) || []).length < MIN_CHARS) { show({ hint: t('search_short') }, q); return; }
  try {
    const page = await api(`/api/cases?q=${encodeURIComponent(q)}&limit=${LIMIT}`);
    if (n === asked) show(page, q);
  } catch (err) {
    if (n === asked) show({ hint: errorText(err) }, q);
  }
}

/** Lists `page` (an answer of GET /api/cases for `q`, or `{hint}`) under the field, the list's
 * `data-q` saying for what; hides it for null. */
function show(page, q) {
  const list = $('search-results');
  list.dataset.q = q ?? '';
  if (!page) { list.hidden = true; list.innerHTML = ''; return; }
  const cases = page.cases || [];
  const head = page.hint ?? (cases.length ? t(page.more ? 'search_more' : 'search_found', cases.length) : t('search_none'));
  list.innerHTML = `<li class="search-head">${esc(head)}</li>` + cases.map((r) => {
    const ids = (r.reports || []).map((x) => x.source_id).join(', ') || r.case.source_id;
    return `<li data-case="${esc(r.case_id)}" tabindex="0"><b>${esc(ids)}</b> ${esc(categoryName(r.case.category))}` +
      ` <span class="badge s-${esc(r.state)}">${esc(stateName(r.state))}</span>` +
      `<br><small>${esc(fmtTime(r.created_at, true))} · ${esc(r.case.address || '')}</small></li>`;
  }).join('');
  list.hidden = false;
}
