// Urgent things announce themselves. A new or escalated priority 1–2 case, one raised to priority
// 1 or 2, and a source's update of one (a CAD "2nd alarm", `source_updated` on the timeline) make
// a sound (made with the Web Audio API, no audio file) and a desktop notification (Notification
// API, with the dispatcher's permission, asked for by the "enable alerts" button and remembered). Only
// what happens while the page is open alerts: the cases of the first `reset` were there before,
// and each alert is raised once (by case and event), however often its event arrives. The header
// counts what is urgent (P1 open · escalated · overdue · unaccepted), the document's title shows
// the P1 count, and a strip above the board pins the open P1 cases, so none is off-screen.
import { categoryName, dueText } from './board.js';
import { compare, isDone, isUnaccepted } from './cases.js';
import { $, esc } from './dom.js';
import { t } from './i18n.js';
import { serverNow, state } from './state.js';

/** Priorities up to this one (1 = life-threatening) alert. */
const URGENT = 2;
/** At most this many notifications for the alerts of one frame; the rest are counted in one more. */
const MAX_NOTIFICATIONS = 3;
/** At most this many P1 cases pinned above the board; a last chip says how many more. */
const MAX_PINNED = 3;
/** The announcements kept for the tests (the last ones). */
const MAX_LOG = 500;

/** The alerts' own bookkeeping; no other module touches it. */
const alerts = {
  /** Whether the dispatcher turned alerts on (remembered by the browser, `linkbus.alerts`). */
  on: localStorage.getItem('linkbus.alerts') === 'on',
  /** The Web Audio context, made at a user gesture (browsers start sound only after one). */
  audio: null,
  /** Every alert raised, by key (`new:<id>`, `escalated:<id>:<when>`, `raised:<id>:<priority>`,
   * `update:<id>:<when>`): none is raised twice. */
  raised: new Set(),
  /** Whether the first `reset` was seen: until then every case was there before the page. */
  baseline: false,
  /** The server's time of the last `reset` (ms). */
  resetAt: 0,
  /** Alerts found in this frame and not yet announced. */
  pending: [],
  /** What was announced, oldest first (for the tests): `{kind, id, priority, sound, notified}`. */
  log: [],
  /** Opens a case: what a click on a notification or a pinned case does (given to `initAlerts`). */
  select: null,
  /** The counter and the strip as last written: a frame that changes nothing writes nothing. */
  counterHtml: '',
  title: '',
};

/** Wires the "enable alerts" button, the counter and the strip; `select(id)` opens a case. */
export function initAlerts(select) {
  alerts.select = select;
  $('alerts').onclick = toggle;
  // Sound needs a user gesture once per page: the first click or key after a reload starts it.
  const wake = () => { if (alerts.on) audio(); };
  document.addEventListener('pointerdown', wake, { capture: true, passive: true });
  document.addEventListener('keydown', wake, { capture: true, passive: true });
  const openPin = (e) => {
    const pin = e.target.closest('.pin');
    if (pin?.dataset.caseId) select(pin.dataset.caseId); else if (pin) showP1();
  };
  const openP1 = (e) => { if (e.target.closest('[data-count="p1"]')) showP1(); };
  const onEnter = (f) => (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); f(e); } };
  $('pinned').addEventListener('click', openPin);
  $('pinned').addEventListener('keydown', onEnter(openPin));
  $('urgent').addEventListener('click', openP1);
  $('urgent').addEventListener('keydown', onEnter(openP1));
  renderAlertsButton();
}

/** The board filtered to priority 1, from its top. */
function showP1() {
  const f = $('f-priority');
  f.value = '1';
  f.dispatchEvent(new Event('change'));
  $('board-list').scrollTop = 0;
}

/** Turns alerts on (in the click, so the browser may ask for notifications and start sound) or
 * off; remembered. */
async function toggle() {
  alerts.on = !alerts.on;
  localStorage.setItem('linkbus.alerts', alerts.on ? 'on' : 'off');
  if (alerts.on) {
    if (audio()) chime(1, 660); // the speakers work
    if (window.Notification && Notification.permission === 'default') {
      try { await Notification.requestPermission(); } catch (_) { /* sound only */ }
    }
  }
  renderAlertsButton();
}

/** The button in the page's language: whether alerts are on, and whether the browser lets the
 * page notify. */
export function renderAlertsButton() {
  const el = $('alerts');
  const notify = window.Notification && Notification.permission === 'granted';
  el.textContent = alerts.on ? (notify ? t('alerts_on') : t('alerts_sound_only')) : t('alerts_off');
  el.title = alerts.on ? (notify ? t('alerts_on_hint') : t('alerts_blocked_hint')) : t('alerts_off_hint');
  el.className = alerts.on ? 'on' : '';
  el.setAttribute('aria-pressed', String(alerts.on));
}

/** The audio context, made (or woken) now; null where the browser has none. Read from `window`
 * each time, so a test can record its use. */
function audio() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return null;
  if (!alerts.audio) alerts.audio = new Context();
  if (alerts.audio.state === 'suspended') alerts.audio.resume().catch(() => {});
  return alerts.audio;
}

/** `n` short beeps at `hz`: two for priority 2, three (higher) for priority 1. Returns whether a
 * sound was started. */
function chime(n, hz) {
  const ctx = audio();
  if (!ctx) return false;
  const start = ctx.currentTime + 0.02;
  for (let i = 0; i < n; i++) {
    const at = start + i * 0.22;
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.type = 'triangle';
    osc.frequency.value = hz;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.35, at + 0.015);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.18);
    osc.connect(gain).connect(ctx.destination);
    osc.start(at);
    osc.stop(at + 0.2);
  }
  return true;
}

/** Whether case `c` can alert: priority 1–2 and still open. */
const urgent = (c) => c.priority <= URGENT && !isDone(c) && !c.merged_into;

/** Notes what the change of a case from `old` (undefined for a case the page did not have) to
 * `c` alerts, if anything; announced at the end of the frame (`announce`). */
export function noticeChange(old, c) {
  if (!alerts.baseline || !urgent(c)) return;
  const found = [];
  if (!old) found.push(['new', `new:${c.id}`]);
  else {
    if (c.escalation_open && !old.escalation_open) found.push(['escalated', `escalated:${c.id}:${c.updated_at}`]);
    if (c.priority < old.priority) found.push(['raised', `raised:${c.id}:${c.priority}`]);
    if (c.source_update && c.source_update.at !== old.source_update?.at) found.push(['update', `update:${c.id}:${c.source_update.at}`]);
  }
  for (const [kind, key] of found) {
    if (alerts.raised.has(key)) continue;
    alerts.raised.add(key);
    alerts.pending.push({ kind, c });
  }
}

/** A `reset` sent at `now` (the server's ISO time) applied: the first is the baseline (nothing
 * alerts); a later one (after a reconnection) alerts what changed meanwhile. `previous` is the
 * cases before it. A case the page lacked but made before the last `reset` is not new: that
 * `reset` left it out (it holds the 5,000 cases changed last). */
export function noticeReset(previous, now) {
  const resetAt = alerts.resetAt;
  alerts.resetAt = Date.parse(now);
  if (!alerts.baseline) { alerts.baseline = true; return; }
  for (const c of state.cases.values()) {
    const old = previous.get(c.id);
    if (old || Date.parse(c.created_at) >= resetAt) noticeChange(old, c);
  }
}

/** Sounds and notifies the alerts noticed this frame: one sound (for the most urgent), a
 * notification each (at most three, then one that counts the rest). */
export function announce() {
  const found = alerts.pending;
  if (!found.length) return;
  alerts.pending = [];
  found.sort((a, b) => a.c.priority - b.c.priority);
  const top = found[0].c.priority;
  const sound = alerts.on && chime(top === 1 ? 3 : 2, top === 1 ? 988 : 784);
  found.forEach(({ kind, c }, i) => {
    const notified = alerts.on && i < MAX_NOTIFICATIONS && notify(kind, c);
    alerts.log.push({ kind, id: c.id, priority: c.priority, sound: sound && i === 0, notified });
  });
  if (alerts.log.length > MAX_LOG) alerts.log.splice(0, alerts.log.length - MAX_LOG);
  if (alerts.on && found.length > MAX_NOTIFICATIONS) notifyMore(found.length - MAX_NOTIFICATIONS);
}

/** Where a case is, in words: its address, else its community's name. */
function place(c) {
  return c.address || state.region.communities.find((x) => x.id === c.community)?.name || t('no_community');
}

/** A desktop notification for alert `kind` of case `c`, if the browser lets the page notify;
 * clicking it opens the case. Returns whether one was made. */
function notify(kind, c) {
  const Notify = window.Notification;
  if (!Notify || Notify.permission !== 'granted') return false;
  const body = [`${categoryName(c.category)} · ${place(c)}`];
  if (kind === 'update' && c.source_update.note) body.push(c.source_update.note);
  try {
    const n = new Notify(t('alert_' + kind, c.priority), { body: body.join('\n'), tag: `linkbus-${c.id}`, renotify: true, requireInteraction: c.priority === 1 });
    n.onclick = () => { window.focus(); alerts.select(c.id); n.close(); };
    return true;
  } catch (_) { return false; }
}

function notifyMore(n) {
  const Notify = window.Notification;
  if (!Notify || Notify.permission !== 'granted') return;
  try { new Notify(t('alert_more', n), { tag: 'linkbus-more', renotify: true }); } catch (_) { /* the counter shows them */ }
}

/** What is urgent now, over every live case: open priority 1, escalated, overdue, unaccepted. */
export function urgentCounts() {
  const now = serverNow(), n = { p1: 0, escalated: 0, overdue: 0, unaccepted: 0 };
  for (const c of state.cases.values()) {
    if (isDone(c)) continue;
    if (c.priority === 1) n.p1++;
    if (c.escalation_open) n.escalated++;
    if (c.deadline && Date.parse(c.deadline) < now) n.overdue++;
    if (isUnaccepted(c)) n.unaccepted++;
  }
  return n;
}

/** The header's counter, the document's title and the pinned P1 strip, as the cases now stand
 * (every frame that changed them, and every second for the countdowns). */
export function renderUrgent() {
  const n = urgentCounts();
  const counter = ['p1', 'escalated', 'overdue', 'unaccepted'].map((k) =>
    `<span class="count${n[k] ? ' hot' : ''}${k === 'p1' ? ' p1' : ''}" data-count="${k}" data-n="${n[k]}"${k === 'p1' ? ' role="button" tabindex="0"' : ''}>${esc(t('count_' + k, n[k]))}</span>`).join('<span class="dot">·</span>');
  if (counter !== alerts.counterHtml) { $('urgent').innerHTML = counter; alerts.counterHtml = counter; }
  const title = n.p1 ? t('title_p1', n.p1, t('page_title')) : t('page_title');
  if (title !== alerts.title) { document.title = title; alerts.title = title; }
  renderPinned();
}

/** The open P1 cases above the board, most pressing first (the board's order): at most three,
 * then a chip that filters the board to them. Chips are kept and only their text rewritten. */
function renderPinned() {
  const p1 = [];
  for (const c of state.cases.values()) if (c.priority === 1 && !isDone(c)) p1.push(c);
  p1.sort(compare);
  const strip = $('pinned'), shown = p1.slice(0, MAX_PINNED);
  const chips = shown.map((c) => ({ id: c.id, cls: 'pin' + (c.escalation_open ? ' escalated' : '') + (c.id === state.selected ? ' selected' : ''), html: `<span class="prio p1">1</span><span class="what">${esc(categoryName(c.category))} · ${esc(place(c))}</span><span class="when">${esc(dueText(c)[0])}</span>` }));
  if (p1.length > MAX_PINNED) chips.push({ id: '', cls: 'pin more', html: esc(t('pinned_more', p1.length - MAX_PINNED)) });
  strip.hidden = !chips.length;
  while (strip.children.length < chips.length) strip.appendChild(document.createElement('div'));
  while (strip.children.length > chips.length) strip.lastChild.remove();
  chips.forEach((chip, i) => {
    const el = strip.children[i];
    if (el.className !== chip.cls) { el.className = chip.cls; el.tabIndex = 0; }
    if (el.dataset.caseId !== chip.id) el.dataset.caseId = chip.id;
    if (el.linkbusInner !== chip.html) { el.innerHTML = chip.html; el.linkbusInner = chip.html; }
  });
}

/** What was announced, for the tests. */
export const alertLog = () => alerts.log;
