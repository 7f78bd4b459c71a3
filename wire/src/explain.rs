//! A routing decision's explanation and linkbus's own timeline notes as data, and their
//! sentences in each reader's language.
//!
//! The router records what it did as [`Reason`]s (a `code` and its parameters) on
//! [`crate::Decision::reasons`], the case book what it did on a timeline entry as a
//! [`SystemNote`] ([`crate::TimelineEntry::system_note`]); `render` turns either into a sentence
//! in English or Chinese, naming categories, departments and areas through a [`Names`] lookup
//! where the reader has one (the HTTP API has the region's names; without one, ids are shown).
//! The English sentences without names are also kept, as [`crate::Decision::explanation`] and
//! the entry's `note`, the fields readers of earlier versions know.

use std::fmt::{self, Write as _};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{JurisdictionLevel, Location, SourceSystem};

/// A language the explanations are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Lang {
    /// English.
    #[serde(rename = "en")]
    En,
    /// Simplified Chinese.
    #[serde(rename = "zh-CN")]
    ZhCn,
}

impl Lang {
    /// The BCP 47 tag, as `Content-Language` gives it.
    pub fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::ZhCn => "zh-CN",
        }
    }
}

/// Names of a region's things in one language, for sentences; `None` shows the id.
pub trait Names {
    /// A category's name.
    fn category(&self, id: &str) -> Option<&str>;
    /// A department's name.
    fn department(&self, id: &str) -> Option<&str>;
    /// A district's, sub-district's or community's name, by its code or id.
    fn area(&self, code: &str) -> Option<&str>;
}

/// No names: every thing is shown by its id (or the name the decision carries).
pub struct Ids;

impl Names for Ids {
    fn category(&self, _: &str) -> Option<&str> {
        None
    }
    fn department(&self, _: &str) -> Option<&str> {
        None
    }
    fn area(&self, _: &str) -> Option<&str> {
        None
    }
}

/// A community as an explanation names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Place {
    /// Community id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its sub-district's (街道) name, where the region has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_district: Option<String>,
    /// Its district's name.
    pub district: String,
}

/// A department as an explanation names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Named {
    /// Department id.
    pub id: String,
    /// Its name in the region's data.
    pub name: String,
}

/// What raised a case's priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The case's category.
    Category(String),
    /// One of the case's flags.
    Flag(String),
}

/// Why the catch-all took a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchAllCause {
    /// The category is not in the region's vocabulary.
    UnknownCategory,
    /// The location matched no community.
    NoCommunity,
    /// No department handles the category there.
    NoDepartment,
}

/// One line of a decision's explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// A priority rule raised the case's priority.
    PriorityRaised {
        /// The priority before.
        from: u8,
        /// The priority after.
        to: u8,
        /// The rule's name.
        rule: String,
        /// What made it fire.
        trigger: Trigger,
    },
    /// The point is inside one community, away from its borders.
    Inside {
        /// The case's location.
        at: Location,
        /// The community.
        community: Place,
    },
    /// The point is inside a community but near the border of others.
    NearBorder {
        /// The case's location.
        at: Location,
        /// The community containing it (chosen).
        community: Place,
        /// The distance under which a border counts as near, metres.
        within_m: f64,
        /// The other communities near, with their distances in metres, nearest first.
        near: Vec<(Place, f64)>,
    },
    /// The point lies on the boundary between communities; the first by id was chosen.
    OnBorder {
        /// The case's location.
        at: Location,
        /// The communities sharing the boundary, by id.
        communities: Vec<String>,
        /// The one chosen.
        chosen: Place,
    },
    /// The point is outside every community but within the tolerance of the nearest.
    Nearest {
        /// The case's location.
        at: Location,
        /// The nearest community (chosen).
        community: Place,
        /// Its distance, metres.
        distance_m: f64,
        /// The tolerance, metres.
        tolerance_m: f64,
    },
    /// The point is farther than the tolerance from every community.
    Unmatched {
        /// The case's location.
        at: Location,
        /// The tolerance, metres.
        tolerance_m: f64,
    },
    /// Departments chosen by the most specific jurisdiction with a rule for the category.
    Jurisdiction {
        /// The departments.
        departments: Vec<Named>,
        /// The category.
        category: String,
        /// The jurisdiction's level.
        level: JurisdictionLevel,
        /// The jurisdiction's code (the region's id at the region level).
        area: String,
    },
    /// No rule applied; the catch-all took the case.
    CatchAll {
        /// The catch-all department.
        department: Named,
        /// Why no rule applied.
        cause: CatchAllCause,
        /// The case's category.
        category: String,
    },
    /// Departments of a community near the border were told too.
    AlsoNotified {
        /// The departments added.
        departments: Vec<Named>,
        /// The case's distance from that community, metres.
        distance_m: f64,
        /// The community.
        community: Place,
    },
    /// A broadcast over an area: the communities it touches and the departments added for them.
    Broadcast {
        /// The communities touched, by id.
        communities: Vec<String>,
        /// The departments added beyond the first community's, by id.
        also: Vec<String>,
    },
    /// A broadcast's geocodes that the region's geocode table does not know: they reach no
    /// community (`valueName value` each).
    UnknownGeocodes {
        /// The geocodes, as `valueName value`.
        geocodes: Vec<String>,
    },
    /// The volunteer search and its offers.
    Volunteers {
        /// The skill searched for.
        skill: String,
        /// How many were offered the case.
        offered: usize,
        /// The nearest one's distance, metres, when any was offered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nearest_m: Option<f64>,
        /// The search radius, metres.
        radius_m: f64,
        /// Passed over as unavailable.
        skipped_unavailable: usize,
        /// Passed over for lack of the skill.
        skipped_skill: usize,
        /// Passed over as alerted too often this hour.
        skipped_capped: usize,
        /// Fewer than wanted were found and the search stopped at the radius.
        radius_exhausted: bool,
    },
    /// A broadcast is offered to no volunteer.
    NoVolunteersForBroadcast,
    /// The category calls for no volunteers.
    NoVolunteersForCategory {
        /// The category.
        category: String,
    },
}

impl Reason {
    /// The sentence for this reason in `lang`, naming things through `names`.
    pub fn render(&self, lang: Lang, names: &dyn Names) -> String {
        let mut out = String::with_capacity(128);
        let _ = match lang {
            Lang::En => self.english(&mut out, names),
            Lang::ZhCn => self.chinese(&mut out, names),
        };
        out
    }

    fn english(&self, out: &mut String, names: &dyn Names) -> fmt::Result {
        let category = |id: &str| names.category(id).map_or_else(|| id.to_owned(), str::to_owned);
        match self {
            Self::PriorityRaised { from, to, rule, trigger } => {
                let why = match trigger {
                    Trigger::Category(c) => format!("category {}", category(c)),
                    Trigger::Flag(f) => format!("flag {f}"),
                };
                write!(out, "Priority raised from {from} to {to} by rule {rule}: {why}.")
            }
            Self::Inside { at, community } => {
                write!(out, "{} is inside community {}.", Point(at), EnPlace(community, names))
            }
            Self::NearBorder { at, community, within_m, near } => {
                write!(
                    out,
                    "{} is inside community {} but within {within_m:.0} m of the border of ",
                    Point(at),
                    EnPlace(community, names)
                )?;
                for (n, (place, d)) in near.iter().enumerate() {
                    let and = if n == 0 { "" } else { " and " };
                    write!(out, "{and}{} ({d:.0} m away)", EnPlace(place, names))?;
                }
                out.write_str(": ambiguous; chose the one containing it.")
            }
            Self::OnBorder { at, communities, chosen } => {
                write!(out, "{} lies on the boundary of ", Point(at))?;
                write_list(out, communities, ", ", |out, id| out.write_str(names.area(id).unwrap_or(id)))?;
                write!(out, "; chose {} (first by id).", EnPlace(chosen, names))
            }
            Self::Nearest { at, community, distance_m, tolerance_m } => write!(
                out,
                "{} is outside every community; the nearest, {}, is {distance_m:.0} m away, within the {tolerance_m:.0} m tolerance.",
                Point(at),
                EnPlace(community, names)
            ),
            Self::Unmatched { at, tolerance_m } => write!(
                out,
                "{} is outside every community and more than {tolerance_m:.0} m from any: unmatched.",
                Point(at)
            ),
            Self::Jurisdiction { departments, category: c, level, area } => {
                write_list(out, departments, " and ", |out, d| {
                    write!(out, "{} ({})", names.department(&d.id).unwrap_or(&d.name), d.id)
                })?;
                let level = match level {
                    JurisdictionLevel::Community => "community",
                    JurisdictionLevel::SubDistrict => "sub-district",
                    JurisdictionLevel::District => "district",
                    JurisdictionLevel::Region => "region",
                };
                let area = names.area(area).map_or_else(|| area.clone(), |name| format!("{name} ({area})"));
                write!(
                    out,
                    " handle{} {} in {level} {area}, the most specific jurisdiction with a rule.",
                    if departments.len() == 1 { "s" } else { "" },
                    category(c)
                )
            }
            Self::CatchAll { department, cause, category: c } => {
                write!(
                    out,
                    "Sent to the catch-all {} ({}): ",
                    names.department(&department.id).unwrap_or(&department.name),
                    department.id
                )?;
                out.push_str(&catch_all_cause(*cause, &category(c)));
                out.write_char('.')
            }
            Self::AlsoNotified { departments, distance_m, community } => {
                out.write_str("Also notified ")?;
                write_list(out, departments, " and ", |out, d| {
                    write!(out, "{} ({})", names.department(&d.id).unwrap_or(&d.name), d.id)
                })?;
                write!(
                    out,
                    ": the case is {distance_m:.0} m from {} and the rule is to notify both sides of a border.",
                    EnPlace(community, names)
                )
            }
            Self::Broadcast { communities, also } => {
                if communities.is_empty() {
                    return out.write_str("Broadcast: the alert's area touches no community of the region.");
                }
                write!(
                    out,
                    "Broadcast: the alert's area touches {} communit{} (",
                    communities.len(),
                    if communities.len() == 1 { "y" } else { "ies" },
                )?;
                write_list(out, communities, ", ", |out, id| out.write_str(names.area(id).unwrap_or(id)))?;
                out.write_char(')')?;
                if !also.is_empty() {
                    out.write_str("; also sent to ")?;
                    write_list(out, also, ", ", |out, id| out.write_str(names.department(id).unwrap_or(id)))?;
                }
                out.write_char('.')
            }
            Self::Volunteers {
                skill,
                offered,
                nearest_m,
                radius_m,
                skipped_unavailable,
                skipped_skill,
                skipped_capped,
                radius_exhausted,
            } => {
                match nearest_m {
                    Some(nearest) if *offered > 0 => write!(
                        out,
                        "Offered to {offered} volunteer{} with skill {skill} within {radius_m:.0} m (nearest {nearest:.0} m); ",
                        if *offered == 1 { "" } else { "s" },
                    )?,
                    _ => write!(out, "No available volunteer with skill {skill} within {radius_m:.0} m; ")?,
                }
                write!(out, "passed over {skipped_unavailable} unavailable, {skipped_skill} without the skill")?;
                if *skipped_capped > 0 {
                    write!(out, ", {skipped_capped} alerted too often this hour")?;
                }
                if *radius_exhausted {
                    out.write_str("; no more within the radius")?;
                }
                out.write_char('.')
            }
            Self::UnknownGeocodes { geocodes } => {
                out.write_str("Geocodes not in the region's geocode table, so reaching no community: ")?;
                write_list(out, geocodes, ", ", |out, g| out.write_str(g))?;
                out.write_char('.')
            }
            Self::NoVolunteersForBroadcast => out.write_str("A broadcast over an area: no volunteer offers."),
            Self::NoVolunteersForCategory { category: c } => {
                write!(out, "Category {} calls for no volunteers.", category(c))
            }
        }
    }

    fn chinese(&self, out: &mut String, names: &dyn Names) -> fmt::Result {
        let category = |id: &str| names.category(id).map_or_else(|| id.to_owned(), |n| format!("“{n}”"));
        let department = |d: &Named| names.department(&d.id).unwrap_or(&d.name).to_owned();
        match self {
            // The rule's name is configuration, often English: the trigger says enough.
            Self::PriorityRaised { from, to, trigger, .. } => {
                let why = match trigger {
                    Trigger::Category(c) => format!("类别 {}", category(c)),
                    Trigger::Flag(f) => format!("标记 {}", flag_zh(f)),
                };
                write!(out, "优先级由 {from} 级提升为 {to} 级：{why}。")
            }
            Self::Inside { at, community } => {
                write!(out, "{} 位于{}内。", Point(at), ZhPlace(community, names))
            }
            Self::NearBorder { at, community, within_m, near } => {
                write!(out, "{} 位于{}内，但距", Point(at), ZhPlace(community, names))?;
                write_list(out, near, "、", |out, (place, d)| write!(out, "{}边界 {d:.0} 米", ZhPlace(place, names)))?;
                write!(out, "（不足 {within_m:.0} 米）：归属存疑，选择包含该点的社区。")
            }
            Self::OnBorder { at, communities, chosen } => {
                write!(out, "{} 位于社区 ", Point(at))?;
                write_list(out, communities, "、", |out, id| out.write_str(names.area(id).unwrap_or(id)))?;
                write!(out, " 的分界线上；按编号选择第一个：{}。", ZhPlace(chosen, names))
            }
            Self::Nearest { at, community, distance_m, tolerance_m } => write!(
                out,
                "{} 不在任何社区内；最近的{}相距 {distance_m:.0} 米，在 {tolerance_m:.0} 米容差之内。",
                Point(at),
                ZhPlace(community, names)
            ),
            Self::Unmatched { at, tolerance_m } => {
                write!(out, "{} 不在任何社区内，且距所有社区均超过 {tolerance_m:.0} 米：未匹配。", Point(at))
            }
            Self::Jurisdiction { departments, category: c, level, area } => {
                write_list(out, departments, "、", |out, d| out.write_str(&department(d)))?;
                let level = match level {
                    JurisdictionLevel::Community => "社区",
                    JurisdictionLevel::SubDistrict => "街道",
                    JurisdictionLevel::District => "区",
                    JurisdictionLevel::Region => "全域",
                };
                let area = names.area(area).map_or_else(|| format!("{level} {area}"), str::to_owned);
                write!(out, "负责{area}的{}案件，这是有规则的最具体辖区。", category(c))
            }
            Self::CatchAll { department: d, cause, category: c } => {
                let why = match cause {
                    CatchAllCause::UnknownCategory => format!("类别 {} 不在本区域的类别表中", category(c)),
                    CatchAllCause::NoCommunity => "位置未匹配到任何社区".to_owned(),
                    CatchAllCause::NoDepartment => format!("该处没有部门负责{}", category(c)),
                };
                write!(out, "转至兜底部门{}：{why}。", department(d))
            }
            Self::AlsoNotified { departments, distance_m, community } => {
                out.write_str("同时通知")?;
                write_list(out, departments, "、", |out, d| out.write_str(&department(d)))?;
                write!(out, "：案件距{} {distance_m:.0} 米，规则要求通知边界两侧。", ZhPlace(community, names))
            }
            Self::Broadcast { communities, also } => {
                if communities.is_empty() {
                    return out.write_str("广播：警报区域未涉及本区域任何社区。");
                }
                write!(out, "广播：警报区域涉及 {} 个社区（", communities.len())?;
                write_list(out, communities, "、", |out, id| out.write_str(names.area(id).unwrap_or(id)))?;
                out.write_char('）')?;
                if !also.is_empty() {
                    out.write_str("；另发送至")?;
                    write_list(out, also, "、", |out, id| out.write_str(names.department(id).unwrap_or(id)))?;
                }
                out.write_char('。')
            }
            Self::Volunteers {
                skill,
                offered,
                nearest_m,
                radius_m,
                skipped_unavailable,
                skipped_skill,
                skipped_capped,
                radius_exhausted,
            } => {
                let skill = skill_zh(skill);
                match nearest_m {
                    Some(nearest) if *offered > 0 => write!(
                        out,
                        "已推送给 {radius_m:.0} 米内具备{skill}技能的 {offered} 名志愿者（最近 {nearest:.0} 米）；"
                    )?,
                    _ => write!(out, "{radius_m:.0} 米内没有具备{skill}技能的可用志愿者；")?,
                }
                write!(out, "跳过 {skipped_unavailable} 名不可用、{skipped_skill} 名不具备该技能")?;
                if *skipped_capped > 0 {
                    write!(out, "、{skipped_capped} 名本小时提醒过多")?;
                }
                if *radius_exhausted {
                    out.write_str("；半径内没有更多志愿者")?;
                }
                out.write_char('。')
            }
            Self::UnknownGeocodes { geocodes } => {
                out.write_str("本区域地理编码表中没有以下编码，未据此广播：")?;
                write_list(out, geocodes, "、", |out, g| out.write_str(g))?;
                out.write_char('。')
            }
            Self::NoVolunteersForBroadcast => out.write_str("按区域广播：不推送志愿者。"),
            Self::NoVolunteersForCategory { category: c } => write!(out, "类别 {} 不需要志愿者。", category(c)),
        }
    }
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overdue {
    /// The case was not accepted in time.
    NotAccepted,
    /// The case was not resolved in time.
    NotResolved,
}

/// What linkbus itself wrote on a timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum SystemNote {
    /// The case was routed to departments (by id) and offered to volunteers.
    Routed {
        /// The departments, by id.
        departments: Vec<String>,
        /// How many volunteers were offered it.
        offered: usize,
    },
    /// A deadline passed: the case went up the ladder, or reached its top.
    Escalated {
        /// Which deadline.
        overdue: Overdue,
        /// The department it went to (the entry's department); none at the top of the ladder,
        /// where dispatchers must act.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// This report was merged into another case.
    SameIncident {
        /// That case's id.
        primary: String,
    },
    /// Another report was merged into this case.
    ReportMerged {
        /// The report's id.
        report: String,
        /// The kind of system that sent it.
        system: SourceSystem,
        /// The source system's own id.
        source_id: String,
    },
    /// A merged report was split off this case.
    OwnCaseAgain {
        /// The report's id.
        report: String,
    },
    /// This report was split out of the case it had been merged into.
    SplitOutOf {
        /// That case's id.
        primary: String,
    },
    /// A volunteer's distance from the case.
    Away {
        /// Metres.
        distance_m: f64,
    },
    /// Every candidate department rejected the case: the dispatchers must act.
    AllRejected,
    /// A dispatcher called the reporter back (回访).
    FollowUp {
        /// Whether the reporter was reached.
        reached: bool,
        /// What the dispatcher wrote of the call.
        said: String,
    },
    /// The resident's rating.
    Rated {
        /// 1–5.
        score: u8,
        /// Whether the resident says it was solved.
        solved: bool,
    },
}

impl SystemNote {
    /// The note in `lang`, naming departments through `names`.
    pub fn render(&self, lang: Lang, names: &dyn Names) -> String {
        let department = |id: &str| names.department(id).unwrap_or(id).to_owned();
        let zh = lang == Lang::ZhCn;
        match self {
            Self::Routed { departments, offered } => {
                let (and, to) = if zh { ("、", "派至") } else { (", ", "to ") };
                let mut out =
                    format!("{to}{}", departments.iter().map(|d| department(d)).collect::<Vec<_>>().join(and));
                if *offered > 0 {
                    out.push_str(&if zh {
                        format!("；已邀请 {offered} 名志愿者")
                    } else {
                        format!("; offered to {offered} volunteers")
                    });
                }
                out
            }
            Self::Escalated { overdue, to } => {
                let why = match (overdue, zh) {
                    (Overdue::NotAccepted, false) => "not accepted in time",
                    (Overdue::NotResolved, false) => "not resolved in time",
                    (Overdue::NotAccepted, true) => "未按时签收",
                    (Overdue::NotResolved, true) => "未按时办结",
                };
                match (to, zh) {
                    (Some(d), false) => format!("{why}; escalated to {}", department(d)),
                    (Some(d), true) => format!("{why}；已升级至{}", department(d)),
                    (None, false) => format!("{why}; top of the ladder reached: dispatchers must act"),
                    (None, true) => format!("{why}；已到最高一级：须由调度员处理"),
                }
            }
            Self::SameIncident { primary } if zh => format!("与 {primary} 为同一事件"),
            Self::SameIncident { primary } => format!("same incident as {primary}"),
            Self::ReportMerged { report, system, source_id } if zh => {
                let system = match system {
                    SourceSystem::Emergency => "应急",
                    SourceSystem::Commercial => "商业服务",
                    SourceSystem::PublicService => "公共服务",
                    SourceSystem::Management => "社区管理",
                };
                format!("{report}（{system} {source_id}）")
            }
            Self::ReportMerged { report, system, source_id } => format!("{report} ({system} {source_id})"),
            Self::OwnCaseAgain { report } if zh => format!("{report} 重新成为独立事件"),
            Self::OwnCaseAgain { report } => format!("{report} is its own case again"),
            Self::SplitOutOf { primary } if zh => format!("已从 {primary} 拆分出来"),
            Self::SplitOutOf { primary } => format!("split out of {primary}"),
            Self::Away { distance_m } if zh => format!("相距 {distance_m:.0} 米"),
            Self::Away { distance_m } => format!("{distance_m:.0} m away"),
            Self::AllRejected if zh => "所有候选部门均已退回：须由调度员处理".to_owned(),
            Self::AllRejected => "every candidate department rejected it: dispatchers must act".to_owned(),
            Self::FollowUp { reached, said } if zh => {
                format!("{}：{said}", if *reached { "已联系上" } else { "未联系上" })
            }
            Self::FollowUp { reached, said } => format!("{}: {said}", if *reached { "reached" } else { "not reached" }),
            Self::Rated { score, solved } if zh => format!("{score}/5，{}", if *solved { "已解决" } else { "未解决" }),
            Self::Rated { score, solved } => format!("{score}/5, {}", if *solved { "solved" } else { "not solved" }),
        }
    }
}

/// The English words for why the catch-all took a case, as [`crate::DepartmentRule::CatchAll`]
/// records them.
pub fn catch_all_cause(cause: CatchAllCause, category: &str) -> String {
    match cause {
        CatchAllCause::UnknownCategory => format!("category {category} is not in this region's vocabulary"),
        CatchAllCause::NoCommunity => "the location matched no community".to_owned(),
        CatchAllCause::NoDepartment => format!("no department handles {category} there"),
    }
}

/// The volunteer skills linkbus's regions use, in Chinese; others are shown as they are.
fn skill_zh(skill: &str) -> &str {
    match skill {
        "cpr" => "心肺复苏",
        "first_aid" => "急救",
        "elderly_care" => "助老",
        "cleanup" => "清洁",
        "neighborhood_watch" => "巡防",
        _ => skill,
    }
}

/// The priority flags linkbus's rules use, in Chinese; others are shown as they are.
fn flag_zh(flag: &str) -> &str {
    match flag {
        "persons_trapped" => "有人被困",
        "life_threatening" => "危及生命",
        "elderly_alone" => "独居老人",
        "disabled" => "残障人士",
        "minor" => "未成年人",
        _ => flag,
    }
}

fn write_list<T>(
    out: &mut String,
    items: &[T],
    and: &str,
    mut each: impl FnMut(&mut String, &T) -> fmt::Result,
) -> fmt::Result {
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.write_str(and)?;
        }
        each(out, item)?;
    }
    Ok(())
}

/// `(lon, lat)` to a micrometre-ish precision, as every sentence gives a point.
struct Point<'a>(&'a Location);

impl fmt::Display for Point<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:.6}, {:.6})", self.0.lon, self.0.lat)
    }
}

/// A community in English: name (id), sub-district, district.
struct EnPlace<'a>(&'a Place, &'a dyn Names);

impl fmt::Display for EnPlace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(p, names) = self;
        let name = names.area(&p.id).unwrap_or(&p.name);
        match &p.sub_district {
            Some(s) => write!(f, "{name} ({}), {s}, {}", p.id, p.district),
            None => write!(f, "{name} ({}), {}", p.id, p.district),
        }
    }
}

/// A community in Chinese: district, sub-district, name, as an address reads (a region named in
/// Latin letters keeps the English order).
struct ZhPlace<'a>(&'a Place, &'a dyn Names);

impl fmt::Display for ZhPlace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(p, names) = self;
        let name = names.area(&p.id).unwrap_or(&p.name);
        if name.is_ascii() {
            return write!(f, " {} ", EnPlace(p, *names));
        }
        match &p.sub_district {
            Some(s) => write!(f, "{}{s}{name}", p.district),
            None => write!(f, "{}{name}", p.district),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Location = Location { lon: 116.4, lat: 39.9 };

    fn place(id: &str, name: &str) -> Place {
        Place {
            id: id.into(), name: name.into(), sub_district: Some("东华门街道".into()), district: "东城区".into()
        }
    }

    fn dept(id: &str, name: &str) -> Named {
        Named { id: id.into(), name: name.into() }
    }

    /// One of each reason, with Beijing's names.
    fn every_reason() -> Vec<Reason> {
        let a = place("110101001001", "多福巷社区");
        let b = place("110101001002", "银闸社区");
        vec![
            Reason::PriorityRaised {
                from: 3,
                to: 1,
                rule: "life-threatening".into(),
                trigger: Trigger::Category("cardiac_arrest".into()),
            },
            Reason::PriorityRaised {
                from: 3,
                to: 2,
                rule: "vulnerable-people".into(),
                trigger: Trigger::Flag("elderly_alone".into()),
            },
            Reason::Inside { at: AT, community: a.clone() },
            Reason::NearBorder { at: AT, community: a.clone(), within_m: 50.0, near: vec![(b.clone(), 12.4)] },
            Reason::OnBorder { at: AT, communities: vec![a.id.clone(), b.id.clone()], chosen: a.clone() },
            Reason::Nearest { at: AT, community: a.clone(), distance_m: 31.0, tolerance_m: 100.0 },
            Reason::Unmatched { at: AT, tolerance_m: 100.0 },
            Reason::Jurisdiction {
                departments: vec![dept("fire-110101", "东城区消防救援支队")],
                category: "fire".into(),
                level: JurisdictionLevel::District,
                area: "110101".into(),
            },
            Reason::CatchAll {
                department: dept("beijing-12345", "北京市12345市民服务热线"),
                cause: CatchAllCause::UnknownCategory,
                category: "fire".into(),
            },
            Reason::CatchAll {
                department: dept("beijing-12345", "北京市12345市民服务热线"),
                cause: CatchAllCause::NoCommunity,
                category: "fire".into(),
            },
            Reason::CatchAll {
                department: dept("beijing-12345", "北京市12345市民服务热线"),
                cause: CatchAllCause::NoDepartment,
                category: "fire".into(),
            },
            Reason::AlsoNotified {
                departments: vec![dept("fire-110101", "东城区消防救援支队")],
                distance_m: 12.0,
                community: b,
            },
            Reason::Broadcast { communities: vec![a.id.clone()], also: vec!["fire-110101".into()] },
            Reason::Broadcast { communities: vec![], also: vec![] },
            Reason::UnknownGeocodes { geocodes: vec!["行政区划代码 110199000000".into()] },
            Reason::Volunteers {
                skill: "cpr".into(),
                offered: 2,
                nearest_m: Some(120.0),
                radius_m: 3000.0,
                skipped_unavailable: 1,
                skipped_skill: 0,
                skipped_capped: 1,
                radius_exhausted: true,
            },
            Reason::Volunteers {
                skill: "first_aid".into(),
                offered: 0,
                nearest_m: None,
                radius_m: 3000.0,
                skipped_unavailable: 0,
                skipped_skill: 4,
                skipped_capped: 0,
                radius_exhausted: false,
            },
            Reason::NoVolunteersForBroadcast,
            Reason::NoVolunteersForCategory { category: "streetlights".into() },
        ]
    }

    /// Beijing's names in Chinese.
    struct Chinese;

    impl Names for Chinese {
        fn category(&self, id: &str) -> Option<&str> {
            match id {
                "fire" => Some("火灾"),
                "cardiac_arrest" => Some("心脏骤停"),
                "streetlights" => Some("路灯"),
                _ => None,
            }
        }
        fn department(&self, id: &str) -> Option<&str> {
            (id == "fire-110101").then_some("东城区消防救援支队")
        }
        fn area(&self, code: &str) -> Option<&str> {
            match code {
                "110101" => Some("东城区"),
                "110101001001" => Some("多福巷社区"),
                _ => None,
            }
        }
    }

    #[test]
    fn without_names_the_english_sentences_are_the_decisions_explanation() {
        let english: Vec<String> = every_reason().iter().map(|r| r.render(Lang::En, &Ids)).collect();
        let expected = [
            "Priority raised from 3 to 1 by rule life-threatening: category cardiac_arrest.",
            "Priority raised from 3 to 2 by rule vulnerable-people: flag elderly_alone.",
            "(116.400000, 39.900000) is inside community 多福巷社区 (110101001001), 东华门街道, 东城区.",
            "(116.400000, 39.900000) is inside community 多福巷社区 (110101001001), 东华门街道, 东城区 but within 50 m of the border of 银闸社区 (110101001002), 东华门街道, 东城区 (12 m away): ambiguous; chose the one containing it.",
            "(116.400000, 39.900000) lies on the boundary of 110101001001, 110101001002; chose 多福巷社区 (110101001001), 东华门街道, 东城区 (first by id).",
            "(116.400000, 39.900000) is outside every community; the nearest, 多福巷社区 (110101001001), 东华门街道, 东城区, is 31 m away, within the 100 m tolerance.",
            "(116.400000, 39.900000) is outside every community and more than 100 m from any: unmatched.",
            "东城区消防救援支队 (fire-110101) handles fire in district 110101, the most specific jurisdiction with a rule.",
            "Sent to the catch-all 北京市12345市民服务热线 (beijing-12345): category fire is not in this region's vocabulary.",
            "Sent to the catch-all 北京市12345市民服务热线 (beijing-12345): the location matched no community.",
            "Sent to the catch-all 北京市12345市民服务热线 (beijing-12345): no department handles fire there.",
            "Also notified 东城区消防救援支队 (fire-110101): the case is 12 m from 银闸社区 (110101001002), 东华门街道, 东城区 and the rule is to notify both sides of a border.",
            "Broadcast: the alert's area touches 1 community (110101001001); also sent to fire-110101.",
            "Broadcast: the alert's area touches no community of the region.",
            "Geocodes not in the region's geocode table, so reaching no community: 行政区划代码 110199000000.",
            "Offered to 2 volunteers with skill cpr within 3000 m (nearest 120 m); passed over 1 unavailable, 0 without the skill, 1 alerted too often this hour; no more within the radius.",
            "No available volunteer with skill first_aid within 3000 m; passed over 0 unavailable, 4 without the skill.",
            "A broadcast over an area: no volunteer offers.",
            "Category streetlights calls for no volunteers.",
        ];
        assert_eq!(english, expected);
    }

    #[test]
    fn in_chinese_with_the_regions_names_no_latin_word_is_left() {
        for reason in every_reason() {
            let sentence = reason.render(Lang::ZhCn, &Chinese);
            assert!(!sentence.chars().any(|c| c.is_ascii_alphabetic()), "{reason:?} reads {sentence}");
            assert!(sentence.ends_with('。'), "{sentence}");
        }
        let jurisdiction = &every_reason()[7];
        assert_eq!(
            jurisdiction.render(Lang::ZhCn, &Chinese),
            "东城区消防救援支队负责东城区的“火灾”案件，这是有规则的最具体辖区。"
        );
        let near = &every_reason()[3];
        assert_eq!(
            near.render(Lang::ZhCn, &Chinese),
            "(116.400000, 39.900000) 位于东城区东华门街道多福巷社区内，但距东城区东华门街道银闸社区边界 12 米（不足 50 米）：归属存疑，选择包含该点的社区。"
        );
    }

    #[test]
    fn english_with_names_shows_them_beside_the_codes() {
        let jurisdiction = &every_reason()[7];
        assert_eq!(
            jurisdiction.render(Lang::En, &Chinese),
            "东城区消防救援支队 (fire-110101) handles 火灾 in district 东城区 (110101), the most specific jurisdiction with a rule."
        );
    }

    #[test]
    fn a_place_named_in_latin_letters_keeps_its_english_order_in_chinese() {
        let mission = Place {
            id: "mission".into(),
            name: "Mission".into(),
            sub_district: None,
            district: "San Francisco".into(),
        };
        let inside = Reason::Inside { at: AT, community: mission };
        assert_eq!(
            inside.render(Lang::ZhCn, &Ids),
            "(116.400000, 39.900000) 位于 Mission (mission), San Francisco 内。"
        );
    }

    fn every_system_note() -> Vec<SystemNote> {
        vec![
            SystemNote::Routed { departments: vec!["fire-110101".into()], offered: 3 },
            SystemNote::Routed { departments: vec!["fire-110101".into(), "fire-110101".into()], offered: 0 },
            SystemNote::Escalated { overdue: Overdue::NotAccepted, to: Some("fire-110101".into()) },
            SystemNote::Escalated { overdue: Overdue::NotResolved, to: None },
            SystemNote::SameIncident { primary: "110-1".into() },
            SystemNote::ReportMerged {
                report: "110-2".into(),
                system: SourceSystem::PublicService,
                source_id: "12345".into(),
            },
            SystemNote::OwnCaseAgain { report: "110-2".into() },
            SystemNote::SplitOutOf { primary: "110-1".into() },
            SystemNote::Away { distance_m: 986.4 },
            SystemNote::Rated { score: 4, solved: true },
            SystemNote::Rated { score: 2, solved: false },
            SystemNote::AllRejected,
            SystemNote::FollowUp { reached: false, said: "无人接听".into() },
        ]
    }

    #[test]
    fn system_notes_read_as_they_always_did_in_english_and_in_chinese_with_names() {
        let english: Vec<String> = every_system_note().iter().map(|n| n.render(Lang::En, &Ids)).collect();
        let expected = [
            "to fire-110101; offered to 3 volunteers",
            "to fire-110101, fire-110101",
            "not accepted in time; escalated to fire-110101",
            "not resolved in time; top of the ladder reached: dispatchers must act",
            "same incident as 110-1",
            "110-2 (public_service 12345)",
            "110-2 is its own case again",
            "split out of 110-1",
            "986 m away",
            "4/5, solved",
            "2/5, not solved",
            "every candidate department rejected it: dispatchers must act",
            "not reached: 无人接听",
        ];
        assert_eq!(english, expected);
        let chinese: Vec<String> = every_system_note().iter().map(|n| n.render(Lang::ZhCn, &Chinese)).collect();
        for note in &chinese {
            assert!(!note.chars().any(|c| c.is_ascii_alphabetic()), "{note}");
        }
        assert_eq!(chinese[0], "派至东城区消防救援支队；已邀请 3 名志愿者");
        assert_eq!(chinese[2], "未按时签收；已升级至东城区消防救援支队");
        assert_eq!(chinese[3], "未按时办结；已到最高一级：须由调度员处理");
        assert_eq!(chinese[10], "2/5，未解决");
    }

    #[test]
    fn a_reason_travels_as_a_code_and_its_parameters() {
        let reason = &every_reason()[7];
        let json = serde_json::to_value(reason).expect("serialises");
        assert_eq!(json["code"], "jurisdiction");
        assert_eq!(json["level"], "district");
        let back: Reason = serde_json::from_value(json).expect("reads back");
        assert_eq!(&back, reason);
    }
}
