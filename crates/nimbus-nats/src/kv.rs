//! KV namespaces with Workers KV's semantics on JetStream, shared by every node of a cluster:
//! one stream per app keeping the last message of each subject, a subject per key.
//!
//! A put is a publish to `nimbus.{app}.kv.{namespace}.{key}` (names escaped as subject
//! tokens) with the expiration and metadata in headers, durable once JetStream acknowledges
//! it; a get reads the subject's last message; a delete purges the subject; a list reads the
//! namespace's subjects from the stream's info, sorts them and reads each listed key's last
//! message for its expiration and metadata. nats-server 2.9 has no per-message TTL, so an
//! expired key reads as absent (as in the embedded store) and is purged by the get that finds
//! it. Values are bounded by the server's `max_payload` (1 MiB unless configured), below
//! Workers KV's 25 MiB: a larger put is refused with that reason and writes nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{GetStreamErrorKind, PublishError, PublishErrorKind};
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use futures_util::StreamExt as _;
use nimbus_core::BoxFuture;
use nimbus_core::kv::{
    self, KvError, KvKeyInfo, KvListQuery, KvPage, KvPut, KvStore, KvValue, check_key,
    check_namespace,
};
use tokio::sync::OnceCell;

use crate::error_chain;
use crate::queues::{escape, unescape};

/// Headers a key's message keeps its expiration (Unix milliseconds) and metadata in.
const EXPIRATION: &str = "Nimbus-Expiration";
const METADATA: &str = "Nimbus-Metadata";

/// One app's KV namespaces on JetStream.
pub struct NatsKv {
    jetstream: jetstream::Context,
    /// The app's token in the stream's name and subjects.
    app: String,
    /// The stream, made (or found) on first use.
    stream: OnceCell<stream::Stream>,
    /// The largest message the NATS server takes, in bytes.
    max_payload: usize,
    /// Copies of the stream JetStream keeps.
    replicas: usize,
}

impl NatsKv {
    pub(crate) fn new(
        jetstream: jetstream::Context,
        app: &str,
        max_payload: usize,
        replicas: usize,
    ) -> NatsKv {
        NatsKv {
            jetstream,
            app: escape(app, false),
            stream: OnceCell::new(),
            max_payload,
            replicas,
        }
    }

    fn stream_name(&self) -> String {
        format!("nimbus-{}-kv", self.app)
    }

    /// The subjects of a namespace's keys: this, a `.`, then the escaped key.
    fn namespace_subject(&self, namespace: &str) -> String {
        format!("nimbus.{}.kv.{}", self.app, escape(namespace, true))
    }

    fn subject(&self, namespace: &str, key: &str) -> String {
        format!(
            "{}.{}",
            self.namespace_subject(namespace),
            escape(key, true)
        )
    }

    /// The app's stream, created on first use with the one-message-per-subject history a
    /// KV needs.
    async fn stream(&self) -> Result<&stream::Stream, KvError> {
        self.stream
            .get_or_try_init(|| async {
                let name = self.stream_name();
                match self.jetstream.get_stream(&name).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) if !stream_missing(e.kind()) => {
                        return Err(unavailable("looking up the KV stream", &e));
                    }
                    Err(_) => {}
                }
                let config = stream::Config {
                    name: name.clone(),
                    description: Some("nimbus KV namespaces".to_owned()),
                    subjects: vec![format!("nimbus.{}.kv.>", self.app)],
                    max_messages_per_subject: 1,
                    storage: StorageType::File,
                    num_replicas: self.replicas,
                    ..Default::default()
                };
                // Another node may create it at the same moment; either stream will do.
                self.jetstream
                    .get_or_create_stream(config)
                    .await
                    .map_err(|e| unavailable("creating the KV stream", &e))
            })
            .await
    }

    /// The last message of a key's subject, with its entry; `None` when there is none.
    async fn read(&self, namespace: &str, key: &str) -> Result<Option<(KvValue, String)>, KvError> {
        let subject = self.subject(namespace, key);
        let stream = self.stream().await?;
        match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => {
                let entry = KvValue {
                    value: message.payload.to_vec(),
                    expiration: expiration(&message.headers),
                    metadata: header(&message.headers, METADATA),
                };
                Ok(Some((entry, subject)))
            }
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(unavailable("reading a KV key", &e)),
        }
    }

    async fn get(&self, namespace: String, key: String) -> Result<Option<KvValue>, KvError> {
        check_namespace(&namespace)?;
        check_key(&key)?;
        match self.read(&namespace, &key).await? {
            Some((entry, subject)) if expired(&entry, SystemTime::now()) => {
                // Only space is lost if this fails; the key reads as absent either way.
                if let Ok(stream) = self.stream().await
                    && let Err(e) = stream.purge().filter(subject).await
                {
                    tracing::debug!(error = %e, "purging an expired KV key");
                }
                Ok(None)
            }
            found => Ok(found.map(|(entry, _)| entry)),
        }
    }

    async fn put(&self, namespace: String, key: String, put: KvPut) -> Result<(), KvError> {
        check_namespace(&namespace)?;
        check_key(&key)?;
        kv::check_put(&put, SystemTime::now())?;
        self.stream().await?;
        let mut headers = HeaderMap::new();
        if let Some(at) = put.expiration {
            let ms = at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            headers.insert(EXPIRATION, ms.to_string().as_str());
        }
        if let Some(metadata) = &put.metadata {
            // JSON text on one header line: newlines inside it are whitespace to JSON.
            let line = metadata.replace(['\r', '\n'], " ");
            headers.insert(METADATA, line.as_str());
        }
        let size = put.value.len();
        let ack = self
            .jetstream
            .publish_with_headers(self.subject(&namespace, &key), headers, put.value.into())
            .await
            .map_err(|e| self.publish_error(&e, size))?;
        ack.await.map_err(|e| self.publish_error(&e, size))?;
        Ok(())
    }

    async fn delete(&self, namespace: String, key: String) -> Result<bool, KvError> {
        check_namespace(&namespace)?;
        check_key(&key)?;
        let Some((_, subject)) = self.read(&namespace, &key).await? else {
            return Ok(false);
        };
        self.stream()
            .await?
            .purge()
            .filter(subject)
            .await
            .map_err(|e| unavailable("deleting a KV key", &e))?;
        Ok(true)
    }

    async fn list(&self, namespace: String, query: KvListQuery) -> Result<KvPage, KvError> {
        check_namespace(&namespace)?;
        let limit = kv::list_limit(query.limit)?;
        let after = query.cursor.as_deref().map(kv::decode_cursor).transpose()?;
        let prefix = query.prefix.as_deref().unwrap_or("");
        let namespace_subject = self.namespace_subject(&namespace);
        let filter = format!("{namespace_subject}.>");
        let mut subjects = self
            .stream()
            .await?
            .info_with_subjects(&filter)
            .await
            .map_err(|e| unavailable("listing KV keys", &e))?;
        let mut names = Vec::new();
        while let Some(item) = subjects.next().await {
            let (subject, _) = item.map_err(|e| unavailable("listing KV keys", &e))?;
            let name = subject
                .strip_prefix(&namespace_subject)
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(unescape);
            if let Some(name) = name
                && name.starts_with(prefix)
                && after.as_ref().is_none_or(|after| name > *after)
            {
                names.push(name);
            }
        }
        names.sort_unstable();
        // Read each candidate's expiration and metadata until the page is full, plus one
        // more live key to know whether the page is the last.
        let now = SystemTime::now();
        let mut keys = Vec::new();
        for name in names {
            if keys.len() > limit {
                break;
            }
            if let Some((entry, _)) = self.read(&namespace, &name).await?
                && !expired(&entry, now)
            {
                keys.push(KvKeyInfo {
                    name,
                    expiration: entry.expiration,
                    metadata: entry.metadata,
                });
            }
        }
        let query = KvListQuery {
            prefix: None,
            cursor: None,
            limit,
        };
        kv::page(keys, &query, limit)
    }

    fn publish_error(&self, e: &PublishError, size: usize) -> KvError {
        if matches!(e.kind(), PublishErrorKind::MaxPayloadExceeded) || size > self.max_payload {
            return KvError::ValueTooLarge {
                what: "KV value (in cluster mode, NATS's max_payload)",
                size,
                limit: self.max_payload,
            };
        }
        unavailable("writing a KV key", e)
    }
}

/// Cluster mode's KV namespaces: each call is a JetStream request, so reads cost a round
/// trip to NATS where the embedded store's are local.
impl KvStore for NatsKv {
    fn get(
        &self,
        namespace: String,
        key: String,
    ) -> BoxFuture<'_, Result<Option<KvValue>, KvError>> {
        Box::pin(NatsKv::get(self, namespace, key))
    }

    fn put(
        &self,
        namespace: String,
        key: String,
        put: KvPut,
    ) -> BoxFuture<'_, Result<(), KvError>> {
        Box::pin(NatsKv::put(self, namespace, key, put))
    }

    fn delete(&self, namespace: String, key: String) -> BoxFuture<'_, Result<bool, KvError>> {
        Box::pin(NatsKv::delete(self, namespace, key))
    }

    fn list(
        &self,
        namespace: String,
        query: KvListQuery,
    ) -> BoxFuture<'_, Result<KvPage, KvError>> {
        Box::pin(NatsKv::list(self, namespace, query))
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|value| value.as_str().to_owned())
}

fn expiration(headers: &HeaderMap) -> Option<SystemTime> {
    let ms: u64 = header(headers, EXPIRATION)?.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(ms))
}

fn expired(entry: &KvValue, now: SystemTime) -> bool {
    entry.expiration.is_some_and(|at| at <= now)
}

fn stream_missing(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// A failure to reach or use NATS: nothing was written, and the call may be retried.
fn unavailable(what: &str, e: &dyn std::error::Error) -> KvError {
    KvError::Unavailable {
        message: format!(
            "{what} through NATS JetStream failed: {}; retry once the cluster's NATS is reachable",
            error_chain(e)
        ),
    }
}

#[cfg(test)]
mod tests;
