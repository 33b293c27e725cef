//! When each schedule last fired (before its first fire: when a server first ran it), committed
//! together with the invocations it enqueued.
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

    /// Where schedule `name`'s slots count from: its last fire, or, for a schedule that
    /// never fired, when the first server started it (recorded now as `started_at` if no
    /// one did before). Servers sharing the store (the versions of a canary) so agree on
    /// the slots of a `rate(...)` schedule, however far apart they start.
    pub fn schedule_anchor(
        &self,
        name: &str,
        started_at: SystemTime,
    ) -> Result<SystemTime, StoreError> {
        self.write("a schedule", |tx| {
            tx.prepare_cached(
                "INSERT INTO schedules (name, last_fired_us) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            )
            .and_then(|mut stmt| stmt.execute(params![name, unix_us(started_at)]))
            .map_err(write_err("a schedule"))?;
            tx.prepare_cached("SELECT last_fired_us FROM schedules WHERE name = ?1")
                .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)))
                .map(time)
                .map_err(write_err("a schedule"))
        })
    }

    /// Claims the slot of schedule `name` due at `slot`: when nobody has fired it yet
    /// (the recorded last fire is before `slot`), records `fired_at` and enqueues `sends`
    /// in the same commit. Several servers on one store (the versions of a canary) may race
    /// for a slot; exactly one fires it, and the others learn when it fired.
    pub fn fire_schedule(
        &self,
        name: &str,
        slot: SystemTime,
        fired_at: SystemTime,
        sends: Vec<(String, NewMessage)>,
    ) -> Result<ScheduleFire, StoreError> {
        self.write("a schedule", |tx| {
            let n_claimed = tx
                .prepare_cached(
                    "INSERT INTO schedules (name, last_fired_us) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET last_fired_us = excluded.last_fired_us
                     WHERE schedules.last_fired_us < ?3",
                )
                .and_then(|mut stmt| stmt.execute(params![name, unix_us(fired_at), unix_us(slot)]))
                .map_err(write_err("a schedule"))?;
            if n_claimed == 0 {
                let last_fired_us: i64 = tx
                    .prepare_cached("SELECT last_fired_us FROM schedules WHERE name = ?1")
                    .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)))
                    .map_err(write_err("a schedule"))?;
                return Ok(ScheduleFire::AlreadyFired(time(last_fired_us)));
            }
            queues::insert_messages(tx, sends, now_us())?;
            Ok(ScheduleFire::Fired)
        })
    }
}

/// What [`Store::fire_schedule`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleFire {
    /// This call fired the slot.
    Fired,
    /// Another server sharing the store fired it already, at this time.
    AlreadyFired(SystemTime),
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use nimbus_core::events::QueueSpec;

    use super::ScheduleFire;
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
                fired_at,
                vec![("invocations".to_owned(), NewMessage::new("{}"))],
            )?;
            // A fire whose message cannot be enqueued records nothing.
            let err = store
                .fire_schedule(
                    "nightly",
                    fired_at + Duration::from_secs(60),
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
        store.fire_schedule("nightly", later, later, vec![])?;
        assert_eq!(store.schedule_last_fired("nightly")?, Some(later));
        Ok(())
    }

    /// Two servers on one store (the versions of a canary) wake for the same slot: one
    /// fires it, the other is told when it fired and enqueues nothing.
    #[test]
    fn a_slot_is_fired_once_by_whichever_server_claims_it_first() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        store.ensure_queue(&QueueSpec::with_defaults("invocations"))?;
        let slot = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let send = || vec![("invocations".to_owned(), NewMessage::new("{}"))];
        let first = slot + Duration::from_millis(3);
        assert_eq!(
            store.fire_schedule("nightly", slot, first, send())?,
            ScheduleFire::Fired
        );
        // The other server fires late (it started after a missed slot): still the same slot.
        let second = store.fire_schedule("nightly", slot, slot + Duration::from_secs(5), send())?;
        assert_eq!(second, ScheduleFire::AlreadyFired(first));
        assert_eq!(store.queue_stats("invocations")?.visible, 1);
        assert_eq!(store.schedule_last_fired("nightly")?, Some(first));
        // The next slot is free again.
        let next = slot + Duration::from_secs(60);
        assert_eq!(
            store.fire_schedule("nightly", next, next, send())?,
            ScheduleFire::Fired
        );
        assert_eq!(store.queue_stats("invocations")?.visible, 2);
        Ok(())
    }

    /// A `rate(...)` schedule counts its slots from the first server's start, so a second
    /// server starting later computes the same slots; after a fire, from the fire.
    #[test]
    fn the_anchor_is_the_first_start_then_the_last_fire() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let first = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(store.schedule_anchor("every-minute", first)?, first);
        let later = first + Duration::from_secs(20);
        assert_eq!(store.schedule_anchor("every-minute", later)?, first);
        let fired = first + Duration::from_secs(60);
        store.fire_schedule("every-minute", fired, fired, Vec::new())?;
        assert_eq!(store.schedule_anchor("every-minute", later)?, fired);
        Ok(())
    }
}
