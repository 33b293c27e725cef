//! Declared resources: the `queues:`, `topics:`, `buckets:`, `kv:` and `tables:` sections,
//! the CloudFormation `resources` nimbus models (tables in `tables.rs`).
//!
//! A CloudFormation queue, topic or bucket without an explicit name is named after its
//! logical id (a bucket's lower-cased), where AWS would generate a `stack-LogicalId-XYZ`
//! name: nimbus has no stack, and the logical id is the name people already use.

use std::collections::HashMap;
use std::time::Duration;

use crate::events::{
    AppResources, Destination, FilterScope, QueueSpec, Redrive, Subscription, SubscriptionEndpoint,
    TopicSpec,
};

use super::tree::{Entry, Node, Pos, Value};
use super::{Cx, join_key};

/// What the app declares, built before the functions are read and extended by their
/// `sns` and `s3` events.
#[derive(Default)]
pub(super) struct App {
    pub(super) resources: AppResources,
    /// CloudFormation logical ids and what each declares.
    pub(super) logical_ids: HashMap<String, Logical>,
    /// Where each resource was declared first, for duplicate errors.
    declared_at: HashMap<(Kind, String), Pos>,
    /// The service name, for stripping `service-stage-` from Lambda function ARNs.
    pub(super) service: String,
    pub(super) stage: String,
    /// The region, once the provider is read; empty before.
    pub(super) region: String,
    /// Every key under `functions:`, valid or not, so destinations can name any of them.
    pub(super) function_names: Vec<String>,
    /// Schedule names used so far and where, since they must be unique in the app.
    pub(super) schedule_names: HashMap<String, Pos>,
    /// Destinations to check once every function's events have declared their topics.
    pub(super) pending_destinations: Vec<PendingDestination>,
    /// Lift `static-website` and `single-page-app` constructs.
    pub(super) static_sites: Vec<crate::policy::StaticSite>,
    pub(super) webhooks: Vec<crate::policy::Webhook>,
}

/// A destination named by a function, checked after all functions are read.
pub(super) struct PendingDestination {
    pub(super) destination: Destination,
    pub(super) pos: Pos,
    pub(super) key: String,
}

/// The top-level sections that declare resources.
#[derive(Default)]
pub(super) struct Sections<'a> {
    pub(super) queues: Option<&'a Entry>,
    pub(super) topics: Option<&'a Entry>,
    pub(super) buckets: Option<&'a Entry>,
    pub(super) kv: Option<&'a Entry>,
    pub(super) tables: Option<&'a Entry>,
    pub(super) streams: Option<&'a Entry>,
    pub(super) resources: Option<&'a Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Queue,
    Topic,
    Bucket,
    Kv,
    Table,
    Stream,
}

/// What a CloudFormation logical id declares.
#[derive(Debug, Clone)]
pub(super) enum Logical {
    Queue(String),
    Topic(String),
    Bucket(String),
    Table(String),
    /// An `AWS::Kinesis::Stream`, by its name.
    Stream(String),
    /// An `AWS::Events::EventBus`, by its name.
    EventBus(String),
    /// A state machine of `stepFunctions:` or `workflows:`, by its name.
    StateMachine(String),
    /// A resource type nimbus does not model.
    Other(String),
}

/// Checks that wait until every section has been read.
#[derive(Default)]
struct Later {
    /// Dead-letter queues named by redrive policies: declared implicitly when missing.
    redrives: Vec<LaterRedrive>,
    /// Queues that topic subscriptions deliver to: they must be declared.
    subscribed_queues: Vec<(String, Pos, String)>,
}

struct LaterRedrive {
    source_fifo: bool,
    dead_letter_queue: String,
    pos: Pos,
    key: String,
}

const QUEUE_HINT: &str = "add it under `queues:` or `resources`";

impl Kind {
    pub(super) fn noun(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Topic => "topic",
            Kind::Bucket => "bucket",
            Kind::Kv => "KV namespace",
            Kind::Table => "table",
            Kind::Stream => "stream",
        }
    }
}

impl Logical {
    /// The ARN CloudFormation's `Fn::GetAtt: [Id, Arn]` would give, with `*` for the
    /// region and account nimbus does not have.
    pub(super) fn arn(&self) -> Option<String> {
        match self {
            Logical::Queue(name) => Some(format!("arn:aws:sqs:*:*:{name}")),
            Logical::Topic(name) => Some(format!("arn:aws:sns:*:*:{name}")),
            Logical::Bucket(name) => Some(format!("arn:aws:s3:::{name}")),
            Logical::Table(name) => Some(crate::tables::table_arn("*", name)),
            Logical::Stream(name) => Some(crate::streams::stream_arn("*", name)),
            Logical::EventBus(name) => Some(format!("arn:aws:events:*:*:event-bus/{name}")),
            Logical::StateMachine(name) => Some(Logical::state_machine_arn(name, "")),
            Logical::Other(_) => None,
        }
    }
}

impl Cx<'_> {
    /// Reads every declaring section into `self.app.resources`.
    pub(super) fn declarations(&mut self, sections: &Sections<'_>) {
        let mut later = Later::default();
        if let Some(entry) = sections.resources {
            self.cloudformation(entry, &mut later);
        }
        if let Some(entry) = sections.queues {
            for (name, node, pos, key) in self.named_items(entry) {
                self.queue_section_item(&name, node.as_ref(), pos, &key, &mut later);
            }
        }
        if let Some(entry) = sections.topics {
            for (name, node, pos, key) in self.named_items(entry) {
                self.topic_section_item(&name, node.as_ref(), pos, &key, &mut later);
            }
        }
        for (entry, kind) in [(sections.buckets, Kind::Bucket), (sections.kv, Kind::Kv)] {
            let Some(entry) = entry else { continue };
            for (name, node, pos, key) in self.named_items(entry) {
                if let Some(node) = node {
                    self.no_options(&node, &key);
                }
                self.declare_simple(kind, &name, pos, &key);
            }
        }
        if let Some(entry) = sections.tables {
            for (name, node, pos, key) in self.named_items(entry) {
                self.table_section_item(&name, node.as_ref(), pos, &key);
            }
        }
        if let Some(entry) = sections.streams {
            for (name, node, pos, key) in self.named_items(entry) {
                self.stream_section_item(&name, node.as_ref(), pos, &key);
            }
        }
        for redrive in later.redrives {
            let exists = self
                .app
                .resources
                .queues
                .iter()
                .any(|queue| queue.name == redrive.dead_letter_queue);
            if !exists
                && self.check_name(
                    Kind::Queue,
                    &redrive.dead_letter_queue,
                    redrive.pos,
                    &redrive.key,
                )
            {
                // The dead-letter queue is declared implicitly, with SQS's defaults.
                self.app
                    .resources
                    .queues
                    .push(QueueSpec::with_defaults(&redrive.dead_letter_queue));
            }
            // SQS requires a FIFO queue's dead-letter queue to be FIFO too.
            if redrive.source_fifo && !redrive.dead_letter_queue.ends_with(".fifo") {
                let message = format!(
                    "the dead-letter queue of a FIFO queue must be FIFO too; `{}` does not end in .fifo",
                    redrive.dead_letter_queue
                );
                self.error(redrive.pos, &redrive.key, message);
            }
        }
        for (queue, pos, key) in later.subscribed_queues {
            self.require_declared(Kind::Queue, &queue, pos, &key);
        }
    }

    /// Reports a resource that neither a section nor `resources` declares.
    pub(super) fn require_declared(&mut self, kind: Kind, name: &str, pos: Pos, key: &str) -> bool {
        let declared = match kind {
            Kind::Queue => self.app.resources.queues.iter().any(|q| q.name == name),
            Kind::Topic => self.app.resources.topics.iter().any(|t| t.name == name),
            Kind::Bucket => self.app.resources.buckets.iter().any(|b| b == name),
            Kind::Kv => self.app.resources.kv_namespaces.iter().any(|n| n == name),
            Kind::Table => self.app.resources.tables.iter().any(|t| t.name == name),
            Kind::Stream => self.app.resources.streams.iter().any(|s| s.name == name),
        };
        if !declared {
            let hint = match kind {
                Kind::Queue => QUEUE_HINT,
                Kind::Topic => {
                    "add it under `topics:` or `resources`, or subscribe a function to it"
                }
                Kind::Bucket => "add it under `buckets:` or `resources`",
                Kind::Kv => "add it under `kv:`",
                Kind::Table => "add it under `tables:` or `resources`",
                Kind::Stream => "add it under `streams:` or `resources`",
            };
            self.error(
                pos,
                key,
                format!("{} `{name}` is not declared; {hint}", kind.noun()),
            );
        }
        declared
    }

    /// Declares a topic an `sns` event names, unless it is declared already.
    pub(super) fn declare_implicit_topic(&mut self, name: &str) {
        if !self.app.resources.topics.iter().any(|t| t.name == name) {
            self.app.resources.topics.push(TopicSpec {
                name: name.to_owned(),
                subscriptions: Vec::new(),
            });
        }
    }

    /// Declares a bucket an `s3` event names, unless it is declared already.
    pub(super) fn declare_implicit_bucket(&mut self, name: &str) {
        if !self.app.resources.buckets.iter().any(|b| b == name) {
            self.app.resources.buckets.push(name.to_owned());
        }
    }

    /// `resources:` — only `Resources` of the modelled types are read.
    fn cloudformation(&mut self, entry: &Entry, later: &mut Later) {
        let Some(sections) = self.mapping(&entry.value, "resources", "a mapping with `Resources`")
        else {
            return;
        };
        let resources = sections.iter().find(|section| section.key == "Resources");
        for section in &sections {
            let key = join_key("resources", &section.key);
            match section.key.as_str() {
                "Resources" => {}
                "Outputs" => self.warn(
                    section.key_pos,
                    &key,
                    "CloudFormation outputs are not modelled by nimbus; `${cf:..}` references resolve by logical id; ignored",
                ),
                _ => self.warn(section.key_pos, &key, "not modelled by nimbus; ignored"),
            }
        }
        let Some(resources) = resources else { return };
        let Some(entries) = self.mapping(
            &resources.value,
            "resources.Resources",
            "a mapping of logical ids to resources",
        ) else {
            return;
        };
        // First every logical id and its name, so references may point forwards.
        let mut typed = Vec::new();
        for entry in &entries {
            let key = join_key("resources.Resources", &entry.key);
            let node = self.read(&entry.value, &key);
            let Some(type_entry) = node.get("Type") else {
                let message = match node.value {
                    Value::Map(_) => "missing `Type`, as in `Type: AWS::SQS::Queue`".to_owned(),
                    _ => format!(
                        "expected a resource with `Type` and `Properties`, got {}",
                        node.describe()
                    ),
                };
                let pos = if matches!(node.value, Value::Map(_)) {
                    entry.key_pos
                } else {
                    node.pos
                };
                self.error(pos, &key, message);
                continue;
            };
            let type_key = join_key(&key, "Type");
            let type_node = self.read(&type_entry.value, &type_key);
            let Some(resource_type) = self.string(&type_node, &type_key, "a resource type") else {
                continue;
            };
            let properties = node.get("Properties").map(|p| p.value.clone());
            let props_key = join_key(&key, "Properties");
            let props = match &properties {
                Some(p) => self
                    .mapping(p, &props_key, "a mapping of properties")
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let name = |field: &str, cx: &mut Self| -> Option<String> {
                let entry = props.iter().find(|e| e.key == field)?;
                let field_key = join_key(&props_key, field);
                let value = cx.read(&entry.value, &field_key);
                cx.string(&value, &field_key, "a name")
            };
            let flag = |field: &str, cx: &mut Self| -> bool {
                props.iter().find(|e| e.key == field).is_some_and(|e| {
                    let field_key = join_key(&props_key, field);
                    cx.boolean(&e.value, &field_key).unwrap_or(false)
                })
            };
            let logical = match resource_type.as_str() {
                "AWS::SQS::Queue" => Logical::Queue(
                    name("QueueName", self)
                        .unwrap_or_else(|| fifo_default(&entry.key, flag("FifoQueue", self))),
                ),
                "AWS::SNS::Topic" => Logical::Topic(
                    name("TopicName", self)
                        .unwrap_or_else(|| fifo_default(&entry.key, flag("FifoTopic", self))),
                ),
                "AWS::S3::Bucket" => Logical::Bucket(
                    name("BucketName", self).unwrap_or_else(|| entry.key.to_ascii_lowercase()),
                ),
                "AWS::DynamoDB::Table" => {
                    Logical::Table(name("TableName", self).unwrap_or_else(|| entry.key.clone()))
                }
                "AWS::Kinesis::Stream" => {
                    Logical::Stream(name("Name", self).unwrap_or_else(|| entry.key.clone()))
                }
                "AWS::Events::EventBus" => {
                    Logical::EventBus(name("Name", self).unwrap_or_else(|| entry.key.clone()))
                }
                other => Logical::Other(other.to_owned()),
            };
            self.app
                .logical_ids
                .insert(entry.key.clone(), logical.clone());
            typed.push((entry, node, logical, type_node.pos, props));
        }
        for (entry, node, logical, type_pos, props) in typed {
            let key = join_key("resources.Resources", &entry.key);
            if let Value::Map(fields) = &node.value {
                for field in fields {
                    match field.key.as_str() {
                        "Type" | "Properties" => {}
                        // Ordering means nothing to nimbus, which creates everything at once.
                        "DependsOn" => {}
                        _ => self.warn(
                            field.key_pos,
                            &join_key(&key, &field.key),
                            "not modelled by nimbus; ignored",
                        ),
                    }
                }
            }
            let props_key = join_key(&key, "Properties");
            match logical {
                Logical::Queue(name) => {
                    self.cf_queue(&name, &props, entry.key_pos, &props_key, later);
                }
                Logical::Topic(name) => {
                    self.cf_topic(&name, &props, entry.key_pos, &props_key, later)
                }
                Logical::Bucket(name) => {
                    for prop in &props {
                        if prop.key != "BucketName" {
                            self.warn(
                                prop.key_pos,
                                &join_key(&props_key, &prop.key),
                                "not modelled by nimbus; ignored",
                            );
                        }
                    }
                    self.declare_simple(Kind::Bucket, &name, entry.key_pos, &key);
                }
                Logical::Table(name) => self.cf_table(&name, &props, entry.key_pos, &props_key),
                Logical::Stream(name) => self.cf_stream(&name, &props, entry.key_pos, &props_key),
                Logical::EventBus(name) => {
                    for prop in &props {
                        if prop.key != "Name" {
                            self.warn(
                                prop.key_pos,
                                &join_key(&props_key, &prop.key),
                                "not modelled by nimbus; ignored",
                            );
                        }
                    }
                    self.declare_event_bus(&name);
                }
                // Declared by `stepFunctions:`, never by a CloudFormation resource.
                Logical::StateMachine(_) => {}
                Logical::Other(resource_type) if resource_type == "AWS::SNS::Subscription" => {
                    self.cf_subscription(&props, entry.key_pos, &props_key, later);
                }
                Logical::Other(resource_type) => {
                    let message =
                        format!("`{resource_type}` resources are not modelled by nimbus; ignored");
                    self.warn(type_pos, &join_key(&key, "Type"), message);
                }
            }
        }
    }

    fn cf_queue(&mut self, name: &str, props: &[Entry], pos: Pos, key: &str, later: &mut Later) {
        let mut spec = QueueSpec::with_defaults(name);
        let mut fifo = None;
        let mut dedup = None;
        let mut redrive = None;
        for prop in props {
            let prop_key = join_key(key, &prop.key);
            let value = &prop.value;
            match prop.key.as_str() {
                "QueueName" => {}
                "VisibilityTimeout" => {
                    spec.visibility_timeout = self
                        .seconds(value, &prop_key, 0, 43_200)
                        .unwrap_or(spec.visibility_timeout);
                }
                "DelaySeconds" => {
                    spec.delay = self.seconds(value, &prop_key, 0, 900).unwrap_or(spec.delay)
                }
                "MessageRetentionPeriod" => {
                    spec.retention = self
                        .seconds(value, &prop_key, 60, 1_209_600)
                        .unwrap_or(spec.retention);
                }
                "FifoQueue" => fifo = self.boolean(value, &prop_key).map(|f| (f, prop.key_pos)),
                "ContentBasedDeduplication" => {
                    dedup = self.boolean(value, &prop_key).map(|d| (d, prop.key_pos))
                }
                "RedrivePolicy" => redrive = Some(prop),
                _ => self.warn(prop.key_pos, &prop_key, "not modelled by nimbus; ignored"),
            }
        }
        let fifo_flag = fifo.is_some_and(|(f, _)| f);
        if fifo_flag != name.ends_with(".fifo") {
            match fifo {
                Some((true, fifo_pos)) => {
                    let message =
                        format!("a FIFO queue's name must end in .fifo, as in `{name}.fifo`");
                    self.error(fifo_pos, &join_key(key, "FifoQueue"), message);
                }
                _ => {
                    let message = format!("queue `{name}` ends in .fifo; set `FifoQueue: true`");
                    self.error(pos, key, message);
                }
            }
        }
        if let Some((true, dedup_pos)) = dedup {
            if fifo_flag {
                spec.content_based_deduplication = true;
            } else {
                self.error(
                    dedup_pos,
                    &join_key(key, "ContentBasedDeduplication"),
                    "ContentBasedDeduplication needs `FifoQueue: true`",
                );
            }
        }
        if let Some(prop) = redrive {
            let redrive_key = join_key(key, "RedrivePolicy");
            spec.redrive = self.redrive(
                &prop.value,
                &redrive_key,
                "deadLetterTargetArn",
                spec.is_fifo(),
                later,
            );
        }
        self.declare_queue(spec, pos, key);
    }

    /// A redrive policy: `{ <target_key>: reference, maxReceiveCount: n }`.
    fn redrive(
        &mut self,
        node: &Node,
        key: &str,
        target_key: &str,
        source_fifo: bool,
        later: &mut Later,
    ) -> Option<Redrive> {
        let what = format!("a mapping with `{target_key}` and `maxReceiveCount`");
        let entries = self.mapping(node, key, &what)?;
        let mut target = None;
        let mut max_receive_count = None;
        for entry in &entries {
            let entry_key = join_key(key, &entry.key);
            if entry.key == target_key {
                target = self
                    .queue_reference(&entry.value, &entry_key)
                    .map(|(name, pos)| (name, pos, entry_key));
            } else if entry.key == "maxReceiveCount" {
                max_receive_count = self.bounded(
                    &entry.value,
                    &entry_key,
                    "a whole number of receives",
                    1,
                    1000,
                );
            } else {
                self.warn(entry.key_pos, &entry_key, "not modelled by nimbus; ignored");
            }
        }
        let node = self.read(node, key);
        for (field, found) in [
            (target_key, target.is_some()),
            ("maxReceiveCount", max_receive_count.is_some()),
        ] {
            if !found && !entries.iter().any(|e| e.key == field) {
                self.error(node.pos, key, format!("missing `{field}`"));
            }
        }
        let (dead_letter_queue, pos, target_key) = target?;
        later.redrives.push(LaterRedrive {
            source_fifo,
            dead_letter_queue: dead_letter_queue.clone(),
            pos,
            key: target_key,
        });
        Some(Redrive {
            dead_letter_queue,
            max_receive_count: u32::try_from(max_receive_count?).ok()?,
        })
    }

    fn cf_topic(&mut self, name: &str, props: &[Entry], pos: Pos, key: &str, later: &mut Later) {
        let mut subscriptions = Vec::new();
        let mut fifo = None;
        for prop in props {
            let prop_key = join_key(key, &prop.key);
            match prop.key.as_str() {
                "TopicName" => {}
                "FifoTopic" => {
                    fifo = self
                        .boolean(&prop.value, &prop_key)
                        .map(|f| (f, prop.key_pos))
                }
                "Subscription" => {
                    let Some(items) =
                        self.sequence(&prop.value, &prop_key, "a list of `{ Endpoint, Protocol }`")
                    else {
                        continue;
                    };
                    for (item_idx, item) in items.iter().enumerate() {
                        let item_key = format!("{prop_key}[{item_idx}]");
                        let Some(fields) = self.mapping(
                            item,
                            &item_key,
                            "a mapping with `Endpoint` and `Protocol`",
                        ) else {
                            continue;
                        };
                        let read_item = self.read(item, &item_key);
                        if let Some(subscription) =
                            self.cf_endpoint(&fields, read_item.pos, &item_key, later)
                        {
                            subscriptions.push(subscription);
                        }
                    }
                }
                _ => self.warn(prop.key_pos, &prop_key, "not modelled by nimbus; ignored"),
            }
        }
        let fifo_flag = fifo.is_some_and(|(f, _)| f);
        if fifo_flag != name.ends_with(".fifo") {
            let message = if fifo_flag {
                format!("a FIFO topic's name must end in .fifo, as in `{name}.fifo`")
            } else {
                format!("topic `{name}` ends in .fifo; set `FifoTopic: true`")
            };
            match fifo {
                Some((_, fifo_pos)) => self.error(fifo_pos, &join_key(key, "FifoTopic"), message),
                None => self.error(pos, key, message),
            }
        }
        if self.check_name(Kind::Topic, name, pos, key) && self.declare(Kind::Topic, name, pos, key)
        {
            self.app.resources.topics.push(TopicSpec {
                name: name.to_owned(),
                subscriptions,
            });
        }
    }

    /// `AWS::SNS::Subscription`: `TopicArn`, `Protocol`, `Endpoint` and the delivery options.
    fn cf_subscription(&mut self, props: &[Entry], pos: Pos, key: &str, later: &mut Later) {
        let topic = match props.iter().find(|p| p.key == "TopicArn") {
            Some(prop) => {
                let prop_key = join_key(key, "TopicArn");
                self.topic_reference(&prop.value, &prop_key)
                    .map(|(name, pos)| (name, pos, prop_key))
            }
            None => {
                self.error(pos, key, "missing `TopicArn`");
                None
            }
        };
        let rest: Vec<Entry> = props
            .iter()
            .filter(|p| p.key != "TopicArn")
            .cloned()
            .collect();
        let Some(subscription) = self.cf_endpoint(&rest, pos, key, later) else {
            return;
        };
        let Some((topic, topic_pos, topic_key)) = topic else {
            return;
        };
        // A subscription to a topic known only by ARN declares it, as an `sns` event does.
        if !self.app.resources.topics.iter().any(|t| t.name == topic)
            && self.check_name(Kind::Topic, &topic, topic_pos, &topic_key)
        {
            self.declare_implicit_topic(&topic);
        }
        if let Some(spec) = self
            .app
            .resources
            .topics
            .iter_mut()
            .find(|t| t.name == topic)
        {
            spec.subscriptions.push(subscription);
        }
    }

    /// `Protocol` and `Endpoint` of a subscription, with `FilterPolicy`,
    /// `FilterPolicyScope` and `RawMessageDelivery`.
    fn cf_endpoint(
        &mut self,
        fields: &[Entry],
        pos: Pos,
        key: &str,
        later: &mut Later,
    ) -> Option<Subscription> {
        let mut protocol = None;
        let mut endpoint = None;
        let mut subscription = Subscription {
            endpoint: SubscriptionEndpoint::Http(String::new()),
            filter_policy: None,
            filter_scope: FilterScope::MessageAttributes,
            raw_message_delivery: false,
        };
        for field in fields {
            let field_key = join_key(key, &field.key);
            match field.key.as_str() {
                "Protocol" => {
                    let value = self.read(&field.value, &field_key);
                    protocol = self
                        .string(&value, &field_key, "a protocol")
                        .map(|p| (p, value.pos, field_key));
                }
                "Endpoint" => endpoint = Some((field, field_key)),
                "FilterPolicy" => {
                    subscription.filter_policy = self.filter_policy(&field.value, &field_key)
                }
                "FilterPolicyScope" => {
                    subscription.filter_scope = self.filter_scope(&field.value, &field_key)
                }
                "RawMessageDelivery" => {
                    subscription.raw_message_delivery =
                        self.boolean(&field.value, &field_key).unwrap_or(false);
                }
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        let Some((protocol, protocol_pos, protocol_key)) = protocol else {
            if !fields.iter().any(|f| f.key == "Protocol") {
                self.error(pos, key, "missing `Protocol`");
            }
            return None;
        };
        let Some((endpoint, endpoint_key)) = endpoint else {
            self.error(pos, key, "missing `Endpoint`");
            return None;
        };
        subscription.endpoint = match protocol.as_str() {
            "sqs" => {
                let (queue, queue_pos) = self.queue_reference(&endpoint.value, &endpoint_key)?;
                later
                    .subscribed_queues
                    .push((queue.clone(), queue_pos, endpoint_key));
                SubscriptionEndpoint::Queue(queue)
            }
            "http" | "https" => {
                let value = self.read(&endpoint.value, &endpoint_key);
                let url = self.string(&value, &endpoint_key, "a URL")?;
                if !url.starts_with(&format!("{protocol}://")) {
                    self.error(
                        value.pos,
                        &endpoint_key,
                        format!("expected an {protocol}:// URL, got {url:?}"),
                    );
                    return None;
                }
                SubscriptionEndpoint::Http(url)
            }
            "lambda" => {
                self.warn(
                    protocol_pos,
                    &protocol_key,
                    "subscribe functions with an `sns` event on the function; this subscription is ignored",
                );
                return None;
            }
            other => {
                let message = format!(
                    "`{other}` subscriptions are not modelled by nimbus (only sqs, http and https); ignored"
                );
                self.warn(protocol_pos, &protocol_key, message);
                return None;
            }
        };
        Some(subscription)
    }

    /// One entry of the `queues:` section.
    fn queue_section_item(
        &mut self,
        name: &str,
        node: Option<&Node>,
        pos: Pos,
        key: &str,
        later: &mut Later,
    ) {
        let mut spec = QueueSpec::with_defaults(name);
        let mut fifo = None;
        let mut dedup = None;
        let mut redrive = None;
        let fields = match node {
            Some(node) => self
                .mapping(node, key, "a mapping of queue settings")
                .unwrap_or_default(),
            None => Vec::new(),
        };
        for field in &fields {
            let field_key = join_key(key, &field.key);
            let value = &field.value;
            match field.key.as_str() {
                "visibilityTimeout" => {
                    spec.visibility_timeout = self
                        .seconds(value, &field_key, 0, 43_200)
                        .unwrap_or(spec.visibility_timeout);
                }
                "delaySeconds" => {
                    spec.delay = self
                        .seconds(value, &field_key, 0, 900)
                        .unwrap_or(spec.delay)
                }
                "messageRetentionPeriod" => {
                    spec.retention = self
                        .seconds(value, &field_key, 60, 1_209_600)
                        .unwrap_or(spec.retention);
                }
                "fifo" => fifo = self.boolean(value, &field_key).map(|f| (f, field.key_pos)),
                "contentBasedDeduplication" => {
                    dedup = self.boolean(value, &field_key).map(|d| (d, field.key_pos))
                }
                "deadLetterQueue" => redrive = Some(field),
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        // A name ending in .fifo makes a FIFO queue; `fifo: true` without it is a mistake.
        match fifo {
            Some((true, fifo_pos)) if !name.ends_with(".fifo") => {
                let message =
                    format!("a FIFO queue's name must end in .fifo; name it `{name}.fifo`");
                self.error(fifo_pos, &join_key(key, "fifo"), message);
            }
            Some((false, fifo_pos)) if name.ends_with(".fifo") => {
                let message = format!(
                    "queue `{name}` ends in .fifo, which makes it a FIFO queue; remove `fifo: false`"
                );
                self.error(fifo_pos, &join_key(key, "fifo"), message);
            }
            _ => {}
        }
        if let Some((true, dedup_pos)) = dedup {
            if spec.is_fifo() {
                spec.content_based_deduplication = true;
            } else {
                self.error(
                    dedup_pos,
                    &join_key(key, "contentBasedDeduplication"),
                    "contentBasedDeduplication needs a FIFO queue (a name ending in .fifo)",
                );
            }
        }
        if let Some(field) = redrive {
            let redrive_key = join_key(key, "deadLetterQueue");
            spec.redrive = self.redrive(&field.value, &redrive_key, "name", spec.is_fifo(), later);
        }
        self.declare_queue(spec, pos, key);
    }

    /// One entry of the `topics:` section.
    fn topic_section_item(
        &mut self,
        name: &str,
        node: Option<&Node>,
        pos: Pos,
        key: &str,
        later: &mut Later,
    ) {
        let fields = match node {
            Some(node) => self
                .mapping(node, key, "a mapping with `subscriptions`")
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let mut subscriptions = Vec::new();
        for field in &fields {
            let field_key = join_key(key, &field.key);
            match field.key.as_str() {
                "subscriptions" => {
                    let Some(items) = self.sequence(
                        &field.value,
                        &field_key,
                        "a list of subscriptions such as `{ queue: audit }`",
                    ) else {
                        continue;
                    };
                    for (item_idx, item) in items.iter().enumerate() {
                        let item_key = format!("{field_key}[{item_idx}]");
                        if let Some(subscription) =
                            self.section_subscription(item, &item_key, later)
                        {
                            subscriptions.push(subscription);
                        }
                    }
                }
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        if self.check_name(Kind::Topic, name, pos, key) && self.declare(Kind::Topic, name, pos, key)
        {
            self.app.resources.topics.push(TopicSpec {
                name: name.to_owned(),
                subscriptions,
            });
        }
    }

    /// `{ queue: name }` or `{ http(s): url }`, with `filterPolicy`, `filterPolicyScope`
    /// and `rawMessageDelivery`.
    fn section_subscription(
        &mut self,
        node: &Node,
        key: &str,
        later: &mut Later,
    ) -> Option<Subscription> {
        let fields = self.mapping(
            node,
            key,
            "a subscription such as `{ queue: audit }` or `{ http: \"http://host/hook\" }`",
        )?;
        let mut endpoint = None;
        let mut subscription = Subscription {
            endpoint: SubscriptionEndpoint::Http(String::new()),
            filter_policy: None,
            filter_scope: FilterScope::MessageAttributes,
            raw_message_delivery: false,
        };
        let mut n_endpoints = 0;
        for field in &fields {
            let field_key = join_key(key, &field.key);
            match field.key.as_str() {
                "queue" => {
                    n_endpoints += 1;
                    if let Some((queue, pos)) = self.queue_reference(&field.value, &field_key) {
                        later
                            .subscribed_queues
                            .push((queue.clone(), pos, field_key));
                        endpoint = Some(SubscriptionEndpoint::Queue(queue));
                    }
                }
                scheme @ ("http" | "https") => {
                    n_endpoints += 1;
                    let value = self.read(&field.value, &field_key);
                    let Some(url) = self.string(&value, &field_key, "a URL") else {
                        continue;
                    };
                    if url.starts_with(&format!("{scheme}://")) {
                        endpoint = Some(SubscriptionEndpoint::Http(url));
                    } else {
                        self.error(
                            value.pos,
                            &field_key,
                            format!("expected an {scheme}:// URL, got {url:?}"),
                        );
                    }
                }
                "filterPolicy" => {
                    subscription.filter_policy = self.filter_policy(&field.value, &field_key)
                }
                "filterPolicyScope" => {
                    subscription.filter_scope = self.filter_scope(&field.value, &field_key)
                }
                "rawMessageDelivery" => {
                    subscription.raw_message_delivery =
                        self.boolean(&field.value, &field_key).unwrap_or(false);
                }
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        if n_endpoints != 1 {
            let node = self.read(node, key);
            self.error(
                node.pos,
                key,
                "a subscription names exactly one of `queue`, `http` or `https`",
            );
            return None;
        }
        subscription.endpoint = endpoint?;
        Some(subscription)
    }

    /// `name: settings` entries of a mapping, or the names of a list; the node is `None`
    /// for a list item or a null value.
    fn named_items(&mut self, entry: &Entry) -> Vec<(String, Option<Node>, Pos, String)> {
        let key = entry.key.clone();
        let node = self.read(&entry.value, &key);
        match node.value {
            Value::Map(entries) => entries
                .into_iter()
                .map(|e| {
                    let item_key = join_key(&key, &e.key);
                    let value = match e.value.value {
                        Value::Null => None,
                        _ => Some(e.value),
                    };
                    (e.key, value, e.key_pos, item_key)
                })
                .collect(),
            Value::Seq(items) => {
                let mut named = Vec::new();
                for (item_idx, item) in items.iter().enumerate() {
                    let item_key = format!("{key}[{item_idx}]");
                    let item = self.read(item, &item_key);
                    if let Some(name) = self.string(&item, &item_key, "a name") {
                        named.push((name, None, item.pos, item_key));
                    }
                }
                named
            }
            Value::Null | Value::Invalid => Vec::new(),
            _ => {
                let message = format!(
                    "expected a list of names or a mapping from names to settings, got {}",
                    node.describe()
                );
                self.error(node.pos, &key, message);
                Vec::new()
            }
        }
    }

    /// A bucket or KV namespace takes no settings yet; any given is warned about.
    fn no_options(&mut self, node: &Node, key: &str) {
        if let Some(fields) = self.mapping(node, key, "a mapping of settings") {
            for field in fields {
                self.warn(
                    field.key_pos,
                    &join_key(key, &field.key),
                    "not modelled by nimbus; ignored",
                );
            }
        }
    }

    pub(super) fn declare_simple(&mut self, kind: Kind, name: &str, pos: Pos, key: &str) {
        if self.check_name(kind, name, pos, key) && self.declare(kind, name, pos, key) {
            match kind {
                Kind::Bucket => self.app.resources.buckets.push(name.to_owned()),
                Kind::Kv => self.app.resources.kv_namespaces.push(name.to_owned()),
                Kind::Queue | Kind::Topic | Kind::Table | Kind::Stream => {}
            }
        }
    }

    /// Declares a table, once.
    pub(super) fn declare_table(&mut self, spec: crate::tables::TableSpec, pos: Pos, key: &str) {
        if self.check_name(Kind::Table, &spec.name, pos, key)
            && self.declare(Kind::Table, &spec.name, pos, key)
        {
            self.app.resources.tables.push(spec);
        }
    }

    pub(super) fn declare_queue(&mut self, spec: QueueSpec, pos: Pos, key: &str) {
        if self.check_name(Kind::Queue, &spec.name, pos, key)
            && self.declare(Kind::Queue, &spec.name, pos, key)
        {
            self.app.resources.queues.push(spec);
        }
    }

    /// Records where `name` is declared; `false` (and an error) if it already was.
    pub(super) fn declare(&mut self, kind: Kind, name: &str, pos: Pos, key: &str) -> bool {
        if let Some(first) = self.app.declared_at.get(&(kind, name.to_owned())) {
            let message = format!(
                "{} `{name}` is already declared at line {}",
                kind.noun(),
                first.line
            );
            self.error(pos, key, message);
            return false;
        }
        self.app.declared_at.insert((kind, name.to_owned()), pos);
        true
    }

    /// Checks a name against the rules of its kind (SQS, SNS and S3 naming rules; KV
    /// namespaces follow function names).
    pub(super) fn check_name(&mut self, kind: Kind, name: &str, pos: Pos, key: &str) -> bool {
        let word_chars = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        let (valid, rule) = match kind {
            Kind::Queue => {
                let base = name.strip_suffix(".fifo").unwrap_or(name);
                (
                    !base.is_empty() && name.len() <= 80 && word_chars(base),
                    "1 to 80 letters, digits, `-` and `_`, with an optional .fifo suffix",
                )
            }
            Kind::Topic => {
                let base = name.strip_suffix(".fifo").unwrap_or(name);
                (
                    !base.is_empty() && name.len() <= 256 && word_chars(base),
                    "1 to 256 letters, digits, `-` and `_`, with an optional .fifo suffix",
                )
            }
            Kind::Bucket => (
                (3..=63).contains(&name.len())
                    && name.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
                    })
                    && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && name.ends_with(|c: char| c.is_ascii_alphanumeric())
                    && !name.contains(".."),
                "3 to 63 lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit",
            ),
            Kind::Kv => (
                !name.is_empty() && name.len() <= 64 && word_chars(name),
                "1 to 64 letters, digits, `-` and `_`",
            ),
            Kind::Stream => (
                (1..=128).contains(&name.len())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
                "1 to 128 letters, digits, `-`, `_` and `.`",
            ),
            Kind::Table => (
                (3..=255).contains(&name.len())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
                "3 to 255 letters, digits, `-`, `_` and `.`",
            ),
        };
        if !valid {
            self.error(
                pos,
                key,
                format!("{} name {name:?} is invalid; use {rule}", kind.noun()),
            );
            return false;
        }
        if kind == Kind::Queue && name.starts_with(crate::events::INTERNAL_QUEUE_PREFIX) {
            let prefix = crate::events::INTERNAL_QUEUE_PREFIX;
            self.error(
                pos,
                key,
                format!("queue name {name:?} starts with `{prefix}`, which nimbus keeps for its own queues; choose another name"),
            );
            return false;
        }
        true
    }

    /// A destination's target, checked once every function has declared its topics.
    pub(super) fn check_destinations(&mut self) {
        for pending in std::mem::take(&mut self.app.pending_destinations) {
            match &pending.destination {
                Destination::Queue(name) => {
                    self.require_declared(Kind::Queue, name, pending.pos, &pending.key);
                }
                Destination::Topic(name) => {
                    self.require_declared(Kind::Topic, name, pending.pos, &pending.key);
                }
                Destination::Function(name) => {
                    if !self.app.function_names.iter().any(|f| f == name) {
                        let message = format!("function `{name}` is not a function of this app");
                        self.error(pending.pos, &pending.key, message);
                    }
                }
            }
        }
    }

    /// A mapping's entries; null is an empty mapping. `None` after reporting anything else.
    pub(super) fn mapping(&mut self, node: &Node, key: &str, what: &str) -> Option<Vec<Entry>> {
        let node = self.read(node, key);
        match node.value {
            Value::Map(entries) => Some(entries),
            Value::Null => Some(Vec::new()),
            Value::Invalid => None,
            _ => {
                self.error(
                    node.pos,
                    key,
                    format!("expected {what}, got {}", node.describe()),
                );
                None
            }
        }
    }

    /// A sequence's items; null is empty. `None` after reporting anything else.
    pub(super) fn sequence(&mut self, node: &Node, key: &str, what: &str) -> Option<Vec<Node>> {
        let node = self.read(node, key);
        match node.value {
            Value::Seq(items) => Some(items),
            Value::Null => Some(Vec::new()),
            Value::Invalid => None,
            _ => {
                self.error(
                    node.pos,
                    key,
                    format!("expected {what}, got {}", node.describe()),
                );
                None
            }
        }
    }

    /// `true` or `false` (also as text, since values from `${env:..}` are text).
    pub(super) fn boolean(&mut self, node: &Node, key: &str) -> Option<bool> {
        let node = self.read(node, key);
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if s == "true" || s == "false" => Some(s == "true"),
            Value::Invalid => None,
            _ => {
                self.error(
                    node.pos,
                    key,
                    format!("expected true or false, got {}", node.describe()),
                );
                None
            }
        }
    }

    /// A whole number from `min` to `max`.
    pub(super) fn bounded(
        &mut self,
        node: &Node,
        key: &str,
        what: &str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let node = self.read(node, key);
        let n = self.whole_number(&node, key, what)?;
        if (min..=max).contains(&n) {
            Some(n)
        } else {
            self.error(
                node.pos,
                key,
                format!("{n} is out of range; expected {min} to {max}"),
            );
            None
        }
    }

    /// Whole seconds from `min` to `max`.
    pub(super) fn seconds(
        &mut self,
        node: &Node,
        key: &str,
        min: u64,
        max: u64,
    ) -> Option<Duration> {
        self.bounded(node, key, "a whole number of seconds", min, max)
            .map(Duration::from_secs)
    }

    /// An SNS filter policy: a mapping (or JSON text holding one), kept as JSON.
    pub(super) fn filter_policy(&mut self, node: &Node, key: &str) -> Option<serde_json::Value> {
        let node = self.read_deep(node, key);
        match &node.value {
            Value::Map(_) => Some(to_json(&node)),
            Value::Str(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(json) if json.is_object() => Some(json),
                _ => {
                    self.error(
                        node.pos,
                        key,
                        "expected a filter policy mapping such as `{ kind: [order] }`",
                    );
                    None
                }
            },
            Value::Invalid => None,
            _ => {
                let message = format!(
                    "expected a filter policy mapping such as `{{ kind: [order] }}`, got {}",
                    node.describe()
                );
                self.error(node.pos, key, message);
                None
            }
        }
    }

    pub(super) fn filter_scope(&mut self, node: &Node, key: &str) -> FilterScope {
        let node = self.read(node, key);
        match self
            .string(&node, key, "`MessageAttributes` or `MessageBody`")
            .as_deref()
        {
            Some("MessageAttributes") | None => FilterScope::MessageAttributes,
            Some("MessageBody") => FilterScope::MessageBody,
            Some(other) => {
                let message =
                    format!("expected `MessageAttributes` or `MessageBody`, got {other:?}");
                self.error(node.pos, key, message);
                FilterScope::MessageAttributes
            }
        }
    }
}

/// The JSON a (deeply read) node stands for.
pub(super) fn to_json(node: &Node) -> serde_json::Value {
    match &node.value {
        Value::Null | Value::Invalid => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Str(s) => serde_json::Value::String(s.clone()),
        Value::Seq(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|entry| (entry.key.clone(), to_json(&entry.value)))
                .collect(),
        ),
    }
}

/// The name of a queue or topic without an explicit one: its logical id, with `.fifo`
/// appended for a FIFO one, as AWS appends it to generated names.
fn fifo_default(logical_id: &str, fifo: bool) -> String {
    if fifo {
        format!("{logical_id}.fifo")
    } else {
        logical_id.to_owned()
    }
}

impl Cx<'_> {
    /// Declares an EventBridge bus (`default` always exists).
    pub(super) fn declare_event_bus(&mut self, name: &str) {
        if name != "default" && !self.app.resources.event_buses.iter().any(|b| b == name) {
            self.app.resources.event_buses.push(name.to_owned());
        }
    }
}
