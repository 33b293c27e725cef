//! Fuzzing Kinesis's JSON requests (issue 14): a mutated body is read into records, stream
//! names, shard ids and iterator starts as the endpoint reads them, and the opaque tokens a
//! client hands back (shard iterators, NextToken) are read from the body and from the raw
//! input; all of it answers or refuses, never panics or hangs.

use base64::Engine as _;
use serde_json::Value as Json;

use super::{
    Req, decode_token, iterator_start, name_of_arn, new_record, parse_iterator, shard_of,
    stream_name,
};
use crate::aws::members::MemberReader as _;

const DICTIONARY: &[&[u8]] = &[
    br#""ShardIteratorType":"AFTER_SEQUENCE_NUMBER""#,
    br#""ShardIteratorType":"AT_TIMESTAMP""#,
    br#""StartingSequenceNumber":"0""#,
    br#""Timestamp":-1e308"#,
    br#""ExplicitHashKey":"-1""#,
    br#""StreamARN":"arn:aws:kinesis:*:*:stream/""#,
    br#""ShardId":"shardId-4294967296""#,
    b"shardId-",
    b"table/",
    b"nimbus-shard-iterator/1\n",
    b"\n",
    b"a18446744073709551615",
    b"t-9223372036854775808",
    b"==",
    b"null",
    b"[]",
    b"{}",
];

#[test]
fn fuzz_kinesis_requests_and_tokens_are_read_or_refused() {
    nimbus_fuzz::fuzz("kinesis-json", DICTIONARY, |input| {
        // The raw input as the inside of a shard iterator and of a NextToken.
        let text = String::from_utf8_lossy(input);
        let _ = parse_iterator(&base64::engine::general_purpose::STANDARD.encode(input));
        let _ = parse_iterator(&text);
        let _ = decode_token(&text);
        let _ = name_of_arn(&text);
        let Ok(Json::Object(body)) = serde_json::from_slice::<Json>(input) else {
            return;
        };
        let r = Req(&body);
        let _ = new_record(&r);
        let _ = iterator_start(&r);
        if let Ok(name) = stream_name(&r)
            && let Ok(Some(shard)) = r.optional_string("ShardId")
        {
            let _ = shard_of(&shard, &name);
        }
        if let Ok(Some(iterator)) = r.optional_string("ShardIterator") {
            let _ = parse_iterator(&iterator);
        }
        if let Ok(Some(token)) = r.optional_string("NextToken") {
            let _ = decode_token(&token);
        }
        if let Ok(records) = r.array("Records") {
            for record in records {
                if let Json::Object(record) = record {
                    let _ = new_record(&Req(record));
                }
            }
        }
    });
}
