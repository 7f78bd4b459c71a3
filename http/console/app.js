// linkbus dispatcher console: plain JavaScript over Leaflet, no build step.
//
// Data flow: sign in (POST /console/session: the key for an HttpOnly session cookie and a CSRF
// token), read the region (/console/region, /console/region/communities), then follow
// /console/events (SSE): `reset` replaces every case, `case` updates one. Updates are queued and
// applied once per animation frame; the board is virtualised (only visible rows exist in the DOM)
// and case markers are drawn on one canvas, so 1,000+ live cases stay smooth. A case is opened
// with GET /api/cases/{id}; actions POST /api/cases/{id}/actions with the CSRF token.
'use strict';
(() => {
  const I18N = {
    en: {
      connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', sign_in: 'Sign in', sign_out: 'Sign out',
      sign_in_title: 'Dispatcher console', sign_in_hint: 'Enter your dispatcher key.', bad_key: 'The key was refused: {0}',
      all_states: 'All states', all_priorities: 'All priorities', all_systems: 'All systems', all_communities: 'All communities',
      all_departments: 'All departments', priority_n: 'Priority {0}', shown: '{0} of {1} cases', no_community: 'no community',
      due_in: 'due in {0}', overdue: 'overdue {0}', reports_n: '{0} reports', escalated: 'escalated', merged: 'merged',
      source_ids: 'Source ids', timeline: 'Timeline', routing: 'Routing', explanation: 'Explanation', actions: 'Actions',
      community: 'Community', departments: 'Departments', fallbacks: 'Fall-backs', volunteers: 'Volunteers offered',
      passed_over: 'Passed over: {0} unavailable, {1} without the skill, {2} at their hourly cap ({3} examined within {4}).',
      no_volunteers: 'No volunteers called for.', state: 'State', category: 'Category', address: 'Address', description: 'Description',
      reported: 'Reported', deadline: 'Deadline', reports: 'Reports', ack: 'Acknowledge escalation', reassign: 'Reassign', close: 'Close case',
      split: 'Split out', reason: 'reason', note: 'note', done: 'Done.', refused: 'Refused: {0}', read_only: 'Operators only watch.',
      outcome_inside: 'inside', outcome_on_border: 'on a border', outcome_nearest: 'nearest, {0} m outside', outcome_unmatched: 'no community matched',
      rule_jurisdiction: '{0} rule for {1}', rule_catch_all: 'catch-all: {0}', facility: 'Nearest facility', layer_cases: 'Cases',
      layer_volunteers: 'Volunteers on duty', layer_communities: 'Communities', legend_esc: 'escalated', legend_open: 'not accepted',
      legend_vol: 'volunteer on duty', offer: 'offer {0}',
      state_reported: 'reported', state_routed: 'routed', state_accepted: 'accepted', state_rejected: 'rejected',
      state_in_progress: 'in progress', state_resolved: 'resolved', state_closed: 'closed', state_cancelled: 'cancelled',
      system_emergency: 'emergency', system_commercial: 'commercial', system_public_service: 'public service', system_management: 'management',
    },
    'zh-CN': {
      connecting: '连接中…', live: '实时', reconnecting: '重新连接中…', sign_in: '登录', sign_out: '退出',
      sign_in_title: '调度台', sign_in_hint: '请输入调度员密钥。', bad_key: '密钥被拒绝：{0}',
      all_states: '全部状态', all_priorities: '全部优先级', all_systems: '全部来源', all_communities: '全部社区',
      all_departments: '全部部门', priority_n: '优先级 {0}', shown: '显示 {0} / 共 {1} 件', no_community: '无社区',
      due_in: '剩余 {0}', overdue: '已超时 {0}', reports_n: '{0} 条报告', escalated: '已升级', merged: '已合并',
      source_ids: '来源编号', timeline: '时间线', routing: '派单依据', explanation: '说明', actions: '操作',
      community: '社区', departments: '责任部门', fallbacks: '后备部门', volunteers: '已邀请志愿者',
      passed_over: '跳过：{0} 人不在岗，{1} 人无此技能，{2} 人已达每小时上限（在 {4} 内检查 {3} 人）。',
      no_volunteers: '此类事件无需志愿者。', state: '状态', category: '类别', address: '地址', description: '描述',
      reported: '上报时间', deadline: '时限', reports: '报告', ack: '确认升级', reassign: '改派', close: '结案',
      split: '拆分', reason: '原因', note: '备注', done: '已完成。', refused: '被拒绝：{0}', read_only: '值班观察员只能查看。',
      outcome_inside: '位于社区内', outcome_on_border: '位于边界上', outcome_nearest: '最近社区，界外 {0} 米', outcome_unmatched: '未匹配到社区',
      rule_jurisdiction: '{0}级规则：{1}', rule_catch_all: '兜底：{0}', facility: '最近设施', layer_cases: '事件',
      layer_volunteers: '在岗志愿者', layer_communities: '社区边界', legend_esc: '已升级', legend_open: '未签收',
      legend_vol: '在岗志愿者', offer: '邀请 {0}',
      state_reported: '已上报', state_routed: '待签收', state_accepted: '已签收', state_rejected: '已退回',
      state_in_progress: '处理中', state_resolved: '已办结', state_closed: '已结案', state_cancelled: '已撤销',
      system_emergency: '应急', system_commercial: '商业服务', system_public_service: '公共服务', system_management: '社区管理',
      ev_routed: '已派单', ev_accepted: '签收', ev_rejected: '退回', ev_rerouted: '转派下一部门', ev_reassigned: '改派',
      ev_escalated: '升级', ev_escalation_acknowledged: '确认升级', ev_progress: '处理进展', ev_resolved: '办结', ev_closed: '结案',
      ev_cancelled: '撤销', ev_rated: '评价', ev_reopened: '重新打开', ev_report_merged: '合并报告', ev_merged: '并入其他事件',
      ev_split: '拆分', ev_volunteer_offered: '邀请志愿者', ev_volunteer_accepted: '志愿者接受', ev_volunteer_declined: '志愿者拒绝',
      ev_volunteer_expired: '志愿者未响应',
      level_community: '社区', level_sub_district: '街道', level_district: '区', level_region: '全市',
      offer_offered: '已邀请', offer_accepted: '已接受', offer_declined: '已拒绝', offer_expired: '已过期', offer_withdrawn: '已撤回',
      actor_system: '系统', actor_department: '部门', actor_dispatcher: '调度员', actor_volunteer: '志愿者', actor_resident: '居民',
    },
  };
  const STATES = ['reported', 'routed', 'accepted', 'rejected', 'in_progress', 'resolved', 'closed', 'cancelled'];
  const SYSTEMS = ['emergency', 'commercial', 'public_service', 'management'];
  const COLORS = { 1: '#d7263d', 2: '#f46036', 3: '#e2b100', 4: '#3f88c5' };
  const ROW_H = 46;
  const OVERSCAN = 8;

  const S = {
    lang: localStorage.getItem('linkbus.lang') || (navigator.language.startsWith('zh') ? 'zh-CN' : 'en'),
    session: null, region: null, cases: new Map(), order: [], selected: null, detail: null,
    queue: [], arrived: new Map(), resetPending: null, dirty: false, frame: 0, source: null, skew: 0,
    stats: { lastResetMs: 0, lastResetCount: 0, lastBatchMs: 0, lastBatchCount: 0, renders: 0 },
  };
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  const t = (key, ...args) => (I18N[S.lang][key] ?? I18N.en[key] ?? key).replace(/\{(\d)\}/g, (_, n) => args[n] ?? '');
  const now = () => Date.now() + S.skew;

  // ---- language and time ----
  function applyLanguage() {
    document.documentElement.lang = S.lang;
    document.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
    $('lang').textContent = S.lang === 'en' ? '中文' : 'English';
    $('login-key').placeholder = t('sign_in_hint');
    if (S.region) { fillFilters(); buildLegend(); }
    setLive(S.live);
    invalidate();
    if (S.detail) renderDetail(S.detail);
  }
  function tz() { return S.region?.time_zone || undefined; }
  function fmtTime(iso, withDate) {
    if (!iso) return '';
    const opts = { timeZone: tz(), hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false };
    if (withDate) Object.assign(opts, { month: '2-digit', day: '2-digit' });
    return new Intl.DateTimeFormat(S.lang, opts).format(new Date(iso));
  }
  function fmtSpan(ms) {
    const s = Math.floor(Math.abs(ms) / 1000);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const two = (n) => String(n).padStart(2, '0');
    return h > 0 ? `${h}:${two(m)}:${two(sec)}` : `${m}:${two(sec)}`;
  }
  function stateName(s) { return t('state_' + s); }
  // Names the server sends as tokens: translated where the language has them, else as they are.
  function token(prefix, value) { return I18N[S.lang][prefix + value] ?? value; }

  // ---- HTTP ----
  async function api(path, options = {}) {
    const headers = Object.assign({ accept: 'application/json' }, options.headers || {});
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.method && options.method !== 'GET' && S.session) headers['x-linkbus-csrf'] = S.session.csrf;
    const response = await fetch(path, { method: options.method || 'GET', headers, body: options.body === undefined ? undefined : JSON.stringify(options.body), credentials: 'same-origin' });
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = { error: text }; }
    if (!response.ok) {
      const error = new Error(body?.error || response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // ---- sign in ----
  async function start() {
    applyLanguage();
    $('lang').onclick = () => { S.lang = S.lang === 'en' ? 'zh-CN' : 'en'; localStorage.setItem('linkbus.lang', S.lang); applyLanguage(); };
    $('login-form').onsubmit = async (e) => {
      e.preventDefault();
      $('login-error').textContent = '';
      try {
        S.session = await api('/console/session', { method: 'POST', body: { key: $('login-key').value } });
        $('login-key').value = '';
        await open();
      } catch (err) { $('login-error').textContent = t('bad_key', err.message); }
    };
    $('logout').onclick = async () => {
      try { await api('/console/session', { method: 'DELETE' }); } catch (_) { /* signed out either way */ }
      location.reload();
    };
    try {
      S.session = await api('/console/session');
      await open();
    } catch (_) { showLogin(); }
  }
  function showLogin() {
    if (S.source) { S.source.close(); S.source = null; }
    $('app').hidden = true; $('logout').hidden = true; $('login').hidden = false; $('who').textContent = '';
    $('login-key').focus();
  }
  async function open() {
    $('login').hidden = true; $('app').hidden = false; $('logout').hidden = false;
    $('who').textContent = `${S.session.id} (${S.session.role})`;
    if (!S.region) {
      S.region = await api('/console/region');
      $('region-name').textContent = S.region.name;
      initMap(await api('/console/region/communities'));
      fillFilters();
      initBoard();
      setInterval(tick, 1000);
      setInterval(loadVolunteers, 15000);
    }
    loadVolunteers();
    connect();
  }

  // ---- live events ----
  function setLive(state) {
    S.live = state;
    const el = $('live');
    el.textContent = t(state === 'on' ? 'live' : state === 'retry' ? 'reconnecting' : 'connecting');
    el.className = 'live ' + (state === 'on' ? 'on' : 'off');
  }
  function connect() {
    if (S.source) S.source.close();
    setLive('connecting');
    const source = new EventSource('/console/events');
    S.source = source;
    source.addEventListener('reset', (e) => { S.resetPending = JSON.parse(e.data); S.queue = []; setLive('on'); schedule(); });
    source.addEventListener('case', (e) => {
      const c = JSON.parse(e.data);
      if (!S.arrived.has(c.id)) S.arrived.set(c.id, Date.now()); // when each case first reached the page
      S.queue.push(c);
      schedule();
    });
    source.onopen = () => setLive('on');
    source.onerror = async () => {
      setLive('retry');
      if (source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
      // Refused (not a network error): signed out, or the server answered an error. Ask.
      try { S.session = await api('/console/session'); setTimeout(connect, 1000); } catch (err) {
        if (err.status === 401) showLogin(); else setTimeout(connect, 2000);
      }
    };
  }
  function schedule() { if (!S.frame) S.frame = requestAnimationFrame(flush); }
  function invalidate() { S.dirty = true; schedule(); }
  function flush() {
    S.frame = 0;
    const started = performance.now();
    if (S.resetPending) {
      const reset = S.resetPending;
      S.resetPending = null;
      S.skew = new Date(reset.now).getTime() - Date.now();
      S.cases = new Map();
      for (const c of reset.cases) S.cases.set(c.id, c);
      syncMarkers();
      S.dirty = true;
      orderAndRender();
      S.stats.lastResetMs = performance.now() - started;
      S.stats.lastResetCount = reset.cases.length;
      if (S.detail) refreshDetail(); // it may have changed while the stream was down
    }
    if (S.queue.length) {
      const batch = S.queue; S.queue = [];
      for (const c of batch) {
        const old = S.cases.get(c.id);
        if (old && Date.parse(old.updated_at) > Date.parse(c.updated_at)) continue; // an older copy arriving late
        if (c.merged_into) S.cases.delete(c.id); else S.cases.set(c.id, c);
        updateMarker(c);
      }
      S.dirty = true;
      orderAndRender();
      S.stats.lastBatchMs = performance.now() - started;
      S.stats.lastBatchCount = batch.length;
      if (S.detail && batch.some((c) => c.id === S.detail.case_id)) refreshDetail();
    } else if (S.dirty) {
      orderAndRender();
    }
  }

  // ---- filters and order ----
  function option(value, label) { return `<option value="${esc(value)}">${esc(label)}</option>`; }
  function fillSelect(id, all, items) {
    const el = $(id), keep = el.value;
    el.innerHTML = option('', all) + items.map(([v, l]) => option(v, l)).join('');
    el.value = keep;
  }
  function fillFilters() {
    fillSelect('f-state', t('all_states'), STATES.map((s) => [s, stateName(s)]));
    fillSelect('f-priority', t('all_priorities'), [1, 2, 3, 4].map((p) => [String(p), t('priority_n', p)]));
    fillSelect('f-system', t('all_systems'), SYSTEMS.map((s) => [s, t('system_' + s)]));
    fillSelect('f-community', t('all_communities'), S.region.communities.map((c) => [c.id, c.name]).sort((a, b) => a[1].localeCompare(b[1])));
    fillSelect('f-department', t('all_departments'), S.region.departments.map((d) => [d.id, d.name]).sort((a, b) => a[1].localeCompare(b[1])));
  }
  function filters() {
    return { state: $('f-state').value, priority: $('f-priority').value, system: $('f-system').value, community: $('f-community').value, department: $('f-department').value };
  }
  function matches(c, f) {
    return (!f.state || c.state === f.state) && (!f.priority || String(c.priority) === f.priority) &&
      (!f.system || c.systems.includes(f.system)) && (!f.community || c.community === f.community) &&
      (!f.department || c.departments.includes(f.department) || c.accepted_by === f.department);
  }
  const DONE = new Set(['resolved', 'closed', 'cancelled']);
  function rank(c) {
    if (c.escalation_open) return 0;
    if (c.state === 'routed' || c.state === 'rejected' || c.state === 'reported') return 1;
    return DONE.has(c.state) ? 3 : 2;
  }
  function compare(a, b) {
    const ra = rank(a), rb = rank(b);
    if (ra !== rb) return ra - rb;
    const da = a.deadline ? Date.parse(a.deadline) : Infinity, db = b.deadline ? Date.parse(b.deadline) : Infinity;
    if (da !== db) return da - db;
    if (a.priority !== b.priority) return a.priority - b.priority;
    return a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0;
  }
  function orderAndRender() {
    const f = filters();
    S.order = [];
    for (const c of S.cases.values()) if (matches(c, f)) S.order.push(c);
    S.order.sort(compare);
    S.dirty = false;
    $('board-count').textContent = t('shown', S.order.length, S.cases.size);
    $('board-spacer').style.height = `${S.order.length * ROW_H}px`;
    applyMarkerFilter(f);
    renderRows();
  }

  // ---- board (virtualised) ----
  function initBoard() {
    const list = $('board-list');
    list.addEventListener('scroll', () => renderRows(), { passive: true });
    list.addEventListener('click', (e) => { const row = e.target.closest('.row'); if (row) select(row.dataset.caseId); });
    list.addEventListener('keydown', (e) => {
      const row = e.target.closest('.row');
      if (row && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); select(row.dataset.caseId); }
    });
    for (const id of ['f-state', 'f-priority', 'f-system', 'f-community', 'f-department']) $(id).onchange = invalidate;
  }
  function communityName(id) { return S.region.communities.find((c) => c.id === id)?.name; }
  function categoryName(id) { return S.region.categories.find((c) => c.id === id)?.name || id; }
  function due(c) {
    if (!c.deadline) return ['', false];
    const left = Date.parse(c.deadline) - now();
    return left >= 0 ? [t('due_in', fmtSpan(left)), false] : [t('overdue', fmtSpan(left)), true];
  }
  function rowClass(c) {
    return ['row', c.escalation_open ? 'escalated' : rank(c) === 1 ? 'unaccepted' : '', c.id === S.selected ? 'selected' : ''].join(' ');
  }
  function rowInner(c) {
    const [dueText, overdue] = due(c);
    const merged = c.source_ids.length > 1 ? ` <span class="badge merged">${esc(t('reports_n', c.source_ids.length))}</span>` : '';
    const escBadge = c.escalation_open ? ` <span class="badge esc">${esc(t('escalated'))}</span>` : '';
    const dept = c.accepted_by || c.departments.join(', ');
    return `<span class="prio p${c.priority}">${c.priority}</span>` +
      `<span class="title">${esc(categoryName(c.category))} · ${esc(communityName(c.community) || t('no_community'))}${merged}${escBadge}</span>` +
      `<span class="badge s-${c.state}">${esc(stateName(c.state))}</span>` +
      `<span class="sub">${esc(c.source_ids[0])} · ${esc(dept)}</span>` +
      `<span class="due${overdue ? ' overdue' : ''}">${esc(dueText)}</span>`;
  }
  // Only the visible rows (and a few more) exist; their elements are kept and only what changed
  // is written, so a row under the pointer is not replaced by a countdown tick.
  function renderRows() {
    const list = $('board-list'), rows = $('board-rows');
    const first = Math.max(0, Math.floor(list.scrollTop / ROW_H) - OVERSCAN);
    const last = Math.min(S.order.length, Math.ceil((list.scrollTop + list.clientHeight) / ROW_H) + OVERSCAN);
    const n = Math.max(0, last - first);
    rows.style.transform = `translateY(${first * ROW_H}px)`;
    while (rows.children.length < n) rows.appendChild(document.createElement('div'));
    while (rows.children.length > n) rows.lastChild.remove();
    for (let i = 0; i < n; i++) {
      const c = S.order[first + i], el = rows.children[i];
      const cls = rowClass(c), inner = rowInner(c);
      if (el.className !== cls) { el.className = cls; el.tabIndex = 0; }
      if (el.dataset.caseId !== c.id) el.dataset.caseId = c.id;
      if (el.linkbusInner !== inner) { el.innerHTML = inner; el.linkbusInner = inner; }
    }
    S.stats.renders++;
  }
  function tick() {
    $('clock').textContent = fmtTime(new Date(now()).toISOString(), true);
    $('clock').title = tz() || '';
    renderRows(); // countdowns of the visible rows
  }

  // ---- map ----
  let map, caseLayer, volunteerLayer, communityLayer, routeLayer, canvas;
  const markers = new Map();
  const communityShapes = new Map();
  function initMap(geojson) {
    map = L.map('map', { preferCanvas: true, zoomSnap: 0.25 });
    canvas = L.canvas({ padding: 0.3 });
    if (S.region.tile_url) L.tileLayer(S.region.tile_url, { attribution: S.region.tile_attribution, maxZoom: 19 }).addTo(map);
    communityLayer = L.geoJSON(geojson, {
      renderer: L.svg(),
      style: () => ({ color: '#4a5b6c', weight: 1, fillColor: '#8fa3b8', fillOpacity: 0.06, className: 'community' }),
      onEachFeature: (feature, layer) => {
        communityShapes.set(feature.properties.id, layer);
        layer.bindTooltip(feature.properties.name, { sticky: true, className: 'community-label' });
      },
    }).addTo(map);
    caseLayer = L.layerGroup().addTo(map);
    volunteerLayer = L.layerGroup().addTo(map);
    routeLayer = L.layerGroup().addTo(map);
    // Dots grow as the map zooms in: at the whole city, thousands of cases stay readable.
    map.on('zoomend', () => {
      S.zoom = map.getZoom();
      for (const m of markers.values()) m.setStyle(markerStyle(m.caseRef));
    });
    const b = S.region.bounds;
    if (b) map.fitBounds(b); else map.fitBounds(communityLayer.getBounds());
    S.zoom = map.getZoom();
    L.control.scale().addTo(map);
    S.layers = L.control.layers(null, {}, { collapsed: true }).addTo(map);
    buildLegend();
  }
  function buildLegend() {
    if (!map) return;
    if (S.legend) S.legend.remove();
    S.legend = L.control({ position: 'bottomleft' });
    S.legend.onAdd = () => {
      const div = L.DomUtil.create('div', 'legend');
      div.innerHTML = [1, 2, 3, 4].map((p) => `<i class="p${p}"></i>${esc(t('priority_n', p))}`).join('<br>') +
        `<br><i class="ring"></i>${esc(t('legend_esc'))}<br><i class="ring-open"></i>${esc(t('legend_open'))}<br><i class="vol"></i>${esc(t('legend_vol'))}`;
      return div;
    };
    S.legend.addTo(map);
    S.layers.remove();
    S.layers = L.control.layers(null, { [t('layer_communities')]: communityLayer, [t('layer_cases')]: caseLayer, [t('layer_volunteers')]: volunteerLayer }, { collapsed: true }).addTo(map);
  }
  function markerStyle(c) {
    const done = DONE.has(c.state);
    const open = rank(c) === 1;
    return {
      renderer: canvas, radius: (c.priority === 1 ? 2 : 0) + (S.zoom >= 14 ? 6 : S.zoom >= 13 ? 5 : 4),
      fillColor: COLORS[c.priority] || '#888', fillOpacity: done ? 0.25 : 0.9,
      color: c.escalation_open ? '#b5179e' : open ? '#1d2733' : '#ffffff', weight: c.escalation_open ? 3 : open ? 1.5 : 1,
      opacity: done ? 0.4 : 1,
    };
  }
  function updateMarker(c) {
    const existing = markers.get(c.id);
    if (c.merged_into) {
      if (existing) { caseLayer.removeLayer(existing); markers.delete(c.id); }
      return;
    }
    if (existing) {
      existing.setLatLng([c.lat, c.lon]);
      existing.setStyle(markerStyle(c));
      existing.caseRef = c;
      return;
    }
    const m = L.circleMarker([c.lat, c.lon], markerStyle(c));
    m.caseRef = c;
    m.on('click', () => select(c.id));
    markers.set(c.id, m);
    caseLayer.addLayer(m);
  }
  function syncMarkers() {
    for (const [id, m] of markers) if (!S.cases.has(id)) { caseLayer.removeLayer(m); markers.delete(id); }
    for (const c of S.cases.values()) updateMarker(c);
  }
  function applyMarkerFilter(f) {
    for (const [id, m] of markers) {
      const c = S.cases.get(id);
      const show = c && matches(c, f);
      const shown = caseLayer.hasLayer(m);
      if (show && !shown) caseLayer.addLayer(m); else if (!show && shown) caseLayer.removeLayer(m);
    }
  }
  async function loadVolunteers() {
    try {
      const { volunteers } = await api('/console/volunteers');
      S.volunteers = new Map(volunteers.map((v) => [v.id, v]));
      const onDuty = volunteers.filter((v) => v.available).map((v) => `${v.id}@${v.lon},${v.lat}`).join(';');
      if (onDuty === S.onDuty) return; // unchanged: no redraw
      S.onDuty = onDuty;
      volunteerLayer.clearLayers();
      for (const v of volunteers) {
        if (!v.available) continue;
        volunteerLayer.addLayer(L.circleMarker([v.lat, v.lon], { renderer: canvas, radius: 2, stroke: false, fillColor: '#2a9d8f', fillOpacity: 0.6, interactive: false }));
      }
    } catch (_) { /* shown again on the next refresh */ }
  }

  // ---- case detail ----
  async function select(id) {
    S.selected = id;
    renderRows();
    try {
      S.detail = await api('/api/cases/' + encodeURIComponent(id));
      renderDetail(S.detail);
      drawRouting(S.detail, true);
    } catch (err) {
      $('detail').hidden = false;
      $('detail-head').innerHTML = `<p class="error">${esc(err.message)}</p>`;
      $('detail-actions').innerHTML = ''; $('detail-actions').linkbusHtml = ''; $('detail-rest').innerHTML = '';
    }
  }
  async function refreshDetail() {
    if (!S.detail) return;
    try { S.detail = await api('/api/cases/' + encodeURIComponent(S.detail.case_id)); renderDetail(S.detail); drawRouting(S.detail, false); } catch (_) { /* kept */ }
  }
  function closeDetail() {
    S.detail = null; S.selected = null; $('detail').hidden = true; routeLayer.clearLayers(); highlight(null); renderRows();
  }
  function highlight(communityId) {
    for (const [id, layer] of communityShapes) {
      layer.setStyle(id === communityId ? { color: '#b5179e', weight: 3, fillOpacity: 0.15, fillColor: '#b5179e' } : { color: '#4a5b6c', weight: 1, fillOpacity: 0.06, fillColor: '#8fa3b8' });
    }
  }
  function drawRouting(r, pan) {
    routeLayer.clearLayers();
    highlight(r.community?.id);
    const here = [r.case.location.lat, r.case.location.lon];
    routeLayer.addLayer(L.circleMarker(here, { radius: 12, color: '#b5179e', weight: 2, fill: false, interactive: false }));
    const offered = new Map();
    for (const v of r.decision.volunteers) offered.set(v.id, v.distance_m);
    for (const o of r.offers || []) offered.set(o.volunteer_id, o.distance_m);
    for (const [id, distance] of offered) {
      const v = S.volunteers?.get(id);
      if (!v) continue;
      routeLayer.addLayer(L.polyline([here, [v.lat, v.lon]], { color: '#2a9d8f', weight: 2, dashArray: '4 4' }).bindTooltip(`${id}: ${Math.round(distance)} m`, { permanent: true, direction: 'center' }));
      routeLayer.addLayer(L.circleMarker([v.lat, v.lon], { radius: 5, color: '#2a9d8f', fillColor: '#fff', fillOpacity: 1, weight: 2 }));
    }
    const f = r.decision.facility;
    if (f) routeLayer.addLayer(L.circleMarker([f.location.lat, f.location.lon], { radius: 6, color: '#3f88c5', weight: 2 }).bindTooltip(`${f.name} · ${Math.round(f.distance_m)} m`));
    // Centre it in what the detail panel leaves visible of the map.
    if (pan) map.panTo(map.unproject(map.project(here).add([($('detail').offsetWidth + 20) / 2, 0])), { animate: false });
  }
  function ruleText(rule) {
    return rule.kind === 'jurisdiction' ? t('rule_jurisdiction', token('level_', rule.level), rule.area) : t('rule_catch_all', rule.reason);
  }
  function outcomeText(m) {
    if (m.outcome === 'nearest') return t('outcome_nearest', Math.round(m.distance_m || 0));
    return t('outcome_' + m.outcome);
  }
  function renderDetail(r) {
    const d = r.decision, vs = d.volunteer_search;
    const dispatcher = S.session.role === 'dispatcher';
    const primaryId = r.case_id;
    const deadline = r.accept_by || r.resolve_by;
    const deptName = (id) => S.region.departments.find((x) => x.id === id)?.name || id;
    const reports = r.reports.map((rep) => `<li>${esc(rep.source_id)} <span class="badge">${esc(t('system_' + rep.system))}</span> ${esc(rep.category)} · ${esc(fmtTime(rep.reported_at, true))}` +
      (dispatcher && rep.report_id !== primaryId ? ` <button type="button" data-split="${esc(rep.report_id)}">${esc(t('split'))}</button>` : '') + '</li>').join('');
    // The offers as they stand, else whom the routing chose.
    const offers = (r.offers || []).length
      ? r.offers.map((o) => `<li>${esc(t('offer', o.volunteer_id))}: ${esc(token('offer_', o.status))} · ${Math.round(o.distance_m)} m</li>`).join('')
      : d.volunteers.map((v) => `<li>${esc(v.id)} · ${Math.round(v.distance_m)} m</li>`).join('');
    const passed = vs.skill ? `<p>${esc(t('passed_over', vs.skipped_unavailable, vs.skipped_skill, vs.skipped_capped, vs.examined, `${Math.round(vs.radius_m)} m`))}</p>` : `<p>${esc(t('no_volunteers'))}</p>`;
    const timeline = r.timeline.map((e) => `<li><time>${esc(fmtTime(e.at, true))}</time>${esc(token('ev_', e.event))} · ${esc(token('actor_', e.actor.kind))} ${esc(e.actor.id)}${e.department ? ' → ' + esc(e.department) : ''}${e.note ? ': ' + esc(e.note) : ''}</li>`).join('');
    const deptOptions = S.region.departments.map((x) => option(x.id, x.name)).join('');
    const open = r.state !== 'closed' && r.state !== 'cancelled';
    const actions = !dispatcher ? `<p>${esc(t('read_only'))}</p>` : `<div class="actions">` +
      (r.escalation_open ? `<button type="button" class="primary" data-act="ack">${esc(t('ack'))}</button>` : '') +
      (open ? `<select id="reassign-to">${deptOptions}</select><input id="reassign-reason" placeholder="${esc(t('reason'))}"><button type="button" data-act="reassign">${esc(t('reassign'))}</button>` : '') +
      (open ? `<input id="close-note" placeholder="${esc(t('note'))}"><button type="button" data-act="close">${esc(t('close'))}</button>` : '') +
      `</div>`;
    // The actions are rewritten only when they change (another case, another state), so what a
    // dispatcher is typing survives the case's live updates.
    const box = $('detail-actions'), sameCase = $('detail').dataset.caseId === r.case_id;
    if (!sameCase) $('action-msg').textContent = '';
    if (!sameCase || box.linkbusHtml !== actions) { box.innerHTML = actions; box.linkbusHtml = actions; }
    $('detail-head').innerHTML =
      `<h2>${esc(categoryName(r.case.category))} <span class="badge s-${r.state}" id="detail-state" data-state="${esc(r.state)}">${esc(stateName(r.state))}</span>` +
      (r.escalation_open ? ` <span class="badge esc">${esc(t('escalated'))}</span>` : '') + `</h2>` +
      `<dl class="kv"><dt>ID</dt><dd>${esc(r.case_id)}</dd>` +
      `<dt>${esc(t('source_ids'))}</dt><dd id="detail-source-ids">${esc(r.reports.map((x) => x.source_id).join(', ') || r.case.source_id)}</dd>` +
      `<dt>${esc(t('address'))}</dt><dd>${esc(r.case.address || '')}</dd>` +
      `<dt>${esc(t('description'))}</dt><dd>${esc(r.case.description || '')}</dd>` +
      `<dt>${esc(t('reported'))}</dt><dd>${esc(fmtTime(r.case.reported_at, true))}</dd>` +
      `<dt>${esc(t('deadline'))}</dt><dd>${esc(fmtTime(deadline, true))}</dd>` +
      `<dt>${esc(t('departments'))}</dt><dd>${esc((r.accepted_by ? [r.accepted_by] : r.departments).map(deptName).join(', '))}</dd></dl>`;
    $('detail-rest').innerHTML =
      `<h3>${esc(t('routing'))}</h3><dl class="kv">` +
      `<dt>${esc(t('community'))}</dt><dd>${esc(d.community.community?.name || '')} (${esc(outcomeText(d.community))})</dd>` +
      `<dt>${esc(t('departments'))}</dt><dd>${d.departments.map((x) => `${esc(x.name)}: ${esc(ruleText(x.rule))}`).join('<br>')}</dd>` +
      `<dt>${esc(t('fallbacks'))}</dt><dd>${d.fallbacks.map((x) => esc(x.name)).join(', ')}</dd>` +
      (d.facility ? `<dt>${esc(t('facility'))}</dt><dd>${esc(d.facility.name)} · ${Math.round(d.facility.distance_m)} m</dd>` : '') +
      `</dl><h3>${esc(t('volunteers'))}</h3><ul>${offers}</ul>${passed}` +
      `<h3>${esc(t('explanation'))}</h3><ul class="explanation" id="detail-explanation">${d.explanation.map((l) => `<li>${esc(l)}</li>`).join('')}</ul>` +
      `<h3>${esc(t('reports'))} (${r.reports.length})</h3><ul>${reports}</ul>` +
      `<h3>${esc(t('timeline'))}</h3><ul class="timeline">${timeline}</ul>`;
    $('detail').hidden = false;
    $('detail').dataset.caseId = r.case_id;
  }
  async function act(body) {
    const id = S.detail.case_id;
    try {
      S.detail = await api(`/api/cases/${encodeURIComponent(id)}/actions`, { method: 'POST', body });
      renderDetail(S.detail);
      $('action-msg').textContent = t('done');
    } catch (err) {
      const msg = $('action-msg');
      if (msg) msg.textContent = t('refused', err.message);
      if (err.status === 401) showLogin();
    }
  }
  $('detail-body').addEventListener('click', (e) => {
    const b = e.target.closest('button');
    if (!b || !S.detail) return;
    if (b.dataset.split) act({ action: 'split', report_id: b.dataset.split });
    else if (b.dataset.act === 'ack') act({ action: 'acknowledge_escalation' });
    else if (b.dataset.act === 'reassign') act({ action: 'reassign', department: $('reassign-to').value, reason: $('reassign-reason').value || 'reassigned by dispatcher' });
    else if (b.dataset.act === 'close') { const note = $('close-note').value; act(note ? { action: 'close', note } : { action: 'close' }); }
  });
  $('detail-close').onclick = closeDetail;
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && S.detail) closeDetail(); });

  // ---- hooks for tests and measurements ----
  window.linkbusConsole = {
    stats: S.stats,
    caseCount: () => S.cases.size,
    mapCaseIds: () => [...markers.keys()].filter((id) => caseLayer.hasLayer(markers.get(id))),
    communityCount: () => communityShapes.size,
    state: (id) => S.cases.get(id)?.state,
    arrivedAt: (id) => S.arrived.get(id) ?? null,
    // Frame times over `ms` milliseconds while the board scrolls through every case.
    measureFrames: (ms) => new Promise((resolve) => {
      const list = $('board-list'), times = [];
      let last = performance.now();
      const end = last + ms;
      const step = (ts) => {
        times.push(ts - last); last = ts;
        list.scrollTop = (list.scrollTop + 3 * ROW_H) % Math.max(1, list.scrollHeight - list.clientHeight);
        if (ts < end) requestAnimationFrame(step);
        else {
          times.shift();
          const sorted = [...times].sort((a, b) => a - b);
          resolve({ frames: times.length, mean: times.reduce((a, b) => a + b, 0) / Math.max(1, times.length), p95: sorted[Math.floor(sorted.length * 0.95)] || 0, max: sorted[sorted.length - 1] || 0 });
        }
      };
      requestAnimationFrame((ts) => { last = ts; requestAnimationFrame(step); });
    }),
  };

  start();
})();
