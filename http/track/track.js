// The resident's tracking page (全程查询): reads the case id from the address (/track/<id>) and
// the tracking token from its query (?t=), or asks for the last 4 digits of the reporter's phone;
// shows the public view of the case (POST /api/track/<id>) and takes the rating
// (POST /api/track/<id>/rating). Words in English and Chinese (zh-CN), as the console does
// (http/console/i18n.js): the language chosen before, else the browser's, with a switch.

const I18N = {
  en: {
    title: 'Track my request', case_label: 'Request number', phone_label: 'Last 4 digits of your phone', look: 'Show',
    category: 'Category', department: 'Department', created: 'Received', updated: 'Last change', accept: 'Accept by',
    resolve: 'Resolve by', timeline: 'What happened', rate: 'How did we do?', solved: 'Is the problem solved?',
    yes: 'Yes', no: 'No, not solved', send: 'Send', comment: 'Anything else? (optional)',
    met: 'met', missed: 'missed', pending: 'open', none: '—', escalations: 'Escalated {0}× so that it is handled in time.',
    reports: 'Joined with {0} other reports of the same problem.', note: 'The department: {0}',
    not_found: 'Nothing found for this request number and proof. Check the link or the digits.',
    locked: 'Too many wrong tries: locked. Try again in {0} minutes.', busy: 'Too many requests; try again in {0} seconds.', invalid: 'Please check what you entered: {0}',
    failed: 'The service could not be reached; try again.', need_score: 'Choose 1 to 5 stars and whether it is solved.',
    thanks: 'Thank you, your rating was recorded.', reopened: 'Thank you. The case was reopened and goes back to the department.',
    state_reported: 'Received', state_routed: 'Sent to the department', state_accepted: 'Accepted by the department',
    state_rejected: 'Being reassigned', state_in_progress: 'Being handled', state_resolved: 'Resolved', state_closed: 'Closed',
    state_cancelled: 'Cancelled',
    next_reported: 'Next: it is sent to the department responsible.',
    next_routed: 'Next: the department accepts it (see "Accept by").',
    next_accepted: 'Next: the department works on it and resolves it (see "Resolve by").',
    next_rejected: 'Next: the dispatchers give it to another department.',
    next_in_progress: 'Next: the department resolves it and tells you what was done.',
    next_resolved: 'Next: tell us below whether it is solved. "Not solved" reopens it.',
    next_closed: 'This request is closed. You may still rate it.', next_cancelled: 'This request was cancelled.',
    ev_routed: 'sent to the department', ev_accepted: 'accepted', ev_rejected: 'declined by a department', ev_rerouted: 'sent to another department',
    ev_reassigned: 'reassigned', ev_escalated: 'escalated', ev_progress: 'progress', ev_resolved: 'resolved', ev_closed: 'closed',
    ev_cancelled: 'cancelled', ev_rated: 'rated', ev_reopened: 'reopened', ev_report_merged: 'another report joined',
    ev_split: 'split from another case', ev_volunteer_accepted: 'a volunteer is on the way',
  },
  'zh-CN': {
    title: '全程查询', case_label: '诉求编号', phone_label: '手机号后 4 位', look: '查询',
    category: '类别', department: '承办部门', created: '受理时间', updated: '最近更新', accept: '签收时限',
    resolve: '办结时限', timeline: '办理过程', rate: '请您评价', solved: '问题解决了吗？',
    yes: '已解决', no: '未解决', send: '提交', comment: '其他意见（可不填）',
    met: '按时', missed: '超时', pending: '进行中', none: '—', escalations: '已升级 {0} 次，督促及时办理。',
    reports: '已与其他 {0} 件同一问题的诉求合并办理。', note: '部门答复：{0}',
    not_found: '未查到该诉求，或凭证不符。请核对链接或号码。',
    locked: '错误次数过多，已锁定。请 {0} 分钟后再试。', busy: '请求过于频繁，请 {0} 秒后再试。', invalid: '请检查输入：{0}',
    failed: '暂时无法连接，请稍后再试。', need_score: '请选择 1–5 星并说明是否解决。',
    thanks: '感谢您的评价。', reopened: '感谢反馈。诉求已重新打开，退回部门继续办理。',
    state_reported: '已受理', state_routed: '已派单', state_accepted: '部门已签收', state_rejected: '改派中',
    state_in_progress: '办理中', state_resolved: '已办结', state_closed: '已结案', state_cancelled: '已撤销',
    next_reported: '下一步：派往责任部门。', next_routed: '下一步：部门签收（见签收时限）。',
    next_accepted: '下一步：部门办理并办结（见办结时限）。', next_rejected: '下一步：调度员改派其他部门。',
    next_in_progress: '下一步：部门办结并告知处理结果。', next_resolved: '下一步：请在下方告诉我们是否解决；选择“未解决”将重新打开。',
    next_closed: '该诉求已结案，您仍可评价。', next_cancelled: '该诉求已撤销。',
    ev_routed: '派单', ev_accepted: '签收', ev_rejected: '部门退回', ev_rerouted: '转派下一部门', ev_reassigned: '改派',
    ev_escalated: '升级', ev_progress: '处理进展', ev_resolved: '办结', ev_closed: '结案', ev_cancelled: '撤销', ev_rated: '评价',
    ev_reopened: '重新打开', ev_report_merged: '合并同类诉求', ev_split: '拆分', ev_volunteer_accepted: '志愿者已出发',
  },
};

let lang = localStorage.getItem('linkbus.lang') || (navigator.language.startsWith('zh') ? 'zh-CN' : 'en');
const t = (key, ...args) => (I18N[lang][key] ?? I18N.en[key] ?? key).replace(/\{(\d)\}/g, (_, n) => args[n] ?? '');
const $ = (id) => document.getElementById(id);
const when = (iso) => new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(iso));

const path = decodeURIComponent(location.pathname.replace(/^\/track\/?/, ''));
let caseId = path;
/** The proof: the link's token, or the phone digits once entered. */
const linkToken = new URLSearchParams(location.search).get('t');
let proof = linkToken ? { token: linkToken } : null;
let shown = null;
let score = 0;
/** Rated from this page: the form stays hidden. */
let rated = false;

function words() {
  document.documentElement.lang = lang;
  document.title = t('title');
  $('lang').textContent = lang === 'en' ? '中文' : 'English';
  for (const [id, key] of [['title', 'title'], ['case-label', 'case_label'], ['phone-label', 'phone_label'], ['look', 'look'],
    ['l-category', 'category'], ['l-department', 'department'], ['l-created', 'created'], ['l-updated', 'updated'],
    ['l-accept', 'accept'], ['l-resolve', 'resolve'], ['l-timeline', 'timeline'], ['l-rate', 'rate'], ['l-solved', 'solved'],
    ['l-yes', 'yes'], ['l-no', 'no'], ['send', 'send']]) $(id).textContent = t(key);
  $('comment').placeholder = t('comment');
  if (shown) render(shown);
}

/** A deadline's words and class: its time while it runs, and met, missed or open. */
function deadline(d) {
  if (!d) return [t('none'), ''];
  const mark = d.met === true ? 'met' : d.met === false ? 'missed' : 'pending';
  return [d.by ? `${when(d.by)} · ${t(mark)}` : t(mark), mark === 'pending' ? '' : mark];
}

function render(c) {
  shown = c;
  $('case-view').hidden = false;
  $('ask').hidden = true;
  $('state').textContent = t('state_' + c.state);
  $('next').textContent = t('next_' + c.state);
  $('category').textContent = c.category_name ?? c.category;
  $('department').textContent = c.department ?? t('none');
  $('created').textContent = when(c.created_at);
  $('updated').textContent = when(c.updated_at);
  for (const [id, d] of [['accept', c.accept_deadline], ['resolve', c.resolve_deadline]]) {
    const [text, cls] = deadline(d);
    $(id).textContent = text;
    $(id).className = cls;
  }
  $('escalations').hidden = !c.escalations;
  $('escalations').textContent = t('escalations', c.escalations);
  $('reports').hidden = c.reports < 2;
  $('reports').textContent = t('reports', c.reports - 1);
  const last = [...c.timeline].reverse().find((e) => e.note && ['resolved', 'closed', 'progress'].includes(e.event));
  $('note').hidden = !last;
  $('note').textContent = last ? t('note', last.note) : '';
  $('timeline').replaceChildren(...c.timeline.map((e) => {
    const li = document.createElement('li');
    const time = document.createElement('time');
    time.dateTime = e.at;
    time.textContent = when(e.at);
    li.append(time, t('ev_' + e.event));
    if (e.note) li.append(' — ', e.note);
    return li;
  }));
  $('rate').hidden = !c.can_rate || rated;
}

/** Says why a request was refused: a 429 of minutes is a lockout, of seconds the rate limit. */
function fail(status, body) {
  const secs = body?.retry_after_secs ?? 3600;
  const limited = secs > 120 ? t('locked', Math.ceil(secs / 60)) : t('busy', secs);
  const text = status === 404 ? t('not_found') : status === 429 ? limited
    : status === 422 ? t('invalid', body?.error ?? '') : t('failed');
  $('error').textContent = text;
  $('error').hidden = false;
}

async function post(url, body) {
  let response;
  try {
    response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'accept-language': lang }, body: JSON.stringify(body) });
  } catch {
    fail(0);
    return null;
  }
  const json = await response.json().catch(() => null);
  if (response.ok) {
    $('error').hidden = true;
    return json;
  }
  const wait = Number(response.headers.get('retry-after')) || 3600;
  fail(response.status, { ...json, retry_after_secs: wait });
  if (response.status === 404 || response.status === 429) {
    $('case-view').hidden = true;
    shown = null;
  }
  return null;
}

async function load() {
  const c = await post(`/api/track/${encodeURIComponent(caseId)}`, proof);
  if (c) render(c);
  else ask();
}

function ask() {
  $('ask').hidden = false;
  $('case').value = caseId;
  $('case').hidden = $('case-label').hidden = Boolean(path);
}

$('lang').onclick = () => { lang = lang === 'en' ? 'zh-CN' : 'en'; localStorage.setItem('linkbus.lang', lang); words(); };
$('ask').onsubmit = (e) => {
  e.preventDefault();
  caseId = $('case').value.trim();
  proof = { phone: $('phone').value.trim() };
  load();
};
$('scores').replaceChildren(...[1, 2, 3, 4, 5].map((n) => {
  const b = document.createElement('button');
  b.type = 'button';
  b.id = `score-${n}`;
  b.role = 'radio';
  b.textContent = `${n}★`;
  b.setAttribute('aria-checked', 'false');
  b.onclick = () => {
    score = n;
    for (const other of $('scores').children) other.setAttribute('aria-checked', String(other === b));
  };
  return b;
}));
$('rate').onsubmit = async (e) => {
  e.preventDefault();
  const solved = $('solved-yes').checked ? true : $('solved-no').checked ? false : null;
  if (!score || solved === null) {
    $('message').textContent = t('need_score');
    $('message').hidden = false;
    return;
  }
  const comment = $('comment').value.trim();
  const c = await post(`/api/track/${encodeURIComponent(caseId)}/rating`, { ...proof, score, solved, ...(comment ? { comment } : {}) });
  if (!c) return;
  rated = true;
  render(c);
  $('message').textContent = solved ? t('thanks') : t('reopened');
  $('message').hidden = false;
};

// Follows the case while the page is open: asks again each minute it is shown, and on coming back.
setInterval(() => { if (shown && !document.hidden) load(); }, 60000);
document.addEventListener('visibilitychange', () => { if (shown && !document.hidden) load(); });

words();
if (proof && caseId) load();
else ask();
