//! The full routing decision for one case: community, department(s), volunteers, and the
//! explanation as reasons (rendered in English for the decision's sentences). Pure and
//! synchronous: the same inputs give the same decision.

use foldhash::HashMap;

use linkbus_geo_data::{Category, Community, Department, Geocodes, Region};
use linkbus_wire::explain::{self, CatchAllCause, Lang, Named, Place, Reason, Trigger};
use linkbus_wire::{
    Area, CaseReport, CommunityMatch, CommunityOutcome, CommunityRef, Decision, DepartmentChoice, DepartmentRule,
    Location, VolunteerChoice, VolunteerSearch,
};

use crate::areas;
use crate::communities::{CommunityIndex, Located};
use crate::departments::{Chosen, DepartmentRules};
use crate::facilities::FacilityIndex;
use crate::volunteers::{self, OfferLedger, Skip, VolunteerIndex};

/// Tunables of the matching: the `[routing]` section of the service's configuration.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingParams {
    /// A point outside every community but within this many metres of one goes to the nearest.
    pub border_tolerance_m: f64,
    /// How many volunteers to offer a case to.
    pub volunteers_k: usize,
    /// How far to look for volunteers, metres.
    pub volunteer_radius_m: f64,
    /// A volunteer offered this many cases in the last hour is offered no more (alert fatigue).
    pub max_offers_per_hour: usize,
    /// Rules that raise a case's priority: the vulnerable first.
    pub priority_rules: Vec<PriorityRule>,
    /// A point inside one community but within this many metres of another's border is flagged
    /// ambiguous (`near_border`), both candidates and distances explained; 0 turns it off.
    pub ambiguous_border_m: f64,
    /// Near a border, also notify the departments of the other community.
    pub notify_both_near_border: bool,
}

/// Raises the priority of cases of some categories or with some flags.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityRule {
    /// Name, quoted in the explanation.
    pub name: String,
    /// Applies to cases of any of these categories…
    #[serde(default)]
    pub categories: Vec<String>,
    /// …or carrying any of these flags.
    #[serde(default)]
    pub flags: Vec<String>,
    /// The priority such a case gets at least (1 = life-threatening).
    pub priority: u8,
}

impl PriorityRule {
    fn fires(&self, case: &CaseReport) -> Option<Trigger> {
        if self.categories.contains(&case.category) {
            return Some(Trigger::Category(case.category.clone()));
        }
        let flag = case.flags.iter().find(|f| self.flags.contains(f))?;
        Some(Trigger::Flag(flag.clone()))
    }
}

/// The rules `linkbus` applies unless configured otherwise.
pub fn default_priority_rules() -> Vec<PriorityRule> {
    let rule = |name: &str, categories: &[&str], flags: &[&str], priority| PriorityRule {
        name: name.into(),
        categories: categories.iter().map(|c| c.to_string()).collect(),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        priority,
    };
    vec![
        rule("life-threatening", &["cardiac_arrest"], &["persons_trapped", "life_threatening"], 1),
        rule("vulnerable-people", &[], &["elderly_alone", "disabled", "minor"], 2),
    ]
}

impl Default for RoutingParams {
    fn default() -> Self {
        Self {
            border_tolerance_m: 100.0,
            volunteers_k: 5,
            volunteer_radius_m: 3_000.0,
            max_offers_per_hour: 6,
            priority_rules: default_priority_rules(),
            ambiguous_border_m: 0.0,
            notify_both_near_border: false,
        }
    }
}

/// Everything static that routing needs: the region's indexes and the parameters.
#[derive(Debug, Clone)]
pub struct Router {
    communities: CommunityIndex,
    departments: DepartmentRules,
    facilities: FacilityIndex,
    categories: HashMap<String, Category>,
    geo_version: String,
    geocodes: Geocodes,
    params: RoutingParams,
}

impl Router {
    /// Builds the indexes of a loaded region.
    pub fn new(region: &Region, params: RoutingParams) -> Self {
        Self {
            communities: CommunityIndex::new(region.communities.clone(), params.border_tolerance_m),
            departments: DepartmentRules::new(region.departments.clone(), &region.manifest.region_area),
            facilities: FacilityIndex::new(region.facilities.clone()),
            categories: region.categories.iter().map(|c| (c.id.clone(), c.clone())).collect(),
            geo_version: format!("{}@{}", region.manifest.id, region.manifest.version),
            geocodes: region.geocodes.clone(),
            params,
        }
    }

    /// The community index.
    pub fn communities(&self) -> &CommunityIndex {
        &self.communities
    }

    /// The region data version decisions record, `<region>@<version>`.
    pub fn geo_version(&self) -> &str {
        &self.geo_version
    }

    /// The parameters in force.
    pub fn params(&self) -> &RoutingParams {
        &self.params
    }

    /// The departments of the region.
    pub fn departments(&self) -> &DepartmentRules {
        &self.departments
    }

    /// The skills the region's categories call for (a skill once per category that names it):
    /// the only skills a volunteer search can ask for.
    pub fn volunteer_skills(&self) -> impl Iterator<Item = &str> {
        self.categories.values().filter_map(|c| c.volunteer_skill.as_deref())
    }

    /// Routes one (validated) case; `offers` and `now` (unix seconds) apply the hourly cap.
    pub fn decide(&self, case: &CaseReport, volunteers: &VolunteerIndex, offers: &OfferLedger, now: i64) -> Decision {
        let (lon, lat) = (case.location.lon, case.location.lat);
        let at = Location { lon, lat };
        let mut reasons = Vec::with_capacity(4);
        let priority = self.priority(case, &mut reasons);

        let located = self.communities.locate(lon, lat);
        let all = self.communities.communities();
        let near = match &located {
            Located::Inside(c) => self.communities.near(lon, lat, self.params.ambiguous_border_m, *c),
            _ => vec![],
        };
        let (community, community_match) = match &located {
            Located::Inside(c) if !near.is_empty() => {
                reasons.push(Reason::NearBorder {
                    at,
                    community: place(&all[*c]),
                    within_m: self.params.ambiguous_border_m,
                    near: near.iter().map(|(o, d)| (place(&all[*o]), *d)).collect(),
                });
                let ids = std::iter::once(*c).chain(near.iter().map(|n| n.0)).map(|i| all[i].id.clone()).collect();
                (Some(&all[*c]), matched(CommunityOutcome::NearBorder, &all[*c], Some(near[0].1), ids))
            }
            Located::Inside(c) => {
                reasons.push(Reason::Inside { at, community: place(&all[*c]) });
                (Some(&all[*c]), matched(CommunityOutcome::Inside, &all[*c], None, vec![]))
            }
            Located::OnBorder(cs) => {
                let ids: Vec<String> = cs.iter().map(|c| all[*c].id.clone()).collect();
                reasons.push(Reason::OnBorder { at, communities: ids.clone(), chosen: place(&all[cs[0]]) });
                (Some(&all[cs[0]]), matched(CommunityOutcome::OnBorder, &all[cs[0]], None, ids))
            }
            Located::Nearest(hits) => {
                let (c, d) = hits[0];
                let ids = if hits.len() > 1 { hits.iter().map(|(c, _)| all[*c].id.clone()).collect() } else { vec![] };
                reasons.push(Reason::Nearest {
                    at,
                    community: place(&all[c]),
                    distance_m: d,
                    tolerance_m: self.communities.tolerance_m(),
                });
                (Some(&all[c]), matched(CommunityOutcome::Nearest, &all[c], Some(d), ids))
            }
            Located::Unmatched => {
                reasons.push(Reason::Unmatched { at, tolerance_m: self.communities.tolerance_m() });
                let none = CommunityMatch {
                    outcome: CommunityOutcome::Unmatched,
                    community: None,
                    distance_m: None,
                    candidates: vec![],
                };
                (None, none)
            }
        };

        let category = self.categories.get(&case.category);
        let (mut departments, fallbacks) = self.departments_for(case, category, community, &mut reasons);
        if self.params.notify_both_near_border {
            for (other, d) in &near {
                self.notify_near_border(case, &all[*other], *d, &mut departments, &mut reasons);
            }
        }
        let broadcast = match &case.area {
            Some(area) => self.broadcast(case, area, &mut departments, &mut reasons),
            None => vec![],
        };

        // A broadcast concerns a whole area: nobody to send to its centre.
        let skill = category.and_then(|c| c.volunteer_skill.as_deref()).filter(|_| case.area.is_none());
        let (volunteers, volunteer_search) = match skill {
            Some(skill) => {
                let (chosen, search) = self.volunteers_for(case, skill, volunteers, offers, now, &[]);
                reasons.push(Reason::Volunteers {
                    skill: skill.to_owned(),
                    offered: chosen.len(),
                    nearest_m: chosen.first().map(|v| v.distance_m),
                    radius_m: search.radius_m,
                    skipped_unavailable: search.skipped_unavailable,
                    skipped_skill: search.skipped_skill,
                    skipped_capped: search.skipped_capped,
                    radius_exhausted: !chosen.is_empty() && chosen.len() < search.k && search.reached_radius,
                });
                (chosen, search)
            }
            None => {
                reasons.push(if case.area.is_some() {
                    Reason::NoVolunteersForBroadcast
                } else {
                    Reason::NoVolunteersForCategory { category: case.category.clone() }
                });
                (vec![], volunteers::unsearched(None, self.params.volunteers_k, self.params.volunteer_radius_m))
            }
        };
        let facility =
            category.and_then(|c| c.facility_kind.as_deref()).and_then(|kind| self.facilities.nearest(kind, lon, lat));

        Decision {
            geo_version: self.geo_version.clone(),
            priority,
            community: community_match,
            broadcast,
            departments,
            fallbacks,
            volunteers,
            volunteer_search,
            facility,
            explanation: reasons.iter().map(|r| r.render(Lang::En, &explain::Ids)).collect(),
            reasons,
        }
    }

    /// The volunteers to offer a case to, passing over those at their hourly cap and those in
    /// `already` (offered before: the cascade after a decline or no answer).
    pub fn volunteers_for(
        &self,
        case: &CaseReport,
        skill: &str,
        volunteers: &VolunteerIndex,
        offers: &OfferLedger,
        now: i64,
        already: &[&str],
    ) -> (Vec<VolunteerChoice>, VolunteerSearch) {
        let cap = self.params.max_offers_per_hour;
        let k = self.params.volunteers_k.saturating_sub(already.len()).max(usize::from(!already.is_empty()));
        volunteers.nearest_except(
            case.location.lon,
            case.location.lat,
            skill,
            k,
            self.params.volunteer_radius_m,
            |id| {
                if already.contains(&id) {
                    Some(Skip::AlreadyOffered)
                } else if offers.in_last_hour(id, now) >= cap {
                    Some(Skip::Capped)
                } else {
                    None
                }
            },
        )
    }

    /// Adds the departments the rules choose in `other` (a community the point is `distance_m`
    /// from) to `departments`, when the option to notify both sides of a border is on.
    fn notify_near_border(
        &self,
        case: &CaseReport,
        other: &Community,
        distance_m: f64,
        departments: &mut Vec<DepartmentChoice>,
        reasons: &mut Vec<Reason>,
    ) {
        let Some(chosen) = self.departments.ladder(&case.category, Some(other)).next() else {
            return;
        };
        let all = self.departments.departments();
        let added: Vec<Named> =
            Self::add_by_rule(all, chosen, departments).into_iter().map(|d| named(&all[d])).collect();
        if !added.is_empty() {
            reasons.push(Reason::AlsoNotified { departments: added, distance_m, community: place(other) });
        }
    }

    /// Adds the departments a rule chose (none for the catch-all) that are not in `departments`
    /// yet; returns the ones added (indexes into `all`, the rules' departments).
    fn add_by_rule(all: &[Department], chosen: Chosen<'_>, departments: &mut Vec<DepartmentChoice>) -> Vec<usize> {
        let Chosen::ByRule { level, area, departments: found } = chosen else {
            return vec![];
        };
        let mut added = Vec::new();
        for &d in found {
            if departments.iter().any(|c| c.id == all[d].id) {
                continue;
            }
            added.push(d);
            departments.push(DepartmentChoice {
                id: all[d].id.clone(),
                name: all[d].name.clone(),
                rule: DepartmentRule::Jurisdiction { level, area: area.to_owned() },
            });
        }
        added
    }

    /// The communities a broadcast's area touches; the departments with a duty for the category
    /// in each are added to `departments` (the catch-all for none).
    fn broadcast(
        &self,
        case: &CaseReport,
        area: &Area,
        departments: &mut Vec<DepartmentChoice>,
        reasons: &mut Vec<Reason>,
    ) -> Vec<CommunityRef> {
        let all = self.communities.communities();
        let mut touched = areas::communities_touching(&self.communities, area);
        let (named, unknown) = areas::communities_named(all, &self.geocodes, &area.geocodes);
        touched.extend(named);
        touched.sort_by(|a, b| all[*a].id.cmp(&all[*b].id));
        touched.dedup();
        let rules = self.departments.departments();
        let mut added = Vec::new();
        for c in &touched {
            let chosen = self.departments.choose(&case.category, Some(&all[*c]));
            added.extend(Self::add_by_rule(rules, chosen, departments).into_iter().map(|d| rules[d].id.clone()));
        }
        let communities = touched.iter().map(|c| all[*c].id.clone()).collect();
        reasons.push(Reason::Broadcast { communities, also: added });
        if !unknown.is_empty() {
            reasons.push(Reason::UnknownGeocodes { geocodes: unknown.iter().map(ToString::to_string).collect() });
        }
        touched.iter().map(|c| community_ref(&all[*c])).collect()
    }

    fn priority(&self, case: &CaseReport, reasons: &mut Vec<Reason>) -> u8 {
        let mut priority = case.priority;
        for rule in &self.params.priority_rules {
            if rule.priority < priority
                && let Some(trigger) = rule.fires(case)
            {
                reasons.push(Reason::PriorityRaised {
                    from: priority,
                    to: rule.priority,
                    rule: rule.name.clone(),
                    trigger,
                });
                priority = rule.priority;
            }
        }
        priority
    }

    fn departments_for(
        &self,
        case: &CaseReport,
        category: Option<&Category>,
        community: Option<&Community>,
        reasons: &mut Vec<Reason>,
    ) -> (Vec<DepartmentChoice>, Vec<DepartmentChoice>) {
        let all = self.departments.departments();
        let choice = |d: usize, rule: DepartmentRule| DepartmentChoice {
            id: all[d].id.clone(),
            name: all[d].name.clone(),
            rule,
        };
        let mut levels = self.departments.ladder(&case.category, community);
        let catch_all = self.departments.catch_all();
        let chosen = match levels.next() {
            Some(Chosen::ByRule { level, area, departments }) => {
                reasons.push(Reason::Jurisdiction {
                    departments: departments.iter().map(|d| named(&all[*d])).collect(),
                    category: case.category.clone(),
                    level,
                    area: area.to_owned(),
                });
                departments
                    .iter()
                    .map(|d| choice(*d, DepartmentRule::Jurisdiction { level, area: area.to_owned() }))
                    .collect()
            }
            _ => {
                let cause = if category.is_none() {
                    CatchAllCause::UnknownCategory
                } else if community.is_none() {
                    CatchAllCause::NoCommunity
                } else {
                    CatchAllCause::NoDepartment
                };
                reasons.push(Reason::CatchAll {
                    department: named(&all[catch_all]),
                    cause,
                    category: case.category.clone(),
                });
                let reason = explain::catch_all_cause(cause, &case.category);
                vec![choice(catch_all, DepartmentRule::CatchAll { reason })]
            }
        };
        let mut fallbacks: Vec<DepartmentChoice> = Vec::new();
        for next in levels {
            if let Chosen::ByRule { level, area, departments } = next {
                for d in departments {
                    let taken = chosen.iter().chain(&fallbacks).any(|c: &DepartmentChoice| c.id == all[*d].id);
                    if !taken {
                        fallbacks.push(choice(*d, DepartmentRule::Jurisdiction { level, area: area.to_owned() }));
                    }
                }
            }
        }
        if !chosen.iter().chain(&fallbacks).any(|c| c.id == all[catch_all].id) {
            let reason = "the last resort when every other candidate rejects the case".to_owned();
            fallbacks.push(choice(catch_all, DepartmentRule::CatchAll { reason }));
        }
        (chosen, fallbacks)
    }
}

/// A community as the explanation names it.
fn place(c: &Community) -> Place {
    Place {
        id: c.id.clone(),
        name: c.name.clone(),
        sub_district: c.sub_district.as_ref().map(|s| s.name.clone()),
        district: c.district.name.clone(),
    }
}

/// A department as the explanation names it.
fn named(d: &Department) -> Named {
    Named { id: d.id.clone(), name: d.name.clone() }
}

fn matched(
    outcome: CommunityOutcome,
    c: &Community,
    distance_m: Option<f64>,
    candidates: Vec<String>,
) -> CommunityMatch {
    CommunityMatch { outcome, community: Some(community_ref(c)), distance_m, candidates }
}

fn community_ref(c: &Community) -> CommunityRef {
    CommunityRef {
        id: c.id.clone(),
        name: c.name.clone(),
        sub_district: c.sub_district.as_ref().map(|s| s.code.clone()),
        district: c.district.code.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use linkbus_wire::{Location, SourceSystem};

    fn case(category: &str, flags: &[&str]) -> CaseReport {
        CaseReport {
            system: SourceSystem::PublicService,
            category: category.into(),
            priority: 3,
            location: Location { lon: -122.4194, lat: 37.7599 },
            address: None,
            reporter: None,
            description: None,
            source_id: "x".into(),
            reported_at: Timestamp::UNIX_EPOCH,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            datum: linkbus_wire::Datum::Wgs84,
            received_location: None,
            area: None,
            media_url: None,
        }
    }

    #[test]
    fn a_point_near_a_border_is_ambiguous_and_can_notify_both_sides() {
        use geo::{Closest, HaversineClosestPoint, Point};
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../geo-data/san-francisco");
        let region = linkbus_geo_data::Region::load(dir).expect("the SF region loads");
        let params = RoutingParams { ambiguous_border_m: 50.0, ..RoutingParams::default() };
        let router = Router::new(&region, params.clone());
        let idx = router.communities();
        let mission = idx.communities().iter().position(|c| c.id == "mission").expect("mission");
        // From a point inside the Mission, walk towards the nearest other neighborhood and stop
        // 20 m short of its boundary.
        let (lon, lat) = (-122.4194, 37.7599);
        let (other, d) = idx.near(lon, lat, 10_000.0, mission)[0];
        let Closest::SinglePoint(q) = idx.communities()[other].boundary.haversine_closest_point(&Point::new(lon, lat))
        else {
            panic!("no closest point");
        };
        let t = 1.0 - 20.0 / d;
        let mut near_border = case("fire", &[]);
        near_border.location = Location { lon: lon + t * (q.x() - lon), lat: lat + t * (q.y() - lat) };
        assert_eq!(idx.locate(near_border.location.lon, near_border.location.lat), Located::Inside(mission));

        let decide = |router: &Router| router.decide(&near_border, &VolunteerIndex::new(), &OfferLedger::new(), 0);
        let d1 = decide(&router);
        assert_eq!(d1.community.outcome, CommunityOutcome::NearBorder);
        let other_id = idx.communities()[other].id.clone();
        assert_eq!(d1.community.candidates[..2], ["mission".to_owned(), other_id.clone()]);
        assert!((d1.community.distance_m.expect("distance") - 20.0).abs() < 1.0, "{:?}", d1.community);
        assert!(
            d1.explanation.iter().any(|e| e.contains("ambiguous") && e.contains(&other_id)),
            "{:?}",
            d1.explanation
        );

        let both = Router::new(&region, RoutingParams { notify_both_near_border: true, ..params });
        let d2 = decide(&both);
        let other_side: Vec<String> = both
            .departments
            .ladder("fire", Some(&idx.communities()[other]))
            .next()
            .map(|c| match c {
                Chosen::ByRule { departments, .. } => {
                    departments.iter().map(|d| both.departments.departments()[*d].id.clone()).collect()
                }
                _ => vec![],
            })
            .unwrap_or_default();
        assert!(!other_side.is_empty());
        for id in d1.departments.iter().map(|d| &d.id).chain(&other_side) {
            assert!(d2.departments.iter().any(|d| &d.id == id), "{id} not notified: {:?}", d2.departments);
        }
        assert!(d2.departments.len() > d1.departments.len(), "the other side's station is added");

        let off = Router::new(&region, RoutingParams::default());
        assert_eq!(decide(&off).community.outcome, CommunityOutcome::Inside);
    }

    #[test]
    fn priority_rules_raise_never_lower_and_say_why() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../geo-data/san-francisco");
        let region = linkbus_geo_data::Region::load(dir).expect("the SF region loads");
        let router = Router::new(&region, RoutingParams::default());
        let decide = |c: &CaseReport| router.decide(c, &VolunteerIndex::new(), &OfferLedger::new(), 0);
        assert_eq!(decide(&case("sewer_issues", &[])).priority, 3);
        let d = decide(&case("elderly_assistance", &["elderly_alone"]));
        assert_eq!(d.priority, 2);
        assert_eq!(d.explanation[0], "Priority raised from 3 to 2 by rule vulnerable-people: flag elderly_alone.");
        assert_eq!(decide(&case("fire", &["persons_trapped", "minor"])).priority, 1);
        assert_eq!(decide(&case("cardiac_arrest", &[])).priority, 1);
        let mut urgent = case("sewer_issues", &["minor"]);
        urgent.priority = 1;
        let d = decide(&urgent);
        assert_eq!(d.priority, 1, "a rule never lowers a priority");
        assert!(!d.explanation[0].starts_with("Priority"));
    }
}
