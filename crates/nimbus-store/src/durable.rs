//! What the durable services (queues, buckets, KV, schedules) share: the connection they write
//! through, their schema, and small helpers for time, ids and digests.
//!
//! Durability: every mutating call runs in one `BEGIN IMMEDIATE` transaction on the services
//! connection and has committed before it returns. The database is in WAL mode with
//! `synchronous = NORMAL`: a commit appends its frames to the WAL file with `write(2)`, so once the
//! call returns they are in the operating system's page cache and survive a kill -9 of nimbus at
//! any moment (SQLite replays the WAL on the next open; a transaction cut short is rolled back).
//! What NORMAL does not give is durability across a power cut or kernel crash, which could lose the
//! last commits before a checkpoint (never corrupt the file); `FULL` would fsync every commit and
//! cap throughput at the disk's flush rate, far below the 5,000 messages/s target.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};
use std::time::{Duration, SystemTime};

use md5::Digest as _;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::{Store, StoreError, db, telemetry};

/// The writing half of the durable services: one read-write connection of its own, apart from the
/// telemetry writer thread's, so a message is never queued behind a backlog of log lines.
pub(crate) struct Services {
    conn: Mutex<Connection>,
    /// Commits since the telemetry writer was last asked to checkpoint.
    commits: AtomicU32,
}

/// The services connection never checkpoints itself (a checkpoint copies the WAL into the
/// database and syncs it, milliseconds a request would wait for); after this many commits it
/// asks the telemetry writer's thread to run a passive checkpoint, which never blocks writers.
/// A small put adds 4–5 WAL pages, so this is about SQLite's default of 1,000 pages.
const COMMITS_PER_CHECKPOINT: u32 = 256;

/// Each connection keeps this many prepared statements, enough for every statement of the
/// services (the default of 16 would evict some on every receive/delete cycle).
pub(crate) const STATEMENT_CACHE: usize = 64;

/// Schema version 2: queues, messages, deduplication ids, buckets, objects, KV, schedules.
///
/// Times are integer microseconds since the Unix epoch (`*_us`), durations integer microseconds.
pub(crate) const SCHEMA_V2: &str = "
CREATE TABLE queues (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    visibility_timeout_us INTEGER NOT NULL,
    delay_us INTEGER NOT NULL,
    retention_us INTEGER NOT NULL,
    content_based_deduplication INTEGER NOT NULL,
    dead_letter_queue TEXT,
    max_receive_count INTEGER
);

-- `seq` orders a FIFO queue and is its messages' sequence number; AUTOINCREMENT keeps it from ever
-- being reused after the newest message is deleted, so sequence numbers only grow.
-- `receipt` is the random part of the latest receipt handle, NULL until the first receive.
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attributes TEXT,
    md5_of_body TEXT NOT NULL,
    group_id TEXT,
    deduplication_id TEXT,
    sent_us INTEGER NOT NULL,
    visible_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_received_us INTEGER,
    receipt INTEGER
);
-- Receive on a standard queue: the visible messages, oldest visibility first; also queue stats.
CREATE INDEX messages_visible ON messages (queue_id, visible_us);
-- Receive on a FIFO queue: visible messages in sequence order (only FIFO messages have a group).
CREATE INDEX messages_fifo_seq ON messages (queue_id, seq) WHERE group_id IS NOT NULL;
-- A message group's messages in order, and whether one is ahead of a visible one.
CREATE INDEX messages_fifo_group ON messages (queue_id, group_id, seq) WHERE group_id IS NOT NULL;
-- Whether a message group has a message in flight.
CREATE INDEX messages_fifo_in_flight ON messages (queue_id, group_id, visible_us) WHERE group_id IS NOT NULL;

-- FIFO deduplication ids seen in the last five minutes, and the message each one was given to.
CREATE TABLE deduplication (
    queue_id INTEGER NOT NULL,
    deduplication_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    PRIMARY KEY (queue_id, deduplication_id)
) WITHOUT ROWID;

CREATE TABLE buckets (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

-- `file` is the name of the object's bytes in `buckets/<bucket>/`: random hex, never the key.
CREATE TABLE objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT,
    last_modified_us INTEGER NOT NULL,
    sequencer INTEGER NOT NULL,
    metadata TEXT,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;

-- Monotonic counters, such as the sequencer of object events.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- A rowid table rather than WITHOUT ROWID: values run to 25 MiB, and SQLite keeps large rows
-- better out of the index b-tree.
CREATE TABLE kv (
    id INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expiration_us INTEGER,
    metadata TEXT,
    UNIQUE (namespace, key)
);
CREATE INDEX kv_expiration ON kv (expiration_us) WHERE expiration_us IS NOT NULL;

CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    last_fired_us INTEGER NOT NULL
) WITHOUT ROWID;
";

impl Services {
    /// Opens the services' own read-write connection to a store already migrated by `db::open_read_write`.
    pub(crate) fn open(path: &Path) -> Result<Services, StoreError> {
        let conn = db::open_read_write(path)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Services {
            conn: Mutex::new(conn),
            commits: AtomicU32::new(0),
        })
    }

    /// Counts a commit, and every `COMMITS_PER_CHECKPOINT` asks for a checkpoint.
    fn committed(&self, store: &Store) {
        let n = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(COMMITS_PER_CHECKPOINT) {
            store.checkpoint_soon();
        }
    }
}

impl Store {
    /// Runs `f` in one immediate transaction on the services connection and commits it.
    ///
    /// An `Err` from `f` rolls everything back. `what` names the records for SQL errors.
    pub(crate) fn write<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Some(services) = &self.inner.services else {
            return Err(StoreError::ReadOnly);
        };
        // A panic inside `f` drops the transaction, which rolls it back, so the connection is
        // fine to use after poisoning.
        let mut conn = if self.nowait {
            match services.conn.try_lock() {
                Ok(conn) => conn,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return Err(StoreError::WouldWait),
            }
        } else {
            services.conn.lock().unwrap_or_else(PoisonError::into_inner)
        };
        let res = if self.nowait {
            // SQLite's write lock may be held by the telemetry writer's batch: give up at
            // once rather than wait on an async worker (busy_timeout 0 fails `BEGIN` with
            // SQLITE_BUSY, before `f` runs).
            let _ = conn.busy_timeout(Duration::ZERO);
            let res = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy =>
                {
                    Err(StoreError::WouldWait)
                }
                Err(e) => Err(write_err(what)(e)),
                Ok(tx) => commit_with(tx, what, f),
            };
            let _ = conn.busy_timeout(db::BUSY_TIMEOUT);
            res
        } else {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(write_err(what))?;
            commit_with(tx, what, f)
        };
        drop(conn);
        if res.is_ok() {
            services.committed(self);
        }
        res
    }

    /// Runs `f` on a read connection; it sees everything committed before it started.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.inner.readers.with(f)
    }
}

/// Runs `f` in `tx` and commits; an `Err` rolls back (dropping `tx`).
fn commit_with<T>(
    tx: Transaction<'_>,
    what: &'static str,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let res = f(&tx)?;
    tx.commit().map_err(write_err(what))?;
    Ok(res)
}

/// Maps an SQLite error of a write to `StoreError::Write`.
pub(crate) fn write_err(what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |source| StoreError::Write { what, source }
}

/// Maps an SQLite error of a read to `StoreError::Query`.
pub(crate) fn read_err(what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

/// Now, in microseconds since the Unix epoch.
pub(crate) fn now_us() -> i64 {
    telemetry::unix_micros(SystemTime::now())
}

/// A time in microseconds since the Unix epoch.
pub(crate) fn unix_us(time: SystemTime) -> i64 {
    telemetry::unix_micros(time)
}

/// A duration in microseconds, saturating.
pub(crate) fn us(duration: Duration) -> i64 {
    telemetry::micros(duration)
}

/// A time from microseconds since the Unix epoch.
pub(crate) fn time(us: i64) -> SystemTime {
    telemetry::time_from_micros(us)
}

/// 122 random bits from the operating system (a version 4 UUID).
pub(crate) fn random_id() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

/// Lowercase hex of the MD5 digest of `data`, as SQS's `MD5OfMessageBody` and S3's ETag.
pub(crate) fn md5_hex(data: &[u8]) -> String {
    hex(&md5::Md5::digest(data))
}

/// Lowercase hex of the SHA-256 digest of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&sha2::Sha256::digest(data))
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The bytes of lowercase or uppercase hex text; `None` if it is not hex.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|idx| u8::from_str_radix(text.get(idx..idx + 2)?, 16).ok())
        .collect()
}

/// `text` cut to at most `max` characters, for error messages that echo input.
pub(crate) fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((idx, _)) => format!("{}…", &text[..idx]),
        None => text.to_owned(),
    }
}
