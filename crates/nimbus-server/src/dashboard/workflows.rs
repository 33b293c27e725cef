//! The workflow pages: the app's state machines, a machine's executions with their status,
//! and an execution's history as a timeline. They read through `Workflows`, as the Step
//! Functions API and `nimbus workflow` do.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use axum::extract::Path;
use axum::response::Response;
use nimbus_core::time::from_unix_micros;
use nimbus_core::workflow::store::{ExecutionFilter, ExecutionRecord};
use serde_json::Value;

use super::Dash;
use super::html::{self, Cell, Table, esc, seg};
use crate::error::ApiError;

/// Executions a machine's page lists, newest first (and the overview counts per machine).
const RECENT_EXECUTIONS: usize = 100;
/// History events an execution's page shows at most.
const HISTORY_LIMIT: usize = 1_000;
/// The statuses an execution can have, in the order the filters offer them.
const STATUSES: &[&str] = &["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"];

pub(crate) async fn machines(dash: Dash) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let workflows = &dash.api.generation.workflows;
    let mut table = Table::new(
        "machines",
        &[
            "State machine",
            "Type",
            "States",
            "Running",
            "Succeeded",
            "Failed, timed out or aborted",
        ],
    );
    for machine in workflows.machines() {
        let executions = workflows
            .list(ExecutionFilter {
                machine_arn: Some(machine.arn.clone()),
                limit: RECENT_EXECUTIONS,
                ..ExecutionFilter::default()
            })
            .await
            .map_err(|e| ApiError::platform(e.message))?;
        let count = |f: &dyn Fn(&str) -> bool| {
            executions
                .iter()
                .filter(|e| f(e.status.as_str()))
                .count()
                .to_string()
        };
        let n_states = serde_json::from_str::<Value>(&machine.text)
            .ok()
            .and_then(|d| d.get("States").and_then(Value::as_object).map(|s| s.len()))
            .map_or("-".to_owned(), |n| n.to_string());
        table.row(
            &format!("data-machine=\"{}\"", esc(&machine.name)),
            [
                Cell::Head(format!(
                    "<a href=\"{prefix}/workflows/{}\">{}</a>",
                    seg(&machine.name),
                    esc(&machine.name)
                )),
                Cell::Data(esc(machine.kind.as_str())),
                Cell::Data(n_states),
                Cell::Classed("running", count(&|s| s == "RUNNING")),
                Cell::Classed("succeeded", count(&|s| s == "SUCCEEDED")),
                Cell::Classed("failed", count(&|s| s != "RUNNING" && s != "SUCCEEDED")),
            ],
        );
    }
    let mut body = format!(
        "<p class=\"lead\">Counts are of each state machine's last {RECENT_EXECUTIONS} executions.</p>"
    );
    body.push_str(&table.finish("This app has no workflows."));
    Ok(html::page(prefix, "/workflows", "Workflows", &body))
}

pub(crate) async fn machine(
    dash: Dash,
    Path(name): Path<String>,
    uri: http::Uri,
) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let workflows = &dash.api.generation.workflows;
    let Ok(machine) = workflows.machine(&name) else {
        return Ok(html::not_found(
            prefix,
            &format!("There is no state machine named `{name}` in this app."),
        ));
    };
    let status = crate::api::query(&uri)
        .remove("status")
        .map(|s| s.to_ascii_uppercase())
        .filter(|s| STATUSES.contains(&s.as_str()));
    let executions = workflows
        .list(ExecutionFilter {
            machine_arn: Some(machine.arn.clone()),
            status: status.clone(),
            before: None,
            limit: RECENT_EXECUTIONS,
        })
        .await
        .map_err(|e| ApiError::platform(e.message))?;
    let base = format!("{prefix}/workflows/{}", seg(&machine.name));
    let mut body = format!(
        "<dl class=\"facts\"><dt>ARN</dt><dd><code>{}</code></dd><dt>Type</dt><dd>{}</dd></dl>\
<details><summary>Definition</summary><pre>{}</pre></details><p class=\"filters\">Show: ",
        esc(&machine.arn),
        esc(machine.kind.as_str()),
        esc(&pretty(&machine.text)),
    );
    let current = |s: Option<&str>| {
        if status.as_deref() == s {
            " aria-current=\"true\""
        } else {
            ""
        }
    };
    let _ = write!(body, "<a href=\"{base}\"{}>all</a>", current(None));
    for s in STATUSES {
        let _ = write!(
            body,
            " · <a href=\"{base}?status={s}\"{}>{}</a>",
            current(Some(s)),
            s.to_ascii_lowercase().replace('_', " ")
        );
    }
    body.push_str("</p>");
    let mut table = Table::new(
        "executions",
        &["Execution", "Status", "Started", "Ended", "Duration"],
    );
    for execution in &executions {
        table.row(
            &format!(
                "class=\"{}\" data-execution=\"{}\"",
                status_class(&execution.status),
                esc(&execution.name)
            ),
            [
                Cell::Head(format!(
                    "<a href=\"{prefix}/executions/{}\">{}</a>",
                    seg(&execution.arn),
                    esc(&execution.name)
                )),
                Cell::Classed("status", status_text(&execution.status)),
                Cell::Data(html::time(from_unix_micros(execution.start_us))),
                Cell::Data(
                    execution
                        .stop_us
                        .map_or("-".to_owned(), |us| html::time(from_unix_micros(us))),
                ),
                Cell::Data(execution.stop_us.map_or("-".to_owned(), |stop| {
                    html::ms(micros(stop.saturating_sub(execution.start_us)))
                })),
            ],
        );
    }
    body.push_str(&table.finish("No executions recorded."));
    Ok(html::page(
        prefix,
        "/workflows",
        &format!("Workflow {}", machine.name),
        &body,
    ))
}

pub(crate) async fn execution(dash: Dash, Path(arn): Path<String>) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let workflows = &dash.api.generation.workflows;
    let not_found = || {
        html::not_found(
            prefix,
            &format!("No workflow execution `{arn}` is recorded."),
        )
    };
    let Ok(record) = workflows.describe(&arn).await else {
        return Ok(not_found());
    };
    let Ok(events) = workflows.history(&arn, 0, HISTORY_LIMIT, false).await else {
        return Ok(not_found());
    };
    let machine = nimbus_core::workflow::machine::machine_name(&record.machine_arn).to_owned();
    let mut body = format!(
        "<dl class=\"facts\"><dt>State machine</dt><dd><a href=\"{prefix}/workflows/{}\">{}</a></dd>\
<dt>Status</dt><dd class=\"status\">{}</dd><dt>Started</dt><dd>{}</dd><dt>Ended</dt><dd>{}</dd>\
<dt>ARN</dt><dd><code>{}</code></dd>",
        seg(&machine),
        esc(&machine),
        status_text(&record.status),
        html::time(from_unix_micros(record.start_us)),
        record
            .stop_us
            .map_or("-".to_owned(), |us| html::time(from_unix_micros(us))),
        esc(&record.arn),
    );
    for (label, value) in [("Error", &record.error), ("Cause", &record.cause)] {
        if let Some(value) = value {
            let _ = write!(body, "<dt>{label}</dt><dd>{}</dd>", esc(value));
        }
    }
    body.push_str("</dl>");
    let _ = write!(
        body,
        "<h2>Input</h2><pre class=\"input\">{}</pre>",
        esc(&pretty(&record.input))
    );
    if let Some(output) = &record.output {
        let _ = write!(
            body,
            "<h2>Output</h2><pre class=\"output\">{}</pre>",
            esc(&pretty(output))
        );
    }
    body.push_str("<h2>States</h2>");
    body.push_str(&state_timeline(&record, &events));
    body.push_str("<h2>History</h2>");
    body.push_str(&history_list(&record, &events));
    Ok(html::page(
        prefix,
        "/workflows",
        &format!("Execution {}", record.name),
        &body,
    ))
}

/// The states the execution went through as bars on its time line, from each state's
/// `…StateEntered` to its `…StateExited` (or to now, while it runs).
fn state_timeline(record: &ExecutionRecord, events: &[Value]) -> String {
    struct Span {
        name: String,
        kind: String,
        start_us: i64,
        end_us: Option<i64>,
    }
    let mut spans: Vec<Span> = Vec::new();
    // Per state name, the spans entered and not yet exited (a Map runs a state many times).
    let mut open: HashMap<String, Vec<usize>> = HashMap::new();
    for event in events {
        let kind = event_type(event);
        let Some(name) = details(event)
            .and_then(|d| d.get("name"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        if let Some(state_kind) = kind.strip_suffix("StateEntered") {
            open.entry(name.to_owned()).or_default().push(spans.len());
            spans.push(Span {
                name: name.to_owned(),
                kind: state_kind.to_owned(),
                start_us: event_us(event),
                end_us: None,
            });
        } else if kind.ends_with("StateExited")
            && let Some(idx) = open.get_mut(name).and_then(Vec::pop)
        {
            spans[idx].end_us = Some(event_us(event));
        }
    }
    if spans.is_empty() {
        return "<p class=\"empty\">No state was entered.</p>".to_owned();
    }
    let now_us = record
        .stop_us
        .unwrap_or_else(|| nimbus_core::time::unix_micros(SystemTime::now()).max(record.start_us));
    let end_us = spans
        .iter()
        .map(|s| s.end_us.unwrap_or(now_us))
        .max()
        .unwrap_or(now_us)
        .max(record.stop_us.unwrap_or(0));
    let total_us = end_us.saturating_sub(record.start_us).max(1) as f64;
    let mut table = Table::new(
        "waterfall states",
        &[
            "State",
            "Type",
            "Duration",
            &format!(
                "<span class=\"bar-col\">0 – {}</span>",
                html::ms(micros(end_us.saturating_sub(record.start_us)))
            ),
        ],
    );
    for span in &spans {
        let end = span.end_us.unwrap_or(now_us);
        let left = (span.start_us - record.start_us) as f64 / total_us * 100.0;
        let width = ((end - span.start_us) as f64 / total_us * 100.0).max(0.5);
        table.row(
            &format!(
                "class=\"span {}\"",
                if span.end_us.is_some() { "ok" } else { "open" }
            ),
            [
                Cell::Data(esc(&span.name)),
                Cell::Data(esc(&span.kind)),
                Cell::Data(match span.end_us {
                    Some(end) => html::ms(micros(end - span.start_us)),
                    None => "running".to_owned(),
                }),
                Cell::Classed(
                    "bar-col",
                    format!(
                        "<span class=\"bar\" style=\"margin-left:{left:.2}%;width:{width:.2}%\" \
title=\"starts at +{}\"></span>",
                        html::ms(micros(span.start_us - record.start_us))
                    ),
                ),
            ],
        );
    }
    table.finish("")
}

/// Every history event in order, with its time from the start and its details.
fn history_list(record: &ExecutionRecord, events: &[Value]) -> String {
    let mut table = Table::new("history", &["#", "Time", "Type", "State", "Details"]);
    for event in events {
        let kind = event_type(event);
        let details = details(event);
        let state = details
            .and_then(|d| d.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let text = details
            .map(|d| {
                let mut d = d.clone();
                if let Value::Object(map) = &mut d {
                    map.remove("name");
                }
                d
            })
            .filter(|d| d.as_object().is_none_or(|m| !m.is_empty()))
            .map(|d| serde_json::to_string(&d).unwrap_or_default())
            .unwrap_or_default();
        let failed =
            kind.ends_with("Failed") || kind.ends_with("TimedOut") || kind == "ExecutionAborted";
        table.row(
            &format!(
                "class=\"{}\" data-type=\"{}\"",
                if failed { "failed" } else { "ok" },
                esc(kind)
            ),
            [
                Cell::Data(
                    event
                        .get("id")
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                        .to_string(),
                ),
                Cell::Data(format!(
                    "+{}",
                    html::ms(micros(event_us(event).saturating_sub(record.start_us)))
                )),
                Cell::Classed(
                    "type",
                    format!("{}{}", if failed { "✗ " } else { "" }, esc(kind)),
                ),
                Cell::Data(esc(state)),
                Cell::Data(format!("<code>{}</code>", esc(&text))),
            ],
        );
    }
    table.finish("No history recorded.")
}

fn event_type(event: &Value) -> &str {
    event.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The event's `…EventDetails` member.
fn details(event: &Value) -> Option<&Value> {
    event
        .as_object()?
        .iter()
        .find(|(key, _)| key.ends_with("EventDetails"))
        .map(|(_, details)| details)
}

/// The event's time in microseconds: nimbus's exact one, else Step Functions' seconds.
fn event_us(event: &Value) -> i64 {
    event
        .get("nimbus")
        .and_then(|n| n.get("timestampUs"))
        .and_then(Value::as_i64)
        .or_else(|| {
            event
                .get("timestamp")
                .and_then(Value::as_f64)
                .map(|s| (s * 1e6) as i64)
        })
        .unwrap_or(0)
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// JSON text indented, or as it is when it is not JSON.
fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// A status in words with a symbol, so it reads without colour.
fn status_text(status: &str) -> String {
    let symbol = match status {
        "SUCCEEDED" => "✓",
        "RUNNING" => "…",
        _ => "✗",
    };
    format!("{symbol} {}", esc(status))
}

fn status_class(status: &str) -> &'static str {
    match status {
        "SUCCEEDED" => "ok",
        "RUNNING" => "running",
        _ => "failed",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record() -> ExecutionRecord {
        ExecutionRecord {
            arn: "arn:aws:states:us-east-1:000000000000:execution:m:e".to_owned(),
            machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:m".to_owned(),
            name: "e".to_owned(),
            definition: "{}".to_owned(),
            input: "{}".to_owned(),
            status: "SUCCEEDED".to_owned(),
            start_us: 1_000_000,
            stop_us: Some(1_004_000),
            output: None,
            error: None,
            cause: None,
            last_event_id: 4,
            trace: None,
            parent: None,
        }
    }

    #[test]
    fn states_are_bars_from_entered_to_exited() {
        let event = |id: u64, us: i64, kind: &str, details: Value| json!({"id": id, "type": kind, "timestamp": us as f64 / 1e6, format!("{}EventDetails", kind): details});
        let events = [
            event(1, 1_000_000, "ExecutionStarted", json!({"input": "{}"})),
            event(2, 1_000_000, "PassStateEntered", json!({"name": "First"})),
            event(3, 1_002_000, "PassStateExited", json!({"name": "First"})),
            event(4, 1_002_000, "WaitStateEntered", json!({"name": "<Pause>"})),
        ];
        let html = state_timeline(&record(), &events);
        assert!(
            html.contains("<td>First</td><td>Pass</td><td>2.00 ms</td>"),
            "{html}"
        );
        assert!(html.contains("margin-left:0.00%;width:50.00%"), "{html}");
        // Not exited: open to the end, and names escaped.
        assert!(
            html.contains("<td>&lt;Pause&gt;</td><td>Wait</td><td>running</td>"),
            "{html}"
        );
        let html = history_list(&record(), &events);
        assert!(html.contains("<td>+2.00 ms</td>"), "{html}");
        assert!(html.contains("data-type=\"PassStateExited\""), "{html}");
    }
}
