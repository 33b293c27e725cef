//! Durable Object storage, the embedded implementation of
//! `nimbus_core::durable_objects::DurableObjectStore`: one row per key of an object, one
//! row per alarm. An event's commit is one `BEGIN IMMEDIATE` transaction, so its writes
//! land together or, after a kill -9 mid-commit, not at all (see `durable.rs`).

use std::time::SystemTime;

use nimbus_core::durable_objects::{
    Alarm, AlarmChange, Commit, DurableObjectError, DurableObjectStore, ListOptions, ObjectName,
    ObjectSummary, StorageWrite, check_key, check_value,
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
}

fn storage(e: StoreError) -> DurableObjectError {
    DurableObjectError::Storage(e.to_string())
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
}
