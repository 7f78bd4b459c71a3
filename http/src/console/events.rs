//! `GET /console/events`: the live cases over Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use jiff::Timestamp;
use linkbus_cases::book::CaseBook;
use linkbus_wire::CaseRecord;
use prometheus::IntGauge;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tracing::info;

use super::board::{CaseSummary, is_live, live_cases};
use super::delivery::gzip_stream;
use super::state::{ConsoleState, require_console};
use crate::auth::Principal;
use crate::auth::session::cookie;
use crate::error::ApiError;

/// The most cases a `reset` sends (the most recently changed first).
const MAX_LIVE: usize = 5000;

/// Counts an open event stream while it lives.
struct OpenStream(IntGauge);

impl OpenStream {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `GET /console/events`: a `reset` with every live case, then a `case` per change; a `reset`
/// again if this stream fell behind the book's changes. Ends when `linkbus up` stops, or the
/// session it was opened with ends.
pub(super) async fn events(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    principal: Principal,
) -> Result<Response, ApiError> {
    require_console(&principal)?;
    let console = state.console.clone().ok_or_else(|| ApiError::NotFound("the console is off here".into()))?;
    info!(role = ?principal.role, actor = %principal.id, "console watching");
    // A stream opened with a session ends with it, when it expires or is signed out: the page
    // then reconnects, is refused, and asks to sign in again.
    let session = match headers.contains_key(header::AUTHORIZATION) {
        true => None,
        false => cookie(&headers).and_then(|value| Some((value.to_owned(), state.auth.session(value)?))),
    };
    let (auth, mut raised) = (state.auth.clone(), console.sessions.raised());
    let session_ended = async move {
        let Some((value, session)) = session else { return std::future::pending().await };
        let left =
            Duration::from_secs(u64::try_from(session.expires - Timestamp::now().as_second()).unwrap_or_default());
        let signed_out = async {
            while raised.changed().await.is_ok() {
                if auth.session(&value).is_none() {
                    return;
                }
            }
            std::future::pending().await
        };
        tokio::select! {
            () = tokio::time::sleep(left) => {}
            () = signed_out => {}
        }
    };
    // Subscribe before reading the book, so no change falls between the two.
    let changes = console.book.subscribe();
    let reset = reset_event(&console.book);
    let open = (changes, console.book.clone(), OpenStream::new(&console.metrics.streams));
    let live = futures::stream::unfold(open, |(mut changes, book, open)| async move {
        let event = match changes.recv().await {
            Ok(record) => case_event(&record),
            Err(RecvError::Lagged(_)) => reset_event(&book),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), (changes, book, open)))
    });
    let stream = futures::stream::once(async move { Ok(reset.retry(Duration::from_secs(1))) })
        .chain(live)
        .take_until(console.stop.clone().cancelled_owned())
        .take_until(session_ended);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    // Proxies that buffer responses (nginx) would hold the events back.
    let response = ([(HeaderName::from_static("x-accel-buffering"), "no")], sse).into_response();
    Ok(gzip_stream(&headers, response))
}

fn reset_event(book: &CaseBook) -> Event {
    let now = Timestamp::now();
    let body = json!({ "cases": live_cases(book.list_where(|r| is_live(r, now)), now, MAX_LIVE), "now": now });
    Event::default().event("reset").data(body.to_string())
}

fn case_event(record: &CaseRecord) -> Event {
    let body = serde_json::to_string(&CaseSummary::of(record)).unwrap_or_else(|_| "{}".into());
    Event::default().event("case").data(body)
}
