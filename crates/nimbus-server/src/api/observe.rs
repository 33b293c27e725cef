//! The services API's telemetry: invocation records, an invocation with its log lines and
//! trace, a trace's spans and recent log lines, read through the store's readers (as
//! `nimbus invocations`, `nimbus logs` and `nimbus trace` read them). The dashboard's pages
//! read through the same functions.

use std::time::{Duration, SystemTime};

use axum::extract::Path;
use http::StatusCode;
use nimbus_store::{InvocationQuery, InvocationRecord, LogQuery, LogRecord, SpanRecord};

use super::{Caller, Json, Query, wire};
use crate::error::ApiError;
use crate::events::Events;
use crate::services::bad_request;

/// Records a listing gives when the query names no limit, and the most it gives.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;
/// `GET /v1/logs` covers this much when the query names no `since`, and gives at most
/// this many lines (the newest).
const DEFAULT_LOG_WINDOW: Duration = Duration::from_secs(15 * 60);
const MAX_LOG_LINES: usize = 1_000;
/// Outcomes an invocation can have (`failed` is every one but `ok`).
const OUTCOMES: &[&str] = &[
    "ok",
    "error",
    "timeout",
    "throttled",
    "out-of-memory",
    "crashed",
];

/// Which invocations `invocations` reads.
pub(crate) struct InvocationFilter {
    pub(crate) function: Option<String>,
    pub(crate) outcome: Outcome,
    pub(crate) since: Option<SystemTime>,
    pub(crate) limit: Option<usize>,
}

/// Which outcomes an `InvocationFilter` keeps.
pub(crate) enum Outcome {
    Any,
    /// Anything but `ok`.
    Failed,
    One(String),
}

/// An invocation's record, its log lines (with START/END/REPORT) and its trace's spans.
pub(crate) struct InvocationDetail {
    pub(crate) record: InvocationRecord,
    pub(crate) lines: Vec<LogRecord>,
    pub(crate) spans: Vec<SpanRecord>,
}

/// Invocations matching `filter`, newest first.
pub(crate) async fn invocations(
    events: &Events,
    filter: InvocationFilter,
) -> Result<Vec<InvocationRecord>, ApiError> {
    let query = InvocationQuery {
        function: filter.function,
        failed_only: matches!(filter.outcome, Outcome::Failed),
        since: filter.since,
        limit: filter.limit,
    };
    events
        .store(move |store| match &filter.outcome {
            Outcome::One(outcome) => store.invocations_with_outcome(&query, outcome),
            Outcome::Any | Outcome::Failed => store.invocations(&query),
        })
        .await
        .map_err(ApiError::from)
}

/// One invocation with its log lines and trace; `None` when no record of it is kept.
pub(crate) async fn invocation_detail(
    events: &Events,
    request_id: String,
) -> Result<Option<InvocationDetail>, ApiError> {
    events
        .store(move |store| {
            let Some(record) = store.invocation(&request_id)? else {
                return Ok(None);
            };
            let lines = store.logs(&LogQuery {
                function: None,
                request_id: Some(request_id),
                since: None,
                after: None,
            })?;
            let spans = store.spans(&record.trace_id)?;
            Ok(Some(InvocationDetail {
                record,
                lines: lines.lines,
                spans,
            }))
        })
        .await
        .map_err(ApiError::from)
}

/// `GET /v1/invocations?function=&outcome=&since=&limit=`.
pub(super) async fn list_invocations(
    caller: Caller,
    Query(query): Query<wire::ListInvocations>,
) -> Result<Json<wire::InvocationList>, ApiError> {
    check(&caller)?;
    let outcome = match query.outcome.as_deref() {
        None | Some("") => Outcome::Any,
        Some("failed") => Outcome::Failed,
        Some(outcome) if OUTCOMES.contains(&outcome) => Outcome::One(outcome.to_owned()),
        Some(other) => {
            return Err(bad_request(format!(
                "outcome `{other}` is not one of failed, {}",
                OUTCOMES.join(", ")
            )));
        }
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad_request(format!(
            "limit {limit} is not between 1 and {MAX_LIMIT}"
        )));
    }
    let records = invocations(
        &caller.api.events,
        InvocationFilter {
            function: query.function.filter(|f| !f.is_empty()),
            outcome,
            since: query.since.map(since).transpose()?,
            limit: Some(limit),
        },
    )
    .await?;
    Ok(Json(wire::InvocationList {
        invocations: records.iter().map(wire::Invocation::from).collect(),
    }))
}

/// `GET /v1/invocations/{requestId}`.
pub(super) async fn get_invocation(
    caller: Caller,
    Path(request_id): Path<String>,
) -> Result<Json<wire::InvocationDetail>, ApiError> {
    check(&caller)?;
    let Some(detail) = invocation_detail(&caller.api.events, request_id.clone()).await? else {
        return Err(not_found(format!(
            "no invocation with request id `{request_id}` is recorded"
        )));
    };
    Ok(Json(wire::InvocationDetail {
        invocation: wire::Invocation::from(&detail.record),
        logs: detail.lines.iter().map(wire::LogLine::from).collect(),
        spans: detail.spans.iter().map(wire::Span::from).collect(),
    }))
}

/// `GET /v1/traces/{traceId}`.
pub(super) async fn get_trace(
    caller: Caller,
    Path(trace_id): Path<String>,
) -> Result<Json<wire::Trace>, ApiError> {
    check(&caller)?;
    let id = trace_id.clone();
    let spans = caller
        .api
        .events
        .store(move |store| store.spans(&id))
        .await?;
    if spans.is_empty() {
        return Err(not_found(format!(
            "no span of trace `{trace_id}` is recorded"
        )));
    }
    Ok(Json(wire::Trace {
        spans: spans.iter().map(wire::Span::from).collect(),
    }))
}

/// `GET /v1/logs?function=&requestId=&since=`.
pub(super) async fn list_logs(
    caller: Caller,
    Query(query): Query<wire::ListLogs>,
) -> Result<Json<wire::LogList>, ApiError> {
    check(&caller)?;
    let since = match query.since {
        Some(seconds) => since(seconds)?,
        None => SystemTime::now() - DEFAULT_LOG_WINDOW,
    };
    let log_query = LogQuery {
        function: query.function.filter(|f| !f.is_empty()),
        request_id: query.request_id.filter(|r| !r.is_empty()),
        since: Some(since),
        after: None,
    };
    let page = caller
        .api
        .events
        .store(move |store| store.logs(&log_query))
        .await?;
    let skip = page.lines.len().saturating_sub(MAX_LOG_LINES);
    Ok(Json(wire::LogList {
        lines: page.lines[skip..].iter().map(wire::LogLine::from).collect(),
    }))
}

/// Telemetry is the operator's (or a function's granted `nimbus:ReadTelemetry`).
fn check(caller: &Caller) -> Result<(), ApiError> {
    caller.principal().check("nimbus:ReadTelemetry", "*")
}

/// The time `seconds` ago.
fn since(seconds: f64) -> Result<SystemTime, ApiError> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .and_then(|ago| SystemTime::now().checked_sub(ago))
        .ok_or_else(|| bad_request(format!("since {seconds} is not a number of seconds ago")))
}

fn not_found(message: String) -> ApiError {
    ApiError::typed(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
}
