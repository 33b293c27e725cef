//! The table operations (DynamoDB's PutItem, GetItem, Query, ...): one typed request per
//! operation, each checking the caller's grants first, then running on the events'
//! `TableStore` off the async workers. Expressions arrive as text with their placeholders
//! and are parsed here (`expr.rs`), so any front end (the AWS endpoint today) only
//! translates its wire format.

pub(crate) mod expr;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use nimbus_core::services::Access;
use nimbus_core::tables::{
    AttributeValue, Item, ItemPage, ItemWrite, KeyQuery, Projection, SortRange, TableDescription,
    TableError, TableSpec, TableStore, WriteAction, WriteOrigin,
};

use crate::error::ApiError;
use crate::events::Events;

use super::Principal;

use expr::{Condition, ExprKind, Operand, Path, Placeholders};

/// Why a table operation failed: refused by the grants, or by the table.
#[derive(Debug)]
pub(crate) enum TableOpError {
    Denied(ApiError),
    Table(TableError),
}

type OpRes<T> = Result<T, TableOpError>;

/// The ExpressionAttributeNames and ExpressionAttributeValues of a request.
#[derive(Debug, Default)]
pub(crate) struct Placeholder {
    pub(crate) names: BTreeMap<String, String>,
    pub(crate) values: BTreeMap<String, AttributeValue>,
}

/// What a write answers with (`ReturnValues`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReturnValues {
    None,
    AllOld,
    UpdatedOld,
    AllNew,
    UpdatedNew,
}

pub(crate) struct PutItem {
    pub(crate) table: String,
    pub(crate) item: Item,
    pub(crate) condition: Option<String>,
    pub(crate) placeholders: Placeholder,
    pub(crate) return_values: ReturnValues,
    /// `ReturnValuesOnConditionCheckFailure: ALL_OLD`.
    pub(crate) old_on_failure: bool,
}

pub(crate) struct GetItem {
    pub(crate) table: String,
    pub(crate) key: Item,
    pub(crate) projection: Option<String>,
    pub(crate) placeholders: Placeholder,
}

pub(crate) struct UpdateItem {
    pub(crate) table: String,
    pub(crate) key: Item,
    pub(crate) update: Option<String>,
    pub(crate) condition: Option<String>,
    pub(crate) placeholders: Placeholder,
    pub(crate) return_values: ReturnValues,
    pub(crate) old_on_failure: bool,
}

pub(crate) struct DeleteItem {
    pub(crate) table: String,
    pub(crate) key: Item,
    pub(crate) condition: Option<String>,
    pub(crate) placeholders: Placeholder,
    pub(crate) return_values: ReturnValues,
    pub(crate) old_on_failure: bool,
}

/// A Query (with a key condition) or a Scan (without).
pub(crate) struct Read {
    pub(crate) table: String,
    pub(crate) index: Option<String>,
    pub(crate) key_condition: Option<String>,
    pub(crate) filter: Option<String>,
    pub(crate) projection: Option<String>,
    pub(crate) placeholders: Placeholder,
    pub(crate) forward: bool,
    pub(crate) limit: Option<usize>,
    pub(crate) start: Option<Item>,
    pub(crate) count_only: bool,
    /// Scan's `Segment` of `TotalSegments`.
    pub(crate) segment: Option<(u32, u32)>,
}

pub(crate) struct ReadOutput {
    pub(crate) items: Vec<Item>,
    pub(crate) count: usize,
    pub(crate) scanned_count: usize,
    pub(crate) last_evaluated_key: Option<Item>,
}

/// One write of a BatchWriteItem.
pub(crate) enum BatchWrite {
    Put(Item),
    Delete(Item),
}

/// One item of a TransactWriteItems.
pub(crate) enum TransactWrite {
    Put(PutItem),
    Update(UpdateItem),
    Delete(DeleteItem),
    Check {
        table: String,
        key: Item,
        condition: String,
        placeholders: Placeholder,
        old_on_failure: bool,
    },
}

impl From<TableError> for TableOpError {
    fn from(e: TableError) -> TableOpError {
        TableOpError::Table(e)
    }
}

impl From<expr::ExprError> for TableOpError {
    fn from(e: expr::ExprError) -> TableOpError {
        TableOpError::Table(TableError::Validation(e.0))
    }
}

fn authorize(principal: Principal<'_>, access: &Access) -> OpRes<()> {
    principal
        .check(access.action, &access.resource)
        .map_err(TableOpError::Denied)
}

fn check(principal: Principal<'_>, action: &'static str, table: &str) -> OpRes<()> {
    authorize(principal, &Access::table(action, table, None))
}

/// Runs `op` on the tables off the async workers.
async fn run<T: Send + 'static>(
    events: &Events,
    op: impl FnOnce(&dyn TableStore) -> Result<T, TableError> + Send + 'static,
) -> OpRes<T> {
    let tables = Arc::clone(&events.tables);
    match tokio::task::spawn_blocking(move || op(tables.as_ref())).await {
        Ok(res) => res.map_err(TableOpError::Table),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Writes items (one transaction) and wakes the consumers of the tables' change streams.
async fn write_items(events: &Events, writes: Vec<ItemWrite>) -> OpRes<Vec<Option<Item>>> {
    let mut written: Vec<String> = writes.iter().map(|w| w.table.clone()).collect();
    written.dedup();
    let olds = run(events, move |tables| tables.write_items(writes)).await?;
    events.tables_written(written.iter().map(String::as_str));
    Ok(olds)
}

pub(crate) async fn create_table(
    events: &Events,
    principal: Principal<'_>,
    spec: TableSpec,
) -> OpRes<TableDescription> {
    check(principal, "dynamodb:CreateTable", &spec.name)?;
    run(events, move |tables| tables.create_table(&spec)).await
}

/// What UpdateTable and UpdateTimeToLive change; `None` leaves a setting as it is.
pub(crate) struct TableUpdate {
    /// The TTL attribute (`Some(None)` turns TTL off).
    pub(crate) ttl_attribute: Option<Option<String>>,
    /// The stream's view type (`Some(None)` turns the stream off).
    pub(crate) stream_view: Option<Option<String>>,
}

/// Changes a table's TTL or stream; its items and indexes stay as they are.
pub(crate) async fn update_table(
    events: &Events,
    principal: Principal<'_>,
    table: &str,
    action: &'static str,
    update: TableUpdate,
) -> OpRes<TableDescription> {
    check(principal, action, table)?;
    let name = table.to_owned();
    run(events, move |tables| {
        let mut spec = tables.describe_table(&name)?.spec;
        if let Some(ttl) = update.ttl_attribute {
            if ttl.is_some() && spec.ttl_attribute.is_some() {
                return Err(TableError::Validation(
                    "TimeToLive is already enabled".to_owned(),
                ));
            }
            spec.ttl_attribute = ttl;
        }
        if let Some(view) = update.stream_view {
            if view.is_some() && spec.stream_view.is_some() {
                return Err(TableError::Validation(format!(
                    "Table already has an enabled stream: {name}"
                )));
            }
            spec.stream_view = view;
        }
        tables.ensure_table(&spec)?;
        tables.describe_table(&name)
    })
    .await
}

pub(crate) async fn describe_table(
    events: &Events,
    principal: Principal<'_>,
    table: &str,
) -> OpRes<TableDescription> {
    check(principal, "dynamodb:DescribeTable", table)?;
    describe(events, table).await
}

/// A table's keys and indexes, without DescribeTable's counts (which read every item).
async fn table_spec(events: &Events, table: &str) -> OpRes<TableSpec> {
    let name = table.to_owned();
    run(events, move |tables| tables.table_spec(&name)).await
}

async fn describe(events: &Events, table: &str) -> OpRes<TableDescription> {
    let name = table.to_owned();
    run(events, move |tables| tables.describe_table(&name)).await
}

pub(crate) async fn delete_table(
    events: &Events,
    principal: Principal<'_>,
    table: &str,
) -> OpRes<TableDescription> {
    check(principal, "dynamodb:DeleteTable", table)?;
    let name = table.to_owned();
    run(events, move |tables| tables.delete_table(&name)).await
}

pub(crate) async fn list_tables(events: &Events, principal: Principal<'_>) -> OpRes<Vec<String>> {
    authorize(
        principal,
        &Access {
            action: "dynamodb:ListTables",
            resource: "table:*".to_owned(),
        },
    )?;
    run(events, |tables| tables.list_tables()).await
}

/// The condition of a write, parsed.
fn condition(text: Option<&str>, placeholders: &mut Placeholders) -> OpRes<Option<Condition>> {
    Ok(match text {
        Some(text) => Some(expr::parse_condition(
            text,
            ExprKind::Condition,
            placeholders,
        )?),
        None => None,
    })
}

/// Fails when the condition does not hold for the current item.
fn hold(
    condition: Option<&Condition>,
    current: Option<&Item>,
    old_on_failure: bool,
) -> Result<(), TableError> {
    let empty = Item::new();
    match condition {
        Some(condition) if !expr::eval(condition, current.unwrap_or(&empty)) => Err(
            TableError::ConditionFailed(current.filter(|_| old_on_failure).cloned()),
        ),
        _ => Ok(()),
    }
}

fn put_write(req: PutItem) -> OpRes<ItemWrite> {
    let mut placeholders = Placeholders::new(req.placeholders.names, req.placeholders.values);
    let condition = condition(req.condition.as_deref(), &mut placeholders)?;
    placeholders.check_unused()?;
    // The whole item stands in for its key until the caller cuts it to the key
    // attributes, which takes the table's schema.
    let key = req.item.clone();
    let item = req.item;
    let old_on_failure = req.old_on_failure;
    Ok(ItemWrite {
        table: req.table,
        key,
        origin: WriteOrigin::Request,
        decide: Box::new(move |current| {
            hold(condition.as_ref(), current, old_on_failure)?;
            Ok(WriteAction::Put(item))
        }),
    })
}

pub(crate) async fn put_item(
    events: &Events,
    principal: Principal<'_>,
    req: PutItem,
) -> OpRes<Option<Item>> {
    check(principal, "dynamodb:PutItem", &req.table)?;
    let return_values = req.return_values;
    if !matches!(return_values, ReturnValues::None | ReturnValues::AllOld) {
        return Err(
            TableError::Validation("ReturnValues can only be ALL_OLD or NONE".to_owned()).into(),
        );
    }
    let spec = table_spec(events, &req.table).await?;
    let mut write = put_write(req)?;
    write.key = spec.key_of(&write.key)?;
    let mut olds = write_items(events, vec![write]).await?;
    let old = olds.pop().flatten();
    Ok(old.filter(|_| return_values == ReturnValues::AllOld))
}

pub(crate) async fn get_item(
    events: &Events,
    principal: Principal<'_>,
    req: GetItem,
) -> OpRes<Option<Item>> {
    check(principal, "dynamodb:GetItem", &req.table)?;
    let mut placeholders = Placeholders::new(req.placeholders.names, req.placeholders.values);
    let projection = projection(req.projection.as_deref(), &mut placeholders)?;
    placeholders.check_unused()?;
    let keys = vec![(req.table, req.key)];
    // A point read on the calling worker, as KV's reads are (`Events::read_now`): it takes
    // microseconds from the WAL and never waits for a writer, so the hop to the blocking
    // pool would cost more than the read.
    let mut items = events
        .tables
        .get_items(&keys)
        .map_err(TableOpError::Table)?;
    Ok(items.pop().flatten().map(|item| match &projection {
        Some(paths) => expr::project(&item, paths),
        None => item,
    }))
}

fn projection(text: Option<&str>, placeholders: &mut Placeholders) -> OpRes<Option<Vec<Path>>> {
    Ok(match text {
        Some(text) => Some(expr::parse_projection(text, placeholders)?),
        None => None,
    })
}

/// The write of an UpdateItem, where its new item is left for ReturnValues, and the paths
/// it updates.
struct UpdateWrite {
    write: ItemWrite,
    new_item: Arc<Mutex<Option<Item>>>,
    paths: Vec<Path>,
}

fn update_write(req: UpdateItem, spec: &TableSpec) -> OpRes<UpdateWrite> {
    let mut placeholders = Placeholders::new(req.placeholders.names, req.placeholders.values);
    let update = match req.update.as_deref() {
        Some(text) => expr::parse_update(text, &mut placeholders)?,
        None => expr::Update::default(),
    };
    let condition = condition(req.condition.as_deref(), &mut placeholders)?;
    placeholders.check_unused()?;
    let mut paths: Vec<Path> = update.set.iter().map(|(p, _)| p.clone()).collect();
    paths.extend(update.remove.iter().cloned());
    paths.extend(update.add.iter().map(|(p, _)| p.clone()));
    paths.extend(update.delete.iter().map(|(p, _)| p.clone()));
    for path in &paths {
        if spec.is_key(path.top()) {
            return Err(TableError::Validation(format!(
                "One or more parameter values were invalid: Cannot update attribute {}. This attribute is part of the key",
                path.top()
            ))
            .into());
        }
    }
    spec.check_key(&req.key)?;
    let new_item = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&new_item);
    let key = req.key.clone();
    let old_on_failure = req.old_on_failure;
    let write = ItemWrite {
        table: req.table,
        key: req.key,
        origin: WriteOrigin::Request,
        decide: Box::new(move |current| {
            hold(condition.as_ref(), current, old_on_failure)?;
            let mut base = current.cloned().unwrap_or_default();
            // An update creates the item from its key when it is absent.
            base.extend(key.clone());
            let new =
                expr::apply_update(&update, &base).map_err(|e| TableError::Validation(e.0))?;
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(new.clone());
            Ok(WriteAction::Put(new))
        }),
    };
    Ok(UpdateWrite {
        write,
        new_item,
        paths,
    })
}

pub(crate) async fn update_item(
    events: &Events,
    principal: Principal<'_>,
    req: UpdateItem,
) -> OpRes<Option<Item>> {
    check(principal, "dynamodb:UpdateItem", &req.table)?;
    let spec = table_spec(events, &req.table).await?;
    let return_values = req.return_values;
    let UpdateWrite {
        write,
        new_item,
        paths,
    } = update_write(req, &spec)?;
    let mut olds = write_items(events, vec![write]).await?;
    let old = olds.pop().flatten();
    let new = new_item
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    Ok(match return_values {
        ReturnValues::None => None,
        ReturnValues::AllOld => old,
        ReturnValues::AllNew => new,
        ReturnValues::UpdatedOld => old.map(|old| expr::project(&old, &paths)),
        ReturnValues::UpdatedNew => new.map(|new| expr::project(&new, &paths)),
    })
}

fn delete_write(req: DeleteItem) -> OpRes<ItemWrite> {
    let mut placeholders = Placeholders::new(req.placeholders.names, req.placeholders.values);
    let condition = condition(req.condition.as_deref(), &mut placeholders)?;
    placeholders.check_unused()?;
    let old_on_failure = req.old_on_failure;
    Ok(ItemWrite {
        table: req.table,
        key: req.key,
        origin: WriteOrigin::Request,
        decide: Box::new(move |current| {
            hold(condition.as_ref(), current, old_on_failure)?;
            Ok(WriteAction::Delete)
        }),
    })
}

pub(crate) async fn delete_item(
    events: &Events,
    principal: Principal<'_>,
    req: DeleteItem,
) -> OpRes<Option<Item>> {
    check(principal, "dynamodb:DeleteItem", &req.table)?;
    let return_values = req.return_values;
    if !matches!(return_values, ReturnValues::None | ReturnValues::AllOld) {
        return Err(
            TableError::Validation("ReturnValues can only be ALL_OLD or NONE".to_owned()).into(),
        );
    }
    let write = delete_write(req)?;
    let mut olds = write_items(events, vec![write]).await?;
    Ok(olds
        .pop()
        .flatten()
        .filter(|_| return_values == ReturnValues::AllOld))
}

/// A Query or Scan page: read, filter, project.
pub(crate) async fn read(
    events: &Events,
    principal: Principal<'_>,
    req: Read,
) -> OpRes<ReadOutput> {
    let action = if req.key_condition.is_some() {
        "dynamodb:Query"
    } else {
        "dynamodb:Scan"
    };
    authorize(
        principal,
        &Access::table(action, &req.table, req.index.as_deref()),
    )?;
    let spec = table_spec(events, &req.table).await?;
    let index = match &req.index {
        Some(name) => Some(spec.index(name).cloned().ok_or_else(|| {
            TableError::Validation(format!(
                "The table does not have the specified index: {name}"
            ))
        })?),
        None => None,
    };
    let mut placeholders = Placeholders::new(req.placeholders.names, req.placeholders.values);
    let (partition_key, sort_key) = match &index {
        Some(index) => (&index.partition_key, index.sort_key.as_ref()),
        None => (&spec.partition_key, spec.sort_key.as_ref()),
    };
    let key_condition = match req.key_condition.as_deref() {
        Some(text) => Some(expr::parse_condition(
            text,
            ExprKind::KeyCondition,
            &mut placeholders,
        )?),
        None => None,
    };
    let filter = match req.filter.as_deref() {
        Some(text) => Some(expr::parse_condition(
            text,
            ExprKind::Filter,
            &mut placeholders,
        )?),
        None => None,
    };
    let projection = projection(req.projection.as_deref(), &mut placeholders)?;
    placeholders.check_unused()?;
    // Every expression parses before the key condition's meaning is checked, as DynamoDB
    // reports an empty filter or an unused placeholder first.
    let (partition, sort) = match &key_condition {
        Some(condition) => {
            let (partition, sort) = key_range(
                condition,
                &partition_key.name,
                sort_key.map(|k| k.name.as_str()),
            )?;
            (Some(partition), sort)
        }
        None => (None, SortRange::All),
    };
    if req.limit == Some(0) {
        return Err(TableError::Validation(
            "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1".to_owned(),
        )
        .into());
    }
    let query = KeyQuery {
        table: req.table,
        index: req.index,
        partition,
        sort,
        forward: req.forward,
        start_after: req.start,
        limit: req.limit,
    };
    let page: ItemPage = run(events, move |tables| tables.query(&query)).await?;
    let scanned_count = page.items.len();
    let mut items = Vec::new();
    for item in page.items {
        if let Some((segment, total)) = req.segment
            && segment_of(&item, &spec.partition_key.name, total) != segment
        {
            continue;
        }
        if let Some(filter) = &filter
            && !expr::eval(filter, &item)
        {
            continue;
        }
        let item = match &index {
            Some(index) => index_projection(&spec, index, item),
            None => item,
        };
        items.push(match &projection {
            Some(paths) => expr::project(&item, paths),
            None => item,
        });
    }
    let count = items.len();
    if req.count_only {
        items.clear();
    }
    Ok(ReadOutput {
        items,
        count,
        scanned_count,
        last_evaluated_key: page.last_evaluated_key,
    })
}

/// What an index projects of an item: its keys, the table's keys, and the included.
fn index_projection(spec: &TableSpec, index: &nimbus_core::tables::IndexSpec, item: Item) -> Item {
    let included: Vec<&str> = match &index.projection {
        Projection::All => return item,
        Projection::KeysOnly => Vec::new(),
        Projection::Include(names) => names.iter().map(String::as_str).collect(),
    };
    item.into_iter()
        .filter(|(name, _)| {
            spec.is_key(name)
                || index.partition_key.name == *name
                || index.sort_key.as_ref().is_some_and(|k| k.name == *name)
                || included.contains(&name.as_str())
        })
        .collect()
}

/// Which of `total` Scan segments an item falls in, by a hash of its partition key.
fn segment_of(item: &Item, partition_key: &str, total: u32) -> u32 {
    let bytes = item
        .get(partition_key)
        .and_then(nimbus_core::tables::key_bytes)
        .unwrap_or_default();
    // FNV-1a: stable across runs and processes, unlike the std hasher.
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % u64::from(total.max(1))) as u32
}

/// The partition key value and sort key range of a KeyConditionExpression.
fn key_range(
    condition: &Condition,
    partition_key: &str,
    sort_key: Option<&str>,
) -> OpRes<(AttributeValue, SortRange)> {
    let mut parts = Vec::new();
    flatten_and(condition, &mut parts);
    let unsupported = || TableError::Validation("Query key condition not supported".to_owned());
    let mut partition = None;
    let mut sort = None;
    for part in parts {
        let (name, range) = match part {
            Condition::Compare(Operand::Path(path), comparator, Operand::Value(value)) => {
                let range = match comparator {
                    expr::Comparator::Eq => SortRange::Eq(value.clone()),
                    expr::Comparator::Lt => SortRange::Lt(value.clone()),
                    expr::Comparator::Le => SortRange::Le(value.clone()),
                    expr::Comparator::Gt => SortRange::Gt(value.clone()),
                    expr::Comparator::Ge => SortRange::Ge(value.clone()),
                    expr::Comparator::Ne => return Err(TableError::Validation(
                        "Invalid KeyConditionExpression: Invalid operator used in KeyConditionExpression: <>".to_owned(),
                    ).into()),
                };
                (single(path).ok_or_else(unsupported)?, range)
            }
            Condition::Compare(Operand::Path(_), _, Operand::Path(_)) => {
                return Err(TableError::Validation(
                    "Invalid KeyConditionExpression: Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition".to_owned(),
                )
                .into());
            }
            Condition::Between(Operand::Path(path), Operand::Value(low), Operand::Value(high)) => (
                single(path).ok_or_else(unsupported)?,
                SortRange::Between(low.clone(), high.clone()),
            ),
            Condition::BeginsWith(Operand::Path(path), Operand::Value(prefix)) => (
                single(path).ok_or_else(unsupported)?,
                SortRange::BeginsWith(prefix.clone()),
            ),
            _ => return Err(unsupported().into()),
        };
        if name == partition_key {
            match range {
                SortRange::Eq(value) if partition.is_none() => partition = Some(value),
                _ => return Err(unsupported().into()),
            }
        } else if Some(name) == sort_key && sort.is_none() {
            sort = Some(range);
        } else {
            return Err(TableError::Validation(format!(
                "Query condition missed key schema element: {}",
                if partition.is_none() {
                    partition_key
                } else {
                    sort_key.unwrap_or(partition_key)
                }
            ))
            .into());
        }
    }
    // A key is never an empty string or binary, so asking for one is refused.
    let empty_key = |value: &AttributeValue, name: &str| -> OpRes<()> {
        let empty = match value {
            AttributeValue::S(s) => s.is_empty(),
            AttributeValue::B(b) => b.is_empty(),
            _ => false,
        };
        if empty {
            return Err(TableError::Validation(format!(
                "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: {name}"
            ))
            .into());
        }
        Ok(())
    };
    if let Some(partition) = &partition {
        empty_key(partition, partition_key)?;
    }
    if let (Some(SortRange::Eq(value)), Some(sort_key)) = (&sort, sort_key) {
        empty_key(value, sort_key)?;
    }
    match partition {
        Some(partition) => Ok((partition, sort.unwrap_or(SortRange::All))),
        None => Err(TableError::Validation(format!(
            "Query condition missed key schema element: {partition_key}"
        ))
        .into()),
    }
}

fn single(path: &Path) -> Option<&str> {
    match path.0.as_slice() {
        [expr::Step::Attr(name)] => Some(name),
        _ => None,
    }
}

fn flatten_and<'c>(condition: &'c Condition, out: &mut Vec<&'c Condition>) {
    match condition {
        Condition::And(a, b) => {
            flatten_and(a, out);
            flatten_and(b, out);
        }
        other => out.push(other),
    }
}

/// BatchGetItem: up to 100 keys over tables, each table's keys with their projection.
pub(crate) async fn batch_get(
    events: &Events,
    principal: Principal<'_>,
    requests: Vec<GetItem>,
) -> OpRes<Vec<(String, Item)>> {
    if requests.len() > 100 {
        return Err(TableError::Validation(
            "Too many items requested for the BatchGetItem call".to_owned(),
        )
        .into());
    }
    let mut keys = Vec::with_capacity(requests.len());
    let mut projections = Vec::with_capacity(requests.len());
    for req in requests {
        check(principal, "dynamodb:BatchGetItem", &req.table)?;
        let mut placeholders = Placeholders::new(req.placeholders.names, req.placeholders.values);
        projections.push(projection(req.projection.as_deref(), &mut placeholders)?);
        placeholders.check_unused()?;
        keys.push((req.table, req.key));
    }
    let tables: Vec<String> = keys.iter().map(|(t, _)| t.clone()).collect();
    let items = run(events, move |store| store.get_items(&keys)).await?;
    Ok(items
        .into_iter()
        .zip(tables)
        .zip(projections)
        .filter_map(|((item, table), projection)| {
            let item = item?;
            Some((
                table,
                match &projection {
                    Some(paths) => expr::project(&item, paths),
                    None => item,
                },
            ))
        })
        .collect())
}

/// BatchWriteItem: up to 25 puts and deletes, written together.
pub(crate) async fn batch_write(
    events: &Events,
    principal: Principal<'_>,
    requests: Vec<(String, BatchWrite)>,
) -> OpRes<()> {
    if requests.is_empty() || requests.len() > 25 {
        return Err(TableError::Validation(
            "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 25, Member must have length greater than or equal to 1]".to_owned(),
        )
        .into());
    }
    let mut specs: BTreeMap<String, TableSpec> = BTreeMap::new();
    let mut writes = Vec::with_capacity(requests.len());
    for (table, request) in requests {
        check(principal, "dynamodb:BatchWriteItem", &table)?;
        if !specs.contains_key(&table) {
            specs.insert(table.clone(), table_spec(events, &table).await?);
        }
        let spec = &specs[&table];
        writes.push(match request {
            BatchWrite::Put(item) => ItemWrite {
                table,
                key: spec.key_of(&item)?,
                origin: WriteOrigin::Request,
                decide: Box::new(move |_| Ok(WriteAction::Put(item))),
            },
            BatchWrite::Delete(key) => ItemWrite {
                table,
                key,
                origin: WriteOrigin::Request,
                decide: Box::new(|_| Ok(WriteAction::Delete)),
            },
        });
    }
    write_items(events, writes).await?;
    Ok(())
}

/// TransactWriteItems: up to 100 writes and condition checks, all or nothing.
pub(crate) async fn transact_write(
    events: &Events,
    principal: Principal<'_>,
    requests: Vec<TransactWrite>,
) -> OpRes<()> {
    if requests.is_empty() || requests.len() > 100 {
        return Err(TableError::Validation(
            "1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to 100".to_owned(),
        )
        .into());
    }
    let mut writes = Vec::with_capacity(requests.len());
    for request in requests {
        let write = match request {
            TransactWrite::Put(req) => {
                check(principal, "dynamodb:PutItem", &req.table)?;
                let spec = table_spec(events, &req.table).await?;
                let mut write = put_write(req)?;
                write.key = spec.key_of(&write.key)?;
                write
            }
            TransactWrite::Update(req) => {
                check(principal, "dynamodb:UpdateItem", &req.table)?;
                let spec = table_spec(events, &req.table).await?;
                update_write(req, &spec)?.write
            }
            TransactWrite::Delete(req) => {
                check(principal, "dynamodb:DeleteItem", &req.table)?;
                delete_write(req)?
            }
            TransactWrite::Check {
                table,
                key,
                condition: text,
                placeholders,
                old_on_failure,
            } => {
                check(principal, "dynamodb:ConditionCheckItem", &table)?;
                let mut placeholders = Placeholders::new(placeholders.names, placeholders.values);
                let condition =
                    expr::parse_condition(&text, ExprKind::Condition, &mut placeholders)?;
                placeholders.check_unused()?;
                ItemWrite {
                    table,
                    key,
                    origin: WriteOrigin::Request,
                    decide: Box::new(move |current| {
                        hold(Some(&condition), current, old_on_failure)?;
                        Ok(WriteAction::Keep)
                    }),
                }
            }
        };
        writes.push(write);
    }
    // A single-item transaction still reports its failure as a cancellation.
    let n_writes = writes.len();
    match write_items(events, writes).await {
        Err(TableOpError::Table(TableError::ConditionFailed(item))) if n_writes == 1 => Err(
            TableError::Cancelled(vec![nimbus_core::tables::CancelReason {
                code: Some("ConditionalCheckFailed"),
                message: Some("The conditional request failed".to_owned()),
                item,
            }])
            .into(),
        ),
        other => other.map(|_| ()),
    }
}

/// TransactGetItems: items read from one snapshot.
pub(crate) async fn transact_get(
    events: &Events,
    principal: Principal<'_>,
    requests: Vec<GetItem>,
) -> OpRes<Vec<Option<Item>>> {
    let mut keys = Vec::with_capacity(requests.len());
    let mut projections = Vec::with_capacity(requests.len());
    for req in requests {
        check(principal, "dynamodb:GetItem", &req.table)?;
        let mut placeholders = Placeholders::new(req.placeholders.names, req.placeholders.values);
        projections.push(projection(req.projection.as_deref(), &mut placeholders)?);
        placeholders.check_unused()?;
        keys.push((req.table, req.key));
    }
    let items = run(events, move |tables| tables.get_items(&keys)).await?;
    Ok(items
        .into_iter()
        .zip(projections)
        .map(|(item, projection)| {
            item.map(|item| match &projection {
                Some(paths) => expr::project(&item, paths),
                None => item,
            })
        })
        .collect())
}

/// Which kind of secondary index an index is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexKind {
    /// A global secondary index; `projects_all` when its projection is ALL.
    Global {
        projects_all: bool,
    },
    Local,
}

/// The kind of `index` of `table`, `None` when the table has no such index: for Query and
/// Scan's checks that depend on it (no consistent reads of a global index) and their
/// ConsumedCapacity. The caller has already read the table with its grants.
pub(crate) async fn index_kind(
    events: &Events,
    table: &str,
    index: &str,
) -> OpRes<Option<IndexKind>> {
    let spec = describe(events, table).await?.spec;
    if let Some(global) = spec.global_indexes.iter().find(|i| i.name == index) {
        return Ok(Some(IndexKind::Global {
            projects_all: global.projection == Projection::All,
        }));
    }
    Ok(spec
        .local_indexes
        .iter()
        .any(|i| i.name == index)
        .then_some(IndexKind::Local))
}
