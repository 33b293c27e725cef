//! S3's presigned URLs of Signature Version 2 (`?AWSAccessKeyId=…&Expires=…&Signature=…`),
//! which boto3's `generate_presigned_url` still makes unless told `signature_version='s3v4'`:
//! the string to sign and the canonical resource as "Signing and authenticating REST requests"
//! (Amazon S3 developer guide, query string request authentication) defines them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The sub-resources and response overrides S3 puts in a V2 canonical resource, sorted.
const SUB_RESOURCES: [&str; 15] = [
    "acl",
    "delete",
    "location",
    "partNumber",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "tagging",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
];

/// A V2 presigned URL's signer, expiry and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryAuth {
    pub(crate) access_key: String,
    /// Seconds since the epoch after which the URL is refused.
    expires: u64,
    signature: String,
}

impl QueryAuth {
    /// Reads the query; `None` when it is not a V2 presigned one.
    pub(crate) fn from_query(parts: &http::request::Parts) -> Option<QueryAuth> {
        let query = parts.uri.query()?;
        let (mut access_key, mut expires, mut signature) = (None, None, None);
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "AWSAccessKeyId" => access_key = Some(value.into_owned()),
                "Expires" => expires = value.parse().ok(),
                "Signature" => signature = Some(value.into_owned()),
                _ => {}
            }
        }
        Some(QueryAuth {
            access_key: access_key?,
            expires: expires?,
            signature: signature?,
        })
    }

    /// Whether the URL has expired at `now`.
    pub(crate) fn expired(&self, now: std::time::SystemTime) -> bool {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.expires) < now
    }

    /// Whether the URL was signed with `secret`.
    pub(crate) fn verify(&self, parts: &http::request::Parts, secret: &str) -> bool {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        let mut amz_headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-amz-"))
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).trim().to_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        amz_headers.sort();
        let amz_headers: String = amz_headers
            .iter()
            .map(|(name, value)| format!("{name}:{value}\n"))
            .collect();
        let string_to_sign = format!(
            "{}\n{}\n{}\n{}\n{amz_headers}{}",
            parts.method,
            header("content-md5"),
            header("content-type"),
            self.expires,
            canonical_resource(parts),
        );
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(string_to_sign.as_bytes());
        let expected = BASE64.encode(mac.finalize().into_bytes());
        super::sigv4::signatures_match(&expected, &self.signature)
    }
}

/// `/bucket/key` as the request sent it (a virtual-host bucket moved in front), then the
/// sub-resources it names.
fn canonical_resource(parts: &http::request::Parts) -> String {
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let hostname = host.split(':').next().unwrap_or_default();
    let mut resource = match hostname.strip_suffix(".localhost") {
        Some(bucket) if !bucket.is_empty() => format!("/{bucket}{}", parts.uri.path()),
        _ => parts.uri.path().to_owned(),
    };
    let mut sub: Vec<(String, Option<String>)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .filter(|(name, _)| SUB_RESOURCES.contains(&name.as_ref()))
            .map(|(name, value)| {
                let value = (!value.is_empty()).then(|| value.into_owned());
                (name.into_owned(), value)
            })
            .collect();
    sub.sort();
    for (idx, (name, value)) in sub.iter().enumerate() {
        resource.push(if idx == 0 { '?' } else { '&' });
        resource.push_str(name);
        if let Some(value) = value {
            resource.push('=');
            resource.push_str(value);
        }
    }
    resource
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str) -> http::request::Parts {
        http::Request::builder()
            .method("GET")
            .uri(uri)
            .header("host", "127.0.0.1:4566")
            .body(())
            .expect("request")
            .into_parts()
            .0
    }

    /// URLs presigned by botocore 1.44's `HmacV1QueryAuth` (boto3's default presigner for
    /// S3) with the S3 guide's example key, an encoded key and sub-resources.
    #[test]
    fn verifies_urls_botocore_presigned() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        for uri in [
            "/photos/puppy%20dog.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=UHvw1llbb6XVaQZhcKkitU80oQU%3D&Expires=1141889120",
            "/photos/a?uploadId=abc&partNumber=2&AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=ol5SJkBN5C573xEa7MCGVlaFS9Q%3D&Expires=1141889120",
        ] {
            let request = parts(uri);
            let auth = QueryAuth::from_query(&request).expect("a V2 query");
            assert_eq!(auth.access_key, "AKIAIOSFODNN7EXAMPLE");
            assert!(auth.verify(&request, secret), "{uri}");
            assert!(!auth.verify(&request, "another secret"), "{uri}");
            assert!(auth.expired(std::time::SystemTime::now()));
            let moved = parts(&uri.replace("/photos/", "/photoz/"));
            assert!(!auth.verify(&moved, secret), "{uri}");
        }
    }
}
