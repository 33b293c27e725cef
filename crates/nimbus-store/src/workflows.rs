//! Workflow executions and their histories, the embedded implementation of
//! `nimbus_core::workflow::store::WorkflowStore`.
//!
//! An execution is one row; its history is one row per event keyed by (execution, id), so
//! GetExecutionHistory is a range scan. A transition's events and, when it ends the
//! execution, the ending commit in one transaction, which is what lets a restart fold the
//! history back to the last recorded transition. Definitions are kept once per SHA-256 of
//! their text.

use nimbus_core::workflow::store::{
    Created, Ending, ExecutionFilter, ExecutionRecord, NewExecution, WorkflowStore,
    WorkflowStoreError,
};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use sha2::{Digest, Sha256};

use crate::durable::{read_err, time, write_err};
use crate::{Store, StoreError};

/// Schema version 9: workflow executions, their histories and definitions.
pub(crate) const SCHEMA_V9: &str = "
CREATE TABLE workflow_definitions (
    hash TEXT PRIMARY KEY,
    definition TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE workflow_executions (
    arn TEXT PRIMARY KEY,
    machine_arn TEXT NOT NULL,
    name TEXT NOT NULL,
    definition_hash TEXT NOT NULL,
    input TEXT NOT NULL,
    status TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    stop_us INTEGER,
    output TEXT,
    error TEXT,
    cause TEXT,
    last_event_id INTEGER NOT NULL,
    trace TEXT,
    parent TEXT
);
CREATE UNIQUE INDEX workflow_executions_by_name ON workflow_executions (machine_arn, name);
CREATE INDEX workflow_executions_by_start ON workflow_executions (start_us, arn);
CREATE INDEX workflow_executions_running ON workflow_executions (status)
    WHERE status = 'RUNNING';

CREATE TABLE workflow_history (
    arn TEXT NOT NULL,
    id INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (arn, id)
) WITHOUT ROWID;
";

const COLUMNS: &str = "e.arn, e.machine_arn, e.name, d.definition, e.input, e.status, e.start_us,
    e.stop_us, e.output, e.error, e.cause, e.last_event_id, e.trace, e.parent";

impl WorkflowStore for Store {
    fn create_execution(
        &self,
        new: &NewExecution,
        events: &[(u64, String)],
        ending: Option<&Ending>,
    ) -> Result<Created, WorkflowStoreError> {
        let hash = crate::durable::hex(&Sha256::digest(new.definition.as_bytes()));
        self.write("a workflow execution", |tx| {
            let existing = tx
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM workflow_executions e
                     JOIN workflow_definitions d ON d.hash = e.definition_hash
                     WHERE e.machine_arn = ?1 AND e.name = ?2"
                ))
                .and_then(|mut stmt| {
                    stmt.query_row(params![new.machine_arn, new.name], record)
                        .optional()
                })
                .map_err(read_err("workflow executions"))?;
            if let Some(existing) = existing {
                return Ok(Ok(Created::Exists(Box::new(existing))));
            }
            let write = write_err("a workflow execution");
            tx.prepare_cached(
                "INSERT INTO workflow_definitions (hash, definition) VALUES (?1, ?2)
                 ON CONFLICT (hash) DO NOTHING",
            )
            .and_then(|mut stmt| stmt.execute(params![hash, new.definition]))
            .map_err(&write)?;
            let last = events.last().map_or(0, |(id, _)| *id);
            tx.prepare_cached(
                "INSERT INTO workflow_executions (arn, machine_arn, name, definition_hash,
                     input, status, start_us, last_event_id, trace, parent)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'RUNNING', ?6, 0, ?7, ?8)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    new.arn,
                    new.machine_arn,
                    new.name,
                    hash,
                    new.input,
                    new.start_us,
                    new.trace,
                    new.parent
                ])
            })
            .map_err(&write)?;
            if let Err(e) = append_in(tx, &new.arn, events, ending)? {
                return Ok(Err(e));
            }
            debug_assert_eq!(last, events.len() as u64);
            Ok(Ok(Created::New))
        })
        .map_err(internal)?
    }

    fn append(
        &self,
        arn: &str,
        events: &[(u64, String)],
        ending: Option<&Ending>,
    ) -> Result<(), WorkflowStoreError> {
        self.write("workflow history", |tx| append_in(tx, arn, events, ending))
            .map_err(internal)?
    }

    fn execution(&self, arn: &str) -> Result<Option<ExecutionRecord>, WorkflowStoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM workflow_executions e
                 JOIN workflow_definitions d ON d.hash = e.definition_hash WHERE e.arn = ?1"
            ))
            .and_then(|mut stmt| stmt.query_row([arn], record).optional())
            .map_err(read_err("workflow executions"))
        })
        .map_err(internal)
    }

    fn list_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<ExecutionRecord>, WorkflowStoreError> {
        self.read(|conn| list(conn, filter)).map_err(internal)
    }

    fn running_executions(&self) -> Result<Vec<ExecutionRecord>, WorkflowStoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM workflow_executions e
                     JOIN workflow_definitions d ON d.hash = e.definition_hash
                     WHERE e.status = 'RUNNING' ORDER BY e.start_us, e.arn"
                ))
                .map_err(read_err("workflow executions"))?;
            stmt.query_map([], record)
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(read_err("workflow executions"))
        })
        .map_err(internal)
    }

    fn history(
        &self,
        arn: &str,
        after: u64,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(u64, String)>, WorkflowStoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.read(|conn| {
            let sql = if reverse {
                "SELECT id, event FROM workflow_history
                 WHERE arn = ?1 AND (?2 = 0 OR id < ?2) ORDER BY id DESC LIMIT ?3"
            } else {
                "SELECT id, event FROM workflow_history
                 WHERE arn = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            };
            let mut stmt = conn
                .prepare_cached(sql)
                .map_err(read_err("workflow history"))?;
            stmt.query_map(params![arn, after, limit], |row| {
                Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(read_err("workflow history"))
        })
        .map_err(internal)
    }
}

/// Appends `events` to the history of `arn` and records `ending`, inside `tx`. The inner
/// error says why the history refused them; it is found before anything is written.
fn append_in(
    tx: &Transaction<'_>,
    arn: &str,
    events: &[(u64, String)],
    ending: Option<&Ending>,
) -> Result<Result<(), WorkflowStoreError>, StoreError> {
    let write = write_err("workflow history");
    let row = tx
        .prepare_cached("SELECT last_event_id, status FROM workflow_executions WHERE arn = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([arn], |row| {
                Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?))
            })
            .optional()
        })
        .map_err(read_err("workflow executions"))?;
    let Some((mut last, status)) = row else {
        return Ok(Err(WorkflowStoreError::NotFound(arn.to_owned())));
    };
    if status != "RUNNING" && !events.is_empty() {
        return Ok(Err(WorkflowStoreError::Conflict(
            arn.to_owned(),
            format!("the execution ended ({status})"),
        )));
    }
    if let Some(((id, _), previous)) = events
        .iter()
        .zip(std::iter::once(last).chain(events.iter().map(|(id, _)| *id)))
        .find(|((id, _), previous)| *id != previous + 1)
    {
        return Ok(Err(WorkflowStoreError::Conflict(
            arn.to_owned(),
            format!("event {id} does not follow event {previous}"),
        )));
    }
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO workflow_history (arn, id, event) VALUES (?1, ?2, ?3)")
            .map_err(&write)?;
        for (id, event) in events {
            insert
                .execute(params![arn, *id as i64, event])
                .map_err(&write)?;
            last = *id;
        }
    }
    match ending {
        Some(ending) => tx
            .prepare_cached(
                "UPDATE workflow_executions SET last_event_id = ?2, status = ?3, stop_us = ?4,
                     output = ?5, error = ?6, cause = ?7
                 WHERE arn = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    arn,
                    last as i64,
                    ending.status,
                    ending.stop_us,
                    ending.output,
                    ending.error,
                    ending.cause
                ])
            }),
        None => tx
            .prepare_cached("UPDATE workflow_executions SET last_event_id = ?2 WHERE arn = ?1")
            .and_then(|mut stmt| stmt.execute(params![arn, last as i64])),
    }
    .map_err(&write)?;
    Ok(Ok(()))
}

fn list(conn: &Connection, filter: &ExecutionFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
    let before = match &filter.before {
        Some(arn) => conn
            .prepare_cached("SELECT start_us FROM workflow_executions WHERE arn = ?1")
            .and_then(|mut stmt| stmt.query_row([arn], |row| row.get::<_, i64>(0)).optional())
            .map_err(read_err("workflow executions"))?
            .map(|start| (start, arn.clone())),
        None => None,
    };
    let (before_us, before_arn) = before.unwrap_or((i64::MAX, String::new()));
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM workflow_executions e
             JOIN workflow_definitions d ON d.hash = e.definition_hash
             WHERE (?1 IS NULL OR e.machine_arn = ?1) AND (?2 IS NULL OR e.status = ?2)
               AND (e.start_us < ?3 OR (e.start_us = ?3 AND e.arn < ?4) OR ?4 = '')
             ORDER BY e.start_us DESC, e.arn DESC LIMIT ?5"
        ))
        .map_err(read_err("workflow executions"))?;
    let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
    stmt.query_map(
        params![
            filter.machine_arn,
            filter.status,
            before_us,
            before_arn,
            limit
        ],
        record,
    )
    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
    .map_err(read_err("workflow executions"))
}

/// What the executions of one state machine used: what `nimbus cost` prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowUsage {
    /// The state machine's ARN.
    pub machine_arn: String,
    /// Executions started in the period.
    pub executions: u64,
    /// States they entered: Step Functions' billed state transitions.
    pub transitions: u64,
    /// When the first of those executions started.
    pub first_start: std::time::SystemTime,
}

impl Store {
    /// The executions started at or after `since_us` and the state transitions they made,
    /// per state machine, in ARN order.
    pub fn workflow_usage(&self, since_us: i64) -> Result<Vec<WorkflowUsage>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT e.machine_arn, COUNT(DISTINCT e.arn),
                         COUNT(CASE WHEN json_extract(h.event, '$.type') LIKE '%StateEntered'
                               THEN 1 END),
                         MIN(e.start_us)
                     FROM workflow_executions e
                     LEFT JOIN workflow_history h ON h.arn = e.arn
                     WHERE e.start_us >= ?1
                     GROUP BY e.machine_arn ORDER BY e.machine_arn",
                )
                .map_err(read_err("workflow usage"))?;
            stmt.query_map(params![since_us], |row| {
                Ok(WorkflowUsage {
                    machine_arn: row.get(0)?,
                    executions: row.get::<_, i64>(1)?.max(0).unsigned_abs(),
                    transitions: row.get::<_, i64>(2)?.max(0).unsigned_abs(),
                    first_start: time(row.get(3)?),
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(read_err("workflow usage"))
        })
    }
}

fn record(row: &Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        arn: row.get(0)?,
        machine_arn: row.get(1)?,
        name: row.get(2)?,
        definition: row.get(3)?,
        input: row.get(4)?,
        status: row.get(5)?,
        start_us: row.get(6)?,
        stop_us: row.get(7)?,
        output: row.get(8)?,
        error: row.get(9)?,
        cause: row.get(10)?,
        last_event_id: row.get::<_, i64>(11)? as u64,
        trace: row.get(12)?,
        parent: row.get(13)?,
    })
}

fn internal(e: StoreError) -> WorkflowStoreError {
    WorkflowStoreError::Internal(e.chain())
}

#[cfg(test)]
mod tests;
