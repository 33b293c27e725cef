//! Tests of buckets through the store's public API, on temporary state folders.

use std::path::Path;

use nimbus_core::events::QueueSpec;

use crate::buckets::INLINE_MAX;
use crate::{NewMessage, ObjectMeta, Store, StoreError};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn open() -> Result<(tempfile::TempDir, Store), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    store.ensure_bucket("images")?;
    Ok((dir, store))
}

/// The names of the files in a bucket's folder, sorted.
fn files(state_dir: &Path, bucket: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state_dir.join("buckets").join(bucket))
        .expect("the bucket folder exists")
        .map(|entry| {
            entry
                .expect("a readable folder")
                .file_name()
                .into_string()
                .expect("UTF-8")
        })
        .collect();
    names.sort();
    names
}

fn keys(objects: &[ObjectMeta]) -> Vec<&str> {
    objects.iter().map(|meta| meta.key.as_str()).collect()
}

#[test]
fn put_get_head_list_delete_round_trip() -> TestResult {
    let (dir, store) = open()?;
    let meta = store.put_object(
        "images",
        "cats/tom.png",
        b"hello",
        Some("image/png"),
        vec![],
    )?;
    assert_eq!(meta.size, 5);
    assert_eq!(meta.etag, "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(meta.content_type.as_deref(), Some("image/png"));
    assert_eq!(meta.sequencer.len(), 16);

    let (got, data) = store
        .get_object("images", "cats/tom.png")?
        .ok_or("object missing")?;
    assert_eq!(got, meta);
    assert_eq!(data, b"hello");
    assert_eq!(
        store.head_object("images", "cats/tom.png")?,
        Some(meta.clone())
    );
    assert_eq!(store.head_object("images", "cats/nobody.png")?, None);
    assert_eq!(store.get_object("images", "cats/nobody.png")?, None);
    // A small object's bytes are in SQLite; a large one's file is named by a random id, not by
    // the key.
    assert!(files(dir.path(), "images").is_empty());
    store.put_object("images", "cats/big.png", &[0; INLINE_MAX + 1], None, vec![])?;
    let names = files(dir.path(), "images");
    assert_eq!(names.len(), 1);
    assert!(!names[0].contains("big"), "{names:?}");
    store.delete_object("images", "cats/big.png", vec![])?;
    assert!(files(dir.path(), "images").is_empty());

    let list = store.list_objects("images", None, None, 1000)?;
    assert_eq!(keys(&list.objects), ["cats/tom.png"]);
    assert!(!list.is_truncated);

    let deleted = store
        .delete_object("images", "cats/tom.png", vec![])?
        .ok_or("nothing deleted")?;
    assert!(deleted.sequencer > meta.sequencer, "{deleted:?}");
    assert_eq!(store.get_object("images", "cats/tom.png")?, None);
    assert_eq!(store.delete_object("images", "cats/tom.png", vec![])?, None);
    assert!(files(dir.path(), "images").is_empty());
    Ok(())
}

#[test]
fn keys_and_bucket_names_are_checked() -> TestResult {
    let (_dir, store) = open()?;
    for key in [
        "..",
        "../etc/passwd",
        "a/../../b",
        "a/./b",
        ".",
        "a/..",
        "a\\..\\b",
        "",
        "nul\0byte",
    ] {
        let err = store
            .put_object("images", key, b"x", None, vec![])
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidKey { .. }),
            "{key:?}: {err}"
        );
        assert!(err.is_client_error());
    }
    let err = store
        .put_object("images", &"k".repeat(1025), b"x", None, vec![])
        .unwrap_err();
    assert!(err.to_string().contains("1 to 1024 bytes"), "{err}");
    let err = store.get_object("images", "../x").unwrap_err();
    assert!(
        err.to_string().contains("no path segment `.` or `..`"),
        "{err}"
    );
    // Dots inside a segment are fine, and so are spaces, unicode and leading slashes.
    for key in [
        "a..b",
        "..a/b..",
        "/leading",
        "ünïcode key.txt",
        &"k".repeat(1024),
    ] {
        store.put_object("images", key, b"x", None, vec![])?;
        assert!(store.get_object("images", key)?.is_some(), "{key}");
    }

    for name in [
        "ab",
        "Images",
        "has_underscore",
        "-dash",
        "dot.",
        "a..b",
        "192.168.1.1",
        "xn--abc",
    ] {
        let err = store.ensure_bucket(name).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidBucketName { .. }),
            "{name}: {err}"
        );
    }
    store.ensure_bucket("my.bucket-2")?;
    let err = store
        .put_object("undeclared", "k", b"x", None, vec![])
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownBucket { .. }), "{err}");
    assert!(err.is_not_found());
    let err = store.get_object("undeclared", "k").unwrap_err();
    assert!(
        err.to_string()
            .contains("bucket `undeclared` does not exist"),
        "{err}"
    );
    assert_eq!(store.list_buckets()?, ["images", "my.bucket-2"]);
    Ok(())
}

#[test]
fn overwrite_replaces_content_and_removes_the_old_file() -> TestResult {
    let (dir, store) = open()?;
    let large = |fill: u8| vec![fill; INLINE_MAX + 1];
    let first = store.put_object("images", "k", &large(1), None, vec![])?;
    let first_files = files(dir.path(), "images");
    let second = store.put_object("images", "k", &large(2), Some("text/plain"), vec![])?;
    let second_files = files(dir.path(), "images");
    assert_eq!(second_files.len(), 1);
    assert_ne!(first_files, second_files);
    assert!(second.sequencer > first.sequencer);
    assert_eq!(second.size, INLINE_MAX as u64 + 1);
    let (meta, data) = store.get_object("images", "k")?.ok_or("missing")?;
    assert_eq!(data, large(2));
    assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
    Ok(())
}

#[test]
fn small_objects_live_in_sqlite_and_move_to_files_and_back_as_they_grow_and_shrink() -> TestResult {
    let (dir, store) = open()?;
    let small = vec![3; INLINE_MAX];
    let large = vec![4; INLINE_MAX + 1];
    let meta = store.put_object("images", "k", &small, None, vec![])?;
    assert_eq!(meta.etag, crate::durable::md5_hex(&small));
    assert!(
        files(dir.path(), "images").is_empty(),
        "no file for a small object"
    );
    assert_eq!(store.get_object("images", "k")?.ok_or("missing")?.1, small);
    store.put_object("images", "k", &large, None, vec![])?;
    assert_eq!(files(dir.path(), "images").len(), 1);
    assert_eq!(store.get_object("images", "k")?.ok_or("missing")?.1, large);
    store.put_object("images", "k", b"tiny", None, vec![])?;
    assert!(
        files(dir.path(), "images").is_empty(),
        "the large one's file is gone"
    );
    assert_eq!(
        store.get_object("images", "k")?.ok_or("missing")?.1,
        b"tiny"
    );
    let n_inline = |store: &Store| -> Result<i64, StoreError> {
        store.read(|conn| {
            conn.query_row("SELECT COUNT(*) FROM object_data", [], |row| row.get(0))
                .map_err(crate::durable::read_err("objects"))
        })
    };
    assert_eq!(n_inline(&store)?, 1, "an overwrite drops the old bytes");
    // The point read that never touches a file: found, missing, or in a file.
    assert!(matches!(
        store.get_inline_object("images", "k")?,
        crate::InlineGet::Found(_, data) if data == b"tiny"
    ));
    assert_eq!(
        store.get_inline_object("images", "nope")?,
        crate::InlineGet::Missing
    );
    store.put_object("images", "big", &large, None, vec![])?;
    assert_eq!(
        store.get_inline_object("images", "big")?,
        crate::InlineGet::InFile
    );
    store.delete_object("images", "big", vec![])?;
    store.delete_object("images", "k", vec![])?;
    assert_eq!(n_inline(&store)?, 0, "a delete drops the bytes");
    assert!(store.get_object("images", "k")?.is_none());
    // A refused conditional put leaves nothing behind.
    store.put_object("images", "c", b"one", None, vec![])?;
    let refused = store.put_object_if(
        "images",
        "c",
        b"two",
        None,
        None,
        &crate::WriteCondition::IfAbsent,
        &mut |_| Vec::new(),
    );
    assert!(refused.is_err());
    assert_eq!(n_inline(&store)?, 1);
    assert_eq!(store.get_object("images", "c")?.ok_or("missing")?.1, b"one");
    Ok(())
}

#[test]
fn put_commits_its_event_messages_with_the_object() -> TestResult {
    let (dir, store) = open()?;
    store.ensure_queue(&QueueSpec::with_defaults("uploads"))?;
    store.put_object(
        "images",
        "a.png",
        b"png",
        None,
        vec![("uploads".to_owned(), NewMessage::new("created a.png"))],
    )?;
    // Events made from the stored metadata carry the sequencer.
    let meta = store.put_object_with(
        "images",
        "b.png",
        b"png",
        None,
        Some(r#"{"owner":"tom"}"#),
        &mut |meta| {
            vec![(
                "uploads".to_owned(),
                NewMessage::new(format!(
                    "created {} {} {}",
                    meta.key, meta.etag, meta.sequencer
                )),
            )]
        },
    )?;
    assert_eq!(meta.metadata.as_deref(), Some(r#"{"owner":"tom"}"#));
    store.delete_object(
        "images",
        "a.png",
        vec![("uploads".to_owned(), NewMessage::new("removed a.png"))],
    )?;
    let received = store.receive_messages("uploads", 10, None)?;
    let bodies: Vec<&str> = received.iter().map(|msg| msg.body.as_str()).collect();
    assert_eq!(
        bodies,
        [
            "created a.png".to_owned(),
            format!("created b.png {} {}", meta.etag, meta.sequencer),
            "removed a.png".to_owned()
        ]
    );

    // An event that cannot be enqueued fails the put: no object, no file, no message.
    let err = store
        .put_object(
            "images",
            "c.png",
            &[1; INLINE_MAX + 1],
            None,
            vec![("no-such-queue".to_owned(), NewMessage::new("created c.png"))],
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownQueue { .. }), "{err}");
    assert_eq!(store.head_object("images", "c.png")?, None);
    assert!(files(dir.path(), "images").is_empty());
    // Likewise a delete whose event fails keeps the object.
    let err = store
        .delete_object(
            "images",
            "b.png",
            vec![("no-such-queue".to_owned(), NewMessage::new("removed"))],
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownQueue { .. }), "{err}");
    assert!(store.get_object("images", "b.png")?.is_some());
    Ok(())
}

#[test]
fn list_pages_by_prefix_and_start_after() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_bucket("other")?;
    store.put_object("other", "a/1", b"x", None, vec![])?;
    for key in ["a/1", "a/2", "a/3", "a0", "b/1", "a/", "Z"] {
        store.put_object("images", key, b"x", None, vec![])?;
    }
    let all = store.list_objects("images", None, None, 1000)?;
    assert_eq!(
        keys(&all.objects),
        ["Z", "a/", "a/1", "a/2", "a/3", "a0", "b/1"]
    );

    let page = store.list_objects("images", Some("a/"), None, 2)?;
    assert_eq!(keys(&page.objects), ["a/", "a/1"]);
    assert!(page.is_truncated);
    assert_eq!(page.next_start_after.as_deref(), Some("a/1"));
    let page = store.list_objects("images", Some("a/"), page.next_start_after.as_deref(), 2)?;
    assert_eq!(keys(&page.objects), ["a/2", "a/3"]);
    // Exactly full: S3 reports truncation only when another key matches.
    assert!(!page.is_truncated);
    assert_eq!(page.next_start_after, None);

    let after = store.list_objects("images", None, Some("a0"), 1000)?;
    assert_eq!(keys(&after.objects), ["b/1"]);
    let none = store.list_objects("images", Some("c"), None, 1000)?;
    assert!(none.objects.is_empty() && !none.is_truncated);
    Ok(())
}

#[test]
fn ensure_bucket_removes_files_left_by_a_crash() -> TestResult {
    let (dir, store) = open()?;
    store.put_object("images", "kept", b"kept", None, vec![])?;
    let bucket_dir = dir.path().join("buckets").join("images");
    std::fs::write(
        bucket_dir.join(".tmp-0123456789abcdef0123456789abcdef"),
        b"half",
    )?;
    std::fs::write(
        bucket_dir.join("0123456789abcdef0123456789abcdef"),
        b"renamed, not committed",
    )?;
    std::fs::write(bucket_dir.join("README"), b"not ours: left alone")?;
    drop(store);

    let store = Store::open(dir.path())?;
    store.ensure_bucket("images")?;
    // `kept` is small, so its bytes are in SQLite, not in the folder.
    assert_eq!(files(dir.path(), "images"), ["README"]);
    let (_, data) = store.get_object("images", "kept")?.ok_or("missing")?;
    assert_eq!(data, b"kept");
    Ok(())
}

#[test]
fn reopened_store_keeps_objects() -> TestResult {
    let dir = tempfile::tempdir()?;
    let meta = {
        let store = Store::open(dir.path())?;
        store.ensure_bucket("docs")?;
        store.put_object(
            "docs",
            "report.pdf",
            &[7; 100_000],
            Some("application/pdf"),
            vec![],
        )?
    };
    let store = Store::open(dir.path())?;
    store.ensure_bucket("docs")?;
    let (got, data) = store.get_object("docs", "report.pdf")?.ok_or("missing")?;
    assert_eq!(got, meta);
    assert_eq!(data, vec![7; 100_000]);
    let next = store.put_object("docs", "other", b"x", None, vec![])?;
    assert!(next.sequencer > meta.sequencer);
    Ok(())
}

#[test]
fn a_put_without_waiting_refuses_while_the_writer_is_busy_and_changes_nothing() -> TestResult {
    let (_dir, store) = open()?;
    let quick = store.without_waiting();
    // Free: the put commits like any other.
    quick.put_object("images", "a.txt", b"first", None, vec![])?;
    assert_eq!(
        store.get_object("images", "a.txt")?.map(|o| o.1),
        Some(b"first".to_vec())
    );

    // Busy: another write holds the services connection.
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = store.clone();
    let busy = std::thread::spawn(move || {
        holder.write("a test's hold", |_tx| {
            let _ = entered_tx.send(());
            let _ = release_rx.recv();
            Ok(())
        })
    });
    entered_rx.recv()?;
    let res = quick.put_object("images", "a.txt", b"second", None, vec![]);
    assert!(matches!(res, Err(StoreError::WouldWait)), "{res:?}");
    release_tx.send(())?;
    busy.join().expect("the holding write")?;
    assert_eq!(
        store.get_object("images", "a.txt")?.map(|o| o.1),
        Some(b"first".to_vec())
    );

    // Busy in SQLite: another connection holds the write lock.
    let other = rusqlite::Connection::open(store.path())?;
    other.execute_batch("BEGIN IMMEDIATE")?;
    let res = quick.put_object("images", "b.txt", b"x", None, vec![]);
    assert!(matches!(res, Err(StoreError::WouldWait)), "{res:?}");
    other.execute_batch("ROLLBACK")?;
    // The waiting handle is unaffected, and the quick one works again.
    store.put_object("images", "b.txt", b"waited", None, vec![])?;
    quick.put_object("images", "c.txt", b"quick", None, vec![])?;
    assert_eq!(
        store.get_object("images", "b.txt")?.map(|o| o.1),
        Some(b"waited".to_vec())
    );
    assert_eq!(
        store.get_object("images", "c.txt")?.map(|o| o.1),
        Some(b"quick".to_vec())
    );
    Ok(())
}
