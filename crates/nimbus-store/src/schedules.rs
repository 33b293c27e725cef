//! When each schedule last fired, committed together with the invocations it enqueued.
//!
//! Because the fire time and the messages commit in one transaction, a restart at any moment
//! either sees both (the fire happened, so it is not repeated) or neither (it is fired again).

use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};

use crate::durable::{now_us, read_err, time, unix_us, write_err};
use crate::queues::{self, NewMessage};
use crate::{Store, StoreError};

impl Store {
    /// When schedule `name` last fired; `None` if it never has.
    pub fn schedule_last_fired(&self, name: &str) -> Result<Option<SystemTime>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT last_fired_us FROM schedules WHERE name = ?1")
                .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)).optional())
                .map(|last_fired_us: Option<i64>| last_fired_us.map(time))
                .map_err(read_err("schedules"))
        })
    }

    /// Records that schedule `name` fired at `fired_at` and enqueues `sends` in the same commit.
    pub fn fire_schedule(
        &self,
        name: &str,
        fired_at: SystemTime,
        sends: Vec<(String, NewMessage)>,
    ) -> Result<(), StoreError> {
        self.write("a schedule", |tx| {
            tx.prepare_cached(
                "INSERT INTO schedules (name, last_fired_us) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET last_fired_us = excluded.last_fired_us",
            )
            .and_then(|mut stmt| stmt.execute(params![name, unix_us(fired_at)]))
            .map_err(write_err("a schedule"))?;
            queues::insert_messages(tx, sends, now_us())?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use nimbus_core::events::QueueSpec;

    use crate::{NewMessage, Store, StoreError};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn fire_records_the_time_and_enqueues_in_one_commit() -> TestResult {
        let dir = tempfile::tempdir()?;
        let fired_at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        {
            let store = Store::open(dir.path())?;
            store.ensure_queue(&QueueSpec::with_defaults("invocations"))?;
            assert_eq!(store.schedule_last_fired("nightly")?, None);
            store.fire_schedule(
                "nightly",
                fired_at,
                vec![("invocations".to_owned(), NewMessage::new("{}"))],
            )?;
            // A fire whose message cannot be enqueued records nothing.
            let err = store
                .fire_schedule(
                    "nightly",
                    fired_at + Duration::from_secs(60),
                    vec![("missing".to_owned(), NewMessage::new("{}"))],
                )
                .unwrap_err();
            assert!(matches!(err, StoreError::UnknownQueue { .. }), "{err}");
        }
        let store = Store::open(dir.path())?;
        assert_eq!(store.schedule_last_fired("nightly")?, Some(fired_at));
        assert_eq!(store.queue_stats("invocations")?.visible, 1);
        let later = fired_at + Duration::from_secs(120);
        store.fire_schedule("nightly", later, vec![])?;
        assert_eq!(store.schedule_last_fired("nightly")?, Some(later));
        Ok(())
    }
}
