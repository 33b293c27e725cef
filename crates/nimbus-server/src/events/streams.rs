//! Stream event source mappings: a function's `stream` events, consuming a table's change
//! stream or a data stream shard by shard, in order, as Lambda does
//! (<https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html>, `with-kinesis.html`).
//!
//! Each shard is read by `parallelizationFactor` lanes; a record belongs to the lane its
//! partition key hashes to, so the records of one key stay in order while lanes run side
//! by side. A lane has one batch in flight and a checkpoint in the store: the last sequence
//! number it finished. A failing batch is retried (or halved, with
//! `bisectBatchOnFunctionError`) and holds its lane back until it succeeds, is reported
//! partly failed (`ReportBatchItemFailures`: the lane resumes at the lowest failed record),
//! runs out of retries or grows too old; then its invocation record goes to
//! `destinations.onFailure` and the lane moves past it. A crash between an invocation and
//! its checkpoint invokes that batch again (at least once, as on Lambda).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nimbus_core::Outcome;
use nimbus_core::events::{StartingPosition, StreamEvent};
use nimbus_core::streams::{
    ReadFrom, StreamError, StreamKind, StreamRecord, sequence_number, shard_id, stream_arn,
    stream_label, table_of_stream, table_stream_arn,
};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::Events;
use crate::Shutdown;
use crate::functions::InvokeRequest;
use crate::telemetry::{TraceContext, Trigger};

/// How often an idle lane looks again without being woken (records it was not woken for,
/// such as a TTL deletion's, arrive at most this late).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The first wait before retrying a failed batch; it doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The most records one read scans for a lane's batch.
const MAX_SCAN: usize = 10_000;

/// One lane of one shard of a mapping.
struct Lane {
    idx: usize,
    event: StreamEvent,
    /// The mapping's name in the checkpoint table: function and stream.
    consumer: String,
    shard: u32,
    lane: u32,
    /// The stream's ARN, as events give it.
    arn: String,
    kind: StreamKind,
}

/// A failing batch's state: how often it failed, and the split bisecting narrows it to.
#[derive(Default)]
struct Failing {
    attempts: u32,
    /// With bisecting: the last sequence number of the batch that first failed, and the
    /// most records a batch may hold until the lane is past it.
    split: Option<(u64, usize)>,
    backoff: Option<Duration>,
}

/// How an invocation of a batch ended.
enum BatchResult {
    /// Every record succeeded.
    Done,
    /// The records from this sequence number on failed (`ReportBatchItemFailures`), or
    /// the whole batch (its first number).
    FailedFrom(u64, FailureKind),
    /// Not invoked (throttled or stopping): try again without charging a retry.
    NotInvoked,
}

#[derive(Clone, Copy)]
enum FailureKind {
    /// The function failed (an error, timeout, crash): bisecting may split the batch.
    Function,
    /// The function reported failed items.
    Reported,
}

impl Events {
    /// Starts a `stream` event's lanes: `parallelizationFactor` per shard.
    pub(crate) async fn consume_stream(
        self: Arc<Self>,
        idx: usize,
        event: StreamEvent,
        shutdown: Shutdown,
    ) {
        let function = &self.functions.list[idx];
        let streams = self.streams.clone();
        let name = event.stream.clone();
        let description = match tokio::task::spawn_blocking(move || streams.describe_stream(&name))
            .await
        {
            Ok(Ok(description)) => description,
            Ok(Err(e)) => {
                tracing::warn!(function = %function.spec.name, stream = %event.stream, "not consuming the stream: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!(function = %function.spec.name, "not consuming the stream: {e}");
                return;
            }
        };
        let arn = match table_of_stream(&event.stream) {
            Some(table) => {
                table_stream_arn(&self.region, table, &stream_label(description.created_us))
            }
            None => stream_arn(&self.region, &event.stream),
        };
        let mut lanes = JoinSet::new();
        for shard in 0..description.spec.shards {
            for lane in 0..event.parallelization_factor.max(1) {
                let lane = Lane {
                    idx,
                    event: event.clone(),
                    consumer: format!("{}:{}", function.spec.name, event.stream),
                    shard,
                    lane,
                    arn: arn.clone(),
                    kind: description.spec.kind,
                };
                lanes.spawn(self.clone().run_lane(lane, shutdown.clone()));
            }
        }
        while lanes.join_next().await.is_some() {}
    }

    async fn run_lane(self: Arc<Self>, lane: Lane, mut shutdown: Shutdown) {
        let Some(mut checkpoint) = self.first_checkpoint(&lane).await else {
            return;
        };
        let waker = self.stream_waker(&lane.event.stream);
        let mut failing = Failing::default();
        loop {
            // Register for a wake-up before reading, so an append between the read and the
            // wait is not missed.
            let notified = waker.clone().notified_owned();
            let mut notified = Box::pin(notified);
            notified.as_mut().enable();
            let limit = failing
                .split
                .map_or(lane.event.batch_size as usize, |(_, limit)| limit);
            let mut batch = match self.lane_batch(&lane, checkpoint, limit, &failing).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(stream = %lane.event.stream, shard = lane.shard, "reading the stream: {e}");
                    Batch::default()
                }
            };
            if batch.records.is_empty() {
                if let Some(seq) = batch.skipped_to {
                    checkpoint = self.save_checkpoint(&lane, seq).await.unwrap_or(checkpoint);
                    continue;
                }
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                    () = shutdown.wait() => return,
                }
                continue;
            }
            // Gather records for up to the batching window before invoking with fewer than
            // a full batch.
            if batch.records.len() < limit && !lane.event.batch_window.is_zero() {
                let first = nimbus_core::time::from_unix_micros(batch.records[0].arrival_us);
                let waited = SystemTime::now().duration_since(first).unwrap_or_default();
                if let Some(rest) = lane.event.batch_window.checked_sub(waited) {
                    tokio::select! {
                        () = tokio::time::sleep(rest) => {}
                        () = shutdown.wait() => return,
                    }
                    match self.lane_batch(&lane, checkpoint, limit, &failing).await {
                        Ok(fuller) if !fuller.records.is_empty() => batch = fuller,
                        _ => {}
                    }
                }
            }
            let (records, last_seq) = (batch.records, batch.last_seq);
            // Records past `maximumRecordAgeInSeconds` are not invoked with.
            if let Some(max_age) = lane.event.maximum_record_age {
                let now_us = nimbus_core::time::unix_micros(SystemTime::now());
                let max_us = i64::try_from(max_age.as_micros()).unwrap_or(i64::MAX);
                let n_old = records
                    .iter()
                    .take_while(|r| now_us.saturating_sub(r.arrival_us) > max_us)
                    .count();
                if n_old > 0 {
                    let old = &records[..n_old];
                    self.fail_batch(&lane, old, "RecordAgeExceeded", failing.attempts + 1)
                        .await;
                    let seq = old[old.len() - 1].seq;
                    checkpoint = self.save_checkpoint(&lane, seq).await.unwrap_or(checkpoint);
                    failing = Failing::default();
                    continue;
                }
            }
            let matching: Vec<&StreamRecord> = records
                .iter()
                .filter(|r| self.record_matches(&lane, r))
                .collect();
            let n_filtered = records.len() - matching.len();
            if n_filtered > 0 {
                self.stream_metric(&lane, "filtered", n_filtered, None);
            }
            if matching.is_empty() {
                // Filtered out: the lane moves past them, as Lambda's filtering does.
                checkpoint = self
                    .save_checkpoint(&lane, last_seq)
                    .await
                    .unwrap_or(checkpoint);
                continue;
            }
            let n_matching = matching.len();
            let last_arrival_us = records.last().map_or(0, |r| r.arrival_us);
            match self.invoke_batch(&lane, &matching).await {
                BatchResult::Done => {
                    self.stream_metric(&lane, "invoked", n_matching, Some(last_arrival_us));
                    checkpoint = self
                        .save_checkpoint(&lane, last_seq)
                        .await
                        .unwrap_or(checkpoint);
                    let past_split = failing.split.is_some_and(|(end, _)| checkpoint >= end);
                    if failing.split.is_some() && !past_split {
                        // The first half of a split batch succeeded: the rest goes next, in
                        // one batch.
                        failing.split = failing
                            .split
                            .map(|(end, _)| (end, lane.event.batch_size as usize));
                        failing.attempts = 0;
                    } else {
                        failing = Failing::default();
                    }
                }
                BatchResult::NotInvoked => {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                        () = shutdown.wait() => return,
                    }
                }
                BatchResult::FailedFrom(failed_seq, kind) => {
                    // Records before the first failure are done.
                    if let Some(done) = records.iter().rev().find(|r| r.seq < failed_seq) {
                        checkpoint = self
                            .save_checkpoint(&lane, done.seq)
                            .await
                            .unwrap_or(checkpoint);
                    }
                    let failed: Vec<StreamRecord> = records
                        .iter()
                        .filter(|r| r.seq >= failed_seq)
                        .cloned()
                        .collect();
                    let n_failed = failed.len();
                    let end = failed.last().map_or(last_seq, |r| r.seq);
                    if lane.event.bisect_on_error
                        && matches!(kind, FailureKind::Function)
                        && n_failed > 1
                    {
                        // Halving does not use up a retry (Lambda's bisecting).
                        let end = failing.split.map_or(end, |(old_end, _)| old_end.max(end));
                        failing.split = Some((end, n_failed / 2));
                        continue;
                    }
                    failing.attempts += 1;
                    let exhausted = lane
                        .event
                        .maximum_retry_attempts
                        .is_some_and(|max| failing.attempts > max);
                    if exhausted {
                        self.fail_batch(&lane, &failed, "RetryAttemptsExhausted", failing.attempts)
                            .await;
                        checkpoint = self.save_checkpoint(&lane, end).await.unwrap_or(checkpoint);
                        let keep_split = failing.split.filter(|(split_end, _)| *split_end > end);
                        failing = Failing {
                            split: keep_split
                                .map(|(split_end, _)| (split_end, lane.event.batch_size as usize)),
                            ..Failing::default()
                        };
                        continue;
                    }
                    let backoff = failing
                        .backoff
                        .map_or(FIRST_BACKOFF, |b| (b * 2).min(MAX_BACKOFF));
                    failing.backoff = Some(backoff);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.wait() => return,
                    }
                }
            }
        }
    }

    /// The lane's checkpoint, or where `startingPosition` puts a lane without one (saved
    /// at once, so records appended from now on are not missed after a restart).
    async fn first_checkpoint(&self, lane: &Lane) -> Option<u64> {
        let streams = self.streams.clone();
        let (consumer, stream) = (lane.consumer.clone(), lane.event.stream.clone());
        let (shard, lane_no, position) = (lane.shard, lane.lane, lane.event.starting_position);
        let res = tokio::task::spawn_blocking(move || -> Result<u64, StreamError> {
            if let Some(seq) = streams.checkpoint(&consumer, &stream, shard, lane_no)? {
                return Ok(seq);
            }
            let seq = match position {
                StartingPosition::TrimHorizon => 0,
                StartingPosition::Latest => streams.last_seq(&stream, shard)?,
                StartingPosition::AtTimestamp(secs) => {
                    let at_us = i64::try_from(secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
                    let first = streams.read_shard(&stream, shard, ReadFrom::AtTime(at_us), 1)?;
                    match first.first() {
                        Some(record) => record.seq.saturating_sub(1),
                        None => streams.last_seq(&stream, shard)?,
                    }
                }
            };
            streams.set_checkpoint(&consumer, &stream, shard, lane_no, seq)?;
            Ok(seq)
        })
        .await;
        match res {
            Ok(Ok(seq)) => Some(seq),
            Ok(Err(e)) => {
                tracing::warn!(stream = %lane.event.stream, shard = lane.shard, "not consuming the shard: {e}");
                None
            }
            Err(e) => {
                tracing::warn!(stream = %lane.event.stream, "not consuming the shard: {e}");
                None
            }
        }
    }

    /// Saves a checkpoint; the new position, or `None` (logged) when the store failed.
    async fn save_checkpoint(&self, lane: &Lane, seq: u64) -> Option<u64> {
        let streams = self.streams.clone();
        let (consumer, stream) = (lane.consumer.clone(), lane.event.stream.clone());
        let (shard, lane_no) = (lane.shard, lane.lane);
        let res = tokio::task::spawn_blocking(move || {
            streams.set_checkpoint(&consumer, &stream, shard, lane_no, seq)
        })
        .await;
        match res {
            Ok(Ok(())) => Some(seq),
            Ok(Err(e)) => {
                tracing::warn!(stream = %lane.event.stream, shard = lane.shard, "saving a checkpoint: {e}");
                None
            }
            Err(e) => {
                tracing::warn!(stream = %lane.event.stream, "saving a checkpoint: {e}");
                None
            }
        }
    }

    /// The lane's next batch after `checkpoint`: at most `limit` of its records, and not
    /// past a split's end.
    async fn lane_batch(
        &self,
        lane: &Lane,
        checkpoint: u64,
        limit: usize,
        failing: &Failing,
    ) -> Result<Batch, StreamError> {
        let streams = self.streams.clone();
        let stream = lane.event.stream.clone();
        let shard = lane.shard;
        let n_lanes = lane.event.parallelization_factor.max(1);
        let scan = (limit * n_lanes as usize).clamp(1, MAX_SCAN);
        let read = tokio::task::spawn_blocking(move || {
            streams.read_shard(&stream, shard, ReadFrom::After(checkpoint), scan)
        })
        .await
        .map_err(|e| StreamError::Internal(e.to_string()))??;
        let split_end = failing.split.map(|(end, _)| end);
        let mut batch = Batch::default();
        for record in read {
            if split_end.is_some_and(|end| record.seq > end) || batch.records.len() == limit {
                break;
            }
            batch.last_seq = record.seq;
            if lane_of(&record.partition_key, n_lanes) == lane.lane {
                batch.records.push(record);
            } else {
                batch.skipped_to = Some(record.seq);
            }
        }
        Ok(batch)
    }

    fn record_matches(&self, lane: &Lane, record: &StreamRecord) -> bool {
        if lane.event.filter_patterns.is_empty() {
            return true;
        }
        let mut shape = self.record_shape(lane, record);
        // Lambda matches a Kinesis record's data as JSON when it is JSON.
        if let Some(data) = shape.get_mut("kinesis").and_then(|k| k.get_mut("data")) {
            let decoded = data
                .as_str()
                .and_then(|text| {
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text).ok()
                })
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
            if let Some(json) = decoded {
                shape["data"] = json;
            }
        }
        lane.event
            .filter_patterns
            .iter()
            .any(|pattern| super::filter::matches_body(pattern, &shape))
    }

    /// A record as the function's event holds it.
    fn record_shape(&self, lane: &Lane, record: &StreamRecord) -> Value {
        match lane.kind {
            StreamKind::Table => lambda_dynamodb_record(record, &self.region, &lane.arn),
            StreamKind::Data => kinesis_record(record, lane.shard, &self.region, &lane.arn),
        }
    }

    async fn invoke_batch(&self, lane: &Lane, records: &[&StreamRecord]) -> BatchResult {
        let function = &self.functions.list[lane.idx];
        let shapes: Vec<Value> = records.iter().map(|r| self.record_shape(lane, r)).collect();
        let payload = json!({ "Records": shapes }).to_string().into_bytes();
        let first_seq = records[0].seq;
        let res = function
            .invoke(InvokeRequest {
                request_id: crate::telemetry::trace::new_request_id(),
                payload,
                trace: TraceContext::new_root(),
                trigger: Trigger::Stream,
            })
            .await;
        match res {
            Ok(report) => match &report.outcome {
                Outcome::Ok(response) if lane.event.report_batch_item_failures => {
                    match super::triggers::failed_items(response) {
                        Some(failed) if failed.is_empty() => BatchResult::Done,
                        Some(failed) => {
                            // The lowest reported sequence number; an unknown or empty
                            // identifier fails the whole batch, as on Lambda.
                            let seqs: Option<Vec<u64>> = failed
                                .iter()
                                .map(|id| {
                                    nimbus_core::streams::parse_sequence_number(id)
                                        .filter(|seq| records.iter().any(|r| r.seq == *seq))
                                })
                                .collect();
                            match seqs.and_then(|seqs| seqs.into_iter().min()) {
                                Some(seq) => BatchResult::FailedFrom(seq, FailureKind::Reported),
                                None => BatchResult::FailedFrom(first_seq, FailureKind::Function),
                            }
                        }
                        None => BatchResult::FailedFrom(first_seq, FailureKind::Function),
                    }
                }
                Outcome::Ok(_) => BatchResult::Done,
                _ => BatchResult::FailedFrom(first_seq, FailureKind::Function),
            },
            Err(_) => BatchResult::NotInvoked,
        }
    }

    /// Counts a batch's records in the function's stream metrics; a batch that was done
    /// sets its iterator age from the arrival of its last record.
    fn stream_metric(
        &self,
        lane: &Lane,
        outcome: &str,
        n_records: usize,
        last_arrival_us: Option<i64>,
    ) {
        let age = last_arrival_us.map(|arrival_us| {
            let now_us = nimbus_core::time::unix_micros(SystemTime::now());
            now_us.saturating_sub(arrival_us).max(0) as f64 / 1e6
        });
        self.functions.telemetry.metrics.stream_batch(
            &self.functions.list[lane.idx].spec.name,
            &lane.event.stream,
            outcome,
            n_records,
            age,
        );
    }

    /// Sends a discarded batch's invocation record to `onFailure` (or logs the loss).
    async fn fail_batch(&self, lane: &Lane, records: &[StreamRecord], condition: &str, n: u32) {
        self.stream_metric(lane, "failed", records.len(), None);
        let function = &self.functions.list[lane.idx];
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return;
        };
        let Some(destination) = &lane.event.on_failure else {
            tracing::warn!(
                function = %function.spec.name,
                stream = %lane.event.stream,
                shard = %shard_id(lane.shard),
                "{} stream records dropped ({condition}: sequence numbers {} to {}); set destinations.onFailure to keep a record of them",
                records.len(),
                sequence_number(first.seq),
                sequence_number(last.seq),
            );
            return;
        };
        let arrival = |record: &StreamRecord| {
            nimbus_core::time::rfc3339_millis(nimbus_core::time::from_unix_micros(
                record.arrival_us,
            ))
        };
        let info = json!({
            "shardId": shard_id(lane.shard),
            "startSequenceNumber": sequence_number(first.seq),
            "endSequenceNumber": sequence_number(last.seq),
            "approximateArrivalOfFirstRecord": arrival(first),
            "approximateArrivalOfLastRecord": arrival(last),
            "batchSize": records.len(),
            "streamArn": lane.arn,
        });
        let info_key = match lane.kind {
            StreamKind::Table => "DDBStreamBatchInfo",
            StreamKind::Data => "KinesisBatchInfo",
        };
        let function_arn = format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region,
            nimbus_core::ACCOUNT_ID,
            function.spec.name
        );
        let mut value = json!({
            "requestContext": {
                "requestId": crate::telemetry::trace::new_request_id(),
                "functionArn": function_arn,
                "condition": condition,
                "approximateInvokeCount": n,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": nimbus_core::time::rfc3339_millis(SystemTime::now()),
        });
        value[info_key] = info;
        if let Err(e) = self
            .deliver(destination, value, &TraceContext::new_root())
            .await
        {
            tracing::warn!(function = %function.spec.name, "delivering a failed stream batch to onFailure: {e}");
        }
    }
}

/// A lane's next records, and how far the read got.
#[derive(Default)]
struct Batch {
    records: Vec<StreamRecord>,
    /// The highest sequence number read (the lane's and other lanes' records).
    last_seq: u64,
    /// Set when the read found only other lanes' records, up to this number.
    skipped_to: Option<u64>,
}

/// The lane a partition key belongs to: FNV-1a, stable across restarts.
fn lane_of(partition_key: &str, n_lanes: u32) -> u32 {
    if n_lanes <= 1 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in partition_key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(n_lanes)) as u32
}

/// A DynamoDB Streams record as the GetRecords API gives it (Lambda's event adds
/// `eventSourceARN`); `None` for data that is not a change record.
pub(crate) fn dynamodb_record(record: &StreamRecord, region: &str) -> Option<Value> {
    let Ok(Value::Object(change)) = serde_json::from_slice::<Value>(&record.data) else {
        return None;
    };
    let event_name = change.get("eventName")?.clone();
    let mut dynamodb = serde_json::Map::new();
    dynamodb.insert(
        "ApproximateCreationDateTime".to_owned(),
        json!(record.arrival_us.div_euclid(1_000_000)),
    );
    for field in ["Keys", "NewImage", "OldImage"] {
        if let Some(value) = change.get(field) {
            dynamodb.insert(field.to_owned(), value.clone());
        }
    }
    dynamodb.insert(
        "SequenceNumber".to_owned(),
        json!(sequence_number(record.seq)),
    );
    for field in ["SizeBytes", "StreamViewType"] {
        if let Some(value) = change.get(field) {
            dynamodb.insert(field.to_owned(), value.clone());
        }
    }
    // The event id: the record's sequence number (unique in the stream) in 32 hex digits.
    let mut shape = json!({
        "eventID": format!("{:032x}", record.seq),
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": Value::Object(dynamodb),
    });
    if let Some(identity) = change.get("userIdentity") {
        shape["userIdentity"] = identity.clone();
    }
    Some(shape)
}

/// A DynamoDB Streams record as Lambda delivers it.
fn lambda_dynamodb_record(record: &StreamRecord, region: &str, arn: &str) -> Value {
    let mut shape = dynamodb_record(record, region).unwrap_or_else(|| json!({}));
    shape["eventSourceARN"] = json!(arn);
    shape
}

/// A Kinesis record as Lambda delivers it.
pub(crate) fn kinesis_record(record: &StreamRecord, shard: u32, region: &str, arn: &str) -> Value {
    let seq = sequence_number(record.seq);
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record.partition_key,
            "sequenceNumber": seq,
            "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &record.data),
            "approximateArrivalTimestamp": record.arrival_us as f64 / 1e6,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{}:{seq}", shard_id(shard)),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": format!("arn:aws:iam::{}:role/nimbus", nimbus_core::ACCOUNT_ID),
        "awsRegion": region,
        "eventSourceARN": arn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_split_keys_and_keep_each_key_in_one_lane() {
        let keys: Vec<String> = (0..100).map(|i| format!("key-{i}")).collect();
        let mut per_lane = [0; 4];
        for key in &keys {
            let lane = lane_of(key, 4);
            assert_eq!(lane, lane_of(key, 4));
            per_lane[lane as usize] += 1;
        }
        assert!(per_lane.iter().all(|n| *n > 10), "{per_lane:?}");
        assert_eq!(lane_of("anything", 1), 0);
    }

    #[test]
    fn records_have_lambdas_shapes() {
        let record = StreamRecord {
            shard: 2,
            seq: 7,
            partition_key: "user-1".to_owned(),
            data: br#"{"eventName":"REMOVE","Keys":{"id":{"S":"a"}},"OldImage":{"id":{"S":"a"}},"SizeBytes":4,"StreamViewType":"OLD_IMAGE","userIdentity":{"type":"Service","principalId":"dynamodb.amazonaws.com"}}"#.to_vec(),
            arrival_us: 1_767_225_600_123_456,
        };
        let ddb = lambda_dynamodb_record(&record, "us-east-1", "arn:stream");
        expect_test::expect![[r#"{"awsRegion":"us-east-1","dynamodb":{"ApproximateCreationDateTime":1767225600,"Keys":{"id":{"S":"a"}},"OldImage":{"id":{"S":"a"}},"SequenceNumber":"000000000000000000007","SizeBytes":4,"StreamViewType":"OLD_IMAGE"},"eventID":"00000000000000000000000000000007","eventName":"REMOVE","eventSource":"aws:dynamodb","eventSourceARN":"arn:stream","eventVersion":"1.1","userIdentity":{"principalId":"dynamodb.amazonaws.com","type":"Service"}}"#]]
            .assert_eq(&ddb.to_string());
        let record = StreamRecord {
            data: b"hello".to_vec(),
            ..record
        };
        let kinesis = kinesis_record(&record, 2, "us-east-1", "arn:aws:kinesis:s");
        expect_test::expect![[r#"{"awsRegion":"us-east-1","eventID":"shardId-000000000002:000000000000000000007","eventName":"aws:kinesis:record","eventSource":"aws:kinesis","eventSourceARN":"arn:aws:kinesis:s","eventVersion":"1.0","invokeIdentityArn":"arn:aws:iam::123456789012:role/nimbus","kinesis":{"approximateArrivalTimestamp":1767225600.123456,"data":"aGVsbG8=","kinesisSchemaVersion":"1.0","partitionKey":"user-1","sequenceNumber":"000000000000000000007"}}"#]]
            .assert_eq(&kinesis.to_string());
    }
}
