//! The services API's table bodies: `/v1/tables`, with items as plain JSON, as the
//! document clients write them (strings, numbers, booleans, null, lists and maps; binary
//! values come out as base64 text and sets as lists).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /v1/tables`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableList {
    pub tables: Vec<TableSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableSummary {
    pub item_count: u64,
    pub name: String,
    pub partition_key: String,
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_view_type: Option<String>,
}

/// `POST /v1/tables/{table}/get` and `/delete`: an item's key attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableKey {
    pub key: Value,
}

/// `PUT /v1/tables/{table}/items`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutTableItem {
    pub item: Value,
}

/// What a get or delete answers: the item (as it was, for a delete), or `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableItem {
    pub item: Option<Value>,
}

/// `POST /v1/tables/{table}/query` (with `keyCondition`) and `/scan`: DynamoDB's
/// expressions, with the placeholders' values as plain JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadTable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// `#name` placeholders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, String>,
    /// `:value` placeholders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The `lastKey` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_key: Option<Value>,
    /// Descending sort key order when `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<bool>,
}

/// A page of items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableItems {
    pub count: usize,
    pub items: Vec<Value>,
    /// The `startKey` of the next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<Value>,
}
