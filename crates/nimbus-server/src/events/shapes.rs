//! The event JSON AWS sends for each source, field for field: SQS records, SNS
//! notifications, S3 records, EventBridge scheduled events and Lambda destination records.

use std::time::{SystemTime, UNIX_EPOCH};

use nimbus_core::time::rfc3339_millis;
use nimbus_store::ReceivedMessage;
use serde_json::{Value, json};

use super::{Publish, TRACE_ATTRIBUTE};

const ACCOUNT: &str = "123456789012";

/// One record of an SQS event (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html).
pub(crate) fn sqs_record(message: &ReceivedMessage, queue: &str, region: &str) -> Value {
    let mut attributes = serde_json::Map::new();
    let mut text = |key: &str, value: String| {
        attributes.insert(key.to_owned(), Value::String(value));
    };
    text("ApproximateReceiveCount", message.receive_count.to_string());
    text("SentTimestamp", millis(message.sent_at).to_string());
    text("SenderId", ACCOUNT.to_owned());
    text(
        "ApproximateFirstReceiveTimestamp",
        millis(message.first_received_at).to_string(),
    );
    if let Some(sequence) = &message.sequence_number {
        text("SequenceNumber", sequence.clone());
    }
    if let Some(group) = &message.group_id {
        text("MessageGroupId", group.clone());
    }
    if let Some(dedup) = &message.deduplication_id {
        text("MessageDeduplicationId", dedup.clone());
    }
    let mut message_attributes = serde_json::Map::new();
    for (name, attribute) in &message.attributes {
        if name == TRACE_ATTRIBUTE {
            // SQS reports the trace header as a system attribute, not a message attribute.
            text_into(&mut attributes, TRACE_ATTRIBUTE, &attribute.value);
            continue;
        }
        if name.starts_with("nimbus.") {
            continue;
        }
        let value = if attribute.data_type.starts_with("Binary") {
            json!({ "binaryValue": attribute.value, "stringListValues": [], "binaryListValues": [], "dataType": attribute.data_type })
        } else {
            json!({ "stringValue": attribute.value, "stringListValues": [], "binaryListValues": [], "dataType": attribute.data_type })
        };
        message_attributes.insert(name.clone(), value);
    }
    json!({
        "messageId": message.message_id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body,
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:{region}:{ACCOUNT}:{queue}"),
        "awsRegion": region,
    })
}

fn text_into(map: &mut serde_json::Map<String, Value>, key: &str, value: &str) {
    map.insert(key.to_owned(), Value::String(value.to_owned()));
}

/// The SNS notification as an HTTP or queue subscriber receives it.
pub(crate) fn sns_envelope(message_id: &str, topic_arn: &str, publish: &Publish) -> Value {
    let attributes: serde_json::Map<String, Value> = publish
        .attributes
        .iter()
        .map(|(k, a)| (k.clone(), json!({ "Type": a.data_type, "Value": a.value })))
        .collect();
    let mut envelope = json!({
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": topic_arn,
        "Message": publish.message,
        "Timestamp": rfc3339_millis(SystemTime::now()),
        "SignatureVersion": "1",
        "Signature": "",
        "SigningCertURL": "",
        "UnsubscribeURL": "",
        "MessageAttributes": attributes,
    });
    if let Some(subject) = &publish.subject {
        envelope["Subject"] = Value::String(subject.clone());
    }
    envelope
}

/// The event a function subscribed to a topic receives
/// (https://docs.aws.amazon.com/lambda/latest/dg/with-sns.html).
pub(crate) fn sns_event(envelope: &Value, subscription_arn: &str) -> Value {
    let mut sns = envelope.clone();
    // The Lambda event names these fields slightly differently than the HTTP envelope.
    if let Some(object) = sns.as_object_mut() {
        if let Some(url) = object.remove("SigningCertURL") {
            object.insert("SigningCertUrl".to_owned(), url);
        }
        if let Some(url) = object.remove("UnsubscribeURL") {
            object.insert("UnsubscribeUrl".to_owned(), url);
        }
        object.entry("Subject").or_insert(Value::Null);
    }
    json!({
        "Records": [{
            "EventVersion": "1.0",
            "EventSubscriptionArn": subscription_arn,
            "EventSource": "aws:sns",
            "Sns": sns,
        }]
    })
}

/// An S3 notification event (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html).
pub(crate) fn s3_event(
    region: &str,
    bucket: &str,
    key: &str,
    event_name: &str,
    object: Option<(u64, &str)>,
    sequencer: &str,
) -> Value {
    // S3 URL-encodes keys in events, with `+` for spaces.
    let encoded_key: String =
        percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .replace("%2F", "/")
            .replace("%2D", "-")
            .replace("%2E", ".")
            .replace("%5F", "_")
            .replace("%20", "+");
    let mut s3_object = json!({ "key": encoded_key, "sequencer": sequencer });
    if let Some((size, etag)) = object {
        s3_object["size"] = json!(size);
        s3_object["eTag"] = json!(etag);
    }
    let request_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": region,
            "eventTime": rfc3339_millis(SystemTime::now()),
            "eventName": event_name,
            "userIdentity": { "principalId": "nimbus" },
            "requestParameters": { "sourceIPAddress": "127.0.0.1" },
            "responseElements": { "x-amz-request-id": &request_id[..16], "x-amz-id-2": request_id },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "nimbus",
                "bucket": {
                    "name": bucket,
                    "ownerIdentity": { "principalId": "nimbus" },
                    "arn": format!("arn:aws:s3:::{bucket}"),
                },
                "object": s3_object,
            },
        }]
    })
}

/// EventBridge's scheduled event (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-run-lambda-schedule.html).
pub(crate) fn scheduled_event(region: &str, rule: &str, time: SystemTime) -> Value {
    let time = rfc3339_millis(time);
    // Scheduled events carry whole seconds: `2015-10-08T16:53:06Z`.
    let time = format!("{}Z", &time[..19]);
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": time,
        "region": region,
        "resources": [format!("arn:aws:events:{region}:{ACCOUNT}:rule/{rule}")],
        "detail": {},
    })
}

/// What an asynchronous invocation ended with, for its destination.
pub(crate) struct DestinationRecord<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) function_arn: &'a str,
    pub(crate) condition: &'a str,
    pub(crate) approximate_invoke_count: u32,
    pub(crate) request_payload: &'a str,
    pub(crate) function_error: bool,
    pub(crate) response_payload: Option<&'a [u8]>,
}

/// Lambda's invocation record for `onSuccess`/`onFailure` destinations
/// (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html).
pub(crate) fn destination_record(record: &DestinationRecord<'_>) -> Value {
    let parse = |bytes: &[u8]| {
        serde_json::from_slice::<Value>(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    };
    let mut response_context = json!({ "statusCode": 200, "executedVersion": "$LATEST" });
    if record.function_error {
        response_context["functionError"] = json!("Unhandled");
    }
    let mut value = json!({
        "version": "1.0",
        "timestamp": rfc3339_millis(SystemTime::now()),
        "requestContext": {
            "requestId": record.request_id,
            "functionArn": format!("{}:$LATEST", record.function_arn),
            "condition": record.condition,
            "approximateInvokeCount": record.approximate_invoke_count,
        },
        "requestPayload": parse(record.request_payload.as_bytes()),
        "responseContext": response_context,
    });
    if let Some(payload) = record.response_payload {
        value["responsePayload"] = parse(payload);
    }
    value
}

fn millis(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}
