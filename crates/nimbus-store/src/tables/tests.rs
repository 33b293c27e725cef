//! Tests of tables through the `TableStore` trait, on temporary state folders.

use std::sync::Arc;

use nimbus_core::tables::{
    AttributeValue, IndexSpec, Item, ItemWrite, KeyAttribute, KeyQuery, Number, Projection,
    ScalarType, SortRange, TableError, TableSpec, TableStore, WriteAction, WriteOrigin,
};

use crate::Store;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn open() -> Result<(tempfile::TempDir, Store), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    Ok((dir, store))
}

fn spec() -> TableSpec {
    TableSpec {
        name: "events".to_owned(),
        partition_key: KeyAttribute {
            name: "pk".to_owned(),
            kind: ScalarType::S,
        },
        sort_key: Some(KeyAttribute {
            name: "n".to_owned(),
            kind: ScalarType::N,
        }),
        global_indexes: vec![IndexSpec {
            name: "byKind".to_owned(),
            partition_key: KeyAttribute {
                name: "kind".to_owned(),
                kind: ScalarType::S,
            },
            sort_key: None,
            projection: Projection::All,
        }],
        local_indexes: Vec::new(),
        ttl_attribute: None,
        stream_view: None,
    }
}

fn n(text: &str) -> AttributeValue {
    AttributeValue::N(Number::parse(text).expect("valid number"))
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn key(pk: &str, sort: &str) -> Item {
    Item::from([("pk".to_owned(), s(pk)), ("n".to_owned(), n(sort))])
}

fn put(store: &Store, item: Item) -> Result<Option<Item>, TableError> {
    let key = key_of(&item);
    let mut olds = store.write_items(vec![ItemWrite {
        table: "events".to_owned(),
        key,
        origin: WriteOrigin::Request,
        decide: Box::new(move |_| Ok(WriteAction::Put(item))),
    }])?;
    Ok(olds.pop().flatten())
}

fn key_of(item: &Item) -> Item {
    item.iter()
        .filter(|(name, _)| *name == "pk" || *name == "n")
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

fn query(store: &Store, sort: SortRange, forward: bool) -> Result<Vec<String>, TableError> {
    let page = store.query(&KeyQuery {
        table: "events".to_owned(),
        index: None,
        partition: Some(s("a")),
        sort,
        forward,
        start_after: None,
        limit: None,
    })?;
    Ok(page
        .items
        .iter()
        .map(|item| match item.get("n") {
            Some(AttributeValue::N(n)) => n.to_string(),
            _ => "?".to_owned(),
        })
        .collect())
}

#[test]
fn items_are_put_read_and_ordered_numerically() -> TestResult {
    let (_dir, store) = open()?;
    store.create_table(&spec())?;
    for sort in ["10", "-1.5", "2", "1e3", "0", "-20"] {
        put(&store, key("a", sort))?;
    }
    put(&store, key("b", "1"))?;
    assert_eq!(
        query(&store, SortRange::All, true)?,
        ["-20", "-1.5", "0", "2", "10", "1000"]
    );
    assert_eq!(
        query(&store, SortRange::All, false)?,
        ["1000", "10", "2", "0", "-1.5", "-20"]
    );
    assert_eq!(
        query(&store, SortRange::Between(n("-1.5"), n("10")), true)?,
        ["-1.5", "0", "2", "10"]
    );
    assert_eq!(query(&store, SortRange::Gt(n("2")), true)?, ["10", "1000"]);
    assert_eq!(
        query(&store, SortRange::Le(n("0")), false)?,
        ["0", "-1.5", "-20"]
    );
    let got = store.get_items(&[("events".to_owned(), key("a", "2.0"))])?;
    assert_eq!(got, vec![Some(key("a", "2"))]);
    assert_eq!(store.describe_table("events")?.item_count, 7);
    Ok(())
}

#[test]
fn a_refused_write_writes_nothing_and_conditions_are_atomic() -> TestResult {
    let (_dir, store) = open()?;
    let store = Arc::new(store);
    store.create_table(&spec())?;
    // Ten threads race to create the same item only if it is absent: one wins.
    let handles: Vec<_> = (0..10)
        .map(|idx| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut item = key("race", "1");
                item.insert("winner".to_owned(), n(&idx.to_string()));
                store.write_items(vec![ItemWrite {
                    table: "events".to_owned(),
                    key: key("race", "1"),
                    origin: WriteOrigin::Request,
                    decide: Box::new(move |current| match current {
                        Some(current) => Err(TableError::ConditionFailed(Some(current.clone()))),
                        None => Ok(WriteAction::Put(item)),
                    }),
                }])
            })
        })
        .collect();
    let mut n_won = 0;
    for handle in handles {
        match handle.join().map_err(|_| "thread panicked")? {
            Ok(_) => n_won += 1,
            Err(TableError::ConditionFailed(Some(_))) => {}
            Err(other) => return Err(other.into()),
        }
    }
    assert_eq!(n_won, 1);
    // A transaction with one failing decision writes none of its items.
    let res = store.write_items(vec![
        ItemWrite {
            table: "events".to_owned(),
            key: key("t", "1"),
            origin: WriteOrigin::Request,
            decide: Box::new(|_| Ok(WriteAction::Put(key("t", "1")))),
        },
        ItemWrite {
            table: "events".to_owned(),
            key: key("t", "2"),
            origin: WriteOrigin::Request,
            decide: Box::new(|_| Err(TableError::ConditionFailed(None))),
        },
    ]);
    match res {
        Err(TableError::Cancelled(reasons)) => {
            let codes: Vec<_> = reasons.iter().map(|r| r.code).collect();
            assert_eq!(codes, [None, Some("ConditionalCheckFailed")]);
        }
        other => return Err(format!("expected a cancellation, got {other:?}").into()),
    }
    assert_eq!(
        store.get_items(&[("events".to_owned(), key("t", "1"))])?,
        vec![None]
    );
    Ok(())
}

#[test]
fn index_entries_follow_their_items() -> TestResult {
    let (_dir, store) = open()?;
    store.create_table(&spec())?;
    let with_kind = |sort: &str, kind: &str| {
        let mut item = key("a", sort);
        item.insert("kind".to_owned(), s(kind));
        item
    };
    put(&store, with_kind("1", "x"))?;
    put(&store, with_kind("2", "x"))?;
    put(&store, with_kind("3", "y"))?;
    put(&store, key("a", "4"))?;
    // Moving an item to another kind moves its entry.
    put(&store, with_kind("2", "y"))?;
    let by_kind = |kind: &str| -> Result<usize, TableError> {
        Ok(store
            .query(&KeyQuery {
                table: "events".to_owned(),
                index: Some("byKind".to_owned()),
                partition: Some(s(kind)),
                sort: SortRange::All,
                forward: true,
                start_after: None,
                limit: None,
            })?
            .items
            .len())
    };
    assert_eq!((by_kind("x")?, by_kind("y")?), (1, 2));
    // An index key of the wrong type is refused.
    let mut bad = key("a", "5");
    bad.insert("kind".to_owned(), n("1"));
    let err = put(&store, bad).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "One or more parameter values were invalid: Type mismatch for Index Key kind Expected: S Actual: N IndexName: byKind"
        )
    );
    Ok(())
}

#[test]
fn pages_follow_the_limit_and_go_on_from_the_last_key() -> TestResult {
    let (_dir, store) = open()?;
    store.create_table(&spec())?;
    for idx in 0..25 {
        put(&store, key("a", &idx.to_string()))?;
    }
    let mut start_after = None;
    let mut seen = Vec::new();
    let mut n_pages = 0;
    loop {
        let page = store.query(&KeyQuery {
            table: "events".to_owned(),
            index: None,
            partition: None,
            sort: SortRange::All,
            forward: true,
            start_after: start_after.take(),
            limit: Some(10),
        })?;
        n_pages += 1;
        seen.extend(page.items);
        match page.last_evaluated_key {
            Some(key) => start_after = Some(key),
            None => break,
        }
    }
    assert_eq!((n_pages, seen.len()), (3, 25));
    Ok(())
}

#[test]
fn oversize_items_and_unknown_tables_are_refused() -> TestResult {
    let (_dir, store) = open()?;
    store.create_table(&spec())?;
    let mut big = key("a", "1");
    big.insert("blob".to_owned(), s(&"x".repeat(400 * 1024)));
    assert_eq!(
        put(&store, big).err(),
        Some(TableError::Validation(
            "Item size has exceeded the maximum allowed size".to_owned()
        ))
    );
    assert_eq!(
        store.describe_table("nope").err(),
        Some(TableError::NotFound("Table: nope not found".to_owned()))
    );
    assert!(matches!(
        store.create_table(&spec()),
        Err(TableError::InUse(_))
    ));
    store.delete_table("events")?;
    assert_eq!(store.list_tables()?, Vec::<String>::new());
    Ok(())
}
