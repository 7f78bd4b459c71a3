// The console's shared state, declared once: every module that reads or writes it imports
// `state`, and none adds a field. What one module alone uses stays in that module, declared at its
// top (the event stream's bookkeeping in events.js, the Leaflet objects in map.js).

/** What applying updates cost, as the tests read it (`window.linkbusConsole.stats`). */
const stats = {
  /** How long the last `reset` took to apply (board and map), in ms. */
  lastResetMs: 0,
  /** How many cases the last `reset` held. */
  lastResetCount: 0,
  /** How long the last `reset`'s JSON was, characters (uncompressed). */
  lastResetChars: 0,
  /** How long the last batch of `case` events took to apply, in ms. */
  lastBatchMs: 0,
  /** How many `case` events that batch held. */
  lastBatchCount: 0,
  /** How many times the board's visible rows were written. */
  renders: 0,
};

export const state = {
  /** The page's language, 'en' or 'zh-CN': the one chosen before (localStorage), else the browser's. */
  lang: localStorage.getItem('linkbus.lang') || (navigator.language.startsWith('zh') ? 'zh-CN' : 'en'),
  /** The signed-in session, `{role, id, csrf, expires_at}` from /console/session; null when signed out. */
  session: null,
  /** The region from /console/region (name, time zone, bounds, departments, categories,
   * communities, tile settings); null until the first sign-in, then kept. */
  region: null,
  /** Every live case summary by id: the last `reset`, then each `case` event since. */
  cases: new Map(),
  /** The cases that pass the filters, in the board's order; rebuilt by the board. */
  order: [],
  /** The id of the case opened (highlighted on the board), or null. */
  selected: null,
  /** The opened case as GET /api/cases/{id} answers it, or null. */
  detail: null,
  /** The server's clock minus this browser's in ms, from the last `reset`: deadlines count down on
   * the server's time. */
  skew: 0,
  /** The event stream as the header shows it: 'connecting', 'on' or 'retry'. */
  live: 'connecting',
  /** The board must be ordered again at the next frame (cases, filters or language changed). */
  dirty: false,
  /** When each case first reached this page (Date.now(), ms), for the tests' latency measure. */
  arrived: new Map(),
  /** What applying updates cost; the same object for the page's life, read by the tests. */
  stats,
};

/** Now on the server's clock, in ms since the epoch. */
export const serverNow = () => Date.now() + state.skew;
