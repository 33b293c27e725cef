//! The JetStream queues against a real nats-server (Debian's `nats-server`; .ci/run installs
//! it): the SQS semantics the embedded store's tests check, through `QueueStore`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nimbus_core::events::{QueueSpec, Redrive};
use nimbus_core::queues::{NewMessage, QueueError, QueueStore};

use crate::Cluster;

/// A nats-server with JetStream on a random loopback port, killed on drop.
pub(crate) struct NatsServer {
    child: Child,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    pub(crate) fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("a temp dir");
        let binary = ["nats-server", "/usr/sbin/nats-server"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect(
                "nats-server is not installed: the cluster tests need it \
                 (`apt-get install nats-server`; .ci/run installs it)",
            );
        let mut child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
            .arg(dir.path().join("js"))
            .arg("--ports_file_dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server");
        let Some(url) = wait_for_port(dir.path(), child.id()) else {
            child.kill().ok();
            child.wait().ok();
            panic!("nats-server did not start in 10 s");
        };
        NatsServer {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nats-server writes its client URL to `nats-server_<pid>.ports` once it listens.
fn wait_for_port(dir: &Path, pid: u32) -> Option<String> {
    let file = dir.join(format!("nats-server_{pid}.ports"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = ports["nats"][0].as_str()
        {
            return Some(url.to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn message(body: &str) -> NewMessage {
    NewMessage {
        body: body.to_owned(),
        delay: None,
        attributes: Default::default(),
        group_id: None,
        deduplication_id: None,
    }
}

fn spec(name: &str, visibility: Duration) -> QueueSpec {
    let mut spec = QueueSpec::with_defaults(name);
    spec.visibility_timeout = visibility;
    spec
}

#[tokio::test]
async fn two_nodes_share_a_queue_with_sqs_semantics() {
    let nats = NatsServer::start();
    let a = Cluster::connect(&nats.url).await.expect("node a connects");
    let b = Cluster::connect(&nats.url).await.expect("node b connects");
    let (qa, qb) = (a.queues("shop-dev"), b.queues("shop-dev"));
    qa.ensure_queue(spec("orders", Duration::from_secs(1)))
        .await
        .expect("queue");

    // Sent through a, received through b, deleted through a with b's handle.
    let sent = qa
        .send_message("orders".to_owned(), message("one"))
        .await
        .expect("send");
    assert_eq!(sent.md5_of_body, "f97c5d29941bfb1b2fdab0874906ab82");
    let got = qb
        .receive_messages("orders".to_owned(), 10, None)
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, sent.message_id);
    assert_eq!((got[0].body.as_str(), got[0].receive_count), ("one", 1));
    assert!(
        qa.receive_messages("orders".to_owned(), 10, None)
            .await
            .expect("receive")
            .is_empty(),
        "a message in flight is not received again"
    );
    qa.delete_message("orders".to_owned(), got[0].receipt_handle.clone())
        .await
        .expect("delete through the other node");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        qb.receive_messages("orders".to_owned(), 10, None)
            .await
            .expect("receive")
            .is_empty(),
        "a deleted message does not come back"
    );

    // Not deleted: visible again after the visibility timeout, with its receive count.
    qa.send_message("orders".to_owned(), message("two"))
        .await
        .expect("send");
    let first = qb
        .receive_messages("orders".to_owned(), 1, None)
        .await
        .expect("receive");
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let again = qa
        .receive_messages("orders".to_owned(), 1, None)
        .await
        .expect("receive");
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].message_id.as_str(), again[0].receive_count),
        (first[0].message_id.as_str(), 2)
    );
    // A visibility change to 0 makes it receivable at once.
    qa.change_visibility(
        "orders".to_owned(),
        again[0].receipt_handle.clone(),
        Duration::ZERO,
    )
    .await
    .expect("change visibility");
    let third = poll(&qb, "orders", 1).await;
    assert_eq!(third[0].receive_count, 3);
    let stats = qa.queue_stats("orders".to_owned()).await.expect("stats");
    assert_eq!((stats.visible, stats.in_flight), (0, 1));

    // Handles of other queues and made-up ones are refused; an unknown queue is named.
    let bad = qa
        .delete_message("orders".to_owned(), "$JS.ACK.other.x.1.1.1.1.1".to_owned())
        .await;
    assert!(
        matches!(bad, Err(QueueError::InvalidReceiptHandle { .. })),
        "{bad:?}"
    );
    let unknown = qa.send_message("nope".to_owned(), message("x")).await;
    assert!(
        matches!(unknown, Err(QueueError::UnknownQueue { ref queue }) if queue == "nope"),
        "{unknown:?}"
    );
    // A queue another node made is known from its stream.
    assert_eq!(
        b.queues("shop-dev").list_queues().await.expect("list"),
        vec!["orders".to_owned()]
    );
    assert!(
        a.queues("other-app")
            .list_queues()
            .await
            .expect("list")
            .is_empty(),
        "apps do not see each other's queues"
    );
    assert_eq!(qa.purge_queue("orders".to_owned()).await.expect("purge"), 1);
    qa.delete_queue("orders".to_owned()).await.expect("delete");
    assert!(
        b.queues("shop-dev")
            .queue("orders".to_owned())
            .await
            .expect("queue")
            .is_none()
    );
}

#[tokio::test]
async fn redrive_delay_fifo_deduplication_and_checks() {
    let nats = NatsServer::start();
    let cluster = Cluster::connect(&nats.url).await.expect("connects");
    let queues = cluster.queues("app");
    queues
        .ensure_queue(spec("dead", Duration::from_secs(30)))
        .await
        .expect("dlq");
    let mut work = spec("work", Duration::from_millis(300));
    work.redrive = Some(Redrive {
        dead_letter_queue: "dead".to_owned(),
        max_receive_count: 2,
    });
    queues.ensure_queue(work).await.expect("queue");
    let sent = queues
        .send_message("work".to_owned(), message("poison"))
        .await
        .expect("send");
    for receive in 1..=2 {
        let got = poll(&queues, "work", 1).await;
        assert_eq!(got[0].receive_count, receive);
    }
    // The third receive moves it instead.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        queues
            .receive_messages("work".to_owned(), 10, None)
            .await
            .expect("receive")
            .is_empty()
    );
    let dead = poll(&queues, "dead", 10).await;
    assert_eq!(
        (dead[0].message_id.as_str(), dead[0].body.as_str()),
        (sent.message_id.as_str(), "poison")
    );

    // A delayed message is held back until its time.
    let mut delayed = message("later");
    delayed.delay = Some(Duration::from_secs(1));
    let started = Instant::now();
    queues
        .send_message("work".to_owned(), delayed)
        .await
        .expect("send");
    assert!(
        queues
            .receive_messages("work".to_owned(), 10, None)
            .await
            .expect("receive")
            .is_empty()
    );
    let got = poll(&queues, "work", 1).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!((got[0].body.as_str(), got[0].receive_count), ("later", 1));

    // FIFO: deduplicated by id (answering the first message's id), in order.
    queues
        .ensure_queue(spec("jobs.fifo", Duration::from_secs(30)))
        .await
        .expect("fifo");
    let fifo = |body: &str, dedup: &str| {
        let mut m = message(body);
        m.group_id = Some("g".to_owned());
        m.deduplication_id = Some(dedup.to_owned());
        m
    };
    let first = queues
        .send_message("jobs.fifo".to_owned(), fifo("a", "1"))
        .await
        .expect("send");
    let repeat = queues
        .send_message("jobs.fifo".to_owned(), fifo("a again", "1"))
        .await
        .expect("send");
    assert!(repeat.duplicate);
    assert_eq!(repeat.message_id, first.message_id);
    queues
        .send_message("jobs.fifo".to_owned(), fifo("b", "2"))
        .await
        .expect("send");
    let one = poll(&queues, "jobs.fifo", 10).await;
    assert_eq!(
        one.len(),
        1,
        "one message of a FIFO queue in flight at a time"
    );
    assert_eq!(one[0].body, "a");
    assert_eq!(one[0].group_id.as_deref(), Some("g"));
    queues
        .delete_message("jobs.fifo".to_owned(), one[0].receipt_handle.clone())
        .await
        .expect("delete");
    let two = poll(&queues, "jobs.fifo", 10).await;
    assert_eq!(two[0].body, "b");
    assert!(two[0].sequence_number > one[0].sequence_number);

    // The embedded store's checks, with its errors.
    let missing_group = queues
        .send_message("jobs.fifo".to_owned(), message("x"))
        .await;
    assert!(
        matches!(missing_group, Err(QueueError::MissingGroupId { .. })),
        "{missing_group:?}"
    );
    let bad = queues.ensure_queue(spec("bad name!", Duration::ZERO)).await;
    assert!(
        matches!(bad, Err(QueueError::InvalidQueue { .. })),
        "{bad:?}"
    );
    let empty = queues.send_message("work".to_owned(), message("")).await;
    assert!(
        matches!(empty, Err(QueueError::InvalidMessage { .. })),
        "{empty:?}"
    );
}

/// A schedule's slot fired by every node is enqueued once: the slot's key is JetStream's
/// deduplication id.
#[tokio::test]
async fn a_slot_sent_once_by_each_of_three_nodes_is_enqueued_once() {
    let nats = NatsServer::start();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let cluster = Cluster::connect(&nats.url).await.expect("connects");
        nodes.push(cluster.queues("app"));
    }
    nodes[0]
        .ensure_queue(spec("fires", Duration::from_secs(30)))
        .await
        .expect("queue");
    for slot in ["schedule:tick:60000000", "schedule:tick:120000000"] {
        let mut ids = Vec::new();
        for node in &nodes {
            let sent = node
                .send_once("fires".to_owned(), message(slot), slot.to_owned())
                .await
                .expect("send");
            ids.push((sent.message_id, sent.duplicate));
        }
        assert!(!ids[0].1 && ids[1].1 && ids[2].1, "{ids:?}");
        assert!(ids.iter().all(|(id, _)| *id == ids[0].0), "{ids:?}");
    }
    let got = poll(&nodes[1], "fires", 10).await;
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(
        bodies,
        ["schedule:tick:60000000", "schedule:tick:120000000"]
    );
}

#[tokio::test]
async fn an_unreachable_url_is_one_clear_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let err = Cluster::connect(&url).await.err().expect("no NATS there");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot reach NATS at {url}")),
        "{text}"
    );
    let bad = Cluster::connect("http://[").await.err().expect("not a URL");
    assert!(bad.to_string().contains("is not a NATS URL"), "{bad}");
}

/// Receives until something comes (within 5 s).
async fn poll(
    queues: &dyn QueueStore,
    queue: &str,
    max: usize,
) -> Vec<nimbus_core::queues::ReceivedMessage> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = queues
            .receive_messages(queue.to_owned(), max, None)
            .await
            .expect("receive");
        if !got.is_empty() {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "nothing received from {queue} in 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The queue path's own rate, without a function or HTTP in the way: concurrent senders
/// (batches of 10, as SendMessageBatch) and consumers (receive 10, delete the batch, as an
/// SQS event source mapping), through JetStream and through the embedded store in the same
/// run. Prints msg/s for sends, for send+consume together, and for consumers draining a
/// backlog: `cargo test --release -p nimbus-nats -- --nocapture queue_path_throughput`
/// (N_MESSAGES=… to change the count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_path_throughput() {
    let n_messages: usize = std::env::var("N_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4_000);
    let nats = NatsServer::start();
    let cluster = Cluster::connect(&nats.url).await.expect("connects");
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = nimbus_store::Store::open(dir.path()).expect("a store");
    let backends: [(&str, std::sync::Arc<dyn QueueStore>); 2] = [
        ("embedded", std::sync::Arc::new(store)),
        ("jetstream", std::sync::Arc::new(cluster.queues("bench"))),
    ];
    for (name, queues) in backends {
        for (queue, mode) in [("live", Mode::Live), ("backlog", Mode::Backlog)] {
            queues
                .ensure_queue(spec(queue, Duration::from_secs(30)))
                .await
                .expect("queue");
            let rates = queue_rates(queues.clone(), queue, n_messages, mode).await;
            eprintln!(
                "{name:9} {queue:7}: {n_messages} messages, 16 senders of batches of 10, \
                 4 consumers of 10: sends {:.0} msg/s, {} {:.0} msg/s",
                rates.0,
                if mode == Mode::Live {
                    "send+consume"
                } else {
                    "backlog drain"
                },
                rates.1
            );
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Consumers run while the senders send; the clock stops when all are consumed.
    Live,
    /// Consumers start once everything is sent.
    Backlog,
}

/// (send rate, consume rate) in msg/s.
async fn queue_rates(
    queues: std::sync::Arc<dyn QueueStore>,
    queue: &str,
    n_messages: usize,
    mode: Mode,
) -> (f64, f64) {
    const N_SENDERS: usize = 16;
    const N_CONSUMERS: usize = 4;
    let body = r#"{"order":12345,"items":["a","b","c"],"note":"a body of a typical size"}"#;
    let consumed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let consumers = |queues: std::sync::Arc<dyn QueueStore>| {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..N_CONSUMERS {
            let (queues, consumed, queue) = (queues.clone(), consumed.clone(), queue.to_owned());
            tasks.spawn(async move {
                while consumed.load(std::sync::atomic::Ordering::Relaxed) < n_messages {
                    let batch = queues
                        .receive_messages(queue.clone(), 10, None)
                        .await
                        .expect("receive");
                    if batch.is_empty() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    consumed.fetch_add(batch.len(), std::sync::atomic::Ordering::Relaxed);
                    let handles = batch.into_iter().map(|m| m.receipt_handle).collect();
                    let res = queues
                        .delete_batch(queue.clone(), handles)
                        .await
                        .expect("delete");
                    assert!(res.iter().all(Result::is_ok), "{res:?}");
                }
            });
        }
        tasks
    };
    let start = Instant::now();
    let mut consuming = (mode == Mode::Live).then(|| consumers(queues.clone()));
    let mut senders = tokio::task::JoinSet::new();
    for sender_idx in 0..N_SENDERS {
        let (queues, queue) = (queues.clone(), queue.to_owned());
        senders.spawn(async move {
            let mut batch_idx = sender_idx;
            while batch_idx * 10 < n_messages {
                let messages = (0..10).map(|_| message(body)).collect();
                let sent = queues
                    .send_entries(queue.clone(), messages)
                    .await
                    .expect("send");
                assert!(sent.iter().all(Result::is_ok));
                batch_idx += N_SENDERS;
            }
        });
    }
    senders.join_all().await;
    let sent_in = start.elapsed();
    let consume_start = match mode {
        Mode::Live => start,
        Mode::Backlog => {
            consuming = Some(consumers(queues.clone()));
            Instant::now()
        }
    };
    consuming.expect("consumers started").join_all().await;
    let consumed_in = consume_start.elapsed();
    let rate = |time: Duration| n_messages as f64 / time.as_secs_f64();
    (rate(sent_in), rate(consumed_in))
}
