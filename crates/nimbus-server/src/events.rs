//! The event machinery: queues, topics, buckets, KV and schedules on the store, and the
//! triggers that turn them into invocations.
//!
//! Every event that must not be lost goes through a durable queue before any function
//! sees it: an asynchronous invocation, a topic's fan-out and an object notification are
//! committed to a queue in the same transaction as what caused them, and consumed from
//! there with SQS semantics (at least once).

pub(crate) mod filter;
mod shapes;
mod streams;
mod triggers;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nimbus_core::events::{
    AppResources, Destination, EventBridgeEvent, EventSource, FilterScope, QueueSpec, S3Event,
    SnsEvent, SubscriptionEndpoint,
};
use nimbus_core::queues::{QueueError, QueueStore};
use nimbus_core::streams::{StreamStore, table_stream};
use nimbus_core::tables::TableStore;
use nimbus_store::{
    MessageAttribute, NewMessage, ObjectMeta, SentMessage, Store, StoreError, WriteCondition,
};
use tokio::sync::Notify;

use crate::EventsConfig;
use crate::Queues;
use crate::functions::Functions;
use crate::telemetry::TraceContext;

pub(crate) use streams::dynamodb_record;
pub(crate) use triggers::{message_trace, stop_triggers};

/// Message attribute carrying the X-Ray trace header, as SQS's `AWSTraceHeader`.
pub(crate) const TRACE_ATTRIBUTE: &str = "AWSTraceHeader";
/// Message attributes nimbus uses on its internal queues.
const REQUEST_ID_ATTRIBUTE: &str = "nimbus.requestId";
const TRIGGER_ATTRIBUTE: &str = "nimbus.trigger";

pub(crate) struct Events {
    pub(crate) functions: Arc<Functions>,
    pub(crate) store: Store,
    /// Queues, through the storage-neutral trait (the store implements it).
    pub(crate) queues: Arc<dyn QueueStore>,
    /// Whether `queues` is outside the store (cluster mode), so what the store commits
    /// cannot carry queue messages in its transaction.
    shared_queues: bool,
    /// The KV namespaces, on the embedded store or the cluster's.
    pub(crate) kv: Arc<dyn nimbus_core::kv::KvStore>,
    /// Tables, through the storage-neutral trait (the store implements it).
    pub(crate) tables: Arc<dyn TableStore>,
    /// Streams and their consumers' checkpoints, through the storage-neutral trait.
    pub(crate) streams: Arc<dyn StreamStore>,
    /// Wakes a stream's consumers when records are appended; streams created at run time
    /// get theirs on first use.
    stream_wakers: std::sync::Mutex<HashMap<String, Arc<Notify>>>,
    pub(crate) resources: AppResources,
    pub(crate) region: String,
    pub(crate) async_retry_delay: Duration,
    /// Wakes a queue's consumers when a message is sent to it.
    wakers: HashMap<String, Arc<Notify>>,
    /// Function subscribers of each topic.
    sns_subscribers: HashMap<String, Vec<(usize, SnsEvent)>>,
    /// Function notifications of each bucket.
    s3_notifications: HashMap<String, Vec<(usize, S3Event)>>,
    /// The functions' EventBridge rules.
    event_rules: Vec<(usize, EventBridgeEvent)>,
}

/// What happens to an object.
pub(crate) enum ObjectChange {
    /// A put (`ObjectCreated:Put`) or copy (`ObjectCreated:Copy`).
    Put {
        data: Vec<u8>,
        content_type: Option<String>,
        /// User metadata, a JSON object.
        metadata: Option<String>,
        copy: bool,
        /// What must hold of the current object (S3's conditional writes).
        condition: WriteCondition,
    },
    /// Joining a multipart upload's parts (`ObjectCreated:CompleteMultipartUpload`).
    Complete {
        upload: String,
        parts: Vec<(u32, String)>,
    },
    Delete {
        condition: WriteCondition,
    },
}

/// A message to publish to a topic.
pub(crate) struct Publish {
    /// The message; with `MessageStructure: json`, its `default`.
    pub(crate) message: String,
    /// With `MessageStructure: json`, the message for each protocol that has its own
    /// (`sqs`, `lambda`, `http`, `https`); empty otherwise.
    pub(crate) protocol_messages: BTreeMap<String, String>,
    /// A FIFO topic's message group, which its FIFO queues keep in order.
    pub(crate) group_id: Option<String>,
    /// A FIFO topic's deduplication id, passed on to its FIFO queues.
    pub(crate) deduplication_id: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) attributes: BTreeMap<String, MessageAttribute>,
}

impl Events {
    /// Creates every declared queue, bucket and table (idempotently) and the internal queues.
    pub(crate) async fn start(
        functions: Arc<Functions>,
        cfg: EventsConfig,
    ) -> Result<Events, StoreError> {
        let mut queues: Vec<QueueSpec> = cfg.resources.queues.clone();
        for function in &functions.list {
            // Asynchronous events wait here; if nimbus dies mid-invocation the event comes
            // back after the function's timeout and is invoked again.
            let mut spec = QueueSpec::with_defaults(&async_queue(&function.spec.name));
            spec.visibility_timeout = function.spec.timeout + Duration::from_secs(10);
            spec.retention =
                function.spec.async_config.maximum_event_age + Duration::from_secs(3600);
            queues.push(spec);
        }
        for machine in &cfg.resources.state_machines {
            if !machine.schedules.is_empty() {
                // A schedule's fires wait here until an execution is started for them.
                let mut spec = QueueSpec::with_defaults(&start_queue(&machine.name));
                spec.visibility_timeout = Duration::from_secs(30);
                queues.push(spec);
            }
        }
        for topic in &cfg.resources.topics {
            for (idx, subscription) in topic.subscriptions.iter().enumerate() {
                if let SubscriptionEndpoint::Http(_) = subscription.endpoint {
                    let mut spec = QueueSpec::with_defaults(&http_queue(&topic.name, idx));
                    spec.visibility_timeout = Duration::from_secs(5);
                    queues.push(spec);
                }
            }
        }
        let store = cfg.store.clone();
        let buckets = cfg.resources.buckets.clone();
        let tables = cfg.resources.tables.clone();
        let streams = cfg.resources.streams.clone();
        let (queue_store, shared_queues): (Arc<dyn QueueStore>, bool) = match &cfg.queues {
            Queues::Embedded => (Arc::new(cfg.store.clone()), false),
            Queues::Shared(queues) => (queues.clone(), true),
        };
        for queue in &queues {
            queue_store.ensure_queue(queue.clone()).await?;
        }
        blocking(&store, move |store| {
            for bucket in &buckets {
                store.ensure_bucket(bucket)?;
            }
            for table in &tables {
                TableStore::ensure_table(store, table).map_err(|e| StoreError::InvalidValue {
                    what: "table",
                    reason: format!("creating table {}: {e}", table.name),
                })?;
            }
            for stream in &streams {
                StreamStore::ensure_stream(store, stream).map_err(|e| {
                    StoreError::InvalidValue {
                        what: "stream",
                        reason: format!("creating stream {}: {e}", stream.name),
                    }
                })?;
            }
            Ok(())
        })
        .await?;
        let wakers = queues
            .iter()
            .map(|q| (q.name.clone(), Arc::new(Notify::new())))
            .collect();
        let mut sns_subscribers: HashMap<String, Vec<(usize, SnsEvent)>> = HashMap::new();
        let mut s3_notifications: HashMap<String, Vec<(usize, S3Event)>> = HashMap::new();
        let mut event_rules = Vec::new();
        for (idx, function) in functions.list.iter().enumerate() {
            for event in &function.spec.events {
                match event {
                    EventSource::Sns(sns) => sns_subscribers
                        .entry(sns.topic.clone())
                        .or_default()
                        .push((idx, sns.clone())),
                    EventSource::S3(s3) => s3_notifications
                        .entry(s3.bucket.clone())
                        .or_default()
                        .push((idx, s3.clone())),
                    EventSource::EventBridge(rule) => event_rules.push((idx, rule.clone())),
                    EventSource::Sqs(_) | EventSource::Schedule(_) | EventSource::Stream(_) => {}
                }
            }
        }
        Ok(Events {
            functions,
            queues: queue_store,
            shared_queues,
            kv: match cfg.kv {
                Some(kv) => kv,
                None => Arc::new(cfg.store.clone()),
            },
            tables: Arc::new(cfg.store.clone()),
            streams: Arc::new(cfg.store.clone()),
            stream_wakers: std::sync::Mutex::new(HashMap::new()),
            store: cfg.store,
            resources: cfg.resources,
            region: cfg.region,
            async_retry_delay: cfg.async_retry_delay,
            wakers,
            sns_subscribers,
            s3_notifications,
            event_rules,
        })
    }

    /// Runs a point read that never writes (`Store::kv_read`) on the calling worker: it takes
    /// microseconds from the WAL and never waits for a writer, so the hop to the blocking
    /// pool and back would cost more than the read. Anything that writes or scans goes
    /// through `store`.
    pub(crate) fn read_now<T>(
        &self,
        op: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        op(&self.store)
    }

    /// Runs `op` on the store off the async workers.
    pub(crate) async fn store<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        blocking(&self.store, op).await
    }

    pub(crate) fn waker(&self, queue: &str) -> Option<Arc<Notify>> {
        self.wakers.get(queue).cloned()
    }

    pub(crate) fn wake(&self, queue: &str) {
        if let Some(waker) = self.wakers.get(queue) {
            waker.notify_waiters();
        }
    }

    /// The waker of a stream's consumers.
    pub(crate) fn stream_waker(&self, stream: &str) -> Arc<Notify> {
        let mut wakers = self
            .stream_wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        wakers.entry(stream.to_owned()).or_default().clone()
    }

    /// Tells a stream's consumers that records were appended.
    pub(crate) fn stream_appended(&self, stream: &str) {
        let wakers = self
            .stream_wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(waker) = wakers.get(stream) {
            waker.notify_waiters();
        }
    }

    /// Tells the consumers of these tables' change streams that items were written.
    pub(crate) fn tables_written<'t>(&self, tables: impl IntoIterator<Item = &'t str>) {
        for table in tables {
            self.stream_appended(&table_stream(table));
        }
    }

    /// Sends one message to a queue.
    pub(crate) async fn send(
        &self,
        queue: &str,
        message: NewMessage,
    ) -> Result<SentMessage, QueueError> {
        let sent = self.queues.send_message(queue.to_owned(), message).await?;
        self.wake(queue);
        Ok(sent)
    }

    /// Sends up to 10 messages to a queue in one transaction, one result per message (see
    /// `Store::send_entries`).
    pub(crate) async fn send_entries(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Result<SentMessage, QueueError>>, QueueError> {
        let results = self.queues.send_entries(queue.to_owned(), messages).await?;
        if results.iter().any(Result::is_ok) {
            self.wake(queue);
        }
        Ok(results)
    }

    /// Queues an event for asynchronous invocation of `function` (Lambda's `Event`
    /// invocation type); returns the message id once it is durable.
    pub(crate) async fn invoke_async(
        &self,
        function: &str,
        payload: String,
        trace: &TraceContext,
        trigger: &str,
    ) -> Result<SentMessage, StoreError> {
        let message = internal_message(payload, trace, trigger);
        Ok(self.send(&async_queue(function), message).await?)
    }

    /// Whether EventBridge bus `bus` exists: `default`, or one the app declares or a rule
    /// names.
    pub(crate) fn has_event_bus(&self, bus: &str) -> bool {
        bus == "default" || self.resources.event_buses.iter().any(|b| b == bus)
    }

    /// Puts events on their buses: each matching rule's function is invoked asynchronously
    /// with the event in EventBridge's shape (or its `input` / `inputPath`), all deliveries
    /// committed together. Answers each event's id.
    pub(crate) async fn put_events(
        &self,
        entries: Vec<PutEvent>,
        trace: &TraceContext,
    ) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::with_capacity(entries.len());
        let mut sends = Vec::new();
        for entry in entries {
            let id = uuid::Uuid::new_v4().to_string();
            let event = serde_json::json!({
                "version": "0",
                "id": id,
                "detail-type": entry.detail_type,
                "source": entry.source,
                "account": nimbus_core::ACCOUNT_ID,
                "time": entry.time.unwrap_or_else(|| {
                    // EventBridge's `time` has whole seconds.
                    let now = nimbus_core::time::rfc3339_millis(SystemTime::now());
                    format!("{}Z", now.get(..19).unwrap_or(&now))
                }),
                "region": self.region,
                "resources": entry.resources,
                "detail": entry.detail,
            });
            for (idx, rule) in &self.event_rules {
                if rule.bus != entry.bus
                    || !rule
                        .pattern
                        .as_ref()
                        .is_none_or(|pattern| filter::matches_body(pattern, &event))
                {
                    continue;
                }
                let payload = match (&rule.input, &rule.input_path) {
                    (Some(input), _) => input.clone(),
                    (None, Some(path)) => {
                        json_path(&event, path).unwrap_or(serde_json::Value::Null)
                    }
                    (None, None) => event.clone(),
                };
                let function = &self.functions.list[*idx].spec.name;
                sends.push((
                    async_queue(function),
                    internal_message(payload.to_string(), trace, "eventbridge"),
                ));
            }
            ids.push(id);
        }
        let queues: Vec<String> = sends.iter().map(|(q, _)| q.clone()).collect();
        if !sends.is_empty() {
            self.queues.send_many(sends).await?;
        }
        for queue in &queues {
            self.wake(queue);
        }
        Ok(ids)
    }

    /// Publishes to a topic: one durable delivery per matching subscriber, committed
    /// together.
    pub(crate) async fn publish(
        &self,
        topic: &str,
        publish: Publish,
        trace: &TraceContext,
    ) -> Result<String, StoreError> {
        let message_id = uuid::Uuid::new_v4().to_string();
        let topic_arn = format!("arn:aws:sns:{}:123456789012:{topic}", self.region);
        let envelope = shapes::sns_envelope(&message_id, &topic_arn, &publish);
        // `MessageStructure: json` gives some protocols a message of their own.
        let message_for = |protocol: &str| {
            publish
                .protocol_messages
                .get(protocol)
                .unwrap_or(&publish.message)
                .clone()
        };
        let envelope_for = |protocol: &str| match publish.protocol_messages.get(protocol) {
            Some(message) => {
                let mut own = envelope.clone();
                own["Message"] = serde_json::Value::String(message.clone());
                own
            }
            None => envelope.clone(),
        };
        let body_json = serde_json::from_str::<serde_json::Value>(&publish.message).ok();
        let attributes: BTreeMap<String, filter::Attribute<'_>> = publish
            .attributes
            .iter()
            .map(|(k, a)| {
                (
                    k.clone(),
                    filter::Attribute {
                        data_type: &a.data_type,
                        value: &a.value,
                    },
                )
            })
            .collect();
        let accepts = |policy: &Option<serde_json::Value>, scope: FilterScope| match (policy, scope)
        {
            (None, _) => true,
            (Some(policy), FilterScope::MessageAttributes) => {
                filter::matches_attributes(policy, &attributes)
            }
            (Some(policy), FilterScope::MessageBody) => body_json
                .as_ref()
                .is_some_and(|body| filter::matches_body(policy, body)),
        };
        let mut sends = Vec::new();
        for (idx, sns) in self.sns_subscribers.get(topic).into_iter().flatten() {
            if !accepts(&sns.filter_policy, sns.filter_scope) {
                continue;
            }
            let function = &self.functions.list[*idx].spec.name;
            let subscription_arn = format!("{topic_arn}:{function}");
            let event = shapes::sns_event(&envelope_for("lambda"), &subscription_arn);
            sends.push((
                async_queue(function),
                internal_message(event.to_string(), trace, "sns"),
            ));
        }
        if let Some(spec) = self.resources.topics.iter().find(|t| t.name == topic) {
            for (idx, subscription) in spec.subscriptions.iter().enumerate() {
                if !accepts(&subscription.filter_policy, subscription.filter_scope) {
                    continue;
                }
                let (queue, body, attributes) = match &subscription.endpoint {
                    SubscriptionEndpoint::Queue(queue) if subscription.raw_message_delivery => (
                        queue.clone(),
                        message_for("sqs"),
                        publish.attributes.clone(),
                    ),
                    SubscriptionEndpoint::Queue(queue) => (
                        queue.clone(),
                        envelope_for("sqs").to_string(),
                        BTreeMap::new(),
                    ),
                    SubscriptionEndpoint::Http(url) => (
                        http_queue(topic, idx),
                        envelope_for(if url.starts_with("https:") {
                            "https"
                        } else {
                            "http"
                        })
                        .to_string(),
                        BTreeMap::new(),
                    ),
                };
                let mut message = plain_message(body);
                message.attributes = attributes;
                message.attributes.insert(
                    TRACE_ATTRIBUTE.to_owned(),
                    string_attribute(&trace.propagation_header()),
                );
                sends.push((queue, message));
            }
        }
        // Subscriptions made at run time (SNS's Subscribe through the AWS endpoint).
        let topic_name = topic.to_owned();
        let runtime = self
            .store(move |store| store.subscriptions(Some(&topic_name)))
            .await?;
        for subscription in runtime {
            let filter_policy = subscription
                .filter_policy
                .as_deref()
                .and_then(|policy| serde_json::from_str(policy).ok());
            let scope = match subscription.filter_scope.as_str() {
                "MessageBody" => FilterScope::MessageBody,
                _ => FilterScope::MessageAttributes,
            };
            if !accepts(&filter_policy, scope) {
                continue;
            }
            let subscription_arn = format!("{topic_arn}:{}", subscription.id);
            if subscription.protocol == "lambda" {
                let event = shapes::sns_event(&envelope_for("lambda"), &subscription_arn);
                sends.push((
                    async_queue(&subscription.target),
                    internal_message(event.to_string(), trace, "sns"),
                ));
                continue;
            }
            let mut message = if subscription.raw_message_delivery {
                let mut message = plain_message(message_for("sqs"));
                message.attributes = publish.attributes.clone();
                message
            } else {
                plain_message(envelope_for("sqs").to_string())
            };
            message.attributes.insert(
                TRACE_ATTRIBUTE.to_owned(),
                string_attribute(&trace.propagation_header()),
            );
            sends.push((subscription.target, message));
        }
        // A FIFO topic's FIFO queues keep its message groups; without a deduplication id
        // each publish is its own message (its id), unless the queue deduplicates by content.
        for (queue, message) in &mut sends {
            if queue.ends_with(".fifo") {
                message.group_id = publish.group_id.clone();
                message.deduplication_id = publish
                    .deduplication_id
                    .clone()
                    .or_else(|| Some(message_id.clone()));
            }
        }
        let queues: Vec<String> = sends.iter().map(|(q, _)| q.clone()).collect();
        if !sends.is_empty() {
            self.queues.send_many(sends).await?;
        }
        for queue in &queues {
            self.wake(queue);
        }
        Ok(message_id)
    }

    /// Stores an object and, in the same transaction, its `ObjectCreated` notifications.
    pub(crate) async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        content_type: Option<String>,
        trace: &TraceContext,
    ) -> Result<ObjectMeta, StoreError> {
        let change = ObjectChange::Put {
            data,
            content_type,
            metadata: None,
            copy: false,
            condition: WriteCondition::Always,
        };
        self.change_object(bucket, key, change, trace)
            .await
            .map(|meta| meta.expect("a put always has metadata"))
    }

    /// Deletes an object and queues its `ObjectRemoved` notifications with it.
    pub(crate) async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        trace: &TraceContext,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        let change = ObjectChange::Delete {
            condition: WriteCondition::Always,
        };
        self.change_object(bucket, key, change, trace).await
    }

    /// Puts, copies, completes or deletes an object, queueing its notifications with it;
    /// `None` for a delete of no object.
    pub(crate) async fn change_object(
        &self,
        bucket: &str,
        key: &str,
        change: ObjectChange,
        trace: &TraceContext,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        let event_name = match change {
            ObjectChange::Put { copy: false, .. } => "ObjectCreated:Put",
            ObjectChange::Put { copy: true, .. } => "ObjectCreated:Copy",
            ObjectChange::Complete { .. } => "ObjectCreated:CompleteMultipartUpload",
            ObjectChange::Delete { .. } => "ObjectRemoved:Delete",
        };
        let targets = self.s3_targets(bucket, key, event_name);
        let queues: Vec<String> = targets.iter().map(|f| async_queue(f)).collect();
        let (bucket_name, key_name, region, trace) = (
            bucket.to_owned(),
            key.to_owned(),
            self.region.clone(),
            trace.clone(),
        );
        // The records carry the size, ETag and sequencer the store assigns, so they are
        // made inside its transaction.
        let records = move |meta: &ObjectMeta| -> Vec<(String, NewMessage)> {
            let object = event_name
                .starts_with("ObjectCreated:")
                .then_some((meta.size, meta.etag.as_str()));
            let event = shapes::s3_event(
                &region,
                &meta.bucket,
                &meta.key,
                event_name,
                object,
                &meta.sequencer,
            );
            targets
                .iter()
                .map(|function| {
                    (
                        async_queue(function),
                        internal_message(event.to_string(), &trace, "s3"),
                    )
                })
                .collect()
        };
        // With the queues outside the store (cluster mode) the records are sent after the
        // commit; if that fails the caller sees the error and a retried put sends them
        // (at least once).
        let shared_queues = self.shared_queues;
        let after_commit: Arc<std::sync::Mutex<Vec<(String, NewMessage)>>> = Arc::default();
        let stash = after_commit.clone();
        let mut events = move |meta: &ObjectMeta| -> Vec<(String, NewMessage)> {
            let sends = records(meta);
            if !shared_queues {
                return sends;
            }
            stash
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(sends);
            Vec::new()
        };
        // A small put or a delete commits on the calling worker when the store's writer is
        // free (one SQLite commit, tens of microseconds), as small reads are served; when it
        // is busy, or for a large object's file, the change goes to the blocking pool.
        let quick = match &change {
            ObjectChange::Put { data, .. } => data.len() <= nimbus_store::INLINE_MAX,
            ObjectChange::Delete { .. } => true,
            ObjectChange::Complete { .. } => false,
        };
        let tried = if quick {
            let store = self.store.without_waiting();
            match apply_change(&store, &bucket_name, &key_name, &change, &mut events) {
                Err(StoreError::WouldWait) => None,
                res => Some(res),
            }
        } else {
            None
        };
        let meta = match tried {
            Some(res) => res?,
            None => {
                self.store(move |store| {
                    apply_change(store, &bucket_name, &key_name, &change, &mut events)
                })
                .await?
            }
        };
        let sends = std::mem::take(
            &mut *after_commit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !sends.is_empty() {
            self.queues.send_many(sends).await?;
        }
        for queue in &queues {
            self.wake(queue);
        }
        Ok(meta)
    }

    /// The functions notified of `event_name` on this key.
    fn s3_targets(&self, bucket: &str, key: &str, event_name: &str) -> Vec<String> {
        let mut targets = Vec::new();
        for (idx, s3) in self.s3_notifications.get(bucket).into_iter().flatten() {
            let wanted = s3.events.iter().any(|pattern| {
                let pattern = pattern.strip_prefix("s3:").unwrap_or(pattern);
                nimbus_core::events::wildcard_match(pattern, event_name)
            });
            let in_rules = s3.prefix.as_deref().is_none_or(|p| key.starts_with(p))
                && s3.suffix.as_deref().is_none_or(|s| key.ends_with(s));
            if wanted && in_rules {
                targets.push(self.functions.list[*idx].spec.name.clone());
            }
        }
        targets
    }

    /// Sends a destination record (Lambda's `onSuccess`/`onFailure` shape).
    pub(crate) async fn deliver(
        &self,
        destination: &Destination,
        record: serde_json::Value,
        trace: &TraceContext,
    ) -> Result<(), StoreError> {
        match destination {
            Destination::Queue(queue) => {
                self.send(queue, plain_message(record.to_string())).await?;
            }
            Destination::Topic(topic) => {
                let publish = Publish {
                    message: record.to_string(),
                    protocol_messages: BTreeMap::new(),
                    group_id: None,
                    deduplication_id: None,
                    subject: None,
                    attributes: BTreeMap::new(),
                };
                self.publish(topic, publish, trace).await?;
            }
            Destination::Function(function) => {
                self.invoke_async(function, record.to_string(), trace, "event")
                    .await?;
            }
        }
        Ok(())
    }
}

pub(crate) use nimbus_core::events::INTERNAL_QUEUE_PREFIX;

/// The internal queue holding a function's asynchronous events.
pub(crate) fn async_queue(function: &str) -> String {
    format!("{INTERNAL_QUEUE_PREFIX}async--{function}")
}

/// Where a state machine's schedule fires wait for their executions.
pub(crate) fn start_queue(machine: &str) -> String {
    format!("{INTERNAL_QUEUE_PREFIX}sfn--{machine}")
}

fn http_queue(topic: &str, idx: usize) -> String {
    format!("{INTERNAL_QUEUE_PREFIX}http--{topic}--{idx}")
}

pub(crate) fn plain_message(body: String) -> NewMessage {
    NewMessage {
        body,
        delay: None,
        attributes: BTreeMap::new(),
        group_id: None,
        deduplication_id: None,
    }
}

fn string_attribute(value: &str) -> MessageAttribute {
    MessageAttribute {
        data_type: "String".to_owned(),
        value: value.to_owned(),
    }
}

/// A message for an internal queue: the event, plus the request id every retry reuses
/// (as Lambda keeps it across retries), the trace and what triggered it.
/// An event to put on a bus (EventBridge's PutEvents entry).
pub(crate) struct PutEvent {
    pub(crate) bus: String,
    pub(crate) source: String,
    pub(crate) detail_type: String,
    /// The detail, a JSON object.
    pub(crate) detail: serde_json::Value,
    pub(crate) resources: Vec<String>,
    /// The event's time as given (RFC 3339); now when absent.
    pub(crate) time: Option<String>,
}

/// The part of `value` a JSONPath of plain names (`$`, `$.detail`, `$.detail.order`) selects.
fn json_path(value: &serde_json::Value, path: &str) -> Option<serde_json::Value> {
    let rest = path.strip_prefix('$')?;
    let mut current = value;
    for name in rest.split('.').filter(|name| !name.is_empty()) {
        current = current.get(name)?;
    }
    Some(current.clone())
}

fn internal_message(payload: String, trace: &TraceContext, trigger: &str) -> NewMessage {
    let mut message = plain_message(payload);
    message.attributes.insert(
        TRACE_ATTRIBUTE.to_owned(),
        string_attribute(&trace.propagation_header()),
    );
    message.attributes.insert(
        REQUEST_ID_ATTRIBUTE.to_owned(),
        string_attribute(&crate::telemetry::trace::new_request_id()),
    );
    message
        .attributes
        .insert(TRIGGER_ATTRIBUTE.to_owned(), string_attribute(trigger));
    message
}

/// Makes `change` to the object `bucket`/`key` in one commit with the messages `events` makes.
fn apply_change(
    store: &Store,
    bucket: &str,
    key: &str,
    change: &ObjectChange,
    events: nimbus_store::ObjectEvents<'_>,
) -> Result<Option<ObjectMeta>, StoreError> {
    match change {
        ObjectChange::Put {
            data,
            content_type,
            metadata,
            condition,
            ..
        } => store
            .put_object_if(
                bucket,
                key,
                data,
                content_type.as_deref(),
                metadata.as_deref(),
                condition,
                events,
            )
            .map(Some),
        ObjectChange::Complete { upload, parts } => store
            .complete_upload(upload, bucket, key, parts, events)
            .map(Some),
        ObjectChange::Delete { condition } => {
            store.delete_object_if(bucket, key, condition, events)
        }
    }
}

async fn blocking<T: Send + 'static>(
    store: &Store,
    op: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || op(&store)).await {
        Ok(res) => res,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
