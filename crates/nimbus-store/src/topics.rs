//! Topics and subscriptions made at run time (SNS's CreateTopic and Subscribe through the AWS
//! endpoint), beside those the manifest declares, which live in the app's model and not here.
//! A restart keeps them, as SNS does.

use rusqlite::{OptionalExtension, params};

use crate::durable::{now_us, read_err, write_err};
use crate::{Store, StoreError};

/// Schema version 5: run-time topics and subscriptions.
pub(crate) const SCHEMA_V5: &str = "
CREATE TABLE topics (
    name TEXT PRIMARY KEY,
    created_us INTEGER NOT NULL
) WITHOUT ROWID;

-- `protocol` is `sqs` (target: a queue name) or `lambda` (target: a function name).
-- `filter_scope` is `MessageAttributes` or `MessageBody`.
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    protocol TEXT NOT NULL,
    target TEXT NOT NULL,
    filter_policy TEXT,
    filter_scope TEXT NOT NULL,
    raw_message_delivery INTEGER NOT NULL,
    created_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX subscriptions_topic ON subscriptions (topic, created_us);
";

/// A subscription made at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSubscription {
    /// Its id, the last part of its ARN.
    pub id: String,
    /// The topic.
    pub topic: String,
    /// `sqs` or `lambda`.
    pub protocol: String,
    /// The queue or function name.
    pub target: String,
    /// The SNS filter policy (JSON text).
    pub filter_policy: Option<String>,
    /// `MessageAttributes` or `MessageBody`.
    pub filter_scope: String,
    /// Deliver the message alone instead of the SNS envelope (queues only).
    pub raw_message_delivery: bool,
}

impl Store {
    /// Creates a topic; `false` when it existed already.
    pub fn create_topic(&self, name: &str) -> Result<bool, StoreError> {
        self.write("a topic", |tx| {
            tx.prepare_cached(
                "INSERT INTO topics (name, created_us) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            )
            .and_then(|mut stmt| stmt.execute(params![name, now_us()]))
            .map(|n_inserted| n_inserted == 1)
            .map_err(write_err("a topic"))
        })
    }

    /// The topics made at run time, sorted.
    pub fn list_topics(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name FROM topics ORDER BY name")
                .map_err(read_err("topics"))?;
            let rows = stmt
                .query_map([], |row| row.get(0))
                .map_err(read_err("topics"))?;
            rows.collect::<Result<Vec<String>, _>>()
                .map_err(read_err("topics"))
        })
    }

    /// Whether a topic was made at run time.
    pub fn topic_exists(&self, name: &str) -> Result<bool, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT 1 FROM topics WHERE name = ?1")
                .and_then(|mut stmt| stmt.query_row([name], |_| Ok(())).optional())
                .map(|found| found.is_some())
                .map_err(read_err("topics"))
        })
    }

    /// Deletes a run-time topic and its subscriptions; `false` when there was none.
    pub fn delete_topic(&self, name: &str) -> Result<bool, StoreError> {
        self.write("a topic", |tx| {
            tx.prepare_cached("DELETE FROM subscriptions WHERE topic = ?1")
                .and_then(|mut stmt| stmt.execute([name]))
                .map_err(write_err("a topic"))?;
            tx.prepare_cached("DELETE FROM topics WHERE name = ?1")
                .and_then(|mut stmt| stmt.execute([name]))
                .map(|n_deleted| n_deleted == 1)
                .map_err(write_err("a topic"))
        })
    }

    /// Adds a subscription; when the topic already has one of the same protocol and target,
    /// answers that one's id instead (SNS's Subscribe is idempotent).
    pub fn subscribe(&self, subscription: &TopicSubscription) -> Result<String, StoreError> {
        self.write("a subscription", |tx| {
            let existing: Option<String> = tx
                .prepare_cached(
                    "SELECT id FROM subscriptions WHERE topic = ?1 AND protocol = ?2 AND target = ?3",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(
                        params![subscription.topic, subscription.protocol, subscription.target],
                        |row| row.get(0),
                    )
                    .optional()
                })
                .map_err(write_err("a subscription"))?;
            if let Some(id) = existing {
                return Ok(id);
            }
            tx.prepare_cached(
                "INSERT INTO subscriptions (id, topic, protocol, target, filter_policy,
                     filter_scope, raw_message_delivery, created_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    subscription.id,
                    subscription.topic,
                    subscription.protocol,
                    subscription.target,
                    subscription.filter_policy,
                    subscription.filter_scope,
                    subscription.raw_message_delivery,
                    now_us(),
                ])
            })
            .map_err(write_err("a subscription"))?;
            Ok(subscription.id.clone())
        })
    }

    /// Removes a subscription; `false` when there was none.
    pub fn unsubscribe(&self, id: &str) -> Result<bool, StoreError> {
        self.write("a subscription", |tx| {
            tx.prepare_cached("DELETE FROM subscriptions WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([id]))
                .map(|n_deleted| n_deleted == 1)
                .map_err(write_err("a subscription"))
        })
    }

    /// Replaces a subscription's filter policy, scope and raw delivery.
    pub fn update_subscription(&self, subscription: &TopicSubscription) -> Result<(), StoreError> {
        self.write("a subscription", |tx| {
            tx.prepare_cached(
                "UPDATE subscriptions SET filter_policy = ?2, filter_scope = ?3,
                     raw_message_delivery = ?4 WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    subscription.id,
                    subscription.filter_policy,
                    subscription.filter_scope,
                    subscription.raw_message_delivery,
                ])
            })
            .map_err(write_err("a subscription"))?;
            Ok(())
        })
    }

    /// The run-time subscriptions of `topic` (of every topic for `None`), oldest first.
    pub fn subscriptions(&self, topic: Option<&str>) -> Result<Vec<TopicSubscription>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, topic, protocol, target, filter_policy, filter_scope,
                         raw_message_delivery
                     FROM subscriptions WHERE ?1 IS NULL OR topic = ?1
                     ORDER BY topic, created_us",
                )
                .map_err(read_err("subscriptions"))?;
            let rows = stmt
                .query_map([topic], |row| {
                    Ok(TopicSubscription {
                        id: row.get(0)?,
                        topic: row.get(1)?,
                        protocol: row.get(2)?,
                        target: row.get(3)?,
                        filter_policy: row.get(4)?,
                        filter_scope: row.get(5)?,
                        raw_message_delivery: row.get(6)?,
                    })
                })
                .map_err(read_err("subscriptions"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(read_err("subscriptions"))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    use super::TopicSubscription;

    fn subscription(id: &str, target: &str) -> TopicSubscription {
        TopicSubscription {
            id: id.to_owned(),
            topic: "alerts".to_owned(),
            protocol: "sqs".to_owned(),
            target: target.to_owned(),
            filter_policy: None,
            filter_scope: "MessageAttributes".to_owned(),
            raw_message_delivery: false,
        }
    }

    #[test]
    fn topics_and_subscriptions_survive_a_reopen_and_subscribe_is_idempotent() {
        let dir = tempfile::tempdir().expect("a temp dir");
        {
            let store = Store::open(dir.path()).expect("opening");
            assert!(store.create_topic("alerts").expect("created"));
            assert!(!store.create_topic("alerts").expect("created again"));
            assert_eq!(
                store
                    .subscribe(&subscription("s1", "q"))
                    .expect("subscribed"),
                "s1"
            );
            // The same target again is the same subscription.
            assert_eq!(
                store
                    .subscribe(&subscription("s2", "q"))
                    .expect("subscribed"),
                "s1"
            );
            assert_eq!(
                store
                    .subscribe(&subscription("s3", "r"))
                    .expect("subscribed"),
                "s3"
            );
        }
        let store = Store::open(dir.path()).expect("reopening");
        assert_eq!(store.list_topics().expect("listed"), vec!["alerts"]);
        let ids: Vec<String> = store
            .subscriptions(Some("alerts"))
            .expect("listed")
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, vec!["s1", "s3"]);
        assert!(store.unsubscribe("s1").expect("unsubscribed"));
        assert!(!store.unsubscribe("s1").expect("unsubscribed twice"));
        assert!(store.delete_topic("alerts").expect("deleted"));
        assert!(store.subscriptions(None).expect("listed").is_empty());
        assert!(!store.topic_exists("alerts").expect("looked up"));
    }
}
