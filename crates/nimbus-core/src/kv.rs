//! KV namespaces like Cloudflare Workers KV, on whichever backend holds them: the rules
//! every backend checks the same way and the async seam the server calls
//! ([`KvStore`]), implemented by the embedded SQLite store and by cluster mode's JetStream.
//!
//! Limits follow Workers KV: keys of 1 to 512 bytes (not `.` or `..`), values up to 25 MiB,
//! metadata (JSON) up to 1024 bytes, at most 1000 keys a list. One rule is relaxed: Workers
//! KV wants an expiration at least 60 seconds ahead; nimbus takes anything at least 1 second
//! ahead so tests and local development can watch keys expire. An expired key reads as
//! absent at once.

use std::time::{Duration, SystemTime};

use crate::BoxFuture;
pub use crate::services::{KvKeyInfo, KvPage, KvValue};

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

/// Why a KV call was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// A key or namespace name breaks the key rules.
    #[error("invalid key `{key}`: {reason}")]
    InvalidKey {
        /// The key given (cut to 200 characters).
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A value or its metadata is over its limit.
    #[error("{what} of {size} bytes is over the limit of {limit} bytes")]
    ValueTooLarge {
        /// "KV value" or "KV metadata".
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An expiration is not far enough ahead, metadata is not JSON, or a limit is out of range.
    #[error("invalid {what}: {reason}")]
    InvalidValue {
        /// "KV expiration", "KV metadata" or "KV list limit".
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A list cursor was not one a list handed out.
    #[error(
        "invalid list cursor `{cursor}`: pass the cursor of the previous page unchanged, or none to start over"
    )]
    InvalidCursor {
        /// The cursor given (cut to 100 characters).
        cursor: String,
    },
    /// The backend cannot be reached now (cluster mode without NATS); nothing was written.
    #[error("{message}")]
    Unavailable {
        /// What is unreachable and what to do.
        message: String,
    },
    /// The backend failed.
    #[error("{message}")]
    Backend {
        /// What failed, with its causes.
        message: String,
    },
}

impl KvError {
    /// Whether the caller's input was at fault (a 4xx), rather than the platform.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, KvError::Unavailable { .. } | KvError::Backend { .. })
    }
}

/// The KV operations the server uses, on whichever backend holds the namespaces. Methods
/// take owned arguments so an implementation can hand them to another thread or task.
pub trait KvStore: Send + Sync {
    /// A key's value; `None` if it is absent or expired.
    fn get(
        &self,
        namespace: String,
        key: String,
    ) -> BoxFuture<'_, Result<Option<KvValue>, KvError>>;
    /// Writes a value, replacing any; durable when the future resolves.
    fn put(&self, namespace: String, key: String, put: KvPut)
    -> BoxFuture<'_, Result<(), KvError>>;
    /// Deletes a key; whether it was there (expired or not).
    fn delete(&self, namespace: String, key: String) -> BoxFuture<'_, Result<bool, KvError>>;
    /// One page of keys in key order (UTF-8 bytes), expired keys left out.
    fn list(&self, namespace: String, query: KvListQuery)
    -> BoxFuture<'_, Result<KvPage, KvError>>;
}

/// A value to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvPut {
    /// The value.
    pub value: Vec<u8>,
    /// When the key expires (at least [`MIN_KV_EXPIRATION_AHEAD`] from now), if it does.
    pub expiration: Option<SystemTime>,
    /// Metadata, JSON text of at most [`MAX_KV_METADATA_BYTES`].
    pub metadata: Option<String>,
}

/// Which keys to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvListQuery {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// The cursor of the previous page.
    pub cursor: Option<String>,
    /// At most this many; 0 for the default of 1000; never over 1000.
    pub limit: usize,
}

/// Checks a namespace name.
pub fn check_namespace(ns: &str) -> Result<(), KvError> {
    if ns.is_empty() || ns.len() > MAX_NAMESPACE_BYTES || ns.contains('\0') {
        return Err(KvError::InvalidKey {
            key: cut(ns, 200),
            reason: "a KV namespace name is 1 to 512 bytes without NUL",
        });
    }
    Ok(())
}

/// Checks a key.
pub fn check_key(key: &str) -> Result<(), KvError> {
    let invalid = |reason| KvError::InvalidKey {
        key: cut(key, 200),
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

/// Checks everything about a put but its namespace and key, at `now`.
pub fn check_put(put: &KvPut, now: SystemTime) -> Result<(), KvError> {
    if put.value.len() > MAX_KV_VALUE_BYTES {
        return Err(KvError::ValueTooLarge {
            what: "KV value",
            size: put.value.len(),
            limit: MAX_KV_VALUE_BYTES,
        });
    }
    if let Some(metadata) = &put.metadata {
        if metadata.len() > MAX_KV_METADATA_BYTES {
            return Err(KvError::ValueTooLarge {
                what: "KV metadata",
                size: metadata.len(),
                limit: MAX_KV_METADATA_BYTES,
            });
        }
        if serde_json::from_str::<serde_json::Value>(metadata).is_err() {
            return Err(KvError::InvalidValue {
                what: "KV metadata",
                reason: "metadata is JSON text".to_owned(),
            });
        }
    }
    if let Some(expiration) = put.expiration
        && expiration < now + MIN_KV_EXPIRATION_AHEAD
    {
        return Err(KvError::InvalidValue {
            what: "KV expiration",
            reason: format!(
                "an expiration is at least {} s in the future",
                MIN_KV_EXPIRATION_AHEAD.as_secs()
            ),
        });
    }
    Ok(())
}

/// A list's limit: 0 is the default of 1000; over 1000 is refused.
pub fn list_limit(limit: usize) -> Result<usize, KvError> {
    match limit {
        0 => Ok(MAX_KV_LIST_LIMIT),
        1..=MAX_KV_LIST_LIMIT => Ok(limit),
        _ => Err(KvError::InvalidValue {
            what: "KV list limit",
            reason: format!("a KV list returns at most {MAX_KV_LIST_LIMIT} keys, not {limit}"),
        }),
    }
}

/// The cursor after `key`: the hex of the key. Opaque to callers, who pass it back
/// unchanged; every backend reads the others'.
pub fn encode_cursor(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The key a cursor stands for.
pub fn decode_cursor(cursor: &str) -> Result<String, KvError> {
    let invalid = || KvError::InvalidCursor {
        cursor: cut(cursor, 100),
    };
    if !cursor.len().is_multiple_of(2) || !cursor.is_ascii() {
        return Err(invalid());
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// Pages `keys` (sorted by name, expired ones already left out) after the cursor's key and
/// within the prefix, as a list answers; `limit` as checked by [`list_limit`].
pub fn page(keys: Vec<KvKeyInfo>, query: &KvListQuery, limit: usize) -> Result<KvPage, KvError> {
    let after = match &query.cursor {
        Some(cursor) => Some(decode_cursor(cursor)?),
        None => None,
    };
    let prefix = query.prefix.as_deref().unwrap_or("");
    let mut matching = keys.into_iter().filter(|key| {
        key.name.starts_with(prefix) && after.as_ref().is_none_or(|after| key.name > *after)
    });
    let page: Vec<KvKeyInfo> = matching.by_ref().take(limit).collect();
    let list_complete = matching.next().is_none();
    let cursor = if list_complete {
        None
    } else {
        page.last().map(|key| encode_cursor(&key.name))
    };
    Ok(KvPage {
        keys: page,
        list_complete,
        cursor,
    })
}

/// At most `max` characters of `text`, for error messages.
fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> KvKeyInfo {
        KvKeyInfo {
            name: name.to_owned(),
            expiration: None,
            metadata: None,
        }
    }

    fn names(page: &KvPage) -> Vec<&str> {
        page.keys.iter().map(|k| k.name.as_str()).collect()
    }

    #[test]
    fn pages_follow_the_cursor_within_the_prefix() {
        let keys = || ["a", "b/1", "b/2", "b/3", "c"].map(key).to_vec();
        let query = |prefix: &str, cursor: Option<String>| KvListQuery {
            prefix: Some(prefix.to_owned()),
            cursor,
            limit: 2,
        };
        let first = page(keys(), &query("b/", None), 2).expect("first page");
        assert_eq!(names(&first), ["b/1", "b/2"]);
        assert!(!first.list_complete);
        let second = page(keys(), &query("b/", first.cursor), 2).expect("second page");
        assert_eq!(names(&second), ["b/3"]);
        assert!(second.list_complete);
        assert_eq!(second.cursor, None);
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let cursor = encode_cursor("user:ünï");
        assert_eq!(decode_cursor(&cursor).as_deref(), Ok("user:ünï"));
        for bad in ["abc", "zz", "ff", "é1"] {
            assert!(
                matches!(decode_cursor(bad), Err(KvError::InvalidCursor { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn puts_break_the_rules_with_a_clear_error() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ok = KvPut {
            value: b"v".to_vec(),
            expiration: Some(now + Duration::from_secs(60)),
            metadata: Some(r#"{"v":1}"#.to_owned()),
        };
        assert_eq!(check_put(&ok, now), Ok(()));
        let soon = KvPut {
            expiration: Some(now),
            ..ok.clone()
        };
        assert!(matches!(
            check_put(&soon, now),
            Err(KvError::InvalidValue {
                what: "KV expiration",
                ..
            })
        ));
        let not_json = KvPut {
            metadata: Some("{".to_owned()),
            ..ok.clone()
        };
        assert!(matches!(
            check_put(&not_json, now),
            Err(KvError::InvalidValue {
                what: "KV metadata",
                ..
            })
        ));
        assert!(check_key("..").is_err());
        assert!(check_key(&"k".repeat(513)).is_err());
        assert!(check_namespace("").is_err());
        assert_eq!(list_limit(0), Ok(1000));
        assert!(list_limit(1001).is_err());
    }
}
