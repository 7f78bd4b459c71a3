// The app's words in English and Chinese (zh-CN), as the console's i18n.js keeps them: a key a
// language lacks falls back to English; tokens the server sends (categories, reasons, events)
// are translated where the language has them.

const I18N = {
  en: {
    brand: 'linkbus volunteer', sign_in: 'Sign in', sign_out: 'Sign out', sign_in_title: 'Volunteer sign-in',
    sign_in_hint: 'Enter the credential your dispatcher gave you.', bad_key: 'The credential was refused: {0}',
    live: 'live', offline: 'offline — reconnecting…', on_duty: 'On duty', off_duty: 'Off duty',
    go_on_duty: 'Go on duty', go_off_duty: 'Go off duty', skills: 'My skills',
    position_none: 'Waiting for your position…', position_denied: 'Location is off: allow it to receive offers nearby.',
    position_sent: 'Position sent {0}{1}', in_community: ' — {0}',
    cap: 'Hourly cap reached: {0} of at most {1} offers in the last hour. New offers resume once the oldest is an hour old.',
    cap_near: 'Offers in the last hour: {0} of at most {1}.',
    priority: 'Priority {0}', away: '{0} away', left: '{0} left to answer', expired: 'time is up',
    accept: 'Accept', decline: 'Decline', facility: 'Bring: {0}, {1} from the case', go_to: 'Go to',
    updates: 'Case updates', taken_by_you: 'You took this case',
    step_arrived: 'I have arrived', step_handed_over: 'Handed over', handed_over_done: 'Handed over — thank you!',
    reason_taken: 'Another volunteer took case {0}.', reason_case_closed: 'Case {0} was closed or withdrawn.',
    reason_expired: 'The offer for case {0} expired.', reason_declined: 'You declined case {0}.',
    history: 'My history and hours', history_sum: '{0} cases taken, {1} hours', no_history: 'No offers yet.',
    refused: 'Refused: {0}', retry_in: 'Too many updates; retrying in {0} s.',
    status_offered: 'open', status_accepted: 'accepted', status_declined: 'declined', status_expired: 'expired',
    status_withdrawn: 'withdrawn', kind_aed: 'AED', kind_fire_station: 'fire station',
  },
  'zh-CN': {
    brand: 'linkbus 志愿者', sign_in: '登录', sign_out: '退出', sign_in_title: '志愿者登录',
    sign_in_hint: '请输入调度员发给您的凭证。', bad_key: '凭证被拒绝：{0}',
    live: '实时', offline: '离线，重新连接中…', on_duty: '在岗', off_duty: '离岗',
    go_on_duty: '上岗', go_off_duty: '离岗', skills: '我的技能',
    position_none: '正在获取位置…', position_denied: '定位已关闭：请允许定位以接收附近的求助。',
    position_sent: '位置已发送 {0}{1}', in_community: '，{0}',
    cap: '已达每小时上限：过去一小时收到 {0} 条邀请（最多 {1} 条）。最早一条满一小时后恢复接收。',
    cap_near: '过去一小时的邀请：{0} / 最多 {1} 条。',
    priority: '优先级 {0}', away: '距离 {0}', left: '剩余 {0} 可回复', expired: '已超时',
    accept: '接受', decline: '拒绝', facility: '携带：{0}，距事发点 {1}', go_to: '前往',
    updates: '事件进展', taken_by_you: '您已接受此事件',
    step_arrived: '我已到达', step_handed_over: '已交接', handed_over_done: '已交接，谢谢您！',
    reason_taken: '事件 {0} 已由其他志愿者接受。', reason_case_closed: '事件 {0} 已关闭或撤回。',
    reason_expired: '事件 {0} 的邀请已超时。', reason_declined: '您已拒绝事件 {0}。',
    history: '我的记录与时长', history_sum: '已接受 {0} 件，{1} 小时', no_history: '暂无邀请。',
    refused: '被拒绝：{0}', retry_in: '更新过于频繁，{0} 秒后重试。',
    status_offered: '待回复', status_accepted: '已接受', status_declined: '已拒绝', status_expired: '已超时',
    status_withdrawn: '已撤回',
    cat_cardiac_arrest: '心脏骤停', cat_fire: '火灾', cat_medical: '急救', cat_fall: '跌倒',
    skill_cpr: '心肺复苏', skill_first_aid: '急救', skill_elderly_care: '助老', skill_cleanup: '清洁',
    event_accepted: '部门签收', event_progress: '处理中', event_resolved: '已办结', event_closed: '已关闭',
    event_cancelled: '已取消', event_volunteer_accepted: '志愿者接受', event_escalated: '已升级',
    event_volunteer_arrived: '志愿者到达', event_volunteer_handed_over: '志愿者已交接',
    kind_aed: 'AED 除颤仪', kind_fire_station: '消防站',
  },
};

/** The page's language: the one chosen here before, else the browser's (Chinese or English). */
export const lang = {
  current: localStorage.getItem('linkbus_volunteer_lang') || (navigator.language.startsWith('zh') ? 'zh-CN' : 'en'),
  toggle() {
    this.current = this.current === 'en' ? 'zh-CN' : 'en';
    localStorage.setItem('linkbus_volunteer_lang', this.current);
  },
};

/** The string `key` in the page's language with `{n}` replaced by `args[n]`. */
export const t = (key, ...args) =>
  (I18N[lang.current][key] ?? I18N.en[key] ?? key).replace(/\{(\d)\}/g, (_, n) => args[n] ?? '');

/** A token the server sends (`prefix` + `value`), translated where the language has it, else made
 * readable (`cardiac_arrest` → `cardiac arrest`). */
export const token = (prefix, value) => I18N[lang.current][prefix + value] ?? String(value).replaceAll('_', ' ');

/** Metres as "850 m" or "1.2 km". */
export const metres = (m) => (m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(1)} km`);

/** A span of `ms` as M:SS. */
export function span(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** An ISO time as HH:MM in the page's language. */
export const clock = (iso) =>
  new Intl.DateTimeFormat(lang.current, { hour: '2-digit', minute: '2-digit', hour12: false }).format(new Date(iso));

/** Fills every `data-i18n` element's text, the page's language and its title. */
export function translatePage() {
  document.documentElement.lang = lang.current;
  document.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.title = t('brand');
  document.getElementById('lang').textContent = lang.current === 'en' ? '中文' : 'English';
}
