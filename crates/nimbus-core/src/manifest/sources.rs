//! Non-HTTP function events: `sqs`, `sns`, `s3`, `schedule` and `eventBridge`.

use std::time::Duration;

use crate::events::{
    EventBridgeEvent, EventSource, FilterScope, S3Event, ScheduleEvent, SnsEvent, SqsEvent,
};
use crate::schedule::ScheduleExpression;

use super::references::{is_cf_reference, is_intrinsic};
use super::resources::{Kind, to_json};
use super::tree::{Entry, Node, Value};
use super::{Cx, join_key};

/// The S3 notification types nimbus raises.
const S3_EVENTS: &[&str] = &[
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated",
];

impl Cx<'_> {
    /// One `sqs`, `sns`, `s3` or `schedule` event (a `schedule` with a list of rates gives
    /// several). `n_schedules` counts the function's schedules, for default names.
    pub(super) fn event_source(
        &mut self,
        entry: &Entry,
        key: &str,
        function: &str,
        n_schedules: &mut usize,
    ) -> Vec<EventSource> {
        match entry.key.as_str() {
            "sqs" => self
                .sqs(&entry.value, key)
                .map(EventSource::Sqs)
                .into_iter()
                .collect(),
            "sns" => self
                .sns(&entry.value, key)
                .map(EventSource::Sns)
                .into_iter()
                .collect(),
            "s3" => self
                .s3(&entry.value, key)
                .map(EventSource::S3)
                .into_iter()
                .collect(),
            "schedule" => self
                .schedule(&entry.value, key, function, n_schedules)
                .into_iter()
                .map(EventSource::Schedule)
                .collect(),
            "eventBridge" => self.event_bridge(&entry.value, key, function, n_schedules),
            "stream" => self.stream_event(&entry.value, key).into_iter().collect(),
            "dynamodb" => self
                .dynamodb_event(&entry.value, key, entry.key_pos)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `sqs: queue` or `sqs: { arn, batchSize, ... }`.
    fn sqs(&mut self, node: &Node, key: &str) -> Option<SqsEvent> {
        let read = self.read_event(node, key);
        let fields = match &read.value {
            Value::Map(entries) if !is_reference_map(entries) => entries.clone(),
            _ => {
                let (queue, pos) = self.queue_reference(node, key)?;
                self.require_declared(Kind::Queue, &queue, pos, key)
                    .then_some(())?;
                return Some(sqs_defaults(queue));
            }
        };
        let mut queue = None;
        let mut event = sqs_defaults(String::new());
        for field in &fields {
            let field_key = join_key(key, &field.key);
            let value = &field.value;
            match field.key.as_str() {
                "arn" | "queue" => {
                    if let Some((name, pos)) = self.queue_reference(value, &field_key)
                        && self.require_declared(Kind::Queue, &name, pos, &field_key)
                    {
                        queue = Some(name);
                    }
                }
                "batchSize" => {
                    // nimbus receives at most 10 messages at a time, as SQS's
                    // ReceiveMessage does; Lambda's larger batches need a batching window.
                    if let Some(n) =
                        self.bounded(value, &field_key, "a whole number of messages", 1, 10)
                    {
                        event.batch_size = n as u32;
                    }
                }
                "maximumBatchingWindow" => {
                    if let Some(window) = self.seconds(value, &field_key, 0, 300) {
                        event.maximum_batching_window = window;
                    }
                }
                "functionResponseType" => {
                    if self.function_response_type(value, &field_key) {
                        event.report_batch_item_failures = true;
                    }
                }
                "maximumConcurrency" => {
                    // Lambda's limits for SQS event source mappings.
                    event.maximum_concurrency = self
                        .bounded(value, &field_key, "a whole number of invocations", 2, 1000)
                        .map(|n| n as u32);
                }
                "enabled" => event.enabled = self.boolean(value, &field_key).unwrap_or(true),
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        if !fields.iter().any(|f| f.key == "arn" || f.key == "queue") {
            self.error(
                read.pos,
                key,
                "missing `arn`; name the queue, as in `arn: orders`",
            );
        }
        event.queue = queue?;
        Some(event)
    }

    /// `sns: topic` (name or ARN) or `sns: { topicName, arn, filterPolicy, ... }`. The
    /// topic is declared if nothing else declares it, as the Serverless Framework creates it.
    fn sns(&mut self, node: &Node, key: &str) -> Option<SnsEvent> {
        let read = self.read_event(node, key);
        let mut event = SnsEvent {
            topic: String::new(),
            filter_policy: None,
            filter_scope: FilterScope::MessageAttributes,
        };
        let (topic, pos, topic_key) = match &read.value {
            Value::Map(entries) if !is_reference_map(entries) => {
                let mut by_name = None;
                let mut by_arn = None;
                for field in entries {
                    let field_key = join_key(key, &field.key);
                    match field.key.as_str() {
                        "topicName" => {
                            let value = self.read(&field.value, &field_key);
                            by_name = self
                                .string(&value, &field_key, "a topic name")
                                .map(|name| (name, value.pos, field_key));
                        }
                        "arn" => {
                            by_arn = self
                                .topic_reference(&field.value, &field_key)
                                .map(|(name, pos)| (name, pos, field_key));
                        }
                        "filterPolicy" => {
                            event.filter_policy = self.filter_policy(&field.value, &field_key)
                        }
                        "filterPolicyScope" => {
                            event.filter_scope = self.filter_scope(&field.value, &field_key)
                        }
                        // A label in the AWS console; nothing to do with it.
                        "displayName" => {}
                        _ => {
                            self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored")
                        }
                    }
                }
                if !entries
                    .iter()
                    .any(|f| f.key == "topicName" || f.key == "arn")
                {
                    self.error(read.pos, key, "an `sns` event needs `topicName` or `arn`");
                }
                // With both, the ARN names the topic; `topicName` is only a label then.
                by_arn.or(by_name)?
            }
            _ => {
                let (name, pos) = self.topic_reference(node, key)?;
                (name, pos, key.to_owned())
            }
        };
        if !self.check_name(Kind::Topic, &topic, pos, &topic_key) {
            return None;
        }
        self.declare_implicit_topic(&topic);
        event.topic = topic;
        Some(event)
    }

    /// `s3: bucket` or `s3: { bucket, event, rules, existing }`. The bucket is declared if
    /// nothing else declares it, whether or not it is `existing`.
    fn s3(&mut self, node: &Node, key: &str) -> Option<S3Event> {
        let read = self.read_event(node, key);
        let mut event = S3Event {
            bucket: String::new(),
            events: vec!["s3:ObjectCreated:*".to_owned()],
            prefix: None,
            suffix: None,
        };
        let (bucket, pos, bucket_key) = match &read.value {
            Value::Map(entries) if !is_reference_map(entries) => {
                let mut bucket = None;
                for field in entries {
                    let field_key = join_key(key, &field.key);
                    match field.key.as_str() {
                        "bucket" => {
                            bucket = self
                                .bucket_reference(&field.value, &field_key)
                                .map(|(name, pos)| (name, pos, field_key));
                        }
                        "event" => {
                            if let Some(events) = self.s3_event_names(&field.value, &field_key) {
                                event.events = events;
                            }
                        }
                        "rules" => self.s3_rules(&field.value, &field_key, &mut event),
                        // nimbus makes missing buckets either way; an existing one is kept.
                        "existing" | "forceDeploy" => {
                            self.boolean(&field.value, &field_key);
                        }
                        _ => {
                            self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored")
                        }
                    }
                }
                if !entries.iter().any(|f| f.key == "bucket") {
                    self.error(
                        read.pos,
                        key,
                        "missing `bucket`; name the bucket, as in `bucket: images`",
                    );
                }
                bucket?
            }
            _ => {
                let (name, pos) = self.bucket_reference(node, key)?;
                (name, pos, key.to_owned())
            }
        };
        if !self.check_name(Kind::Bucket, &bucket, pos, &bucket_key) {
            return None;
        }
        self.declare_implicit_bucket(&bucket);
        event.bucket = bucket;
        Some(event)
    }

    fn s3_event_names(&mut self, node: &Node, key: &str) -> Option<Vec<String>> {
        let read = self.read(node, key);
        let items = match read.value {
            Value::Seq(items) => items,
            _ => vec![read],
        };
        let mut names = Vec::new();
        for (item_idx, item) in items.iter().enumerate() {
            let item_key = if items.len() == 1 {
                key.to_owned()
            } else {
                format!("{key}[{item_idx}]")
            };
            let item = self.read(item, &item_key);
            let name = self.string(&item, &item_key, "an event such as `s3:ObjectCreated:*`")?;
            if !S3_EVENTS.contains(&name.as_str()) {
                let message = format!(
                    "unknown S3 event {name:?}; nimbus raises {}",
                    S3_EVENTS.join(", ")
                );
                self.error(item.pos, &item_key, message);
                return None;
            }
            names.push(name);
        }
        Some(names)
    }

    /// `rules: [{ prefix: uploads/ }, { suffix: .jpg }]`: at most one of each, as in S3.
    fn s3_rules(&mut self, node: &Node, key: &str, event: &mut S3Event) {
        let Some(items) =
            self.sequence(node, key, "a list of rules such as `{ prefix: uploads/ }`")
        else {
            return;
        };
        for (rule_idx, item) in items.iter().enumerate() {
            let rule_key = format!("{key}[{rule_idx}]");
            let Some(fields) =
                self.mapping(item, &rule_key, "a rule such as `{ prefix: uploads/ }`")
            else {
                continue;
            };
            for field in &fields {
                let field_key = join_key(&rule_key, &field.key);
                let taken = match field.key.as_str() {
                    "prefix" => event.prefix.is_some(),
                    "suffix" => event.suffix.is_some(),
                    other => {
                        let message = format!(
                            "unknown rule `{other}`; a rule is `prefix: ...` or `suffix: ...`"
                        );
                        self.error(field.key_pos, &field_key, message);
                        continue;
                    }
                };
                let value = self.read(&field.value, &field_key);
                let Some(text) = self.string(&value, &field_key, "text") else {
                    continue;
                };
                if taken {
                    let message = format!("S3 allows one `{}` rule per event", field.key);
                    self.error(field.key_pos, &field_key, message);
                } else if field.key == "prefix" {
                    event.prefix = Some(text);
                } else {
                    event.suffix = Some(text);
                }
            }
        }
    }

    /// `schedule: rate(..)` or `schedule: { rate: expression or list, enabled, input, name }`.
    pub(super) fn schedule(
        &mut self,
        node: &Node,
        key: &str,
        function: &str,
        n_schedules: &mut usize,
    ) -> Vec<ScheduleEvent> {
        let read = self.read(node, key);
        let mut enabled = true;
        let mut input = None;
        let mut name = None;
        let expressions: Vec<(Node, String)> = match &read.value {
            Value::Map(fields) => {
                let mut expressions = Vec::new();
                for field in fields {
                    let field_key = join_key(key, &field.key);
                    match field.key.as_str() {
                        "rate" => {
                            let value = self.read(&field.value, &field_key);
                            match value.value {
                                Value::Seq(items) => {
                                    for (item_idx, item) in items.into_iter().enumerate() {
                                        expressions
                                            .push((item, format!("{field_key}[{item_idx}]")));
                                    }
                                }
                                _ => expressions.push((value, field_key)),
                            }
                        }
                        "enabled" => {
                            enabled = self.boolean(&field.value, &field_key).unwrap_or(true)
                        }
                        "input" => input = self.schedule_input(&field.value, &field_key),
                        "name" => {
                            let value = self.read(&field.value, &field_key);
                            name = self
                                .string(&value, &field_key, "a schedule name")
                                .map(|n| (n, value.pos, field_key));
                        }
                        // Documentation only.
                        "description" => {}
                        _ => {
                            self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored")
                        }
                    }
                }
                if !fields.iter().any(|f| f.key == "rate") {
                    self.error(read.pos, key, "missing `rate`; write `rate: rate(5 minutes)` or `rate: cron(0 12 * * ? *)`");
                }
                expressions
            }
            Value::Invalid => return Vec::new(),
            _ => vec![(read.clone(), key.to_owned())],
        };
        let mut schedules = Vec::new();
        for (expression_idx, (node, expression_key)) in expressions.iter().enumerate() {
            let node = self.read(node, expression_key);
            let Some(text) = self.string(
                &node,
                expression_key,
                "`rate(5 minutes)` or `cron(0 12 * * ? *)`",
            ) else {
                continue;
            };
            let expression = match ScheduleExpression::parse(&text) {
                Ok(expression) => expression,
                Err(message) => {
                    self.error(node.pos, expression_key, message);
                    continue;
                }
            };
            if let ScheduleExpression::Rate(every) = &expression
                && every.as_secs() < 60
            {
                let message = format!(
                    "`{text}` fires more often than EventBridge allows (its shortest rate is 1 minute): nimbus runs it, AWS would reject it"
                );
                self.warn(node.pos, expression_key, message);
            }
            *n_schedules += 1;
            let (schedule_name, pos, name_key) = match &name {
                Some((name, pos, name_key)) if expression_idx == 0 => {
                    (name.clone(), *pos, name_key.clone())
                }
                Some((name, pos, name_key)) => (
                    format!("{name}-{}", expression_idx + 1),
                    *pos,
                    name_key.clone(),
                ),
                None => (
                    format!("{function}-schedule-{n_schedules}"),
                    node.pos,
                    expression_key.clone(),
                ),
            };
            if let Some(first) = self.app.schedule_names.get(&schedule_name) {
                let message = format!(
                    "schedule name `{schedule_name}` is already used at line {}",
                    first.line
                );
                self.error(pos, &name_key, message);
                continue;
            }
            self.app.schedule_names.insert(schedule_name.clone(), pos);
            schedules.push(ScheduleEvent {
                name: schedule_name,
                expression,
                enabled,
                input: input.clone(),
            });
        }
        schedules
    }

    /// `eventBridge: { eventBus, pattern, input, inputPath }`: a rule on a bus (`default`
    /// unless named, by name, ARN, `Ref` or `Fn::GetAtt`), which the Serverless Framework
    /// creates; `eventBridge: { schedule: rate(..) }` is a schedule.
    fn event_bridge(
        &mut self,
        node: &Node,
        key: &str,
        function: &str,
        n_schedules: &mut usize,
    ) -> Vec<EventSource> {
        let read = self.read(node, key);
        let Some(fields) = self.mapping(
            &read,
            key,
            "a mapping such as `{ eventBus: orders, pattern: { source: [shop] } }`",
        ) else {
            return Vec::new();
        };
        if let Some(schedule) = fields.iter().find(|field| field.key == "schedule") {
            let schedule_key = join_key(key, "schedule");
            return self
                .schedule(&schedule.value, &schedule_key, function, n_schedules)
                .into_iter()
                .map(EventSource::Schedule)
                .collect();
        }
        let mut event = EventBridgeEvent {
            bus: "default".to_owned(),
            pattern: None,
            input: None,
            input_path: None,
        };
        for field in &fields {
            let field_key = join_key(key, &field.key);
            match field.key.as_str() {
                "eventBus" => {
                    let Some((text, _)) = self.reference_text(
                        &field.value,
                        &field_key,
                        "a bus name or ARN, `Ref` or `Fn::GetAtt` of an `AWS::Events::EventBus`",
                    ) else {
                        continue;
                    };
                    // `arn:aws:events:REGION:ACCOUNT:event-bus/NAME` names the bus NAME.
                    event.bus = text
                        .rsplit_once(":event-bus/")
                        .map_or(text.as_str(), |(_, name)| name)
                        .to_owned();
                }
                "pattern" => event.pattern = self.filter_policy(&field.value, &field_key),
                "input" => event.input = self.schedule_input(&field.value, &field_key),
                "inputPath" => {
                    let value = self.read(&field.value, &field_key);
                    event.input_path = self.string(&value, &field_key, "a path such as `$.detail`");
                }
                // The Framework's own settings for the rule; nothing to do with them here.
                "name" | "description" | "enabled" | "existing" => {}
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        if event.pattern.is_none() && !fields.iter().any(|f| f.key == "pattern") {
            self.error(
                read.pos,
                key,
                "an `eventBridge` event needs a `pattern` (or a `schedule`)",
            );
            return Vec::new();
        }
        self.declare_event_bus(&event.bus);
        vec![EventSource::EventBridge(event)]
    }

    /// `functionResponseType`: whether it is `ReportBatchItemFailures` (anything else is an
    /// error), for SQS and stream event source mappings alike.
    pub(super) fn function_response_type(&mut self, node: &Node, key: &str) -> bool {
        let value = self.read(node, key);
        match self
            .string(&value, key, "`ReportBatchItemFailures`")
            .as_deref()
        {
            Some("ReportBatchItemFailures") => true,
            Some(other) => {
                let message = format!("expected `ReportBatchItemFailures`, got {other:?}");
                self.error(value.pos, key, message);
                false
            }
            None => false,
        }
    }

    /// An event's value, except that `${cf:..}` is left for the reference to resolve.
    pub(super) fn read_event(&mut self, node: &Node, key: &str) -> Node {
        if is_cf_reference(node) {
            node.clone()
        } else {
            self.read(node, key)
        }
    }

    /// `input`: a mapping, or text holding JSON, sent as the event instead of the
    /// EventBridge shape.
    fn schedule_input(&mut self, node: &Node, key: &str) -> Option<serde_json::Value> {
        let node = self.read_deep(node, key);
        match &node.value {
            Value::Str(text) => match serde_json::from_str(text) {
                Ok(json) => Some(json),
                Err(e) => {
                    self.error(node.pos, key, format!("`input` text must be JSON: {e}"));
                    None
                }
            },
            Value::Invalid => None,
            _ => Some(to_json(&node)),
        }
    }
}

/// A mapping that is a CloudFormation intrinsic (`{ Ref: X }`, `{ Fn::GetAtt: [X, Arn] }`)
/// rather than an event's settings.
pub(super) fn is_reference_map(entries: &[Entry]) -> bool {
    matches!(entries, [entry] if is_intrinsic(&entry.key))
}

fn sqs_defaults(queue: String) -> SqsEvent {
    // Lambda's defaults for SQS event source mappings.
    SqsEvent {
        queue,
        batch_size: 10,
        maximum_batching_window: Duration::ZERO,
        report_batch_item_failures: false,
        maximum_concurrency: None,
        enabled: true,
    }
}
