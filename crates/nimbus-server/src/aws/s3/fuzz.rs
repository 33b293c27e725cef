//! Fuzzing S3's request parsers: `aws-chunked` bodies (signed and unsigned, with
//! trailers) and the XML documents clients send. Any input is decoded or refused with an
//! S3 error; none panics or takes long.

use bytes::Bytes;

use super::{payload, xml};
use crate::aws::sigv4;

const CHUNKED_DICTIONARY: &[&[u8]] = &[
    b"\r\n",
    b";chunk-signature=",
    b"0\r\n",
    b"ffffffffffffffff\r\n",
    b"x-amz-checksum-crc32:",
    b"x-amz-checksum-sha256:",
    b"x-amz-trailer-signature:",
    b"NhCmhg==",
];

const XML_DICTIONARY: &[&[u8]] = &[
    b"<Part>",
    b"</Part>",
    b"<PartNumber>",
    b"</PartNumber>",
    b"<ETag>",
    b"<Object>",
    b"<Key>",
    b"</Key>",
    b"<Quiet>",
    b"&amp;",
    b"&#x0;",
    b"<![CDATA[",
    b"]]>",
    b"<!DOCTYPE a [<!ENTITY x \"y\">]>",
    b"&x;",
    b"99999999999999999999",
];

fn request(headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::builder().method("PUT").uri("/b/k");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("a valid request").into_parts().0
}

#[test]
fn fuzz_s3_aws_chunked_bodies_decode_or_are_refused() {
    let unsigned = request(&[
        ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
        ("content-encoding", "aws-chunked"),
    ]);
    let signed = request(&[
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("x-amz-date", "20261207T000000Z"),
        ("x-amz-decoded-content-length", "5"),
    ]);
    let auth = sigv4::Authorization::parse(
        "AWS4-HMAC-SHA256 Credential=k/20261207/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
    )
    .expect("a valid header");
    let key = auth.signing_key("secret");
    nimbus_fuzz::fuzz("s3-chunked", CHUNKED_DICTIONARY, |body| {
        let body = Bytes::copy_from_slice(body);
        let _ = payload::decode(&unsigned, body.clone(), None, None);
        let _ = payload::decode(&signed, body, Some(&auth), Some(&key));
    });
}

#[test]
fn fuzz_s3_request_documents_parse_or_are_malformed() {
    nimbus_fuzz::fuzz("s3-xml", XML_DICTIONARY, |body| {
        let _ = xml::parse::<xml::CompleteMultipartUpload>(body);
        let _ = xml::parse::<xml::Delete>(body);
    });
}

#[test]
fn a_document_type_declaration_inside_a_document_is_malformed_not_a_panic() {
    // The input the fuzz target first found: quick-xml 0.38 panicked on it.
    let body =
        b"<Delete><Object><Key>a&amp;<!DOCTYPE a [<!ENTITY x \"y\">]>b</Key></Object></Delete>";
    let res = xml::parse::<xml::Delete>(body);
    assert_eq!(
        res.err().as_deref(),
        Some("a document type declaration is not allowed")
    );
}
