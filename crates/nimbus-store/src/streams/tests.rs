//! Tests of streams through the `StreamStore` trait, and of the change records table
//! writes append, on temporary state folders.

use nimbus_core::streams::{
    NewRecord, ReadFrom, StreamError, StreamKind, StreamSpec, StreamStore, table_stream,
};
use nimbus_core::tables::{
    AttributeValue, Item, ItemWrite, KeyAttribute, ScalarType, TableError, TableSpec, TableStore,
    WriteAction, WriteOrigin,
};
use serde_json::Value as Json;

use crate::Store;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn open() -> Result<(tempfile::TempDir, Store), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    Ok((dir, store))
}

fn record(key: &str, data: &str) -> NewRecord {
    NewRecord {
        partition_key: key.to_owned(),
        data: data.as_bytes().to_vec(),
    }
}

fn read_all(store: &Store, stream: &str, shard: u32) -> Result<Vec<(u64, String)>, StreamError> {
    let records = store.read_shard(stream, shard, ReadFrom::After(0), 10_000)?;
    Ok(records
        .into_iter()
        .map(|r| (r.seq, String::from_utf8_lossy(&r.data).into_owned()))
        .collect())
}

#[test]
fn records_of_one_key_stay_in_one_shard_in_order() -> TestResult {
    let (_dir, store) = open()?;
    store.create_stream(&StreamSpec::data("clicks", 4))?;
    let mut records = Vec::new();
    for i in 0..200 {
        records.push(record(&format!("user-{}", i % 10), &format!("{i}")));
    }
    let appended = store.append("clicks", &records)?;
    assert_eq!(appended.len(), 200);
    // Sequence numbers grow through the stream, in the order given.
    assert!(appended.windows(2).all(|w| w[0].seq < w[1].seq));
    // Every record of a key went to the same shard.
    for i in 0..10 {
        let shards: Vec<u32> = appended
            .iter()
            .skip(i)
            .step_by(10)
            .map(|a| a.shard)
            .collect();
        assert!(
            shards.iter().all(|s| *s == shards[0]),
            "key {i}: {shards:?}"
        );
    }
    // Ten keys spread over more than one of four shards.
    let mut used: Vec<u32> = appended.iter().map(|a| a.shard).collect();
    used.sort();
    used.dedup();
    assert!(used.len() > 1, "{used:?}");
    let mut n_read = 0;
    for shard in 0..4 {
        let read = read_all(&store, "clicks", shard)?;
        assert!(read.windows(2).all(|w| w[0].0 < w[1].0));
        n_read += read.len();
    }
    assert_eq!(n_read, 200);
    Ok(())
}

#[test]
fn reads_resume_after_a_sequence_number_and_checkpoints_persist() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let store = Store::open(dir.path())?;
        store.create_stream(&StreamSpec::data("s", 1))?;
        store.append("s", &[record("k", "a"), record("k", "b"), record("k", "c")])?;
        let first = store.read_shard("s", 0, ReadFrom::After(0), 2)?;
        assert_eq!(first.len(), 2);
        assert_eq!(store.checkpoint("fn", "s", 0, 0)?, None);
        store.set_checkpoint("fn", "s", 0, 0, first[1].seq)?;
        assert_eq!(store.last_seq("s", 0)?, 3);
    }
    let store = Store::open(dir.path())?;
    let seq = store
        .checkpoint("fn", "s", 0, 0)?
        .ok_or("checkpoint lost")?;
    let rest = store.read_shard("s", 0, ReadFrom::After(seq), 10)?;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].data, b"c");
    assert!(matches!(
        store.read_shard("s", 1, ReadFrom::After(0), 1),
        Err(StreamError::NotFound(_))
    ));
    assert!(matches!(
        store.append("missing", &[record("k", "a")]),
        Err(StreamError::NotFound(_))
    ));
    assert!(matches!(
        store.create_stream(&StreamSpec::data("s", 1)),
        Err(StreamError::InUse(_))
    ));
    assert!(matches!(
        store.create_stream(&StreamSpec::data("big", 1000)),
        Err(StreamError::Validation(_))
    ));
    Ok(())
}

#[test]
fn trim_removes_records_past_retention_only() -> TestResult {
    let (_dir, store) = open()?;
    let mut spec = StreamSpec::data("s", 1);
    spec.retention = std::time::Duration::from_secs(60);
    store.create_stream(&spec)?;
    store.append("s", &[record("k", "a")])?;
    let arrival = store.read_shard("s", 0, ReadFrom::After(0), 1)?[0].arrival_us;
    assert_eq!(store.trim(arrival + 59_000_000)?, 0);
    assert_eq!(store.trim(arrival + 61_000_000)?, 1);
    // The counter survives trimming: the next record does not reuse a number.
    assert_eq!(store.last_seq("s", 0)?, 1);
    let appended = store.append("s", &[record("k", "b")])?;
    assert_eq!(appended[0].seq, 2);
    Ok(())
}

fn table(view: &str) -> TableSpec {
    TableSpec {
        name: "stock".to_owned(),
        partition_key: KeyAttribute {
            name: "id".to_owned(),
            kind: ScalarType::S,
        },
        sort_key: None,
        global_indexes: Vec::new(),
        local_indexes: Vec::new(),
        ttl_attribute: None,
        stream_view: Some(view.to_owned()),
    }
}

fn item(id: &str, qty: &str) -> Item {
    Item::from([
        ("id".to_owned(), AttributeValue::S(id.to_owned())),
        ("qty".to_owned(), AttributeValue::S(qty.to_owned())),
    ])
}

fn write(
    store: &Store,
    id: &str,
    action: WriteAction,
    origin: WriteOrigin,
) -> Result<(), TableError> {
    store.write_items(vec![ItemWrite {
        table: "stock".to_owned(),
        key: Item::from([("id".to_owned(), AttributeValue::S(id.to_owned()))]),
        origin,
        decide: Box::new(move |_| Ok(action)),
    }])?;
    Ok(())
}

fn changes(store: &Store) -> Result<Vec<Json>, Box<dyn std::error::Error>> {
    let stream = table_stream("stock");
    let mut all = Vec::new();
    for shard in 0..store.describe_stream(&stream)?.spec.shards {
        for r in store.read_shard(&stream, shard, ReadFrom::After(0), 100)? {
            all.push((r.seq, serde_json::from_slice::<Json>(&r.data)?));
        }
    }
    all.sort_by_key(|(seq, _)| *seq);
    Ok(all.into_iter().map(|(_, json)| json).collect())
}

#[test]
fn table_writes_append_change_records_in_order() -> TestResult {
    let (_dir, store) = open()?;
    store.create_table(&table("NEW_AND_OLD_IMAGES"))?;
    let description = store.describe_stream(&table_stream("stock"))?;
    assert_eq!(description.spec.kind, StreamKind::Table);
    let request = WriteOrigin::Request;
    write(&store, "a", WriteAction::Put(item("a", "1")), request)?;
    write(&store, "a", WriteAction::Put(item("a", "2")), request)?;
    // Unchanged: no record.
    write(&store, "a", WriteAction::Put(item("a", "2")), request)?;
    write(&store, "a", WriteAction::Keep, request)?;
    // A refused write: no record.
    let refused = store.write_items(vec![ItemWrite {
        table: "stock".to_owned(),
        key: Item::from([("id".to_owned(), AttributeValue::S("a".to_owned()))]),
        origin: request,
        decide: Box::new(|_| Err(TableError::ConditionFailed(None))),
    }]);
    assert!(refused.is_err());
    write(&store, "a", WriteAction::Delete, WriteOrigin::TimeToLive)?;
    // Deleting an absent item: no record.
    write(&store, "b", WriteAction::Delete, request)?;
    let records = changes(&store)?;
    let summary: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} new={} old={} by={}",
                r["eventName"].as_str().unwrap_or("?"),
                r["NewImage"]["qty"]["S"].as_str().unwrap_or("-"),
                r["OldImage"]["qty"]["S"].as_str().unwrap_or("-"),
                r["userIdentity"]["principalId"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "INSERT new=1 old=- by=-",
            "MODIFY new=2 old=1 by=-",
            "REMOVE new=- old=2 by=dynamodb.amazonaws.com",
        ]
    );
    assert_eq!(records[0]["Keys"]["id"]["S"], "a");
    assert_eq!(records[0]["StreamViewType"], "NEW_AND_OLD_IMAGES");
    Ok(())
}

#[test]
fn the_view_type_decides_which_images_a_record_holds() -> TestResult {
    for (view, has_new, has_old) in [
        ("KEYS_ONLY", false, false),
        ("NEW_IMAGE", true, false),
        ("OLD_IMAGE", false, true),
    ] {
        let (_dir, store) = open()?;
        store.create_table(&table(view))?;
        write(
            &store,
            "a",
            WriteAction::Put(item("a", "1")),
            WriteOrigin::Request,
        )?;
        write(
            &store,
            "a",
            WriteAction::Put(item("a", "2")),
            WriteOrigin::Request,
        )?;
        let records = changes(&store)?;
        let modify = &records[1];
        assert_eq!(modify.get("NewImage").is_some(), has_new, "{view}");
        assert_eq!(modify.get("OldImage").is_some(), has_old, "{view}");
        assert!(modify.get("Keys").is_some());
    }
    Ok(())
}

#[test]
fn deleting_a_table_deletes_its_stream() -> TestResult {
    let (_dir, store) = open()?;
    store.create_table(&table("KEYS_ONLY"))?;
    write(
        &store,
        "a",
        WriteAction::Put(item("a", "1")),
        WriteOrigin::Request,
    )?;
    store.delete_table("stock")?;
    assert!(matches!(
        store.describe_stream(&table_stream("stock")),
        Err(StreamError::NotFound(_))
    ));
    assert_eq!(store.list_streams()?, Vec::<String>::new());
    Ok(())
}
