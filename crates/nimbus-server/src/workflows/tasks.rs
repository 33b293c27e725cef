//! What a Task state's resource does: invoke a function, or call one of nimbus's services
//! (Step Functions' optimized integrations), and report the result to the execution's actor.
//!
//! Errors are named as Step Functions names them: a function's own `errorType` (its error
//! JSON as the cause), `Lambda.Unknown` when its instance crashed or ran out of memory,
//! `Sandbox.Timedout` when it ran past its timeout, `Lambda.<Exception>` when the invoke
//! itself was refused; `SQS.`, `SNS.`, `DynamoDB.`, `EventBridge.` and `StepFunctions.`
//! before the service's error code for the integrations; `States.Runtime` for a result that
//! is not JSON.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::Outcome;
use nimbus_core::workflow::{Completion, Event, Pattern, Resource, TaskId};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Msg, StartRequest, Workflows};
use crate::error::ApiError;
use crate::generation::Generation;
use crate::services::{self, OpError, Principal};
use crate::telemetry::TraceContext;

/// The longest a throttled task waits before trying its invoke again.
const MAX_THROTTLE_BACKOFF: Duration = Duration::from_secs(1);

/// What a task needs besides its resource and parameters.
pub(super) struct TaskContext {
    pub(super) workflows: Arc<Workflows>,
    pub(super) execution_arn: String,
    pub(super) trace: TraceContext,
    pub(super) tx: mpsc::UnboundedSender<Msg>,
}

/// How a task's call ended.
enum TaskResult {
    Succeeded(Value),
    Failed { error: String, cause: String },
}

/// Runs one task attempt and reports its result; with `.waitForTaskToken` a successful call
/// reports nothing (SendTask* will).
pub(super) async fn run(
    ctx: TaskContext,
    task: TaskId,
    resource: String,
    parameters: Value,
    completion: Completion,
) {
    let res = call(&ctx, &resource, parameters, &completion).await;
    let event = match (res, &completion) {
        (TaskResult::Succeeded(_), Completion::Token(_)) => return,
        (TaskResult::Succeeded(output), _) => Event::TaskSucceeded { task, output },
        (TaskResult::Failed { error, cause }, _) => Event::TaskFailed { task, error, cause },
    };
    let _ = ctx.tx.send(Msg::Event(event));
}

async fn call(
    ctx: &TaskContext,
    resource: &str,
    parameters: Value,
    completion: &Completion,
) -> TaskResult {
    let resource = match Resource::parse(resource) {
        Ok(resource) => resource,
        Err(message) => return failed("States.Runtime", message),
    };
    let Some(generation) = ctx
        .workflows
        .current
        .get()
        .and_then(std::sync::Weak::upgrade)
        .map(|current| current.load())
    else {
        return failed(
            "States.Runtime",
            "nimbus is shutting down; the task runs again when it restarts",
        );
    };
    match resource {
        Resource::Function { name, .. } => {
            invoke(&generation, &ctx.trace, &name, parameters, false).await
        }
        Resource::Service {
            service,
            action,
            pattern,
        } => match (service.as_str(), action.as_str()) {
            ("lambda", "invoke") => lambda_invoke(&generation, &ctx.trace, parameters).await,
            ("sqs", "sendMessage") => sqs_send(&generation, &ctx.trace, &parameters).await,
            ("sns", "publish") => sns_publish(&generation, &ctx.trace, &parameters).await,
            ("dynamodb", action) => dynamodb(&generation, action, &parameters).await,
            ("events", "putEvents") => put_events(&generation, &ctx.trace, &parameters).await,
            ("states", "startExecution") => {
                start_execution(ctx, &parameters, completion, pattern == Pattern::Sync2).await
            }
            (service, action) => failed(
                "States.Runtime",
                format!("nimbus does not run the integration {service}:{action}"),
            ),
        },
    }
}

/// Invokes a function with `payload` as its event: its response, or its error. With
/// `invoke_api`, the result is Lambda's Invoke response (`lambda:invoke`).
async fn invoke(
    generation: &Generation,
    trace: &TraceContext,
    name: &str,
    payload: Value,
    invoke_api: bool,
) -> TaskResult {
    let payload = Bytes::from(payload.to_string());
    // A throttled invoke waits for room and tries again: the limit is this machine's
    // (`--max-instances`, the queue's bounds), not a quota the workflow's author chose, so
    // a burst of executions queues here like asynchronous invocations do, for as long as
    // the task may run (a timeout or a stop cancels it).
    let mut backoff = Duration::from_millis(20);
    let invoked = loop {
        let invoked = services::invoke_function(
            generation,
            Principal::Operator,
            name,
            payload.clone(),
            "RequestResponse",
            trace,
        )
        .await;
        match invoked {
            Err(e) if e.error_type == Some("TooManyRequestsException") => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_THROTTLE_BACKOFF);
            }
            invoked => break invoked,
        }
    };
    let report = match invoked {
        Ok(services::Invoked::Sync { report, .. }) => report,
        Ok(_) => return failed("Lambda.Unknown", "the invocation did not run"),
        Err(e) => return api_failed("Lambda", &e),
    };
    match report.outcome {
        Outcome::Ok(body) => {
            let Ok(result) = serde_json::from_slice::<Value>(&body) else {
                return failed(
                    "States.Runtime",
                    format!(
                        "the function `{name}` returned a result that is not JSON: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ),
                );
            };
            if invoke_api {
                TaskResult::Succeeded(json!({
                    "ExecutedVersion": "$LATEST",
                    "Payload": result,
                    "SdkHttpMetadata": { "HttpStatusCode": 200 },
                    "StatusCode": 200,
                }))
            } else {
                TaskResult::Succeeded(result)
            }
        }
        Outcome::Error(body) => {
            let error = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("errorType")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "Error".to_owned());
            TaskResult::Failed {
                error,
                cause: String::from_utf8_lossy(&body).into_owned(),
            }
        }
        Outcome::Timeout(after) => failed(
            "Sandbox.Timedout",
            json!({
                "errorType": "Sandbox.Timedout",
                "errorMessage": format!("Task timed out after {:.2} seconds", after.as_secs_f64()),
            })
            .to_string(),
        ),
        Outcome::OutOfMemory { limit_mb } => failed(
            "Lambda.Unknown",
            format!("The function `{name}` ran out of memory ({limit_mb} MB)"),
        ),
        Outcome::Crashed(why) => failed(
            "Lambda.Unknown",
            format!("The function `{name}` crashed: {why}"),
        ),
    }
}

/// `arn:aws:states:::lambda:invoke`: `FunctionName` and `Payload`.
async fn lambda_invoke(
    generation: &Generation,
    trace: &TraceContext,
    parameters: Value,
) -> TaskResult {
    let Some(name) = parameters.get("FunctionName").and_then(Value::as_str) else {
        return failed(
            "States.Runtime",
            "lambda:invoke needs a FunctionName parameter",
        );
    };
    let payload = match parameters.get("Payload") {
        None => json!({}),
        Some(Value::String(text)) => {
            serde_json::from_str(text).unwrap_or(Value::String(text.clone()))
        }
        Some(payload) => payload.clone(),
    };
    invoke(generation, trace, name, payload, true).await
}

/// `arn:aws:states:::sqs:sendMessage`: `QueueUrl`, `MessageBody` (text, or JSON sent as its
/// text), `MessageGroupId`, `MessageDeduplicationId`, `DelaySeconds`.
async fn sqs_send(generation: &Generation, trace: &TraceContext, parameters: &Value) -> TaskResult {
    let Some(url) = parameters.get("QueueUrl").and_then(Value::as_str) else {
        return failed(
            "States.Runtime",
            "sqs:sendMessage needs a QueueUrl parameter",
        );
    };
    let queue = url.rsplit('/').next().unwrap_or(url);
    let Some(body) = parameters.get("MessageBody").map(text_of) else {
        return failed(
            "States.Runtime",
            "sqs:sendMessage needs a MessageBody parameter",
        );
    };
    let message = nimbus_store::NewMessage {
        body,
        delay: parameters
            .get("DelaySeconds")
            .and_then(Value::as_u64)
            .map(std::time::Duration::from_secs),
        attributes: Default::default(),
        group_id: string_param(parameters, "MessageGroupId"),
        deduplication_id: string_param(parameters, "MessageDeduplicationId"),
    };
    match services::send_message(
        &generation.events,
        Principal::Operator,
        queue,
        message,
        trace,
    )
    .await
    {
        Ok(sent) => {
            let mut out =
                json!({ "MessageId": sent.message_id, "MD5OfMessageBody": sent.md5_of_body });
            if let Some(seq) = sent.sequence_number {
                out["SequenceNumber"] = json!(seq);
            }
            TaskResult::Succeeded(out)
        }
        Err(e) => op_failed("SQS", &e),
    }
}

/// `arn:aws:states:::sns:publish`: `TopicArn`, `Message` (text, or JSON sent as its text),
/// `Subject`.
async fn sns_publish(
    generation: &Generation,
    trace: &TraceContext,
    parameters: &Value,
) -> TaskResult {
    let Some(arn) = parameters.get("TopicArn").and_then(Value::as_str) else {
        return failed("States.Runtime", "sns:publish needs a TopicArn parameter");
    };
    let topic = arn.rsplit(':').next().unwrap_or(arn);
    let Some(message) = parameters.get("Message").map(text_of) else {
        return failed("States.Runtime", "sns:publish needs a Message parameter");
    };
    let publish = crate::events::Publish {
        message,
        protocol_messages: Default::default(),
        group_id: string_param(parameters, "MessageGroupId"),
        deduplication_id: string_param(parameters, "MessageDeduplicationId"),
        subject: string_param(parameters, "Subject"),
        attributes: Default::default(),
    };
    match services::publish(
        &generation.events,
        Principal::Operator,
        topic,
        publish,
        trace,
    )
    .await
    {
        Ok(message_id) => TaskResult::Succeeded(json!({ "MessageId": message_id })),
        Err(e) => op_failed("SNS", &e),
    }
}

/// `arn:aws:states:::dynamodb:getItem|putItem|updateItem|deleteItem`: the parameters are the
/// API request, the result its response.
async fn dynamodb(generation: &Generation, action: &str, parameters: &Value) -> TaskResult {
    let operation = match action {
        "getItem" => "GetItem",
        "putItem" => "PutItem",
        "updateItem" => "UpdateItem",
        "deleteItem" => "DeleteItem",
        other => {
            return failed(
                "States.Runtime",
                format!("nimbus does not run the integration dynamodb:{other}"),
            );
        }
    };
    match crate::aws::dynamodb_operation(generation, Principal::Operator, operation, parameters)
        .await
    {
        Ok(result) => TaskResult::Succeeded(result),
        Err((code, message)) => failed(&format!("DynamoDB.{code}"), message),
    }
}

/// `arn:aws:states:::events:putEvents`: `Entries` of `Detail`, `DetailType`, `Source`,
/// `EventBusName`.
async fn put_events(
    generation: &Generation,
    trace: &TraceContext,
    parameters: &Value,
) -> TaskResult {
    let Some(entries) = parameters.get("Entries").and_then(Value::as_array) else {
        return failed(
            "States.Runtime",
            "events:putEvents needs an Entries parameter (a list)",
        );
    };
    let mut puts = Vec::with_capacity(entries.len());
    for entry in entries {
        let detail = match entry.get("Detail") {
            Some(Value::String(text)) => serde_json::from_str(text).unwrap_or_else(|_| json!({})),
            Some(detail) => detail.clone(),
            None => json!({}),
        };
        puts.push(crate::events::PutEvent {
            bus: string_param(entry, "EventBusName")
                .map(|bus| bus.rsplit('/').next().unwrap_or(&bus).to_owned())
                .unwrap_or_else(|| "default".to_owned()),
            source: string_param(entry, "Source").unwrap_or_default(),
            detail_type: string_param(entry, "DetailType").unwrap_or_default(),
            detail,
            resources: Vec::new(),
            time: None,
        });
    }
    match services::put_events(&generation.events, Principal::Operator, puts, trace).await {
        Ok(results) => {
            let mut failed_count = 0;
            let entries: Vec<Value> = results
                .into_iter()
                .map(|res| match res {
                    Ok(id) => json!({ "EventId": id }),
                    Err(e) => {
                        failed_count += 1;
                        json!({ "ErrorCode": e.error_type.unwrap_or("InternalException"), "ErrorMessage": e.message })
                    }
                })
                .collect();
            TaskResult::Succeeded(json!({ "Entries": entries, "FailedEntryCount": failed_count }))
        }
        Err(e) => op_failed("EventBridge", &e),
    }
}

/// `arn:aws:states:::states:startExecution[.sync[:2]]`: `StateMachineArn`, `Input` (JSON or
/// its text), `Name`. Request-response answers with the new execution; `.sync` waits for it
/// to end and answers with its description (`.sync:2` with its output as JSON).
async fn start_execution(
    ctx: &TaskContext,
    parameters: &Value,
    completion: &Completion,
    sync2: bool,
) -> TaskResult {
    let Some(machine_arn) = parameters.get("StateMachineArn").and_then(Value::as_str) else {
        return failed(
            "States.Runtime",
            "states:startExecution needs a StateMachineArn parameter",
        );
    };
    let machine = match ctx.workflows.machine(machine_arn) {
        Ok(machine) => machine,
        Err(e) => return failed(&format!("StepFunctions.{}Exception", e.code), e.message),
    };
    let input = match parameters.get("Input") {
        None => "{}".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(input) => input.to_string(),
    };
    let request = StartRequest {
        name: string_param(parameters, "Name"),
        input,
        trace: Some(ctx.trace.clone()),
        parent: Some(ctx.execution_arn.clone()),
    };
    let started = match ctx.workflows.start(&machine, request).await {
        Ok(started) => started,
        Err(e) => return failed(&format!("StepFunctions.{}Exception", e.code), e.message),
    };
    if !matches!(completion, Completion::Sync) {
        return TaskResult::Succeeded(json!({
            "ExecutionArn": started.arn,
            "StartDate": started.start_us as f64 / 1_000_000.0,
        }));
    }
    let record = match ctx.workflows.wait(&started.arn).await {
        Ok(record) => record,
        Err(e) => return failed("States.TaskFailed", e.message),
    };
    let output = record.output.as_deref().map(|text| {
        if sync2 {
            serde_json::from_str(text).unwrap_or(Value::Null)
        } else {
            Value::String(text.to_owned())
        }
    });
    let description = json!({
        "ExecutionArn": record.arn,
        "StateMachineArn": record.machine_arn,
        "Name": record.name,
        "Status": record.status,
        "StartDate": record.start_us as f64 / 1_000_000.0,
        "StopDate": record.stop_us.map(|us| us as f64 / 1_000_000.0),
        "Input": record.input,
        "Output": output,
        "Error": record.error,
        "Cause": record.cause,
    });
    if record.status == "SUCCEEDED" {
        TaskResult::Succeeded(description)
    } else {
        failed("States.TaskFailed", description.to_string())
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn string_param(parameters: &Value, name: &str) -> Option<String> {
    parameters
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn failed(error: &str, cause: impl Into<String>) -> TaskResult {
    TaskResult::Failed {
        error: error.to_owned(),
        cause: cause.into(),
    }
}

fn api_failed(service: &str, e: &ApiError) -> TaskResult {
    failed(
        &format!("{service}.{}", e.error_type.unwrap_or("ServiceException")),
        e.message.clone(),
    )
}

fn op_failed(service: &str, e: &OpError) -> TaskResult {
    api_failed(service, &e.error)
}
