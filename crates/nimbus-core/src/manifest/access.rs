//! What a function may reach (IAM statements become grants) and where its asynchronous
//! invocations go (retries, destinations and the dead-letter queue).

use std::time::Duration;

use crate::events::{AsyncConfig, Destination, Grant};

use super::references::{is_intrinsic, parse_arn};
use super::resources::PendingDestination;
use super::tree::{Entry, Node, Pos, Value};
use super::{Cx, join_key};

/// The resource patterns nimbus accepts as written.
const NIMBUS_PREFIXES: &[&str] = &[
    "queue:",
    "topic:",
    "bucket:",
    "kv:",
    "function:",
    "table:",
    "stream:",
    "connection:",
];

/// Where a destination is named: `onError` takes only queues and topics.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DestinationUse {
    Destination,
    DeadLetter,
}

impl Cx<'_> {
    /// `provider.iam`: only `role.statements` is modelled.
    pub(super) fn provider_iam(&mut self, node: &Node, key: &str) -> Vec<Grant> {
        let Some(entries) = self.mapping(node, key, "a mapping with `role`") else {
            return Vec::new();
        };
        let mut grants = Vec::new();
        for entry in &entries {
            let entry_key = join_key(key, &entry.key);
            if entry.key != "role" {
                self.warn(entry.key_pos, &entry_key, "not modelled by nimbus; ignored");
                continue;
            }
            // A role named by ARN is ignored unread, so its variables need not resolve.
            if let Value::Str(_) = entry.value.value {
                self.warn(
                    entry.key_pos,
                    &entry_key,
                    "an existing role is not modelled by nimbus; grant access with `iam.role.statements`; ignored",
                );
                continue;
            }
            let Some(fields) =
                self.mapping(&entry.value, &entry_key, "a mapping with `statements`")
            else {
                continue;
            };
            for field in &fields {
                let field_key = join_key(&entry_key, &field.key);
                match field.key.as_str() {
                    "statements" => grants.extend(self.statements(&field.value, &field_key)),
                    _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
                }
            }
        }
        grants
    }

    /// IAM statements: each `Allow` statement becomes a grant of its actions on its
    /// resources, mapped to nimbus's resource patterns (`queue:orders`, `bucket:images/*`).
    pub(super) fn statements(&mut self, node: &Node, key: &str) -> Vec<Grant> {
        let Some(items) = self.sequence(node, key, "a list of IAM statements") else {
            return Vec::new();
        };
        let mut grants = Vec::new();
        for (statement_idx, item) in items.iter().enumerate() {
            let statement_key = format!("{key}[{statement_idx}]");
            let Some(fields) = self.mapping(
                item,
                &statement_key,
                "a statement with `Effect`, `Action` and `Resource`",
            ) else {
                continue;
            };
            let item_pos = self.read(item, &statement_key).pos;
            if let Some(grant) = self.statement(&fields, item_pos, &statement_key) {
                grants.push(grant);
            }
        }
        grants
    }

    fn statement(&mut self, fields: &[Entry], pos: Pos, key: &str) -> Option<Grant> {
        let mut allow = None;
        let mut actions = None;
        let mut resources = None;
        let mut ignored = false;
        for field in fields {
            let field_key = join_key(key, &field.key);
            match field.key.as_str() {
                "Effect" => {
                    let value = self.read(&field.value, &field_key);
                    match self
                        .string(&value, &field_key, "`Allow` or `Deny`")
                        .as_deref()
                    {
                        Some("Allow") => allow = Some(true),
                        Some("Deny") => {
                            self.warn(
                                value.pos,
                                &field_key,
                                "Deny statements are not modelled by nimbus, which grants only what Allow statements list; this statement is ignored",
                            );
                            allow = Some(false);
                        }
                        Some(other) => {
                            let message = format!("expected `Allow` or `Deny`, got {other:?}");
                            self.error(value.pos, &field_key, message);
                        }
                        None => {}
                    }
                }
                "Action" => {
                    actions = self.texts(
                        &field.value,
                        &field_key,
                        "an action such as `sqs:SendMessage`",
                    )
                }
                "Resource" => resources = Some(self.grant_resources(&field.value, &field_key)),
                "Sid" => {}
                // Without these a statement would grant more than it says, so it is dropped.
                "NotAction" | "NotResource" | "Condition" => {
                    self.warn(
                        field.key_pos,
                        &field_key,
                        "not modelled by nimbus; this statement is ignored",
                    );
                    ignored = true;
                }
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        for (field, present) in [
            ("Effect", fields.iter().any(|f| f.key == "Effect")),
            (
                "Action",
                fields
                    .iter()
                    .any(|f| f.key == "Action" || f.key == "NotAction"),
            ),
            (
                "Resource",
                fields
                    .iter()
                    .any(|f| f.key == "Resource" || f.key == "NotResource"),
            ),
        ] {
            if !present {
                self.error(pos, key, format!("missing `{field}`"));
            }
        }
        if ignored || allow != Some(true) {
            return None;
        }
        let resources = resources?;
        if resources.is_empty() {
            return None;
        }
        Some(Grant {
            actions: actions?,
            resources,
        })
    }

    /// A string or a list of strings.
    fn texts(&mut self, node: &Node, key: &str, what: &str) -> Option<Vec<String>> {
        let node = self.read(node, key);
        match node.value {
            Value::Str(text) => Some(vec![text]),
            Value::Seq(items) => {
                let mut texts = Vec::new();
                for (item_idx, item) in items.iter().enumerate() {
                    let item_key = format!("{key}[{item_idx}]");
                    let item = self.read(item, &item_key);
                    texts.push(self.string(&item, &item_key, what)?);
                }
                Some(texts)
            }
            Value::Invalid => None,
            _ => {
                let message = format!("expected {what} or a list of them, got {}", node.describe());
                self.error(node.pos, key, message);
                None
            }
        }
    }

    /// `Resource`: ARNs, `Fn::GetAtt`/`Ref`/`Fn::Sub`/`Fn::Join`, or nimbus patterns, as
    /// nimbus resource patterns. Resources nimbus does not model are warned about.
    fn grant_resources(&mut self, node: &Node, key: &str) -> Vec<String> {
        let read = self.read(node, key);
        let items: Vec<(Node, String)> = match read.value {
            Value::Seq(items) => items
                .into_iter()
                .enumerate()
                .map(|(item_idx, item)| (item, format!("{key}[{item_idx}]")))
                .collect(),
            _ => vec![(node.clone(), key.to_owned())],
        };
        let mut patterns = Vec::new();
        for (item, item_key) in items {
            // A grant on a resource nimbus does not model yet (a DynamoDB table in most
            // apps that keep data) is left out, not refused, so the app still runs.
            if let Some((id, resource_type)) = self.unmodelled_target(&item, &item_key) {
                let message = format!(
                    "`{id}` is a `{resource_type}` resource, which nimbus does not model; this grant leaves it out"
                );
                self.warn(item.pos, &item_key, message);
                continue;
            }
            let Some((text, pos)) = self.reference_text(
                &item,
                &item_key,
                "an ARN, `Fn::GetAtt`, `Ref` or a nimbus resource such as `kv:sessions`",
            ) else {
                continue;
            };
            match self.resource_pattern(&text) {
                Some(pattern) => patterns.push(pattern),
                None => {
                    let message = format!("{text:?} is not a resource nimbus models; ignored");
                    self.warn(pos, &item_key, message);
                }
            }
        }
        patterns
    }

    /// `arn:aws:sqs:*:*:orders` → `queue:orders`, `arn:aws:s3:::images/*` →
    /// `bucket:images/*`, `arn:nimbus:kv:::sessions` → `kv:sessions`,
    /// `arn:aws:dynamodb:*:*:table/todos` → `table:todos` (its stream
    /// `table/todos/stream/*` → `table:todos/stream/*`), `arn:aws:kinesis:*:*:stream/clicks`
    /// → `stream:clicks`, and so on.
    fn resource_pattern(&self, text: &str) -> Option<String> {
        if text == "*"
            || NIMBUS_PREFIXES
                .iter()
                .any(|prefix| text.starts_with(prefix))
        {
            return Some(text.to_owned());
        }
        // `Ref` of a queue gives its URL; AWS wants the ARN here, but the URL names the
        // queue as well.
        if let Some(path) = text.strip_prefix(crate::QUEUE_URL_HOST) {
            return path
                .rsplit('/')
                .next()
                .map(|queue| format!("queue:{queue}"));
        }
        let arn = parse_arn(text)?;
        let kind = match arn.service {
            "sqs" => "queue",
            "sns" => "topic",
            "s3" => "bucket",
            "kv" => "kv",
            // `table/todos` and `table/todos/index/*` → `table:todos`, `table:todos/index/*`.
            "dynamodb" => {
                let table = arn.resource.strip_prefix("table/")?;
                // A table has one change stream here, which any label names (the manifest's
                // `StreamArn` carries a made-up one).
                if let Some((table, _label)) = table.split_once("/stream/") {
                    return Some(format!("table:{table}/stream/*"));
                }
                return Some(format!("table:{table}"));
            }
            // `stream/clicks` → `stream:clicks`.
            "kinesis" => {
                let stream = arn.resource.strip_prefix("stream/")?;
                return Some(format!("stream:{stream}"));
            }
            // `event-bus/orders` → `bus:orders`.
            "events" => {
                let bus = arn.resource.strip_prefix("event-bus/")?;
                return Some(format!("bus:{bus}"));
            }
            // `API/STAGE/POST/@connections/*`: an app has one WebSocket API, so any
            // execute-api ARN grants its connections.
            "execute-api" => return Some("connection:*".to_owned()),
            // `stateMachine:orders` and `execution:orders:*`, as written.
            "states" => return Some(arn.resource.to_owned()),
            "lambda" => {
                let name = arn.resource.strip_prefix("function:")?;
                return Some(format!("function:{}", self.function_name_of(name)));
            }
            _ => return None,
        };
        Some(format!("{kind}:{}", arn.resource))
    }

    /// The manifest name of a deployed function name: `shop-dev-worker:live` → `worker`.
    pub(super) fn function_name_of<'n>(&self, deployed: &'n str) -> &'n str {
        let deployed = deployed.split(':').next().unwrap_or(deployed);
        let prefix = format!("{}-{}-", self.app.service, self.app.stage);
        deployed.strip_prefix(&prefix).unwrap_or(deployed)
    }

    /// `maximumRetryAttempts`, `maximumEventAge`, `destinations` or `onError` of a
    /// function; `false` for any other field.
    pub(super) fn async_field(
        &mut self,
        field: &Entry,
        key: &str,
        config: &mut AsyncConfig,
    ) -> bool {
        let value = &field.value;
        match field.key.as_str() {
            // Lambda's limits for asynchronous invocation.
            "maximumRetryAttempts" => {
                if let Some(n) = self.bounded(value, key, "a whole number of retries", 0, 2) {
                    config.maximum_retry_attempts = n as u32;
                }
            }
            "maximumEventAge" => {
                if let Some(seconds) =
                    self.bounded(value, key, "a whole number of seconds", 60, 21_600)
                {
                    config.maximum_event_age = Duration::from_secs(seconds);
                }
            }
            "destinations" => {
                let Some(entries) =
                    self.mapping(value, key, "a mapping with `onSuccess` and `onFailure`")
                else {
                    return true;
                };
                for entry in &entries {
                    let entry_key = join_key(key, &entry.key);
                    match entry.key.as_str() {
                        "onSuccess" => {
                            config.on_success = self.destination(
                                &entry.value,
                                &entry_key,
                                DestinationUse::Destination,
                            )
                        }
                        "onFailure" => {
                            config.on_failure = self.destination(
                                &entry.value,
                                &entry_key,
                                DestinationUse::Destination,
                            )
                        }
                        _ => {
                            self.warn(entry.key_pos, &entry_key, "not modelled by nimbus; ignored")
                        }
                    }
                }
            }
            "onError" => {
                config.dead_letter = self.destination(value, key, DestinationUse::DeadLetter)
            }
            _ => return false,
        }
        true
    }

    /// A destination: a function of this app by name, an SQS, SNS or Lambda ARN (or an
    /// intrinsic giving one), or `{ type: sqs | sns | function, arn }`. Whether it exists is
    /// checked once every function is read.
    fn destination(
        &mut self,
        node: &Node,
        key: &str,
        usage: DestinationUse,
    ) -> Option<Destination> {
        let read = self.read(node, key);
        let destination = match &read.value {
            Value::Map(entries) if !matches!(entries.as_slice(), [entry] if is_intrinsic(&entry.key)) => {
                self.typed_destination(entries, read.pos, key)?
            }
            _ => {
                let (text, pos) =
                    self.reference_text(node, key, "a function name, an ARN or `{ type, arn }`")?;
                self.destination_of(&text, pos, key)?
            }
        };
        if usage == DestinationUse::DeadLetter && matches!(destination, Destination::Function(_)) {
            self.error(
                read.pos,
                key,
                "`onError` takes an SQS queue or SNS topic ARN, not a function",
            );
            return None;
        }
        self.app.pending_destinations.push(PendingDestination {
            destination: destination.clone(),
            pos: read.pos,
            key: key.to_owned(),
        });
        Some(destination)
    }

    fn typed_destination(&mut self, entries: &[Entry], pos: Pos, key: &str) -> Option<Destination> {
        let mut kind = None;
        let mut arn = None;
        for entry in entries {
            let entry_key = join_key(key, &entry.key);
            match entry.key.as_str() {
                "type" => {
                    let value = self.read(&entry.value, &entry_key);
                    kind = self
                        .string(&value, &entry_key, "sqs, sns or function")
                        .map(|k| (k, value.pos, entry_key));
                }
                "arn" => arn = Some((entry, entry_key)),
                _ => self.warn(entry.key_pos, &entry_key, "not modelled by nimbus; ignored"),
            }
        }
        let Some((kind, kind_pos, kind_key)) = kind else {
            if !entries.iter().any(|e| e.key == "type") {
                self.error(pos, key, "missing `type` (sqs, sns or function)");
            }
            return None;
        };
        let Some((arn, arn_key)) = arn else {
            self.error(pos, key, "missing `arn`");
            return None;
        };
        match kind.as_str() {
            "sqs" => self
                .queue_reference(&arn.value, &arn_key)
                .map(|(name, _)| Destination::Queue(name)),
            "sns" => self
                .topic_reference(&arn.value, &arn_key)
                .map(|(name, _)| Destination::Topic(name)),
            "function" => {
                let (text, pos) =
                    self.reference_text(&arn.value, &arn_key, "a function name or ARN")?;
                match self.destination_of(&text, pos, &arn_key)? {
                    function @ Destination::Function(_) => Some(function),
                    _ => {
                        self.error(
                            pos,
                            &arn_key,
                            format!("expected a function name or Lambda ARN, got {text:?}"),
                        );
                        None
                    }
                }
            }
            "eventBus" => {
                self.error(
                    kind_pos,
                    &kind_key,
                    "EventBridge destinations are not modelled by nimbus; use sqs, sns or function",
                );
                None
            }
            other => {
                self.error(
                    kind_pos,
                    &kind_key,
                    format!("unknown destination type {other:?}; expected sqs, sns or function"),
                );
                None
            }
        }
    }

    fn destination_of(&mut self, text: &str, pos: Pos, key: &str) -> Option<Destination> {
        if !text.starts_with("arn:") {
            return Some(Destination::Function(text.to_owned()));
        }
        let destination = parse_arn(text).and_then(|arn| match arn.service {
            "sqs" => Some(Destination::Queue(arn.resource.to_owned())),
            "sns" => Some(Destination::Topic(arn.resource.to_owned())),
            "lambda" => arn
                .resource
                .strip_prefix("function:")
                .map(|name| Destination::Function(self.function_name_of(name).to_owned())),
            _ => None,
        });
        if destination.is_none() {
            let message = format!("expected an SQS, SNS or Lambda function ARN, got {text:?}");
            self.error(pos, key, message);
        }
        destination
    }
}
