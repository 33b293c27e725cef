//! The services API's telemetry answers: invocation records, log lines and spans
//! (`/v1/invocations`, `/v1/logs`, `/v1/traces`), as `nimbus invocations --json` and
//! `nimbus logs --json` print them.

use nimbus_core::time::rfc3339_millis;
use nimbus_store::{InvocationRecord, LogRecord, SpanRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::from_text;

/// `GET /v1/invocations`: which records, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListInvocations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// `failed` (anything but `ok`) or one outcome: `ok`, `error`, `timeout`, `throttled`,
    /// `out-of-memory`, `crashed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Only those that started in the last this many seconds.
    #[serde(
        default,
        deserialize_with = "from_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub since: Option<f64>,
    /// 1 to 1000; 100 when absent.
    #[serde(
        default,
        deserialize_with = "from_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit: Option<usize>,
}

/// `GET /v1/logs`: which lines, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListLogs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Only lines of the last this many seconds; 900 when absent.
    #[serde(
        default,
        deserialize_with = "from_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub since: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationList {
    pub invocations: Vec<Invocation>,
}

/// `GET /v1/invocations/{requestId}`: the record, its log lines (START/END/REPORT
/// included) and its trace's spans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationDetail {
    pub invocation: Invocation,
    pub logs: Vec<LogLine>,
    pub spans: Vec<Span>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogList {
    pub lines: Vec<LogLine>,
}

/// `GET /v1/traces/{traceId}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub spans: Vec<Span>,
}

/// One invocation's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invocation {
    pub billed_ms: u64,
    pub cold_start: bool,
    /// Whether the cold start was served by a pre-started runtime process.
    #[serde(default)]
    pub prestarted: bool,
    pub duration_ms: f64,
    pub error_message: Option<String>,
    pub error_type: Option<String>,
    pub function: String,
    pub init_duration_ms: Option<f64>,
    pub log_lines_dropped: u64,
    pub max_memory_used_mb: u32,
    pub memory_mb: u32,
    /// `ok`, `error`, `timeout`, `throttled`, `out-of-memory` or `crashed`.
    pub outcome: String,
    pub request_id: String,
    /// RFC 3339 with milliseconds, in UTC.
    pub start: String,
    pub trace_id: String,
    /// `http`, `invoke`, `queue`, `cron`, ...
    pub trigger: String,
    pub version: String,
}

/// One line a function (or the platform: START, END, REPORT) wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// The line's JSON object, when it was a JSON log line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Value>,
    pub function: String,
    pub level: String,
    pub message: String,
    pub request_id: Option<String>,
    /// `stdout`, `stderr` or `platform`.
    pub stream: String,
    /// RFC 3339 with milliseconds, in UTC.
    pub time: String,
}

/// One span of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    /// `[key, value]` pairs in the order they were set.
    pub attributes: Vec<(String, String)>,
    pub duration_ms: f64,
    pub end: String,
    pub kind: String,
    pub name: String,
    pub parent_span_id: Option<String>,
    pub span_id: String,
    pub start: String,
    /// `ok` or `error`.
    pub status: String,
    pub trace_id: String,
}

impl From<&InvocationRecord> for Invocation {
    fn from(record: &InvocationRecord) -> Invocation {
        Invocation {
            billed_ms: record.billed_ms,
            cold_start: record.cold_start,
            prestarted: record.prestarted,
            duration_ms: record.duration.as_secs_f64() * 1000.0,
            error_message: record.error_message.clone(),
            error_type: record.error_type.clone(),
            function: record.function.clone(),
            init_duration_ms: record.init_duration.map(|d| d.as_secs_f64() * 1000.0),
            log_lines_dropped: record.log_lines_dropped,
            max_memory_used_mb: record.max_memory_mb,
            memory_mb: record.memory_mb,
            outcome: record.outcome.clone(),
            request_id: record.request_id.clone(),
            start: rfc3339_millis(record.start),
            trace_id: record.trace_id.clone(),
            trigger: record.trigger.clone(),
            version: record.version.clone(),
        }
    }
}

impl From<&LogRecord> for LogLine {
    fn from(record: &LogRecord) -> LogLine {
        LogLine {
            fields: record
                .fields
                .as_deref()
                .and_then(|f| serde_json::from_str(f).ok()),
            function: record.function.clone(),
            level: record.level.clone(),
            message: record.message.clone(),
            request_id: record.request_id.clone(),
            stream: record.stream.clone(),
            time: rfc3339_millis(record.time),
        }
    }
}

impl From<&SpanRecord> for Span {
    fn from(span: &SpanRecord) -> Span {
        Span {
            attributes: span.attributes.clone(),
            duration_ms: span
                .end
                .duration_since(span.start)
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0,
            end: rfc3339_millis(span.end),
            kind: span.kind.clone(),
            name: span.name.clone(),
            parent_span_id: span.parent_span_id.clone(),
            span_id: span.span_id.clone(),
            start: rfc3339_millis(span.start),
            status: span.status.clone(),
            trace_id: span.trace_id.clone(),
        }
    }
}
