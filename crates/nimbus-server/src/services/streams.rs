//! The stream operations (Kinesis's CreateStream, PutRecords, GetRecords, ...; DynamoDB
//! Streams' reads of a table's change stream): one function per operation, each checking
//! the caller's grants first, then running on the events' `StreamStore` off the async
//! workers; and the shard iterator, the opaque token both protocols hand to readers.
//! The protocol modules (`aws/kinesis.rs`, `aws/dynamodb_streams.rs`) and the services
//! API only translate their wire formats.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use nimbus_core::services::Access;
use nimbus_core::streams::{
    Appended, MAX_PARTITION_KEY_CHARS, MAX_RECORD_BYTES, NewRecord, ReadFrom, StreamDescription,
    StreamError, StreamKind, StreamRecord, StreamSpec, StreamStore, table_of_stream, table_stream,
};
use nimbus_core::tables::{TableError, TableSpec};

use crate::error::ApiError;
use crate::events::Events;

use super::Principal;

/// Why a stream operation failed: refused by the grants, or by the stream.
#[derive(Debug)]
pub(crate) enum StreamOpError {
    Denied(ApiError),
    Stream(StreamError),
}

pub(crate) type OpRes<T> = Result<T, StreamOpError>;

/// The stream an operation reads: a data stream (Kinesis) or a table's change stream
/// (DynamoDB Streams). It decides the IAM action and resource the grants are checked on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamRef {
    Data(String),
    Table(String),
}

/// A read-side operation, named as each service's IAM names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOp {
    Describe,
    DescribeSummary,
    ListShards,
    GetShardIterator,
    GetRecords,
}

/// Kinesis's most records in one PutRecords.
pub(crate) const MAX_PUT_RECORDS: usize = 500;
/// Kinesis's most records in one GetRecords.
pub(crate) const MAX_GET_RECORDS: usize = 10_000;
/// How long a shard iterator stays valid (Kinesis and DynamoDB Streams: 5 minutes).
pub(crate) const ITERATOR_LIFETIME: Duration = Duration::from_secs(300);
/// The most data one GetRecords answers with (Kinesis: 10 MiB).
const MAX_GET_BYTES: usize = 10 * 1024 * 1024;

/// A position in a shard, handed to a reader as an opaque token (`ShardIterator`) and
/// given back to read from: the stream, the shard, where to read from and when it was
/// issued. It carries no secret: every read checks the reader's grants on its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardIterator {
    pub(crate) stream: String,
    pub(crate) shard: u32,
    pub(crate) from: ReadFrom,
    /// When it was issued, in milliseconds since the Unix epoch.
    pub(crate) issued_ms: u64,
}

/// Why a shard iterator cannot be read with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IteratorError {
    /// Not a token nimbus issued.
    Invalid,
    /// Issued more than [`ITERATOR_LIFETIME`] ago; the times in milliseconds.
    Expired { issued_ms: u64, now_ms: u64 },
}

/// A page of records from one shard.
pub(crate) struct RecordPage {
    pub(crate) records: Vec<StreamRecord>,
    /// Where the next read starts.
    pub(crate) next: ShardIterator,
    /// How far the last record given is behind the shard's newest (0 at its tip).
    pub(crate) millis_behind: u64,
}

impl StreamRef {
    /// The stream's name in the store (`clicks`, `table/orders`).
    pub(crate) fn store_name(&self) -> String {
        match self {
            StreamRef::Data(name) => name.clone(),
            StreamRef::Table(table) => table_stream(table),
        }
    }

    /// The stream a store name stands for.
    pub(crate) fn from_store_name(name: &str) -> StreamRef {
        match table_of_stream(name) {
            Some(table) => StreamRef::Table(table.to_owned()),
            None => StreamRef::Data(name.to_owned()),
        }
    }

    fn access(&self, op: ReadOp) -> Access {
        match self {
            StreamRef::Data(name) => Access::stream(
                match op {
                    ReadOp::Describe => "kinesis:DescribeStream",
                    ReadOp::DescribeSummary => "kinesis:DescribeStreamSummary",
                    ReadOp::ListShards => "kinesis:ListShards",
                    ReadOp::GetShardIterator => "kinesis:GetShardIterator",
                    ReadOp::GetRecords => "kinesis:GetRecords",
                },
                name,
            ),
            // IAM names a table's stream `table/NAME/stream/LABEL`; any label is this one.
            StreamRef::Table(table) => Access {
                action: match op {
                    ReadOp::Describe | ReadOp::DescribeSummary | ReadOp::ListShards => {
                        "dynamodb:DescribeStream"
                    }
                    ReadOp::GetShardIterator => "dynamodb:GetShardIterator",
                    ReadOp::GetRecords => "dynamodb:GetRecords",
                },
                resource: format!("table:{table}/stream/*"),
            },
        }
    }
}

impl ShardIterator {
    const VERSION: &'static str = "nimbus-shard-iterator/1";

    /// A new iterator issued now.
    pub(crate) fn new(stream: String, shard: u32, from: ReadFrom) -> ShardIterator {
        ShardIterator {
            stream,
            shard,
            from,
            issued_ms: now_ms(),
        }
    }

    /// The opaque token: base64 of the version, issue time, shard, position and stream,
    /// one per line (the stream last, as only it may hold any character but a newline).
    pub(crate) fn encode(&self) -> String {
        let position = match self.from {
            ReadFrom::After(seq) => format!("a{seq}"),
            ReadFrom::AtTime(us) => format!("t{us}"),
        };
        let text = format!(
            "{}\n{}\n{}\n{position}\n{}",
            Self::VERSION,
            self.issued_ms,
            self.shard,
            self.stream
        );
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    /// Reads a token back, checking its age against `now_ms`.
    pub(crate) fn parse(token: &str, now_ms: u64) -> Result<ShardIterator, IteratorError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|_| IteratorError::Invalid)?;
        let text = String::from_utf8(bytes).map_err(|_| IteratorError::Invalid)?;
        let mut lines = text.splitn(5, '\n');
        if lines.next() != Some(Self::VERSION) {
            return Err(IteratorError::Invalid);
        }
        let mut field = || lines.next().ok_or(IteratorError::Invalid);
        let issued_ms: u64 = field()?.parse().map_err(|_| IteratorError::Invalid)?;
        let shard: u32 = field()?.parse().map_err(|_| IteratorError::Invalid)?;
        let position = field()?;
        let stream = field()?;
        let from = if let Some(seq) = position.strip_prefix('a') {
            ReadFrom::After(seq.parse().map_err(|_| IteratorError::Invalid)?)
        } else if let Some(us) = position.strip_prefix('t') {
            ReadFrom::AtTime(us.parse().map_err(|_| IteratorError::Invalid)?)
        } else {
            return Err(IteratorError::Invalid);
        };
        if stream.is_empty() {
            return Err(IteratorError::Invalid);
        }
        let lifetime = ITERATOR_LIFETIME.as_millis() as u64;
        if now_ms.saturating_sub(issued_ms) > lifetime {
            return Err(IteratorError::Expired { issued_ms, now_ms });
        }
        Ok(ShardIterator {
            stream: stream.to_owned(),
            shard,
            from,
            issued_ms,
        })
    }
}

/// The current time in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    let us = nimbus_core::time::unix_micros(SystemTime::now());
    u64::try_from(us / 1000).unwrap_or(0)
}

/// Whether `name` is a Kinesis stream name: 1 to 128 of `[a-zA-Z0-9_.-]`.
pub(crate) fn valid_stream_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Why a record cannot be put, in Kinesis's words; `None` when it can. `field` names the
/// record in the message (`records.1.member.data`).
pub(crate) fn record_problem(record: &NewRecord, field: &str) -> Option<String> {
    let n_chars = record.partition_key.chars().count();
    if n_chars == 0 || n_chars > MAX_PARTITION_KEY_CHARS {
        return Some(format!(
            "1 validation error detected: Value '{}' at '{field}partitionKey' failed to satisfy constraint: Member must have length between 1 and {MAX_PARTITION_KEY_CHARS}",
            record.partition_key
        ));
    }
    if record.data.len() > MAX_RECORD_BYTES {
        return Some(format!(
            "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]' at '{field}data' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORD_BYTES}",
            n = record.data.len()
        ));
    }
    None
}

fn authorize(principal: Principal<'_>, access: &Access) -> OpRes<()> {
    principal
        .check(access.action, &access.resource)
        .map_err(StreamOpError::Denied)
}

/// Runs `op` on the streams off the async workers.
async fn run<T: Send + 'static>(
    events: &Events,
    op: impl FnOnce(&dyn StreamStore) -> Result<T, StreamError> + Send + 'static,
) -> OpRes<T> {
    let streams = Arc::clone(&events.streams);
    match tokio::task::spawn_blocking(move || op(streams.as_ref())).await {
        Ok(res) => res.map_err(StreamOpError::Stream),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Creates a data stream with `shards` shards.
pub(crate) async fn create_stream(
    events: &Events,
    principal: Principal<'_>,
    name: &str,
    shards: u32,
) -> OpRes<StreamDescription> {
    authorize(principal, &Access::stream("kinesis:CreateStream", name))?;
    if !valid_stream_name(name) {
        return Err(StreamOpError::Stream(StreamError::Validation(format!(
            "1 validation error detected: Value '{name}' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length 1 to 128"
        ))));
    }
    let spec = StreamSpec::data(name, shards);
    run(events, move |streams| streams.create_stream(&spec)).await
}

/// Deletes a data stream with its records.
pub(crate) async fn delete_stream(
    events: &Events,
    principal: Principal<'_>,
    name: &str,
) -> OpRes<()> {
    authorize(principal, &Access::stream("kinesis:DeleteStream", name))?;
    if !valid_stream_name(name) {
        return Err(StreamOpError::Stream(not_found(name)));
    }
    let name = name.to_owned();
    run(events, move |streams| streams.delete_stream(&name)).await
}

/// The data streams, in name order.
pub(crate) async fn list_streams(
    events: &Events,
    principal: Principal<'_>,
) -> OpRes<Vec<StreamDescription>> {
    authorize(
        principal,
        &Access {
            action: "kinesis:ListStreams",
            resource: "stream:*".to_owned(),
        },
    )?;
    list(events, StreamKind::Data, None).await
}

/// Tables' change streams, in table order; only `table`'s when it is given.
pub(crate) async fn list_table_streams(
    events: &Events,
    principal: Principal<'_>,
    table: Option<&str>,
) -> OpRes<Vec<StreamDescription>> {
    authorize(
        principal,
        &Access {
            action: "dynamodb:ListStreams",
            resource: format!("table:{}/stream/*", table.unwrap_or("*")),
        },
    )?;
    list(events, StreamKind::Table, table.map(table_stream)).await
}

async fn list(
    events: &Events,
    kind: StreamKind,
    only: Option<String>,
) -> OpRes<Vec<StreamDescription>> {
    run(events, move |streams| {
        let mut out = Vec::new();
        for name in streams.list_streams()? {
            if only.as_ref().is_some_and(|only| *only != name) {
                continue;
            }
            match streams.describe_stream(&name) {
                Ok(description) if description.spec.kind == kind => out.push(description),
                Ok(_) | Err(StreamError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    })
    .await
}

/// Describes a stream for `op`.
pub(crate) async fn describe(
    events: &Events,
    principal: Principal<'_>,
    stream: &StreamRef,
    op: ReadOp,
) -> OpRes<StreamDescription> {
    authorize(principal, &stream.access(op))?;
    let name = stream.store_name();
    run(events, move |streams| streams.describe_stream(&name)).await
}

/// The creation time of a table's change stream (its label's source), unchecked: the
/// caller has checked the table's own grant. `None` when the table has no stream.
pub(crate) async fn table_stream_created(events: &Events, table: &str) -> Option<i64> {
    let name = table_stream(table);
    run(events, move |streams| streams.describe_stream(&name))
        .await
        .ok()
        .map(|description| description.created_us)
}

/// The spec of the table whose change stream a reader described, unchecked: the caller
/// has checked the stream's own grant. A table gone meanwhile is the stream not found.
pub(crate) async fn table_of(events: &Events, table: &str) -> OpRes<TableSpec> {
    let tables = Arc::clone(&events.tables);
    let name = table.to_owned();
    match tokio::task::spawn_blocking(move || tables.describe_table(&name)).await {
        Ok(Ok(description)) => Ok(description.spec),
        Ok(Err(TableError::NotFound(_))) => {
            Err(StreamOpError::Stream(not_found(&table_stream(table))))
        }
        Ok(Err(e)) => Err(StreamOpError::Stream(StreamError::Internal(e.to_string()))),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Which way a retention change may go (Kinesis has one operation for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetentionChange {
    Increase,
    Decrease,
}

/// Kinesis's shortest and longest retention, in hours.
const RETENTION_HOURS: std::ops::RangeInclusive<u64> = 24..=8760;

/// Sets a data stream's retention to `hours`, refusing what Kinesis refuses: less than 24 or
/// more than 8760 hours, or a change the other way than `change`.
pub(crate) async fn change_retention(
    events: &Events,
    principal: Principal<'_>,
    name: &str,
    hours: u64,
    change: RetentionChange,
) -> OpRes<()> {
    let action = match change {
        RetentionChange::Increase => "kinesis:IncreaseStreamRetentionPeriod",
        RetentionChange::Decrease => "kinesis:DecreaseStreamRetentionPeriod",
    };
    authorize(principal, &Access::stream(action, name))?;
    if !valid_stream_name(name) {
        return Err(StreamOpError::Stream(not_found(name)));
    }
    let invalid = |message: String| Err(StreamOpError::Stream(StreamError::Validation(message)));
    if hours < *RETENTION_HOURS.start() {
        return invalid(format!(
            "Minimum allowed retention period is 24 hours. Requested retention period ({hours} hours) is too short."
        ));
    }
    if hours > *RETENTION_HOURS.end() {
        return invalid(format!(
            "Maximum allowed retention period is 8760 hours. Requested retention period ({hours} hours) is too long."
        ));
    }
    let store_name = name.to_owned();
    let current = run(events, move |streams| streams.describe_stream(&store_name))
        .await?
        .spec
        .retention
        .as_secs()
        / 3600;
    match change {
        RetentionChange::Increase if hours < current => {
            return invalid(format!(
                "Requested retention period ({hours} hours) for stream {name} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API."
            ));
        }
        RetentionChange::Decrease if hours > current => {
            return invalid(format!(
                "Requested retention period ({hours} hours) for stream {name} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API."
            ));
        }
        _ => {}
    }
    let store_name = name.to_owned();
    let retention = Duration::from_secs(hours * 3600);
    run(events, move |streams| {
        streams.set_retention(&store_name, retention)
    })
    .await
}

/// Appends records to a data stream in one transaction and wakes its consumers; where
/// each went. `action` is `kinesis:PutRecord` or `kinesis:PutRecords`.
pub(crate) async fn put_records(
    events: &Events,
    principal: Principal<'_>,
    action: &'static str,
    stream: &str,
    records: Vec<NewRecord>,
) -> OpRes<Vec<Appended>> {
    authorize(principal, &Access::stream(action, stream))?;
    if !valid_stream_name(stream) {
        return Err(StreamOpError::Stream(not_found(stream)));
    }
    if records.len() > MAX_PUT_RECORDS {
        return Err(StreamOpError::Stream(StreamError::Validation(format!(
            "1 validation error detected: Value '{}' at 'records' failed to satisfy constraint: Member must have length less than or equal to {MAX_PUT_RECORDS}",
            records.len()
        ))));
    }
    for (idx, record) in records.iter().enumerate() {
        let field = if action == "kinesis:PutRecords" {
            format!("records.{}.member.", idx + 1)
        } else {
            String::new()
        };
        if let Some(problem) = record_problem(record, &field) {
            return Err(StreamOpError::Stream(StreamError::Validation(problem)));
        }
    }
    let name = stream.to_owned();
    let appended = run(events, move |streams| streams.append(&name, &records)).await?;
    events.stream_appended(stream);
    Ok(appended)
}

/// An iterator at `from` in a shard, after checking the shard exists; `Latest` starts
/// after the shard's newest record.
pub(crate) async fn shard_iterator(
    events: &Events,
    principal: Principal<'_>,
    stream: &StreamRef,
    shard: u32,
    from: IteratorStart,
) -> OpRes<ShardIterator> {
    authorize(principal, &stream.access(ReadOp::GetShardIterator))?;
    let name = stream.store_name();
    let store_name = name.clone();
    let last = run(events, move |streams| streams.last_seq(&store_name, shard)).await?;
    let from = match from {
        IteratorStart::Latest => ReadFrom::After(last),
        IteratorStart::At(from) => from,
    };
    Ok(ShardIterator::new(name, shard, from))
}

/// Where a new iterator starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IteratorStart {
    /// After the shard's newest record at the time of the call.
    Latest,
    /// At a fixed position.
    At(ReadFrom),
}

/// Reads up to `limit` records (and at most 10 MiB) at an iterator; the iterator to read
/// on with.
pub(crate) async fn get_records(
    events: &Events,
    principal: Principal<'_>,
    iterator: &ShardIterator,
    limit: usize,
) -> OpRes<RecordPage> {
    let stream = StreamRef::from_store_name(&iterator.stream);
    authorize(principal, &stream.access(ReadOp::GetRecords))?;
    let (name, shard, from) = (iterator.stream.clone(), iterator.shard, iterator.from);
    let limit = limit.clamp(1, MAX_GET_RECORDS);
    let mut records = run(events, move |streams| {
        streams.read_shard(&name, shard, from, limit)
    })
    .await?;
    let at_tip = records.len() < limit;
    let mut n_bytes = 0;
    let mut cut = records.len();
    for (idx, record) in records.iter().enumerate() {
        n_bytes += record.data.len() + record.partition_key.len();
        if n_bytes > MAX_GET_BYTES && idx > 0 {
            cut = idx;
            break;
        }
    }
    let cut_short = cut < records.len();
    records.truncate(cut);
    let next_from = match records.last() {
        Some(last) => ReadFrom::After(last.seq),
        None => from,
    };
    let millis_behind = match records.last() {
        Some(last) if !at_tip || cut_short => {
            let now_us = nimbus_core::time::unix_micros(SystemTime::now());
            u64::try_from((now_us - last.arrival_us) / 1000).unwrap_or(0)
        }
        _ => 0,
    };
    Ok(RecordPage {
        records,
        next: ShardIterator::new(iterator.stream.clone(), iterator.shard, next_from),
        millis_behind,
    })
}

/// An iterator over all of a stream's shards at once, in sequence order: what DynamoDB
/// Streams shows as a table stream's one shard. Sequence numbers grow through the whole
/// stream in commit order (one counter, bumped in the appending transaction), so a single
/// number is a position in every shard, and `Latest` is after the stream's newest record.
pub(crate) async fn merged_iterator(
    events: &Events,
    principal: Principal<'_>,
    stream: &StreamRef,
    start: IteratorStart,
) -> OpRes<ShardIterator> {
    authorize(principal, &stream.access(ReadOp::GetShardIterator))?;
    let name = stream.store_name();
    let store_name = name.clone();
    let last = run(events, move |streams| {
        let shards = streams.describe_stream(&store_name)?.spec.shards;
        let mut last = 0;
        for shard in 0..shards {
            last = last.max(streams.last_seq(&store_name, shard)?);
        }
        Ok(last)
    })
    .await?;
    let from = match start {
        IteratorStart::Latest => ReadFrom::After(last),
        IteratorStart::At(from) => from,
    };
    Ok(ShardIterator::new(name, 0, from))
}

/// Reads up to `limit` records of every shard at a [`merged_iterator`], in sequence order.
pub(crate) async fn get_merged_records(
    events: &Events,
    principal: Principal<'_>,
    iterator: &ShardIterator,
    limit: usize,
) -> OpRes<RecordPage> {
    let stream = StreamRef::from_store_name(&iterator.stream);
    authorize(principal, &stream.access(ReadOp::GetRecords))?;
    let (name, from) = (iterator.stream.clone(), iterator.from);
    let limit = limit.clamp(1, MAX_GET_RECORDS);
    let records = run(events, move |streams| {
        let shards = streams.describe_stream(&name)?.spec.shards;
        let mut records = Vec::new();
        for shard in 0..shards {
            records.extend(streams.read_shard(&name, shard, from, limit)?);
        }
        records.sort_by_key(|record| record.seq);
        records.truncate(limit);
        Ok(records)
    })
    .await?;
    let next_from = records
        .last()
        .map_or(from, |last| ReadFrom::After(last.seq));
    Ok(RecordPage {
        records,
        next: ShardIterator::new(iterator.stream.clone(), iterator.shard, next_from),
        millis_behind: 0,
    })
}

/// Where a read of a whole stream starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamPosition {
    /// The oldest records kept.
    TrimHorizon,
    /// After the newest record of each shard.
    Latest,
    /// After these sequence numbers, one per shard (what the last read gave back).
    After(Vec<u64>),
}

/// Records of every shard of a stream, in the order they were appended.
pub(crate) struct MergedPage {
    pub(crate) records: Vec<StreamRecord>,
    /// Where the next read starts: the last sequence number given per shard.
    pub(crate) positions: Vec<u64>,
}

/// The longest a read of a whole stream waits for records.
pub(crate) const MAX_READ_WAIT: Duration = Duration::from_secs(20);

/// Reads up to `limit` records across all of a stream's shards from `from`, in append
/// order (sequence numbers grow through the whole stream): what `nimbus stream tail` follows.
/// When there are none, waits up to `wait` (at most 20 s) for the stream's next append.
pub(crate) async fn read_stream(
    events: &Events,
    principal: Principal<'_>,
    stream: &StreamRef,
    from: StreamPosition,
    limit: usize,
    wait: Duration,
) -> OpRes<MergedPage> {
    authorize(principal, &stream.access(ReadOp::GetRecords))?;
    let name = stream.store_name();
    let limit = limit.clamp(1, MAX_GET_RECORDS);
    // The first read also proves the stream exists before a waker is made for it.
    let page = read_merged(events, &name, from, limit).await?;
    if !page.records.is_empty() || wait.is_zero() {
        return Ok(page);
    }
    let waker = events.stream_waker(&name);
    let notified = waker.notified();
    tokio::pin!(notified);
    // Registered before reading again, so an append between that read and the wait wakes it.
    notified.as_mut().enable();
    let page = read_merged(events, &name, StreamPosition::After(page.positions), limit).await?;
    if !page.records.is_empty() {
        return Ok(page);
    }
    let _ = tokio::time::timeout(wait.min(MAX_READ_WAIT), notified).await;
    read_merged(events, &name, StreamPosition::After(page.positions), limit).await
}

async fn read_merged(
    events: &Events,
    name: &str,
    from: StreamPosition,
    limit: usize,
) -> OpRes<MergedPage> {
    let name = name.to_owned();
    run(events, move |streams| {
        let shards = streams.describe_stream(&name)?.spec.shards;
        let mut positions = match from {
            StreamPosition::TrimHorizon => vec![0; shards as usize],
            StreamPosition::Latest => (0..shards)
                .map(|shard| streams.last_seq(&name, shard))
                .collect::<Result<Vec<u64>, StreamError>>()?,
            StreamPosition::After(positions) if positions.len() == shards as usize => positions,
            StreamPosition::After(positions) => {
                return Err(StreamError::Validation(format!(
                    "the stream has {shards} shards, and the position names {}",
                    positions.len()
                )));
            }
        };
        let mut records = Vec::new();
        for (shard, after) in positions.iter().enumerate() {
            records.extend(streams.read_shard(
                &name,
                shard as u32,
                ReadFrom::After(*after),
                limit,
            )?);
        }
        // Each shard's records are a prefix of what follows its position, so any prefix of
        // the merged order is a prefix per shard too.
        records.sort_by_key(|record| record.seq);
        records.truncate(limit);
        for record in &records {
            if let Some(position) = positions.get_mut(record.shard as usize) {
                *position = record.seq;
            }
        }
        Ok(MergedPage { records, positions })
    })
    .await
}

fn not_found(stream: &str) -> StreamError {
    StreamError::NotFound(format!("Stream {stream}"))
}

impl From<StreamError> for StreamOpError {
    fn from(e: StreamError) -> StreamOpError {
        StreamOpError::Stream(e)
    }
}

/// How the services API answers a failed stream operation.
impl From<StreamOpError> for ApiError {
    fn from(e: StreamOpError) -> ApiError {
        use http::StatusCode;
        match e {
            StreamOpError::Denied(e) => e,
            StreamOpError::Stream(e) => match e {
                StreamError::NotFound(_) => ApiError::typed(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    e.to_string(),
                ),
                StreamError::InUse(_) => ApiError::typed(
                    StatusCode::CONFLICT,
                    "ResourceInUseException",
                    e.to_string(),
                ),
                StreamError::Validation(message) => {
                    ApiError::typed(StatusCode::BAD_REQUEST, "InvalidArgumentException", message)
                }
                StreamError::Internal(message) => ApiError::platform(message),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iterator(stream: &str, shard: u32, from: ReadFrom) -> ShardIterator {
        ShardIterator {
            stream: stream.to_owned(),
            shard,
            from,
            issued_ms: 1_000_000,
        }
    }

    #[test]
    fn shard_iterators_read_back_what_they_hold() {
        for it in [
            iterator("clicks", 0, ReadFrom::After(0)),
            iterator("a.b-c_d", 63, ReadFrom::After(u64::MAX)),
            iterator("table/orders", 3, ReadFrom::AtTime(1_767_225_600_000_000)),
            iterator("table/odd\nname", 1, ReadFrom::AtTime(-5)),
        ] {
            let token = it.encode();
            assert!(token.len() <= 512, "{token}");
            assert_eq!(ShardIterator::parse(&token, 1_000_000), Ok(it));
        }
    }

    #[test]
    fn shard_iterators_expire_after_five_minutes() {
        let token = iterator("clicks", 0, ReadFrom::After(7)).encode();
        assert!(ShardIterator::parse(&token, 1_300_000).is_ok());
        assert_eq!(
            ShardIterator::parse(&token, 1_300_001),
            Err(IteratorError::Expired {
                issued_ms: 1_000_000,
                now_ms: 1_300_001
            })
        );
    }

    #[test]
    fn foreign_or_damaged_tokens_are_invalid() {
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        for token in [
            "".to_owned(),
            "not base64!".to_owned(),
            "AAAAAAAAAAHSywljv0zEgPX4NyKdZ5wryMzP9yALs8NeKbUjp1IxtZs1Sp".to_owned(),
            b64("nimbus-shard-iterator/2\n1000000\n0\na1\nclicks"),
            b64("nimbus-shard-iterator/1\n1000000\n0\nx1\nclicks"),
            b64("nimbus-shard-iterator/1\n1000000\n-1\na1\nclicks"),
            b64("nimbus-shard-iterator/1\n1000000\n0\na1\n"),
            b64("nimbus-shard-iterator/1\n1000000\n0\na1"),
        ] {
            assert_eq!(
                ShardIterator::parse(&token, 1_000_000),
                Err(IteratorError::Invalid),
                "{token}"
            );
        }
    }

    #[test]
    fn kinesis_names_and_records_are_checked_as_kinesis_checks_them() {
        assert!(valid_stream_name("clicks.v2_a-b"));
        assert!(valid_stream_name(&"a".repeat(128)));
        assert!(!valid_stream_name(&"a".repeat(129)));
        assert!(!valid_stream_name(""));
        assert!(!valid_stream_name("table/orders"));
        assert!(!valid_stream_name("with space"));
        let record = |key: &str, n_bytes: usize| NewRecord {
            partition_key: key.to_owned(),
            data: vec![b'x'; n_bytes],
        };
        assert_eq!(record_problem(&record("k", MAX_RECORD_BYTES), ""), None);
        assert_eq!(
            record_problem(&record("k", MAX_RECORD_BYTES + 1), "records.2.member."),
            Some("1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=1048577 cap=1048577]' at 'records.2.member.data' failed to satisfy constraint: Member must have length less than or equal to 1048576".to_owned())
        );
        assert!(record_problem(&record("", 1), "").is_some());
        assert!(record_problem(&record(&"é".repeat(256), 1), "").is_none());
        assert!(record_problem(&record(&"é".repeat(257), 1), "").is_some());
    }

    #[test]
    fn iam_statements_on_kinesis_and_table_stream_arns_grant_stream_operations() {
        let manifest = r#"
service: s
provider: { runtime: wasm }
functions:
  f:
    handler: f.wasm
    iamRoleStatements:
      - { Effect: Allow, Action: ["kinesis:PutRecord*", kinesis:GetRecords], Resource: "arn:aws:kinesis:*:*:stream/clicks" }
      - { Effect: Allow, Action: ["dynamodb:GetRecords"], Resource: "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/*" }
      - { Effect: Allow, Action: ["dynamodb:DescribeStream"], Resource: { Fn::GetAtt: [Carts, StreamArn] } }
resources:
  Resources:
    Carts:
      Type: AWS::DynamoDB::Table
      Properties:
        TableName: carts
        AttributeDefinitions: [{ AttributeName: id, AttributeType: S }]
        KeySchema: [{ AttributeName: id, KeyType: HASH }]
        StreamSpecification: { StreamViewType: NEW_IMAGE }
"#;
        let manifest = nimbus_core::manifest::parse(manifest, "nimbus.yaml", &Default::default())
            .expect("manifest");
        let principal = Principal::Function(&manifest.functions[0]);
        let allowed = |access: Access| principal.check(access.action, &access.resource).is_ok();
        assert!(allowed(Access::stream("kinesis:PutRecords", "clicks")));
        assert!(allowed(
            StreamRef::Data("clicks".to_owned()).access(ReadOp::GetRecords)
        ));
        assert!(!allowed(Access::stream("kinesis:PutRecord", "views")));
        assert!(!allowed(Access::stream("kinesis:DeleteStream", "clicks")));
        assert!(allowed(
            StreamRef::Table("orders".to_owned()).access(ReadOp::GetRecords)
        ));
        assert!(!allowed(
            StreamRef::Table("orders".to_owned()).access(ReadOp::GetShardIterator)
        ));
        assert!(!allowed(
            StreamRef::Table("users".to_owned()).access(ReadOp::GetRecords)
        ));
        // `Fn::GetAtt: [Table, StreamArn]` names the table's one stream, whatever its label.
        assert!(allowed(
            StreamRef::Table("carts".to_owned()).access(ReadOp::Describe)
        ));
        assert!(!allowed(
            StreamRef::Table("carts".to_owned()).access(ReadOp::GetRecords)
        ));
    }

    #[test]
    fn data_and_table_streams_are_checked_on_their_own_actions() {
        let data = StreamRef::from_store_name("clicks");
        assert_eq!(data, StreamRef::Data("clicks".to_owned()));
        let access = data.access(ReadOp::GetRecords);
        assert_eq!(
            (access.action, access.resource.as_str()),
            ("kinesis:GetRecords", "stream:clicks")
        );
        let table = StreamRef::from_store_name("table/orders");
        assert_eq!(table.store_name(), "table/orders");
        let access = table.access(ReadOp::ListShards);
        assert_eq!(
            (access.action, access.resource.as_str()),
            ("dynamodb:DescribeStream", "table:orders/stream/*")
        );
    }
}
