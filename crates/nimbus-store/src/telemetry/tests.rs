//! Query plans of the telemetry queries: each CLI command's query must use an index, not scan a table.

use std::time::{Duration, UNIX_EPOCH};

use expect_test::{Expect, expect};
use rusqlite::Connection;

use crate::db;
use crate::telemetry::{
    DURATION_BUCKETS, InvocationMinute, InvocationQuery, InvocationRecord, LogCursor, LogQuery,
    Rollup, invocations_sql, logs_sql, platform_sql, prune, query_invocation_minutes,
};

/// Prints SQLite's plan for `sql`, one step a line.
fn check_plan(conn: &Connection, sql: &str, params: impl rusqlite::Params, expect: Expect) {
    let explained = (|| -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let rows = stmt.query_map(params, |row| row.get::<_, String>(3))?;
        rows.collect()
    })();
    match explained {
        Ok(steps) => expect.assert_eq(&steps.join("\n")),
        Err(err) => panic!("explaining {sql}: {err}"),
    }
}

fn migrated() -> Result<(tempfile::TempDir, Connection), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let conn = db::open_read_write(&db::file_path(dir.path()))?;
    Ok((dir, conn))
}

#[test]
fn invocation_queries_use_indexes() -> Result<(), Box<dyn std::error::Error>> {
    let (_dir, conn) = migrated()?;
    let function = || Some("hello".to_owned());
    let since = Some(std::time::UNIX_EPOCH);
    let check = |query: InvocationQuery, expect: Expect| {
        let (sql, params) = invocations_sql(&query, None);
        check_plan(&conn, &sql, params.bind(), expect)
    };
    // nimbus invocations FN --since 1h
    check(
        InvocationQuery {
            function: function(),
            since,
            ..InvocationQuery::default()
        },
        expect![
            "SEARCH invocations USING INDEX invocations_function_start (function=? AND start_us>?)"
        ],
    );
    // nimbus invocations FN --failed --since 1h
    check(
        InvocationQuery {
            function: function(),
            failed_only: true,
            since,
            ..InvocationQuery::default()
        },
        expect!["SEARCH invocations USING INDEX invocations_failed (function=? AND start_us>?)"],
    );
    // nimbus cost --since 30d
    check(
        InvocationQuery {
            since,
            ..InvocationQuery::default()
        },
        expect!["SEARCH invocations USING INDEX invocations_start (start_us>?)"],
    );
    // prune
    check_plan(
        &conn,
        "DELETE FROM invocations WHERE start_us < 1",
        [],
        expect!["SEARCH invocations USING INDEX invocations_start (start_us<?)"],
    );
    Ok(())
}

#[test]
fn log_and_span_queries_use_indexes() -> Result<(), Box<dyn std::error::Error>> {
    let (_dir, conn) = migrated()?;
    let function = || Some("hello".to_owned());
    let since = Some(std::time::UNIX_EPOCH);
    let check = |query: LogQuery, expect: Expect| {
        let (sql, params) = logs_sql(&query, 41);
        check_plan(&conn, &sql, params.bind(), expect)
    };
    // nimbus logs FN --since 10m
    check(
        LogQuery {
            function: function(),
            since,
            ..LogQuery::default()
        },
        expect![[r#"
            SEARCH logs USING INDEX logs_function_time (function=? AND time_us>?)
            USE TEMP B-TREE FOR ORDER BY"#]],
    );
    // nimbus logs FN -f --since 10m, after the first page
    check(
        LogQuery {
            function: function(),
            since,
            after: Some(LogCursor::default()),
            ..LogQuery::default()
        },
        expect!["SEARCH logs USING INTEGER PRIMARY KEY (rowid>?)"],
    );
    // nimbus logs --request ID
    check(
        LogQuery {
            request_id: Some("r".to_owned()),
            ..LogQuery::default()
        },
        expect!["SEARCH logs USING INDEX logs_request_id (request_id=?)"],
    );
    // nimbus logs --since 10m
    check(
        LogQuery {
            since,
            ..LogQuery::default()
        },
        expect![[r#"
            SEARCH logs USING INTEGER PRIMARY KEY (rowid>?)
            SCALAR SUBQUERY 1
            SEARCH logs USING COVERING INDEX logs_time (time_us>?)"#]],
    );
    // START/END/REPORT lines come from the invocations.
    let check = |query: LogQuery, expect: Expect| {
        let (sql, params) = platform_sql(&query, 41);
        check_plan(&conn, &sql, params.bind(), expect)
    };
    check(
        LogQuery {
            function: function(),
            since,
            ..LogQuery::default()
        },
        expect![
            "SEARCH invocations USING INDEX invocations_function_start (function=? AND start_us>?)"
        ],
    );
    check(
        LogQuery {
            function: function(),
            since,
            after: Some(LogCursor::default()),
            ..LogQuery::default()
        },
        expect!["SEARCH invocations USING INTEGER PRIMARY KEY (rowid>?)"],
    );
    check(
        LogQuery {
            request_id: Some("r".to_owned()),
            ..LogQuery::default()
        },
        expect!["SEARCH invocations USING INDEX invocations_request_id (request_id=?)"],
    );
    check(
        LogQuery {
            since,
            ..LogQuery::default()
        },
        expect!["SEARCH invocations USING INDEX invocations_start (start_us>?)"],
    );
    // nimbus trace ID
    check_plan(
        &conn,
        "SELECT * FROM spans WHERE trace_id = ?1 ORDER BY start_us, id",
        ["0af7651916cd43dd8448eb211c80319c"],
        expect!["SEARCH spans USING INDEX spans_trace_start (trace_id=?)"],
    );
    check_plan(
        &conn,
        "SELECT * FROM invocations WHERE trace_id = ?1 AND span_id IS NOT NULL",
        ["0af7651916cd43dd8448eb211c80319c"],
        expect!["SEARCH invocations USING INDEX invocations_trace_id (trace_id=?)"],
    );
    Ok(())
}

fn record(
    function: &str,
    start_s: u64,
    duration_us: u64,
    outcome: &str,
    cold: bool,
) -> InvocationRecord {
    InvocationRecord {
        request_id: format!("{function}-{start_s}-{duration_us}"),
        function: function.to_owned(),
        version: "$LATEST".to_owned(),
        trigger: "http".to_owned(),
        start: UNIX_EPOCH + Duration::from_secs(start_s),
        duration: Duration::from_micros(duration_us),
        billed_ms: duration_us.div_ceil(1000),
        memory_mb: 128,
        max_memory_mb: 40,
        cold_start: cold,
        prestarted: false,
        init_duration: None,
        outcome: outcome.to_owned(),
        error_type: None,
        error_message: None,
        trace_id: "0af7651916cd43dd8448eb211c80319c".to_owned(),
        span_id: None,
        parent_span_id: None,
        log_lines_dropped: 0,
    }
}

/// The rollups as lines, sorted: minute, function, bucket, counts, summed duration.
fn rollups(conn: &Connection, since_s: u64) -> String {
    let mut rows: Vec<String> =
        query_invocation_minutes(conn, UNIX_EPOCH + Duration::from_secs(since_s))
            .unwrap_or_else(|e| panic!("reading rollups: {e}"))
            .into_iter()
            .map(|m: InvocationMinute| {
                format!(
                    "{} {} {:?} n={} err={} thr={} cold={} sum={:?}",
                    m.minute
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs(),
                    m.function,
                    m.lower,
                    m.n_invocations,
                    m.n_errors,
                    m.n_throttles,
                    m.n_cold,
                    m.total_duration
                )
            })
            .collect();
    rows.sort();
    rows.join("\n")
}

#[test]
fn invocation_minutes_roll_up_every_record_and_are_pruned_by_minute()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = crate::Store::open(dir.path())?;
    let records = [
        record("api", 60, 1_000, "ok", true),
        record("api", 61, 1_010, "ok", false),
        record("api", 119, 2_000, "error", false),
        record("api", 100, 0, "throttled", false),
        record("api", 120, 7, "timeout", false),
        record("worker", 65, 1_000, "ok", false),
    ];
    // Two batches, as two commits of the writer: the second adds to the first's rows.
    let (first, second) = records.split_at(2);
    for batch in [first, second] {
        for record in batch {
            store.record_invocation(record.clone());
        }
        store.flush();
    }
    let conn = db::open_read_write(&db::file_path(dir.path()))?;
    // 1,000 and 1,010 µs share a bucket; a throttle has none and adds no duration.
    expect![[r#"
        120 api Some(7µs) n=1 err=1 thr=0 cold=0 sum=7µs
        60 api None n=1 err=0 thr=1 cold=0 sum=0ns
        60 api Some(1.962ms) n=1 err=1 thr=0 cold=0 sum=2ms
        60 api Some(974µs) n=2 err=0 thr=0 cold=1 sum=2.01ms
        60 worker Some(974µs) n=1 err=0 thr=0 cold=0 sum=1ms"#]]
    .assert_eq(&rollups(&conn, 0));
    // Reading from a time inside a minute includes that whole minute.
    expect!["120 api Some(7µs) n=1 err=1 thr=0 cold=0 sum=7µs"].assert_eq(&rollups(&conn, 150));
    // A cutoff inside minute 120 deletes minute 60 only.
    prune(&conn, UNIX_EPOCH + Duration::from_secs(150))?;
    expect!["120 api Some(7µs) n=1 err=1 thr=0 cold=0 sum=7µs"].assert_eq(&rollups(&conn, 0));
    check_plan(
        &conn,
        "SELECT * FROM invocation_minutes WHERE minute >= ?1",
        [1],
        expect!["SEARCH invocation_minutes USING PRIMARY KEY (minute>?)"],
    );
    Ok(())
}

/// The writer's buckets are the table's, so its rollups match those the migration made.
#[test]
fn in_memory_duration_buckets_are_the_tables() -> Result<(), Box<dyn std::error::Error>> {
    let (_dir, conn) = migrated()?;
    let mut stmt = conn.prepare("SELECT lower_us FROM duration_buckets ORDER BY lower_us")?;
    let table: Vec<i64> = stmt
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    assert_eq!(table.len(), DURATION_BUCKETS.len());
    assert!(table == *DURATION_BUCKETS, "the buckets differ");
    // A record of every duration near a bucket edge rolls up into the bucket the SQL of
    // schema version 10 picks for it.
    let mut rollup = Rollup::default();
    let mut expected = Vec::new();
    for (idx, &lower) in table.iter().enumerate().step_by(7) {
        for duration_us in [lower, lower + 1, (lower - 1).max(0)] {
            let picked: i64 = conn.query_row(
                "SELECT lower_us FROM duration_buckets WHERE lower_us <= ?1
                 ORDER BY lower_us DESC LIMIT 1",
                [duration_us],
                |row| row.get(0),
            )?;
            let mut record = record("api", idx as u64 * 60, 0, "ok", false);
            record.duration = Duration::from_micros(duration_us as u64);
            rollup.add(&record);
            expected.push((idx as i64, picked, duration_us));
        }
    }
    rollup.write(&conn)?;
    let mut stmt = conn.prepare(
        "SELECT minute, lower_us, sum_us FROM invocation_minutes ORDER BY minute, lower_us",
    )?;
    let got: Vec<(i64, i64, i64)> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut want: std::collections::BTreeMap<(i64, i64), i64> = std::collections::BTreeMap::new();
    for (minute, lower, duration_us) in expected {
        *want.entry((minute, lower)).or_default() += duration_us;
    }
    let want: Vec<(i64, i64, i64)> = want.into_iter().map(|((m, l), s)| (m, l, s)).collect();
    assert_eq!(got, want);
    Ok(())
}

#[test]
fn migration_rolls_up_the_records_already_kept() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = db::file_path(dir.path());
    {
        // A store at schema version 9, before rollups, with two records.
        let conn = Connection::open(&path)?;
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at_us INTEGER NOT NULL)",
        )?;
        for (idx, migration) in db::MIGRATIONS[..9].iter().enumerate() {
            conn.execute_batch(migration)?;
            conn.execute(
                "INSERT INTO schema_version VALUES (?1, 0)",
                [idx as i64 + 1],
            )?;
        }
        // The columns of schema version 9 (`prestarted` came with 14).
        for (at_s, outcome, cold) in [(60, "ok", true), (70, "crashed", false)] {
            let r = record("api", at_s, 1_000, outcome, cold);
            conn.execute(
                "INSERT INTO invocations (request_id, function, version, trigger, start_us,
                    duration_us, billed_ms, memory_mb, max_memory_mb, cold_start, outcome,
                    trace_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                rusqlite::params![
                    r.request_id,
                    r.function,
                    r.version,
                    r.trigger,
                    super::unix_micros(r.start),
                    super::micros(r.duration),
                    r.billed_ms as i64,
                    r.memory_mb,
                    r.max_memory_mb,
                    r.cold_start,
                    r.outcome,
                    r.trace_id,
                ],
            )?;
        }
    }
    let conn = db::open_read_write(&path)?;
    expect!["60 api Some(974µs) n=2 err=1 thr=0 cold=1 sum=2ms"].assert_eq(&rollups(&conn, 0));
    Ok(())
}
