//! The deploys every `nimbus server --cluster` node shares, on JetStream: each stage's record
//! (versions and aliases) as the last message of its subject in one stream, changed with a
//! compare-and-set on the subject's last sequence (the record's revision), and each version's
//! bundle as chunks in another, so a node that lacks a version fetches it.

use std::collections::HashMap;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::{GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use futures_util::StreamExt as _;
use nimbus_core::BoxFuture;
use nimbus_core::deploys::{DeployShare, RecordSink, ShareError, SharedRecord};

use crate::error_chain;
use crate::queues::{escape, unescape};

const RECORDS: &str = "nimbus-deploys";
const RECORD_SUBJECTS: &str = "nimbus.deploys";
const BUNDLES: &str = "nimbus-bundles";
const BUNDLE_SUBJECTS: &str = "nimbus.bundles";
/// JetStream's compare-and-set on a subject's last message.
const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
/// Which upload of a bundle a chunk is of, its index and how many the upload has.
const UPLOAD: &str = "Nimbus-Upload";
const CHUNK: &str = "Nimbus-Chunk";
const CHUNKS: &str = "Nimbus-Chunks";
/// The largest chunk: well under NATS's default `max_payload` of 1 MiB.
const MAX_CHUNK: usize = 512 * 1024;

/// The cluster's shared deploys.
pub struct NatsDeploys {
    jetstream: jetstream::Context,
    max_payload: usize,
    /// Copies of each stream JetStream keeps.
    replicas: usize,
}

impl NatsDeploys {
    pub(crate) fn new(
        jetstream: jetstream::Context,
        max_payload: usize,
        replicas: usize,
    ) -> NatsDeploys {
        NatsDeploys {
            jetstream,
            max_payload,
            replicas,
        }
    }

    /// The stream `name` over `subjects.>`, keeping `per_subject` messages of a subject
    /// (-1: all), created by whichever node comes first.
    async fn stream(
        &self,
        name: &str,
        subjects: &str,
        per_subject: i64,
    ) -> Result<stream::Stream, ShareError> {
        match self.jetstream.get_stream(name).await {
            Ok(stream) => return Ok(stream),
            Err(e) if !stream_missing(e.kind()) => {
                return Err(unavailable("looking up the deploys' stream", &e));
            }
            Err(_) => {}
        }
        let config = stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{subjects}.>")],
            max_messages_per_subject: per_subject,
            storage: StorageType::File,
            num_replicas: self.replicas,
            ..Default::default()
        };
        self.jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|e| unavailable("creating the deploys' stream", &e))
    }

    fn bundle_subject(service: &str, stage: &str, version: u64) -> String {
        format!(
            "{BUNDLE_SUBJECTS}.{}.{}.{version}",
            escape(service, true),
            escape(stage, true)
        )
    }

    async fn put_bundle(
        &self,
        service: String,
        stage: String,
        version: u64,
        bundle: Vec<u8>,
    ) -> Result<(), ShareError> {
        let bundle = Bytes::from(bundle);
        self.stream(BUNDLES, BUNDLE_SUBJECTS, -1).await?;
        let subject = Self::bundle_subject(&service, &stage, version);
        let upload = uuid::Uuid::new_v4().simple().to_string();
        let chunk_size = MAX_CHUNK
            .min(self.max_payload.saturating_sub(4096))
            .max(1024);
        let chunks: Vec<Bytes> = if bundle.is_empty() {
            vec![Bytes::new()]
        } else {
            (0..bundle.len())
                .step_by(chunk_size)
                .map(|start| bundle.slice(start..bundle.len().min(start + chunk_size)))
                .collect()
        };
        let n = chunks.len().to_string();
        let mut acks = Vec::with_capacity(chunks.len());
        for (idx, chunk) in chunks.into_iter().enumerate() {
            let mut headers = HeaderMap::new();
            headers.insert(UPLOAD, upload.as_str());
            headers.insert(CHUNK, idx.to_string().as_str());
            headers.insert(CHUNKS, n.as_str());
            let ack = self
                .jetstream
                .publish_with_headers(subject.clone(), headers, chunk)
                .await
                .map_err(|e| unavailable("storing a bundle", &e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| unavailable("storing a bundle", &e))?;
        }
        Ok(())
    }

    async fn get_bundle(
        &self,
        service: String,
        stage: String,
        version: u64,
    ) -> Result<Vec<u8>, ShareError> {
        let stream = self.stream(BUNDLES, BUNDLE_SUBJECTS, -1).await?;
        let subject = Self::bundle_subject(&service, &stage, version);
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject.clone(),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("reading a bundle", &e))?;
        let missing = || {
            ShareError::Unavailable(format!(
                "no complete bundle of {service} ({stage}) version {version} in the cluster"
            ))
        };
        if consumer.cached_info().num_pending == 0 {
            return Err(missing());
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable("reading a bundle", &e))?;
        // Chunks of each upload (a retried deploy may have stored one twice), by index.
        let mut uploads: HashMap<String, (usize, Vec<Option<Bytes>>)> = HashMap::new();
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| unavailable("reading a bundle", &e))?;
            let pending = message.info().map(|info| info.pending).unwrap_or(0);
            let headers = message.headers.clone().unwrap_or_default();
            let field = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
            if let (Some(upload), Some(idx), Some(n)) = (field(UPLOAD), field(CHUNK), field(CHUNKS))
                && let (Ok(idx), Ok(n)) = (idx.parse::<usize>(), n.parse::<usize>())
                && idx < n
            {
                let entry = uploads.entry(upload).or_insert_with(|| (n, vec![None; n]));
                if entry.0 == n {
                    entry.1[idx] = Some(message.payload.clone());
                    if entry.1.iter().all(Option::is_some) {
                        let mut bundle = Vec::new();
                        for chunk in entry.1.iter().flatten() {
                            bundle.extend_from_slice(chunk);
                        }
                        return Ok(bundle);
                    }
                }
            }
            if pending == 0 {
                break;
            }
        }
        Err(missing())
    }

    async fn put_record(
        &self,
        service: String,
        stage: String,
        record: Vec<u8>,
        after: Option<u64>,
    ) -> Result<u64, ShareError> {
        self.stream(RECORDS, RECORD_SUBJECTS, 1).await?;
        let subject = format!(
            "{RECORD_SUBJECTS}.{}.{}",
            escape(&service, true),
            escape(&stage, true)
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            EXPECTED_LAST_SUBJECT_SEQUENCE,
            after.unwrap_or(0).to_string().as_str(),
        );
        let ack = self
            .jetstream
            .publish_with_headers(subject, headers, record.into())
            .await
            .map_err(|e| unavailable("storing a stage record", &e))?;
        match ack.await {
            Ok(ack) => Ok(ack.sequence),
            Err(e) if matches!(e.kind(), PublishErrorKind::WrongLastSequence) => {
                Err(ShareError::Conflict)
            }
            Err(e) => Err(unavailable("storing a stage record", &e)),
        }
    }

    async fn follow(&self, deliver: RecordSink) -> Result<(), ShareError> {
        let stream = self.stream(RECORDS, RECORD_SUBJECTS, 1).await?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: format!("{RECORD_SUBJECTS}.>"),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("following the stage records", &e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable("following the stage records", &e))?;
        let prefix = format!("{RECORD_SUBJECTS}.");
        tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let message = match message {
                    Ok(message) => message,
                    Err(e) => {
                        // The ordered consumer recreates itself after gaps and reconnects;
                        // what it cannot recover from ends the follow.
                        tracing::warn!(
                            "following the cluster's stage records: {}",
                            error_chain(&e)
                        );
                        continue;
                    }
                };
                let Ok(info) = message.info() else { continue };
                let revision = info.stream_sequence;
                let names = message
                    .subject
                    .strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.split_once('.'))
                    .and_then(|(service, stage)| Some((unescape(service)?, unescape(stage)?)));
                let Some((service, stage)) = names else {
                    tracing::warn!("a stage record on {} nimbus cannot read", message.subject);
                    continue;
                };
                let shared = SharedRecord {
                    service,
                    stage,
                    record: message.payload.to_vec(),
                    revision,
                };
                if !deliver(shared) {
                    return;
                }
            }
        });
        Ok(())
    }
}

/// Cluster mode's shared deploys.
impl DeployShare for NatsDeploys {
    fn put_bundle(
        &self,
        service: String,
        stage: String,
        version: u64,
        bundle: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), ShareError>> {
        Box::pin(NatsDeploys::put_bundle(
            self, service, stage, version, bundle,
        ))
    }

    fn get_bundle(
        &self,
        service: String,
        stage: String,
        version: u64,
    ) -> BoxFuture<'_, Result<Vec<u8>, ShareError>> {
        Box::pin(NatsDeploys::get_bundle(self, service, stage, version))
    }

    fn put_record(
        &self,
        service: String,
        stage: String,
        record: Vec<u8>,
        after: Option<u64>,
    ) -> BoxFuture<'_, Result<u64, ShareError>> {
        Box::pin(NatsDeploys::put_record(self, service, stage, record, after))
    }

    fn follow(&self, deliver: RecordSink) -> BoxFuture<'_, Result<(), ShareError>> {
        Box::pin(NatsDeploys::follow(self, deliver))
    }
}

fn stream_missing(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

fn unavailable(what: &str, e: &dyn std::error::Error) -> ShareError {
    ShareError::Unavailable(format!(
        "{what} through NATS JetStream failed: {}",
        error_chain(e)
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use nimbus_core::deploys::{DeployShare, ShareError, SharedRecord};

    use crate::Cluster;
    use crate::queues::tests::NatsServer;

    #[tokio::test]
    async fn a_deploy_stored_through_one_node_is_followed_and_fetched_by_another() {
        let nats = NatsServer::start();
        let a = Cluster::connect(&nats.url).await.expect("node a connects");
        let b = Cluster::connect(&nats.url).await.expect("node b connects");
        let (a, b) = (a.deploys(), b.deploys());
        let (a, b): (&dyn DeployShare, &dyn DeployShare) = (&a, &b);
        let s = |text: &str| text.to_owned();

        // A bundle of several chunks comes back whole; a version never stored is an error.
        let bundle: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        a.put_bundle(s("shop"), s("dev"), 1, bundle.clone())
            .await
            .expect("put");
        assert_eq!(b.get_bundle(s("shop"), s("dev"), 1).await, Ok(bundle));
        assert!(matches!(
            b.get_bundle(s("shop"), s("dev"), 2).await,
            Err(ShareError::Unavailable(_))
        ));

        // Records change by compare-and-set on their revision.
        let first = a
            .put_record(s("shop"), s("dev"), b"{\"v\":1}".to_vec(), None)
            .await
            .expect("the first record");
        assert_eq!(
            b.put_record(s("shop"), s("dev"), b"{\"v\":\"b\"}".to_vec(), None)
                .await,
            Err(ShareError::Conflict)
        );
        let second = b
            .put_record(s("shop"), s("dev"), b"{\"v\":2}".to_vec(), Some(first))
            .await
            .expect("the second record");
        assert!(second > first);
        assert_eq!(
            a.put_record(s("shop"), s("dev"), b"{}".to_vec(), Some(first))
                .await,
            Err(ShareError::Conflict)
        );

        // A follower sees the latest record of each stage, then new ones.
        let seen: Arc<Mutex<Vec<SharedRecord>>> = Arc::default();
        let sink = seen.clone();
        b.follow(Box::new(move |record| {
            sink.lock().expect("the records").push(record);
            true
        }))
        .await
        .expect("follows");
        let third = a
            .put_record(s("blog"), s("prod"), b"{\"v\":3}".to_vec(), None)
            .await
            .expect("another stage's record");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let records = seen.lock().expect("the records").clone();
            if records.len() >= 2 {
                let got: Vec<(String, String, Vec<u8>, u64)> = records
                    .into_iter()
                    .map(|r| (r.service, r.stage, r.record, r.revision))
                    .collect();
                assert_eq!(
                    got,
                    [
                        (s("shop"), s("dev"), b"{\"v\":2}".to_vec(), second),
                        (s("blog"), s("prod"), b"{\"v\":3}".to_vec(), third),
                    ]
                );
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{records:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
