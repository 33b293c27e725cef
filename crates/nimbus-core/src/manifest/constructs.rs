//! Lift constructs (the serverless-lift plugin's `constructs:`) on nimbus's services: a
//! `queue` is a queue with a dead-letter queue and a `worker` function consuming it, a
//! `storage` is a bucket, a `webhook` an HTTP endpoint onto an EventBridge bus behind an
//! `authorizer` function, the static sites are folders the gateway serves, and
//! `${construct:id.attribute}` resolves to their names and ARNs. Other construct types are
//! warned about.
//!
//! As Lift does, every function of the app may send to the queues and read and write the
//! buckets that constructs declare.

use std::time::Duration;

use crate::events::{EventSource, Grant, QueueSpec, Redrive, SqsEvent};
use crate::policy::{StaticSite, Webhook, WebhookEventType};

use super::resources::Kind;
use super::tree::{Entry, Node, Pos, Value};
use super::vars::Lookup;
use super::{Cx, join_key};

/// A function a construct declares (a `queue`'s worker, a `webhook`'s authorizer), to be
/// read as a function once the provider is known.
pub(super) struct Worker {
    /// The function's name, `<id>Worker` or `<id>Authorizer` as Lift names it.
    pub(super) name: String,
    pub(super) node: Node,
    pub(super) pos: Pos,
    /// The queue a worker consumes, and how; `None` for an authorizer.
    pub(super) event: Option<SqsEvent>,
}

/// What `constructs.<id>` declares, as far as names go.
enum Declared {
    Queue {
        name: String,
    },
    Storage {
        name: String,
    },
    /// A `webhook`, by the name of its bus.
    Webhook {
        bus: String,
    },
    Other(String),
}

/// Lift's default `maxRetries`: a message received this many times goes to the DLQ.
const DEFAULT_MAX_RETRIES: u64 = 3;

impl Cx<'_> {
    /// Declares the queues and buckets of `constructs:` and returns the queue workers.
    pub(super) fn constructs(&mut self, entry: &Entry) -> Vec<Worker> {
        let Some(entries) = self.mapping(&entry.value, "constructs", "a mapping of constructs")
        else {
            return Vec::new();
        };
        let mut workers = Vec::new();
        for construct in &entries {
            let key = join_key("constructs", &construct.key);
            let Some(fields) = self.mapping(&construct.value, &key, "a construct with a `type`")
            else {
                continue;
            };
            match self.declared(&construct.key, construct.key_pos, &key) {
                Ok(Declared::Queue { name }) => {
                    workers.extend(self.queue_construct(construct, &fields, name, &key));
                }
                Ok(Declared::Storage { name }) => {
                    for field in &fields {
                        match field.key.as_str() {
                            "type" => {}
                            _ => self.warn(
                                field.key_pos,
                                &join_key(&key, &field.key),
                                "not modelled by nimbus; ignored",
                            ),
                        }
                    }
                    self.declare_simple(Kind::Bucket, &name, construct.key_pos, &key);
                }
                Ok(Declared::Webhook { bus }) => {
                    workers.extend(self.webhook_construct(construct, &fields, bus, &key));
                }
                Ok(Declared::Other(kind))
                    if kind == "static-website" || kind == "single-page-app" =>
                {
                    if let Some(site) = self.static_site(&construct.key, &fields, &key, &kind) {
                        self.app.static_sites.push(site);
                    }
                }
                Ok(Declared::Other(kind)) => {
                    let message = format!(
                        "Lift `{kind}` constructs are not yet modelled by nimbus (it models `queue`, `storage`, `webhook`, `static-website` and `single-page-app`); ignored"
                    );
                    self.warn(construct.key_pos, &key, message);
                }
                Err(message) => self.error(construct.key_pos, &key, message),
            }
        }
        workers
    }

    /// `${construct:id.attribute}`: `queueUrl`/`queueArn` of a queue, `bucketName`/`bucketArn`
    /// of a storage. A queue's URL is its ARN, which identifies it as well, as `Ref` does.
    pub(super) fn lookup_construct(&mut self, address: &str, pos: Pos, key: &str) -> Lookup {
        let Some((id, attribute)) = address.split_once('.') else {
            return Lookup::Missing(format!(
                "`construct:{address}` needs an attribute, as in `${{construct:{address}.queueUrl}}`"
            ));
        };
        let declared = match self.declared(id, pos, key) {
            Ok(declared) => declared,
            Err(message) => return Lookup::Missing(message),
        };
        let value = match (&declared, attribute) {
            (Declared::Queue { name }, "queueUrl") => crate::queue_url(name),
            (Declared::Queue { name }, "queueArn") => format!("arn:aws:sqs:*:*:{name}"),
            (Declared::Storage { name }, "bucketName") => name.clone(),
            (Declared::Storage { name }, "bucketArn") => format!("arn:aws:s3:::{name}"),
            (Declared::Webhook { bus }, "busName") => bus.clone(),
            (Declared::Webhook { .. }, _) => {
                return Lookup::Missing(format!(
                    "a webhook construct has `busName`, not `{attribute}`"
                ));
            }
            (Declared::Queue { .. }, _) => {
                return Lookup::Missing(format!(
                    "a queue construct has `queueUrl` and `queueArn`, not `{attribute}`"
                ));
            }
            (Declared::Storage { .. }, _) => {
                return Lookup::Missing(format!(
                    "a storage construct has `bucketName` and `bucketArn`, not `{attribute}`"
                ));
            }
            (Declared::Other(kind), _) => {
                return Lookup::Missing(format!(
                    "Lift `{kind}` constructs are not yet modelled by nimbus"
                ));
            }
        };
        Lookup::Found(Node {
            value: Value::Str(value),
            pos,
            resolved: true,
        })
    }

    /// The grants Lift gives every function: send to each construct queue, read and write
    /// each construct bucket.
    pub(super) fn construct_grants(&self, workers: &[Worker], buckets: &[String]) -> Vec<Grant> {
        let mut grants = Vec::new();
        for worker in workers {
            let Some(event) = &worker.event else {
                continue;
            };
            grants.push(Grant {
                actions: vec![
                    "sqs:SendMessage".to_owned(),
                    "sqs:GetQueueUrl".to_owned(),
                    "sqs:GetQueueAttributes".to_owned(),
                ],
                resources: vec![format!("queue:{}", event.queue)],
            });
        }
        for bucket in buckets {
            grants.push(Grant {
                actions: vec!["s3:*".to_owned()],
                resources: vec![format!("bucket:{bucket}"), format!("bucket:{bucket}/*")],
            });
        }
        grants
    }

    /// The names of the buckets `constructs:` declares, as `lookup_construct` gives them.
    pub(super) fn construct_buckets(&mut self) -> Vec<String> {
        let Some(constructs) = self.root.get("constructs").map(|entry| entry.value.clone()) else {
            return Vec::new();
        };
        let constructs = self.read(&constructs, "constructs");
        let Value::Map(entries) = &constructs.value else {
            return Vec::new();
        };
        let mut buckets = Vec::new();
        for entry in entries {
            if let Ok(Declared::Storage { name }) = self.declared(&entry.key, entry.key_pos, "") {
                buckets.push(name);
            }
        }
        buckets
    }

    /// What construct `id` declares, read from the document as written, so that variables
    /// anywhere can name it. Lift names resources after the service, stage and id.
    fn declared(&mut self, id: &str, pos: Pos, key: &str) -> Result<Declared, String> {
        let construct = self
            .root
            .get("constructs")
            .map(|entry| self.read(&entry.value, "constructs"))
            .and_then(|constructs| constructs.get(id).map(|entry| entry.value.clone()))
            .ok_or_else(|| format!("no construct `{id}` is declared under `constructs`"))?;
        let construct = self.read(&construct, key);
        let kind = match construct
            .get("type")
            .map(|entry| self.read(&entry.value, key))
        {
            Some(Node {
                value: Value::Str(kind),
                ..
            }) => kind,
            _ => {
                return Err(format!(
                    "construct `{id}` needs a `type`, such as `queue` or `storage`"
                ));
            }
        };
        let service = match self.lookup_self("service", pos, key) {
            Lookup::Found(Node {
                value: Value::Str(service),
                ..
            }) => service,
            _ => return Err("the service has no name".to_owned()),
        };
        let stage = self
            .stage(pos, key)
            .ok_or_else(|| "the stage cannot be read".to_owned())?;
        let base = format!("{service}-{stage}-{id}");
        match kind.as_str() {
            "queue" => {
                let fifo = construct
                    .get("fifo")
                    .map(|entry| self.read(&entry.value, key))
                    .is_some_and(|node| {
                        matches!(&node.value, Value::Bool(true))
                            || matches!(&node.value, Value::Str(s) if s == "true")
                    });
                let name = if fifo { format!("{base}.fifo") } else { base };
                Ok(Declared::Queue { name })
            }
            // Bucket names are lower case.
            "storage" => Ok(Declared::Storage {
                name: base.to_ascii_lowercase(),
            }),
            "webhook" => Ok(Declared::Webhook { bus: base }),
            other => Ok(Declared::Other(other.to_owned())),
        }
    }

    /// A `static-website` or `single-page-app`: its `path` folder, served by the gateway.
    fn static_site(
        &mut self,
        id: &str,
        fields: &[Entry],
        key: &str,
        kind: &str,
    ) -> Option<StaticSite> {
        let mut dir = None;
        let n_errors = self.errors.len();
        for field in fields {
            let field_key = join_key(key, &field.key);
            match field.key.as_str() {
                "type" => {}
                "path" => {
                    let value = self.read(&field.value, &field_key);
                    match self.string(&value, &field_key, "a folder such as `public`") {
                        Some(path)
                            if path.starts_with('/')
                                || path.split(['/', '\\']).any(|part| part == "..") =>
                        {
                            let message = format!(
                                "the folder {path:?} must be inside the app folder, as in `path: public`"
                            );
                            self.error(value.pos, &field_key, message);
                        }
                        Some(path) => dir = Some((path, value.pos.line)),
                        None => {}
                    }
                }
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        if self.errors.len() > n_errors {
            return None;
        }
        let Some(dir) = dir else {
            let message = format!(
                "a `{kind}` construct needs `path`: the folder of files to serve, as in `path: public`"
            );
            let pos = self
                .root
                .get("constructs")
                .and_then(|entry| entry.value.get(id))
                .map_or(Pos { line: 1, column: 1 }, |entry| entry.key_pos);
            self.error(pos, key, message);
            return None;
        };
        let (dir, line) = dir;
        Some(StaticSite {
            id: id.to_owned(),
            dir,
            line,
            single_page: kind == "single-page-app",
        })
    }

    fn queue_construct(
        &mut self,
        construct: &Entry,
        fields: &[Entry],
        name: String,
        key: &str,
    ) -> Option<Worker> {
        let mut worker = None;
        let mut batch_size = 1;
        let mut max_retries = DEFAULT_MAX_RETRIES;
        let mut window = Duration::ZERO;
        let mut delay = Duration::ZERO;
        let mut maximum_concurrency = None;
        for field in fields {
            let field_key = join_key(key, &field.key);
            let value = &field.value;
            match field.key.as_str() {
                "type" | "fifo" => {}
                "worker" => worker = Some((field.value.clone(), field.key_pos)),
                "batchSize" => {
                    batch_size = self
                        .bounded(value, &field_key, "a batch size", 1, 10)
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(batch_size);
                }
                "maxRetries" => {
                    max_retries = self
                        .bounded(value, &field_key, "a number of retries", 1, 1000)
                        .unwrap_or(max_retries);
                }
                "maxBatchingWindow" => {
                    window = self.seconds(value, &field_key, 0, 300).unwrap_or(window);
                }
                "delay" => delay = self.seconds(value, &field_key, 0, 900).unwrap_or(delay),
                "maxConcurrency" => {
                    maximum_concurrency = self
                        .bounded(value, &field_key, "a concurrency", 2, 1000)
                        .and_then(|n| u32::try_from(n).ok());
                }
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        let fifo = name.ends_with(".fifo");
        let dead_letter_queue = match name.strip_suffix(".fifo") {
            Some(base) => format!("{base}-dlq.fifo"),
            None => format!("{name}-dlq"),
        };
        // Lift keeps failed messages 14 days, SQS's longest retention.
        let mut dlq = QueueSpec::with_defaults(&dead_letter_queue);
        dlq.retention = Duration::from_secs(14 * 86_400);
        dlq.content_based_deduplication = fifo;
        let mut queue = QueueSpec::with_defaults(&name);
        queue.delay = delay;
        queue.content_based_deduplication = fifo;
        queue.redrive = Some(Redrive {
            dead_letter_queue,
            max_receive_count: u32::try_from(max_retries).unwrap_or(u32::MAX),
        });
        self.declare_queue(queue, construct.key_pos, key);
        self.declare_queue(dlq, construct.key_pos, key);
        let Some((node, pos)) = worker else {
            let message = "a queue construct needs a `worker`: the function that processes its messages, as in `worker: { handler: src/worker.handler }`";
            self.error(construct.key_pos, key, message);
            return None;
        };
        Some(Worker {
            name: format!("{}Worker", construct.key),
            node,
            pos,
            event: Some(SqsEvent {
                queue: name,
                batch_size,
                maximum_batching_window: window,
                // Lift's workers may report partial batch failures.
                report_batch_item_failures: true,
                maximum_concurrency,
                enabled: true,
            }),
        })
    }

    /// A `webhook`: an HTTP endpoint at `path` whose requests go to the construct's bus,
    /// authorized by its `authorizer` function (`<id>Authorizer`) unless `insecure: true`;
    /// Lift refuses both and neither.
    fn webhook_construct(
        &mut self,
        construct: &Entry,
        fields: &[Entry],
        bus: String,
        key: &str,
    ) -> Option<Worker> {
        let mut path = None;
        let mut method = "POST".to_owned();
        let mut event_type = WebhookEventType::Fixed("Webhook".to_owned());
        let mut insecure = false;
        let mut authorizer = None;
        for field in fields {
            let field_key = join_key(key, &field.key);
            match field.key.as_str() {
                "type" => {}
                "path" => {
                    let value = self.read(&field.value, &field_key);
                    match self.string(&value, &field_key, "a path such as `/webhooks/stripe`") {
                        Some(text) if text.starts_with('/') => path = Some(text),
                        Some(text) => self.error(
                            value.pos,
                            &field_key,
                            format!("a webhook path starts with `/`, as in `/{text}`"),
                        ),
                        None => {}
                    }
                }
                "method" => {
                    let value = self.read(&field.value, &field_key);
                    if let Some(text) = self.string(&value, &field_key, "POST, PUT or PATCH") {
                        let upper = text.to_ascii_uppercase();
                        if ["POST", "PUT", "PATCH"].contains(&upper.as_str()) {
                            method = upper;
                        } else {
                            let message =
                                format!("a webhook takes POST, PUT or PATCH, not {text:?}");
                            self.error(value.pos, &field_key, message);
                        }
                    }
                }
                "eventType" => {
                    let value = self.read(&field.value, &field_key);
                    if let Some(text) =
                        self.string(&value, &field_key, "`$request.body.type` or a name")
                    {
                        event_type = match text.strip_prefix("$request.body.") {
                            Some(path) => WebhookEventType::BodyPath(
                                path.split('.').map(str::to_owned).collect(),
                            ),
                            None => WebhookEventType::Fixed(text),
                        };
                    }
                }
                "insecure" => insecure = self.boolean(&field.value, &field_key).unwrap_or(false),
                "authorizer" => authorizer = Some((field.value.clone(), field.key_pos)),
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        let Some(path) = path else {
            // A `path` that is there but wrong has its own error already.
            if !fields.iter().any(|field| field.key == "path") {
                let message = "a webhook construct needs a `path`, as in `path: /webhooks/stripe`";
                self.error(construct.key_pos, key, message);
            }
            return None;
        };
        let authorizer_name = format!("{}Authorizer", construct.key);
        let worker = match (insecure, authorizer) {
            (true, Some((_, pos))) => {
                let message = "a webhook is either `insecure: true` or has an `authorizer`, not both; remove one";
                self.error(pos, &join_key(key, "authorizer"), message);
                return None;
            }
            (false, None) => {
                let message = "a webhook needs an `authorizer` function that checks each request, as in `authorizer: { handler: src/authorizer.main }`, or `insecure: true`";
                self.error(construct.key_pos, key, message);
                return None;
            }
            (true, None) => None,
            (false, Some((node, pos))) => Some(Worker {
                name: authorizer_name.clone(),
                node,
                pos,
                event: None,
            }),
        };
        self.declare_event_bus(&bus);
        self.app.webhooks.push(Webhook {
            id: construct.key.clone(),
            method,
            path,
            bus,
            event_type,
            authorizer: worker.as_ref().map(|_| authorizer_name),
        });
        worker
    }
}

impl Worker {
    /// The event source the worker's function gets.
    pub(super) fn event_source(&self) -> Option<EventSource> {
        self.event.clone().map(EventSource::Sqs)
    }
}
