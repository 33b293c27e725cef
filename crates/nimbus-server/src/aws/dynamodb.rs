//! DynamoDB's JSON 1.0 protocol (`X-Amz-Target: DynamoDB_20120810.<Operation>`,
//! `application/x-amz-json-1.0`), translated onto the table operations of
//! `services/tables.rs`. Items travel as DynamoDB JSON (`AttributeValue::from_json`).
//!
//! Errors are `{"__type": "com.amazonaws.dynamodb.v20120810#<Code>", "message": ..}` with
//! status 400 (500 for the platform's own failures); the SDKs read the code after `#`.
//! No `x-amz-crc32` is sent: aws-sdk v2 checks it only when present.

use std::collections::{BTreeMap, BTreeSet};

use axum::response::Response;
use http::StatusCode;
use nimbus_core::streams::{stream_label, table_stream_arn};
use nimbus_core::tables::{
    AttributeValue, IndexSpec, Item, KeyAttribute, Projection, ScalarType, TableDescription,
    TableError, TableSpec, item_from_json, item_size, item_to_json, table_arn,
};
use serde_json::{Map, Value as Json, json};

use super::members::{MemberError, MemberReader, lower_first, missing};
use crate::generation::Generation;
use crate::services::Principal;
use crate::services::tables::{
    self as ops, BatchWrite, DeleteItem, GetItem, IndexKind, Placeholder, PutItem, Read,
    ReturnValues, TableOpError, TransactWrite, UpdateItem,
};

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// A DynamoDB error: status, code and message, and the extra fields some carry.
pub(crate) struct DynamoError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: Map<String, Json>,
}

type Res<T> = Result<T, DynamoError>;

pub(crate) async fn handle(
    generation: &Generation,
    principal: Principal<'_>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Response {
    let target = super::target_operation(parts, super::Service::DynamoDb);
    let res = match target {
        Some(operation) => dispatch(generation, principal, operation, body)
            .await
            .map_err(|e| reword(operation, e)),
        None => Err(DynamoError::new(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "a DynamoDB request names its operation in X-Amz-Target: DynamoDB_20120810.<Operation>",
        )),
    };
    match res {
        Ok(json) => super::response(StatusCode::OK, CONTENT_TYPE, json.to_string().into_bytes()),
        Err(e) => e.into_response(),
    }
}

/// One operation with its request as JSON, for Step Functions' DynamoDB integration: the
/// response, or the error's code and message.
pub(crate) async fn operation(
    generation: &Generation,
    principal: Principal<'_>,
    operation: &str,
    request: &Json,
) -> Result<Json, (String, String)> {
    dispatch(
        generation,
        principal,
        operation,
        request.to_string().as_bytes(),
    )
    .await
    .map_err(|e| {
        let e = reword(operation, e);
        (e.code.to_owned(), e.message)
    })
}

async fn dispatch(
    generation: &Generation,
    principal: Principal<'_>,
    operation: &str,
    body: &[u8],
) -> Res<Json> {
    let request: Json = serde_json::from_slice(body).map_err(|e| {
        DynamoError::new(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            format!("the request body is not JSON: {e}"),
        )
    })?;
    let Json::Object(request) = request else {
        return Err(DynamoError::new(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "the request body is not a JSON object",
        ));
    };
    let events = &generation.events;
    let region = &events.region;
    let r = Req(&request);
    let capacity_mode = capacity_mode(&r)?;
    let mut consumed = Consumed::default();
    let mut out = match operation {
        "CreateTable" => {
            let spec = create_table_spec(&r)?;
            let description = ops::create_table(events, principal, spec).await?;
            let stream_created = stream_created(events, &description).await;
            json!({ "TableDescription": describe(&description, region, stream_created) })
        }
        "DescribeTable" => {
            let description = ops::describe_table(events, principal, &r.table()?).await?;
            let stream_created = stream_created(events, &description).await;
            json!({ "Table": describe(&description, region, stream_created) })
        }
        "DeleteTable" => {
            let description = ops::delete_table(events, principal, &r.table()?).await?;
            let mut table = describe(&description, region, None);
            table["TableStatus"] = json!("DELETING");
            json!({ "TableDescription": table })
        }
        "ListTables" => {
            let names = ops::list_tables(events, principal).await?;
            let start = r.optional_string("ExclusiveStartTableName")?;
            let limit = r.optional_usize("Limit")?.unwrap_or(100).clamp(1, 100);
            let rest: Vec<&String> = names
                .iter()
                .filter(|name| start.as_ref().is_none_or(|start| *name > start))
                .collect();
            let page: Vec<&String> = rest.iter().take(limit).copied().collect();
            let mut out = json!({ "TableNames": page });
            if rest.len() > limit
                && let Some(last) = page.last()
            {
                out["LastEvaluatedTableName"] = json!(last);
            }
            out
        }
        "PutItem" => {
            let request = put_request(&r)?;
            consumed.add(&r.string("TableName")?, write_units(&request.item), None);
            let item = ops::put_item(events, principal, request).await?;
            attributes(item)
        }
        "GetItem" => {
            let item = ops::get_item(events, principal, get_request(&r)?).await?;
            let consistent = r.optional_bool("ConsistentRead")?.unwrap_or(false);
            consumed.add(
                &r.string("TableName")?,
                read_units(item.as_ref().map_or(0, item_size), consistent),
                None,
            );
            match item {
                Some(item) => json!({ "Item": item_to_json(&item) }),
                None => json!({}),
            }
        }
        "UpdateItem" => {
            let item = ops::update_item(events, principal, update_request(&r)?).await?;
            consumed.add(&r.string("TableName")?, 1.0, None);
            attributes(item)
        }
        "DeleteItem" => {
            let item = ops::delete_item(events, principal, delete_request(&r)?).await?;
            consumed.add(&r.string("TableName")?, 1.0, None);
            attributes(item)
        }
        "Query" | "Scan" => {
            let query = operation == "Query";
            let segment = match (
                r.optional_usize("Segment")?,
                r.optional_usize("TotalSegments")?,
            ) {
                (Some(segment), Some(total)) if segment < total && total <= 1_000_000 => {
                    Some((segment as u32, total as u32))
                }
                (None, None) => None,
                (Some(_), None) => {
                    return Err(validation(
                        "The TotalSegments parameter is required but was not present in the request when Segment parameter is present",
                    ));
                }
                (None, Some(_)) => {
                    return Err(validation(
                        "The Segment parameter is required but was not present in the request when parameter TotalSegments is present",
                    ));
                }
                (Some(_), Some(total)) if total > 1_000_000 => {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{total}' at 'totalSegments' failed to satisfy constraint: Member must have value less than or equal to 1000000"
                    )));
                }
                (Some(_), Some(_)) => {
                    return Err(validation(
                        "The Segment parameter is zero-based and must be less than parameter TotalSegments",
                    ));
                }
            };
            let select = select(&r)?;
            let table = r.table()?;
            let index = r.optional_string("IndexName")?;
            let consistent = r.optional_bool("ConsistentRead")?.unwrap_or(false);
            let expressions = expressions(&r)?;
            let read = Read {
                table: table.clone(),
                index: index.clone(),
                key_condition: if query {
                    Some(expressions.key_condition.ok_or_else(|| {
                        validation("Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.")
                    })?)
                } else {
                    None
                },
                filter: expressions.filter,
                projection: expressions.projection,
                placeholders: expressions.placeholders,
                forward: r.optional_bool("ScanIndexForward")?.unwrap_or(true),
                limit: r.optional_usize("Limit")?,
                start: r.optional_item("ExclusiveStartKey")?,
                count_only: select.as_deref() == Some("COUNT"),
                segment,
            };
            let output = ops::read(events, principal, read).await?;
            let index_kind = match &index {
                Some(index) => ops::index_kind(events, &table, index).await?,
                None => None,
            };
            if let Some(IndexKind::Global { projects_all }) = index_kind {
                if consistent {
                    return Err(validation(
                        "Consistent reads are not supported on global secondary indexes",
                    ));
                }
                if select.as_deref() == Some("ALL_ATTRIBUTES") && !projects_all {
                    return Err(validation(format!(
                        "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not supported for global secondary index {} because its projection type is not ALL",
                        index.as_deref().unwrap_or_default()
                    )));
                }
            }
            let n_bytes = output.items.iter().map(item_size).sum();
            let index_units = index.zip(index_kind).map(|(name, kind)| (kind, name));
            consumed.add(
                &r.string("TableName")?,
                read_units(n_bytes, consistent),
                index_units,
            );
            let mut out = json!({ "Count": output.count, "ScannedCount": output.scanned_count });
            if select.as_deref() != Some("COUNT") {
                out["Items"] = Json::Array(output.items.iter().map(item_to_json).collect());
            }
            if let Some(key) = &output.last_evaluated_key {
                out["LastEvaluatedKey"] = item_to_json(key);
            }
            out
        }
        "BatchGetItem" => {
            let request_items = r.object("RequestItems")?;
            let mut requests = Vec::new();
            // The caller's name for each table (a name or an ARN), which keys the answer,
            // and the attribute names of its keys.
            let mut given: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
            // Per table as the caller named it: keys asked for, bytes found.
            let mut reads: BTreeMap<String, (usize, usize)> = BTreeMap::new();
            for (table, spec) in request_items {
                let name = table_name(table);
                let spec = Req(object_of(spec, "RequestItems")?);
                let keys = spec.array("Keys")?;
                if keys.len() > 100 {
                    return Err(validation(format!(
                        "1 validation error detected: Value at 'requestItems.{table}.member.keys' failed to satisfy constraint: Member must have length less than or equal to 100"
                    )));
                }
                let mut seen = BTreeSet::new();
                let mut key_names = Vec::new();
                let expressions = expressions(&spec)?;
                for key in keys {
                    let key = item_of(key, "Keys")?;
                    if !seen.insert(item_to_json(&key).to_string()) {
                        return Err(validation("Provided list of item keys contains duplicates"));
                    }
                    key_names = key.keys().cloned().collect();
                    requests.push(GetItem {
                        table: name.clone(),
                        key,
                        projection: expressions.projection.clone(),
                        placeholders: Placeholder {
                            names: expressions.placeholders.names.clone(),
                            values: expressions.placeholders.values.clone(),
                        },
                    });
                }
                given.insert(name, (table.clone(), key_names));
                reads.insert(table.clone(), (keys.len(), 0));
            }
            let found = ops::batch_get(events, principal, requests).await?;
            let mut responses: BTreeMap<String, Vec<Json>> = BTreeMap::new();
            let mut unprocessed: BTreeMap<String, Vec<Json>> = BTreeMap::new();
            for (caller_name, _) in given.values() {
                responses.entry(caller_name.clone()).or_default();
            }
            // BatchGetItem answers at most 16 MB; the keys of the items past that come
            // back as UnprocessedKeys for the caller to ask again.
            let mut n_bytes = 0;
            for (table, item) in found {
                let (caller_name, key_names) = given.get(&table).cloned().unwrap_or_default();
                n_bytes += item_size(&item);
                if let Some(read) = reads.get_mut(&caller_name) {
                    read.1 += item_size(&item);
                }
                if n_bytes > BATCH_GET_MAX_BYTES {
                    let key: Item = item
                        .into_iter()
                        .filter(|(name, _)| key_names.contains(name))
                        .collect();
                    unprocessed
                        .entry(caller_name)
                        .or_default()
                        .push(item_to_json(&key));
                } else {
                    responses
                        .entry(caller_name)
                        .or_default()
                        .push(item_to_json(&item));
                }
            }
            let unprocessed: Map<String, Json> = unprocessed
                .into_iter()
                .map(|(table, keys)| (table, json!({ "Keys": keys })))
                .collect();
            for (caller_name, (n_keys, n_bytes)) in reads {
                // Each key is a read of its own, of at least half a unit.
                let units = read_units(n_bytes, false).max(0.5 * n_keys as f64);
                consumed.add(&caller_name, units, None);
            }
            json!({ "Responses": responses, "UnprocessedKeys": unprocessed })
        }
        "BatchWriteItem" => {
            let mut requests = Vec::new();
            for (table, writes) in r.object("RequestItems")? {
                let Json::Array(writes) = writes else {
                    return Err(validation(
                        "RequestItems maps each table to a list of writes",
                    ));
                };
                let name = table_name(table);
                for write in writes {
                    let write = Req(object_of(write, "RequestItems")?);
                    let request = if let Some(put) = write.0.get("PutRequest") {
                        let item = Req(object_of(put, "PutRequest")?).item("Item")?;
                        consumed.add(table, write_units(&item), None);
                        BatchWrite::Put(item)
                    } else if let Some(delete) = write.0.get("DeleteRequest") {
                        consumed.add(table, 1.0, None);
                        BatchWrite::Delete(Req(object_of(delete, "DeleteRequest")?).item("Key")?)
                    } else {
                        return Err(validation(
                            "a write request has a PutRequest or a DeleteRequest",
                        ));
                    };
                    requests.push((name.clone(), request));
                }
            }
            ops::batch_write(events, principal, requests).await?;
            json!({ "UnprocessedItems": {} })
        }
        "TransactWriteItems" => {
            let items = r.array("TransactItems")?;
            if items.len() > 100 {
                return Err(validation(
                    "1 validation error detected at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to 100.",
                ));
            }
            let token = r.optional_string("ClientRequestToken")?;
            let fingerprint = Json::Object(request.clone()).to_string();
            if let Some(token) = &token
                && transaction_tokens::seen(token, &fingerprint)?
            {
                return Ok(json!({}));
            }
            let mut requests = Vec::new();
            for entry in items {
                let entry = object_of(entry, "TransactItems")?;
                let (kind, body) = match entry.iter().collect::<Vec<_>>().as_slice() {
                    [(kind, body)] => (*kind, *body),
                    _ => {
                        return Err(validation(
                            "TransactItems can only contain one of Check, Put, Update or Delete",
                        ));
                    }
                };
                let body = Req(object_of(body, kind)?);
                // A transaction's writes cost twice what the same writes do alone.
                let units = match kind.as_str() {
                    "Put" => 2.0 * write_units(&body.item("Item")?),
                    _ => 2.0,
                };
                consumed.add(&body.string("TableName")?, units, None);
                requests.push(match kind.as_str() {
                    "Put" => TransactWrite::Put(put_request(&body)?),
                    "Update" => TransactWrite::Update(update_request(&body)?),
                    "Delete" => TransactWrite::Delete(delete_request(&body)?),
                    "ConditionCheck" => TransactWrite::Check {
                        table: body.table()?,
                        key: body.item("Key")?,
                        condition: body.string("ConditionExpression")?,
                        placeholders: placeholders(&body)?,
                        old_on_failure: old_on_failure(&body)?,
                    },
                    other => return Err(validation(format!("unknown transact item {other}"))),
                });
            }
            ops::transact_write(events, principal, requests)
                .await
                .map_err(|e| match DynamoError::from(e) {
                    e if e.message == "Provided list of item keys contains duplicates" => {
                        validation(
                            "Transaction request cannot include multiple operations on one item",
                        )
                    }
                    e => e,
                })?;
            if let Some(token) = token {
                transaction_tokens::remember(token, fingerprint);
            }
            json!({})
        }
        "TransactGetItems" => {
            let mut requests = Vec::new();
            let mut tables = Vec::new();
            for entry in r.array("TransactItems")? {
                let entry = Req(object_of(entry, "TransactItems")?);
                let get = Req(entry.object("Get")?);
                tables.push(get.string("TableName")?);
                requests.push(get_request(&get)?);
            }
            let items = ops::transact_get(events, principal, requests).await?;
            for (table, item) in tables.iter().zip(&items) {
                let n_bytes = item.as_ref().map_or(0, item_size);
                consumed.add(table, 2.0 * read_units(n_bytes, true), None);
            }
            let responses: Vec<Json> = items
                .iter()
                .map(|item| match item {
                    Some(item) => json!({ "Item": item_to_json(item) }),
                    None => json!({}),
                })
                .collect();
            json!({ "Responses": responses })
        }
        "UpdateTimeToLive" => {
            let table = r.table()?;
            let spec =
                r.0.get("TimeToLiveSpecification")
                    .ok_or_else(|| missing("TimeToLiveSpecification"))?;
            let enabled = spec.get("Enabled").and_then(Json::as_bool).unwrap_or(false);
            let attribute = spec
                .get("AttributeName")
                .and_then(Json::as_str)
                .unwrap_or_default();
            if attribute.is_empty() {
                return Err(validation(
                    "1 validation error detected: Value null at 'timeToLiveSpecification.attributeName' failed to satisfy constraint: Member must not be null",
                ));
            }
            let update = ops::TableUpdate {
                ttl_attribute: Some(enabled.then(|| attribute.to_owned())),
                stream_view: None,
            };
            ops::update_table(
                events,
                principal,
                &table,
                "dynamodb:UpdateTimeToLive",
                update,
            )
            .await?;
            json!({ "TimeToLiveSpecification": { "Enabled": enabled, "AttributeName": attribute } })
        }
        "UpdateTable" => {
            let table = r.table()?;
            if r.0.get("GlobalSecondaryIndexUpdates").is_some()
                || r.0.get("ReplicaUpdates").is_some()
            {
                return Err(validation(
                    "nimbus does not change the indexes or replicas of an existing table; delete and create it with the indexes it needs",
                ));
            }
            let stream_view = match r.0.get("StreamSpecification") {
                None => None,
                Some(spec) => {
                    let enabled = spec
                        .get("StreamEnabled")
                        .and_then(Json::as_bool)
                        .unwrap_or(false);
                    let view = spec.get("StreamViewType").and_then(Json::as_str);
                    match (enabled, view) {
                        (false, _) => Some(None),
                        (
                            true,
                            Some(
                                view @ ("NEW_IMAGE" | "OLD_IMAGE" | "NEW_AND_OLD_IMAGES"
                                | "KEYS_ONLY"),
                            ),
                        ) => Some(Some(view.to_owned())),
                        (true, _) => {
                            return Err(validation(
                                "One or more parameter values were invalid: StreamViewType is required when StreamEnabled is true; use NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES or KEYS_ONLY",
                            ));
                        }
                    }
                }
            };
            let update = ops::TableUpdate {
                ttl_attribute: None,
                stream_view,
            };
            let description =
                ops::update_table(events, principal, &table, "dynamodb:UpdateTable", update)
                    .await?;
            let stream_created = stream_created(events, &description).await;
            json!({ "TableDescription": describe(&description, region, stream_created) })
        }
        "DescribeTimeToLive" => {
            let description = ops::describe_table(events, principal, &r.table()?).await?;
            match &description.spec.ttl_attribute {
                Some(attribute) => {
                    json!({ "TimeToLiveDescription": { "TimeToLiveStatus": "ENABLED", "AttributeName": attribute } })
                }
                None => json!({ "TimeToLiveDescription": { "TimeToLiveStatus": "DISABLED" } }),
            }
        }
        other => {
            return Err(DynamoError::new(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                format!("nimbus does not serve the DynamoDB operation {other} yet"),
            ));
        }
    };
    if let Some(capacity) = consumed.to_json(capacity_mode, operation) {
        out["ConsumedCapacity"] = capacity;
    }
    Ok(out)
}

/// DynamoDB's wording where it differs by operation: the item operations do not name a
/// missing table, and the single-item writes put "1 validation error detected: " before
/// some of their messages.
fn reword(operation: &str, mut e: DynamoError) -> DynamoError {
    let item_operation = matches!(
        operation,
        "PutItem"
            | "GetItem"
            | "UpdateItem"
            | "DeleteItem"
            | "Query"
            | "Scan"
            | "BatchGetItem"
            | "BatchWriteItem"
            | "TransactWriteItems"
            | "TransactGetItems"
    );
    if e.code == "ResourceNotFoundException" && item_operation {
        e.message = "Requested resource not found".to_owned();
    }
    let single_write = matches!(operation, "PutItem" | "UpdateItem" | "DeleteItem");
    // The update expression's checks before it runs: empty, a clause twice, paths that
    // overlap.
    let static_update_check = operation == "UpdateItem"
        && (e.message == "Invalid UpdateExpression: The expression can not be empty;"
            || e.message.starts_with("Invalid UpdateExpression: The \"")
            || e.message
                .starts_with("Invalid UpdateExpression: Two document paths overlap"));
    let request_check = e
        .message
        .starts_with("Value provided in ExpressionAttribute")
        || e.message
            .starts_with("ExpressionAttributeValues must not be empty")
        || e.message
            .starts_with("ExpressionAttributeNames must not be empty")
        || e.message.ends_with("set  may not be empty");
    if e.code == "ValidationException" && ((single_write && request_check) || static_update_check) {
        e.message = format!("1 validation error detected: {}", e.message);
    }
    const EMPTY_KEY: &str = "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: ";
    const EMPTY_INDEX_KEY: &str = "One or more parameter values are not valid. A value specified for a secondary index key is not supported.";
    if let Some(key) = e.message.strip_prefix(EMPTY_KEY)
        && operation == "PutItem"
    {
        e.message = format!(
            "One or more parameter values were invalid: An AttributeValue may not contain an empty string. Key: {key}"
        );
    }
    if e.message == "Item size has exceeded the maximum allowed size" && operation == "UpdateItem" {
        e.message = "Item size to update has exceeded the maximum allowed size".to_owned();
    }
    if e.message.starts_with(EMPTY_INDEX_KEY) && operation == "UpdateItem" {
        e.message = "One or more parameter values are not valid. The update expression attempted to update a secondary index key to a value that is not supported. The AttributeValue for a key attribute cannot contain an empty string value.".to_owned();
    }
    e
}

/// `ReturnConsumedCapacity`: what a response says of the capacity it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CapacityMode {
    None,
    Total,
    Indexes,
}

fn capacity_mode(r: &Req<'_>) -> Res<CapacityMode> {
    Ok(
        match r.optional_string("ReturnConsumedCapacity")?.as_deref() {
            None | Some("NONE") => CapacityMode::None,
            Some("TOTAL") => CapacityMode::Total,
            Some("INDEXES") => CapacityMode::Indexes,
            Some(other) => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{other}' at 'returnConsumedCapacity' failed to satisfy constraint: Member must satisfy enum value set: [INDEXES, TOTAL, NONE]"
                )));
            }
        },
    )
}

/// The capacity units an operation used, per table as the caller named it. nimbus has no
/// provisioned capacity; the units follow DynamoDB's on-demand rules (a read per 4 KB, half
/// of one when eventually consistent; a write per 1 KB; twice either in a transaction),
/// counting the items returned or written, so they are an estimate for reads that filter.
#[derive(Debug, Default)]
struct Consumed(Vec<TableUnits>);

/// The units used on a table, and the index a Query or Scan read.
#[derive(Debug)]
struct TableUnits {
    table: String,
    units: f64,
    index: Option<(IndexKind, String)>,
}

impl Consumed {
    /// Adds units to a table, named or given by its ARN.
    fn add(&mut self, table: &str, units: f64, index: Option<(IndexKind, String)>) {
        let table = table_name(table);
        match self.0.iter_mut().find(|entry| entry.table == table) {
            Some(entry) => entry.units += units,
            None => self.0.push(TableUnits {
                table: table.to_owned(),
                units,
                index,
            }),
        }
    }

    /// `ConsumedCapacity`: one object for an operation on one table, a list for the batch
    /// and transaction operations; `None` unless asked for.
    fn to_json(&self, mode: CapacityMode, operation: &str) -> Option<Json> {
        if mode == CapacityMode::None {
            return None;
        }
        let entries: Vec<Json> = self
            .0
            .iter()
            .map(
                |TableUnits {
                     table,
                     units,
                     index,
                 }| {
                    let mut out = json!({ "TableName": table, "CapacityUnits": units });
                    if mode == CapacityMode::Indexes {
                        out["Table"] = json!({ "CapacityUnits": units });
                        if let Some((kind, name)) = index {
                            let field = match kind {
                                IndexKind::Global { .. } => "GlobalSecondaryIndexes",
                                IndexKind::Local => "LocalSecondaryIndexes",
                            };
                            out[field] = json!({ name.as_str(): { "CapacityUnits": units } });
                        }
                    }
                    out
                },
            )
            .collect();
        if operation.starts_with("Batch") || operation.starts_with("Transact") {
            Some(Json::Array(entries))
        } else {
            entries.into_iter().next()
        }
    }
}

/// Read units for `n_bytes`: one per 4 KB (at least one), half when eventually consistent.
fn read_units(n_bytes: usize, consistent: bool) -> f64 {
    let units = n_bytes.div_ceil(4096).max(1) as f64;
    if consistent { units } else { units / 2.0 }
}

/// Write units for an item: one per 1 KB, at least one.
fn write_units(item: &Item) -> f64 {
    item_size(item).div_ceil(1024).max(1) as f64
}

/// BatchGetItem answers at most 16 MB of items.
const BATCH_GET_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Query and Scan's `Select`, checked against the other parameters as DynamoDB does.
fn select(r: &Req<'_>) -> Res<Option<String>> {
    let Some(select) = r.optional_string("Select")? else {
        return Ok(None);
    };
    let projection = r.0.contains_key("ProjectionExpression");
    let attributes_to_get = r.0.contains_key("AttributesToGet");
    let description = match select.as_str() {
        "SPECIFIC_ATTRIBUTES" if !projection && !attributes_to_get => {
            return Err(validation(
                "1 validation error detected: Must specify the AttributesToGet or ProjectionExpression when choosing to get SPECIFIC_ATTRIBUTES",
            ));
        }
        "SPECIFIC_ATTRIBUTES" => return Ok(Some(select)),
        "ALL_PROJECTED_ATTRIBUTES" if !r.0.contains_key("IndexName") => {
            return Err(validation(
                "1 validation error detected: ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName",
            ));
        }
        "ALL_ATTRIBUTES" | "ALL_PROJECTED_ATTRIBUTES" => select.as_str(),
        "COUNT" => "only the Count",
        other => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'select' failed to satisfy constraint: Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]"
            )));
        }
    };
    for (given, field) in [
        (projection, "ProjectionExpression"),
        (attributes_to_get, "AttributesToGet"),
    ] {
        if given {
            return Err(validation(format!(
                "1 validation error detected: Cannot specify the {field} when choosing to get {description}"
            )));
        }
    }
    Ok(Some(select))
}

#[cfg(test)]
mod fuzz;

/// TransactWriteItems' `ClientRequestToken`: for ten minutes after a transaction with a
/// token succeeds, the same request succeeds again without writing and another request
/// with that token fails, as DynamoDB documents. The tokens live in the process, like
/// DynamoDB's, which forgets them after the ten minutes.
mod transaction_tokens {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, PoisonError};
    use std::time::{Duration, Instant};

    use super::{DynamoError, Res};

    const KEPT_FOR: Duration = Duration::from_secs(600);

    /// Each token's request (its JSON) and when it succeeded.
    static TOKENS: Mutex<BTreeMap<String, (String, Instant)>> = Mutex::new(BTreeMap::new());

    /// Whether this request already succeeded with this token; an error when the token
    /// came with another request.
    pub(super) fn seen(token: &str, request: &str) -> Res<bool> {
        let mut tokens = TOKENS.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.retain(|_, (_, at)| at.elapsed() < KEPT_FOR);
        match tokens.get(token) {
            Some((original, _)) if original == request => Ok(true),
            Some(_) => Err(DynamoError::new(
                http::StatusCode::BAD_REQUEST,
                "IdempotentParameterMismatchException",
                "DynamoDB rejected the request because you retried a request with a different payload but with an idempotent token that was already used.",
            )),
            None => Ok(false),
        }
    }

    pub(super) fn remember(token: String, request: String) {
        let mut tokens = TOKENS.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.insert(token, (request, Instant::now()));
    }
}

/// `{"Attributes": ..}` when a write returns values, `{}` otherwise (also when none of
/// the updated attributes had an old value: DynamoDB sends no empty `Attributes`).
fn attributes(item: Option<Item>) -> Json {
    match item {
        Some(item) if !item.is_empty() => json!({ "Attributes": item_to_json(&item) }),
        _ => json!({}),
    }
}

fn put_request(r: &Req<'_>) -> Res<PutItem> {
    let expressions = expressions(r)?;
    Ok(PutItem {
        table: r.table()?,
        item: r.item("Item")?,
        condition: expressions.condition,
        placeholders: expressions.placeholders,
        return_values: return_values(r, &OLD_ONLY)?,
        old_on_failure: old_on_failure(r)?,
    })
}

fn get_request(r: &Req<'_>) -> Res<GetItem> {
    let expressions = expressions(r)?;
    Ok(GetItem {
        table: r.table()?,
        key: r.item("Key")?,
        projection: expressions.projection,
        placeholders: expressions.placeholders,
    })
}

fn update_request(r: &Req<'_>) -> Res<UpdateItem> {
    let expressions = expressions(r)?;
    Ok(UpdateItem {
        table: r.table()?,
        key: r.item("Key")?,
        update: expressions.update,
        condition: expressions.condition,
        placeholders: expressions.placeholders,
        return_values: return_values(r, &ALL_RETURN_VALUES)?,
        old_on_failure: old_on_failure(r)?,
    })
}

fn delete_request(r: &Req<'_>) -> Res<DeleteItem> {
    let expressions = expressions(r)?;
    Ok(DeleteItem {
        table: r.table()?,
        key: r.item("Key")?,
        condition: expressions.condition,
        placeholders: expressions.placeholders,
        return_values: return_values(r, &OLD_ONLY)?,
        old_on_failure: old_on_failure(r)?,
    })
}

/// A request's expressions and their placeholders, with the legacy parameters DynamoDB
/// still takes (AttributesToGet, Expected, AttributeUpdates, KeyConditions, QueryFilter,
/// ScanFilter, ConditionalOperator) rewritten as expressions over placeholders of their
/// own (`#legacy0`, `:legacy0`), so one evaluator serves both.
struct Expressions {
    placeholders: Placeholder,
    projection: Option<String>,
    condition: Option<String>,
    update: Option<String>,
    key_condition: Option<String>,
    filter: Option<String>,
}

/// Each legacy parameter and the expression it stands for.
const LEGACY_PARAMETERS: [(&str, &str); 6] = [
    ("AttributesToGet", "ProjectionExpression"),
    ("Expected", "ConditionExpression"),
    ("AttributeUpdates", "UpdateExpression"),
    ("KeyConditions", "KeyConditionExpression"),
    ("QueryFilter", "FilterExpression"),
    ("ScanFilter", "FilterExpression"),
];

fn expressions(r: &Req<'_>) -> Res<Expressions> {
    let given = |field: &str| r.0.get(field).is_some_and(|v| !v.is_null());
    let mut legacy_given: Vec<&str> = LEGACY_PARAMETERS
        .iter()
        .map(|(legacy, _)| *legacy)
        .filter(|field| given(field))
        .collect();
    let mut expressions_given: Vec<&str> = LEGACY_PARAMETERS
        .iter()
        .map(|(_, expression)| *expression)
        .filter(|field| given(field))
        .collect();
    legacy_given.dedup();
    expressions_given.dedup();
    if !legacy_given.is_empty() && !expressions_given.is_empty() {
        return Err(validation(format!(
            "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {{{}}} Expression parameters: {{{}}}",
            legacy_given.join(", "),
            expressions_given.join(", ")
        )));
    }
    if expressions_given.is_empty() {
        if given("ExpressionAttributeNames") {
            return Err(validation(
                "ExpressionAttributeNames can only be specified when using expressions",
            ));
        }
        if given("ExpressionAttributeValues") {
            return Err(validation(
                "ExpressionAttributeValues can only be specified when using expressions: ConditionExpression, FilterExpression, KeyConditionExpression or UpdateExpression",
            ));
        }
    }
    let mut legacy = Legacy {
        placeholders: placeholders(r)?,
        n_placeholders: 0,
    };
    let joiner = match r.optional_string("ConditionalOperator")?.as_deref() {
        None | Some("AND") => " AND ",
        Some("OR") => " OR ",
        Some(other) => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'conditionalOperator' failed to satisfy constraint: Member must satisfy enum value set: [OR, AND]"
            )));
        }
    };
    let projection = match r.0.get("AttributesToGet") {
        Some(Json::Array(names)) => {
            let mut paths = Vec::new();
            for name in names {
                let Json::String(name) = name else {
                    return Err(serialization("AttributesToGet", "a list of strings", name));
                };
                paths.push(legacy.name(name));
            }
            Some(paths.join(", "))
        }
        _ => r.optional_string("ProjectionExpression")?,
    };
    let conditions = |legacy: &mut Legacy, field: &str, expected: bool| -> Res<Option<String>> {
        let Some(map) = r.0.get(field).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let mut parts = Vec::new();
        for (attribute, spec) in object_of(map, field)? {
            let spec = object_of(spec, field)?;
            parts.push(format!(
                "({})",
                legacy.condition(attribute, spec, expected)?
            ));
        }
        Ok((!parts.is_empty()).then(|| parts.join(joiner)))
    };
    let condition = match conditions(&mut legacy, "Expected", true)? {
        Some(condition) => Some(condition),
        None => r.optional_string("ConditionExpression")?,
    };
    let key_condition = match r.0.get("KeyConditions").filter(|v| !v.is_null()) {
        Some(map) => {
            let mut parts = Vec::new();
            for (attribute, spec) in object_of(map, "KeyConditions")? {
                let spec = object_of(spec, "KeyConditions")?;
                parts.push(legacy.condition(attribute, spec, false)?);
            }
            Some(parts.join(" AND "))
        }
        None => r.optional_string("KeyConditionExpression")?,
    };
    let filter = match conditions(&mut legacy, "QueryFilter", false)? {
        Some(filter) => Some(filter),
        None => match conditions(&mut legacy, "ScanFilter", false)? {
            Some(filter) => Some(filter),
            None => r.optional_string("FilterExpression")?,
        },
    };
    let update = match r.0.get("AttributeUpdates").filter(|v| !v.is_null()) {
        Some(map) => legacy.updates(object_of(map, "AttributeUpdates")?)?,
        None => r.optional_string("UpdateExpression")?,
    };
    Ok(Expressions {
        placeholders: legacy.placeholders,
        projection,
        condition,
        update,
        key_condition,
        filter,
    })
}

/// Writes legacy parameters as expressions, adding the placeholders they use.
struct Legacy {
    placeholders: Placeholder,
    n_placeholders: usize,
}

impl Legacy {
    fn name(&mut self, name: &str) -> String {
        let key = format!("#legacy{}", self.n_placeholders);
        self.n_placeholders += 1;
        self.placeholders.names.insert(key.clone(), name.to_owned());
        key
    }

    fn value(&mut self, value: &Json, field: &str) -> Res<String> {
        let value = AttributeValue::from_json(value)
            .map_err(|e| validation(format!("{field} contains an invalid value: {e}")))?;
        let key = format!(":legacy{}", self.n_placeholders);
        self.n_placeholders += 1;
        self.placeholders.values.insert(key.clone(), value);
        Ok(key)
    }

    /// One attribute's condition: `{ComparisonOperator, AttributeValueList}`, or in
    /// `Expected` also `{Value, Exists}`.
    fn condition(
        &mut self,
        attribute: &str,
        spec: &Map<String, Json>,
        expected: bool,
    ) -> Res<String> {
        let spec = Req(spec);
        let name = self.name(attribute);
        let Some(operator) = spec.optional_string("ComparisonOperator")? else {
            if !expected {
                return Err(missing("ComparisonOperator").into());
            }
            let exists = spec.optional_bool("Exists")?.unwrap_or(true);
            return match (exists, spec.0.get("Value")) {
                (true, Some(value)) => Ok(format!("{name} = {}", self.value(value, "Expected")?)),
                (false, None) => Ok(format!("attribute_not_exists({name})")),
                (true, None) => Err(validation(format!(
                    "One or more parameter values were invalid: Value must be provided when Exists is true for Attribute: {attribute}"
                ))),
                (false, Some(_)) => Err(validation(format!(
                    "One or more parameter values were invalid: Value cannot be used when Exists is false for Attribute: {attribute}"
                ))),
            };
        };
        let list = match spec.0.get("AttributeValueList") {
            Some(Json::Array(list)) => list.as_slice(),
            _ => &[],
        };
        let mut values = Vec::with_capacity(list.len());
        for value in list {
            values.push(self.value(value, "AttributeValueList")?);
        }
        let count = |n: usize| -> Res<()> {
            if values.len() == n {
                Ok(())
            } else {
                Err(validation(format!(
                    "One or more parameter values were invalid: Invalid number of argument(s) for the {operator} ComparisonOperator"
                )))
            }
        };
        let comparison = |symbol: &str| format!("{name} {symbol} {}", values[0]);
        Ok(match operator.as_str() {
            "EQ" | "NE" | "LE" | "LT" | "GE" | "GT" => {
                count(1)?;
                comparison(match operator.as_str() {
                    "EQ" => "=",
                    "NE" => "<>",
                    "LE" => "<=",
                    "LT" => "<",
                    "GE" => ">=",
                    _ => ">",
                })
            }
            "NOT_NULL" => {
                count(0)?;
                format!("attribute_exists({name})")
            }
            "NULL" => {
                count(0)?;
                format!("attribute_not_exists({name})")
            }
            "CONTAINS" => {
                count(1)?;
                format!("contains({name}, {})", values[0])
            }
            "NOT_CONTAINS" => {
                count(1)?;
                format!("NOT contains({name}, {})", values[0])
            }
            "BEGINS_WITH" => {
                count(1)?;
                format!("begins_with({name}, {})", values[0])
            }
            "BETWEEN" => {
                count(2)?;
                format!("{name} BETWEEN {} AND {}", values[0], values[1])
            }
            "IN" if !values.is_empty() => format!("{name} IN ({})", values.join(", ")),
            "IN" => {
                return Err(validation(
                    "One or more parameter values were invalid: Invalid number of argument(s) for the IN ComparisonOperator",
                ));
            }
            other => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{other}' at 'comparisonOperator' failed to satisfy constraint: Member must satisfy enum value set: [IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"
                )));
            }
        })
    }

    /// `AttributeUpdates`: `{attribute: {Action: PUT | ADD | DELETE, Value}}` as SET,
    /// ADD, DELETE and REMOVE clauses (ADD to a list appends, as the legacy API did).
    fn updates(&mut self, updates: &Map<String, Json>) -> Res<Option<String>> {
        let (mut set, mut add, mut delete, mut remove) = (vec![], vec![], vec![], vec![]);
        for (attribute, update) in updates {
            let update = Req(object_of(update, "AttributeUpdates")?);
            let action = update.optional_string("Action")?;
            let name = self.name(attribute);
            let value = update.0.get("Value").filter(|v| !v.is_null());
            match (action.as_deref().unwrap_or("PUT"), value) {
                ("PUT", Some(value)) => {
                    set.push(format!(
                        "{name} = {}",
                        self.value(value, "AttributeUpdates")?
                    ));
                }
                ("DELETE", None) => remove.push(name),
                ("DELETE", Some(value)) => {
                    delete.push(format!("{name} {}", self.value(value, "AttributeUpdates")?));
                }
                ("ADD", Some(value)) if value.get("L").is_some() => {
                    let empty = self.value(&json!({ "L": [] }), "AttributeUpdates")?;
                    let value = self.value(value, "AttributeUpdates")?;
                    set.push(format!(
                        "{name} = list_append(if_not_exists({name}, {empty}), {value})"
                    ));
                }
                ("ADD", Some(value)) => {
                    add.push(format!("{name} {}", self.value(value, "AttributeUpdates")?));
                }
                (action @ ("PUT" | "ADD"), None) => {
                    return Err(validation(format!(
                        "One or more parameter values were invalid: Only DELETE action is allowed when no attribute value is specified; action: {action}, attribute: {attribute}"
                    )));
                }
                (other, _) => {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{other}' at 'attributeUpdates.{attribute}.member.action' failed to satisfy constraint: Member must satisfy enum value set: [ADD, PUT, DELETE]"
                    )));
                }
            }
        }
        let mut clauses = Vec::new();
        for (clause, actions) in [
            ("SET", set),
            ("ADD", add),
            ("DELETE", delete),
            ("REMOVE", remove),
        ] {
            if !actions.is_empty() {
                clauses.push(format!("{clause} {}", actions.join(", ")));
            }
        }
        Ok((!clauses.is_empty()).then(|| clauses.join(" ")))
    }
}

const OLD_ONLY: [ReturnValues; 2] = [ReturnValues::None, ReturnValues::AllOld];
const ALL_RETURN_VALUES: [ReturnValues; 5] = [
    ReturnValues::None,
    ReturnValues::AllOld,
    ReturnValues::UpdatedOld,
    ReturnValues::AllNew,
    ReturnValues::UpdatedNew,
];

/// `ReturnValues`, one of `allowed` (PutItem and DeleteItem take NONE or ALL_OLD alone).
fn return_values(r: &Req<'_>, allowed: &[ReturnValues]) -> Res<ReturnValues> {
    let return_values = match r.optional_string("ReturnValues")?.as_deref() {
        None | Some("NONE") => ReturnValues::None,
        Some("ALL_OLD") => ReturnValues::AllOld,
        Some("UPDATED_OLD") => ReturnValues::UpdatedOld,
        Some("ALL_NEW") => ReturnValues::AllNew,
        Some("UPDATED_NEW") => ReturnValues::UpdatedNew,
        Some(_) => return Err(validation("Return values set to invalid value")),
    };
    if !allowed.contains(&return_values) {
        return Err(validation("Return values set to invalid value"));
    }
    Ok(return_values)
}

fn old_on_failure(r: &Req<'_>) -> Res<bool> {
    Ok(r.optional_string("ReturnValuesOnConditionCheckFailure")?
        .as_deref()
        == Some("ALL_OLD"))
}

fn placeholders(r: &Req<'_>) -> Res<Placeholder> {
    let mut placeholder = Placeholder::default();
    if let Some(names) = r.0.get("ExpressionAttributeNames") {
        let names = object_of(names, "ExpressionAttributeNames")?;
        if names.is_empty() {
            return Err(validation("ExpressionAttributeNames must not be empty"));
        }
        for (key, value) in names {
            if !key.starts_with('#') {
                return Err(validation(format!(
                    "ExpressionAttributeNames contains invalid key: Syntax error; key: \"{key}\""
                )));
            }
            let Json::String(name) = value else {
                return Err(validation("ExpressionAttributeNames maps to strings"));
            };
            placeholder.names.insert(key.clone(), name.clone());
        }
    }
    if let Some(values) = r.0.get("ExpressionAttributeValues") {
        let values = object_of(values, "ExpressionAttributeValues")?;
        if values.is_empty() {
            return Err(validation("ExpressionAttributeValues must not be empty"));
        }
        for (key, value) in values {
            if !key.starts_with(':') {
                return Err(validation(format!(
                    "ExpressionAttributeValues contains invalid key: Syntax error; key: \"{key}\""
                )));
            }
            let value = AttributeValue::from_json(value).map_err(|e| {
                // An empty set is refused in DynamoDB's words for an item's empty set.
                if e.ends_with("set  may not be empty") {
                    validation(e)
                } else {
                    validation(format!(
                        "ExpressionAttributeValues contains invalid value: {e} for key {key}"
                    ))
                }
            })?;
            placeholder.values.insert(key.clone(), value);
        }
    }
    Ok(placeholder)
}

fn create_table_spec(r: &Req<'_>) -> Res<TableSpec> {
    let name = r.string("TableName")?;
    if !(3..=255).contains(&name.len())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'tableName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length 3 to 255"
        )));
    }
    let mut definitions = BTreeMap::new();
    for definition in r.array("AttributeDefinitions")? {
        let definition = Req(object_of(definition, "AttributeDefinitions")?);
        let kind = definition.string("AttributeType")?;
        let kind = ScalarType::from_name(&kind).ok_or_else(|| {
            validation(format!("Invalid AttributeType {kind}: expected S, N or B"))
        })?;
        definitions.insert(definition.string("AttributeName")?, kind);
    }
    // DynamoDB's default billing mode is PROVISIONED, which needs a throughput.
    let billing_mode = r.optional_string("BillingMode")?;
    let throughput = r.0.get("ProvisionedThroughput").filter(|t| !t.is_null());
    match (billing_mode.as_deref(), throughput) {
        (None | Some("PROVISIONED"), None) => {
            return Err(validation(
                "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED",
            ));
        }
        (Some("PAY_PER_REQUEST"), Some(_)) => {
            return Err(validation(
                "ProvisionedThroughput cannot be specified when BillingMode is PAY_PER_REQUEST",
            ));
        }
        (None | Some("PROVISIONED" | "PAY_PER_REQUEST"), _) => {}
        (Some(other), _) => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'billingMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]"
            )));
        }
    }
    // `at` is where the schema sits in the request, for DynamoDB's messages.
    let key_schema = |schema: &[Json], at: &str| -> Res<(KeyAttribute, Option<KeyAttribute>)> {
        let mut partition = None;
        let mut sort = None;
        // The request's own checks (the KeyType enum) come before the schema's meaning.
        for (element_idx, element) in schema.iter().enumerate() {
            let key_type = Req(object_of(element, "KeySchema")?).string("KeyType")?;
            if !matches!(key_type.as_str(), "HASH" | "RANGE") {
                return Err(validation(format!(
                    "1 validation error detected: Value '{key_type}' at '{at}keySchema.{}.member.keyType' failed to satisfy constraint: Member must satisfy enum value set: [HASH, RANGE]",
                    element_idx + 1
                )));
            }
        }
        for element in schema {
            let element = Req(object_of(element, "KeySchema")?);
            let name = element.string("AttributeName")?;
            let key_type = element.string("KeyType")?;
            let kind = *definitions.get(&name).ok_or_else(|| {
                validation(if at.is_empty() {
                    "Invalid KeySchema: Some index key attribute have no definition".to_owned()
                } else {
                    format!(
                        "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [{name}]"
                    )
                })
            })?;
            let attribute = KeyAttribute { name, kind };
            match key_type.as_str() {
                "HASH" if partition.is_none() => partition = Some(attribute),
                "RANGE" if sort.is_none() => sort = Some(attribute),
                other => {
                    return Err(validation(format!(
                        "Invalid KeySchema: unexpected KeyType {other}"
                    )));
                }
            }
        }
        let partition =
            partition.ok_or_else(|| validation("Invalid KeySchema: a HASH key is required"))?;
        Ok((partition, sort))
    };
    let (partition_key, sort_key) = key_schema(r.array("KeySchema")?, "")?;
    let indexes = |field: &str| -> Res<Vec<IndexSpec>> {
        let Some(list) = r.0.get(field) else {
            return Ok(Vec::new());
        };
        let Json::Array(list) = list else {
            return Err(validation(format!("{field} is a list")));
        };
        if list.is_empty() {
            return Err(validation(format!(
                "One or more parameter values were invalid: List of {field} is empty"
            )));
        }
        let mut out = Vec::new();
        for (index_idx, index) in list.iter().enumerate() {
            let index = Req(object_of(index, field)?);
            let at = format!("{}.{}.member.", lower_first(field), index_idx + 1);
            let (partition_key, sort_key) = key_schema(index.array("KeySchema")?, &at)?;
            let projection = match index.0.get("Projection") {
                Some(projection) => {
                    let projection = Req(object_of(projection, "Projection")?);
                    match projection.optional_string("ProjectionType")?.as_deref() {
                        Some("KEYS_ONLY") => Projection::KeysOnly,
                        Some("INCLUDE") => Projection::Include(
                            projection
                                .0
                                .get("NonKeyAttributes")
                                .and_then(Json::as_array)
                                .map(|names| {
                                    names
                                        .iter()
                                        .filter_map(|n| n.as_str().map(str::to_owned))
                                        .collect()
                                })
                                .unwrap_or_default(),
                        ),
                        _ => Projection::All,
                    }
                }
                None => Projection::All,
            };
            out.push(IndexSpec {
                name: index.string("IndexName")?,
                partition_key,
                sort_key,
                projection,
            });
        }
        Ok(out)
    };
    let stream_view = match r.0.get("StreamSpecification") {
        Some(spec) => {
            let spec = Req(object_of(spec, "StreamSpecification")?);
            if spec.optional_bool("StreamEnabled")?.unwrap_or(false) {
                spec.optional_string("StreamViewType")?
            } else {
                None
            }
        }
        None => None,
    };
    let spec = TableSpec {
        name,
        partition_key,
        sort_key,
        global_indexes: indexes("GlobalSecondaryIndexes")?,
        local_indexes: indexes("LocalSecondaryIndexes")?,
        ttl_attribute: None,
        stream_view,
    };
    // Every definition is some key's: DynamoDB refuses the others.
    let used: BTreeSet<&str> = spec
        .key_attributes()
        .chain(
            spec.global_indexes
                .iter()
                .chain(&spec.local_indexes)
                .flat_map(|i| std::iter::once(&i.partition_key).chain(i.sort_key.as_ref())),
        )
        .map(|key| key.name.as_str())
        .collect();
    if definitions.keys().any(|name| !used.contains(name.as_str())) {
        let no_indexes = spec.global_indexes.is_empty() && spec.local_indexes.is_empty();
        return Err(validation(if no_indexes {
            "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions".to_owned()
        } else {
            let defined: Vec<&str> = definitions.keys().map(String::as_str).collect();
            let used: Vec<&str> = used.into_iter().collect();
            format!(
                "One or more parameter values were invalid: Some AttributeDefinitions are not used. AttributeDefinitions: [{}], keys used: [{}]",
                defined.join(", "),
                used.join(", ")
            )
        }));
    }
    Ok(spec)
}

/// When the table's change stream was created, for its label; `None` without a stream.
async fn stream_created(
    events: &crate::events::Events,
    description: &TableDescription,
) -> Option<i64> {
    description.spec.stream_view.as_ref()?;
    crate::services::streams::table_stream_created(events, &description.spec.name).await
}

/// DescribeTable's `Table`; `stream_created` labels the table's stream.
fn describe(description: &TableDescription, region: &str, stream_created: Option<i64>) -> Json {
    let spec = &description.spec;
    let arn = table_arn(region, &spec.name);
    let key_schema = |partition: &KeyAttribute, sort: Option<&KeyAttribute>| {
        let mut schema = vec![json!({ "AttributeName": partition.name, "KeyType": "HASH" })];
        if let Some(sort) = sort {
            schema.push(json!({ "AttributeName": sort.name, "KeyType": "RANGE" }));
        }
        schema
    };
    let mut definitions: BTreeMap<&str, &str> = BTreeMap::new();
    let all_keys = spec.key_attributes().chain(
        spec.global_indexes
            .iter()
            .chain(&spec.local_indexes)
            .flat_map(|index| std::iter::once(&index.partition_key).chain(index.sort_key.as_ref())),
    );
    for key in all_keys {
        definitions.insert(&key.name, key.kind.name());
    }
    let definitions: Vec<Json> = definitions
        .iter()
        .map(|(name, kind)| json!({ "AttributeName": name, "AttributeType": kind }))
        .collect();
    let index = |index: &IndexSpec| {
        let projection = match &index.projection {
            Projection::All => json!({ "ProjectionType": "ALL" }),
            Projection::KeysOnly => json!({ "ProjectionType": "KEYS_ONLY" }),
            Projection::Include(names) => {
                json!({ "ProjectionType": "INCLUDE", "NonKeyAttributes": names })
            }
        };
        json!({
            "IndexName": index.name,
            "KeySchema": key_schema(&index.partition_key, index.sort_key.as_ref()),
            "Projection": projection,
            "IndexStatus": "ACTIVE",
            "IndexArn": format!("{arn}/index/{}", index.name),
            "ProvisionedThroughput": { "ReadCapacityUnits": 0, "WriteCapacityUnits": 0 },
        })
    };
    let mut table = json!({
        "TableName": spec.name,
        "TableArn": arn,
        "TableId": spec.name,
        "TableStatus": "ACTIVE",
        "KeySchema": key_schema(&spec.partition_key, spec.sort_key.as_ref()),
        "AttributeDefinitions": definitions,
        "CreationDateTime": description.created_at,
        "ItemCount": description.item_count,
        "TableSizeBytes": description.size_bytes,
        "BillingModeSummary": { "BillingMode": "PAY_PER_REQUEST" },
        "ProvisionedThroughput": { "ReadCapacityUnits": 0, "WriteCapacityUnits": 0, "NumberOfDecreasesToday": 0 },
    });
    if !spec.global_indexes.is_empty() {
        table["GlobalSecondaryIndexes"] =
            Json::Array(spec.global_indexes.iter().map(index).collect());
    }
    if !spec.local_indexes.is_empty() {
        table["LocalSecondaryIndexes"] =
            Json::Array(spec.local_indexes.iter().map(index).collect());
    }
    if let Some(view) = &spec.stream_view {
        table["StreamSpecification"] = json!({ "StreamEnabled": true, "StreamViewType": view });
        if let Some(created_us) = stream_created {
            let label = stream_label(created_us);
            table["LatestStreamArn"] = json!(table_stream_arn(region, &spec.name, &label));
            table["LatestStreamLabel"] = json!(label);
        }
    }
    table
}

/// A request's fields, read with DynamoDB's validation messages.
struct Req<'r>(&'r Map<String, Json>);

impl<'r> MemberReader<'r> for Req<'r> {
    type Error = DynamoError;
    fn members(&self) -> &'r Map<String, Json> {
        self.0
    }
}

impl From<MemberError> for DynamoError {
    fn from(e: MemberError) -> DynamoError {
        DynamoError::new(StatusCode::BAD_REQUEST, e.code, e.message)
    }
}

impl<'r> Req<'r> {
    /// A whole number (at least 0), if given.
    fn optional_usize(&self, field: &str) -> Res<Option<usize>> {
        Ok(self
            .optional_whole(field, 0)?
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
    }

    /// `TableName`, which may also be the table's ARN, as in DynamoDB.
    fn table(&self) -> Res<String> {
        Ok(table_name(&self.string("TableName")?))
    }

    fn object(&self, field: &str) -> Res<&'r Map<String, Json>> {
        match self.0.get(field) {
            Some(value) => object_of(value, field),
            None => Err(missing(field).into()),
        }
    }

    fn item(&self, field: &str) -> Res<Item> {
        match self.0.get(field) {
            Some(value) => item_of(value, field),
            None => Err(missing(field).into()),
        }
    }

    fn optional_item(&self, field: &str) -> Res<Option<Item>> {
        match self.0.get(field) {
            None | Some(Json::Null) => Ok(None),
            Some(value) => item_of(value, field).map(Some),
        }
    }
}

/// A table's name from a name or a table ARN (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`).
fn table_name(name_or_arn: &str) -> String {
    match name_or_arn.strip_prefix("arn:") {
        Some(arn) => match arn.split_once(":table/") {
            Some((_, name)) => name.to_owned(),
            None => name_or_arn.to_owned(),
        },
        None => name_or_arn.to_owned(),
    }
}

fn object_of<'j>(value: &'j Json, field: &str) -> Res<&'j Map<String, Json>> {
    match value {
        Json::Object(map) => Ok(map),
        other => Err(serialization(field, "an object", other)),
    }
}

fn item_of(value: &Json, field: &str) -> Res<Item> {
    let map = object_of(value, field)?;
    item_from_json(map).map_err(validation)
}

fn serialization(field: &str, what: &str, got: &Json) -> DynamoError {
    DynamoError::new(
        StatusCode::BAD_REQUEST,
        "SerializationException",
        format!("{field} must be {what}, got {got}"),
    )
}

fn validation(message: impl Into<String>) -> DynamoError {
    DynamoError::new(StatusCode::BAD_REQUEST, "ValidationException", message)
}

impl DynamoError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> DynamoError {
        DynamoError {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    fn into_response(self) -> Response {
        super::json_error(
            self.status,
            CONTENT_TYPE,
            &error_type(self.code),
            &self.message,
            self.extra,
        )
    }
}

/// The `__type` of an error code (DynamoDB's and DynamoDB Streams'): validation errors come
/// from AWS's validation layer.
pub(crate) fn error_type(code: &str) -> String {
    match code {
        "ValidationException" => "com.amazon.coral.validate#ValidationException".to_owned(),
        "SerializationException" => "com.amazon.coral.service#SerializationException".to_owned(),
        "UnknownOperationException" => {
            "com.amazon.coral.service#UnknownOperationException".to_owned()
        }
        other => format!("com.amazonaws.dynamodb.v20120810#{other}"),
    }
}

/// An error refused before the request reached DynamoDB (a bad signature, an unknown key).
pub(crate) fn error_response(status: StatusCode, code: &'static str, message: &str) -> Response {
    let (status, code) = super::json_refusal(status, code);
    DynamoError::new(status, code, message).into_response()
}

impl From<TableOpError> for DynamoError {
    fn from(e: TableOpError) -> DynamoError {
        let bad = StatusCode::BAD_REQUEST;
        match e {
            TableOpError::Denied(e) => DynamoError::new(
                bad,
                "AccessDeniedException",
                format!(
                    "User is not authorized to perform this action: {}",
                    e.message
                ),
            ),
            TableOpError::Table(e) => match e {
                TableError::NotFound(_) => {
                    DynamoError::new(bad, "ResourceNotFoundException", e.to_string())
                }
                TableError::InUse(_) => {
                    DynamoError::new(bad, "ResourceInUseException", e.to_string())
                }
                TableError::Validation(message) => validation(message),
                TableError::ConditionFailed(ref item) => {
                    let mut error =
                        DynamoError::new(bad, "ConditionalCheckFailedException", e.to_string());
                    if let Some(item) = item {
                        error.extra.insert("Item".to_owned(), item_to_json(item));
                    }
                    error
                }
                TableError::Cancelled(ref reasons) => {
                    let mut error =
                        DynamoError::new(bad, "TransactionCanceledException", e.to_string());
                    let reasons: Vec<Json> = reasons
                        .iter()
                        .map(|reason| {
                            let mut out = json!({ "Code": reason.code.unwrap_or("None") });
                            if let Some(message) = &reason.message {
                                out["Message"] = json!(message);
                            }
                            if let Some(item) = &reason.item {
                                out["Item"] = item_to_json(item);
                            }
                            out
                        })
                        .collect();
                    error
                        .extra
                        .insert("CancellationReasons".to_owned(), Json::Array(reasons));
                    error
                }
                TableError::Internal(message) => DynamoError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    message,
                ),
            },
        }
    }
}
