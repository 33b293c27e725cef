//! The observability pages: overview, a function, an invocation (logs and trace), the live
//! log tail and cost. Their numbers come from the store's readers, as `nimbus top`,
//! `nimbus invocations`, `nimbus logs`, `nimbus trace` and `nimbus cost` read them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use nimbus_store::{InvocationRecord, LogQuery, LogRecord, SpanRecord};
use tokio::sync::mpsc;

use super::html::{self, ChartKind, Series, esc, seg};
use super::{Dash, EventStream};
use crate::api::observe::{InvocationDetail, InvocationFilter, Outcome};
use crate::error::ApiError;

/// The overview covers the last hour, in minutes.
const OVERVIEW_MINUTES: usize = 60;
/// A function page lists this many invocations, newest first.
const RECENT_INVOCATIONS: usize = 100;
/// The live tail starts with at most this many lines of the last few minutes.
const TAIL_BACKLOG: usize = 200;
const TAIL_BACKLOG_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How often the live tail asks the store for new lines; the store commits every 250 ms.
const TAIL_POLL: Duration = Duration::from_millis(200);
/// A comment line this often lets a tail notice a client that went away.
const TAIL_KEEPALIVE: Duration = Duration::from_secs(15);

/// Per function (and for the app) over the overview's window.
#[derive(Default)]
struct Totals {
    n_invocations: u64,
    n_errors: u64,
    n_throttles: u64,
    n_cold: u64,
    durations: Histogram,
}

/// Per minute of the overview's window.
#[derive(Default, Clone)]
struct Minute {
    n_invocations: u64,
    n_errors: u64,
    n_cold: u64,
    durations: Histogram,
}

/// Durations in the store's rollup buckets: per bucket lower bound, how many and their sum.
#[derive(Default, Clone)]
struct Histogram(BTreeMap<Duration, (u64, Duration)>);

impl Histogram {
    fn add(&mut self, lower: Duration, n: u64, total: Duration) {
        let bucket = self.0.entry(lower).or_default();
        bucket.0 += n;
        bucket.1 += total;
    }

    /// The nearest-rank percentile `q`, as the mean of the bucket it falls in, in ms.
    fn percentile_ms(&self, q: f64) -> Option<f64> {
        let n: u64 = self.0.values().map(|(n, _)| n).sum();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (n_bucket, total) in self.0.values() {
            seen += n_bucket;
            if seen >= rank {
                return Some(total.as_secs_f64() * 1000.0 / (*n_bucket).max(1) as f64);
            }
        }
        None
    }
}

pub(crate) async fn overview(dash: Dash) -> Result<Response, ApiError> {
    // Whole minutes: the one now is in and the 59 before it, from the store's rollups, so
    // the page reads a few rows per function and minute however many invocations there were.
    let now_minute = SystemTime::UNIX_EPOCH
        + Duration::from_secs(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                / 60
                * 60,
        );
    let first_minute = now_minute - Duration::from_secs(60 * (OVERVIEW_MINUTES as u64 - 1));
    let rollups = dash
        .api
        .events
        .store(move |store| store.invocation_minutes(first_minute))
        .await?;
    let mut totals: BTreeMap<&str, Totals> = BTreeMap::new();
    let mut minutes = vec![Minute::default(); OVERVIEW_MINUTES];
    let mut n_invocations = 0;
    for rollup in &rollups {
        let minute_idx = rollup
            .minute
            .duration_since(first_minute)
            .unwrap_or_default()
            .as_secs()
            / 60;
        // A minute after now's (a clock set back) counts in the last one.
        let minute = &mut minutes[(minute_idx as usize).min(OVERVIEW_MINUTES - 1)];
        let total = totals.entry(rollup.function.as_str()).or_default();
        n_invocations += rollup.n_invocations;
        total.n_invocations += rollup.n_invocations;
        total.n_errors += rollup.n_errors;
        total.n_throttles += rollup.n_throttles;
        total.n_cold += rollup.n_cold;
        minute.n_invocations += rollup.n_invocations;
        minute.n_errors += rollup.n_errors;
        minute.n_cold += rollup.n_cold;
        // Throttled invocations never ran: no duration.
        if let Some(lower) = rollup.lower {
            let n_ran = rollup.n_invocations - rollup.n_throttles.min(rollup.n_invocations);
            total.durations.add(lower, n_ran, rollup.total_duration);
            minute.durations.add(lower, n_ran, rollup.total_duration);
        }
    }
    let prefix = &dash.prefix;
    let mut body = String::new();
    let _ = write!(
        body,
        "<p class=\"lead\">The last hour: {} invocations, {} errors, {} cold starts.</p>",
        n_invocations,
        totals.values().map(|t| t.n_errors).sum::<u64>(),
        totals.values().map(|t| t.n_cold).sum::<u64>()
    );
    body.push_str(
        "<table class=\"functions\"><thead><tr><th>Function</th><th>Runtime</th><th>Routes</th>\
<th>Warm</th><th>Busy</th><th>Invocations</th><th>Errors</th><th>Throttles</th>\
<th>Cold starts</th><th>p50</th><th>p99</th></tr></thead><tbody>",
    );
    let functions = &dash.api.generation.functions;
    for function in &functions.list {
        let name = function.spec.name.as_str();
        let stats = function.executor.stats();
        let total = totals.remove(name).unwrap_or_default();
        let routes: Vec<String> = function
            .spec
            .http_routes
            .iter()
            .map(|route| format!("<code>{} {}</code>", route.method, esc(&route.path)))
            .collect();
        let latency = |q| {
            total
                .durations
                .percentile_ms(q)
                .map_or("-".to_owned(), |ms| format!("{ms:.2} ms"))
        };
        let _ = write!(
            body,
            "<tr data-function=\"{}\"><th scope=\"row\"><a href=\"{prefix}/functions/{}\">{}</a></th>\
<td>{}</td><td>{}</td><td class=\"warm\">{}</td><td class=\"busy\">{}</td>\
<td class=\"invocations\">{}</td><td class=\"errors\">{}</td><td class=\"throttles\">{}</td>\
<td class=\"cold\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            seg(name),
            esc(name),
            esc(&function.spec.runtime.to_string()),
            if routes.is_empty() {
                "-".to_owned()
            } else {
                routes.join("<br>")
            },
            stats.n_instances.saturating_sub(stats.n_busy),
            stats.n_busy,
            total.n_invocations,
            total.n_errors,
            total.n_throttles,
            total.n_cold,
            latency(0.50),
            latency(0.99),
        );
    }
    body.push_str("</tbody></table>");
    // Functions that were invoked but are no longer served (renamed in a reload).
    if !totals.is_empty() {
        let gone: Vec<String> = totals.keys().map(|name| esc(name)).collect();
        let _ = write!(
            body,
            "<p class=\"hint\">Also invoked in the last hour, no longer served: {}.</p>",
            gone.join(", ")
        );
    }
    let series = |f: &dyn Fn(&Minute) -> Option<f64>| minutes.iter().map(f).collect::<Vec<_>>();
    body.push_str("<div class=\"charts\">");
    body.push_str(&html::chart(
        "Invocations and errors",
        "count",
        ChartKind::Bars,
        &[
            Series {
                label: "invocations",
                class: "s-invocations",
                values: series(&|m| Some(m.n_invocations as f64)),
            },
            Series {
                label: "errors",
                class: "s-errors",
                values: series(&|m| Some(m.n_errors as f64)),
            },
        ],
    ));
    body.push_str(&html::chart(
        "Cold starts",
        "count",
        ChartKind::Bars,
        &[Series {
            label: "cold starts",
            class: "s-cold",
            values: series(&|m| Some(m.n_cold as f64)),
        }],
    ));
    body.push_str(&html::chart(
        "Duration p50 and p99",
        "ms",
        ChartKind::Lines,
        &[
            Series {
                label: "p50",
                class: "s-p50",
                values: series(&|m| m.durations.percentile_ms(0.50)),
            },
            Series {
                label: "p99",
                class: "s-p99",
                values: series(&|m| m.durations.percentile_ms(0.99)),
            },
        ],
    ));
    body.push_str("</div>");
    Ok(html::page(prefix, "/", "Overview", &body))
}

pub(crate) async fn function(
    dash: Dash,
    Path(name): Path<String>,
    uri: http::Uri,
) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let generation = dash.api.generation.clone();
    let Some(function) = generation
        .functions
        .list
        .iter()
        .find(|f| f.spec.name == name)
    else {
        return Ok(html::not_found(
            prefix,
            &format!("There is no function named `{name}` in this app."),
        ));
    };
    let failed_only = crate::api::query(&uri)
        .get("failed")
        .is_some_and(|v| v == "1" || v == "true");
    let records = crate::api::observe::invocations(
        &dash.api.events,
        InvocationFilter {
            function: Some(name.clone()),
            outcome: if failed_only {
                Outcome::Failed
            } else {
                Outcome::Any
            },
            since: None,
            limit: Some(RECENT_INVOCATIONS),
        },
    )
    .await?;
    let spec = &function.spec;
    let stats = function.executor.stats();
    let mut body = String::new();
    let _ = write!(
        body,
        "<dl class=\"facts\"><dt>Runtime</dt><dd>{}</dd><dt>Handler</dt><dd><code>{}</code></dd>\
<dt>Memory</dt><dd>{} MB</dd><dt>Timeout</dt><dd>{}</dd><dt>Instances</dt><dd>{} warm, {} busy</dd>",
        esc(&spec.runtime.to_string()),
        esc(&spec.handler),
        spec.memory_mb,
        html::ms(spec.timeout),
        stats.n_instances.saturating_sub(stats.n_busy),
        stats.n_busy,
    );
    for route in &spec.http_routes {
        let _ = write!(
            body,
            "<dt>Route</dt><dd><code>{} {}</code></dd>",
            route.method,
            esc(&route.path)
        );
    }
    body.push_str("</dl>");
    let base = format!("{prefix}/functions/{}", seg(&name));
    let _ = write!(
        body,
        "<p class=\"filters\">Show: <a href=\"{base}\"{}>all invocations</a> · \
<a href=\"{base}?failed=1\"{}>failures only</a></p>",
        if failed_only {
            ""
        } else {
            " aria-current=\"true\""
        },
        if failed_only {
            " aria-current=\"true\""
        } else {
            ""
        },
    );
    if records.is_empty() {
        body.push_str("<p class=\"empty\">No invocations recorded.</p>");
    } else {
        body.push_str(&invocation_table(prefix, &records));
    }
    Ok(html::page(prefix, "", &format!("Function {name}"), &body))
}

fn invocation_table(prefix: &str, records: &[InvocationRecord]) -> String {
    let mut table = String::from(
        "<table class=\"invocations\"><thead><tr><th>Start</th><th>Request id</th><th>Status</th>\
<th>Trigger</th><th>Duration</th><th>Billed</th><th>Memory</th><th>Start</th><th>Error</th></tr></thead><tbody>",
    );
    for record in records {
        let error = match (&record.error_type, &record.error_message) {
            (Some(t), Some(m)) => format!("{t}: {m}"),
            (Some(t), None) => t.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => String::new(),
        };
        let _ = write!(
            table,
            "<tr class=\"{}\" data-request-id=\"{}\"><td>{}</td><td><a href=\"{prefix}/invocations/{}\">{}</a></td>\
<td class=\"status\">{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{} / {} MB</td><td>{}</td><td>{}</td></tr>",
            if record.outcome == "ok" {
                "ok"
            } else {
                "failed"
            },
            esc(&record.request_id),
            html::time(record.start),
            seg(&record.request_id),
            esc(&record.request_id),
            status_text(&record.outcome),
            esc(&record.trigger),
            html::ms(record.duration),
            record.billed_ms,
            record.max_memory_mb,
            record.memory_mb,
            if record.cold_start { "cold" } else { "warm" },
            esc(&error),
        );
    }
    table.push_str("</tbody></table>");
    table
}

/// An outcome in words with a symbol, so it reads without colour.
fn status_text(outcome: &str) -> String {
    match outcome {
        "ok" => "✓ ok".to_owned(),
        other => format!("✗ {}", esc(other)),
    }
}

pub(crate) async fn invocation(
    dash: Dash,
    Path(request_id): Path<String>,
) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let Some(InvocationDetail {
        record,
        lines,
        spans,
    }) = crate::api::observe::invocation_detail(&dash.api.events, request_id.clone()).await?
    else {
        return Ok(html::not_found(
            prefix,
            &format!("No invocation with request id `{request_id}` is recorded."),
        ));
    };
    let mut body = String::new();
    let _ = write!(
        body,
        "<dl class=\"facts\"><dt>Function</dt><dd><a href=\"{prefix}/functions/{}\">{}</a></dd>\
<dt>Status</dt><dd class=\"status\">{}</dd><dt>Trigger</dt><dd>{}</dd><dt>Start</dt><dd>{}</dd>\
<dt>Duration</dt><dd>{}</dd><dt>Billed</dt><dd>{} ms</dd><dt>Memory</dt><dd>{} of {} MB</dd>\
<dt>Start kind</dt><dd>{}</dd><dt>Trace</dt><dd><code>{}</code></dd>",
        seg(&record.function),
        esc(&record.function),
        status_text(&record.outcome),
        esc(&record.trigger),
        html::time(record.start),
        html::ms(record.duration),
        record.billed_ms,
        record.max_memory_mb,
        record.memory_mb,
        match record.init_duration {
            Some(init) => format!("cold (init {})", html::ms(init)),
            None if record.cold_start => "cold".to_owned(),
            None => "warm".to_owned(),
        },
        esc(&record.trace_id),
    );
    if let Some(error_type) = &record.error_type {
        let _ = write!(body, "<dt>Error</dt><dd>{}</dd>", esc(error_type));
    }
    if let Some(message) = &record.error_message {
        let _ = write!(body, "<dt>Message</dt><dd>{}</dd>", esc(message));
    }
    body.push_str("</dl><h2>Trace</h2>");
    body.push_str(&waterfall(prefix, &spans));
    body.push_str("<h2>Log lines</h2>");
    if record.log_lines_dropped > 0 {
        let _ = write!(
            body,
            "<p class=\"notice\">{} lines of this invocation's output were not kept.</p>",
            record.log_lines_dropped
        );
    }
    body.push_str(&log_list(&lines));
    Ok(html::page(
        prefix,
        "",
        &format!("Invocation {request_id}"),
        &body,
    ))
}

fn log_list(lines: &[LogRecord]) -> String {
    let mut out = String::from("<ol class=\"log\">");
    for line in lines {
        let _ = write!(
            out,
            "<li class=\"level-{} stream-{}\"><span class=\"t\">{}</span> <span class=\"lvl\">{}</span> <span class=\"msg\">{}</span></li>",
            esc(&line.level.to_ascii_lowercase()),
            esc(&line.stream),
            nimbus_core::time::rfc3339_millis(line.time),
            esc(&line.level),
            esc(&line.message),
        );
    }
    out.push_str("</ol>");
    out
}

/// The trace's spans as a waterfall: one row per span, indented under its parent, with a
/// bar placed on the trace's time line.
fn waterfall(prefix: &str, spans: &[SpanRecord]) -> String {
    if spans.is_empty() {
        return "<p class=\"empty\">No spans recorded for this trace.</p>".to_owned();
    }
    let start = spans
        .iter()
        .map(|s| s.start)
        .min()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let end = spans.iter().map(|s| s.end).max().unwrap_or(start);
    let total = end
        .duration_since(start)
        .unwrap_or_default()
        .max(Duration::from_micros(1));
    let known: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut rows = String::new();
    // Roots are spans whose parent is not in the trace's record (a caller's span).
    for root in spans.iter().filter(|s| {
        s.parent_span_id
            .as_deref()
            .is_none_or(|parent| !known.contains(&parent))
    }) {
        waterfall_rows(prefix, &mut rows, spans, root, 0, start, total);
    }
    format!(
        "<table class=\"waterfall\"><thead><tr><th>Span</th><th>Kind</th><th>Duration</th>\
<th class=\"bar-col\">0 – {}</th></tr></thead><tbody>{rows}</tbody></table>",
        html::ms(total)
    )
}

fn waterfall_rows(
    prefix: &str,
    rows: &mut String,
    spans: &[SpanRecord],
    span: &SpanRecord,
    depth: usize,
    trace_start: SystemTime,
    total: Duration,
) {
    if depth > 32 {
        return;
    }
    let offset = span.start.duration_since(trace_start).unwrap_or_default();
    let duration = span.end.duration_since(span.start).unwrap_or_default();
    let left = offset.as_secs_f64() / total.as_secs_f64() * 100.0;
    let width = (duration.as_secs_f64() / total.as_secs_f64() * 100.0).max(0.5);
    let invocation = span
        .attributes
        .iter()
        .find(|(key, _)| key == "faas.invocation_id")
        .map(|(_, id)| id);
    let name = match invocation {
        Some(id) => format!(
            "<a href=\"{prefix}/invocations/{}\">{}</a>",
            seg(id),
            esc(&span.name)
        ),
        None => esc(&span.name),
    };
    let _ = write!(
        rows,
        "<tr class=\"span {}\"><td style=\"padding-left:{}em\">{}{name}</td><td>{}</td><td>{}</td>\
<td class=\"bar-col\"><span class=\"bar\" style=\"margin-left:{left:.2}%;width:{width:.2}%\" \
title=\"starts at +{}\"></span></td></tr>",
        if span.status == "ok" { "ok" } else { "failed" },
        depth as f64 * 1.2 + 0.4,
        if span.status == "ok" { "" } else { "✗ " },
        esc(&span.kind),
        html::ms(duration),
        html::ms(offset),
    );
    for child in spans
        .iter()
        .filter(|s| s.parent_span_id.as_deref() == Some(span.span_id.as_str()))
    {
        waterfall_rows(prefix, rows, spans, child, depth + 1, trace_start, total);
    }
}

pub(crate) async fn logs(dash: Dash, uri: http::Uri) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let query = crate::api::query(&uri);
    let selected = |key: &str| query.get(key).cloned().unwrap_or_default();
    let function = selected("function");
    let mut options = String::from("<option value=\"\">all functions</option>");
    for f in &dash.api.generation.functions.list {
        let name = &f.spec.name;
        let chosen = if *name == function { " selected" } else { "" };
        let _ = write!(
            options,
            "<option value=\"{}\"{chosen}>{}</option>",
            esc(name),
            esc(name)
        );
    }
    let level = selected("level");
    let mut levels = String::new();
    for (value, label) in [
        ("", "any level"),
        ("error", "ERROR"),
        ("warn", "WARN and up"),
        ("info", "INFO and up"),
    ] {
        let chosen = if value == level { " selected" } else { "" };
        let _ = write!(levels, "<option value=\"{value}\"{chosen}>{label}</option>");
    }
    let body = format!(
        "<form class=\"filters\" method=\"get\" action=\"{prefix}/logs\">\
<label>Function <select name=\"function\">{options}</select></label>\
<label>Level <select name=\"level\">{levels}</select></label>\
<label>Text <input name=\"q\" value=\"{}\" placeholder=\"contains…\"></label>\
<button type=\"submit\">Apply</button></form>\
<p class=\"hint\" id=\"tail-status\" aria-live=\"polite\">Connecting…</p>\
<ol class=\"log\" id=\"tail\" data-source=\"{prefix}/logs/stream?{}\"></ol>",
        esc(&selected("q")),
        esc(uri.query().unwrap_or_default()),
    );
    Ok(html::page(prefix, "/logs", "Live logs", &body))
}

/// Which lines a live tail sends.
struct TailFilter {
    function: Option<String>,
    min_level: u8,
    text: Option<String>,
}

impl TailFilter {
    fn matches(&self, line: &LogRecord) -> bool {
        level_rank(&line.level) >= self.min_level
            && self
                .text
                .as_deref()
                .is_none_or(|text| line.message.contains(text))
    }
}

fn level_rank(level: &str) -> u8 {
    match level.to_ascii_uppercase().as_str() {
        "TRACE" => 0,
        "DEBUG" => 1,
        "INFO" => 2,
        "WARN" | "WARNING" => 3,
        "ERROR" | "FATAL" | "CRITICAL" => 4,
        _ => 2,
    }
}

/// Server-sent events: the last lines, then each new line as the store commits it. Polls
/// the store's reader with its cursor, as `nimbus logs -f` does.
pub(crate) async fn log_stream(dash: Dash, uri: http::Uri) -> Response {
    let query = crate::api::query(&uri);
    let filter = TailFilter {
        function: query.get("function").filter(|f| !f.is_empty()).cloned(),
        min_level: match query.get("level").map(String::as_str) {
            Some("error") => 4,
            Some("warn") => 3,
            Some("info") => 2,
            _ => 0,
        },
        text: query.get("q").filter(|q| !q.is_empty()).cloned(),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let events = dash.api.events.clone();
    let mut shutdown = dash.shutdown.clone();
    // The task ends when the client goes away (the send fails) or the server stops.
    tokio::spawn(async move {
        let mut log_query = LogQuery {
            function: filter.function.clone(),
            request_id: None,
            since: Some(SystemTime::now() - TAIL_BACKLOG_WINDOW),
            after: None,
        };
        let mut first = true;
        let mut last_sent = tokio::time::Instant::now();
        loop {
            let q = log_query.clone();
            let page = match events.store(move |store| store.logs(&q)).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!("live tail: reading logs: {e}");
                    return;
                }
            };
            log_query.after = Some(page.next);
            let mut lines: Vec<&LogRecord> =
                page.lines.iter().filter(|l| filter.matches(l)).collect();
            if first {
                let skip = lines.len().saturating_sub(TAIL_BACKLOG);
                lines.drain(..skip);
                first = false;
            }
            let mut chunk = String::new();
            for line in lines {
                let data = serde_json::json!({
                    "time": nimbus_core::time::rfc3339_millis(line.time),
                    "function": line.function,
                    "requestId": line.request_id,
                    "level": line.level,
                    "stream": line.stream,
                    "message": line.message,
                });
                let _ = write!(chunk, "data: {data}\n\n");
            }
            if chunk.is_empty() && last_sent.elapsed() >= TAIL_KEEPALIVE {
                chunk.push_str(": keep-alive\n\n");
            }
            if !chunk.is_empty() {
                if tx.send(Bytes::from(chunk)).await.is_err() {
                    return;
                }
                last_sent = tokio::time::Instant::now();
            }
            tokio::select! {
                () = tokio::time::sleep(TAIL_POLL) => {}
                () = shutdown.wait() => return,
            }
        }
    });
    (
        [
            (http::header::CONTENT_TYPE, "text/event-stream"),
            (http::header::CACHE_CONTROL, "no-store"),
        ],
        Body::new(EventStream(rx)),
    )
        .into_response()
}

pub(crate) async fn cost(dash: Dash, uri: http::Uri) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let days: u64 = crate::api::query(&uri)
        .get("days")
        .and_then(|d| d.parse().ok())
        .filter(|d| (1..=365).contains(d))
        .unwrap_or(30);
    let now = SystemTime::now();
    let since = now - Duration::from_secs(days * 86_400);
    let records = crate::api::observe::invocations(
        &dash.api.events,
        InvocationFilter {
            function: None,
            outcome: Outcome::Any,
            since: Some(since),
            limit: None,
        },
    )
    .await?;
    // State transitions, as `nimbus cost` counts them.
    let since_us = nimbus_core::time::unix_micros(since);
    let workflows = dash
        .api
        .events
        .store(move |store| store.workflow_usage(since_us))
        .await?;
    let summary = crate::cost::summary(
        &records,
        &workflows,
        now,
        &format!("{days}d"),
        &crate::cost::DEFAULT_PRICES,
    );
    let number = |v: &serde_json::Value, key: &str| v[key].as_f64().unwrap_or(0.0);
    let mut body = format!(
        "<p class=\"lead\">What the invocations of the last {days} days would cost on AWS Lambda \
at list prices, beside an always-on server sized for each function's peak concurrency \
(the numbers of <code>nimbus cost --since {days}d</code>).</p>\
<table class=\"cost\"><thead><tr><th>Function</th><th>Requests</th><th>GB-seconds</th>\
<th>Requests $</th><th>Compute $</th><th>Total $</th><th>Peak</th><th>Serverless $/month</th>\
<th>Always-on $/month</th></tr></thead><tbody>"
    );
    let empty = Vec::new();
    for row in summary["functions"].as_array().unwrap_or(&empty) {
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{:.3}</td><td>{:.6}</td><td>{:.6}</td>\
<td>{:.6}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            esc(row["function"].as_str().unwrap_or_default()),
            number(row, "requests"),
            number(row, "gbSeconds"),
            number(row, "requestCost"),
            number(row, "computeCost"),
            number(row, "cost"),
            number(row, "peakConcurrency"),
            number(row, "monthlyServerless"),
            number(row, "monthlyAlwaysOn"),
        );
    }
    let total = &summary["total"];
    let _ = write!(
        body,
        "</tbody><tfoot><tr><th scope=\"row\">total</th><td class=\"requests\">{}</td><td>{:.3}</td>\
<td>{:.6}</td><td>{:.6}</td><td>{:.6}</td><td></td><td class=\"serverless\">{:.2}</td>\
<td class=\"always-on\">{:.2}</td></tr></tfoot></table>\
<p>Over {:.0} s observed, per month at this rate serverless costs <strong>${:.2}</strong>; \
an always-on server sized for the peak costs <strong>${:.2}</strong>.</p>",
        number(total, "requests"),
        number(total, "gbSeconds"),
        number(total, "requestCost"),
        number(total, "computeCost"),
        number(total, "cost"),
        number(total, "monthlyServerless"),
        number(total, "monthlyAlwaysOn"),
        number(&summary, "observedSeconds"),
        number(total, "monthlyServerless"),
        number(total, "monthlyAlwaysOn"),
    );
    let empty = Vec::new();
    let machines = summary["workflows"].as_array().unwrap_or(&empty);
    if !machines.is_empty() {
        let mut table = html::Table::new(
            "workflow-cost",
            &[
                "State machine",
                "Executions",
                "Transitions",
                "Total $",
                "Serverless $/month",
            ],
        );
        for row in machines {
            table.row(
                "",
                [
                    html::Cell::Head(esc(row["stateMachine"].as_str().unwrap_or_default())),
                    html::Cell::Data(number(row, "executions").to_string()),
                    html::Cell::Data(number(row, "transitions").to_string()),
                    html::Cell::Data(format!("{:.6}", number(row, "cost"))),
                    html::Cell::Data(format!("{:.2}", number(row, "monthlyServerless"))),
                ],
            );
        }
        let _ = write!(
            body,
            "<h2>Workflows</h2><p class=\"hint\">State transitions at Step Functions' STANDARD \
price; included in the totals above.</p>{}",
            table.finish("")
        );
    }
    Ok(html::page(prefix, "/cost", "Cost", &body))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Histogram;

    #[test]
    fn percentiles_are_nearest_rank_bucket_means() {
        let mut durations = Histogram::default();
        // 1..=100 ms, one bucket each: the percentile is the value itself (as `nimbus top`).
        for ms in 1..=100 {
            let d = Duration::from_millis(ms);
            durations.add(d, 1, d);
        }
        assert_eq!(durations.percentile_ms(0.5), Some(50.0));
        assert_eq!(durations.percentile_ms(0.99), Some(99.0));
        // Two in one bucket: their mean.
        let mut durations = Histogram::default();
        durations.add(Duration::from_micros(990), 2, Duration::from_micros(2010));
        let mean = durations.percentile_ms(0.5).unwrap_or_default();
        assert!((mean - 1.005).abs() < 1e-9, "{mean}");
        assert_eq!(Histogram::default().percentile_ms(0.5), None);
    }
}
