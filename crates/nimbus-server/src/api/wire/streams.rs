//! The services API's stream bodies: `/v1/streams`, put and read records.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::from_text;

/// `GET /v1/streams`: data streams and tables' change streams (`table/NAME`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamList {
    pub streams: Vec<StreamSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamSummary {
    /// RFC 3339 with milliseconds, in UTC.
    pub created_at: String,
    /// `data` (Kinesis) or `table` (a table's change records).
    pub kind: String,
    pub name: String,
    pub retention_hours: u64,
    pub shards: u32,
}

/// `POST /v1/streams/{stream}/records`: up to 500 records, appended together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutStreamRecords {
    pub records: Vec<NewStreamRecord>,
}

/// A record to put: its data as text (`data`) or as base64 (`dataBase64`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewStreamRecord {
    pub partition_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
}

/// What a put answers: where each record went, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutStreamRecordsResult {
    pub records: Vec<PutStreamRecordResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutStreamRecordResult {
    pub sequence_number: String,
    pub shard_id: String,
}

/// The query of `GET /v1/streams/{stream}/records`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadStream {
    /// `trim_horizon` (the default), `latest`, or the `cursor` a read gave back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// 1 to 10000; 100 when absent.
    #[serde(
        default,
        deserialize_with = "from_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit: Option<usize>,
    /// Seconds to wait for records when there are none yet (at most 20); 0 when absent.
    #[serde(
        default,
        deserialize_with = "from_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub wait: Option<f64>,
}

/// Records of every shard in the order they were appended, and where to read on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecords {
    /// The `from` of the next read.
    pub cursor: String,
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamRecord {
    /// RFC 3339 with milliseconds, in UTC.
    pub arrival_time: String,
    /// Base64.
    pub data: String,
    pub partition_key: String,
    pub sequence_number: String,
    pub shard_id: String,
}

impl NewStreamRecord {
    /// The record's bytes; `Err` names what is wrong.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.data, &self.data_base64) {
            (Some(text), None) => Ok(text.clone().into_bytes()),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("dataBase64 is not base64: {e}")),
            _ => Err("a record has one of data and dataBase64".to_owned()),
        }
    }
}

impl StreamRecord {
    /// The record's bytes (`None` if `data` is not base64).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.data)
            .ok()
    }
}
