//! History events as JSON: GetExecutionHistory's shape, plus a `nimbus` member holding what the journal needs to fold them back.
//!
//! Step Functions' JSON protocol writes each event as `{"id", "previousEventId", "timestamp",
//! "type", "<type>EventDetails": {...}}`, with inputs and outputs as JSON *text*. nimbus adds a
//! `nimbus` member (scope, exact time, retry plans, Map inputs, the seed); the API layer drops
//! it before answering, and the store keeps it.

use serde_json::{Map, Value, json};

use crate::workflow::definition::StateType;
use crate::workflow::engine::{EventDetails, ExecutionInfo, HistoryEvent, Plan, ScopeStep};

/// Why a stored event could not be read back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("history event: {0}")]
pub struct HistoryError(pub String);

impl HistoryEvent {
    /// The event as GetExecutionHistory's JSON, with nimbus's `nimbus` member.
    pub fn to_json(&self) -> Value {
        let mut ext = Map::new();
        ext.insert("timestampUs".to_owned(), json!(self.timestamp_us));
        if !self.scope.is_empty() {
            ext.insert(
                "scope".to_owned(),
                Value::Array(
                    self.scope
                        .iter()
                        .map(|s| json!({"state": s.state, "attempt": s.attempt, "index": s.index}))
                        .collect(),
                ),
            );
        }
        let (key, details) = details_json(&self.details, &mut ext);
        let mut event = Map::new();
        event.insert("id".to_owned(), json!(self.id));
        event.insert("previousEventId".to_owned(), json!(self.previous_event_id));
        event.insert(
            "timestamp".to_owned(),
            json!(self.timestamp_us as f64 / 1_000_000.0),
        );
        event.insert("type".to_owned(), json!(self.event_type()));
        if let Some(key) = key {
            event.insert(key, details);
        }
        event.insert("nimbus".to_owned(), Value::Object(ext));
        Value::Object(event)
    }

    /// Reads an event written by [`HistoryEvent::to_json`].
    pub fn from_json(value: &Value) -> Result<HistoryEvent, HistoryError> {
        let err = |m: &str| HistoryError(m.to_owned());
        let event_type = value
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| err("no type"))?;
        let ext = value.get("nimbus").cloned().unwrap_or(Value::Null);
        let scope = match ext.get("scope") {
            None => Vec::new(),
            Some(Value::Array(steps)) => steps
                .iter()
                .map(|s| {
                    Some(ScopeStep {
                        state: s.get("state")?.as_str()?.to_owned(),
                        attempt: u32::try_from(s.get("attempt")?.as_u64()?).ok()?,
                        index: usize::try_from(s.get("index")?.as_u64()?).ok()?,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| err("bad scope"))?,
            Some(_) => return Err(err("bad scope")),
        };
        let details = read_details(event_type, value, &ext)?;
        Ok(HistoryEvent {
            id: value
                .get("id")
                .and_then(Value::as_u64)
                .ok_or_else(|| err("no id"))?,
            previous_event_id: value
                .get("previousEventId")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            timestamp_us: ext
                .get("timestampUs")
                .and_then(Value::as_i64)
                .ok_or_else(|| err("no nimbus.timestampUs"))?,
            scope,
            details,
        })
    }
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn text(value: &Value) -> Value {
    Value::String(value.to_string())
}

/// Step Functions splits `arn:aws:states:::sqs:sendMessage` into resourceType `sqs` and
/// resource `sendMessage`; a plain function ARN is a `lambda` resource.
fn resource_fields(resource: &str, details: &mut Map<String, Value>) {
    let (kind, name) = match resource.strip_prefix("arn:aws:states:::") {
        Some(rest) => rest.split_once(':').unwrap_or((rest, "")),
        None => ("lambda", resource),
    };
    details.insert("resourceType".to_owned(), json!(kind));
    details.insert("resource".to_owned(), json!(name));
    // The full Resource, so reading back does not depend on the split.
    details.insert("nimbusResource".to_owned(), json!(resource));
}

fn plan_json(plan: &Plan) -> Value {
    match plan {
        Plan::Retry { retrier, due_us } => json!({"retry": retrier, "dueUs": due_us}),
        Plan::Catch { catcher } => json!({"catch": catcher}),
        Plan::Fail => json!("fail"),
    }
}

fn details_json(details: &EventDetails, ext: &mut Map<String, Value>) -> (Option<String>, Value) {
    let key = |t: &str| Some(format!("{}EventDetails", lower_first(t)));
    let mut d = Map::new();
    let name = match details {
        EventDetails::ExecutionStarted { input, info } => {
            d.insert("input".to_owned(), text(input));
            d.insert("inputDetails".to_owned(), json!({"truncated": false}));
            d.insert("roleArn".to_owned(), json!(info.role_arn));
            d.insert("stateMachineArn".to_owned(), json!(info.state_machine_arn));
            ext.insert(
                "execution".to_owned(),
                json!({
                    "executionArn": info.execution_arn, "name": info.name,
                    "stateMachineName": info.state_machine_name, "seed": info.seed.to_string(),
                }),
            );
            "ExecutionStarted"
        }
        EventDetails::ExecutionSucceeded { output } => {
            d.insert("output".to_owned(), text(output));
            d.insert("outputDetails".to_owned(), json!({"truncated": false}));
            "ExecutionSucceeded"
        }
        EventDetails::ExecutionFailed { error, cause }
        | EventDetails::ExecutionAborted { error, cause }
        | EventDetails::ExecutionTimedOut { error, cause } => {
            d.insert("error".to_owned(), json!(error));
            d.insert("cause".to_owned(), json!(cause));
            return (key(&details.event_type()), Value::Object(d));
        }
        EventDetails::StateEntered {
            name,
            input,
            due_us,
            ..
        } => {
            d.insert("name".to_owned(), json!(name));
            d.insert("input".to_owned(), text(input));
            d.insert("inputDetails".to_owned(), json!({"truncated": false}));
            if let Some(due) = due_us {
                ext.insert("dueUs".to_owned(), json!(due));
            }
            "StateEntered"
        }
        EventDetails::StateExited { name, output, .. } => {
            d.insert("name".to_owned(), json!(name));
            d.insert("output".to_owned(), text(output));
            d.insert("outputDetails".to_owned(), json!({"truncated": false}));
            "StateExited"
        }
        EventDetails::TaskScheduled {
            resource,
            parameters,
            timeout_seconds,
            heartbeat_seconds,
            token,
        } => {
            resource_fields(resource, &mut d);
            d.insert("region".to_owned(), json!("us-east-1"));
            d.insert("parameters".to_owned(), text(parameters));
            if let Some(t) = timeout_seconds {
                d.insert("timeoutInSeconds".to_owned(), json!(t));
            }
            if let Some(h) = heartbeat_seconds {
                d.insert("heartbeatInSeconds".to_owned(), json!(h));
            }
            if let Some(token) = token {
                ext.insert("token".to_owned(), json!(token));
            }
            "TaskScheduled"
        }
        EventDetails::TaskSucceeded { resource, output } => {
            resource_fields(resource, &mut d);
            d.insert("output".to_owned(), text(output));
            d.insert("outputDetails".to_owned(), json!({"truncated": false}));
            "TaskSucceeded"
        }
        EventDetails::TaskFailed {
            resource,
            error,
            cause,
            plan,
        }
        | EventDetails::TaskTimedOut {
            resource,
            error,
            cause,
            plan,
        } => {
            resource_fields(resource, &mut d);
            d.insert("error".to_owned(), json!(error));
            d.insert("cause".to_owned(), json!(cause));
            ext.insert("plan".to_owned(), plan_json(plan));
            return (key(&details.event_type()), Value::Object(d));
        }
        EventDetails::ParallelStateStarted { branches } => {
            ext.insert("branches".to_owned(), json!(branches));
            return (None, Value::Null);
        }
        EventDetails::ParallelStateSucceeded | EventDetails::MapStateSucceeded => {
            return (None, Value::Null);
        }
        EventDetails::ParallelStateFailed { error, cause, plan }
        | EventDetails::MapStateFailed { error, cause, plan } => {
            ext.insert("error".to_owned(), json!(error));
            ext.insert("cause".to_owned(), json!(cause));
            ext.insert("plan".to_owned(), plan_json(plan));
            return (None, Value::Null);
        }
        EventDetails::MapStateStarted {
            inputs,
            max_concurrency,
        } => {
            d.insert("length".to_owned(), json!(inputs.len()));
            ext.insert("inputs".to_owned(), Value::Array(inputs.clone()));
            ext.insert("maxConcurrency".to_owned(), json!(max_concurrency));
            "MapStateStarted"
        }
        EventDetails::MapIterationStarted { name, index }
        | EventDetails::MapIterationAborted { name, index } => {
            d.insert("name".to_owned(), json!(name));
            d.insert("index".to_owned(), json!(index));
            return (key(&details.event_type()), Value::Object(d));
        }
        EventDetails::MapIterationSucceeded {
            name,
            index,
            output,
        } => {
            d.insert("name".to_owned(), json!(name));
            d.insert("index".to_owned(), json!(index));
            ext.insert("output".to_owned(), output.clone());
            "MapIterationSucceeded"
        }
        EventDetails::MapIterationFailed {
            name,
            index,
            error,
            cause,
        } => {
            d.insert("name".to_owned(), json!(name));
            d.insert("index".to_owned(), json!(index));
            ext.insert("error".to_owned(), json!(error));
            ext.insert("cause".to_owned(), json!(cause));
            "MapIterationFailed"
        }
    };
    (key(name), Value::Object(d))
}

fn read_details(
    event_type: &str,
    value: &Value,
    ext: &Value,
) -> Result<EventDetails, HistoryError> {
    let err = |m: &str| HistoryError(format!("{event_type}: {m}"));
    let detail_key = |name: &str| format!("{}EventDetails", lower_first(name));
    let details = |name: &str| value.get(detail_key(name)).cloned().unwrap_or(Value::Null);
    let string = |v: &Value, k: &str| -> Result<String, HistoryError> {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| err(&format!("no {k}")))
    };
    let json_text = |v: &Value, k: &str| -> Result<Value, HistoryError> {
        let t = string(v, k)?;
        serde_json::from_str(&t).map_err(|e| err(&format!("{k} is not JSON: {e}")))
    };
    let index = |v: &Value| -> Result<usize, HistoryError> {
        v.get("index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| err("no index"))
    };
    let plan = || -> Result<Plan, HistoryError> {
        let p = ext.get("plan").ok_or_else(|| err("no nimbus.plan"))?;
        if let Some(r) = p.get("retry").and_then(Value::as_u64) {
            return Ok(Plan::Retry {
                retrier: usize::try_from(r).map_err(|_| err("bad plan"))?,
                due_us: p
                    .get("dueUs")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| err("bad plan"))?,
            });
        }
        if let Some(c) = p.get("catch").and_then(Value::as_u64) {
            return Ok(Plan::Catch {
                catcher: usize::try_from(c).map_err(|_| err("bad plan"))?,
            });
        }
        Ok(Plan::Fail)
    };
    let resource = |d: &Value| string(d, "nimbusResource");
    if let Some(prefix) = event_type.strip_suffix("StateEntered") {
        let state_type = StateType::from_name(prefix).ok_or_else(|| err("unknown state type"))?;
        let d = details("StateEntered");
        return Ok(EventDetails::StateEntered {
            state_type,
            name: string(&d, "name")?,
            input: json_text(&d, "input")?,
            due_us: ext.get("dueUs").and_then(Value::as_i64),
        });
    }
    if let Some(prefix) = event_type.strip_suffix("StateExited") {
        let state_type = StateType::from_name(prefix).ok_or_else(|| err("unknown state type"))?;
        let d = details("StateExited");
        return Ok(EventDetails::StateExited {
            state_type,
            name: string(&d, "name")?,
            output: json_text(&d, "output")?,
        });
    }
    let d = details(event_type);
    let error_cause = |v: &Value| -> (String, String) {
        (
            v.get("error")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            v.get("cause")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )
    };
    Ok(match event_type {
        "ExecutionStarted" => {
            let e = ext
                .get("execution")
                .ok_or_else(|| err("no nimbus.execution"))?;
            EventDetails::ExecutionStarted {
                input: json_text(&d, "input")?,
                info: ExecutionInfo {
                    execution_arn: string(e, "executionArn")?,
                    name: string(e, "name")?,
                    state_machine_arn: string(&d, "stateMachineArn")?,
                    state_machine_name: string(e, "stateMachineName")?,
                    role_arn: string(&d, "roleArn")?,
                    seed: string(e, "seed")?.parse().map_err(|_| err("bad seed"))?,
                },
            }
        }
        "ExecutionSucceeded" => EventDetails::ExecutionSucceeded {
            output: json_text(&d, "output")?,
        },
        "ExecutionFailed" | "ExecutionAborted" | "ExecutionTimedOut" => {
            let (error, cause) = error_cause(&d);
            match event_type {
                "ExecutionFailed" => EventDetails::ExecutionFailed { error, cause },
                "ExecutionAborted" => EventDetails::ExecutionAborted { error, cause },
                _ => EventDetails::ExecutionTimedOut { error, cause },
            }
        }
        "TaskScheduled" => EventDetails::TaskScheduled {
            resource: resource(&d)?,
            parameters: json_text(&d, "parameters")?,
            timeout_seconds: d.get("timeoutInSeconds").and_then(Value::as_u64),
            heartbeat_seconds: d.get("heartbeatInSeconds").and_then(Value::as_u64),
            token: ext.get("token").and_then(Value::as_str).map(str::to_owned),
        },
        "TaskSucceeded" => EventDetails::TaskSucceeded {
            resource: resource(&d)?,
            output: json_text(&d, "output")?,
        },
        "TaskFailed" | "TaskTimedOut" => {
            let (error, cause) = error_cause(&d);
            let (resource, plan) = (resource(&d)?, plan()?);
            if event_type == "TaskFailed" {
                EventDetails::TaskFailed {
                    resource,
                    error,
                    cause,
                    plan,
                }
            } else {
                EventDetails::TaskTimedOut {
                    resource,
                    error,
                    cause,
                    plan,
                }
            }
        }
        "ParallelStateStarted" => EventDetails::ParallelStateStarted {
            branches: ext
                .get("branches")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| err("no nimbus.branches"))?,
        },
        "ParallelStateSucceeded" => EventDetails::ParallelStateSucceeded,
        "MapStateSucceeded" => EventDetails::MapStateSucceeded,
        "ParallelStateFailed" | "MapStateFailed" => {
            let (error, cause) = error_cause(ext);
            let plan = plan()?;
            if event_type == "ParallelStateFailed" {
                EventDetails::ParallelStateFailed { error, cause, plan }
            } else {
                EventDetails::MapStateFailed { error, cause, plan }
            }
        }
        "MapStateStarted" => EventDetails::MapStateStarted {
            inputs: ext
                .get("inputs")
                .and_then(Value::as_array)
                .cloned()
                .ok_or_else(|| err("no nimbus.inputs"))?,
            max_concurrency: ext
                .get("maxConcurrency")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        },
        "MapIterationStarted" => EventDetails::MapIterationStarted {
            name: string(&d, "name")?,
            index: index(&d)?,
        },
        "MapIterationAborted" => EventDetails::MapIterationAborted {
            name: string(&d, "name")?,
            index: index(&d)?,
        },
        "MapIterationSucceeded" => EventDetails::MapIterationSucceeded {
            name: string(&d, "name")?,
            index: index(&d)?,
            output: ext.get("output").cloned().unwrap_or(Value::Null),
        },
        "MapIterationFailed" => {
            let (error, cause) = error_cause(ext);
            EventDetails::MapIterationFailed {
                name: string(&d, "name")?,
                index: index(&d)?,
                error,
                cause,
            }
        }
        other => return Err(err(&format!("unknown event type {other}"))),
    })
}
