//! Fuzzing SQS's query protocol (issue 14): a mutated form body is read into every
//! action's request as the endpoint reads it; each is read or refused, never panics or
//! hangs.

use super::Params;
use crate::aws::sns::query_params;

const DICTIONARY: &[&[u8]] = &[
    b"&",
    b"=",
    b"%",
    b"%00",
    b"%ZZ",
    b"+",
    b".1.",
    b".0.",
    b".18446744073709551616.",
    b"Action=",
    b"QueueUrl=",
    b"MessageBody=",
    b"MessageAttribute.1.Name=",
    b"MessageAttribute.1.Value.DataType=",
    b"MessageAttribute.1.Value.BinaryValue=",
    b"Attribute.1.Name=",
    b"Attribute.1.Value=",
    b"AttributeName.1=",
    b"SendMessageBatchRequestEntry.1.",
    b"DeleteMessageBatchRequestEntry.1.",
    b"ReceiptHandle=",
    b"VisibilityTimeout=",
    b"DelaySeconds=-1",
    b"MaxNumberOfMessages=99999999999999999999",
    b"/000000000000/q",
];

#[test]
fn fuzz_sqs_query_requests_are_read_or_refused() {
    nimbus_fuzz::fuzz("sqs-query", DICTIONARY, |input| {
        // The path also names the queue when QueueUrl does not.
        let uri = format!(
            "/000000000000/q?{}",
            String::from_utf8_lossy(input).replace(' ', "+")
        );
        let Ok(req) = http::Request::post(uri.as_str()).body(()) else {
            return;
        };
        let (parts, ()) = req.into_parts();
        let params = Params {
            map: query_params(&parts, input),
            path: parts.uri.path(),
        };
        let _ = params.create_queue();
        let _ = params.get_queue_url();
        let _ = params.list_queues();
        let _ = params.queue_request();
        let _ = params.send_message();
        let _ = params.send_message_batch();
        let _ = params.receive_message();
        let _ = params.delete_message();
        let _ = params.delete_message_batch();
        let _ = params.change_visibility();
        let _ = params.change_visibility_batch();
        let _ = params.set_queue_attributes();
        let _ = params.get_queue_attributes();
    });
}
