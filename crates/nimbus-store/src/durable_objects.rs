//! Durable Object storage, the embedded implementation of
//! `nimbus_core::durable_objects::DurableObjectStore`: one row per key of an object, one
//! row per alarm. An event's commit is one `BEGIN IMMEDIATE` transaction, so its writes
//! land together or, after a kill -9 mid-commit, not at all (see `durable.rs`).

use std::time::SystemTime;

use nimbus_core::durable_objects::{
    Alarm, AlarmChange, Commit, DurableObjectError, DurableObjectStore, ListOptions, ObjectName,
    ObjectSummary, SavepointStep, SqlResult, SqlSession, SqlValue, StorageWrite, check_key,
    check_value,
};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};

use crate::durable::{read_err, time, unix_us, write_err};
use crate::{Store, StoreError};

/// The migration that adds the keys and alarms of Durable Objects.
pub(crate) const SCHEMA: &str = "
CREATE TABLE durable_object_storage (
    class TEXT NOT NULL,
    object_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (class, object_id, key)
) WITHOUT ROWID;

-- `retry_count`: the failed attempts before the next one (0 for an alarm set by setAlarm).
CREATE TABLE durable_object_alarms (
    class TEXT NOT NULL,
    object_id TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    retry_count INTEGER NOT NULL,
    PRIMARY KEY (class, object_id)
) WITHOUT ROWID;
CREATE INDEX durable_object_alarms_by_time ON durable_object_alarms (at_us);
";

impl DurableObjectStore for Store {
    fn get(
        &self,
        object: &ObjectName,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, DurableObjectError> {
        for key in keys {
            check_key(key)?;
        }
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT value FROM durable_object_storage
                     WHERE class = ?1 AND object_id = ?2 AND key = ?3",
                )
                .map_err(read_err("Durable Object storage"))?;
            keys.iter()
                .map(|key| {
                    stmt.query_row(params![object.class, object.id, key], |row| row.get(0))
                        .optional()
                        .map_err(read_err("Durable Object storage"))
                })
                .collect()
        })
        .map_err(storage)
    }

    fn list(
        &self,
        object: &ObjectName,
        options: &ListOptions,
    ) -> Result<Vec<(String, Vec<u8>)>, DurableObjectError> {
        let mut sql = String::from(
            "SELECT key, value FROM durable_object_storage WHERE class = ?1 AND object_id = ?2",
        );
        let mut args: Vec<Value> = vec![
            Value::Text(object.class.clone()),
            Value::Text(object.id.clone()),
        ];
        let mut bound = |sql: &mut String, condition: &str, value: &str| {
            args.push(Value::Text(value.to_owned()));
            let n = args.len();
            sql.push_str(&condition.replace('?', &format!("?{n}")));
        };
        if let Some(prefix) = options.prefix.as_deref().filter(|p| !p.is_empty()) {
            // The range start uses the primary key; the substring keeps only the prefix.
            bound(
                &mut sql,
                " AND key >= ? AND substr(key, 1, length(?)) = ?",
                prefix,
            );
        }
        if let Some(start) = &options.start {
            bound(&mut sql, " AND key >= ?", start);
        }
        if let Some(start_after) = &options.start_after {
            bound(&mut sql, " AND key > ?", start_after);
        }
        if let Some(end) = &options.end {
            bound(&mut sql, " AND key < ?", end);
        }
        sql.push_str(if options.reverse {
            " ORDER BY key DESC"
        } else {
            " ORDER BY key"
        });
        if let Some(limit) = options.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&sql)
                .map_err(read_err("Durable Object storage"))?;
            let rows = stmt
                .query_map(params_from_iter(args.iter()), |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .map_err(read_err("Durable Object storage"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(read_err("Durable Object storage"))
        })
        .map_err(storage)
    }

    fn commit(&self, object: &ObjectName, commit: &Commit) -> Result<(), DurableObjectError> {
        for write in &commit.writes {
            match write {
                StorageWrite::Put(key, value) => {
                    check_key(key)?;
                    check_value(key, value)?;
                }
                StorageWrite::Delete(key) => check_key(key)?,
            }
        }
        self.write("Durable Object storage", |tx| {
            let err = write_err("Durable Object storage");
            if commit.delete_all {
                tx.prepare_cached(
                    "DELETE FROM durable_object_storage WHERE class = ?1 AND object_id = ?2",
                )
                .and_then(|mut stmt| stmt.execute(params![object.class, object.id]))
                .map_err(&err)?;
            }
            for write in &commit.writes {
                match write {
                    StorageWrite::Put(key, value) => tx
                        .prepare_cached(
                            "INSERT INTO durable_object_storage (class, object_id, key, value)
                             VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT (class, object_id, key) DO UPDATE SET value = excluded.value",
                        )
                        .and_then(|mut stmt| {
                            stmt.execute(params![object.class, object.id, key, value])
                        }),
                    StorageWrite::Delete(key) => tx
                        .prepare_cached(
                            "DELETE FROM durable_object_storage
                             WHERE class = ?1 AND object_id = ?2 AND key = ?3",
                        )
                        .and_then(|mut stmt| stmt.execute(params![object.class, object.id, key])),
                }
                .map_err(&err)?;
            }
            match commit.alarm {
                AlarmChange::Keep => {}
                AlarmChange::Set(at) => {
                    tx.prepare_cached(
                        "INSERT INTO durable_object_alarms (class, object_id, at_us, retry_count)
                         VALUES (?1, ?2, ?3, 0)
                         ON CONFLICT (class, object_id) DO UPDATE SET
                             at_us = excluded.at_us, retry_count = 0",
                    )
                    .and_then(|mut stmt| stmt.execute(params![object.class, object.id, unix_us(at)]))
                    .map_err(&err)?;
                }
                AlarmChange::Clear => {
                    tx.prepare_cached(
                        "DELETE FROM durable_object_alarms WHERE class = ?1 AND object_id = ?2",
                    )
                    .and_then(|mut stmt| stmt.execute(params![object.class, object.id]))
                    .map_err(&err)?;
                }
            }
            Ok(())
        })
        .map_err(storage)
    }

    fn alarm(&self, object: &ObjectName) -> Result<Option<Alarm>, DurableObjectError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT at_us, retry_count FROM durable_object_alarms
                 WHERE class = ?1 AND object_id = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![object.class, object.id], |row| {
                    Ok(Alarm {
                        object: object.clone(),
                        at: time(row.get(0)?),
                        retry_count: row.get(1)?,
                    })
                })
                .optional()
            })
            .map_err(read_err("Durable Object alarms"))
        })
        .map_err(storage)
    }

    fn alarms(&self, classes: &[String]) -> Result<Vec<Alarm>, DurableObjectError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT class, object_id, at_us, retry_count FROM durable_object_alarms
                     ORDER BY at_us",
                )
                .map_err(read_err("Durable Object alarms"))?;
            let rows = stmt
                .query_map([], |row| {
                    Ok(Alarm {
                        object: ObjectName {
                            class: row.get(0)?,
                            id: row.get(1)?,
                        },
                        at: time(row.get(2)?),
                        retry_count: row.get(3)?,
                    })
                })
                .map_err(read_err("Durable Object alarms"))?;
            let mut alarms = Vec::new();
            for alarm in rows {
                let alarm = alarm.map_err(read_err("Durable Object alarms"))?;
                if classes.contains(&alarm.object.class) {
                    alarms.push(alarm);
                }
            }
            Ok(alarms)
        })
        .map_err(storage)
    }

    fn retry_alarm(
        &self,
        object: &ObjectName,
        fired_at: SystemTime,
        next: Option<SystemTime>,
    ) -> Result<(), DurableObjectError> {
        self.write("a Durable Object alarm", |tx| {
            let res = match next {
                Some(next) => tx
                    .prepare_cached(
                        "UPDATE durable_object_alarms SET at_us = ?4, retry_count = retry_count + 1
                         WHERE class = ?1 AND object_id = ?2 AND at_us = ?3",
                    )
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            object.class,
                            object.id,
                            unix_us(fired_at),
                            unix_us(next)
                        ])
                    }),
                None => tx
                    .prepare_cached(
                        "DELETE FROM durable_object_alarms
                         WHERE class = ?1 AND object_id = ?2 AND at_us = ?3",
                    )
                    .and_then(|mut stmt| {
                        stmt.execute(params![object.class, object.id, unix_us(fired_at)])
                    }),
            };
            res.map_err(write_err("a Durable Object alarm"))?;
            Ok(())
        })
        .map_err(storage)
    }

    fn objects(&self, class: Option<&str>) -> Result<Vec<ObjectSummary>, DurableObjectError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT o.class, o.object_id,
                        (SELECT COUNT(*) FROM durable_object_storage s
                         WHERE s.class = o.class AND s.object_id = o.object_id),
                        (SELECT COALESCE(SUM(length(CAST(s.key AS BLOB)) + length(s.value)), 0)
                         FROM durable_object_storage s
                         WHERE s.class = o.class AND s.object_id = o.object_id),
                        (SELECT a.at_us FROM durable_object_alarms a
                         WHERE a.class = o.class AND a.object_id = o.object_id)
                     FROM (SELECT DISTINCT class, object_id FROM durable_object_storage
                           UNION SELECT class, object_id FROM durable_object_alarms) o
                     WHERE ?1 IS NULL OR o.class = ?1
                     ORDER BY o.class, o.object_id",
                )
                .map_err(read_err("Durable Objects"))?;
            let rows = stmt
                .query_map(params![class], |row| {
                    Ok(ObjectSummary {
                        object: ObjectName {
                            class: row.get(0)?,
                            id: row.get(1)?,
                        },
                        n_keys: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                        size_bytes: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                        alarm: row.get::<_, Option<i64>>(4)?.map(time),
                    })
                })
                .map_err(read_err("Durable Objects"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(read_err("Durable Objects"))
        })
        .map_err(storage)
    }

    fn has_sql(&self, object: &ObjectName) -> bool {
        sql_path(&self.inner.state_dir, object).is_some_and(|path| path.exists())
    }

    fn sql_session(&self, object: &ObjectName) -> Result<Box<dyn SqlSession>, DurableObjectError> {
        let Some(path) = sql_path(&self.inner.state_dir, object) else {
            return Err(DurableObjectError::Invalid(format!(
                "no Durable Object {}/{}: a class is a JavaScript name and an id 64 hex digits",
                object.class, object.id
            )));
        };
        let dir = path
            .parent()
            .expect("an object's database is in its class's folder")
            .to_owned();
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            DurableObjectError::Storage(format!(
                "{what} the SQL database of {}/{}: {e}",
                object.class, object.id
            ))
        };
        std::fs::create_dir_all(&dir).map_err(|e| failed("creating the folder of", &e))?;
        let conn = rusqlite::Connection::open(&path).map_err(|e| failed("opening", &e))?;
        // The same durability as the store's own database (durable.rs); a user's SQL
        // reaches no other file: ATTACH (and VACUUM INTO, which attaches) is refused, and
        // the defensive mode keeps the schema from being written directly.
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)?;
            conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
            Ok(())
        };
        setup().map_err(|e| failed("setting up", &e))?;
        Ok(Box::new(ObjectDatabase { conn }))
    }
}

fn storage(e: StoreError) -> DurableObjectError {
    DurableObjectError::Storage(e.to_string())
}

/// Where the object's SQL database is, if its name is one a file can have.
fn sql_path(state_dir: &std::path::Path, object: &ObjectName) -> Option<std::path::PathBuf> {
    let valid_class = !object.class.is_empty()
        && object
            .class
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    let valid_id = object.id.len() == 64
        && object
            .id
            .chars()
            .all(|c| matches!(c, '0'..='9' | 'a'..='f'));
    (valid_class && valid_id).then(|| {
        state_dir
            .join("durable-objects")
            .join(&object.class)
            .join(format!("{}.sqlite", object.id))
    })
}

/// One object's SQL database, `durable-objects/<class>/<id>.sqlite` in the state folder:
/// a namespace of its own, so its tables are the object's alone.
struct ObjectDatabase {
    conn: rusqlite::Connection,
}

/// Statements that would end the event's transaction, which Cloudflare refuses in
/// `sql.exec` too (`state.storage.transaction()` is the way).
const TRANSACTION_WORDS: [&str; 6] = ["BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"];

impl SqlSession for ObjectDatabase {
    fn exec(
        &mut self,
        query: &str,
        bindings: &[SqlValue],
    ) -> Result<SqlResult, DurableObjectError> {
        let sql_err =
            |e: rusqlite::Error| DurableObjectError::Invalid(format!("{e}: SQLITE_ERROR"));
        for statement in query.split(';') {
            let word: String = statement
                .trim_start()
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect::<String>()
                .to_ascii_uppercase();
            if TRANSACTION_WORDS.contains(&word.as_str()) {
                return Err(DurableObjectError::Invalid(format!(
                    "{word} is not allowed in sql.exec(): use state.storage.transaction() or \
                     transactionSync(); each event's SQL is one transaction already"
                )));
            }
        }
        if self.conn.is_autocommit() {
            self.conn.execute_batch("BEGIN").map_err(sql_err)?;
        }
        let changes_before = self.conn.total_changes();
        let mut stmt = match self.conn.prepare(query) {
            Ok(stmt) => stmt,
            // rusqlite refuses a script, or fails on its second statement when that needs
            // what the first makes.
            Err(_)
                if bindings.is_empty() && query.trim_end().trim_end_matches(';').contains(';') =>
            {
                // A script (a schema, say): run whole; like Cloudflare, it answers with the
                // rows of none but its last statement, and a script's last is seldom a query.
                self.conn.execute_batch(query).map_err(sql_err)?;
                return Ok(SqlResult {
                    rows_written: self.conn.total_changes() - changes_before,
                    ..SqlResult::default()
                });
            }
            Err(e) => return Err(sql_err(e)),
        };
        if stmt.parameter_count() != bindings.len() {
            return Err(DurableObjectError::Invalid(format!(
                "Wrong number of parameter bindings for SQL query: it takes {}, {} were given",
                stmt.parameter_count(),
                bindings.len()
            )));
        }
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let args = bindings.iter().map(|value| match value {
            SqlValue::Null => Value::Null,
            SqlValue::Integer(n) => Value::Integer(*n),
            SqlValue::Real(x) => Value::Real(*x),
            SqlValue::Text(text) => Value::Text(text.clone()),
            SqlValue::Blob(bytes) => Value::Blob(bytes.clone()),
        });
        let mut rows = stmt.query(params_from_iter(args)).map_err(sql_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sql_err)? {
            let mut values = Vec::with_capacity(columns.len());
            for idx in 0..columns.len() {
                use rusqlite::types::ValueRef;
                values.push(match row.get_ref(idx).map_err(sql_err)? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(n) => SqlValue::Integer(n),
                    ValueRef::Real(x) => SqlValue::Real(x),
                    ValueRef::Text(text) => {
                        SqlValue::Text(String::from_utf8_lossy(text).into_owned())
                    }
                    ValueRef::Blob(bytes) => SqlValue::Blob(bytes.to_vec()),
                });
            }
            out.push(values);
        }
        drop(rows);
        let scanned = stmt.get_status(rusqlite::StatementStatus::FullscanStep);
        let n_rows = u64::try_from(out.len()).unwrap_or(u64::MAX);
        drop(stmt);
        Ok(SqlResult {
            columns,
            rows: out,
            rows_read: n_rows + u64::try_from(scanned).unwrap_or(0),
            rows_written: self.conn.total_changes() - changes_before,
        })
    }

    fn commit(&mut self) -> Result<(), DurableObjectError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| DurableObjectError::Storage(format!("committing SQL: {e}")))
    }

    fn rollback(&mut self) -> Result<(), DurableObjectError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch("ROLLBACK")
            .map_err(|e| DurableObjectError::Storage(format!("rolling SQL back: {e}")))
    }

    fn delete_all(&mut self) -> Result<(), DurableObjectError> {
        let failed = |e: rusqlite::Error| DurableObjectError::Storage(format!("deleting SQL: {e}"));
        if self.conn.is_autocommit() {
            self.conn.execute_batch("BEGIN").map_err(failed)?;
        }
        // Views first: a table a view reads can then go too.
        let mut stmt = self
            .conn
            .prepare(
                "SELECT type, name FROM sqlite_master
                 WHERE type IN ('view', 'table') AND name NOT LIKE 'sqlite!_%' ESCAPE '!'
                 ORDER BY type = 'table'",
            )
            .map_err(failed)?;
        let names = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(failed)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        drop(stmt);
        for (kind, name) in names {
            let kind = if kind == "view" { "VIEW" } else { "TABLE" };
            let quoted = name.replace('"', "\"\"");
            self.conn
                .execute_batch(&format!("DROP {kind} IF EXISTS \"{quoted}\""))
                .map_err(failed)?;
        }
        Ok(())
    }

    fn savepoint(&mut self, step: SavepointStep, depth: u32) -> Result<(), DurableObjectError> {
        let failed = |e: rusqlite::Error| DurableObjectError::Storage(format!("a savepoint: {e}"));
        let sql = match step {
            SavepointStep::Open => {
                if self.conn.is_autocommit() {
                    self.conn.execute_batch("BEGIN").map_err(failed)?;
                }
                format!("SAVEPOINT nimbus_{depth}")
            }
            SavepointStep::Release => format!("RELEASE nimbus_{depth}"),
            SavepointStep::RollBack => {
                format!("ROLLBACK TO nimbus_{depth}; RELEASE nimbus_{depth}")
            }
        };
        self.conn.execute_batch(&sql).map_err(failed)
    }

    fn database_size(&mut self) -> Result<u64, DurableObjectError> {
        let pages = |pragma: &str| -> Result<u64, DurableObjectError> {
            self.conn
                .query_row(&format!("PRAGMA {pragma}"), [], |row| row.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(|e| DurableObjectError::Storage(format!("reading {pragma}: {e}")))
        };
        Ok(pages("page_count")? * pages("page_size")?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Store::open(dir.path()).expect("opening the store");
        (dir, store)
    }

    fn object(id: &str) -> ObjectName {
        ObjectName {
            class: "Counter".to_owned(),
            id: id.to_owned(),
        }
    }

    fn put(key: &str, value: &str) -> StorageWrite {
        StorageWrite::Put(key.to_owned(), value.as_bytes().to_vec())
    }

    fn keys(list: &[(String, Vec<u8>)]) -> Vec<&str> {
        list.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn a_commit_lands_whole_and_lists_honour_range_order_and_limit() {
        let (_dir, store) = store();
        let a = object("a");
        let commit = Commit {
            writes: vec![
                put("user:1", "x"),
                put("user:2", "y"),
                put("user:3", "z"),
                put("vote:1", "v"),
                put("tmp", "t"),
                StorageWrite::Delete("tmp".to_owned()),
            ],
            ..Commit::default()
        };
        store.commit(&a, &commit).expect("committed");
        let got = store
            .get(&a, &["user:2".to_owned(), "tmp".to_owned()])
            .expect("read");
        assert_eq!(got, vec![Some(b"y".to_vec()), None]);
        let list = |options: ListOptions| store.list(&a, &options).expect("listed");
        assert_eq!(
            keys(&list(ListOptions {
                prefix: Some("user:".to_owned()),
                ..ListOptions::default()
            })),
            ["user:1", "user:2", "user:3"]
        );
        assert_eq!(
            keys(&list(ListOptions {
                prefix: Some("user:".to_owned()),
                reverse: true,
                limit: Some(2),
                ..ListOptions::default()
            })),
            ["user:3", "user:2"]
        );
        assert_eq!(
            keys(&list(ListOptions {
                start: Some("user:2".to_owned()),
                end: Some("vote:1".to_owned()),
                ..ListOptions::default()
            })),
            ["user:2", "user:3"]
        );
        // Another object's keys are its own.
        assert!(
            store
                .list(&object("b"), &ListOptions::default())
                .expect("listed")
                .is_empty()
        );
        // deleteAll goes before the writes of the same commit.
        let commit = Commit {
            delete_all: true,
            writes: vec![put("only", "1")],
            ..Commit::default()
        };
        store.commit(&a, &commit).expect("committed");
        assert_eq!(keys(&list(ListOptions::default())), ["only"]);
    }

    #[test]
    fn a_commit_with_a_bad_write_changes_nothing() {
        let (_dir, store) = store();
        let a = object("a");
        let commit = Commit {
            writes: vec![
                put("fine", "1"),
                StorageWrite::Put(
                    "big".to_owned(),
                    vec![0; nimbus_core::durable_objects::MAX_VALUE_BYTES + 1],
                ),
            ],
            alarm: AlarmChange::Set(SystemTime::now()),
            ..Commit::default()
        };
        let err = store.commit(&a, &commit).unwrap_err();
        assert!(matches!(err, DurableObjectError::Invalid(_)), "{err}");
        assert!(
            store
                .list(&a, &ListOptions::default())
                .expect("listed")
                .is_empty()
        );
        assert_eq!(store.alarm(&a).expect("read"), None);
    }

    #[test]
    fn alarms_are_listed_by_time_and_a_retry_leaves_a_newer_alarm_alone() {
        let (_dir, store) = store();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let set = |id: &str, at: SystemTime| {
            let commit = Commit {
                alarm: AlarmChange::Set(at),
                ..Commit::default()
            };
            store.commit(&object(id), &commit).expect("committed");
        };
        set("late", now + Duration::from_secs(60));
        set("soon", now);
        let alarms = store.alarms(&["Counter".to_owned()]).expect("listed");
        let ids: Vec<&str> = alarms.iter().map(|a| a.object.id.as_str()).collect();
        assert_eq!(ids, ["soon", "late"]);
        assert!(
            store
                .alarms(&["Other".to_owned()])
                .expect("listed")
                .is_empty()
        );
        // A failed attempt moves it on and counts.
        let next = now + Duration::from_secs(2);
        store
            .retry_alarm(&object("soon"), now, Some(next))
            .expect("moved");
        let alarm = store.alarm(&object("soon")).expect("read").expect("set");
        assert_eq!((alarm.at, alarm.retry_count), (next, 1));
        // An event set a new alarm meanwhile: the stale retry does not touch it.
        store
            .retry_alarm(&object("soon"), now, None)
            .expect("no-op");
        assert!(store.alarm(&object("soon")).expect("read").is_some());
        let summaries = store.objects(Some("Counter")).expect("listed");
        assert_eq!(summaries.len(), 2);
        assert_eq!(summaries[0].alarm, Some(now + Duration::from_secs(60)));
    }

    #[test]
    fn each_object_has_its_own_sql_database_committed_or_rolled_back_per_event() {
        let (_dir, store) = store();
        let a = object(&"a".repeat(64));
        let b = object(&"b".repeat(64));
        let mut sql = store.sql_session(&a).expect("a session");
        let created = sql
            .exec(
                "CREATE TABLE people (name TEXT, age INTEGER, photo BLOB); \
                 CREATE INDEX people_by_age ON people (age)",
                &[],
            )
            .expect("a script");
        assert!(created.columns.is_empty());
        let inserted = sql
            .exec(
                "INSERT INTO people VALUES (?, ?, ?), (?, ?, NULL)",
                &[
                    SqlValue::Text("Ada".to_owned()),
                    SqlValue::Integer(36),
                    SqlValue::Blob(vec![1, 2]),
                    SqlValue::Text("Alan".to_owned()),
                    SqlValue::Real(41.5),
                ],
            )
            .expect("an insert");
        assert_eq!(inserted.rows_written, 2);
        sql.commit().expect("a commit");

        sql.exec("DELETE FROM people", &[]).expect("a delete");
        sql.rollback().expect("a rollback");
        let rows = sql
            .exec("SELECT name, age, photo FROM people ORDER BY name", &[])
            .expect("a select");
        assert_eq!(rows.columns, ["name", "age", "photo"]);
        assert_eq!(
            rows.rows,
            [
                vec![
                    SqlValue::Text("Ada".to_owned()),
                    SqlValue::Integer(36),
                    SqlValue::Blob(vec![1, 2])
                ],
                vec![
                    SqlValue::Text("Alan".to_owned()),
                    SqlValue::Real(41.5),
                    SqlValue::Null
                ],
            ]
        );
        assert!(rows.rows_read >= 2, "{rows:?}");
        assert_eq!(rows.rows_written, 0);
        assert!(sql.database_size().expect("a size") > 0);
        sql.commit().expect("a commit");
        // An uncommitted statement is gone with its session.
        sql.exec("INSERT INTO people (name) VALUES ('lost')", &[])
            .expect("an insert");
        drop(sql);

        let mut again = store.sql_session(&a).expect("a session");
        let count = again
            .exec("SELECT count(*) AS n FROM people", &[])
            .expect("a count");
        assert_eq!(count.rows, [vec![SqlValue::Integer(2)]]);
        // Another object has none of these tables.
        let mut other = store.sql_session(&b).expect("a session");
        let err = other.exec("SELECT * FROM people", &[]).unwrap_err();
        assert!(err.to_string().contains("no such table: people"), "{err}");

        // Nothing reaches another file, the transaction is the event's, bindings match.
        let err = again
            .exec("ATTACH DATABASE '/tmp/elsewhere.db' AS x", &[])
            .unwrap_err();
        assert!(err.to_string().contains("too many attached"), "{err}");
        // VACUUM INTO would attach its file too; inside the event's transaction it cannot run.
        let err = again.exec("VACUUM INTO '/tmp/copy.db'", &[]).unwrap_err();
        assert!(err.to_string().contains("VACUUM"), "{err}");
        let err = again.exec("  commit", &[]).unwrap_err();
        assert!(err.to_string().contains("COMMIT is not allowed"), "{err}");
        let err = again
            .exec("SELECT ?", &[SqlValue::Null, SqlValue::Null])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("Wrong number of parameter bindings"),
            "{err}"
        );
        // A transaction() inside the event is a savepoint.
        again
            .savepoint(SavepointStep::Open, 0)
            .expect("a savepoint");
        again.exec("DELETE FROM people", &[]).expect("a delete");
        again
            .savepoint(SavepointStep::RollBack, 0)
            .expect("a rollback to it");
        let count = again
            .exec("SELECT count(*) FROM people", &[])
            .expect("a count");
        assert_eq!(count.rows, [vec![SqlValue::Integer(2)]]);
        again.commit().expect("a commit");
        // deleteAll drops every table and view, in the event's transaction.
        again
            .exec("CREATE VIEW names AS SELECT name FROM people", &[])
            .expect("a view");
        again.commit().expect("a commit");
        again.delete_all().expect("a delete_all");
        let err = again.exec("SELECT * FROM people", &[]).unwrap_err();
        assert!(err.to_string().contains("no such table"), "{err}");
        again.rollback().expect("a rollback");
        assert!(again.exec("SELECT * FROM names", &[]).is_ok());
        assert!(store.has_sql(&a));
        assert!(!store.has_sql(&object(&"c".repeat(64))));
        let err = store
            .sql_session(&object("../../etc"))
            .err()
            .expect("a bad id is refused");
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }
}
