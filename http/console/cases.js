// What the console knows of a live case summary (the `reset` and `case` events): the states and
// systems it filters by, which cases match the filters, and the board's order. Pure functions of
// the summaries, shared by the board and the map.

/** The case states, in the order of the state filter. */
export const STATES = ['reported', 'routed', 'accepted', 'rejected', 'in_progress', 'resolved', 'closed', 'cancelled'];
/** The source systems, in the order of the system filter. */
export const SYSTEMS = ['emergency', 'commercial', 'public_service', 'management'];
/** The states in which a case needs nothing more: faded on the map, last on the board. */
const DONE = new Set(['resolved', 'closed', 'cancelled']);

/** Whether the case is resolved, closed or cancelled. */
export function isDone(c) { return DONE.has(c.state); }

/** Whether case `c` passes the filters `f` (each '' for any: state, priority, system, community,
 * department; `inStreet`, when set, the ids of the communities of the chosen 街道). */
export function matches(c, f) {
  return (!f.state || c.state === f.state) && (!f.priority || String(c.priority) === f.priority) &&
    (!f.system || c.systems.includes(f.system)) && (!f.community || c.community === f.community) &&
    (!f.inStreet || f.inStreet.has(c.community)) &&
    (!f.department || c.departments.includes(f.department) || c.accepted_by === f.department);
}

/** Whether no department has accepted case `c` yet (reported, routed or rejected). */
export function isUnaccepted(c) { return c.state === 'routed' || c.state === 'rejected' || c.state === 'reported'; }

/** The board's group of a case: 0 escalated, 1 not accepted by anyone, 2 being handled, 3 done. */
export function rank(c) {
  if (c.escalation_open) return 0;
  if (isUnaccepted(c)) return 1;
  return DONE.has(c.state) ? 3 : 2;
}

/** The board's order: by group, then the deadline that runs (none last), then priority, then the
 * newest first. */
export function compare(a, b) {
  const ra = rank(a), rb = rank(b);
  if (ra !== rb) return ra - rb;
  const da = a.deadline ? Date.parse(a.deadline) : Infinity, db = b.deadline ? Date.parse(b.deadline) : Infinity;
  if (da !== db) return da - db;
  if (a.priority !== b.priority) return a.priority - b.priority;
  return a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0;
}
