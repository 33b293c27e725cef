//! One function per service operation (send, receive, publish, put, get, ...), each
//! checking the caller's grants first. The services HTTP API (`api.rs`) and the
//! functions' in-process `Services` (`services/handle.rs`, for wasm guests) both go
//! through them, so the two cannot drift apart.

pub(crate) mod connections;
mod handle;
pub(crate) mod streams;
pub(crate) mod tables;

use std::collections::BTreeMap;
use std::time::Duration;

use http::StatusCode;
use nimbus_core::FunctionSpec;
use nimbus_core::events::QueueSpec;
use nimbus_core::kv::{KvListQuery, KvPage, KvPut, KvValue};
use nimbus_core::queues::{QueueError, QueueStore};
use nimbus_core::services::{Access, ServiceError, ServiceErrorKind};
use nimbus_store::{
    InlineGet, MessageAttribute, NewMessage, ObjectList, ObjectMeta, QueueStats, ReceivedMessage,
    SentMessage,
};

use crate::error::ApiError;
use crate::events::{Events, ObjectChange, Publish, TRACE_ATTRIBUTE};
use crate::generation::Generation;
use crate::telemetry::TraceContext;

pub(crate) use handle::ServicesHandle;

/// Who calls an operation.
#[derive(Clone, Copy)]
pub(crate) enum Principal<'a> {
    /// The operator, with the admin token: allowed everything.
    Operator,
    /// A function, allowed what its grants allow.
    Function(&'a FunctionSpec),
}

/// An operation that failed: what it was checked against, and the error a client gets.
pub(crate) struct OpError {
    pub(crate) access: Access,
    pub(crate) error: ApiError,
}

/// SNS's limit for a message with its attributes.
const MAX_PUBLISH_BYTES: usize = 256 * 1024;

impl Principal<'_> {
    /// Whether the caller may do `action` on `resource` (`queue:orders`,
    /// `bucket:images/a.png`, `kv:sessions`, `function:worker`, ...).
    pub(crate) fn check(&self, action: &str, resource: &str) -> Result<(), ApiError> {
        let spec = match self {
            Principal::Operator => return Ok(()),
            Principal::Function(spec) => spec,
        };
        if spec
            .grants
            .iter()
            .any(|grant| grant.allows(action, resource))
        {
            return Ok(());
        }
        Err(ApiError::typed(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            format!(
                "function `{}` may not {action} on {resource}; grant it in provider.iam.role.statements",
                spec.name
            ),
        ))
    }

    /// `check` for an operation's access, failing as that operation.
    pub(crate) fn authorize(&self, access: &Access) -> Result<(), OpError> {
        self.check(access.action, &access.resource)
            .map_err(|error| access.fail(error))
    }
}

/// Sends a message, carrying `trace` so the consumer's invocation joins it.
pub(crate) async fn send_message(
    events: &Events,
    principal: Principal<'_>,
    queue: &str,
    mut message: NewMessage,
    trace: &TraceContext,
) -> Result<SentMessage, OpError> {
    let access = Access::queue_send(queue);
    principal.authorize(&access)?;
    check_attributes(&access, &message.attributes)?;
    message.attributes.insert(
        TRACE_ATTRIBUTE.to_owned(),
        MessageAttribute {
            data_type: "String".to_owned(),
            value: trace.propagation_header(),
        },
    );
    events
        .send(queue, message)
        .await
        .map_err(|e| access.fail(e))
}

/// Whether `id` may name an entry of a batch: SQS's 1 to 80 letters, digits, `-` and `_`.
pub(crate) fn valid_batch_entry_id(id: &str) -> bool {
    (1..=80).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Sends up to 10 messages in one transaction, each carrying `trace`. Returns one result
/// per message, in order: an entry that could not be parsed or that the queue refuses (too
/// long, a reserved attribute) fails alone, the others are sent. A missing queue or a
/// refused grant fails the whole batch.
pub(crate) async fn send_message_batch(
    events: &Events,
    principal: Principal<'_>,
    queue: &str,
    messages: Vec<Result<NewMessage, ApiError>>,
    trace: &TraceContext,
) -> Result<Vec<Result<SentMessage, ApiError>>, OpError> {
    let access = Access::queue_send(queue);
    principal.authorize(&access)?;
    if !(1..=nimbus_store::MAX_MESSAGE_BATCH).contains(&messages.len()) {
        return Err(access.fail(ApiError::typed(
            StatusCode::BAD_REQUEST,
            if messages.is_empty() {
                "EmptyBatchRequest"
            } else {
                "TooManyEntriesInBatchRequest"
            },
            format!(
                "a batch holds 1 to {} entries, not {}",
                nimbus_store::MAX_MESSAGE_BATCH,
                messages.len()
            ),
        )));
    }
    // `None`: valid, its result comes from the store below.
    let mut results: Vec<Option<Result<SentMessage, ApiError>>> = Vec::new();
    let mut valid = Vec::with_capacity(messages.len());
    for message in messages {
        let checked = message.and_then(|mut message| {
            check_attributes(&access, &message.attributes).map_err(|e| e.error)?;
            message.attributes.insert(
                TRACE_ATTRIBUTE.to_owned(),
                MessageAttribute {
                    data_type: "String".to_owned(),
                    value: trace.propagation_header(),
                },
            );
            Ok(message)
        });
        match checked {
            Ok(message) => {
                valid.push(message);
                results.push(None);
            }
            Err(error) => results.push(Some(Err(error))),
        }
    }
    let sent = if valid.is_empty() {
        Vec::new()
    } else {
        events
            .send_entries(queue, valid)
            .await
            .map_err(|e| access.fail(e))?
    };
    let mut sent = sent.into_iter();
    Ok(results
        .into_iter()
        .map(|result| {
            result
                .or_else(|| sent.next().map(|r| r.map_err(ApiError::from)))
                .unwrap_or_else(|| {
                    Err(ApiError::platform(
                        "the store answered fewer messages than sent",
                    ))
                })
        })
        .collect())
}

/// Receives up to `max` (1 to 10) messages.
pub(crate) async fn receive_messages(
    events: &Events,
    principal: Principal<'_>,
    queue: &str,
    max: u64,
    visibility_timeout: Option<Duration>,
) -> Result<Vec<ReceivedMessage>, OpError> {
    let access = Access::queue_receive(queue);
    principal.authorize(&access)?;
    if !(1..=10).contains(&max) {
        return Err(access.fail(bad_request("maxMessages must be 1 to 10")));
    }
    events
        .queues
        .receive_messages(queue.to_owned(), max as usize, visibility_timeout)
        .await
        .map_err(|e| access.fail(e))
}

/// Deletes a received message by its receipt handle.
pub(crate) async fn delete_message(
    events: &Events,
    principal: Principal<'_>,
    queue: &str,
    receipt_handle: String,
) -> Result<(), OpError> {
    let access = Access::queue_delete(queue);
    principal.authorize(&access)?;
    events
        .queues
        .delete_message(queue.to_owned(), receipt_handle)
        .await
        .map_err(|e| access.fail(e))
}

/// Changes how long a received message stays hidden.
pub(crate) async fn change_visibility(
    events: &Events,
    principal: Principal<'_>,
    queue: &str,
    receipt_handle: String,
    timeout: Duration,
) -> Result<(), OpError> {
    let access = Access::queue_change_visibility(queue);
    principal.authorize(&access)?;
    if timeout > nimbus_store::MAX_VISIBILITY_TIMEOUT {
        return Err(access.fail(bad_request(
            "the visibility timeout must be 0 to 43200 seconds",
        )));
    }
    events
        .queues
        .change_visibility(queue.to_owned(), receipt_handle, timeout)
        .await
        .map_err(|e| access.fail(e))
}

/// Deletes every message of a queue; returns how many.
pub(crate) async fn purge_queue(
    events: &Events,
    principal: Principal<'_>,
    queue: &str,
) -> Result<u64, OpError> {
    let access = Access::queue_purge(queue);
    principal.authorize(&access)?;
    events
        .queues
        .purge_queue(queue.to_owned())
        .await
        .map_err(|e| access.fail(e))
}

/// The app's queues (not nimbus's internal ones) with their message counts, by name.
pub(crate) async fn list_queues(
    events: &Events,
    principal: Principal<'_>,
) -> Result<Vec<(String, QueueStats)>, OpError> {
    let access = Access::queue_list();
    principal.authorize(&access)?;
    let queues = &events.queues;
    let mut out = Vec::new();
    let names = queues.list_queues().await.map_err(|e| access.fail(e))?;
    for name in names {
        if name.starts_with(crate::events::INTERNAL_QUEUE_PREFIX) {
            continue;
        }
        let stats = queues
            .queue_stats(name.clone())
            .await
            .map_err(|e| access.fail(e))?;
        out.push((name, stats));
    }
    Ok(out)
}

/// What a redrive moved: how many messages, and to which queue.
pub(crate) struct Redriven {
    pub(crate) moved: u64,
    pub(crate) source: String,
}

/// Moves every message of a dead-letter queue back to the queue whose redrive policy
/// names it, as SQS's StartMessageMoveTask does without a destination. Each message is
/// sent to the source before it is deleted from the dead-letter queue, so a crash in
/// between delivers it twice rather than never (SQS's move is at least once too).
/// Messages received meanwhile by someone else stay where they are.
pub(crate) async fn redrive_queue(
    events: &Events,
    principal: Principal<'_>,
    dead_letter_queue: &str,
) -> Result<Redriven, OpError> {
    let access = Access::queue_redrive(dead_letter_queue);
    principal.authorize(&access)?;
    let source = redrive_source(&*events.queues, dead_letter_queue)
        .await
        .map_err(|e| access.fail(e))?;
    let Some(source) = source else {
        return Err(access.fail(bad_request(format!(
            "no queue's redrive policy names `{dead_letter_queue}` as its dead-letter queue, so there is nowhere to move its messages back to"
        ))));
    };
    let mut moved = 0;
    loop {
        let n_moved = move_back(&*events.queues, dead_letter_queue, &source)
            .await
            .map_err(|e| access.fail(e))?;
        if n_moved == 0 {
            break;
        }
        moved += n_moved;
        events.wake(&source);
    }
    Ok(Redriven { moved, source })
}

/// The queue whose redrive policy names `dead_letter_queue`, if any.
async fn redrive_source(
    queues: &dyn QueueStore,
    dead_letter_queue: &str,
) -> Result<Option<String>, QueueError> {
    if queues.queue(dead_letter_queue.to_owned()).await?.is_none() {
        return Err(QueueError::UnknownQueue {
            queue: dead_letter_queue.to_owned(),
        });
    }
    for name in queues.list_queues().await? {
        let names_it = queues
            .queue(name.clone())
            .await?
            .and_then(|spec| spec.redrive)
            .is_some_and(|redrive| redrive.dead_letter_queue == dead_letter_queue);
        if names_it {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Moves up to a batch of messages from `dlq` to `to`; returns how many.
async fn move_back(queues: &dyn QueueStore, dlq: &str, to: &str) -> Result<u64, QueueError> {
    // Invisible for long enough to move them; a failed move lets them come back.
    let received = queues
        .receive_messages(
            dlq.to_owned(),
            nimbus_store::MAX_MESSAGE_BATCH,
            Some(Duration::from_secs(30)),
        )
        .await?;
    for message in &received {
        queues
            .send_message(
                to.to_owned(),
                NewMessage {
                    body: message.body.clone(),
                    delay: None,
                    attributes: message.attributes.clone(),
                    group_id: message.group_id.clone(),
                    // A FIFO queue would drop a second message with the first's
                    // deduplication id inside its window: the move is a new send.
                    deduplication_id: message
                        .group_id
                        .as_ref()
                        .map(|_| uuid::Uuid::new_v4().to_string()),
                },
            )
            .await?;
        queues
            .delete_message(dlq.to_owned(), message.receipt_handle.clone())
            .await?;
    }
    Ok(received.len() as u64)
}

/// Creates a queue with `spec`, or finds it when one of that name exists already (SQS
/// answers a repeated CreateQueue with the queue's URL; nimbus keeps the existing
/// queue's settings, which the manifest owns).
pub(crate) async fn create_queue(
    events: &Events,
    principal: Principal<'_>,
    spec: QueueSpec,
) -> Result<(), OpError> {
    let access = Access::queue_create(&spec.name);
    principal.authorize(&access)?;
    if spec.name.starts_with(crate::events::INTERNAL_QUEUE_PREFIX) {
        return Err(access.fail(bad_request(format!(
            "queue names starting with {} are nimbus's own",
            crate::events::INTERNAL_QUEUE_PREFIX
        ))));
    }
    let queues = &events.queues;
    let res = match queues.queue(spec.name.clone()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => queues.ensure_queue(spec).await,
        Err(e) => Err(e),
    };
    res.map_err(|e| access.fail(e))
}

/// Changes an existing queue's settings (SQS's SetQueueAttributes). A queue the manifest
/// declares takes the manifest's settings again at the next start.
pub(crate) async fn update_queue(
    events: &Events,
    principal: Principal<'_>,
    spec: QueueSpec,
) -> Result<(), OpError> {
    let access = Access::queue_set_attributes(&spec.name);
    principal.authorize(&access)?;
    let queues = &events.queues;
    let res = match queues.queue(spec.name.clone()).await {
        Ok(Some(_)) => queues.ensure_queue(spec).await,
        Ok(None) => Err(QueueError::UnknownQueue {
            queue: spec.name.clone(),
        }),
        Err(e) => Err(e),
    };
    res.map_err(|e| access.fail(e))
}

/// Deletes a queue made at run time with its messages. The manifest's queues stay: its
/// consumers and subscriptions depend on them.
pub(crate) async fn delete_queue(
    events: &Events,
    principal: Principal<'_>,
    queue: &str,
) -> Result<(), OpError> {
    let access = Access::queue_remove(queue);
    principal.authorize(&access)?;
    let declared = events.resources.queues.iter().any(|q| q.name == queue);
    if declared || queue.starts_with(crate::events::INTERNAL_QUEUE_PREFIX) {
        return Err(access.fail(bad_request(format!(
            "queue `{queue}` is declared in the app's manifest (its consumers and subscriptions use it); remove it there instead"
        ))));
    }
    events
        .queues
        .delete_queue(queue.to_owned())
        .await
        .map_err(|e| access.fail(e))
}

/// A queue's settings and message counts; `QueueDoesNotExist` when there is none.
pub(crate) async fn queue_attributes(
    events: &Events,
    principal: Principal<'_>,
    queue: &str,
    access: Access,
) -> Result<(QueueSpec, QueueStats), OpError> {
    principal.authorize(&access)?;
    let queues = &events.queues;
    let res = async {
        let stats = queues.queue_stats(queue.to_owned()).await?;
        let spec =
            queues
                .queue(queue.to_owned())
                .await?
                .ok_or_else(|| QueueError::UnknownQueue {
                    queue: queue.to_owned(),
                })?;
        Ok((spec, stats))
    }
    .await;
    res.map_err(|e: QueueError| access.fail(e))
}

/// What an invocation through Lambda's Invoke API gave.
pub(crate) enum Invoked {
    /// `RequestResponse`: the function ran.
    Sync {
        request_id: String,
        report: nimbus_core::InvocationReport,
    },
    /// `Event`: queued for asynchronous invocation.
    Queued { message_id: String },
    /// `DryRun`: the caller may invoke the function.
    DryRun,
}

/// Lambda's Invoke: the function by its name, `service-stage-name` or ARN (an alias or
/// version qualifier is ignored), the event as JSON, `RequestResponse`, `Event` or `DryRun`.
pub(crate) async fn invoke_function(
    generation: &Generation,
    principal: Principal<'_>,
    name: &str,
    payload: bytes::Bytes,
    invocation_type: &str,
    trace: &TraceContext,
) -> Result<Invoked, ApiError> {
    let functions = &generation.functions;
    let function_idx = function_index(functions, name);
    let found = function_idx.map_or(name, |idx| functions.list[idx].spec.name.as_str());
    // Functions may invoke the functions they are granted (`lambda:InvokeFunction`).
    principal.check("lambda:InvokeFunction", &format!("function:{found}"))?;
    let Some(function_idx) = function_idx else {
        return Err(ApiError::typed(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("Function not found: {name}"),
        ));
    };
    let payload = if payload.is_empty() {
        bytes::Bytes::from_static(b"{}")
    } else {
        payload
    };
    if serde_json::from_slice::<serde_json::Value>(&payload).is_err() {
        return Err(ApiError::typed(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json: the event must be JSON",
        ));
    }
    match invocation_type {
        "RequestResponse" => {}
        "Event" => {
            let payload = String::from_utf8_lossy(&payload).into_owned();
            let sent = generation
                .events
                .invoke_async(found, payload, trace, "event")
                .await?;
            return Ok(Invoked::Queued {
                message_id: sent.message_id,
            });
        }
        "DryRun" => return Ok(Invoked::DryRun),
        other => {
            return Err(ApiError::typed(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                format!(
                    "X-Amz-Invocation-Type {other:?} is not one of RequestResponse, Event, DryRun"
                ),
            ));
        }
    }
    let request_id = crate::telemetry::trace::new_request_id();
    let report = functions
        .invoke_detached(
            function_idx,
            crate::functions::InvokeRequest {
                request_id: request_id.clone(),
                payload: payload.to_vec(),
                trace: trace.clone(),
                trigger: crate::telemetry::Trigger::Invoke,
            },
        )
        .await?;
    Ok(Invoked::Sync { request_id, report })
}

/// The function a name given to Invoke means: its own name, Lambda's
/// `service-stage-name` (what `AWS_LAMBDA_FUNCTION_NAME` and ARNs hold), or an ARN.
pub(crate) fn function_index(functions: &crate::functions::Functions, name: &str) -> Option<usize> {
    let name = match name.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => name.split(':').next().unwrap_or(name),
    };
    functions.index(name).or_else(|| {
        functions.list.iter().position(|f| {
            name.strip_suffix(f.spec.name.as_str())
                .and_then(|prefix| prefix.strip_suffix('-'))
                .is_some_and(|prefix| prefix.ends_with(&format!("-{}", functions.stage)))
        })
    })
}

impl Invoked {
    /// Lambda's Invoke API answer: 200 with the result (a function error in the body,
    /// flagged by `X-Amz-Function-Error`), 202 for a queued event, 204 for a dry run.
    pub(crate) fn into_response(self, trace: &TraceContext) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        let (request_id, report) = match self {
            Invoked::Queued { message_id } => {
                let body = serde_json::json!({ "messageId": message_id }).to_string();
                return (
                    StatusCode::ACCEPTED,
                    [(http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response();
            }
            Invoked::DryRun => return StatusCode::NO_CONTENT.into_response(),
            Invoked::Sync { request_id, report } => (request_id, report),
        };
        let outcome = &report.outcome;
        let mut res = (StatusCode::OK, outcome.payload(&request_id)).into_response();
        let headers = res.headers_mut();
        let mut set = |name: &'static str, value: String| {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        set("content-type", "application/json".to_owned());
        set("x-amz-request-id", request_id.clone());
        set("x-amzn-requestid", request_id);
        set("x-amz-executed-version", "$LATEST".to_owned());
        set("x-nimbus-outcome", outcome.label().to_owned());
        set("x-nimbus-cold-start", report.cold_start.to_string());
        set("x-nimbus-prestarted", report.prestarted.to_string());
        set("x-nimbus-trace-id", trace.trace_id.clone());
        if !matches!(outcome, nimbus_core::Outcome::Ok(_)) {
            // As Lambda's Invoke API: status 200, the error in the body, flagged by this header.
            set("x-amz-function-error", "Unhandled".to_owned());
        }
        res
    }
}

/// Publishes to a declared topic; returns the message id.
pub(crate) async fn publish(
    events: &Events,
    principal: Principal<'_>,
    topic: &str,
    publish: Publish,
    trace: &TraceContext,
) -> Result<String, OpError> {
    let access = Access::topic_publish(topic);
    principal.authorize(&access)?;
    require_topic(events, &access, topic).await?;
    if publish.message.len() > MAX_PUBLISH_BYTES {
        return Err(access.fail(ApiError::typed(
            StatusCode::PAYLOAD_TOO_LARGE,
            "MessageTooLong",
            "the message is over 256 KiB",
        )));
    }
    check_attributes(&access, &publish.attributes)?;
    // SNS's rules for FIFO topics: a message group always, a deduplication id only there.
    let fifo = topic.ends_with(".fifo");
    if fifo && publish.group_id.is_none() {
        return Err(access.fail(bad_request(
            "Invalid parameter: The MessageGroupId parameter is required for FIFO topics",
        )));
    }
    if !fifo && publish.deduplication_id.is_some() {
        return Err(access.fail(bad_request(
            "Invalid parameter: MessageDeduplicationId Reason: The request includes MessageDeduplicationId parameter that is not valid for this topic type",
        )));
    }
    events
        .publish(topic, publish, trace)
        .await
        .map_err(|e| access.fail(e))
}

/// Puts events on EventBridge buses (PutEvents): every entry's bus must be granted
/// (`events:PutEvents`) or the whole call is refused, as IAM refuses it; an entry naming a
/// bus that does not exist fails alone. Answers each entry's event id or its error.
pub(crate) async fn put_events(
    events: &Events,
    principal: Principal<'_>,
    entries: Vec<crate::events::PutEvent>,
    trace: &TraceContext,
) -> Result<Vec<Result<String, ApiError>>, OpError> {
    for entry in &entries {
        principal.authorize(&Access::bus_put(&entry.bus))?;
    }
    let mut results: Vec<Option<Result<String, ApiError>>> = Vec::with_capacity(entries.len());
    let mut valid = Vec::new();
    for entry in entries {
        if events.has_event_bus(&entry.bus) {
            results.push(None);
            valid.push(entry);
        } else {
            results.push(Some(Err(ApiError::typed(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                format!(
                    "Event bus {} does not exist; declare an AWS::Events::EventBus or name it in an eventBridge event",
                    entry.bus
                ),
            ))));
        }
    }
    let access = Access::bus_put("*");
    let mut ids = events
        .put_events(valid, trace)
        .await
        .map_err(|e| access.fail(e))?
        .into_iter();
    Ok(results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| {
                ids.next().ok_or_else(|| {
                    ApiError::typed(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalException",
                        "no event id",
                    )
                })
            })
        })
        .collect())
}

/// Fails with SNS's `NotFound` unless `topic` is declared in the manifest or was made at
/// run time.
async fn require_topic(events: &Events, access: &Access, topic: &str) -> Result<(), OpError> {
    if events.resources.topics.iter().any(|t| t.name == topic) {
        return Ok(());
    }
    let name = topic.to_owned();
    let exists = events
        .store(move |store| store.topic_exists(&name))
        .await
        .map_err(|e| access.fail(e))?;
    if exists {
        return Ok(());
    }
    Err(access.fail(ApiError::typed(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "topic `{topic}` does not exist; declare it under topics:, give a function an sns event, or create it with CreateTopic"
        ),
    )))
}

/// Creates a topic at run time (a declared one exists already). Names follow SNS: 1 to 256
/// letters, digits, `-` and `_`, and `.fifo` at the end of a FIFO topic.
pub(crate) async fn create_topic(
    events: &Events,
    principal: Principal<'_>,
    topic: &str,
) -> Result<(), OpError> {
    let access = Access::topic_create(topic);
    principal.authorize(&access)?;
    let stem = topic.strip_suffix(".fifo").unwrap_or(topic);
    if stem.is_empty()
        || topic.len() > 256
        || !stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(access.fail(bad_request(format!(
            "invalid topic name {topic:?}: use 1 to 256 letters, digits, `-` and `_`, ending in `.fifo` for a FIFO topic"
        ))));
    }
    if events.resources.topics.iter().any(|t| t.name == topic) {
        return Ok(());
    }
    let name = topic.to_owned();
    events
        .store(move |store| store.create_topic(&name))
        .await
        .map(|_| ())
        .map_err(|e| access.fail(e))
}

/// Deletes a topic made at run time with its subscriptions; the manifest's stay.
pub(crate) async fn delete_topic(
    events: &Events,
    principal: Principal<'_>,
    topic: &str,
) -> Result<(), OpError> {
    let access = Access::topic_remove(topic);
    principal.authorize(&access)?;
    if events.resources.topics.iter().any(|t| t.name == topic) {
        return Err(access.fail(bad_request(format!(
            "topic `{topic}` is declared in the app's manifest; remove it there instead"
        ))));
    }
    let name = topic.to_owned();
    events
        .store(move |store| store.delete_topic(&name))
        .await
        .map(|_| ())
        .map_err(|e| access.fail(e))
}

/// Every topic: the manifest's and those made at run time, sorted.
pub(crate) async fn list_topics(
    events: &Events,
    principal: Principal<'_>,
) -> Result<Vec<String>, OpError> {
    let access = Access::topics_list();
    principal.authorize(&access)?;
    let mut topics = events
        .store(|store| store.list_topics())
        .await
        .map_err(|e| access.fail(e))?;
    topics.extend(events.resources.topics.iter().map(|t| t.name.clone()));
    topics.sort();
    topics.dedup();
    Ok(topics)
}

/// Subscribes a queue or a function of the app to a topic; answers the subscription (an
/// existing one when the topic already delivers to that target, as SNS answers).
pub(crate) async fn subscribe(
    events: &Events,
    principal: Principal<'_>,
    mut subscription: nimbus_store::TopicSubscription,
) -> Result<nimbus_store::TopicSubscription, OpError> {
    let access = Access::topic_subscribe(&subscription.topic);
    principal.authorize(&access)?;
    require_topic(events, &access, &subscription.topic).await?;
    match subscription.protocol.as_str() {
        "lambda" => {
            let Some(idx) = function_index(&events.functions, &subscription.target) else {
                return Err(access.fail(ApiError::typed(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!(
                        "no function `{}` in this app to subscribe",
                        subscription.target
                    ),
                )));
            };
            subscription.target = events.functions.list[idx].spec.name.clone();
        }
        "sqs" => {}
        other => {
            return Err(access.fail(bad_request(format!(
                "nimbus delivers subscriptions to queues (sqs) and functions (lambda), not {other}; declare HTTP endpoints under topics.<name>.subscriptions"
            ))));
        }
    }
    let store_subscription = subscription.clone();
    events
        .store(move |store| {
            if store_subscription.protocol == "sqs"
                && store.queue(&store_subscription.target)?.is_none()
            {
                return Err(nimbus_store::StoreError::UnknownQueue {
                    queue: store_subscription.target.clone(),
                });
            }
            store.subscribe(&store_subscription)
        })
        .await
        .map(|id| nimbus_store::TopicSubscription { id, ..subscription })
        .map_err(|e| access.fail(e))
}

/// The run-time subscription with `id`, checked against `access_of` its topic.
pub(crate) async fn subscription(
    events: &Events,
    principal: Principal<'_>,
    id: &str,
    access_of: fn(&str) -> Access,
) -> Result<nimbus_store::TopicSubscription, OpError> {
    let wanted = id.to_owned();
    let found = events
        .store(move |store| {
            store
                .subscriptions(None)
                .map(|all| all.into_iter().find(|s| s.id == wanted))
        })
        .await
        .map_err(|e| access_of("*").fail(e))?;
    let Some(found) = found else {
        return Err(access_of("*").fail(ApiError::typed(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no subscription `{id}`: it was removed, or it is the manifest's"),
        )));
    };
    principal.authorize(&access_of(&found.topic))?;
    Ok(found)
}

/// Removes or changes a run-time subscription (`None`: remove).
pub(crate) async fn change_subscription(
    events: &Events,
    principal: Principal<'_>,
    id: &str,
    change: Option<nimbus_store::TopicSubscription>,
) -> Result<(), OpError> {
    let found = subscription(events, principal, id, Access::topic_unsubscribe).await?;
    let access = Access::topic_unsubscribe(&found.topic);
    events
        .store(move |store| match change {
            None => store.unsubscribe(&found.id).map(|_| ()),
            Some(changed) => store.update_subscription(&nimbus_store::TopicSubscription {
                id: found.id,
                topic: found.topic,
                protocol: found.protocol,
                target: found.target,
                ..changed
            }),
        })
        .await
        .map_err(|e| access.fail(e))
}

/// How many subscriptions a topic has, the manifest's and the run-time ones (SNS's
/// GetTopicAttributes); `NotFound` for no such topic.
pub(crate) async fn topic_subscription_count(
    events: &Events,
    principal: Principal<'_>,
    topic: &str,
) -> Result<usize, OpError> {
    let access = Access::topic_get_attributes(topic);
    principal.authorize(&access)?;
    require_topic(events, &access, topic).await?;
    let declared = events
        .resources
        .topics
        .iter()
        .find(|t| t.name == topic)
        .map_or(0, |t| t.subscriptions.len());
    let name = topic.to_owned();
    let runtime = events
        .store(move |store| store.subscriptions(Some(&name)))
        .await
        .map_err(|e| access.fail(e))?;
    Ok(declared + runtime.len())
}

/// The run-time subscriptions of a topic, or of every topic for `None`.
pub(crate) async fn list_subscriptions(
    events: &Events,
    principal: Principal<'_>,
    topic: Option<&str>,
) -> Result<Vec<nimbus_store::TopicSubscription>, OpError> {
    let access = Access::topic_list_subscriptions(topic.unwrap_or("*"));
    principal.authorize(&access)?;
    if let Some(topic) = topic {
        require_topic(events, &access, topic).await?;
    }
    let topic = topic.map(str::to_owned);
    events
        .store(move |store| store.subscriptions(topic.as_deref()))
        .await
        .map_err(|e| access.fail(e))
}

/// Stores an object, notifying the bucket's subscribers in the same transaction.
pub(crate) async fn put_object(
    events: &Events,
    principal: Principal<'_>,
    bucket: &str,
    key: &str,
    data: Vec<u8>,
    content_type: Option<String>,
    trace: &TraceContext,
) -> Result<ObjectMeta, OpError> {
    let access = Access::bucket_put(bucket, key);
    principal.authorize(&access)?;
    events
        .put_object(bucket, key, data, content_type, trace)
        .await
        .map_err(|e| access.fail(e))
}

/// Reads an object and its content; `None` when there is no such key.
pub(crate) async fn get_object(
    events: &Events,
    principal: Principal<'_>,
    bucket: &str,
    key: &str,
) -> Result<Option<(ObjectMeta, Vec<u8>)>, OpError> {
    let access = Access::bucket_get(bucket, key);
    principal.authorize(&access)?;
    // A small object is a point read from SQLite, done here rather than on the blocking
    // pool (as KV reads are); a large one's file is read there.
    match events.read_now(|store| store.get_inline_object(bucket, key)) {
        Ok(InlineGet::Found(meta, data)) => return Ok(Some((meta, data))),
        Ok(InlineGet::Missing) => return Ok(None),
        Ok(InlineGet::InFile) => {}
        Err(e) => return Err(access.fail(e)),
    }
    let (bucket, key) = (bucket.to_owned(), key.to_owned());
    events
        .store(move |store| store.get_object(&bucket, &key))
        .await
        .map_err(|e| access.fail(e))
}

/// Deletes an object (a missing key is no error), notifying the bucket's subscribers.
pub(crate) async fn delete_object(
    events: &Events,
    principal: Principal<'_>,
    bucket: &str,
    key: &str,
    trace: &TraceContext,
) -> Result<(), OpError> {
    let access = Access::bucket_delete(bucket, key);
    principal.authorize(&access)?;
    events
        .delete_object(bucket, key, trace)
        .await
        .map(|_| ())
        .map_err(|e| access.fail(e))
}

/// Lists a bucket's objects in key order, at most `max_keys` (1 to 1000).
pub(crate) async fn list_objects(
    events: &Events,
    principal: Principal<'_>,
    bucket: &str,
    prefix: Option<String>,
    start_after: Option<String>,
    max_keys: usize,
) -> Result<ObjectList, OpError> {
    let access = Access::bucket_list(bucket);
    principal.authorize(&access)?;
    let bucket = bucket.to_owned();
    events
        .store(move |store| {
            store.list_objects(&bucket, prefix.as_deref(), start_after.as_deref(), max_keys)
        })
        .await
        .map_err(|e| access.fail(e))
}

/// An object's metadata; `None` when there is no such key.
pub(crate) async fn head_object(
    events: &Events,
    principal: Principal<'_>,
    bucket: &str,
    key: &str,
) -> Result<Option<ObjectMeta>, OpError> {
    let access = Access::bucket_get(bucket, key);
    principal.authorize(&access)?;
    let (bucket, key) = (bucket.to_owned(), key.to_owned());
    events
        .store(move |store| store.head_object(&bucket, &key))
        .await
        .map_err(|e| access.fail(e))
}

/// Puts (or copies) an object with its metadata, joins a multipart upload into one, or
/// deletes one, notifying the bucket's subscribers in the same transaction; `None` for a
/// delete of no object.
pub(crate) async fn change_object(
    events: &Events,
    principal: Principal<'_>,
    bucket: &str,
    key: &str,
    change: ObjectChange,
    trace: &TraceContext,
) -> Result<Option<ObjectMeta>, OpError> {
    let access = match change {
        ObjectChange::Delete { .. } => Access::bucket_delete(bucket, key),
        _ => Access::bucket_put(bucket, key),
    };
    principal.authorize(&access)?;
    events
        .change_object(bucket, key, change, trace)
        .await
        .map_err(|e| access.fail(e))
}

/// The names of all buckets.
pub(crate) async fn list_buckets(
    events: &Events,
    principal: Principal<'_>,
) -> Result<Vec<String>, OpError> {
    let access = Access::buckets_list();
    principal.authorize(&access)?;
    events
        .store(|store| store.list_buckets())
        .await
        .map_err(|e| access.fail(e))
}

/// Whether a bucket exists (S3's HeadBucket, authorised as listing it).
pub(crate) async fn bucket_exists(
    events: &Events,
    principal: Principal<'_>,
    bucket: &str,
) -> Result<bool, OpError> {
    let access = Access::bucket_list(bucket);
    principal.authorize(&access)?;
    let bucket = bucket.to_owned();
    events
        .store(move |store| store.bucket_exists(&bucket))
        .await
        .map_err(|e| access.fail(e))
}

/// Creates a bucket at run time; `false` when it existed already.
pub(crate) async fn create_bucket(
    events: &Events,
    principal: Principal<'_>,
    bucket: &str,
) -> Result<bool, OpError> {
    let access = Access::bucket_create(bucket);
    principal.authorize(&access)?;
    let bucket = bucket.to_owned();
    events
        .store(move |store| store.create_bucket(&bucket))
        .await
        .map_err(|e| access.fail(e))
}

/// Deletes an empty bucket.
pub(crate) async fn delete_bucket(
    events: &Events,
    principal: Principal<'_>,
    bucket: &str,
) -> Result<(), OpError> {
    let access = Access::bucket_remove(bucket);
    principal.authorize(&access)?;
    let bucket = bucket.to_owned();
    events
        .store(move |store| store.delete_bucket(&bucket))
        .await
        .map_err(|e| access.fail(e))
}

/// A step of a multipart upload other than completing it (which is `change_object`).
pub(crate) enum UploadStep {
    Create {
        content_type: Option<String>,
        metadata: Option<String>,
    },
    Part {
        upload: String,
        number: u32,
        data: Vec<u8>,
    },
    ListParts {
        upload: String,
    },
    Abort {
        upload: String,
    },
}

/// What an upload step answers.
pub(crate) enum UploadDone {
    /// The new upload's id, or the part's ETag.
    Id(String),
    Parts(Vec<nimbus_store::Part>),
    Aborted,
}

/// Runs a step of a multipart upload of `key`.
pub(crate) async fn upload_step(
    events: &Events,
    principal: Principal<'_>,
    bucket: &str,
    key: &str,
    step: UploadStep,
) -> Result<UploadDone, OpError> {
    let access = match step {
        UploadStep::Create { .. } | UploadStep::Part { .. } => Access::bucket_put(bucket, key),
        UploadStep::ListParts { .. } => Access::bucket_list_parts(bucket, key),
        UploadStep::Abort { .. } => Access::bucket_abort_upload(bucket, key),
    };
    principal.authorize(&access)?;
    let (bucket, key) = (bucket.to_owned(), key.to_owned());
    events
        .store(move |store| match step {
            UploadStep::Create {
                content_type,
                metadata,
            } => store
                .create_upload(&bucket, &key, content_type.as_deref(), metadata.as_deref())
                .map(UploadDone::Id),
            UploadStep::Part {
                upload,
                number,
                data,
            } => store
                .upload_part(&upload, &bucket, &key, number, &data)
                .map(UploadDone::Id),
            UploadStep::ListParts { upload } => store
                .list_parts(&upload, &bucket, &key)
                .map(UploadDone::Parts),
            UploadStep::Abort { upload } => store
                .abort_upload(&upload, &bucket, &key)
                .map(|()| UploadDone::Aborted),
        })
        .await
        .map_err(|e| access.fail(e))
}

/// The multipart uploads in progress in `bucket`.
pub(crate) async fn list_uploads(
    events: &Events,
    principal: Principal<'_>,
    bucket: &str,
) -> Result<Vec<nimbus_store::Upload>, OpError> {
    let access = Access::bucket_list_uploads(bucket);
    principal.authorize(&access)?;
    let bucket = bucket.to_owned();
    events
        .store(move |store| store.list_uploads(&bucket))
        .await
        .map_err(|e| access.fail(e))
}

/// Reads a KV key; `None` when absent or expired.
pub(crate) async fn kv_get(
    events: &Events,
    principal: Principal<'_>,
    namespace: &str,
    key: &str,
) -> Result<Option<KvValue>, OpError> {
    let access = Access::kv_get(namespace);
    principal.authorize(&access)?;
    events
        .kv
        .get(namespace.to_owned(), key.to_owned())
        .await
        .map_err(|e| access.fail(e))
}

/// Writes a KV value, replacing any.
pub(crate) async fn kv_put(
    events: &Events,
    principal: Principal<'_>,
    namespace: &str,
    key: &str,
    put: KvPut,
) -> Result<(), OpError> {
    let access = Access::kv_put(namespace);
    principal.authorize(&access)?;
    events
        .kv
        .put(namespace.to_owned(), key.to_owned(), put)
        .await
        .map_err(|e| access.fail(e))
}

/// Deletes a KV key (a missing key is no error).
pub(crate) async fn kv_delete(
    events: &Events,
    principal: Principal<'_>,
    namespace: &str,
    key: &str,
) -> Result<(), OpError> {
    let access = Access::kv_delete(namespace);
    principal.authorize(&access)?;
    events
        .kv
        .delete(namespace.to_owned(), key.to_owned())
        .await
        .map(|_| ())
        .map_err(|e| access.fail(e))
}

/// Lists KV keys in key order, at most `limit` (1 to 1000).
pub(crate) async fn kv_list(
    events: &Events,
    principal: Principal<'_>,
    namespace: &str,
    query: KvListQuery,
) -> Result<KvPage, OpError> {
    let access = Access::kv_list(namespace);
    principal.authorize(&access)?;
    events
        .kv
        .list(namespace.to_owned(), query)
        .await
        .map_err(|e| access.fail(e))
}

/// A page size: 1 to 1000, 1000 when not given (as S3 and Workers KV).
pub(crate) fn page_size(n: Option<usize>) -> usize {
    n.map_or(1000, |n| n.clamp(1, 1000))
}

pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::typed(
        StatusCode::BAD_REQUEST,
        "InvalidParameterValue",
        message.into(),
    )
}

/// Attribute names starting with `nimbus.` and the trace header are nimbus's own.
fn check_attributes(
    access: &Access,
    attributes: &BTreeMap<String, MessageAttribute>,
) -> Result<(), OpError> {
    match attributes
        .keys()
        .find(|name| name.starts_with("nimbus.") || *name == TRACE_ATTRIBUTE)
    {
        Some(name) => Err(access.fail(bad_request(format!("attribute name {name:?} is reserved")))),
        None => Ok(()),
    }
}

/// Failing as an operation.
trait Fail {
    fn fail(&self, error: impl Into<ApiError>) -> OpError;
}

impl Fail for Access {
    fn fail(&self, error: impl Into<ApiError>) -> OpError {
        OpError {
            access: self.clone(),
            error: error.into(),
        }
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> ApiError {
        e.error
    }
}

impl From<OpError> for ServiceError {
    fn from(e: OpError) -> ServiceError {
        let OpError { access, error } = e;
        let kind = match error.status {
            StatusCode::FORBIDDEN => ServiceErrorKind::AccessDenied,
            StatusCode::NOT_FOUND => ServiceErrorKind::NotFound,
            StatusCode::PAYLOAD_TOO_LARGE => ServiceErrorKind::TooLarge,
            StatusCode::SERVICE_UNAVAILABLE => ServiceErrorKind::Unavailable,
            status if status.is_client_error() => ServiceErrorKind::InvalidInput,
            _ => ServiceErrorKind::Internal,
        };
        if kind == ServiceErrorKind::Internal {
            // The HTTP API logs platform errors as it answers them; do the same here.
            tracing::error!(status = %error.status, "{}", error.message);
        }
        access.error(kind, error.message)
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};
    use nimbus_core::manifest::{self, Variables};
    use nimbus_store::StoreError;

    use super::*;

    const MANIFEST: &str = r#"
service: s
provider: { runtime: wasm }
functions:
  f:
    handler: f.wasm
    iamRoleStatements:
      - { Effect: Allow, Action: [sqs:SendMessage], Resource: "arn:aws:sqs:*:*:orders" }
      - { Effect: Allow, Action: ["kv:Get*"], Resource: kv:sessions }
      - { Effect: Allow, Action: [s3:GetObject], Resource: "arn:aws:s3:::receipts/public/*" }
"#;

    /// What `f` of MANIFEST is told when it asks for `access`, as the WIT error shows it.
    fn check(access: Access, expect: Expect) {
        let manifest =
            manifest::parse(MANIFEST, "nimbus.yaml", &Variables::default()).expect("manifest");
        let res = match Principal::Function(&manifest.functions[0]).authorize(&access) {
            Ok(()) => "allowed".to_owned(),
            Err(e) => describe(e),
        };
        expect.assert_eq(&res);
    }

    /// How an operation's failure reaches a guest.
    fn check_failure(error: impl Into<ApiError>, expect: Expect) {
        expect.assert_eq(&describe(Access::queue_send("orders").fail(error)));
    }

    fn describe(e: OpError) -> String {
        let e = ServiceError::from(e);
        format!("{:?}: {e}", e.kind)
    }

    #[test]
    fn grants_decide_each_operation_and_refusals_name_action_and_resource() {
        check(Access::queue_send("orders"), expect!["allowed"]);
        check(
            Access::queue_send("secret"),
            expect![
                "AccessDenied: sqs:SendMessage on queue:secret: function `f` may not sqs:SendMessage on queue:secret; grant it in provider.iam.role.statements"
            ],
        );
        check(
            Access::queue_receive("orders"),
            expect![
                "AccessDenied: sqs:ReceiveMessage on queue:orders: function `f` may not sqs:ReceiveMessage on queue:orders; grant it in provider.iam.role.statements"
            ],
        );
        check(Access::kv_get("sessions"), expect!["allowed"]);
        check(
            Access::kv_put("sessions"),
            expect![
                "AccessDenied: kv:Put on kv:sessions: function `f` may not kv:Put on kv:sessions; grant it in provider.iam.role.statements"
            ],
        );
        check(
            Access::bucket_get("receipts", "public/a.txt"),
            expect!["allowed"],
        );
        check(
            Access::bucket_get("receipts", "private/a.txt"),
            expect![
                "AccessDenied: s3:GetObject on bucket:receipts/private/a.txt: function `f` may not s3:GetObject on bucket:receipts/private/a.txt; grant it in provider.iam.role.statements"
            ],
        );
        check(
            Access::topic_publish("events"),
            expect![
                "AccessDenied: sns:Publish on topic:events: function `f` may not sns:Publish on topic:events; grant it in provider.iam.role.statements"
            ],
        );
    }

    #[test]
    fn store_errors_keep_their_kind_on_the_way_to_a_guest() {
        check_failure(
            StoreError::UnknownQueue {
                queue: "orders".to_owned(),
            },
            expect![
                "NotFound: sqs:SendMessage on queue:orders: queue `orders` does not exist: declare it in the manifest (`queues:` or an AWS::SQS::Queue resource)"
            ],
        );
        check_failure(
            StoreError::MessageTooLarge {
                size: 300_000,
                limit: 262_144,
            },
            expect![
                "TooLarge: sqs:SendMessage on queue:orders: message of 300000 bytes (body and attributes) is over the limit of 262144 bytes: send a reference to the data (e.g. a bucket key) instead"
            ],
        );
        check_failure(
            StoreError::InvalidParameter {
                reason: "a delay is 0 to 900 seconds".to_owned(),
            },
            expect![
                "InvalidInput: sqs:SendMessage on queue:orders: invalid parameter: a delay is 0 to 900 seconds"
            ],
        );
        check_failure(
            StoreError::WriterStopped,
            expect![
                "Internal: sqs:SendMessage on queue:orders: the store's writer thread has stopped"
            ],
        );
    }
}
