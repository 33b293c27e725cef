//! `StoreError`: what went wrong in the store, and who was doing it.

use std::path::PathBuf;

/// An error from the store.
///
/// Each variant says which step failed and keeps the cause as its source, so `{:#}` prints the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// There is no store in the state folder yet: nothing has written one.
    #[error("no store at {}: run `nimbus up` first, which creates it", path.display())]
    Missing {
        /// The database file that was looked for.
        path: PathBuf,
    },
    /// The state folder could not be created.
    #[error("creating state folder {}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// SQLite could not open or configure the database file.
    #[error("opening store {}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite could not put the file in WAL mode, which lets readers and the writer work at once.
    #[error(
        "store {} cannot use SQLite's WAL mode (it stayed in {mode:?} mode); is the state folder on a network file system?",
        path.display()
    )]
    NoWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite reported instead.
        mode: String,
    },
    /// A schema migration failed; the store is left at the version before it.
    #[error("migrating store {} to schema version {version}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The version being applied.
        version: u32,
        /// Why it failed.
        #[source]
        source: rusqlite::Error,
    },
    /// The store was written by a newer nimbus.
    #[error(
        "store {} has schema version {found}, newer than this nimbus understands ({supported}); upgrade nimbus",
        path.display()
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// A read-only open found a store written by an older nimbus, which it may not migrate.
    #[error(
        "store {} has schema version {found}, older than this nimbus expects ({supported}): run `nimbus up` once to upgrade it",
        path.display()
    )]
    Outdated {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The version this build expects.
        supported: u32,
    },
    /// A query failed; `what` names the records being read.
    #[error("reading {what} from the store")]
    Query {
        /// The records being read: "invocations", "logs", "spans".
        what: &'static str,
        /// Why it failed.
        #[source]
        source: rusqlite::Error,
    },
    /// Deleting old records failed.
    #[error("pruning old records from the store")]
    Prune {
        /// Why it failed.
        #[source]
        source: rusqlite::Error,
    },
    /// The writer thread could not be started.
    #[error("starting the store's writer thread")]
    SpawnWriter {
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A write through `Store::without_waiting` found the services connection or SQLite's
    /// write lock taken; nothing was changed, and the write may be retried where waiting is fine.
    #[error("the store's writer is busy; retry where the call may wait")]
    WouldWait,
    /// A write was asked of a store opened with `Store::open_read_only`.
    #[error("the store was opened read-only")]
    ReadOnly,
    /// The writer thread is gone; only possible if it panicked.
    #[error("the store's writer thread has stopped")]
    WriterStopped,
    /// A write to the queues, buckets, KV or schedules failed in SQLite; nothing of it was committed.
    #[error("writing {what} to the store")]
    Write {
        /// What was being written: "messages", "an object", "a KV entry", ...
        what: &'static str,
        /// Why it failed.
        #[source]
        source: rusqlite::Error,
    },
    /// A file of a bucket could not be written, read or removed.
    #[error("{action} object file {}", path.display())]
    ObjectFile {
        /// "writing", "reading", "removing", ...
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A queue was named that no manifest declared.
    #[error(
        "queue `{queue}` does not exist: declare it in the manifest (`queues:` or an AWS::SQS::Queue resource)"
    )]
    UnknownQueue {
        /// The name given.
        queue: String,
    },
    /// A queue's declaration breaks an SQS rule.
    #[error("queue `{queue}` is declared wrongly: {reason}")]
    InvalidQueue {
        /// The queue's name.
        queue: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A message (body plus attribute names, types and values) is over SQS's limit.
    #[error(
        "message of {size} bytes (body and attributes) is over the limit of {limit} bytes: send a reference to the data (e.g. a bucket key) instead"
    )]
    MessageTooLarge {
        /// The message's size in bytes.
        size: usize,
        /// The limit, 262,144 bytes.
        limit: usize,
    },
    /// A message breaks an SQS rule other than its size.
    #[error("invalid message for queue `{queue}`: {reason}")]
    InvalidMessage {
        /// The queue it was sent to.
        queue: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A message to a FIFO queue has no message group id (SQS's `MissingParameter`).
    #[error(
        "a message to FIFO queue `{queue}` needs a message group id (MessageGroupId): messages of one group are delivered in order"
    )]
    MissingGroupId {
        /// The queue it was sent to.
        queue: String,
    },
    /// A parameter of a call is out of its range (`max` of a receive, a visibility timeout, a list limit).
    #[error("invalid parameter: {reason}")]
    InvalidParameter {
        /// What is wrong and the allowed range.
        reason: String,
    },
    /// A receipt handle is malformed, or is not the latest one of a message still in the queue
    /// (SQS's `ReceiptHandleIsInvalid`).
    #[error(
        "receipt handle `{receipt_handle}` is not valid for queue `{queue}`: the message was deleted, moved or received again since; receive it again to get a new handle"
    )]
    InvalidReceiptHandle {
        /// The queue.
        queue: String,
        /// The handle given.
        receipt_handle: String,
    },
    /// Change of visibility of a message that is not in flight (SQS's `MessageNotInflight`).
    #[error(
        "message in queue `{queue}` is not in flight (its visibility timeout has expired): receive it again before changing its visibility"
    )]
    MessageNotInFlight {
        /// The queue.
        queue: String,
    },
    /// A bucket name breaks the S3 naming rules.
    #[error("invalid bucket name `{bucket}`: {reason}")]
    InvalidBucketName {
        /// The name given.
        bucket: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A bucket was named that no manifest declared.
    #[error(
        "bucket `{bucket}` does not exist: declare it in the manifest (`buckets:` or an AWS::S3::Bucket resource)"
    )]
    UnknownBucket {
        /// The name given.
        bucket: String,
    },
    /// A conditional write whose condition does not hold (S3's 412).
    #[error("At least one of the pre-conditions you specified did not hold: {reason}")]
    PreconditionFailed {
        /// Which condition, and what is there.
        reason: String,
    },
    /// A conditional write of an object that does not exist.
    #[error("The specified key does not exist: no object `{key}` in bucket `{bucket}`")]
    NoSuchObject {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// A bucket to delete still holds objects.
    #[error("bucket `{bucket}` is not empty: delete its objects first")]
    BucketNotEmpty {
        /// The bucket.
        bucket: String,
    },
    /// A multipart upload id names no upload in progress of that bucket and key.
    #[error(
        "The specified multipart upload does not exist: `{id}` is not an upload in progress of this key (it may have been completed or aborted)"
    )]
    NoSuchUpload {
        /// The id given (cut to 100 characters).
        id: String,
    },
    /// A multipart upload's parts or part number are not what S3 accepts.
    #[error("{reason}")]
    InvalidUpload {
        /// S3's error code (`InvalidPart`, `InvalidPartOrder`, `EntityTooSmall`, ...).
        code: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An object key or a KV key or namespace breaks the key rules.
    #[error("invalid key `{key}`: {reason}")]
    InvalidKey {
        /// The key given (cut to 200 characters).
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A KV value, KV metadata or object metadata is over its limit.
    #[error("{what} of {size} bytes is over the limit of {limit} bytes")]
    ValueTooLarge {
        /// "KV value", "KV metadata" or "object metadata".
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A KV expiration is not far enough in the future, or metadata is not JSON.
    #[error("invalid {what}: {reason}")]
    InvalidValue {
        /// "KV expiration", "KV metadata" or "object metadata".
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A secret's name or value breaks the rules; the value itself is never in the message.
    #[error("invalid secret `{name}`: {reason}")]
    InvalidSecret {
        /// The name given (cut to 200 characters).
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The store holds secrets but the key they were encrypted with is gone.
    #[error(
        "the store holds {n_secrets} secret(s) but their key file {} is missing: restore it from a backup (the secrets cannot be read without it), or remove them with `nimbus secret rm`",
        path.display()
    )]
    MissingSecretKey {
        /// Where the key file should be.
        path: PathBuf,
        /// How many secrets need it.
        n_secrets: u64,
    },
    /// The key file does not hold a key.
    #[error(
        "secret key file {} does not hold a key (64 hex digits): restore the original file",
        path.display()
    )]
    InvalidSecretKey {
        /// The key file.
        path: PathBuf,
    },
    /// The key file could not be read or created.
    #[error("{action} secret key file {}", path.display())]
    SecretKeyFile {
        /// "reading" or "creating".
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A secret did not decrypt: the key is not the one it was stored with, or the stored bytes
    /// were altered.
    #[error(
        "secret `{name}` cannot be decrypted with the key in {}: it is not the key the secret was set with, or the store was altered; restore the original key file, or set the secret again",
        key_path.display()
    )]
    Decrypt {
        /// The secret's name.
        name: String,
        /// The key file used.
        key_path: PathBuf,
    },
    /// The operating system's random number generator failed.
    /// A queue operation through the `QueueStore` seam failed (whichever backend).
    #[error(transparent)]
    Queue(#[from] nimbus_core::queues::QueueError),
    /// A KV call was refused or failed (whichever backend).
    #[error(transparent)]
    Kv(#[from] nimbus_core::kv::KvError),
    #[error("the operating system's random number generator failed: {reason}")]
    Random {
        /// What it reported.
        reason: String,
    },
}

impl StoreError {
    /// Whether the caller's input is at fault (bad name, size, key, handle, parameter): a 4xx,
    /// not a failure of the platform.
    pub fn is_client_error(&self) -> bool {
        matches!(self, StoreError::Queue(e) if e.is_client())
            || matches!(self, StoreError::Kv(e) if e.is_client_error())
            || matches!(
                self,
                StoreError::UnknownQueue { .. }
                    | StoreError::InvalidQueue { .. }
                    | StoreError::MessageTooLarge { .. }
                    | StoreError::InvalidMessage { .. }
                    | StoreError::MissingGroupId { .. }
                    | StoreError::InvalidParameter { .. }
                    | StoreError::InvalidReceiptHandle { .. }
                    | StoreError::MessageNotInFlight { .. }
                    | StoreError::InvalidBucketName { .. }
                    | StoreError::UnknownBucket { .. }
                    | StoreError::InvalidKey { .. }
                    | StoreError::ValueTooLarge { .. }
                    | StoreError::InvalidValue { .. }
                    | StoreError::InvalidSecret { .. }
                    | StoreError::BucketNotEmpty { .. }
                    | StoreError::PreconditionFailed { .. }
                    | StoreError::NoSuchUpload { .. }
                    | StoreError::InvalidUpload { .. }
            )
    }

    /// Whether the thing named does not exist (a 404 rather than a 400).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::Queue(nimbus_core::queues::QueueError::UnknownQueue { .. })
                | StoreError::UnknownQueue { .. }
                | StoreError::UnknownBucket { .. }
                | StoreError::NoSuchUpload { .. }
                | StoreError::NoSuchObject { .. }
        )
    }

    /// The message with its whole chain of causes, `a: b: c`.
    pub(crate) fn chain(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    }
}

/// An error and its causes, joined with `: `.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}
