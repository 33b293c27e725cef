//! KV namespaces like Cloudflare Workers KV: get, put with expiration and metadata, delete, and
//! list by prefix in key order with cursor paging.
//!
//! Limits follow Workers KV: keys of 1 to 512 bytes (not `.` or `..`), values up to 25 MiB,
//! metadata (JSON) up to 1024 bytes, at most 1000 keys a list. One rule is relaxed: Workers KV
//! wants an expiration at least 60 seconds ahead; nimbus takes anything at least 1 second ahead so
//! tests and local development can watch keys expire. An expired key reads as absent at once and
//! its row is deleted lazily (by the get that finds it, or `kv_sweep_expired`).

use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};

use crate::durable::{self, now_us, read_err, time, write_err};
use crate::{Store, StoreError};

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The value.
    pub value: Vec<u8>,
    /// When the key expires, if it does.
    pub expiration: Option<SystemTime>,
    /// Its metadata, a JSON text.
    pub metadata: Option<String>,
}

/// One key of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvKey {
    /// The key.
    pub name: String,
    /// When it expires, if it does.
    pub expiration: Option<SystemTime>,
    /// Its metadata, a JSON text.
    pub metadata: Option<String>,
}

/// One page of `kv_list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvList {
    /// Keys in lexicographic (UTF-8 byte) order.
    pub keys: Vec<KvKey>,
    /// Whether this is the last page.
    pub list_complete: bool,
    /// When not complete, the cursor of the next page.
    pub cursor: Option<String>,
}

/// Workers KV's longest key, in bytes.
pub const MAX_KV_KEY_BYTES: usize = 512;
/// Workers KV's largest value, in bytes.
pub const MAX_KV_VALUE_BYTES: usize = 25 * 1024 * 1024;
/// Workers KV's largest metadata, in bytes (of its JSON).
pub const MAX_KV_METADATA_BYTES: usize = 1024;
/// Workers KV's most keys a list returns, and the default.
pub const MAX_KV_LIST_LIMIT: usize = 1000;
/// The soonest an expiration may be (Workers KV: 60 seconds; see the module documentation).
pub const MIN_KV_EXPIRATION_AHEAD: Duration = Duration::from_secs(1);
/// The longest namespace name, in bytes.
const MAX_NAMESPACE_BYTES: usize = 512;

impl Store {
    /// Writes a value, replacing any; it has committed when this returns.
    pub fn kv_put(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        expiration: Option<SystemTime>,
        metadata: Option<&str>,
    ) -> Result<(), StoreError> {
        check_namespace(ns)?;
        check_key(key)?;
        if value.len() > MAX_KV_VALUE_BYTES {
            return Err(StoreError::ValueTooLarge {
                what: "KV value",
                size: value.len(),
                limit: MAX_KV_VALUE_BYTES,
            });
        }
        if let Some(metadata) = metadata {
            check_metadata(metadata)?;
        }
        let now_us = now_us();
        let expiration_us = match expiration {
            Some(expiration) => {
                let expiration_us = durable::unix_us(expiration);
                if expiration_us < now_us.saturating_add(durable::us(MIN_KV_EXPIRATION_AHEAD)) {
                    return Err(StoreError::InvalidValue {
                        what: "KV expiration",
                        reason: format!(
                            "an expiration is at least {} s in the future",
                            MIN_KV_EXPIRATION_AHEAD.as_secs()
                        ),
                    });
                }
                Some(expiration_us)
            }
            None => None,
        };
        self.write("a KV entry", |tx| {
            tx.prepare_cached(
                "INSERT INTO kv (namespace, key, value, expiration_us, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (namespace, key) DO UPDATE SET
                     value = excluded.value, expiration_us = excluded.expiration_us,
                     metadata = excluded.metadata",
            )
            .and_then(|mut stmt| stmt.execute(params![ns, key, value, expiration_us, metadata]))
            .map_err(write_err("a KV entry"))?;
            Ok(())
        })
    }

    /// Reads a value; an expired key is `None`.
    pub fn kv_get(&self, ns: &str, key: &str) -> Result<Option<KvEntry>, StoreError> {
        check_namespace(ns)?;
        check_key(key)?;
        let now_us = now_us();
        let row = self.read(|conn| kv_row(conn, ns, key))?;
        match row {
            Some((_, Some(expiration_us))) if expiration_us <= now_us => {
                self.delete_expired(ns, key, now_us);
                Ok(None)
            }
            Some((entry, _)) => Ok(Some(entry)),
            None => Ok(None),
        }
    }

    /// Reads a value without writing: an expired key is `None` and its row is left to
    /// `kv_sweep_expired`. Never waits for a writer, so it may run on an async worker.
    pub fn kv_read(&self, ns: &str, key: &str) -> Result<Option<KvEntry>, StoreError> {
        check_namespace(ns)?;
        check_key(key)?;
        let now_us = now_us();
        Ok(match self.read(|conn| kv_row(conn, ns, key))? {
            Some((_, Some(expiration_us))) if expiration_us <= now_us => None,
            Some((entry, _)) => Some(entry),
            None => None,
        })
    }

    /// Deletes a key; returns whether it was there (expired or not).
    pub fn kv_delete(&self, ns: &str, key: &str) -> Result<bool, StoreError> {
        check_namespace(ns)?;
        check_key(key)?;
        self.write("a KV entry", |tx| {
            let n_deleted = tx
                .prepare_cached("DELETE FROM kv WHERE namespace = ?1 AND key = ?2")
                .and_then(|mut stmt| stmt.execute([ns, key]))
                .map_err(write_err("a KV entry"))?;
            Ok(n_deleted > 0)
        })
    }

    /// Up to `limit` keys (0: the default of 1000; at most 1000) starting with `prefix`, after the
    /// key `cursor` stands for, in key order; expired keys are left out.
    pub fn kv_list(
        &self,
        ns: &str,
        prefix: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KvList, StoreError> {
        check_namespace(ns)?;
        if limit > MAX_KV_LIST_LIMIT {
            return Err(StoreError::InvalidParameter {
                reason: format!("a KV list returns at most {MAX_KV_LIST_LIMIT} keys, not {limit}"),
            });
        }
        let limit = if limit == 0 { MAX_KV_LIST_LIMIT } else { limit };
        let after = match cursor {
            Some(cursor) => decode_cursor(cursor)?,
            None => String::new(),
        };
        let prefix = prefix.unwrap_or("");
        let now_us = now_us();
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT key, expiration_us, metadata FROM kv
                     WHERE namespace = ?1 AND key > ?2 AND key >= ?3 ORDER BY key",
                )
                .map_err(read_err("KV keys"))?;
            let mut rows = stmt
                .query(params![ns, after, prefix])
                .map_err(read_err("KV keys"))?;
            let mut keys = Vec::new();
            let mut list_complete = true;
            // Keys come in byte order, so the first key without the prefix ends the matches.
            while let Some(row) = rows.next().map_err(read_err("KV keys"))? {
                let name: String = row.get(0).map_err(read_err("KV keys"))?;
                if !name.starts_with(prefix) {
                    break;
                }
                let expiration_us: Option<i64> = row.get(1).map_err(read_err("KV keys"))?;
                if expiration_us.is_some_and(|expiration_us| expiration_us <= now_us) {
                    continue;
                }
                if keys.len() == limit {
                    list_complete = false;
                    break;
                }
                keys.push(KvKey {
                    name,
                    expiration: expiration_us.map(time),
                    metadata: row.get(2).map_err(read_err("KV keys"))?,
                });
            }
            let cursor = if list_complete {
                None
            } else {
                keys.last().map(|key: &KvKey| encode_cursor(&key.name))
            };
            Ok(KvList {
                keys,
                list_complete,
                cursor,
            })
        })
    }

    /// Deletes every expired key of every namespace; returns how many.
    pub fn kv_sweep_expired(&self) -> Result<u64, StoreError> {
        self.write("KV entries", |tx| {
            let n_deleted = tx
                .prepare_cached("DELETE FROM kv WHERE expiration_us <= ?1")
                .and_then(|mut stmt| stmt.execute([now_us()]))
                .map_err(write_err("KV entries"))?;
            Ok(n_deleted as u64)
        })
    }

    /// Deletes a key found expired, unless it was written again since; failures only cost space.
    fn delete_expired(&self, ns: &str, key: &str, now_us: i64) {
        let res = self.write("a KV entry", |tx| {
            tx.prepare_cached(
                "DELETE FROM kv WHERE namespace = ?1 AND key = ?2 AND expiration_us <= ?3",
            )
            .and_then(|mut stmt| stmt.execute(params![ns, key, now_us]))
            .map_err(write_err("a KV entry"))
        });
        match res {
            Ok(_) | Err(StoreError::ReadOnly) => {}
            Err(err) => tracing::warn!(error = %err, "deleting an expired KV entry"),
        }
    }
}

fn kv_row(
    conn: &Connection,
    ns: &str,
    key: &str,
) -> Result<Option<(KvEntry, Option<i64>)>, StoreError> {
    conn.prepare_cached(
        "SELECT value, expiration_us, metadata FROM kv WHERE namespace = ?1 AND key = ?2",
    )
    .and_then(|mut stmt| {
        stmt.query_row([ns, key], |row| {
            let expiration_us: Option<i64> = row.get(1)?;
            Ok((
                KvEntry {
                    value: row.get(0)?,
                    expiration: expiration_us.map(time),
                    metadata: row.get(2)?,
                },
                expiration_us,
            ))
        })
        .optional()
    })
    .map_err(read_err("KV entries"))
}

/// A cursor: the hex of the last key listed. Opaque to callers; they pass it back unchanged.
fn encode_cursor(key: &str) -> String {
    durable::hex(key.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<String, StoreError> {
    durable::unhex(cursor)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| StoreError::InvalidCursor {
            cursor: durable::cut(cursor, 100),
        })
}

fn check_namespace(ns: &str) -> Result<(), StoreError> {
    if ns.is_empty() || ns.len() > MAX_NAMESPACE_BYTES || ns.contains('\0') {
        return Err(StoreError::InvalidKey {
            key: durable::cut(ns, 200),
            reason: "a KV namespace name is 1 to 512 bytes without NUL",
        });
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), StoreError> {
    let invalid = |reason| StoreError::InvalidKey {
        key: durable::cut(key, 200),
        reason,
    };
    if key.is_empty() || key.len() > MAX_KV_KEY_BYTES {
        return Err(invalid("a KV key is 1 to 512 bytes long"));
    }
    if key == "." || key == ".." {
        return Err(invalid("a KV key cannot be `.` or `..`"));
    }
    Ok(())
}

fn check_metadata(metadata: &str) -> Result<(), StoreError> {
    if metadata.len() > MAX_KV_METADATA_BYTES {
        return Err(StoreError::ValueTooLarge {
            what: "KV metadata",
            size: metadata.len(),
            limit: MAX_KV_METADATA_BYTES,
        });
    }
    if serde_json::from_str::<serde_json::Value>(metadata).is_err() {
        return Err(StoreError::InvalidValue {
            what: "KV metadata",
            reason: "metadata is JSON text".to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
