//! Tables with DynamoDB's data model: the attribute values (`value`), its exact numbers
//! (`number`), what a table declares (`TableSpec`, from the manifest or CreateTable), and
//! the [`TableStore`] trait a storage backend implements.
//!
//! The trait is the seam between the DynamoDB protocol in the server and storage: the
//! embedded SQLite store implements it, and a clustered backend could. Its calls are
//! synchronous (callers run them off the async workers), and every write is atomic: the
//! caller's decision closure sees the current item inside the write's transaction, so a
//! condition and the write it guards cannot be separated by another writer.

pub mod number;
pub mod value;

use std::fmt;

pub use number::{Number, NumberError};
pub use value::{AttributeValue, Item, ValueType, item_from_json, item_size, item_to_json};

/// DynamoDB's largest item, names and values together.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// The most a Query or Scan page reads before it stops (DynamoDB's 1 MB).
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;
/// DynamoDB's longest partition key value, in bytes.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// DynamoDB's longest sort key value, in bytes.
pub const MAX_SORT_KEY_BYTES: usize = 1024;

/// A table: its keys, indexes and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The table's name.
    pub name: String,
    /// The partition (HASH) key.
    pub partition_key: KeyAttribute,
    /// The sort (RANGE) key, when the table has one.
    pub sort_key: Option<KeyAttribute>,
    /// Global secondary indexes.
    pub global_indexes: Vec<IndexSpec>,
    /// Local secondary indexes (same partition key as the table).
    pub local_indexes: Vec<IndexSpec>,
    /// The attribute holding an item's expiry (epoch seconds), when TTL is enabled.
    pub ttl_attribute: Option<String>,
    /// What the table's change records hold (`StreamSpecification.StreamViewType`:
    /// `KEYS_ONLY`, `NEW_IMAGE`, `OLD_IMAGE` or `NEW_AND_OLD_IMAGES`); `None` without a stream.
    pub stream_view: Option<String>,
}

/// A key attribute and the scalar type its values must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttribute {
    /// The attribute's name.
    pub name: String,
    /// `S`, `N` or `B`.
    pub kind: ScalarType,
}

/// The types a key attribute may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    /// A string.
    S,
    /// A number.
    N,
    /// Binary.
    B,
}

/// A secondary index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// The index's name.
    pub name: String,
    /// Its partition key.
    pub partition_key: KeyAttribute,
    /// Its sort key.
    pub sort_key: Option<KeyAttribute>,
    /// Which attributes a read through the index returns.
    pub projection: Projection,
}

/// Which attributes an index projects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    /// Every attribute.
    All,
    /// The table's and the index's keys.
    KeysOnly,
    /// The keys and these attributes.
    Include(Vec<String>),
}

/// A table as it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDescription {
    /// What the table declares.
    pub spec: TableSpec,
    /// When it was created, in seconds since the Unix epoch.
    pub created_at: f64,
    /// How many items it holds.
    pub item_count: u64,
    /// Their size in bytes.
    pub size_bytes: u64,
}

/// What a write does to an item, decided by the caller from the item's current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteAction {
    /// Store this item (its key is the write's key).
    Put(Item),
    /// Delete the item.
    Delete,
    /// Leave it as it is.
    Keep,
}

/// Decides a write from the current item (`None` when absent); an error (a failed
/// condition) cancels the write.
pub type Decide = Box<dyn FnOnce(Option<&Item>) -> Result<WriteAction, TableError> + Send>;

/// One item to write: where, and how to decide what to write.
pub struct ItemWrite {
    /// The table.
    pub table: String,
    /// The item's primary key (its key attributes only).
    pub key: Item,
    /// The decision, made inside the write's transaction.
    pub decide: Decide,
    /// Who writes: the table's change record says so for deletions by TTL.
    pub origin: WriteOrigin,
}

/// Who makes a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOrigin {
    /// A request to the table.
    Request,
    /// The table's time to live: its change record names the service as the writer
    /// (`userIdentity: { type: Service, principalId: dynamodb.amazonaws.com }`).
    TimeToLive,
}

/// A range of a table or index to read in key order: a Query (with a partition key) or a
/// Scan (without).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQuery {
    /// The table.
    pub table: String,
    /// The index to read through, if any.
    pub index: Option<String>,
    /// The partition key value; `None` reads every partition (a Scan).
    pub partition: Option<AttributeValue>,
    /// Which sort keys of the partition.
    pub sort: SortRange,
    /// Ascending sort key order (`ScanIndexForward`).
    pub forward: bool,
    /// Read after this key (`ExclusiveStartKey`): the table's key attributes, plus the
    /// index's when reading an index.
    pub start_after: Option<Item>,
    /// At most this many items (`Limit`).
    pub limit: Option<usize>,
}

/// A condition on the sort key, as a KeyConditionExpression has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortRange {
    /// Any sort key.
    All,
    /// `= v`.
    Eq(AttributeValue),
    /// `< v`.
    Lt(AttributeValue),
    /// `<= v`.
    Le(AttributeValue),
    /// `> v`.
    Gt(AttributeValue),
    /// `>= v`.
    Ge(AttributeValue),
    /// `BETWEEN low AND high`, inclusive.
    Between(AttributeValue, AttributeValue),
    /// `begins_with(sk, prefix)` (strings and binary).
    BeginsWith(AttributeValue),
}

/// Items read in key order, and where to go on from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemPage {
    /// Whole items, in order.
    pub items: Vec<Item>,
    /// The key of the last item read, when the read stopped at its limit or the 1 MB page
    /// before the end of the range.
    pub last_evaluated_key: Option<Item>,
}

/// Why a table operation failed; messages are DynamoDB's where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableError {
    /// The table (or index) does not exist.
    NotFound(String),
    /// A table of that name exists already.
    InUse(String),
    /// The request breaks a rule.
    Validation(String),
    /// A condition did not hold; the item as it was, when asked for.
    ConditionFailed(Option<Item>),
    /// A transaction was cancelled: one reason per item, in order.
    Cancelled(Vec<CancelReason>),
    /// The store failed.
    Internal(String),
}

/// Why one item of a cancelled transaction failed, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelReason {
    /// `None` for an item that did not fail, else `ConditionalCheckFailed`, `ValidationError`, ...
    pub code: Option<&'static str>,
    /// The message, for a failed item.
    pub message: Option<String>,
    /// The item as it was, for a failed condition.
    pub item: Option<Item>,
}

/// Storage of tables. Every write is one transaction; see the module documentation.
pub trait TableStore: Send + Sync {
    /// Creates the table unless a table of that name exists; items of an existing one are kept.
    fn ensure_table(&self, spec: &TableSpec) -> Result<(), TableError>;
    /// Creates a table; `InUse` if it exists.
    fn create_table(&self, spec: &TableSpec) -> Result<TableDescription, TableError>;
    /// Describes a table, with its item count and size.
    fn describe_table(&self, table: &str) -> Result<TableDescription, TableError>;
    /// A table's keys and indexes: a point read, for the paths that run per request.
    fn table_spec(&self, table: &str) -> Result<TableSpec, TableError>;
    /// Every table's name, in order.
    fn list_tables(&self) -> Result<Vec<String>, TableError>;
    /// Deletes a table and its items.
    fn delete_table(&self, table: &str) -> Result<TableDescription, TableError>;
    /// Reads items by primary key, from one snapshot; `None` for an absent item.
    fn get_items(&self, keys: &[(String, Item)]) -> Result<Vec<Option<Item>>, TableError>;
    /// Writes items in one transaction, all or nothing: each write's `decide` sees the
    /// current item. A failing decision cancels all writes; one write's error comes back as
    /// it is, several writes' as `Cancelled`. Returns each item as it was before.
    fn write_items(&self, writes: Vec<ItemWrite>) -> Result<Vec<Option<Item>>, TableError>;
    /// Reads a range of a table or index in key order, up to `limit` items or 1 MB.
    fn query(&self, query: &KeyQuery) -> Result<ItemPage, TableError>;
}

impl crate::services::Access {
    /// A DynamoDB operation on a table (`dynamodb:PutItem` on `table:todos`), or on one of
    /// its indexes (`table:todos/index/byOwner`), as IAM names index ARNs.
    pub fn table(
        action: &'static str,
        table: &str,
        index: Option<&str>,
    ) -> crate::services::Access {
        let resource = match index {
            Some(index) => format!("table:{table}/index/{index}"),
            None => format!("table:{table}"),
        };
        crate::services::Access { action, resource }
    }
}

impl ScalarType {
    /// DynamoDB's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            ScalarType::S => "S",
            ScalarType::N => "N",
            ScalarType::B => "B",
        }
    }

    /// The type a name stands for.
    pub fn from_name(name: &str) -> Option<ScalarType> {
        match name {
            "S" => Some(ScalarType::S),
            "N" => Some(ScalarType::N),
            "B" => Some(ScalarType::B),
            _ => None,
        }
    }

    fn matches(self, value: &AttributeValue) -> bool {
        matches!(
            (self, value),
            (ScalarType::S, AttributeValue::S(_))
                | (ScalarType::N, AttributeValue::N(_))
                | (ScalarType::B, AttributeValue::B(_))
        )
    }
}

impl TableSpec {
    /// The table's key attributes: partition, then sort.
    pub fn key_attributes(&self) -> impl Iterator<Item = &KeyAttribute> {
        std::iter::once(&self.partition_key).chain(self.sort_key.as_ref())
    }

    /// Whether `name` is one of the table's key attributes.
    pub fn is_key(&self, name: &str) -> bool {
        self.key_attributes().any(|k| k.name == name)
    }

    /// The index called `name`, global or local.
    pub fn index(&self, name: &str) -> Option<&IndexSpec> {
        self.global_indexes
            .iter()
            .chain(&self.local_indexes)
            .find(|index| index.name == name)
    }

    /// The primary key of `item` (its key attributes), checked against the schema.
    pub fn key_of(&self, item: &Item) -> Result<Item, TableError> {
        let mut key = Item::new();
        for attribute in self.key_attributes() {
            let Some(value) = item.get(&attribute.name) else {
                return Err(TableError::Validation(format!(
                    "One or more parameter values were invalid: Missing the key {} in the item",
                    attribute.name
                )));
            };
            check_key_value(attribute, value, "Type mismatch for key")?;
            key.insert(attribute.name.clone(), value.clone());
        }
        Ok(key)
    }

    /// Checks that `key` holds exactly the table's key attributes, of their types.
    pub fn check_key(&self, key: &Item) -> Result<(), TableError> {
        let n_keys = self.key_attributes().count();
        let matches = key.len() == n_keys
            && self.key_attributes().all(|attribute| {
                key.get(&attribute.name)
                    .is_some_and(|value| attribute.kind.matches(value))
            });
        if !matches {
            return Err(TableError::Validation(
                "The provided key element does not match the schema".to_owned(),
            ));
        }
        for attribute in self.key_attributes() {
            if let Some(value) = key.get(&attribute.name) {
                check_key_value(attribute, value, "Type mismatch for key")?;
            }
        }
        Ok(())
    }

    /// Checks an item's index key attributes: present ones must have the index's types.
    pub fn check_index_keys(&self, item: &Item) -> Result<(), TableError> {
        for index in self.global_indexes.iter().chain(&self.local_indexes) {
            for attribute in std::iter::once(&index.partition_key).chain(index.sort_key.as_ref()) {
                if let Some(value) = item.get(&attribute.name) {
                    if !attribute.kind.matches(value) {
                        return Err(TableError::Validation(format!(
                            "One or more parameter values were invalid: Type mismatch for Index Key {} Expected: {} Actual: {} IndexName: {}",
                            attribute.name,
                            attribute.kind.name(),
                            value.value_type().name(),
                            index.name
                        )));
                    }
                    if matches!(value, AttributeValue::S(s) if s.is_empty())
                        || matches!(value, AttributeValue::B(b) if b.is_empty())
                    {
                        return Err(TableError::Validation(format!(
                            "One or more parameter values are not valid. A value specified for a secondary index key is not supported. The AttributeValue for a key attribute cannot contain an empty string value. IndexName: {}, IndexKey: {}",
                            index.name, attribute.name
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The ARN CloudFormation's `Fn::GetAtt [T, Arn]` gives.
    pub fn arn(&self, region: &str) -> String {
        table_arn(region, &self.name)
    }
}

/// `arn:aws:dynamodb:REGION:123456789012:table/NAME`.
pub fn table_arn(region: &str, table: &str) -> String {
    format!(
        "arn:aws:dynamodb:{region}:{}:table/{table}",
        crate::ACCOUNT_ID
    )
}

fn check_key_value(
    attribute: &KeyAttribute,
    value: &AttributeValue,
    mismatch: &str,
) -> Result<(), TableError> {
    if !attribute.kind.matches(value) {
        return Err(TableError::Validation(format!(
            "One or more parameter values were invalid: {mismatch} {} expected: {} actual: {}",
            attribute.name,
            attribute.kind.name(),
            value.value_type().name()
        )));
    }
    let empty = match value {
        AttributeValue::S(s) => s.is_empty(),
        AttributeValue::B(b) => b.is_empty(),
        _ => false,
    };
    if empty {
        return Err(TableError::Validation(format!(
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty {} value. Key: {}",
            if matches!(value, AttributeValue::S(_)) {
                "string"
            } else {
                "binary"
            },
            attribute.name
        )));
    }
    Ok(())
}

/// The bytes of a key value whose order (memcmp) is DynamoDB's order of key values:
/// strings by UTF-8 bytes, binary bytewise, numbers numerically. `None` for a value that
/// cannot be a key.
pub fn key_bytes(value: &AttributeValue) -> Option<Vec<u8>> {
    match value {
        AttributeValue::S(s) => Some(s.as_bytes().to_vec()),
        AttributeValue::B(b) => Some(b.clone()),
        AttributeValue::N(n) => Some(n.key_bytes()),
        _ => None,
    }
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::NotFound(what) => write!(f, "Requested resource not found: {what}"),
            TableError::InUse(table) => write!(f, "Table already exists: {table}"),
            TableError::Validation(message) | TableError::Internal(message) => f.write_str(message),
            TableError::ConditionFailed(_) => f.write_str("The conditional request failed"),
            TableError::Cancelled(reasons) => {
                let codes: Vec<&str> = reasons.iter().map(|r| r.code.unwrap_or("None")).collect();
                write!(
                    f,
                    "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                    codes.join(", ")
                )
            }
        }
    }
}

impl std::error::Error for TableError {}
