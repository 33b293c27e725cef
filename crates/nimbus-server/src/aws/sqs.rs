//! SQS's JSON protocol (`X-Amz-Target: AmazonSQS.<Operation>`,
//! `application/x-amz-json-1.0`), which current SDKs (boto3 ≥ 1.34.x, `@aws-sdk/client-sqs`,
//! `aws-sdk` v2 since late 2023) speak, translated onto the queue operations of
//! `services.rs`; `sqs/query.rs` reads the older query protocol into the same requests.
//!
//! Queue URLs are `http://<the Host the client used>/<account>/<queue>`, so a client sends
//! its next request back to nimbus; any URL (or ARN) whose last segment names a queue is
//! accepted.

mod query;

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use axum::response::Response;
use http::StatusCode;
use nimbus_core::events::{QueueSpec, Redrive};
use nimbus_store::{MessageAttribute, NewMessage, ReceivedMessage};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::events::TRACE_ATTRIBUTE;
use crate::generation::Generation;
use crate::services::{self, Principal};
use crate::telemetry::trace::TraceContext;

/// SQS's longest long poll.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// How often a long poll looks for messages again.
const POLL_EVERY: Duration = Duration::from_millis(50);

pub(crate) async fn handle(
    generation: &Generation,
    principal: Principal<'_>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Response {
    let cx = Cx {
        generation,
        principal,
        base_url: crate::listener::base_url(parts),
        trace: crate::gateway::incoming_trace(&parts.headers),
    };
    let target = super::target_operation(parts, super::Service::Sqs);
    let Some(operation) = target else {
        // No target: the query protocol, which the SDKs spoke before SQS moved to JSON in
        // late 2023 (aws-sdk v2 as Lambda's nodejs16.x ships it, older boto3).
        return query::handle(&cx, parts, body).await;
    };
    let res = dispatch(&cx, operation, body).await;
    match res {
        Ok(json) => super::response(StatusCode::OK, CONTENT_TYPE, json),
        Err(e) => e.into_response(),
    }
}

async fn dispatch(cx: &Cx<'_>, operation: &str, body: &[u8]) -> Result<Vec<u8>, SqsError> {
    match operation {
        "CreateQueue" => ok(&cx.create_queue(parse(body)?).await?),
        "GetQueueUrl" => ok(&cx.get_queue_url(parse(body)?).await?),
        "ListQueues" => ok(&cx.list_queues(parse(body)?).await?),
        "SendMessage" => ok(&cx.send_message(parse(body)?).await?),
        "SendMessageBatch" => ok(&cx.send_message_batch(parse(body)?).await?),
        "ReceiveMessage" => ok(&cx.receive_message(parse(body)?).await?),
        "DeleteMessage" => empty(cx.delete_message(parse(body)?).await?),
        "DeleteMessageBatch" => ok(&cx.delete_message_batch(parse(body)?).await?),
        "ChangeMessageVisibility" => empty(cx.change_visibility(parse(body)?).await?),
        "ChangeMessageVisibilityBatch" => ok(&cx.change_visibility_batch(parse(body)?).await?),
        "SetQueueAttributes" => empty(cx.set_queue_attributes(parse(body)?).await?),
        "DeleteQueue" => empty(cx.delete_queue(parse(body)?).await?),
        "PurgeQueue" => empty(cx.purge_queue(parse(body)?).await?),
        "GetQueueAttributes" => ok(&cx.get_queue_attributes(parse(body)?).await?),
        other => Err(unknown_operation(other)),
    }
}

fn unknown_operation(operation: &str) -> SqsError {
    SqsError::new(
        "InvalidAction",
        format!("nimbus does not serve the SQS operation {operation} yet"),
    )
}

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// An SQS error: its code (the JSON `__type`) and message.
pub(crate) struct SqsError {
    status: StatusCode,
    code: String,
    message: String,
}

impl SqsError {
    fn new(code: &str, message: impl Into<String>) -> SqsError {
        SqsError {
            status: StatusCode::BAD_REQUEST,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    fn into_response(self) -> Response {
        let fault = if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        let mut res = error_response(self.status, &self.code, &self.message, fault);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(1));
        }
        res
    }
}

impl From<ApiError> for SqsError {
    fn from(e: ApiError) -> SqsError {
        let code = e.error_type.unwrap_or(if e.status.is_server_error() {
            "InternalError"
        } else {
            "InvalidParameterValue"
        });
        // SQS answers every client error with 400, AccessDenied with 403.
        let status = match code {
            "AccessDenied" => StatusCode::FORBIDDEN,
            // The SDKs retry a 503 ServiceUnavailable (a cluster's engine out of reach).
            "ServiceUnavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ if e.status.is_server_error() => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let code = match code {
            "MessageTooLong" => "InvalidParameterValue",
            other => other,
        };
        SqsError {
            status,
            code: code.to_owned(),
            message: e.message,
        }
    }
}

impl From<services::OpError> for SqsError {
    fn from(e: services::OpError) -> SqsError {
        SqsError::from(e.error)
    }
}

/// An error in the protocol the request spoke: a refusal before the request reaches SQS
/// (a bad signature, an unknown key) must reach a query-protocol client as XML too, or its
/// SDK sees the status but not the code.
pub(crate) fn refusal_response(
    parts: &http::request::Parts,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    if parts.headers.contains_key("x-amz-target") {
        error_response(status, code, message, "Sender")
    } else {
        query::error_response(status, code, message)
    }
}

/// A JSON protocol error: `__type` as the SDKs read it, and the legacy query-protocol code
/// in `x-amzn-query-error`, which botocore maps back for code written against it.
pub(crate) fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    fault: &str,
) -> Response {
    let body = serde_json::json!({
        "__type": format!("com.amazonaws.sqs#{code}"),
        "message": message,
    });
    let mut res = super::response(status, CONTENT_TYPE, body.to_string().into_bytes());
    let legacy = query_code(code);
    if let Ok(value) = http::HeaderValue::from_str(&format!("{legacy};{fault}")) {
        res.headers_mut().insert("x-amzn-query-error", value);
    }
    res
}

/// The code the query protocol gives an error (its `awsQueryError` in SQS's model), which
/// the JSON protocol repeats in `x-amzn-query-error` for SDKs that map it back.
fn query_code(code: &str) -> &str {
    match code {
        "QueueDoesNotExist" => "AWS.SimpleQueueService.NonExistentQueue",
        "QueueNameExists" => "QueueAlreadyExists",
        "BatchEntryIdsNotDistinct" => "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        "BatchRequestTooLong" => "AWS.SimpleQueueService.BatchRequestTooLong",
        "EmptyBatchRequest" => "AWS.SimpleQueueService.EmptyBatchRequest",
        "InvalidBatchEntryId" => "AWS.SimpleQueueService.InvalidBatchEntryId",
        "TooManyEntriesInBatchRequest" => "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        "MessageNotInflight" => "AWS.SimpleQueueService.MessageNotInflight",
        "PurgeQueueInProgress" => "AWS.SimpleQueueService.PurgeQueueInProgress",
        "QueueDeletedRecently" => "AWS.SimpleQueueService.QueueDeletedRecently",
        "UnsupportedOperation" => "AWS.SimpleQueueService.UnsupportedOperation",
        other => other,
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, SqsError> {
    let body = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| {
        SqsError::new(
            "InvalidParameterValue",
            format!("the request body is not a valid request: {e}"),
        )
    })
}

/// The JSON answer of an operation that returns nothing.
fn empty((): ()) -> Result<Vec<u8>, SqsError> {
    Ok(b"{}".to_vec())
}

fn ok<T: Serialize>(value: &T) -> Result<Vec<u8>, SqsError> {
    serde_json::to_vec(value).map_err(|e| SqsError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "InternalError".to_owned(),
        message: e.to_string(),
    })
}

struct Cx<'a> {
    generation: &'a Generation,
    principal: Principal<'a>,
    /// `https://host:port` as the client reached nimbus, for queue URLs.
    base_url: String,
    trace: TraceContext,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateQueue {
    queue_name: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueUrl {
    queue_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListQueues {
    queue_name_prefix: Option<String>,
    /// At most this many (1 to 1,000); with it, a `NextToken` when more remain.
    max_results: Option<u64>,
    next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueRequest {
    queue_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessage {
    queue_url: String,
    #[serde(flatten)]
    message: MessageFields,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MessageFields {
    message_body: String,
    delay_seconds: Option<u64>,
    #[serde(default)]
    message_attributes: BTreeMap<String, AttributeValue>,
    message_group_id: Option<String>,
    message_deduplication_id: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct AttributeValue {
    data_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    string_value: Option<String>,
    /// Base64, as the JSON protocol carries blobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageBatch {
    queue_url: String,
    entries: Vec<BatchEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchEntry {
    id: String,
    #[serde(flatten)]
    message: MessageFields,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveMessage {
    queue_url: String,
    max_number_of_messages: Option<u64>,
    visibility_timeout: Option<u64>,
    wait_time_seconds: Option<u64>,
    #[serde(default)]
    attribute_names: Vec<String>,
    #[serde(default)]
    message_system_attribute_names: Vec<String>,
    #[serde(default)]
    message_attribute_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteMessage {
    queue_url: String,
    receipt_handle: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteMessageBatch {
    queue_url: String,
    entries: Vec<DeleteEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteEntry {
    id: String,
    receipt_handle: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeVisibility {
    queue_url: String,
    receipt_handle: String,
    visibility_timeout: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeVisibilityBatch {
    queue_url: String,
    entries: Vec<ChangeVisibilityEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeVisibilityEntry {
    id: String,
    receipt_handle: String,
    visibility_timeout: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SetQueueAttributes {
    queue_url: String,
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueAttributes {
    queue_url: String,
    #[serde(default)]
    attribute_names: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct QueueUrlResult {
    queue_url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListQueuesResult {
    queue_urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

#[derive(Serialize)]
struct SendMessageResult {
    #[serde(rename = "MessageId")]
    message_id: String,
    #[serde(rename = "MD5OfMessageBody")]
    md5_of_body: String,
    #[serde(
        rename = "MD5OfMessageAttributes",
        skip_serializing_if = "Option::is_none"
    )]
    md5_of_attributes: Option<String>,
    #[serde(rename = "SequenceNumber", skip_serializing_if = "Option::is_none")]
    sequence_number: Option<String>,
}

#[derive(Serialize)]
struct BatchSuccess {
    #[serde(rename = "Id")]
    id: String,
    #[serde(flatten)]
    sent: SendMessageResult,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchFailure {
    id: String,
    sender_fault: bool,
    code: String,
    message: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchResult<T> {
    successful: Vec<T>,
    failed: Vec<BatchFailure>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteSuccess {
    id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveResult {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    messages: Vec<Message>,
}

#[derive(Serialize)]
struct Message {
    #[serde(rename = "MessageId")]
    message_id: String,
    #[serde(rename = "ReceiptHandle")]
    receipt_handle: String,
    #[serde(rename = "MD5OfBody")]
    md5_of_body: String,
    #[serde(rename = "Body")]
    body: String,
    #[serde(rename = "Attributes", skip_serializing_if = "BTreeMap::is_empty")]
    attributes: BTreeMap<String, String>,
    #[serde(
        rename = "MD5OfMessageAttributes",
        skip_serializing_if = "Option::is_none"
    )]
    md5_of_attributes: Option<String>,
    #[serde(
        rename = "MessageAttributes",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    message_attributes: BTreeMap<String, AttributeValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AttributesResult {
    attributes: BTreeMap<String, String>,
}

impl Cx<'_> {
    fn events(&self) -> &crate::events::Events {
        &self.generation.events
    }

    fn url(&self, queue: &str) -> String {
        format!("{}/{}/{queue}", self.base_url, nimbus_core::ACCOUNT_ID)
    }

    async fn create_queue(&self, req: CreateQueue) -> Result<QueueUrlResult, SqsError> {
        let spec = queue_spec(&req.queue_name, &req.attributes)?;
        services::create_queue(self.events(), self.principal, spec).await?;
        Ok(QueueUrlResult {
            queue_url: self.url(&req.queue_name),
        })
    }

    async fn get_queue_url(&self, req: GetQueueUrl) -> Result<QueueUrlResult, SqsError> {
        let access = nimbus_core::services::Access::queue_get_url(&req.queue_name);
        services::queue_attributes(self.events(), self.principal, &req.queue_name, access).await?;
        Ok(QueueUrlResult {
            queue_url: self.url(&req.queue_name),
        })
    }

    async fn list_queues(&self, req: ListQueues) -> Result<ListQueuesResult, SqsError> {
        let queues = services::list_queues(self.events(), self.principal).await?;
        let prefix = req.queue_name_prefix.unwrap_or_default();
        let max_results = match req.max_results {
            None => usize::MAX,
            Some(n @ 1..=1000) => usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => {
                return Err(SqsError::new(
                    "InvalidParameterValue",
                    format!("MaxResults must be 1 to 1000, got {n}"),
                ));
            }
        };
        // The token is the last name of the page before (queues list in name order).
        let mut names: Vec<&str> = queues
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| name.starts_with(&prefix))
            .filter(|name| req.next_token.as_deref().is_none_or(|after| *name > after))
            .collect();
        let next_token = (names.len() > max_results).then(|| {
            names.truncate(max_results);
            names
                .last()
                .map_or(String::new(), |name| (*name).to_owned())
        });
        Ok(ListQueuesResult {
            queue_urls: names.into_iter().map(|name| self.url(name)).collect(),
            next_token,
        })
    }

    async fn send_message(&self, req: SendMessage) -> Result<SendMessageResult, SqsError> {
        let queue = queue_name(&req.queue_url)?;
        let (message, md5_of_attributes) = new_message(req.message)?;
        let sent =
            services::send_message(self.events(), self.principal, queue, message, &self.trace)
                .await?;
        Ok(SendMessageResult {
            message_id: sent.message_id,
            md5_of_body: sent.md5_of_body,
            md5_of_attributes,
            sequence_number: sent.sequence_number,
        })
    }

    async fn send_message_batch(
        &self,
        req: SendMessageBatch,
    ) -> Result<BatchResult<BatchSuccess>, SqsError> {
        let queue = queue_name(&req.queue_url)?;
        let mut ids = Vec::new();
        let mut md5s = Vec::new();
        let mut messages = Vec::new();
        for entry in req.entries {
            if !services::valid_batch_entry_id(&entry.id) {
                return Err(SqsError::new(
                    "InvalidBatchEntryId",
                    format!(
                        "the batch entry id {:?} is not 1 to 80 letters, digits, - and _",
                        entry.id
                    ),
                ));
            }
            if ids.contains(&entry.id) {
                return Err(SqsError::new(
                    "BatchEntryIdsNotDistinct",
                    format!("the batch entry id {:?} is used twice", entry.id),
                ));
            }
            ids.push(entry.id);
            match new_message(entry.message) {
                Ok((message, md5)) => {
                    md5s.push(md5);
                    messages.push(Ok(message));
                }
                Err(e) => {
                    md5s.push(None);
                    messages.push(Err(ApiError::typed(
                        StatusCode::BAD_REQUEST,
                        "InvalidParameterValue",
                        e.message,
                    )));
                }
            }
        }
        let results = services::send_message_batch(
            self.events(),
            self.principal,
            queue,
            messages,
            &self.trace,
        )
        .await?;
        let mut out = BatchResult {
            successful: Vec::new(),
            failed: Vec::new(),
        };
        for ((id, md5_of_attributes), result) in ids.into_iter().zip(md5s).zip(results) {
            match result {
                Ok(sent) => out.successful.push(BatchSuccess {
                    id,
                    sent: SendMessageResult {
                        message_id: sent.message_id,
                        md5_of_body: sent.md5_of_body,
                        md5_of_attributes,
                        sequence_number: sent.sequence_number,
                    },
                }),
                Err(e) => {
                    let e = SqsError::from(e);
                    out.failed.push(BatchFailure {
                        id,
                        sender_fault: !e.status.is_server_error(),
                        code: e.code,
                        message: e.message,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn receive_message(&self, req: ReceiveMessage) -> Result<ReceiveResult, SqsError> {
        let queue = queue_name(&req.queue_url)?;
        let max = req.max_number_of_messages.unwrap_or(1);
        if !(1..=10).contains(&max) {
            return Err(SqsError::new(
                "InvalidParameterValue",
                format!("MaxNumberOfMessages must be 1 to 10, not {max}"),
            ));
        }
        let wait = Duration::from_secs(req.wait_time_seconds.unwrap_or(0));
        if wait > MAX_WAIT {
            return Err(SqsError::new(
                "InvalidParameterValue",
                "WaitTimeSeconds must be 0 to 20",
            ));
        }
        let visibility = req.visibility_timeout.map(Duration::from_secs);
        // A long poll answers as soon as a message is there, else when the wait is over.
        let deadline = tokio::time::Instant::now() + wait;
        let received = loop {
            let received =
                services::receive_messages(self.events(), self.principal, queue, max, visibility)
                    .await?;
            if !received.is_empty() || tokio::time::Instant::now() >= deadline {
                break received;
            }
            tokio::time::sleep(POLL_EVERY.min(deadline - tokio::time::Instant::now())).await;
        };
        let mut system_names = req.attribute_names;
        system_names.extend(req.message_system_attribute_names);
        let all_system = system_names.iter().any(|n| n == "All");
        let all_attributes = req
            .message_attribute_names
            .iter()
            .any(|n| n == "All" || n == ".*");
        let messages = received
            .into_iter()
            .map(|m| {
                message(
                    m,
                    &system_names,
                    all_system,
                    &req.message_attribute_names,
                    all_attributes,
                )
            })
            .collect();
        Ok(ReceiveResult { messages })
    }

    async fn delete_message(&self, req: DeleteMessage) -> Result<(), SqsError> {
        let queue = queue_name(&req.queue_url)?;
        services::delete_message(self.events(), self.principal, queue, req.receipt_handle).await?;
        Ok(())
    }

    async fn delete_message_batch(
        &self,
        req: DeleteMessageBatch,
    ) -> Result<BatchResult<DeleteSuccess>, SqsError> {
        let queue = queue_name(&req.queue_url)?;
        check_batch(req.entries.iter().map(|e| e.id.as_str()))?;
        let mut out = BatchResult {
            successful: Vec::new(),
            failed: Vec::new(),
        };
        for entry in req.entries {
            let res = services::delete_message(
                self.events(),
                self.principal,
                queue,
                entry.receipt_handle,
            )
            .await;
            out.add(entry.id, res)?;
        }
        Ok(out)
    }

    async fn change_visibility_batch(
        &self,
        req: ChangeVisibilityBatch,
    ) -> Result<BatchResult<DeleteSuccess>, SqsError> {
        let queue = queue_name(&req.queue_url)?;
        check_batch(req.entries.iter().map(|e| e.id.as_str()))?;
        let mut out = BatchResult {
            successful: Vec::new(),
            failed: Vec::new(),
        };
        for entry in req.entries {
            let res = services::change_visibility(
                self.events(),
                self.principal,
                queue,
                entry.receipt_handle,
                Duration::from_secs(entry.visibility_timeout),
            )
            .await;
            out.add(entry.id, res)?;
        }
        Ok(out)
    }

    async fn set_queue_attributes(&self, req: SetQueueAttributes) -> Result<(), SqsError> {
        let queue = queue_name(&req.queue_url)?;
        let access = nimbus_core::services::Access::queue_set_attributes(queue);
        let (mut spec, _) =
            services::queue_attributes(self.events(), self.principal, queue, access).await?;
        apply_attributes(&mut spec, &req.attributes)?;
        services::update_queue(self.events(), self.principal, spec).await?;
        Ok(())
    }

    async fn delete_queue(&self, req: QueueRequest) -> Result<(), SqsError> {
        let queue = queue_name(&req.queue_url)?;
        services::delete_queue(self.events(), self.principal, queue).await?;
        Ok(())
    }

    async fn change_visibility(&self, req: ChangeVisibility) -> Result<(), SqsError> {
        let queue = queue_name(&req.queue_url)?;
        services::change_visibility(
            self.events(),
            self.principal,
            queue,
            req.receipt_handle,
            Duration::from_secs(req.visibility_timeout),
        )
        .await?;
        Ok(())
    }

    async fn purge_queue(&self, req: QueueRequest) -> Result<(), SqsError> {
        let queue = queue_name(&req.queue_url)?;
        services::purge_queue(self.events(), self.principal, queue).await?;
        Ok(())
    }

    async fn get_queue_attributes(
        &self,
        req: GetQueueAttributes,
    ) -> Result<AttributesResult, SqsError> {
        let queue = queue_name(&req.queue_url)?;
        let access = nimbus_core::services::Access::queue_get_attributes(queue);
        let (spec, stats) =
            services::queue_attributes(self.events(), self.principal, queue, access).await?;
        let mut all = BTreeMap::new();
        let mut put = |name: &str, value: String| {
            all.insert(name.to_owned(), value);
        };
        put("ApproximateNumberOfMessages", stats.visible.to_string());
        put(
            "ApproximateNumberOfMessagesNotVisible",
            stats.in_flight.to_string(),
        );
        put(
            "ApproximateNumberOfMessagesDelayed",
            stats.delayed.to_string(),
        );
        put(
            "VisibilityTimeout",
            spec.visibility_timeout.as_secs().to_string(),
        );
        put("DelaySeconds", spec.delay.as_secs().to_string());
        put(
            "MessageRetentionPeriod",
            spec.retention.as_secs().to_string(),
        );
        put(
            "MaximumMessageSize",
            nimbus_store::MAX_MESSAGE_BYTES.to_string(),
        );
        put("ReceiveMessageWaitTimeSeconds", "0".to_owned());
        put(
            "QueueArn",
            format!(
                "arn:aws:sqs:{}:{}:{queue}",
                self.events().region,
                nimbus_core::ACCOUNT_ID
            ),
        );
        if spec.is_fifo() {
            put("FifoQueue", "true".to_owned());
            put(
                "ContentBasedDeduplication",
                spec.content_based_deduplication.to_string(),
            );
        }
        if let Some(redrive) = &spec.redrive {
            let policy = serde_json::json!({
                "deadLetterTargetArn": format!(
                    "arn:aws:sqs:{}:{}:{}",
                    self.events().region,
                    nimbus_core::ACCOUNT_ID,
                    redrive.dead_letter_queue
                ),
                "maxReceiveCount": redrive.max_receive_count,
            });
            put("RedrivePolicy", policy.to_string());
        }
        let wanted = &req.attribute_names;
        let attributes = if wanted.iter().any(|n| n == "All") {
            all
        } else {
            all.into_iter()
                .filter(|(name, _)| wanted.contains(name))
                .collect()
        };
        Ok(AttributesResult { attributes })
    }
}

/// The queue a `QueueUrl` names: its last path segment (an ARN's last field works too).
fn queue_name(url: &str) -> Result<&str, SqsError> {
    url.trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| {
            SqsError::new(
                "QueueDoesNotExist",
                format!("{url:?} names no queue; pass the QueueUrl that CreateQueue or GetQueueUrl returned"),
            )
        })
}

/// A queue to create from CreateQueue's attributes.
fn queue_spec(name: &str, attributes: &BTreeMap<String, String>) -> Result<QueueSpec, SqsError> {
    let mut spec = QueueSpec::with_defaults(name);
    apply_attributes(&mut spec, attributes)?;
    Ok(spec)
}

/// A batch holds 1 to 10 entries, each with an id of its own.
fn check_batch<'a>(ids: impl ExactSizeIterator<Item = &'a str>) -> Result<(), SqsError> {
    let n_entries = ids.len();
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(SqsError::new(
                "BatchEntryIdsNotDistinct",
                format!("the batch entry id {id:?} is used twice"),
            ));
        }
    }
    match n_entries {
        0 => Err(SqsError::new(
            "EmptyBatchRequest",
            "a batch holds 1 to 10 entries",
        )),
        1..=10 => Ok(()),
        _ => Err(SqsError::new(
            "TooManyEntriesInBatchRequest",
            "a batch holds 1 to 10 entries",
        )),
    }
}

impl BatchResult<DeleteSuccess> {
    /// Records one entry's outcome; a refused grant fails the whole batch, as on SQS.
    fn add(&mut self, id: String, res: Result<(), services::OpError>) -> Result<(), SqsError> {
        match res {
            Ok(()) => self.successful.push(DeleteSuccess { id }),
            Err(e) if e.error.error_type == Some("AccessDenied") => return Err(e.into()),
            Err(e) => {
                let e = SqsError::from(e);
                self.failed.push(BatchFailure {
                    id,
                    sender_fault: true,
                    code: e.code,
                    message: e.message,
                });
            }
        }
        Ok(())
    }
}

/// Sets a queue's settings from CreateQueue's or SetQueueAttributes' attributes.
fn apply_attributes(
    spec: &mut QueueSpec,
    attributes: &BTreeMap<String, String>,
) -> Result<(), SqsError> {
    let name = spec.name.clone();
    let seconds = |value: &str, what: &str| {
        value.parse::<u64>().map(Duration::from_secs).map_err(|_| {
            SqsError::new(
                "InvalidAttributeValue",
                format!("{what} must be a whole number of seconds, got {value:?}"),
            )
        })
    };
    for (key, value) in attributes {
        match key.as_str() {
            "VisibilityTimeout" => spec.visibility_timeout = seconds(value, key)?,
            "DelaySeconds" => spec.delay = seconds(value, key)?,
            "MessageRetentionPeriod" => spec.retention = seconds(value, key)?,
            "ContentBasedDeduplication" => spec.content_based_deduplication = value == "true",
            "FifoQueue" if value == "true" && !name.ends_with(".fifo") => {
                return Err(SqsError::new(
                    "InvalidParameterValue",
                    "the name of a FIFO queue must end in .fifo",
                ));
            }
            // An empty policy removes the queue's redrive, as SQS takes it.
            "RedrivePolicy" if value.trim().is_empty() => spec.redrive = None,
            "RedrivePolicy" => {
                let policy: serde_json::Value = serde_json::from_str(value).map_err(|e| {
                    SqsError::new(
                        "InvalidAttributeValue",
                        format!("RedrivePolicy is not JSON: {e}"),
                    )
                })?;
                let target = policy["deadLetterTargetArn"].as_str().unwrap_or_default();
                let count = match &policy["maxReceiveCount"] {
                    serde_json::Value::Number(n) => n.as_u64(),
                    serde_json::Value::String(s) => s.parse().ok(),
                    _ => None,
                };
                let (Some(dead_letter_queue), Some(count)) = (
                    target.rsplit(':').next().filter(|n| !n.is_empty()),
                    count.and_then(|c| u32::try_from(c).ok()),
                ) else {
                    return Err(SqsError::new(
                        "InvalidAttributeValue",
                        "RedrivePolicy needs deadLetterTargetArn and maxReceiveCount",
                    ));
                };
                spec.redrive = Some(Redrive {
                    dead_letter_queue: dead_letter_queue.to_owned(),
                    max_receive_count: count,
                });
            }
            // Settings of AWS's own that change nothing here.
            "FifoQueue"
            | "MaximumMessageSize"
            | "ReceiveMessageWaitTimeSeconds"
            | "KmsMasterKeyId"
            | "KmsDataKeyReusePeriodSeconds"
            | "SqsManagedSseEnabled"
            | "Policy"
            | "DeduplicationScope"
            | "FifoThroughputLimit" => {}
            other => {
                return Err(SqsError::new(
                    "InvalidAttributeName",
                    format!("unknown queue attribute {other}"),
                ));
            }
        }
    }
    Ok(())
}

/// The store's message from SendMessage's fields, and the `MD5OfMessageAttributes` of the
/// attributes the client sent (not those nimbus adds to carry the trace).
fn new_message(fields: MessageFields) -> Result<(NewMessage, Option<String>), SqsError> {
    let mut attributes = BTreeMap::new();
    for (name, value) in fields.message_attributes {
        let text = match (value.string_value, value.binary_value) {
            (Some(text), _) => text,
            (None, Some(binary)) => binary,
            (None, None) => {
                return Err(SqsError::new(
                    "InvalidParameterValue",
                    format!("message attribute {name} has no StringValue or BinaryValue"),
                ));
            }
        };
        attributes.insert(
            name,
            MessageAttribute {
                data_type: value.data_type,
                value: text,
            },
        );
    }
    let md5 = nimbus_store::md5_of_attributes(&attributes)
        .map_err(|reason| SqsError::new("InvalidParameterValue", reason))?;
    let message = NewMessage {
        body: fields.message_body,
        delay: fields.delay_seconds.map(Duration::from_secs),
        attributes,
        group_id: fields.message_group_id,
        deduplication_id: fields.message_deduplication_id,
    };
    Ok((message, md5))
}

/// A received message as ReceiveMessage returns it, with the system attributes and message
/// attributes the request asked for.
fn message(
    m: ReceivedMessage,
    system_names: &[String],
    all_system: bool,
    attribute_names: &[String],
    all_attributes: bool,
) -> Message {
    let millis = |t: std::time::SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
            .to_string()
    };
    let mut system = BTreeMap::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(value) = value
            && (all_system || system_names.iter().any(|n| n == name))
        {
            system.insert(name.to_owned(), value);
        }
    };
    put("ApproximateReceiveCount", Some(m.receive_count.to_string()));
    put("SentTimestamp", Some(millis(m.sent_at)));
    put(
        "ApproximateFirstReceiveTimestamp",
        Some(millis(m.first_received_at)),
    );
    put("SenderId", Some(nimbus_core::ACCOUNT_ID.to_owned()));
    put("MessageGroupId", m.group_id.clone());
    put("SequenceNumber", m.sequence_number.clone());
    put("MessageDeduplicationId", m.deduplication_id.clone());
    // The trace travels as a message attribute in the store; SQS gives it as the system
    // attribute AWSTraceHeader.
    put(
        "AWSTraceHeader",
        m.attributes.get(TRACE_ATTRIBUTE).map(|a| a.value.clone()),
    );
    // nimbus's own attributes stay out of what the client sees.
    let user: BTreeMap<String, MessageAttribute> = m
        .attributes
        .into_iter()
        .filter(|(name, _)| !name.starts_with("nimbus.") && name != TRACE_ATTRIBUTE)
        .collect();
    let selected: BTreeMap<String, MessageAttribute> = user
        .into_iter()
        .filter(|(name, _)| {
            all_attributes
                || attribute_names.iter().any(|wanted| {
                    wanted == name
                        || wanted
                            .strip_suffix(".*")
                            .is_some_and(|prefix| name.starts_with(prefix))
                })
        })
        .collect();
    let md5_of_attributes = nimbus_store::md5_of_attributes(&selected).ok().flatten();
    let message_attributes = selected
        .into_iter()
        .map(|(name, a)| {
            let binary = a.data_type.starts_with("Binary");
            (
                name,
                AttributeValue {
                    data_type: a.data_type,
                    string_value: (!binary).then(|| a.value.clone()),
                    binary_value: binary.then_some(a.value),
                },
            )
        })
        .collect();
    Message {
        message_id: m.message_id,
        receipt_handle: m.receipt_handle,
        md5_of_body: m.md5_of_body,
        body: m.body,
        attributes: system,
        md5_of_attributes,
        message_attributes,
    }
}
