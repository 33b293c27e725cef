//! The storage of Durable Objects (Cloudflare's `state.storage`), behind a trait a
//! clustered backend can implement: each object's keys and values, and its alarm.
//!
//! An object is named by its class and its id (64 hex digits). Values are opaque bytes
//! (the Workers host stores V8-serialized values, as workerd does). Every event of an
//! object ends in one [`Commit`]: all its puts, deletes and its alarm change land together
//! or not at all, so a crash mid-commit never leaves half an event behind.
//!
//! In a cluster an object's owner is [`owner_of`] its id among the live nodes, so every
//! node routes a stub to the same one, and a node's loss moves only the objects it owned.

use std::time::SystemTime;

/// Cloudflare's longest storage key, in bytes.
pub const MAX_KEY_BYTES: usize = 2048;
/// Cloudflare's largest stored value, in bytes (128 KiB).
pub const MAX_VALUE_BYTES: usize = 128 * 1024;
/// The most keys one `get`, `put` or `delete` of Cloudflare's takes.
pub const MAX_KEYS_PER_CALL: usize = 128;

/// One object: its class and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    /// The class the object is an instance of (`Counter`).
    pub class: String,
    /// Its id: 64 lowercase hex digits.
    pub id: String,
}

/// A write of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageWrite {
    /// Sets `key` to the value.
    Put(String, Vec<u8>),
    /// Removes `key`.
    Delete(String),
}

/// What an event changes about the object's alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlarmChange {
    /// The event did not touch the alarm.
    #[default]
    Keep,
    /// `setAlarm`: the alarm fires at this time (a first attempt).
    Set(SystemTime),
    /// `deleteAlarm`, or an alarm that fired and was not set again.
    Clear,
}

/// The storage changes of one event, applied in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Commit {
    /// `deleteAll()`: every key goes first, before `writes`.
    pub delete_all: bool,
    /// Puts and deletes in the order the event made them (the last one of a key wins).
    pub writes: Vec<StorageWrite>,
    /// The alarm's change.
    pub alarm: AlarmChange,
}

/// The range and order of a `list()`, as `state.storage.list` takes them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListOptions {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Only keys at or after this.
    pub start: Option<String>,
    /// Only keys after this.
    pub start_after: Option<String>,
    /// Only keys before this.
    pub end: Option<String>,
    /// Descending key order.
    pub reverse: bool,
    /// At most this many.
    pub limit: Option<usize>,
}

/// An object's alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// The object.
    pub object: ObjectName,
    /// When it fires next.
    pub at: SystemTime,
    /// How many failed attempts came before this one (`alarmInfo.retryCount`).
    pub retry_count: u32,
}

/// What the store holds for one object, for listings (the dashboard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    /// The object.
    pub object: ObjectName,
    /// How many keys it has.
    pub n_keys: u64,
    /// The bytes of its keys and values.
    pub size_bytes: u64,
    /// When its alarm fires, if it has one.
    pub alarm: Option<SystemTime>,
}

/// A value of the SQL storage API (`state.storage.sql`): SQLite's five types.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// INTEGER.
    Integer(i64),
    /// REAL.
    Real(f64),
    /// TEXT.
    Text(String),
    /// BLOB.
    Blob(Vec<u8>),
}

/// What one `sql.exec` gave: its rows, and how many rows it read and wrote.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlResult {
    /// The result's column names (none for a statement that returns no rows).
    pub columns: Vec<String>,
    /// The rows, each with one value per column.
    pub rows: Vec<Vec<SqlValue>>,
    /// Rows the statement read: those it returned and those full scans stepped over.
    pub rows_read: u64,
    /// Rows it inserted, updated or deleted.
    pub rows_written: u64,
}

/// An object's SQL database as one host holds it (Cloudflare's SQLite-backed storage):
/// statements run in a transaction that [`SqlSession::commit`] ends, once per event, so an
/// event's SQL lands whole or, dropped or rolled back, not at all.
pub trait SqlSession: Send {
    /// Runs `query` with `bindings` for its `?` parameters, in the open transaction
    /// (begun by the first statement after a commit).
    fn exec(&mut self, query: &str, bindings: &[SqlValue])
    -> Result<SqlResult, DurableObjectError>;
    /// Commits what ran since the last commit.
    fn commit(&mut self) -> Result<(), DurableObjectError>;
    /// Drops what ran since the last commit.
    fn rollback(&mut self) -> Result<(), DurableObjectError>;
    /// The database's size in bytes (`sql.databaseSize`).
    fn database_size(&mut self) -> Result<u64, DurableObjectError>;
    /// Drops every table and view, in the open transaction (`deleteAll()`).
    fn delete_all(&mut self) -> Result<(), DurableObjectError>;
    /// Opens, releases or rolls back to the savepoint of a `transaction()` nested `depth`
    /// deep in the open transaction.
    fn savepoint(&mut self, step: SavepointStep, depth: u32) -> Result<(), DurableObjectError>;
}

/// What [`SqlSession::savepoint`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavepointStep {
    /// Starts the savepoint (and the event's transaction, if none is open).
    Open,
    /// Keeps what ran since it opened.
    Release,
    /// Undoes what ran since it opened, and ends it.
    RollBack,
}

/// Why a storage operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurableObjectError {
    /// A key, value or option the caller gave is not accepted.
    #[error("{0}")]
    Invalid(String),
    /// The store could not read or write.
    #[error("Durable Object storage failed: {0}")]
    Storage(String),
}

/// Durable Object storage. Calls are synchronous (SQLite underneath): call them off the
/// async executor.
pub trait DurableObjectStore: Send + Sync {
    /// The values of `keys`, in order; `None` for an absent key.
    fn get(
        &self,
        object: &ObjectName,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, DurableObjectError>;
    /// Keys and values in key order (descending with `reverse`), within the range.
    fn list(
        &self,
        object: &ObjectName,
        options: &ListOptions,
    ) -> Result<Vec<(String, Vec<u8>)>, DurableObjectError>;
    /// Applies one event's changes in one transaction: all of them or none.
    fn commit(&self, object: &ObjectName, commit: &Commit) -> Result<(), DurableObjectError>;
    /// The object's alarm, if set.
    fn alarm(&self, object: &ObjectName) -> Result<Option<Alarm>, DurableObjectError>;
    /// Every alarm of objects of `classes`, soonest first.
    fn alarms(&self, classes: &[String]) -> Result<Vec<Alarm>, DurableObjectError>;
    /// Moves the alarm that fired at `fired_at` to `next` (a retry, with `retry_count`
    /// one more) or clears it (`None`), unless an event changed it meanwhile.
    fn retry_alarm(
        &self,
        object: &ObjectName,
        fired_at: SystemTime,
        next: Option<SystemTime>,
    ) -> Result<(), DurableObjectError>;
    /// The objects of `class` (every class with `None`) that hold keys or an alarm.
    fn objects(&self, class: Option<&str>) -> Result<Vec<ObjectSummary>, DurableObjectError>;
    /// Whether the object has a SQL database (it ran SQL once).
    fn has_sql(&self, object: &ObjectName) -> bool {
        let _ = object;
        false
    }
    /// Opens the object's SQL database, a namespace of its own (created when first used).
    fn sql_session(&self, object: &ObjectName) -> Result<Box<dyn SqlSession>, DurableObjectError> {
        Err(DurableObjectError::Invalid(format!(
            "this store keeps no SQL databases for Durable Objects ({})",
            object.class
        )))
    }
}

/// The node of `nodes` (by name) that owns the object with id `id`, by rendezvous
/// hashing: the node whose SHA-256 of (node, id) is highest. Every node computes the same
/// owner from the same list, and when a node leaves only the objects it owned move (a
/// modulo would move most of them; docs/design/005). `None` when there is no node.
pub fn owner_of<'a>(id: &str, nodes: &'a [String]) -> Option<&'a str> {
    use sha2::Digest as _;
    nodes
        .iter()
        .max_by_key(|node| {
            let mut hash = sha2::Sha256::new();
            hash.update(node.as_bytes());
            hash.update([0]);
            hash.update(id.as_bytes());
            <[u8; 32]>::from(hash.finalize())
        })
        .map(String::as_str)
}

/// Checks a storage key: a string of at most [`MAX_KEY_BYTES`].
pub fn check_key(key: &str) -> Result<(), DurableObjectError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(DurableObjectError::Invalid(format!(
            "Keys cannot be larger than {MAX_KEY_BYTES} bytes; this one has {} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a stored value: at most [`MAX_VALUE_BYTES`].
pub fn check_value(key: &str, value: &[u8]) -> Result<(), DurableObjectError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(DurableObjectError::Invalid(format!(
            "Values cannot be larger than {MAX_VALUE_BYTES} bytes; the value of `{key}` has {} bytes",
            value.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_spread_over_the_nodes_and_a_nodes_loss_moves_only_its_objects() {
        let nodes: Vec<String> = ["a", "b", "c", "d"].map(str::to_owned).to_vec();
        let ids: Vec<String> = (0..4000u32).map(|i| format!("{i:064x}")).collect();
        let owners: Vec<&str> = ids
            .iter()
            .map(|id| owner_of(id, &nodes).expect("an owner"))
            .collect();
        for node in &nodes {
            let n = owners.iter().filter(|o| **o == node.as_str()).count();
            assert!((800..1200).contains(&n), "{node} owns {n} of 4000");
        }
        let without_c: Vec<String> = ["a", "b", "d"].map(str::to_owned).to_vec();
        for (id, before) in ids.iter().zip(&owners) {
            let after = owner_of(id, &without_c).expect("an owner");
            if *before != "c" {
                assert_eq!(after, *before, "{id} moved though its owner stayed");
            }
        }
        assert_eq!(owner_of(&ids[0], &[]), None);
    }

    #[test]
    fn oversized_keys_and_values_are_refused_with_the_limit() {
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        let err = check_key(&"k".repeat(MAX_KEY_BYTES + 1)).unwrap_err();
        assert!(err.to_string().contains("2048 bytes"), "{err}");
        let err = check_value("big", &vec![0; MAX_VALUE_BYTES + 1]).unwrap_err();
        assert!(err.to_string().contains("`big`"), "{err}");
    }
}
