//! Telemetry every node of a cluster shares, on JetStream: each node publishes the records
//! its store keeps (invocations, log lines, spans) to one stream per app, and stores what the
//! other nodes published, so `nimbus invocations`, `nimbus logs` and `nimbus trace` on any
//! node show every node's work from the moment it joined.
//!
//! Publishing never waits: records go through a bounded queue to a task that publishes
//! them with core NATS (JetStream keeps them, up to a week and 1 GiB); a full queue or a
//! lost connection drops the copy, never the node's own record.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::jetstream::{self};
use futures_util::StreamExt as _;
use nimbus_store::{SharedTelemetry, Store, TelemetryShare};
use tokio::sync::mpsc;

use crate::error_chain;
use crate::queues::escape;

/// The header naming the node a record came from.
const NODE: &str = "Nimbus-Node";
/// Records waiting to be published before new ones are dropped.
const QUEUE: usize = 16_384;
/// How long the stream keeps records, and how much of them.
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_BYTES: i64 = 1 << 30;

/// One node's share of an app's telemetry.
pub struct NatsTelemetry {
    tx: mpsc::Sender<SharedTelemetry>,
}

impl NatsTelemetry {
    /// Starts sharing `store`'s telemetry for app `app`: records other nodes publish from
    /// now on are stored in `store`.
    pub(crate) async fn start(
        client: async_nats::Client,
        jetstream: jetstream::Context,
        app: &str,
        store: Store,
        replicas: usize,
    ) -> Result<NatsTelemetry, String> {
        let app = escape(app, false);
        let subject = format!("nimbus.{app}.telemetry");
        let config = stream::Config {
            name: format!("nimbus-{app}-telemetry"),
            subjects: vec![subject.clone()],
            max_age: MAX_AGE,
            max_bytes: MAX_BYTES,
            discard: DiscardPolicy::Old,
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let failed = |what: &str, e: &dyn std::error::Error| {
            format!("{what} through NATS JetStream: {}", error_chain(e))
        };
        let stream = jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|e| failed("creating the telemetry stream", &e))?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject.clone(),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| failed("following the telemetry stream", &e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| failed("following the telemetry stream", &e))?;
        let node: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();

        let own = node.clone();
        tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let Ok(message) = message else { continue };
                let from = message.headers.as_ref().and_then(|h| h.get(NODE));
                if from.is_some_and(|from| from.as_str() == &*own) {
                    continue;
                }
                match serde_json::from_slice::<SharedTelemetry>(&message.payload) {
                    Ok(record) => {
                        store.ingest(record);
                    }
                    Err(e) => tracing::debug!("a shared telemetry record nimbus cannot read: {e}"),
                }
            }
        });

        let (tx, mut rx) = mpsc::channel::<SharedTelemetry>(QUEUE);
        tokio::spawn(async move {
            while let Some(record) = rx.recv().await {
                let Ok(payload) = serde_json::to_vec(&record) else {
                    continue;
                };
                let mut headers = HeaderMap::new();
                headers.insert(NODE, &*node);
                if let Err(e) = client
                    .publish_with_headers(subject.clone(), headers, payload.into())
                    .await
                {
                    tracing::debug!("sharing a telemetry record: {e}");
                }
            }
        });
        Ok(NatsTelemetry { tx })
    }
}

impl TelemetryShare for NatsTelemetry {
    fn publish(&self, record: SharedTelemetry) {
        // A full queue drops the copy; the node's own store keeps the record.
        let _ = self.tx.try_send(record);
    }
}
