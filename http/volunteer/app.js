// The volunteer's app: signs in with the volunteer's credential, keeps its status (on/off duty,
// skills, the phone's position, sent when it moved MOVE_M metres and at most every MIN_SEND_MS),
// follows its offers live (Server-Sent Events read with fetch, which can send the credential),
// alerts with sound and vibration, answers, and shows the case taken and its updates.
import { lang, t, token, metres, span, clock, translatePage } from './i18n.js';
import { drawMap } from './map.js';

const KEY = 'linkbus_volunteer_credential';
/** A position is sent when it moved this far from the last one sent… */
const MOVE_M = 50;
/** …and no sooner than this after it (the server takes 6 updates a minute). */
const MIN_SEND_MS = 15000;

const $ = (id) => document.getElementById(id);
const app = {
  credential: localStorage.getItem(KEY), me: null, position: null, sent: null, sentAt: 0, pending: null,
  offers: new Map(), maps: new Map(), notices: [], audio: null, stream: null, watch: null, errors: [],
};
window.addEventListener('error', (e) => app.errors.push(String(e.message)));

/** The API with the credential; the parsed body, or throws `{status, message}`. */
async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${app.credential}`, ...(options.body ? { 'Content-Type': 'application/json' } : {}) };
  const response = await fetch(path, { ...options, headers });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw { status: response.status, message: body?.error ?? response.statusText, retry: body?.error };
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('data-')) node.setAttribute(k, v); else node[k] = v;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// ---- sign-in -------------------------------------------------------------------------------

async function signIn(credential) {
  app.credential = credential;
  app.me = await api('/api/volunteer/me');
  localStorage.setItem(KEY, credential);
  $('login').hidden = true;
  $('app').hidden = false;
  $('logout').hidden = false;
  renderMe();
  follow();
  watchPosition();
}

function signOut(message) {
  localStorage.removeItem(KEY);
  app.credential = null;
  app.stream?.abort();
  if (app.watch !== null) navigator.geolocation.clearWatch(app.watch);
  app.watch = null;
  $('app').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message ?? '';
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  // A user gesture: sound may start from here on.
  app.audio ??= new AudioContext();
  try {
    await signIn($('login-key').value.trim());
  } catch (err) {
    signOut(t('bad_key', err.message));
  }
});
$('logout').addEventListener('click', () => signOut());
$('lang').addEventListener('click', () => { lang.toggle(); translatePage(); renderMe(); renderOffers(); });

// ---- status --------------------------------------------------------------------------------

function renderMe() {
  if (!app.me) return;
  const status = app.me.status;
  const on = Boolean(status?.available);
  $('who').textContent = `${app.me.id} · ${t(on ? 'on_duty' : 'off_duty')}`;
  $('duty').textContent = t(on ? 'go_off_duty' : 'go_on_duty');
  $('duty').setAttribute('aria-pressed', String(on));
  $('duty').classList.toggle('on', on);
  const mine = new Set(status?.skills ?? []);
  $('skills').replaceChildren(...app.me.region_skills.map((s) => el('label', { className: 'skill' },
    el('input', { type: 'checkbox', value: s, checked: mine.has(s), onchange: () => sendStatus() }), ` ${token('skill_', s)}`)));
  const where = app.me.community ? t('in_community', app.me.community) : '';
  if (app.sentAt) $('position').textContent = t('position_sent', clock(new Date(app.sentAt).toISOString()), where);
  else if (!$('position').textContent) $('position').textContent = t('position_none');
  const { offers_last_hour: n, max_offers_per_hour: cap } = app.me;
  $('cap').hidden = n === 0 || n < cap - 1;
  $('cap').textContent = n >= cap ? t('cap', n, cap) : t('cap_near', n, cap);
}

/** Sends the status: duty and skills as shown, and the position if there is a newer one. */
async function sendStatus(available = app.me?.status?.available ?? false) {
  const skills = [...document.querySelectorAll('#skills input:checked')].map((i) => i.value);
  const body = { available, skills };
  if (app.position) body.location = app.position;
  try {
    app.me.status = await api('/api/volunteer/me/status', { method: 'PUT', body: JSON.stringify(body) });
    if (body.location) { app.sent = body.location; app.sentAt = Date.now(); }
    $('status-error').textContent = '';
    app.me = { ...app.me, ...(await api('/api/volunteer/me')) };
  } catch (err) {
    if (err.status === 401) return signOut(t('bad_key', err.message));
    $('status-error').textContent = t('refused', err.message);
  }
  renderMe();
}

$('duty').addEventListener('click', () => sendStatus(!(app.me?.status?.available ?? false)));

function distance(a, b) {
  const rad = Math.PI / 180, dLat = (b.lat - a.lat) * rad, dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 12742000 * Math.asin(Math.sqrt(h));
}

/** Follows the phone's position; sends it when it moved MOVE_M and MIN_SEND_MS passed (later, if
 * not yet). */
function watchPosition() {
  if (!navigator.geolocation || app.watch !== null) return;
  app.watch = navigator.geolocation.watchPosition((p) => {
    app.position = { lat: Number(p.coords.latitude.toFixed(6)), lon: Number(p.coords.longitude.toFixed(6)) };
    if (app.sent && distance(app.sent, app.position) < MOVE_M) return;
    const wait = app.sentAt + MIN_SEND_MS - Date.now();
    clearTimeout(app.pending);
    if (wait <= 0) sendStatus(); else app.pending = setTimeout(() => sendStatus(), wait);
  }, () => { $('position').textContent = t('position_denied'); }, { enableHighAccuracy: true, maximumAge: 10000 });
}

// ---- offers --------------------------------------------------------------------------------

/** Reads the offer stream until it ends, then again after a pause; 401 signs out. */
async function follow() {
  app.stream?.abort();
  const abort = new AbortController();
  app.stream = abort;
  let pause = 1000;
  while (!abort.signal.aborted) {
    try {
      const response = await fetch('/api/volunteer/me/offers',
        { headers: { Authorization: `Bearer ${app.credential}` }, signal: abort.signal });
      if (response.status === 401) return signOut(t('bad_key', (await response.json()).error));
      if (!response.ok) throw new Error(response.statusText);
      live(true);
      pause = 1000;
      await readEvents(response.body, onEvent);
    } catch (err) {
      if (abort.signal.aborted) return;
    }
    live(false);
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 15000);
  }
}

function live(on) {
  $('live').textContent = t(on ? 'live' : 'offline');
  $('live').className = on ? 'live on' : 'live off';
}

/** Server-Sent Events from a fetch body: calls `handle(event, data)` per event. */
async function readEvents(body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message', data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trimStart();
      }
      if (data) handle(event, JSON.parse(data));
    }
  }
}

const isCurrent = (v) => v.status === 'offered' || (v.status === 'accepted' && !['closed', 'cancelled'].includes(v.case_state));

function onEvent(event, data) {
  if (event === 'reset') {
    const known = new Set(app.offers.keys());
    app.offers = new Map(data.offers.map((v) => [v.case_id, v]));
    if (data.offers.some((v) => v.status === 'offered' && !known.has(v.case_id))) alertNew();
  } else if (event === 'offer') {
    const before = app.offers.get(data.case_id);
    if (isCurrent(data)) {
      if (!before && data.status === 'offered') alertNew();
      app.offers.set(data.case_id, data);
    } else if (before) {
      app.offers.delete(data.case_id);
      if (data.reason && data.reason !== 'declined') notice(t('reason_' + data.reason, data.case_id), data.reason, data.case_id);
    }
  }
  renderOffers();
}

/** The volunteer again: the hourly count changes with each offer and as the hour rolls on (the
 * server's ledger follows the offers, so an offer just shown may count a moment later). */
function refreshMe() {
  if (app.credential) api('/api/volunteer/me').then((me) => { app.me = me; renderMe(); }, () => {});
}
setInterval(refreshMe, 20000);

/** Sound and vibration for a new offer, while the app is open. */
function alertNew() {
  refreshMe();
  navigator.vibrate?.([300, 100, 300]);
  if (!app.audio) return;
  const osc = app.audio.createOscillator(), gain = app.audio.createGain();
  osc.frequency.value = 880;
  gain.gain.value = 0.2;
  osc.connect(gain).connect(app.audio.destination);
  osc.start();
  osc.stop(app.audio.currentTime + 0.4);
}

function notice(text, reason, caseId) {
  app.notices.push({ text, reason, case_id: caseId });
  const n = el('p', { className: 'notice', 'data-reason': reason, 'data-case-id': caseId }, text);
  $('notices').prepend(n);
  setTimeout(() => n.remove(), 60000);
}

function renderOffers() {
  for (const [id, map] of app.maps) { if (!app.offers.has(id)) { map.remove(); app.maps.delete(id); } }
  const cards = [...app.offers.values()].sort((a, b) => a.priority - b.priority).map(card);
  $('offers').replaceChildren(...cards);
  for (const c of cards) {
    const v = app.offers.get(c.dataset.caseId);
    app.maps.get(v.case_id)?.remove();
    app.maps.set(v.case_id, drawMap(c.querySelector('.map'), v, app.sent));
  }
}

function card(v) {
  const taken = v.status === 'accepted';
  const facility = v.facility
    ? el('p', { className: 'facility' }, t('facility', `${token('kind_', v.facility.kind)} · ${v.facility.name}`, metres(v.facility.distance_m)))
    : null;
  const left = el('span', { className: 'left', 'data-expires': v.expires_at });
  countdown(left);
  const did = (event) => (v.updates ?? []).some((u) => u.event === event);
  const step = (name, event) => (did(event) ? null
    : el('button', { type: 'button', className: `step ${name}`, onclick: () => report(v.case_id, name) }, t('step_' + name)));
  const steps = did('volunteer_handed_over') ? el('p', { className: 'taken' }, t('handed_over_done'))
    : el('div', { className: 'actions' }, did('volunteer_arrived') ? step('handed_over', 'volunteer_handed_over') : step('arrived', 'volunteer_arrived'));
  const actions = taken ? el('div', {}, el('p', { className: 'taken' }, t('taken_by_you')), steps) : el('div', { className: 'actions' },
    el('button', { type: 'button', className: 'accept', onclick: () => answer(v.case_id, true) }, t('accept')),
    el('button', { type: 'button', className: 'decline', onclick: () => answer(v.case_id, false) }, t('decline')));
  const updates = taken && v.updates?.length ? el('div', { className: 'updates' }, el('h3', {}, t('updates')),
    el('ol', {}, ...v.updates.map((u) => el('li', {}, `${clock(u.at)} ${token('event_', u.event)}${u.department ? ` · ${u.department}` : ''}`)))) : null;
  return el('article', { className: `offer p${v.priority}${taken ? ' accepted' : ''}`, 'data-case-id': v.case_id },
    el('h2', {}, token('cat_', v.category), ' ', el('span', { className: 'prio' }, t('priority', v.priority))),
    el('p', { className: 'meta' }, t('away', metres(v.distance_m)), taken ? null : ' · ', taken ? null : left),
    el('p', { className: 'where' }, taken ? `${t('go_to')}: ` : '', v.address ?? '', v.community ? ` (${v.community})` : ''),
    v.description ? el('p', { className: 'muted' }, v.description) : null,
    facility, el('div', { className: 'map' }), actions, updates);
}

/** Reports arriving or handing over on a case taken. */
async function report(caseId, step) {
  try {
    await api(`/api/volunteer/me/offers/${encodeURIComponent(caseId)}/step`, { method: 'POST', body: JSON.stringify({ step }) });
  } catch (err) {
    if (err.status === 401) return signOut(t('bad_key', err.message));
    notice(t('refused', err.message), 'refused', caseId);
  }
}

async function answer(caseId, accept) {
  try {
    await api(`/api/volunteer/me/offers/${encodeURIComponent(caseId)}/answer`, { method: 'POST', body: JSON.stringify({ accept }) });
  } catch (err) {
    if (err.status === 401) return signOut(t('bad_key', err.message));
    notice(t('refused', err.message), 'refused', caseId);
  }
}

/** Shows the time left to answer in `n`. */
function countdown(n) {
  const ms = new Date(n.dataset.expires) - Date.now();
  n.textContent = ms > 0 ? t('left', span(ms)) : t('expired');
}
setInterval(() => document.querySelectorAll('.left[data-expires]').forEach(countdown), 1000);

// ---- history -------------------------------------------------------------------------------

$('history-load').addEventListener('click', async () => {
  try {
    const h = await api('/api/volunteer/me/history');
    const rows = h.offers.map((v) => el('li', { 'data-case-id': v.case_id },
      `${clock(v.offered_at)} ${token('cat_', v.category)} · ${t('status_' + v.status)}`));
    $('history').replaceChildren(el('p', {}, t('history_sum', h.accepted, h.hours.toFixed(2))),
      rows.length ? el('ol', {}, ...rows) : el('p', { className: 'muted' }, t('no_history')));
  } catch (err) {
    $('history').textContent = t('refused', err.message);
  }
});

// ---- start ---------------------------------------------------------------------------------

/** What the tests (and a curious volunteer, from the console) can read of the app. */
window.linkbusVolunteer = {
  offers: () => [...app.offers.values()],
  notices: () => app.notices,
  status: () => app.me?.status ?? null,
  sentAt: () => app.sentAt,
  errors: () => app.errors,
};

translatePage();
if ('serviceWorker' in navigator) navigator.serviceWorker.register('/volunteer/sw.js').catch(() => {});
if (app.credential) signIn(app.credential).catch((err) => signOut(err.status === 401 ? t('bad_key', err.message) : ''));
else signOut();
