// The case detail beside the map: a case opened from the board, the map, the search or its link
// (`/#case/<id>`), read whole with GET /api/cases/{id} (routing, reports, timeline; the caller and
// their flags), its repeat reports at the same place or address (GET /api/cases/{id}/repeats),
// and the dispatcher's actions on it (POST /api/cases/{id}/actions). Every record read is made whole first (`caseRecord`): the
// server leaves out empty lists and absent objects.
import { api } from './api.js';
import { categoryName, departmentName, renderRows } from './board.js';
import { $, esc, narrow, option } from './dom.js';
import { errorText, eventName, fmtTime, localName, stateName, t, token } from './i18n.js';
import { clearRouting, drawRouting } from './map.js';
import { caseRecord } from './record.js';
import { state } from './state.js';

/** Priorities at or above this one (1 = life-threatening) ask before they are closed or
 * cancelled. */
const CONFIRM_PRIORITY = 2;

/** An action that waits for the dispatcher's confirmation: `{caseId, body}`, or null. */
let pending = null;

/** The opened case's repeats as GET /api/cases/{id}/repeats answered: `{caseId, cases, radius_m,
 * days}`, `{caseId, error}` when refused, or null while they are read. */
let repeats = null;

/** Wires the panel's buttons and Escape; an action refused because the session ended calls
 * `showLogin()`. */
export function initDetail(showLogin) {
  const send = (body) => act(body, showLogin);
  $('detail-body').addEventListener('click', (e) => {
    const b = e.target.closest('button');
    if (!b || !state.detail) return;
    if (b.dataset.split) send({ action: 'split', report_id: b.dataset.split });
    else if (b.dataset.act === 'ack') send({ action: 'acknowledge_escalation' });
    else if (b.dataset.act === 'reassign') {
      const department = $('reassign-to').value, reason = $('reassign-reason').value.trim();
      if (!department) refuse('reassign-to', 'need_department');
      else if (!reason) refuse('reassign-reason', 'need_reason');
      else send({ action: 'reassign', department, reason });
    } else if (b.dataset.act === 'cancel') {
      const reason = $('cancel-reason').value.trim();
      if (!reason) refuse('cancel-reason', 'need_reason');
      else confirmFirst({ action: 'cancel', reason }, send);
    } else if (b.dataset.act === 'close') {
      const note = $('close-note').value.trim();
      confirmFirst(note ? { action: 'close', note } : { action: 'close' }, send);
    } else if (b.dataset.act === 'note' || b.dataset.act === 'supervise') {
      const field = b.dataset.act === 'note' ? 'note-text' : 'supervise-note';
      const note = $(field).value.trim();
      if (!note) refuse(field, 'need_note');
      else send({ action: b.dataset.act, note });
    } else if (b.dataset.act === 'follow_up') {
      const note = $('follow-up-note').value.trim();
      if (!note) refuse('follow-up-note', 'need_note');
      else send({ action: 'follow_up', reached: $('follow-up-reached').value === 'yes', note });
    } else if (b.dataset.act === 'confirm' && pending) {
      const { body } = pending;
      setPending(null);
      send(body);
    } else if (b.dataset.act === 'unconfirm') setPending(null);
  });
  // The department list is long (400 in Beijing): typing narrows it.
  $('detail-body').addEventListener('input', (e) => { if (e.target.id === 'reassign-find') narrow($('reassign-to'), e.target.value); });
  $('detail-close').onclick = closeDetail;
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && state.detail) closeDetail(); });
}

/** Says why an action was not sent (`key`, a string of i18n.js) and puts the cursor on the field
 * `fieldId` that lacks something. */
function refuse(fieldId, key) {
  $('action-msg').textContent = t(key);
  $(fieldId).focus();
}

/** Sends `body` (a close or a cancel) at once, or, for a case of priority 1 or 2, asks first. */
function confirmFirst(body, send) {
  if (state.detail.priority <= CONFIRM_PRIORITY) setPending({ caseId: state.detail.case_id, body });
  else send(body);
}

/** Shows the question for the action `p` waits on (`{caseId, body}`), or none for null. */
function setPending(p) {
  pending = p;
  const box = $('action-confirm');
  if (!p) { box.hidden = true; box.innerHTML = ''; return; }
  const cancel = p.body.action === 'cancel';
  const question = cancel ? t('confirm_cancel', state.detail.priority, p.body.reason) : t('confirm_close', state.detail.priority);
  box.innerHTML = `<p>${esc(question)}</p><button type="button" class="danger" data-act="confirm">${esc(t(cancel ? 'confirm_yes_cancel' : 'confirm_yes_close'))}</button>` +
    ` <button type="button" data-act="unconfirm">${esc(t('confirm_no'))}</button>`;
  box.hidden = false;
  $('action-msg').textContent = '';
}

/** Opens case `id`: marks its row, reads it, shows it and draws its routing centred on the map. */
export async function select(id) {
  state.selected = id;
  renderRows();
  repeats = null;
  try {
    state.detail = caseRecord(await api('/api/cases/' + encodeURIComponent(id)));
    renderDetail(state.detail);
    drawRouting(state.detail, true);
    loadRepeats(id);
  } catch (err) {
    $('detail').hidden = false;
    $('detail-head').innerHTML = `<p class="error" title="${esc(err.message)}">${esc(errorText(err))}</p>`;
    $('detail-actions').innerHTML = ''; $('detail-actions').linkbusHtml = ''; $('detail-rest').innerHTML = '';
  }
}

/** Reads the repeats of case `id` and shows them, if it is still the one open. */
async function loadRepeats(id) {
  let answer;
  try { answer = await api(`/api/cases/${encodeURIComponent(id)}/repeats`); } catch (err) { answer = { error: errorText(err) }; }
  if (state.detail?.case_id !== id) return;
  repeats = { caseId: id, ...answer };
  renderDetail(state.detail);
}

/** The repeats of case `r` (HTML): the other cases at its place or address, each with its link. */
function repeatsHtml(r) {
  if (!repeats || repeats.caseId !== r.case_id) return `<h3>${esc(t('repeats'))}</h3><p>…</p>`;
  if (repeats.error) return `<h3>${esc(t('repeats'))}</h3><p class="error">${esc(repeats.error)}</p>`;
  const items = repeats.cases.map((x) => caseRecord(x)).map((x) => `<li data-case="${esc(x.case_id)}"><a href="#case/${esc(encodeURIComponent(x.case_id))}">${esc(x.reports.map((p) => p.source_id).join(', ') || x.case.source_id)}</a>` +
    ` ${esc(categoryName(x.case.category))} <span class="badge s-${esc(x.state)}">${esc(stateName(x.state))}</span> · ${esc(fmtTime(x.created_at, true))} · ${esc(x.case.address || '')}</li>`).join('');
  return `<h3>${esc(t('repeats'))} (${repeats.cases.length})</h3><p class="muted">${esc(t('repeats_rule', Math.round(repeats.radius_m), repeats.days))}</p>` +
    `<ul id="detail-repeats">${items || `<li>${esc(t('none'))}</li>`}</ul>`;
}

/** The caller and who is at risk (HTML rows of the head's list): name and phone (a `tel:` link)
 * for dispatchers, the flags translated for everyone. */
function callerHtml(r) {
  const who = r.case.reporter || {};
  const caller = state.session.role === 'dispatcher' && (who.name || who.phone)
    ? `<dt>${esc(t('caller'))}</dt><dd id="detail-caller">${esc(who.name || '')}${who.name && who.phone ? ' · ' : ''}` +
      (who.phone ? `<a href="tel:${esc(who.phone.replace(/[^\d+]/g, ''))}">${esc(who.phone)}</a>` : '') + '</dd>'
    : '';
  const flags = (r.case.flags || []).map((f) => `<span class="badge flag" data-flag="${esc(f)}">${esc(token('flag_', f))}</span>`).join(' ');
  return caller + (flags ? `<dt>${esc(t('flags'))}</dt><dd id="detail-flags">${flags}</dd>` : '');
}

/** Reads the opened case again (it changed, or the stream was down) and shows it, if one is open. */
export async function refreshDetail() {
  if (!state.detail) return;
  try { state.detail = caseRecord(await api('/api/cases/' + encodeURIComponent(state.detail.case_id))); renderDetail(state.detail); drawRouting(state.detail, false); } catch (_) { /* kept */ }
}

function closeDetail() {
  setPending(null);
  state.detail = null; state.selected = null; $('detail').hidden = true; clearRouting(); renderRows();
}

/** Why a department was chosen: a jurisdiction's rule (its area by name), or the catch-all and
 * why (from the decision's reasons, in the page's language; else the English words it carries). */
function ruleText(rule, reasons) {
  if (rule?.kind === 'jurisdiction') return t('rule_jurisdiction', token('level_', rule.level), areaName(rule.area));
  if (rule?.kind === 'catch_all') {
    const cause = reasons.find((r) => r.code === 'catch_all')?.cause;
    return t('rule_catch_all', cause ? t('catch_all_' + cause) : rule.reason || '');
  }
  return token('rule_', rule?.kind || '');
}
/** A district's, sub-district's or community's name by its code (the code where none is known). */
const areaName = (code) => state.region.areas?.find((a) => a.code === code)?.name || communityName(code);
function outcomeText(m) {
  if (m.outcome === 'nearest' || m.outcome === 'near_border') return t('outcome_' + m.outcome, Math.round(m.distance_m || 0));
  return t('outcome_' + m.outcome);
}
const communityName = (id) => state.region.communities.find((c) => c.id === id)?.name || id;
/** Names joined with commas, or "none" for no names. */
const names = (list) => esc(list.length ? list.join(', ') : t('none'));

/** The dispatcher's actions on case `r` (HTML): acknowledge, reassign, cancel and close while it
 * is open. Reassign starts with no department chosen; reassign and cancel need a reason. */
function actionsHtml(r) {
  if (state.session.role !== 'dispatcher') return `<p>${esc(t('read_only'))}</p>`;
  const open = r.state !== 'closed' && r.state !== 'cancelled';
  const departments = state.region.departments.map((x) => [x.id, localName(x)]).sort((a, b) => a[1].localeCompare(b[1]));
  const deptOptions = option('', t('choose_department')) + departments.map(([id, name]) => option(id, name)).join('');
  return `<div class="actions">` +
    (r.escalation_open ? `<button type="button" class="primary" data-act="ack">${esc(t('ack'))}</button>` : '') +
    (open ? `<span class="action"><input id="reassign-find" type="search" placeholder="${esc(t('find_department'))}"><select id="reassign-to" required>${deptOptions}</select><input id="reassign-reason" required placeholder="${esc(t('reason_required'))}"><button type="button" data-act="reassign">${esc(t('reassign'))}</button></span>` : '') +
    (open ? `<span class="action"><input id="supervise-note" required placeholder="${esc(t('supervise_required'))}"><button type="button" data-act="supervise">${esc(t('supervise'))}</button></span>` : '') +
    (open ? `<span class="action"><input id="cancel-reason" required placeholder="${esc(t('reason_required'))}"><button type="button" data-act="cancel">${esc(t('cancel_case'))}</button></span>` : '') +
    (open ? `<span class="action"><input id="close-note" placeholder="${esc(t('note'))}"><button type="button" data-act="close">${esc(t('close'))}</button></span>` : '') +
    `<span class="action"><input id="note-text" required placeholder="${esc(t('note'))}"><button type="button" data-act="note">${esc(t('add_note'))}</button></span>` +
    `<span class="action"><select id="follow-up-reached">${option('yes', t('reached'))}${option('no', t('not_reached'))}</select><input id="follow-up-note" required placeholder="${esc(t('call_note'))}"><button type="button" data-act="follow_up">${esc(t('follow_up'))}</button></span>` +
    `</div>`;
}

/** Shows case `r` (as GET /api/cases/{id} answers it, made whole by `caseRecord`) in the page's
 * language. */
export function renderDetail(r) {
  const d = r.decision, vs = d.volunteer_search;
  const dispatcher = state.session.role === 'dispatcher';
  const primaryId = r.case_id;
  const deadline = r.accept_by || r.resolve_by;
  const reports = r.reports.map((rep) => `<li>${esc(rep.source_id)} <span class="badge">${esc(t('system_' + rep.system))}</span> ${esc(categoryName(rep.category))} · ${esc(fmtTime(rep.reported_at, true))}` +
    (dispatcher && rep.report_id !== primaryId ? ` <button type="button" data-split="${esc(rep.report_id)}">${esc(t('split'))}</button>` : '') + '</li>').join('');
  // The offers as they stand, else whom the routing chose.
  const offers = r.offers.length
    ? r.offers.map((o) => `<li>${esc(t('offer', o.volunteer_id))}: ${esc(token('offer_', o.status))} · ${esc(t('metres', Math.round(o.distance_m || 0)))}</li>`).join('')
    : d.volunteers.map((v) => `<li>${esc(v.id)} · ${esc(t('metres', Math.round(v.distance_m || 0)))}</li>`).join('');
  const passed = vs.skill ? `<p>${esc(t('passed_over', vs.skipped_unavailable, vs.skipped_skill, vs.skipped_capped, vs.examined, t('metres', Math.round(vs.radius_m))))}</p>` : `<p>${esc(t('no_volunteers'))}</p>`;
  const timeline = r.timeline.map((e) => `<li><time>${esc(fmtTime(e.at, true))}</time>${esc(eventName(e.event))} · ${esc(token('actor_', e.actor.kind))} ${esc(e.actor.id)}${e.department ? ' → ' + esc(departmentName(e.department)) : ''}${e.note ? ': ' + esc(e.note) : ''}</li>`).join('');
  const actions = actionsHtml(r);
  // The actions are rewritten only when they change (another case, another state), so what a
  // dispatcher is typing survives the case's live updates.
  const box = $('detail-actions'), sameCase = $('detail').dataset.caseId === r.case_id;
  if (!sameCase) $('action-msg').textContent = '';
  if (pending && (pending.caseId !== r.case_id || !actions.includes(`data-act="${pending.body.action}"`))) setPending(null);
  if (!sameCase || box.linkbusHtml !== actions) { box.innerHTML = actions; box.linkbusHtml = actions; }
  const community = d.community;
  $('detail-head').innerHTML =
    `<h2>${esc(categoryName(r.case.category))} <span class="badge s-${esc(r.state)}" id="detail-state" data-state="${esc(r.state)}">${esc(stateName(r.state))}</span>` +
    ` <span class="prio p${esc(r.priority)}" id="detail-priority" title="${esc(t('priority_n', r.priority))}">${esc(r.priority)}</span>` +
    (r.escalation_open ? ` <span class="badge esc">${esc(t('escalated'))}</span>` : '') + `</h2>` +
    `<dl class="kv"><dt>ID</dt><dd>${esc(r.case_id)} <a id="detail-link" href="#case/${esc(encodeURIComponent(r.case_id))}" title="${esc(t('case_link'))}">${esc(t('case_link'))}</a></dd>` +
    `<dt>${esc(t('source_ids'))}</dt><dd id="detail-source-ids">${esc(r.reports.map((x) => x.source_id).join(', ') || r.case.source_id)}</dd>` +
    `<dt>${esc(t('address'))}</dt><dd>${esc(r.case.address || '')}</dd>` + callerHtml(r) +
    `<dt>${esc(t('description'))}</dt><dd>${esc(r.case.description || '')}</dd>` +
    `<dt>${esc(t('reported'))}</dt><dd>${esc(fmtTime(r.case.reported_at, true))}</dd>` +
    `<dt>${esc(t('deadline'))}</dt><dd>${esc(fmtTime(deadline, true))}</dd>` +
    `<dt>${esc(t('departments'))}</dt><dd>${esc((r.accepted_by ? [r.accepted_by] : r.departments).map(departmentName).join(', '))}</dd></dl>`;
  $('detail-rest').innerHTML =
    `<h3>${esc(t('routing'))}</h3><dl class="kv">` +
    `<dt>${esc(t('community'))}</dt><dd id="detail-community">${esc(community.community?.name || t('no_community'))} (${esc(outcomeText(community))})</dd>` +
    (community.candidates.length ? `<dt>${esc(t('candidates'))}</dt><dd>${names(community.candidates.map(communityName))}</dd>` : '') +
    (d.broadcast.length ? `<dt>${esc(t('broadcast'))}</dt><dd id="detail-broadcast">${names(d.broadcast.map((c) => c.name))}</dd>` : '') +
    `<dt>${esc(t('departments'))}</dt><dd id="detail-rules">${d.departments.map((x) => `${esc(departmentName(x.id))}: ${esc(ruleText(x.rule, d.reasons))}`).join('<br>')}</dd>` +
    `<dt>${esc(t('fallbacks'))}</dt><dd id="detail-fallbacks">${names(d.fallbacks.map((x) => departmentName(x.id)))}</dd>` +
    (d.facility ? `<dt>${esc(t('facility'))}</dt><dd>${esc(d.facility.name)} · ${esc(t('metres', Math.round(d.facility.distance_m || 0)))}</dd>` : '') +
    `</dl><h3>${esc(t('volunteers'))}</h3><ul id="detail-volunteers">${offers}</ul>${passed}` +
    `<h3>${esc(t('explanation'))}</h3><ul class="explanation" id="detail-explanation">${d.explanation.map((l) => `<li>${esc(l)}</li>`).join('')}</ul>` +
    `<h3>${esc(t('reports'))} (${r.reports.length})</h3><ul id="detail-reports">${reports}</ul>` + repeatsHtml(r) +
    `<h3>${esc(t('timeline'))}</h3><ul class="timeline">${timeline}</ul>`;
  $('detail').hidden = false;
  $('detail').dataset.caseId = r.case_id;
}

/** Sends the dispatcher's action `body` on the opened case and shows the case as it now stands;
 * `showLogin()` if the session has ended. */
async function act(body, showLogin) {
  const id = state.detail.case_id;
  try {
    state.detail = caseRecord(await api(`/api/cases/${encodeURIComponent(id)}/actions`, { method: 'POST', body }));
    renderDetail(state.detail);
    $('action-msg').textContent = t('done');
    $('action-msg').title = '';
  } catch (err) {
    // The server's own words (English) on hover, for whoever can read them.
    const msg = $('action-msg');
    if (msg) { msg.textContent = errorText(err); msg.title = err.message; }
    if (err.status === 401) showLogin();
  }
}
