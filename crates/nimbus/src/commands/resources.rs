//! `nimbus queue|topic|bucket|kv`: the app's resources, through its running `nimbus up`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use nimbus_server::wire;

use crate::control::UpRecord;

/// Send, receive, purge and list queue messages.
#[derive(clap::Args)]
pub(crate) struct QueueCommand {
    #[command(subcommand)]
    action: QueueAction,
    /// The app folder.
    #[arg(long, global = true, default_value = ".")]
    dir: PathBuf,
}

#[derive(clap::Subcommand)]
enum QueueAction {
    /// Send a message.
    Send {
        queue: String,
        body: String,
        #[arg(long)]
        delay_seconds: Option<u64>,
        #[arg(long)]
        group_id: Option<String>,
        #[arg(long)]
        deduplication_id: Option<String>,
        /// Message attributes as NAME=VALUE (repeatable).
        #[arg(long = "attribute", value_name = "NAME=VALUE")]
        attributes: Vec<String>,
    },
    /// Receive messages (they stay on the queue until deleted).
    Receive {
        queue: String,
        #[arg(long, default_value_t = 1)]
        max: u32,
        /// Visibility timeout in seconds.
        #[arg(long)]
        visibility_timeout: Option<f64>,
        /// Delete what was received.
        #[arg(long)]
        delete: bool,
    },
    /// Delete every message.
    Purge { queue: String },
    /// List queues with their depths.
    Ls,
}

/// Publish to a topic.
#[derive(clap::Args)]
pub(crate) struct TopicCommand {
    #[command(subcommand)]
    action: TopicAction,
    /// The app folder.
    #[arg(long, global = true, default_value = ".")]
    dir: PathBuf,
}

#[derive(clap::Subcommand)]
enum TopicAction {
    /// Publish a message to every subscriber whose filter policy matches.
    Publish {
        topic: String,
        message: String,
        #[arg(long)]
        subject: Option<String>,
        /// Message attributes as NAME=VALUE (repeatable).
        #[arg(long = "attribute", value_name = "NAME=VALUE")]
        attributes: Vec<String>,
    },
}

/// Put, get, list and remove objects.
#[derive(clap::Args)]
pub(crate) struct BucketCommand {
    #[command(subcommand)]
    action: BucketAction,
    /// The app folder.
    #[arg(long, global = true, default_value = ".")]
    dir: PathBuf,
}

#[derive(clap::Subcommand)]
enum BucketAction {
    /// Upload a file (or `-` for stdin) as KEY.
    Put {
        bucket: String,
        key: String,
        file: PathBuf,
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Print an object's bytes.
    Get { bucket: String, key: String },
    /// List objects.
    Ls {
        bucket: String,
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Delete an object.
    Rm { bucket: String, key: String },
}

/// Get, put, list and remove KV keys.
#[derive(clap::Args)]
pub(crate) struct KvCommand {
    #[command(subcommand)]
    action: KvAction,
    /// The app folder.
    #[arg(long, global = true, default_value = ".")]
    dir: PathBuf,
}

#[derive(clap::Subcommand)]
enum KvAction {
    /// Print a value.
    Get { namespace: String, key: String },
    /// Store a value.
    Put {
        namespace: String,
        key: String,
        value: String,
        /// Expire after this many seconds.
        #[arg(long)]
        ttl: Option<u64>,
        /// Metadata as JSON.
        #[arg(long)]
        metadata: Option<String>,
    },
    /// List keys.
    Ls {
        namespace: String,
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Delete a key.
    Rm { namespace: String, key: String },
}

/// Finds the running app of `dir` or says how to start it.
pub(super) fn running(dir: &Path) -> anyhow::Result<UpRecord> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("opening app folder {}", dir.display()))?;
    UpRecord::read(&dir.join(".nimbus")).ok_or_else(|| {
        anyhow::anyhow!(
            "no running app in {}: start it with `nimbus up {}` first",
            dir.display(),
            dir.display()
        )
    })
}

/// Calls the control API and returns the body of a 2xx answer; anything else becomes an
/// error with the API's message.
pub(super) fn call(
    dir: &Path,
    method: http::Method,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> anyhow::Result<Bytes> {
    let record = running(dir)?;
    let runtime = crate::runtime()?;
    call_on(&runtime, &record, method, path, body, headers)
}

/// `call` on a runtime and app the caller keeps, for commands that call again and again.
pub(super) fn call_on(
    runtime: &tokio::runtime::Runtime,
    record: &UpRecord,
    method: http::Method,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> anyhow::Result<Bytes> {
    let (status, _, body) = runtime.block_on(record.request_with(method, path, body, headers))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<wire::ErrorBody>(&body)
            .map(|error| error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        anyhow::bail!("{message} ({status})");
    }
    Ok(body)
}

pub(super) fn print(body: &[u8]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(body)?;
    if !body.ends_with(b"\n") {
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn encode(segment: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

fn attributes(pairs: &[String]) -> anyhow::Result<BTreeMap<String, wire::AttributeValue>> {
    let mut attributes = BTreeMap::new();
    for pair in pairs {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("attribute {pair:?} must be NAME=VALUE"))?;
        attributes.insert(
            name.to_owned(),
            wire::AttributeValue::Text(value.to_owned()),
        );
    }
    Ok(attributes)
}

impl QueueCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let dir = &self.dir;
        match self.action {
            QueueAction::Send {
                queue,
                body,
                delay_seconds,
                group_id,
                deduplication_id,
                attributes: pairs,
            } => {
                let request = wire::SendMessage {
                    body,
                    delay_seconds,
                    attributes: Some(attributes(&pairs)?),
                    group_id,
                    deduplication_id,
                };
                let path = format!("/v1/queues/{}/messages", encode(&queue));
                print(&call(
                    dir,
                    http::Method::POST,
                    &path,
                    serde_json::to_vec(&request)?,
                    &[],
                )?)
            }
            QueueAction::Receive {
                queue,
                max,
                visibility_timeout,
                delete,
            } => {
                let request = wire::ReceiveMessages {
                    max_messages: Some(u64::from(max)),
                    visibility_timeout,
                };
                let path = format!("/v1/queues/{}/receive", encode(&queue));
                let body = call(
                    dir,
                    http::Method::POST,
                    &path,
                    serde_json::to_vec(&request)?,
                    &[],
                )?;
                if delete {
                    let received: wire::ReceivedMessages =
                        serde_json::from_slice(&body).context("reading the received messages")?;
                    let path = format!("/v1/queues/{}/delete", encode(&queue));
                    for message in received.messages {
                        let request = wire::DeleteMessage {
                            receipt_handle: message.receipt_handle,
                        };
                        call(
                            dir,
                            http::Method::POST,
                            &path,
                            serde_json::to_vec(&request)?,
                            &[],
                        )?;
                    }
                }
                print(&body)
            }
            QueueAction::Purge { queue } => {
                let path = format!("/v1/queues/{}/purge", encode(&queue));
                print(&call(dir, http::Method::POST, &path, Vec::new(), &[])?)
            }
            QueueAction::Ls => print(&call(
                dir,
                http::Method::GET,
                "/v1/queues",
                Vec::new(),
                &[],
            )?),
        }
    }
}

impl TopicCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        match self.action {
            TopicAction::Publish {
                topic,
                message,
                subject,
                attributes: pairs,
            } => {
                let request = wire::Publish {
                    message,
                    subject,
                    attributes: Some(attributes(&pairs)?),
                };
                let path = format!("/v1/topics/{}/publish", encode(&topic));
                print(&call(
                    &self.dir,
                    http::Method::POST,
                    &path,
                    serde_json::to_vec(&request)?,
                    &[],
                )?)
            }
        }
    }
}

impl BucketCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let dir = &self.dir;
        match self.action {
            BucketAction::Put {
                bucket,
                key,
                file,
                content_type,
            } => {
                let data = if file.as_os_str() == "-" {
                    let mut data = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)?;
                    data
                } else {
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?
                };
                let path = format!("/v1/buckets/{}/objects/{}", encode(&bucket), encode(&key));
                let headers: Vec<(&str, String)> = content_type
                    .map(|t| ("content-type", t))
                    .into_iter()
                    .collect();
                print(&call(dir, http::Method::PUT, &path, data, &headers)?)
            }
            BucketAction::Get { bucket, key } => {
                let path = format!("/v1/buckets/{}/objects/{}", encode(&bucket), encode(&key));
                let body = call(dir, http::Method::GET, &path, Vec::new(), &[])?;
                std::io::stdout().lock().write_all(&body)?;
                Ok(ExitCode::SUCCESS)
            }
            BucketAction::Ls { bucket, prefix } => {
                let query = wire::ListObjects {
                    prefix,
                    ..wire::ListObjects::default()
                };
                let path = format!(
                    "/v1/buckets/{}/objects{}",
                    encode(&bucket),
                    wire::url_query(&query)
                );
                print(&call(dir, http::Method::GET, &path, Vec::new(), &[])?)
            }
            BucketAction::Rm { bucket, key } => {
                let path = format!("/v1/buckets/{}/objects/{}", encode(&bucket), encode(&key));
                call(dir, http::Method::DELETE, &path, Vec::new(), &[])?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

impl KvCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let dir = &self.dir;
        match self.action {
            KvAction::Get { namespace, key } => {
                let path = format!("/v1/kv/{}/keys/{}", encode(&namespace), encode(&key));
                print(&call(dir, http::Method::GET, &path, Vec::new(), &[])?)
            }
            KvAction::Put {
                namespace,
                key,
                value,
                ttl,
                metadata,
            } => {
                let query = wire::KvPut {
                    expiration_ttl: ttl.map(|ttl| ttl as f64),
                    expiration: None,
                };
                let path = format!(
                    "/v1/kv/{}/keys/{}{}",
                    encode(&namespace),
                    encode(&key),
                    wire::url_query(&query)
                );
                let headers: Vec<(&str, String)> = metadata
                    .map(|m| ("x-nimbus-metadata", m))
                    .into_iter()
                    .collect();
                call(dir, http::Method::PUT, &path, value.into_bytes(), &headers)?;
                Ok(ExitCode::SUCCESS)
            }
            KvAction::Ls { namespace, prefix } => {
                let query = wire::ListKeys {
                    prefix,
                    ..wire::ListKeys::default()
                };
                let path = format!(
                    "/v1/kv/{}/keys{}",
                    encode(&namespace),
                    wire::url_query(&query)
                );
                print(&call(dir, http::Method::GET, &path, Vec::new(), &[])?)
            }
            KvAction::Rm { namespace, key } => {
                let path = format!("/v1/kv/{}/keys/{}", encode(&namespace), encode(&key));
                call(dir, http::Method::DELETE, &path, Vec::new(), &[])?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
