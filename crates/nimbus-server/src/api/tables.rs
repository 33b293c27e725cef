//! The services API's tables: list them, get, put and delete items, query and scan
//! (`nimbus table`), with items as plain JSON rather than DynamoDB's typed JSON.

use axum::extract::Path;
use base64::Engine as _;
use http::StatusCode;
use nimbus_core::tables::{AttributeValue, Item, Number, TableError};
use serde_json::Value;

use super::{Caller, Json, wire};
use crate::error::ApiError;
use crate::events::Events;
use crate::services::tables::{
    self as ops, DeleteItem, GetItem, Placeholder, PutItem, Read, ReturnValues, TableOpError,
};
use crate::services::{Principal, bad_request};

pub(super) async fn list_tables(caller: Caller) -> Result<Json<wire::TableList>, ApiError> {
    table_list(caller.events(), caller.principal())
        .await
        .map(Json)
}

/// Every table the caller may list, with its key schema and size (also the dashboard's).
pub(crate) async fn table_list(
    events: &Events,
    principal: Principal<'_>,
) -> Result<wire::TableList, ApiError> {
    let names = ops::list_tables(events, principal)
        .await
        .map_err(table_error)?;
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        let description = match ops::describe_table(events, principal, &name).await {
            Ok(description) => description,
            // Dropped between the list and the describe.
            Err(TableOpError::Table(TableError::NotFound(_))) => continue,
            Err(e) => return Err(table_error(e)),
        };
        let spec = description.spec;
        tables.push(wire::TableSummary {
            item_count: description.item_count,
            name: spec.name,
            partition_key: spec.partition_key.name,
            size_bytes: description.size_bytes,
            sort_key: spec.sort_key.map(|key| key.name),
            stream_view_type: spec.stream_view,
        });
    }
    Ok(wire::TableList { tables })
}

pub(super) async fn get_item(
    caller: Caller,
    Path(table): Path<String>,
    Json(request): Json<wire::TableKey>,
) -> Result<Json<wire::TableItem>, ApiError> {
    let get = GetItem {
        table,
        key: to_item(&request.key, "key")?,
        projection: None,
        placeholders: Placeholder::default(),
    };
    let item = ops::get_item(caller.events(), caller.principal(), get)
        .await
        .map_err(table_error)?;
    Ok(Json(wire::TableItem {
        item: item.as_ref().map(from_item),
    }))
}

pub(super) async fn put_item(
    caller: Caller,
    Path(table): Path<String>,
    Json(request): Json<wire::PutTableItem>,
) -> Result<Json<wire::TableItem>, ApiError> {
    let put = PutItem {
        table,
        item: to_item(&request.item, "item")?,
        condition: None,
        placeholders: Placeholder::default(),
        return_values: ReturnValues::AllOld,
        old_on_failure: false,
    };
    let old = ops::put_item(caller.events(), caller.principal(), put)
        .await
        .map_err(table_error)?;
    Ok(Json(wire::TableItem {
        item: old.as_ref().map(from_item),
    }))
}

pub(super) async fn delete_item(
    caller: Caller,
    Path(table): Path<String>,
    Json(request): Json<wire::TableKey>,
) -> Result<Json<wire::TableItem>, ApiError> {
    let delete = DeleteItem {
        table,
        key: to_item(&request.key, "key")?,
        condition: None,
        placeholders: Placeholder::default(),
        return_values: ReturnValues::AllOld,
        old_on_failure: false,
    };
    let old = ops::delete_item(caller.events(), caller.principal(), delete)
        .await
        .map_err(table_error)?;
    Ok(Json(wire::TableItem {
        item: old.as_ref().map(from_item),
    }))
}

pub(super) async fn query(
    caller: Caller,
    Path(table): Path<String>,
    Json(request): Json<wire::ReadTable>,
) -> Result<Json<wire::TableItems>, ApiError> {
    if request.key_condition.is_none() {
        return Err(bad_request("a query needs a keyCondition"));
    }
    read(caller, table, request).await
}

pub(super) async fn scan(
    caller: Caller,
    Path(table): Path<String>,
    Json(request): Json<wire::ReadTable>,
) -> Result<Json<wire::TableItems>, ApiError> {
    if request.key_condition.is_some() {
        return Err(bad_request("a scan takes no keyCondition; query instead"));
    }
    read(caller, table, request).await
}

async fn read(
    caller: Caller,
    table: String,
    request: wire::ReadTable,
) -> Result<Json<wire::TableItems>, ApiError> {
    read_items(caller.events(), caller.principal(), table, request)
        .await
        .map(Json)
}

/// A query or scan of `table`, items as plain JSON (also the dashboard's table browser).
pub(crate) async fn read_items(
    events: &Events,
    principal: Principal<'_>,
    table: String,
    request: wire::ReadTable,
) -> Result<wire::TableItems, ApiError> {
    let mut placeholders = Placeholder {
        names: request.names,
        ..Placeholder::default()
    };
    for (name, value) in &request.values {
        let value = to_attribute(value).map_err(|e| bad_request(format!("values.{name}: {e}")))?;
        placeholders.values.insert(name.clone(), value);
    }
    let read = Read {
        table,
        index: request.index,
        key_condition: request.key_condition,
        filter: request.filter,
        projection: None,
        placeholders,
        forward: request.forward.unwrap_or(true),
        limit: request.limit,
        start: request
            .start_key
            .as_ref()
            .map(|key| to_item(key, "startKey"))
            .transpose()?,
        count_only: false,
        segment: None,
    };
    let output = ops::read(events, principal, read)
        .await
        .map_err(table_error)?;
    Ok(wire::TableItems {
        count: output.count,
        items: output.items.iter().map(from_item).collect(),
        last_key: output.last_evaluated_key.as_ref().map(from_item),
    })
}

/// How the services API answers a failed table operation: DynamoDB's error names.
fn table_error(e: TableOpError) -> ApiError {
    let bad = StatusCode::BAD_REQUEST;
    match e {
        TableOpError::Denied(e) => e,
        TableOpError::Table(e) => match e {
            TableError::NotFound(_) => ApiError::typed(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                e.to_string(),
            ),
            TableError::InUse(_) => ApiError::typed(
                StatusCode::CONFLICT,
                "ResourceInUseException",
                e.to_string(),
            ),
            TableError::Validation(message) => ApiError::typed(bad, "ValidationException", message),
            TableError::ConditionFailed(_) => {
                ApiError::typed(bad, "ConditionalCheckFailedException", e.to_string())
            }
            TableError::Cancelled(_) => {
                ApiError::typed(bad, "TransactionCanceledException", e.to_string())
            }
            TableError::Internal(message) => ApiError::platform(message),
        },
    }
}

/// A plain JSON object as an item.
fn to_item(value: &Value, field: &str) -> Result<Item, ApiError> {
    let Value::Object(fields) = value else {
        return Err(bad_request(format!("{field} must be a JSON object")));
    };
    let mut item = Item::new();
    for (name, value) in fields {
        let value = to_attribute(value).map_err(|e| bad_request(format!("{field}.{name}: {e}")))?;
        item.insert(name.clone(), value);
    }
    Ok(item)
}

/// Plain JSON as an attribute value: strings S, numbers N, booleans, null, lists L and
/// objects M, as the document clients map them.
fn to_attribute(value: &Value) -> Result<AttributeValue, String> {
    Ok(match value {
        Value::String(text) => AttributeValue::S(text.clone()),
        Value::Number(n) => {
            AttributeValue::N(Number::parse(&n.to_string()).map_err(|e| e.to_string())?)
        }
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Null => AttributeValue::Null,
        Value::Array(items) => {
            AttributeValue::L(items.iter().map(to_attribute).collect::<Result<_, _>>()?)
        }
        Value::Object(fields) => AttributeValue::M(
            fields
                .iter()
                .map(|(name, value)| Ok((name.clone(), to_attribute(value)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

fn from_item(item: &Item) -> Value {
    Value::Object(
        item.iter()
            .map(|(name, value)| (name.clone(), from_attribute(value)))
            .collect(),
    )
}

/// An attribute value as plain JSON: a number stays a JSON number when JSON can hold it
/// exactly, else it is its decimal text; binary is base64 text, sets are lists.
fn from_attribute(value: &AttributeValue) -> Value {
    let number = |n: &Number| {
        let text = n.to_string();
        match text.parse::<i64>() {
            Ok(int) => Value::from(int),
            Err(_) => match text.parse::<f64>() {
                Ok(float) if float.is_finite() && float.to_string() == text => Value::from(float),
                _ => Value::String(text),
            },
        }
    };
    let binary =
        |bytes: &Vec<u8>| Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    match value {
        AttributeValue::S(text) => Value::String(text.clone()),
        AttributeValue::N(n) => number(n),
        AttributeValue::B(bytes) => binary(bytes),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null => Value::Null,
        AttributeValue::M(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), from_attribute(value)))
                .collect(),
        ),
        AttributeValue::L(items) => Value::Array(items.iter().map(from_attribute).collect()),
        AttributeValue::Ss(texts) => {
            Value::Array(texts.iter().cloned().map(Value::String).collect())
        }
        AttributeValue::Ns(numbers) => Value::Array(numbers.iter().map(number).collect()),
        AttributeValue::Bs(values) => Value::Array(values.iter().map(binary).collect()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn plain_json_items_map_as_the_document_clients_map_them() {
        let plain = json!({
            "id": "a", "n": 12, "f": 0.5, "ok": true, "none": null,
            "tags": ["x", 1], "meta": { "deep": { "k": "v" } },
        });
        let item = to_item(&plain, "item").expect("an item");
        assert_eq!(
            item.get("n"),
            Some(&AttributeValue::N(Number::parse("12").expect("n")))
        );
        assert_eq!(from_item(&item), plain);
        let big =
            AttributeValue::N(Number::parse("12345678901234567890123456789012345678").expect("n"));
        assert_eq!(
            from_attribute(&big),
            json!("12345678901234567890123456789012345678")
        );
        assert_eq!(
            from_attribute(&AttributeValue::Ss(vec!["a".to_owned()])),
            json!(["a"])
        );
        assert!(to_item(&json!([1]), "item").is_err());
    }
}
