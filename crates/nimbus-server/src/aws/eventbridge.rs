//! EventBridge's PutEvents (JSON 1.1, `X-Amz-Target: AWSEvents.PutEvents`), onto the buses
//! of the app: the functions whose `eventBridge` rules match an event are invoked with it.

use axum::response::Response;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::events::PutEvent;
use crate::generation::Generation;
use crate::services::{self, Principal};

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// EventBridge's most entries in one PutEvents.
const MAX_ENTRIES: usize = 10;
/// EventBridge's largest request: 256 KiB.
const MAX_REQUEST_BYTES: usize = 256 * 1024;

pub(crate) async fn handle(
    generation: &Generation,
    principal: Principal<'_>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Response {
    let operation = super::target_operation(parts, super::Service::Events).unwrap_or_default();
    let res = match operation {
        "PutEvents" => put_events(generation, principal, parts, body).await,
        other => Err(EventsError::new(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("nimbus serves EventBridge's PutEvents only, not {other:?}"),
        )),
    };
    match res {
        Ok(res) => res,
        Err(e) => error_response(e.status, &e.code, &e.message),
    }
}

/// An EventBridge error: `__type` and `message`, as the SDKs read them.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": code, "message": message });
    super::response(status, CONTENT_TYPE, body.to_string().into_bytes())
}

struct EventsError {
    status: StatusCode,
    code: String,
    message: String,
}

impl EventsError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> EventsError {
        EventsError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl From<services::OpError> for EventsError {
    fn from(e: services::OpError) -> EventsError {
        let e = e.error;
        let (status, code) = match e.error_type {
            Some("AccessDenied") => (StatusCode::BAD_REQUEST, "AccessDeniedException"),
            _ if e.status.is_server_error() => {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalException")
            }
            Some(code) => (e.status, code),
            None => (StatusCode::BAD_REQUEST, "ValidationException"),
        };
        EventsError::new(status, code, e.message)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutEventsRequest {
    entries: Vec<RequestEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RequestEntry {
    source: Option<String>,
    detail_type: Option<String>,
    detail: Option<String>,
    event_bus_name: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    /// Seconds since the epoch, as the SDKs send a timestamp in JSON 1.1.
    time: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutEventsResponse {
    failed_entry_count: usize,
    entries: Vec<ResultEntry>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ResultEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
}

async fn put_events(
    generation: &Generation,
    principal: Principal<'_>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Response, EventsError> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(EventsError::new(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            format!(
                "the request is {} bytes; PutEvents takes at most 256 KiB",
                body.len()
            ),
        ));
    }
    let request: PutEventsRequest = serde_json::from_slice(body).map_err(|e| {
        EventsError::new(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            format!("the request body is not a PutEvents request: {e}"),
        )
    })?;
    if request.entries.is_empty() || request.entries.len() > MAX_ENTRIES {
        return Err(EventsError::new(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            format!(
                "1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and {MAX_ENTRIES}"
            ),
        ));
    }
    // Entries that are malformed fail alone, as EventBridge answers them.
    let mut outcomes: Vec<Result<Option<PutEvent>, (String, String)>> = Vec::new();
    for entry in request.entries {
        outcomes.push(check_entry(entry).map(Some));
    }
    let valid: Vec<PutEvent> = outcomes
        .iter_mut()
        .filter_map(|outcome| match outcome {
            Ok(event) => event.take(),
            Err(_) => None,
        })
        .collect();
    let trace = crate::gateway::incoming_trace(&parts.headers);
    let mut put = services::put_events(&generation.events, principal, valid, &trace)
        .await?
        .into_iter();
    let entries: Vec<ResultEntry> = outcomes
        .into_iter()
        .map(|outcome| match outcome.map(|_| put.next()) {
            Ok(Some(Ok(id))) => ResultEntry {
                event_id: Some(id),
                ..ResultEntry::default()
            },
            Ok(Some(Err(e))) => ResultEntry {
                error_code: Some(e.error_type.unwrap_or("InternalFailure").to_owned()),
                error_message: Some(e.message),
                ..ResultEntry::default()
            },
            Ok(None) => ResultEntry {
                error_code: Some("InternalFailure".to_owned()),
                error_message: Some("the event was not put".to_owned()),
                ..ResultEntry::default()
            },
            Err((code, message)) => ResultEntry {
                error_code: Some(code),
                error_message: Some(message),
                ..ResultEntry::default()
            },
        })
        .collect();
    let response = PutEventsResponse {
        failed_entry_count: entries.iter().filter(|e| e.error_code.is_some()).count(),
        entries,
    };
    let body = serde_json::to_vec(&response).map_err(|e| {
        EventsError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalException",
            e.to_string(),
        )
    })?;
    Ok(super::response(StatusCode::OK, CONTENT_TYPE, body))
}

/// An entry as a put, or EventBridge's error code and message for it.
fn check_entry(entry: RequestEntry) -> Result<PutEvent, (String, String)> {
    let malformed = |what: &str| ("MalformedDetail".to_owned(), what.to_owned());
    let (Some(source), Some(detail_type)) = (entry.source, entry.detail_type) else {
        return Err((
            "InvalidArgument".to_owned(),
            "Parameters Source and DetailType are required".to_owned(),
        ));
    };
    let detail = match entry.detail.as_deref() {
        None | Some("") => serde_json::json!({}),
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(detail) if detail.is_object() => detail,
            _ => return Err(malformed("Detail is malformed: it must be a JSON object")),
        },
    };
    // A bus by name or ARN (`arn:aws:events:REGION:ACCOUNT:event-bus/NAME`).
    let bus = entry
        .event_bus_name
        .filter(|bus| !bus.is_empty())
        .map_or_else(
            || "default".to_owned(),
            |bus| {
                bus.rsplit_once(":event-bus/")
                    .map_or(bus.as_str(), |(_, name)| name)
                    .to_owned()
            },
        );
    let time = entry.time.and_then(|secs| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::try_from_secs_f64(secs).ok()?;
        let text = nimbus_core::time::rfc3339_millis(at);
        Some(format!("{}Z", text.get(..19)?))
    });
    Ok(PutEvent {
        bus,
        source,
        detail_type,
        detail,
        resources: entry.resources,
        time,
    })
}
