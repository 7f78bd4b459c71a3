// The shapes the server sends, made whole before any view reads them. The wire types leave out
// what is empty or absent (`skip_serializing_if = "Vec::is_empty"` / `"Option::is_none"` in
// wire/src/lib.rs and wire/src/lifecycle.rs): a case held by the catch-all has no `fallbacks`, a
// case that is not a broadcast no `broadcast`, an unmatched one no `community`, a case without
// offers no `offers`. Here every list is present (empty when absent) and every optional object is
// present (null when absent), so a view never reads a property of `undefined`.

/** `v` if it is a list, else an empty one. */
const list = (v) => (Array.isArray(v) ? v : []);

/** The routing decision `d` (`Decision`) with every list and optional object present. */
function decision(d) {
  d = d || {};
  const community = d.community || {};
  const search = d.volunteer_search || {};
  return {
    ...d,
    community: { outcome: 'unmatched', ...community, community: community.community || null, candidates: list(community.candidates) },
    broadcast: list(d.broadcast),
    departments: list(d.departments),
    fallbacks: list(d.fallbacks),
    volunteers: list(d.volunteers),
    volunteer_search: { skill: null, examined: 0, skipped_unavailable: 0, skipped_skill: 0, skipped_capped: 0, radius_m: 0, ...search },
    facility: d.facility || null,
    explanation: list(d.explanation),
    reasons: list(d.reasons),
  };
}

/** A case record `r` as GET /api/cases/{id} and POST …/actions answer it (`CaseRecord`), with
 * every list and optional object present. */
export function caseRecord(r) {
  const report = r.case || {};
  return {
    ...r,
    case: { ...report, flags: list(report.flags), location: report.location || { lon: 0, lat: 0 } },
    reports: list(r.reports),
    decision: decision(r.decision),
    community: r.community || null,
    departments: list(r.departments),
    candidates: list(r.candidates),
    rejected_by: list(r.rejected_by),
    offers: list(r.offers),
    ratings: list(r.ratings),
    timeline: list(r.timeline).map((e) => ({ ...e, actor: e.actor || { kind: 'system', id: '' } })),
  };
}

/** A case summary `c` of the event stream (`CaseSummary`, http/src/console/board.rs) with every
 * list present. */
export function caseSummary(c) {
  return { ...c, departments: list(c.departments), systems: list(c.systems), source_ids: list(c.source_ids) };
}
