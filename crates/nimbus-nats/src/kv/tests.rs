//! The JetStream KV namespaces against a real nats-server: what one node writes another
//! reads, with Workers KV's expiration, metadata, listing and limits, as the embedded
//! store's tests check them.

use std::time::{Duration, SystemTime};

use nimbus_core::kv::{KvError, KvListQuery, KvPut, KvStore};

use crate::Cluster;
use crate::queues::tests::NatsServer;

fn put(value: &str) -> KvPut {
    KvPut {
        value: value.as_bytes().to_vec(),
        expiration: None,
        metadata: None,
    }
}

fn query(prefix: &str, cursor: Option<String>, limit: usize) -> KvListQuery {
    KvListQuery {
        prefix: Some(prefix.to_owned()),
        cursor,
        limit,
    }
}

fn s(text: &str) -> String {
    text.to_owned()
}

#[tokio::test]
async fn what_one_node_writes_another_reads_lists_and_deletes() {
    let nats = NatsServer::start();
    let a = Cluster::connect(&nats.url).await.expect("node a connects");
    let b = Cluster::connect(&nats.url).await.expect("node b connects");
    let (kv_a, kv_b, other_app) = (a.kv("shop-dev"), b.kv("shop-dev"), b.kv("blog-dev"));
    // Through the seam the server calls.
    let (kv_a, kv_b, other_app): (&dyn KvStore, &dyn KvStore, &dyn KvStore) =
        (&kv_a, &kv_b, &other_app);

    let with_metadata = KvPut {
        metadata: Some(s(r#"{"v":1}"#)),
        ..put("alice")
    };
    kv_a.put(s("sessions"), s("user:1"), with_metadata)
        .await
        .expect("put");
    let read = kv_b.get(s("sessions"), s("user:1")).await.expect("get");
    let read = read.expect("node b sees node a's key");
    assert_eq!(read.value, b"alice");
    assert_eq!(read.metadata.as_deref(), Some(r#"{"v":1}"#));
    assert_eq!(
        other_app.get(s("sessions"), s("user:1")).await,
        Ok(None),
        "apps do not share namespaces"
    );
    assert_eq!(kv_b.get(s("other"), s("user:1")).await, Ok(None));

    // Keys with any bytes, listed in key order by prefix and cursor.
    for key in ["user:2", "user:10", "user:3", "admin:1", "user.x y/ü"] {
        kv_b.put(s("sessions"), s(key), put("v"))
            .await
            .expect("put");
    }
    let first = kv_a
        .list(s("sessions"), query("user:", None, 2))
        .await
        .expect("list");
    let names = |page: &nimbus_core::kv::KvPage| -> Vec<String> {
        page.keys.iter().map(|k| k.name.clone()).collect()
    };
    assert_eq!(names(&first), ["user:1", "user:10"]);
    assert!(!first.list_complete);
    assert_eq!(first.keys[0].metadata.as_deref(), Some(r#"{"v":1}"#));
    let second = kv_a
        .list(s("sessions"), query("user:", first.cursor.clone(), 2))
        .await
        .expect("second page");
    assert_eq!(names(&second), ["user:2", "user:3"]);
    let all = kv_a
        .list(s("sessions"), KvListQuery::default())
        .await
        .expect("all");
    assert_eq!(
        names(&all),
        [
            "admin:1",
            "user.x y/ü",
            "user:1",
            "user:10",
            "user:2",
            "user:3"
        ]
    );
    assert!(all.list_complete);

    // Overwrite, then delete: gone for both nodes.
    kv_b.put(s("sessions"), s("user:1"), put("bob"))
        .await
        .expect("overwrite");
    let read = kv_a.get(s("sessions"), s("user:1")).await.expect("get");
    assert_eq!(read.map(|v| v.value), Some(b"bob".to_vec()));
    assert_eq!(kv_a.delete(s("sessions"), s("user:1")).await, Ok(true));
    assert_eq!(kv_b.delete(s("sessions"), s("user:1")).await, Ok(false));
    assert_eq!(kv_b.get(s("sessions"), s("user:1")).await, Ok(None));
}

#[tokio::test]
async fn expired_keys_read_absent_and_bad_input_is_refused_with_the_embedded_rules() {
    let nats = NatsServer::start();
    let cluster = Cluster::connect(&nats.url).await.expect("connects");
    let kv = cluster.kv("shop-dev");
    let kv: &dyn KvStore = &kv;
    let soon = KvPut {
        expiration: Some(SystemTime::now() + Duration::from_millis(1500)),
        ..put("short-lived")
    };
    kv.put(s("cache"), s("soon"), soon).await.expect("put");
    kv.put(s("cache"), s("kept"), put("v")).await.expect("put");
    let read = kv.get(s("cache"), s("soon")).await.expect("get");
    assert!(read.and_then(|v| v.expiration).is_some());
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(kv.get(s("cache"), s("soon")).await, Ok(None));
    let listed = kv
        .list(s("cache"), KvListQuery::default())
        .await
        .expect("list");
    assert_eq!(listed.keys.len(), 1, "{listed:?}");

    let refused = |res: Result<(), KvError>| match res {
        Err(e) => {
            assert!(e.is_client_error(), "{e}");
            e.to_string()
        }
        Ok(()) => panic!("accepted"),
    };
    assert!(refused(kv.put(s("cache"), s(".."), put("v")).await).contains("cannot be"));
    let not_json = KvPut {
        metadata: Some(s("{")),
        ..put("v")
    };
    assert!(refused(kv.put(s("cache"), s("k"), not_json).await).contains("JSON"));
    let too_big = KvPut {
        value: vec![0; 2 * 1024 * 1024],
        ..put("")
    };
    let message = refused(kv.put(s("cache"), s("big"), too_big).await);
    assert!(message.contains("max_payload"), "{message}");
    assert_eq!(kv.get(s("cache"), s("big")).await, Ok(None));
    let bad_cursor = kv.list(s("cache"), query("", Some(s("zz")), 10)).await;
    assert!(matches!(bad_cursor, Err(KvError::InvalidCursor { .. })));
}
