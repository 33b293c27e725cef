//! One function per service operation (send, receive, publish, put, get, ...), each
//! checking the caller's grants first. The services HTTP API (`api.rs`) and the
//! functions' in-process `Services` (`services/handle.rs`, for wasm guests) both go
//! through them, so the two cannot drift apart.

mod handle;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use nimbus_core::FunctionSpec;
use nimbus_core::events::QueueSpec;
use nimbus_core::services::{Access, ServiceError, ServiceErrorKind};
use nimbus_store::{
    KvEntry, KvList, MessageAttribute, NewMessage, ObjectList, ObjectMeta, QueueStats,
    ReceivedMessage, SentMessage,
};

use crate::error::ApiError;
use crate::events::{Events, Publish, TRACE_ATTRIBUTE};
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
    let name = queue.to_owned();
    events
        .store(move |store| store.receive_messages(&name, max as usize, visibility_timeout))
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
    let name = queue.to_owned();
    events
        .store(move |store| store.delete_message(&name, &receipt_handle))
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
    let name = queue.to_owned();
    events
        .store(move |store| store.change_visibility(&name, &receipt_handle, timeout))
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
    let name = queue.to_owned();
    events
        .store(move |store| store.purge_queue(&name))
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
    events
        .store(|store| {
            let mut out = Vec::new();
            for name in store.list_queues()? {
                if name.starts_with(crate::events::INTERNAL_QUEUE_PREFIX) {
                    continue;
                }
                let stats = store.queue_stats(&name)?;
                out.push((name, stats));
            }
            Ok(out)
        })
        .await
        .map_err(|e| access.fail(e))
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
    events
        .store(move |store| match store.queue(&spec.name)? {
            Some(_) => Ok(()),
            None => store.ensure_queue(&spec),
        })
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
    let name = queue.to_owned();
    events
        .store(move |store| {
            let stats = store.queue_stats(&name)?;
            let spec =
                store
                    .queue(&name)?
                    .ok_or_else(|| nimbus_store::StoreError::UnknownQueue {
                        queue: name.clone(),
                    })?;
            Ok((spec, stats))
        })
        .await
        .map_err(|e| access.fail(e))
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
    if !events.resources.topics.iter().any(|t| t.name == topic) {
        return Err(access.fail(ApiError::typed(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "topic `{topic}` does not exist; declare it under topics: or give a function an sns event"
            ),
        )));
    }
    if publish.message.len() > MAX_PUBLISH_BYTES {
        return Err(access.fail(ApiError::typed(
            StatusCode::PAYLOAD_TOO_LARGE,
            "MessageTooLong",
            "the message is over 256 KiB",
        )));
    }
    check_attributes(&access, &publish.attributes)?;
    events
        .publish(topic, publish, trace)
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

/// Reads a KV key; `None` when absent or expired.
pub(crate) async fn kv_get(
    events: &Events,
    principal: Principal<'_>,
    namespace: &str,
    key: &str,
) -> Result<Option<KvEntry>, OpError> {
    let access = Access::kv_get(namespace);
    principal.authorize(&access)?;
    events
        .read_now(|store| store.kv_read(namespace, key))
        .map_err(|e| access.fail(e))
}

/// Writes a KV value, replacing any.
pub(crate) async fn kv_put(
    events: &Events,
    principal: Principal<'_>,
    namespace: &str,
    key: &str,
    value: impl AsRef<[u8]> + Send + 'static,
    expiration: Option<SystemTime>,
    metadata: Option<String>,
) -> Result<(), OpError> {
    let access = Access::kv_put(namespace);
    principal.authorize(&access)?;
    let (namespace, key) = (namespace.to_owned(), key.to_owned());
    events
        .store(move |store| {
            store.kv_put(
                &namespace,
                &key,
                value.as_ref(),
                expiration,
                metadata.as_deref(),
            )
        })
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
    let (namespace, key) = (namespace.to_owned(), key.to_owned());
    events
        .store(move |store| store.kv_delete(&namespace, &key))
        .await
        .map(|_| ())
        .map_err(|e| access.fail(e))
}

/// Lists KV keys in key order, at most `limit` (1 to 1000).
pub(crate) async fn kv_list(
    events: &Events,
    principal: Principal<'_>,
    namespace: &str,
    prefix: Option<String>,
    cursor: Option<String>,
    limit: usize,
) -> Result<KvList, OpError> {
    let access = Access::kv_list(namespace);
    principal.authorize(&access)?;
    let namespace = namespace.to_owned();
    events
        .store(move |store| store.kv_list(&namespace, prefix.as_deref(), cursor.as_deref(), limit))
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
