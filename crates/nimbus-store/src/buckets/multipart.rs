//! Multipart uploads (S3's CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload, ListParts, ListMultipartUploads): each upload is a folder
//! `<state_dir>/uploads/<upload id>/` holding `upload.json` (bucket, key, content type, user
//! metadata, when it began) and one file per part, `<part number>-<hex MD5>`, each written
//! with the same temporary-file, fsync and rename steps as an object. Completing joins the
//! parts named by the client into one object through the same put as any other, so the
//! object and its event messages commit together; only then is the folder removed.
//!
//! Nothing of an upload is in SQLite: a part is durable once its rename is, and a crash
//! between the object's commit and the folder's removal leaves a folder the next complete
//! or abort of that id removes.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::json;

use super::{ObjectEvents, ObjectMeta, check_bucket_name, check_key, remove_file, write_file};
use crate::durable::{self, read_err};
use crate::{Store, StoreError};

/// S3's smallest part but the last, in bytes.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// S3's highest part number.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// An upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Its id, as CreateMultipartUpload answered it.
    pub id: String,
    /// The bucket.
    pub bucket: String,
    /// The key the object will have.
    pub key: String,
    /// The `Content-Type` given when it began.
    pub content_type: Option<String>,
    /// User metadata given when it began (a JSON object).
    pub metadata: Option<String>,
    /// When it began.
    pub initiated: SystemTime,
}

/// A part uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Its number, 1 to 10,000.
    pub number: u32,
    /// Lowercase hex MD5 of its bytes.
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was uploaded.
    pub last_modified: SystemTime,
}

impl Store {
    /// Begins an upload of `key` into `bucket`; returns its id.
    pub fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: Option<&str>,
        metadata: Option<&str>,
    ) -> Result<String, StoreError> {
        check_bucket_name(bucket)?;
        check_key(key)?;
        if let Some(metadata) = metadata {
            super::check_metadata(metadata)?;
        }
        self.read(|conn| super::bucket_exists(conn, bucket, read_err("buckets")))?;
        let id = durable::hex(&durable::random_id().into_bytes());
        let dir = self.upload_dir(&id);
        fs::create_dir_all(&dir).map_err(file_err("creating the folder of", &dir))?;
        let record = json!({
            "bucket": bucket,
            "key": key,
            "content_type": content_type,
            "metadata": metadata,
            "initiated_us": durable::now_us(),
        });
        write_file(
            &dir,
            &dir.join("upload.json"),
            "upload.json",
            record.to_string().as_bytes(),
        )?;
        Ok(id)
    }

    /// Stores part `number` of an upload, replacing an earlier one of that number; returns
    /// its ETag (hex MD5).
    pub fn upload_part(
        &self,
        id: &str,
        bucket: &str,
        key: &str,
        number: u32,
        data: &[u8],
    ) -> Result<String, StoreError> {
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(StoreError::InvalidUpload {
                code: "InvalidArgument",
                reason: format!("part number {number} is not between 1 and {MAX_PART_NUMBER}"),
            });
        }
        self.upload(id, bucket, key)?;
        let dir = self.upload_dir(id);
        let etag = durable::md5_hex(data);
        let name = format!("{number}-{etag}");
        let earlier = self.part_files(&dir)?;
        write_file(&dir, &dir.join(&name), &name, data)?;
        for (other, path) in earlier {
            if other.number == number && other.etag != etag {
                remove_file(&path);
            }
        }
        Ok(etag)
    }

    /// The upload `id` of `key` in `bucket`.
    pub fn upload(&self, id: &str, bucket: &str, key: &str) -> Result<Upload, StoreError> {
        let no_such = || StoreError::NoSuchUpload {
            id: durable::cut(id, 100),
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(no_such());
        }
        let upload = self.read_upload(id)?.ok_or_else(no_such)?;
        if upload.bucket != bucket || upload.key != key {
            return Err(no_such());
        }
        Ok(upload)
    }

    /// The parts of an upload, by part number.
    pub fn list_parts(&self, id: &str, bucket: &str, key: &str) -> Result<Vec<Part>, StoreError> {
        self.upload(id, bucket, key)?;
        let mut parts: Vec<Part> = self
            .part_files(&self.upload_dir(id))?
            .into_iter()
            .map(|(part, _)| part)
            .collect();
        parts.sort_by_key(|part| part.number);
        Ok(parts)
    }

    /// The uploads in progress in `bucket`, by key then start time.
    pub fn list_uploads(&self, bucket: &str) -> Result<Vec<Upload>, StoreError> {
        check_bucket_name(bucket)?;
        self.read(|conn| super::bucket_exists(conn, bucket, read_err("buckets")))?;
        let root = self.inner.state_dir.join("uploads");
        let entries = match fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StoreError::ObjectFile {
                    action: "listing",
                    path: root,
                    source,
                });
            }
        };
        let mut uploads = Vec::new();
        for entry in entries.flatten() {
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Some(upload) = self.read_upload(&id)?
                && upload.bucket == bucket
            {
                uploads.push(upload);
            }
        }
        uploads.sort_by(|a, b| (&a.key, a.initiated).cmp(&(&b.key, b.initiated)));
        Ok(uploads)
    }

    /// Discards an upload and its parts.
    pub fn abort_upload(&self, id: &str, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.upload(id, bucket, key)?;
        let dir = self.upload_dir(id);
        fs::remove_dir_all(&dir).map_err(file_err("removing", &dir))
    }

    /// Joins the parts the client lists (`(number, etag)`, in ascending order) into the object,
    /// whose ETag is S3's multipart one (the MD5 of the parts' MD5s, `-` and their count), and
    /// enqueues `events` in the same commit; then removes the upload.
    pub fn complete_upload(
        &self,
        id: &str,
        bucket: &str,
        key: &str,
        wanted: &[(u32, String)],
        events: ObjectEvents<'_>,
    ) -> Result<ObjectMeta, StoreError> {
        let upload = self.upload(id, bucket, key)?;
        let dir = self.upload_dir(id);
        let have = self.part_files(&dir)?;
        if wanted.is_empty() {
            return Err(StoreError::InvalidUpload {
                code: "MalformedXML",
                reason: "the request lists no parts; list each part's PartNumber and ETag"
                    .to_owned(),
            });
        }
        let mut chosen: Vec<(&Part, &PathBuf)> = Vec::with_capacity(wanted.len());
        for (index, (number, etag)) in wanted.iter().enumerate() {
            if index > 0 && wanted[index - 1].0 >= *number {
                return Err(StoreError::InvalidUpload {
                    code: "InvalidPartOrder",
                    reason: "The list of parts was not in ascending order. The parts list must be specified in order by part number.".to_owned(),
                });
            }
            let etag = etag.trim_matches('"').to_ascii_lowercase();
            let Some((part, path)) = have
                .iter()
                .find(|(part, _)| part.number == *number && part.etag == etag)
            else {
                return Err(StoreError::InvalidUpload {
                    code: "InvalidPart",
                    reason: format!(
                        "One or more of the specified parts could not be found: part {number} with ETag {etag} was not uploaded"
                    ),
                });
            };
            chosen.push((part, path));
        }
        if let Some((small, _)) = chosen[..chosen.len() - 1]
            .iter()
            .find(|(part, _)| part.size < MIN_PART_BYTES)
        {
            return Err(StoreError::InvalidUpload {
                code: "EntityTooSmall",
                reason: format!(
                    "Your proposed upload is smaller than the minimum allowed size: part {} is {} bytes; every part but the last is at least 5 MiB",
                    small.number, small.size
                ),
            });
        }
        let mut data = Vec::with_capacity(chosen.iter().map(|(p, _)| p.size as usize).sum());
        let mut digests = Vec::with_capacity(chosen.len() * 16);
        for (part, path) in &chosen {
            let bytes = fs::read(path).map_err(file_err("reading", path))?;
            data.extend_from_slice(&bytes);
            digests.extend(unhex(&part.etag));
        }
        let etag = format!("{}-{}", durable::md5_hex(&digests), chosen.len());
        let put = super::Put {
            content_type: upload.content_type.as_deref(),
            metadata: upload.metadata.as_deref(),
            etag: Some(&etag),
            condition: &super::WriteCondition::Always,
        };
        let meta = self.put_object_inner(bucket, key, &data, &put, events)?;
        if let Err(err) = fs::remove_dir_all(&dir) {
            tracing::warn!(upload = id, error = %err, "removing a completed upload's folder");
        }
        Ok(meta)
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.inner.state_dir.join("uploads").join(id)
    }

    fn read_upload(&self, id: &str) -> Result<Option<Upload>, StoreError> {
        let path = self.upload_dir(id).join("upload.json");
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::ObjectFile {
                    action: "reading",
                    path,
                    source,
                });
            }
        };
        let record: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| StoreError::ObjectFile {
                action: "parsing",
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
        let text = |name: &str| record.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let (Some(bucket), Some(key)) = (text("bucket"), text("key")) else {
            return Ok(None);
        };
        Ok(Some(Upload {
            id: id.to_owned(),
            bucket,
            key,
            content_type: text("content_type"),
            metadata: text("metadata"),
            initiated: durable::time(
                record
                    .get("initiated_us")
                    .and_then(|v| v.as_i64())
                    .unwrap_or_default(),
            ),
        }))
    }

    /// The part files of an upload folder, with their paths.
    fn part_files(&self, dir: &Path) -> Result<Vec<(Part, PathBuf)>, StoreError> {
        let entries = fs::read_dir(dir).map_err(file_err("listing", dir))?;
        let mut parts = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some((number, etag)) = name.to_str().and_then(|n| n.split_once('-')) else {
                continue;
            };
            let (Ok(number), true) = (number.parse::<u32>(), etag.len() == 32) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            parts.push((
                Part {
                    number,
                    etag: etag.to_owned(),
                    size: meta.len(),
                    last_modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                },
                entry.path(),
            ));
        }
        Ok(parts)
    }
}

fn file_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::ObjectFile {
        action,
        path,
        source,
    }
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}
