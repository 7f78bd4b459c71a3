// linkbus dispatcher console: the entry module. Plain JavaScript modules over Leaflet (a classic
// script loaded before them), no build step.
//
// Data flow: sign in (POST /console/session: the key for an HttpOnly session cookie and a CSRF
// token), read the region (/console/region, /console/region/communities), then follow
// /console/events (SSE): `reset` replaces every case, `case` updates one. Updates are queued and
// applied once per animation frame; the board is virtualised (only visible rows exist in the DOM)
// and case markers are drawn on one canvas, so 1,000+ live cases stay smooth. A case is opened
// with GET /api/cases/{id}; actions POST /api/cases/{id}/actions with the CSRF token.
//
// Modules: state.js (the shared state) · i18n.js (words, times) · api.js (HTTP) · events.js (the
// stream and the per-frame update) · cases.js (filter and order) · board.js · map.js · detail.js ·
// supervision.js (the 街道 ranking, shaded map) · sup_chart.js (its trend) · dom.js. This one signs in and out, switches the language, and wires the views together.
import { alertLog, initAlerts, renderAlertsButton, renderUrgent } from './alerts.js';
import { api } from './api.js';
import { fillFilters, initBoard, measureFrames, renderRows, streetCommunities } from './board.js';
import { initDetail, refreshDetail, renderDetail, select } from './detail.js';
import { $, narrow } from './dom.js';
import { connect, disconnect, invalidate, setLive } from './events.js';
import { errorText, fmtTime, t, tz } from './i18n.js';
import { buildLegend, clusterList, communityCount, communityFill, dotPoint, initMap, loadVolunteers, mapCaseIds, mapView, panStep, shownLabels, zoomToCommunities } from './map.js';
import { initSearch, openFromHash } from './search.js';
import { initSupervision, renderSupervision } from './supervision.js';
import { serverNow, state } from './state.js';

/** Writes every text of the page in the page's language. */
function applyLanguage() {
  document.documentElement.lang = state.lang;
  document.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll('[data-i18n-placeholder]').forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
  $('lang').textContent = state.lang === 'en' ? '中文' : 'English';
  $('login-key').placeholder = t('sign_in_hint');
  if (state.region) { fillFilters(); buildLegend(); }
  setLive(state.live);
  renderAlertsButton();
  renderSupervision();
  invalidate();
  // The explanation and linkbus's notes are written by the server in the language asked for.
  if (state.detail) { renderDetail(state.detail); refreshDetail(); }
}

/** The session ended while the console was open (the stream or an action was refused with 401). */
const sessionEnded = () => showLogin(t('session_ended'));

async function start() {
  applyLanguage();
  $('lang').onclick = () => { state.lang = state.lang === 'en' ? 'zh-CN' : 'en'; localStorage.setItem('linkbus.lang', state.lang); applyLanguage(); };
  $('login-form').onsubmit = async (e) => {
    e.preventDefault();
    $('login-error').textContent = '';
    try {
      // For measuring (docs/console.md): from here to `linkbus-map-drawn` and `linkbus-cases-drawn`.
      performance.mark('linkbus-sign-in');
      state.session = await api('/console/session', { method: 'POST', body: { key: $('login-key').value } });
      $('login-key').value = '';
      await open();
    } catch (err) { $('login-error').textContent = err.code === 'unauthorized' ? t('bad_key', err.message) : errorText(err); }
  };
  $('logout').onclick = async () => {
    try { await api('/console/session', { method: 'DELETE' }); } catch (_) { /* signed out either way */ }
    location.reload();
  };
  try {
    state.session = await api('/console/session');
    await open();
  } catch (_) { showLogin(); }
}

/** Shows the sign-in form, saying why when `why` (a sentence) is given. */
function showLogin(why) {
  disconnect();
  $('app').hidden = true; $('logout').hidden = true; $('login').hidden = false; $('who').textContent = '';
  $('login-error').textContent = why || '';
  $('login-key').focus();
}

/** Opens the console for the session: the region once, then the volunteers and the live cases. */
async function open() {
  $('login').hidden = true; $('app').hidden = false; $('logout').hidden = false;
  $('who').textContent = `${state.session.id} (${state.session.role})`;
  if (!state.region) {
    state.region = await api('/console/region');
    $('region-name').textContent = state.region.name;
    initMap(await api('/console/region/communities'), select);
    performance.mark('linkbus-map-drawn');
    fillFilters();
    initBoard(select, invalidate);
    initSearch();
    $('f-community').addEventListener('change', () => zoomToCommunities([$('f-community').value]));
    $('f-street').addEventListener('change', () => zoomToCommunities(streetCommunities($('f-street').value)));
    // 2,300 communities in Beijing: typing narrows the list and picks the first match.
    $('f-community-find').addEventListener('input', (e) => { if (narrow($('f-community'), e.target.value)) $('f-community').dispatchEvent(new Event('change')); });
    setInterval(tick, 1000);
    setInterval(loadVolunteers, 15000);
  }
  loadVolunteers();
  connect(sessionEnded);
  openFromHash();
}

/** Every second: the clock in the region's zone, and the visible rows' countdowns. */
function tick() {
  $('clock').textContent = fmtTime(new Date(serverNow()).toISOString(), true);
  $('clock').title = tz() || '';
  renderRows();
  renderUrgent();
}

initDetail(sessionEnded);
initAlerts(select);
initSupervision();

// Hooks for tests and measurements.
window.linkbusConsole = {
  stats: state.stats,
  caseCount: () => state.cases.size,
  mapCaseIds,
  communityCount,
  communityFill,
  state: (id) => state.cases.get(id)?.state,
  arrivedAt: (id) => state.arrived.get(id) ?? null,
  measureFrames,
  /** Frame times while the board scrolls and the map pans. */
  measureFramesPanning: (ms) => measureFrames(ms, panStep),
  alerts: alertLog,
  dotPoint,
  mapView,
  mapLabels: shownLabels,
  clusters: clusterList,
};

start();
