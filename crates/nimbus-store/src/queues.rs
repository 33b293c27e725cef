//! Queues with SQS semantics: send (delay, attributes, FIFO groups and deduplication), receive with
//! a visibility timeout, delete, change visibility, redrive to a dead-letter queue, purge, stats.
//!
//! Follows the Amazon SQS Developer Guide and API reference for limits and error cases; where
//! nimbus differs (sub-second visibility timeouts, retention down to one second) it says so.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use md5::Digest as _;
use nimbus_core::BoxFuture;
use nimbus_core::events::QueueSpec;
use nimbus_core::queues::{QueueError, QueueStore};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::durable::{self, now_us, read_err, time, us, write_err};
use crate::{Store, StoreError};

pub use nimbus_core::queues::{
    MessageAttribute, NewMessage, QueueStats, ReceivedMessage, SentMessage,
};

/// SQS's size limit of a message: body plus attribute names, types and values.
pub const MAX_MESSAGE_BYTES: usize = 262_144;
/// SQS's longest delay of a message or a queue.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// SQS's longest visibility timeout.
pub const MAX_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// SQS's longest retention period.
pub const MAX_RETENTION: Duration = Duration::from_secs(14 * 86_400);
/// The shortest retention nimbus allows. SQS's minimum is 60 s; one second lets tests and
/// development setups see messages expire quickly.
pub const MIN_RETENTION: Duration = Duration::from_secs(1);
/// How long a FIFO deduplication id keeps a second message with it out of the queue.
pub const DEDUPLICATION_WINDOW: Duration = Duration::from_secs(5 * 60);
/// The most messages one receive returns and one batch holds.
pub const MAX_MESSAGE_BATCH: usize = 10;
/// SQS's most message attributes on one message.
const MAX_ATTRIBUTES: usize = 10;
/// SQS's most receives before a move to the dead-letter queue, in a redrive policy.
const MAX_RECEIVE_COUNT: u32 = 1000;
/// Visible FIFO messages read at a time while looking for message groups that are not blocked.
const FIFO_SCAN_PAGE: i64 = 64;

impl Store {
    /// Creates the queue, or updates its configuration to `spec`; run at every start.
    ///
    /// The dead-letter queue of a redrive policy need not exist yet (queues are ensured in any
    /// order); until it does, messages past `max_receive_count` keep being delivered, with a warning.
    pub fn ensure_queue(&self, spec: &QueueSpec) -> Result<(), StoreError> {
        validate_queue_spec(spec)?;
        let (dead_letter_queue, max_receive_count) = match &spec.redrive {
            Some(redrive) => (
                Some(redrive.dead_letter_queue.as_str()),
                Some(redrive.max_receive_count),
            ),
            None => (None, None),
        };
        self.write("a queue", |tx| {
            tx.prepare_cached(
                "INSERT INTO queues (name, visibility_timeout_us, delay_us, retention_us,
                     content_based_deduplication, dead_letter_queue, max_receive_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (name) DO UPDATE SET
                     visibility_timeout_us = excluded.visibility_timeout_us,
                     delay_us = excluded.delay_us,
                     retention_us = excluded.retention_us,
                     content_based_deduplication = excluded.content_based_deduplication,
                     dead_letter_queue = excluded.dead_letter_queue,
                     max_receive_count = excluded.max_receive_count",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    spec.name,
                    us(spec.visibility_timeout),
                    us(spec.delay),
                    us(spec.retention),
                    spec.content_based_deduplication,
                    dead_letter_queue,
                    max_receive_count,
                ])
            })
            .map_err(write_err("a queue"))?;
            Ok(())
        })
    }

    /// The configuration of queue `name`, or `None` if it was never ensured.
    pub fn queue(&self, name: &str) -> Result<Option<QueueSpec>, StoreError> {
        self.read(|conn| match queue_row(conn, name, read_err("queues")) {
            Ok(row) => Ok(Some(row.spec())),
            Err(StoreError::UnknownQueue { .. }) => Ok(None),
            Err(err) => Err(err),
        })
    }

    /// The names of all queues, sorted.
    pub fn list_queues(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name FROM queues ORDER BY name")
                .map_err(read_err("queues"))?;
            let rows = stmt
                .query_map([], |row| row.get(0))
                .map_err(read_err("queues"))?;
            rows.collect::<Result<Vec<String>, _>>()
                .map_err(read_err("queues"))
        })
    }

    /// Sends one message; it has committed when this returns.
    pub fn send_message(&self, queue: &str, msg: NewMessage) -> Result<SentMessage, StoreError> {
        let mut sent = self.send_many(vec![(queue.to_owned(), msg)])?;
        Ok(sent
            .pop()
            .expect("send_many returns one result per message"))
    }

    /// Sends up to 10 messages to one queue in one transaction: all are accepted or none.
    pub fn send_batch(
        &self,
        queue: &str,
        msgs: Vec<NewMessage>,
    ) -> Result<Vec<SentMessage>, StoreError> {
        if msgs.is_empty() || msgs.len() > MAX_MESSAGE_BATCH {
            return Err(StoreError::InvalidParameter {
                reason: format!(
                    "a batch holds 1 to {MAX_MESSAGE_BATCH} messages, not {}",
                    msgs.len()
                ),
            });
        }
        self.send_many(
            msgs.into_iter()
                .map(|msg| (queue.to_owned(), msg))
                .collect(),
        )
    }

    /// SQS's SendMessageBatch: up to 10 messages to one queue in one transaction, with one
    /// result per message, in order. A message the queue refuses (too long, bad attributes,
    /// a FIFO message without its ids) fails alone and the others are sent; a missing queue
    /// or a failing write fails the whole batch and sends nothing.
    pub fn send_entries(
        &self,
        queue: &str,
        msgs: Vec<NewMessage>,
    ) -> Result<Vec<Result<SentMessage, StoreError>>, StoreError> {
        if msgs.is_empty() || msgs.len() > MAX_MESSAGE_BATCH {
            return Err(StoreError::InvalidParameter {
                reason: format!(
                    "a batch holds 1 to {MAX_MESSAGE_BATCH} messages, not {}",
                    msgs.len()
                ),
            });
        }
        self.write("messages", |tx| {
            let row = queue_row(tx, queue, write_err("messages"))?;
            let now_us = now_us();
            let mut results = Vec::with_capacity(msgs.len());
            for msg in msgs {
                match insert_message(tx, &row, msg, now_us) {
                    Err(err) if !err.is_client_error() => return Err(err),
                    result => results.push(result),
                }
            }
            Ok(results)
        })
    }

    /// Sends messages to any queues in one transaction: all are accepted or none.
    ///
    /// This is the outbox of topic fan-out and asynchronous invocation. There is no limit on the
    /// number of messages; each is checked as `send_message` would.
    pub fn send_many(
        &self,
        sends: Vec<(String, NewMessage)>,
    ) -> Result<Vec<SentMessage>, StoreError> {
        self.write("messages", |tx| insert_messages(tx, sends, now_us()))
    }

    /// Receives up to `max` (1 to 10) visible messages and hides them for the visibility timeout
    /// (the queue's when `None`; sub-second timeouts are allowed, unlike SQS).
    ///
    /// A message already received `maxReceiveCount` times is moved to the dead-letter queue
    /// instead of being returned, and a message past the retention period is deleted. On a FIFO
    /// queue only message groups without a message in flight are served, each in sequence order;
    /// one receive may return several messages of a group.
    pub fn receive_messages(
        &self,
        queue: &str,
        max: usize,
        visibility_timeout: Option<Duration>,
    ) -> Result<Vec<ReceivedMessage>, StoreError> {
        if !(1..=MAX_MESSAGE_BATCH).contains(&max) {
            return Err(StoreError::InvalidParameter {
                reason: format!("a receive returns 1 to {MAX_MESSAGE_BATCH} messages, not {max}"),
            });
        }
        if let Some(timeout) = visibility_timeout {
            check_visibility_timeout(timeout)?;
        }
        self.write("messages", |tx| {
            let queue = queue_row(tx, queue, write_err("messages"))?;
            let mut receive = Receive {
                tx,
                now_us: now_us(),
                visibility_us: us(visibility_timeout.unwrap_or(queue.visibility_timeout)),
                queue: &queue,
                max,
                received: Vec::with_capacity(max),
                dead_letter_queue: None,
            };
            if queue.fifo {
                receive.fifo()?;
            } else {
                receive.standard()?;
            }
            Ok(receive.received)
        })
    }

    /// Deletes a received message by its latest receipt handle.
    pub fn delete_message(&self, queue: &str, receipt_handle: &str) -> Result<(), StoreError> {
        self.write("messages", |tx| {
            let queue = queue_row(tx, queue, write_err("messages"))?;
            delete_one(tx, &queue, receipt_handle)
        })
    }

    /// Deletes received messages in one transaction; one result per handle, in order.
    pub fn delete_batch(
        &self,
        queue: &str,
        receipt_handles: &[String],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.write("messages", |tx| {
            let queue = queue_row(tx, queue, write_err("messages"))?;
            receipt_handles
                .iter()
                .map(|handle| keep_client_errors(delete_one(tx, &queue, handle)))
                .collect()
        })
    }

    /// Makes a message in flight visible again after `timeout` from now (zero: at once).
    pub fn change_visibility(
        &self,
        queue: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        check_visibility_timeout(timeout)?;
        self.write("messages", |tx| {
            let queue = queue_row(tx, queue, write_err("messages"))?;
            change_visibility_one(tx, &queue, receipt_handle, timeout, now_us())
        })
    }

    /// `change_visibility` for several messages in one transaction; one result per entry.
    pub fn change_visibility_batch(
        &self,
        queue: &str,
        entries: &[(String, Duration)],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.write("messages", |tx| {
            let queue = queue_row(tx, queue, write_err("messages"))?;
            let now_us = now_us();
            entries
                .iter()
                .map(|(handle, timeout)| {
                    keep_client_errors(
                        check_visibility_timeout(*timeout).and_then(|()| {
                            change_visibility_one(tx, &queue, handle, *timeout, now_us)
                        }),
                    )
                })
                .collect()
        })
    }

    /// Deletes every message of the queue, in flight or not; returns how many.
    pub fn purge_queue(&self, queue: &str) -> Result<u64, StoreError> {
        self.write("messages", |tx| {
            let queue = queue_row(tx, queue, write_err("messages"))?;
            let n_deleted = tx
                .prepare_cached("DELETE FROM messages WHERE queue_id = ?1")
                .and_then(|mut stmt| stmt.execute([queue.id]))
                .map_err(write_err("messages"))?;
            Ok(n_deleted as u64)
        })
    }

    /// Deletes a queue with its messages and deduplication ids (SQS's DeleteQueue).
    pub fn delete_queue(&self, queue: &str) -> Result<(), StoreError> {
        self.write("a queue", |tx| {
            let queue = queue_row(tx, queue, write_err("a queue"))?;
            for sql in [
                "DELETE FROM messages WHERE queue_id = ?1",
                "DELETE FROM deduplication WHERE queue_id = ?1",
                "DELETE FROM queues WHERE id = ?1",
            ] {
                tx.prepare_cached(sql)
                    .and_then(|mut stmt| stmt.execute([queue.id]))
                    .map_err(write_err("a queue"))?;
            }
            Ok(())
        })
    }

    /// Counts the queue's messages by state.
    pub fn queue_stats(&self, queue: &str) -> Result<QueueStats, StoreError> {
        self.read(|conn| {
            let queue = queue_row(conn, queue, read_err("queue stats"))?;
            let now_us = now_us();
            let (visible, in_flight, delayed, oldest_us) = conn
                .prepare_cached(
                    "SELECT
                        COALESCE(SUM(visible_us <= ?2), 0),
                        COALESCE(SUM(visible_us > ?2 AND receive_count > 0), 0),
                        COALESCE(SUM(visible_us > ?2 AND receive_count = 0), 0),
                        MIN(sent_us)
                     FROM messages WHERE queue_id = ?1 AND expires_us > ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![queue.id, now_us], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, i64>(2)?,
                            row.get::<_, Option<i64>>(3)?,
                        ))
                    })
                })
                .map_err(read_err("queue stats"))?;
            Ok(QueueStats {
                visible: visible as u64,
                in_flight: in_flight as u64,
                delayed: delayed as u64,
                oldest_age: oldest_us.map(|sent_us| {
                    Duration::from_micros(now_us.saturating_sub(sent_us).max(0) as u64)
                }),
            })
        })
    }

    /// Deletes expired messages of every queue and expired FIFO deduplication ids; returns how
    /// many messages. Receives skip expired messages anyway; this reclaims their space.
    pub fn sweep_expired_messages(&self) -> Result<u64, StoreError> {
        self.write("messages", |tx| {
            let now_us = now_us();
            let n_messages = tx
                .execute("DELETE FROM messages WHERE expires_us <= ?1", [now_us])
                .map_err(write_err("messages"))?;
            tx.execute("DELETE FROM deduplication WHERE expires_us <= ?1", [now_us])
                .map_err(write_err("messages"))?;
            Ok(n_messages as u64)
        })
    }
}

/// A queue as stored.
pub(crate) struct QueueRow {
    id: i64,
    name: String,
    fifo: bool,
    visibility_timeout: Duration,
    delay_us: i64,
    retention_us: i64,
    content_based_deduplication: bool,
    redrive: Option<(String, u32)>,
}

/// The embedded queues: each operation runs on tokio's blocking pool, as SQLite calls do.
impl QueueStore for Store {
    fn ensure_queue(&self, spec: QueueSpec) -> BoxFuture<'_, Result<(), QueueError>> {
        self.off_worker(move |store| store.ensure_queue(&spec))
    }

    fn queue(&self, name: String) -> BoxFuture<'_, Result<Option<QueueSpec>, QueueError>> {
        self.off_worker(move |store| store.queue(&name))
    }

    fn list_queues(&self) -> BoxFuture<'_, Result<Vec<String>, QueueError>> {
        self.off_worker(Store::list_queues)
    }

    fn queue_stats(&self, name: String) -> BoxFuture<'_, Result<QueueStats, QueueError>> {
        self.off_worker(move |store| store.queue_stats(&name))
    }

    fn send_many(
        &self,
        sends: Vec<(String, NewMessage)>,
    ) -> BoxFuture<'_, Result<Vec<SentMessage>, QueueError>> {
        self.off_worker(move |store| store.send_many(sends))
    }

    fn send_entries(
        &self,
        queue: String,
        messages: Vec<NewMessage>,
    ) -> BoxFuture<'_, Result<Vec<Result<SentMessage, QueueError>>, QueueError>> {
        self.off_worker(move |store| {
            let entries = store.send_entries(&queue, messages)?;
            Ok(entries
                .into_iter()
                .map(|res| res.map_err(QueueError::from))
                .collect())
        })
    }

    fn receive_messages(
        &self,
        queue: String,
        max: usize,
        visibility_timeout: Option<Duration>,
    ) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>> {
        self.off_worker(move |store| store.receive_messages(&queue, max, visibility_timeout))
    }

    fn delete_message(
        &self,
        queue: String,
        receipt_handle: String,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        self.off_worker(move |store| store.delete_message(&queue, &receipt_handle))
    }

    fn delete_batch(
        &self,
        queue: String,
        receipt_handles: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Result<(), QueueError>>, QueueError>> {
        self.off_worker(move |store| {
            let results = store.delete_batch(&queue, &receipt_handles)?;
            Ok(results
                .into_iter()
                .map(|res| res.map_err(QueueError::from))
                .collect())
        })
    }

    fn change_visibility(
        &self,
        queue: String,
        receipt_handle: String,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        self.off_worker(move |store| store.change_visibility(&queue, &receipt_handle, timeout))
    }

    fn purge_queue(&self, queue: String) -> BoxFuture<'_, Result<u64, QueueError>> {
        self.off_worker(move |store| store.purge_queue(&queue))
    }

    fn delete_queue(&self, queue: String) -> BoxFuture<'_, Result<(), QueueError>> {
        self.off_worker(move |store| store.delete_queue(&queue))
    }
}

impl Store {
    /// Runs `op` on tokio's blocking pool (a write waits for the writer thread; a read may
    /// wait for a pooled connection), so the async workers never block on SQLite.
    fn off_worker<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, QueueError>> {
        let store = self.clone();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || op(&store)).await {
                Ok(res) => res.map_err(QueueError::from),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        })
    }
}

impl From<StoreError> for QueueError {
    fn from(e: StoreError) -> QueueError {
        match e {
            StoreError::UnknownQueue { queue } => QueueError::UnknownQueue { queue },
            StoreError::InvalidQueue { queue, reason } => {
                QueueError::InvalidQueue { queue, reason }
            }
            StoreError::MessageTooLarge { size, limit } => {
                QueueError::MessageTooLarge { size, limit }
            }
            StoreError::InvalidMessage { queue, reason } => {
                QueueError::InvalidMessage { queue, reason }
            }
            StoreError::MissingGroupId { queue } => QueueError::MissingGroupId { queue },
            StoreError::InvalidParameter { reason } => QueueError::InvalidParameter { reason },
            StoreError::InvalidReceiptHandle {
                queue,
                receipt_handle,
            } => QueueError::InvalidReceiptHandle {
                queue,
                receipt_handle,
            },
            StoreError::MessageNotInFlight { queue } => QueueError::MessageNotInFlight { queue },
            StoreError::Queue(e) => e,
            other => {
                let mut message = other.to_string();
                let mut source = std::error::Error::source(&other);
                while let Some(cause) = source {
                    message.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                QueueError::Backend { message }
            }
        }
    }
}

impl QueueRow {
    fn spec(&self) -> QueueSpec {
        QueueSpec {
            name: self.name.clone(),
            visibility_timeout: self.visibility_timeout,
            delay: Duration::from_micros(self.delay_us as u64),
            retention: Duration::from_micros(self.retention_us as u64),
            content_based_deduplication: self.content_based_deduplication,
            redrive: self
                .redrive
                .as_ref()
                .map(|(queue, count)| nimbus_core::events::Redrive {
                    dead_letter_queue: queue.clone(),
                    max_receive_count: *count,
                }),
        }
    }
}

/// Looks a queue up by name; `UnknownQueue` if there is none.
fn queue_row(
    conn: &Connection,
    name: &str,
    sql_err: impl Fn(rusqlite::Error) -> StoreError,
) -> Result<QueueRow, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT id, visibility_timeout_us, delay_us, retention_us, content_based_deduplication,
                 dead_letter_queue, max_receive_count
             FROM queues WHERE name = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([name], |row| {
                let dead_letter_queue: Option<String> = row.get(5)?;
                let max_receive_count: Option<u32> = row.get(6)?;
                Ok(QueueRow {
                    id: row.get(0)?,
                    name: name.to_owned(),
                    fifo: name.ends_with(".fifo"),
                    visibility_timeout: Duration::from_micros(row.get::<_, i64>(1)? as u64),
                    delay_us: row.get(2)?,
                    retention_us: row.get(3)?,
                    content_based_deduplication: row.get(4)?,
                    redrive: dead_letter_queue.zip(max_receive_count),
                })
            })
            .optional()
        })
        .map_err(sql_err)?;
    row.ok_or_else(|| StoreError::UnknownQueue {
        queue: name.to_owned(),
    })
}

/// Inserts messages; queues are looked up once each.
pub(crate) fn insert_messages(
    tx: &Transaction<'_>,
    sends: Vec<(String, NewMessage)>,
    now_us: i64,
) -> Result<Vec<SentMessage>, StoreError> {
    let mut queues: HashMap<String, QueueRow> = HashMap::new();
    let mut sent = Vec::with_capacity(sends.len());
    for (queue_name, msg) in sends {
        let queue = match queues.entry(queue_name) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let row = queue_row(tx, entry.key(), write_err("messages"))?;
                entry.insert(row)
            }
        };
        sent.push(insert_message(tx, queue, msg, now_us)?);
    }
    Ok(sent)
}

fn insert_message(
    tx: &Transaction<'_>,
    queue: &QueueRow,
    msg: NewMessage,
    now_us: i64,
) -> Result<SentMessage, StoreError> {
    let md5_of_message_attributes = validate_message(queue, &msg)?;
    let md5_of_body = durable::md5_hex(msg.body.as_bytes());
    let deduplication_id = if queue.fifo {
        let deduplication_id = match msg.deduplication_id {
            Some(id) => id,
            None if queue.content_based_deduplication => durable::sha256_hex(msg.body.as_bytes()),
            None => {
                return Err(invalid_message(
                    queue,
                    "a FIFO queue without content-based deduplication needs a deduplication id: \
                     give one, or set ContentBasedDeduplication on the queue",
                ));
            }
        };
        let earlier = tx
            .prepare_cached(
                "SELECT message_id, seq FROM deduplication
                 WHERE queue_id = ?1 AND deduplication_id = ?2 AND expires_us > ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![queue.id, deduplication_id, now_us], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .optional()
            })
            .map_err(write_err("messages"))?;
        if let Some((message_id, seq)) = earlier {
            return Ok(SentMessage {
                message_id,
                md5_of_body,
                md5_of_message_attributes,
                sequence_number: Some(sequence_number(seq)),
                duplicate: true,
            });
        }
        Some(deduplication_id)
    } else {
        None
    };
    let delay_us = msg.delay.map_or(queue.delay_us, us);
    let message_id = durable::random_id().hyphenated().to_string();
    let attributes = encode_attributes(&msg.attributes);
    tx.prepare_cached(
        "INSERT INTO messages (queue_id, message_id, body, attributes, md5_of_body, group_id,
             deduplication_id, sent_us, visible_us, expires_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            queue.id,
            message_id,
            msg.body,
            attributes,
            md5_of_body,
            msg.group_id,
            deduplication_id,
            now_us,
            now_us.saturating_add(delay_us),
            now_us.saturating_add(queue.retention_us),
        ])
    })
    .map_err(write_err("messages"))?;
    let seq = tx.last_insert_rowid();
    let sequence_number = if let Some(deduplication_id) = &deduplication_id {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO deduplication (queue_id, deduplication_id, message_id, seq, expires_us)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                queue.id,
                deduplication_id,
                message_id,
                seq,
                now_us.saturating_add(us(DEDUPLICATION_WINDOW)),
            ])
        })
        .map_err(write_err("messages"))?;
        Some(sequence_number(seq))
    } else {
        None
    };
    Ok(SentMessage {
        message_id,
        md5_of_body,
        md5_of_message_attributes,
        sequence_number,
        duplicate: false,
    })
}

/// One receive in progress.
struct Receive<'a, 'conn> {
    tx: &'a Transaction<'conn>,
    now_us: i64,
    visibility_us: i64,
    queue: &'a QueueRow,
    max: usize,
    received: Vec<ReceivedMessage>,
    /// The dead-letter queue, looked up on the first move; `Some(None)` if it does not exist.
    dead_letter_queue: Option<Option<(i64, i64)>>,
}

/// A message row as a receive reads it.
struct StoredMessage {
    seq: i64,
    message_id: String,
    body: String,
    attributes: Option<String>,
    md5_of_body: String,
    group_id: Option<String>,
    deduplication_id: Option<String>,
    sent_us: i64,
    visible_us: i64,
    expires_us: i64,
    receive_count: u32,
    first_received_us: Option<i64>,
}

const MESSAGE_COLUMNS: &str = "seq, message_id, body, attributes, md5_of_body, group_id, \
     deduplication_id, sent_us, visible_us, expires_us, receive_count, first_received_us";

impl Receive<'_, '_> {
    /// Standard queue: the visible messages, oldest visibility first.
    fn standard(&mut self) -> Result<(), StoreError> {
        // Rows are read a page at a time and updated after, never while a statement walks them.
        // A message received with a zero visibility timeout matches again; `seen` skips it.
        let mut seen: HashSet<i64> = HashSet::new();
        loop {
            let limit = self.max - self.received.len() + seen.len();
            let page = self.select(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages
                     WHERE queue_id = ?1 AND visible_us <= ?2 ORDER BY visible_us LIMIT ?3"
                ),
                params![self.queue.id, self.now_us, limit as i64],
            )?;
            let n_rows = page.len();
            let mut progressed = false;
            for msg in page {
                if self.received.len() == self.max {
                    return Ok(());
                }
                if !seen.insert(msg.seq) {
                    continue;
                }
                progressed = true;
                self.dispose(msg)?;
            }
            if self.received.len() == self.max || n_rows < limit || !progressed {
                return Ok(());
            }
        }
    }

    /// FIFO queue: message groups in the order of their oldest visible message, skipping groups
    /// with a message in flight (or an earlier message not yet visible); from each group a run of
    /// consecutive visible messages.
    fn fifo(&mut self) -> Result<(), StoreError> {
        let mut groups_done: HashSet<String> = HashSet::new();
        let mut after_seq = 0;
        while self.received.len() < self.max {
            let page = self.select(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages INDEXED BY messages_fifo_seq
                     WHERE queue_id = ?1 AND group_id IS NOT NULL AND seq > ?2 AND visible_us <= ?3
                     ORDER BY seq LIMIT ?4"
                ),
                params![self.queue.id, after_seq, self.now_us, FIFO_SCAN_PAGE],
            )?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after_seq = last.seq;
            let n_rows = page.len();
            for head in page {
                if self.received.len() == self.max {
                    return Ok(());
                }
                let group_id = head.group_id.clone().expect("FIFO rows have a group");
                if !groups_done.insert(group_id.clone()) {
                    continue;
                }
                if self.group_blocked(&group_id, head.seq)? {
                    continue;
                }
                self.take_group_run(&group_id, head)?;
            }
            if (n_rows as i64) < FIFO_SCAN_PAGE {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Whether a group has a message in flight, or a message before `seq` (its first visible
    /// one), which is then not visible yet.
    fn group_blocked(&self, group_id: &str, seq: i64) -> Result<bool, StoreError> {
        self.tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM messages INDEXED BY messages_fifo_group
                     WHERE queue_id = ?1 AND group_id = ?2 AND seq < ?4)
                 OR EXISTS (SELECT 1 FROM messages INDEXED BY messages_fifo_in_flight
                     WHERE queue_id = ?1 AND group_id = ?2 AND visible_us > ?3 AND receive_count > 0)",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![self.queue.id, group_id, self.now_us, seq], |row| {
                    row.get(0)
                })
            })
            .map_err(write_err("messages"))
    }

    /// Takes `head` and the visible messages after it in its group, in order, up to the batch size;
    /// stops at the first message of the group that is not visible.
    fn take_group_run(&mut self, group_id: &str, head: StoredMessage) -> Result<(), StoreError> {
        let mut after_seq = head.seq;
        // After a head that expired or moved to the dead-letter queue the run goes on as well:
        // the next message is the group's head now.
        self.dispose(head)?;
        while self.received.len() < self.max {
            let want = (self.max - self.received.len()) as i64;
            let page = self.select(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages INDEXED BY messages_fifo_group
                     WHERE queue_id = ?1 AND group_id = ?2 AND seq > ?3
                     ORDER BY seq LIMIT ?4"
                ),
                params![self.queue.id, group_id, after_seq, want],
            )?;
            let n_rows = page.len() as i64;
            for msg in page {
                if msg.visible_us > self.now_us || self.received.len() == self.max {
                    return Ok(());
                }
                after_seq = msg.seq;
                self.dispose(msg)?;
            }
            if n_rows < want {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Deletes an expired message, moves one past `maxReceiveCount`, or receives it.
    fn dispose(&mut self, msg: StoredMessage) -> Result<(), StoreError> {
        if msg.expires_us <= self.now_us {
            self.tx
                .prepare_cached("DELETE FROM messages WHERE seq = ?1")
                .and_then(|mut stmt| stmt.execute([msg.seq]))
                .map_err(write_err("messages"))?;
            return Ok(());
        }
        if let Some((dead_letter_queue, max_receive_count)) = &self.queue.redrive
            && msg.receive_count >= *max_receive_count
            && self.move_to_dead_letter_queue(dead_letter_queue, &msg)?
        {
            return Ok(());
        }
        let receipt = durable::random_id().as_u64_pair().0 as i64;
        let visible_us = self.now_us.saturating_add(self.visibility_us);
        let first_received_us = msg.first_received_us.unwrap_or(self.now_us);
        self.tx
            .prepare_cached(
                "UPDATE messages SET visible_us = ?2, receive_count = receive_count + 1,
                     first_received_us = ?3, receipt = ?4
                 WHERE seq = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![msg.seq, visible_us, first_received_us, receipt])
            })
            .map_err(write_err("messages"))?;
        let attributes = decode_attributes(msg.attributes.as_deref());
        self.received.push(ReceivedMessage {
            receipt_handle: receipt_handle(msg.seq, receipt),
            message_id: msg.message_id,
            body: msg.body,
            md5_of_message_attributes: md5_of_attributes(&attributes).ok().flatten(),
            attributes,
            md5_of_body: msg.md5_of_body,
            receive_count: msg.receive_count + 1,
            sent_at: time(msg.sent_us),
            first_received_at: time(first_received_us),
            sequence_number: msg.group_id.as_ref().map(|_| sequence_number(msg.seq)),
            group_id: msg.group_id,
            deduplication_id: msg.deduplication_id,
        });
        Ok(())
    }

    /// Moves a message to the dead-letter queue, keeping its id, body, attributes, group and sent
    /// time; returns false (and warns) if that queue does not exist.
    ///
    /// As in SQS, the message's expiry in the dead-letter queue counts from when it was first
    /// sent, so give a dead-letter queue a longer retention than its source queue. The receive
    /// count starts again at zero, so the dead-letter queue's own redrive policy (if any) applies
    /// afresh.
    fn move_to_dead_letter_queue(
        &mut self,
        dead_letter_queue: &str,
        msg: &StoredMessage,
    ) -> Result<bool, StoreError> {
        let target = match self.dead_letter_queue {
            Some(target) => target,
            None => {
                let target = match queue_row(self.tx, dead_letter_queue, write_err("messages")) {
                    Ok(row) => Some((row.id, row.retention_us)),
                    Err(StoreError::UnknownQueue { .. }) => None,
                    Err(err) => return Err(err),
                };
                self.dead_letter_queue = Some(target);
                target
            }
        };
        let Some((target_id, target_retention_us)) = target else {
            tracing::warn!(
                queue = %self.queue.name,
                dead_letter_queue,
                message_id = %msg.message_id,
                "the dead-letter queue does not exist, so the message is delivered again instead of moved"
            );
            return Ok(false);
        };
        self.tx
            .prepare_cached(
                "UPDATE messages SET queue_id = ?2, visible_us = ?3, expires_us = sent_us + ?4,
                     receive_count = 0, first_received_us = NULL, receipt = NULL
                 WHERE seq = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    msg.seq,
                    target_id,
                    self.now_us,
                    target_retention_us
                ])
            })
            .map_err(write_err("messages"))?;
        tracing::debug!(
            queue = %self.queue.name,
            dead_letter_queue,
            message_id = %msg.message_id,
            receive_count = msg.receive_count,
            "moved a message to its dead-letter queue"
        );
        Ok(true)
    }

    fn select(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut stmt = self.tx.prepare_cached(sql).map_err(write_err("messages"))?;
        let rows = stmt
            .query_map(params, stored_message)
            .map_err(write_err("messages"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(write_err("messages"))
    }
}

fn stored_message(row: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        seq: row.get(0)?,
        message_id: row.get(1)?,
        body: row.get(2)?,
        attributes: row.get(3)?,
        md5_of_body: row.get(4)?,
        group_id: row.get(5)?,
        deduplication_id: row.get(6)?,
        sent_us: row.get(7)?,
        visible_us: row.get(8)?,
        expires_us: row.get(9)?,
        receive_count: row.get(10)?,
        first_received_us: row.get(11)?,
    })
}

fn delete_one(
    tx: &Transaction<'_>,
    queue: &QueueRow,
    receipt_handle: &str,
) -> Result<(), StoreError> {
    let Some((seq, receipt)) = parse_receipt_handle(receipt_handle) else {
        return Err(invalid_receipt_handle(queue, receipt_handle));
    };
    // As SQS documents it: a handle from an earlier receive, or of a message already
    // deleted, succeeds and deletes nothing (the message is redelivered if it is still
    // there), so a consumer that retries a delete does not fail.
    tx.prepare_cached("DELETE FROM messages WHERE seq = ?1 AND queue_id = ?2 AND receipt = ?3")
        .and_then(|mut stmt| stmt.execute(params![seq, queue.id, receipt]))
        .map_err(write_err("messages"))?;
    Ok(())
}

fn change_visibility_one(
    tx: &Transaction<'_>,
    queue: &QueueRow,
    receipt_handle: &str,
    timeout: Duration,
    now_us: i64,
) -> Result<(), StoreError> {
    let Some((seq, receipt)) = parse_receipt_handle(receipt_handle) else {
        return Err(invalid_receipt_handle(queue, receipt_handle));
    };
    let visible_us: Option<i64> = tx
        .prepare_cached(
            "SELECT visible_us FROM messages WHERE seq = ?1 AND queue_id = ?2 AND receipt = ?3",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![seq, queue.id, receipt], |row| row.get(0))
                .optional()
        })
        .map_err(write_err("messages"))?;
    match visible_us {
        None => Err(invalid_receipt_handle(queue, receipt_handle)),
        Some(visible_us) if visible_us <= now_us => Err(StoreError::MessageNotInFlight {
            queue: queue.name.clone(),
        }),
        Some(_) => {
            tx.prepare_cached("UPDATE messages SET visible_us = ?2 WHERE seq = ?1")
                .and_then(|mut stmt| stmt.execute(params![seq, now_us.saturating_add(us(timeout))]))
                .map_err(write_err("messages"))?;
            Ok(())
        }
    }
}

/// In a batch, a client error belongs to its entry; any other error fails the whole batch.
fn keep_client_errors(res: Result<(), StoreError>) -> Result<Result<(), StoreError>, StoreError> {
    match res {
        Err(err) if !err.is_client_error() => Err(err),
        res => Ok(res),
    }
}

/// A receipt handle: the message's sequence and the random token of this receive, as 32 hex digits.
fn receipt_handle(seq: i64, receipt: i64) -> String {
    format!("{:016x}{:016x}", seq as u64, receipt as u64)
}

fn parse_receipt_handle(handle: &str) -> Option<(i64, i64)> {
    if handle.len() != 32 || !handle.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let seq = u64::from_str_radix(&handle[..16], 16).ok()?;
    let receipt = u64::from_str_radix(&handle[16..], 16).ok()?;
    Some((seq as i64, receipt as i64))
}

/// A FIFO sequence number: the message's row sequence, zero-padded to 20 digits like SQS's.
fn sequence_number(seq: i64) -> String {
    format!("{seq:020}")
}

fn invalid_receipt_handle(queue: &QueueRow, receipt_handle: &str) -> StoreError {
    StoreError::InvalidReceiptHandle {
        queue: queue.name.clone(),
        receipt_handle: durable::cut(receipt_handle, 100),
    }
}

fn invalid_message(queue: &QueueRow, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidMessage {
        queue: queue.name.clone(),
        reason: reason.into(),
    }
}

fn check_visibility_timeout(timeout: Duration) -> Result<(), StoreError> {
    if timeout > MAX_VISIBILITY_TIMEOUT {
        return Err(StoreError::InvalidParameter {
            reason: format!(
                "a visibility timeout is at most 12 hours ({} s), not {} s",
                MAX_VISIBILITY_TIMEOUT.as_secs(),
                timeout.as_secs_f64()
            ),
        });
    }
    Ok(())
}

fn validate_queue_spec(spec: &QueueSpec) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidQueue {
        queue: spec.name.clone(),
        reason,
    };
    if let Err(reason) = check_queue_name(&spec.name) {
        return Err(invalid(reason.to_owned()));
    }
    if spec.visibility_timeout > MAX_VISIBILITY_TIMEOUT {
        return Err(invalid(
            "the visibility timeout is at most 12 hours".to_owned(),
        ));
    }
    if spec.delay > MAX_DELAY {
        return Err(invalid("the delay is at most 900 seconds".to_owned()));
    }
    if spec.retention < MIN_RETENTION || spec.retention > MAX_RETENTION {
        return Err(invalid(
            "the retention period is 1 second to 14 days".to_owned(),
        ));
    }
    if spec.content_based_deduplication && !spec.is_fifo() {
        return Err(invalid(
            "content-based deduplication is for FIFO queues (names ending in .fifo) only"
                .to_owned(),
        ));
    }
    if let Some(redrive) = &spec.redrive {
        if !(1..=MAX_RECEIVE_COUNT).contains(&redrive.max_receive_count) {
            return Err(invalid(format!(
                "maxReceiveCount is 1 to {MAX_RECEIVE_COUNT}, not {}",
                redrive.max_receive_count
            )));
        }
        if redrive.dead_letter_queue == spec.name {
            return Err(invalid(
                "a queue cannot be its own dead-letter queue".to_owned(),
            ));
        }
        if let Err(reason) = check_queue_name(&redrive.dead_letter_queue) {
            return Err(invalid(format!(
                "dead-letter queue name `{}`: {reason}",
                redrive.dead_letter_queue
            )));
        }
        if redrive.dead_letter_queue.ends_with(".fifo") != spec.is_fifo() {
            return Err(invalid(
                "the dead-letter queue of a FIFO queue must be a FIFO queue, and of a standard queue a standard queue".to_owned(),
            ));
        }
    }
    Ok(())
}

/// SQS queue names: 1 to 80 characters of letters, digits, `-` and `_`, plus `.fifo` for FIFO.
fn check_queue_name(name: &str) -> Result<(), &'static str> {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    if name.is_empty() || name.len() > 80 || base.is_empty() {
        return Err("a queue name is 1 to 80 characters long");
    }
    if !base
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("a queue name has only letters, digits, `-` and `_` (and the suffix `.fifo`)");
    }
    Ok(())
}

/// Checks a message against SQS's rules; returns `MD5OfMessageAttributes`.
fn validate_message(queue: &QueueRow, msg: &NewMessage) -> Result<Option<String>, StoreError> {
    let size = msg.body.len()
        + msg
            .attributes
            .iter()
            .map(|(name, attribute)| name.len() + attribute.data_type.len() + attribute.value.len())
            .sum::<usize>();
    if size > MAX_MESSAGE_BYTES {
        return Err(StoreError::MessageTooLarge {
            size,
            limit: MAX_MESSAGE_BYTES,
        });
    }
    if msg.body.is_empty() {
        return Err(invalid_message(
            queue,
            "the body is empty; SQS requires at least one character",
        ));
    }
    if let Some(c) = msg.body.chars().find(|c| !allowed_char(*c)) {
        return Err(invalid_message(
            queue,
            format!(
                "the body contains the character U+{:04X}, which SQS does not allow; encode binary data (e.g. base64)",
                u32::from(c)
            ),
        ));
    }
    if queue.fifo {
        let Some(group_id) = &msg.group_id else {
            return Err(StoreError::MissingGroupId {
                queue: queue.name.clone(),
            });
        };
        check_fifo_id(queue, "message group id", group_id)?;
        if let Some(deduplication_id) = &msg.deduplication_id {
            check_fifo_id(queue, "deduplication id", deduplication_id)?;
        }
        // SQS takes `DelaySeconds: 0` on a FIFO queue (it changes nothing), any other value not.
        if msg.delay.is_some_and(|delay| !delay.is_zero()) {
            return Err(invalid_message(
                queue,
                "FIFO queues take no per-message delay; set the delay on the queue instead",
            ));
        }
    } else {
        if msg.group_id.is_some() {
            return Err(invalid_message(
                queue,
                "a message group id is for FIFO queues (names ending in .fifo) only",
            ));
        }
        if msg.deduplication_id.is_some() {
            return Err(invalid_message(
                queue,
                "a deduplication id is for FIFO queues (names ending in .fifo) only",
            ));
        }
    }
    if let Some(delay) = msg.delay
        && delay > MAX_DELAY
    {
        return Err(invalid_message(
            queue,
            format!(
                "the delay is at most 900 seconds, not {} s",
                delay.as_secs_f64()
            ),
        ));
    }
    if msg.attributes.len() > MAX_ATTRIBUTES {
        return Err(invalid_message(
            queue,
            format!(
                "a message has at most {MAX_ATTRIBUTES} attributes, not {}",
                msg.attributes.len()
            ),
        ));
    }
    for (name, attribute) in &msg.attributes {
        check_attribute(name, attribute).map_err(|reason| {
            invalid_message(
                queue,
                format!("attribute `{}`: {reason}", durable::cut(name, 100)),
            )
        })?;
    }
    md5_of_attributes(&msg.attributes).map_err(|reason| invalid_message(queue, reason))
}

/// A message checked for its queue by [`check_message`]: what a [`QueueStore`] other than
/// the embedded store keeps with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedMessage {
    /// Lowercase hex MD5 of the body.
    pub md5_of_body: String,
    /// `MD5OfMessageAttributes`; `None` without attributes.
    pub md5_of_message_attributes: Option<String>,
    /// FIFO only: the deduplication id, given or (content-based) the body's SHA-256.
    pub deduplication_id: Option<String>,
    /// The attributes as the store keeps them (a JSON object of `name: [type, value]`).
    pub encoded_attributes: Option<String>,
}

/// Checks a queue declaration against SQS's rules, as [`Store::ensure_queue`] does; for
/// the other backends of [`QueueStore`], so every backend refuses the same declarations.
pub fn check_queue_spec(spec: &QueueSpec) -> Result<(), QueueError> {
    validate_queue_spec(spec).map_err(QueueError::from)
}

/// Checks a visibility timeout against SQS's limit (12 hours).
pub fn check_visibility(timeout: Duration) -> Result<(), QueueError> {
    check_visibility_timeout(timeout).map_err(QueueError::from)
}

/// Checks a message for the queue `spec` declares against SQS's rules, as a send to the
/// store does, with the same errors.
pub fn check_message(spec: &QueueSpec, msg: &NewMessage) -> Result<CheckedMessage, QueueError> {
    let queue = QueueRow {
        id: 0,
        name: spec.name.clone(),
        fifo: spec.is_fifo(),
        visibility_timeout: spec.visibility_timeout,
        delay_us: us(spec.delay),
        retention_us: us(spec.retention),
        content_based_deduplication: spec.content_based_deduplication,
        redrive: None,
    };
    let md5_of_message_attributes = validate_message(&queue, msg)?;
    let deduplication_id = if queue.fifo {
        match &msg.deduplication_id {
            Some(id) => Some(id.clone()),
            None if queue.content_based_deduplication => {
                Some(durable::sha256_hex(msg.body.as_bytes()))
            }
            None => {
                return Err(invalid_message(
                    &queue,
                    "a FIFO queue without content-based deduplication needs a deduplication id: \
                     give one, or set ContentBasedDeduplication on the queue",
                )
                .into());
            }
        }
    } else {
        None
    };
    Ok(CheckedMessage {
        md5_of_body: durable::md5_hex(msg.body.as_bytes()),
        md5_of_message_attributes,
        deduplication_id,
        encoded_attributes: encode_attributes(&msg.attributes),
    })
}

/// Reads attributes kept as [`CheckedMessage::encoded_attributes`].
pub fn decode_message_attributes(text: Option<&str>) -> BTreeMap<String, MessageAttribute> {
    decode_attributes(text)
}

/// SQS allows `#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF`;
/// Rust strings already exclude surrogates.
fn allowed_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Group and deduplication ids: 1 to 128 characters of letters, digits and ASCII punctuation.
fn check_fifo_id(queue: &QueueRow, what: &str, id: &str) -> Result<(), StoreError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b.is_ascii_punctuation())
    {
        return Err(invalid_message(
            queue,
            format!(
                "a {what} is 1 to 128 characters of letters, digits and punctuation, not `{}`",
                durable::cut(id, 140)
            ),
        ));
    }
    Ok(())
}

fn check_attribute(name: &str, attribute: &MessageAttribute) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    if name.is_empty() || name.len() > 256 {
        return Err("a name is 1 to 256 characters long".to_owned());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        || name.starts_with('.')
        || name.ends_with('.')
        || name.contains("..")
    {
        return Err(
            "a name has letters, digits, `_`, `-` and `.` (not first, last or twice in a row)"
                .to_owned(),
        );
    }
    if lower.starts_with("aws.") || lower.starts_with("amazon.") {
        return Err("names starting with `AWS.` or `Amazon.` are reserved".to_owned());
    }
    let base_type = attribute
        .data_type
        .split_once('.')
        .map_or(attribute.data_type.as_str(), |(base, _)| base);
    if attribute.data_type.len() > 256 {
        return Err("the data type is at most 256 characters".to_owned());
    }
    if attribute.value.is_empty() {
        return Err("the value is empty".to_owned());
    }
    match base_type {
        "String" => {
            if let Some(c) = attribute.value.chars().find(|c| !allowed_char(*c)) {
                return Err(format!(
                    "the value contains the character U+{:04X}, which SQS does not allow",
                    u32::from(c)
                ));
            }
        }
        "Number" => {
            if attribute.value.trim().parse::<f64>().is_err() {
                return Err(format!(
                    "`{}` is not a number",
                    durable::cut(&attribute.value, 60)
                ));
            }
        }
        "Binary" => {
            if base64::engine::general_purpose::STANDARD
                .decode(&attribute.value)
                .is_err()
            {
                return Err("a Binary value is given as base64, and this is not base64".to_owned());
            }
        }
        _ => {
            return Err(format!(
                "the data type is String, Number or Binary (optionally with a `.label`), not `{}`",
                durable::cut(&attribute.data_type, 60)
            ));
        }
    }
    Ok(())
}

/// SQS's `MD5OfMessageAttributes`: the MD5 of, for each attribute sorted by name, the name, the
/// data type, a transport byte (1 for String and Number, 2 for Binary) and the value, each string
/// preceded by its length as a 4-byte big-endian integer (Binary values decoded from base64).
pub fn md5_of_attributes(
    attributes: &BTreeMap<String, MessageAttribute>,
) -> Result<Option<String>, String> {
    if attributes.is_empty() {
        return Ok(None);
    }
    fn put(hasher: &mut md5::Md5, bytes: &[u8]) {
        hasher.update((bytes.len() as u32).to_be_bytes());
        hasher.update(bytes);
    }
    let mut hasher = md5::Md5::new();
    for (name, attribute) in attributes {
        put(&mut hasher, name.as_bytes());
        put(&mut hasher, attribute.data_type.as_bytes());
        if attribute.data_type.starts_with("Binary") {
            let value = base64::engine::general_purpose::STANDARD
                .decode(&attribute.value)
                .map_err(|_| format!("attribute `{name}`: a Binary value is given as base64"))?;
            hasher.update([2]);
            put(&mut hasher, &value);
        } else {
            hasher.update([1]);
            put(&mut hasher, attribute.value.as_bytes());
        }
    }
    Ok(Some(durable::hex(&hasher.finalize())))
}

/// Attributes as stored: a JSON object of `name: [data_type, value]`; `None` when there are none.
fn encode_attributes(attributes: &BTreeMap<String, MessageAttribute>) -> Option<String> {
    if attributes.is_empty() {
        return None;
    }
    let object: serde_json::Map<String, serde_json::Value> = attributes
        .iter()
        .map(|(name, attribute)| {
            (
                name.clone(),
                serde_json::json!([attribute.data_type, attribute.value]),
            )
        })
        .collect();
    Some(serde_json::Value::Object(object).to_string())
}

fn decode_attributes(text: Option<&str>) -> BTreeMap<String, MessageAttribute> {
    let Some(text) = text else {
        return BTreeMap::new();
    };
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str(text) else {
        tracing::error!("stored message attributes are not a JSON object; dropping them");
        return BTreeMap::new();
    };
    object
        .into_iter()
        .filter_map(|(name, value)| {
            let pair = value.as_array()?;
            Some((
                name,
                MessageAttribute {
                    data_type: pair.first()?.as_str()?.to_owned(),
                    value: pair.get(1)?.as_str()?.to_owned(),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests;
