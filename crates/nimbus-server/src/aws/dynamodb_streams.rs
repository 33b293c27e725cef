//! DynamoDB Streams' JSON 1.0 protocol (`X-Amz-Target: DynamoDBStreams_20120810.<Operation>`):
//! ListStreams, DescribeStream, GetShardIterator and GetRecords on the tables' change
//! streams, through the stream operations of `services/streams.rs`. A stream is named by
//! its ARN, `table_stream_arn(region, table, label)`; any label names the table's one
//! stream, since nimbus keeps one per table.
//!
//! A table stream shows one shard, which reads the store's shards merged in sequence order
//! (the order of the writes): DynamoDB gives a small table one open shard, and readers
//! written against that (reading `Shards[0]` only) see every record.
//!
//! Errors are DynamoDB's: `{"__type": "com.amazonaws.dynamodb.v20120810#<Code>", "message": ..}`.

use axum::response::Response;
use http::StatusCode;
use nimbus_core::streams::{
    ReadFrom, StreamDescription, StreamError, parse_sequence_number, sequence_number, stream_label,
    table_of_stream, table_stream_arn,
};
use nimbus_core::tables::TableSpec;
use serde_json::{Map, Value as Json, json};

use super::members::{MemberError, MemberReader};
use crate::generation::Generation;
use crate::services::Principal;
use crate::services::streams::{
    self as ops, IteratorError, IteratorStart, ReadOp, ShardIterator, StreamOpError, StreamRef,
};

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// DynamoDB Streams' most records in one GetRecords.
const MAX_GET_RECORDS: u64 = 1000;

/// A DynamoDB Streams error: status, code and message.
pub(crate) struct StreamsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

type Res<T> = Result<T, StreamsError>;

pub(crate) async fn handle(
    generation: &Generation,
    principal: Principal<'_>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Response {
    let res = match super::target_operation(parts, super::Service::DynamoDbStreams) {
        Some(operation) => dispatch(generation, principal, operation, body).await,
        None => Err(StreamsError::new(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "a DynamoDB Streams request names its operation in X-Amz-Target: DynamoDBStreams_20120810.<Operation>",
        )),
    };
    match res {
        Ok(json) => super::response(StatusCode::OK, CONTENT_TYPE, json.to_string().into_bytes()),
        Err(e) => e.into_response(),
    }
}

async fn dispatch(
    generation: &Generation,
    principal: Principal<'_>,
    operation: &str,
    body: &[u8],
) -> Res<Json> {
    let request: Json = serde_json::from_slice(if body.is_empty() { b"{}" } else { body })
        .map_err(|e| serialization(format!("the request body is not JSON: {e}")))?;
    let Json::Object(request) = request else {
        return Err(serialization("the request body is not a JSON object"));
    };
    let events = &generation.events;
    let region = events.region.as_str();
    let r = Req(&request);
    Ok(match operation {
        "ListStreams" => {
            let table = r.optional_string("TableName")?;
            let streams = ops::list_table_streams(events, principal, table.as_deref()).await?;
            let limit = r.optional_whole("Limit", 1)?.unwrap_or(100).clamp(1, 100) as usize;
            let start = r
                .optional_string("ExclusiveStartStreamArn")?
                .map(|arn| table_of_arn(&arn).map(str::to_owned))
                .transpose()?;
            let listed: Vec<(String, String)> = streams
                .iter()
                .filter_map(|d| {
                    let table = d.spec.table_name()?.to_owned();
                    Some((arn_of(region, d), table))
                })
                .filter(|(_, table)| start.as_ref().is_none_or(|start| table > start))
                .collect();
            let page = &listed[..listed.len().min(limit)];
            let mut out = json!({
                "Streams": page.iter().map(|(arn, table)| json!({
                    "StreamArn": arn,
                    "TableName": table,
                    "StreamLabel": arn.rsplit("/stream/").next().unwrap_or_default(),
                })).collect::<Vec<_>>(),
            });
            if listed.len() > page.len()
                && let Some((arn, _)) = page.last()
            {
                out["LastEvaluatedStreamArn"] = json!(arn);
            }
            out
        }
        "DescribeStream" => {
            let arn = r.string("StreamArn")?;
            let table = table_of_arn(&arn)?.to_owned();
            let stream = StreamRef::Table(table.clone());
            let description = ops::describe(events, principal, &stream, ReadOp::Describe)
                .await
                .map_err(|e| with_arn(e, &arn))?;
            let spec = ops::table_of(events, &table)
                .await
                .map_err(|e| with_arn(e, &arn))?;
            // The one shard, unless the client asks for the shards after it.
            let shards: Vec<Json> = match r.optional_string("ExclusiveStartShardId")? {
                Some(id) if parse_shard_id(&id).is_some() => Vec::new(),
                Some(id) => return Err(validation(format!("Invalid ShardId {id}"))),
                None => {
                    let first_seq = description
                        .shard_ranges
                        .iter()
                        .flatten()
                        .map(|(low, _)| *low)
                        .min()
                        .unwrap_or(0);
                    vec![json!({
                        "ShardId": shard_id(0),
                        "SequenceNumberRange": { "StartingSequenceNumber": sequence_number(first_seq) },
                    })]
                }
            };
            let out = json!({
                "StreamArn": arn_of(region, &description),
                "StreamLabel": stream_label(description.created_us),
                "StreamStatus": "ENABLED",
                "StreamViewType": spec.stream_view.as_deref().unwrap_or("KEYS_ONLY"),
                "CreationRequestDateTime": super::kinesis::seconds(description.created_us),
                "TableName": table,
                "KeySchema": key_schema(&spec),
                "Shards": shards,
            });
            json!({ "StreamDescription": out })
        }
        "GetShardIterator" => {
            let arn = r.string("StreamArn")?;
            let table = table_of_arn(&arn)?.to_owned();
            let id = r.string("ShardId")?;
            if parse_shard_id(&id) != Some(0) {
                return Err(not_found(format!(
                    "Requested resource not found: Shard does not exist: {id}"
                )));
            }
            let kind = r.string("ShardIteratorType")?;
            let sequence = || -> Res<u64> {
                let text = r.optional_string("SequenceNumber")?.ok_or_else(|| {
                    validation(format!(
                        "Must specify SequenceNumber for ShardIteratorType {kind}"
                    ))
                })?;
                parse_sequence_number(&text)
                    .ok_or_else(|| validation(format!("Invalid SequenceNumber {text}")))
            };
            let start = match kind.as_str() {
                "TRIM_HORIZON" => IteratorStart::At(ReadFrom::After(0)),
                "LATEST" => IteratorStart::Latest,
                "AT_SEQUENCE_NUMBER" => {
                    IteratorStart::At(ReadFrom::After(sequence()?.saturating_sub(1)))
                }
                "AFTER_SEQUENCE_NUMBER" => IteratorStart::At(ReadFrom::After(sequence()?)),
                other => {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{other}' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST]"
                    )));
                }
            };
            let stream = StreamRef::Table(table);
            let iterator = ops::merged_iterator(events, principal, &stream, start)
                .await
                .map_err(|e| with_arn(e, &arn))?;
            json!({ "ShardIterator": iterator.encode() })
        }
        "GetRecords" => {
            let token = r.string("ShardIterator")?;
            let iterator = ShardIterator::parse(&token, ops::now_ms()).map_err(|e| match e {
                IteratorError::Invalid => validation("Invalid ShardIterator"),
                IteratorError::Expired { .. } => StreamsError::new(
                    StatusCode::BAD_REQUEST,
                    "ExpiredIteratorException",
                    "Iterator expired",
                ),
            })?;
            if table_of_stream(&iterator.stream).is_none() {
                return Err(validation("Invalid ShardIterator"));
            }
            let limit = match r.optional_whole("Limit", 1)? {
                Some(n) if n == 0 || n > MAX_GET_RECORDS => {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {MAX_GET_RECORDS}"
                    )));
                }
                Some(n) => n as usize,
                None => MAX_GET_RECORDS as usize,
            };
            let page = ops::get_merged_records(events, principal, &iterator, limit).await?;
            let records: Vec<Json> = page
                .records
                .iter()
                .filter_map(|record| crate::events::dynamodb_record(record, region))
                .collect();
            json!({ "Records": records, "NextShardIterator": page.next.encode() })
        }
        other => {
            return Err(StreamsError::new(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                format!("nimbus does not serve the DynamoDB Streams operation {other} yet"),
            ));
        }
    })
}

/// DynamoDB Streams' shard id: longer than Kinesis's (the SDKs want 28 characters or
/// more), `shardId-00000000000000000003-00000000`.
fn shard_id(shard: u32) -> String {
    format!("shardId-{shard:020}-00000000")
}

/// The shard a DynamoDB Streams shard id names.
fn parse_shard_id(id: &str) -> Option<u32> {
    let (digits, suffix) = id.strip_prefix("shardId-")?.split_once('-')?;
    if suffix != "00000000" || digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The table a stream ARN names: `arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL`,
/// any region, account and label.
fn table_of_arn(arn: &str) -> Res<&str> {
    let mut parts = arn.splitn(6, ':');
    let resource = match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(_), Some("dynamodb"), Some(_), Some(_), Some(resource)) => resource,
        _ => return Err(invalid_arn(arn)),
    };
    let (table, label) = resource
        .strip_prefix("table/")
        .and_then(|rest| rest.split_once("/stream/"))
        .ok_or_else(|| invalid_arn(arn))?;
    if table.is_empty() || label.is_empty() || table.contains('/') {
        return Err(invalid_arn(arn));
    }
    Ok(table)
}

fn invalid_arn(arn: &str) -> StreamsError {
    validation(format!("Invalid StreamArn: {arn}"))
}

/// A table stream's ARN, labelled with its creation time.
fn arn_of(region: &str, description: &StreamDescription) -> String {
    let table = description.spec.table_name().unwrap_or_default();
    table_stream_arn(region, table, &stream_label(description.created_us))
}

fn key_schema(spec: &TableSpec) -> Vec<Json> {
    let mut schema = vec![json!({ "AttributeName": spec.partition_key.name, "KeyType": "HASH" })];
    if let Some(sort) = &spec.sort_key {
        schema.push(json!({ "AttributeName": sort.name, "KeyType": "RANGE" }));
    }
    schema
}

/// A stream not found is named by the ARN the client gave.
fn with_arn(e: StreamOpError, arn: &str) -> StreamOpError {
    match e {
        StreamOpError::Stream(StreamError::NotFound(what)) if what.starts_with("Stream ") => {
            StreamOpError::Stream(StreamError::NotFound(format!("Stream: {arn}")))
        }
        other => other,
    }
}

/// A request's fields, read with DynamoDB's validation messages.
struct Req<'r>(&'r Map<String, Json>);

impl<'r> MemberReader<'r> for Req<'r> {
    type Error = StreamsError;
    fn members(&self) -> &'r Map<String, Json> {
        self.0
    }
}

impl From<MemberError> for StreamsError {
    fn from(e: MemberError) -> StreamsError {
        StreamsError::new(StatusCode::BAD_REQUEST, e.code, e.message)
    }
}

fn serialization(message: impl Into<String>) -> StreamsError {
    StreamsError::new(StatusCode::BAD_REQUEST, "SerializationException", message)
}

fn validation(message: impl Into<String>) -> StreamsError {
    StreamsError::new(StatusCode::BAD_REQUEST, "ValidationException", message)
}

fn not_found(message: impl Into<String>) -> StreamsError {
    StreamsError::new(
        StatusCode::BAD_REQUEST,
        "ResourceNotFoundException",
        message,
    )
}

impl StreamsError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> StreamsError {
        StreamsError {
            status,
            code,
            message: message.into(),
        }
    }

    fn into_response(self) -> Response {
        super::json_error(
            self.status,
            CONTENT_TYPE,
            &super::dynamodb::error_type(self.code),
            &self.message,
            serde_json::Map::new(),
        )
    }
}

/// An error refused before the request reached DynamoDB Streams.
pub(crate) fn error_response(status: StatusCode, code: &'static str, message: &str) -> Response {
    super::dynamodb::error_response(status, code, message)
}

impl From<StreamOpError> for StreamsError {
    fn from(e: StreamOpError) -> StreamsError {
        match e {
            StreamOpError::Denied(e) => StreamsError::new(
                StatusCode::BAD_REQUEST,
                "AccessDeniedException",
                format!(
                    "User is not authorized to perform this action: {}",
                    e.message
                ),
            ),
            StreamOpError::Stream(e) => match e {
                StreamError::NotFound(what) => {
                    not_found(format!("Requested resource not found: {what} not found"))
                }
                StreamError::InUse(_) | StreamError::Validation(_) => validation(e.to_string()),
                StreamError::Internal(message) => StreamsError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    message,
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::streams::StreamRecord;

    #[test]
    fn shard_ids_are_long_enough_for_the_sdks_and_read_back() {
        assert_eq!(shard_id(3), "shardId-00000000000000000003-00000000");
        assert!(shard_id(0).len() >= 28);
        assert_eq!(parse_shard_id(&shard_id(63)), Some(63));
        assert_eq!(parse_shard_id("shardId-000000000003"), None);
        assert_eq!(
            parse_shard_id("shardId-0000000000000000000x-00000000"),
            None
        );
    }

    #[test]
    fn stream_arns_name_their_table_whatever_the_label() {
        let arn = table_stream_arn("us-east-1", "orders", &stream_label(1_765_000_000_000_000));
        assert_eq!(table_of_arn(&arn).ok(), Some("orders"));
        assert_eq!(
            table_of_arn("arn:aws:dynamodb:*:*:table/orders/stream/1970-01-01T00:00:00.000").ok(),
            Some("orders")
        );
        for bad in [
            "arn:aws:dynamodb:us-east-1:1:table/orders",
            "arn:aws:dynamodb:us-east-1:1:table/orders/stream/",
            "arn:aws:kinesis:us-east-1:1:table/orders/stream/x",
            "arn:aws:dynamodb:us-east-1:1:table//stream/x",
            "orders",
        ] {
            assert!(table_of_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn change_records_read_as_lambda_and_dynamodb_streams_give_them() {
        let data = json!({
            "eventName": "REMOVE",
            "Keys": { "id": { "S": "a" } },
            "OldImage": { "id": { "S": "a" }, "n": { "N": "1" } },
            "SizeBytes": 9,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "userIdentity": { "type": "Service", "principalId": "dynamodb.amazonaws.com" },
        });
        let record = StreamRecord {
            shard: 2,
            seq: 42,
            partition_key: "0161".to_owned(),
            data: data.to_string().into_bytes(),
            arrival_us: 1_767_225_600_123_456,
        };
        let out = crate::events::dynamodb_record(&record, "eu-west-1").expect("a change record");
        expect_test::expect![[r#"{"awsRegion":"eu-west-1","dynamodb":{"ApproximateCreationDateTime":1767225600,"Keys":{"id":{"S":"a"}},"OldImage":{"id":{"S":"a"},"n":{"N":"1"}},"SequenceNumber":"000000000000000000042","SizeBytes":9,"StreamViewType":"NEW_AND_OLD_IMAGES"},"eventID":"0000000000000000000000000000002a","eventName":"REMOVE","eventSource":"aws:dynamodb","eventVersion":"1.1","userIdentity":{"principalId":"dynamodb.amazonaws.com","type":"Service"}}"#]]
            .assert_eq(&out.to_string());
        let garbage = StreamRecord {
            data: b"not json".to_vec(),
            ..record
        };
        assert_eq!(crate::events::dynamodb_record(&garbage, "eu-west-1"), None);
    }
}
