//! The volunteer's offers: live over Server-Sent Events ([`OfferView`] per change of a case
//! offered to it), answered through the case book as `volunteer.<id>.answer` is, and its history
//! and hours ([`History`]).
//!
//! A view is what the offer event carries (category, priority, place, distance, the time left)
//! and the case's nearest facility (the AED of a cardiac arrest), the outline of the case's
//! community for the map, and why an offer closed (`taken`, `case_closed`, `expired`, as
//! `offer_closed` says). After accepting, it reports arriving and handing over (the lifecycle's
//! volunteer steps), and sees the case's updates: each entry's time, event and
//! department, never its note (notes are the departments' and dispatchers'), never the
//! reporter.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderName;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use jiff::Timestamp;
use linkbus_wire::{
    ActionReply, ActorKind, CaseRecord, CaseState, FacilityChoice, Location, OfferStatus, TimelineEvent,
    VolunteerAnswer, VolunteerStep, VolunteerStepReport,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tracing::info;

use super::credentials::{Volunteer, still_valid};
use super::{AppState, VolunteerApp};
use crate::error::ApiError;

/// One case offered to the volunteer, as the app shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OfferView {
    /// The case.
    pub case_id: String,
    /// The offer's status.
    pub status: OfferStatus,
    /// Why it is no longer open: `taken` (another volunteer accepted), `case_closed`, `expired`,
    /// `declined`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The case's category.
    pub category: String,
    /// Its priority, 1 most urgent.
    pub priority: u8,
    /// Where it is.
    pub location: Location,
    /// Its address, as reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// What was reported (as the offer carries it; never the reporter's contact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// From the volunteer's position when offered, metres.
    pub distance_m: f64,
    /// When it was offered.
    #[schemars(with = "String")]
    pub offered_at: Timestamp,
    /// When the offer must be answered by.
    #[schemars(with = "String")]
    pub expires_at: Timestamp,
    /// The nearest facility the case calls for (an AED for a cardiac arrest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<FacilityChoice>,
    /// The case's community.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
    /// The community's outline (exterior rings, `[lon, lat]`) for the map.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outline: Vec<Vec<[f64; 2]>>,
    /// The case's state.
    pub case_state: CaseState,
    /// After accepting: the case's updates since.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<Update>,
}

/// One update of a case the volunteer took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Update {
    /// When.
    #[schemars(with = "String")]
    pub at: Timestamp,
    /// The timeline event, e.g. `accepted`, `progress`, `resolved`.
    pub event: String,
    /// The department it concerns, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
}

/// `GET /api/volunteer/me/history`: every case offered to the volunteer the case book holds,
/// newest first, and the hours it gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct History {
    /// Every case offered to it, newest offer first.
    pub offers: Vec<OfferView>,
    /// Offers it accepted.
    pub accepted: usize,
    /// Hours from each acceptance to handing over, or the case's resolution or end (or now,
    /// while none of those).
    pub hours: f64,
}

/// `volunteer`'s view of `r`, if `r` was offered to it.
fn view(app: &VolunteerApp, r: &CaseRecord, volunteer: &str, with_outline: bool) -> Option<OfferView> {
    let offer = r.offers.iter().find(|o| o.volunteer_id == volunteer)?;
    let reason = match offer.status {
        OfferStatus::Offered | OfferStatus::Accepted => None,
        OfferStatus::Declined => Some("declined"),
        OfferStatus::Expired => Some("expired"),
        OfferStatus::Withdrawn if r.offers.iter().any(|o| o.status == OfferStatus::Accepted) => Some("taken"),
        OfferStatus::Withdrawn => Some("case_closed"),
    };
    let updates = match offer.status {
        OfferStatus::Accepted => since_accepted(r, volunteer)
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| Update { at: e.at, event: e.event.as_str().to_owned(), department: e.department.clone() })
                    .collect()
            })
            .unwrap_or_default(),
        _ => vec![],
    };
    Some(OfferView {
        case_id: r.case_id.clone(),
        status: offer.status,
        reason: reason.map(str::to_owned),
        category: r.case.category.clone(),
        priority: r.priority,
        location: r.case.location,
        address: r.case.address.clone(),
        description: r.case.description.clone(),
        distance_m: offer.distance_m,
        offered_at: offer.offered_at,
        expires_at: offer.expires_at,
        facility: r.decision.facility.clone(),
        community: r.community.as_ref().map(|c| c.name.clone()),
        outline: if with_outline { outline(app, r) } else { vec![] },
        case_state: r.state,
        updates,
    })
}

/// The timeline from `volunteer`'s acceptance on.
fn since_accepted<'a>(r: &'a CaseRecord, volunteer: &str) -> Option<&'a [linkbus_wire::TimelineEntry]> {
    let at = r.timeline.iter().position(|e| {
        e.event == TimelineEvent::VolunteerAccepted && e.actor.kind == ActorKind::Volunteer && e.actor.id == volunteer
    })?;
    Some(&r.timeline[at..])
}

/// The exterior rings of the case's community, to 5 decimals (about a metre).
fn outline(app: &VolunteerApp, r: &CaseRecord) -> Vec<Vec<[f64; 2]>> {
    let Some(id) = r.community.as_ref().map(|c| c.id.as_str()) else { return vec![] };
    let router = app.router.router();
    let Some(community) = router.communities().communities().iter().find(|c| c.id == id) else { return vec![] };
    let round = |v: f64| (v * 1e5).round() / 1e5;
    community.boundary.0.iter().map(|p| p.exterior().0.iter().map(|c| [round(c.x), round(c.y)]).collect()).collect()
}

/// Hours from `volunteer`'s acceptance of `r` to its handing over, or the case's resolution or
/// end, or `now`.
fn hours(r: &CaseRecord, volunteer: &str, now: Timestamp) -> f64 {
    let Some(entries) = since_accepted(r, volunteer) else { return 0.0 };
    let ended = entries
        .iter()
        .find(|e| {
            matches!(e.event, TimelineEvent::Resolved | TimelineEvent::Closed | TimelineEvent::Cancelled)
                || (e.event == TimelineEvent::VolunteerHandedOver && e.actor.id == volunteer)
        })
        .map_or(now, |e| e.at);
    (ended.as_second() - entries[0].at.as_second()).max(0) as f64 / 3600.0
}

/// The cases offered to `volunteer`, newest offer first.
fn offered(app: &VolunteerApp, volunteer: &str) -> Vec<CaseRecord> {
    let mut records = app.book.list_where(|r| r.offers.iter().any(|o| o.volunteer_id == volunteer));
    let offered_at = |r: &CaseRecord| r.offers.iter().find(|o| o.volunteer_id == volunteer).map(|o| o.offered_at);
    records.sort_by_key(|r| std::cmp::Reverse(offered_at(r)));
    records
}

/// Whether the app still shows `v`: an open offer, or a case it took that is still open.
fn current(v: &OfferView) -> bool {
    v.status == OfferStatus::Offered || (v.status == OfferStatus::Accepted && v.case_state.is_open())
}

fn reset_event(app: &VolunteerApp, volunteer: &str) -> Event {
    let views: Vec<OfferView> =
        offered(app, volunteer).iter().filter_map(|r| view(app, r, volunteer, true)).filter(current).collect();
    let body = serde_json::json!({ "offers": views, "now": Timestamp::now() });
    Event::default().event("reset").data(body.to_string())
}

/// How often an open offer stream checks that its credential still stands (besides before each
/// event it sends).
const RECHECK: Duration = Duration::from_secs(10);

/// `GET /api/volunteer/me/offers`: a `reset` with the open offers and the open cases taken, then
/// an `offer` per change of a case offered to the volunteer (a `reset` again if the stream fell
/// behind). Ends when `linkbus up` stops, or within [`RECHECK`] of the credential's revocation or
/// replacement (the app then reconnects, is refused, and asks to sign in).
pub(super) async fn stream(State(state): State<AppState>, volunteer: Volunteer) -> Result<Response, ApiError> {
    let app = state.app()?.clone();
    info!(volunteer = %volunteer.0, "volunteer app following its offers");
    // Subscribe before reading the book, so no change falls between the two.
    let changes = app.book.subscribe();
    let reset = reset_event(&app, &volunteer.0);
    let stop = app.stop.clone();
    let open = OpenStream::new(&app);
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = (changes, app, volunteer, open, recheck);
    let live = futures::stream::unfold(state, |(mut changes, app, volunteer, open, mut recheck)| async move {
        let id = &volunteer.0;
        loop {
            let event = tokio::select! {
                change = changes.recv() => match change {
                    Ok(record) => match view(&app, &record, id, true) {
                        Some(v) => Event::default().event("offer").data(serde_json::to_string(&v).unwrap_or_default()),
                        None => continue,
                    },
                    Err(RecvError::Lagged(_)) => reset_event(&app, id),
                    Err(RecvError::Closed) => return None,
                },
                _ = recheck.tick() => {
                    if still_valid(&app, &volunteer).await {
                        continue;
                    }
                    return None;
                }
            };
            if !still_valid(&app, &volunteer).await {
                return None;
            }
            return Some((Ok::<_, Infallible>(event), (changes, app, volunteer, open, recheck)));
        }
    });
    let stream = futures::stream::once(async move { Ok(reset.retry(Duration::from_secs(2))) })
        .chain(live)
        .take_until(stop.cancelled_owned());
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    Ok(([(HeaderName::from_static("x-accel-buffering"), "no")], sse).into_response())
}

/// Counts an open offer stream while it lives.
struct OpenStream(prometheus::IntGauge);

impl OpenStream {
    fn new(app: &VolunteerApp) -> Self {
        app.metrics.streams.inc();
        Self(app.metrics.streams.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The body of a request about case `case_id`, read as `T` (`what` it should be, for the
/// error); 422 for an id that is no case id or a body that is not a `T`.
fn on_case<T: serde::de::DeserializeOwned>(
    case_id: &str,
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, ApiError> {
    if !linkbus_wire::is_event_id(case_id) {
        return Err(ApiError::Invalid(format!("{case_id:?} is not a case id")));
    }
    serde_json::from_slice(&body?).map_err(|e| ApiError::Invalid(format!("not {what}: {e}")))
}

/// `POST /api/volunteer/me/offers/{case_id}/answer`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    accept: bool,
}

/// `POST /api/volunteer/me/offers/{case_id}/answer`: `{"accept": true|false}`; the case book's
/// answer to `volunteer.<id>.answer`, as an action reply (an accept with where to go). Refused
/// as the NATS answer is: 403 for a case not offered to this volunteer, 409 for an offer no
/// longer open.
pub(super) async fn answer(
    State(state): State<AppState>,
    Volunteer(id, _): Volunteer,
    Path(case_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ActionReply>, ApiError> {
    let app = state.app()?;
    let result = async {
        let Answer { accept } = on_case(&case_id, body, "an answer")?;
        let (record, assignment) = app.book.answer(&id, &VolunteerAnswer { case_id, accept }).await?;
        info!(volunteer = %id, case = %record.case_id, accept, "volunteer answered in the app");
        Ok(ActionReply { ok: true, case_id: record.case_id, state: Some(record.state), error: None, assignment })
    }
    .await;
    app.metrics.count("answer", &result);
    result.map(Json)
}

/// `POST /api/volunteer/me/offers/{case_id}/step`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    step: VolunteerStep,
}

/// `POST /api/volunteer/me/offers/{case_id}/step`: `{"step": "arrived" | "handed_over"}` of the
/// volunteer who took the case, as on `volunteer.<id>.answer`; answers an action reply. 403 for a
/// case it did not take, 409 out of order or repeated.
pub(super) async fn step(
    State(state): State<AppState>,
    Volunteer(id, _): Volunteer,
    Path(case_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ActionReply>, ApiError> {
    let app = state.app()?;
    let result = async {
        let Step { step } = on_case(&case_id, body, "a step")?;
        let record = app.book.volunteer_step(&id, &VolunteerStepReport { case_id, step }).await?;
        info!(volunteer = %id, case = %record.case_id, ?step, "volunteer reported a step in the app");
        Ok(ActionReply { ok: true, case_id: record.case_id, state: Some(record.state), error: None, assignment: None })
    }
    .await;
    app.metrics.count("step", &result);
    result.map(Json)
}

/// `GET /api/volunteer/me/history`.
pub(super) async fn history(
    State(state): State<AppState>,
    Volunteer(id, _): Volunteer,
) -> Result<Json<History>, ApiError> {
    let app = state.app()?;
    let now = Timestamp::now();
    let records = offered(app, &id);
    let accepted: Vec<&CaseRecord> = records
        .iter()
        .filter(|r| r.offers.iter().any(|o| o.volunteer_id == id && o.status == OfferStatus::Accepted))
        .collect();
    let hours = accepted.iter().map(|r| hours(r, &id, now)).sum::<f64>();
    let offers = records.iter().filter_map(|r| view(app, r, &id, false)).collect();
    Ok(Json(History { offers, accepted: accepted.len(), hours: (hours * 100.0).round() / 100.0 }))
}
