//! Cluster mode's shared engine on NATS JetStream (issue 17): queues, KV, deploys and
//! telemetry that every node serving an app shares.
//!
//! This crate is the only one that knows `async-nats`. The server sees it through seams of
//! nimbus-core (`QueueStore`, `KvStore`, `DeployShare`), so the embedded path never links a
//! client or waits on a network. It is not a second store: buckets, workflow journals and
//! the rest stay in each node's embedded store (docs/design/005-cluster-beyond-one-rack.md).

mod deploys;
mod kv;
mod queues;
mod telemetry;

use std::time::Duration;

pub use deploys::NatsDeploys;
pub use kv::NatsKv;
pub use queues::NatsQueues;
pub use telemetry::NatsTelemetry;

/// How long a node waits for NATS at start before it gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one JetStream API call or publish may take before it fails as unavailable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most copies of a stream JetStream keeps: 3 survives the loss of one server (and two
/// of five), as NATS advises for production.
const MAX_REPLICAS: usize = 3;

/// A connection to the NATS servers of a cluster, shared by every app a node serves.
#[derive(Clone)]
pub struct Cluster {
    url: String,
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    /// Copies of each stream nimbus makes: as many as the NATS cluster has servers, up to
    /// [`MAX_REPLICAS`].
    replicas: usize,
}

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL is not a NATS URL.
    #[error(
        "--cluster `{url}` is not a NATS URL: give nats://HOST:PORT (several joined by commas)"
    )]
    BadUrl {
        /// As given.
        url: String,
    },
    /// No server answered.
    #[error(
        "cannot reach NATS at {url}: {reason}; start nats-server with JetStream (`nats-server -js`) there, or fix --cluster"
    )]
    Unreachable {
        /// As given.
        url: String,
        /// The client's reason.
        reason: String,
    },
    /// A server answered without JetStream.
    #[error(
        "NATS at {url} answered but has no JetStream: {reason}; start nats-server with `-js` (and a store dir, `-sd DIR`)"
    )]
    NoJetStream {
        /// As given.
        url: String,
        /// The server's reason.
        reason: String,
    },
}

impl Cluster {
    /// Connects to the NATS servers at `url` (`nats://HOST:PORT`, several joined by commas)
    /// and checks that JetStream answers; a lost connection is retried in the background.
    pub async fn connect(url: &str) -> Result<Cluster, ClusterError> {
        let addrs: Vec<async_nats::ServerAddr> = url
            .split(',')
            .map(|part| part.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|_| ClusterError::BadUrl {
                url: url.to_owned(),
            })?;
        if addrs.is_empty() {
            return Err(ClusterError::BadUrl {
                url: url.to_owned(),
            });
        }
        let client = async_nats::ConnectOptions::new()
            .name("nimbus")
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Disconnected => {
                        tracing::warn!("lost the connection to NATS; reconnecting")
                    }
                    async_nats::Event::Connected => tracing::info!("connected to NATS"),
                    other => tracing::debug!("NATS: {other}"),
                }
            })
            .connect(addrs)
            .await
            .map_err(|e| ClusterError::Unreachable {
                url: url.to_owned(),
                reason: error_chain(&e),
            })?;
        let jetstream = async_nats::jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        // JetStream's account info answers only where JetStream is on. (Read as JSON:
        // async-nats's `Account` type expects fields nats-server 2.9 does not send.)
        let no_jetstream = |reason: String| ClusterError::NoJetStream {
            url: url.to_owned(),
            reason,
        };
        let info = client
            .request("$JS.API.INFO", bytes::Bytes::new())
            .await
            .map_err(|e| no_jetstream(error_chain(&e)))?;
        let info: serde_json::Value = serde_json::from_slice(&info.payload)
            .map_err(|e| no_jetstream(format!("its account info is not JSON: {e}")))?;
        if let Some(error) = info.get("error") {
            return Err(no_jetstream(
                error["description"]
                    .as_str()
                    .unwrap_or("an error")
                    .to_owned(),
            ));
        }
        let replicas = replicas_for(&client.server_info());
        tracing::info!(
            replicas,
            "streams in NATS JetStream are kept in {replicas} copies"
        );
        Ok(Cluster {
            url: url.to_owned(),
            client,
            jetstream,
            replicas,
        })
    }

    /// Copies of each stream nimbus makes.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The URL the node was given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The queues of one app (its `namespace`, e.g. service and stage), which every node
    /// serving that app shares.
    pub fn queues(&self, namespace: &str) -> NatsQueues {
        NatsQueues::new(
            self.client.clone(),
            self.jetstream.clone(),
            namespace,
            self.replicas,
        )
    }

    /// Shares `store`'s telemetry with every node serving the app `namespace` (as for
    /// [`Cluster::queues`]), and stores theirs in it from now on.
    pub async fn share_telemetry(&self, namespace: &str, store: nimbus_store::Store) {
        match NatsTelemetry::start(
            self.client.clone(),
            self.jetstream.clone(),
            namespace,
            store.clone(),
            self.replicas,
        )
        .await
        {
            Ok(share) => store.share_telemetry(std::sync::Arc::new(share)),
            Err(e) => tracing::warn!("telemetry stays on this node: {e}"),
        }
    }

    /// The deploys every `nimbus server --cluster` node shares.
    pub fn deploys(&self) -> NatsDeploys {
        NatsDeploys::new(
            self.jetstream.clone(),
            self.client.max_payload(),
            self.replicas,
        )
    }

    /// The KV namespaces of one app (its `namespace`, as for [`Cluster::queues`]), which
    /// every node serving that app shares.
    pub fn kv(&self, namespace: &str) -> NatsKv {
        let max_payload = self.client.max_payload();
        NatsKv::new(
            self.jetstream.clone(),
            namespace,
            max_payload,
            self.replicas,
        )
    }
}

/// How many copies of a stream to keep: one per server of the NATS cluster the client
/// was told of (the server's own URL and the others it gossips), up to [`MAX_REPLICAS`].
fn replicas_for(info: &async_nats::ServerInfo) -> usize {
    let mut urls: Vec<&str> = info.connect_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    urls.dedup();
    urls.len().clamp(1, MAX_REPLICAS)
}

/// An error and its causes, joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message.push_str(&format!(": {cause_text}"));
        }
        source = cause.source();
    }
    message
}
