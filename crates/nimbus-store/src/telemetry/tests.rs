//! Query plans of the telemetry queries: each CLI command's query must use an index, not scan a table.

use expect_test::{Expect, expect};
use rusqlite::Connection;

use crate::db;
use crate::telemetry::{
    InvocationQuery, LogCursor, LogQuery, invocations_sql, logs_sql, platform_sql,
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
        let (sql, params) = invocations_sql(&query);
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
