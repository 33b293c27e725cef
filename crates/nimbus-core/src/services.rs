//! The services a function reaches from inside an invocation (queues, topics, buckets,
//! KV) as a trait, so an executor can offer them to its guests without knowing the
//! store or the server that implements them.
//!
//! The server implements [`Services`] with the same operations and grant checks as its
//! services HTTP API (docs/api.md); `nimbus-wasm` links it into components as the
//! `nimbus:function` imports (WIT in `wit/`).

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::BoxFuture;

/// Who asks: a function, during one of its invocations. The implementation checks the
/// function's grants and carries the trace into what the call causes.
#[derive(Debug, Clone, Copy)]
pub struct ServiceCaller<'a> {
    /// The function's name in the manifest.
    pub function: &'a str,
    /// The invocation's request id.
    pub request_id: &'a str,
    /// The invocation's X-Ray trace header (`Root=...;Parent=...;Sampled=1`).
    pub trace_id: &'a str,
}

/// A message attribute, as SQS and SNS have them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute's name.
    pub name: String,
    /// `String`, `Number` or `Binary`.
    pub data_type: String,
    /// The value as text.
    pub value: String,
}

/// A message to send to a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The body.
    pub body: String,
    /// How long the message stays invisible; the queue's delay when `None`.
    pub delay: Option<Duration>,
    /// Message attributes; names starting with `nimbus.` are reserved.
    pub attributes: Vec<Attribute>,
    /// FIFO queues: the message group.
    pub group_id: Option<String>,
    /// FIFO queues: the deduplication id.
    pub deduplication_id: Option<String>,
}

/// What a queue assigned to a sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The message's id.
    pub message_id: String,
    /// Lowercase hex MD5 of the body.
    pub md5_of_body: String,
    /// FIFO queues only: the sequence number.
    pub sequence_number: Option<String>,
}

/// A message received from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The message's id.
    pub message_id: String,
    /// The handle that deletes it; new on every receive.
    pub receipt_handle: String,
    /// The body.
    pub body: String,
    /// Its attributes, without nimbus's own.
    pub attributes: Vec<Attribute>,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    /// When it was sent.
    pub sent_at: SystemTime,
    /// FIFO queues: the message group.
    pub group_id: Option<String>,
}

/// A message to publish to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The message.
    pub message: String,
    /// SNS's `Subject`.
    pub subject: Option<String>,
    /// Message attributes, matched against subscribers' filter policies.
    pub attributes: Vec<Attribute>,
}

/// What a bucket knows about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key.
    pub key: String,
    /// The size in bytes.
    pub size: u64,
    /// Lowercase hex MD5 of the content, without quotes.
    pub etag: String,
    /// The `Content-Type` given at upload.
    pub content_type: Option<String>,
    /// When it was written.
    pub last_modified: SystemTime,
}

/// An object and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// What the bucket knows about it.
    pub info: ObjectInfo,
    /// The content.
    pub data: Vec<u8>,
}

/// Which part of a bucket to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectQuery {
    /// Only keys that start with this.
    pub prefix: Option<String>,
    /// Only keys after this one.
    pub start_after: Option<String>,
    /// At most this many (clamped to 1 to 1000; 1000 when `None`).
    pub max_keys: Option<u32>,
}

/// One page of a bucket listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPage {
    /// Objects in key order.
    pub objects: Vec<ObjectInfo>,
    /// Whether more objects match after this page.
    pub is_truncated: bool,
    /// When truncated, the `start_after` of the next page.
    pub next_start_after: Option<String>,
}

/// A value stored in a KV namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvValue {
    /// The value.
    pub value: Vec<u8>,
    /// Its metadata, JSON text.
    pub metadata: Option<String>,
    /// When it expires, if it does.
    pub expiration: Option<SystemTime>,
}

/// When a KV key expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvExpiration {
    /// This long after the put.
    Ttl(Duration),
    /// At this time.
    At(SystemTime),
}

/// How to store a KV value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvPutOptions {
    /// `None` keeps the key until it is deleted.
    pub expiration: Option<KvExpiration>,
    /// Metadata, JSON text.
    pub metadata: Option<String>,
}

/// Which keys of a KV namespace to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvQuery {
    /// Only keys that start with this.
    pub prefix: Option<String>,
    /// The cursor of the previous page.
    pub cursor: Option<String>,
    /// At most this many (clamped to 1 to 1000; 1000 when `None`).
    pub limit: Option<u32>,
}

/// One key of a KV listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvKeyInfo {
    /// The key.
    pub name: String,
    /// When it expires, if it does.
    pub expiration: Option<SystemTime>,
    /// Its metadata, JSON text.
    pub metadata: Option<String>,
}

/// One page of a KV listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPage {
    /// Keys in key order.
    pub keys: Vec<KvKeyInfo>,
    /// Whether this is the last page.
    pub list_complete: bool,
    /// When not complete, the cursor of the next page.
    pub cursor: Option<String>,
}

/// What a call is checked against: an action on a resource, as grants name them
/// (`sqs:SendMessage` on `queue:orders`). One constructor per operation, so the HTTP
/// API and the WIT imports name each the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The action (`s3:GetObject`).
    pub action: &'static str,
    /// The resource (`bucket:images/a.png`).
    pub resource: String,
}

/// A call to a service that was refused or failed: what was asked, on what, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// What kind of failure.
    pub kind: ServiceErrorKind,
    /// The action as grants name it (`sqs:SendMessage`).
    pub action: String,
    /// The resource as grants name it (`queue:orders`).
    pub resource: String,
    /// What went wrong and what to do, as one sentence.
    pub message: String,
}

/// The kinds of [`ServiceError`], as the `nimbus:function/types.error-kind` WIT enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceErrorKind {
    /// The function's grants do not allow the action on the resource.
    AccessDenied,
    /// The queue, topic or bucket does not exist.
    NotFound,
    /// The input breaks a rule.
    InvalidInput,
    /// A message, value or metadata is over its limit.
    TooLarge,
    /// The services cannot be reached (no server, or it is shutting down).
    Unavailable,
    /// The platform failed.
    Internal,
}

/// The services functions reach from inside an invocation. Every method checks the
/// caller's grants first and answers `AccessDenied` without doing anything when they do
/// not allow the call.
pub trait Services: Send + Sync {
    /// Sends a message to a queue (`sqs:SendMessage`).
    fn queue_send<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        queue: &'a str,
        message: OutgoingMessage,
    ) -> BoxFuture<'a, Result<SentMessage, ServiceError>>;

    /// Receives up to `max_messages` messages (`sqs:ReceiveMessage`).
    fn queue_receive<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        queue: &'a str,
        max_messages: u32,
        visibility_timeout: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<ReceivedMessage>, ServiceError>>;

    /// Deletes a received message (`sqs:DeleteMessage`).
    fn queue_delete<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        queue: &'a str,
        receipt_handle: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// Publishes to a topic (`sns:Publish`); returns the message id.
    fn topic_publish<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        topic: &'a str,
        publication: Publication,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;

    /// Stores an object (`s3:PutObject`).
    fn bucket_put<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        bucket: &'a str,
        key: &'a str,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> BoxFuture<'a, Result<ObjectInfo, ServiceError>>;

    /// Reads an object; `None` when there is no such key (`s3:GetObject`).
    fn bucket_get<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Object>, ServiceError>>;

    /// Deletes an object (`s3:DeleteObject`).
    fn bucket_delete<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// Lists objects (`s3:ListBucket`).
    fn bucket_list<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        bucket: &'a str,
        query: ObjectQuery,
    ) -> BoxFuture<'a, Result<ObjectPage, ServiceError>>;

    /// Reads a KV key; `None` when absent or expired (`kv:Get`).
    fn kv_get<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        namespace: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<KvValue>, ServiceError>>;

    /// Stores a KV value (`kv:Put`).
    fn kv_put<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        namespace: &'a str,
        key: &'a str,
        value: Vec<u8>,
        options: KvPutOptions,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// Deletes a KV key (`kv:Delete`).
    fn kv_delete<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        namespace: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// Lists KV keys (`kv:List`).
    fn kv_list<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        namespace: &'a str,
        query: KvQuery,
    ) -> BoxFuture<'a, Result<KvPage, ServiceError>>;
}

/// Services for an invocation outside `nimbus up` (`nimbus invoke` with no server
/// running): every call fails as `Unavailable`, as process functions find no
/// `NIMBUS_API` there.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoServices;

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}: {}", self.action, self.resource, self.message)
    }
}

impl std::error::Error for ServiceError {}

impl fmt::Display for ServiceErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceErrorKind::AccessDenied => "access denied",
            ServiceErrorKind::NotFound => "not found",
            ServiceErrorKind::InvalidInput => "invalid input",
            ServiceErrorKind::TooLarge => "too large",
            ServiceErrorKind::Unavailable => "unavailable",
            ServiceErrorKind::Internal => "internal error",
        })
    }
}

impl Access {
    /// Listing the queues.
    pub fn queue_list() -> Access {
        Access::new("sqs:ListQueues", "queue:*".to_owned())
    }

    /// Posting to, reading or closing a WebSocket connection (API Gateway's
    /// `execute-api:ManageConnections`).
    pub fn connection_manage(connection_id: &str) -> Access {
        Access::new(
            "execute-api:ManageConnections",
            format!("connection:{connection_id}"),
        )
    }

    /// Sending to `queue`.
    pub fn queue_send(queue: &str) -> Access {
        Access::new("sqs:SendMessage", format!("queue:{queue}"))
    }

    /// Receiving from `queue`.
    pub fn queue_receive(queue: &str) -> Access {
        Access::new("sqs:ReceiveMessage", format!("queue:{queue}"))
    }

    /// Deleting a message of `queue`.
    pub fn queue_delete(queue: &str) -> Access {
        Access::new("sqs:DeleteMessage", format!("queue:{queue}"))
    }

    /// Changing the visibility of a message of `queue`.
    pub fn queue_change_visibility(queue: &str) -> Access {
        Access::new("sqs:ChangeMessageVisibility", format!("queue:{queue}"))
    }

    /// Purging `queue`.
    pub fn queue_purge(queue: &str) -> Access {
        Access::new("sqs:PurgeQueue", format!("queue:{queue}"))
    }

    /// Moving the messages of the dead-letter queue `queue` back to their source queue
    /// (SQS's StartMessageMoveTask).
    pub fn queue_redrive(queue: &str) -> Access {
        Access::new("sqs:StartMessageMoveTask", format!("queue:{queue}"))
    }

    /// Creating `queue` (or finding it, if it exists with the same settings).
    pub fn queue_create(queue: &str) -> Access {
        Access::new("sqs:CreateQueue", format!("queue:{queue}"))
    }

    /// Changing `queue`'s settings.
    pub fn queue_set_attributes(queue: &str) -> Access {
        Access::new("sqs:SetQueueAttributes", format!("queue:{queue}"))
    }

    /// Deleting `queue` itself.
    pub fn queue_remove(queue: &str) -> Access {
        Access::new("sqs:DeleteQueue", format!("queue:{queue}"))
    }

    /// Looking up `queue`'s URL.
    pub fn queue_get_url(queue: &str) -> Access {
        Access::new("sqs:GetQueueUrl", format!("queue:{queue}"))
    }

    /// Reading `queue`'s settings and message counts.
    pub fn queue_get_attributes(queue: &str) -> Access {
        Access::new("sqs:GetQueueAttributes", format!("queue:{queue}"))
    }

    /// Publishing to `topic`.
    pub fn topic_publish(topic: &str) -> Access {
        Access::new("sns:Publish", format!("topic:{topic}"))
    }

    /// Putting events on EventBridge bus `bus`.
    pub fn bus_put(bus: &str) -> Access {
        Access::new("events:PutEvents", format!("bus:{bus}"))
    }

    /// Creating `topic` at run time.
    pub fn topic_create(topic: &str) -> Access {
        Access::new("sns:CreateTopic", format!("topic:{topic}"))
    }

    /// Deleting a topic made at run time.
    pub fn topic_remove(topic: &str) -> Access {
        Access::new("sns:DeleteTopic", format!("topic:{topic}"))
    }

    /// Reading `topic`'s attributes.
    pub fn topic_get_attributes(topic: &str) -> Access {
        Access::new("sns:GetTopicAttributes", format!("topic:{topic}"))
    }

    /// Listing the topics.
    pub fn topics_list() -> Access {
        Access::new("sns:ListTopics", "topic:*".to_owned())
    }

    /// Subscribing a queue or function to `topic`.
    pub fn topic_subscribe(topic: &str) -> Access {
        Access::new("sns:Subscribe", format!("topic:{topic}"))
    }

    /// Removing or changing a subscription of `topic`.
    pub fn topic_unsubscribe(topic: &str) -> Access {
        Access::new("sns:Unsubscribe", format!("topic:{topic}"))
    }

    /// Listing the subscriptions of `topic` (`*`: of every topic).
    pub fn topic_list_subscriptions(topic: &str) -> Access {
        Access::new("sns:ListSubscriptionsByTopic", format!("topic:{topic}"))
    }

    /// Writing the object `key` of `bucket`.
    pub fn bucket_put(bucket: &str, key: &str) -> Access {
        Access::new("s3:PutObject", format!("bucket:{bucket}/{key}"))
    }

    /// Reading the object `key` of `bucket` (or only its metadata).
    pub fn bucket_get(bucket: &str, key: &str) -> Access {
        Access::new("s3:GetObject", format!("bucket:{bucket}/{key}"))
    }

    /// Deleting the object `key` of `bucket`.
    pub fn bucket_delete(bucket: &str, key: &str) -> Access {
        Access::new("s3:DeleteObject", format!("bucket:{bucket}/{key}"))
    }

    /// Listing the objects of `bucket`.
    pub fn bucket_list(bucket: &str) -> Access {
        Access::new("s3:ListBucket", format!("bucket:{bucket}"))
    }

    /// Listing the buckets.
    pub fn buckets_list() -> Access {
        Access::new("s3:ListAllMyBuckets", "bucket:*".to_owned())
    }

    /// Creating `bucket`.
    pub fn bucket_create(bucket: &str) -> Access {
        Access::new("s3:CreateBucket", format!("bucket:{bucket}"))
    }

    /// Deleting the (empty) `bucket` itself.
    pub fn bucket_remove(bucket: &str) -> Access {
        Access::new("s3:DeleteBucket", format!("bucket:{bucket}"))
    }

    /// Listing the multipart uploads in progress in `bucket`.
    pub fn bucket_list_uploads(bucket: &str) -> Access {
        Access::new("s3:ListBucketMultipartUploads", format!("bucket:{bucket}"))
    }

    /// Listing the parts of an upload of `key`.
    pub fn bucket_list_parts(bucket: &str, key: &str) -> Access {
        Access::new(
            "s3:ListMultipartUploadParts",
            format!("bucket:{bucket}/{key}"),
        )
    }

    /// Aborting an upload of `key`.
    pub fn bucket_abort_upload(bucket: &str, key: &str) -> Access {
        Access::new("s3:AbortMultipartUpload", format!("bucket:{bucket}/{key}"))
    }

    /// Reading a key of `namespace`.
    pub fn kv_get(namespace: &str) -> Access {
        Access::new("kv:Get", format!("kv:{namespace}"))
    }

    /// Writing a key of `namespace`.
    pub fn kv_put(namespace: &str) -> Access {
        Access::new("kv:Put", format!("kv:{namespace}"))
    }

    /// Deleting a key of `namespace`.
    pub fn kv_delete(namespace: &str) -> Access {
        Access::new("kv:Delete", format!("kv:{namespace}"))
    }

    /// Listing the keys of `namespace`.
    pub fn kv_list(namespace: &str) -> Access {
        Access::new("kv:List", format!("kv:{namespace}"))
    }

    fn new(action: &'static str, resource: String) -> Access {
        Access { action, resource }
    }

    /// An error of `kind` about this access.
    pub fn error(&self, kind: ServiceErrorKind, message: impl Into<String>) -> ServiceError {
        ServiceError {
            kind,
            action: self.action.to_owned(),
            resource: self.resource.clone(),
            message: message.into(),
        }
    }
}

impl NoServices {
    fn refuse<T>(access: Access) -> BoxFuture<'static, Result<T, ServiceError>>
    where
        T: Send + 'static,
    {
        let error = access.error(
            ServiceErrorKind::Unavailable,
            "services are reachable only while `nimbus up` serves the app; start it, then invoke through it",
        );
        Box::pin(async move { Err(error) })
    }
}

impl Services for NoServices {
    fn queue_send<'a>(
        &'a self,
        _caller: ServiceCaller<'a>,
        queue: &'a str,
        _message: OutgoingMessage,
    ) -> BoxFuture<'a, Result<SentMessage, ServiceError>> {
        NoServices::refuse(Access::queue_send(queue))
    }

    fn queue_receive<'a>(
        &'a self,
        _caller: ServiceCaller<'a>,
        queue: &'a str,
        _max_messages: u32,
        _visibility_timeout: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<ReceivedMessage>, ServiceError>> {
        NoServices::refuse(Access::queue_receive(queue))
    }

    fn queue_delete<'a>(
        &'a self,
        _caller: ServiceCaller<'a>,
        queue: &'a str,
        _receipt_handle: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        NoServices::refuse(Access::queue_delete(queue))
    }

    fn topic_publish<'a>(
        &'a self,
        _caller: ServiceCaller<'a>,
        topic: &'a str,
        _publication: Publication,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        NoServices::refuse(Access::topic_publish(topic))
    }

    fn bucket_put<'a>(
        &'a self,
        _caller: ServiceCaller<'a>,
        bucket: &'a str,
        key: &'a str,
        _data: Vec<u8>,
        _content_type: Option<String>,
    ) -> BoxFuture<'a, Result<ObjectInfo, ServiceError>> {
        NoServices::refuse(Access::bucket_put(bucket, key))
    }

    fn bucket_get<'a>(
        &'a self,
        _caller: ServiceCaller<'a>,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Object>, ServiceError>> {
        NoServices::refuse(Access::bucket_get(bucket, key))
    }

    fn bucket_delete<'a>(
        &'a self,
        _caller: ServiceCaller<'a>,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        NoServices::refuse(Access::bucket_delete(bucket, key))
    }

    fn bucket_list<'a>(
        &'a self,
        _caller: ServiceCaller<'a>,
        bucket: &'a str,
        _query: ObjectQuery,
    ) -> BoxFuture<'a, Result<ObjectPage, ServiceError>> {
        NoServices::refuse(Access::bucket_list(bucket))
    }

    fn kv_get<'a>(
        &'a self,
        _caller: ServiceCaller<'a>,
        namespace: &'a str,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<Option<KvValue>, ServiceError>> {
        NoServices::refuse(Access::kv_get(namespace))
    }

    fn kv_put<'a>(
        &'a self,
        _caller: ServiceCaller<'a>,
        namespace: &'a str,
        _key: &'a str,
        _value: Vec<u8>,
        _options: KvPutOptions,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        NoServices::refuse(Access::kv_put(namespace))
    }

    fn kv_delete<'a>(
        &'a self,
        _caller: ServiceCaller<'a>,
        namespace: &'a str,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        NoServices::refuse(Access::kv_delete(namespace))
    }

    fn kv_list<'a>(
        &'a self,
        _caller: ServiceCaller<'a>,
        namespace: &'a str,
        _query: KvQuery,
    ) -> BoxFuture<'a, Result<KvPage, ServiceError>> {
        NoServices::refuse(Access::kv_list(namespace))
    }
}
