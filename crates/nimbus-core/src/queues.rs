//! Queues as the server sees them: the messages it sends and receives, and the
//! [`QueueStore`] seam its queue operations go through, so a queue can live in the
//! embedded store (`nimbus_store::Store`) or in a cluster's shared engine.
//!
//! Semantics follow Amazon SQS (visibility timeouts, FIFO groups, deduplication, redrive);
//! an implementation keeps them and says where it differs.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::BoxFuture;
use crate::events::QueueSpec;

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The body: 1 to 262,144 bytes of text (with the attributes) in SQS's allowed characters.
    pub body: String,
    /// Standard queues only: the message's own delay (up to 15 minutes) instead of the queue's.
    pub delay: Option<Duration>,
    /// Up to 10 message attributes.
    pub attributes: BTreeMap<String, MessageAttribute>,
    /// FIFO queues only, and required there: the message group.
    pub group_id: Option<String>,
    /// FIFO queues only: the deduplication id; without one the queue must use content-based
    /// deduplication.
    pub deduplication_id: Option<String>,
}

/// A message attribute, as SQS's `MessageAttributeValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAttribute {
    /// `String`, `Number` or `Binary`, optionally followed by `.` and a custom label
    /// (`Number.float`).
    pub data_type: String,
    /// The value; for `Binary` its base64 encoding.
    pub value: String,
}

/// What `send_message` reports for each message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The message's id (a UUID); for a duplicate, the id of the message first sent.
    pub message_id: String,
    /// Lowercase hex MD5 of the body (`MD5OfMessageBody`).
    pub md5_of_body: String,
    /// `MD5OfMessageAttributes` as SQS computes it; `None` without attributes.
    pub md5_of_message_attributes: Option<String>,
    /// FIFO only: the sequence number, a decimal string that grows with every message.
    pub sequence_number: Option<String>,
    /// FIFO only: whether a message with the same deduplication id was accepted in the last five
    /// minutes, in which case this one was not enqueued again.
    pub duplicate: bool,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The message's id, the same on every receive (and after a move to a dead-letter queue).
    pub message_id: String,
    /// The handle to delete the message or change its visibility; new on every receive.
    pub receipt_handle: String,
    /// The body.
    pub body: String,
    /// The message attributes.
    pub attributes: BTreeMap<String, MessageAttribute>,
    /// Lowercase hex MD5 of the body.
    pub md5_of_body: String,
    /// `MD5OfMessageAttributes`; `None` without attributes.
    pub md5_of_message_attributes: Option<String>,
    /// How many times the message has been received, this receive included
    /// (`ApproximateReceiveCount`).
    pub receive_count: u32,
    /// When the message was sent (`SentTimestamp`).
    pub sent_at: SystemTime,
    /// When it was first received (`ApproximateFirstReceiveTimestamp`).
    pub first_received_at: SystemTime,
    /// FIFO only: the message group.
    pub group_id: Option<String>,
    /// FIFO only: the sequence number.
    pub sequence_number: Option<String>,
    /// FIFO only: the deduplication id (the body's SHA-256 under content-based deduplication).
    pub deduplication_id: Option<String>,
}

/// Approximate counts of a queue's messages, as SQS's `ApproximateNumberOfMessages*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages that a receive could return now.
    pub visible: u64,
    /// Messages received and neither deleted nor visible again yet.
    pub in_flight: u64,
    /// Messages not yet visible because of a delay.
    pub delayed: u64,
    /// The age of the oldest message, if any.
    pub oldest_age: Option<Duration>,
}

/// Why a queue operation failed: the caller's mistake (each variant SQS has an error
/// code for) or the backend's.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No queue of that name.
    #[error(
        "queue `{queue}` does not exist: declare it in the manifest (`queues:` or an AWS::SQS::Queue resource)"
    )]
    UnknownQueue {
        /// The queue.
        queue: String,
    },
    /// The declaration is wrong.
    #[error("queue `{queue}` is declared wrongly: {reason}")]
    InvalidQueue {
        /// The queue.
        queue: String,
        /// What is wrong.
        reason: String,
    },
    /// Body and attributes over the limit.
    #[error(
        "message of {size} bytes (body and attributes) is over the limit of {limit} bytes: send a reference to the data (e.g. a bucket key) instead"
    )]
    MessageTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A message the queue does not take.
    #[error("invalid message for queue `{queue}`: {reason}")]
    InvalidMessage {
        /// The queue.
        queue: String,
        /// What is wrong.
        reason: String,
    },
    /// A FIFO message without its group.
    #[error(
        "a message to FIFO queue `{queue}` needs a message group id (MessageGroupId): messages of one group are delivered in order"
    )]
    MissingGroupId {
        /// The queue.
        queue: String,
    },
    /// A parameter out of range.
    #[error("invalid parameter: {reason}")]
    InvalidParameter {
        /// What is wrong.
        reason: String,
    },
    /// A receipt handle that no longer names a message in flight.
    #[error(
        "receipt handle `{receipt_handle}` is not valid for queue `{queue}`: the message was deleted, moved or received again since; receive it again to get a new handle"
    )]
    InvalidReceiptHandle {
        /// The queue.
        queue: String,
        /// The handle.
        receipt_handle: String,
    },
    /// A visibility change of a message that is visible again.
    #[error(
        "message in queue `{queue}` is not in flight (its visibility timeout has expired): receive it again before changing its visibility"
    )]
    MessageNotInFlight {
        /// The queue.
        queue: String,
    },
    /// The backend cannot be reached now (a cluster's engine is down or out of reach):
    /// nothing was written, and the same call can be retried shortly.
    #[error("the queues are unavailable for now ({message}); retry shortly")]
    Unavailable {
        /// What could not be reached, as the backend says it.
        message: String,
    },
    /// The backend failed: the platform's fault, not the caller's.
    #[error("{message}")]
    Backend {
        /// What failed, as the backend says it (its causes joined).
        message: String,
    },
}

/// The queue operations the server uses, on whichever backend holds the queues. Methods
/// take owned arguments so an implementation can hand them to another thread or task.
pub trait QueueStore: Send + Sync {
    /// Creates the queue, or updates its attributes to `spec`.
    fn ensure_queue(&self, spec: QueueSpec) -> BoxFuture<'_, Result<(), QueueError>>;
    /// The queue's declaration, if it exists.
    fn queue(&self, name: String) -> BoxFuture<'_, Result<Option<QueueSpec>, QueueError>>;
    /// Every queue's name, in name order.
    fn list_queues(&self) -> BoxFuture<'_, Result<Vec<String>, QueueError>>;
    /// Approximate counts of the queue's messages.
    fn queue_stats(&self, name: String) -> BoxFuture<'_, Result<QueueStats, QueueError>>;
    /// Sends each message to its queue, all or none; one result per message, in order.
    fn send_many(
        &self,
        sends: Vec<(String, NewMessage)>,
    ) -> BoxFuture<'_, Result<Vec<SentMessage>, QueueError>>;
    /// Sends one message.
    fn send_message(
        &self,
        queue: String,
        message: NewMessage,
    ) -> BoxFuture<'_, Result<SentMessage, QueueError>> {
        Box::pin(async move {
            let mut sent = self.send_many(vec![(queue, message)]).await?;
            sent.pop().ok_or_else(|| QueueError::Backend {
                message: "the queue answered no result for the message sent".to_owned(),
            })
        })
    }
    /// Sends one message at most once per `key` over every node sharing the queues (a
    /// schedule's slot): another send with the same key within five minutes is not
    /// enqueued again. The embedded store serves one node, whose callers claim the key in
    /// their own commit, so by default this is `send_message`.
    fn send_once(
        &self,
        queue: String,
        message: NewMessage,
        key: String,
    ) -> BoxFuture<'_, Result<SentMessage, QueueError>> {
        let _ = key;
        self.send_message(queue, message)
    }
    /// Sends up to 10 messages to one queue, each accepted or refused on its own
    /// (SendMessageBatch); `Err` only when none could be tried.
    fn send_entries(
        &self,
        queue: String,
        messages: Vec<NewMessage>,
    ) -> BoxFuture<'_, Result<Vec<Result<SentMessage, QueueError>>, QueueError>>;
    /// Receives up to `max` (1 to 10) visible messages, hiding them for
    /// `visibility_timeout` (the queue's own when `None`).
    fn receive_messages(
        &self,
        queue: String,
        max: usize,
        visibility_timeout: Option<Duration>,
    ) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>>;
    /// Deletes the message a receipt handle names.
    fn delete_message(
        &self,
        queue: String,
        receipt_handle: String,
    ) -> BoxFuture<'_, Result<(), QueueError>>;
    /// Deletes the messages the receipt handles name, in one go; one result per handle.
    fn delete_batch(
        &self,
        queue: String,
        receipt_handles: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Result<(), QueueError>>, QueueError>>;
    /// Makes a received message visible again after `timeout` from now.
    fn change_visibility(
        &self,
        queue: String,
        receipt_handle: String,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(), QueueError>>;
    /// Deletes every message of the queue; returns how many.
    fn purge_queue(&self, queue: String) -> BoxFuture<'_, Result<u64, QueueError>>;
    /// Deletes the queue and its messages.
    fn delete_queue(&self, queue: String) -> BoxFuture<'_, Result<(), QueueError>>;
}

impl QueueError {
    /// Whether the caller is at fault (a 4xx), rather than the backend.
    pub fn is_client(&self) -> bool {
        !matches!(
            self,
            QueueError::Backend { .. } | QueueError::Unavailable { .. }
        )
    }
}

impl NewMessage {
    /// A message with this body and nothing else: no delay of its own, no attributes, no group.
    pub fn new(body: impl Into<String>) -> NewMessage {
        NewMessage {
            body: body.into(),
            delay: None,
            attributes: BTreeMap::new(),
            group_id: None,
            deduplication_id: None,
        }
    }
}

impl MessageAttribute {
    /// A `String` attribute.
    pub fn string(value: impl Into<String>) -> MessageAttribute {
        MessageAttribute {
            data_type: "String".to_owned(),
            value: value.into(),
        }
    }
}
