//! How the nodes of a cluster share their deploys: every version's bundle, and each
//! (service, stage)'s record of versions and aliases with a revision, so a deploy, promote
//! or rollback made through one node's admin API reaches every node. Cluster mode's engine
//! implements [`DeployShare`]; a lone `nimbus server` has none.

use crate::BoxFuture;

/// The deploys a cluster's nodes share.
pub trait DeployShare: Send + Sync {
    /// Keeps version `version`'s bundle for the other nodes.
    fn put_bundle(
        &self,
        service: String,
        stage: String,
        version: u64,
        bundle: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), ShareError>>;
    /// A version's bundle, as its deploy gave it.
    fn get_bundle(
        &self,
        service: String,
        stage: String,
        version: u64,
    ) -> BoxFuture<'_, Result<Vec<u8>, ShareError>>;
    /// Stores a stage's record (`stage.json`'s JSON) if the one stored last is still
    /// revision `after` (`None`: none is stored); the new revision, or
    /// [`ShareError::Conflict`] when another node's change came first.
    fn put_record(
        &self,
        service: String,
        stage: String,
        record: Vec<u8>,
        after: Option<u64>,
    ) -> BoxFuture<'_, Result<u64, ShareError>>;
    /// Hands `deliver` the latest record of every stage, then each new one as it is stored
    /// (this node's own included), in revision order, until `deliver` answers `false`.
    fn follow(&self, deliver: RecordSink) -> BoxFuture<'_, Result<(), ShareError>>;
}

/// Where [`DeployShare::follow`] delivers records; `false` stops the follow.
pub type RecordSink = Box<dyn Fn(SharedRecord) -> bool + Send + Sync>;

/// A stage's record as a node stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRecord {
    /// The service.
    pub service: String,
    /// The stage.
    pub stage: String,
    /// `stage.json`'s JSON.
    pub record: Vec<u8>,
    /// Its revision: a later change has a higher one.
    pub revision: u64,
}

/// Why a shared deploy could not be stored or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// Another node changed the stage since this node last read it.
    #[error("another node changed this stage at the same time; look at it again and retry")]
    Conflict,
    /// The cluster's engine failed or cannot be reached.
    #[error("{0}")]
    Unavailable(String),
}
