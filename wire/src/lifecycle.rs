//! The wire contract of the closed loop (闭环): the case record kept in the `linkbus_cases` KV
//! bucket, the timeline events on `case.<id>.<event>`, the assignments departments receive, and
//! the requests departments, volunteers, dispatchers and residents send.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CaseReport, CommunityRef, Decision, FacilityChoice, Location, SourceSystem, timestamp_schema};

/// `type` of a timeline event (`case.<id>.<event>`).
pub const TYPE_CASE_EVENT: &str = "org.linkbus.case.event";
/// `type` of an assignment sent to a department that became responsible after routing
/// (re-routed after a rejection, escalated, reassigned by a dispatcher).
pub const TYPE_CASE_ASSIGNED: &str = "org.linkbus.case.assigned";
/// `type` of the notice that an offer to a volunteer is no longer open.
pub const TYPE_OFFER_CLOSED: &str = "org.linkbus.volunteer.offer_closed";

/// Where a case is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// Received, not yet routed.
    Reported,
    /// Routed: waiting for a department to accept (签收).
    Routed,
    /// A department accepted it.
    Accepted,
    /// Every candidate department rejected it: the dispatchers must step in.
    Rejected,
    /// The department reported work under way.
    InProgress,
    /// The department says it is solved; the reporter may still rate it and reopen it.
    Resolved,
    /// Done.
    Closed,
    /// Withdrawn (by the source, or a dispatcher); also a report merged into another case.
    Cancelled,
}

impl CaseState {
    /// Closed and cancelled cases take no more actions but a reopen (closed) or none.
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Closed | Self::Cancelled)
    }

    /// The subject token, e.g. `in_progress`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reported => "reported",
            Self::Routed => "routed",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::InProgress => "in_progress",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Who did something to a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    /// What kind of party.
    pub kind: ActorKind,
    /// Their id: department id, volunteer id, dispatcher name, `reporter`, `linkbus`.
    pub id: String,
}

/// Kinds of parties that act on cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A department.
    Department,
    /// A volunteer.
    Volunteer,
    /// A dispatcher (调度员).
    Dispatcher,
    /// The resident who reported it.
    Resident,
    /// linkbus itself (routing, deadlines, merging).
    System,
    /// The source system that reported the case (a CAP sender, a CAD system, a commerce
    /// platform), updating or withdrawing its own case; the id is its CloudEvents `source`.
    Source,
}

impl Actor {
    /// linkbus itself.
    pub fn system() -> Self {
        Self { kind: ActorKind::System, id: "linkbus".into() }
    }
}

/// What happened to a case: the `event` of a [`TimelineEntry`], and the last token of the subject
/// `case.<id>.<event>` it is published on. On the wire, the snake_case name (`volunteer_offered`).
///
/// Newer linkbus versions may add events: a reader keeps an event it does not know and passes
/// over it. linkbus reads one as [`TimelineEvent::Other`], name kept, so that during a rolling
/// upgrade a record written by a newer replica stays readable here, and a transition made here
/// stores that entry back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimelineEvent {
    /// The router gave the case to its departments (and offered it to volunteers); the note
    /// names them. Always the first entry.
    Routed,
    /// A responsible department took it (签收).
    Accepted,
    /// A responsible department refused it (退回); the note is its reason.
    Rejected,
    /// After every responsible department rejected it, linkbus gave it to the next candidate.
    Rerouted,
    /// The accepting department reported work under way; the note tells the reporter what.
    Progress,
    /// The department (or the source system) says it is solved; the note says how.
    Resolved,
    /// Done; the note, if any, is the closing note.
    Closed,
    /// Withdrawn by a dispatcher or the source system; the note is why.
    Cancelled,
    /// A deadline was missed, or every candidate rejected it: the case went up the department
    /// ladder (one entry per department reached) or, at the top, to the dispatchers.
    Escalated,
    /// A dispatcher acknowledged the open escalation.
    EscalationAcknowledged,
    /// A dispatcher gave the case to another department; the note is why.
    Reassigned,
    /// Another report of the same incident was folded into this case; the note names it.
    ReportMerged,
    /// This report was folded into another case (named in the note) and cancelled.
    Merged,
    /// A dispatcher undid a wrong merge (on both the case and the report split out of it).
    Split,
    /// The reporter rated the handling; the note is the score and whether it is solved.
    Rated,
    /// The reporter said it is not solved: back to the department that resolved it.
    Reopened,
    /// The source system that reported the case said something changed; the note is what.
    SourceUpdated,
    /// A declined or expired offer was passed on to the next nearest volunteer.
    VolunteerOffered,
    /// A volunteer took the case; the note is how far away they were.
    VolunteerAccepted,
    /// A volunteer said no.
    VolunteerDeclined,
    /// Offers went unanswered in time.
    VolunteerExpired,
    /// The volunteer who took the case reported arriving there.
    VolunteerArrived,
    /// The volunteer who took the case reported handing over (to the ambulance crew, the
    /// department): their part is done.
    VolunteerHandedOver,
    /// A dispatcher's note on the case; the note is it.
    Noted,
    /// 督办: a dispatcher urged the responsible department (the entry's) to act; the note says
    /// what. The department is told on its subject.
    Supervised,
    /// 回访: a dispatcher called the reporter back; the note says whether they were reached and
    /// what they said.
    FollowedUp,
    /// An event this version does not know (a newer one wrote it), its name kept. Never one of
    /// the names above: those always read as their own variant.
    #[serde(untagged)]
    Other(String),
}

impl TimelineEvent {
    /// The wire name, e.g. `volunteer_offered`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Routed => "routed",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Rerouted => "rerouted",
            Self::Progress => "progress",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
            Self::Cancelled => "cancelled",
            Self::Escalated => "escalated",
            Self::EscalationAcknowledged => "escalation_acknowledged",
            Self::Reassigned => "reassigned",
            Self::ReportMerged => "report_merged",
            Self::Merged => "merged",
            Self::Split => "split",
            Self::Rated => "rated",
            Self::Reopened => "reopened",
            Self::SourceUpdated => "source_updated",
            Self::VolunteerOffered => "volunteer_offered",
            Self::VolunteerAccepted => "volunteer_accepted",
            Self::VolunteerDeclined => "volunteer_declined",
            Self::VolunteerExpired => "volunteer_expired",
            Self::VolunteerArrived => "volunteer_arrived",
            Self::VolunteerHandedOver => "volunteer_handed_over",
            Self::Noted => "noted",
            Self::Supervised => "supervised",
            Self::FollowedUp => "followed_up",
            Self::Other(name) => name,
        }
    }

    /// Whether a resident following up their report sees this event. What the case went
    /// through, not who handled it internally: offers to volunteers but the accepted one,
    /// escalation acknowledgements, merges seen from the merged report and source updates stay
    /// internal, as does any event this build does not know.
    pub fn is_public(&self) -> bool {
        matches!(
            self,
            Self::Routed
                | Self::Accepted
                | Self::Rejected
                | Self::Rerouted
                | Self::Reassigned
                | Self::Escalated
                | Self::Progress
                | Self::Resolved
                | Self::Closed
                | Self::Cancelled
                | Self::Rated
                | Self::Reopened
                | Self::ReportMerged
                | Self::Split
                | Self::VolunteerAccepted
        )
    }

    /// Whether a resident sees the note of this event: what the department tells the reporter.
    /// Other notes (reasons for rejecting, department names, distances) stay internal.
    pub fn note_is_public(&self) -> bool {
        matches!(self, Self::Progress | Self::Resolved | Self::Closed)
    }
}

impl std::fmt::Display for TimelineEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with a wire name, e.g. `entry.event == "escalated"`.
impl PartialEq<&str> for TimelineEvent {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One line of a case's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimelineEntry {
    /// When.
    #[schemars(schema_with = "timestamp_schema")]
    pub at: Timestamp,
    /// What happened.
    pub event: TimelineEvent,
    /// Who.
    pub actor: Actor,
    /// The department concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Reason, note or detail (for what linkbus wrote itself, in English).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What linkbus wrote itself, as data, for readers in other languages
    /// ([`crate::explain::SystemNote::render`]); absent on what people wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_note: Option<crate::explain::SystemNote>,
}

/// One report folded into a case (the first is the case's own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReportRef {
    /// The report's event id (its own case id before merging).
    pub report_id: String,
    /// The kind of system it came from.
    pub system: SourceSystem,
    /// The CloudEvents `source` that sent it.
    pub source: String,
    /// The source system's own id.
    pub source_id: String,
    /// Its category.
    pub category: String,
    /// Where it was reported.
    pub location: Location,
    /// When.
    #[schemars(schema_with = "timestamp_schema")]
    pub reported_at: Timestamp,
}

/// Where an offer to one volunteer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OfferStatus {
    /// Sent, no answer yet.
    Offered,
    /// The volunteer took it.
    Accepted,
    /// The volunteer said no.
    Declined,
    /// No answer in time.
    Expired,
    /// Closed because another volunteer accepted, or the case ended.
    Withdrawn,
}

/// An offer to one volunteer and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OfferState {
    /// The volunteer.
    pub volunteer_id: String,
    /// Their distance from the case, metres.
    pub distance_m: f64,
    /// Where it stands.
    pub status: OfferStatus,
    /// When it was sent.
    #[schemars(schema_with = "timestamp_schema")]
    pub offered_at: Timestamp,
    /// When it must be answered by.
    #[schemars(schema_with = "timestamp_schema")]
    pub expires_at: Timestamp,
}

/// The reporter's verdict on a resolved case (回访 / 评价).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rating {
    /// 1 (bad) to 5 (excellent).
    pub score: u8,
    /// Whether the problem is really solved; `false` reopens the case.
    pub solved: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The department rated (the one that resolved it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// When.
    #[schemars(schema_with = "timestamp_schema")]
    pub at: Timestamp,
}

/// A case as linkbus keeps it: the `record` of its value in the `linkbus_cases` KV bucket (beside
/// the messages still to send), and what the HTTP API returns. Every change is a revision-checked update, so two replicas never both move a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CaseRecord {
    /// Case id (the id of its first report's event).
    pub case_id: String,
    /// Where it is in its life.
    pub state: CaseState,
    /// The first report, as received.
    pub case: CaseReport,
    /// Every report of this incident, the first included.
    pub reports: Vec<ReportRef>,
    /// When this record is a report merged into another case: that case's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// The routing decision (community, departments, volunteers, explanation).
    pub decision: Decision,
    /// The priority it is handled at (the decision's, unless a dispatcher changed it).
    pub priority: u8,
    /// The community, if the location matched one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<CommunityRef>,
    /// Departments responsible now.
    pub departments: Vec<String>,
    /// The department that accepted it, once one has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<String>,
    /// Departments that may still take it if the responsible ones reject it, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// Departments that rejected it, with their reasons in the timeline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_by: Vec<String>,
    /// Accept by this time, or the case escalates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_timestamp_schema")]
    pub accept_by: Option<Timestamp>,
    /// Resolve by this time, or the case escalates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_timestamp_schema")]
    pub resolve_by: Option<Timestamp>,
    /// How many times it escalated.
    #[serde(default)]
    pub escalations: u32,
    /// True from an escalation until a dispatcher acknowledges it.
    #[serde(default)]
    pub escalation_open: bool,
    /// Offers to volunteers, in the order sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offers: Vec<OfferState>,
    /// The reporter's ratings, latest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ratings: Vec<Rating>,
    /// How many times it was reopened.
    #[serde(default)]
    pub reopened: u32,
    /// Everything that happened, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// When it was created.
    #[schemars(schema_with = "timestamp_schema")]
    pub created_at: Timestamp,
    /// When it last changed.
    #[schemars(schema_with = "timestamp_schema")]
    pub updated_at: Timestamp,
    /// The W3C trace context its first report came with (a merged case keeps its primary's);
    /// set as `traceparent`/`tracestate` on every event linkbus emits about it. Absent in
    /// records written before traces were kept, and for reports without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::TraceContext>,
}

/// The `data` of timeline events on `case.<id>.<event>`: what happened and the state after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CaseEvent {
    /// The case.
    pub case_id: String,
    /// The state after the event.
    pub state: CaseState,
    /// The timeline entry.
    pub entry: TimelineEntry,
}

/// Why a department was given a case after routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentReason {
    /// The responsible department rejected it; this is the next candidate.
    Rerouted,
    /// Nobody accepted (or resolved) in time; this is the next department up the ladder.
    Escalated,
    /// A dispatcher gave it to this department.
    Reassigned,
    /// A dispatcher split this report out of a wrongly merged case.
    Split,
    /// The reporter said it was not solved: back to the department that resolved it.
    Reopened,
}

/// The `data` of `org.linkbus.case.assigned` events on `routed.dept.<department>.<category>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CaseAssigned {
    /// The case id.
    pub case_id: String,
    /// The department now responsible.
    pub department: String,
    /// Why.
    pub reason: AssignmentReason,
    /// The case as linkbus knows it now.
    pub record: CaseRecord,
}

/// An action on a case. Departments send them as NATS requests on `action.<department>`
/// ([`ActionRequest`]); dispatchers and residents through the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// 签收: the department takes the case. (Braces, not a unit variant: serde lets unknown
    /// fields through on unit variants of an internally tagged enum.)
    Accept {},
    /// 退回: the department refuses it; it goes to the next candidate, else the dispatchers.
    Reject {
        /// Why (required).
        reason: String,
    },
    /// Work under way.
    Progress {
        /// What is being done.
        note: String,
    },
    /// Solved, as far as the department knows.
    Resolve {
        /// How.
        note: String,
    },
    /// Done (a dispatcher, or the department after resolving).
    Close {
        /// Closing note.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Withdrawn (dispatchers, or the source system that reported it).
    Cancel {
        /// Why.
        reason: String,
    },
    /// The source system that reported the case says something changed (a CAP `Update`, a
    /// CAD update, an order's new status); recorded on the timeline as `source_updated`, the
    /// state unchanged (sources only).
    Update {
        /// What changed, in words.
        note: String,
    },
    /// Give the case to another department (dispatchers only).
    Reassign {
        /// The department to give it to.
        department: String,
        /// Why.
        reason: String,
    },
    /// A dispatcher saw the escalation and is on it.
    AcknowledgeEscalation {},
    /// Undo a wrong merge: the report becomes its own case again (dispatchers only).
    Split {
        /// The report to split out.
        report_id: String,
    },
    /// A dispatcher's note on the timeline, the state unchanged (dispatchers only).
    Note {
        /// The note.
        note: String,
    },
    /// 督办: urge the responsible department(s) to act, on their subject and the timeline, the
    /// state unchanged (dispatchers only, open cases).
    Supervise {
        /// What is urged.
        note: String,
    },
    /// 回访: the reporter was called back (dispatchers only), the state unchanged; a rating they
    /// gave on the call is recorded with `rate` through the residents' endpoint.
    FollowUp {
        /// Whether the reporter was reached.
        reached: bool,
        /// What they said, or why they were not reached.
        note: String,
    },
    /// The reporter's verdict on a resolved case; `solved: false` reopens it.
    Rate {
        /// 1 to 5.
        score: u8,
        /// Really solved?
        solved: bool,
        /// Free text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
}

impl Action {
    /// The action's name, e.g. `accept`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Accept {} => "accept",
            Self::Reject { .. } => "reject",
            Self::Progress { .. } => "progress",
            Self::Resolve { .. } => "resolve",
            Self::Close { .. } => "close",
            Self::Cancel { .. } => "cancel",
            Self::Update { .. } => "update",
            Self::Reassign { .. } => "reassign",
            Self::AcknowledgeEscalation {} => "acknowledge_escalation",
            Self::Split { .. } => "split",
            Self::Note { .. } => "note",
            Self::Supervise { .. } => "supervise",
            Self::FollowUp { .. } => "follow_up",
            Self::Rate { .. } => "rate",
        }
    }

    /// The text field this action requires that is blank (`department`, `reason` or `note`), if
    /// any: such an action is refused whatever the case's state.
    pub fn blank_required(&self) -> Option<&'static str> {
        let blank = |text: &str| text.trim().is_empty();
        match self {
            Self::Reject { reason } | Self::Cancel { reason } => blank(reason).then_some("reason"),
            Self::Progress { note }
            | Self::Resolve { note }
            | Self::Update { note }
            | Self::Note { note }
            | Self::Supervise { note }
            | Self::FollowUp { note, .. } => blank(note).then_some("note"),
            Self::Reassign { department, .. } if blank(department) => Some("department"),
            Self::Reassign { reason, .. } => blank(reason).then_some("reason"),
            _ => None,
        }
    }
}

/// A department's request on `action.<department>`: the action on one of its cases, e.g.
/// `{"case_id": "sf311-1", "action": "reject", "reason": "not ours"}`. Unknown fields are
/// refused (serde cannot combine `flatten` with `deny_unknown_fields`, hence the hand-written
/// `Deserialize`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ActionRequest {
    /// The case.
    pub case_id: String,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
}

impl<'de> Deserialize<'de> for ActionRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut fields = serde_json::Map::deserialize(deserializer)?;
        let case_id = take_field(&mut fields, "case_id").map_err(D::Error::custom)?;
        let action = Action::deserialize(serde_json::Value::Object(fields)).map_err(D::Error::custom)?;
        Ok(Self { case_id, action })
    }
}

/// Removes the required field `name` from `fields` and reads it as a `T`.
fn take_field<T: serde::de::DeserializeOwned>(
    fields: &mut serde_json::Map<String, serde_json::Value>,
    name: &'static str,
) -> Result<T, String> {
    let value = fields.remove(name).ok_or_else(|| format!("missing field `{name}`"))?;
    serde_json::from_value(value).map_err(|e| format!("{name}: {e}"))
}

/// An action taken from a record of what really happened (a city's closed 311 request) or from
/// a simulation, sent as a NATS request on `replay.action` (only the service's own user may):
/// who did it, how long after the case was opened, and where that comes from, beside the action,
/// e.g. `{"case_id": "sf311-1757188", "actor": {"kind": "department", "id": "dpw-bsm-queue"},
/// "after_open_secs": 0.13428, "origin": "replayed from SF 311 record 1757188, time ÷ 1000000",
/// "action": "resolve", "note": "Case Resolved"}`. The case book writes the timeline entry at
/// the case's opening plus `after_open_secs` — not in the future, not before the case's last
/// entry — and adds `origin` to its note, so figures computed from the timeline carry the
/// record's (compressed) times and every entry says it was replayed. The reply is an
/// [`ActionReply`]. Unknown fields are refused, as in [`ActionRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ReplayRequest {
    /// The case.
    pub case_id: String,
    /// Who did it: a department, the source system or the resident (never a dispatcher, a
    /// volunteer or linkbus); the lifecycle's rules for that party apply.
    pub actor: Actor,
    /// When it happened: seconds after the case was opened (its record's `created_at`).
    pub after_open_secs: f64,
    /// Where it comes from (1–200 characters), e.g. `replayed from SF 311 record 1757188, time ÷
    /// 1000000` or `SIMULATED department (seed 7)`: added to the timeline entry's note.
    pub origin: String,
    /// What was done.
    #[serde(flatten)]
    pub action: Action,
}

impl<'de> Deserialize<'de> for ReplayRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut fields = serde_json::Map::deserialize(deserializer)?;
        let case_id = take_field(&mut fields, "case_id").map_err(D::Error::custom)?;
        let actor = take_field(&mut fields, "actor").map_err(D::Error::custom)?;
        let after_open_secs = take_field(&mut fields, "after_open_secs").map_err(D::Error::custom)?;
        let origin = take_field(&mut fields, "origin").map_err(D::Error::custom)?;
        let action = Action::deserialize(serde_json::Value::Object(fields)).map_err(D::Error::custom)?;
        Ok(Self { case_id, actor, after_open_secs, origin, action })
    }
}

/// The reply to an [`ActionRequest`] or a [`VolunteerAnswer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionReply {
    /// Whether it was done.
    pub ok: bool,
    /// The case.
    pub case_id: String,
    /// The case's state afterwards (or now, when refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CaseState>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a volunteer who accepted: where to go and the nearest relevant facility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<VolunteerAssignment>,
}

/// A volunteer's answer to an offer, sent as a NATS request on `volunteer.<id>.answer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolunteerAnswer {
    /// The case offered.
    pub case_id: String,
    /// Yes or no.
    pub accept: bool,
}

/// A step the volunteer who took a case reports, sent as a NATS request on
/// `volunteer.<id>.answer` like an answer (the reply is an [`ActionReply`]), or through the
/// volunteers' app. Recorded as `volunteer_arrived` / `volunteer_handed_over` in the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolunteerStepReport {
    /// The case taken.
    pub case_id: String,
    /// What happened.
    pub step: VolunteerStep,
}

/// A step of a volunteer who took a case: arrived, then handed over, each once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VolunteerStep {
    /// At the case.
    Arrived,
    /// Handed over to the professionals; done.
    HandedOver,
}

impl VolunteerStep {
    /// The timeline event that records it.
    pub fn event(self) -> TimelineEvent {
        match self {
            Self::Arrived => TimelineEvent::VolunteerArrived,
            Self::HandedOver => TimelineEvent::VolunteerHandedOver,
        }
    }
}

/// What the accepting volunteer is told. Never anybody's contact details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VolunteerAssignment {
    /// Where to go.
    pub location: Location,
    /// Street address, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The nearest relevant facility (an AED for a cardiac arrest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<FacilityChoice>,
}

/// The `data` of `org.linkbus.volunteer.offer_closed` on `volunteer.<id>.offer_closed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OfferClosed {
    /// The case.
    pub case_id: String,
    /// The volunteer.
    pub volunteer_id: String,
    /// Why: `taken` (someone else accepted), `expired`, `case_closed`.
    pub reason: String,
}

fn optional_timestamp_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "null"], "format": "date-time" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blank_required_field_is_named() {
        let (text, blank) = ("closer".to_owned(), " \n".to_owned());
        assert_eq!(Action::Reject { reason: blank.clone() }.blank_required(), Some("reason"));
        assert_eq!(Action::Cancel { reason: text.clone() }.blank_required(), None);
        assert_eq!(Action::Resolve { note: blank.clone() }.blank_required(), Some("note"));
        assert_eq!(Action::Progress { note: text.clone() }.blank_required(), None);
        let reassign =
            |department: &str, reason: &str| Action::Reassign { department: department.into(), reason: reason.into() };
        assert_eq!(reassign("", "closer").blank_required(), Some("department"));
        assert_eq!(reassign("dpw", " ").blank_required(), Some("reason"));
        assert_eq!(reassign("dpw", "closer").blank_required(), None);
        assert_eq!(Action::Close { note: None }.blank_required(), None, "a close needs no note");
        assert_eq!(Action::Accept {}.blank_required(), None);
        assert_eq!(reassign("dpw", "closer").name(), "reassign");
    }

    #[test]
    fn states_and_events_read_as_their_wire_names() {
        for state in [CaseState::Routed, CaseState::InProgress, CaseState::Closed] {
            let json = serde_json::to_value(state).expect("serializes");
            assert_eq!(json.as_str(), Some(state.as_str()));
        }
        assert!(CaseState::Resolved.is_open() && !CaseState::Closed.is_open() && !CaseState::Cancelled.is_open());
        assert!(TimelineEvent::Escalated == "escalated" && TimelineEvent::Escalated != "closed");
        // Any string is read as an event (the untagged `Other`): the schema says anyOf, not oneOf.
        let schema = serde_json::to_value(schemars::schema_for!(TimelineEvent)).expect("a schema");
        assert!(schema.get("anyOf").is_some() && schema.get("oneOf").is_none(), "{schema}");
    }
}
