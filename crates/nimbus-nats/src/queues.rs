//! Queues with SQS semantics on JetStream: a work-queue stream per queue and one durable pull
//! consumer that every node shares, so nodes are competing consumers of each message.
//!
//! The mapping (docs/design/005-cluster-beyond-one-rack.md): a send is a publish (FIFO
//! deduplication through `Nats-Msg-Id` in the stream's five-minute window), a receive is a
//! fetch, the visibility timeout is the consumer's AckWait, a delete is an acknowledgement
//! and a visibility change a Nak with that delay, both sent to the message's ack subject,
//! which is the receipt handle, so any node can delete a message another node received.
//! Delays are a header the receiver honours with a Nak; redrive moves a message past its
//! maxReceiveCount to the dead-letter queue's stream, then acknowledges it. A FIFO queue's
//! consumer has one message in flight at a time, which keeps every group in order (and
//! serializes the queue: coarser than SQS's one in flight per group).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, context::GetStreamErrorKind};
use futures_util::StreamExt as _;
use md5::Digest as _;
use nimbus_core::BoxFuture;
use nimbus_core::events::{QueueSpec, Redrive};
use nimbus_core::queues::{
    NewMessage, QueueError, QueueStats, QueueStore, ReceivedMessage, SentMessage,
};
use nimbus_store::{
    DEDUPLICATION_WINDOW, MAX_MESSAGE_BATCH, check_message, check_queue_spec, check_visibility,
    decode_message_attributes, md5_of_attributes,
};

use crate::error_chain;

/// The durable consumer every node pulls from.
const CONSUMER: &str = "nimbus";
/// Message headers nimbus keeps a message's SQS fields in.
const MESSAGE_ID: &str = "Nimbus-Message-Id";
const ATTRIBUTES: &str = "Nimbus-Attributes";
const GROUP_ID: &str = "Nimbus-Group-Id";
const DEDUPLICATION_ID: &str = "Nimbus-Deduplication-Id";
/// When a delayed message becomes receivable, in Unix milliseconds.
const VISIBLE_AT: &str = "Nimbus-Visible-At";
/// JetStream's deduplication header.
const NATS_MSG_ID: &str = "Nats-Msg-Id";
/// Messages in flight (received, not deleted) per standard queue; SQS allows 120,000.
const MAX_IN_FLIGHT: i64 = 20_000;
/// The longest a receive waits on the server (it asks for what is there now).
const FETCH_EXPIRES: Duration = Duration::from_millis(200);
/// JetStream needs an AckWait; a visibility timeout of 0 becomes this.
const MIN_ACK_WAIT: Duration = Duration::from_millis(100);

/// One app's queues on JetStream.
pub struct NatsQueues {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    /// The app's token in stream names and subjects.
    namespace: String,
    /// Queues this node has used: the declaration (read from the stream's description)
    /// and the consumer.
    handles: Mutex<HashMap<String, Arc<Handle>>>,
    /// Copies of each queue's stream (and consumer) JetStream keeps.
    replicas: usize,
}

struct Handle {
    spec: QueueSpec,
    stream: String,
    subject: String,
    consumer: PullConsumer,
}

impl NatsQueues {
    pub(crate) fn new(
        client: async_nats::Client,
        jetstream: jetstream::Context,
        namespace: &str,
        replicas: usize,
    ) -> NatsQueues {
        NatsQueues {
            client,
            jetstream,
            namespace: escape(namespace, false),
            handles: Mutex::new(HashMap::new()),
            replicas,
        }
    }

    fn stream_prefix(&self) -> String {
        format!("nimbus-{}-q-", self.namespace)
    }

    fn stream_name(&self, queue: &str) -> String {
        format!("{}{}", self.stream_prefix(), escape(queue, true))
    }

    fn subject(&self, queue: &str) -> String {
        format!("nimbus.{}.q.{}", self.namespace, escape(queue, true))
    }

    fn cached(&self, queue: &str) -> Option<Arc<Handle>> {
        let handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        handles.get(queue).cloned()
    }

    fn forget(&self, queue: &str) {
        let mut handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        handles.remove(queue);
    }

    fn remember(&self, handle: Handle) -> Arc<Handle> {
        let handle = Arc::new(handle);
        let mut handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        handles.insert(handle.spec.name.clone(), handle.clone());
        handle
    }

    /// The queue's stream and consumer, from the cache or from JetStream (a queue another
    /// node made).
    async fn handle(&self, queue: &str) -> Result<Arc<Handle>, QueueError> {
        if let Some(handle) = self.cached(queue) {
            return Ok(handle);
        }
        let stream_name = self.stream_name(queue);
        let unknown = || QueueError::UnknownQueue {
            queue: queue.to_owned(),
        };
        let mut stream = match self.jetstream.get_stream(&stream_name).await {
            Ok(stream) => stream,
            Err(e) if stream_missing(e.kind()) => return Err(unknown()),
            Err(e) => return Err(unavailable("looking up a queue's stream", &e)),
        };
        let info = stream
            .info()
            .await
            .map_err(|e| unavailable("reading a queue's stream", &e))?;
        let spec = info
            .config
            .description
            .as_deref()
            .and_then(|text| parse_spec(queue, text))
            .ok_or_else(|| QueueError::Backend {
                message: format!(
                    "stream {stream_name} has no queue declaration nimbus can read in its description"
                ),
            })?;
        let consumer: PullConsumer = stream
            .get_consumer(CONSUMER)
            .await
            .map_err(|e| unavailable("looking up a queue's consumer", &*e))?;
        Ok(self.remember(Handle {
            spec,
            stream: stream_name,
            subject: self.subject(queue),
            consumer,
        }))
    }

    async fn ensure(&self, spec: QueueSpec) -> Result<(), QueueError> {
        check_queue_spec(&spec)?;
        let stream_name = self.stream_name(&spec.name);
        let subject = self.subject(&spec.name);
        let config = stream::Config {
            name: stream_name.clone(),
            description: Some(describe_spec(&spec)),
            subjects: vec![subject.clone()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            max_age: spec.retention,
            duplicate_window: DEDUPLICATION_WINDOW,
            num_replicas: self.replicas,
            ..Default::default()
        };
        let stream = match self.jetstream.get_stream(&stream_name).await {
            Ok(_) => {
                self.jetstream
                    .update_stream(config)
                    .await
                    .map_err(|e| unavailable("updating a queue's stream", &e))?;
                self.jetstream
                    .get_stream(&stream_name)
                    .await
                    .map_err(|e| unavailable("looking up a queue's stream", &e))?
            }
            // Nodes starting together race to create it; the loser updates what the
            // winner made.
            Err(e) if stream_missing(e.kind()) => {
                match self.jetstream.create_stream(config.clone()).await {
                    Ok(stream) => stream,
                    Err(create) => {
                        self.jetstream
                            .update_stream(config)
                            .await
                            .map_err(|_| unavailable("creating a queue's stream", &create))?;
                        self.jetstream
                            .get_stream(&stream_name)
                            .await
                            .map_err(|e| unavailable("looking up a queue's stream", &e))?
                    }
                }
            }
            Err(e) => return Err(unavailable("looking up a queue's stream", &e)),
        };
        let consumer_config = pull::Config {
            durable_name: Some(CONSUMER.to_owned()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: spec.visibility_timeout.max(MIN_ACK_WAIT),
            // nimbus counts receives itself and moves a message to the dead-letter queue.
            max_deliver: -1,
            max_ack_pending: if spec.is_fifo() { 1 } else { MAX_IN_FLIGHT },
            ..Default::default()
        };
        let consumer = stream
            .create_consumer(consumer_config)
            .await
            .map_err(|e| unavailable("creating a queue's consumer", &e))?;
        self.remember(Handle {
            spec,
            stream: stream_name,
            subject,
            consumer,
        });
        Ok(())
    }

    /// Publishes `sends`; with `once`, each under that JetStream deduplication id (one
    /// message per key in the stream's five-minute window, over every node).
    async fn send(
        &self,
        sends: Vec<(String, NewMessage)>,
        once: Option<&str>,
    ) -> Result<Vec<Result<SentMessage, QueueError>>, QueueError> {
        connected(&self.client)?;
        // Every message is checked before any is published, so a refused one sends nothing.
        let mut checked = Vec::with_capacity(sends.len());
        for (queue, message) in sends {
            let handle = self.handle(&queue).await?;
            let result = check_message(&handle.spec, &message);
            checked.push((handle, message, result));
        }
        let now_ms = unix_millis(SystemTime::now());
        let mut pending = Vec::with_capacity(checked.len());
        for (handle, message, result) in checked {
            let checked = match result {
                Ok(checked) => checked,
                Err(e) => {
                    pending.push(Err(e));
                    continue;
                }
            };
            let message_id = uuid::Uuid::new_v4().hyphenated().to_string();
            let mut headers = HeaderMap::new();
            headers.insert(MESSAGE_ID, message_id.as_str());
            if let Some(attributes) = &checked.encoded_attributes {
                headers.insert(ATTRIBUTES, attributes.as_str());
            }
            if let Some(group_id) = &message.group_id {
                headers.insert(GROUP_ID, group_id.as_str());
            }
            if let Some(deduplication_id) = &checked.deduplication_id {
                headers.insert(DEDUPLICATION_ID, deduplication_id.as_str());
                headers.insert(NATS_MSG_ID, deduplication_id.as_str());
            } else if let Some(key) = once {
                headers.insert(NATS_MSG_ID, key);
            }
            let delay = message.delay.unwrap_or(handle.spec.delay);
            if !delay.is_zero() {
                let at = now_ms.saturating_add(delay.as_millis() as u64);
                headers.insert(VISIBLE_AT, at.to_string().as_str());
            }
            // Publishes are pipelined: each waits for its acknowledgement below.
            let ack = self
                .jetstream
                .publish_with_headers(handle.subject.clone(), headers, message.body.into())
                .await
                .map_err(|e| unavailable("sending a message", &e))?;
            pending.push(Ok((handle, message_id, checked, ack)));
        }
        let mut sent = Vec::with_capacity(pending.len());
        for entry in pending {
            let (handle, message_id, checked, ack) = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    sent.push(Err(e));
                    continue;
                }
            };
            let ack = ack
                .await
                .map_err(|e| unavailable("sending a message", &e))?;
            let fifo = handle.spec.is_fifo();
            let message_id = if ack.duplicate {
                self.first_message_id(&handle, ack.sequence)
                    .await
                    .unwrap_or(message_id)
            } else {
                message_id
            };
            sent.push(Ok(SentMessage {
                message_id,
                md5_of_body: checked.md5_of_body,
                md5_of_message_attributes: checked.md5_of_message_attributes,
                sequence_number: fifo.then(|| sequence_number(ack.sequence)),
                duplicate: ack.duplicate,
            }));
        }
        Ok(sent)
    }

    /// The id of the message a duplicate repeats (SQS answers with the first one's id).
    async fn first_message_id(&self, handle: &Handle, sequence: u64) -> Option<String> {
        let stream = self.jetstream.get_stream(&handle.stream).await.ok()?;
        let message = stream.get_raw_message(sequence).await.ok()?;
        Some(message.headers.get(MESSAGE_ID)?.as_str().to_owned())
    }

    async fn receive(
        &self,
        queue: String,
        max: usize,
        visibility_timeout: Option<Duration>,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        if !(1..=MAX_MESSAGE_BATCH).contains(&max) {
            return Err(QueueError::InvalidParameter {
                reason: format!("MaxNumberOfMessages is 1 to {MAX_MESSAGE_BATCH}, not {max}"),
            });
        }
        if let Some(timeout) = visibility_timeout {
            check_visibility(timeout)?;
        }
        connected(&self.client)?;
        let handle = self.handle(&queue).await?;
        // One message of a FIFO queue is in flight at a time. A fetch that got fewer than
        // it asked for, because the consumer is at its limit in flight, would otherwise wait
        // for redeliveries: it ends after a moment whatever it holds.
        let max = if handle.spec.is_fifo() { 1 } else { max };
        let mut batch = handle
            .consumer
            .fetch()
            .max_messages(max)
            .expires(FETCH_EXPIRES)
            .messages()
            .await
            .map_err(|e| unavailable("receiving messages", &e))?;
        let now = SystemTime::now();
        let mut received = Vec::new();
        while let Some(message) = batch.next().await {
            let message = match message {
                Ok(message) => message,
                // What was received is kept (its messages are in flight); the rest waits.
                Err(e) if !received.is_empty() => {
                    tracing::debug!(queue, "ending a fetch early: {e}");
                    break;
                }
                Err(e) => return Err(unavailable("receiving messages", &*e)),
            };
            if let Some(message) = self.take(&handle, message, now, visibility_timeout).await? {
                received.push(message);
            }
        }
        Ok(received)
    }

    /// Turns a fetched message into a received one, or holds it back (a delay not yet over)
    /// or moves it to the dead-letter queue (`None`).
    async fn take(
        &self,
        handle: &Handle,
        message: jetstream::Message,
        now: SystemTime,
        visibility_timeout: Option<Duration>,
    ) -> Result<Option<ReceivedMessage>, QueueError> {
        let info = message.info().map_err(|e| QueueError::Backend {
            message: format!("a message without JetStream metadata: {e}"),
        })?;
        let delivered = u32::try_from(info.delivered).unwrap_or(u32::MAX);
        let stream_sequence = info.stream_sequence;
        let sent_at = SystemTime::from(info.published);
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(name))
                .map(|value| value.as_str().to_owned())
        };
        let visible_at = header(VISIBLE_AT).and_then(|at| at.parse::<u64>().ok());
        let now_ms = unix_millis(now);
        if let Some(at) = visible_at
            && at > now_ms
        {
            nak(&message, Some(Duration::from_millis(at - now_ms))).await?;
            return Ok(None);
        }
        // A delayed message was held back once (its first delivery) before it could be
        // received; that delivery is not a receive.
        let receive_count = if visible_at.is_some() && delivered > 1 {
            delivered - 1
        } else {
            delivered
        };
        if let Some(redrive) = &handle.spec.redrive
            && receive_count > redrive.max_receive_count
            && self.redrive(handle, redrive, &message).await?
        {
            return Ok(None);
        }
        let receipt_handle = message
            .reply
            .as_ref()
            .map(|reply| reply.to_string())
            .ok_or_else(|| QueueError::Backend {
                message: "a message without an ack subject".to_owned(),
            })?;
        if let Some(timeout) = visibility_timeout
            && timeout != handle.spec.visibility_timeout
        {
            // A Nak with a delay keeps the message in flight until then, as a visibility
            // timeout of this receive's own.
            nak(&message, Some(timeout)).await?;
        }
        let body = String::from_utf8_lossy(&message.payload).into_owned();
        let attributes = decode_message_attributes(header(ATTRIBUTES).as_deref());
        Ok(Some(ReceivedMessage {
            message_id: header(MESSAGE_ID).unwrap_or_else(|| format!("nats-{stream_sequence}")),
            receipt_handle,
            md5_of_body: md5_hex(body.as_bytes()),
            md5_of_message_attributes: md5_of_attributes(&attributes).ok().flatten(),
            body,
            attributes,
            receive_count,
            sent_at,
            // JetStream does not keep the first delivery's time; the first receive is now.
            first_received_at: if receive_count <= 1 { now } else { sent_at },
            group_id: header(GROUP_ID),
            sequence_number: handle
                .spec
                .is_fifo()
                .then(|| sequence_number(stream_sequence)),
            deduplication_id: header(DEDUPLICATION_ID),
        }))
    }

    /// Moves a message received too often to the dead-letter queue: published there first,
    /// then acknowledged here, so a crash between the two repeats it rather than loses it.
    /// `false` when the dead-letter queue does not exist (the message stays, as in the
    /// embedded store).
    async fn redrive(
        &self,
        handle: &Handle,
        redrive: &Redrive,
        message: &jetstream::Message,
    ) -> Result<bool, QueueError> {
        let dead_letter = match self.handle(&redrive.dead_letter_queue).await {
            Ok(dead_letter) => dead_letter,
            Err(QueueError::UnknownQueue { .. }) => {
                tracing::warn!(
                    queue = handle.spec.name,
                    dead_letter_queue = redrive.dead_letter_queue,
                    "the dead-letter queue does not exist; the message stays"
                );
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let mut headers = HeaderMap::new();
        if let Some(original) = &message.headers {
            for name in [MESSAGE_ID, ATTRIBUTES, GROUP_ID, DEDUPLICATION_ID] {
                if let Some(value) = original.get(name) {
                    headers.insert(name, value.as_str());
                }
            }
        }
        self.jetstream
            .publish_with_headers(
                dead_letter.subject.clone(),
                headers,
                message.payload.clone(),
            )
            .await
            .map_err(|e| unavailable("moving a message to its dead-letter queue", &e))?
            .await
            .map_err(|e| unavailable("moving a message to its dead-letter queue", &e))?;
        message
            .double_ack()
            .await
            .map_err(|e| unavailable("moving a message to its dead-letter queue", &*e))?;
        Ok(true)
    }

    /// Sends `kind` to a receipt handle's ack subject and waits for the server's answer:
    /// for a visibility change, which must be in force when the call returns.
    async fn acknowledge(
        &self,
        queue: &str,
        receipt_handle: String,
        kind: AckKind,
    ) -> Result<(), QueueError> {
        connected(&self.client)?;
        let handle = self.handle(queue).await?;
        check_receipt_handle(&handle, receipt_handle.as_str())?;
        self.client
            .request(receipt_handle, kind.into())
            .await
            .map_err(|e| unavailable("acknowledging a message", &e))?;
        Ok(())
    }

    /// Deletes messages: one `+ACK` published to each receipt handle's ack subject, then
    /// one flush for them all. The server does not answer a plain ack, so a batch costs
    /// no round trip per message (the double ack's reply would, and it buys nothing here:
    /// an ack the server never applies makes the message visible again after its
    /// visibility timeout, the at-least-once SQS promises anyway).
    async fn ack_all(
        &self,
        queue: &str,
        receipt_handles: Vec<String>,
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        connected(&self.client)?;
        let handle = self.handle(queue).await?;
        let mut results = Vec::with_capacity(receipt_handles.len());
        for receipt_handle in receipt_handles {
            if let Err(e) = check_receipt_handle(&handle, &receipt_handle) {
                results.push(Err(e));
                continue;
            }
            self.client
                .publish(receipt_handle, AckKind::Ack.into())
                .await
                .map_err(|e| unavailable("acknowledging a message", &e))?;
            results.push(Ok(()));
        }
        match tokio::time::timeout(crate::REQUEST_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => Ok(results),
            Ok(Err(e)) => Err(unavailable("acknowledging messages", &e)),
            Err(_) => Err(QueueError::Unavailable {
                message: "acknowledging messages through NATS JetStream: timed out".to_owned(),
            }),
        }
    }

    async fn stats(&self, queue: String) -> Result<QueueStats, QueueError> {
        let handle = self.handle(&queue).await?;
        let info = handle
            .consumer
            .get_info()
            .await
            .map_err(|e| unavailable("reading a queue's consumer", &e))?;
        let stream = self
            .jetstream
            .get_stream(&handle.stream)
            .await
            .map_err(|e| unavailable("reading a queue's stream", &e))?;
        let state = &stream.cached_info().state;
        let oldest_age = (state.messages > 0)
            .then(|| {
                SystemTime::now()
                    .duration_since(SystemTime::from(state.first_timestamp))
                    .ok()
            })
            .flatten();
        Ok(QueueStats {
            // Delayed messages are not told apart from visible ones until a receive.
            visible: info.num_pending,
            in_flight: info.num_ack_pending as u64,
            delayed: 0,
            oldest_age,
        })
    }

    async fn names(&self) -> Result<Vec<String>, QueueError> {
        let prefix = self.stream_prefix();
        let mut names = self.jetstream.stream_names();
        let mut queues = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|e| unavailable("listing queues", &e))?;
            if let Some(queue) = name.strip_prefix(&prefix).and_then(unescape) {
                queues.push(queue);
            }
        }
        queues.sort();
        Ok(queues)
    }

    async fn purge(&self, queue: String) -> Result<u64, QueueError> {
        let handle = self.handle(&queue).await?;
        let stream = self
            .jetstream
            .get_stream(&handle.stream)
            .await
            .map_err(|e| unavailable("purging a queue", &e))?;
        let purged = stream
            .purge()
            .await
            .map_err(|e| unavailable("purging a queue", &e))?;
        Ok(purged.purged)
    }

    async fn delete(&self, queue: String) -> Result<(), QueueError> {
        self.forget(&queue);
        match self.jetstream.delete_stream(self.stream_name(&queue)).await {
            Ok(_) => Ok(()),
            Err(e) if stream_missing(e.kind()) => Err(QueueError::UnknownQueue { queue }),
            Err(e) => Err(unavailable("deleting a queue", &e)),
        }
    }
}

impl QueueStore for NatsQueues {
    fn ensure_queue(&self, spec: QueueSpec) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(self.ensure(spec))
    }

    fn queue(&self, name: String) -> BoxFuture<'_, Result<Option<QueueSpec>, QueueError>> {
        Box::pin(async move {
            match self.handle(&name).await {
                Ok(handle) => Ok(Some(handle.spec.clone())),
                Err(QueueError::UnknownQueue { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn list_queues(&self) -> BoxFuture<'_, Result<Vec<String>, QueueError>> {
        Box::pin(self.names())
    }

    fn queue_stats(&self, name: String) -> BoxFuture<'_, Result<QueueStats, QueueError>> {
        Box::pin(self.stats(name))
    }

    fn send_many(
        &self,
        sends: Vec<(String, NewMessage)>,
    ) -> BoxFuture<'_, Result<Vec<SentMessage>, QueueError>> {
        Box::pin(async move {
            // All or none as far as checks go: a message the queue refuses fails the whole
            // call before anything is published. (A publish that fails part way leaves the
            // ones before it sent; JetStream has no transaction across streams.)
            let mut checks = Vec::with_capacity(sends.len());
            for (queue, message) in &sends {
                let handle = self.handle(queue).await?;
                checks.push(check_message(&handle.spec, message));
            }
            if let Some(e) = checks.into_iter().find_map(Result::err) {
                return Err(e);
            }
            self.send(sends, None).await?.into_iter().collect()
        })
    }

    fn send_once(
        &self,
        queue: String,
        message: NewMessage,
        key: String,
    ) -> BoxFuture<'_, Result<SentMessage, QueueError>> {
        Box::pin(async move {
            let mut sent = self.send(vec![(queue, message)], Some(&key)).await?;
            sent.pop().unwrap_or_else(|| {
                Err(QueueError::Backend {
                    message: "the queue answered no result for the message sent".to_owned(),
                })
            })
        })
    }

    fn send_entries(
        &self,
        queue: String,
        messages: Vec<NewMessage>,
    ) -> BoxFuture<'_, Result<Vec<Result<SentMessage, QueueError>>, QueueError>> {
        Box::pin(async move {
            if messages.len() > MAX_MESSAGE_BATCH {
                return Err(QueueError::InvalidParameter {
                    reason: format!(
                        "a batch holds at most {MAX_MESSAGE_BATCH} messages, not {}",
                        messages.len()
                    ),
                });
            }
            let sends = messages.into_iter().map(|m| (queue.clone(), m)).collect();
            self.send(sends, None).await
        })
    }

    fn receive_messages(
        &self,
        queue: String,
        max: usize,
        visibility_timeout: Option<Duration>,
    ) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>> {
        Box::pin(self.receive(queue, max, visibility_timeout))
    }

    fn delete_message(
        &self,
        queue: String,
        receipt_handle: String,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let mut results = self.ack_all(&queue, vec![receipt_handle]).await?;
            results.pop().unwrap_or(Ok(()))
        })
    }

    fn delete_batch(
        &self,
        queue: String,
        receipt_handles: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Result<(), QueueError>>, QueueError>> {
        Box::pin(async move { self.ack_all(&queue, receipt_handles).await })
    }

    fn change_visibility(
        &self,
        queue: String,
        receipt_handle: String,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            check_visibility(timeout)?;
            let delay = (!timeout.is_zero()).then_some(timeout);
            self.acknowledge(&queue, receipt_handle, AckKind::Nak(delay))
                .await
        })
    }

    fn purge_queue(&self, queue: String) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(self.purge(queue))
    }

    fn delete_queue(&self, queue: String) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(self.delete(queue))
    }
}

async fn nak(message: &jetstream::Message, delay: Option<Duration>) -> Result<(), QueueError> {
    message
        .ack_with(AckKind::Nak(delay))
        .await
        .map_err(|e| unavailable("holding a message back", &*e))
}

fn stream_missing(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Only an ack subject of this queue's consumer: a receipt handle is client input, and
/// must not publish anywhere else.
fn check_receipt_handle(handle: &Handle, receipt_handle: &str) -> Result<(), QueueError> {
    let prefix = format!("$JS.ACK.{}.{CONSUMER}.", handle.stream);
    if !receipt_handle.starts_with(&prefix)
        || receipt_handle.len() > 512
        || receipt_handle
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'*' || b == b'>')
    {
        return Err(QueueError::InvalidReceiptHandle {
            queue: handle.spec.name.clone(),
            receipt_handle: receipt_handle.to_owned(),
        });
    }
    Ok(())
}

/// A failure of NATS: `Unavailable` (retry shortly) when the server did not answer in
/// time or is not there, `Backend` when it answered with an error. async-nats reports
/// these through a different error type per call, so they are told apart by their text.
fn unavailable(what: &str, e: &dyn std::error::Error) -> QueueError {
    let message = format!("{what} through NATS JetStream: {}", error_chain(e));
    let lower = message.to_ascii_lowercase();
    if [
        "timed out",
        "no responders",
        "disconnected",
        "connection",
        "broken pipe",
    ]
    .iter()
    .any(|sign| lower.contains(sign))
    {
        return QueueError::Unavailable { message };
    }
    QueueError::Backend { message }
}

/// Fails at once while the client is not connected, so a send writes nothing half-way
/// (async-nats would buffer it until it reconnects, or until the ack's timeout).
fn connected(client: &async_nats::Client) -> Result<(), QueueError> {
    match client.connection_state() {
        async_nats::connection::State::Connected => Ok(()),
        state => Err(QueueError::Unavailable {
            message: format!("NATS is {state}; nimbus reconnects by itself"),
        }),
    }
}

/// A name as a stream-name and subject token: letters, digits and `_` (and `-` when
/// `dash`) kept, any other byte as `=XX`.
pub(crate) fn escape(name: &str, dash: bool) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || (dash && b == b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

pub(crate) fn unescape(token: &str) -> Option<String> {
    let mut out = Vec::with_capacity(token.len());
    let mut bytes = token.bytes();
    while let Some(b) = bytes.next() {
        if b == b'=' {
            let hex: String = [bytes.next()?, bytes.next()?]
                .iter()
                .map(|b| char::from(*b))
                .collect();
            out.push(u8::from_str_radix(&hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// A queue's declaration as its stream's description, so every node reads the same one.
fn describe_spec(spec: &QueueSpec) -> String {
    let mut object = serde_json::json!({
        "nimbus": 1,
        "visibility_timeout_ms": spec.visibility_timeout.as_millis() as u64,
        "delay_ms": spec.delay.as_millis() as u64,
        "retention_ms": spec.retention.as_millis() as u64,
        "content_based_deduplication": spec.content_based_deduplication,
    });
    if let Some(redrive) = &spec.redrive {
        object["dead_letter_queue"] = redrive.dead_letter_queue.clone().into();
        object["max_receive_count"] = redrive.max_receive_count.into();
    }
    object.to_string()
}

fn parse_spec(name: &str, text: &str) -> Option<QueueSpec> {
    let object: serde_json::Value = serde_json::from_str(text).ok()?;
    let millis = |key: &str| object.get(key)?.as_u64().map(Duration::from_millis);
    let redrive = match (
        object.get("dead_letter_queue").and_then(|v| v.as_str()),
        object.get("max_receive_count").and_then(|v| v.as_u64()),
    ) {
        (Some(queue), Some(count)) => Some(Redrive {
            dead_letter_queue: queue.to_owned(),
            max_receive_count: u32::try_from(count).ok()?,
        }),
        _ => None,
    };
    let mut spec = QueueSpec::with_defaults(name);
    spec.visibility_timeout = millis("visibility_timeout_ms")?;
    spec.delay = millis("delay_ms")?;
    spec.retention = millis("retention_ms")?;
    spec.content_based_deduplication = object.get("content_based_deduplication")?.as_bool()?;
    spec.redrive = redrive;
    Some(spec)
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A FIFO sequence number: the stream sequence, zero-padded so text order is numeric order.
fn sequence_number(sequence: u64) -> String {
    format!("{sequence:020}")
}

fn md5_hex(data: &[u8]) -> String {
    md5::Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
