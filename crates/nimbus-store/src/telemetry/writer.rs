//! The telemetry writer: one thread that commits everything queued since its last wakeup in one transaction.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;
use crate::telemetry::{self, InvocationRecord, LogRecord, SpanRecord};

/// How many commands may wait for the writer before `record_*` starts dropping records.
///
/// At roughly 50 bytes a slot (allocated up front by `sync_channel`) this is about 3 MB, and
/// several seconds of the heaviest load we expect, so only a stalled disk fills it.
pub(crate) const QUEUE_CAPACITY: usize = 64 * 1024;

/// The most records one transaction takes, so a backlog is committed in steps and flushes are not
/// held back behind it for long.
const MAX_BATCH: usize = 16 * 1024;

/// The writer connection's page cache, in KiB.
const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// WAL pages (4 KiB each) between the writer's automatic checkpoints.
const WAL_CHECKPOINT_PAGES: i64 = 4096;

/// How long records may wait for others to share their transaction. `nimbus logs -f` and
/// `nimbus invocations` see a record at most this late (plus the commit itself).
const COMMIT_INTERVAL: Duration = Duration::from_millis(250);

/// Work for the writer thread.
pub(crate) enum Command {
    /// Store a record. Records are boxed so that a queue slot stays small.
    Record(Record),
    /// Answer once everything queued before this is committed.
    Flush(SyncSender<()>),
    /// Run a passive checkpoint for the services connection, which never checkpoints itself.
    Checkpoint,
    /// Delete records that started before `cutoff`, after committing everything queued before this.
    Prune {
        cutoff: SystemTime,
        reply: SyncSender<rusqlite::Result<u64>>,
    },
}

/// One record to store.
pub(crate) enum Record {
    Invocation(Box<InvocationRecord>),
    Log(Box<LogRecord>),
    Span(Box<SpanRecord>),
    /// More dropped output lines of an invocation already recorded.
    DroppedLines(Box<(String, u64)>),
}

/// The handle to the writer thread; dropping it commits what is queued and stops the thread.
pub(crate) struct Writer {
    /// The most bytes the database may use before the oldest telemetry is deleted; 0 for
    /// no bound (`--retention-size`).
    pub(crate) max_bytes: Arc<AtomicU64>,
    tx: Option<SyncSender<Command>>,
    thread: Option<JoinHandle<()>>,
    drops: Arc<Drops>,
}

/// Counts records that were never stored and warns about them, at most once a second.
pub(crate) struct Drops {
    n_dropped: AtomicU64,
    /// Milliseconds after `epoch`, offset by one interval so the first drop always warns.
    last_warn_ms: AtomicU64,
    epoch: Instant,
}

const WARN_INTERVAL_MS: u64 = 1000;

/// The writer thread's nice value (0 is normal, 19 the lowest priority).
const WRITER_NICE: libc::c_int = 10;

impl Writer {
    /// Starts the writer thread, which owns `conn` from now on.
    pub(crate) fn start(
        conn: Connection,
        drops: Arc<Drops>,
        capacity: usize,
    ) -> Result<Writer, StoreError> {
        // A batch touches many index pages; with SQLite's default 2 MB cache a big one spills
        // pages to the WAL before its commit, writing some of them twice.
        if let Err(err) = conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB) {
            tracing::debug!(error = %err, "sizing the writer's page cache");
        }
        // Checkpoint (copy the WAL into the database and sync it) every 16 MB of WAL rather
        // than SQLite's 4 MB: the same index pages are rewritten by commit after commit, and a
        // checkpoint copies each page once however often it changed.
        if let Err(err) = conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES) {
            tracing::debug!(error = %err, "setting the writer's checkpoint interval");
        }
        let (tx, rx) = sync_channel(capacity);
        let thread_drops = Arc::clone(&drops);
        let max_bytes = Arc::new(AtomicU64::new(0));
        let thread_max_bytes = Arc::clone(&max_bytes);
        let thread = std::thread::Builder::new()
            .name("nimbus-store-writer".to_owned())
            .spawn(move || run(conn, rx, &thread_drops, &thread_max_bytes))
            .map_err(|source| StoreError::SpawnWriter { source })?;
        Ok(Writer {
            max_bytes,
            tx: Some(tx),
            thread: Some(thread),
            drops,
        })
    }

    /// Queues `record` without waiting; when the queue is full the record is counted as
    /// dropped and `false` returned.
    pub(crate) fn send(&self, record: Record) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(Command::Record(record)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.drops.add(1, &"the writer's queue is full");
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.drops.add(1, &"the writer has stopped");
                false
            }
        }
    }

    /// Asks for a passive checkpoint without waiting; skipped when the queue is full (the
    /// next request, or the writer's own automatic checkpoint, covers it).
    pub(crate) fn checkpoint_soon(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Command::Checkpoint);
        }
    }

    /// Waits until everything queued before this call is committed.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let (reply_tx, reply_rx) = sync_channel(1);
        self.send_blocking(Command::Flush(reply_tx))?;
        reply_rx.recv().map_err(|_| StoreError::WriterStopped)
    }

    /// Deletes records that started before `cutoff`, on the writer thread so it never competes for the lock.
    pub(crate) fn prune(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        let (reply_tx, reply_rx) = sync_channel(1);
        self.send_blocking(Command::Prune {
            cutoff,
            reply: reply_tx,
        })?;
        match reply_rx.recv() {
            Ok(res) => res.map_err(|source| StoreError::Prune { source }),
            Err(_) => Err(StoreError::WriterStopped),
        }
    }

    /// Queues `command`, waiting for room: flush and prune are allowed to wait, records are not.
    fn send_blocking(&self, command: Command) -> Result<(), StoreError> {
        let Some(tx) = &self.tx else {
            return Err(StoreError::WriterStopped);
        };
        tx.send(command).map_err(|_| StoreError::WriterStopped)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the thread drain what is queued, commit it and return.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the store's writer thread panicked");
        }
    }
}

impl Drops {
    pub(crate) fn new() -> Drops {
        Drops {
            n_dropped: AtomicU64::new(0),
            last_warn_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub(crate) fn n_dropped(&self) -> u64 {
        self.n_dropped.load(Ordering::Relaxed)
    }

    /// Counts `n` dropped records and warns, unless a warning went out less than a second ago.
    pub(crate) fn add(&self, n: u64, reason: &dyn Display) {
        let n_dropped = self.n_dropped.fetch_add(n, Ordering::Relaxed) + n;
        let elapsed_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let now_ms = elapsed_ms.saturating_add(WARN_INTERVAL_MS);
        let last_ms = self.last_warn_ms.load(Ordering::Relaxed);
        if now_ms >= last_ms.saturating_add(WARN_INTERVAL_MS)
            && self
                .last_warn_ms
                .compare_exchange(last_ms, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(n_dropped, "telemetry records dropped: {reason}");
        }
    }
}

fn run(mut conn: Connection, rx: Receiver<Command>, drops: &Drops, max_bytes: &AtomicU64) {
    lower_priority();
    let mut batch = Vec::new();
    // `recv` fails only once every sender is gone and the queue is empty, so nothing sent is lost.
    while let Ok(command) = rx.recv() {
        // Let what arrives within `COMMIT_INTERVAL` of a record share its transaction: a
        // commit rewrites every index page it touches, so committing per invocation would
        // cost more than the records themselves. Sleeping rather than waiting on the
        // channel spares the thread a wakeup per record. A flush or prune is served at once.
        if matches!(command, Command::Record(_)) {
            std::thread::sleep(COMMIT_INTERVAL);
        }
        batch.push(command);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        write_batch(&mut conn, &mut batch, drops);
        let max_bytes = max_bytes.load(Ordering::Relaxed);
        if max_bytes > 0 {
            prune_to_size(&mut conn, max_bytes);
        }
    }
    // SQLite recommends this before closing a long-lived connection: it refreshes the planner's
    // statistics where they have drifted, cheaply.
    if let Err(err) = conn.execute_batch("PRAGMA optimize") {
        tracing::debug!(error = %err, "optimizing the store on close");
    }
}

fn write_batch(conn: &mut Connection, batch: &mut Vec<Command>, drops: &Drops) {
    let mut records = Vec::with_capacity(batch.len());
    let mut flushes = Vec::new();
    let mut checkpoint = false;
    for command in batch.drain(..) {
        match command {
            Command::Record(record) => records.push(record),
            Command::Flush(reply) => flushes.push(reply),
            Command::Checkpoint => checkpoint = true,
            Command::Prune { cutoff, reply } => {
                commit(conn, std::mem::take(&mut records), drops);
                // The caller may have given up waiting; the prune stands either way.
                let _ = reply.send(prune(conn, cutoff));
            }
        }
    }
    commit(conn, records, drops);
    for reply in flushes {
        let _ = reply.send(());
    }
    if checkpoint {
        // PASSIVE copies what it can without waiting for readers or blocking writers; the
        // rest goes at the next one.
        if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %err, "checkpointing the services' writes");
        }
    }
}

/// Stores `records` in one transaction; records that fail are counted as dropped.
fn commit(conn: &mut Connection, records: Vec<Record>, drops: &Drops) {
    if records.is_empty() {
        return;
    }
    let n_records = records.len() as u64;
    let res = (|| -> rusqlite::Result<(u64, Option<rusqlite::Error>)> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut n_failed = 0;
        let mut last_err = None;
        let mut rollup = telemetry::Rollup::default();
        for record in &records {
            let res = match record {
                Record::Invocation(record) => {
                    telemetry::insert_invocation(&tx, record).map(|()| rollup.add(record))
                }
                Record::Log(record) => telemetry::insert_log(&tx, record),
                Record::Span(span) => telemetry::insert_span(&tx, span),
                Record::DroppedLines(dropped) => {
                    telemetry::add_dropped_lines(&tx, &dropped.0, dropped.1)
                }
            };
            if let Err(err) = res {
                n_failed += 1;
                last_err = Some(err);
            }
        }
        // The batch's rollups in its own transaction: if they cannot be written, neither
        // are its records, so the two never disagree.
        rollup.write(&tx)?;
        tx.commit()?;
        Ok((n_failed, last_err))
    })();
    match res {
        Ok((_, None)) => {}
        Ok((n_failed, Some(err))) => drops.add(n_failed, &format_args!("storing a record: {err}")),
        Err(err) => drops.add(
            n_records,
            &format_args!("committing {n_records} records: {err}"),
        ),
    }
}

/// Keeps the database within `--retention-size`, oldest telemetry first.
fn prune_to_size(conn: &mut Connection, max_bytes: u64) {
    let res = (|| -> rusqlite::Result<u64> {
        if telemetry::used_bytes(conn)? <= max_bytes {
            return Ok(0);
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n_deleted = telemetry::prune_to_size(&tx, max_bytes)?;
        tx.commit()?;
        Ok(n_deleted)
    })();
    match res {
        Ok(0) => {}
        Ok(n_deleted) => tracing::debug!("retention size: deleted {n_deleted} oldest records"),
        Err(err) => tracing::warn!(error = %err, "keeping the store within its retention size"),
    }
}

fn prune(conn: &mut Connection, cutoff: SystemTime) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n_deleted = telemetry::prune(&tx, cutoff)?;
    tx.commit()?;
    Ok(n_deleted)
}

/// Telemetry is never what a request waits for, yet a commit takes ~14 ms of CPU (1,250
/// records at 5k req/s), and on a busy machine the requests that share a core with it
/// wait. A niced writer thread yields the core to request threads sooner and still gets
/// about a tenth of a contended core, far more than its commits need; nothing is dropped
/// unless its queue fills. Measured by renicing the thread of one running server (wrk -c1
/// on examples/hello, 3 rounds): p99 2.2-2.5 ms at nice 10 against 2.8-3.4 ms at nice 0,
/// and 0.7 ms with telemetry off.
fn lower_priority() {
    // SAFETY: setpriority(2) takes plain integers. Under Linux `who = 0` with PRIO_PROCESS
    // names the calling thread (nice values are per thread), i.e. only this writer.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, WRITER_NICE) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "lowering the writer thread's priority");
    }
}
