//! Tables with DynamoDB's data model, the embedded implementation of
//! `nimbus_core::tables::TableStore`.
//!
//! An item is one row keyed by (table, partition key, sort key), both keys in the
//! order-preserving encoding of `nimbus_core::tables::key_bytes`, so SQLite's byte order of
//! BLOBs is DynamoDB's order of keys and a Query is a range scan of the primary key. A
//! secondary index is a second table of (index key, table key) entries, written in the same
//! transaction as the item; an item without the index's key attributes has no entry (a
//! sparse index). Items are stored as DynamoDB JSON text.

use std::collections::BTreeMap;

use nimbus_core::streams::{NewRecord, StreamSpec, table_stream};
use nimbus_core::tables::{
    AttributeValue, CancelReason, IndexSpec, Item, ItemPage, ItemWrite, KeyAttribute, KeyQuery,
    MAX_ITEM_BYTES, MAX_PAGE_BYTES, MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES, Projection,
    ScalarType, SortRange, TableDescription, TableError, TableSpec, TableStore, WriteAction,
    WriteOrigin, item_from_json, item_size, item_to_json, key_bytes,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Value as Json, json};

use crate::durable::{now_us, read_err, write_err};
use crate::streams;
use crate::{Store, StoreError};

/// Schema version 6: tables, their items and their index entries.
pub(crate) const SCHEMA_V6: &str = "
-- `spec` is the table's keys and indexes as JSON (`spec_to_json`, version 1).
CREATE TABLE tables (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created_us INTEGER NOT NULL
) WITHOUT ROWID;

-- A rowid table: items run to 400 KB, which SQLite keeps better out of an index b-tree.
-- `sk` is empty for a table without a sort key.
CREATE TABLE table_items (
    id INTEGER PRIMARY KEY,
    table_name TEXT NOT NULL,
    pk BLOB NOT NULL,
    sk BLOB NOT NULL,
    item TEXT NOT NULL,
    size INTEGER NOT NULL,
    UNIQUE (table_name, pk, sk)
);

-- One entry per item that has the index's key attributes; `isk` is empty for an index
-- without a sort key.
CREATE TABLE table_index_entries (
    table_name TEXT NOT NULL,
    index_name TEXT NOT NULL,
    ipk BLOB NOT NULL,
    isk BLOB NOT NULL,
    pk BLOB NOT NULL,
    sk BLOB NOT NULL,
    PRIMARY KEY (table_name, index_name, ipk, isk, pk, sk)
) WITHOUT ROWID;
";

/// A row of `table_items` as a query reads it.
struct Row {
    item: Item,
    size: usize,
}

impl TableStore for Store {
    fn ensure_table(&self, spec: &TableSpec) -> Result<(), TableError> {
        let spec_json = spec_to_json(spec).to_string();
        let name = spec.name.clone();
        self.write("a table", |tx| {
            tx.prepare_cached(
                "INSERT INTO tables (name, spec, created_us) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
            )
            .and_then(|mut stmt| stmt.execute(params![name, spec_json, now_us()]))
            .map_err(write_err("a table"))?;
            if spec.stream_view.is_some() {
                streams::insert_stream(tx, &StreamSpec::table(&name))?;
            }
            Ok(())
        })
        .map_err(internal)
    }

    fn create_table(&self, spec: &TableSpec) -> Result<TableDescription, TableError> {
        let spec_json = spec_to_json(spec).to_string();
        let name = spec.name.clone();
        let created = self
            .write("a table", |tx| {
                let n = tx
                    .prepare_cached(
                        "INSERT INTO tables (name, spec, created_us) VALUES (?1, ?2, ?3)
                         ON CONFLICT (name) DO NOTHING",
                    )
                    .and_then(|mut stmt| stmt.execute(params![name, spec_json, now_us()]))
                    .map_err(write_err("a table"))?;
                if n == 1 && spec.stream_view.is_some() {
                    // A stream left by an earlier table of this name starts over.
                    streams::delete_in(tx, &table_stream(&name))?;
                    streams::insert_stream(tx, &StreamSpec::table(&name))?;
                }
                Ok(n == 1)
            })
            .map_err(internal)?;
        if !created {
            return Err(TableError::InUse(spec.name.clone()));
        }
        self.describe_table(&spec.name)
    }

    fn describe_table(&self, table: &str) -> Result<TableDescription, TableError> {
        self.read(|conn| describe(conn, table))
            .map_err(internal)?
            .ok_or_else(|| not_found(table))
    }

    fn table_spec(&self, table: &str) -> Result<TableSpec, TableError> {
        self.read(|conn| Ok(load_spec(conn, table)))
            .map_err(internal)??
            .ok_or_else(|| not_found(table))
    }

    fn list_tables(&self) -> Result<Vec<String>, TableError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name FROM tables ORDER BY name")
                .map_err(read_err("tables"))?;
            let names = stmt
                .query_map([], |row| row.get::<_, String>(0))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(read_err("tables"))?;
            Ok(names)
        })
        .map_err(internal)
    }

    fn delete_table(&self, table: &str) -> Result<TableDescription, TableError> {
        let description = self.describe_table(table)?;
        let name = table.to_owned();
        self.write("a table", |tx| {
            for sql in [
                "DELETE FROM table_index_entries WHERE table_name = ?1",
                "DELETE FROM table_items WHERE table_name = ?1",
                "DELETE FROM tables WHERE name = ?1",
            ] {
                tx.prepare_cached(sql)
                    .and_then(|mut stmt| stmt.execute([&name]))
                    .map_err(write_err("a table"))?;
            }
            streams::delete_in(tx, &table_stream(&name))?;
            Ok(())
        })
        .map_err(internal)?;
        Ok(description)
    }

    fn get_items(&self, keys: &[(String, Item)]) -> Result<Vec<Option<Item>>, TableError> {
        let res = self.read(|conn| {
            // One read transaction, so every item comes from the same snapshot.
            let snapshot = keys.len() > 1;
            if snapshot {
                conn.execute_batch("BEGIN").map_err(read_err("items"))?;
            }
            let res = get_all(conn, keys);
            if snapshot {
                conn.execute_batch("COMMIT").map_err(read_err("items"))?;
            }
            Ok(res)
        });
        res.map_err(internal)?
    }

    fn write_items(&self, writes: Vec<ItemWrite>) -> Result<Vec<Option<Item>>, TableError> {
        // A refused write returns `Ok(Err(..))` having written nothing; a failure while
        // applying the writes is an `Err`, which rolls the transaction back.
        let res = self.write("table items", |tx| write_all(tx, writes));
        res.map_err(internal)?
    }

    fn query(&self, query: &KeyQuery) -> Result<ItemPage, TableError> {
        self.read(|conn| Ok(run_query(conn, query)))
            .map_err(internal)?
    }
}

fn get_all(conn: &Connection, keys: &[(String, Item)]) -> Result<Vec<Option<Item>>, TableError> {
    let mut specs: BTreeMap<String, TableSpec> = BTreeMap::new();
    let mut items = Vec::with_capacity(keys.len());
    for (table, key) in keys {
        if !specs.contains_key(table) {
            let spec = load_spec(conn, table)?.ok_or_else(|| not_found(table))?;
            specs.insert(table.clone(), spec);
        }
        let spec = &specs[table];
        spec.check_key(key)?;
        let (pk, sk) = primary_key_bytes(spec, key)?;
        items.push(read_item(conn, table, &pk, &sk)?.map(|row| row.item));
    }
    Ok(items)
}

/// An item's key in the encoding of `key_bytes`: partition and sort key (empty without one).
type KeyBytes = (Vec<u8>, Vec<u8>);

/// Writes decided and checked, ready to apply: the specs of their tables, and the writes.
struct Planned {
    specs: BTreeMap<String, TableSpec>,
    writes: Vec<PlannedWrite>,
}

/// One write: its table, key, the item before and what to do.
struct PlannedWrite {
    table: String,
    key: KeyBytes,
    old: Option<Item>,
    action: WriteAction,
    origin: WriteOrigin,
}

/// Decides every write against the current items, then applies them. A refused write
/// (`Ok(Err(..))`) has written nothing; an `Err` rolls the transaction back.
fn write_all(
    tx: &Transaction<'_>,
    writes: Vec<ItemWrite>,
) -> Result<Result<Vec<Option<Item>>, TableError>, StoreError> {
    let planned = match plan_writes(tx, writes) {
        Ok(planned) => planned,
        Err(e) => return Ok(Err(e)),
    };
    let olds = apply_writes(tx, planned).map_err(|e| StoreError::InvalidValue {
        what: "table items",
        reason: e.to_string(),
    })?;
    Ok(Ok(olds))
}

fn plan_writes(tx: &Transaction<'_>, writes: Vec<ItemWrite>) -> Result<Planned, TableError> {
    let n_writes = writes.len();
    let mut specs: BTreeMap<String, TableSpec> = BTreeMap::new();
    let mut planned = Vec::with_capacity(n_writes);
    let mut reasons = Vec::with_capacity(n_writes);
    let mut failed = None;
    let mut seen = Vec::with_capacity(n_writes);
    for write in writes {
        if !specs.contains_key(&write.table) {
            let spec = load_spec(tx, &write.table)?.ok_or_else(|| not_found(&write.table))?;
            specs.insert(write.table.clone(), spec);
        }
        let spec = &specs[&write.table];
        spec.check_key(&write.key)?;
        let (pk, sk) = primary_key_bytes(spec, &write.key)?;
        let identity = (write.table.clone(), pk.clone(), sk.clone());
        if seen.contains(&identity) {
            return Err(TableError::Validation(
                "Provided list of item keys contains duplicates".to_owned(),
            ));
        }
        seen.push(identity);
        let old = read_item(tx, &write.table, &pk, &sk)?.map(|row| row.item);
        let decided = (write.decide)(old.as_ref()).and_then(|action| {
            if let WriteAction::Put(item) = &action {
                check_item(spec, item, &write.key)?;
            }
            Ok(action)
        });
        match decided {
            Ok(action) => {
                reasons.push(CancelReason {
                    code: None,
                    message: None,
                    item: None,
                });
                planned.push(PlannedWrite {
                    table: write.table,
                    key: (pk, sk),
                    old,
                    action,
                    origin: write.origin,
                });
            }
            Err(e) => {
                reasons.push(cancel_reason(&e));
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failed {
        return Err(if n_writes == 1 {
            e
        } else {
            TableError::Cancelled(reasons)
        });
    }
    Ok(Planned {
        specs,
        writes: planned,
    })
}

fn apply_writes(tx: &Transaction<'_>, planned: Planned) -> Result<Vec<Option<Item>>, TableError> {
    let mut olds = Vec::with_capacity(planned.writes.len());
    for write in planned.writes {
        let PlannedWrite {
            table,
            key: (pk, sk),
            old,
            action,
            origin,
        } = write;
        let spec = &planned.specs[&table];
        if let Some(view) = &spec.stream_view
            && let Some(record) = change_record(spec, view, old.as_ref(), &action, origin, &pk)?
        {
            streams::append_in(tx, &table_stream(&table), &[record])
                .map_err(|e| TableError::Internal(e.to_string()))?;
        }
        match &action {
            WriteAction::Keep => {}
            WriteAction::Put(item) => {
                if let Some(old) = &old {
                    delete_index_entries(tx, spec, old, &pk, &sk)?;
                }
                let text = item_to_json(item).to_string();
                tx.prepare_cached(
                    "INSERT INTO table_items (table_name, pk, sk, item, size) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (table_name, pk, sk) DO UPDATE SET item = excluded.item, size = excluded.size",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![table, pk, sk, text, item_size(item) as i64])
                })
                .map_err(sql_write)?;
                insert_index_entries(tx, spec, item, &pk, &sk)?;
            }
            WriteAction::Delete => {
                if let Some(old) = &old {
                    delete_index_entries(tx, spec, old, &pk, &sk)?;
                    tx.prepare_cached(
                        "DELETE FROM table_items WHERE table_name = ?1 AND pk = ?2 AND sk = ?3",
                    )
                    .and_then(|mut stmt| stmt.execute(params![table, pk, sk]))
                    .map_err(sql_write)?;
                }
            }
        }
        olds.push(old);
    }
    Ok(olds)
}

/// The change record a write appends to its table's stream (DynamoDB Streams' `eventName`
/// and `dynamodb` fields, images as `view` asks), or `None` when the write changes nothing:
/// DynamoDB writes no record for a put or update that leaves the item as it was.
fn change_record(
    spec: &TableSpec,
    view: &str,
    old: Option<&Item>,
    action: &WriteAction,
    origin: WriteOrigin,
    pk: &[u8],
) -> Result<Option<NewRecord>, TableError> {
    let (event_name, new) = match (old, action) {
        (_, WriteAction::Keep) | (None, WriteAction::Delete) => return Ok(None),
        (Some(old), WriteAction::Put(new)) if old == new => return Ok(None),
        (None, WriteAction::Put(new)) => ("INSERT", Some(new)),
        (Some(_), WriteAction::Put(new)) => ("MODIFY", Some(new)),
        (Some(_), WriteAction::Delete) => ("REMOVE", None),
    };
    let Some(any) = new.or(old) else {
        return Ok(None);
    };
    let keys = spec.key_of(any)?;
    let mut size = item_size(&keys);
    let mut record = serde_json::Map::new();
    record.insert("eventName".to_owned(), json!(event_name));
    record.insert("Keys".to_owned(), item_to_json(&keys));
    if matches!(view, "NEW_IMAGE" | "NEW_AND_OLD_IMAGES")
        && let Some(new) = new
    {
        size += item_size(new);
        record.insert("NewImage".to_owned(), item_to_json(new));
    }
    if matches!(view, "OLD_IMAGE" | "NEW_AND_OLD_IMAGES")
        && let Some(old) = old
    {
        size += item_size(old);
        record.insert("OldImage".to_owned(), item_to_json(old));
    }
    record.insert("SizeBytes".to_owned(), json!(size));
    record.insert("StreamViewType".to_owned(), json!(view));
    if origin == WriteOrigin::TimeToLive {
        record.insert(
            "userIdentity".to_owned(),
            json!({ "type": "Service", "principalId": "dynamodb.amazonaws.com" }),
        );
    }
    Ok(Some(NewRecord {
        // The partition key's bytes decide the shard, so an item's records stay in order.
        partition_key: hex(pk),
        data: Json::Object(record).to_string().into_bytes(),
    }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn cancel_reason(e: &TableError) -> CancelReason {
    match e {
        TableError::ConditionFailed(item) => CancelReason {
            code: Some("ConditionalCheckFailed"),
            message: Some("The conditional request failed".to_owned()),
            item: item.clone(),
        },
        TableError::Validation(message) => CancelReason {
            code: Some("ValidationError"),
            message: Some(message.clone()),
            item: None,
        },
        other => CancelReason {
            code: Some("InternalError"),
            message: Some(other.to_string()),
            item: None,
        },
    }
}

/// Checks an item about to be stored: its key is the write's, its index keys have their
/// types, and it fits in 400 KB.
fn check_item(spec: &TableSpec, item: &Item, key: &Item) -> Result<(), TableError> {
    let item_key = spec.key_of(item)?;
    if &item_key != key {
        return Err(TableError::Validation(
            "The item's key attributes differ from the key written".to_owned(),
        ));
    }
    spec.check_index_keys(item)?;
    for index in indexes(spec) {
        index_key_bytes(index, item)?;
    }
    if item_size(item) > MAX_ITEM_BYTES {
        return Err(TableError::Validation(
            "Item size has exceeded the maximum allowed size".to_owned(),
        ));
    }
    Ok(())
}

fn primary_key_bytes(spec: &TableSpec, key: &Item) -> Result<KeyBytes, TableError> {
    let pk = attribute_bytes(
        &spec.partition_key,
        key,
        MAX_PARTITION_KEY_BYTES,
        "partition",
    )?
    .ok_or_else(|| {
        TableError::Validation("The provided key element does not match the schema".to_owned())
    })?;
    let sk = match &spec.sort_key {
        Some(attribute) => attribute_bytes(attribute, key, MAX_SORT_KEY_BYTES, "sort")?
            .ok_or_else(|| {
                TableError::Validation(
                    "The provided key element does not match the schema".to_owned(),
                )
            })?,
        None => Vec::new(),
    };
    Ok((pk, sk))
}

/// The key bytes of `attribute` in `item`; `None` when absent or of another type.
fn attribute_bytes(
    attribute: &KeyAttribute,
    item: &Item,
    max: usize,
    which: &str,
) -> Result<Option<Vec<u8>>, TableError> {
    let Some(value) = item.get(&attribute.name) else {
        return Ok(None);
    };
    let matches = matches!(
        (attribute.kind, value),
        (ScalarType::S, AttributeValue::S(_))
            | (ScalarType::N, AttributeValue::N(_))
            | (ScalarType::B, AttributeValue::B(_))
    );
    if !matches {
        return Ok(None);
    }
    let size = value.size();
    if size > max {
        // DynamoDB's words, its missing space after "of" included.
        return Err(TableError::Validation(if which.ends_with("sort") {
            format!(
                "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size limit of {max} bytes"
            )
        } else {
            format!(
                "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of{max} bytes"
            )
        }));
    }
    Ok(key_bytes(value))
}

/// The index key bytes of an item, when it has the index's key attributes.
fn index_key_bytes(index: &IndexSpec, item: &Item) -> Result<Option<KeyBytes>, TableError> {
    let Some(ipk) = attribute_bytes(
        &index.partition_key,
        item,
        MAX_PARTITION_KEY_BYTES,
        "index partition",
    )?
    else {
        return Ok(None);
    };
    let isk = match &index.sort_key {
        Some(attribute) => {
            match attribute_bytes(attribute, item, MAX_SORT_KEY_BYTES, "index sort")? {
                Some(isk) => isk,
                None => return Ok(None),
            }
        }
        None => Vec::new(),
    };
    Ok(Some((ipk, isk)))
}

fn indexes(spec: &TableSpec) -> impl Iterator<Item = &IndexSpec> {
    spec.global_indexes.iter().chain(&spec.local_indexes)
}

fn insert_index_entries(
    tx: &Transaction<'_>,
    spec: &TableSpec,
    item: &Item,
    pk: &[u8],
    sk: &[u8],
) -> Result<(), TableError> {
    for index in indexes(spec) {
        if let Some((ipk, isk)) = index_key_bytes(index, item)? {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO table_index_entries (table_name, index_name, ipk, isk, pk, sk)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut stmt| stmt.execute(params![spec.name, index.name, ipk, isk, pk, sk]))
            .map_err(sql_write)?;
        }
    }
    Ok(())
}

fn delete_index_entries(
    tx: &Transaction<'_>,
    spec: &TableSpec,
    item: &Item,
    pk: &[u8],
    sk: &[u8],
) -> Result<(), TableError> {
    for index in indexes(spec) {
        if let Some((ipk, isk)) = index_key_bytes(index, item)? {
            tx.prepare_cached(
                "DELETE FROM table_index_entries WHERE table_name = ?1 AND index_name = ?2
                 AND ipk = ?3 AND isk = ?4 AND pk = ?5 AND sk = ?6",
            )
            .and_then(|mut stmt| stmt.execute(params![spec.name, index.name, ipk, isk, pk, sk]))
            .map_err(sql_write)?;
        }
    }
    Ok(())
}

fn read_item(
    conn: &Connection,
    table: &str,
    pk: &[u8],
    sk: &[u8],
) -> Result<Option<Row>, TableError> {
    let text: Option<(String, i64)> = conn
        .prepare_cached(
            "SELECT item, size FROM table_items WHERE table_name = ?1 AND pk = ?2 AND sk = ?3",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![table, pk, sk], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(sql_read)?;
    text.map(|(text, size)| parse_row(&text, size)).transpose()
}

fn parse_row(text: &str, size: i64) -> Result<Row, TableError> {
    let item = serde_json::from_str::<Json>(text)
        .ok()
        .and_then(|json| match json {
            Json::Object(fields) => item_from_json(&fields).ok(),
            _ => None,
        })
        .ok_or_else(|| TableError::Internal("a stored item is not DynamoDB JSON".to_owned()))?;
    Ok(Row {
        item,
        size: usize::try_from(size).unwrap_or(0),
    })
}

/// Reads a Query's or Scan's page: rows in key order from the start key, up to the limit
/// or 1 MB, then one more to know whether the range goes on.
fn run_query(conn: &Connection, query: &KeyQuery) -> Result<ItemPage, TableError> {
    let spec = load_spec(conn, &query.table)?.ok_or_else(|| not_found(&query.table))?;
    let index = match &query.index {
        Some(name) => Some(spec.index(name).ok_or_else(|| {
            TableError::Validation(format!(
                "The table does not have the specified index: {name}"
            ))
        })?),
        None => None,
    };
    let (partition_attr, sort_attr) = match index {
        Some(index) => (&index.partition_key, index.sort_key.as_ref()),
        None => (&spec.partition_key, spec.sort_key.as_ref()),
    };
    // Columns: the partition and sort key of what is read, then the table's key for index
    // entries, which order items with equal index keys.
    // Index entries order items with equal index keys by the table's key.
    let (from, pcol, scol) = match index {
        Some(_) => (
            "table_index_entries e JOIN table_items i ON i.table_name = e.table_name AND i.pk = e.pk AND i.sk = e.sk",
            "e.ipk",
            "e.isk",
        ),
        None => ("table_items i", "i.pk", "i.sk"),
    };
    let mut sql = format!("SELECT i.item, i.size FROM {from} WHERE i.table_name = ?1");
    let mut args: Vec<rusqlite::types::Value> = vec![query.table.clone().into()];
    if let Some(index) = index {
        let slot = bind(&mut args, index.name.clone());
        sql.push_str(&format!(" AND e.index_name = {slot}"));
    }
    if let Some(partition) = &query.partition {
        let slot = bind(&mut args, key_value_bytes(partition_attr, partition)?);
        sql.push_str(&format!(" AND {pcol} = {slot}"));
        if let Some(sort_attr) = sort_attr {
            let bound = |op: &str,
                         value: &AttributeValue,
                         args: &mut Vec<rusqlite::types::Value>|
             -> Result<String, TableError> {
                let slot = bind(args, key_value_bytes(sort_attr, value)?);
                Ok(format!(" AND {scol} {op} {slot}"))
            };
            let clause = match &query.sort {
                SortRange::All => String::new(),
                SortRange::Eq(v) => bound("=", v, &mut args)?,
                SortRange::Lt(v) => bound("<", v, &mut args)?,
                SortRange::Le(v) => bound("<=", v, &mut args)?,
                SortRange::Gt(v) => bound(">", v, &mut args)?,
                SortRange::Ge(v) => bound(">=", v, &mut args)?,
                SortRange::Between(low, high) => {
                    let low = bound(">=", low, &mut args)?;
                    low + &bound("<=", high, &mut args)?
                }
                SortRange::BeginsWith(prefix) => {
                    if sort_attr.kind == ScalarType::N {
                        return Err(TableError::Validation(
                            "Invalid KeyConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N".to_owned(),
                        ));
                    }
                    let bytes = key_value_bytes(sort_attr, prefix)?;
                    let upper = prefix_successor(&bytes);
                    let mut clause = format!(" AND {scol} >= {}", bind(&mut args, bytes));
                    if let Some(upper) = upper {
                        clause.push_str(&format!(" AND {scol} < {}", bind(&mut args, upper)));
                    }
                    clause
                }
            };
            sql.push_str(&clause);
        }
    }
    // The columns of the read's order: a Scan's partition key, the sort key, and for an
    // index the table's key.
    let mut order = Vec::new();
    if query.partition.is_none() {
        order.push(pcol);
    }
    if sort_attr.is_some() || index.is_some() {
        order.push(scol);
    }
    if index.is_some() {
        order.extend(["e.pk", "e.sk"]);
    }
    let (cmp, dir) = if query.forward {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some(start) = &query.start_after {
        let invalid = || {
            TableError::Validation(
                "The provided starting key is invalid: The provided key element does not match the schema".to_owned(),
            )
        };
        let start_bytes = |attribute: &KeyAttribute| -> Result<Vec<u8>, TableError> {
            let value = start.get(&attribute.name).ok_or_else(invalid)?;
            key_value_bytes(attribute, value).map_err(|_| invalid())
        };
        let mut slots = Vec::new();
        for column in &order {
            let bytes = match *column {
                "e.pk" | "e.sk" => {
                    let (pk, sk) = primary_key_bytes(&spec, start).map_err(|_| invalid())?;
                    if *column == "e.pk" { pk } else { sk }
                }
                column if column == pcol => start_bytes(partition_attr)?,
                _ => match sort_attr {
                    Some(sort_attr) => start_bytes(sort_attr)?,
                    None => Vec::new(),
                },
            };
            slots.push(bind(&mut args, bytes));
        }
        if !order.is_empty() {
            // Row values compare column by column, as the key order does.
            sql.push_str(&format!(
                " AND ({}) {cmp} ({})",
                order.join(", "),
                slots.join(", ")
            ));
        }
    }
    if !order.is_empty() {
        let columns: Vec<String> = order.iter().map(|c| format!("{c} {dir}")).collect();
        sql.push_str(&format!(" ORDER BY {}", columns.join(", ")));
    }
    let mut stmt = conn.prepare_cached(&sql).map_err(sql_read)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(args.iter()))
        .map_err(sql_read)?;
    let limit = query.limit.unwrap_or(usize::MAX);
    let mut items = Vec::new();
    let mut n_bytes = 0usize;
    let mut more = false;
    while let Some(row) = rows.next().map_err(sql_read)? {
        if items.len() >= limit || n_bytes >= MAX_PAGE_BYTES {
            more = true;
            break;
        }
        let text: String = row.get(0).map_err(sql_read)?;
        let size: i64 = row.get(1).map_err(sql_read)?;
        let parsed = parse_row(&text, size)?;
        n_bytes += parsed.size;
        items.push(parsed.item);
    }
    let last_evaluated_key = match (more, items.last()) {
        (true, Some(last)) => {
            let mut key = Item::new();
            let attributes = spec
                .key_attributes()
                .chain(index.map(|index| &index.partition_key))
                .chain(index.and_then(|index| index.sort_key.as_ref()));
            for attribute in attributes {
                if let Some(value) = last.get(&attribute.name) {
                    key.insert(attribute.name.clone(), value.clone());
                }
            }
            Some(key)
        }
        _ => None,
    };
    Ok(ItemPage {
        items,
        last_evaluated_key,
    })
}

/// Adds a parameter and returns its placeholder.
fn bind(
    args: &mut Vec<rusqlite::types::Value>,
    value: impl Into<rusqlite::types::Value>,
) -> String {
    args.push(value.into());
    format!("?{}", args.len())
}

/// The key bytes of a value given for a key attribute, which must have its type.
fn key_value_bytes(
    attribute: &KeyAttribute,
    value: &AttributeValue,
) -> Result<Vec<u8>, TableError> {
    let mut item = Item::new();
    item.insert(attribute.name.clone(), value.clone());
    attribute_bytes(attribute, &item, usize::MAX, "key")?.ok_or_else(|| {
        TableError::Validation(format!(
            "One or more parameter values were invalid: Condition parameter type does not match schema type: {} is {}, not {}",
            attribute.name,
            attribute.kind.name(),
            value.value_type().name()
        ))
    })
}

/// The smallest byte string greater than every string starting with `prefix`; `None` when
/// there is none (all `0xFF`).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < 0xFF {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

fn describe(conn: &Connection, table: &str) -> Result<Option<TableDescription>, StoreError> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT spec, created_us FROM tables WHERE name = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([table], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(read_err("tables"))?;
    let Some((spec, created_us)) = row else {
        return Ok(None);
    };
    let spec = spec_from_json(&spec).ok_or_else(|| StoreError::InvalidValue {
        what: "table spec",
        reason: format!("the stored spec of table {table} cannot be read"),
    })?;
    let (item_count, size_bytes): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM table_items WHERE table_name = ?1",
        )
        .and_then(|mut stmt| stmt.query_row([table], |row| Ok((row.get(0)?, row.get(1)?))))
        .map_err(read_err("table items"))?;
    Ok(Some(TableDescription {
        spec,
        created_at: created_us as f64 / 1e6,
        item_count: item_count as u64,
        size_bytes: size_bytes as u64,
    }))
}

fn load_spec(conn: &Connection, table: &str) -> Result<Option<TableSpec>, TableError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT spec FROM tables WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([table], |row| row.get(0)).optional())
        .map_err(sql_read)?;
    match text {
        Some(text) => spec_from_json(&text).map(Some).ok_or_else(|| {
            TableError::Internal(format!("the stored spec of table {table} cannot be read"))
        }),
        None => Ok(None),
    }
}

/// A table's spec as stored (version 1 of the record).
fn spec_to_json(spec: &TableSpec) -> Json {
    let key = |k: &KeyAttribute| json!({ "name": k.name, "type": k.kind.name() });
    let index = |index: &IndexSpec| {
        let projection = match &index.projection {
            Projection::All => json!("ALL"),
            Projection::KeysOnly => json!("KEYS_ONLY"),
            Projection::Include(names) => json!({ "INCLUDE": names }),
        };
        json!({
            "name": index.name,
            "partitionKey": key(&index.partition_key),
            "sortKey": index.sort_key.as_ref().map(key),
            "projection": projection,
        })
    };
    json!({
        "version": 1,
        "partitionKey": key(&spec.partition_key),
        "sortKey": spec.sort_key.as_ref().map(key),
        "globalIndexes": spec.global_indexes.iter().map(index).collect::<Vec<_>>(),
        "localIndexes": spec.local_indexes.iter().map(index).collect::<Vec<_>>(),
        "ttlAttribute": spec.ttl_attribute,
        "streamView": spec.stream_view,
        "name": spec.name,
    })
}

fn spec_from_json(text: &str) -> Option<TableSpec> {
    let json: Json = serde_json::from_str(text).ok()?;
    let key = |json: &Json| -> Option<KeyAttribute> {
        Some(KeyAttribute {
            name: json.get("name")?.as_str()?.to_owned(),
            kind: ScalarType::from_name(json.get("type")?.as_str()?)?,
        })
    };
    let optional_key = |json: Option<&Json>| -> Option<Option<KeyAttribute>> {
        match json {
            None | Some(Json::Null) => Some(None),
            Some(json) => key(json).map(Some),
        }
    };
    let index = |json: &Json| -> Option<IndexSpec> {
        let projection = match json.get("projection")? {
            Json::String(s) if s == "ALL" => Projection::All,
            Json::String(s) if s == "KEYS_ONLY" => Projection::KeysOnly,
            other => Projection::Include(
                other
                    .get("INCLUDE")?
                    .as_array()?
                    .iter()
                    .filter_map(|name| name.as_str().map(str::to_owned))
                    .collect(),
            ),
        };
        Some(IndexSpec {
            name: json.get("name")?.as_str()?.to_owned(),
            partition_key: key(json.get("partitionKey")?)?,
            sort_key: optional_key(json.get("sortKey"))?,
            projection,
        })
    };
    let indexes = |json: Option<&Json>| -> Option<Vec<IndexSpec>> {
        json?.as_array()?.iter().map(index).collect()
    };
    let text = |json: Option<&Json>| json.and_then(Json::as_str).map(str::to_owned);
    Some(TableSpec {
        name: json.get("name")?.as_str()?.to_owned(),
        partition_key: key(json.get("partitionKey")?)?,
        sort_key: optional_key(json.get("sortKey"))?,
        global_indexes: indexes(json.get("globalIndexes"))?,
        local_indexes: indexes(json.get("localIndexes"))?,
        ttl_attribute: text(json.get("ttlAttribute")),
        stream_view: text(json.get("streamView")),
    })
}

fn not_found(table: &str) -> TableError {
    TableError::NotFound(format!("Table: {table} not found"))
}

/// A store failure as a table error, with its whole chain of causes.
fn internal(e: StoreError) -> TableError {
    TableError::Internal(e.chain())
}

fn sql_read(e: rusqlite::Error) -> TableError {
    TableError::Internal(format!("reading table items from the store: {e}"))
}

fn sql_write(e: rusqlite::Error) -> TableError {
    TableError::Internal(format!("writing table items to the store: {e}"))
}

#[cfg(test)]
mod tests;
