//! The closed loop (闭环): what happens to a case after it is routed.
//!
//! - [`lifecycle`]: the pure state machine — accept, reject and re-route, progress, resolve,
//!   close, cancel, reassign, escalate on missed deadlines, merge and split duplicates,
//!   volunteers' answers and the offer cascade, the reporter's rating and reopening.
//! - [`book`]: the case book — records in the `linkbus_cases` KV bucket moved by
//!   revision-checked updates, the loops that open records for routed cases, serve department
//!   and volunteer requests over NATS, and fire deadlines; the hot set kept in memory and the
//!   listing index; the handle the HTTP API uses.
//! - [`webhooks`]: delivery of department cases to departments without NATS.
//! - [`supervision`]: the pure supervision figures (三率, 退单率, reopen rate, overdue, times) by
//!   group and period, which the book's index keeps over every record (`docs/supervision.md`).
//! - [`reports`]: the monthly reports as issued, immutable versions in the `linkbus_reports` KV
//!   bucket.
//! - [`metrics`]: the loop's Prometheus metrics (stage durations, offers, escalations, webhook
//!   deliveries, its dead letters).

pub mod book;
pub mod lifecycle;
pub mod metrics;
pub mod reports;
pub mod supervision;
pub mod webhooks;
