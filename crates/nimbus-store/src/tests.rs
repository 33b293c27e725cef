//! Tests of the store through its public API, on temporary state folders.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{
    InvocationQuery, InvocationRecord, LogQuery, LogRecord, SpanRecord, Store, StoreError,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A fixed point in time plus `secs`, with a microsecond part to check precision survives.
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs) + Duration::from_micros(123_456)
}

fn invocation(
    function: &str,
    request_id: &str,
    start_secs: u64,
    outcome: &str,
) -> InvocationRecord {
    InvocationRecord {
        request_id: request_id.to_owned(),
        function: function.to_owned(),
        version: "$LATEST".to_owned(),
        trigger: "http".to_owned(),
        start: at(start_secs),
        duration: Duration::from_micros(12_345),
        billed_ms: 13,
        memory_mb: 128,
        max_memory_mb: 41,
        cold_start: false,
        prestarted: false,
        init_duration: None,
        outcome: outcome.to_owned(),
        error_type: None,
        error_message: None,
        trace_id: format!("{:032x}", start_secs),
        span_id: None,
        parent_span_id: None,
        log_lines_dropped: 0,
    }
}

fn log(function: &str, request_id: Option<&str>, time_secs: u64, message: &str) -> LogRecord {
    LogRecord {
        time: at(time_secs),
        function: function.to_owned(),
        request_id: request_id.map(str::to_owned),
        level: "INFO".to_owned(),
        stream: "stdout".to_owned(),
        message: message.to_owned(),
        fields: None,
    }
}

fn span(trace_id: &str, span_id: &str, parent: Option<&str>, start_secs: u64) -> SpanRecord {
    SpanRecord {
        trace_id: trace_id.to_owned(),
        span_id: span_id.to_owned(),
        parent_span_id: parent.map(str::to_owned),
        name: format!("span {span_id}"),
        kind: "internal".to_owned(),
        start: at(start_secs),
        end: at(start_secs + 1),
        attributes: vec![],
        status: "ok".to_owned(),
    }
}

fn request_ids(records: &[InvocationRecord]) -> Vec<&str> {
    records
        .iter()
        .map(|record| record.request_id.as_str())
        .collect()
}

/// What functions wrote, without the START/END/REPORT lines made from invocation records.
fn output(store: &Store, query: &LogQuery) -> Result<Vec<String>, StoreError> {
    Ok(store
        .logs(query)?
        .lines
        .into_iter()
        .filter(|line| line.stream != "platform")
        .map(|line| line.message)
        .collect())
}

fn messages(store: &Store, query: &LogQuery) -> Result<Vec<String>, StoreError> {
    Ok(store
        .logs(query)?
        .lines
        .into_iter()
        .map(|line| line.message)
        .collect())
}

#[test]
fn invocation_round_trips_every_field() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let record = InvocationRecord {
        cold_start: true,
        prestarted: false,
        init_duration: Some(Duration::from_micros(250_001)),
        outcome: "error".to_owned(),
        error_type: Some("TypeError".to_owned()),
        error_message: Some("x is undefined".to_owned()),
        billed_ms: u64::from(u32::MAX) + 1,
        ..invocation("hello", "req-1", 0, "ok")
    };
    store.record_invocation(record.clone());
    store.record_invocation(invocation("hello", "req-2", 1, "ok"));
    store.flush();

    let found = store.invocations(&InvocationQuery::default())?;
    assert_eq!(found.len(), 2);
    assert_eq!(found[1], record);
    assert_eq!(found[0].init_duration, None);
    Ok(())
}

#[test]
fn log_round_trips_with_json_fields() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let record = LogRecord {
        level: "ERROR".to_owned(),
        stream: "stderr".to_owned(),
        fields: Some(r#"{"level":"error","msg":"boom","n":3}"#.to_owned()),
        ..log(
            "hello",
            Some("req-1"),
            5,
            r#"{"level":"error","msg":"boom","n":3}"#,
        )
    };
    store.record_log(record.clone());
    store.record_log(log("hello", None, 6, "init done"));
    store.flush();

    let found = store.logs(&LogQuery::default())?.lines;
    assert_eq!(found.len(), 2);
    assert_eq!(found[0], record);
    assert_eq!(found[1].request_id, None);
    Ok(())
}

#[test]
fn spans_of_a_trace_come_back_by_start_time() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let root = SpanRecord {
        kind: "server".to_owned(),
        attributes: vec![
            ("http.method".to_owned(), "GET".to_owned()),
            ("http.route".to_owned(), "/hello".to_owned()),
            ("http.method".to_owned(), "duplicate \"kept\"".to_owned()),
        ],
        status: "error".to_owned(),
        ..span(trace, "00f067aa0ba902b7", None, 0)
    };
    // Recorded out of order, as spans end (children first).
    store.record_span(span(trace, "b7ad6b7169203331", Some("00f067aa0ba902b7"), 2));
    store.record_span(span(trace, "a2fb4a1d1a96d312", Some("00f067aa0ba902b7"), 1));
    store.record_span(root.clone());
    store.record_span(span(
        "0af7651916cd43dd8448eb211c80319c",
        "1111111111111111",
        None,
        0,
    ));
    store.flush();

    let found = store.spans(trace)?;
    let span_ids: Vec<&str> = found.iter().map(|span| span.span_id.as_str()).collect();
    assert_eq!(
        span_ids,
        ["00f067aa0ba902b7", "a2fb4a1d1a96d312", "b7ad6b7169203331"]
    );
    assert_eq!(found[0], root);
    assert!(store.spans("ffffffffffffffffffffffffffffffff")?.is_empty());
    Ok(())
}

#[test]
fn invocations_filter_by_function_failure_and_since_newest_first() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    for (function, request_id, start, outcome) in [
        ("a", "a1", 10, "ok"),
        ("a", "a2", 20, "timeout"),
        ("b", "b1", 30, "ok"),
        ("a", "a3", 40, "ok"),
        ("b", "b2", 50, "crashed"),
        ("a", "a4", 60, "error"),
    ] {
        store.record_invocation(invocation(function, request_id, start, outcome));
    }
    store.flush();

    let check = |query: InvocationQuery, expected: &[&str]| -> Result<(), StoreError> {
        let found = store.invocations(&query)?;
        assert_eq!(request_ids(&found), expected, "{query:?}");
        Ok(())
    };
    check(
        InvocationQuery::default(),
        &["a4", "b2", "a3", "b1", "a2", "a1"],
    )?;
    let function_a = || InvocationQuery {
        function: Some("a".to_owned()),
        ..InvocationQuery::default()
    };
    check(function_a(), &["a4", "a3", "a2", "a1"])?;
    check(
        InvocationQuery {
            failed_only: true,
            ..function_a()
        },
        &["a4", "a2"],
    )?;
    check(
        InvocationQuery {
            failed_only: true,
            ..InvocationQuery::default()
        },
        &["a4", "b2", "a2"],
    )?;
    check(
        InvocationQuery {
            since: Some(at(20)),
            ..function_a()
        },
        &["a4", "a3", "a2"],
    )?;
    check(
        InvocationQuery {
            since: Some(at(20)),
            limit: Some(2),
            ..function_a()
        },
        &["a4", "a3"],
    )?;
    check(
        InvocationQuery {
            function: Some("nope".to_owned()),
            ..InvocationQuery::default()
        },
        &[],
    )?;
    // One outcome (`GET /v1/invocations?outcome=`).
    let with_outcome = |query: InvocationQuery, outcome: &str| -> Result<Vec<String>, StoreError> {
        let found = store.invocations_with_outcome(&query, outcome)?;
        Ok(request_ids(&found).into_iter().map(str::to_owned).collect())
    };
    assert_eq!(
        with_outcome(InvocationQuery::default(), "ok")?,
        ["a3", "b1", "a1"]
    );
    assert_eq!(with_outcome(function_a(), "timeout")?, ["a2"]);
    assert_eq!(
        with_outcome(
            InvocationQuery {
                limit: Some(1),
                ..function_a()
            },
            "ok"
        )?,
        ["a3"]
    );
    Ok(())
}

#[test]
fn logs_filter_by_function_request_since_and_follow() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    for (function, request_id, time, message) in [
        ("a", None, 10, "a init"),
        ("a", Some("r1"), 20, "a r1 one"),
        ("b", Some("r2"), 25, "b r2"),
    ] {
        store.record_log(log(function, request_id, time, message));
    }
    store.flush();
    let first_page = store.logs(&LogQuery::default())?;
    for (function, request_id, time, message) in [
        ("a", Some("r1"), 30, "a r1 two"),
        ("a", Some("r3"), 40, "a r3"),
    ] {
        store.record_log(log(function, request_id, time, message));
    }
    // r1 ran from 20 s to 30 s: its START sorts before the lines of that instant, END and
    // REPORT after them. A throttled invocation never ran and has no lines.
    store.record_invocation(InvocationRecord {
        duration: Duration::from_secs(10),
        billed_ms: 10_000,
        init_duration: Some(Duration::from_micros(150_250)),
        ..invocation("a", "r1", 20, "ok")
    });
    store.record_invocation(invocation("a", "r9", 35, "throttled"));
    store.flush();

    let check = |query: LogQuery, expected: &[&str]| -> Result<(), StoreError> {
        assert_eq!(messages(&store, &query)?, expected, "{query:?}");
        Ok(())
    };
    let start = "START RequestId: r1 Version: $LATEST";
    let end = "END RequestId: r1";
    let report = "REPORT RequestId: r1\tDuration: 10000.00 ms\tBilled Duration: 10000 ms\tMemory Size: 128 MB\tMax Memory Used: 41 MB\tInit Duration: 150.25 ms";
    check(
        LogQuery::default(),
        &[
            "a init", start, "a r1 one", "b r2", "a r1 two", end, report, "a r3",
        ],
    )?;
    let function_a = || LogQuery {
        function: Some("a".to_owned()),
        ..LogQuery::default()
    };
    check(
        function_a(),
        &["a init", start, "a r1 one", "a r1 two", end, report, "a r3"],
    )?;
    check(
        LogQuery {
            request_id: Some("r1".to_owned()),
            ..LogQuery::default()
        },
        &[start, "a r1 one", "a r1 two", end, report],
    )?;
    check(
        LogQuery {
            since: Some(at(25)),
            ..LogQuery::default()
        },
        &["b r2", "a r1 two", "a r3"],
    )?;
    // Following: only what was stored after the first page, with and without other filters.
    check(
        LogQuery {
            after: Some(first_page.next),
            ..function_a()
        },
        &[start, "a r1 two", end, report, "a r3"],
    )?;
    check(
        LogQuery {
            after: Some(first_page.next),
            request_id: Some("r1".to_owned()),
            since: Some(at(10)),
            ..function_a()
        },
        &[start, "a r1 two", end, report],
    )?;
    let last_page = store.logs(&LogQuery {
        after: Some(first_page.next),
        ..LogQuery::default()
    })?;
    check(
        LogQuery {
            after: Some(last_page.next),
            ..LogQuery::default()
        },
        &[],
    )?;
    Ok(())
}

#[test]
fn an_invocation_with_a_span_id_is_a_span_of_its_trace() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let trace = format!("{:032x}", 20);
    store.record_span(span(&trace, "00000000000000aa", None, 19));
    store.record_invocation(InvocationRecord {
        trigger: "sqs".to_owned(),
        span_id: Some("00000000000000bb".to_owned()),
        parent_span_id: Some("00000000000000aa".to_owned()),
        ..invocation("a", "r1", 20, "error")
    });
    store.flush();
    let spans = store.spans(&trace)?;
    assert_eq!(spans.len(), 2);
    let function_span = &spans[1];
    assert_eq!(function_span.name, "a");
    assert_eq!(function_span.kind, "internal");
    assert_eq!(function_span.status, "error");
    assert_eq!(
        function_span.parent_span_id.as_deref(),
        Some("00000000000000aa")
    );
    assert_eq!(function_span.end, at(20) + Duration::from_micros(12_345));
    assert_eq!(
        function_span.attributes,
        [
            ("faas.invocation_id", "r1"),
            ("faas.name", "a"),
            ("faas.trigger", "pubsub"),
            ("faas.coldstart", "false"),
            ("nimbus.outcome", "error"),
            ("faas.max_memory", "134217728"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    Ok(())
}

#[test]
fn flush_waits_until_records_sent_before_it_are_committed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let reader = Store::open_read_only(dir.path())?;
    for round in 1..=3 {
        for idx in 0..100 {
            store.record_log(log("a", None, round * 1000 + idx, "line"));
        }
        store.flush();
        // Visible to both the writing store's readers and another read-only store at once.
        assert_eq!(
            store.logs(&LogQuery::default())?.lines.len(),
            round as usize * 100
        );
        assert_eq!(
            reader.logs(&LogQuery::default())?.lines.len(),
            round as usize * 100
        );
    }
    // A flush with nothing queued returns too.
    store.flush();
    Ok(())
}

#[test]
fn flush_from_another_clone_covers_records_sent_before_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let clone = store.clone();
    let thread = std::thread::spawn(move || {
        for idx in 0..1000 {
            clone.record_invocation(invocation("a", &format!("r{idx}"), idx, "ok"));
        }
    });
    thread.join().map_err(|_| "recording thread panicked")?;
    store.flush();
    assert_eq!(store.invocations(&InvocationQuery::default())?.len(), 1000);
    Ok(())
}

#[test]
fn prune_deletes_records_that_started_before_the_cutoff() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    for secs in [10, 20, 30] {
        store.record_invocation(invocation("a", &format!("r{secs}"), secs, "ok"));
        store.record_log(log("a", None, secs, &format!("line {secs}")));
        store.record_span(span(
            &format!("{secs:032x}"),
            "0000000000000001",
            None,
            secs,
        ));
    }
    // Not flushed: prune runs after what was queued before it.
    let n_deleted = store.prune(at(20))?;
    assert_eq!(n_deleted, 3);

    let invocations = store.invocations(&InvocationQuery::default())?;
    assert_eq!(request_ids(&invocations), ["r30", "r20"]);
    assert_eq!(
        output(&store, &LogQuery::default())?,
        ["line 20", "line 30"]
    );
    assert!(store.spans(&format!("{:032x}", 10))?.is_empty());
    assert_eq!(store.spans(&format!("{:032x}", 20))?.len(), 1);
    assert_eq!(store.prune(at(20))?, 0);
    Ok(())
}

#[test]
fn read_only_store_sees_rows_committed_while_the_writer_runs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    store.record_log(log("a", Some("r1"), 1, "before"));
    store.flush();

    let reader = Store::open_read_only(dir.path())?;
    assert_eq!(messages(&reader, &LogQuery::default())?, ["before"]);

    // The writer keeps committing while the reader reads; each read sees a committed prefix.
    let writing = store.clone();
    let thread = std::thread::spawn(move || {
        for idx in 0..5000 {
            writing.record_log(log("a", Some("r2"), 2 + idx, "during"));
        }
        writing.flush();
    });
    let mut last_len = 0;
    while last_len < 5001 {
        let len = reader.logs(&LogQuery::default())?.lines.len();
        assert!(
            len >= last_len,
            "a reader went back from {last_len} to {len} rows"
        );
        last_len = len;
        if thread.is_finished() && len < 5001 {
            assert_eq!(reader.logs(&LogQuery::default())?.lines.len(), 5001);
            break;
        }
    }
    thread.join().map_err(|_| "recording thread panicked")?;
    Ok(())
}

#[test]
fn read_only_store_opened_before_the_writer_sees_its_rows() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(Store::open(dir.path())?);
    // `nimbus logs -f` started before `nimbus up`, on a store left by an earlier run.
    let reader = Store::open_read_only(dir.path())?;
    assert!(reader.logs(&LogQuery::default())?.lines.is_empty());

    let store = Store::open(dir.path())?;
    store.record_log(log("a", None, 1, "hello"));
    store.flush();
    assert_eq!(messages(&reader, &LogQuery::default())?, ["hello"]);
    Ok(())
}

#[test]
fn burst_of_20000_records_is_stored() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let n_records: u64 = 20_000;
    let started = Instant::now();
    for idx in 0..n_records {
        let request_id = format!("req-{idx}");
        match idx % 4 {
            0 => store.record_invocation(invocation("burst", &request_id, idx, "ok")),
            1 => store.record_span(span(&format!("{idx:032x}"), "00f067aa0ba902b7", None, idx)),
            _ => {
                let _ = store.record_log(log("burst", Some(&request_id), idx, "a line of output"));
            }
        }
    }
    let queued = started.elapsed();
    store.flush();
    let stored = started.elapsed();
    eprintln!(
        "burst: queued {n_records} records in {queued:?}, all committed after {stored:?} ({:.0} records/s)",
        n_records as f64 / stored.as_secs_f64()
    );

    assert_eq!(store.n_dropped(), 0);
    let n_invocations = store.invocations(&InvocationQuery::default())?.len();
    let n_logs = store.logs(&LogQuery::default())?.lines.len();
    // 10,000 lines written, and START, END and REPORT of each of 5,000 invocations.
    assert_eq!((n_invocations, n_logs), (5000, 10_000 + 3 * 5000));
    assert_eq!(store.spans(&format!("{:032x}", 19_997))?.len(), 1);
    Ok(())
}

#[test]
fn full_queue_drops_records_and_counts_them() -> TestResult {
    let dir = tempfile::tempdir()?;
    // A one-slot queue fills as soon as the writer is busy with a batch.
    let store = Store::open_with_capacity(dir.path(), 1)?;
    let n_sent = 5000;
    for idx in 0..n_sent {
        store.record_log(log("a", None, idx, "line"));
    }
    store.flush();
    let n_stored = store.logs(&LogQuery::default())?.lines.len() as u64;
    assert_eq!(n_stored + store.n_dropped(), n_sent);
    Ok(())
}

#[test]
fn dropping_the_last_clone_commits_what_was_queued() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let clone = store.clone();
    for idx in 0..1000 {
        store.record_log(log("a", None, idx, "line"));
    }
    drop(store);
    clone.record_log(log("a", None, 1000, "last"));
    drop(clone);

    let reader = Store::open_read_only(dir.path())?;
    assert_eq!(reader.logs(&LogQuery::default())?.lines.len(), 1001);
    Ok(())
}

#[test]
fn reopening_after_drop_keeps_data_and_appends() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    store.record_invocation(invocation("a", "first", 1, "ok"));
    store.record_log(log("a", None, 1, "first"));
    drop(store);

    let store = Store::open(dir.path())?;
    store.record_invocation(invocation("a", "second", 2, "ok"));
    store.record_log(log("a", None, 2, "second"));
    store.flush();
    let invocations = store.invocations(&InvocationQuery::default())?;
    assert_eq!(request_ids(&invocations), ["second", "first"]);
    assert_eq!(output(&store, &LogQuery::default())?, ["first", "second"]);
    Ok(())
}

#[test]
fn missing_store_tells_the_user_to_run_nimbus_up() -> TestResult {
    let dir = tempfile::tempdir()?;
    let err = Store::open_read_only(&dir.path().join(".nimbus")).map(|_| ());
    let Err(err @ StoreError::Missing { .. }) = err else {
        return Err(format!("expected StoreError::Missing, got {err:?}").into());
    };
    let message = err.to_string();
    assert!(message.contains("nimbus.db"), "{message}");
    assert!(message.contains("run `nimbus up` first"), "{message}");
    Ok(())
}

#[test]
fn read_only_store_drops_records_and_refuses_to_prune() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(Store::open(dir.path())?);
    let reader = Store::open_read_only(dir.path())?;
    reader.record_log(log("a", None, 1, "ignored"));
    reader.flush();
    assert_eq!(reader.n_dropped(), 1);
    assert!(matches!(reader.prune(at(0)), Err(StoreError::ReadOnly)));
    assert!(reader.logs(&LogQuery::default())?.lines.is_empty());
    Ok(())
}

#[test]
fn store_from_a_newer_nimbus_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let path = store.path().to_owned();
    drop(store);
    let conn = rusqlite::Connection::open(&path)?;
    conn.execute(
        "INSERT INTO schema_version (version, applied_at_us) VALUES (99, 0)",
        [],
    )?;
    drop(conn);

    let err = Store::open(dir.path()).map(|_| ());
    assert!(
        matches!(err, Err(StoreError::TooNew { found: 99, .. })),
        "{err:?}"
    );
    let err = Store::open_read_only(dir.path()).map(|_| ());
    assert!(
        matches!(err, Err(StoreError::TooNew { found: 99, .. })),
        "{err:?}"
    );
    Ok(())
}
