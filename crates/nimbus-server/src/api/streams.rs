//! The services API's streams: list them, put records on a data stream, and read any
//! stream's records across its shards in the order they were appended (`nimbus stream`).

use std::time::Duration;

use axum::extract::Path;
use base64::Engine as _;
use nimbus_core::streams::{NewRecord, StreamDescription, StreamKind, sequence_number, shard_id};

use super::{Caller, Json, Query, wire};
use crate::error::ApiError;
use crate::events::Events;
use crate::services::streams::{self as ops, StreamOpError, StreamPosition, StreamRef};
use crate::services::{Principal, bad_request};

/// Records a read gives when the query names no limit.
const DEFAULT_READ_LIMIT: usize = 100;

pub(super) async fn list_streams(caller: Caller) -> Result<Json<wire::StreamList>, ApiError> {
    stream_list(caller.events(), caller.principal())
        .await
        .map(Json)
}

/// Every stream the caller may list (also the dashboard's).
pub(crate) async fn stream_list(
    events: &Events,
    principal: Principal<'_>,
) -> Result<wire::StreamList, ApiError> {
    let mut streams = ops::list_streams(events, principal).await?;
    // Tables' change streams are listed to whoever may list them.
    match ops::list_table_streams(events, principal, None).await {
        Ok(tables) => streams.extend(tables),
        Err(StreamOpError::Denied(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(wire::StreamList {
        streams: streams.iter().map(summary).collect(),
    })
}

pub(super) async fn put_records(
    caller: Caller,
    Path(stream): Path<String>,
    Json(request): Json<wire::PutStreamRecords>,
) -> Result<Json<wire::PutStreamRecordsResult>, ApiError> {
    if let StreamRef::Table(table) = StreamRef::from_store_name(&stream) {
        return Err(bad_request(format!(
            "{stream} is the change stream of table {table}, written by the table's writes only"
        )));
    }
    let mut records = Vec::with_capacity(request.records.len());
    for (idx, record) in request.records.iter().enumerate() {
        let data = record
            .bytes()
            .map_err(|e| bad_request(format!("records[{idx}]: {e}")))?;
        records.push(NewRecord {
            partition_key: record.partition_key.clone(),
            data,
        });
    }
    let appended = ops::put_records(
        caller.events(),
        caller.principal(),
        "kinesis:PutRecords",
        &stream,
        records,
    )
    .await?;
    Ok(Json(wire::PutStreamRecordsResult {
        records: appended
            .iter()
            .map(|a| wire::PutStreamRecordResult {
                sequence_number: sequence_number(a.seq),
                shard_id: shard_id(a.shard),
            })
            .collect(),
    }))
}

pub(super) async fn read_records(
    caller: Caller,
    Path(stream): Path<String>,
    Query(request): Query<wire::ReadStream>,
) -> Result<Json<wire::StreamRecords>, ApiError> {
    let from = match request.from.as_deref() {
        None | Some("trim_horizon") => StreamPosition::TrimHorizon,
        Some("latest") => StreamPosition::Latest,
        Some(cursor) => StreamPosition::After(parse_cursor(cursor).ok_or_else(|| {
            bad_request("from is trim_horizon, latest or the cursor a read gave back")
        })?),
    };
    let stream = StreamRef::from_store_name(&stream);
    let limit = request.limit.unwrap_or(DEFAULT_READ_LIMIT);
    let wait = match request.wait {
        Some(seconds) => Duration::try_from_secs_f64(seconds)
            .map_err(|_| bad_request("wait is 0 to 20 seconds"))?
            .min(ops::MAX_READ_WAIT),
        None => Duration::ZERO,
    };
    let page = ops::read_stream(
        caller.events(),
        caller.principal(),
        &stream,
        from,
        limit,
        wait,
    )
    .await?;
    Ok(Json(wire::StreamRecords {
        cursor: page
            .positions
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
        records: page
            .records
            .iter()
            .map(|record| wire::StreamRecord {
                arrival_time: nimbus_core::time::rfc3339_millis(
                    nimbus_core::time::from_unix_micros(record.arrival_us),
                ),
                data: base64::engine::general_purpose::STANDARD.encode(&record.data),
                partition_key: record.partition_key.clone(),
                sequence_number: sequence_number(record.seq),
                shard_id: shard_id(record.shard),
            })
            .collect(),
    }))
}

/// A cursor: the last sequence number read per shard, `12,0,7`.
fn parse_cursor(cursor: &str) -> Option<Vec<u64>> {
    cursor
        .split(',')
        .map(|seq| seq.parse().ok())
        .collect::<Option<Vec<u64>>>()
        .filter(|positions| !positions.is_empty())
}

fn summary(description: &StreamDescription) -> wire::StreamSummary {
    let spec = &description.spec;
    wire::StreamSummary {
        created_at: nimbus_core::time::rfc3339_millis(nimbus_core::time::from_unix_micros(
            description.created_us,
        )),
        kind: match spec.kind {
            StreamKind::Data => "data",
            StreamKind::Table => "table",
        }
        .to_owned(),
        name: spec.name.clone(),
        retention_hours: spec.retention.as_secs() / 3600,
        shards: spec.shards,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_cursor;

    #[test]
    fn cursors_hold_one_position_per_shard() {
        assert_eq!(parse_cursor("12,0,7"), Some(vec![12, 0, 7]));
        assert_eq!(parse_cursor("3"), Some(vec![3]));
        assert_eq!(parse_cursor(""), None);
        assert_eq!(parse_cursor("1,,2"), None);
        assert_eq!(parse_cursor("latest!"), None);
    }
}
