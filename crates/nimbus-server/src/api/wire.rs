//! The services API's JSON bodies and query strings as serde types, shared by its handlers and the CLI.
//!
//! These are the boundary (docs/api.md): field names are the wire's, and the store's types
//! stay free of serde and are converted here.
//! Requests ignore fields they do not know, as the API always has, so newer clients keep
//! working against older servers.
//! Response fields are declared in the alphabetical order of their wire names: that is the
//! order the API wrote them in when it built `serde_json::Value`s (whose maps are sorted),
//! so the bytes stay the same.
//! Object and KV values travel as raw bytes with headers (`Content-Type`, `X-Nimbus-Metadata`),
//! not as JSON, and have no type here.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::services::bad_request;

mod streams;
mod tables;
mod telemetry;

pub use streams::*;
pub use tables::*;
pub use telemetry::*;

/// An error answer of the services API (and of the control port in general).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
    /// An AWS-style error type (`QueueDoesNotExist`, `AccessDenied`), when there is one.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
}

/// The answer of the calls that answer nothing: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

// Queues.

/// `GET /v1/queues`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueList {
    pub queues: Vec<QueueSummary>,
}

/// One queue with its approximate depths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueSummary {
    pub delayed: u64,
    pub in_flight: u64,
    pub name: String,
    /// `null` when the queue is empty.
    pub oldest_age_seconds: Option<f64>,
    pub visible: u64,
}

/// `POST /v1/queues/{queue}/messages`, and each entry of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, AttributeValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplication_id: Option<String>,
}

/// A message attribute as a client sends it: `"v"`, `3`, or
/// `{"dataType": "String", "value": "v"}` (the AWS SDKs' `DataType` / `StringValue` too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// A `String` attribute.
    Text(String),
    /// A `Number` attribute, written as the client wrote the number.
    Number(serde_json::Number),
    Typed(TypedAttribute),
    /// Any other JSON value: a `String` attribute holding its JSON text.
    Other(Value),
}

/// `{"dataType", "value"}`; the data type defaults to `String`, and a value that is not a
/// string is kept as its JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypedAttribute {
    #[serde(
        rename = "dataType",
        alias = "DataType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_type: Option<String>,
    #[serde(
        alias = "stringValue",
        alias = "StringValue",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<Value>,
}

/// What a send answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    pub md5_of_body: String,
    pub message_id: String,
    /// FIFO queues only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<String>,
}

/// `POST /v1/queues/{queue}/messages/batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendMessageBatch {
    pub entries: Vec<BatchEntry>,
}

/// One message of a batch, named by an id unique in the batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchEntry {
    /// A missing id is the empty one, which the API refuses by name (`entries[2].id ...`).
    #[serde(default)]
    pub id: String,
    #[serde(flatten)]
    pub message: SendMessage,
}

/// What a batch send answers: the entries sent and those that failed, by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchResult {
    pub failed: Vec<BatchFailure>,
    pub successful: Vec<BatchSuccess>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSuccess {
    pub id: String,
    #[serde(flatten)]
    pub sent: SentMessage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchFailure {
    /// The error type, as a whole request's error would carry it.
    pub code: String,
    pub id: String,
    pub message: String,
    pub sender_fault: bool,
}

/// `POST /v1/queues/{queue}/receive`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiveMessages {
    /// 1 to 10; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u64>,
    /// Seconds; the queue's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility_timeout: Option<f64>,
}

/// What a receive answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedMessages {
    pub messages: Vec<ReceivedMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedMessage {
    /// The message's attributes, without nimbus's own (`nimbus.*`).
    pub attributes: BTreeMap<String, Attribute>,
    pub body: String,
    /// `null` on standard queues.
    pub group_id: Option<String>,
    pub md5_of_body: String,
    pub message_id: String,
    pub receipt_handle: String,
    pub receive_count: u32,
    /// Milliseconds since the Unix epoch.
    pub sent_timestamp: u64,
    /// `null` on standard queues.
    pub sequence_number: Option<String>,
}

/// A message attribute as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    pub data_type: String,
    pub value: String,
}

/// `POST /v1/queues/{queue}/delete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteMessage {
    pub receipt_handle: String,
}

/// `POST /v1/queues/{queue}/visibility`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeVisibility {
    pub receipt_handle: String,
    /// Seconds, 0 to 43200.
    pub visibility_timeout: f64,
}

/// What a purge answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Purged {
    pub purged: u64,
}

/// The answer to `POST /v1/queues/{queue}/redrive`: how many messages went back to
/// which queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Redriven {
    pub moved: u64,
    pub source_queue: String,
}

// Topics.

/// `POST /v1/topics/{topic}/publish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publish {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, AttributeValue>>,
}

/// What a publish answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    pub message_id: String,
}

// Buckets.

/// What `PUT /v1/buckets/{bucket}/objects/{key}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectWritten {
    #[serde(rename = "eTag")]
    pub etag: String,
    pub key: String,
    pub size: u64,
}

/// The query of `GET /v1/buckets/{bucket}/objects`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListObjects {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_after: Option<String>,
    /// 1 to 1000; 1000 when absent.
    #[serde(
        default,
        deserialize_with = "from_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_keys: Option<usize>,
}

/// What a list of objects answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectList {
    pub is_truncated: bool,
    /// The `startAfter` of the next page, when this one is truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start_after: Option<String>,
    pub objects: Vec<ObjectSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSummary {
    #[serde(rename = "eTag")]
    pub etag: String,
    pub key: String,
    /// RFC 3339 with milliseconds, in UTC.
    pub last_modified: String,
    pub size: u64,
}

// KV namespaces.

/// The query of `PUT /v1/kv/{namespace}/keys/{key}`; `expirationTtl` wins over `expiration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvPut {
    /// Seconds from now.
    #[serde(
        default,
        deserialize_with = "from_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration_ttl: Option<f64>,
    /// Seconds since the Unix epoch.
    #[serde(
        default,
        deserialize_with = "from_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration: Option<u64>,
}

/// The query of `GET /v1/kv/{namespace}/keys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// 1 to 1000; 1000 when absent.
    #[serde(
        default,
        deserialize_with = "from_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit: Option<usize>,
}

/// What a list of keys answers (Workers KV's shape, hence `list_complete`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyList {
    /// The cursor of the next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    pub keys: Vec<KeySummary>,
    pub list_complete: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeySummary {
    /// Seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<u64>,
    /// The metadata JSON the key was put with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    pub name: String,
}

/// A query struct as the query of a URL, `?a=1&b=x+y`, leaving out absent fields; nothing
/// when every field is absent.
pub fn url_query<T: Serialize>(query: &T) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    if let Ok(Value::Object(fields)) = serde_json::to_value(query) {
        for (name, value) in fields {
            match value {
                Value::Null => {}
                Value::String(text) => {
                    out.append_pair(&name, &text);
                }
                other => {
                    out.append_pair(&name, &other.to_string());
                }
            }
        }
    }
    match out.finish() {
        text if text.is_empty() => text,
        text => format!("?{text}"),
    }
}

// Conversions from and to the store's types.

impl From<(String, nimbus_store::QueueStats)> for QueueSummary {
    fn from((name, stats): (String, nimbus_store::QueueStats)) -> QueueSummary {
        QueueSummary {
            delayed: stats.delayed,
            in_flight: stats.in_flight,
            name,
            oldest_age_seconds: stats.oldest_age.map(|age| age.as_secs_f64()),
            visible: stats.visible,
        }
    }
}

impl From<nimbus_store::SentMessage> for SentMessage {
    fn from(sent: nimbus_store::SentMessage) -> SentMessage {
        SentMessage {
            md5_of_body: sent.md5_of_body,
            message_id: sent.message_id,
            sequence_number: sent.sequence_number,
        }
    }
}

impl From<nimbus_store::ReceivedMessage> for ReceivedMessage {
    fn from(message: nimbus_store::ReceivedMessage) -> ReceivedMessage {
        ReceivedMessage {
            attributes: message
                .attributes
                .into_iter()
                .filter(|(name, _)| !name.starts_with("nimbus."))
                .map(|(name, attribute)| {
                    (
                        name,
                        Attribute {
                            data_type: attribute.data_type,
                            value: attribute.value,
                        },
                    )
                })
                .collect(),
            body: message.body,
            group_id: message.group_id,
            md5_of_body: message.md5_of_body,
            message_id: message.message_id,
            receipt_handle: message.receipt_handle,
            receive_count: message.receive_count,
            sent_timestamp: message
                .sent_at
                .duration_since(UNIX_EPOCH)
                .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            sequence_number: message.sequence_number,
        }
    }
}

impl From<&nimbus_store::ObjectMeta> for ObjectWritten {
    fn from(meta: &nimbus_store::ObjectMeta) -> ObjectWritten {
        ObjectWritten {
            etag: meta.etag.clone(),
            key: meta.key.clone(),
            size: meta.size,
        }
    }
}

impl From<nimbus_store::ObjectMeta> for ObjectSummary {
    fn from(meta: nimbus_store::ObjectMeta) -> ObjectSummary {
        ObjectSummary {
            etag: meta.etag,
            key: meta.key,
            last_modified: nimbus_core::time::rfc3339_millis(meta.last_modified),
            size: meta.size,
        }
    }
}

impl From<nimbus_store::ObjectList> for ObjectList {
    fn from(list: nimbus_store::ObjectList) -> ObjectList {
        ObjectList {
            is_truncated: list.is_truncated,
            next_start_after: list.next_start_after,
            objects: list.objects.into_iter().map(ObjectSummary::from).collect(),
        }
    }
}

impl From<nimbus_core::kv::KvKeyInfo> for KeySummary {
    fn from(key: nimbus_core::kv::KvKeyInfo) -> KeySummary {
        KeySummary {
            expiration: key.expiration.map(|expiration| {
                expiration
                    .duration_since(UNIX_EPOCH)
                    .map(|since| since.as_secs())
                    .unwrap_or(0)
            }),
            // The store keeps the text the API checked to be JSON when it was put.
            metadata: key
                .metadata
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok()),
            name: key.name,
        }
    }
}

impl From<nimbus_core::kv::KvPage> for KeyList {
    fn from(list: nimbus_core::kv::KvPage) -> KeyList {
        KeyList {
            cursor: list.cursor,
            keys: list.keys.into_iter().map(KeySummary::from).collect(),
            list_complete: list.list_complete,
        }
    }
}

impl SendMessage {
    /// The message to store; refuses an attribute without a value.
    pub(crate) fn into_message(self) -> Result<nimbus_store::NewMessage, ApiError> {
        Ok(nimbus_store::NewMessage {
            body: self.body,
            delay: self.delay_seconds.map(Duration::from_secs),
            attributes: store_attributes(self.attributes)?,
            group_id: self.group_id,
            deduplication_id: self.deduplication_id,
        })
    }
}

impl Publish {
    /// What to publish; refuses an attribute without a value.
    pub(crate) fn into_publish(self) -> Result<crate::events::Publish, ApiError> {
        Ok(crate::events::Publish {
            message: self.message,
            protocol_messages: std::collections::BTreeMap::new(),
            group_id: None,
            deduplication_id: None,
            subject: self.subject,
            attributes: store_attributes(self.attributes)?,
        })
    }
}

/// The attributes to store; the operations refuse reserved names.
fn store_attributes(
    attributes: Option<BTreeMap<String, AttributeValue>>,
) -> Result<BTreeMap<String, nimbus_store::MessageAttribute>, ApiError> {
    let mut out = BTreeMap::new();
    for (name, attribute) in attributes.unwrap_or_default() {
        let (data_type, value) = match attribute {
            AttributeValue::Text(text) => ("String".to_owned(), text),
            AttributeValue::Number(number) => ("Number".to_owned(), number.to_string()),
            AttributeValue::Typed(TypedAttribute { data_type, value }) => {
                let value = match value {
                    Some(Value::String(text)) => text,
                    Some(other) => other.to_string(),
                    None => return Err(bad_request(format!("attribute {name:?} has no value"))),
                };
                (data_type.unwrap_or_else(|| "String".to_owned()), value)
            }
            AttributeValue::Other(other) => ("String".to_owned(), other.to_string()),
        };
        out.insert(name, nimbus_store::MessageAttribute { data_type, value });
    }
    Ok(out)
}

/// A field that is there, `null` included (which `Option<Value>` alone reads as absent).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// A number in a query string, where every value is text.
fn from_text<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    match Option::<String>::deserialize(deserializer)? {
        Some(text) => match text.parse() {
            Ok(number) => Ok(Some(number)),
            Err(e) => Err(serde::de::Error::custom(format!(
                "{text:?} is not a valid number ({e})"
            ))),
        },
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;
    use std::time::{Duration, UNIX_EPOCH};

    use expect_test::{Expect, expect};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::*;

    /// Reads a request as the API does, and checks what a client writing the same type sends.
    fn check_request<T>(json: &str, expect: Expect)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let request: T = serde_json::from_str(json).expect("the documented request parses");
        let text = serde_json::to_string(&request).expect("serializes");
        expect.assert_eq(&text);
        let again: T = serde_json::from_str(&text).expect("what a client sends parses");
        assert_eq!(again, request);
    }

    /// Writes an answer as the API does, and checks that a client reads it back whole.
    fn check_answer<T>(answer: T, expect: Expect)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let text = serde_json::to_string(&answer).expect("serializes");
        expect.assert_eq(&text);
        // The API used to build its answers as `serde_json::Value`s, whose keys are sorted:
        // the same bytes prove that the fields are declared in that order.
        let value: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value.to_string(), text, "fields out of alphabetical order");
        let again: T = serde_json::from_str(&text).expect("a client reads it");
        assert_eq!(again, answer);
    }

    /// Reads a query as the API does.
    fn check_query<T>(query: &T, expect: Expect)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let text = url_query(query);
        expect.assert_eq(&text);
        let uri: http::Uri = format!("/x{text}").parse().expect("a URI");
        let again: T = crate::api::parse_query(&uri).expect("the API reads it");
        assert_eq!(&again, query);
    }

    fn attributes(json: &str) -> String {
        let attributes: BTreeMap<String, AttributeValue> =
            serde_json::from_str(json).expect("attributes parse");
        match store_attributes(Some(attributes)) {
            Ok(attributes) => attributes
                .iter()
                .map(|(name, a)| format!("{name}: {} {:?}\n", a.data_type, a.value))
                .collect(),
            Err(e) => format!("error: {}", e.message),
        }
    }

    #[test]
    fn queue_requests_read_as_documented() {
        check_request::<SendMessage>(
            r#"{"body": "hello", "delaySeconds": 5, "attributes": {"k": {"dataType": "String", "value": "v"}}, "groupId": "g", "deduplicationId": "d"}"#,
            expect![[
                r#"{"body":"hello","delaySeconds":5,"attributes":{"k":{"dataType":"String","value":"v"}},"groupId":"g","deduplicationId":"d"}"#
            ]],
        );
        check_request::<SendMessage>(
            r#"{"body": "hello", "groupId": null, "unknown": 1}"#,
            expect![[r#"{"body":"hello"}"#]],
        );
        check_request::<SendMessageBatch>(
            r#"{"entries": [{"id": "a", "body": "one"}, {"id": "b", "body": "two", "delaySeconds": 1}]}"#,
            expect![[
                r#"{"entries":[{"id":"a","body":"one"},{"id":"b","body":"two","delaySeconds":1}]}"#
            ]],
        );
        check_request::<ReceiveMessages>(
            r#"{"maxMessages": 10, "visibilityTimeout": 30}"#,
            expect![[r#"{"maxMessages":10,"visibilityTimeout":30.0}"#]],
        );
        check_request::<ReceiveMessages>("{}", expect!["{}"]);
        check_request::<DeleteMessage>(
            r#"{"receiptHandle": "rh"}"#,
            expect![[r#"{"receiptHandle":"rh"}"#]],
        );
        check_request::<ChangeVisibility>(
            r#"{"receiptHandle": "rh", "visibilityTimeout": 0.5}"#,
            expect![[r#"{"receiptHandle":"rh","visibilityTimeout":0.5}"#]],
        );
    }

    #[test]
    fn a_batch_entry_without_an_id_has_the_empty_one() {
        let batch: SendMessageBatch =
            serde_json::from_str(r#"{"entries": [{"body": "x"}]}"#).expect("parses");
        assert_eq!(batch.entries[0].id, "");
    }

    #[test]
    fn attributes_read_in_every_shape_clients_send() {
        expect![[r#"
            aws: Number "7"
            flag: String "true"
            n: Number "3"
            nul: String "null"
            plain: String "v"
            typed: String.Array "[\"a\"]"
            untyped: String "w"
            valueless_number: Number "4"
        "#]]
        .assert_eq(&attributes(
            r#"{
                "plain": "v",
                "n": 3,
                "flag": true,
                "typed": {"dataType": "String.Array", "value": "[\"a\"]"},
                "untyped": {"value": "w"},
                "aws": {"DataType": "Number", "StringValue": "7"},
                "valueless_number": {"dataType": "Number", "value": 4},
                "nul": {"dataType": "String", "value": null}
            }"#,
        ));
        expect![[r#"error: attribute "k" has no value"#]]
            .assert_eq(&attributes(r#"{"k": {"dataType": "String"}}"#));
    }

    #[test]
    fn queue_answers_keep_their_shape() {
        check_answer(
            QueueList {
                queues: vec![QueueSummary::from((
                    "jobs".to_owned(),
                    nimbus_store::QueueStats {
                        visible: 2,
                        in_flight: 1,
                        delayed: 0,
                        oldest_age: Some(Duration::from_millis(1500)),
                    },
                ))],
            },
            expect![[
                r#"{"queues":[{"delayed":0,"inFlight":1,"name":"jobs","oldestAgeSeconds":1.5,"visible":2}]}"#
            ]],
        );
        check_answer(
            QueueSummary::from((
                "empty".to_owned(),
                nimbus_store::QueueStats {
                    visible: 0,
                    in_flight: 0,
                    delayed: 0,
                    oldest_age: None,
                },
            )),
            expect![[
                r#"{"delayed":0,"inFlight":0,"name":"empty","oldestAgeSeconds":null,"visible":0}"#
            ]],
        );
        let sent = nimbus_store::SentMessage {
            message_id: "m-1".to_owned(),
            md5_of_body: "5d41402abc4b2a76b9719d911017c592".to_owned(),
            md5_of_message_attributes: None,
            sequence_number: None,
            duplicate: false,
        };
        check_answer(
            SentMessage::from(sent.clone()),
            expect![[r#"{"md5OfBody":"5d41402abc4b2a76b9719d911017c592","messageId":"m-1"}"#]],
        );
        check_answer(
            BatchResult {
                failed: vec![BatchFailure {
                    code: "MessageTooLong".to_owned(),
                    id: "b".to_owned(),
                    message: "too long".to_owned(),
                    sender_fault: true,
                }],
                successful: vec![BatchSuccess {
                    id: "a".to_owned(),
                    sent: SentMessage::from(nimbus_store::SentMessage {
                        sequence_number: Some("1".to_owned()),
                        ..sent
                    }),
                }],
            },
            expect![[
                r#"{"failed":[{"code":"MessageTooLong","id":"b","message":"too long","senderFault":true}],"successful":[{"id":"a","md5OfBody":"5d41402abc4b2a76b9719d911017c592","messageId":"m-1","sequenceNumber":"1"}]}"#
            ]],
        );
        let attribute = |data_type: &str, value: &str| nimbus_store::MessageAttribute {
            data_type: data_type.to_owned(),
            value: value.to_owned(),
        };
        check_answer(
            ReceivedMessages {
                messages: vec![ReceivedMessage::from(nimbus_store::ReceivedMessage {
                    message_id: "m-1".to_owned(),
                    receipt_handle: "rh".to_owned(),
                    body: "hello".to_owned(),
                    attributes: BTreeMap::from([
                        ("k".to_owned(), attribute("String", "v")),
                        ("nimbus.trace".to_owned(), attribute("String", "hidden")),
                    ]),
                    md5_of_body: "5d41402abc4b2a76b9719d911017c592".to_owned(),
                    md5_of_message_attributes: None,
                    receive_count: 1,
                    sent_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
                    first_received_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_456),
                    group_id: None,
                    sequence_number: None,
                    deduplication_id: None,
                })],
            },
            expect![[
                r#"{"messages":[{"attributes":{"k":{"dataType":"String","value":"v"}},"body":"hello","groupId":null,"md5OfBody":"5d41402abc4b2a76b9719d911017c592","messageId":"m-1","receiptHandle":"rh","receiveCount":1,"sentTimestamp":1700000000123,"sequenceNumber":null}]}"#
            ]],
        );
        check_answer(Purged { purged: 3 }, expect![[r#"{"purged":3}"#]]);
        check_answer(Empty {}, expect!["{}"]);
    }

    #[test]
    fn topic_publish_reads_as_documented() {
        check_request::<Publish>(
            r#"{"message": "hi", "subject": "greeting", "attributes": {"k": {"dataType": "String", "value": "v"}}}"#,
            expect![[
                r#"{"message":"hi","subject":"greeting","attributes":{"k":{"dataType":"String","value":"v"}}}"#
            ]],
        );
        check_answer(
            Published {
                message_id: "m-1".to_owned(),
            },
            expect![[r#"{"messageId":"m-1"}"#]],
        );
    }

    #[test]
    fn bucket_answers_and_queries_keep_their_shape() {
        let meta = nimbus_store::ObjectMeta {
            bucket: "uploads".to_owned(),
            key: "a/b.txt".to_owned(),
            size: 5,
            etag: "5d41402abc4b2a76b9719d911017c592".to_owned(),
            content_type: Some("text/plain".to_owned()),
            last_modified: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            sequencer: "0000000000000001".to_owned(),
            metadata: None,
        };
        check_answer(
            ObjectWritten::from(&meta),
            expect![[r#"{"eTag":"5d41402abc4b2a76b9719d911017c592","key":"a/b.txt","size":5}"#]],
        );
        check_answer(
            ObjectList::from(nimbus_store::ObjectList {
                objects: vec![meta],
                is_truncated: true,
                next_start_after: Some("a/b.txt".to_owned()),
            }),
            expect![[
                r#"{"isTruncated":true,"nextStartAfter":"a/b.txt","objects":[{"eTag":"5d41402abc4b2a76b9719d911017c592","key":"a/b.txt","lastModified":"2023-11-14T22:13:20.123Z","size":5}]}"#
            ]],
        );
        check_query(
            &ListObjects {
                prefix: Some("a b/".to_owned()),
                start_after: Some("a b/c".to_owned()),
                max_keys: Some(10),
            },
            expect!["?maxKeys=10&prefix=a+b%2F&startAfter=a+b%2Fc"],
        );
        check_query(&ListObjects::default(), expect![""]);
    }

    #[test]
    fn kv_answers_and_queries_keep_their_shape() {
        check_answer(
            KeyList::from(nimbus_core::kv::KvPage {
                keys: vec![
                    nimbus_core::kv::KvKeyInfo {
                        name: "a".to_owned(),
                        expiration: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
                        metadata: Some(r#"{"v":1}"#.to_owned()),
                    },
                    nimbus_core::kv::KvKeyInfo {
                        name: "b".to_owned(),
                        expiration: None,
                        metadata: None,
                    },
                ],
                list_complete: false,
                cursor: Some("b".to_owned()),
            }),
            expect![[
                r#"{"cursor":"b","keys":[{"expiration":1700000000,"metadata":{"v":1},"name":"a"},{"name":"b"}],"list_complete":false}"#
            ]],
        );
        check_query(
            &ListKeys {
                prefix: Some("user:".to_owned()),
                cursor: Some("c".to_owned()),
                limit: Some(2),
            },
            expect!["?cursor=c&limit=2&prefix=user%3A"],
        );
        check_query(
            &KvPut {
                expiration_ttl: Some(60.0),
                expiration: Some(1_700_000_000),
            },
            expect!["?expiration=1700000000&expirationTtl=60.0"],
        );
        let uri: http::Uri = "/x?limit=many".parse().expect("a URI");
        let res = crate::api::parse_query::<ListKeys>(&uri).map_err(|e| e.message);
        expect![[r#"Err("invalid query string: \"many\" is not a valid number (invalid digit found in string)")"#]]
            .assert_eq(&format!("{res:?}"));
    }

    #[test]
    fn errors_read_as_the_api_writes_them() {
        check_request::<ErrorBody>(
            r#"{"message": "no queue `jobs`", "type": "QueueDoesNotExist"}"#,
            expect![[r#"{"message":"no queue `jobs`","type":"QueueDoesNotExist"}"#]],
        );
        check_request::<ErrorBody>(
            r#"{"message": "missing or wrong bearer token"}"#,
            expect![[r#"{"message":"missing or wrong bearer token"}"#]],
        );
    }
}
