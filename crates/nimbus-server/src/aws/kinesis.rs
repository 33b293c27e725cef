//! Kinesis Data Streams' JSON 1.1 protocol (`X-Amz-Target: Kinesis_20131202.<Operation>`,
//! `application/x-amz-json-1.1`), translated onto the stream operations of
//! `services/streams.rs`. Record data travels as base64; timestamps as epoch seconds.
//!
//! Errors are `{"__type": "<Code>", "message": ..}` with status 400 (500 for the platform's
//! own failures), as Kinesis writes them.

use axum::response::Response;
use base64::Engine as _;
use http::StatusCode;
use nimbus_core::streams::{
    NewRecord, ReadFrom, StreamDescription, StreamError, parse_sequence_number, parse_shard_id,
    sequence_number, shard_hash_range, shard_id, stream_arn,
};
use serde_json::{Map, Value as Json, json};

use super::members::{MemberError, MemberReader, missing};
use crate::generation::Generation;
use crate::services::Principal;
use crate::services::streams::{
    self as ops, IteratorError, IteratorStart, ReadOp, RetentionChange, ShardIterator,
    StreamOpError, StreamRef,
};

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The shards of an on-demand stream: a fixed count here, as Kinesis starts one with 4.
const ON_DEMAND_SHARDS: u32 = 4;

/// A Kinesis error: status, code and message.
pub(crate) struct KinesisError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

type Res<T> = Result<T, KinesisError>;

pub(crate) async fn handle(
    generation: &Generation,
    principal: Principal<'_>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Response {
    let region = request_region(parts, &generation.events.region);
    let res = match super::target_operation(parts, super::Service::Kinesis) {
        Some(operation) => dispatch(generation, principal, &region, operation, body).await,
        None => Err(KinesisError::new(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "a Kinesis request names its operation in X-Amz-Target: Kinesis_20131202.<Operation>",
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
    region: &str,
    operation: &str,
    body: &[u8],
) -> Res<Json> {
    let request: Json = serde_json::from_slice(if body.is_empty() { b"{}" } else { body })
        .map_err(|e| serialization(format!("the request body is not JSON: {e}")))?;
    let Json::Object(request) = request else {
        return Err(serialization("the request body is not a JSON object"));
    };
    let events = &generation.events;
    let r = Req(&request);
    Ok(match operation {
        "CreateStream" => {
            let name = r.string("StreamName")?;
            let on_demand = match r.0.get("StreamModeDetails") {
                Some(details) => {
                    let details = Req(object_of(details, "StreamModeDetails")?);
                    match details.string("StreamMode")?.as_str() {
                        "ON_DEMAND" => true,
                        "PROVISIONED" => false,
                        other => {
                            return Err(validation(format!(
                                "1 validation error detected: Value '{other}' at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must satisfy enum value set: [ON_DEMAND, PROVISIONED]"
                            )));
                        }
                    }
                }
                None => false,
            };
            let shards = match (r.optional_whole("ShardCount", 1)?, on_demand) {
                (Some(_), true) => {
                    return Err(invalid_argument(
                        "ShardCount is not supported for streams in ON_DEMAND mode",
                    ));
                }
                (Some(0), false) => {
                    return Err(validation(
                        "1 validation error detected: Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1",
                    ));
                }
                (Some(n), false) if n > u64::from(nimbus_core::streams::MAX_SHARDS) => {
                    return Err(KinesisError::new(
                        StatusCode::BAD_REQUEST,
                        "LimitExceededException",
                        format!(
                            "This request would exceed the shard limit for the account {} in {region}. Current shard count for the account: 0. Limit: {}. Number of additional shards that would have resulted from this request: {n}.",
                            nimbus_core::ACCOUNT_ID,
                            nimbus_core::streams::MAX_SHARDS
                        ),
                    ));
                }
                (Some(n), false) => n as u32,
                // Kinesis wants ShardCount for a provisioned stream; without one, nimbus
                // makes the stream an on-demand one rather than refuse.
                (None, _) => ON_DEMAND_SHARDS,
            };
            ops::create_stream(events, principal, &name, shards).await?;
            json!({})
        }
        "IncreaseStreamRetentionPeriod" | "DecreaseStreamRetentionPeriod" => {
            let name = stream_name(&r)?;
            let hours = r
                .optional_whole("RetentionPeriodHours", 1)?
                .ok_or_else(|| missing("RetentionPeriodHours"))?;
            let change = if operation == "IncreaseStreamRetentionPeriod" {
                RetentionChange::Increase
            } else {
                RetentionChange::Decrease
            };
            ops::change_retention(events, principal, &name, hours, change).await?;
            json!({})
        }
        "DeleteStream" => {
            let name = stream_name(&r)?;
            ops::delete_stream(events, principal, &name).await?;
            json!({})
        }
        "DescribeStream" => {
            let name = stream_name(&r)?;
            let stream = StreamRef::Data(name);
            let description = ops::describe(events, principal, &stream, ReadOp::Describe).await?;
            let start = r.optional_string("ExclusiveStartShardId")?;
            let limit = r
                .optional_whole("Limit", 1)?
                .unwrap_or(100)
                .clamp(1, 10_000) as usize;
            let (shards, more) = shard_page(&description, start.as_deref(), limit)?;
            let mut out = summary(&description, region);
            out.remove("OpenShardCount");
            out.remove("ConsumerCount");
            out.insert("Shards".to_owned(), Json::Array(shards));
            out.insert("HasMoreShards".to_owned(), json!(more));
            json!({ "StreamDescription": out })
        }
        "DescribeStreamSummary" => {
            let name = stream_name(&r)?;
            let stream = StreamRef::Data(name);
            let description =
                ops::describe(events, principal, &stream, ReadOp::DescribeSummary).await?;
            json!({ "StreamDescriptionSummary": summary(&description, region) })
        }
        "ListStreams" => {
            let streams = ops::list_streams(events, principal).await?;
            // Kinesis takes a Limit up to 10,000 and answers at most 100.
            let limit = r.optional_whole("Limit", 1)?.unwrap_or(100).clamp(1, 100) as usize;
            let start = match r.optional_string("NextToken")? {
                Some(token) => Some(decode_token(&token)?),
                None => r.optional_string("ExclusiveStartStreamName")?,
            };
            let rest: Vec<&StreamDescription> = streams
                .iter()
                .filter(|d| start.as_ref().is_none_or(|start| d.spec.name > *start))
                .collect();
            let page = &rest[..rest.len().min(limit)];
            let more = rest.len() > page.len();
            let mut out = json!({
                "StreamNames": page.iter().map(|d| d.spec.name.as_str()).collect::<Vec<_>>(),
                "HasMoreStreams": more,
                "StreamSummaries": page.iter().map(|d| json!({
                    "StreamName": d.spec.name,
                    "StreamARN": stream_arn(region, &d.spec.name),
                    "StreamStatus": "ACTIVE",
                    "StreamModeDetails": { "StreamMode": "PROVISIONED" },
                    "StreamCreationTimestamp": seconds(d.created_us),
                })).collect::<Vec<_>>(),
            });
            if more && let Some(last) = page.last() {
                out["NextToken"] = json!(encode_token(&last.spec.name));
            }
            out
        }
        "ListShards" => {
            // A NextToken stands for the stream and the last shard listed, and may not be
            // given with the stream's name.
            let (name, start) = match r.optional_string("NextToken")? {
                Some(token) => {
                    let text = decode_token(&token)?;
                    let (name, shard) = text
                        .split_once('\n')
                        .ok_or_else(|| invalid_argument("Invalid NextToken."))?;
                    // Kinesis refuses a StreamName beside a NextToken; the same name is
                    // taken, as other emulators take it.
                    if r.optional_string("StreamName")?
                        .is_some_and(|given| given != name)
                    {
                        return Err(invalid_argument(
                            "NextToken and StreamName cannot be provided together.",
                        ));
                    }
                    (name.to_owned(), Some(shard.to_owned()))
                }
                None => (
                    stream_name(&r)?,
                    r.optional_string("ExclusiveStartShardId")?,
                ),
            };
            let stream = StreamRef::Data(name.clone());
            let description = ops::describe(events, principal, &stream, ReadOp::ListShards).await?;
            let limit = r
                .optional_whole("MaxResults", 1)?
                .unwrap_or(1000)
                .clamp(1, 10_000) as usize;
            let (shards, more) = shard_page(&description, start.as_deref(), limit)?;
            let last = shards
                .last()
                .and_then(|shard| shard["ShardId"].as_str())
                .map(str::to_owned);
            let mut out = json!({ "Shards": shards });
            if more && let Some(last) = last {
                out["NextToken"] = json!(encode_token(&format!("{name}\n{last}")));
            }
            out
        }
        "PutRecord" => {
            let name = stream_name(&r)?;
            let record = new_record(&r)?;
            let appended =
                ops::put_records(events, principal, "kinesis:PutRecord", &name, vec![record])
                    .await?;
            let appended = appended
                .first()
                .ok_or_else(|| internal("the store appended no record"))?;
            json!({
                "ShardId": shard_id(appended.shard),
                "SequenceNumber": sequence_number(appended.seq),
                "EncryptionType": "NONE",
            })
        }
        "PutRecords" => {
            let name = stream_name(&r)?;
            let entries = r.array("Records")?;
            if entries.is_empty() {
                return Err(validation(
                    "1 validation error detected: Value '[]' at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1",
                ));
            }
            let mut records = Vec::with_capacity(entries.len());
            for entry in entries {
                records.push(new_record(&Req(object_of(entry, "Records")?))?);
            }
            let appended =
                ops::put_records(events, principal, "kinesis:PutRecords", &name, records).await?;
            // The records are appended in one transaction, so none fails alone.
            json!({
                "FailedRecordCount": 0,
                "Records": appended.iter().map(|a| json!({
                    "ShardId": shard_id(a.shard),
                    "SequenceNumber": sequence_number(a.seq),
                })).collect::<Vec<_>>(),
                "EncryptionType": "NONE",
            })
        }
        "GetShardIterator" => {
            let name = stream_name(&r)?;
            let shard = shard_of(&r.string("ShardId")?, &name)?;
            let start = iterator_start(&r)?;
            let stream = StreamRef::Data(name);
            let iterator = ops::shard_iterator(events, principal, &stream, shard, start).await?;
            json!({ "ShardIterator": iterator.encode() })
        }
        "GetRecords" => {
            let iterator = parse_iterator(&r.string("ShardIterator")?)?;
            if !ops::valid_stream_name(&iterator.stream) {
                return Err(invalid_argument("Invalid ShardIterator."));
            }
            let limit = match r.optional_whole("Limit", 1)? {
                Some(n) if n == 0 || n > ops::MAX_GET_RECORDS as u64 => {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {}",
                        ops::MAX_GET_RECORDS
                    )));
                }
                Some(n) => n as usize,
                None => ops::MAX_GET_RECORDS,
            };
            let page = ops::get_records(events, principal, &iterator, limit).await?;
            json!({
                "Records": page.records.iter().map(|record| json!({
                    "SequenceNumber": sequence_number(record.seq),
                    "ApproximateArrivalTimestamp": seconds(record.arrival_us),
                    "Data": base64::engine::general_purpose::STANDARD.encode(&record.data),
                    "PartitionKey": record.partition_key,
                })).collect::<Vec<_>>(),
                "NextShardIterator": page.next.encode(),
                "MillisBehindLatest": page.millis_behind,
            })
        }
        other => {
            return Err(KinesisError::new(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                format!("nimbus does not serve the Kinesis operation {other} yet"),
            ));
        }
    })
}

/// The region a request's ARNs are written in: the one it was signed for, as Kinesis names
/// streams in the caller's region, else the app's. Streams themselves are not per region.
fn request_region(parts: &http::request::Parts, default: &str) -> String {
    parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(super::sigv4::Authorization::parse)
        .map(|auth| auth.region)
        .filter(|region| {
            !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .unwrap_or_else(|| default.to_owned())
}

/// The stream a request names, by `StreamName` or `StreamARN`. A name Kinesis would not
/// take (a table's change stream, `table/NAME`, among them) is refused as Kinesis refuses it.
fn stream_name(r: &Req<'_>) -> Res<String> {
    if let Some(name) = r.optional_string("StreamName")? {
        if !ops::valid_stream_name(&name) {
            return Err(validation(format!(
                "1 validation error detected: Value '{name}' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
            )));
        }
        return Ok(name);
    }
    match r.optional_string("StreamARN")? {
        Some(arn) => name_of_arn(&arn)
            .map(str::to_owned)
            .ok_or_else(|| invalid_argument(format!("Invalid StreamARN {arn}"))),
        None => Err(invalid_argument(
            "Either StreamName or StreamARN should be provided.",
        )),
    }
}

/// The stream an ARN names: `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME` (any region and
/// account, as the manifest's ARNs may carry `*`).
pub(crate) fn name_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some("kinesis"), Some(_), Some(_), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    resource
        .strip_prefix("stream/")
        .filter(|name| ops::valid_stream_name(name))
}

fn new_record(r: &Req<'_>) -> Res<NewRecord> {
    let data = r.string("Data")?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map_err(|_| serialization("Data must be base64"))?;
    // Kinesis places a record by ExplicitHashKey when given; nimbus always places it by its
    // partition key, so only the key's form is checked.
    if let Some(hash) = r.optional_string("ExplicitHashKey")?
        && (hash.is_empty() || hash.parse::<u128>().is_err())
    {
        return Err(invalid_argument(format!(
            "ExplicitHashKey {hash} is not a number between 0 and 2^128-1"
        )));
    }
    Ok(NewRecord {
        partition_key: r.string("PartitionKey")?,
        data,
    })
}

fn iterator_start(r: &Req<'_>) -> Res<IteratorStart> {
    let kind = r.string("ShardIteratorType")?;
    let sequence = || -> Res<u64> {
        let text = r
            .optional_string("StartingSequenceNumber")?
            .ok_or_else(|| {
                invalid_argument(format!(
                    "StartingSequenceNumber is required for ShardIteratorType {kind}"
                ))
            })?;
        parse_sequence_number(&text).ok_or_else(|| {
            invalid_argument(format!(
                "StartingSequenceNumber {text} is not a sequence number"
            ))
        })
    };
    Ok(match kind.as_str() {
        "TRIM_HORIZON" => IteratorStart::At(ReadFrom::After(0)),
        "LATEST" => IteratorStart::Latest,
        "AT_SEQUENCE_NUMBER" => IteratorStart::At(ReadFrom::After(sequence()?.saturating_sub(1))),
        "AFTER_SEQUENCE_NUMBER" => IteratorStart::At(ReadFrom::After(sequence()?)),
        "AT_TIMESTAMP" => {
            let seconds = r.optional_f64("Timestamp")?.ok_or_else(|| {
                invalid_argument("Timestamp is required for ShardIteratorType AT_TIMESTAMP")
            })?;
            IteratorStart::At(ReadFrom::AtTime((seconds * 1e6) as i64))
        }
        other => {
            return Err(invalid_argument(format!(
                "Invalid ShardIteratorType: {other}"
            )));
        }
    })
}

fn shard_of(id: &str, stream: &str) -> Res<u32> {
    parse_shard_id(id).ok_or_else(|| {
        KinesisError::new(
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
            format!(
                "Shard {id} in stream {stream} under account {} does not exist",
                nimbus_core::ACCOUNT_ID
            ),
        )
    })
}

fn parse_iterator(token: &str) -> Res<ShardIterator> {
    ShardIterator::parse(token, ops::now_ms()).map_err(|e| match e {
        IteratorError::Invalid => invalid_argument("Invalid ShardIterator."),
        IteratorError::Expired { issued_ms, now_ms } => KinesisError::new(
            StatusCode::BAD_REQUEST,
            "ExpiredIteratorException",
            format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {} milliseconds.",
                millis_text(issued_ms),
                millis_text(now_ms),
                ops::ITERATOR_LIFETIME.as_millis()
            ),
        ),
    })
}

fn millis_text(ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    nimbus_core::time::rfc3339_millis(time)
}

/// A page of a stream's shards after `start` (a shard id), and whether more follow.
fn shard_page(
    description: &StreamDescription,
    start: Option<&str>,
    limit: usize,
) -> Res<(Vec<Json>, bool)> {
    let first = match start {
        Some(id) => match parse_shard_id(id) {
            Some(shard) => shard as usize + 1,
            None => return Err(invalid_argument(format!("Invalid ShardId {id}"))),
        },
        None => 0,
    };
    let n_shards = description.shard_ranges.len();
    let shards: Vec<Json> = (first..n_shards)
        .take(limit)
        .map(|idx| shard_json(description, idx))
        .collect();
    let more = first + shards.len() < n_shards;
    Ok((shards, more))
}

/// A shard as DescribeStream and ListShards give it.
pub(crate) fn shard_json(description: &StreamDescription, idx: usize) -> Json {
    let n_shards = description.spec.shards;
    let (start, end) = shard_hash_range(idx as u32, n_shards);
    let first_seq = description
        .shard_ranges
        .get(idx)
        .copied()
        .flatten()
        .map_or(0, |(low, _)| low);
    json!({
        "ShardId": shard_id(idx as u32),
        "HashKeyRange": { "StartingHashKey": start.to_string(), "EndingHashKey": end.to_string() },
        "SequenceNumberRange": { "StartingSequenceNumber": sequence_number(first_seq) },
    })
}

/// DescribeStreamSummary's `StreamDescriptionSummary`.
fn summary(description: &StreamDescription, region: &str) -> Map<String, Json> {
    let spec = &description.spec;
    let out = json!({
        "StreamName": spec.name,
        "StreamARN": stream_arn(region, &spec.name),
        "StreamStatus": "ACTIVE",
        "StreamModeDetails": { "StreamMode": "PROVISIONED" },
        "RetentionPeriodHours": spec.retention.as_secs() / 3600,
        "StreamCreationTimestamp": seconds(description.created_us),
        "EnhancedMonitoring": [{ "ShardLevelMetrics": [] }],
        "EncryptionType": "NONE",
        "OpenShardCount": spec.shards,
        "ConsumerCount": 0,
    });
    match out {
        Json::Object(map) => map,
        _ => Map::new(),
    }
}

/// Epoch seconds with a fraction, as the JSON protocols write timestamps.
pub(crate) fn seconds(us: i64) -> f64 {
    (us / 1000) as f64 / 1000.0
}

fn encode_token(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn decode_token(token: &str) -> Res<String> {
    base64::engine::general_purpose::STANDARD
        .decode(token.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| invalid_argument("Invalid NextToken."))
}

/// A request's fields, read with Kinesis's validation messages.
struct Req<'r>(&'r Map<String, Json>);

impl<'r> MemberReader<'r> for Req<'r> {
    type Error = KinesisError;
    fn members(&self) -> &'r Map<String, Json> {
        self.0
    }
}

impl From<MemberError> for KinesisError {
    fn from(e: MemberError) -> KinesisError {
        KinesisError::new(StatusCode::BAD_REQUEST, e.code, e.message)
    }
}

impl Req<'_> {
    fn optional_f64(&self, field: &str) -> Res<Option<f64>> {
        match self.0.get(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => Ok(n.as_f64()),
            Some(Json::String(s)) => s
                .parse::<f64>()
                .map(Some)
                .map_err(|_| serialization(format!("{field} must be epoch seconds, got {s:?}"))),
            Some(other) => Err(serialization(format!(
                "{field} must be a number, got {other}"
            ))),
        }
    }
}

fn object_of<'j>(value: &'j Json, field: &str) -> Res<&'j Map<String, Json>> {
    match value {
        Json::Object(map) => Ok(map),
        other => Err(serialization(format!(
            "{field} must be an object, got {other}"
        ))),
    }
}

fn serialization(message: impl Into<String>) -> KinesisError {
    KinesisError::new(StatusCode::BAD_REQUEST, "SerializationException", message)
}

fn validation(message: impl Into<String>) -> KinesisError {
    KinesisError::new(StatusCode::BAD_REQUEST, "ValidationException", message)
}

fn invalid_argument(message: impl Into<String>) -> KinesisError {
    KinesisError::new(StatusCode::BAD_REQUEST, "InvalidArgumentException", message)
}

fn internal(message: impl Into<String>) -> KinesisError {
    KinesisError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalFailure",
        message,
    )
}

impl KinesisError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> KinesisError {
        KinesisError {
            status,
            code,
            message: message.into(),
        }
    }

    fn into_response(self) -> Response {
        super::json_error(
            self.status,
            CONTENT_TYPE,
            self.code,
            &self.message,
            Map::new(),
        )
    }
}

/// An error refused before the request reached Kinesis (a bad signature, an unknown key).
pub(crate) fn error_response(status: StatusCode, code: &'static str, message: &str) -> Response {
    let (status, code) = super::json_refusal(status, code);
    KinesisError::new(status, code, message).into_response()
}

impl From<StreamOpError> for KinesisError {
    fn from(e: StreamOpError) -> KinesisError {
        let bad = StatusCode::BAD_REQUEST;
        let account = nimbus_core::ACCOUNT_ID;
        match e {
            StreamOpError::Denied(e) => KinesisError::new(
                bad,
                "AccessDeniedException",
                format!(
                    "User is not authorized to perform this action: {}",
                    e.message
                ),
            ),
            StreamOpError::Stream(e) => match e {
                StreamError::NotFound(what) => KinesisError::new(
                    bad,
                    "ResourceNotFoundException",
                    format!("{what} under account {account} not found."),
                ),
                StreamError::InUse(stream) => KinesisError::new(
                    bad,
                    "ResourceInUseException",
                    format!("Stream {stream} under account {account} already exists."),
                ),
                // AWS's validation layer words its refusals so; the rest are Kinesis's own.
                StreamError::Validation(message)
                    if message.starts_with("1 validation error detected") =>
                {
                    validation(message)
                }
                StreamError::Validation(message) => invalid_argument(message),
                StreamError::Internal(message) => internal(message),
            },
        }
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_arns_name_their_stream() {
        assert_eq!(
            name_of_arn("arn:aws:kinesis:us-east-1:123456789012:stream/clicks"),
            Some("clicks")
        );
        assert_eq!(
            name_of_arn("arn:aws:kinesis:*:*:stream/a.b-c"),
            Some("a.b-c")
        );
        assert_eq!(name_of_arn("arn:aws:sqs:us-east-1:1:stream/clicks"), None);
        assert_eq!(name_of_arn("arn:aws:kinesis:us-east-1:1:clicks"), None);
        assert_eq!(name_of_arn("arn:aws:kinesis:us-east-1:1:stream/a/b"), None);
        assert_eq!(name_of_arn("clicks"), None);
    }

    #[test]
    fn timestamps_are_epoch_seconds_with_milliseconds() {
        assert_eq!(seconds(1_545_084_650_987_654), 1_545_084_650.987);
        assert_eq!(seconds(0), 0.0);
    }

    #[test]
    fn list_tokens_read_back() {
        let token = encode_token("clicks\nshardId-000000000001");
        assert_eq!(
            decode_token(&token).ok().as_deref(),
            Some("clicks\nshardId-000000000001")
        );
        assert!(decode_token("%%%").is_err());
    }
}
