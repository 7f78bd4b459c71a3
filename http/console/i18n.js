// The console's words in English and Chinese (zh-CN), and times and spans as the region shows
// them: in its own time zone, whatever the browser's.
import { state } from './state.js';

/** Every string the page shows, by language and key; `{0}`, `{1}` … are filled by `t`. A key a
 * language lacks falls back to English; names the server sends as tokens (states, systems, levels,
 * offers, actors) are translated where the language has them (`token`). */
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
    split: 'Split out', note: 'note', done: 'Done.', refused: 'Refused: {0}', read_only: 'Operators only watch.',
    outcome_inside: 'inside', outcome_on_border: 'on a border', outcome_nearest: 'nearest, {0} m outside', outcome_unmatched: 'no community matched',
    metres: '{0} m', zoom_in: 'Zoom in', zoom_out: 'Zoom out', rule_jurisdiction: '{0} rule for {1}', rule_catch_all: 'catch-all: {0}',
    catch_all_unknown_category: 'the category is not in this region\'s list', catch_all_no_community: 'the location matched no community',
    catch_all_no_department: 'no department handles the category there', facility: 'Nearest facility', layer_cases: 'Cases',
    layer_volunteers: 'Volunteers on duty', layer_communities: 'Communities', legend_esc: 'escalated', legend_open: 'not accepted',
    legend_vol: 'volunteer on duty', offer: 'offer {0}',
    whole_region: 'Whole region', whole_region_hint: 'Show the whole region',
    outcome_near_border: 'near a border, {0} m from another community', candidates: 'Candidates', broadcast: 'Broadcast to', none: 'none',
    cancel_case: 'Cancel case', choose_department: '— choose a department —', reason_required: 'reason (required)',
    need_department: 'Choose the department to reassign to.', need_reason: 'A reason is required.',
    add_note: 'Add note', supervise: 'Urge (督办)', supervise_required: 'what to urge (required)', follow_up: 'Follow-up call (回访)',
    reached: 'reached', not_reached: 'not reached', call_note: 'what they said (required)', need_note: 'Write the note first.',
    find_department: 'find a department', find_community: 'find a community', all_streets: 'All sub-districts',
    confirm_close: 'Close this priority {0} case?', confirm_cancel: 'Cancel this priority {0} case? Reason: {1}',
    confirm_yes_close: 'Yes, close it', confirm_yes_cancel: 'Yes, cancel it', confirm_no: 'No, keep it open',
    span_days: '{0}d {1}h', since: 'reported {0} ago',
    page_title: 'Dispatcher console', title_p1: '({0} P1) {1}',
    count_p1: 'P1 {0}', count_escalated: 'escalated {0}', count_overdue: 'overdue {0}', count_unaccepted: 'unaccepted {0}',
    pinned_more: '+{0} more priority 1 — show all',
    alerts_off: 'Enable alerts', alerts_on: 'Alerts on', alerts_sound_only: 'Alerts on (sound only)',
    alerts_off_hint: 'Sound and desktop notifications for new, escalated or updated priority 1–2 cases',
    alerts_on_hint: 'Sound and notifications on; click to turn them off',
    alerts_blocked_hint: 'The browser does not let this page notify: allow notifications in its site settings. Click to turn alerts off.',
    alert_new: 'New priority {0} case', alert_escalated: 'Priority {0} case escalated', alert_raised: 'Case raised to priority {0}',
    alert_update: 'Priority {0} case updated by its source', alert_more: '{0} more urgent cases',
    search_hint: 'Search: case or source id, address, caller, phone', search_short: 'Type at least 2 letters or digits.',
    search_found: '{0} found', search_more: 'the {0} newest shown; type more to narrow', search_none: 'No case found.',
    caller: 'Caller', flags: 'At risk', case_link: 'link', repeats: 'Repeats here',
    repeats_rule: 'Other reports within {0} m or at the same address, {1} days either way.',
    flag_persons_trapped: 'persons trapped', flag_elderly_alone: 'elderly living alone', flag_disabled: 'disabled',
    flag_minor: 'minor', flag_life_threatening: 'life-threatening',
    state_reported: 'reported', state_routed: 'routed', state_accepted: 'accepted', state_rejected: 'rejected',
    state_in_progress: 'in progress', state_resolved: 'resolved', state_closed: 'closed', state_cancelled: 'cancelled',
    system_emergency: 'emergency', system_commercial: 'commercial', system_public_service: 'public service', system_management: 'management',
    supervision: 'Supervision', sup_title: 'Sub-districts ranked', sup_rank: 'Rank', sup_place: 'Sub-district', sup_received: 'Received',
    sup_response_rate: 'Response rate', sup_resolution_rate: 'Resolution rate', sup_satisfaction_rate: 'Satisfaction rate',
    sup_change: '{0}, change from last month (points)', sup_none: 'No case received in this month.',
    // Errors: one sentence per `code` of the error body (wire/src/http_error.rs), `network` when
    // no answer came; {0} is the server's own words (English), left out where they would be.
    error_malformed: 'The request could not be read: {0}', error_unauthorized: 'Not signed in: {0}',
    error_forbidden: 'Not allowed: {0}', error_not_found: 'Not found: {0}', error_conflict: 'Refused: {0}',
    error_too_large: 'Too large: {0}', error_unsupported_media_type: 'Not a type the server takes: {0}',
    error_invalid: 'Invalid: {0}', error_rate_limited: 'Too many requests: {0}',
    error_unavailable: 'The server cannot do this now; try again: {0}', error_network: 'No answer from the server; check the connection and try again.',
    error_unknown: 'Failed: {0}', session_ended: 'The session has ended; sign in again.', layers: 'Layers',
    sup_community: 'Community', sup_back: '← Sub-districts', sup_in_street: '{0}: communities ranked', sup_by_month: 'Trend by month',
    sup_by_week: 'Trend by week', sup_trend: 'trend', sup_too_few: 'fewer than {0} cases',
    sup_rising_title: 'Rising this month', sup_rise: '{0} cases, {1} a month before', sup_likely: 'likely',
    sup_possible: 'possible', sup_no_rise: 'Nothing rising against the {0} months before.',
    sup_repeats_title: 'Repeat addresses this month', sup_cases_n: '{0} cases', sup_no_repeats: 'No address with several cases.',
  },
  'zh-CN': {
    connecting: '连接中…', live: '实时', reconnecting: '重新连接中…', sign_in: '登录', sign_out: '退出',
    sign_in_title: '调度台', sign_in_hint: '请输入调度员密钥。', bad_key: '密钥无效，被拒绝。',
    all_states: '全部状态', all_priorities: '全部优先级', all_systems: '全部来源', all_communities: '全部社区',
    all_departments: '全部部门', priority_n: '优先级 {0}', shown: '显示 {0} / 共 {1} 件', no_community: '无社区',
    due_in: '剩余 {0}', overdue: '已超时 {0}', reports_n: '{0} 条报告', escalated: '已升级', merged: '已合并',
    source_ids: '来源编号', timeline: '时间线', routing: '派单依据', explanation: '说明', actions: '操作',
    community: '社区', departments: '责任部门', fallbacks: '后备部门', volunteers: '已邀请志愿者',
    passed_over: '跳过：{0} 人不在岗，{1} 人无此技能，{2} 人已达每小时上限（在 {4} 内检查 {3} 人）。',
    no_volunteers: '此类事件无需志愿者。', state: '状态', category: '类别', address: '地址', description: '描述',
    reported: '上报时间', deadline: '时限', reports: '报告', ack: '确认升级', reassign: '改派', close: '结案',
    split: '拆分', note: '备注', done: '已完成。', refused: '被拒绝：{0}', read_only: '值班观察员只能查看。',
    outcome_inside: '位于社区内', outcome_on_border: '位于边界上', outcome_nearest: '最近社区，界外 {0} 米', outcome_unmatched: '未匹配到社区',
    metres: '{0} 米', zoom_in: '放大', zoom_out: '缩小', rule_jurisdiction: '{0}级规则：{1}', rule_catch_all: '兜底：{0}',
    catch_all_unknown_category: '类别不在本区域的类别表中', catch_all_no_community: '位置未匹配到任何社区',
    catch_all_no_department: '该处没有部门负责此类别', facility: '最近设施', layer_cases: '事件',
    layer_volunteers: '在岗志愿者', layer_communities: '社区边界', legend_esc: '已升级', legend_open: '未签收',
    legend_vol: '在岗志愿者', offer: '邀请 {0}',
    whole_region: '全域', whole_region_hint: '显示整个区域',
    outcome_near_border: '靠近边界，距其他社区 {0} 米', candidates: '候选社区', broadcast: '广播至', none: '无',
    cancel_case: '撤销事件', choose_department: '— 选择部门 —', reason_required: '原因（必填）',
    need_department: '请选择改派的部门。', need_reason: '请填写原因。',
    add_note: '添加备注', supervise: '督办', supervise_required: '督办内容（必填）', follow_up: '回访',
    reached: '已联系上', not_reached: '未联系上', call_note: '回访情况（必填）', need_note: '请先填写内容。',
    find_department: '搜索部门', find_community: '搜索社区', all_streets: '全部街道',
    confirm_close: '确定结案这件优先级 {0} 的事件？', confirm_cancel: '确定撤销这件优先级 {0} 的事件？原因：{1}',
    confirm_yes_close: '确定结案', confirm_yes_cancel: '确定撤销', confirm_no: '不，保留',
    span_days: '{0}天{1}时', since: '已上报 {0}',
    page_title: '调度台', title_p1: '({0} P1) {1}',
    count_p1: 'P1 {0}', count_escalated: '已升级 {0}', count_overdue: '已超时 {0}', count_unaccepted: '未签收 {0}',
    pinned_more: '另有 {0} 件优先级 1 — 全部显示',
    alerts_off: '开启提醒', alerts_on: '提醒已开启', alerts_sound_only: '提醒已开启（仅声音）',
    alerts_off_hint: '新的、已升级或来源更新的优先级 1–2 事件以声音和桌面通知提醒',
    alerts_on_hint: '声音和通知已开启；点击关闭',
    alerts_blocked_hint: '浏览器不允许本页发送通知：请在网站设置中允许通知。点击关闭提醒。',
    alert_new: '新的优先级 {0} 事件', alert_escalated: '优先级 {0} 事件已升级', alert_raised: '事件升为优先级 {0}',
    alert_update: '优先级 {0} 事件：来源更新', alert_more: '另有 {0} 件紧急事件',
    search_hint: '搜索：事件或来源编号、地址、来电人、电话', search_short: '请至少输入 2 个字母、数字或汉字。',
    search_found: '找到 {0} 件', search_more: '显示最新 {0} 件；输入更多以缩小范围', search_none: '未找到事件。',
    caller: '来电人', flags: '风险人群', case_link: '链接', repeats: '同址重复报告',
    repeats_rule: '{0} 米内或同一地址、前后 {1} 天内的其他报告。',
    flag_persons_trapped: '有人被困', flag_elderly_alone: '独居老人', flag_disabled: '残障人士',
    flag_minor: '未成年人', flag_life_threatening: '危及生命',
    state_reported: '已上报', state_routed: '待签收', state_accepted: '已签收', state_rejected: '已退回',
    state_in_progress: '处理中', state_resolved: '已办结', state_closed: '已结案', state_cancelled: '已撤销',
    system_emergency: '应急', system_commercial: '商业服务', system_public_service: '公共服务', system_management: '社区管理',
    supervision: '监督考核', sup_title: '街道排名', sup_rank: '排名', sup_place: '街道', sup_received: '受理量',
    sup_response_rate: '响应率', sup_resolution_rate: '解决率', sup_satisfaction_rate: '满意率',
    sup_change: '{0}较上月（百分点）', sup_none: '本月无受理案件。',
    error_malformed: '请求无法解析。', error_unauthorized: '未登录或会话已结束，请重新登录。',
    error_forbidden: '无权执行此操作。', error_not_found: '未找到，可能已被删除或编号有误。',
    error_conflict: '操作被拒绝：事件当前状态不允许此操作，或所选对象不存在。',
    error_too_large: '内容过长。', error_unsupported_media_type: '请求格式不受支持。',
    error_invalid: '操作被拒绝：填写的内容无效。', error_rate_limited: '请求过于频繁，请稍后再试。',
    error_unavailable: '服务暂时不可用，请稍后重试。', error_network: '无法连接服务器，请检查网络后重试。',
    error_unknown: '操作失败。', session_ended: '会话已结束，请重新登录。', layers: '图层',
    sup_community: '社区', sup_back: '← 返回街道', sup_in_street: '{0} 社区排名', sup_by_month: '按月趋势',
    sup_by_week: '按周趋势', sup_trend: '趋势', sup_too_few: '不足{0}件',
    sup_rising_title: '本月上升类别', sup_rise: '{0}件，此前月均{1}件', sup_likely: '很可能上升',
    sup_possible: '可能上升', sup_no_rise: '与前{0}个月相比无明显上升。',
    sup_repeats_title: '本月重复诉求地址', sup_cases_n: '{0}件', sup_no_repeats: '无多次诉求的地址。',
    level_community: '社区', level_sub_district: '街道', level_district: '区', level_region: '全市',
    offer_offered: '已邀请', offer_accepted: '已接受', offer_declined: '已拒绝', offer_expired: '已过期', offer_withdrawn: '已撤回',
    actor_system: '系统', actor_department: '部门', actor_dispatcher: '调度员', actor_volunteer: '志愿者', actor_resident: '居民',
  },
};

/** Every timeline event the case book writes (`TimelineEntry.event`, wire/src/lifecycle.rs) and
 * its name in each language that has one; elsewhere the event is shown as it is (so English shows
 * `closed`, `volunteer_offered` …). */
const TIMELINE_EVENTS = {
  routed: { 'zh-CN': '已派单' },
  noted: { en: 'note', 'zh-CN': '备注' },
  supervised: { en: 'urged (督办)', 'zh-CN': '督办' },
  followed_up: { en: 'follow-up call', 'zh-CN': '回访' },
  accepted: { 'zh-CN': '签收' },
  rejected: { 'zh-CN': '退回' },
  rerouted: { 'zh-CN': '转派下一部门' },
  reassigned: { 'zh-CN': '改派' },
  escalated: { 'zh-CN': '升级' },
  escalation_acknowledged: { 'zh-CN': '确认升级' },
  progress: { 'zh-CN': '处理进展' },
  resolved: { 'zh-CN': '办结' },
  closed: { 'zh-CN': '结案' },
  cancelled: { 'zh-CN': '撤销' },
  rated: { 'zh-CN': '评价' },
  reopened: { 'zh-CN': '重新打开' },
  report_merged: { 'zh-CN': '合并报告' },
  merged: { 'zh-CN': '并入其他事件' },
  split: { 'zh-CN': '拆分' },
  source_updated: {},
  volunteer_offered: { 'zh-CN': '邀请志愿者' },
  volunteer_accepted: { 'zh-CN': '志愿者接受' },
  volunteer_declined: { 'zh-CN': '志愿者拒绝' },
  volunteer_expired: { 'zh-CN': '志愿者未响应' },
  volunteer_arrived: { 'zh-CN': '志愿者到达' },
  volunteer_handed_over: { 'zh-CN': '志愿者已交接' },
};

/** The string `key` in the page's language with `{n}` replaced by `args[n]`. */
export const t = (key, ...args) => (I18N[state.lang][key] ?? I18N.en[key] ?? key).replace(/\{(\d)\}/g, (_, n) => args[n] ?? '');

/** What went wrong with a call to the server (an Error of api.js) in the page's language: the
 * sentence for its `code`, with the server's words where the language's sentence has room for
 * them (English: the server writes English). */
export function errorText(err) {
  const key = 'error_' + err.code;
  return t(key in I18N.en ? key : 'error_unknown', err.message);
}

/** A token the server sends (`prefix` + `value`, e.g. `state_` + `routed`): translated where the
 * language has it, else as it is. */
export function token(prefix, value) { return I18N[state.lang][prefix + value] ?? value; }

/** A category's or department's name (as the region lists it) in the page's language: its
 * `names` entry for the language, else the region's own name. */
export function localName(thing) { return thing?.names?.[state.lang] ?? thing?.name; }

/** A case state's name. */
export function stateName(s) { return t('state_' + s); }

/** A timeline event's name in the page's language. */
export function eventName(event) { return TIMELINE_EVENTS[event]?.[state.lang] ?? event; }

/** The region's time zone (IANA name), or undefined (the browser's) before the region is read. */
export function tz() { return state.region?.time_zone || undefined; }

/** An ISO time as HH:MM:SS in the region's zone, with MM-DD before it when `withDate`; '' for none. */
export function fmtTime(iso, withDate) {
  if (!iso) return '';
  const opts = { timeZone: tz(), hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false };
  if (withDate) Object.assign(opts, { month: '2-digit', day: '2-digit' });
  return new Intl.DateTimeFormat(state.lang, opts).format(new Date(iso));
}

/** A span of `ms` (its sign ignored) as M:SS, H:MM:SS from an hour, and from a day in days and
 * hours in the page's language ("2d 23h", "2天23时"): a 72-hour deadline is not "71:59:43". */
export function fmtSpan(ms) {
  const s = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const two = (n) => String(n).padStart(2, '0');
  if (d > 0) return t('span_days', d, h % 24);
  return h > 0 ? `${h}:${two(m)}:${two(sec)}` : `${m}:${two(sec)}`;
}
