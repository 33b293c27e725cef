//! Event sources and the resources behind them, as the manifest declares them: queues,
//! topics, buckets, KV namespaces, schedules, asynchronous invocation and access grants.

use std::time::Duration;

/// The prefix of nimbus's own queues (asynchronous invocation, HTTP deliveries of topics);
/// the services API hides them and a manifest may not declare a queue named so.
pub const INTERNAL_QUEUE_PREFIX: &str = "nimbus--";

/// The resources an app declares (a `queues:` / `topics:` / `buckets:` / `kv:` section,
/// or CloudFormation `resources` of the types nimbus models).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppResources {
    /// Queues, including dead-letter queues.
    pub queues: Vec<QueueSpec>,
    /// Topics and their non-function subscriptions.
    pub topics: Vec<TopicSpec>,
    /// Bucket names.
    pub buckets: Vec<String>,
    /// KV namespace names.
    pub kv_namespaces: Vec<String>,
    /// DynamoDB-style tables.
    pub tables: Vec<crate::tables::TableSpec>,
    /// Data streams (Kinesis); tables' change streams come with their tables.
    pub streams: Vec<crate::streams::StreamSpec>,
    /// EventBridge buses besides `default`: `AWS::Events::EventBus` resources and the buses
    /// `eventBridge` events name.
    pub event_buses: Vec<String>,
    /// Step Functions state machines.
    pub state_machines: Vec<crate::workflow::StateMachineSpec>,
}

/// A queue with SQS semantics.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// The queue name; a name ending in `.fifo` is a FIFO queue.
    pub name: String,
    /// How long a received message stays invisible (SQS default 30 s).
    pub visibility_timeout: Duration,
    /// Delay of every new message (SQS default 0).
    pub delay: Duration,
    /// How long a message is kept (SQS default 4 days).
    pub retention: Duration,
    /// FIFO only: deduplicate by a hash of the body when no deduplication id is given.
    pub content_based_deduplication: bool,
    /// Where messages go after too many receives.
    pub redrive: Option<Redrive>,
}

/// An SQS redrive policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// The dead-letter queue's name.
    pub dead_letter_queue: String,
    /// Receives after which a message moves to the dead-letter queue.
    pub max_receive_count: u32,
}

/// A topic with SNS semantics.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    /// The topic name.
    pub name: String,
    /// Subscriptions that are not functions (functions subscribe through `sns` events).
    pub subscriptions: Vec<Subscription>,
}

/// A non-function subscriber of a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// Where deliveries go.
    pub endpoint: SubscriptionEndpoint,
    /// An SNS filter policy (JSON), if any.
    pub filter_policy: Option<serde_json::Value>,
    /// Whether the filter policy applies to message attributes or the body.
    pub filter_scope: FilterScope,
    /// Deliver the message body alone instead of the SNS envelope.
    pub raw_message_delivery: bool,
}

/// The endpoint of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionEndpoint {
    /// A queue, by name.
    Queue(String),
    /// An HTTP or HTTPS URL that receives a POST per message.
    Http(String),
}

/// What an SNS filter policy looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FilterScope {
    /// `MessageAttributes` (the SNS default).
    #[default]
    MessageAttributes,
    /// `MessageBody`: the JSON body.
    MessageBody,
}

/// A non-HTTP event source of a function.
#[derive(Debug, Clone, PartialEq)]
pub enum EventSource {
    /// `sqs`: the function consumes a queue.
    Sqs(SqsEvent),
    /// `sns`: the function subscribes to a topic.
    Sns(SnsEvent),
    /// `s3`: the function is notified of object changes in a bucket.
    S3(S3Event),
    /// `schedule`: the function runs on a rate or cron schedule.
    Schedule(ScheduleEvent),
    /// `eventBridge`: events put on a bus that match a pattern invoke the function.
    EventBridge(EventBridgeEvent),
    /// `stream`: the function consumes a table's change stream or a data stream.
    Stream(StreamEvent),
}

/// A `stream` event: an event source mapping over an ordered stream, with Lambda's
/// settings for DynamoDB Streams and Kinesis.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// The stream, by its store name (a data stream's name, or `table/NAME`).
    pub stream: String,
    /// Records per invocation, at most (`batchSize`).
    pub batch_size: u32,
    /// How long to gather records before invoking with fewer than `batch_size`.
    pub batch_window: std::time::Duration,
    /// Where a consumer without a checkpoint starts.
    pub starting_position: StartingPosition,
    /// Retries of a failing batch; `None` retries until the records expire.
    pub maximum_retry_attempts: Option<u32>,
    /// Records older than this are not invoked with; `None` for no limit.
    pub maximum_record_age: Option<std::time::Duration>,
    /// Splits a failing batch in two and retries each half (`bisectBatchOnFunctionError`).
    pub bisect_on_error: bool,
    /// The function reports failed records (`functionResponseType: ReportBatchItemFailures`).
    pub report_batch_item_failures: bool,
    /// Batches in flight per shard, records of one partition key kept in order.
    pub parallelization_factor: u32,
    /// Where the record of a discarded batch goes (`destinations.onFailure`).
    pub on_failure: Option<Destination>,
    /// Only records matching one of these EventBridge-style patterns invoke the function.
    pub filter_patterns: Vec<serde_json::Value>,
    /// Whether the mapping is on.
    pub enabled: bool,
}

/// Where a stream consumer without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    /// Only records written after the consumer starts.
    Latest,
    /// The oldest record kept.
    TrimHorizon,
    /// Records written at or after this time, in seconds since the Unix epoch.
    AtTimestamp(u64),
}

/// An `eventBridge` rule of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBridgeEvent {
    /// The event bus's name (`default` unless given).
    pub bus: String,
    /// The event pattern (EventBridge's, as JSON); every event matches when absent.
    pub pattern: Option<serde_json::Value>,
    /// A constant event to send instead of the matched one (`input`).
    pub input: Option<serde_json::Value>,
    /// A JSONPath (`$.detail`, `$.detail.order`) of the part of the event to send (`inputPath`).
    pub input_path: Option<String>,
}

/// An `sqs` event source mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct SqsEvent {
    /// The queue's name (resolved from a name, ARN, `Fn::GetAtt` or reference).
    pub queue: String,
    /// Messages per invocation, 1 to 10 (Lambda's default 10).
    pub batch_size: u32,
    /// How long to gather a batch before invoking (default 0).
    pub maximum_batching_window: Duration,
    /// `functionResponseType: ReportBatchItemFailures`.
    pub report_batch_item_failures: bool,
    /// At most this many concurrent invocations from this source.
    pub maximum_concurrency: Option<u32>,
    /// `enabled: false` pauses the mapping.
    pub enabled: bool,
}

/// An `sns` subscription of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct SnsEvent {
    /// The topic's name.
    pub topic: String,
    /// An SNS filter policy (JSON), if any.
    pub filter_policy: Option<serde_json::Value>,
    /// What the filter policy looks at.
    pub filter_scope: FilterScope,
}

/// An `s3` notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Event {
    /// The bucket's name.
    pub bucket: String,
    /// Event patterns such as `s3:ObjectCreated:*` or `s3:ObjectRemoved:Delete`.
    pub events: Vec<String>,
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Only keys ending with this.
    pub suffix: Option<String>,
}

/// A `schedule` event.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleEvent {
    /// A stable name for the schedule (`<function>-schedule-<n>` unless given).
    pub name: String,
    /// `rate(...)` or `cron(...)`.
    pub expression: crate::schedule::ScheduleExpression,
    /// `enabled: false` declares it without running it.
    pub enabled: bool,
    /// A constant event to send instead of the EventBridge scheduled-event shape.
    pub input: Option<serde_json::Value>,
}

/// How asynchronous invocations of a function are retried and where failures go.
#[derive(Debug, Clone, PartialEq)]
pub struct AsyncConfig {
    /// Retries after a failed attempt, 0 to 2 (default 2).
    pub maximum_retry_attempts: u32,
    /// Events older than this are discarded (to `on_failure`), 60 s to 6 h (default 6 h).
    pub maximum_event_age: Duration,
    /// Where a successful invocation's record goes.
    pub on_success: Option<Destination>,
    /// Where a failed invocation's record goes (`destinations.onFailure`).
    pub on_failure: Option<Destination>,
    /// The function's dead-letter queue or topic (`onError`), used when there is no
    /// `on_failure`; always a [`Destination::Queue`] or a [`Destination::Topic`].
    pub dead_letter: Option<Destination>,
}

/// A destination of an asynchronous invocation record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A queue, by name.
    Queue(String),
    /// A topic, by name.
    Topic(String),
    /// A function, by its name in the manifest.
    Function(String),
}

/// A permission of a function over resources (from `iamRoleStatements` /
/// `provider.iam.role.statements`, plus those its own events imply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Action patterns such as `sqs:SendMessage`, `s3:*`, `kv:Get*`.
    pub actions: Vec<String>,
    /// Resource patterns: `queue:orders`, `topic:events`, `bucket:images/*`,
    /// `kv:sessions`, `function:worker`; `*` matches any run of characters.
    pub resources: Vec<String>,
}

impl Default for AsyncConfig {
    fn default() -> AsyncConfig {
        AsyncConfig {
            maximum_retry_attempts: 2,
            maximum_event_age: Duration::from_secs(6 * 3600),
            on_success: None,
            on_failure: None,
            dead_letter: None,
        }
    }
}

impl QueueSpec {
    /// A queue with SQS's defaults.
    pub fn with_defaults(name: &str) -> QueueSpec {
        QueueSpec {
            name: name.to_owned(),
            visibility_timeout: Duration::from_secs(30),
            delay: Duration::ZERO,
            retention: Duration::from_secs(4 * 86_400),
            content_based_deduplication: false,
            redrive: None,
        }
    }

    /// Whether this is a FIFO queue.
    pub fn is_fifo(&self) -> bool {
        self.name.ends_with(".fifo")
    }
}

impl Grant {
    /// Whether this grant allows `action` on `resource` (`*` in patterns matches any run
    /// of characters; actions compare case-insensitively, as IAM's do).
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        self.actions.iter().any(|pattern| {
            wildcard_match(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
        }) && self
            .resources
            .iter()
            .any(|pattern| wildcard_match(pattern, resource))
    }
}

/// `*` matches any run of characters, `?` one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(star_idx) = star {
            pi = star_idx + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::{Grant, wildcard_match};

    #[test]
    fn wildcards_match_like_iam() {
        assert!(wildcard_match("queue:*", "queue:orders"));
        assert!(wildcard_match("bucket:images/*", "bucket:images/a/b.png"));
        assert!(!wildcard_match("bucket:images/*", "bucket:other/a.png"));
        assert!(wildcard_match("kv:sess?ons", "kv:sessions"));
        assert!(!wildcard_match("queue:orders", "queue:orders-dlq"));
        let grant = Grant {
            actions: vec!["sqs:Send*".to_owned()],
            resources: vec!["queue:orders".to_owned()],
        };
        assert!(grant.allows("sqs:SendMessage", "queue:orders"));
        assert!(grant.allows("SQS:sendmessage", "queue:orders"));
        assert!(!grant.allows("sqs:ReceiveMessage", "queue:orders"));
        assert!(!grant.allows("sqs:SendMessage", "queue:payments"));
    }
}
