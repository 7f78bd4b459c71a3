// The live cases: GET /console/events (Server-Sent Events) starts with a `reset` holding every
// live case, then a `case` event per change. What arrives is queued and applied once per animation
// frame, to the cases, the map, the board and the opened case. When the stream drops the browser
// reconnects by itself and the next `reset` catches up; a refused stream asks whether the session
// still holds.
import { announce, noticeChange, noticeReset, renderUrgent } from './alerts.js';
import { api } from './api.js';
import { orderAndRender } from './board.js';
import { refreshDetail } from './detail.js';
import { $ } from './dom.js';
import { t } from './i18n.js';
import { syncMarkers, updateMarker } from './map.js';
import { caseSummary } from './record.js';
import { state } from './state.js';

/** The stream's own bookkeeping; no other module touches it. */
const stream = {
  /** The open EventSource, or null when signed out. */
  source: null,
  /** `case` events not yet applied, oldest first. */
  queue: [],
  /** A `reset` not yet applied (`{cases, now}`), or null. */
  resetPending: null,
  /** The animation frame (in a hidden page, the timer) requested to apply them, or 0 when none is. */
  frame: 0,
};

/** Shows the stream's status in the header: 'on' (live), 'retry' (reconnecting), else connecting. */
export function setLive(live) {
  state.live = live;
  const el = $('live');
  el.textContent = t(live === 'on' ? 'live' : live === 'retry' ? 'reconnecting' : 'connecting');
  el.className = 'live ' + (live === 'on' ? 'on' : 'off');
}

/** Opens the stream (closing one already open); `signedOut()` if it is refused for want of a
 * session. */
export function connect(signedOut) {
  if (stream.source) stream.source.close();
  setLive('connecting');
  const source = new EventSource('/console/events');
  stream.source = source;
  source.addEventListener('reset', (e) => {
    state.stats.lastResetChars = e.data.length;
    stream.resetPending = JSON.parse(e.data); stream.queue = []; setLive('on'); schedule();
  });
  source.addEventListener('case', (e) => {
    const c = caseSummary(JSON.parse(e.data));
    if (!state.arrived.has(c.id)) state.arrived.set(c.id, Date.now()); // when each case first reached the page
    stream.queue.push(c);
    schedule();
  });
  source.onopen = () => setLive('on');
  source.onerror = async () => {
    setLive('retry');
    if (source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    // Refused (not a network error): signed out, or the server answered an error. Ask.
    try { state.session = await api('/console/session'); setTimeout(() => connect(signedOut), 1000); } catch (err) {
      if (err.status === 401) signedOut(); else setTimeout(() => connect(signedOut), 2000);
    }
  };
}

/** Closes the stream, if open. */
export function disconnect() {
  if (stream.source) { stream.source.close(); stream.source = null; }
}

/** Applies what arrived at the next animation frame; a hidden page gets none, so there a timer
 * does it (within a second): the alerts of a console in a background tab still sound. */
function schedule() {
  if (!stream.frame) stream.frame = document.hidden ? setTimeout(flush, 0) : requestAnimationFrame(flush);
}
document.addEventListener('visibilitychange', () => {
  if (document.hidden && stream.frame) { cancelAnimationFrame(stream.frame); stream.frame = 0; schedule(); }
});

/** Orders and redraws the board at the next frame (filters or language changed). */
export function invalidate() { state.dirty = true; schedule(); }

/** Applies what arrived since the last frame: a `reset` replaces every case, then each queued
 * `case` replaces its own (unless an older copy arrives late); then the board is redrawn once. */
function flush() {
  stream.frame = 0;
  const started = performance.now();
  if (stream.resetPending) {
    const reset = stream.resetPending;
    stream.resetPending = null;
    state.skew = new Date(reset.now).getTime() - Date.now();
    const previous = state.cases;
    state.cases = new Map();
    for (const c of reset.cases) state.cases.set(c.id, caseSummary(c));
    noticeReset(previous, reset.now);
    syncMarkers();
    state.dirty = true;
    orderAndRender();
    state.stats.lastResetMs = performance.now() - started;
    state.stats.lastResetCount = reset.cases.length;
    // For measuring: when the board and the map first held the live cases (docs/console.md).
    if (!performance.getEntriesByName('linkbus-cases-drawn').length) performance.mark('linkbus-cases-drawn', { detail: reset.cases.length });
    if (state.detail) refreshDetail(); // it may have changed while the stream was down
  }
  if (stream.queue.length) {
    const batch = stream.queue; stream.queue = [];
    for (const c of batch) {
      const old = state.cases.get(c.id);
      if (old && Date.parse(old.updated_at) > Date.parse(c.updated_at)) continue; // an older copy arriving late
      noticeChange(old, c);
      if (c.merged_into) state.cases.delete(c.id); else state.cases.set(c.id, c);
      updateMarker(c);
    }
    state.dirty = true;
    orderAndRender();
    state.stats.lastBatchMs = performance.now() - started;
    state.stats.lastBatchCount = batch.length;
    if (state.detail && batch.some((c) => c.id === state.detail.case_id)) refreshDetail();
  } else if (state.dirty) {
    orderAndRender();
  }
  announce();
  renderUrgent();
}
