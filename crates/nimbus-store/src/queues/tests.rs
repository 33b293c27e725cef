//! Tests of queues through the store's public API, on temporary state folders.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nimbus_core::events::{QueueSpec, Redrive};

use crate::{MessageAttribute, NewMessage, QueueStats, ReceivedMessage, Store, StoreError};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn open() -> Result<(tempfile::TempDir, Store), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    Ok((dir, store))
}

fn spec(name: &str) -> QueueSpec {
    QueueSpec::with_defaults(name)
}

fn fifo_message(body: &str, group: &str) -> NewMessage {
    NewMessage {
        group_id: Some(group.to_owned()),
        deduplication_id: Some(body.to_owned()),
        ..NewMessage::new(body)
    }
}

fn bodies(received: &[ReceivedMessage]) -> Vec<&str> {
    received.iter().map(|msg| msg.body.as_str()).collect()
}

fn receive_all(store: &Store, queue: &str) -> Result<Vec<ReceivedMessage>, StoreError> {
    let mut all = Vec::new();
    loop {
        let batch = store.receive_messages(queue, 10, Some(Duration::from_secs(60)))?;
        if batch.is_empty() {
            return Ok(all);
        }
        all.extend(batch);
    }
}

const SHORT: Duration = Duration::from_millis(200);
const AFTER_SHORT: Duration = Duration::from_millis(300);

#[test]
fn send_receive_delete_round_trip() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("orders"))?;
    let mut msg = NewMessage::new("hello");
    msg.attributes
        .insert("kind".to_owned(), MessageAttribute::string("greeting"));
    let sent = store.send_message("orders", msg)?;
    assert_eq!(sent.md5_of_body, "5d41402abc4b2a76b9719d911017c592");
    assert!(sent.md5_of_message_attributes.is_some());
    assert_eq!(sent.sequence_number, None);
    assert!(!sent.duplicate);

    let received = store.receive_messages("orders", 10, None)?;
    assert_eq!(received.len(), 1);
    let msg = &received[0];
    assert_eq!(msg.message_id, sent.message_id);
    assert_eq!(msg.body, "hello");
    assert_eq!(msg.md5_of_body, sent.md5_of_body);
    assert_eq!(
        msg.md5_of_message_attributes,
        sent.md5_of_message_attributes
    );
    assert_eq!(msg.attributes["kind"], MessageAttribute::string("greeting"));
    assert_eq!(msg.receive_count, 1);
    assert!(msg.first_received_at >= msg.sent_at);
    assert_eq!(msg.group_id, None);

    // In flight: a second receive gets nothing.
    assert!(store.receive_messages("orders", 10, None)?.is_empty());
    store.delete_message("orders", &msg.receipt_handle)?;
    let stats = store.queue_stats("orders")?;
    assert_eq!(
        stats,
        QueueStats {
            visible: 0,
            in_flight: 0,
            delayed: 0,
            oldest_age: None
        }
    );
    // Deleting again succeeds and deletes nothing, as SQS answers a retried delete; a
    // handle that is not one nimbus makes is still refused.
    store.delete_message("orders", &msg.receipt_handle)?;
    let err = store.delete_message("orders", "not-a-handle").unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidReceiptHandle { .. }),
        "{err}"
    );
    Ok(())
}

#[test]
fn errors_name_what_was_wrong() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("plain"))?;
    store.ensure_queue(&spec("ordered.fifo"))?;
    let check = |res: Result<crate::SentMessage, StoreError>, expected: &str| {
        let err = res.expect_err(expected);
        assert!(err.is_client_error(), "{err}");
        assert!(
            err.to_string().contains(expected),
            "`{err}` lacks `{expected}`"
        );
    };
    check(
        store.send_message("nope", NewMessage::new("x")),
        "queue `nope` does not exist",
    );
    check(
        store.send_message("plain", NewMessage::new("x".repeat(262_145))),
        "message of 262145 bytes (body and attributes) is over the limit of 262144 bytes",
    );
    let mut with_attribute = NewMessage::new("x".repeat(262_140));
    with_attribute
        .attributes
        .insert("ab".to_owned(), MessageAttribute::string("cd"));
    check(
        store.send_message("plain", with_attribute),
        "message of 262150 bytes",
    );
    store.send_message("plain", NewMessage::new("x".repeat(262_144)))?;
    check(
        store.send_message("plain", NewMessage::new("")),
        "the body is empty",
    );
    check(
        store.send_message("plain", NewMessage::new("a\u{0}b")),
        "U+0000",
    );
    check(
        store.send_message("plain", fifo_message("x", "g")),
        "a message group id is for FIFO queues",
    );
    check(
        store.send_message(
            "plain",
            NewMessage {
                delay: Some(Duration::from_secs(901)),
                ..NewMessage::new("x")
            },
        ),
        "the delay is at most 900 seconds",
    );
    check(
        store.send_message("ordered.fifo", NewMessage::new("x")),
        "needs a message group id",
    );
    check(
        store.send_message(
            "ordered.fifo",
            NewMessage {
                group_id: Some("g".to_owned()),
                ..NewMessage::new("x")
            },
        ),
        "needs a deduplication id",
    );
    let mut bad_number = NewMessage::new("x");
    bad_number.attributes.insert(
        "n".to_owned(),
        MessageAttribute {
            data_type: "Number".to_owned(),
            value: "twelve".to_owned(),
        },
    );
    check(
        store.send_message("plain", bad_number),
        "`twelve` is not a number",
    );

    let err = store.receive_messages("plain", 11, None).unwrap_err();
    assert!(err.to_string().contains("1 to 10 messages"), "{err}");
    let err = store.delete_message("plain", "garbage").unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidReceiptHandle { .. }),
        "{err}"
    );
    let err = store.purge_queue("nope").unwrap_err();
    assert!(err.is_not_found(), "{err}");

    let mut bad = spec("bad");
    bad.content_based_deduplication = true;
    let err = store.ensure_queue(&bad).unwrap_err();
    assert!(err.to_string().contains("for FIFO queues"), "{err}");
    let mut bad = spec("bad.fifo");
    bad.redrive = Some(Redrive {
        dead_letter_queue: "plain".to_owned(),
        max_receive_count: 3,
    });
    let err = store.ensure_queue(&bad).unwrap_err();
    assert!(err.to_string().contains("must be a FIFO queue"), "{err}");
    let err = store.ensure_queue(&spec("has space")).unwrap_err();
    assert!(err.to_string().contains("only letters"), "{err}");
    Ok(())
}

#[test]
fn expired_visibility_timeout_makes_a_message_visible_again() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("q"))?;
    let sent = store.send_message("q", NewMessage::new("retry me"))?;
    let first = store.receive_messages("q", 1, Some(SHORT))?;
    assert_eq!(first.len(), 1);
    assert!(store.receive_messages("q", 1, Some(SHORT))?.is_empty());
    sleep(AFTER_SHORT);
    let second = store.receive_messages("q", 1, Some(SHORT))?;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].message_id, sent.message_id);
    assert_eq!(second[0].receive_count, 2);
    assert_eq!(second[0].first_received_at, first[0].first_received_at);
    assert_ne!(second[0].receipt_handle, first[0].receipt_handle);
    // Only the latest receipt handle deletes; an earlier one succeeds and deletes nothing.
    store.delete_message("q", &first[0].receipt_handle)?;
    assert_eq!(store.queue_stats("q")?.in_flight, 1);
    store.delete_message("q", &second[0].receipt_handle)?;
    assert!(receive_all(&store, "q")?.is_empty());
    Ok(())
}

#[test]
fn change_visibility_hides_or_releases_a_message() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("q"))?;
    store.send_message("q", NewMessage::new("a"))?;
    let received = store.receive_messages("q", 1, Some(SHORT))?;
    // Extend: still hidden after the original timeout.
    store.change_visibility("q", &received[0].receipt_handle, Duration::from_secs(60))?;
    sleep(AFTER_SHORT);
    assert!(store.receive_messages("q", 1, None)?.is_empty());
    // Release at once.
    store.change_visibility("q", &received[0].receipt_handle, Duration::ZERO)?;
    let again = store.receive_messages("q", 1, Some(SHORT))?;
    assert_eq!(bodies(&again), ["a"]);
    // The old handle is stale now; the new one's message stops being in flight after the timeout.
    let err = store
        .change_visibility("q", &received[0].receipt_handle, SHORT)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidReceiptHandle { .. }),
        "{err}"
    );
    sleep(AFTER_SHORT);
    let err = store
        .change_visibility("q", &again[0].receipt_handle, SHORT)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::MessageNotInFlight { .. }),
        "{err}"
    );
    let err = store
        .change_visibility(
            "q",
            &again[0].receipt_handle,
            Duration::from_secs(13 * 3600),
        )
        .unwrap_err();
    assert!(err.to_string().contains("at most 12 hours"), "{err}");

    let batch = store.receive_messages("q", 1, Some(Duration::from_secs(60)))?;
    let res = store.change_visibility_batch(
        "q",
        &[
            (batch[0].receipt_handle.clone(), Duration::ZERO),
            ("0000".to_owned(), Duration::ZERO),
        ],
    )?;
    assert!(res[0].is_ok());
    assert!(matches!(
        res[1],
        Err(StoreError::InvalidReceiptHandle { .. })
    ));
    assert_eq!(store.queue_stats("q")?.visible, 1);
    Ok(())
}

#[test]
fn message_moves_to_dead_letter_queue_after_max_receive_count() -> TestResult {
    let (_dir, store) = open()?;
    let mut source = spec("jobs");
    source.redrive = Some(Redrive {
        dead_letter_queue: "jobs-dlq".to_owned(),
        max_receive_count: 2,
    });
    // The source may be ensured before its dead-letter queue.
    store.ensure_queue(&source)?;
    store.ensure_queue(&spec("jobs-dlq"))?;
    let mut msg = NewMessage::new("poison");
    msg.attributes
        .insert("attempt".to_owned(), MessageAttribute::string("1"));
    let sent = store.send_message("jobs", msg)?;
    for receive_count in 1..=2 {
        let received = store.receive_messages("jobs", 10, Some(Duration::ZERO))?;
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].receive_count, receive_count);
    }
    // The third receive finds it at maxReceiveCount and moves it instead.
    assert!(store.receive_messages("jobs", 10, None)?.is_empty());
    assert_eq!(store.queue_stats("jobs")?.visible, 0);
    let dead = store.receive_messages("jobs-dlq", 10, None)?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, sent.message_id);
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].attributes["attempt"].value, "1");
    assert_eq!(dead[0].receive_count, 1);
    Ok(())
}

#[test]
fn missing_dead_letter_queue_keeps_delivering() -> TestResult {
    let (_dir, store) = open()?;
    let mut source = spec("jobs");
    source.redrive = Some(Redrive {
        dead_letter_queue: "never-declared".to_owned(),
        max_receive_count: 1,
    });
    store.ensure_queue(&source)?;
    store.send_message("jobs", NewMessage::new("x"))?;
    for receive_count in 1..=3 {
        let received = store.receive_messages("jobs", 1, Some(Duration::ZERO))?;
        assert_eq!(received[0].receive_count, receive_count);
    }
    Ok(())
}

#[test]
fn fifo_delivers_in_order_within_a_group_and_blocks_a_group_in_flight() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("orders.fifo"))?;
    for body in ["a1", "b1", "a2", "b2", "a3"] {
        let group = &body[..1];
        let sent = store.send_message("orders.fifo", fifo_message(body, group))?;
        assert!(sent.sequence_number.is_some());
    }
    // Several messages of a group in one receive, in order.
    let first = store.receive_messages("orders.fifo", 2, None)?;
    assert_eq!(bodies(&first), ["a1", "a2"]);
    assert_eq!(first[0].group_id.as_deref(), Some("a"));
    assert!(first[0].sequence_number < first[1].sequence_number);
    // Group a is blocked while a1 or a2 is in flight; group b is served.
    let second = store.receive_messages("orders.fifo", 10, None)?;
    assert_eq!(bodies(&second), ["b1", "b2"]);
    assert!(store.receive_messages("orders.fifo", 10, None)?.is_empty());
    store.delete_message("orders.fifo", &first[0].receipt_handle)?;
    assert!(store.receive_messages("orders.fifo", 10, None)?.is_empty());
    store.delete_message("orders.fifo", &first[1].receipt_handle)?;
    let third = store.receive_messages("orders.fifo", 10, Some(SHORT))?;
    assert_eq!(bodies(&third), ["a3"]);

    // A message whose visibility expires is redelivered before anything after it in its group.
    for body in ["c1", "c2"] {
        store.send_message("orders.fifo", fifo_message(body, "c"))?;
    }
    let c = store.receive_messages("orders.fifo", 1, Some(SHORT))?;
    assert_eq!(bodies(&c), ["c1"]);
    sleep(AFTER_SHORT);
    let again = store.receive_messages("orders.fifo", 10, Some(Duration::from_secs(60)))?;
    assert_eq!(bodies(&again), ["a3", "c1", "c2"]);
    assert_eq!(again[1].receive_count, 2);
    Ok(())
}

#[test]
fn fifo_group_with_a_released_head_stays_blocked_while_a_later_message_is_in_flight() -> TestResult
{
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("q.fifo"))?;
    for body in ["m1", "m2"] {
        store.send_message("q.fifo", fifo_message(body, "g"))?;
    }
    let received = store.receive_messages("q.fifo", 10, None)?;
    assert_eq!(bodies(&received), ["m1", "m2"]);
    store.change_visibility("q.fifo", &received[0].receipt_handle, Duration::ZERO)?;
    assert!(store.receive_messages("q.fifo", 10, None)?.is_empty());
    store.delete_message("q.fifo", &received[1].receipt_handle)?;
    assert_eq!(bodies(&store.receive_messages("q.fifo", 10, None)?), ["m1"]);
    Ok(())
}

#[test]
fn fifo_deduplicates_within_the_window() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("dedup.fifo"))?;
    let mut content_based = spec("content.fifo");
    content_based.content_based_deduplication = true;
    store.ensure_queue(&content_based)?;

    let first = store.send_message("dedup.fifo", fifo_message("x", "g"))?;
    let mut same_id = fifo_message("other body", "g");
    same_id.deduplication_id = Some("x".to_owned());
    let second = store.send_message("dedup.fifo", same_id)?;
    assert!(second.duplicate);
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.sequence_number, first.sequence_number);
    // Also after the first was received and deleted.
    let received = store.receive_messages("dedup.fifo", 10, None)?;
    assert_eq!(bodies(&received), ["x"]);
    assert_eq!(received[0].deduplication_id.as_deref(), Some("x"));
    store.delete_message("dedup.fifo", &received[0].receipt_handle)?;
    assert!(
        store
            .send_message("dedup.fifo", fifo_message("x", "g"))?
            .duplicate
    );
    assert!(store.receive_messages("dedup.fifo", 10, None)?.is_empty());

    let body_only = |body: &str| NewMessage {
        group_id: Some("g".to_owned()),
        ..NewMessage::new(body)
    };
    let a = store.send_message("content.fifo", body_only("same"))?;
    let b = store.send_message("content.fifo", body_only("same"))?;
    let c = store.send_message("content.fifo", body_only("different"))?;
    assert!(!a.duplicate && b.duplicate && !c.duplicate);
    let received = store.receive_messages("content.fifo", 10, None)?;
    assert_eq!(bodies(&received), ["same", "different"]);
    assert_eq!(
        received[0].deduplication_id.as_deref(),
        Some("0967115f2813a3541eaef77de9d9d5773f1c0c04314b0bbfe4ff3b3b1c55b5d5")
    );
    // Duplicates within one batch too.
    let sent = store.send_batch("content.fifo", vec![body_only("twice"), body_only("twice")])?;
    assert!(!sent[0].duplicate && sent[1].duplicate);
    Ok(())
}

#[test]
fn delayed_messages_wait_before_becoming_visible() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("q"))?;
    let mut delayed_queue = spec("slow");
    delayed_queue.delay = SHORT;
    store.ensure_queue(&delayed_queue)?;
    store.send_message(
        "q",
        NewMessage {
            delay: Some(SHORT),
            ..NewMessage::new("later")
        },
    )?;
    store.send_message("q", NewMessage::new("now"))?;
    store.send_message("slow", NewMessage::new("queue delay"))?;
    assert_eq!(store.queue_stats("q")?.delayed, 1);
    assert_eq!(bodies(&store.receive_messages("q", 10, None)?), ["now"]);
    assert!(store.receive_messages("slow", 10, None)?.is_empty());
    sleep(AFTER_SHORT);
    assert_eq!(bodies(&store.receive_messages("q", 10, None)?), ["later"]);
    assert_eq!(
        bodies(&store.receive_messages("slow", 10, None)?),
        ["queue delay"]
    );
    Ok(())
}

#[test]
fn purge_and_stats_count_messages_by_state() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("q"))?;
    for idx in 0..5 {
        store.send_message("q", NewMessage::new(format!("m{idx}")))?;
    }
    store.send_message(
        "q",
        NewMessage {
            delay: Some(Duration::from_secs(60)),
            ..NewMessage::new("delayed")
        },
    )?;
    store.receive_messages("q", 2, None)?;
    let stats = store.queue_stats("q")?;
    assert_eq!((stats.visible, stats.in_flight, stats.delayed), (3, 2, 1));
    assert!(stats.oldest_age.is_some());
    assert_eq!(store.purge_queue("q")?, 6);
    let stats = store.queue_stats("q")?;
    assert_eq!((stats.visible, stats.in_flight, stats.delayed), (0, 0, 0));
    assert_eq!(stats.oldest_age, None);
    Ok(())
}

#[test]
fn messages_past_retention_are_dropped() -> TestResult {
    let (_dir, store) = open()?;
    let mut short = spec("short");
    short.retention = Duration::from_secs(1);
    store.ensure_queue(&short)?;
    store.send_message("short", NewMessage::new("gone soon"))?;
    store.send_message("short", NewMessage::new("swept"))?;
    sleep(Duration::from_millis(1100));
    assert_eq!(store.queue_stats("short")?.visible, 0);
    assert_eq!(store.sweep_expired_messages()?, 2);
    store.send_message("short", NewMessage::new("fresh"))?;
    assert_eq!(
        bodies(&store.receive_messages("short", 10, None)?),
        ["fresh"]
    );
    Ok(())
}

#[test]
fn send_many_is_all_or_nothing() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("a"))?;
    store.ensure_queue(&spec("b"))?;
    let err = store
        .send_many(vec![
            ("a".to_owned(), NewMessage::new("1")),
            ("b".to_owned(), NewMessage::new("2")),
            ("missing".to_owned(), NewMessage::new("3")),
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownQueue { .. }), "{err}");
    assert_eq!(store.queue_stats("a")?.visible, 0);
    assert_eq!(store.queue_stats("b")?.visible, 0);
    let sent = store.send_many(vec![
        ("a".to_owned(), NewMessage::new("1")),
        ("b".to_owned(), NewMessage::new("2")),
        ("b".to_owned(), NewMessage::new("3")),
    ])?;
    assert_eq!(sent.len(), 3);
    assert_eq!(store.queue_stats("a")?.visible, 1);
    assert_eq!(store.queue_stats("b")?.visible, 2);
    Ok(())
}

#[test]
fn delete_batch_reports_each_handle() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("q"))?;
    store.send_batch(
        "q",
        (0..3)
            .map(|idx| NewMessage::new(format!("m{idx}")))
            .collect(),
    )?;
    let received = store.receive_messages("q", 10, None)?;
    let mut handles: Vec<String> = received
        .iter()
        .map(|msg| msg.receipt_handle.clone())
        .collect();
    handles.push(received[0].receipt_handle.clone());
    handles.push("bogus".to_owned());
    let res = store.delete_batch("q", &handles)?;
    // A handle used twice succeeds the second time too, as on SQS; a malformed one fails.
    assert!(res[..4].iter().all(Result::is_ok));
    assert!(matches!(
        res[4],
        Err(StoreError::InvalidReceiptHandle { .. })
    ));
    assert_eq!(store.queue_stats("q")?.in_flight, 0);
    let err = store.send_batch("q", Vec::new()).unwrap_err();
    assert!(err.to_string().contains("1 to 10 messages"), "{err}");
    Ok(())
}

#[test]
fn send_entries_sends_what_the_queue_accepts_in_one_transaction() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("q"))?;
    let too_long = NewMessage::new("x".repeat(crate::MAX_MESSAGE_BYTES + 1));
    let results = store.send_entries(
        "q",
        vec![NewMessage::new("one"), too_long, NewMessage::new("two")],
    )?;
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(
        matches!(results[1], Err(StoreError::MessageTooLarge { .. })),
        "{:?}",
        results[1]
    );
    let received = store.receive_messages("q", 10, None)?;
    assert_eq!(bodies(&received), ["one", "two"]);
    // A missing queue or a wrong count sends nothing.
    assert!(matches!(
        store.send_entries("nope", vec![NewMessage::new("x")]),
        Err(StoreError::UnknownQueue { .. })
    ));
    assert!(store.send_entries("q", Vec::new()).is_err());
    assert!(
        store
            .send_entries(
                "q",
                (0..11).map(|i| NewMessage::new(format!("{i}"))).collect()
            )
            .is_err()
    );
    assert_eq!(store.queue_stats("q")?.visible, 0);
    Ok(())
}

#[test]
fn ensure_queue_is_idempotent_and_updates_config() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("b"))?;
    store.ensure_queue(&spec("a"))?;
    store.send_message("a", NewMessage::new("kept"))?;
    let mut updated = spec("a");
    updated.visibility_timeout = SHORT;
    store.ensure_queue(&updated)?;
    assert_eq!(store.queue("a")?, Some(updated));
    assert_eq!(store.queue("zzz")?, None);
    assert_eq!(store.list_queues()?, ["a", "b"]);
    // The new default visibility timeout applies.
    store.receive_messages("a", 1, None)?;
    sleep(AFTER_SHORT);
    assert_eq!(bodies(&store.receive_messages("a", 1, None)?), ["kept"]);
    Ok(())
}

#[test]
fn reopened_store_keeps_queues_and_messages() -> TestResult {
    let dir = tempfile::tempdir()?;
    let in_flight = {
        let store = Store::open(dir.path())?;
        store.ensure_queue(&spec("q"))?;
        store.ensure_queue(&spec("q.fifo"))?;
        store.send_message("q", NewMessage::new("one"))?;
        store.send_message("q", NewMessage::new("two"))?;
        store.send_message("q.fifo", fifo_message("f", "g"))?;
        store.receive_messages("q", 1, Some(Duration::from_secs(60)))?
    };
    let store = Store::open(dir.path())?;
    assert_eq!(store.list_queues()?, ["q", "q.fifo"]);
    let stats = store.queue_stats("q")?;
    assert_eq!((stats.visible, stats.in_flight), (1, 1));
    store.delete_message("q", &in_flight[0].receipt_handle)?;
    assert_eq!(bodies(&receive_all(&store, "q")?), ["two"]);
    assert_eq!(bodies(&receive_all(&store, "q.fifo")?), ["f"]);
    // A duplicate is still recognised after the reopen.
    assert!(
        store
            .send_message("q.fifo", fifo_message("f", "g"))?
            .duplicate
    );
    Ok(())
}

#[test]
fn read_only_store_refuses_queue_writes() -> TestResult {
    let dir = tempfile::tempdir()?;
    Store::open(dir.path())?.ensure_queue(&spec("q"))?;
    let store = Store::open_read_only(dir.path())?;
    assert_eq!(store.list_queues()?, ["q"]);
    let err = store.send_message("q", NewMessage::new("x")).unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly), "{err}");
    Ok(())
}

/// The environment variable that turns `crash_helper_sends_until_killed` into the child of
/// `no_reported_message_is_lost_when_the_process_is_killed`: the state folder to send into.
const CRASH_DIR_ENV: &str = "NIMBUS_STORE_CRASH_TEST_DIR";

/// Not a test on its own: does nothing unless run as the child of the crash test, where it sends
/// messages one by one and prints the id of each once `send_message` has returned.
#[test]
fn crash_helper_sends_until_killed() -> TestResult {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return Ok(());
    };
    let store = Store::open(Path::new(&dir))?;
    for idx in 0..1_000_000 {
        let sent = store.send_batch(
            "crash",
            vec![
                NewMessage::new(format!("m{idx}a")),
                NewMessage::new(format!("m{idx}b")),
            ],
        )?;
        for msg in sent {
            println!("sent {}", msg.message_id);
        }
    }
    Ok(())
}

#[test]
fn no_reported_message_is_lost_when_the_process_is_killed() -> TestResult {
    const KILL_AFTER: usize = 2_000;
    let dir = tempfile::tempdir()?;
    Store::open(dir.path())?.ensure_queue(&spec("crash"))?;
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "queues::tests::crash_helper_sends_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut reported = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(id) = line.strip_prefix("sent ") {
            reported.push(id.to_owned());
            if reported.len() == KILL_AFTER {
                // SIGKILL, while the child is in the middle of sending.
                child.kill()?;
            }
        }
    }
    child.wait()?;
    assert!(
        reported.len() >= KILL_AFTER,
        "the child reported only {} messages",
        reported.len()
    );
    let store = Store::open(dir.path())?;
    let stored: HashSet<String> = receive_all(&store, "crash")?
        .into_iter()
        .map(|msg| msg.message_id)
        .collect();
    let lost: Vec<&String> = reported.iter().filter(|id| !stored.contains(*id)).collect();
    eprintln!(
        "crash test: {} messages reported sent before SIGKILL, {} found after reopening, {} lost",
        reported.len(),
        stored.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "lost {} messages, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    Ok(())
}

#[test]
fn throughput_of_batches_of_ten() -> TestResult {
    const N_MESSAGES: usize = 20_000;
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("bench"))?;
    let body = r#"{"order":12345,"items":["a","b","c"],"note":"a body of a typical size"}"#;
    let start = Instant::now();
    for _ in 0..N_MESSAGES / 10 {
        store.send_batch("bench", (0..10).map(|_| NewMessage::new(body)).collect())?;
    }
    let send_time = start.elapsed();
    let start = Instant::now();
    let mut n_received = 0;
    let mut receive_time = Duration::ZERO;
    let mut delete_time = Duration::ZERO;
    loop {
        let receive_start = Instant::now();
        let batch = store.receive_messages("bench", 10, None)?;
        receive_time += receive_start.elapsed();
        if batch.is_empty() {
            break;
        }
        n_received += batch.len();
        let handles: Vec<String> = batch.into_iter().map(|msg| msg.receipt_handle).collect();
        let delete_start = Instant::now();
        let res = store.delete_batch("bench", &handles)?;
        delete_time += delete_start.elapsed();
        assert!(res.iter().all(Result::is_ok));
    }
    let consume_time = start.elapsed();
    assert_eq!(n_received, N_MESSAGES);
    let rate = |n: usize, time: Duration| n as f64 / time.as_secs_f64();
    eprintln!(
        "queue throughput, {N_MESSAGES} messages in batches of 10: send {:.0}/s, receive {:.0}/s, \
         delete {:.0}/s, receive+delete {:.0}/s, send+receive+delete {:.0}/s",
        rate(N_MESSAGES, send_time),
        rate(N_MESSAGES, receive_time),
        rate(N_MESSAGES, delete_time),
        rate(N_MESSAGES, consume_time),
        rate(N_MESSAGES, send_time + consume_time),
    );
    Ok(())
}

#[test]
fn attributes_survive_with_their_types() -> TestResult {
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("q"))?;
    let attributes: BTreeMap<String, MessageAttribute> = [
        ("s", "String", "text"),
        ("n", "Number.int", "42"),
        ("b", "Binary", "AAEC"),
    ]
    .into_iter()
    .map(|(name, data_type, value)| {
        (
            name.to_owned(),
            MessageAttribute {
                data_type: data_type.to_owned(),
                value: value.to_owned(),
            },
        )
    })
    .collect();
    let sent = store.send_message(
        "q",
        NewMessage {
            attributes: attributes.clone(),
            ..NewMessage::new("x")
        },
    )?;
    let received = store.receive_messages("q", 1, None)?;
    assert_eq!(received[0].attributes, attributes);
    assert_eq!(
        received[0].md5_of_message_attributes,
        sent.md5_of_message_attributes
    );
    Ok(())
}

/// The `QueueStore` seam the server uses: the same semantics, errors of the same kinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_seam_keeps_sqs_semantics_and_error_kinds() -> TestResult {
    use nimbus_core::queues::{QueueError, QueueStore};
    let (_dir, store) = open()?;
    let queues: std::sync::Arc<dyn QueueStore> = std::sync::Arc::new(store);
    let res = queues
        .send_message("jobs".to_owned(), NewMessage::new("a"))
        .await;
    assert!(
        matches!(res, Err(QueueError::UnknownQueue { ref queue }) if queue == "jobs"),
        "{res:?}"
    );
    queues.ensure_queue(spec("jobs")).await?;
    assert_eq!(queues.list_queues().await?, ["jobs"]);
    assert_eq!(queues.queue("jobs".to_owned()).await?, Some(spec("jobs")));
    assert_eq!(queues.queue("nope".to_owned()).await?, None);
    let sent = queues
        .send_message("jobs".to_owned(), NewMessage::new("a"))
        .await?;
    let entries = queues
        .send_entries(
            "jobs".to_owned(),
            vec![NewMessage::new("b"), NewMessage::new("x".repeat(300_000))],
        )
        .await?;
    assert!(entries[0].is_ok());
    assert!(
        matches!(entries[1], Err(QueueError::MessageTooLarge { .. })),
        "{entries:?}"
    );
    let stats = queues.queue_stats("jobs".to_owned()).await?;
    assert_eq!((stats.visible, stats.in_flight), (2, 0));

    let received = queues
        .receive_messages("jobs".to_owned(), 10, Some(Duration::from_secs(30)))
        .await?;
    assert_eq!(bodies(&received), ["a", "b"]);
    assert_eq!(received[0].message_id, sent.message_id);
    // A visibility of 0 makes "a" visible again, with a new handle on its next receive.
    let handle_a = received[0].receipt_handle.clone();
    queues
        .change_visibility("jobs".to_owned(), handle_a, Duration::ZERO)
        .await?;
    let again = queues.receive_messages("jobs".to_owned(), 10, None).await?;
    assert_eq!(bodies(&again), ["a"]);
    assert_eq!(again[0].receive_count, 2);
    let res = queues
        .delete_message("jobs".to_owned(), "bogus".to_owned())
        .await;
    assert!(
        matches!(res, Err(QueueError::InvalidReceiptHandle { .. })),
        "{res:?}"
    );
    let deleted = queues
        .delete_batch(
            "jobs".to_owned(),
            vec![
                again[0].receipt_handle.clone(),
                received[1].receipt_handle.clone(),
                "bogus".to_owned(),
            ],
        )
        .await?;
    assert!(deleted[0].is_ok() && deleted[1].is_ok(), "{deleted:?}");
    assert!(matches!(
        deleted[2],
        Err(QueueError::InvalidReceiptHandle { .. })
    ));
    assert_eq!(
        queues.queue_stats("jobs".to_owned()).await?,
        QueueStats {
            visible: 0,
            in_flight: 0,
            delayed: 0,
            oldest_age: None
        }
    );
    queues
        .send_many(vec![
            ("jobs".to_owned(), NewMessage::new("c")),
            ("jobs".to_owned(), NewMessage::new("d")),
        ])
        .await?;
    assert_eq!(queues.purge_queue("jobs".to_owned()).await?, 2);
    let res = queues.receive_messages("jobs".to_owned(), 11, None).await;
    assert!(
        matches!(res, Err(QueueError::InvalidParameter { .. })),
        "{res:?}"
    );
    queues.delete_queue("jobs".to_owned()).await?;
    assert!(queues.list_queues().await?.is_empty());
    // Errors that are the store's own stay the platform's, with their causes.
    let store_error = StoreError::from(QueueError::UnknownQueue {
        queue: "x".to_owned(),
    });
    assert!(store_error.is_not_found() && store_error.is_client_error());
    assert!(!QueueError::from(StoreError::WriterStopped).is_client());
    Ok(())
}

/// The store-level rate of send + receive + delete in batches of 10, called directly and
/// through the `QueueStore` seam (each call on tokio's blocking pool, as the server does):
/// `cargo test --release -p nimbus-store -- --nocapture seam_throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seam_throughput_of_batches_of_ten() -> TestResult {
    use nimbus_core::queues::QueueStore;
    const N_MESSAGES: usize = 10_000;
    let body = r#"{"order":12345,"items":["a","b","c"],"note":"a body of a typical size"}"#;
    let (_dir, store) = open()?;
    store.ensure_queue(&spec("direct"))?;
    store.ensure_queue(&spec("seam"))?;
    let direct = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || -> Result<Duration, StoreError> {
            let start = Instant::now();
            for _ in 0..N_MESSAGES / 10 {
                store.send_batch("direct", (0..10).map(|_| NewMessage::new(body)).collect())?;
            }
            loop {
                let batch = store.receive_messages("direct", 10, None)?;
                if batch.is_empty() {
                    break;
                }
                let handles: Vec<String> = batch.into_iter().map(|m| m.receipt_handle).collect();
                store.delete_batch("direct", &handles)?;
            }
            Ok(start.elapsed())
        })
        .await??
    };
    let queues: std::sync::Arc<dyn QueueStore> = std::sync::Arc::new(store);
    let start = Instant::now();
    for _ in 0..N_MESSAGES / 10 {
        let messages = (0..10).map(|_| NewMessage::new(body)).collect();
        let sent = queues.send_entries("seam".to_owned(), messages).await?;
        assert!(sent.iter().all(Result::is_ok));
    }
    let mut n_received = 0;
    loop {
        let batch = queues.receive_messages("seam".to_owned(), 10, None).await?;
        if batch.is_empty() {
            break;
        }
        n_received += batch.len();
        let handles = batch.into_iter().map(|m| m.receipt_handle).collect();
        queues.delete_batch("seam".to_owned(), handles).await?;
    }
    let seam = start.elapsed();
    assert_eq!(n_received, N_MESSAGES);
    let rate = |time: Duration| N_MESSAGES as f64 / time.as_secs_f64();
    eprintln!(
        "queue send+receive+delete, {N_MESSAGES} messages in batches of 10: direct {:.0}/s, \
         through the seam {:.0}/s",
        rate(direct),
        rate(seam)
    );
    Ok(())
}
