//! `/healthz`, `/readyz` and `/metrics`: unauthenticated, as probes and Prometheus present no
//! key.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use tracing::debug;

use crate::state::ApiState;

/// The content type of Prometheus's text format.
pub(crate) const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The body of `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ReadyBody {
    /// True when NATS is connected, JetStream stores what linkbus publishes (no "storage
    /// refused"), every stream and bucket exists and the region is loaded.
    pub ready: bool,
    /// Why not, when not ready, e.g. "NATS is not connected" or "storage refused: JetStream
    /// refuses messages to LINKBUS_INGEST_EMERGENCY (maximum bytes exceeded …)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /healthz`: serving.
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 when the [`Readiness`](crate::state::Readiness) probe says so, 503 with
/// its reason otherwise (and without a probe).
pub(super) async fn readyz(State(state): State<ApiState>) -> Response {
    let verdict = match &state.readiness {
        Some(probe) => probe.ready().await,
        None => Err("no service behind this API to be ready".to_owned()),
    };
    match verdict {
        Ok(()) => axum::Json(ReadyBody { ready: true, reason: None }).into_response(),
        Err(reason) => {
            debug!(reason, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(ReadyBody { ready: false, reason: Some(reason) }))
                .into_response()
        }
    }
}

/// `registry` in Prometheus's text format 0.0.4.
pub fn render(registry: &prometheus::Registry) -> String {
    let mut out = String::new();
    // Encoding into a String fails only for metric families without a type, which the
    // registry's collectors never produce.
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "cannot encode the metrics");
    }
    out
}

/// `GET /metrics`.
pub(super) async fn metrics(State(state): State<ApiState>) -> Response {
    let body = render(&state.metrics);
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response()
}
