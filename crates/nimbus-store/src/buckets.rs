//! Buckets with S3-like objects: their metadata in SQLite; the bytes of a small object (up to
//! [`INLINE_MAX`]) in SQLite too (`object_data`), those of a larger one in a file of its own
//! under `<state_dir>/buckets/<bucket>/`.
//!
//! Every object gets a random 128-bit id, never derived from the key, so no key can reach
//! outside its bucket's folder whatever it contains, and an overwrite writes new bytes instead
//! of changing those a reader may have open. A small object's bytes are written in the same
//! commit as its metadata and its event messages (the outbox), as durable as everything else
//! in the store. A large one's are first written to a temporary file, fsynced and renamed into
//! place, then the metadata and events commit: the object and its notification become durable
//! together. A crash before the commit leaves an unreferenced file, which `ensure_bucket`
//! removes at the next start.

mod multipart;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::durable::{self, now_us, read_err, time, write_err};
use crate::queues::{self, NewMessage};
use crate::{Store, StoreError};

pub use multipart::{MAX_PART_NUMBER, MIN_PART_BYTES, Part, Upload};

/// Objects up to this size keep their bytes in SQLite: a put is one commit instead of a file
/// written, fsynced and renamed and its folder fsynced, and a get one lookup.
pub const INLINE_MAX: usize = 64 * 1024;

/// Schema version 12: the bytes of small objects, by object id (`objects.file`).
pub(crate) const SCHEMA_V12: &str = "
CREATE TABLE object_data (
    id TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
";

/// What [`Store::get_inline_object`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InlineGet {
    /// The object, its bytes read from SQLite.
    Found(ObjectMeta, Vec<u8>),
    /// No object under the key.
    Missing,
    /// The object's bytes are in a file: read it with [`Store::get_object`].
    InFile,
}

/// What must hold of the current object for a put or delete to happen (S3's conditional
/// writes: `If-None-Match: *`, `If-Match: <etag>`); checked in the write's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// Whatever is there.
    Always,
    /// Only when there is no object under the key.
    IfAbsent,
    /// Only when the object's ETag is this (lowercase hex, no quotes).
    IfEtag(String),
}

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The size in bytes.
    pub size: u64,
    /// Lowercase hex MD5 of the content, without quotes: S3's ETag of a single-part upload
    /// (the `ETag` header wraps it in double quotes; S3 event records do not).
    pub etag: String,
    /// The `Content-Type` given at upload.
    pub content_type: Option<String>,
    /// When the object was written.
    pub last_modified: SystemTime,
    /// 16 uppercase hex digits that grow with every put and delete in the store, as the
    /// `sequencer` of S3 event records: of two events for one key, the greater is the later.
    /// For a deleted object it is the delete's.
    pub sequencer: String,
    /// User metadata (S3's `x-amz-meta-*`), a JSON object, if given.
    pub metadata: Option<String>,
}

/// One page of `list_objects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectList {
    /// Objects in key order (UTF-8 byte order, as S3).
    pub objects: Vec<ObjectMeta>,
    /// Whether more objects match after this page.
    pub is_truncated: bool,
    /// When truncated, the `start_after` of the next page (the last key of this one).
    pub next_start_after: Option<String>,
}

/// S3's longest key, in bytes.
pub const MAX_OBJECT_KEY_BYTES: usize = 1024;
/// S3's limit of user metadata, in bytes.
pub const MAX_OBJECT_METADATA_BYTES: usize = 2048;
/// S3's most keys in one list.
pub const MAX_LIST_OBJECTS: usize = 1000;
/// Files being written start with this; they are never referenced and are removed at start-up.
const TEMP_PREFIX: &str = ".tmp-";
/// How often a get retries when the file it looked up was replaced under it.
const GET_ATTEMPTS: usize = 3;

/// The events to enqueue with a put or delete, made from the object's metadata (which holds the
/// sequencer and time only the store knows): `(queue, message)` pairs.
pub type ObjectEvents<'a> = &'a mut dyn FnMut(&ObjectMeta) -> Vec<(String, NewMessage)>;

impl Store {
    /// Declares a bucket (creating its folder) and removes files a crash left behind in it.
    ///
    /// Run it at start-up, before serving requests: files written by a put still in progress in
    /// another thread would look left behind too.
    pub fn ensure_bucket(&self, name: &str) -> Result<(), StoreError> {
        check_bucket_name(name)?;
        self.write("a bucket", |tx| {
            tx.prepare_cached("INSERT OR IGNORE INTO buckets (name) VALUES (?1)")
                .and_then(|mut stmt| stmt.execute([name]))
                .map_err(write_err("a bucket"))?;
            Ok(())
        })?;
        let dir = self.bucket_dir(name);
        fs::create_dir_all(&dir).map_err(|source| StoreError::ObjectFile {
            action: "creating the folder of",
            path: dir.clone(),
            source,
        })?;
        self.remove_orphan_files(name, &dir)
    }

    /// Creates a bucket at run time (S3's CreateBucket); `false` when it existed already.
    pub fn create_bucket(&self, name: &str) -> Result<bool, StoreError> {
        check_bucket_name(name)?;
        let existed = self
            .read(|conn| bucket_exists(conn, name, read_err("buckets")))
            .is_ok();
        self.ensure_bucket(name)?;
        Ok(!existed)
    }

    /// Whether a bucket exists.
    pub fn bucket_exists(&self, name: &str) -> Result<bool, StoreError> {
        check_bucket_name(name)?;
        match self.read(|conn| bucket_exists(conn, name, read_err("buckets"))) {
            Ok(()) => Ok(true),
            Err(StoreError::UnknownBucket { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Deletes an empty bucket (S3's DeleteBucket): `BucketNotEmpty` while it holds objects.
    pub fn delete_bucket(&self, name: &str) -> Result<(), StoreError> {
        check_bucket_name(name)?;
        self.write("a bucket", |tx| {
            bucket_exists(tx, name, write_err("a bucket"))?;
            let has_objects: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM objects WHERE bucket = ?1)")
                .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)))
                .map_err(write_err("a bucket"))?;
            if has_objects {
                return Err(StoreError::BucketNotEmpty {
                    bucket: name.to_owned(),
                });
            }
            tx.prepare_cached("DELETE FROM buckets WHERE name = ?1")
                .and_then(|mut stmt| stmt.execute([name]))
                .map_err(write_err("a bucket"))?;
            Ok(())
        })?;
        let dir = self.bucket_dir(name);
        if let Err(err) = fs::remove_dir_all(&dir)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(bucket = name, error = %err, "removing a deleted bucket's folder");
        }
        Ok(())
    }

    /// The names of all buckets, sorted.
    pub fn list_buckets(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name FROM buckets ORDER BY name")
                .map_err(read_err("buckets"))?;
            let rows = stmt
                .query_map([], |row| row.get(0))
                .map_err(read_err("buckets"))?;
            rows.collect::<Result<Vec<String>, _>>()
                .map_err(read_err("buckets"))
        })
    }

    /// Stores an object, replacing any with the same key, and enqueues `events` in the same commit.
    ///
    /// `events` are fixed before the store picks the sequencer; `put_object_with` builds them from
    /// the final metadata, as an S3 event record needs.
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
        content_type: Option<&str>,
        events: Vec<(String, NewMessage)>,
    ) -> Result<ObjectMeta, StoreError> {
        let mut events = Some(events);
        self.put_object_with(bucket, key, data, content_type, None, &mut |_| {
            events.take().unwrap_or_default()
        })
    }

    /// `put_object` with user metadata (a JSON object of at most 2 KiB) and events made from the
    /// stored object's metadata.
    pub fn put_object_with(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
        content_type: Option<&str>,
        metadata: Option<&str>,
        events: ObjectEvents<'_>,
    ) -> Result<ObjectMeta, StoreError> {
        let put = Put {
            content_type,
            metadata,
            etag: None,
            condition: &WriteCondition::Always,
        };
        self.put_object_inner(bucket, key, data, &put, events)
    }

    /// `put_object_with` that happens only when `condition` holds of the current object:
    /// `PreconditionFailed` when it does not, `NoSuchObject` for `IfEtag` of no object.
    #[allow(clippy::too_many_arguments, reason = "the put's parts, each distinct")]
    pub fn put_object_if(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
        content_type: Option<&str>,
        metadata: Option<&str>,
        condition: &WriteCondition,
        events: ObjectEvents<'_>,
    ) -> Result<ObjectMeta, StoreError> {
        let put = Put {
            content_type,
            metadata,
            etag: None,
            condition,
        };
        self.put_object_inner(bucket, key, data, &put, events)
    }

    /// A put with its ETag given (a multipart upload's) or the MD5, and its condition.
    fn put_object_inner(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
        put: &Put<'_>,
        events: ObjectEvents<'_>,
    ) -> Result<ObjectMeta, StoreError> {
        let Put {
            content_type,
            metadata,
            etag,
            condition,
        } = *put;
        check_bucket_name(bucket)?;
        check_key(key)?;
        if let Some(metadata) = metadata {
            check_metadata(metadata)?;
        }
        let dir = self.bucket_dir(bucket);
        let file = durable::hex(&durable::random_id().into_bytes());
        let path = dir.join(&file);
        let inline = data.len() <= INLINE_MAX;
        if !inline {
            // Refuse before writing the file; a small object's bucket is checked only in
            // the transaction below (one read less per put).
            self.read(|conn| bucket_exists(conn, bucket, read_err("buckets")))?;
            write_file(&dir, &path, &file, data)?;
        }
        let etag = etag.map_or_else(|| durable::md5_hex(data), str::to_owned);
        let res = self.write("an object", |tx| {
            bucket_exists(tx, bucket, write_err("an object"))?;
            let old: Option<(String, String)> = tx
                .prepare_cached("SELECT file, etag FROM objects WHERE bucket = ?1 AND key = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row([bucket, key], |row| Ok((row.get(0)?, row.get(1)?)))
                        .optional()
                })
                .map_err(write_err("an object"))?;
            check_condition(
                condition,
                bucket,
                key,
                old.as_ref().map(|(_, etag)| etag.as_str()),
            )?;
            let old_file = match old {
                Some((old_file, _)) => drop_inline(tx, &old_file)?.then_some(old_file),
                None => None,
            };
            if inline {
                tx.prepare_cached("INSERT INTO object_data (id, data) VALUES (?1, ?2)")
                    .and_then(|mut stmt| stmt.execute(params![file, data]))
                    .map_err(write_err("an object"))?;
            }
            let now_us = now_us();
            let sequencer = next_sequencer(tx)?;
            tx.prepare_cached(
                "INSERT INTO objects (bucket, key, file, size, etag, content_type, last_modified_us,
                     sequencer, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (bucket, key) DO UPDATE SET
                     file = excluded.file, size = excluded.size, etag = excluded.etag,
                     content_type = excluded.content_type,
                     last_modified_us = excluded.last_modified_us,
                     sequencer = excluded.sequencer, metadata = excluded.metadata",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    bucket,
                    key,
                    file,
                    data.len() as i64,
                    etag,
                    content_type,
                    now_us,
                    sequencer,
                    metadata,
                ])
            })
            .map_err(write_err("an object"))?;
            let meta = ObjectMeta {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                size: data.len() as u64,
                etag: etag.clone(),
                content_type: content_type.map(str::to_owned),
                last_modified: time(now_us),
                sequencer: format_sequencer(sequencer),
                metadata: metadata.map(str::to_owned),
            };
            queues::insert_messages(tx, events(&meta), now_us)?;
            Ok((meta, old_file))
        });
        match res {
            Ok((meta, old_file)) => {
                if let Some(old_file) = old_file {
                    remove_file(&dir.join(old_file));
                }
                Ok(meta)
            }
            Err(err) => {
                if !inline {
                    remove_file(&path);
                }
                Err(err)
            }
        }
    }

    /// An object's metadata and content; `None` if there is no such key.
    pub fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(ObjectMeta, Vec<u8>)>, StoreError> {
        let dir = self.bucket_dir(bucket);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some((meta, file, inline)) = self.object_with_data(bucket, key)? else {
                return Ok(None);
            };
            if let Some(data) = inline {
                return Ok(Some((meta, data)));
            }
            let path = dir.join(&file);
            match fs::read(&path) {
                Ok(data) => return Ok(Some((meta, data))),
                // An overwrite or delete committed between the lookup and the read removed the
                // file; look again.
                Err(err)
                    if err.kind() == std::io::ErrorKind::NotFound && attempt < GET_ATTEMPTS =>
                {
                    continue;
                }
                Err(source) => {
                    return Err(StoreError::ObjectFile {
                        action: "reading",
                        path,
                        source,
                    });
                }
            }
        }
    }

    /// A point read of an object whose bytes SQLite keeps, without touching the file system,
    /// so a caller may run it where a blocking read would not be welcome:
    /// [`InlineGet::InFile`] when the object's bytes are in a file ([`Store::get_object`]
    /// reads those).
    pub fn get_inline_object(&self, bucket: &str, key: &str) -> Result<InlineGet, StoreError> {
        Ok(match self.object_with_data(bucket, key)? {
            None => InlineGet::Missing,
            Some((meta, _, Some(data))) => InlineGet::Found(meta, data),
            Some((_, _, None)) => InlineGet::InFile,
        })
    }

    /// An object's metadata; `None` if there is no such key.
    pub fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.object_row(bucket, key)?.map(|(meta, _)| meta))
    }

    /// Deletes an object and enqueues `events` in the same commit; returns its metadata (with the
    /// delete's sequencer), or `None`, enqueuing nothing, if there was no such key.
    pub fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        events: Vec<(String, NewMessage)>,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        let mut events = Some(events);
        self.delete_object_with(bucket, key, &mut |_| events.take().unwrap_or_default())
    }

    /// `delete_object` with events made from the deleted object's metadata.
    pub fn delete_object_with(
        &self,
        bucket: &str,
        key: &str,
        events: ObjectEvents<'_>,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        self.delete_object_if(bucket, key, &WriteCondition::Always, events)
    }

    /// `delete_object_with` that happens only when `condition` holds of the object.
    pub fn delete_object_if(
        &self,
        bucket: &str,
        key: &str,
        condition: &WriteCondition,
        events: ObjectEvents<'_>,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        check_bucket_name(bucket)?;
        check_key(key)?;
        let deleted = self.write("an object", |tx| {
            bucket_exists(tx, bucket, write_err("an object"))?;
            let row = object_row(tx, bucket, key, write_err("an object"))?;
            check_condition(
                condition,
                bucket,
                key,
                row.as_ref().map(|(meta, _)| meta.etag.as_str()),
            )?;
            let Some((mut meta, file)) = row else {
                return Ok(None);
            };
            tx.prepare_cached("DELETE FROM objects WHERE bucket = ?1 AND key = ?2")
                .and_then(|mut stmt| stmt.execute([bucket, key]))
                .map_err(write_err("an object"))?;
            let file = drop_inline(tx, &file)?.then_some(file);
            meta.sequencer = format_sequencer(next_sequencer(tx)?);
            queues::insert_messages(tx, events(&meta), now_us())?;
            Ok(Some((meta, file)))
        })?;
        Ok(deleted.map(|(meta, file)| {
            if let Some(file) = file {
                remove_file(&self.bucket_dir(bucket).join(file));
            }
            meta
        }))
    }

    /// Up to `max_keys` (at most 1000) objects whose keys start with `prefix`, after `start_after`,
    /// in key order.
    pub fn list_objects(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        start_after: Option<&str>,
        max_keys: usize,
    ) -> Result<ObjectList, StoreError> {
        check_bucket_name(bucket)?;
        let max_keys = max_keys.min(MAX_LIST_OBJECTS);
        let prefix = prefix.unwrap_or("");
        self.read(|conn| {
            bucket_exists(conn, bucket, read_err("objects"))?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT key, size, etag, content_type, last_modified_us, sequencer, metadata
                     FROM objects WHERE bucket = ?1 AND key > ?2 AND key >= ?3 ORDER BY key",
                )
                .map_err(read_err("objects"))?;
            let mut rows = stmt
                .query(params![bucket, start_after.unwrap_or(""), prefix])
                .map_err(read_err("objects"))?;
            let mut objects = Vec::new();
            let mut is_truncated = false;
            // Keys come in byte order, so the first key without the prefix ends the matches.
            while let Some(row) = rows.next().map_err(read_err("objects"))? {
                let key: String = row.get(0).map_err(read_err("objects"))?;
                if !key.starts_with(prefix) {
                    break;
                }
                if objects.len() == max_keys {
                    is_truncated = true;
                    break;
                }
                objects.push(object_meta(bucket, key, row).map_err(read_err("objects"))?);
            }
            let next_start_after = if is_truncated {
                objects.last().map(|meta: &ObjectMeta| meta.key.clone())
            } else {
                None
            };
            Ok(ObjectList {
                objects,
                is_truncated,
                next_start_after,
            })
        })
    }

    fn object_row(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(ObjectMeta, String)>, StoreError> {
        check_bucket_name(bucket)?;
        check_key(key)?;
        self.read(|conn| {
            bucket_exists(conn, bucket, read_err("objects"))?;
            object_row(conn, bucket, key, read_err("objects"))
        })
    }

    /// An object's metadata, its id, and its bytes when they are kept in SQLite.
    fn object_with_data(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectWithData>, StoreError> {
        check_bucket_name(bucket)?;
        check_key(key)?;
        self.read(|conn| {
            bucket_exists(conn, bucket, read_err("objects"))?;
            let Some((meta, file)) = object_row(conn, bucket, key, read_err("objects"))? else {
                return Ok(None);
            };
            let data = conn
                .prepare_cached("SELECT data FROM object_data WHERE id = ?1")
                .and_then(|mut stmt| stmt.query_row([&file], |row| row.get(0)).optional())
                .map_err(read_err("objects"))?;
            Ok(Some((meta, file, data)))
        })
    }

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.inner.state_dir.join("buckets").join(bucket)
    }

    /// Removes temporary files and files no object refers to (a crash between rename and commit).
    fn remove_orphan_files(&self, bucket: &str, dir: &Path) -> Result<(), StoreError> {
        let entries = fs::read_dir(dir).map_err(|source| StoreError::ObjectFile {
            action: "listing the folder of",
            path: dir.to_owned(),
            source,
        })?;
        let mut n_removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let orphan = name.starts_with(TEMP_PREFIX)
                || (is_file_id(name) && !self.file_referenced(bucket, name)?);
            if orphan {
                remove_file(&entry.path());
                n_removed += 1;
            }
        }
        if n_removed > 0 {
            tracing::info!(
                bucket,
                n_removed,
                "removed files left behind by an interrupted put"
            );
        }
        Ok(())
    }

    fn file_referenced(&self, bucket: &str, file: &str) -> Result<bool, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM objects WHERE bucket = ?1 AND file = ?2)",
            )
            .and_then(|mut stmt| stmt.query_row([bucket, file], |row| row.get(0)))
            .map_err(read_err("objects"))
        })
    }
}

fn bucket_exists(
    conn: &Connection,
    bucket: &str,
    sql_err: impl Fn(rusqlite::Error) -> StoreError,
) -> Result<(), StoreError> {
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM buckets WHERE name = ?1)")
        .and_then(|mut stmt| stmt.query_row([bucket], |row| row.get(0)))
        .map_err(sql_err)?;
    if !exists {
        return Err(StoreError::UnknownBucket {
            bucket: bucket.to_owned(),
        });
    }
    Ok(())
}

fn object_row(
    conn: &Connection,
    bucket: &str,
    key: &str,
    sql_err: impl Fn(rusqlite::Error) -> StoreError,
) -> Result<Option<(ObjectMeta, String)>, StoreError> {
    conn.prepare_cached(
        "SELECT key, size, etag, content_type, last_modified_us, sequencer, metadata, file
         FROM objects WHERE bucket = ?1 AND key = ?2",
    )
    .and_then(|mut stmt| {
        stmt.query_row([bucket, key], |row| {
            Ok((object_meta(bucket, row.get(0)?, row)?, row.get(7)?))
        })
        .optional()
    })
    .map_err(sql_err)
}

/// Reads columns 1 to 6 (size, etag, content type, last modified, sequencer, metadata).
fn object_meta(bucket: &str, key: String, row: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectMeta> {
    Ok(ObjectMeta {
        bucket: bucket.to_owned(),
        key,
        size: row.get::<_, i64>(1)? as u64,
        etag: row.get(2)?,
        content_type: row.get(3)?,
        last_modified: time(row.get(4)?),
        sequencer: format_sequencer(row.get(5)?),
        metadata: row.get(6)?,
    })
}

fn next_sequencer(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO counters (name, value) VALUES ('object_sequencer', 1)
         ON CONFLICT (name) DO UPDATE SET value = value + 1
         RETURNING value",
    )
    .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
    .map_err(write_err("an object"))
}

fn format_sequencer(sequencer: i64) -> String {
    format!("{sequencer:016X}")
}

/// Deletes the SQLite-kept bytes of the object with id `file`, if it has them; whether its
/// bytes are in a file instead (to remove once the transaction commits).
fn drop_inline(tx: &Transaction<'_>, file: &str) -> Result<bool, StoreError> {
    let n_deleted = tx
        .prepare_cached("DELETE FROM object_data WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([file]))
        .map_err(write_err("an object"))?;
    Ok(n_deleted == 0)
}

/// An object's metadata, its id, and its bytes when SQLite keeps them.
type ObjectWithData = (ObjectMeta, String, Option<Vec<u8>>);

/// Writes `data` to a temporary file, fsyncs it, renames it to `path` and fsyncs the folder.
fn write_file(dir: &Path, path: &Path, file: &str, data: &[u8]) -> Result<(), StoreError> {
    let temp = dir.join(format!("{TEMP_PREFIX}{file}"));
    let io_err = |action, path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::ObjectFile {
            action,
            path,
            source,
        }
    };
    let res = (|| {
        let mut out = fs::File::create_new(&temp).map_err(io_err("writing", &temp))?;
        out.write_all(data).map_err(io_err("writing", &temp))?;
        out.sync_all().map_err(io_err("syncing", &temp))?;
        fs::rename(&temp, path).map_err(io_err("renaming", &temp))?;
        // The rename is durable once the folder is synced (for power loss; a process kill only
        // needs the rename itself).
        fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_err("syncing the folder of", dir))
    })();
    if res.is_err() {
        remove_file(&temp);
    }
    res
}

/// Removes a file that is no longer referenced; failures are logged, as the file is only garbage.
fn remove_file(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "removing an unreferenced object file")
        }
    }
}

/// Names of object files: 32 lowercase hex digits.
fn is_file_id(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// S3's bucket naming rules (general purpose buckets).
pub(crate) fn check_bucket_name(name: &str) -> Result<(), StoreError> {
    let invalid = |reason| StoreError::InvalidBucketName {
        bucket: durable::cut(name, 100),
        reason,
    };
    if !(3..=63).contains(&name.len()) {
        return Err(invalid("a bucket name is 3 to 63 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(invalid(
            "a bucket name has only lowercase letters, digits, `.` and `-`",
        ));
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(invalid(
            "a bucket name begins and ends with a letter or digit",
        ));
    }
    if name.contains("..") {
        return Err(invalid("a bucket name has no two periods in a row"));
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(invalid("a bucket name is not an IP address"));
    }
    if name.starts_with("xn--")
        || name.starts_with("sthree-")
        || name.ends_with("-s3alias")
        || name.ends_with("--ol-s3")
    {
        return Err(invalid(
            "a bucket name does not start with `xn--` or `sthree-` nor end with `-s3alias` or `--ol-s3` (reserved by S3)",
        ));
    }
    Ok(())
}

/// S3's key rules (1 to 1024 bytes of UTF-8) plus nimbus's: no NUL, and no path segment that is
/// `.` or `..` (between `/` or `\`), so keys stay safe even if someday mapped to paths.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let invalid = |reason| StoreError::InvalidKey {
        key: durable::cut(key, 200),
        reason,
    };
    if key.is_empty() || key.len() > MAX_OBJECT_KEY_BYTES {
        return Err(invalid("an object key is 1 to 1024 bytes long"));
    }
    if key.contains('\0') {
        return Err(invalid("an object key contains no NUL character"));
    }
    if key
        .split(['/', '\\'])
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(invalid("an object key has no path segment `.` or `..`"));
    }
    Ok(())
}

fn check_metadata(metadata: &str) -> Result<(), StoreError> {
    if metadata.len() > MAX_OBJECT_METADATA_BYTES {
        return Err(StoreError::ValueTooLarge {
            what: "object metadata",
            size: metadata.len(),
            limit: MAX_OBJECT_METADATA_BYTES,
        });
    }
    match serde_json::from_str::<serde_json::Value>(metadata) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(StoreError::InvalidValue {
            what: "object metadata",
            reason: "user metadata is a JSON object of string values".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;

/// A put's settings besides its bytes.
struct Put<'a> {
    content_type: Option<&'a str>,
    metadata: Option<&'a str>,
    /// The ETag to give the object (a multipart upload's); the MD5 when `None`.
    etag: Option<&'a str>,
    condition: &'a WriteCondition,
}

/// Whether `condition` holds of the object now under the key (`current`: its ETag).
fn check_condition(
    condition: &WriteCondition,
    bucket: &str,
    key: &str,
    current: Option<&str>,
) -> Result<(), StoreError> {
    match (condition, current) {
        (WriteCondition::Always, _) | (WriteCondition::IfAbsent, None) => Ok(()),
        (WriteCondition::IfAbsent, Some(_)) => Err(StoreError::PreconditionFailed {
            reason: format!("an object `{key}` exists in bucket `{bucket}` (If-None-Match: *)"),
        }),
        (WriteCondition::IfEtag(_), None) => Err(StoreError::NoSuchObject {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }),
        (WriteCondition::IfEtag(wanted), Some(etag)) if wanted.eq_ignore_ascii_case(etag) => Ok(()),
        (WriteCondition::IfEtag(wanted), Some(etag)) => Err(StoreError::PreconditionFailed {
            reason: format!("the object's ETag is \"{etag}\", not \"{wanted}\" (If-Match)"),
        }),
    }
}
