//! Step Functions' JSON 1.0 API on the AWS endpoint (`X-Amz-Target: AWSStepFunctions.<Op>`):
//! executions of the app's state machines, their histories, and SendTask* for
//! `.waitForTaskToken`, on nimbus's workflow host (`workflows.rs`).
//!
//! Grants: `states:StartExecution`, `states:StartSyncExecution`, `states:DescribeStateMachine`
//! and `states:ListExecutions` on `stateMachine:NAME`; `states:DescribeExecution`,
//! `states:StopExecution` and `states:GetExecutionHistory` on `execution:MACHINE:NAME`;
//! `states:SendTask*` on the state machine of the task's execution; `states:ListStateMachines`
//! on `*`.

use std::sync::Arc;

use axum::response::Response;
use http::StatusCode;
use nimbus_core::workflow::machine;
use nimbus_core::workflow::store::{ExecutionFilter, ExecutionRecord};
use serde_json::{Map, Value as Json, json};

use super::members::{MemberError, MemberReader};
use crate::generation::Generation;
use crate::services::Principal;
use crate::workflows::{
    Machine, StartRequest, TokenResult, WorkflowError, Workflows, execution_resource, seconds,
};

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// ListExecutions' and GetExecutionHistory's page size when none is asked for.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

pub(crate) struct SfnError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

type Res<T> = Result<T, SfnError>;

pub(crate) async fn handle(
    generation: &Generation,
    principal: Principal<'_>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Response {
    let res = match super::target_operation(parts, super::Service::StepFunctions) {
        Some(operation) => dispatch(generation, principal, parts, operation, body).await,
        None => Err(SfnError::bad(
            "UnknownOperationException",
            "a Step Functions request names its operation in X-Amz-Target: AWSStepFunctions.<Operation>",
        )),
    };
    match res {
        Ok(json) => super::response(StatusCode::OK, CONTENT_TYPE, json.to_string().into_bytes()),
        Err(e) => e.into_response(),
    }
}

/// StartExecution, or StartSyncExecution when `sync`: Step Functions' answer. The AWS
/// endpoint and the gateway's `http` events of state machines both start executions here.
pub(crate) async fn start(
    workflows: &Arc<Workflows>,
    machine: &Machine,
    request: StartRequest,
    sync: bool,
) -> Res<Json> {
    if sync && machine.kind != machine::MachineKind::Express {
        return Err(SfnError::bad(
            "StateMachineTypeNotSupported",
            "This operation is not supported by this type of state machine: StartSyncExecution runs EXPRESS state machines; use StartExecution",
        ));
    }
    let started = workflows.start(machine, request).await?;
    if !sync {
        return Ok(json!({
            "executionArn": started.arn,
            "startDate": seconds(started.start_us),
        }));
    }
    let record = workflows.wait(&started.arn).await?;
    let mut out = describe(&record);
    out.remove("mapRunArn");
    out.insert(
        "billingDetails".to_owned(),
        json!({ "billedDurationInMilliseconds": record.stop_us.map_or(0, |stop| (stop - record.start_us).max(0) / 1000).max(100), "billedMemoryUsedInMB": 64 }),
    );
    Ok(Json::Object(out))
}

async fn dispatch(
    generation: &Generation,
    principal: Principal<'_>,
    parts: &http::request::Parts,
    operation: &str,
    body: &[u8],
) -> Res<Json> {
    let request: Json = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| {
            SfnError::bad(
                "SerializationException",
                format!("the request body is not JSON: {e}"),
            )
        })?
    };
    let Json::Object(request) = request else {
        return Err(SfnError::bad(
            "SerializationException",
            "the request body is not a JSON object",
        ));
    };
    let r = Req(&request);
    let workflows = &generation.workflows;
    let check = |action: &str, resource: &str| {
        principal.check(action, resource).map_err(|e| {
            SfnError::bad(
                "AccessDeniedException",
                format!("User is not authorized to perform: {action}: {}", e.message),
            )
        })
    };
    match operation {
        "StartExecution" | "StartSyncExecution" => {
            let machine = workflows.machine(&r.string("stateMachineArn")?)?;
            check(
                &format!("states:{operation}"),
                &format!("stateMachine:{}", machine.name),
            )?;
            let trace = r
                .optional_string("traceHeader")?
                .as_deref()
                .and_then(crate::telemetry::TraceContext::from_xray)
                .or_else(|| {
                    parts
                        .headers
                        .get("x-amzn-trace-id")
                        .and_then(|v| v.to_str().ok())
                        .and_then(crate::telemetry::TraceContext::from_xray)
                });
            let request = StartRequest {
                name: r.optional_string("name")?,
                input: r
                    .optional_string("input")?
                    .unwrap_or_else(|| "{}".to_owned()),
                trace,
                parent: None,
            };
            start(
                workflows,
                &machine,
                request,
                operation == "StartSyncExecution",
            )
            .await
        }
        "DescribeExecution" => {
            let arn = r.execution_arn()?;
            check("states:DescribeExecution", &execution_resource(&arn))?;
            let record = workflows.describe(&arn).await?;
            Ok(Json::Object(describe(&record)))
        }
        "DescribeStateMachineForExecution" => {
            let arn = r.execution_arn()?;
            check(
                "states:DescribeStateMachineForExecution",
                &execution_resource(&arn),
            )?;
            let record = workflows.describe(&arn).await?;
            let name = machine::machine_name(&record.machine_arn).to_owned();
            Ok(json!({
                "stateMachineArn": record.machine_arn,
                "name": name,
                "definition": record.definition,
                "roleArn": machine::role_arn(&name),
                "updateDate": seconds(record.start_us),
            }))
        }
        "StopExecution" => {
            let arn = r.execution_arn()?;
            check("states:StopExecution", &execution_resource(&arn))?;
            let stop_us = workflows
                .stop(
                    &arn,
                    r.optional_string("error")?,
                    r.optional_string("cause")?,
                )
                .await?;
            Ok(json!({ "stopDate": seconds(stop_us) }))
        }
        "ListExecutions" => {
            let machine = workflows.machine(&r.string("stateMachineArn")?)?;
            check(
                "states:ListExecutions",
                &format!("stateMachine:{}", machine.name),
            )?;
            let limit = r.page_size()?;
            let status = r.optional_string("statusFilter")?;
            if let Some(status) = &status
                && ![
                    "RUNNING",
                    "SUCCEEDED",
                    "FAILED",
                    "TIMED_OUT",
                    "ABORTED",
                    "PENDING_REDRIVE",
                ]
                .contains(&status.as_str())
            {
                return Err(SfnError::bad(
                    "ValidationException",
                    format!(
                        "1 validation error detected: Value '{status}' at 'statusFilter' failed to satisfy constraint: Member must satisfy enum value set: [SUCCEEDED, TIMED_OUT, PENDING_REDRIVE, FAILED, RUNNING, ABORTED]"
                    ),
                ));
            }
            let records = workflows
                .list(ExecutionFilter {
                    machine_arn: Some(machine.arn.clone()),
                    status,
                    before: r.optional_string("nextToken")?,
                    limit: limit + 1,
                })
                .await?;
            let more = records.len() > limit;
            let page: Vec<&ExecutionRecord> = records.iter().take(limit).collect();
            let mut out = json!({
                "executions": page.iter().map(|record| {
                    let mut item = json!({
                        "executionArn": record.arn,
                        "stateMachineArn": record.machine_arn,
                        "name": record.name,
                        "status": record.status,
                        "startDate": seconds(record.start_us),
                    });
                    if let Some(stop) = record.stop_us {
                        item["stopDate"] = json!(seconds(stop));
                    }
                    item
                }).collect::<Vec<_>>(),
            });
            if more && let Some(last) = page.last() {
                out["nextToken"] = json!(last.arn);
            }
            Ok(out)
        }
        "GetExecutionHistory" => {
            let arn = r.execution_arn()?;
            check("states:GetExecutionHistory", &execution_resource(&arn))?;
            let limit = r.page_size()?;
            let reverse = r.optional_bool("reverseOrder")?.unwrap_or(false);
            let include_data = r.optional_bool("includeExecutionData")?.unwrap_or(true);
            let after = match r.optional_string("nextToken")? {
                Some(token) => token.parse::<u64>().map_err(|_| {
                    SfnError::bad("InvalidToken", format!("Invalid Token: '{token}'"))
                })?,
                None => 0,
            };
            let mut events = workflows.history(&arn, after, limit + 1, reverse).await?;
            let more = events.len() > limit;
            events.truncate(limit);
            let next = events
                .last()
                .and_then(|e| e.get("id"))
                .and_then(Json::as_u64);
            for event in &mut events {
                if let Json::Object(event) = event {
                    event.remove("nimbus");
                    if !include_data {
                        for details in event.values_mut() {
                            if let Json::Object(details) = details {
                                for field in ["input", "output", "parameters"] {
                                    if details.remove(field).is_some() {
                                        details.insert(
                                            format!("{field}Details"),
                                            json!({ "included": false }),
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let mut out = json!({ "events": events });
            if more && let Some(next) = next {
                out["nextToken"] = json!(next.to_string());
            }
            Ok(out)
        }
        "ListStateMachines" => {
            check("states:ListStateMachines", "*")?;
            let machines: Vec<Json> = workflows
                .machines()
                .iter()
                .map(|m| {
                    json!({
                        "stateMachineArn": m.arn,
                        "name": m.name,
                        "type": m.kind.as_str(),
                        "creationDate": 0,
                    })
                })
                .collect();
            Ok(json!({ "stateMachines": machines }))
        }
        "DescribeStateMachine" => {
            let machine = workflows.machine(&r.string("stateMachineArn")?)?;
            check(
                "states:DescribeStateMachine",
                &format!("stateMachine:{}", machine.name),
            )?;
            Ok(json!({
                "stateMachineArn": machine.arn,
                "name": machine.name,
                "status": "ACTIVE",
                "definition": machine.text,
                "roleArn": machine::role_arn(&machine.name),
                "type": machine.kind.as_str(),
                "creationDate": 0,
                "loggingConfiguration": { "level": "OFF", "includeExecutionData": false },
                "tracingConfiguration": { "enabled": false },
            }))
        }
        "SendTaskSuccess" | "SendTaskFailure" | "SendTaskHeartbeat" => {
            let token = r.string("taskToken")?;
            if let Some(machine) = workflows.token_machine(&token) {
                check(
                    &format!("states:{operation}"),
                    &format!("stateMachine:{machine}"),
                )?;
            }
            let result = match operation {
                "SendTaskSuccess" => {
                    let output = r.string("output")?;
                    let output = serde_json::from_str(&output).map_err(|e| {
                        SfnError::bad(
                            "InvalidOutput",
                            format!("Invalid Output: the output is not JSON: {e}"),
                        )
                    })?;
                    TokenResult::Success(output)
                }
                "SendTaskFailure" => TokenResult::Failure {
                    error: r.optional_string("error")?.unwrap_or_default(),
                    cause: r.optional_string("cause")?.unwrap_or_default(),
                },
                _ => TokenResult::Heartbeat,
            };
            workflows.task_token(&token, result).await?;
            Ok(json!({}))
        }
        other => Err(SfnError::bad(
            "UnknownOperationException",
            format!(
                "nimbus runs the state machines of the app's manifest and does not serve {other}; it serves StartExecution, StartSyncExecution, DescribeExecution, StopExecution, ListExecutions, GetExecutionHistory, ListStateMachines, DescribeStateMachine, DescribeStateMachineForExecution and SendTaskSuccess/Failure/Heartbeat"
            ),
        )),
    }
}

/// DescribeExecution's answer.
fn describe(record: &ExecutionRecord) -> Map<String, Json> {
    let mut out = Map::new();
    out.insert("executionArn".to_owned(), json!(record.arn));
    out.insert("stateMachineArn".to_owned(), json!(record.machine_arn));
    out.insert("name".to_owned(), json!(record.name));
    out.insert("status".to_owned(), json!(record.status));
    out.insert("startDate".to_owned(), json!(seconds(record.start_us)));
    if let Some(stop) = record.stop_us {
        out.insert("stopDate".to_owned(), json!(seconds(stop)));
    }
    out.insert("input".to_owned(), json!(record.input));
    out.insert("inputDetails".to_owned(), json!({ "included": true }));
    if let Some(output) = &record.output {
        out.insert("output".to_owned(), json!(output));
        out.insert("outputDetails".to_owned(), json!({ "included": true }));
    }
    if let Some(error) = &record.error {
        out.insert("error".to_owned(), json!(error));
    }
    if let Some(cause) = &record.cause {
        out.insert("cause".to_owned(), json!(cause));
    }
    if let Some(trace) = &record.trace {
        out.insert("traceHeader".to_owned(), json!(trace));
    }
    out
}

impl From<WorkflowError> for SfnError {
    fn from(e: WorkflowError) -> SfnError {
        let status = if e.code == "InternalFailure" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        SfnError {
            status,
            code: e.code,
            message: e.message,
        }
    }
}

impl SfnError {
    fn bad(code: &'static str, message: impl Into<String>) -> SfnError {
        SfnError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn into_response(self) -> Response {
        super::json_error(
            self.status,
            CONTENT_TYPE,
            self.code,
            &self.message,
            Map::new(),
        )
    }
}

/// An error refused before the request reached Step Functions (a bad signature, an unknown
/// key).
pub(crate) fn error_response(status: StatusCode, code: &'static str, message: &str) -> Response {
    let (status, code) = super::json_refusal(status, code);
    SfnError {
        status,
        code,
        message: message.to_owned(),
    }
    .into_response()
}

/// The request's members.
struct Req<'j>(&'j Map<String, Json>);

impl<'j> MemberReader<'j> for Req<'j> {
    type Error = SfnError;
    fn members(&self) -> &'j Map<String, Json> {
        self.0
    }
}

impl From<MemberError> for SfnError {
    fn from(e: MemberError) -> SfnError {
        SfnError::bad(e.code, e.message)
    }
}

impl Req<'_> {
    fn page_size(&self) -> Res<usize> {
        match self.0.get("maxResults") {
            None | Some(Json::Null) => Ok(DEFAULT_PAGE),
            Some(n) => match n.as_u64() {
                Some(0) => Ok(DEFAULT_PAGE),
                Some(n) if n as usize <= MAX_PAGE => Ok(n as usize),
                _ => Err(SfnError::bad(
                    "ValidationException",
                    format!(
                        "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 1000"
                    ),
                )),
            },
        }
    }

    fn execution_arn(&self) -> Res<String> {
        let arn = self.string("executionArn")?;
        if machine::parse_execution_arn(&arn).is_none() {
            return Err(SfnError::bad(
                "InvalidArn",
                format!(
                    "Invalid Arn: 'Resource type not valid in this context: {arn}' (an execution ARN looks like arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME)"
                ),
            ));
        }
        Ok(arn)
    }
}
