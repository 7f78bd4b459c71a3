//! The figures on hand-built cases, moved through the lifecycle, against each figure's formula
//! (`docs/supervision.md`) worked out by hand.

use jiff::Timestamp;
use jiff::civil::date;
use jiff::tz::TimeZone;
use linkbus_wire::{
    Action, Actor, ActorKind, CaseRecord, CaseReport, CommunityMatch, CommunityOutcome, CommunityRef, Datum, Decision,
    Location, RoutedCase, SourceSystem, VolunteerSearch,
};

use super::mark::keep;
use super::*;
use crate::lifecycle::tests::choice;
use crate::lifecycle::{self, Ladder, Policy};

/// 2026-03-10T00:00:00Z, 08:00 in Shanghai.
fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_773_100_800 + s).expect("valid time")
}

/// A case routed at `at` (priority 2: accept within 300 s) to `station` in community `c`.
fn case(id: &str, community: &str, at: Timestamp) -> CaseRecord {
    let report = CaseReport {
        system: SourceSystem::PublicService,
        category: "noise".into(),
        priority: 2,
        location: Location { lon: 116.4, lat: 39.9 },
        address: None,
        reporter: None,
        description: None,
        source_id: id.into(),
        reported_at: at,
        flags: vec![],
        datum: Datum::Wgs84,
        received_location: None,
        area: None,
        media_url: None,
    };
    let community = CommunityRef {
        id: community.into(),
        name: community.into(),
        sub_district: Some(format!("s-{}", &community[..1])),
        district: "d".into(),
    };
    let decision = Decision {
        geo_version: "test@1".into(),
        priority: 2,
        community: CommunityMatch {
            outcome: CommunityOutcome::Inside,
            community: Some(community.clone()),
            distance_m: None,
            candidates: vec![],
        },
        broadcast: vec![],
        departments: vec![choice("station")],
        fallbacks: vec![choice("works")],
        volunteers: vec![],
        volunteer_search: VolunteerSearch {
            skill: None,
            k: 0,
            radius_m: 0.0,
            examined: 0,
            skipped_unavailable: 0,
            skipped_skill: 0,
            skipped_capped: 0,
            reached_radius: false,
        },
        facility: None,
        explanation: vec![],
        reasons: vec![],
    };
    let routed = RoutedCase { case_id: id.into(), source: "/test".into(), case: report, decision, routed_at: at };
    let mut r = lifecycle::open(&routed, at, &Policy::default());
    r.community = Some(community);
    r
}

fn ladder() -> Ladder {
    Ladder::new(
        [("station", Some("works")), ("works", None)].map(|(d, p)| (d.to_string(), p.map(str::to_string))),
        "works",
    )
}

fn actor(kind: ActorKind, id: &str) -> Actor {
    Actor { kind, id: id.into() }
}

/// `r` after `by` did `action` at `at`.
fn act(r: CaseRecord, by: &str, action: Action, at: Timestamp) -> CaseRecord {
    let kind = if by == "resident" { ActorKind::Resident } else { ActorKind::Department };
    lifecycle::act(&r, &actor(kind, by), &action, at, &Policy::default(), &ladder()).expect("allowed").record
}

fn accept(r: CaseRecord, by: &str, at: Timestamp) -> CaseRecord {
    act(r, by, Action::Accept {}, at)
}

fn resolve(r: CaseRecord, by: &str, at: Timestamp) -> CaseRecord {
    act(r, by, Action::Resolve { note: "fixed".into() }, at)
}

fn rate(r: CaseRecord, score: u8, solved: bool, at: Timestamp) -> CaseRecord {
    act(r, "resident", Action::Rate { score, solved, comment: None }, at)
}

/// Four cases received on 2026-03-10 in community `c1`:
/// - a: accepted after 60 s, resolved 3,600 s later, rated 5 solved;
/// - b: rejected by station, accepted by works after 120 s (in time: the rejection gave works a
///   new deadline), resolved 7,200 s later, rated 3 solved;
/// - c: escalated at 300 s to works (missed station's deadline), accepted by works at 400 s,
///   resolved 12,345 s later, rated 2 not solved (reopened: works must resolve again by +4 h);
/// - d: never accepted: its deadline, 300 s, passes.
fn hand_built() -> Vec<CaseRecord> {
    let a = case("a", "c1", t(0));
    let a = rate(resolve(accept(a, "station", t(60)), "station", t(3_660)), 5, true, t(4_000));
    let b = case("b", "c1", t(10));
    let b = act(b, "station", Action::Reject { reason: "not ours".into() }, t(20));
    let b = rate(resolve(accept(b, "works", t(130)), "works", t(7_330)), 3, true, t(8_000));
    let c = case("c", "c1", t(20));
    let c = lifecycle::tick(&c, t(320), &Policy::default(), &ladder(), |_| Vec::new()).expect("escalates").record;
    let c = rate(resolve(accept(c, "works", t(420)), "works", t(12_765)), 2, false, t(13_000));
    let d = case("d", "c1", t(30));
    vec![a, b, c, d]
}

fn figures_of(records: &[CaseRecord], tz: TimeZone) -> Figures {
    let mut f = Figures::new(tz);
    for m in records.iter().filter_map(Mark::of) {
        f.apply(&m, true);
    }
    f
}

fn one(f: &Figures, group: Group, key: &str, period: Period, now: Timestamp) -> Row {
    let day = date(2026, 3, 10);
    let rows = f.rows(&StatsQuery { group, period, from: period.start(day), to: day, now, only: Some(key.into()) });
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.into_iter().next().expect("one row")
}

#[test]
fn every_figure_equals_its_formula() {
    let f = figures_of(&hand_built(), TimeZone::get("Asia/Shanghai").expect("bundled"));
    let now = t(13_000);
    let row = one(&f, Group::Community, "c1", Period::Day, now);
    assert_eq!((row.key.as_str(), row.period.as_str()), ("c1", "2026-03-10"));
    assert_eq!(row.received, 4);
    // Response: a and b in time, c escalated first, d never: 2 of 4.
    assert_eq!((row.due, row.responded, row.response_rate), (4, 2, Some(0.5)));
    // Rated a, b, c; solved a, b; satisfied (≥ 4) a.
    assert_eq!((row.rated, row.solved, row.resolution_rate), (3, 2, Some(2.0 / 3.0)));
    assert_eq!((row.satisfied, row.satisfaction_rate), (1, Some(1.0 / 3.0)));
    // Assignments: a station; b station, works; c station, works; d station. One rejection.
    assert_eq!((row.assignments, row.returns, row.return_rate), (6, 1, Some(1.0 / 6.0)));
    // Resolved a, b, c; c reopened.
    assert_eq!((row.resolved, row.reopened, row.reopen_rate), (3, 1, Some(1.0 / 3.0)));
    // Open: c (resolve by 13,000 + 4 h) and d (accept by 330, past); a, b resolved (no deadline).
    assert_eq!(row.overdue, 1);
    assert_eq!(one(&f, Group::Community, "c1", Period::Day, t(13_000 + 4 * 3_600)).overdue, 2);
    // Routed → accepted: 60, 120, 400 s; accepted → resolved: 3,600, 7,200, 12,345 (kept as 12,300).
    assert_eq!((row.to_accept_median_s, row.to_accept_p90_s), (Some(120), Some(400)));
    assert_eq!((row.to_resolve_median_s, row.to_resolve_p90_s), (Some(7_200), Some(12_300)));
    // The same cases by week and month, district, sub-district, category and system.
    for (group, key) in [
        (Group::District, "d"),
        (Group::SubDistrict, "s-c"),
        (Group::Category, "noise"),
        (Group::System, "public_service"),
    ] {
        for period in [Period::Day, Period::Week, Period::Month] {
            let other = one(&f, group, key, period, now);
            assert_eq!((other.received, other.responded, other.solved, other.returns), (4, 2, 2, 1), "{group:?}");
        }
    }
    assert_eq!(one(&f, Group::Community, "c1", Period::Week, now).period, "2026-03-09");
    assert_eq!(one(&f, Group::Community, "c1", Period::Month, now).period, "2026-03-01");
}

#[test]
fn departments_answer_for_what_they_accepted_and_for_their_returns() {
    let f = figures_of(&hand_built(), TimeZone::UTC);
    let now = t(13_000);
    let station = one(&f, Group::Department, "station", Period::Day, now);
    // Given all four; rejected b; accepted a; responsible (none accepted) for d.
    assert_eq!((station.received, station.assignments, station.returns), (4, 4, 1));
    assert_eq!((station.due, station.responded, station.rated, station.resolved), (2, 1, 1, 1));
    let works = one(&f, Group::Department, "works", Period::Day, now);
    assert_eq!((works.received, works.assignments, works.returns), (2, 2, 0));
    assert_eq!((works.due, works.responded, works.rated, works.solved, works.reopened), (2, 1, 2, 1, 1));
}

#[test]
fn a_record_that_changes_moves_its_figures_exactly() {
    let tz = TimeZone::get("Asia/Shanghai").expect("bundled");
    let before = case("x", "c1", t(0));
    let after = rate(resolve(accept(before.clone(), "station", t(60)), "station", t(100)), 4, true, t(200));
    let mut moved = figures_of(std::slice::from_ref(&before), tz.clone());
    moved.apply(&Mark::of(&before).expect("mark"), false);
    moved.apply(&Mark::of(&after).expect("mark"), true);
    let fresh = figures_of(std::slice::from_ref(&after), tz.clone());
    for group in Group::ALL {
        for period in [Period::Day, Period::Week, Period::Month] {
            let day = date(2026, 3, 10);
            let q = StatsQuery { group, period, from: period.start(day), to: day, now: t(300), only: None };
            assert_eq!(moved.rows(&q), fresh.rows(&q));
        }
    }
    // In one step, within the same keys (accepted, resolved, rated) and across keys (another
    // department takes it after a rejection).
    let rejected = act(before.clone(), "station", Action::Reject { reason: "not ours".into() }, t(30));
    let taken = accept(rejected, "works", t(90));
    for after in [after, taken] {
        let (old, new) = (Mark::of(&before).expect("mark"), Mark::of(&after).expect("mark"));
        let mut moved = figures_of(std::slice::from_ref(&before), tz.clone());
        moved.replace(Some(&old), Some(&new));
        let fresh = figures_of(std::slice::from_ref(&after), tz.clone());
        let day = date(2026, 3, 10);
        for group in Group::ALL {
            let q = StatsQuery {
                group,
                period: Period::Month,
                from: day.first_of_month(),
                to: day,
                now: t(300),
                only: None,
            };
            assert_eq!(moved.rows(&q), fresh.rows(&q), "{group:?}");
        }
    }
    // Taking the last mark away leaves nothing.
    let mut empty = figures_of(std::slice::from_ref(&before), TimeZone::UTC);
    empty.apply(&Mark::of(&before).expect("mark"), false);
    assert!(empty.cells.is_empty(), "{:?}", empty.cells);
}

#[test]
fn days_are_the_regions_and_merged_reports_do_not_count() {
    // 2026-03-09T20:00Z is the 10th in Shanghai, the 9th in UTC.
    let late = case("late", "c1", t(-4 * 3_600));
    let mut merged = case("m", "c1", t(0));
    merged.merged_into = Some("late".into());
    assert!(Mark::of(&merged).is_none());
    let day = |tz: TimeZone| {
        figures_of(&[late.clone(), merged.clone()], tz).rows(&StatsQuery {
            group: Group::Community,
            period: Period::Day,
            from: date(2026, 3, 1),
            to: date(2026, 3, 31),
            now: t(0),
            only: None,
        })
    };
    let shanghai = day(TimeZone::get("Asia/Shanghai").expect("bundled"));
    assert_eq!(shanghai.iter().map(|r| (r.period.as_str(), r.received)).collect::<Vec<_>>(), [("2026-03-10", 1)]);
    let utc = day(TimeZone::UTC);
    assert_eq!(utc.iter().map(|r| (r.period.as_str(), r.received)).collect::<Vec<_>>(), [("2026-03-09", 1)]);
}

#[test]
fn rankings_put_the_best_first_with_the_month_before() {
    let mut records = hand_built();
    // c2 in another sub-district: one case, accepted in time this month; last month, one late.
    let good = accept(case("g", "e2", t(0)), "station", t(10));
    let old = case("o", "e2", t(-20 * 86_400));
    let old = lifecycle::tick(&old, t(-20 * 86_400 + 400), &Policy::default(), &ladder(), |_| Vec::new())
        .expect("escalates")
        .record;
    let old_good = accept(case("og", "e2", t(-20 * 86_400)), "station", t(-20 * 86_400 + 10));
    records.extend([good, old, old_good]);
    let f = figures_of(&records, TimeZone::UTC);
    let response = f.ranking(&RankingQuery {
        group: Group::SubDistrict,
        rate: Rate::ResponseRate,
        month: date(2026, 3, 1),
        now: t(0),
    });
    let order: Vec<_> = response.iter().map(|r| (r.row.key.as_str(), r.rank, r.value, r.previous)).collect();
    assert_eq!(order, [("s-e", Some(1), Some(1.0), Some(0.5)), ("s-c", Some(2), Some(0.5), None)]);
    assert_eq!((response[0].change, response[1].change), (Some(0.5), None));
    // Fewer returns is better: s-e has none.
    let returns = f.ranking(&RankingQuery {
        group: Group::SubDistrict,
        rate: Rate::ReturnRate,
        month: date(2026, 3, 1),
        now: t(0),
    });
    assert_eq!(returns.iter().map(|r| r.row.key.as_str()).collect::<Vec<_>>(), ["s-e", "s-c"]);
    // Nothing rated in s-e: unranked, last.
    let satisfaction = f.ranking(&RankingQuery {
        group: Group::SubDistrict,
        rate: Rate::SatisfactionRate,
        month: date(2026, 3, 1),
        now: t(0),
    });
    assert_eq!(
        satisfaction.iter().map(|r| (r.row.key.as_str(), r.rank)).collect::<Vec<_>>(),
        [("s-c", Some(1)), ("s-e", None)]
    );
}

#[test]
fn times_keep_three_significant_digits() {
    assert_eq!([0, 999, 1_000, 12_345, 99_999, -5].map(|s| keep(t(0), t(s))), [0, 999, 1_000, 12_300, 99_900, 0]);
    assert_eq!(keep(Timestamp::MIN, Timestamp::MAX), 4_290_000_000);
}

#[test]
fn names_parse_back() {
    for g in Group::ALL {
        assert_eq!(Group::parse(g.as_str()), Some(g));
    }
    for r in Rate::ALL {
        assert_eq!(Rate::parse(r.as_str()), Some(r));
    }
    for p in [Period::Day, Period::Week, Period::Month] {
        assert_eq!(Period::parse(p.as_str()), Some(p));
    }
    assert_eq!((Group::parse("street"), Rate::parse("rate"), Period::parse("year")), (None, None, None));
}

#[test]
fn a_case_escalated_after_its_acceptance_was_still_responded_to_in_time() {
    let r = accept(case("late", "c1", t(0)), "station", t(60));
    // Not resolved within 4 h: escalated, after the acceptance.
    let r = lifecycle::tick(&r, t(60 + 4 * 3_600), &Policy::default(), &ladder(), |_| Vec::new())
        .expect("escalates")
        .record;
    let f = figures_of(&[r], TimeZone::UTC);
    let row = one(&f, Group::Community, "c1", Period::Day, t(5 * 3_600));
    assert_eq!((row.due, row.responded), (1, 1));
}

#[test]
fn replacing_a_mark_whose_day_or_keys_moved_moves_the_figures() {
    let before = case("x", "c1", t(0));
    let mut later = accept(before.clone(), "station", t(60));
    later.created_at = t(2 * 86_400);
    let mut elsewhere = accept(before.clone(), "station", t(60));
    elsewhere.community.as_mut().expect("a community").id = "c2".into();
    for after in [later, elsewhere] {
        let (old, new) = (Mark::of(&before).expect("mark"), Mark::of(&after).expect("mark"));
        let mut moved = figures_of(std::slice::from_ref(&before), TimeZone::UTC);
        moved.replace(Some(&old), Some(&new));
        let fresh = figures_of(std::slice::from_ref(&after), TimeZone::UTC);
        for group in Group::ALL {
            let q = StatsQuery {
                group,
                period: Period::Day,
                from: date(2026, 3, 1),
                to: date(2026, 3, 31),
                now: t(300),
                only: None,
            };
            assert_eq!(moved.rows(&q), fresh.rows(&q), "{group:?}");
        }
    }
}

/// A case of `category` in community `c1` (sub-district `s-c`) received `months` months before
/// March 2026 (0: March), on the 10th.
fn in_month(id: &str, category: &str, months: i64) -> CaseRecord {
    let mut r = case(id, "c1", t(0) - jiff::SignedDuration::from_hours(24 * 31 * months));
    r.case.category = category.into();
    r
}

#[test]
fn a_places_rising_category_against_its_own_months_and_none_once_taken_away() {
    // Four noise cases a month from September to February in s-c; March: twelve.
    let mut records: Vec<CaseRecord> =
        (1..=6).flat_map(|m| (0..4).map(move |i| in_month(&format!("n{m}-{i}"), "noise", m))).collect();
    records.extend((0..12).map(|i| in_month(&format!("now-{i}"), "noise", 0)));
    records.extend((0..3).map(|i| in_month(&format!("trash-{i}"), "trash", 0)));
    let mut f = figures_of(&records, TimeZone::get("Asia/Shanghai").expect("bundled"));
    let end_of_march = Timestamp::from_second(1_775_000_000).expect("April 2026");
    let q = |place: Option<(Group, &str)>| RisingQuery {
        place: place.map(|(g, k)| (g, k.to_owned())),
        month: date(2026, 3, 1),
        now: end_of_march,
    };
    for place in [Some((Group::SubDistrict, "s-c")), Some((Group::Community, "c1")), None] {
        let found = f.rising(&q(place));
        let names: Vec<(&str, u64, f64)> = found.iter().map(|r| (r.category.as_str(), r.count, r.baseline)).collect();
        // trash: 3 cases against none before is rising too (expected half a case over 6 months).
        assert_eq!(names, [("trash", 3, 0.0), ("noise", 12, 4.0)], "{place:?}");
        assert_eq!(found[1].confidence, Confidence::Likely);
    }
    assert!(f.rising(&q(Some((Group::SubDistrict, "s-x")))).is_empty());
    // On the 10th of March, a third of the month gone: the same twelve against a third of four.
    let tenth = f.rising(&RisingQuery { now: t(0), ..q(Some((Group::Community, "c1"))) });
    let noise = tenth.iter().find(|r| r.category == "noise").expect("noise rising");
    assert!((noise.expected - 24.5 / 6.0 * (9.0 + 8.0 / 24.0) / 31.0).abs() < 1e-9, "{tenth:?}");
    // The records taken away again: nothing left to count.
    for r in &records {
        f.replace(Mark::of(r).as_ref(), None);
    }
    assert!(f.categories.is_empty());
}
