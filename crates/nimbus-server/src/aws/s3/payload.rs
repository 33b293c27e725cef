//! The bytes of an S3 upload as the client meant them: `aws-chunked` bodies decoded (their
//! chunk and trailer signatures checked when the signer's secret is known), and the
//! integrity headers current SDKs send by default checked — `Content-MD5` and
//! `x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256}`, in a header or in the chunked
//! body's trailer. A body that fails any check is refused with S3's error and stored nowhere.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::StatusCode;
use md5::Digest as _;

use super::S3Error;
use crate::aws::sigv4;

/// An upload's decoded bytes and the checksum the client sent, verified.
pub(super) struct Payload {
    pub(super) data: Bytes,
    /// `(header name, base64 value)` of the checksum sent, to echo as S3 does.
    pub(super) checksum: Option<(String, String)>,
}

/// The checksum algorithms S3 verifies, by their header's suffix.
const ALGORITHMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

/// Decodes and verifies a request body.
pub(super) fn decode(
    parts: &http::request::Parts,
    body: Bytes,
    auth: Option<&sigv4::Authorization>,
    signing_key: Option<&[u8]>,
) -> Result<Payload, S3Error> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let content_sha256 = header("x-amz-content-sha256").unwrap_or_default();
    let chunked = content_sha256.starts_with("STREAMING-")
        || header("content-encoding")
            .is_some_and(|e| e.split(',').any(|e| e.trim() == "aws-chunked"));
    let (data, trailers) = if chunked {
        let signed = content_sha256.starts_with("STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
        let verifier = match (signed, auth, signing_key) {
            (true, Some(auth), Some(key)) => Some(ChunkVerifier {
                key,
                amz_date: auth.amz_date(parts).unwrap_or_default().to_owned(),
                scope: auth.scope(),
                previous: auth.signature.clone(),
            }),
            _ => None,
        };
        let (data, trailers) = decode_chunked(&body, verifier)?;
        if let Some(declared) = header("x-amz-decoded-content-length")
            && declared.parse::<usize>().ok() != Some(data.len())
        {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                format!(
                    "You did not provide the number of bytes specified by the x-amz-decoded-content-length header: {declared} declared, {} sent",
                    data.len()
                ),
            ));
        }
        (Bytes::from(data), trailers)
    } else {
        (body, Vec::new())
    };
    if let Some(md5) = header("content-md5") {
        let computed = BASE64.encode(md5::Md5::digest(&data));
        if BASE64.decode(md5).map_or(true, |d| d.len() != 16) {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "InvalidDigest",
                "The Content-MD5 you specified is not valid.",
            ));
        }
        if computed != md5 {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "BadDigest",
                "The Content-MD5 you specified did not match what we received.",
            ));
        }
    }
    let mut checksum = None;
    for algorithm in ALGORITHMS {
        let name = format!("x-amz-checksum-{algorithm}");
        let sent = header(&name).map(str::to_owned).or_else(|| {
            trailers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                .map(|(_, v)| v.clone())
        });
        let Some(sent) = sent else {
            continue;
        };
        let computed = compute(algorithm, &data);
        if computed != sent.trim() {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "BadDigest",
                format!(
                    "The {} you specified did not match the calculated checksum.",
                    algorithm.to_ascii_uppercase()
                ),
            ));
        }
        checksum = Some((name, computed));
    }
    Ok(Payload { data, checksum })
}

/// The base64 checksum of `data` with `algorithm` (one of [`ALGORITHMS`]).
fn compute(algorithm: &str, data: &[u8]) -> String {
    use crc_fast::{CrcAlgorithm, checksum};
    match algorithm {
        "crc32" => BASE64.encode((checksum(CrcAlgorithm::Crc32IsoHdlc, data) as u32).to_be_bytes()),
        "crc32c" => BASE64.encode((checksum(CrcAlgorithm::Crc32Iscsi, data) as u32).to_be_bytes()),
        "crc64nvme" => BASE64.encode(checksum(CrcAlgorithm::Crc64Nvme, data).to_be_bytes()),
        "sha1" => BASE64.encode(sha1::Sha1::digest(data)),
        _ => BASE64.encode(sha2::Sha256::digest(data)),
    }
}

/// What chunk signatures are checked against.
struct ChunkVerifier<'a> {
    key: &'a [u8],
    amz_date: String,
    scope: String,
    previous: String,
}

fn malformed(detail: &str) -> S3Error {
    S3Error::new(
        StatusCode::BAD_REQUEST,
        "IncompleteBody",
        format!("the aws-chunked body is malformed: {detail}"),
    )
}

fn signature_mismatch() -> S3Error {
    S3Error::new(
        StatusCode::FORBIDDEN,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
    )
}

/// The `(name, value)` lines of an `aws-chunked` body's trailer.
type Trailers = Vec<(String, String)>;

/// Splits `<hex size>[;chunk-signature=<sig>]\r\n<bytes>\r\n` chunks up to the empty one,
/// then the trailer lines (`name:value\r\n`, ending with an empty line).
fn decode_chunked(
    body: &[u8],
    mut verifier: Option<ChunkVerifier<'_>>,
) -> Result<(Vec<u8>, Trailers), S3Error> {
    let mut data = Vec::with_capacity(body.len());
    let mut rest = body;
    loop {
        let line_end = find_crlf(rest).ok_or_else(|| malformed("a chunk header has no CRLF"))?;
        let line = std::str::from_utf8(&rest[..line_end])
            .map_err(|_| malformed("a chunk header is not text"))?;
        rest = &rest[line_end + 2..];
        let (size, extensions) = line.split_once(';').unwrap_or((line, ""));
        let size = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| malformed("a chunk size is not hexadecimal"))?;
        if rest.len() < size {
            return Err(malformed("a chunk is shorter than its size"));
        }
        let chunk = &rest[..size];
        if let Some(verifier) = verifier.as_mut() {
            let sent = extensions
                .split(';')
                .find_map(|ext| ext.trim().strip_prefix("chunk-signature="))
                .ok_or_else(signature_mismatch)?;
            let expected = sigv4::chunk_signature(
                verifier.key,
                &verifier.amz_date,
                &verifier.scope,
                &verifier.previous,
                chunk,
            );
            if !sigv4::signatures_match(&expected, sent) {
                return Err(signature_mismatch());
            }
            verifier.previous = expected;
        }
        data.extend_from_slice(chunk);
        rest = &rest[size..];
        if size == 0 {
            break;
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| malformed("a chunk does not end with CRLF"))?;
    }
    let mut trailers = Vec::new();
    let mut canonical = String::new();
    let mut trailer_signature = None;
    while let Some(line_end) = find_crlf(rest) {
        let line = std::str::from_utf8(&rest[..line_end])
            .map_err(|_| malformed("a trailer is not text"))?;
        rest = &rest[line_end + 2..];
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("a trailer has no `:`"))?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
        if name == "x-amz-trailer-signature" {
            trailer_signature = Some(value);
        } else {
            canonical.push_str(&format!("{name}:{value}\n"));
            trailers.push((name, value));
        }
    }
    if let Some(verifier) = verifier
        && !trailers.is_empty()
    {
        let sent = trailer_signature.ok_or_else(signature_mismatch)?;
        let expected = sigv4::trailer_signature(
            verifier.key,
            &verifier.amz_date,
            &verifier.scope,
            &verifier.previous,
            &canonical,
        );
        if !sigv4::signatures_match(&expected, &sent) {
            return Err(signature_mismatch());
        }
    }
    Ok((data, trailers))
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder().method("PUT").uri("/b/k");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request").into_parts().0
    }

    /// The checksums of "hello world" as S3's documentation and the SDKs compute them.
    #[test]
    fn checksums_match_the_sdks() {
        assert_eq!(compute("crc32", b"hello world"), "DUoRhQ==");
        assert_eq!(compute("crc32c", b"hello world"), "yZRlqg==");
        assert_eq!(compute("crc64nvme", b"hello world"), "jSnVw/bqjr4=");
        assert_eq!(
            compute("sha1", b"hello world"),
            "Kq5sNclPz7QV2+lfQIuc6R7oRu0="
        );
    }

    #[test]
    fn an_unsigned_chunked_body_with_a_trailer_is_decoded_and_its_checksum_verified() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        let parts = parts(&[
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "11"),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
        ]);
        let payload = decode(&parts, Bytes::from_static(body), None, None).expect("decoded");
        assert_eq!(&payload.data[..], b"hello world");
        assert_eq!(
            payload.checksum,
            Some(("x-amz-checksum-crc32".to_owned(), "DUoRhQ==".to_owned()))
        );
        let bad = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n";
        let err = decode(&parts, Bytes::from_static(bad), None, None)
            .err()
            .expect("refused");
        assert_eq!(err.code, "BadDigest");
        let short = b"5\r\nhel";
        let err = decode(&parts, Bytes::from_static(short), None, None)
            .err()
            .expect("refused");
        assert_eq!(err.code, "IncompleteBody");
    }

    #[test]
    fn a_wrong_content_md5_is_a_bad_digest() {
        let parts = parts(&[("content-md5", "XrY7u+Ae7tCTyyK7j1rNww==")]);
        assert!(decode(&parts, Bytes::from_static(b"hello world"), None, None).is_ok());
        let err = decode(&parts, Bytes::from_static(b"hello"), None, None)
            .err()
            .expect("refused");
        assert_eq!(err.code, "BadDigest");
    }
}
