//! Write nimbus functions in Rust as WebAssembly components of the `nimbus:function`
//! world: implement [`Handler`], then `nimbus_function::export!(YourType);`.
//!
//! A function gets every event (API Gateway, queue, schedule, or anything passed to
//! `nimbus invoke`) as the JSON text a Lambda handler would get, and returns JSON text,
//! or an [`Error`] that nimbus reports as Lambda's `{errorType, errorMessage}`.
//!
//! ```ignore
//! struct Hello;
//!
//! impl nimbus_function::Handler for Hello {
//!     fn handle(event: String, ctx: nimbus_function::Context) -> Result<String, nimbus_function::Error> {
//!         Ok(format!(r#"{{"requestId":"{}","bytes":{}}}"#, ctx.request_id, event.len()))
//!     }
//! }
//!
//! nimbus_function::export!(Hello);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` (crate-type `cdylib`) and
//! point the function's `handler:` at the `.wasm` file, with `runtime: wasm`.
//!
//! # Services
//!
//! A function reaches the app's queues, topics, buckets and KV namespaces with
//! [`queue()`], [`topic()`], [`bucket()`] and [`kv()`]. Each call is checked against the
//! function's grants in the manifest (`provider.iam.role.statements`, plus its own event
//! sources), as for process functions on the services HTTP API; a call that is not
//! granted fails with a [`ServiceError`] of kind [`ErrorKind::AccessDenied`] naming the
//! action and resource, and nimbus writes the refusal to the invocation's log.
//!
//! ```ignore
//! use nimbus_function::{bucket, kv, queue, topic};
//!
//! let sent = queue("orders").send(r#"{"id":1}"#)?;
//! queue("orders").message("later").delay_seconds(30).attribute("kind", "retry").send()?;
//! topic("events").message("created").subject("order").publish()?;
//! bucket("receipts").put_with_content_type("1.json", b"{}", "application/json")?;
//! kv("sessions").put_with("abc", b"alice", &kv::PutOptions::ttl_seconds(3600))?;
//! let user: Option<Vec<u8>> = kv("sessions").get("abc")?;
//! ```
//!
//! A [`ServiceError`] converts into an [`Error`] (its kind becomes the `errorType`), so
//! `?` works inside a handler.
//!
//! Components built with this crate need nimbus 0.2 or later (WIT package
//! `nimbus:function@0.2.0`); those that call no service import nothing of nimbus's.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nimbus:function/function",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "nimbus_function::bindings",
    });
}

pub use bindings::exports::nimbus::function::handler::{Context, Error, Guest as Handler};
pub use bindings::nimbus::function::types::{Attribute, Error as ServiceError, ErrorKind};

use bindings::nimbus::function::topic as topic_api;
use bindings::nimbus::function::{bucket as bucket_api, kv as kv_api, queue as queue_api};

/// Queue types: what [`Queue::send`] returns and [`Queue::receive`] yields.
pub mod queue {
    pub use crate::bindings::nimbus::function::queue::{Message, Sent};
}

/// Bucket types.
pub mod bucket {
    pub use crate::bindings::nimbus::function::bucket::{
        ListOptions, Object, ObjectList, ObjectMeta,
    };
}

/// KV types.
pub mod kv {
    pub use crate::bindings::nimbus::function::kv::{
        Entry, Expiration, KeyInfo, KeyList, PutOptions,
    };
}

/// A queue of the app, by name: `queue("orders")`.
pub fn queue(name: impl Into<String>) -> Queue {
    Queue { name: name.into() }
}

/// A topic of the app, by name: `topic("events")`.
pub fn topic(name: impl Into<String>) -> Topic {
    Topic { name: name.into() }
}

/// A bucket of the app, by name: `bucket("uploads")`.
pub fn bucket(name: impl Into<String>) -> Bucket {
    Bucket { name: name.into() }
}

/// A KV namespace of the app, by name: `kv("sessions")`.
pub fn kv(namespace: impl Into<String>) -> Kv {
    Kv {
        namespace: namespace.into(),
    }
}

/// A queue (SQS semantics). Needs `sqs:SendMessage`, `sqs:ReceiveMessage` or
/// `sqs:DeleteMessage` on `queue:NAME` (or the queue's ARN).
#[derive(Debug, Clone)]
pub struct Queue {
    name: String,
}

/// A message being composed for a queue; [`OutgoingMessage::send`] sends it.
#[derive(Debug, Clone)]
#[must_use = "a message is sent by `.send()`"]
pub struct OutgoingMessage<'q> {
    queue: &'q Queue,
    message: queue_api::Outgoing,
}

/// A topic (SNS semantics). Needs `sns:Publish` on `topic:NAME`.
#[derive(Debug, Clone)]
pub struct Topic {
    name: String,
}

/// A message being composed for a topic; [`Publication::publish`] publishes it.
#[derive(Debug, Clone)]
#[must_use = "a message is published by `.publish()`"]
pub struct Publication<'t> {
    topic: &'t Topic,
    message: String,
    subject: Option<String>,
    attributes: Vec<Attribute>,
}

/// A bucket (S3-like). Needs `s3:PutObject`, `s3:GetObject` or `s3:DeleteObject` on
/// `bucket:NAME/KEY`, and `s3:ListBucket` on `bucket:NAME`.
#[derive(Debug, Clone)]
pub struct Bucket {
    name: String,
}

/// A KV namespace (Workers KV-like). Needs `kv:Get`, `kv:Put`, `kv:Delete` or `kv:List`
/// on `kv:NAMESPACE`.
#[derive(Debug, Clone)]
pub struct Kv {
    namespace: String,
}

impl Error {
    /// An error of the given type (`ValidationError`, ...) and message.
    pub fn new(error_type: impl Into<String>, error_message: impl Into<String>) -> Error {
        Error {
            error_type: error_type.into(),
            error_message: error_message.into(),
        }
    }
}

impl Queue {
    /// Sends `body` (`sqs:SendMessage`). The message carries the invocation's trace, so
    /// the function it triggers joins it.
    pub fn send(&self, body: impl Into<String>) -> Result<queue::Sent, ServiceError> {
        self.message(body).send()
    }

    /// Starts a message with `body`, to add a delay, attributes or FIFO ids before
    /// sending it.
    pub fn message(&self, body: impl Into<String>) -> OutgoingMessage<'_> {
        OutgoingMessage {
            queue: self,
            message: queue_api::Outgoing {
                body: body.into(),
                delay_seconds: None,
                attributes: Vec::new(),
                group_id: None,
                deduplication_id: None,
            },
        }
    }

    /// Receives up to `max_messages` (1 to 10) messages, hidden from other receivers for
    /// the queue's visibility timeout (`sqs:ReceiveMessage`). Delete each once handled.
    pub fn receive(&self, max_messages: u32) -> Result<Vec<queue::Message>, ServiceError> {
        queue_api::receive(&self.name, max_messages, None)
    }

    /// As [`Queue::receive`], hiding the messages for `visibility_timeout_seconds`.
    pub fn receive_with_visibility(
        &self,
        max_messages: u32,
        visibility_timeout_seconds: u32,
    ) -> Result<Vec<queue::Message>, ServiceError> {
        queue_api::receive(&self.name, max_messages, Some(visibility_timeout_seconds))
    }

    /// Deletes a received message (`sqs:DeleteMessage`).
    pub fn delete(&self, receipt_handle: &str) -> Result<(), ServiceError> {
        queue_api::delete(&self.name, receipt_handle)
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl OutgoingMessage<'_> {
    /// Keeps the message invisible for this long (0 to 900 seconds).
    pub fn delay_seconds(mut self, seconds: u32) -> Self {
        self.message.delay_seconds = Some(seconds);
        self
    }

    /// Adds a `String` attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.message.attributes.push(Attribute {
            name: name.into(),
            data_type: "String".to_owned(),
            value: value.into(),
        });
        self
    }

    /// FIFO queues: the message group.
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.message.group_id = Some(group_id.into());
        self
    }

    /// FIFO queues: the deduplication id.
    pub fn deduplication_id(mut self, deduplication_id: impl Into<String>) -> Self {
        self.message.deduplication_id = Some(deduplication_id.into());
        self
    }

    /// Sends the message.
    pub fn send(self) -> Result<queue::Sent, ServiceError> {
        queue_api::send(&self.queue.name, &self.message)
    }
}

impl Topic {
    /// Publishes `message` to every matching subscriber (`sns:Publish`); returns the
    /// message id.
    pub fn publish(&self, message: impl Into<String>) -> Result<String, ServiceError> {
        self.message(message).publish()
    }

    /// Starts a message, to add a subject or attributes before publishing it.
    pub fn message(&self, message: impl Into<String>) -> Publication<'_> {
        Publication {
            topic: self,
            message: message.into(),
            subject: None,
            attributes: Vec::new(),
        }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Publication<'_> {
    /// SNS's `Subject`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Adds a `String` attribute (subscribers' filter policies match on them).
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push(Attribute {
            name: name.into(),
            data_type: "String".to_owned(),
            value: value.into(),
        });
        self
    }

    /// Publishes the message; returns its id.
    pub fn publish(self) -> Result<String, ServiceError> {
        topic_api::publish(
            &self.topic.name,
            &self.message,
            self.subject.as_deref(),
            &self.attributes,
        )
    }
}

impl Bucket {
    /// Stores `data` under `key` (`s3:PutObject`); the bucket's subscribers are notified.
    pub fn put(
        &self,
        key: &str,
        data: impl AsRef<[u8]>,
    ) -> Result<bucket::ObjectMeta, ServiceError> {
        bucket_api::put(&self.name, key, data.as_ref(), None)
    }

    /// As [`Bucket::put`], keeping `content_type` with the object.
    pub fn put_with_content_type(
        &self,
        key: &str,
        data: impl AsRef<[u8]>,
        content_type: &str,
    ) -> Result<bucket::ObjectMeta, ServiceError> {
        bucket_api::put(&self.name, key, data.as_ref(), Some(content_type))
    }

    /// Reads the object under `key`; `None` when there is none (`s3:GetObject`).
    pub fn get(&self, key: &str) -> Result<Option<bucket::Object>, ServiceError> {
        bucket_api::get(&self.name, key)
    }

    /// Deletes the object under `key`; a missing key is no error (`s3:DeleteObject`).
    pub fn delete(&self, key: &str) -> Result<(), ServiceError> {
        bucket_api::delete(&self.name, key)
    }

    /// Lists up to 1000 objects whose keys start with `prefix`, in key order
    /// (`s3:ListBucket`); see [`Bucket::list_page`] for the pages after.
    pub fn list(&self, prefix: &str) -> Result<bucket::ObjectList, ServiceError> {
        self.list_page(&bucket::ListOptions {
            prefix: Some(prefix.to_owned()),
            start_after: None,
            max_keys: None,
        })
    }

    /// Lists one page of objects; pass the previous page's `next_start_after` as
    /// `start_after` for the next.
    pub fn list_page(
        &self,
        options: &bucket::ListOptions,
    ) -> Result<bucket::ObjectList, ServiceError> {
        bucket_api::list_objects(&self.name, options)
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Kv {
    /// The value of `key`; `None` when absent or expired (`kv:Get`).
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ServiceError> {
        Ok(self.get_entry(key)?.map(|entry| entry.value))
    }

    /// The value of `key` as UTF-8 text (invalid bytes replaced).
    pub fn get_string(&self, key: &str) -> Result<Option<String>, ServiceError> {
        Ok(self
            .get(key)?
            .map(|value| String::from_utf8_lossy(&value).into_owned()))
    }

    /// The value of `key` with its metadata and expiration.
    pub fn get_entry(&self, key: &str) -> Result<Option<kv::Entry>, ServiceError> {
        kv_api::get(&self.namespace, key)
    }

    /// Stores `value` under `key`, with no expiration or metadata (`kv:Put`).
    pub fn put(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), ServiceError> {
        self.put_with(key, value, &kv::PutOptions::default())
    }

    /// Stores `value` under `key` with an expiration and metadata.
    pub fn put_with(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        options: &kv::PutOptions,
    ) -> Result<(), ServiceError> {
        kv_api::put(&self.namespace, key, value.as_ref(), options)
    }

    /// Deletes `key`; a missing key is no error (`kv:Delete`).
    pub fn delete(&self, key: &str) -> Result<(), ServiceError> {
        kv_api::delete(&self.namespace, key)
    }

    /// Lists up to 1000 keys that start with `prefix`, in key order (`kv:List`); see
    /// [`Kv::list_page`] for the pages after.
    pub fn list(&self, prefix: &str) -> Result<kv::KeyList, ServiceError> {
        kv_api::list_keys(&self.namespace, Some(prefix), None, None)
    }

    /// Lists one page of keys: pass the previous page's `cursor` for the next; `limit`
    /// is 1 to 1000.
    pub fn list_page(
        &self,
        prefix: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<kv::KeyList, ServiceError> {
        kv_api::list_keys(&self.namespace, prefix, cursor, limit)
    }

    /// The namespace's name.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

impl kv::PutOptions {
    /// Expire `seconds` from now.
    pub fn ttl_seconds(seconds: u64) -> kv::PutOptions {
        kv::PutOptions {
            expiration: Some(kv::Expiration::TtlSeconds(seconds)),
            metadata: None,
        }
    }

    /// Expire at `epoch_seconds` (seconds since the Unix epoch).
    pub fn expires_at(epoch_seconds: u64) -> kv::PutOptions {
        kv::PutOptions {
            expiration: Some(kv::Expiration::AtEpochSeconds(epoch_seconds)),
            metadata: None,
        }
    }

    /// Keeps `json` (JSON text, up to 1024 bytes) as the key's metadata.
    pub fn metadata(mut self, json: impl Into<String>) -> kv::PutOptions {
        self.metadata = Some(json.into());
        self
    }
}

impl Default for kv::PutOptions {
    /// No expiration, no metadata.
    fn default() -> kv::PutOptions {
        kv::PutOptions {
            expiration: None,
            metadata: None,
        }
    }
}

impl ErrorKind {
    /// The kind as an error type name: `AccessDenied`, `NotFound`, `InvalidInput`,
    /// `TooLarge`, `Unavailable` or `InternalError`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::AccessDenied => "AccessDenied",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::InvalidInput => "InvalidInput",
            ErrorKind::TooLarge => "TooLarge",
            ErrorKind::Unavailable => "Unavailable",
            ErrorKind::Internal => "InternalError",
        }
    }
}

impl From<ServiceError> for Error {
    /// The kind becomes the `errorType`; the message says what was refused and why.
    fn from(e: ServiceError) -> Error {
        Error {
            error_type: e.kind.name().to_owned(),
            error_message: format!("{} on {}: {}", e.action, e.resource, e.message),
        }
    }
}

/// Exports a type implementing [`Handler`] as the component's `nimbus:function/handler`.
#[macro_export]
macro_rules! export {
    ($handler:ident) => {
        $crate::bindings::export_world!($handler);
    };
}
