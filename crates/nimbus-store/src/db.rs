//! Opening the SQLite file: connection flags, pragmas and schema migrations.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::{StoreError, durable, secrets, tables, telemetry};

/// The database file inside the app's state folder.
pub(crate) const FILE_NAME: &str = "nimbus.db";

/// Schema migrations, in order; entry `i` takes the store from version `i` to version `i + 1`.
///
/// Never edit an entry once it has shipped: append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    telemetry::SCHEMA_V1,
    durable::SCHEMA_V2,
    telemetry::SCHEMA_V3,
    secrets::SCHEMA_V4,
    crate::topics::SCHEMA_V5,
    tables::SCHEMA_V6,
    crate::streams::SCHEMA_V7,
    telemetry::SCHEMA_V8,
    crate::workflows::SCHEMA_V9,
    telemetry::SCHEMA_V10,
    crate::durable_objects::SCHEMA,
    crate::buckets::SCHEMA_V12,
    telemetry::SCHEMA_V13,
    telemetry::SCHEMA_V14,
];

/// The schema version this build reads and writes.
pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a statement waits for a lock held by another connection before failing with `SQLITE_BUSY`.
///
/// In WAL mode readers never wait for the writer; this covers two writers (a second `nimbus up`, a prune
/// from the CLI) and the brief exclusive locks of a checkpoint or of the first open.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens `path` for reading and writing, creating it, and brings the schema up to date.
pub(crate) fn open_read_write(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    // WAL lets `nimbus logs` and the gateway's own queries read while the writer thread commits,
    // and turns each commit into one sequential append. The mode is stored in the file, so
    // read-only openers get it too.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(open_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Some file systems (network mounts) cannot do WAL's shared memory; readers would then
        // block the writer, so refuse rather than degrade silently.
        return Err(StoreError::NoWal {
            path: path.to_owned(),
            mode,
        });
    }
    // NORMAL in WAL mode syncs at checkpoints, not at every commit: a power cut can lose the last
    // few transactions but never corrupts the file. That is the right trade for telemetry, whose
    // commits come thousands per second and which is worth less than the invocations it describes.
    // Stores that need every commit durable (queues, KV) can raise it per connection.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_err)?;
    // Statement journals (an upsert inside the telemetry writer's batch opens one) stay in
    // memory: in a temporary file they cost a pwrite(2) per statement, about a tenth of the
    // gateway's CPU time under load (perf, 32 connections on a hello worker). The writer's
    // statements are small; readers keep the default.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(open_err)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Opens an existing store at `path` for reading only; it must be at this build's schema version.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing {
            path: path.to_owned(),
        });
    }
    let conn = open_reader(path)?;
    let found = schema_version(&conn).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    check_version(path, found)?;
    Ok(conn)
}

/// Opens one more read-only connection to a store already checked by `open_read_write` or `open_read_only`.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    conn.set_prepared_statement_cache_capacity(durable::STATEMENT_CACHE);
    Ok(conn)
}

/// The path of the database file in `state_dir`.
pub(crate) fn file_path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

fn check_version(path: &Path, found: u32) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        return Err(StoreError::Outdated {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Reads the schema version; a file without the `schema_version` table is at version 0.
pub(crate) fn schema_version(conn: &Connection) -> rusqlite::Result<u32> {
    let has_table: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if has_table.is_none() {
        return Ok(0);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |row| row.get(0),
    )
}

/// Applies the migrations the file lacks, each in its own transaction.
///
/// `BEGIN IMMEDIATE` takes the write lock before reading the version, so two processes opening
/// the same fresh store cannot both apply a migration.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version INTEGER PRIMARY KEY,
                applied_at_us INTEGER NOT NULL
            )",
        )
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        let found = schema_version(&tx).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let Some(migration) = MIGRATIONS.get(found as usize) else {
            return Ok(());
        };
        let version = found + 1;
        let migrate_err = |source| StoreError::Migrate {
            path: path.to_owned(),
            version,
            source,
        };
        tx.execute_batch(migration).map_err(migrate_err)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at_us) VALUES (?1, ?2)",
            (version, telemetry::unix_micros(SystemTime::now())),
        )
        .map_err(migrate_err)?;
        tx.commit().map_err(migrate_err)?;
        tracing::debug!(path = %path.display(), version, "migrated store schema");
    }
}
