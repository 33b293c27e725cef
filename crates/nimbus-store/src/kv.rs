//! KV namespaces like Cloudflare Workers KV (the rules are `nimbus_core::kv`'s): get, put
//! with expiration and metadata, delete, and list by prefix in key order with cursor paging.
//!
//! An expired key reads as absent at once and its row is deleted lazily (by the get that
//! finds it, or `kv_sweep_expired`).

use std::time::SystemTime;

use nimbus_core::BoxFuture;
use nimbus_core::kv::{
    self, KvError, KvKeyInfo, KvListQuery, KvPage, KvPut, KvStore, KvValue, check_key,
    check_namespace,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::durable::{self, now_us, read_err, time, write_err};
use crate::{Store, StoreError};

impl Store {
    /// Writes a value, replacing any; it has committed when this returns.
    pub fn kv_put(&self, ns: &str, key: &str, put: &KvPut) -> Result<(), StoreError> {
        check_namespace(ns)?;
        check_key(key)?;
        kv::check_put(put, SystemTime::now())?;
        let KvPut {
            value,
            expiration,
            metadata,
        } = put;
        let expiration_us = expiration.map(durable::unix_us);
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
    pub fn kv_get(&self, ns: &str, key: &str) -> Result<Option<KvValue>, StoreError> {
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
    pub fn kv_read(&self, ns: &str, key: &str) -> Result<Option<KvValue>, StoreError> {
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

    /// One page of keys starting with the query's prefix, after the key its cursor stands
    /// for, in key order; expired keys are left out.
    pub fn kv_list(&self, ns: &str, query: &KvListQuery) -> Result<KvPage, StoreError> {
        check_namespace(ns)?;
        let limit = kv::list_limit(query.limit)?;
        let after = match &query.cursor {
            Some(cursor) => kv::decode_cursor(cursor)?,
            None => String::new(),
        };
        let prefix = query.prefix.as_deref().unwrap_or("");
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
                keys.push(KvKeyInfo {
                    name,
                    expiration: expiration_us.map(time),
                    metadata: row.get(2).map_err(read_err("KV keys"))?,
                });
            }
            let cursor = if list_complete {
                None
            } else {
                keys.last()
                    .map(|key: &KvKeyInfo| kv::encode_cursor(&key.name))
            };
            Ok(KvPage {
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
) -> Result<Option<(KvValue, Option<i64>)>, StoreError> {
    conn.prepare_cached(
        "SELECT value, expiration_us, metadata FROM kv WHERE namespace = ?1 AND key = ?2",
    )
    .and_then(|mut stmt| {
        stmt.query_row([ns, key], |row| {
            let expiration_us: Option<i64> = row.get(1)?;
            Ok((
                KvValue {
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

/// The embedded KV namespaces: reads are point reads on the calling worker (WAL readers
/// never wait for a writer), writes and lists run on tokio's blocking pool.
impl KvStore for Store {
    fn get(
        &self,
        namespace: String,
        key: String,
    ) -> BoxFuture<'_, Result<Option<KvValue>, KvError>> {
        Box::pin(async move { self.kv_read(&namespace, &key).map_err(KvError::from) })
    }

    fn put(
        &self,
        namespace: String,
        key: String,
        put: KvPut,
    ) -> BoxFuture<'_, Result<(), KvError>> {
        self.kv_off_worker(move |store| store.kv_put(&namespace, &key, &put))
    }

    fn delete(&self, namespace: String, key: String) -> BoxFuture<'_, Result<bool, KvError>> {
        self.kv_off_worker(move |store| store.kv_delete(&namespace, &key))
    }

    fn list(
        &self,
        namespace: String,
        query: KvListQuery,
    ) -> BoxFuture<'_, Result<KvPage, KvError>> {
        self.kv_off_worker(move |store| store.kv_list(&namespace, &query))
    }
}

impl Store {
    fn kv_off_worker<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, KvError>> {
        let store = self.clone();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || op(&store)).await {
                Ok(res) => res.map_err(KvError::from),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        })
    }
}

impl From<StoreError> for KvError {
    fn from(e: StoreError) -> KvError {
        match e {
            StoreError::Kv(e) => e,
            other => KvError::Backend {
                message: crate::error::chain(&other),
            },
        }
    }
}

#[cfg(test)]
mod tests;
