//! Streams: `AWS::Kinesis::Stream` resources, the `streams:` section, and functions'
//! `stream` events (with the `dynamodb: { stream }` spelling some apps use).
//!
//! A `stream` event names a table's change stream or a data stream by ARN (a string, an
//! intrinsic such as `Fn::GetAtt: [Table, StreamArn]`, or `${cf:..}`) or by name with a
//! `type`. Defaults are the Serverless Framework's (`batchSize: 10`,
//! `startingPosition: TRIM_HORIZON`), since its apps are written against them.

use std::time::Duration;

use crate::events::{Destination, EventSource, StartingPosition, StreamEvent};
use crate::streams::{MAX_SHARDS, StreamKind, StreamSpec, table_stream};

use super::references::parse_arn;
use super::resources::Kind;
use super::tree::{Entry, Node, Pos, Value};
use super::{Cx, join_key};

/// The shards of an on-demand Kinesis stream here (Kinesis starts one at 4).
const ON_DEMAND_SHARDS: u32 = 4;

impl Cx<'_> {
    /// `AWS::Kinesis::Stream`: Name, ShardCount, RetentionPeriodHours, StreamModeDetails.
    pub(super) fn cf_stream(&mut self, name: &str, props: &[Entry], pos: Pos, key: &str) {
        let mut spec = StreamSpec::data(name, 1);
        let mut on_demand = false;
        let mut shard_count = None;
        for prop in props {
            let prop_key = join_key(key, &prop.key);
            match prop.key.as_str() {
                "Name" => {}
                "ShardCount" => {
                    shard_count = self
                        .bounded(
                            &prop.value,
                            &prop_key,
                            "a whole number of shards",
                            1,
                            MAX_SHARDS.into(),
                        )
                        .map(|n| n as u32)
                }
                "RetentionPeriodHours" => {
                    if let Some(hours) =
                        self.bounded(&prop.value, &prop_key, "a whole number of hours", 24, 8760)
                    {
                        spec.retention = Duration::from_secs(hours * 3600);
                    }
                }
                "StreamModeDetails" => {
                    let Some(fields) =
                        self.mapping(&prop.value, &prop_key, "a mapping with `StreamMode`")
                    else {
                        continue;
                    };
                    for field in fields {
                        let field_key = join_key(&prop_key, &field.key);
                        if field.key != "StreamMode" {
                            self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored");
                            continue;
                        }
                        let value = self.read(&field.value, &field_key);
                        match self
                            .string(&value, &field_key, "ON_DEMAND or PROVISIONED")
                            .as_deref()
                        {
                            Some("ON_DEMAND") => on_demand = true,
                            Some("PROVISIONED") | None => {}
                            Some(other) => {
                                let message =
                                    format!("expected ON_DEMAND or PROVISIONED, got {other:?}");
                                self.error(value.pos, &field_key, message);
                            }
                        }
                    }
                }
                // Encryption and tags mean nothing on one machine.
                "StreamEncryption" | "Tags" => {}
                _ => self.warn(prop.key_pos, &prop_key, "not modelled by nimbus; ignored"),
            }
        }
        spec.shards = match (shard_count, on_demand) {
            (Some(n), _) => n,
            (None, true) => ON_DEMAND_SHARDS,
            (None, false) => 1,
        };
        self.declare_stream(spec, pos, key);
    }

    /// `streams: { NAME: { shards, retentionHours } }` in nimbus.yaml (a bare name: one
    /// shard, 24 hours).
    pub(super) fn stream_section_item(
        &mut self,
        name: &str,
        node: Option<&Node>,
        pos: Pos,
        key: &str,
    ) {
        let mut spec = StreamSpec::data(name, 1);
        if let Some(node) = node
            && let Some(fields) = self.mapping(node, key, "a mapping with `shards`")
        {
            for field in &fields {
                let field_key = join_key(key, &field.key);
                match field.key.as_str() {
                    "shards" => {
                        if let Some(n) = self.bounded(
                            &field.value,
                            &field_key,
                            "a whole number of shards",
                            1,
                            MAX_SHARDS.into(),
                        ) {
                            spec.shards = n as u32;
                        }
                    }
                    "retentionHours" => {
                        if let Some(hours) = self.bounded(
                            &field.value,
                            &field_key,
                            "a whole number of hours",
                            1,
                            8760,
                        ) {
                            spec.retention = Duration::from_secs(hours * 3600);
                        }
                    }
                    _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
                }
            }
        }
        self.declare_stream(spec, pos, key);
    }

    fn declare_stream(&mut self, spec: StreamSpec, pos: Pos, key: &str) {
        if self.check_name(Kind::Stream, &spec.name, pos, key)
            && self.declare(Kind::Stream, &spec.name, pos, key)
        {
            self.app.resources.streams.push(spec);
        }
    }

    /// `stream: ARN` or `stream: { arn, type, batchSize, ... }`.
    pub(super) fn stream_event(&mut self, node: &Node, key: &str) -> Option<EventSource> {
        let read = self.read_event(node, key);
        let fields = match &read.value {
            Value::Map(entries) if !super::sources::is_reference_map(entries) => entries.clone(),
            _ => {
                let stream = self.stream_reference(node, key, None)?;
                return Some(EventSource::Stream(stream_defaults(stream)));
            }
        };
        let mut kind = None;
        for field in &fields {
            if field.key == "type" {
                let field_key = join_key(key, "type");
                let value = self.read(&field.value, &field_key);
                match self
                    .string(&value, &field_key, "`dynamodb` or `kinesis`")
                    .as_deref()
                {
                    Some("dynamodb") => kind = Some(StreamKind::Table),
                    Some("kinesis") => kind = Some(StreamKind::Data),
                    Some(other) => {
                        let message = format!("expected `dynamodb` or `kinesis`, got {other:?}");
                        self.error(value.pos, &field_key, message);
                    }
                    None => {}
                }
            }
        }
        let mut event = stream_defaults(String::new());
        let mut stream = None;
        for field in &fields {
            let field_key = join_key(key, &field.key);
            let value = &field.value;
            match field.key.as_str() {
                "type" => {}
                "arn" | "stream" => stream = self.stream_reference(value, &field_key, kind),
                "batchSize" => {
                    if let Some(n) =
                        self.bounded(value, &field_key, "a whole number of records", 1, 10_000)
                    {
                        event.batch_size = n as u32;
                    }
                }
                "batchWindow" | "maximumBatchingWindow" => {
                    if let Some(window) = self.seconds(value, &field_key, 0, 300) {
                        event.batch_window = window;
                    }
                }
                "startingPosition" => {
                    let value = self.read(value, &field_key);
                    match self
                        .string(&value, &field_key, "LATEST, TRIM_HORIZON or AT_TIMESTAMP")
                        .as_deref()
                    {
                        Some("LATEST") => event.starting_position = StartingPosition::Latest,
                        Some("TRIM_HORIZON") => {
                            event.starting_position = StartingPosition::TrimHorizon
                        }
                        Some("AT_TIMESTAMP")
                            if !matches!(
                                event.starting_position,
                                StartingPosition::AtTimestamp(_)
                            ) =>
                        {
                            event.starting_position = StartingPosition::AtTimestamp(0)
                        }
                        Some("AT_TIMESTAMP") => {}
                        Some(other) => {
                            let message = format!(
                                "expected LATEST, TRIM_HORIZON or AT_TIMESTAMP, got {other:?}"
                            );
                            self.error(value.pos, &field_key, message);
                        }
                        None => {}
                    }
                }
                "startingPositionTimestamp" => {
                    if let Some(secs) = self.bounded(
                        value,
                        &field_key,
                        "seconds since the Unix epoch",
                        0,
                        u64::from(u32::MAX),
                    ) {
                        event.starting_position = StartingPosition::AtTimestamp(secs);
                    }
                }
                "maximumRetryAttempts" => {
                    let node = self.read(value, &field_key);
                    if matches!(&node.value, Value::Int(-1))
                        || matches!(&node.value, Value::Str(s) if s == "-1")
                    {
                        event.maximum_retry_attempts = None;
                    } else if let Some(n) = self.bounded(
                        &node,
                        &field_key,
                        "-1 or a whole number of retries",
                        0,
                        10_000,
                    ) {
                        event.maximum_retry_attempts = Some(n as u32);
                    }
                }
                "maximumRecordAgeInSeconds" => {
                    let node = self.read(value, &field_key);
                    if matches!(&node.value, Value::Int(-1))
                        || matches!(&node.value, Value::Str(s) if s == "-1")
                    {
                        event.maximum_record_age = None;
                    } else if let Some(age) = self.seconds(&node, &field_key, 60, 604_800) {
                        event.maximum_record_age = Some(age);
                    }
                }
                "bisectBatchOnFunctionError" => {
                    event.bisect_on_error = self.boolean(value, &field_key).unwrap_or(false)
                }
                "functionResponseType" => {
                    if self.function_response_type(value, &field_key) {
                        event.report_batch_item_failures = true;
                    }
                }
                "parallelizationFactor" => {
                    if let Some(n) =
                        self.bounded(value, &field_key, "a whole number of batches", 1, 10)
                    {
                        event.parallelization_factor = n as u32;
                    }
                }
                "destinations" => event.on_failure = self.stream_destination(value, &field_key),
                "filterPatterns" => {
                    let Some(items) = self.sequence(value, &field_key, "a list of patterns") else {
                        continue;
                    };
                    for (idx, item) in items.iter().enumerate() {
                        let item_key = format!("{field_key}[{idx}]");
                        if let Some(pattern) = self.filter_policy(item, &item_key) {
                            event.filter_patterns.push(pattern);
                        }
                    }
                }
                "enabled" => event.enabled = self.boolean(value, &field_key).unwrap_or(true),
                "tumblingWindowInSeconds" | "consumer" | "startingPositionTimestampNanos" => {
                    self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored")
                }
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        if let StartingPosition::AtTimestamp(0) = event.starting_position
            && !fields.iter().any(|f| f.key == "startingPositionTimestamp")
        {
            self.error(
                read.pos,
                &join_key(key, "startingPosition"),
                "AT_TIMESTAMP needs `startingPositionTimestamp` (seconds since the Unix epoch)",
            );
        }
        if !fields.iter().any(|f| f.key == "arn" || f.key == "stream") {
            self.error(
                read.pos,
                key,
                "missing `arn`; name the stream, as in `arn: { Fn::GetAtt: [TodosTable, StreamArn] }`",
            );
        }
        event.stream = stream?;
        Some(EventSource::Stream(event))
    }

    /// The seed's `dynamodb: { stream: ARN, startingPosition }`: a `stream` event of type
    /// dynamodb, accepted with a warning naming the standard spelling.
    pub(super) fn dynamodb_event(
        &mut self,
        node: &Node,
        key: &str,
        key_pos: Pos,
    ) -> Option<EventSource> {
        self.warn(
            key_pos,
            key,
            "not a Serverless Framework event; read as `stream: { type: dynamodb, arn: .. }`",
        );
        let fields = self.mapping(node, key, "a mapping with `stream`")?;
        let mut rewritten: Vec<Entry> = fields.into_iter().filter(|f| f.key != "type").collect();
        rewritten.push(Entry {
            key: "type".to_owned(),
            key_pos,
            value: Node {
                value: Value::Str("dynamodb".to_owned()),
                pos: key_pos,
                resolved: true,
            },
        });
        let node = Node {
            value: Value::Map(rewritten),
            pos: key_pos,
            resolved: true,
        };
        self.stream_event(&node, key)
    }

    /// `destinations: { onFailure: ARN | name | { arn, type: sqs | sns } }`.
    fn stream_destination(&mut self, node: &Node, key: &str) -> Option<Destination> {
        let fields = self.mapping(node, key, "a mapping with `onFailure`")?;
        let mut destination = None;
        for field in &fields {
            let field_key = join_key(key, &field.key);
            if field.key != "onFailure" {
                self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored");
                continue;
            }
            let value = self.read_event(&field.value, &field_key);
            let (target, kind) = match &value.value {
                Value::Map(entries) if !super::sources::is_reference_map(entries) => {
                    let arn = entries.iter().find(|e| e.key == "arn");
                    let kind = entries.iter().find(|e| e.key == "type").and_then(|e| {
                        let node = self.read(&e.value, &join_key(&field_key, "type"));
                        self.string(&node, &join_key(&field_key, "type"), "`sqs` or `sns`")
                    });
                    let Some(arn) = arn else {
                        self.error(value.pos, &field_key, "missing `arn`");
                        continue;
                    };
                    (arn.value.clone(), kind)
                }
                _ => (field.value.clone(), None),
            };
            let (text, pos) = self.reference_text(&target, &field_key, "a queue or topic")?;
            let is_topic = kind.as_deref() == Some("sns")
                || parse_arn(&text).is_some_and(|arn| arn.service == "sns");
            destination = if is_topic {
                self.topic_reference(&target, &field_key)
                    .and_then(|(name, pos)| {
                        self.require_declared(Kind::Topic, &name, pos, &field_key)
                            .then_some(Destination::Topic(name))
                    })
            } else {
                let _ = pos;
                self.queue_reference(&target, &field_key)
                    .and_then(|(name, pos)| {
                        self.require_declared(Kind::Queue, &name, pos, &field_key)
                            .then_some(Destination::Queue(name))
                    })
            };
        }
        destination
    }

    /// The stream an event names: a table stream ARN (or a table ARN), a Kinesis ARN, or
    /// a name (a table with `type: dynamodb`, else a declared stream or table).
    fn stream_reference(
        &mut self,
        node: &Node,
        key: &str,
        kind: Option<StreamKind>,
    ) -> Option<String> {
        let (text, pos) = self.reference_text(node, key, "a stream ARN or name")?;
        if text.starts_with("arn:") {
            let arn = parse_arn(&text);
            let resource = arn.as_ref().map(|arn| (arn.service, arn.resource));
            let stream = match resource {
                Some(("dynamodb", resource)) => resource
                    .strip_prefix("table/")
                    .map(|rest| rest.split('/').next().unwrap_or(rest))
                    .map(|table| (StreamKind::Table, table.to_owned())),
                Some(("kinesis", resource)) => resource
                    .strip_prefix("stream/")
                    .map(|name| (StreamKind::Data, name.to_owned())),
                _ => None,
            };
            let Some((found, name)) = stream else {
                let message =
                    format!("expected a DynamoDB table stream or Kinesis stream ARN, got {text:?}");
                self.error(pos, key, message);
                return None;
            };
            if let Some(kind) = kind
                && kind != found
            {
                self.error(
                    pos,
                    key,
                    "the ARN's service does not match the event's `type`",
                );
                return None;
            }
            return self.declared_stream(found, &name, pos, key);
        }
        // A name, or a logical id of a declared table or stream.
        let name = match self.app.logical_ids.get(&text) {
            Some(
                super::resources::Logical::Table(name) | super::resources::Logical::Stream(name),
            ) => name.clone(),
            _ => text,
        };
        let is_table = self.app.resources.tables.iter().any(|t| t.name == name);
        let is_stream = self.app.resources.streams.iter().any(|s| s.name == name);
        let found = match kind {
            Some(kind) => kind,
            None if is_stream => StreamKind::Data,
            None if is_table => StreamKind::Table,
            None => {
                let message = format!(
                    "`{name}` is neither a declared stream nor a table; declare it under `streams:`, `tables:` or `resources`"
                );
                self.error(pos, key, message);
                return None;
            }
        };
        self.declared_stream(found, &name, pos, key)
    }

    /// The store name of a declared table's change stream or data stream; an error when
    /// it is not declared, or the table has no stream.
    fn declared_stream(
        &mut self,
        kind: StreamKind,
        name: &str,
        pos: Pos,
        key: &str,
    ) -> Option<String> {
        if name.contains('*') {
            let message = format!(
                "a stream reference cannot hold a wildcard or an unresolved `${{..}}`: {name:?}"
            );
            self.error(pos, key, message);
            return None;
        }
        match kind {
            StreamKind::Data => self
                .require_declared(Kind::Stream, name, pos, key)
                .then(|| name.to_owned()),
            StreamKind::Table => {
                let table = self.app.resources.tables.iter().find(|t| t.name == name);
                match table {
                    Some(table) if table.stream_view.is_some() => Some(table_stream(name)),
                    Some(_) => {
                        let message = format!(
                            "table `{name}` has no stream; give it `StreamSpecification: {{ StreamViewType: NEW_AND_OLD_IMAGES }}` (or `stream:` under `tables:`)"
                        );
                        self.error(pos, key, message);
                        None
                    }
                    None => {
                        self.require_declared(Kind::Table, name, pos, key);
                        None
                    }
                }
            }
        }
    }
}

/// The Serverless Framework's defaults for a `stream` event.
fn stream_defaults(stream: String) -> StreamEvent {
    StreamEvent {
        stream,
        batch_size: 10,
        batch_window: Duration::ZERO,
        starting_position: StartingPosition::TrimHorizon,
        maximum_retry_attempts: None,
        maximum_record_age: None,
        bisect_on_error: false,
        report_batch_item_failures: false,
        parallelization_factor: 1,
        on_failure: None,
        filter_patterns: Vec::new(),
        enabled: true,
    }
}
