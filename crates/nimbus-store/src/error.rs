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
    /// A write was asked of a store opened with `Store::open_read_only`.
    #[error("the store was opened read-only")]
    ReadOnly,
    /// The writer thread is gone; only possible if it panicked.
    #[error("the store's writer thread has stopped")]
    WriterStopped,
}
