//! SQS's query protocol (form-encoded `Action=SendMessage&...`, XML answers in the
//! `http://queue.amazonaws.com/doc/2012-11-05/` namespace), which the SDKs spoke before SQS
//! moved to JSON in late 2023: aws-sdk v2 as Lambda's nodejs16.x ships it (2.1374.0),
//! botocore before 1.34.90 (except a few weeks of late 2023), and anything pinned to them.
//!
//! The parameters become the same requests the JSON protocol deserializes, and the same
//! results are written as SQS's XML, so both protocols share every operation in `sqs.rs`.
//! Lists are `Name.1`, `Name.2`, ... and maps `Name.N.Name` / `Name.N.Value`, under the
//! member names of SQS's query model (`AttributeName`, `MessageAttribute`,
//! `SendMessageBatchRequestEntry`, ...), which differ from the JSON ones.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::response::Response;

use super::{
    AttributeValue, AttributesResult, BatchFailure, BatchResult, BatchSuccess, ChangeVisibility,
    ChangeVisibilityBatch, ChangeVisibilityEntry, CreateQueue, Cx, DeleteEntry, DeleteMessage,
    DeleteMessageBatch, DeleteSuccess, GetQueueAttributes, GetQueueUrl, ListQueues,
    ListQueuesResult, MessageFields, QueueRequest, QueueUrlResult, ReceiveMessage, ReceiveResult,
    SendMessage, SendMessageBatch, SendMessageResult, SetQueueAttributes, SqsError,
};
use crate::aws::sns::{query_error, query_params, query_response, xml};

const NAMESPACE: &str = "http://queue.amazonaws.com/doc/2012-11-05/";

/// A query-protocol `ErrorResponse` with the error's legacy code.
pub(super) fn error_response(status: http::StatusCode, code: &str, message: &str) -> Response {
    query_error(NAMESPACE, status, super::query_code(code), message)
}

pub(super) async fn handle(cx: &Cx<'_>, parts: &http::request::Parts, body: &[u8]) -> Response {
    let params = Params {
        map: query_params(parts, body),
        path: parts.uri.path(),
    };
    let action = params.get("Action").unwrap_or_default().to_owned();
    match dispatch(cx, &action, &params).await {
        Ok(result) => query_response(NAMESPACE, &action, result.as_deref()),
        Err(e) => error_response(e.status, &e.code, &e.message),
    }
}

/// Runs one action; its result element's content, or `None` for actions that return
/// nothing.
async fn dispatch(
    cx: &Cx<'_>,
    action: &str,
    params: &Params<'_>,
) -> Result<Option<String>, SqsError> {
    let res = match action {
        "CreateQueue" => cx.create_queue(params.create_queue()?).await?.xml(),
        "GetQueueUrl" => cx.get_queue_url(params.get_queue_url()?).await?.xml(),
        "ListQueues" => cx.list_queues(params.list_queues()?).await?.xml(),
        "SendMessage" => cx.send_message(params.send_message()?).await?.xml(),
        "SendMessageBatch" => cx
            .send_message_batch(params.send_message_batch()?)
            .await?
            .xml(),
        "ReceiveMessage" => cx.receive_message(params.receive_message()?).await?.xml(),
        "DeleteMessage" => {
            cx.delete_message(params.delete_message()?).await?;
            return Ok(None);
        }
        "DeleteMessageBatch" => cx
            .delete_message_batch(params.delete_message_batch()?)
            .await?
            .xml(),
        "ChangeMessageVisibility" => {
            cx.change_visibility(params.change_visibility()?).await?;
            return Ok(None);
        }
        "ChangeMessageVisibilityBatch" => {
            let result = cx
                .change_visibility_batch(params.change_visibility_batch()?)
                .await?;
            ids_xml("ChangeMessageVisibilityBatchResultEntry", &result)
        }
        "SetQueueAttributes" => {
            cx.set_queue_attributes(params.set_queue_attributes()?)
                .await?;
            return Ok(None);
        }
        "DeleteQueue" => {
            cx.delete_queue(params.queue_request()?).await?;
            return Ok(None);
        }
        "PurgeQueue" => {
            cx.purge_queue(params.queue_request()?).await?;
            return Ok(None);
        }
        "GetQueueAttributes" => cx
            .get_queue_attributes(params.get_queue_attributes()?)
            .await?
            .xml(),
        "" => {
            return Err(SqsError::new(
                "MissingAction",
                "the request names no Action (nor an X-Amz-Target for the JSON protocol)",
            ));
        }
        other => return Err(super::unknown_operation(other)),
    };
    Ok(Some(res))
}

/// A request's parameters, and its path, which names the queue when `QueueUrl` does not
/// (clients may send a request to the queue's URL itself).
struct Params<'a> {
    map: BTreeMap<String, String>,
    path: &'a str,
}

impl Params<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    fn required(&self, name: &str) -> Result<String, SqsError> {
        self.string(name).ok_or_else(|| missing(name))
    }

    fn number(&self, name: &str) -> Result<Option<u64>, SqsError> {
        self.get(name)
            .map(|value| {
                value.trim().parse::<u64>().map_err(|_| {
                    SqsError::new(
                        "InvalidParameterValue",
                        format!("{name} must be a whole number, got {value:?}"),
                    )
                })
            })
            .transpose()
    }

    /// Whether any parameter's name starts with `prefix`.
    fn has_prefix(&self, prefix: &str) -> bool {
        self.map
            .range(prefix.to_owned()..)
            .next()
            .is_some_and(|(name, _)| name.starts_with(prefix))
    }

    /// The list `name.1`, `name.2`, ... up to the first missing index.
    fn list(&self, name: &str) -> Vec<String> {
        (1..)
            .map_while(|n| self.string(&format!("{name}.{n}")))
            .collect()
    }

    /// The prefixes `name.1.`, `name.2.`, ... of a list of structures, up to the first
    /// index no parameter has.
    fn entries(&self, name: &str) -> Vec<String> {
        (1..)
            .map(|n| format!("{name}.{n}."))
            .take_while(|prefix| self.has_prefix(prefix))
            .collect()
    }

    /// The map `name.N.Name` / `name.N.Value`.
    fn string_map(&self, name: &str) -> Result<BTreeMap<String, String>, SqsError> {
        let mut map = BTreeMap::new();
        for entry in self.entries(name) {
            map.insert(
                self.required(&format!("{entry}Name"))?,
                self.required(&format!("{entry}Value"))?,
            );
        }
        Ok(map)
    }

    /// `QueueUrl`, else the request's own path when it names a queue (`/<account>/<queue>`).
    fn queue_url(&self) -> Result<String, SqsError> {
        if let Some(url) = self.string("QueueUrl") {
            return Ok(url);
        }
        let path = self.path.trim_matches('/');
        if path.contains('/') {
            return Ok(path.to_owned());
        }
        Err(missing("QueueUrl"))
    }

    fn create_queue(&self) -> Result<CreateQueue, SqsError> {
        Ok(CreateQueue {
            queue_name: self.required("QueueName")?,
            attributes: self.string_map("Attribute")?,
        })
    }

    fn get_queue_url(&self) -> Result<GetQueueUrl, SqsError> {
        Ok(GetQueueUrl {
            queue_name: self.required("QueueName")?,
        })
    }

    fn list_queues(&self) -> Result<ListQueues, SqsError> {
        Ok(ListQueues {
            queue_name_prefix: self.string("QueueNamePrefix"),
            max_results: self.number("MaxResults")?,
            next_token: self.string("NextToken"),
        })
    }

    fn queue_request(&self) -> Result<QueueRequest, SqsError> {
        Ok(QueueRequest {
            queue_url: self.queue_url()?,
        })
    }

    fn send_message(&self) -> Result<SendMessage, SqsError> {
        Ok(SendMessage {
            queue_url: self.queue_url()?,
            message: self.message_fields("")?,
        })
    }

    /// A message's fields, under `prefix` (a batch entry's `SendMessageBatchRequestEntry.N.`).
    fn message_fields(&self, prefix: &str) -> Result<MessageFields, SqsError> {
        let mut message_attributes = BTreeMap::new();
        for entry in self.entries(&format!("{prefix}MessageAttribute")) {
            message_attributes.insert(
                self.required(&format!("{entry}Name"))?,
                AttributeValue {
                    data_type: self.required(&format!("{entry}Value.DataType"))?,
                    string_value: self.string(&format!("{entry}Value.StringValue")),
                    binary_value: self.string(&format!("{entry}Value.BinaryValue")),
                },
            );
        }
        Ok(MessageFields {
            message_body: self.required(&format!("{prefix}MessageBody"))?,
            delay_seconds: self.number(&format!("{prefix}DelaySeconds"))?,
            message_attributes,
            message_group_id: self.string(&format!("{prefix}MessageGroupId")),
            message_deduplication_id: self.string(&format!("{prefix}MessageDeduplicationId")),
        })
    }

    fn send_message_batch(&self) -> Result<SendMessageBatch, SqsError> {
        let entries = self
            .entries("SendMessageBatchRequestEntry")
            .into_iter()
            .map(|entry| {
                Ok(super::BatchEntry {
                    id: self.required(&format!("{entry}Id"))?,
                    message: self.message_fields(&entry)?,
                })
            })
            .collect::<Result<_, SqsError>>()?;
        Ok(SendMessageBatch {
            queue_url: self.queue_url()?,
            entries,
        })
    }

    fn receive_message(&self) -> Result<ReceiveMessage, SqsError> {
        Ok(ReceiveMessage {
            queue_url: self.queue_url()?,
            max_number_of_messages: self.number("MaxNumberOfMessages")?,
            visibility_timeout: self.number("VisibilityTimeout")?,
            wait_time_seconds: self.number("WaitTimeSeconds")?,
            attribute_names: self.list("AttributeName"),
            message_system_attribute_names: self.list("MessageSystemAttributeName"),
            message_attribute_names: self.list("MessageAttributeName"),
        })
    }

    fn delete_message(&self) -> Result<DeleteMessage, SqsError> {
        Ok(DeleteMessage {
            queue_url: self.queue_url()?,
            receipt_handle: self.required("ReceiptHandle")?,
        })
    }

    fn delete_message_batch(&self) -> Result<DeleteMessageBatch, SqsError> {
        let entries = self
            .entries("DeleteMessageBatchRequestEntry")
            .into_iter()
            .map(|entry| {
                Ok(DeleteEntry {
                    id: self.required(&format!("{entry}Id"))?,
                    receipt_handle: self.required(&format!("{entry}ReceiptHandle"))?,
                })
            })
            .collect::<Result<_, SqsError>>()?;
        Ok(DeleteMessageBatch {
            queue_url: self.queue_url()?,
            entries,
        })
    }

    fn change_visibility(&self) -> Result<ChangeVisibility, SqsError> {
        Ok(ChangeVisibility {
            queue_url: self.queue_url()?,
            receipt_handle: self.required("ReceiptHandle")?,
            visibility_timeout: self
                .number("VisibilityTimeout")?
                .ok_or_else(|| missing("VisibilityTimeout"))?,
        })
    }

    fn change_visibility_batch(&self) -> Result<ChangeVisibilityBatch, SqsError> {
        let entries = self
            .entries("ChangeMessageVisibilityBatchRequestEntry")
            .into_iter()
            .map(|entry| {
                Ok(ChangeVisibilityEntry {
                    id: self.required(&format!("{entry}Id"))?,
                    receipt_handle: self.required(&format!("{entry}ReceiptHandle"))?,
                    visibility_timeout: self
                        .number(&format!("{entry}VisibilityTimeout"))?
                        .ok_or_else(|| missing("VisibilityTimeout"))?,
                })
            })
            .collect::<Result<_, SqsError>>()?;
        Ok(ChangeVisibilityBatch {
            queue_url: self.queue_url()?,
            entries,
        })
    }

    fn set_queue_attributes(&self) -> Result<SetQueueAttributes, SqsError> {
        Ok(SetQueueAttributes {
            queue_url: self.queue_url()?,
            attributes: self.string_map("Attribute")?,
        })
    }

    fn get_queue_attributes(&self) -> Result<GetQueueAttributes, SqsError> {
        Ok(GetQueueAttributes {
            queue_url: self.queue_url()?,
            attribute_names: self.list("AttributeName"),
        })
    }
}

/// SQS's error for a parameter the action needs.
fn missing(name: &str) -> SqsError {
    SqsError::new(
        "MissingParameter",
        format!("The request must contain the parameter {name}."),
    )
}

/// A result as the content of its `<{Action}Result>` element.
trait QueryResult {
    fn xml(&self) -> String;
}

impl QueryResult for QueueUrlResult {
    fn xml(&self) -> String {
        element("QueueUrl", &self.queue_url)
    }
}

impl QueryResult for ListQueuesResult {
    fn xml(&self) -> String {
        let mut out: String = self
            .queue_urls
            .iter()
            .map(|url| element("QueueUrl", url))
            .collect();
        if let Some(token) = &self.next_token {
            out.push_str(&element("NextToken", token));
        }
        out
    }
}

impl QueryResult for SendMessageResult {
    fn xml(&self) -> String {
        let mut out = element("MessageId", &self.message_id);
        out.push_str(&element("MD5OfMessageBody", &self.md5_of_body));
        if let Some(md5) = &self.md5_of_attributes {
            out.push_str(&element("MD5OfMessageAttributes", md5));
        }
        if let Some(sequence_number) = &self.sequence_number {
            out.push_str(&element("SequenceNumber", sequence_number));
        }
        out
    }
}

impl QueryResult for BatchResult<BatchSuccess> {
    fn xml(&self) -> String {
        let mut out = String::new();
        for success in &self.successful {
            let _ = write!(
                out,
                "<SendMessageBatchResultEntry>{}{}</SendMessageBatchResultEntry>",
                element("Id", &success.id),
                success.sent.xml()
            );
        }
        failures(&mut out, &self.failed);
        out
    }
}

impl QueryResult for BatchResult<DeleteSuccess> {
    fn xml(&self) -> String {
        ids_xml("DeleteMessageBatchResultEntry", self)
    }
}

/// A batch result whose successes are only their ids, each in an `entry` element.
fn ids_xml(entry: &str, result: &BatchResult<DeleteSuccess>) -> String {
    let mut out = String::new();
    for success in &result.successful {
        let _ = write!(out, "<{entry}>{}</{entry}>", element("Id", &success.id));
    }
    failures(&mut out, &result.failed);
    out
}

impl QueryResult for ReceiveResult {
    fn xml(&self) -> String {
        let mut out = String::new();
        for m in &self.messages {
            out.push_str("<Message>");
            out.push_str(&element("MessageId", &m.message_id));
            out.push_str(&element("ReceiptHandle", &m.receipt_handle));
            out.push_str(&element("MD5OfBody", &m.md5_of_body));
            out.push_str(&element("Body", &m.body));
            attributes(&mut out, &m.attributes);
            if let Some(md5) = &m.md5_of_attributes {
                out.push_str(&element("MD5OfMessageAttributes", md5));
            }
            for (name, value) in &m.message_attributes {
                let _ = write!(out, "<MessageAttribute>{}<Value>", element("Name", name));
                if let Some(text) = &value.string_value {
                    out.push_str(&element("StringValue", text));
                }
                if let Some(binary) = &value.binary_value {
                    out.push_str(&element("BinaryValue", binary));
                }
                out.push_str(&element("DataType", &value.data_type));
                out.push_str("</Value></MessageAttribute>");
            }
            out.push_str("</Message>");
        }
        out
    }
}

impl QueryResult for AttributesResult {
    fn xml(&self) -> String {
        let mut out = String::new();
        attributes(&mut out, &self.attributes);
        out
    }
}

/// `<name>text</name>`, the text escaped.
fn element(name: &str, text: &str) -> String {
    format!("<{name}>{}</{name}>", xml(text))
}

/// A string map as `<Attribute><Name>..</Name><Value>..</Value></Attribute>` entries.
fn attributes(out: &mut String, map: &BTreeMap<String, String>) {
    for (name, value) in map {
        let _ = write!(
            out,
            "<Attribute>{}{}</Attribute>",
            element("Name", name),
            element("Value", value)
        );
    }
}

fn failures(out: &mut String, failed: &[BatchFailure]) {
    for failure in failed {
        let _ = write!(
            out,
            "<BatchResultErrorEntry>{}<SenderFault>{}</SenderFault>{}{}</BatchResultErrorEntry>",
            element("Id", &failure.id),
            failure.sender_fault,
            element("Code", super::query_code(&failure.code)),
            element("Message", &failure.message)
        );
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    /// The requests a form body parses into, as their debug text.
    fn check(action: &str, form: &str, expect: Expect) {
        let params = Params {
            map: form_urlencoded::parse(form.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            path: "/",
        };
        let res = match action {
            "SendMessage" => params.send_message().map(|r| format!("{r:?}")),
            "SendMessageBatch" => params.send_message_batch().map(|r| format!("{r:?}")),
            "ReceiveMessage" => params.receive_message().map(|r| format!("{r:?}")),
            "CreateQueue" => params.create_queue().map(|r| format!("{r:?}")),
            "DeleteMessageBatch" => params.delete_message_batch().map(|r| format!("{r:?}")),
            "ChangeMessageVisibility" => params.change_visibility().map(|r| format!("{r:?}")),
            other => panic!("no case for {other}"),
        };
        let text = res.unwrap_or_else(|e| format!("{}: {}", e.code, e.message));
        expect.assert_eq(&text);
    }

    #[test]
    fn parses_query_parameters_into_the_json_protocols_requests() {
        check(
            "SendMessage",
            "Action=SendMessage&QueueUrl=http%3A%2F%2Fh%2F1%2Fq&MessageBody=hi%0D%0Athere&DelaySeconds=2&MessageAttribute.1.Name=kind&MessageAttribute.1.Value.DataType=String&MessageAttribute.1.Value.StringValue=order&MessageAttribute.2.Name=raw&MessageAttribute.2.Value.DataType=Binary&MessageAttribute.2.Value.BinaryValue=AAE%3D",
            expect![[
                r#"SendMessage { queue_url: "http://h/1/q", message: MessageFields { message_body: "hi\r\nthere", delay_seconds: Some(2), message_attributes: {"kind": AttributeValue { data_type: "String", string_value: Some("order"), binary_value: None }, "raw": AttributeValue { data_type: "Binary", string_value: None, binary_value: Some("AAE=") }}, message_group_id: None, message_deduplication_id: None } }"#
            ]],
        );
        check(
            "SendMessage",
            "Action=SendMessage&QueueUrl=q",
            expect!["MissingParameter: The request must contain the parameter MessageBody."],
        );
        check(
            "SendMessage",
            "QueueUrl=q&MessageBody=x&DelaySeconds=soon",
            expect![[r#"InvalidParameterValue: DelaySeconds must be a whole number, got "soon""#]],
        );
        check(
            "SendMessageBatch",
            "QueueUrl=q&SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=one&SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=n&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=Number&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=4&SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=two&SendMessageBatchRequestEntry.2.MessageGroupId=g",
            expect![[
                r#"SendMessageBatch { queue_url: "q", entries: [BatchEntry { id: "a", message: MessageFields { message_body: "one", delay_seconds: None, message_attributes: {"n": AttributeValue { data_type: "Number", string_value: Some("4"), binary_value: None }}, message_group_id: None, message_deduplication_id: None } }, BatchEntry { id: "b", message: MessageFields { message_body: "two", delay_seconds: None, message_attributes: {}, message_group_id: Some("g"), message_deduplication_id: None } }] }"#
            ]],
        );
        check(
            "ReceiveMessage",
            "QueueUrl=q&AttributeName.1=All&MessageAttributeName.1=kind&MessageAttributeName.2=n.*&MaxNumberOfMessages=10&WaitTimeSeconds=1&VisibilityTimeout=5",
            expect![[
                r#"ReceiveMessage { queue_url: "q", max_number_of_messages: Some(10), visibility_timeout: Some(5), wait_time_seconds: Some(1), attribute_names: ["All"], message_system_attribute_names: [], message_attribute_names: ["kind", "n.*"] }"#
            ]],
        );
        check(
            "CreateQueue",
            "QueueName=jobs&Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=1&Attribute.2.Name=DelaySeconds&Attribute.2.Value=0",
            expect![[
                r#"CreateQueue { queue_name: "jobs", attributes: {"DelaySeconds": "0", "VisibilityTimeout": "1"} }"#
            ]],
        );
        check(
            "CreateQueue",
            "QueueName=jobs&Attribute.1.Name=VisibilityTimeout",
            expect!["MissingParameter: The request must contain the parameter Attribute.1.Value."],
        );
        check(
            "DeleteMessageBatch",
            "QueueUrl=q&DeleteMessageBatchRequestEntry.1.Id=x&DeleteMessageBatchRequestEntry.1.ReceiptHandle=r1&DeleteMessageBatchRequestEntry.2.Id=y&DeleteMessageBatchRequestEntry.2.ReceiptHandle=r2",
            expect![[
                r#"DeleteMessageBatch { queue_url: "q", entries: [DeleteEntry { id: "x", receipt_handle: "r1" }, DeleteEntry { id: "y", receipt_handle: "r2" }] }"#
            ]],
        );
        check(
            "ChangeMessageVisibility",
            "QueueUrl=q&ReceiptHandle=r",
            expect!["MissingParameter: The request must contain the parameter VisibilityTimeout."],
        );
    }

    #[test]
    fn a_request_to_the_queues_url_names_the_queue_by_its_path() {
        let params = Params {
            map: BTreeMap::from([("MessageBody".to_owned(), "x".to_owned())]),
            path: "/123456789012/jobs",
        };
        let res = params.send_message().map(|r| r.queue_url);
        assert_eq!(res.ok().as_deref(), Some("123456789012/jobs"));
        let params = Params {
            map: BTreeMap::new(),
            path: "/",
        };
        let res = params.queue_request().map(|r| r.queue_url);
        assert_eq!(
            res.err().map(|e| e.code).as_deref(),
            Some("MissingParameter")
        );
    }
}
