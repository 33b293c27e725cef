//! References to declared resources: names, ARNs, `${cf:..}` outputs and the CloudFormation
//! intrinsics `Ref`, `Fn::GetAtt`, `Fn::Sub` and `Fn::Join`.
//!
//! `${cf:stack.Output}` references resolve by taking the output's name (with or without an
//! `Arn`, `Url` or `Name` suffix) as a logical id or, failing that, as the resource's name,
//! since nimbus has no stack outputs to look up.

use std::collections::HashMap;

use super::resources::{Kind, Logical};
use super::tree::{Entry, Node, Pos, Value};
use super::{Cx, join_key};

/// The parts of an ARN, `arn:partition:service:region:account:resource`.
pub(super) struct Arn<'a> {
    pub(super) service: &'a str,
    pub(super) resource: &'a str,
}

const REFERENCE: &str =
    "a name, an ARN, `{ Ref: LogicalId }` or `{ Fn::GetAtt: [LogicalId, Arn] }`";

impl Cx<'_> {
    /// A queue reference: a name, `arn:aws:sqs:REGION:ACCOUNT:name`, `Ref` or
    /// `Fn::GetAtt` of a declared queue, or `${cf:stack.Output}`. The queue's name and
    /// the reference's position; whether it is declared is left to the caller.
    pub(super) fn queue_reference(&mut self, node: &Node, key: &str) -> Option<(String, Pos)> {
        self.named_reference(node, key, Kind::Queue, "sqs")
    }

    /// A topic reference, like [`Self::queue_reference`] with `arn:aws:sns:..`.
    pub(super) fn topic_reference(&mut self, node: &Node, key: &str) -> Option<(String, Pos)> {
        self.named_reference(node, key, Kind::Topic, "sns")
    }

    /// A bucket reference: a name, `arn:aws:s3:::name` or `Ref` of a declared bucket.
    pub(super) fn bucket_reference(&mut self, node: &Node, key: &str) -> Option<(String, Pos)> {
        self.named_reference(node, key, Kind::Bucket, "s3")
    }

    fn named_reference(
        &mut self,
        node: &Node,
        key: &str,
        kind: Kind,
        service: &str,
    ) -> Option<(String, Pos)> {
        let (text, pos) = self.reference_text(node, key, REFERENCE)?;
        // A queue URL (`Ref` of a queue gives one) names the queue by its last segment.
        let text = match (kind, text.strip_prefix(crate::QUEUE_URL_HOST)) {
            (Kind::Queue, Some(path)) => path.rsplit('/').next().unwrap_or(path).to_owned(),
            _ => text,
        };
        let name = if text.starts_with("arn:") {
            match parse_arn(&text) {
                Some(arn) if arn.service == service && !arn.resource.is_empty() => {
                    arn.resource.to_owned()
                }
                _ => {
                    let message = format!(
                        "expected a {} ARN such as `{}`, got {text:?}",
                        kind.noun(),
                        match kind {
                            Kind::Queue => "arn:aws:sqs:us-east-1:123456789012:orders",
                            Kind::Topic => "arn:aws:sns:us-east-1:123456789012:events",
                            _ => "arn:aws:s3:::images",
                        }
                    );
                    self.error(pos, key, message);
                    return None;
                }
            }
        } else {
            text
        };
        // A plain name that is no declared resource but is a logical id names that resource.
        let declared = match kind {
            Kind::Queue => self.app.resources.queues.iter().any(|q| q.name == name),
            Kind::Topic => self.app.resources.topics.iter().any(|t| t.name == name),
            Kind::Bucket => self.app.resources.buckets.contains(&name),
            Kind::Kv => true,
            Kind::Table => self.app.resources.tables.iter().any(|t| t.name == name),
            Kind::Stream => self.app.resources.streams.iter().any(|s| s.name == name),
        };
        let by_logical_id = match (kind, self.app.logical_ids.get(&name)) {
            (Kind::Queue, Some(Logical::Queue(real)))
            | (Kind::Topic, Some(Logical::Topic(real)))
            | (Kind::Bucket, Some(Logical::Bucket(real)))
                if !declared =>
            {
                Some(real.clone())
            }
            _ => None,
        };
        let name = by_logical_id.unwrap_or(name);
        if name.contains('*') {
            let message = format!(
                "a {} reference cannot hold a wildcard or an unresolved `${{..}}`: {name:?}",
                kind.noun()
            );
            self.error(pos, key, message);
            return None;
        }
        Some((name, pos))
    }

    /// The text a string or CloudFormation intrinsic stands for: `Ref`, `Fn::GetAtt`,
    /// `Fn::Sub` and `Fn::Join` of declared resources evaluate to their ARNs (a bucket's
    /// `Ref` to its name), with `*` for the region and account nimbus does not have.
    pub(super) fn reference_text(
        &mut self,
        node: &Node,
        key: &str,
        what: &str,
    ) -> Option<(String, Pos)> {
        if let Value::Str(text) = &node.value
            && !node.resolved
            && let Some((stack, output)) = cf_output(text)
        {
            let resolved = self
                .cf_logical(stack, output)
                .and_then(Logical::arn)
                .or_else(|| bare_attribute(output).then(|| stack.to_owned()))
                .unwrap_or_else(|| output.to_owned());
            return Some((resolved, node.pos));
        }
        let node = self.read(node, key);
        let text = match &node.value {
            Value::Str(text) => Some(without_placeholders(text)),
            Value::Map(entries) if entries.len() == 1 && is_intrinsic(&entries[0].key) => {
                self.intrinsic(&entries[0], node.pos, key)
            }
            Value::Invalid => None,
            _ => {
                let message = format!("expected {what}, got {}", node.describe());
                self.error(node.pos, key, message);
                None
            }
        };
        text.map(|text| (text, node.pos))
    }

    /// What `${cf:stack.output}` stands for as a value: the ARN of the declared resource
    /// the output (or the stack) is named after, or a declared resource's name when the
    /// stack is named after it and the output is a bare attribute (`${cf:orders.Arn}`).
    pub(super) fn cf_value(&self, address: &str) -> Option<String> {
        let (stack, output) = address.rsplit_once('.')?;
        let (stack, output) = (stack.trim(), output.trim());
        if let Some(arn) = self.cf_logical(stack, output).and_then(Logical::arn) {
            return Some(arn);
        }
        if !bare_attribute(output) {
            return None;
        }
        let resources = &self.app.resources;
        let logical = if resources.queues.iter().any(|q| q.name == stack) {
            Logical::Queue(stack.to_owned())
        } else if resources.topics.iter().any(|t| t.name == stack) {
            Logical::Topic(stack.to_owned())
        } else if resources.buckets.iter().any(|b| *b == stack) {
            Logical::Bucket(stack.to_owned())
        } else {
            return None;
        };
        if output.ends_with("Name") {
            Some(stack.to_owned())
        } else {
            logical.arn()
        }
    }

    /// The resource a stack output refers to. Outputs are usually named after their
    /// resource (`OrdersQueueArn` for `OrdersQueue`), so the name without an `Arn`, `Url` or
    /// `Name` suffix is tried too; then the stack's own name, for stacks named after the
    /// one resource they hold (`${cf:order-queue.Arn}`).
    fn cf_logical(&self, stack: &str, output: &str) -> Option<&Logical> {
        let candidates = ["", "StreamArn", "Arn", "Url", "Name"]
            .iter()
            .filter_map(|suffix| output.strip_suffix(suffix).filter(|id| !id.is_empty()));
        candidates
            .chain(bare_attribute(output).then_some(stack))
            .find_map(|id| {
                self.app
                    .logical_ids
                    .get(id)
                    .filter(|logical| logical.arn().is_some())
            })
    }

    /// The logical id and type of the resource a `Ref` or `Fn::GetAtt` points at, when it
    /// is one nimbus does not model (a DynamoDB table, a Kinesis stream, ...).
    pub(super) fn unmodelled_target(&mut self, node: &Node, key: &str) -> Option<(String, String)> {
        let node = self.read(node, key);
        let Value::Map(entries) = &node.value else {
            return None;
        };
        let [entry] = entries.as_slice() else {
            return None;
        };
        let target = self.read(&entry.value, key);
        let id = match (entry.key.as_str(), &target.value) {
            ("Ref", Value::Str(id)) => id.clone(),
            ("Fn::GetAtt", Value::Str(path)) => {
                path.split('.').next().unwrap_or_default().to_owned()
            }
            ("Fn::GetAtt", Value::Seq(items)) => match items.first().map(|item| &item.value) {
                Some(Value::Str(id)) => id.clone(),
                _ => return None,
            },
            _ => return None,
        };
        match self.app.logical_ids.get(&id) {
            Some(Logical::Other(resource_type)) => Some((id, resource_type.clone())),
            _ => None,
        }
    }

    fn intrinsic(&mut self, entry: &Entry, pos: Pos, key: &str) -> Option<String> {
        let entry_key = join_key(key, &entry.key);
        let value = self.read(&entry.value, &entry_key);
        let res = match (entry.key.as_str(), &value.value) {
            ("Ref", Value::Str(id)) => self.ref_value(id),
            ("Fn::GetAtt", Value::Str(path)) => match path.split_once('.') {
                Some((id, attribute)) => self.get_att(id, attribute),
                None => Err(format!("expected `LogicalId.Attribute`, got {path:?}")),
            },
            ("Fn::GetAtt", Value::Seq(parts)) => match parts.as_slice() {
                [
                    Node {
                        value: Value::Str(id),
                        ..
                    },
                    Node {
                        value: Value::Str(attribute),
                        ..
                    },
                ] => self.get_att(id, attribute),
                _ => Err("expected `[LogicalId, Attribute]`".to_owned()),
            },
            ("Fn::Sub", Value::Str(template)) => self.sub(template, &HashMap::new()),
            ("Fn::Sub", Value::Seq(parts)) => match parts.as_slice() {
                [
                    Node {
                        value: Value::Str(template),
                        ..
                    },
                    vars,
                ] => {
                    let vars_key = format!("{entry_key}[1]");
                    let mut values = HashMap::new();
                    for var in self
                        .mapping(vars, &vars_key, "a mapping of variables")
                        .unwrap_or_default()
                    {
                        let var_key = join_key(&vars_key, &var.key);
                        if let Some((text, _)) = self.reference_text(&var.value, &var_key, "text") {
                            values.insert(var.key.clone(), text);
                        }
                    }
                    self.sub(template, &values)
                }
                _ => Err("expected a template, or `[template, { variables }]`".to_owned()),
            },
            ("Fn::Join", Value::Seq(parts)) => match parts.as_slice() {
                [
                    Node {
                        value: Value::Str(separator),
                        ..
                    },
                    Node {
                        value: Value::Seq(items),
                        ..
                    },
                ] => {
                    let mut texts = Vec::new();
                    for (item_idx, item) in items.iter().enumerate() {
                        let item_key = format!("{entry_key}[1][{item_idx}]");
                        texts.push(self.reference_text(item, &item_key, "text")?.0);
                    }
                    Ok(texts.join(separator))
                }
                _ => Err("expected `[separator, [parts...]]`".to_owned()),
            },
            ("Ref" | "Fn::GetAtt" | "Fn::Sub" | "Fn::Join", Value::Invalid) => return None,
            ("Ref" | "Fn::GetAtt" | "Fn::Sub" | "Fn::Join", _) => {
                Err(format!("unexpected {}", value.describe()))
            }
            (other, _) => Err(format!(
                "nimbus does not evaluate `{other}`; write the name or ARN, or use Ref, Fn::GetAtt, Fn::Sub or Fn::Join"
            )),
        };
        match res {
            Ok(text) => Some(text),
            Err(message) => {
                self.error(pos, &entry_key, message);
                None
            }
        }
    }

    pub(super) fn ref_value(&self, id: &str) -> Result<String, String> {
        if id == "AWS::Partition" {
            return Ok("aws".to_owned());
        }
        if id.starts_with("AWS::") {
            return Ok("*".to_owned());
        }
        // The Serverless Framework's logical id of the app's WebSocket API, which IAM
        // statements name for `execute-api:ManageConnections`; its id stands for any.
        if id == "WebsocketsApi" && !self.app.logical_ids.contains_key(id) {
            return Ok("*".to_owned());
        }
        match self.app.logical_ids.get(id) {
            // `Ref` of a bucket or table is its name; of a topic its ARN; of a queue its URL.
            Some(Logical::Bucket(name) | Logical::Table(name) | Logical::Stream(name)) => {
                Ok(name.clone())
            }
            Some(Logical::Queue(name)) => Ok(crate::queue_url(name)),
            Some(Logical::EventBus(name)) => Ok(name.clone()),
            Some(Logical::StateMachine(name)) => {
                Ok(Logical::state_machine_arn(name, &self.app.region))
            }
            Some(logical @ Logical::Topic(_)) => Ok(logical.arn().unwrap_or_default()),
            Some(Logical::Other(resource_type)) => Err(format!(
                "`{id}` is a `{resource_type}` resource, which nimbus does not model"
            )),
            None => Err(format!(
                "`{id}` is not declared under `resources.Resources`"
            )),
        }
    }

    pub(super) fn get_att(&self, id: &str, attribute: &str) -> Result<String, String> {
        let logical = match self.app.logical_ids.get(id) {
            Some(logical) => logical,
            None => {
                return Err(format!(
                    "`{id}` is not declared under `resources.Resources`"
                ));
            }
        };
        match (logical, attribute) {
            (Logical::Queue(name), "QueueUrl") => Ok(crate::queue_url(name)),
            (Logical::Queue(_), "Arn")
            | (Logical::Topic(_), "TopicArn")
            | (Logical::Bucket(_), "Arn") => Ok(logical.arn().unwrap_or_default()),
            (Logical::Queue(name), "QueueName") | (Logical::Topic(name), "TopicName") => {
                Ok(name.clone())
            }
            (Logical::Table(name), "Arn") => Ok(self.table_arn(name)),
            (Logical::Stream(_), "Arn") => Ok(logical.arn().unwrap_or_default()),
            (Logical::EventBus(_), "Arn") => Ok(logical.arn().unwrap_or_default()),
            (Logical::EventBus(name), "Name") => Ok(name.clone()),
            (Logical::StateMachine(name), "Name") => Ok(name.clone()),
            (Logical::StateMachine(name), "Arn") => {
                Ok(Logical::state_machine_arn(name, &self.app.region))
            }
            // The label is the table's creation time on AWS; nimbus accepts any label.
            (Logical::Table(name), "StreamArn") => Ok(format!(
                "{}/stream/1970-01-01T00:00:00.000",
                self.table_arn(name)
            )),
            (Logical::Other(resource_type), _) => Err(format!(
                "`{id}` is a `{resource_type}` resource, which nimbus does not model"
            )),
            (_, other) => Err(format!(
                "nimbus does not model the `{other}` attribute of `{id}`; use `Arn`"
            )),
        }
    }

    /// A table's ARN, in the app's region (`*` while the provider is not read yet).
    fn table_arn(&self, table: &str) -> String {
        let region = if self.app.region.is_empty() {
            "*"
        } else {
            &self.app.region
        };
        crate::tables::table_arn(region, table)
    }

    /// `Fn::Sub`: `${LogicalId}`, `${LogicalId.Attribute}`, `${AWS::Region}` and the
    /// template's own variables; `${!Literal}` stays `${Literal}`.
    fn sub(&self, template: &str, vars: &HashMap<String, String>) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("unterminated `${{` in {template:?}"));
            };
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str(&format!("${{{literal}}}"));
            } else if let Some(value) = vars.get(name) {
                out.push_str(value);
            } else if let Some((id, attribute)) = name.split_once('.') {
                out.push_str(&self.get_att(id, attribute)?);
            } else {
                out.push_str(&self.ref_value(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// `arn:partition:service:region:account:resource`; the resource may hold `:` and `/`.
pub(super) fn parse_arn(text: &str) -> Option<Arn<'_>> {
    let mut parts = text.splitn(6, ':');
    let (
        Some("arn"),
        Some(_partition),
        Some(service),
        Some(_region),
        Some(_account),
        Some(resource),
    ) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    )
    else {
        return None;
    };
    Some(Arn { service, resource })
}

/// `Ref` or `Fn::..`, the keys of CloudFormation intrinsic functions.
pub(super) fn is_intrinsic(key: &str) -> bool {
    key == "Ref" || key.starts_with("Fn::")
}

/// Whether `node` is a `${cf:stack.Output}` reference, which only resource references
/// resolve (reading it as a variable would fail).
pub(super) fn is_cf_reference(node: &Node) -> bool {
    matches!(&node.value, Value::Str(text) if !node.resolved && cf_output(text).is_some())
}

/// The stack and output names of a text that is exactly `${cf:stack.Output}` (or
/// `${cf(region):..}`) without a fallback.
fn cf_output(text: &str) -> Option<(&str, &str)> {
    let body = text.trim().strip_prefix("${cf")?.strip_suffix('}')?;
    let (_, address) = body.split_once(':')?;
    if address.contains(',') || address.contains("${") {
        return None;
    }
    let (stack, output) = address.rsplit_once('.').unwrap_or(("", address));
    let output = output.trim();
    (!output.is_empty()).then_some((stack.trim(), output))
}

/// Whether a stack output's name is only an attribute (`Arn`, `QueueUrl`, ...), so the
/// stack's name must say which resource it belongs to.
fn bare_attribute(output: &str) -> bool {
    [
        "Arn",
        "Url",
        "Name",
        "QueueArn",
        "QueueUrl",
        "QueueName",
        "TopicArn",
        "TopicName",
        "BucketName",
        "BucketArn",
    ]
    .contains(&output)
}

/// CloudFormation placeholders left in plain text (`${AWS::Region}`) stand for any value.
fn without_placeholders(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                out.push('*');
                rest = &rest[start + end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}
