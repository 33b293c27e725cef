//! The long-running consumers: SQS event source mappings, asynchronous invocation with
//! retries and destinations, HTTP subscriptions of topics, and schedules.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nimbus_core::Outcome;
use nimbus_core::events::{
    Destination, EventSource, ScheduleEvent, SqsEvent, SubscriptionEndpoint,
};
use nimbus_core::tables::{
    AttributeValue, Item, ItemWrite, KeyQuery, Number, SortRange, TableError, TableStore,
    WriteAction, WriteOrigin,
};
use nimbus_store::{ReceivedMessage, ScheduleFire, StoreError};
use tokio::task::JoinSet;

use super::shapes::{self, DestinationRecord};
use super::{
    Events, REQUEST_ID_ATTRIBUTE, TRACE_ATTRIBUTE, TRIGGER_ATTRIBUTE, async_queue, http_queue,
};
use crate::Shutdown;
use crate::functions::InvokeRequest;
use crate::telemetry::{TraceContext, Trigger};

/// How often an idle consumer looks again without being woken: delayed messages and
/// expired visibility timeouts become receivable without a send to announce them.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// A schedule's function is pre-warmed this long before the fire, on top of the time its
/// executor says a start takes, and held this long after it: the fire's invocation goes
/// through the function's asynchronous queue first.
const SCHEDULE_PREWARM_MARGIN: Duration = Duration::from_secs(1);
const SCHEDULE_PREWARM_GRACE: Duration = Duration::from_secs(10);
/// How long past its batching window an instance started for a waiting batch is kept, so
/// the batch's invocation (after a slow receive, say) still finds it.
const BACKLOG_PREWARM_GRACE: Duration = Duration::from_secs(5);

impl Events {
    /// Starts every consumer; they stop at `shutdown`.
    pub(crate) fn spawn_triggers(self: Arc<Self>, shutdown: Shutdown) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        for (idx, function) in self.functions.list.iter().enumerate() {
            let reserved = function.spec.reserved_concurrency.map(|n| n as usize);
            for event in &function.spec.events {
                match event {
                    EventSource::Sqs(sqs) if sqs.enabled => {
                        // Lambda scales SQS pollers with the backlog; a fixed set of
                        // consumers bounded by maximumConcurrency does the same job here.
                        let n_consumers = sqs
                            .maximum_concurrency
                            .map(|n| n as usize)
                            .or(reserved)
                            .unwrap_or(5)
                            .clamp(1, 50);
                        for _ in 0..n_consumers {
                            tasks.spawn(self.clone().consume_sqs(
                                idx,
                                sqs.clone(),
                                shutdown.clone(),
                            ));
                        }
                    }
                    EventSource::Stream(stream) if stream.enabled => {
                        tasks.spawn(self.clone().consume_stream(
                            idx,
                            stream.clone(),
                            shutdown.clone(),
                        ));
                    }
                    EventSource::Schedule(schedule) if schedule.enabled => {
                        tasks.spawn(self.clone().run_schedule(
                            async_queue(&function.spec.name),
                            schedule.clone(),
                            Some(function.executor.clone()),
                            shutdown.clone(),
                        ));
                    }
                    _ => {}
                }
            }
            let n_async = reserved.unwrap_or(4).clamp(1, 16);
            for _ in 0..n_async {
                tasks.spawn(self.clone().consume_async(idx, shutdown.clone()));
            }
        }
        tasks.spawn(self.clone().sweep(shutdown.clone()));
        for topic in &self.resources.topics {
            for (idx, subscription) in topic.subscriptions.iter().enumerate() {
                if let SubscriptionEndpoint::Http(url) = &subscription.endpoint {
                    tasks.spawn(self.clone().deliver_http(
                        http_queue(&topic.name, idx),
                        url.clone(),
                        shutdown.clone(),
                    ));
                }
            }
        }
        tasks
    }

    /// Removes expired KV keys and messages past their retention once a minute; reads skip
    /// them meanwhile, so this only frees space.
    async fn sweep(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
                () = shutdown.wait() => return,
            }
            let res = self
                .store(|store| Ok((store.kv_sweep_expired()?, store.sweep_expired_messages()?)))
                .await;
            if let Err(e) = res {
                tracing::warn!("sweeping expired keys and messages: {e}");
            }
            self.expire_table_items().await;
            let streams = self.streams.clone();
            let now_us = nimbus_core::time::unix_micros(SystemTime::now());
            match tokio::task::spawn_blocking(move || streams.trim(now_us)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("trimming stream records past retention: {e}"),
                Err(e) => tracing::warn!("trimming stream records past retention: {e}"),
            }
        }
    }

    /// Deletes the items of tables with a TTL attribute whose expiry time has passed, as
    /// DynamoDB's TTL does (within minutes; reads until then still see them).
    async fn expire_table_items(&self) {
        let tables = self.tables.clone();
        let res = tokio::task::spawn_blocking(move || {
            let now = SystemTime::now();
            // Every table with a TTL attribute: those of the manifest, and those made or
            // changed at run time (CreateTable, UpdateTimeToLive).
            let mut n_deleted = 0;
            let mut expired_in = Vec::new();
            for table in tables.list_tables()? {
                let Some(attribute) = tables.describe_table(&table)?.spec.ttl_attribute else {
                    continue;
                };
                let n = expire_items(&*tables, &table, &attribute, now)?;
                if n > 0 {
                    n_deleted += n;
                    expired_in.push(table);
                }
            }
            Ok::<_, TableError>((n_deleted, expired_in))
        })
        .await;
        match res {
            Ok(Ok((0, _))) => {}
            Ok(Ok((n_deleted, expired_in))) => {
                tracing::debug!(n_deleted, "deleted items past their TTL");
                self.tables_written(expired_in.iter().map(String::as_str));
            }
            Ok(Err(e)) => tracing::warn!("deleting items past their TTL: {e:?}"),
            Err(e) => tracing::warn!("deleting items past their TTL: {e}"),
        }
    }

    /// Receives up to `max` messages, waiting (woken by sends) while the queue is empty.
    /// `None` means shutdown. While a batch waits for its `window` to fill, `warm` (the
    /// consumer's function) is asked for an instance, so the batch's invocation finds one
    /// (backlog-aware pre-warming, issue 18).
    pub(crate) async fn next_batch(
        &self,
        queue: &str,
        max: usize,
        window: Duration,
        warm: Option<&dyn nimbus_core::Executor>,
        shutdown: &mut Shutdown,
    ) -> Option<Vec<ReceivedMessage>> {
        let waker = self.waker(queue);
        loop {
            // Register for a wake-up before looking, so a send between the look and the
            // wait is not missed.
            let notified = waker.as_ref().map(|w| w.clone().notified_owned());
            let mut notified = notified.map(Box::pin);
            if let Some(notified) = notified.as_mut() {
                notified.as_mut().enable();
            }
            let mut batch = match self
                .queues
                .receive_messages(queue.to_owned(), max, None)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(queue, "receiving messages: {e}");
                    Vec::new()
                }
            };
            if !batch.is_empty() && batch.len() < max && !window.is_zero() {
                // maximumBatchingWindow: give the batch a moment to fill, and its function
                // that moment to start an instance for it.
                if let Some(executor) = warm {
                    executor.prewarm(
                        nimbus_core::prewarm::WarmReason::Backlog,
                        window + BACKLOG_PREWARM_GRACE,
                    );
                }
                tokio::select! {
                    () = tokio::time::sleep(window) => {}
                    () = shutdown.wait() => {}
                }
                let more = max - batch.len();
                if let Ok(extra) = self
                    .queues
                    .receive_messages(queue.to_owned(), more, None)
                    .await
                {
                    batch.extend(extra);
                }
            }
            if !batch.is_empty() {
                return Some(batch);
            }
            tokio::select! {
                () = async {
                    match notified {
                        Some(notified) => notified.await,
                        None => std::future::pending().await,
                    }
                } => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
                () = shutdown.wait() => return None,
            }
        }
    }

    /// An SQS event source mapping: batches of messages to the function; a successful
    /// invocation deletes its batch (or all but the reported failures).
    async fn consume_sqs(self: Arc<Self>, idx: usize, sqs: SqsEvent, mut shutdown: Shutdown) {
        let function = &self.functions.list[idx];
        loop {
            let Some(batch) = self
                .next_batch(
                    &sqs.queue,
                    sqs.batch_size as usize,
                    sqs.maximum_batching_window,
                    Some(&*function.executor),
                    &mut shutdown,
                )
                .await
            else {
                return;
            };
            let records: Vec<serde_json::Value> = batch
                .iter()
                .map(|m| shapes::sqs_record(m, &sqs.queue, &self.region))
                .collect();
            let payload = serde_json::json!({ "Records": records })
                .to_string()
                .into_bytes();
            let trace = message_trace(&batch[0]);
            let res = function
                .invoke(InvokeRequest {
                    request_id: crate::telemetry::trace::new_request_id(),
                    payload,
                    trace,
                    trigger: Trigger::Sqs,
                })
                .await;
            let to_delete: Vec<String> = match res {
                Ok(report) => match &report.outcome {
                    Outcome::Ok(response) if sqs.report_batch_item_failures => {
                        match failed_items(response) {
                            Some(failed) => batch
                                .iter()
                                .filter(|m| !failed.contains(&m.message_id))
                                .map(|m| m.receipt_handle.clone())
                                .collect(),
                            // A malformed response fails the whole batch, as on Lambda.
                            None => Vec::new(),
                        }
                    }
                    Outcome::Ok(_) => batch.iter().map(|m| m.receipt_handle.clone()).collect(),
                    // The batch becomes visible again after the visibility timeout.
                    _ => Vec::new(),
                },
                Err(_) => {
                    // Throttled or shutting down: give the messages back soon and back off.
                    for message in &batch {
                        let handle = message.receipt_handle.clone();
                        let _ = self
                            .queues
                            .change_visibility(sqs.queue.clone(), handle, Duration::from_secs(1))
                            .await;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Vec::new()
                }
            };
            if !to_delete.is_empty()
                && let Err(e) = self.queues.delete_batch(sqs.queue.clone(), to_delete).await
            {
                tracing::warn!(queue = %sqs.queue, "deleting a processed batch: {e}");
            }
        }
    }

    /// Asynchronous invocation: one event at a time, retried with backoff up to
    /// `maximumRetryAttempts`, dropped after `maximumEventAge`, then sent to the
    /// function's destination or dead-letter queue.
    async fn consume_async(self: Arc<Self>, idx: usize, mut shutdown: Shutdown) {
        let function = &self.functions.list[idx];
        let spec = &function.spec;
        let queue = async_queue(&spec.name);
        let function_arn = format!(
            "arn:aws:lambda:{}:123456789012:function:{}",
            self.region, spec.name
        );
        loop {
            let Some(batch) = self
                .next_batch(&queue, 1, Duration::ZERO, None, &mut shutdown)
                .await
            else {
                return;
            };
            for message in batch {
                let attribute = |name: &str| message.attributes.get(name).map(|a| a.value.clone());
                let request_id = attribute(REQUEST_ID_ATTRIBUTE)
                    .unwrap_or_else(crate::telemetry::trace::new_request_id);
                let trigger = match attribute(TRIGGER_ATTRIBUTE).as_deref() {
                    Some("sns") => Trigger::Sns,
                    Some("s3") => Trigger::S3,
                    Some("schedule") => Trigger::Schedule,
                    _ => Trigger::Event,
                };
                let trace = message_trace(&message);
                let age = SystemTime::now()
                    .duration_since(message.sent_at)
                    .unwrap_or_default();
                let record = |condition: &str, function_error: bool, response: Option<&[u8]>| {
                    shapes::destination_record(&DestinationRecord {
                        request_id: &request_id,
                        function_arn: &function_arn,
                        condition,
                        approximate_invoke_count: message.receive_count,
                        request_payload: &message.body,
                        function_error,
                        response_payload: response,
                    })
                };
                if age > spec.async_config.maximum_event_age {
                    self.fail_async(
                        idx,
                        &message,
                        record("EventAgeExceeded", false, None),
                        &trace,
                        "EventAgeExceeded",
                    )
                    .await;
                    self.delete(&queue, &message).await;
                    continue;
                }
                let res = function
                    .invoke(InvokeRequest {
                        request_id: request_id.clone(),
                        payload: message.body.clone().into_bytes(),
                        trace: trace.clone(),
                        trigger,
                    })
                    .await;
                match res {
                    Ok(report) if matches!(report.outcome, Outcome::Ok(_)) => {
                        if let (Some(destination), Outcome::Ok(response)) =
                            (&spec.async_config.on_success, &report.outcome)
                        {
                            let value = record("Success", false, Some(response));
                            if let Err(e) = self.deliver(destination, value, &trace).await {
                                tracing::warn!(function = %spec.name, "delivering to onSuccess: {e}");
                            }
                        }
                        self.delete(&queue, &message).await;
                    }
                    Ok(report) => {
                        let attempts = message.receive_count;
                        if attempts <= spec.async_config.maximum_retry_attempts {
                            let delay = self.async_retry_delay
                                * 2u32.saturating_pow(attempts.saturating_sub(1));
                            self.retry_later(&queue, &message, delay).await;
                        } else {
                            let response = report.outcome.payload(&request_id);
                            let value = record("RetriesExhausted", true, Some(&response));
                            self.fail_async(idx, &message, value, &trace, report.outcome.label())
                                .await;
                            self.delete(&queue, &message).await;
                        }
                    }
                    // Throttled or stopping: try again shortly; the event is not lost.
                    Err(_) => {
                        self.retry_later(&queue, &message, Duration::from_secs(1))
                            .await
                    }
                }
            }
        }
    }

    /// Sends a failed asynchronous event to `onFailure`, else to the function's DLQ.
    async fn fail_async(
        &self,
        idx: usize,
        message: &ReceivedMessage,
        record: serde_json::Value,
        trace: &TraceContext,
        error: &str,
    ) {
        let spec = &self.functions.list[idx].spec;
        let res = match (
            &spec.async_config.on_failure,
            &spec.async_config.dead_letter,
        ) {
            (Some(destination), _) => self.deliver(destination, record, trace).await,
            // A Lambda dead-letter queue or topic receives the event itself, with the
            // error in attributes.
            (None, Some(Destination::Topic(topic))) => {
                let mut attributes = BTreeMap::new();
                attributes.insert("ErrorCode".to_owned(), super::string_attribute(error));
                let publish = super::Publish {
                    message: message.body.clone(),
                    protocol_messages: BTreeMap::new(),
                    group_id: None,
                    deduplication_id: None,
                    subject: None,
                    attributes,
                };
                self.publish(topic, publish, trace).await.map(|_| ())
            }
            (None, Some(Destination::Queue(queue) | Destination::Function(queue))) => {
                let mut dlq_message = super::plain_message(message.body.clone());
                dlq_message
                    .attributes
                    .insert("ErrorCode".to_owned(), super::string_attribute(error));
                self.send(queue, dlq_message)
                    .await
                    .map(|_| ())
                    .map_err(StoreError::from)
            }
            (None, None) => {
                tracing::warn!(function = %spec.name, "asynchronous event {} dropped after failing ({error}); set destinations.onFailure to keep it", message.message_id);
                Ok(())
            }
        };
        if let Err(e) = res {
            tracing::warn!(function = %spec.name, "delivering a failed event: {e}");
        }
    }

    pub(crate) async fn delete(&self, queue: &str, message: &ReceivedMessage) {
        let (queue, handle) = (queue.to_owned(), message.receipt_handle.clone());
        if let Err(e) = self.queues.delete_message(queue, handle).await {
            tracing::warn!("deleting a handled message: {e}");
        }
    }

    async fn retry_later(&self, queue: &str, message: &ReceivedMessage, delay: Duration) {
        let (queue, handle) = (queue.to_owned(), message.receipt_handle.clone());
        if let Err(e) = self.queues.change_visibility(queue, handle, delay).await {
            tracing::warn!("scheduling a retry: {e}");
        }
    }

    /// Delivers a topic's messages to an HTTP subscriber with a POST each, retrying
    /// until it answers 2xx.
    async fn deliver_http(self: Arc<Self>, queue: String, url: String, mut shutdown: Shutdown) {
        loop {
            let Some(batch) = self
                .next_batch(&queue, 10, Duration::ZERO, None, &mut shutdown)
                .await
            else {
                return;
            };
            for message in batch {
                match post_json(&url, &message.body).await {
                    Ok(()) => self.delete(&queue, &message).await,
                    Err(e) => {
                        tracing::warn!(url = %url, "delivering a topic message (attempt {}): {e:#}", message.receive_count)
                    }
                }
            }
        }
    }

    /// Fires a schedule at each slot into `queue` (a function's asynchronous invocations,
    /// or a state machine's starts); one missed while nimbus was down fires once at
    /// start-up. The fire time and the queued message commit together. The function of
    /// `warm`, when given, is pre-warmed just before each fire (the time its executor
    /// says a start takes, plus a margin), so the fire finds a warm instance.
    pub(crate) async fn run_schedule(
        self: Arc<Self>,
        queue: String,
        schedule: ScheduleEvent,
        warm: Option<Arc<dyn nimbus_core::Executor>>,
        mut shutdown: Shutdown,
    ) {
        let name = schedule.name.clone();
        // In cluster mode every node must agree on the slots: a rate counts from the Unix
        // epoch rather than from this node's first start.
        let last = if self.shared_queues {
            Ok(shared_anchor(&schedule.expression, SystemTime::now()))
        } else {
            let name = name.clone();
            self.store(move |store| store.schedule_anchor(&name, SystemTime::now()))
                .await
        };
        let mut last = match last {
            Ok(anchor) => Some(anchor),
            Err(e) => {
                tracing::warn!(schedule = %name, "reading schedule state: {e}");
                None
            }
        };
        loop {
            // The slot due next; missed slots collapse into one fire now.
            let slot = match last {
                Some(last) => schedule.expression.next_after(last),
                None => schedule.expression.next_after(SystemTime::now()),
            };
            let Some(slot) = slot else {
                tracing::warn!(schedule = %name, "the schedule never fires again");
                return;
            };
            let mut wait = slot.duration_since(SystemTime::now()).unwrap_or_default();
            if let Some(executor) = &warm
                && let lead = executor.warm_lead()
                && !lead.is_zero()
                && wait > lead + SCHEDULE_PREWARM_MARGIN
            {
                let ahead = lead + SCHEDULE_PREWARM_MARGIN;
                tokio::select! {
                    () = tokio::time::sleep(wait - ahead) => {}
                    () = shutdown.wait() => return,
                }
                executor.prewarm(
                    nimbus_core::prewarm::WarmReason::Schedule,
                    ahead + SCHEDULE_PREWARM_GRACE,
                );
                wait = slot.duration_since(SystemTime::now()).unwrap_or_default();
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.wait() => return,
            }
            let fired_at = SystemTime::now();
            // In cluster mode the event's time is its slot's, the same whichever node's
            // fire is the one taken.
            let event_time = if self.shared_queues { slot } else { fired_at };
            let event = match &schedule.input {
                Some(input) => input.clone(),
                None => shapes::scheduled_event(&self.region, &name, event_time),
            };
            let trace = TraceContext::new_root();
            let message = super::internal_message(event.to_string(), &trace, "schedule");
            let mut sends = vec![(queue.clone(), message)];
            let schedule_name = name.clone();
            // With the queues outside the store (cluster mode) the claim commits alone (it is
            // this node's) and the fire is sent after it under the slot's key, which the
            // cluster's engine takes once from all the nodes firing that slot.
            let mut after_claim = if self.shared_queues {
                std::mem::take(&mut sends)
            } else {
                Vec::new()
            };
            // Other servers on this store (a canary's versions) race for the same slot;
            // whichever claims it first fires it.
            match self
                .store(move |store| store.fire_schedule(&schedule_name, slot, fired_at, sends))
                .await
            {
                Ok(ScheduleFire::Fired) => {
                    if let Some((target, message)) = after_claim.pop() {
                        let key =
                            format!("schedule:{name}:{}", nimbus_core::time::unix_micros(slot));
                        if let Err(e) = self.queues.send_once(target, message, key).await {
                            tracing::warn!(schedule = %name, "sending a fire: {e}");
                        }
                    }
                    self.wake(&queue);
                    // Shared slots stay on the grid every node computes.
                    last = Some(if self.shared_queues { slot } else { fired_at });
                }
                Ok(ScheduleFire::AlreadyFired(at)) => last = Some(at.max(slot)),
                Err(e) => {
                    tracing::warn!(schedule = %name, "firing: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Where a schedule's slots start in cluster mode, the same on every node: a rate's slots
/// are multiples of its period since the Unix epoch (the last one at or before `now`); a
/// cron's slots are wall-clock minutes already.
fn shared_anchor(
    expression: &nimbus_core::schedule::ScheduleExpression,
    now: SystemTime,
) -> SystemTime {
    match expression {
        nimbus_core::schedule::ScheduleExpression::Rate(every) if !every.is_zero() => {
            let since_epoch = now
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let periods = since_epoch.as_micros() / every.as_micros().max(1);
            let offset = u64::try_from(periods.saturating_mul(every.as_micros()))
                .map(Duration::from_micros)
                .unwrap_or(since_epoch);
            std::time::UNIX_EPOCH + offset
        }
        _ => now,
    }
}

/// Waits for every trigger to notice shutdown (bounded), then stops the stragglers.
pub(crate) async fn stop_triggers(mut tasks: JoinSet<()>) {
    let finished = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tasks.abort_all();
    }
}

/// The trace a message carries (`AWSTraceHeader`), continued; else a new one.
pub(crate) fn message_trace(message: &ReceivedMessage) -> TraceContext {
    message
        .attributes
        .get(TRACE_ATTRIBUTE)
        .and_then(|a| TraceContext::from_xray(&a.value))
        .unwrap_or_else(TraceContext::new_root)
}

/// The message ids of `{"batchItemFailures": [{"itemIdentifier": id}]}`; `None` when the
/// response is not of that shape. An empty or null response means no failures.
pub(super) fn failed_items(response: &[u8]) -> Option<Vec<String>> {
    let value: serde_json::Value = serde_json::from_slice(response).ok()?;
    if value.is_null() {
        return Some(Vec::new());
    }
    let Some(items) = value.get("batchItemFailures") else {
        return Some(Vec::new());
    };
    if items.is_null() {
        return Some(Vec::new());
    }
    items
        .as_array()?
        .iter()
        .map(|item| {
            item.get("itemIdentifier")
                .and_then(|id| id.as_str())
                .map(str::to_owned)
        })
        .collect()
}

/// POSTs a JSON body to an `http://` URL on loopback or elsewhere.
async fn post_json(url: &str, body: &str) -> anyhow::Result<()> {
    use http_body_util::BodyExt as _;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// subscriptions are supported"))?;
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, format!("/{path}")),
        None => (rest, "/".to_owned()),
    };
    let stream = tokio::net::TcpStream::connect(authority).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let req = http::Request::post(path)
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=UTF-8")
        .header("x-amz-sns-message-type", "Notification")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_owned(),
        )))?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let _ = res.into_body().collect().await;
    anyhow::ensure!(status.is_success(), "the subscriber answered {status}");
    Ok(())
}

/// The TTL values that have expired at a moment: seconds since the epoch that have passed,
/// but not by more than five years (DynamoDB takes older ones as mistakes and keeps the item).
#[derive(Clone)]
struct Expiry {
    now: Number,
    floor: Number,
}

impl Expiry {
    fn at(now: SystemTime) -> Option<Expiry> {
        let secs = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
        Some(Expiry {
            now: Number::parse(&secs.to_string()).ok()?,
            floor: Number::parse(&secs.saturating_sub(5 * 365 * 86_400).to_string()).ok()?,
        })
    }

    /// Whether `item` has expired through its TTL `attribute` (a number; other types never
    /// expire).
    fn has_expired(&self, item: &Item, attribute: &str) -> bool {
        matches!(item.get(attribute), Some(AttributeValue::N(at)) if *at < self.now && *at > self.floor)
    }
}

/// Deletes a table's expired items, each in a write that checks again it is expired.
fn expire_items(
    tables: &dyn TableStore,
    table: &str,
    attribute: &str,
    now: SystemTime,
) -> Result<usize, TableError> {
    let Some(expiry) = Expiry::at(now) else {
        return Ok(0);
    };
    let spec = tables.describe_table(table)?.spec;
    let mut n_deleted = 0;
    let mut start_after = None;
    loop {
        let page = tables.query(&KeyQuery {
            table: table.to_owned(),
            index: None,
            partition: None,
            sort: SortRange::All,
            forward: true,
            start_after: start_after.take(),
            limit: Some(1000),
        })?;
        let writes: Vec<ItemWrite> = page
            .items
            .iter()
            .filter(|item| expiry.has_expired(item, attribute))
            .filter_map(|item| spec.key_of(item).ok())
            .map(|key| {
                let attribute = attribute.to_owned();
                let expiry = expiry.clone();
                ItemWrite {
                    table: table.to_owned(),
                    key,
                    origin: WriteOrigin::TimeToLive,
                    decide: Box::new(move |current: Option<&Item>| {
                        Ok(match current {
                            Some(item) if expiry.has_expired(item, &attribute) => {
                                WriteAction::Delete
                            }
                            _ => WriteAction::Keep,
                        })
                    }),
                }
            })
            .collect();
        for write in writes {
            tables.write_items(vec![write])?;
            n_deleted += 1;
        }
        match page.last_evaluated_key {
            Some(key) => start_after = Some(key),
            None => return Ok(n_deleted),
        }
    }
}

#[cfg(test)]
mod tests {
    use nimbus_core::tables::{KeyAttribute, ScalarType, TableSpec};

    use super::*;

    fn number(n: u64) -> AttributeValue {
        AttributeValue::N(Number::parse(&n.to_string()).expect("a number"))
    }

    /// Items whose TTL attribute is in the past (but within five years) are deleted; items
    /// in the future, without the attribute, or with it of another type stay.
    #[test]
    fn expired_items_are_deleted_and_the_rest_kept() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = nimbus_store::Store::open(dir.path()).expect("opening the store");
        let spec = TableSpec {
            name: "sessions".to_owned(),
            partition_key: KeyAttribute {
                name: "id".to_owned(),
                kind: ScalarType::S,
            },
            sort_key: None,
            global_indexes: Vec::new(),
            local_indexes: Vec::new(),
            ttl_attribute: Some("expires".to_owned()),
            stream_view: None,
        };
        store.ensure_table(&spec).expect("creating the table");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let items = [
            ("past", Some(number(1_999_999_000))),
            ("future", Some(number(2_000_001_000))),
            ("ancient", Some(number(100))),
            ("none", None),
            ("text", Some(AttributeValue::S("1".to_owned()))),
        ];
        let writes = items
            .iter()
            .map(|(id, expires)| {
                let mut item = Item::new();
                item.insert("id".to_owned(), AttributeValue::S((*id).to_owned()));
                if let Some(expires) = expires {
                    item.insert("expires".to_owned(), expires.clone());
                }
                let key: Item = [("id".to_owned(), AttributeValue::S((*id).to_owned()))].into();
                ItemWrite {
                    table: "sessions".to_owned(),
                    key,
                    origin: WriteOrigin::Request,
                    decide: Box::new(move |_| Ok(WriteAction::Put(item))),
                }
            })
            .collect();
        store.write_items(writes).expect("writing items");
        let n_deleted = expire_items(&store, "sessions", "expires", now).expect("expiring");
        assert_eq!(n_deleted, 1);
        let keys: Vec<(String, Item)> = items
            .iter()
            .map(|(id, _)| {
                let key: Item = [("id".to_owned(), AttributeValue::S((*id).to_owned()))].into();
                ("sessions".to_owned(), key)
            })
            .collect();
        let left: Vec<bool> = store
            .get_items(&keys)
            .expect("reading")
            .iter()
            .map(Option::is_some)
            .collect();
        assert_eq!(left, [false, true, true, true, true]);
    }

    /// In cluster mode every node computes the same rate slots, whenever it started: the
    /// grid of the period since the Unix epoch (issue 17).
    #[test]
    fn shared_rate_slots_are_the_same_on_every_node() {
        use nimbus_core::schedule::ScheduleExpression;
        let every = ScheduleExpression::Rate(Duration::from_secs(300));
        let epoch = SystemTime::UNIX_EPOCH;
        let a = shared_anchor(&every, epoch + Duration::from_secs(999_999_917));
        let b = shared_anchor(&every, epoch + Duration::from_secs(1_000_000_199));
        assert_eq!(a, b);
        assert_eq!(a, epoch + Duration::from_secs(999_999_900));
        assert_eq!(
            every.next_after(a),
            Some(epoch + Duration::from_secs(1_000_000_200))
        );
        let now = epoch + Duration::from_secs(1_000_000_017);
        let cron = ScheduleExpression::parse("cron(* * * * ? *)").expect("a cron");
        assert_eq!(shared_anchor(&cron, now), now);
    }
}
