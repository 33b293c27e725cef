//! The services API's workflows (`nimbus workflow`): the app's state machines, starting,
//! listing, describing and stopping executions, and their histories. The same operations
//! as Step Functions' API on the AWS endpoint, with the same grants.

use axum::extract::Path;
use http::StatusCode;
use nimbus_core::workflow::store::{ExecutionFilter, ExecutionRecord};
use serde_json::{Value, json};

use super::{Caller, Json, Query};
use crate::error::ApiError;
use crate::workflows::{StartRequest, WorkflowError, execution_resource, seconds};

/// Executions and history events a listing gives when the query names no limit.
const DEFAULT_LIMIT: usize = 100;

#[derive(serde::Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
}

#[derive(serde::Deserialize)]
pub(super) struct StartBody {
    name: Option<String>,
    /// The input as JSON text (`{}` when absent).
    input: Option<String>,
}

#[derive(serde::Deserialize)]
pub(super) struct StopBody {
    error: Option<String>,
    cause: Option<String>,
}

pub(super) async fn list_machines(caller: Caller) -> Result<Json<Value>, ApiError> {
    check(&caller, "states:ListStateMachines", "*")?;
    let machines: Vec<Value> = caller
        .api
        .generation
        .workflows
        .machines()
        .iter()
        .map(|m| json!({ "name": m.name, "stateMachineArn": m.arn, "type": m.kind.as_str() }))
        .collect();
    Ok(Json(json!({ "stateMachines": machines })))
}

pub(super) async fn start_execution(
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<StartBody>,
) -> Result<Json<Value>, ApiError> {
    let workflows = caller.api.generation.workflows.clone();
    let machine = workflows.machine(&name).map_err(api_error)?;
    check(
        &caller,
        "states:StartExecution",
        &format!("stateMachine:{}", machine.name),
    )?;
    let request = StartRequest {
        name: body.name,
        input: body.input.unwrap_or_else(|| "{}".to_owned()),
        trace: None,
        parent: None,
    };
    let started = workflows
        .start(&machine, request)
        .await
        .map_err(api_error)?;
    Ok(Json(json!({
        "executionArn": started.arn,
        "startDate": seconds(started.start_us),
    })))
}

pub(super) async fn list_executions(
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let workflows = caller.api.generation.workflows.clone();
    let machine = workflows.machine(&name).map_err(api_error)?;
    check(
        &caller,
        "states:ListExecutions",
        &format!("stateMachine:{}", machine.name),
    )?;
    let records = workflows
        .list(ExecutionFilter {
            machine_arn: Some(machine.arn.clone()),
            status: query.status.map(|s| s.to_ascii_uppercase()),
            before: None,
            limit: query.limit.unwrap_or(DEFAULT_LIMIT),
        })
        .await
        .map_err(api_error)?;
    Ok(Json(json!({
        "executions": records.iter().map(describe).collect::<Vec<_>>(),
    })))
}

pub(super) async fn describe_execution(
    caller: Caller,
    Path(arn): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check(
        &caller,
        "states:DescribeExecution",
        &execution_resource(&arn),
    )?;
    let record = caller
        .api
        .generation
        .workflows
        .describe(&arn)
        .await
        .map_err(api_error)?;
    Ok(Json(describe(&record)))
}

pub(super) async fn execution_history(
    caller: Caller,
    Path(arn): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    check(
        &caller,
        "states:GetExecutionHistory",
        &execution_resource(&arn),
    )?;
    let mut events = caller
        .api
        .generation
        .workflows
        .history(&arn, 0, query.limit.unwrap_or(usize::MAX), false)
        .await
        .map_err(api_error)?;
    for event in &mut events {
        if let Value::Object(event) = event {
            event.remove("nimbus");
        }
    }
    Ok(Json(json!({ "events": events })))
}

pub(super) async fn stop_execution(
    caller: Caller,
    Path(arn): Path<String>,
    Json(body): Json<StopBody>,
) -> Result<Json<Value>, ApiError> {
    check(&caller, "states:StopExecution", &execution_resource(&arn))?;
    let stop_us = caller
        .api
        .generation
        .workflows
        .stop(&arn, body.error, body.cause)
        .await
        .map_err(api_error)?;
    Ok(Json(json!({ "stopDate": seconds(stop_us) })))
}

/// An execution as the API lists it: DescribeExecution's fields, input and output as JSON
/// text.
fn describe(record: &ExecutionRecord) -> Value {
    json!({
        "executionArn": record.arn,
        "stateMachineArn": record.machine_arn,
        "name": record.name,
        "status": record.status,
        "startDate": seconds(record.start_us),
        "stopDate": record.stop_us.map(seconds),
        "input": record.input,
        "output": record.output,
        "error": record.error,
        "cause": record.cause,
    })
}

fn check(caller: &Caller, action: &str, resource: &str) -> Result<(), ApiError> {
    caller.principal().check(action, resource)
}

fn api_error(e: WorkflowError) -> ApiError {
    let status = match e.code {
        "InternalFailure" => StatusCode::INTERNAL_SERVER_ERROR,
        "ExecutionDoesNotExist" | "StateMachineDoesNotExist" => StatusCode::NOT_FOUND,
        "ExecutionAlreadyExists" => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        return ApiError::platform(e.message);
    }
    ApiError::typed(status, e.code, e.message)
}
