//! Ordered streams: Kinesis-style data streams and the change streams of tables, split
//! into shards, each an append-only log read in order; and the [`StreamStore`] trait a
//! storage backend implements.
//!
//! A record's shard is fixed by its partition key (the MD5 of the key, in equal hash
//! ranges, as Kinesis assigns it), so the records of one key keep their order. Sequence
//! numbers grow through a whole stream, so within a shard they are increasing, and a
//! consumer's position is one number per shard (its checkpoint). Like
//! [`TableStore`](crate::tables::TableStore), the calls are synchronous and each is one transaction.

use std::fmt;
use std::time::Duration;

/// Shards of a table's change stream (DynamoDB shards by partition; a fixed count here).
pub const TABLE_STREAM_SHARDS: u32 = 4;
/// How long records are kept: Kinesis's default and DynamoDB Streams' fixed 24 hours.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The most shards a stream may have here (Kinesis's default account quota is 500 per region).
pub const MAX_SHARDS: u32 = 64;
/// Kinesis's largest record: data and partition key together.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Kinesis's longest partition key, in Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// A data stream written by producers (Kinesis).
    Data,
    /// A table's change records (DynamoDB Streams), written by the table's writes.
    Table,
}

/// A stream as declared: its name, kind, shard count and retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// The stream's name; a table's change stream is named after its table
    /// ([`table_stream`]).
    pub name: String,
    /// What it carries.
    pub kind: StreamKind,
    /// Its number of shards, fixed at creation.
    pub shards: u32,
    /// How long a record is kept.
    pub retention: Duration,
}

/// A stream as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDescription {
    /// What it declares.
    pub spec: StreamSpec,
    /// When it was created, in microseconds since the Unix epoch.
    pub created_us: i64,
    /// Each shard's lowest and highest stored sequence number (`None` when empty).
    pub shard_ranges: Vec<Option<(u64, u64)>>,
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// Decides the shard; also given to consumers.
    pub partition_key: String,
    /// The payload: the producer's bytes, or a table change record as JSON.
    pub data: Vec<u8>,
}

/// Where an appended record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its shard.
    pub shard: u32,
    /// Its sequence number.
    pub seq: u64,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// Its shard.
    pub shard: u32,
    /// Its sequence number, increasing within the shard.
    pub seq: u64,
    /// The partition key it was written with.
    pub partition_key: String,
    /// Its payload.
    pub data: Vec<u8>,
    /// When it was appended, in microseconds since the Unix epoch.
    pub arrival_us: i64,
}

/// Where a read starts in a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// After this sequence number (0: from the oldest record).
    After(u64),
    /// The first record appended at or after this time (microseconds since the epoch).
    AtTime(i64),
}

/// Why a stream operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// The stream (or shard) does not exist.
    NotFound(String),
    /// A stream of that name exists already.
    InUse(String),
    /// The request breaks a rule.
    Validation(String),
    /// The store failed.
    Internal(String),
}

/// Storage of streams and of their consumers' checkpoints.
pub trait StreamStore: Send + Sync {
    /// Creates the stream unless one of that name exists (its records are kept).
    fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), StreamError>;
    /// Creates a stream; `InUse` if it exists.
    fn create_stream(&self, spec: &StreamSpec) -> Result<StreamDescription, StreamError>;
    /// Describes a stream.
    fn describe_stream(&self, stream: &str) -> Result<StreamDescription, StreamError>;
    /// Every stream's name, in order.
    fn list_streams(&self) -> Result<Vec<String>, StreamError>;
    /// Deletes a stream, its records and its consumers' checkpoints.
    fn delete_stream(&self, stream: &str) -> Result<(), StreamError>;
    /// Changes how long a stream keeps its records (Kinesis's Increase and
    /// DecreaseStreamRetentionPeriod); the next trim applies it.
    fn set_retention(&self, stream: &str, retention: Duration) -> Result<(), StreamError>;
    /// Appends records in one transaction, in order; where each went.
    fn append(&self, stream: &str, records: &[NewRecord]) -> Result<Vec<Appended>, StreamError>;
    /// Up to `limit` records of a shard in order, from `from`.
    fn read_shard(
        &self,
        stream: &str,
        shard: u32,
        from: ReadFrom,
        limit: usize,
    ) -> Result<Vec<StreamRecord>, StreamError>;
    /// The highest sequence number a shard has held (0 when it never held a record).
    fn last_seq(&self, stream: &str, shard: u32) -> Result<u64, StreamError>;
    /// A consumer's checkpoint in a shard lane: the last sequence number it finished.
    fn checkpoint(
        &self,
        consumer: &str,
        stream: &str,
        shard: u32,
        lane: u32,
    ) -> Result<Option<u64>, StreamError>;
    /// Records a consumer's checkpoint (durably, before returning).
    fn set_checkpoint(
        &self,
        consumer: &str,
        stream: &str,
        shard: u32,
        lane: u32,
        seq: u64,
    ) -> Result<(), StreamError>;
    /// Deletes records older than their stream's retention; how many.
    fn trim(&self, now_us: i64) -> Result<usize, StreamError>;
}

impl crate::services::Access {
    /// A Kinesis operation on a stream (`kinesis:PutRecord` on `stream:clicks`).
    pub fn stream(action: &'static str, stream: &str) -> crate::services::Access {
        crate::services::Access {
            action,
            resource: format!("stream:{stream}"),
        }
    }
}

impl StreamSpec {
    /// A data stream with the given shard count and Kinesis's default retention.
    pub fn data(name: &str, shards: u32) -> StreamSpec {
        StreamSpec {
            name: name.to_owned(),
            kind: StreamKind::Data,
            shards,
            retention: DEFAULT_RETENTION,
        }
    }

    /// The change stream of `table`.
    pub fn table(table: &str) -> StreamSpec {
        StreamSpec {
            name: table_stream(table),
            kind: StreamKind::Table,
            shards: TABLE_STREAM_SHARDS,
            retention: DEFAULT_RETENTION,
        }
    }

    /// The table whose change stream this is.
    pub fn table_name(&self) -> Option<&str> {
        match self.kind {
            StreamKind::Table => table_of_stream(&self.name),
            StreamKind::Data => None,
        }
    }
}

/// The name of a table's change stream: `table/NAME` (a data stream's name cannot hold `/`).
pub fn table_stream(table: &str) -> String {
    format!("table/{table}")
}

/// The table a change stream's name stands for.
pub fn table_of_stream(stream: &str) -> Option<&str> {
    stream.strip_prefix("table/")
}

/// Kinesis's shard id: `shardId-000000000003`.
pub fn shard_id(shard: u32) -> String {
    format!("shardId-{shard:012}")
}

/// The shard a Kinesis shard id names.
pub fn parse_shard_id(id: &str) -> Option<u32> {
    let digits = id.strip_prefix("shardId-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A sequence number as the AWS APIs write it: a string of 21 or more digits.
pub fn sequence_number(seq: u64) -> String {
    format!("{seq:021}")
}

/// The sequence number a string names.
pub fn parse_sequence_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The shard `hash` (the 128-bit MD5 of a partition key, or an explicit hash key) falls in,
/// when the hash key space is split into `shards` equal ranges as Kinesis splits it.
pub fn shard_for_hash(hash: u128, shards: u32) -> u32 {
    let shards = u128::from(shards.max(1));
    if shards == 1 {
        return 0;
    }
    let width = u128::MAX / shards + 1;
    (hash / width).min(shards - 1) as u32
}

/// The first and last hash key of a shard's range.
pub fn shard_hash_range(shard: u32, shards: u32) -> (u128, u128) {
    let n = u128::from(shards.max(1));
    if n == 1 {
        return (0, u128::MAX);
    }
    let width = u128::MAX / n + 1;
    let start = width * u128::from(shard);
    let end = if u128::from(shard) + 1 == n {
        u128::MAX
    } else {
        start + width - 1
    };
    (start, end)
}

/// `arn:aws:kinesis:REGION:123456789012:stream/NAME`.
pub fn stream_arn(region: &str, stream: &str) -> String {
    format!(
        "arn:aws:kinesis:{region}:{}:stream/{stream}",
        crate::ACCOUNT_ID
    )
}

/// A table's stream ARN: the table's ARN, `/stream/`, and a label from its creation time
/// (`2026-12-07T10:00:00.000`), as DynamoDB names it.
pub fn table_stream_arn(region: &str, table: &str, label: &str) -> String {
    format!("{}/stream/{label}", crate::tables::table_arn(region, table))
}

/// The stream label DynamoDB derives from a creation time (microseconds since the epoch).
pub fn stream_label(created_us: i64) -> String {
    let time = std::time::UNIX_EPOCH
        + Duration::from_micros(u64::try_from(created_us).unwrap_or_default());
    let text = crate::time::rfc3339_millis(time);
    text.trim_end_matches('Z').to_owned()
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::NotFound(what) => write!(f, "{what} not found"),
            StreamError::InUse(stream) => write!(f, "Stream {stream} already exists"),
            StreamError::Validation(message) | StreamError::Internal(message) => {
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for StreamError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ranges_cover_the_key_space_in_order() {
        for shards in [1, 2, 3, 4, 7, 64] {
            let mut next = 0u128;
            for shard in 0..shards {
                let (start, end) = shard_hash_range(shard, shards);
                assert_eq!(start, next);
                assert_eq!(shard_for_hash(start, shards), shard);
                assert_eq!(shard_for_hash(end, shards), shard);
                next = end.wrapping_add(1);
            }
            assert_eq!(next, 0, "the last range ends at the top of the key space");
        }
    }

    #[test]
    fn ids_and_sequence_numbers_read_back() {
        assert_eq!(shard_id(3), "shardId-000000000003");
        assert_eq!(parse_shard_id("shardId-000000000003"), Some(3));
        assert_eq!(parse_shard_id("shard-3"), None);
        assert_eq!(sequence_number(42), "000000000000000000042");
        assert_eq!(parse_sequence_number("000000000000000000042"), Some(42));
        assert_eq!(parse_sequence_number("4x"), None);
        assert_eq!(table_of_stream(&table_stream("orders")), Some("orders"));
    }
}
