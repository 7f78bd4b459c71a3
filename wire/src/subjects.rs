//! Subject names: one function per kind of subject, so that no other code formats them.
//!
//! ```text
//! ingest.<system>.<category>          case reports from source systems
//! routed.dept.<department>.<category>[.<community>]
//!                                     routed cases, per department; the responsible department's
//!                                     copy names the community, and is that community's copy too
//! routed.community.<community>        cases broadcast to a community
//! volunteer.<id>.offer                offers to one volunteer
//! volunteer.<id>.offer_closed         that offer is closed (taken, expired, case closed)
//! volunteer.<id>.answer               the volunteer's answer (request/reply)
//! action.<department>                 a department's action on a case (request/reply)
//! adapter.grid.report                 a grid-management report (request/reply), see linkbus-adapters
//! case.<case_id>.<event>              case timeline (routed, …)
//! deadletter.<stage>                  rejected input, original bytes + reason headers
//! ```

use crate::SourceSystem;

/// Every ingest subject.
pub const INGEST_ALL: &str = "ingest.>";
/// Every routed subject.
pub const ROUTED_ALL: &str = "routed.>";
/// Every volunteer offer.
pub const OFFERS: &str = "volunteer.*.offer";
/// Every notice that an offer closed.
pub const OFFERS_CLOSED: &str = "volunteer.*.offer_closed";
/// Every case timeline event.
pub const CASES_ALL: &str = "case.>";
/// Every dead letter.
pub const DEADLETTER_ALL: &str = "deadletter.>";
/// Every source-system adapter's NATS subject (the service listens on all of them).
pub const ADAPTER_ALL: &str = "adapter.>";
/// Grid-management reports, one JSON report a message (the grid adapter answers requests).
pub const GRID_REPORT: &str = "adapter.grid.report";
/// CAP 1.2 alerts, raw XML (the CAP adapter's default subject).
pub const CAP_ALERTS: &str = "adapter.cap";
/// CAD incident messages, JSON (the CAD adapter's default subject).
pub const CAD_INCIDENTS: &str = "adapter.cad";

/// `ingest.<system>.<category>`
pub fn ingest(system: SourceSystem, category: &str) -> String {
    format!("ingest.{system}.{category}")
}

/// Splits `ingest.<system>.<category>` into its tokens, if it has that shape.
pub fn parse_ingest(subject: &str) -> Option<(&str, &str)> {
    let mut parts = subject.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ingest"), Some(system), Some(category), None) => Some((system, category)),
        _ => None,
    }
}

/// `routed.dept.<department>.<category>`
pub fn routed_department(department: &str, category: &str) -> String {
    format!("routed.dept.{department}.{category}")
}

/// `routed.dept.<department>.<category>.<community>`: a routed case for its responsible
/// department that is also the copy of the community it happened in (one stored message serves
/// both). A department's `routed.dept.<department>.>` takes it; a community's filters are
/// [`routed_community_filters`].
pub fn routed_department_in(department: &str, category: &str, community: &str) -> String {
    format!("routed.dept.{department}.{category}.{community}")
}

/// `routed.community.<community>`: a case broadcast to a community other than its own.
pub fn routed_community(community: &str) -> String {
    format!("routed.community.{community}")
}

/// Every routed case for a community: its responsible department's copies of the cases in it,
/// and the cases broadcast to it (two filter subjects of one consumer, nats-server 2.10+).
pub fn routed_community_filters(community: &str) -> [String; 2] {
    [format!("routed.dept.*.*.{community}"), routed_community(community)]
}

/// What a consumer of routed cases filtering `filters` misses under the layout of
/// [`routed_department_in`] (the community's copy is the department's), as advice for its
/// owner; none when it misses nothing. Filters written for the earlier layout do: a department's
/// four tokens (`routed.dept.<department>.*`, `routed.dept.<department>.<category>`) no longer
/// take its copies that name a community, and `routed.community.<community>` alone takes only
/// broadcasts.
pub fn missed_by_routed_filters(filters: &[String]) -> Vec<String> {
    let mut advice = Vec::new();
    for filter in filters {
        match filter.split('.').collect::<Vec<_>>()[..] {
            ["routed", "dept", department, last] if department != ">" && last != ">" => advice.push(format!(
                "`{filter}` misses the copies that also name the case's community: add `{filter}.*`{}",
                if last == "*" { format!(" (or filter `routed.dept.{department}.>`)") } else { String::new() }
            )),
            ["routed", "community", community] => {
                let [departments, _] = routed_community_filters(community);
                if !filters.contains(&departments) {
                    advice.push(format!(
                        "`{filter}` takes only cases broadcast to {community} from elsewhere: add `{departments}`"
                    ));
                }
            }
            _ => {}
        }
    }
    advice
}

/// `volunteer.<id>.offer`
pub fn volunteer_offer(volunteer: &str) -> String {
    format!("volunteer.{volunteer}.offer")
}

/// `volunteer.<id>.offer_closed`
pub fn volunteer_offer_closed(volunteer: &str) -> String {
    format!("volunteer.{volunteer}.offer_closed")
}

/// `volunteer.<id>.answer`: a volunteer's answer, as a request.
pub fn volunteer_answer(volunteer: &str) -> String {
    format!("volunteer.{volunteer}.answer")
}

/// `replay.action`: a replayed or simulated action ([`crate::ReplayRequest`]), as a request;
/// only the service's own user may send it (`linkbus replay --outcomes real`, the simulated feed).
pub const REPLAY_ACTION: &str = "replay.action";

/// `action.<department>`: a department's action on a case, as a request.
pub fn action(department: &str) -> String {
    format!("action.{department}")
}

/// `case.<case_id>.<event>`
pub fn case_event(case_id: &str, event: &str) -> String {
    format!("case.{case_id}.{event}")
}

/// `deadletter.<stage>`
pub fn deadletter(stage: &str) -> String {
    format!("deadletter.{stage}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_round_trips() {
        let s = ingest(SourceSystem::PublicService, "sewer_issues");
        assert_eq!(s, "ingest.public_service.sewer_issues");
        assert_eq!(parse_ingest(&s), Some(("public_service", "sewer_issues")));
        assert_eq!(parse_ingest("ingest.a.b.c"), None);
        assert_eq!(parse_ingest("routed.a.b"), None);
    }

    /// The layout docs/wire.md documents: the department's copy that names the community is the
    /// community's, by the first filter; a broadcast by the second; an assignment (four tokens)
    /// by neither (the filters' matching itself is nats-server's, in tests/it/routing.rs).
    #[test]
    fn the_community_reads_its_departments_copy_and_its_broadcasts() {
        let copy = routed_department_in("puc-sewer-ops", "sewer_issues", "mission");
        assert_eq!(copy, "routed.dept.puc-sewer-ops.sewer_issues.mission");
        assert!(copy.starts_with(&routed_department("puc-sewer-ops", "sewer_issues")));
        assert_eq!(routed_community_filters("mission"), ["routed.dept.*.*.mission", "routed.community.mission"]);
        assert_eq!(routed_community("mission"), "routed.community.mission");
    }

    /// The table at the top of this module and in docs/wire.md, which other people's clients
    /// subscribe by.
    #[test]
    fn every_subject_has_its_documented_shape() {
        assert_eq!(volunteer_offer("v1"), "volunteer.v1.offer");
        assert_eq!(volunteer_offer_closed("v1"), "volunteer.v1.offer_closed");
        assert_eq!(volunteer_answer("v1"), "volunteer.v1.answer");
        assert_eq!(action("puc-sewer-ops"), "action.puc-sewer-ops");
        assert_eq!(case_event("sf311-1", "routed"), "case.sf311-1.routed");
        assert_eq!(deadletter("ingest"), "deadletter.ingest");
    }

    #[test]
    fn filters_of_the_earlier_layout_are_told_what_they_miss() {
        let advice =
            |filters: &[&str]| missed_by_routed_filters(&filters.iter().map(|f| f.to_string()).collect::<Vec<_>>());
        let whole = advice(&["routed.dept.puc-sewer-ops.*"]);
        assert_eq!(whole.len(), 1);
        assert!(whole[0].contains("add `routed.dept.puc-sewer-ops.*.*`"), "{whole:?}");
        assert!(whole[0].contains("(or filter `routed.dept.puc-sewer-ops.>`)"), "{whole:?}");
        let one = advice(&["routed.dept.puc-sewer-ops.sewer_issues"]);
        assert_eq!(one.len(), 1);
        assert!(
            one[0].contains("add `routed.dept.puc-sewer-ops.sewer_issues.*`") && !one[0].contains("(or"),
            "{one:?}"
        );
        let community = advice(&["routed.community.mission"]);
        assert_eq!(community.len(), 1);
        assert!(community[0].contains("add `routed.dept.*.*.mission`"), "{community:?}");
        let every = advice(&["routed.community.*"]);
        assert!(every.len() == 1 && every[0].contains("add `routed.dept.*.*.*`"), "{every:?}");
        // Nothing to say of the filters this layout means, or of other subjects.
        for fine in [
            &["routed.dept.puc-sewer-ops.>"][..],
            &["routed.dept.>"],
            &["routed.>"],
            &["routed.dept.*.>"],
            &["routed.dept.puc-sewer-ops.sewer_issues.*"],
            &["routed.dept.*.*.mission", "routed.community.mission"],
            &["routed.dept.*.*.*", "routed.community.*"],
            &["case.*.routed"],
        ] {
            assert_eq!(advice(fine), Vec::<String>::new(), "{fine:?}");
        }
    }
}
