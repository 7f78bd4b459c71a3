//! `/api/cases…`: dispatchers, departments and operators list and read cases; dispatchers and
//! departments act on them, as the lifecycle allows (`linkbus_cases::lifecycle`, which records
//! the actor in the timeline).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use linkbus_cases::book::{CaseFilter, REPEAT_DAYS, REPEAT_RADIUS_M, involves};
use linkbus_wire::explain::Lang;
use linkbus_wire::{self as wire, Action, Actor, ActorKind, CaseRecord};
use schemars::JsonSchema;
use serde::Serialize;
use tracing::{debug, info};

use super::query::parse_list_query;
use crate::auth::Principal;
use crate::config::ApiRole;
use crate::error::ApiError;
use crate::names::reader_lang;
use crate::state::ApiState;

/// Who may use `/api/cases…` (a source key may not).
const CASE_ROLES: &[ApiRole] = &[ApiRole::Dispatcher, ApiRole::Department, ApiRole::Operator];

/// `GET /api/cases`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CaseList {
    /// The cases, newest first.
    pub cases: Vec<CaseRecord>,
    /// True when more cases matched than `limit`.
    pub more: bool,
    /// Where the next page starts, when more matched: pass it as `cursor` (with the same
    /// filters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `GET /api/cases`: a department key lists only the cases its department has or had, whatever
/// the filters (a search too: `q` finds none of another department's cases). A page costs what it returns (the case book walks its listing order from the
/// cursor); closed and cancelled cases that left memory are listed when asked for (`state`
/// closed or cancelled, or `archived=true`).
pub(super) async fn list_cases(
    State(state): State<ApiState>,
    principal: Principal,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<axum::Json<CaseList>, ApiError> {
    principal.require(CASE_ROLES, "list cases")?;
    let Query(pairs) = query.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let (mut filter, cursor, limit) = parse_list_query(&pairs)?;
    filter.visible_to = principal.department().map(str::to_owned);
    let page = state.cases.page(&filter, cursor.as_ref(), limit).await?;
    let (cases, next) = (page.cases, page.next.map(|c| c.to_string()));
    debug!(role = principal.role.as_str(), actor = %principal.id, count = cases.len(), "cases listed");
    Ok(axum::Json(CaseList { cases, more: next.is_some(), next }))
}

/// The most repeats `GET /api/cases/{id}/repeats` answers.
pub(crate) const MAX_REPEATS: usize = 50;

/// `GET /api/cases/{id}/repeats`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RepeatList {
    /// The other cases reported within `radius_m` of the case or at the same address (folded:
    /// case, spaces and punctuation aside), created within `days` of it either way; newest
    /// first, at most 50, only those the key may see.
    pub cases: Vec<CaseRecord>,
    /// How near is the same place, metres.
    pub radius_m: f64,
    /// How many days apart, either way.
    pub days: i64,
}

/// `GET /api/cases/{id}/repeats`: repeat reports at the case's place or address (12345 work
/// spots repeat complaints by them), from the case book's search index. A department key gets
/// only its own cases among them, and 403 for another department's case.
pub(super) async fn repeats(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<RepeatList>, ApiError> {
    principal.require(CASE_ROLES, "read cases")?;
    visible(&state, &principal, &id).await?;
    let filter = CaseFilter { visible_to: principal.department().map(str::to_owned), ..CaseFilter::default() };
    let cases = state
        .cases
        .repeats(&id, &filter, MAX_REPEATS)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no case {id}")))?;
    debug!(role = principal.role.as_str(), actor = %principal.id, case_id = %id, count = cases.len(), "repeats listed");
    Ok(axum::Json(RepeatList { cases, radius_m: REPEAT_RADIUS_M, days: REPEAT_DAYS }))
}

/// 404 for what cannot be a case id (`>`, `a.*.>`: the case book's bucket would refuse it as a
/// key and the answer would be a 503).
fn check_case_id(case_id: &str) -> Result<(), ApiError> {
    if wire::is_event_id(case_id) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "no case {case_id:?}: a case id is 1-{} ASCII letters, digits, '-', '_' or ':'",
            wire::MAX_ID_LEN
        )))
    }
}

/// The case, if `principal` may see it: 404 when there is none, 403 when it is another
/// department's. One that left the case book's memory is read from its bucket.
async fn visible(state: &ApiState, principal: &Principal, case_id: &str) -> Result<CaseRecord, ApiError> {
    check_case_id(case_id)?;
    let record = state.cases.fetch(case_id).await?.ok_or_else(|| ApiError::NotFound(format!("no case {case_id}")))?;
    match principal.department() {
        Some(own) if !involves(&record, own) => Err(ApiError::Forbidden(format!("case {case_id} is not {own}'s"))),
        _ => Ok(record),
    }
}

/// `GET /api/cases/{id}`.
pub(super) async fn get_case(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<InReaderLanguage, ApiError> {
    principal.require(CASE_ROLES, "read cases")?;
    let record = visible(&state, &principal, &id).await.inspect_err(|e| {
        info!(role = principal.role.as_str(), actor = %principal.id, case_id = %id, refused = ?e.code(), "case read refused");
    })?;
    info!(role = principal.role.as_str(), actor = %principal.id, case_id = %id, "case read");
    Ok(InReaderLanguage::new(&state, &headers, record))
}

/// A case record answered in the reader's language: its explanation rendered from its reasons
/// as `Accept-Language` asks (English or Chinese, naming the region's things in it), said in
/// `Content-Language`; without the header, or for a language not written, the stored English
/// sentences.
pub(super) struct InReaderLanguage(CaseRecord, Option<Lang>);

impl InReaderLanguage {
    fn new(state: &ApiState, headers: &HeaderMap, mut record: CaseRecord) -> Self {
        let lang = reader_lang(headers).filter(|_| state.names.is_some());
        if let (Some(names), Some(lang)) = (&state.names, lang) {
            names.localize(&mut record, lang);
        }
        Self(record, lang)
    }
}

impl IntoResponse for InReaderLanguage {
    fn into_response(self) -> Response {
        let mut response = axum::Json(self.0).into_response();
        let headers = response.headers_mut();
        headers.insert(header::VARY, HeaderValue::from_static("accept-language"));
        if let Some(lang) = self.1 {
            headers.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.tag()));
        }
        response
    }
}

/// `POST /api/cases/{id}/actions`: a [`wire::Action`] as the key's department or dispatcher.
pub(super) async fn act(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<InReaderLanguage, ApiError> {
    principal.require(&[ApiRole::Dispatcher, ApiRole::Department], "act on cases")?;
    check_case_id(&id)?;
    let action = parse_action(&body?)?;
    let result = act_as(&state, &principal, &id, &action).await;
    match &result {
        Ok(r) => info!(
            role = principal.role.as_str(),
            actor = %principal.id,
            action = action.name(),
            case_id = %id,
            state = r.state.as_str(),
            "case action done"
        ),
        Err(e) => info!(
            role = principal.role.as_str(),
            actor = %principal.id,
            action = action.name(),
            case_id = %id,
            refused = %e,
            "case action refused"
        ),
    }
    result.map(|record| InReaderLanguage::new(&state, &headers, record))
}

async fn act_as(state: &ApiState, principal: &Principal, id: &str, action: &Action) -> Result<CaseRecord, ApiError> {
    let actor = match principal.role {
        ApiRole::Operator => return Err(ApiError::Forbidden("operator keys are read-only".into())),
        ApiRole::Source => return Err(ApiError::Forbidden("source keys may only use /api/requests/…".into())),
        ApiRole::Department => {
            // Not another department's case, whatever the action (a merged case would otherwise
            // answer 409 and tell where it went).
            visible(state, principal, id).await?;
            Actor { kind: ActorKind::Department, id: principal.id.clone() }
        }
        ApiRole::Dispatcher => Actor { kind: ActorKind::Dispatcher, id: principal.id.clone() },
    };
    Ok(state.cases.act(id, &actor, action).await?)
}

/// The action in a request body (also fuzzed: `fuzz/`, target `api_bodies`). Unknown fields are
/// refused by serde, on every variant (those without fields are empty struct variants,
/// `Accept {}`, for that).
pub fn parse_action(body: &[u8]) -> Result<Action, ApiError> {
    let action: Action = serde_json::from_slice(body).map_err(|e| ApiError::Invalid(format!("not an action: {e}")))?;
    check_texts(&action)?;
    Ok(action)
}

/// Refuses a blank reason or note where the action requires one (a reject, cancel or reassign
/// without a reason, a progress, resolve or update without a note, a reassign without a
/// department), and text fields longer than the bus accepts in a report: 422 before the case book
/// is asked, whatever the case's state.
pub(super) fn check_texts(action: &Action) -> Result<(), ApiError> {
    if let Some(field) = action.blank_required() {
        return Err(ApiError::Invalid(format!("{} needs a {field}: it is blank", action.name())));
    }
    let texts: Vec<&str> = match action {
        Action::Reject { reason } | Action::Cancel { reason } => vec![reason],
        Action::Progress { note }
        | Action::Resolve { note }
        | Action::Update { note }
        | Action::Note { note }
        | Action::Supervise { note }
        | Action::FollowUp { note, .. } => vec![note],
        Action::Close { note } => note.iter().map(String::as_str).collect(),
        Action::Reassign { department, reason } => vec![department, reason],
        Action::Split { report_id } => vec![report_id],
        Action::Rate { comment, .. } => comment.iter().map(String::as_str).collect(),
        Action::Accept {} | Action::AcknowledgeEscalation {} => vec![],
    };
    match texts.iter().find(|t| t.len() > wire::MAX_TEXT_LEN) {
        Some(_) => Err(ApiError::Invalid(format!("a text field is longer than {} bytes", wire::MAX_TEXT_LEN))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_required_reason_or_note_may_not_be_blank() {
        for (body, message) in [
            (&br#"{"action":"cancel","reason":""}"#[..], "cancel needs a reason: it is blank"),
            (
                br#"{"action":"reassign","department":"dpw-ops-queue","reason":" \n "}"#,
                "reassign needs a reason: it is blank",
            ),
            (br#"{"action":"reassign","department":"","reason":"closer"}"#, "reassign needs a department: it is blank"),
            (br#"{"action":"reject","reason":"  "}"#, "reject needs a reason: it is blank"),
            (br#"{"action":"resolve","note":""}"#, "resolve needs a note: it is blank"),
        ] {
            assert_eq!(parse_action(body), Err(ApiError::Invalid(message.into())), "{}", String::from_utf8_lossy(body));
        }
        let reassign = br#"{"action":"reassign","department":"dpw-ops-queue","reason":"closer"}"#;
        assert!(parse_action(reassign).is_ok());
        assert!(parse_action(br#"{"action":"close"}"#).is_ok(), "a close needs no note");
    }

    #[test]
    fn actions_without_fields_refuse_unknown_fields() {
        assert_eq!(parse_action(br#"{"action":"accept"}"#), Ok(Action::Accept {}));
        assert_eq!(parse_action(br#"{"action":"acknowledge_escalation"}"#), Ok(Action::AcknowledgeEscalation {}));
        for body in [&br#"{"action":"accept","x":1}"#[..], br#"{"action":"acknowledge_escalation","note":"x"}"#] {
            let error = parse_action(body).expect_err("an unknown field");
            assert!(matches!(&error, ApiError::Invalid(m) if m.contains("unknown field")), "{error:?}");
        }
    }
}
