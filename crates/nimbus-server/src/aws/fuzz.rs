//! Fuzzing the signature parsers every AWS request goes through: the `Authorization`
//! header and a presigned URL's query.

use super::sigv4::Authorization;

const DICTIONARY: &[&[u8]] = &[
    b"AWS4-HMAC-SHA256",
    b"Credential=",
    b"SignedHeaders=",
    b"Signature=",
    b"/aws4_request",
    b", ",
    b";",
    b"=",
    b"%2F",
    b"&X-Amz-",
    b"X-Amz-Expires=",
    b"X-Amz-Date=",
];

#[test]
fn fuzz_sigv4_authorization_parses_or_is_refused() {
    let now = std::time::SystemTime::now();
    nimbus_fuzz::fuzz("sigv4-authorization", DICTIONARY, |input| {
        let text = String::from_utf8_lossy(input);
        if let Some(auth) = Authorization::parse(&text) {
            let _ = auth.scope();
            let _ = auth.signing_key("secret");
        }
        let uri = format!("/b/k?{}", text.replace(' ', "%20"));
        if let Ok(req) = http::Request::builder().uri(uri.as_str()).body(()) {
            let (parts, ()) = req.into_parts();
            if let Some(auth) = Authorization::from_query(&parts) {
                let _ = auth.expired(now);
                let _ = auth.amz_date(&parts);
                let _ = auth.verify(&parts, "UNSIGNED-PAYLOAD", "secret");
            }
        }
    });
}
