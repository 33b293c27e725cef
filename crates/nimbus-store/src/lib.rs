//! Embedded storage for nimbus: one SQLite file, `nimbus.db`, in the app's state folder.
//!
//! It keeps observability records (invocations, log lines, spans) written by `nimbus up` and read
//! by CLI commands such as `nimbus logs`; those writes go through a bounded queue to one writer
//! thread, so recording never waits on the disk.
//!
//! It also keeps the durable services of the events issue: queues with SQS semantics
//! (`queues.rs`), buckets (`buckets.rs`, object bytes as files beside the database), KV
//! namespaces (`kv.rs`) and schedule fire times (`schedules.rs`). Their calls are synchronous
//! (call them from `spawn_blocking`) and every mutating call has committed when it returns, so an
//! accepted message, object or key survives a kill -9 of the process (see `durable.rs`).
//!
//! It keeps tables with DynamoDB's data model (`tables.rs`), as the implementation of
//! `nimbus_core::tables::TableStore`.
//!
//! It keeps the app's secrets too (`secrets.rs`): encrypted in the database under a key in
//! `secrets.key` beside it, read back only for functions' environments.
//!
//! It is not a general database layer: callers see records and queries, never SQL or connections.
//! It is the only crate that touches the data dir. It exports nothing over the network and knows
//! nothing of executors, the gateway or Prometheus; metrics are counted in memory elsewhere.

mod buckets;
mod db;
mod durable;
mod durable_objects;
mod error;
mod kv;
mod queues;
mod schedules;
mod secrets;
mod streams;
mod tables;
mod telemetry;
mod topics;
mod workflows;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::SystemTime;

use rusqlite::Connection;

pub use buckets::{
    INLINE_MAX, InlineGet, MAX_LIST_OBJECTS, MAX_OBJECT_KEY_BYTES, MAX_OBJECT_METADATA_BYTES,
    MAX_PART_NUMBER, MIN_PART_BYTES, ObjectEvents, ObjectList, ObjectMeta, Part, Upload,
    WriteCondition,
};
pub use error::StoreError;
/// SQS's rules for other backends of `QueueStore` (cluster mode's), so all refuse alike.
pub use queues::{
    CheckedMessage, check_message, check_queue_spec, check_visibility, decode_message_attributes,
};
pub use queues::{
    DEDUPLICATION_WINDOW, MAX_DELAY, MAX_MESSAGE_BATCH, MAX_MESSAGE_BYTES, MAX_RETENTION,
    MAX_VISIBILITY_TIMEOUT, MIN_RETENTION, MessageAttribute, NewMessage, QueueStats,
    ReceivedMessage, SentMessage, md5_of_attributes,
};
pub use schedules::ScheduleFire;
pub use secrets::{
    MAX_SECRET_NAME_BYTES, MAX_SECRET_VALUE_BYTES, SECRET_KEY_FILE, SecretInfo, Secrets,
    check_secret_name,
};
pub use telemetry::{
    InvocationMinute, InvocationQuery, InvocationRecord, LogCursor, LogPage, LogQuery, LogRecord,
    SharedTelemetry, SpanRecord, TelemetryShare, invocation_span, platform_lines, start_message,
};
pub use topics::TopicSubscription;
pub use workflows::WorkflowUsage;

use telemetry::writer::{Drops, Record, Writer};

/// A handle to the store; clones share one writer thread and one set of read connections.
///
/// The writer thread stops, after committing everything queued, when the last clone is dropped.
/// That drop waits for the commit, so drop the last clone where blocking briefly is fine (shutdown).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// A handle from `Store::without_waiting`: its writes fail with `StoreError::WouldWait`
    /// rather than wait for the services connection.
    nowait: bool,
}

struct Inner {
    path: PathBuf,
    /// The state folder; buckets keep their files in `buckets/` inside it.
    state_dir: PathBuf,
    /// `None` for a store opened read-only.
    writer: Option<Writer>,
    /// The connection the durable services write through; `None` for a store opened read-only.
    services: Option<durable::Services>,
    readers: Readers,
    drops: Arc<Drops>,
    /// In cluster mode, where the telemetry this store records also goes.
    share: std::sync::OnceLock<Arc<dyn TelemetryShare>>,
}

/// Read-only connections, so concurrent queries do not queue behind one another.
///
/// At most `MAX_READERS` are open; they are kept open, because opening one parses the schema
/// and loses the prepared statements, which costs more than a point read itself. A query
/// finding all of them busy waits for one.
struct Readers {
    path: PathBuf,
    pool: Mutex<ReaderPool>,
    returned: Condvar,
}

struct ReaderPool {
    idle: Vec<Connection>,
    n_open: usize,
}

/// More readers than the machine has cores only queue on the CPU; a few spare cover reads that
/// wait on the disk.
const MAX_READERS: usize = 8;

impl Store {
    /// Opens (creating if needed) `<state_dir>/nimbus.db`, WAL mode, runs migrations, starts the writer thread.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_capacity(state_dir, telemetry::writer::QUEUE_CAPACITY)
    }

    fn open_with_capacity(state_dir: &Path, capacity: usize) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::CreateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        let path = db::file_path(state_dir);
        let conn = db::open_read_write(&path)?;
        let services = durable::Services::open(&path)?;
        let drops = Arc::new(Drops::new());
        let writer = Writer::start(conn, Arc::clone(&drops), capacity)?;
        Ok(Store {
            inner: Arc::new(Inner {
                readers: Readers::new(path.clone(), None),
                path,
                state_dir: state_dir.to_owned(),
                writer: Some(writer),
                services: Some(services),
                drops,
                share: std::sync::OnceLock::new(),
            }),
            nowait: false,
        })
    }

    /// Opens an existing store for reading only, for CLI commands like `nimbus logs` while `nimbus up` writes.
    ///
    /// A missing file is `StoreError::Missing`. Records sent to a read-only store are counted as dropped.
    pub fn open_read_only(state_dir: &Path) -> Result<Store, StoreError> {
        let path = db::file_path(state_dir);
        let conn = db::open_read_only(&path)?;
        Ok(Store {
            inner: Arc::new(Inner {
                readers: Readers::new(path.clone(), Some(conn)),
                path,
                state_dir: state_dir.to_owned(),
                writer: None,
                services: None,
                drops: Arc::new(Drops::new()),
                share: std::sync::OnceLock::new(),
            }),
            nowait: false,
        })
    }

    /// A handle to this store whose durable-service writes never wait: where the services
    /// connection or SQLite's write lock is taken (by another write, the telemetry writer's
    /// batch or a checkpoint), a write fails with `StoreError::WouldWait` before changing
    /// anything. Callers on an async worker try a small write with it and, on `WouldWait`,
    /// run the same write on the blocking pool.
    pub fn without_waiting(&self) -> Store {
        Store {
            inner: Arc::clone(&self.inner),
            nowait: true,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Queues an invocation record; never waits on the disk (see `n_dropped`).
    pub fn record_invocation(&self, record: InvocationRecord) {
        if let Some(share) = self.inner.share.get() {
            share.publish(SharedTelemetry::Invocation(record.clone()));
        }
        let _ = self.send(Record::Invocation(Box::new(record)));
    }

    /// Queues a log line; never waits on the disk (see `n_dropped`). `false` when it was
    /// dropped (the writer's queue is full).
    pub fn record_log(&self, record: LogRecord) -> bool {
        if let Some(share) = self.inner.share.get() {
            share.publish(SharedTelemetry::Log(record.clone()));
        }
        self.send(Record::Log(Box::new(record)))
    }

    /// Adds `n` to the dropped output lines of the recorded invocation `request_id`.
    pub fn record_dropped_lines(&self, request_id: &str, n: u64) -> bool {
        if let Some(share) = self.inner.share.get() {
            share.publish(SharedTelemetry::DroppedLines {
                request_id: request_id.to_owned(),
                n,
            });
        }
        self.send(Record::DroppedLines(Box::new((request_id.to_owned(), n))))
    }

    /// From now on, also hands every telemetry record this store records to `share` (cluster
    /// mode); a second call changes nothing.
    pub fn share_telemetry(&self, share: Arc<dyn TelemetryShare>) {
        let _ = self.inner.share.set(share);
    }

    /// Stores a record another node shared (without sharing it again); `false` when it was
    /// dropped, as for a record of this node's.
    pub fn ingest(&self, record: SharedTelemetry) -> bool {
        self.send(match record {
            SharedTelemetry::Invocation(record) => Record::Invocation(Box::new(record)),
            SharedTelemetry::Log(record) => Record::Log(Box::new(record)),
            SharedTelemetry::Span(span) => Record::Span(Box::new(span)),
            SharedTelemetry::DroppedLines { request_id, n } => {
                Record::DroppedLines(Box::new((request_id, n)))
            }
        })
    }

    /// Asks the writer thread for a passive checkpoint of the WAL, without waiting.
    pub(crate) fn checkpoint_soon(&self) {
        if let Some(writer) = &self.inner.writer {
            writer.checkpoint_soon();
        }
    }

    /// Keeps the database within `max_bytes` from now on, deleting the oldest invocation
    /// records, log lines and spans after each commit that leaves it larger (durable
    /// services data is never deleted); `None` for no bound.
    pub fn set_retention_size(&self, max_bytes: Option<u64>) {
        if let Some(writer) = &self.inner.writer {
            writer
                .max_bytes
                .store(max_bytes.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Queues a span; never waits on the disk (see `n_dropped`).
    pub fn record_span(&self, span: SpanRecord) {
        if let Some(share) = self.inner.share.get() {
            share.publish(SharedTelemetry::Span(span.clone()));
        }
        let _ = self.send(Record::Span(Box::new(span)));
    }

    /// How many records were dropped because the writer's queue was full or storing them failed.
    pub fn n_dropped(&self) -> u64 {
        self.inner.drops.n_dropped()
    }

    /// Blocks until everything sent before this call is committed (and visible to readers).
    pub fn flush(&self) {
        if let Some(writer) = &self.inner.writer
            && let Err(err) = writer.flush()
        {
            tracing::error!(error = %err, "flushing the store");
        }
    }

    /// Deletes invocations, logs and spans that started before `older_than`; returns how many.
    ///
    /// Runs on the writer thread after everything already queued, and blocks until done.
    pub fn prune(&self, older_than: SystemTime) -> Result<u64, StoreError> {
        let Some(writer) = &self.inner.writer else {
            return Err(StoreError::ReadOnly);
        };
        writer.prune(older_than)
    }

    /// Invocations matching `query`, newest first.
    pub fn invocations(
        &self,
        query: &InvocationQuery,
    ) -> Result<Vec<InvocationRecord>, StoreError> {
        self.inner
            .readers
            .with(|conn| telemetry::query_invocations(conn, query, None))
    }

    /// As `invocations`, only those whose outcome is `outcome` (`"ok"`, `"error"`, ...).
    pub fn invocations_with_outcome(
        &self,
        query: &InvocationQuery,
        outcome: &str,
    ) -> Result<Vec<InvocationRecord>, StoreError> {
        self.inner
            .readers
            .with(|conn| telemetry::query_invocations(conn, query, Some(outcome)))
    }

    /// The per-minute rollups of the invocations in the minutes from the one holding `since`
    /// on, in no order (the dashboard's overview).
    pub fn invocation_minutes(
        &self,
        since: SystemTime,
    ) -> Result<Vec<InvocationMinute>, StoreError> {
        self.inner
            .readers
            .with(|conn| telemetry::query_invocation_minutes(conn, since))
    }

    /// The record of one invocation by its request id; `None` when none is kept.
    pub fn invocation(&self, request_id: &str) -> Result<Option<InvocationRecord>, StoreError> {
        self.inner
            .readers
            .with(|conn| telemetry::query_invocation(conn, request_id))
    }

    /// Log lines matching `query`, oldest first: what functions wrote, and the START/END/REPORT
    /// lines of their invocations.
    pub fn logs(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        self.inner
            .readers
            .with(|conn| telemetry::query_logs(conn, query))
    }

    /// The spans of one trace, by start time.
    pub fn spans(&self, trace_id: &str) -> Result<Vec<SpanRecord>, StoreError> {
        self.inner
            .readers
            .with(|conn| telemetry::query_spans(conn, trace_id))
    }

    fn send(&self, record: Record) -> bool {
        match &self.inner.writer {
            Some(writer) => writer.send(record),
            None => {
                self.inner.drops.add(1, &"the store was opened read-only");
                false
            }
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("read_only", &self.inner.writer.is_none())
            .finish_non_exhaustive()
    }
}

impl Readers {
    fn new(path: PathBuf, first: Option<Connection>) -> Readers {
        let idle: Vec<Connection> = first.into_iter().collect();
        Readers {
            path,
            pool: Mutex::new(ReaderPool {
                n_open: idle.len(),
                idle,
            }),
            returned: Condvar::new(),
        }
    }

    /// Runs `f` on an idle read connection, opening one if none is idle and fewer than
    /// `MAX_READERS` are open, else waiting for one.
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.take()?;
        // Should `f` panic, the connection is closed and its slot freed.
        let slot = Slot(self);
        let res = f(&conn);
        std::mem::forget(slot);
        // A panic while holding the lock cannot leave the pool inconsistent, so ignore poisoning.
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .idle
            .push(conn);
        self.returned.notify_one();
        res
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok(conn);
            }
            if pool.n_open < MAX_READERS {
                pool.n_open += 1;
                drop(pool);
                return db::open_reader(&self.path).inspect_err(|_| {
                    self.pool
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .n_open -= 1;
                });
            }
            pool = self
                .returned
                .wait(pool)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The pool slot of a connection in use; dropped only when its user panicked.
struct Slot<'a>(&'a Readers);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .n_open -= 1;
        self.0.returned.notify_one();
    }
}

#[cfg(test)]
mod tests;
