//! Observability records (invocations, log lines, spans): their tables, inserts and queries.

mod share;
pub(crate) mod writer;

pub use share::{SharedTelemetry, TelemetryShare};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::Type;
use rusqlite::{Connection, Row, ToSql};

use crate::StoreError;

/// One invocation of a function, as `nimbus invocations` and `nimbus cost` see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InvocationRecord {
    /// The request id given to the function (`context.awsRequestId`).
    pub request_id: String,
    /// The function invoked.
    pub function: String,
    /// The deployment invoked: `"$LATEST"` until versions exist.
    pub version: String,
    /// What caused the invocation: `"http"`, `"invoke"`, `"queue"`, `"cron"`, ...
    pub trigger: String,
    /// When the invocation started (after any queueing for a permit).
    pub start: SystemTime,
    /// How long the handler ran.
    pub duration: Duration,
    /// The billed duration in milliseconds: `duration` rounded up to the next millisecond.
    pub billed_ms: u64,
    /// The configured memory size.
    pub memory_mb: u32,
    /// The most memory the instance used during this invocation.
    pub max_memory_mb: u32,
    /// Whether this invocation started a new instance.
    pub cold_start: bool,
    /// Whether that cold start was served by a pre-started runtime process (handed the
    /// function's environment) rather than a process spawned for it.
    #[serde(default)]
    pub prestarted: bool,
    /// How long the instance took to initialise, for cold starts.
    pub init_duration: Option<Duration>,
    /// `"ok"`, `"error"`, `"timeout"`, `"throttled"`, `"out-of-memory"` or `"crashed"`.
    pub outcome: String,
    /// The error type a failing function reported (`errorType`).
    pub error_type: Option<String>,
    /// The error message a failing function reported (`errorMessage`).
    pub error_message: Option<String>,
    /// The W3C trace id (32 hex digits) the invocation ran under.
    pub trace_id: String,
    /// The id of the invocation's own span (16 hex digits); `None` for an invocation that never
    /// ran (throttled). The span itself is not stored: `Store::spans` makes it from this record.
    pub span_id: Option<String>,
    /// The span the invocation's span is a child of (the gateway's, a sender's), if any.
    pub parent_span_id: Option<String>,
    /// Lines of the function's output that were not kept: past the per-invocation cap, or
    /// refused by a full writer queue. Lines that arrive after the record was written are
    /// added to it (`Store::record_dropped_lines`).
    pub log_lines_dropped: u64,
}

/// Which invocations `Store::invocations` returns, newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InvocationQuery {
    /// Only this function's invocations.
    pub function: Option<String>,
    /// Only invocations whose outcome is not `"ok"`.
    pub failed_only: bool,
    /// Only invocations that started at or after this time.
    pub since: Option<SystemTime>,
    /// At most this many (the newest ones).
    pub limit: Option<usize>,
}

/// The invocations of one function in one minute whose durations fall in one bucket: the
/// per-minute rollup the dashboard's overview reads instead of every record.
///
/// Buckets are about 4% wide (exact below 25 µs); throttled invocations, which never ran,
/// have a bucket of their own (`lower: None`) and no duration.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationMinute {
    /// The function invoked.
    pub function: String,
    /// The start of the minute (whole minutes since the Unix epoch).
    pub minute: SystemTime,
    /// The bucket's lower bound; `None` for throttled invocations.
    pub lower: Option<Duration>,
    /// How many invocations.
    pub n_invocations: u64,
    /// How many ended in neither `"ok"` nor `"throttled"`.
    pub n_errors: u64,
    /// How many were throttled.
    pub n_throttles: u64,
    /// How many started a new instance.
    pub n_cold: u64,
    /// Their durations added up (so a bucket's mean is exact when its durations are equal).
    pub total_duration: Duration,
}

/// One line of function or platform output.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogRecord {
    /// When the line was written.
    pub time: SystemTime,
    /// The function that wrote it, or that the platform line is about.
    pub function: String,
    /// The invocation it belongs to, when known (lines written during init have none).
    pub request_id: Option<String>,
    /// `"INFO"`, `"WARN"`, `"ERROR"`, `"DEBUG"`, ...
    pub level: String,
    /// `"stdout"`, `"stderr"` or `"platform"` (START, END and REPORT lines).
    pub stream: String,
    /// The line itself, without its trailing newline.
    pub message: String,
    /// The JSON object text when the line was a JSON log line.
    pub fields: Option<String>,
}

/// Where a reader of logs left off, for `nimbus logs -f`: lines come from two places (function
/// output is stored as lines, START/END/REPORT are made from invocation records), so the position
/// is one in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogCursor {
    line_id: i64,
    invocation_id: i64,
}

/// Log lines in time order, and where to continue from.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage {
    /// The lines, oldest first.
    pub lines: Vec<LogRecord>,
    /// Pass as `LogQuery::after` to get only lines stored since this page.
    pub next: LogCursor,
}

/// Which log lines `Store::logs` returns, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogQuery {
    /// Only this function's lines.
    pub function: Option<String>,
    /// Only this invocation's lines.
    pub request_id: Option<String>,
    /// Only lines written at or after this time; the START/END/REPORT lines of invocations that
    /// started at or after it.
    pub since: Option<SystemTime>,
    /// Only lines stored after the page that returned this cursor.
    pub after: Option<LogCursor>,
}

/// One span of a trace.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpanRecord {
    /// The W3C trace id: 32 hex digits.
    pub trace_id: String,
    /// The span id: 16 hex digits.
    pub span_id: String,
    /// The parent span's id; `None` for a root span.
    pub parent_span_id: Option<String>,
    /// What the span covers, e.g. `"GET /hello"` or `"invoke hello"`.
    pub name: String,
    /// `"server"`, `"internal"`, `"client"`, `"consumer"` or `"producer"`.
    pub kind: String,
    /// When the span started.
    pub start: SystemTime,
    /// When the span ended.
    pub end: SystemTime,
    /// Key-value attributes, in the order they were set.
    pub attributes: Vec<(String, String)>,
    /// `"ok"` or `"error"`.
    pub status: String,
}

/// Schema version 1: the telemetry tables.
///
/// Times are integer microseconds since the Unix epoch (`*_us`), durations integer microseconds.
/// `INTEGER PRIMARY KEY` makes `id` the rowid, so it increases with insertion order and needs no index of its own.
pub(crate) const SCHEMA_V1: &str = "
CREATE TABLE invocations (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    function TEXT NOT NULL,
    version TEXT NOT NULL,
    trigger TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    billed_ms INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    max_memory_mb INTEGER NOT NULL,
    cold_start INTEGER NOT NULL,
    init_duration_us INTEGER,
    outcome TEXT NOT NULL,
    error_type TEXT,
    error_message TEXT,
    trace_id TEXT NOT NULL
);
-- `nimbus invocations FN --since 1h`: one range of this index, already in time order.
CREATE INDEX invocations_function_start ON invocations (function, start_us);
-- `nimbus invocations FN --failed`: failures are rare, so this partial index stays small and
-- saves walking every successful invocation in the range.
CREATE INDEX invocations_failed ON invocations (function, start_us) WHERE outcome <> 'ok';
-- `nimbus cost --since 30d`, `nimbus invocations` across all functions, and prune.
CREATE INDEX invocations_start ON invocations (start_us);
CREATE INDEX invocations_request_id ON invocations (request_id);
CREATE INDEX invocations_trace_id ON invocations (trace_id);

CREATE TABLE logs (
    id INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    function TEXT NOT NULL,
    request_id TEXT,
    level TEXT NOT NULL,
    stream TEXT NOT NULL,
    message TEXT NOT NULL,
    fields TEXT
);
-- `nimbus logs FN --since 10m`. Following (`-f`) pages on id instead, a range of the rowid.
CREATE INDEX logs_function_time ON logs (function, time_us);
-- `nimbus logs --request ID`; init and platform lines without a request id stay out of it.
CREATE INDEX logs_request_id ON logs (request_id) WHERE request_id IS NOT NULL;
-- `nimbus logs --since 10m` across all functions, and prune.
CREATE INDEX logs_time ON logs (time_us);

CREATE TABLE spans (
    id INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    -- A JSON array of [key, value] pairs, which keeps order and duplicates.
    attributes TEXT NOT NULL,
    status TEXT NOT NULL
);
-- `nimbus trace ID`, already in start order.
CREATE INDEX spans_trace_start ON spans (trace_id, start_us);
-- Prune.
CREATE INDEX spans_start ON spans (start_us);
";

/// Schema version 3: an invocation keeps the ids of its span, from which `Store::spans` makes the
/// span, and its START/END/REPORT lines are made from the record rather than stored as lines.
///
/// Three log rows and a span row less per invocation is most of what recording costs.
pub(crate) const SCHEMA_V3: &str = "
ALTER TABLE invocations ADD COLUMN span_id TEXT;
ALTER TABLE invocations ADD COLUMN parent_span_id TEXT;
DELETE FROM logs WHERE stream = 'platform';
";

/// Schema version 8: an invocation counts the lines of its output that were not kept.
pub(crate) const SCHEMA_V8: &str = "
ALTER TABLE invocations ADD COLUMN log_lines_dropped INTEGER NOT NULL DEFAULT 0;
";

/// Schema version 10: per-minute rollups of the invocation records, so the dashboard's
/// overview reads a few rows per function and minute instead of every record of the hour.
///
/// A trigger kept them in the insert's own transaction until version 13 (the writer's
/// `Rollup` since, which also writes them with the records); `duration_buckets` holds bucket lower bounds about 4%
/// apart (1 µs apart below 25 µs) up to about 12 days. Pruning deletes the minutes wholly
/// before its cutoff, so only the one minute a cutoff falls in can count a pruned record.
pub(crate) const SCHEMA_V10: &str = "
CREATE TABLE duration_buckets (lower_us INTEGER PRIMARY KEY);
INSERT INTO duration_buckets (lower_us)
    WITH RECURSIVE b(us) AS (
        SELECT 0 UNION ALL
        SELECT max(us + 1, CAST(us * 1.04 AS INTEGER)) FROM b WHERE us < 1099511627776
    )
    SELECT us FROM b;
-- `lower_us` is -1 for throttled invocations. The key's order serves the overview's range
-- of minutes and pruning.
CREATE TABLE invocation_minutes (
    minute INTEGER NOT NULL,
    function TEXT NOT NULL,
    lower_us INTEGER NOT NULL,
    n INTEGER NOT NULL,
    n_errors INTEGER NOT NULL,
    n_throttles INTEGER NOT NULL,
    n_cold INTEGER NOT NULL,
    sum_us INTEGER NOT NULL,
    PRIMARY KEY (minute, function, lower_us)
) WITHOUT ROWID;
CREATE TRIGGER invocations_rollup AFTER INSERT ON invocations BEGIN
    INSERT INTO invocation_minutes
        (minute, function, lower_us, n, n_errors, n_throttles, n_cold, sum_us)
    VALUES (
        NEW.start_us / 60000000,
        NEW.function,
        CASE WHEN NEW.outcome = 'throttled' THEN -1 ELSE (
            SELECT lower_us FROM duration_buckets WHERE lower_us <= NEW.duration_us
            ORDER BY lower_us DESC LIMIT 1
        ) END,
        1,
        NEW.outcome NOT IN ('ok', 'throttled'),
        NEW.outcome = 'throttled',
        NEW.cold_start <> 0,
        CASE WHEN NEW.outcome = 'throttled' THEN 0 ELSE NEW.duration_us END
    )
    ON CONFLICT (minute, function, lower_us) DO UPDATE SET
        n = n + 1,
        n_errors = n_errors + excluded.n_errors,
        n_throttles = n_throttles + excluded.n_throttles,
        n_cold = n_cold + excluded.n_cold,
        sum_us = sum_us + excluded.sum_us;
END;
-- The records already kept.
INSERT INTO invocation_minutes
    (minute, function, lower_us, n, n_errors, n_throttles, n_cold, sum_us)
SELECT minute, function, lower_us, count(*), sum(error), sum(throttled), sum(cold),
    sum(CASE WHEN throttled THEN 0 ELSE duration_us END)
FROM (
    SELECT start_us / 60000000 AS minute, function,
        CASE WHEN outcome = 'throttled' THEN -1 ELSE (
            SELECT lower_us FROM duration_buckets WHERE lower_us <= duration_us
            ORDER BY lower_us DESC LIMIT 1
        ) END AS lower_us,
        outcome NOT IN ('ok', 'throttled') AS error,
        outcome = 'throttled' AS throttled,
        cold_start <> 0 AS cold,
        duration_us
    FROM invocations
)
GROUP BY minute, function, lower_us;
";

/// Schema version 13: the rollups are added up in memory by the writer, one upsert per
/// minute, function and bucket of each batch it commits (`Rollup`), instead of by a trigger
/// per inserted record, which cost about as much as the record itself. They are written
/// in the records' own transaction, so the two still agree after a crash.
pub(crate) const SCHEMA_V13: &str = "
DROP TRIGGER invocations_rollup;
";

/// Schema version 14: an invocation says whether its cold start was served by a pre-started
/// runtime process (issue 18).
pub(crate) const SCHEMA_V14: &str = "
ALTER TABLE invocations ADD COLUMN prestarted INTEGER NOT NULL DEFAULT 0;
";

/// A minute's number in `invocation_minutes`.
const MINUTE_US: i64 = 60_000_000;

/// The lower bounds of the duration buckets, as the `duration_buckets` table holds them:
/// from 0, each the larger of one more and 1.04 times the last (SQLite's `CAST(us * 1.04
/// AS INTEGER)` truncates a double, as `as` does), up to the first at or past 2^40 µs.
static DURATION_BUCKETS: std::sync::LazyLock<Vec<i64>> = std::sync::LazyLock::new(|| {
    let mut bounds = vec![0_i64];
    let mut us = 0_i64;
    while us < 1_099_511_627_776 {
        us = (us + 1).max((us as f64 * 1.04) as i64);
        bounds.push(us);
    }
    bounds
});

/// The rollups of a batch of invocation records, summed in memory until the batch's commit.
#[derive(Default)]
pub(crate) struct Rollup {
    minutes: std::collections::HashMap<(i64, String, i64), MinuteSums>,
}

#[derive(Default)]
struct MinuteSums {
    n: i64,
    n_errors: i64,
    n_throttles: i64,
    n_cold: i64,
    sum_us: i64,
}

impl Rollup {
    /// Counts `record` in its minute, function and duration bucket (`-1` for a throttle).
    pub(crate) fn add(&mut self, record: &InvocationRecord) {
        let throttled = record.outcome == "throttled";
        let duration_us = micros(record.duration);
        let lower_us = if throttled {
            -1
        } else {
            let idx = DURATION_BUCKETS.partition_point(|&lower| lower <= duration_us);
            DURATION_BUCKETS[idx.saturating_sub(1)]
        };
        // Integer division truncates toward zero in SQL and in Rust alike.
        let minute = unix_micros(record.start) / MINUTE_US;
        let sums = self
            .minutes
            .entry((minute, record.function.clone(), lower_us))
            .or_default();
        sums.n += 1;
        sums.n_errors += i64::from(!throttled && record.outcome != "ok");
        sums.n_throttles += i64::from(throttled);
        sums.n_cold += i64::from(record.cold_start);
        if !throttled {
            sums.sum_us = sums.sum_us.saturating_add(duration_us);
        }
    }

    /// Adds the sums to `invocation_minutes` and starts again from nothing.
    pub(crate) fn write(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(
            "INSERT INTO invocation_minutes
                (minute, function, lower_us, n, n_errors, n_throttles, n_cold, sum_us)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
            ON CONFLICT (minute, function, lower_us) DO UPDATE SET
                n = n + excluded.n,
                n_errors = n_errors + excluded.n_errors,
                n_throttles = n_throttles + excluded.n_throttles,
                n_cold = n_cold + excluded.n_cold,
                sum_us = sum_us + excluded.sum_us",
        )?;
        for ((minute, function, lower_us), sums) in self.minutes.drain() {
            stmt.execute(rusqlite::params![
                minute,
                function,
                lower_us,
                sums.n,
                sums.n_errors,
                sums.n_throttles,
                sums.n_cold,
                sums.sum_us,
            ])?;
        }
        Ok(())
    }
}

const INSERT_INVOCATION: &str = "INSERT INTO invocations (
    request_id, function, version, trigger, start_us, duration_us, billed_ms, memory_mb,
    max_memory_mb, cold_start, init_duration_us, outcome, error_type, error_message, trace_id,
    span_id, parent_span_id, log_lines_dropped, prestarted
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)";

/// The columns `invocation_from_row` reads, in its order.
const INVOCATION_COLUMNS: &str = "request_id, function, version, trigger, start_us, duration_us,
    billed_ms, memory_mb, max_memory_mb, cold_start, init_duration_us, outcome, error_type,
    error_message, trace_id, span_id, parent_span_id, log_lines_dropped, prestarted";

const INSERT_LOG: &str = "INSERT INTO logs (
    time_us, function, request_id, level, stream, message, fields
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

const INSERT_SPAN: &str = "INSERT INTO spans (
    trace_id, span_id, parent_span_id, name, kind, start_us, end_us, attributes, status
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Microseconds since the Unix epoch, negative before it; saturates past the year 294,000.
pub(crate) fn unix_micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => micros(after),
        Err(before) => micros(before.duration()).saturating_neg(),
    }
}

pub(crate) fn time_from_micros(us: i64) -> SystemTime {
    let magnitude = Duration::from_micros(us.unsigned_abs());
    if us >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

pub(crate) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn duration_from_micros(idx: usize, us: i64) -> rusqlite::Result<Duration> {
    u64::try_from(us)
        .map(Duration::from_micros)
        .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, us))
}

pub(crate) fn insert_invocation(
    conn: &Connection,
    record: &InvocationRecord,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(INSERT_INVOCATION)?;
    stmt.execute(rusqlite::params![
        &record.request_id,
        &record.function,
        &record.version,
        &record.trigger,
        unix_micros(record.start),
        micros(record.duration),
        i64::try_from(record.billed_ms).unwrap_or(i64::MAX),
        record.memory_mb,
        record.max_memory_mb,
        record.cold_start,
        record.init_duration.map(micros),
        &record.outcome,
        &record.error_type,
        &record.error_message,
        &record.trace_id,
        &record.span_id,
        &record.parent_span_id,
        i64::try_from(record.log_lines_dropped).unwrap_or(i64::MAX),
        record.prestarted,
    ])?;
    Ok(())
}

/// Adds `n` lines to the dropped count of the invocation `request_id`.
pub(crate) fn add_dropped_lines(
    conn: &Connection,
    request_id: &str,
    n: u64,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE invocations SET log_lines_dropped = log_lines_dropped + ?2 WHERE request_id = ?1",
    )?;
    stmt.execute((request_id, i64::try_from(n).unwrap_or(i64::MAX)))?;
    Ok(())
}

/// The bytes the database's pages in use take (free pages are reused before the file grows).
pub(crate) fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let page_count: i64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
    let freelist: i64 = conn.query_row("PRAGMA freelist_count", [], |row| row.get(0))?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    Ok(u64::try_from((page_count - freelist).max(0) * page_size).unwrap_or(0))
}

/// Deletes the oldest invocation records, log lines and spans, a slice at a time, until
/// the database uses at most `max_bytes` or no telemetry is left; returns how many rows.
pub(crate) fn prune_to_size(conn: &Connection, max_bytes: u64) -> rusqlite::Result<u64> {
    // Each round deletes everything older than the 2,000th oldest log line (or invocation
    // record, once the logs are gone): the oldest records first, in bounded steps.
    const ROUND: i64 = 2_000;
    let mut n_deleted = 0;
    while used_bytes(conn)? > max_bytes {
        let cutoff: Option<i64> = conn
            .query_row(
                "SELECT max(t) FROM (
                    SELECT time_us AS t FROM logs ORDER BY time_us LIMIT ?1
                 )",
                [ROUND],
                |row| row.get(0),
            )
            .or_else(|_| Ok::<_, rusqlite::Error>(None))?;
        let cutoff = match cutoff {
            Some(cutoff) => cutoff,
            None => match conn.query_row(
                "SELECT max(t) FROM (
                    SELECT start_us AS t FROM invocations ORDER BY start_us LIMIT ?1
                 )",
                [ROUND],
                |row| row.get::<_, Option<i64>>(0),
            )? {
                Some(cutoff) => cutoff,
                None => break,
            },
        };
        let mut n_round = 0;
        for sql in [
            "DELETE FROM invocations WHERE start_us <= ?1",
            "DELETE FROM logs WHERE time_us <= ?1",
            "DELETE FROM spans WHERE start_us <= ?1",
        ] {
            n_round += conn.prepare_cached(sql)?.execute([cutoff])? as u64;
        }
        // Rollups are not records: not counted, and only minutes wholly before the cutoff.
        prune_minutes(conn, cutoff.saturating_add(1))?;
        if n_round == 0 {
            break;
        }
        n_deleted += n_round;
    }
    Ok(n_deleted)
}

pub(crate) fn insert_log(conn: &Connection, record: &LogRecord) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(INSERT_LOG)?;
    stmt.execute((
        unix_micros(record.time),
        &record.function,
        &record.request_id,
        &record.level,
        &record.stream,
        &record.message,
        &record.fields,
    ))?;
    Ok(())
}

pub(crate) fn insert_span(conn: &Connection, span: &SpanRecord) -> rusqlite::Result<()> {
    // Serialising a list of string pairs cannot fail; fall back to an empty list rather than lose the span.
    let attributes = serde_json::to_string(&span.attributes).unwrap_or_else(|_| "[]".to_owned());
    let mut stmt = conn.prepare_cached(INSERT_SPAN)?;
    stmt.execute((
        &span.trace_id,
        &span.span_id,
        &span.parent_span_id,
        &span.name,
        &span.kind,
        unix_micros(span.start),
        unix_micros(span.end),
        attributes,
        &span.status,
    ))?;
    Ok(())
}

/// Deletes every record that started before `cutoff`; returns how many.
pub(crate) fn prune(conn: &Connection, cutoff: SystemTime) -> rusqlite::Result<u64> {
    let cutoff_us = unix_micros(cutoff);
    let mut n_deleted = 0;
    for sql in [
        "DELETE FROM invocations WHERE start_us < ?1",
        "DELETE FROM logs WHERE time_us < ?1",
        "DELETE FROM spans WHERE start_us < ?1",
    ] {
        n_deleted += conn.prepare_cached(sql)?.execute([cutoff_us])? as u64;
    }
    prune_minutes(conn, cutoff_us)?;
    Ok(n_deleted)
}

/// Deletes the rollups of the minutes that ended at or before `cutoff_us`.
fn prune_minutes(conn: &Connection, cutoff_us: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM invocation_minutes WHERE minute < ?1")?
        .execute([cutoff_us.div_euclid(MINUTE_US)])?;
    Ok(())
}

pub(crate) fn query_invocations(
    conn: &Connection,
    query: &InvocationQuery,
    outcome: Option<&str>,
) -> Result<Vec<InvocationRecord>, StoreError> {
    let (sql, params) = invocations_sql(query, outcome);
    let query_err = |source| StoreError::Query {
        what: "invocations",
        source,
    };
    let mut stmt = conn.prepare_cached(&sql).map_err(query_err)?;
    let rows = stmt
        .query_map(params.bind(), invocation_from_row)
        .map_err(query_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(query_err)
}

pub(crate) fn query_invocation_minutes(
    conn: &Connection,
    since: SystemTime,
) -> Result<Vec<InvocationMinute>, StoreError> {
    let query_err = |source| StoreError::Query {
        what: "invocation rollups",
        source,
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT minute, function, lower_us, n, n_errors, n_throttles, n_cold, sum_us
            FROM invocation_minutes WHERE minute >= ?1",
        )
        .map_err(query_err)?;
    let count = |idx: usize, row: &Row<'_>| -> rusqlite::Result<u64> {
        let n: i64 = row.get(idx)?;
        u64::try_from(n).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, n))
    };
    let rows = stmt
        .query_map([unix_micros(since).div_euclid(MINUTE_US)], |row| {
            let lower_us: i64 = row.get(2)?;
            Ok(InvocationMinute {
                minute: time_from_micros(row.get::<_, i64>(0)?.saturating_mul(MINUTE_US)),
                function: row.get(1)?,
                lower: if lower_us < 0 {
                    None
                } else {
                    Some(duration_from_micros(2, lower_us)?)
                },
                n_invocations: count(3, row)?,
                n_errors: count(4, row)?,
                n_throttles: count(5, row)?,
                n_cold: count(6, row)?,
                total_duration: duration_from_micros(7, row.get(7)?)?,
            })
        })
        .map_err(query_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(query_err)
}

pub(crate) fn query_invocation(
    conn: &Connection,
    request_id: &str,
) -> Result<Option<InvocationRecord>, StoreError> {
    let query_err = |source| StoreError::Query {
        what: "invocations",
        source,
    };
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE request_id = ?1 ORDER BY id DESC LIMIT 1"
        ))
        .map_err(query_err)?;
    let mut rows = stmt
        .query_map([request_id], invocation_from_row)
        .map_err(query_err)?;
    rows.next().transpose().map_err(query_err)
}

fn invocations_sql(query: &InvocationQuery, outcome: Option<&str>) -> (String, Params) {
    let mut sql = format!("SELECT {INVOCATION_COLUMNS} FROM invocations WHERE 1");
    let mut params = Params::default();
    if let Some(function) = &query.function {
        sql.push_str(&format!(
            " AND function = ?{}",
            params.push(function.clone())
        ));
    }
    if query.failed_only {
        // Written exactly as in the partial index's WHERE clause so SQLite can use it.
        sql.push_str(" AND outcome <> 'ok'");
    }
    if let Some(outcome) = outcome {
        sql.push_str(&format!(
            " AND outcome = ?{}",
            params.push(outcome.to_owned())
        ));
    }
    if let Some(since) = query.since {
        sql.push_str(&format!(
            " AND start_us >= ?{}",
            params.push(unix_micros(since))
        ));
    }
    sql.push_str(" ORDER BY start_us DESC, id DESC");
    push_limit(&mut sql, &mut params, query.limit);
    (sql, params)
}

pub(crate) fn query_logs(conn: &Connection, query: &LogQuery) -> Result<LogPage, StoreError> {
    let query_err = |source| StoreError::Query {
        what: "logs",
        source,
    };
    let after = query.after.unwrap_or_default();
    let mut next = after;
    // (time, rank, line): START lines sort before the function's lines of the same instant,
    // END and REPORT after them; the sort is stable, so stored lines keep their order.
    let mut lines: Vec<(SystemTime, u8, LogRecord)> = Vec::new();

    let (sql, params) = logs_sql(query, after.line_id);
    let mut stmt = conn.prepare_cached(&sql).map_err(query_err)?;
    let mut rows = stmt.query(params.bind()).map_err(query_err)?;
    while let Some(row) = rows.next().map_err(query_err)? {
        next.line_id = next.line_id.max(row.get(0).map_err(query_err)?);
        let record = LogRecord {
            time: time_from_micros(row.get(1).map_err(query_err)?),
            function: row.get(2).map_err(query_err)?,
            request_id: row.get(3).map_err(query_err)?,
            level: row.get(4).map_err(query_err)?,
            stream: row.get(5).map_err(query_err)?,
            message: row.get(6).map_err(query_err)?,
            fields: row.get(7).map_err(query_err)?,
        };
        lines.push((record.time, 1, record));
    }

    let (sql, params) = platform_sql(query, after.invocation_id);
    let mut stmt = conn.prepare_cached(&sql).map_err(query_err)?;
    let mut rows = stmt.query(params.bind()).map_err(query_err)?;
    while let Some(row) = rows.next().map_err(query_err)? {
        let record = invocation_from_row(row).map_err(query_err)?;
        next.invocation_id = next.invocation_id.max(row.get(19).map_err(query_err)?);
        let [start, end, report] = platform_lines(&record);
        lines.push((start.time, 0, start));
        lines.push((end.time, 2, end));
        lines.push((report.time, 3, report));
    }
    lines.sort_by_key(|(time, rank, _)| (*time, *rank));
    Ok(LogPage {
        lines: lines.into_iter().map(|(_, _, line)| line).collect(),
        next,
    })
}

/// The stored lines (function output) matching `query`, stored after line `after_id`.
fn logs_sql(query: &LogQuery, after_id: i64) -> (String, Params) {
    let mut sql = String::from(
        "SELECT id, time_us, function, request_id, level, stream, message, fields FROM logs WHERE 1",
    );
    let mut params = Params::default();
    // Lines are stored in about the order they were written, so a range of ids is a range of time.
    // When following (`after`), the lines after the last one seen are few and at the end of the
    // table, and without a function or request filter the wanted lines are the tail of the table:
    // in both cases walk the rowid. The unary `+` keeps SQLite from choosing an index on the
    // filtered column instead, which would visit every line since `since` and sort them by id.
    let walk_ids =
        query.after.is_some() || (query.function.is_none() && query.request_id.is_none());
    let column = |name: &str| {
        if walk_ids {
            format!("+{name}")
        } else {
            name.to_owned()
        }
    };
    if query.after.is_some() {
        sql.push_str(&format!(" AND id > ?{}", params.push(after_id)));
    }
    if let Some(function) = &query.function {
        sql.push_str(&format!(
            " AND {} = ?{}",
            column("function"),
            params.push(function.clone())
        ));
    }
    if let Some(request_id) = &query.request_id {
        sql.push_str(&format!(
            " AND {} = ?{}",
            column("request_id"),
            params.push(request_id.clone())
        ));
    }
    if let Some(since) = query.since {
        let since_idx = params.push(unix_micros(since));
        sql.push_str(&format!(" AND {} >= ?{since_idx}", column("time_us")));
        if walk_ids && query.after.is_none() {
            // Exact, not a guess: no line written since `since` has an id below the smallest such id.
            // `INDEXED BY`: otherwise SQLite finds the minimum by walking ids from the oldest line.
            sql.push_str(&format!(
                " AND id >= (SELECT MIN(id) FROM logs INDEXED BY logs_time WHERE time_us >= ?{since_idx})"
            ));
        }
    }
    sql.push_str(" ORDER BY id");
    (sql, params)
}

/// The invocations whose START/END/REPORT lines `query` wants, recorded after `after_id`.
/// Throttled invocations never ran and have none.
fn platform_sql(query: &LogQuery, after_id: i64) -> (String, Params) {
    let mut sql =
        format!("SELECT {INVOCATION_COLUMNS}, id FROM invocations WHERE outcome <> 'throttled'");
    let mut params = Params::default();
    // As for stored lines: when following, walk the few newest rowids.
    let column = |name: &str| {
        if query.after.is_some() {
            format!("+{name}")
        } else {
            name.to_owned()
        }
    };
    if query.after.is_some() {
        sql.push_str(&format!(" AND id > ?{}", params.push(after_id)));
    }
    if let Some(function) = &query.function {
        sql.push_str(&format!(
            " AND {} = ?{}",
            column("function"),
            params.push(function.clone())
        ));
    }
    if let Some(request_id) = &query.request_id {
        sql.push_str(&format!(
            " AND {} = ?{}",
            column("request_id"),
            params.push(request_id.clone())
        ));
    }
    if let Some(since) = query.since {
        sql.push_str(&format!(
            " AND {} >= ?{}",
            column("start_us"),
            params.push(unix_micros(since))
        ));
    }
    // No ORDER BY: the caller sorts the lines by time, and an order would keep SQLite from
    // using the index on `start_us`.
    (sql, params)
}

/// The message of Lambda's START line.
pub fn start_message(request_id: &str, version: &str) -> String {
    format!("START RequestId: {request_id} Version: {version}")
}

/// Lambda's START, END and REPORT lines of an invocation, made from its record.
pub fn platform_lines(record: &InvocationRecord) -> [LogRecord; 3] {
    let request_id = &record.request_id;
    let end = record.start + record.duration;
    let line = |time, message| LogRecord {
        time,
        function: record.function.clone(),
        request_id: Some(request_id.clone()),
        level: "INFO".to_owned(),
        stream: "platform".to_owned(),
        message,
        fields: None,
    };
    let duration_ms = record.duration.as_secs_f64() * 1000.0;
    let mut init = record
        .init_duration
        .map(|d| format!("\tInit Duration: {:.2} ms", d.as_secs_f64() * 1000.0))
        .unwrap_or_default();
    if record.log_lines_dropped > 0 {
        // Not a field of Lambda's REPORT line: Lambda keeps every line (up to 256 KB each).
        init.push_str(&format!("\t{} log lines dropped", record.log_lines_dropped));
    }
    [
        line(record.start, start_message(request_id, &record.version)),
        line(end, format!("END RequestId: {request_id}")),
        line(
            end,
            format!(
                "REPORT RequestId: {request_id}\tDuration: {duration_ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB{init}",
                record.billed_ms, record.memory_mb, record.max_memory_mb
            ),
        ),
    ]
}

/// The span of an invocation that ran, made from its record: named after the function, with
/// OpenTelemetry's `faas.*` attributes.
pub fn invocation_span(record: &InvocationRecord) -> Option<SpanRecord> {
    let span_id = record.span_id.clone()?;
    // OpenTelemetry's `faas.trigger` values.
    let trigger = match record.trigger.as_str() {
        "http" => "http",
        "sqs" | "sns" | "s3" => "pubsub",
        "schedule" => "timer",
        _ => "other",
    };
    Some(SpanRecord {
        trace_id: record.trace_id.clone(),
        span_id,
        parent_span_id: record.parent_span_id.clone(),
        name: record.function.clone(),
        kind: "internal".to_owned(),
        start: record.start,
        end: record.start + record.duration.max(Duration::from_micros(1)),
        attributes: vec![
            ("faas.invocation_id".to_owned(), record.request_id.clone()),
            ("faas.name".to_owned(), record.function.clone()),
            ("faas.trigger".to_owned(), trigger.to_owned()),
            ("faas.coldstart".to_owned(), record.cold_start.to_string()),
            ("nimbus.outcome".to_owned(), record.outcome.clone()),
            (
                "faas.max_memory".to_owned(),
                (u64::from(record.memory_mb) * 1024 * 1024).to_string(),
            ),
        ],
        status: if record.outcome == "ok" {
            "ok"
        } else {
            "error"
        }
        .to_owned(),
    })
}

pub(crate) fn query_spans(
    conn: &Connection,
    trace_id: &str,
) -> Result<Vec<SpanRecord>, StoreError> {
    let query_err = |source| StoreError::Query {
        what: "spans",
        source,
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT trace_id, span_id, parent_span_id, name, kind, start_us, end_us, attributes, status
            FROM spans WHERE trace_id = ?1 ORDER BY start_us, id",
        )
        .map_err(query_err)?;
    let rows = stmt
        .query_map([trace_id], |row| {
            let attributes: String = row.get(7)?;
            let attributes = serde_json::from_str(&attributes).map_err(|err| {
                rusqlite::Error::FromSqlConversionFailure(7, Type::Text, Box::new(err))
            })?;
            Ok(SpanRecord {
                trace_id: row.get(0)?,
                span_id: row.get(1)?,
                parent_span_id: row.get(2)?,
                name: row.get(3)?,
                kind: row.get(4)?,
                start: time_from_micros(row.get(5)?),
                end: time_from_micros(row.get(6)?),
                attributes,
                status: row.get(8)?,
            })
        })
        .map_err(query_err)?;
    let mut spans = rows
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(query_err)?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations
            WHERE trace_id = ?1 AND span_id IS NOT NULL"
        ))
        .map_err(query_err)?;
    let invocations = stmt
        .query_map([trace_id], invocation_from_row)
        .map_err(query_err)?;
    for record in invocations {
        spans.extend(invocation_span(&record.map_err(query_err)?));
    }
    // Stable: spans that start together keep the order they were stored in.
    spans.sort_by_key(|span| span.start);
    Ok(spans)
}

fn invocation_from_row(row: &Row<'_>) -> rusqlite::Result<InvocationRecord> {
    let billed_ms: i64 = row.get(6)?;
    let init_duration_us: Option<i64> = row.get(10)?;
    Ok(InvocationRecord {
        request_id: row.get(0)?,
        function: row.get(1)?,
        version: row.get(2)?,
        trigger: row.get(3)?,
        start: time_from_micros(row.get(4)?),
        duration: duration_from_micros(5, row.get(5)?)?,
        billed_ms: u64::try_from(billed_ms)
            .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(6, billed_ms))?,
        memory_mb: row.get(7)?,
        max_memory_mb: row.get(8)?,
        cold_start: row.get(9)?,
        init_duration: init_duration_us
            .map(|us| duration_from_micros(10, us))
            .transpose()?,
        outcome: row.get(11)?,
        error_type: row.get(12)?,
        error_message: row.get(13)?,
        trace_id: row.get(14)?,
        span_id: row.get(15)?,
        parent_span_id: row.get(16)?,
        log_lines_dropped: u64::try_from(row.get::<_, i64>(17)?).unwrap_or(0),
        prestarted: row.get(18)?,
    })
}

fn push_limit(sql: &mut String, params: &mut Params, limit: Option<usize>) {
    if let Some(limit) = limit {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        sql.push_str(&format!(" LIMIT ?{}", params.push(limit)));
    }
}

/// Positional parameters of a query built from optional filters.
#[derive(Default)]
struct Params(Vec<Box<dyn ToSql>>);

impl Params {
    /// Adds a parameter and returns its 1-based position for `?N`.
    fn push(&mut self, value: impl ToSql + 'static) -> usize {
        self.0.push(Box::new(value));
        self.0.len()
    }

    fn bind(&self) -> impl rusqlite::Params + '_ {
        rusqlite::params_from_iter(self.0.iter())
    }
}

#[cfg(test)]
mod tests;
