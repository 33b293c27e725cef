//! Ordered streams, the embedded implementation of `nimbus_core::streams::StreamStore`.
//!
//! A record is one row keyed by (stream, shard, seq); a shard is read as a range scan of
//! that key. Sequence numbers come from one counter per stream (`streams.next_seq`), bumped
//! in the appending transaction, so they grow through the stream and a reader never sees a
//! lower number commit after a higher one. A table's change records are appended by
//! `tables.rs` inside the item write's transaction, through [`append_in`].

use std::time::Duration;

use md5::{Digest, Md5};
use nimbus_core::streams::{
    Appended, MAX_SHARDS, NewRecord, ReadFrom, StreamDescription, StreamError, StreamKind,
    StreamRecord, StreamSpec, StreamStore, shard_for_hash,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::durable::{now_us, read_err, us, write_err};
use crate::{Store, StoreError};

/// Schema version 7: streams, their records and their consumers' checkpoints.
pub(crate) const SCHEMA_V7: &str = "
-- `kind` is 'data' (Kinesis) or 'table' (a table's change stream, named `table/NAME`).
CREATE TABLE streams (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    shards INTEGER NOT NULL,
    retention_us INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    next_seq INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE stream_records (
    stream TEXT NOT NULL,
    shard INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    partition_key TEXT NOT NULL,
    data BLOB NOT NULL,
    arrival_us INTEGER NOT NULL,
    PRIMARY KEY (stream, shard, seq)
) WITHOUT ROWID;

-- The last sequence number a consumer finished in one lane of a shard.
CREATE TABLE stream_checkpoints (
    consumer TEXT NOT NULL,
    stream TEXT NOT NULL,
    shard INTEGER NOT NULL,
    lane INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    PRIMARY KEY (consumer, stream, shard, lane)
) WITHOUT ROWID;
";

impl StreamStore for Store {
    fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), StreamError> {
        check_spec(spec)?;
        self.write("a stream", |tx| insert_stream(tx, spec).map(|_| ()))
            .map_err(internal)
    }

    fn create_stream(&self, spec: &StreamSpec) -> Result<StreamDescription, StreamError> {
        check_spec(spec)?;
        let created = self
            .write("a stream", |tx| insert_stream(tx, spec))
            .map_err(internal)?;
        if !created {
            return Err(StreamError::InUse(spec.name.clone()));
        }
        self.describe_stream(&spec.name)
    }

    fn describe_stream(&self, stream: &str) -> Result<StreamDescription, StreamError> {
        self.read(|conn| describe(conn, stream))
            .map_err(internal)?
            .ok_or_else(|| not_found(stream))
    }

    fn list_streams(&self) -> Result<Vec<String>, StreamError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name FROM streams ORDER BY name")
                .map_err(read_err("streams"))?;
            let names = stmt
                .query_map([], |row| row.get::<_, String>(0))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(read_err("streams"))?;
            Ok(names)
        })
        .map_err(internal)
    }

    fn delete_stream(&self, stream: &str) -> Result<(), StreamError> {
        let found = self
            .write("a stream", |tx| delete_in(tx, stream))
            .map_err(internal)?;
        if !found {
            return Err(not_found(stream));
        }
        Ok(())
    }

    fn set_retention(&self, stream: &str, retention: Duration) -> Result<(), StreamError> {
        let n = self
            .write("a stream", |tx| {
                tx.prepare_cached("UPDATE streams SET retention_us = ?2 WHERE name = ?1")
                    .and_then(|mut stmt| stmt.execute(params![stream, us(retention)]))
                    .map_err(write_err("a stream"))
            })
            .map_err(internal)?;
        if n == 0 {
            return Err(not_found(stream));
        }
        Ok(())
    }

    fn append(&self, stream: &str, records: &[NewRecord]) -> Result<Vec<Appended>, StreamError> {
        let res = self.write("stream records", |tx| Ok(append_in(tx, stream, records)));
        res.map_err(internal)?
    }

    fn read_shard(
        &self,
        stream: &str,
        shard: u32,
        from: ReadFrom,
        limit: usize,
    ) -> Result<Vec<StreamRecord>, StreamError> {
        let res = self.read(|conn| Ok(read_records(conn, stream, shard, from, limit)));
        res.map_err(internal)?
    }

    fn last_seq(&self, stream: &str, shard: u32) -> Result<u64, StreamError> {
        let res = self.read(|conn| {
            let shards = shard_count(conn, stream)?;
            let Some(shards) = shards else {
                return Ok(Err(not_found(stream)));
            };
            if shard >= shards {
                return Ok(Err(shard_not_found(stream, shard)));
            }
            // The highest number the shard holds; a trimmed-empty shard falls back to the
            // stream's counter, which no record of this shard can be above.
            let seq: Option<i64> = conn
                .prepare_cached(
                    "SELECT MAX(seq) FROM stream_records WHERE stream = ?1 AND shard = ?2",
                )
                .and_then(|mut stmt| stmt.query_row(params![stream, shard], |row| row.get(0)))
                .map_err(read_err("stream records"))?;
            let seq = match seq {
                Some(seq) => seq,
                None => conn
                    .prepare_cached("SELECT next_seq - 1 FROM streams WHERE name = ?1")
                    .and_then(|mut stmt| stmt.query_row([stream], |row| row.get(0)))
                    .map_err(read_err("streams"))?,
            };
            Ok(Ok(seq.max(0) as u64))
        });
        res.map_err(internal)?
    }

    fn checkpoint(
        &self,
        consumer: &str,
        stream: &str,
        shard: u32,
        lane: u32,
    ) -> Result<Option<u64>, StreamError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT seq FROM stream_checkpoints
                 WHERE consumer = ?1 AND stream = ?2 AND shard = ?3 AND lane = ?4",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![consumer, stream, shard, lane], |row| {
                    row.get::<_, i64>(0)
                })
                .optional()
            })
            .map_err(read_err("stream checkpoints"))
            .map(|seq| seq.map(|seq| seq.max(0) as u64))
        })
        .map_err(internal)
    }

    fn set_checkpoint(
        &self,
        consumer: &str,
        stream: &str,
        shard: u32,
        lane: u32,
        seq: u64,
    ) -> Result<(), StreamError> {
        self.write("a stream checkpoint", |tx| {
            tx.prepare_cached(
                "INSERT INTO stream_checkpoints (consumer, stream, shard, lane, seq, updated_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (consumer, stream, shard, lane)
                 DO UPDATE SET seq = excluded.seq, updated_us = excluded.updated_us",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![consumer, stream, shard, lane, seq as i64, now_us()])
            })
            .map_err(write_err("a stream checkpoint"))?;
            Ok(())
        })
        .map_err(internal)
    }

    fn trim(&self, now_us: i64) -> Result<usize, StreamError> {
        self.write("stream records", |tx| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM stream_records WHERE arrival_us < ?1 - (
                        SELECT retention_us FROM streams WHERE streams.name = stream_records.stream)",
                )
                .and_then(|mut stmt| stmt.execute([now_us]))
                .map_err(write_err("stream records"))?;
            Ok(n)
        })
        .map_err(internal)
    }
}

/// Appends records to `stream` inside `tx`; `Ok(Err(..))` for a missing stream.
pub(crate) fn append_in(
    tx: &Transaction<'_>,
    stream: &str,
    records: &[NewRecord],
) -> Result<Vec<Appended>, StreamError> {
    let row: Option<(u32, i64)> = tx
        .prepare_cached("SELECT shards, next_seq FROM streams WHERE name = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([stream], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(tx_write)?;
    let Some((shards, first_seq)) = row else {
        return Err(not_found(stream));
    };
    let arrival_us = now_us();
    let mut appended = Vec::with_capacity(records.len());
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO stream_records (stream, shard, seq, partition_key, data, arrival_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(tx_write)?;
        for (idx, record) in records.iter().enumerate() {
            let shard = shard_for_hash(key_hash(&record.partition_key), shards);
            let seq = first_seq + idx as i64;
            insert
                .execute(params![
                    stream,
                    shard,
                    seq,
                    record.partition_key,
                    record.data,
                    arrival_us
                ])
                .map_err(tx_write)?;
            appended.push(Appended {
                shard,
                seq: seq as u64,
            });
        }
    }
    tx.prepare_cached("UPDATE streams SET next_seq = ?2 WHERE name = ?1")
        .and_then(|mut stmt| stmt.execute(params![stream, first_seq + records.len() as i64]))
        .map_err(tx_write)?;
    Ok(appended)
}

/// Creates a stream inside `tx` unless it exists; whether it was created.
pub(crate) fn insert_stream(tx: &Transaction<'_>, spec: &StreamSpec) -> Result<bool, StoreError> {
    let kind = match spec.kind {
        StreamKind::Data => "data",
        StreamKind::Table => "table",
    };
    let n = tx
        .prepare_cached(
            "INSERT INTO streams (name, kind, shards, retention_us, created_us, next_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, 1) ON CONFLICT (name) DO NOTHING",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                spec.name,
                kind,
                spec.shards,
                us(spec.retention),
                now_us()
            ])
        })
        .map_err(write_err("a stream"))?;
    Ok(n == 1)
}

/// Deletes a stream, its records and its checkpoints inside `tx`; whether it existed.
pub(crate) fn delete_in(tx: &Transaction<'_>, stream: &str) -> Result<bool, StoreError> {
    let mut n_streams = 0;
    for sql in [
        "DELETE FROM stream_checkpoints WHERE stream = ?1",
        "DELETE FROM stream_records WHERE stream = ?1",
        "DELETE FROM streams WHERE name = ?1",
    ] {
        n_streams = tx
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute([stream]))
            .map_err(write_err("a stream"))?;
    }
    Ok(n_streams == 1)
}

/// A partition key's place in the hash key space: its MD5 as a 128-bit number (Kinesis).
fn key_hash(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

fn check_spec(spec: &StreamSpec) -> Result<(), StreamError> {
    if spec.shards == 0 || spec.shards > MAX_SHARDS {
        return Err(StreamError::Validation(format!(
            "stream {} asks for {} shards; nimbus serves 1 to {MAX_SHARDS}",
            spec.name, spec.shards
        )));
    }
    Ok(())
}

fn shard_count(conn: &Connection, stream: &str) -> Result<Option<u32>, StoreError> {
    conn.prepare_cached("SELECT shards FROM streams WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([stream], |row| row.get(0)).optional())
        .map_err(read_err("streams"))
}

fn describe(conn: &Connection, stream: &str) -> Result<Option<StreamDescription>, StoreError> {
    let row: Option<(String, u32, i64, i64)> = conn
        .prepare_cached(
            "SELECT kind, shards, retention_us, created_us FROM streams WHERE name = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([stream], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .optional()
        })
        .map_err(read_err("streams"))?;
    let Some((kind, shards, retention_us, created_us)) = row else {
        return Ok(None);
    };
    // Two index seeks per shard rather than a GROUP BY, which would read every record of
    // the stream (DescribeStream, ListShards and merged reads describe often).
    let mut stmt = conn
        .prepare_cached(
            "SELECT
                (SELECT seq FROM stream_records WHERE stream = ?1 AND shard = ?2
                 ORDER BY seq LIMIT 1),
                (SELECT seq FROM stream_records WHERE stream = ?1 AND shard = ?2
                 ORDER BY seq DESC LIMIT 1)",
        )
        .map_err(read_err("stream records"))?;
    let mut shard_ranges = Vec::with_capacity(shards as usize);
    for shard in 0..shards {
        let (low, high): (Option<i64>, Option<i64>) = stmt
            .query_row(params![stream, shard], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(read_err("stream records"))?;
        shard_ranges.push(low.zip(high).map(|(low, high)| (low as u64, high as u64)));
    }
    Ok(Some(StreamDescription {
        spec: StreamSpec {
            name: stream.to_owned(),
            kind: if kind == "table" {
                StreamKind::Table
            } else {
                StreamKind::Data
            },
            shards,
            retention: std::time::Duration::from_micros(retention_us.max(0) as u64),
        },
        created_us,
        shard_ranges,
    }))
}

fn read_records(
    conn: &Connection,
    stream: &str,
    shard: u32,
    from: ReadFrom,
    limit: usize,
) -> Result<Vec<StreamRecord>, StreamError> {
    let Some(shards) = shard_count(conn, stream).map_err(internal)? else {
        return Err(not_found(stream));
    };
    if shard >= shards {
        return Err(shard_not_found(stream, shard));
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let map_row = |row: &rusqlite::Row<'_>| {
        Ok(StreamRecord {
            shard,
            seq: row.get::<_, i64>(0)?.max(0) as u64,
            partition_key: row.get(1)?,
            data: row.get(2)?,
            arrival_us: row.get(3)?,
        })
    };
    let res = match from {
        ReadFrom::After(seq) => conn
            .prepare_cached(
                "SELECT seq, partition_key, data, arrival_us FROM stream_records
                 WHERE stream = ?1 AND shard = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![stream, shard, seq as i64, limit], map_row)
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            }),
        ReadFrom::AtTime(at_us) => conn
            .prepare_cached(
                "SELECT seq, partition_key, data, arrival_us FROM stream_records
                 WHERE stream = ?1 AND shard = ?2 AND arrival_us >= ?3 ORDER BY seq LIMIT ?4",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![stream, shard, at_us, limit], map_row)
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            }),
    };
    res.map_err(|e| StreamError::Internal(format!("reading stream records: {e}")))
}

fn not_found(stream: &str) -> StreamError {
    StreamError::NotFound(format!("Stream {stream}"))
}

fn shard_not_found(stream: &str, shard: u32) -> StreamError {
    StreamError::NotFound(format!(
        "Shard {} in stream {stream}",
        nimbus_core::streams::shard_id(shard)
    ))
}

fn tx_write(e: rusqlite::Error) -> StreamError {
    StreamError::Internal(format!("writing stream records to the store: {e}"))
}

/// A store failure as a stream error, with its whole chain of causes.
fn internal(e: StoreError) -> StreamError {
    StreamError::Internal(e.chain())
}

#[cfg(test)]
mod tests;
