//! Tests of KV namespaces through the store's public API, on temporary state folders.

use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use nimbus_core::kv::{KvError, KvListQuery, KvPage, KvPut};

use crate::{Store, StoreError};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn open() -> Result<(tempfile::TempDir, Store), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    Ok((dir, store))
}

fn names(list: &KvPage) -> Vec<&str> {
    list.keys.iter().map(|key| key.name.as_str()).collect()
}

/// `Store::kv_put` with the value, expiration and metadata given apart.
fn put(
    store: &Store,
    ns: &str,
    key: &str,
    value: &[u8],
    expiration: Option<SystemTime>,
    metadata: Option<&str>,
) -> Result<(), StoreError> {
    let put = KvPut {
        value: value.to_vec(),
        expiration,
        metadata: metadata.map(str::to_owned),
    };
    store.kv_put(ns, key, &put)
}

/// `Store::kv_list` with the query given apart.
fn list(
    store: &Store,
    ns: &str,
    prefix: Option<&str>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<KvPage, StoreError> {
    let query = KvListQuery {
        prefix: prefix.map(str::to_owned),
        cursor: cursor.map(str::to_owned),
        limit,
    };
    store.kv_list(ns, &query)
}

#[test]
fn put_get_delete_round_trip() -> TestResult {
    let (_dir, store) = open()?;
    put(
        &store,
        "sessions",
        "user:1",
        b"alice",
        None,
        Some(r#"{"v":1}"#),
    )?;
    let entry = store.kv_get("sessions", "user:1")?.ok_or("missing")?;
    assert_eq!(entry.value, b"alice");
    assert_eq!(entry.metadata.as_deref(), Some(r#"{"v":1}"#));
    assert_eq!(entry.expiration, None);
    // Namespaces are separate.
    assert_eq!(store.kv_get("other", "user:1")?, None);
    // Overwrite replaces value and metadata.
    put(&store, "sessions", "user:1", b"bob", None, None)?;
    let entry = store.kv_get("sessions", "user:1")?.ok_or("missing")?;
    assert_eq!(
        (entry.value.as_slice(), entry.metadata),
        (&b"bob"[..], None)
    );
    // Binary values and empty values are fine.
    put(&store, "sessions", "bin", &[0, 255, 1], None, None)?;
    assert_eq!(
        store.kv_get("sessions", "bin")?.ok_or("missing")?.value,
        [0, 255, 1]
    );
    put(&store, "sessions", "empty", b"", None, None)?;
    assert_eq!(
        store.kv_get("sessions", "empty")?.ok_or("missing")?.value,
        b""
    );

    assert!(store.kv_delete("sessions", "user:1")?);
    assert!(!store.kv_delete("sessions", "user:1")?);
    assert_eq!(store.kv_get("sessions", "user:1")?, None);
    Ok(())
}

#[test]
fn expired_keys_read_as_absent() -> TestResult {
    let (_dir, store) = open()?;
    let expiration = SystemTime::now() + Duration::from_millis(1100);
    put(&store, "cache", "soon", b"v", Some(expiration), None)?;
    put(
        &store,
        "cache",
        "later",
        b"v",
        Some(SystemTime::now() + Duration::from_secs(3600)),
        None,
    )?;
    put(&store, "cache", "forever", b"v", None, None)?;
    let entry = store.kv_get("cache", "soon")?.ok_or("missing")?;
    // Stored with microsecond precision.
    let stored = entry.expiration.ok_or("no expiration")?;
    assert!(expiration.duration_since(stored)? < Duration::from_micros(1));
    assert_eq!(
        names(&list(&store, "cache", None, None, 0)?),
        ["forever", "later", "soon"]
    );
    sleep(Duration::from_millis(1200));
    // `kv_read` sees it gone but leaves the row; `kv_get` removes it.
    assert_eq!(store.kv_read("cache", "soon")?, None);
    assert_eq!(
        store.kv_read("cache", "later")?.map(|e| e.value),
        Some(b"v".to_vec())
    );
    assert_eq!(store.kv_get("cache", "soon")?, None);
    assert_eq!(
        names(&list(&store, "cache", None, None, 0)?),
        ["forever", "later"]
    );
    // The get removed the row already; a sweep finds nothing more.
    assert_eq!(store.kv_sweep_expired()?, 0);

    let err = put(
        &store,
        "cache",
        "k",
        b"v",
        Some(SystemTime::now() + Duration::from_millis(500)),
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("at least 1 s in the future"),
        "{err}"
    );
    Ok(())
}

#[test]
fn sweep_removes_expired_keys() -> TestResult {
    let (_dir, store) = open()?;
    for idx in 0..3 {
        let expiration = SystemTime::now() + Duration::from_millis(1050);
        put(
            &store,
            "cache",
            &format!("k{idx}"),
            b"v",
            Some(expiration),
            None,
        )?;
    }
    put(&store, "cache", "kept", b"v", None, None)?;
    sleep(Duration::from_millis(1100));
    assert_eq!(store.kv_sweep_expired()?, 3);
    assert_eq!(names(&list(&store, "cache", None, None, 0)?), ["kept"]);
    Ok(())
}

#[test]
fn list_pages_with_cursor_and_prefix() -> TestResult {
    let (_dir, store) = open()?;
    for key in ["user:3", "user:1", "user:2", "admin:1", "userx", "user:10"] {
        put(&store, "ns", key, b"v", None, Some(r#"{"k":true}"#))?;
    }
    put(&store, "other", "user:0", b"v", None, None)?;
    let page = list(&store, "ns", Some("user:"), None, 2)?;
    assert_eq!(names(&page), ["user:1", "user:10"]);
    assert!(!page.list_complete);
    assert_eq!(page.keys[0].metadata.as_deref(), Some(r#"{"k":true}"#));
    let cursor = page.cursor.ok_or("no cursor")?;
    let page = list(&store, "ns", Some("user:"), Some(&cursor), 2)?;
    assert_eq!(names(&page), ["user:2", "user:3"]);
    assert!(page.list_complete);
    assert_eq!(page.cursor, None);

    let all = list(&store, "ns", None, None, 1000)?;
    assert_eq!(
        names(&all),
        ["admin:1", "user:1", "user:10", "user:2", "user:3", "userx"]
    );
    assert!(all.list_complete);

    let err = list(&store, "ns", None, Some("not a cursor"), 10).unwrap_err();
    assert!(
        matches!(err, StoreError::Kv(KvError::InvalidCursor { .. })),
        "{err}"
    );
    let err = list(&store, "ns", None, None, 1001).unwrap_err();
    assert!(err.to_string().contains("at most 1000 keys"), "{err}");
    Ok(())
}

#[test]
fn limits_follow_workers_kv() -> TestResult {
    let (_dir, store) = open()?;
    let check = |res: Result<(), StoreError>, expected: &str| {
        let err = res.expect_err(expected);
        assert!(err.is_client_error(), "{err}");
        assert!(
            err.to_string().contains(expected),
            "`{err}` lacks `{expected}`"
        );
    };
    check(put(&store, "ns", "", b"v", None, None), "1 to 512 bytes");
    check(
        put(&store, "ns", &"k".repeat(513), b"v", None, None),
        "1 to 512 bytes",
    );
    check(
        put(&store, "ns", ".", b"v", None, None),
        "cannot be `.` or `..`",
    );
    check(
        put(&store, "ns", "..", b"v", None, None),
        "cannot be `.` or `..`",
    );
    check(put(&store, "", "k", b"v", None, None), "namespace");
    check(
        put(
            &store,
            "ns",
            "k",
            &vec![0; 25 * 1024 * 1024 + 1],
            None,
            None,
        ),
        "KV value of 26214401 bytes is over the limit of 26214400 bytes",
    );
    let big_metadata = format!("\"{}\"", "m".repeat(1023));
    check(
        put(&store, "ns", "k", b"v", None, Some(&big_metadata)),
        "KV metadata of 1025 bytes",
    );
    check(
        put(&store, "ns", "k", b"v", None, Some("{not json")),
        "metadata is JSON",
    );
    put(
        &store,
        "ns",
        &"k".repeat(512),
        b"v",
        None,
        Some(&big_metadata[1..]),
    )
    .expect_err("1024 bytes that are not JSON");
    put(
        &store,
        "ns",
        &"k".repeat(512),
        b"v",
        None,
        Some(&format!("\"{}\"", "m".repeat(1022))),
    )?;
    assert_eq!(
        store.kv_get("ns", "..").unwrap_err().to_string(),
        "invalid key `..`: a KV key cannot be `.` or `..`"
    );
    Ok(())
}

#[test]
fn reopened_store_keeps_keys() -> TestResult {
    let dir = tempfile::tempdir()?;
    put(&Store::open(dir.path())?, "ns", "k", b"kept", None, None)?;
    let store = Store::open(dir.path())?;
    assert_eq!(store.kv_get("ns", "k")?.ok_or("missing")?.value, b"kept");
    Ok(())
}

#[test]
fn throughput_of_gets_and_puts() -> TestResult {
    const N_KEYS: usize = 5_000;
    const N_GETS: usize = 100_000;
    let (_dir, store) = open()?;
    let value = vec![b'v'; 100];
    let start = Instant::now();
    for idx in 0..N_KEYS {
        put(&store, "bench", &format!("key:{idx}"), &value, None, None)?;
    }
    let put_time = start.elapsed();
    let keys: Vec<String> = (0..N_KEYS).map(|idx| format!("key:{idx}")).collect();
    let start = Instant::now();
    for idx in 0..N_GETS {
        let entry = store.kv_get("bench", &keys[idx % N_KEYS])?;
        assert!(entry.is_some());
    }
    let get_time = start.elapsed();
    // Several threads reading at once, each with a read connection of its own.
    let n_threads = 2;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread_idx in 0..n_threads {
            let (store, keys) = (&store, &keys);
            scope.spawn(move || {
                for idx in 0..N_GETS / n_threads {
                    let key = &keys[(idx * 7 + thread_idx) % N_KEYS];
                    assert!(store.kv_get("bench", key).expect("get").is_some());
                }
            });
        }
    });
    let parallel_get_time = start.elapsed();
    eprintln!(
        "KV throughput, 100-byte values: put {:.0}/s (one commit each), get {:.0}/s, \
         get from {n_threads} threads {:.0}/s",
        N_KEYS as f64 / put_time.as_secs_f64(),
        N_GETS as f64 / get_time.as_secs_f64(),
        N_GETS as f64 / parallel_get_time.as_secs_f64(),
    );
    Ok(())
}
