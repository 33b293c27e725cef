//! The app's secrets: values encrypted at rest in `nimbus.db`, under a key kept in `secrets.key`.
//!
//! Each value is sealed with XChaCha20-Poly1305 under one random 256-bit key, with a random
//! 192-bit nonce per value (large enough that random nonces never repeat in practice) and the
//! secret's name as associated data, so a value copied onto another name fails to open.
//! The key lives in `<state_dir>/secrets.key` (64 hex digits, created mode 0600 on the first
//! `set`). Whoever can read that file and the database can read every secret: the encryption
//! keeps values out of backups, copies and greps of `nimbus.db` that leave the key behind, not
//! away from the user who runs nimbus.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use chacha20poly1305::aead::{Aead as _, Generate as _, Payload};
use chacha20poly1305::{Key, KeyInit as _, XChaCha20Poly1305, XNonce};
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::durable::{self, now_us, read_err, time, write_err};
use crate::{StoreError, db};

/// Schema version 4: the `secrets` table.
pub(crate) const SCHEMA_V4: &str = "
-- `ciphertext` is XChaCha20-Poly1305 of the value (tag appended) under the key in `secrets.key`,
-- with `nonce` (24 random bytes) and the name as associated data. No column holds plaintext.
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    updated_us INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The key file inside the app's state folder.
pub const SECRET_KEY_FILE: &str = "secrets.key";

/// The longest secret name, in bytes.
pub const MAX_SECRET_NAME_BYTES: usize = 128;

/// The largest secret value, in bytes: far above what an environment variable usually holds
/// (Lambda allows 4 KiB for all of them), well below Linux's 128 KiB for one.
pub const MAX_SECRET_VALUE_BYTES: usize = 32 * 1024;

/// The app's secrets: set, list, remove, and read for functions' environments.
///
/// Opened read-write (`open`) by `nimbus secret set|rm`, or read-only (`open_read_only`) by
/// everything that only resolves or lists them.
pub struct Secrets {
    db_path: PathBuf,
    key_path: PathBuf,
    conn: Mutex<Connection>,
    access: Access,
}

/// One secret as `list` shows it: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// When its value was last set.
    pub updated: SystemTime,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
}

impl Secrets {
    /// Opens the secrets of `<state_dir>/nimbus.db` for writing, creating the folder and the
    /// database and bringing the schema up to date if needed. The key file is made by the first `set`.
    pub fn open(state_dir: &Path) -> Result<Secrets, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::CreateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        let db_path = db::file_path(state_dir);
        let conn = db::open_read_write(&db_path)?;
        Ok(Secrets {
            db_path,
            key_path: state_dir.join(SECRET_KEY_FILE),
            conn: Mutex::new(conn),
            access: Access::ReadWrite,
        })
    }

    /// Opens the secrets of an existing store for reading; `None` when there is no store or it
    /// predates secrets, so there are none. Creates and migrates nothing.
    pub fn open_read_only(state_dir: &Path) -> Result<Option<Secrets>, StoreError> {
        let db_path = db::file_path(state_dir);
        if !db_path.exists() {
            return Ok(None);
        }
        let conn = db::open_reader(&db_path)?;
        let open_err = |source| StoreError::Open {
            path: db_path.clone(),
            source,
        };
        let found = db::schema_version(&conn).map_err(open_err)?;
        if found > db::SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: db_path,
                found,
                supported: db::SCHEMA_VERSION,
            });
        }
        let has_table = conn
            .query_row(
                "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'secrets'",
                [],
                |_| Ok(()),
            )
            .optional()
            .map_err(open_err)?
            .is_some();
        if !has_table {
            return Ok(None);
        }
        Ok(Some(Secrets {
            db_path,
            key_path: state_dir.join(SECRET_KEY_FILE),
            conn: Mutex::new(conn),
            access: Access::ReadOnly,
        }))
    }

    /// The key file: whoever holds it (and the database) can read every secret.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// Sets `name` to `value`, replacing any value; it has committed when this returns.
    /// Creates the key file (mode 0600) when the store has no secrets yet.
    pub fn set(&self, name: &str, value: &str) -> Result<(), StoreError> {
        check_name(name)?;
        check_value(name, value)?;
        if self.access == Access::ReadOnly {
            return Err(StoreError::ReadOnly);
        }
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let key = match read_key(&self.key_path)? {
            Some(key) => key,
            None => {
                let n_secrets: i64 = conn
                    .query_row("SELECT COUNT(*) FROM secrets", [], |row| row.get(0))
                    .map_err(read_err("secrets"))?;
                if n_secrets > 0 {
                    // A new key could not open the values already stored: refuse rather
                    // than leave a mix of values under two keys.
                    return Err(StoreError::MissingSecretKey {
                        path: self.key_path.clone(),
                        n_secrets: n_secrets.unsigned_abs(),
                    });
                }
                create_key(&self.key_path)?
            }
        };
        let nonce = XNonce::try_generate().map_err(|e| StoreError::Random {
            reason: e.to_string(),
        })?;
        let ciphertext = XChaCha20Poly1305::new(&key)
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            // Only inputs past ChaCha20's 256 GiB per nonce fail, far beyond the value limit.
            .map_err(|_| StoreError::InvalidSecret {
                name: name.to_owned(),
                reason: "the value could not be encrypted",
            })?;
        conn.execute(
            "INSERT INTO secrets (name, nonce, ciphertext, updated_us) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET
                 nonce = excluded.nonce, ciphertext = excluded.ciphertext,
                 updated_us = excluded.updated_us",
            params![name, nonce.as_slice(), ciphertext, now_us()],
        )
        .map_err(write_err("a secret"))?;
        Ok(())
    }

    /// The value of `name`, decrypted; `None` when it is not set.
    pub fn get(&self, name: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let row: Option<(Vec<u8>, Vec<u8>)> = conn
            .query_row(
                "SELECT nonce, ciphertext FROM secrets WHERE name = ?1",
                [name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(read_err("secrets"))?;
        drop(conn);
        let Some((nonce, ciphertext)) = row else {
            return Ok(None);
        };
        let Some(key) = read_key(&self.key_path)? else {
            return Err(StoreError::MissingSecretKey {
                path: self.key_path.clone(),
                n_secrets: self.list()?.len() as u64,
            });
        };
        let undecryptable = || StoreError::Decrypt {
            name: name.to_owned(),
            key_path: self.key_path.clone(),
        };
        let nonce = XNonce::try_from(nonce.as_slice()).map_err(|_| undecryptable())?;
        let plaintext = XChaCha20Poly1305::new(&key)
            .decrypt(
                &nonce,
                Payload {
                    msg: &ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| undecryptable())?;
        String::from_utf8(plaintext)
            .map(Some)
            .map_err(|_| undecryptable())
    }

    /// Every secret's name and when it was set, by name; never values.
    pub fn list(&self) -> Result<Vec<SecretInfo>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stmt = conn
            .prepare("SELECT name, updated_us FROM secrets ORDER BY name")
            .map_err(read_err("secrets"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(SecretInfo {
                    name: row.get(0)?,
                    updated: time(row.get(1)?),
                })
            })
            .map_err(read_err("secrets"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(read_err("secrets"))
    }

    /// Removes `name`; whether it was set.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        if self.access == Access::ReadOnly {
            return Err(StoreError::ReadOnly);
        }
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let n_removed = conn
            .execute("DELETE FROM secrets WHERE name = ?1", [name])
            .map_err(write_err("a secret"))?;
        Ok(n_removed > 0)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("db_path", &self.db_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// Checks a secret's name: letters, digits, `_`, `-` and `.`, at most 128 bytes. `set`
/// checks it too; callers check first to fail before asking for a value.
pub fn check_secret_name(name: &str) -> Result<(), StoreError> {
    check_name(name)
}

/// Names are what `${secret:NAME}` can hold: letters, digits, `_`, `-` and `.`.
fn check_name(name: &str) -> Result<(), StoreError> {
    let invalid = |reason| StoreError::InvalidSecret {
        name: durable::cut(name, 200),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name.len() > MAX_SECRET_NAME_BYTES {
        return Err(invalid("the name is longer than 128 bytes"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(invalid(
            "a name may only contain letters, digits, `_`, `-` and `.`",
        ));
    }
    Ok(())
}

/// Values become environment variables: not empty, and no NUL, which an environment cannot hold.
fn check_value(name: &str, value: &str) -> Result<(), StoreError> {
    let invalid = |reason| StoreError::InvalidSecret {
        name: name.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("the value is empty"));
    }
    if value.len() > MAX_SECRET_VALUE_BYTES {
        return Err(invalid("the value is larger than 32 KiB"));
    }
    if value.contains('\0') {
        return Err(invalid(
            "the value holds a NUL byte, which an environment variable cannot",
        ));
    }
    Ok(())
}

/// Reads the key file; `None` when it does not exist.
fn read_key(path: &Path) -> Result<Option<Key>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::SecretKeyFile {
                action: "reading",
                path: path.to_owned(),
                source,
            });
        }
    };
    durable::unhex(text.trim())
        .and_then(|bytes| Key::try_from(bytes.as_slice()).ok())
        .map(Some)
        .ok_or_else(|| StoreError::InvalidSecretKey {
            path: path.to_owned(),
        })
}

/// Makes a new random key and writes it to `path` with mode 0600, unless another process got
/// there first, in which case that key is the one.
///
/// The key is written to a temporary file and hard-linked into place, so no reader ever sees a
/// half-written key file and two first `set`s cannot end up with two keys.
fn create_key(path: &Path) -> Result<Key, StoreError> {
    let key = Key::try_generate().map_err(|e| StoreError::Random {
        reason: e.to_string(),
    })?;
    let file_err = |action, source| StoreError::SecretKeyFile {
        action,
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_file_name(format!(
        "{SECRET_KEY_FILE}.{}.tmp",
        durable::random_id().simple()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(format!("{}\n", durable::hex(&key)).as_bytes())?;
            file.sync_all()
        });
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read_key(path)? {
            Some(key) => Ok(key),
            None => Err(file_err("creating", e)),
        },
        Err(e) => Err(file_err("creating", e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn set_then_get_returns_the_value_and_list_shows_names_only() -> TestResult {
        let dir = tempfile::tempdir()?;
        let secrets = Secrets::open(dir.path())?;
        secrets.set("DB_PASSWORD", "hunter2-correct-horse")?;
        secrets.set("API_TOKEN", "tok_123")?;
        secrets.set("API_TOKEN", "tok_456")?;
        assert_eq!(
            secrets.get("DB_PASSWORD")?.as_deref(),
            Some("hunter2-correct-horse")
        );
        assert_eq!(secrets.get("API_TOKEN")?.as_deref(), Some("tok_456"));
        assert_eq!(secrets.get("NOPE")?, None);
        let names: Vec<String> = secrets.list()?.into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["API_TOKEN", "DB_PASSWORD"]);
        assert!(secrets.remove("API_TOKEN")?);
        assert!(!secrets.remove("API_TOKEN")?);
        assert_eq!(secrets.get("API_TOKEN")?, None);

        // Another process reads them through a read-only open.
        let reader = Secrets::open_read_only(dir.path())?.ok_or("no secrets found")?;
        assert_eq!(
            reader.get("DB_PASSWORD")?.as_deref(),
            Some("hunter2-correct-horse")
        );
        assert!(matches!(reader.set("X", "y"), Err(StoreError::ReadOnly)));
        Ok(())
    }

    #[test]
    fn key_file_is_private_and_holds_256_bits() -> TestResult {
        let dir = tempfile::tempdir()?;
        let secrets = Secrets::open(dir.path())?;
        assert!(!secrets.key_path().exists(), "no key before the first set");
        secrets.set("A", "value")?;
        let mode = std::fs::metadata(secrets.key_path())?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(secrets.key_path())?;
        assert_eq!(text.trim().len(), 64, "{text:?}");
        Ok(())
    }

    #[test]
    fn stored_bytes_do_not_contain_the_plaintext() -> TestResult {
        let dir = tempfile::tempdir()?;
        let value = "s3cr3t-plaintext-that-must-not-appear";
        {
            let secrets = Secrets::open(dir.path())?;
            secrets.set("TOKEN", value)?;
            // The same value twice gets two nonces, so two different ciphertexts.
            secrets.set("TOKEN_COPY", value)?;
        }
        let mut n_files = 0;
        for entry in std::fs::read_dir(dir.path())? {
            let path = entry?.path();
            let bytes = std::fs::read(&path)?;
            n_files += 1;
            assert!(
                !bytes
                    .windows(value.len())
                    .any(|window| window == value.as_bytes()),
                "{} holds the plaintext",
                path.display()
            );
        }
        assert!(n_files >= 2, "the database and the key file were read");
        let conn = Connection::open(db::file_path(dir.path()))?;
        let ciphertexts: Vec<Vec<u8>> = conn
            .prepare("SELECT ciphertext FROM secrets")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        assert_eq!(ciphertexts.len(), 2);
        assert_ne!(ciphertexts[0], ciphertexts[1]);
        Ok(())
    }

    #[test]
    fn a_wrong_key_fails_with_a_clear_error() -> TestResult {
        let dir = tempfile::tempdir()?;
        let secrets = Secrets::open(dir.path())?;
        secrets.set("TOKEN", "value")?;
        std::fs::write(secrets.key_path(), format!("{}\n", "ab".repeat(32)))?;
        let err = secrets
            .get("TOKEN")
            .err()
            .ok_or("decrypted with a wrong key")?;
        assert!(matches!(err, StoreError::Decrypt { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("secret `TOKEN` cannot be decrypted with the key in"),
            "{message}"
        );

        std::fs::write(secrets.key_path(), "not hex\n")?;
        let err = secrets.get("TOKEN").err().ok_or("read a malformed key")?;
        assert!(
            matches!(err, StoreError::InvalidSecretKey { .. }),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn a_missing_key_is_not_replaced_while_secrets_need_it() -> TestResult {
        let dir = tempfile::tempdir()?;
        let secrets = Secrets::open(dir.path())?;
        secrets.set("TOKEN", "value")?;
        std::fs::remove_file(secrets.key_path())?;
        let err = secrets
            .set("OTHER", "value")
            .err()
            .ok_or("made a new key")?;
        assert!(
            matches!(err, StoreError::MissingSecretKey { n_secrets: 1, .. }),
            "{err:?}"
        );
        assert!(matches!(
            secrets.get("TOKEN"),
            Err(StoreError::MissingSecretKey { .. })
        ));
        Ok(())
    }

    #[test]
    fn a_value_moved_to_another_name_does_not_open() -> TestResult {
        let dir = tempfile::tempdir()?;
        let secrets = Secrets::open(dir.path())?;
        secrets.set("A", "value-of-a")?;
        secrets.set("B", "value-of-b")?;
        let conn = Connection::open(db::file_path(dir.path()))?;
        conn.execute(
            "UPDATE secrets SET (nonce, ciphertext) =
                 (SELECT nonce, ciphertext FROM secrets WHERE name = 'A')
             WHERE name = 'B'",
            [],
        )?;
        assert!(matches!(secrets.get("B"), Err(StoreError::Decrypt { .. })));
        Ok(())
    }

    #[test]
    fn bad_names_and_values_are_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let secrets = Secrets::open(dir.path())?;
        for (name, value) in [
            ("", "v"),
            ("has space", "v"),
            ("${x}", "v"),
            ("OK", ""),
            ("OK", "nul\0byte"),
        ] {
            let err = secrets.set(name, value).err().ok_or("accepted")?;
            assert!(
                matches!(err, StoreError::InvalidSecret { .. }),
                "{name:?}: {err:?}"
            );
            assert!(err.is_client_error());
        }
        assert!(
            secrets
                .set("OK", &"x".repeat(MAX_SECRET_VALUE_BYTES + 1))
                .is_err()
        );
        assert!(secrets.list()?.is_empty());
        Ok(())
    }

    #[test]
    fn read_only_open_finds_nothing_without_a_store() -> TestResult {
        let dir = tempfile::tempdir()?;
        assert!(Secrets::open_read_only(dir.path())?.is_none());
        assert!(!db::file_path(dir.path()).exists(), "nothing was created");
        Ok(())
    }
}
