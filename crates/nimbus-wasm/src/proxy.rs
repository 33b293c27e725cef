//! API Gateway events to HTTP requests and HTTP responses to Lambda proxy responses, so
//! wasi:http components see the request the gateway received and the gateway maps
//! their answer like any function's.

// The event and response shapes are API Gateway's proxy integration formats 1.0 (REST)
// and 2.0 (HTTP API), as `nimbus_server::gateway::apigw` builds and maps them.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// Why an event cannot be turned into an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotHttpEvent(pub(crate) String);

/// The HTTP request an API Gateway event (payload 1.0 or 2.0) stands for.
pub(crate) fn request_from_event(payload: &[u8]) -> Result<http::Request<Bytes>, NotHttpEvent> {
    let Ok(value) = serde_json::from_slice::<Value>(payload) else {
        return Err(NotHttpEvent(
            "an http component takes API Gateway events (REST payload 1.0 or HTTP API 2.0); the event is not JSON".to_owned(),
        ));
    };
    let Value::Object(event) = &value else {
        return Err(NotHttpEvent(
            "an http component takes API Gateway events (REST payload 1.0 or HTTP API 2.0); the event is not a JSON object".to_owned(),
        ));
    };
    let v2 = event.get("version").and_then(Value::as_str) == Some("2.0");
    let (method, path, query) = if v2 {
        let method = value
            .pointer("/requestContext/http/method")
            .and_then(Value::as_str);
        let path = event.get("rawPath").and_then(Value::as_str);
        let query = event
            .get("rawQueryString")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        (method, path, query)
    } else {
        let method = event.get("httpMethod").and_then(Value::as_str);
        let path = event.get("path").and_then(Value::as_str);
        (method, path, rest_query(event))
    };
    let (Some(method), Some(path)) = (method, path) else {
        let wanted = if v2 {
            "requestContext.http.method and rawPath"
        } else {
            "httpMethod and path"
        };
        return Err(NotHttpEvent(format!(
            "an http component takes API Gateway events (REST payload 1.0 or HTTP API 2.0); this event has no {wanted}"
        )));
    };

    let mut headers: Vec<(String, String)> = Vec::new();
    if !v2 && let Some(Value::Object(multi)) = event.get("multiValueHeaders") {
        for (name, values) in multi {
            for value in values.as_array().into_iter().flatten() {
                if let Some(value) = value.as_str() {
                    headers.push((name.clone(), value.to_owned()));
                }
            }
        }
    }
    if headers.is_empty()
        && let Some(Value::Object(single)) = event.get("headers")
    {
        for (name, value) in single {
            if let Some(value) = value.as_str() {
                headers.push((name.clone(), value.to_owned()));
            }
        }
    }
    if v2 && let Some(Value::Array(cookies)) = event.get("cookies") {
        let cookies: Vec<&str> = cookies.iter().filter_map(Value::as_str).collect();
        if !cookies.is_empty() {
            headers.push(("cookie".to_owned(), cookies.join("; ")));
        }
    }
    let host = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.clone())
        .or_else(|| {
            value
                .pointer("/requestContext/domainName")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "localhost".to_owned());

    let body = match event.get("body") {
        Some(Value::String(text)) if event.get("isBase64Encoded") == Some(&Value::Bool(true)) => {
            match BASE64.decode(text) {
                Ok(bytes) => Bytes::from(bytes),
                Err(_) => {
                    return Err(NotHttpEvent(
                        "the event's body is marked isBase64Encoded but is not base64".to_owned(),
                    ));
                }
            }
        }
        Some(Value::String(text)) => Bytes::from(text.clone()),
        _ => Bytes::new(),
    };

    let target = if query.is_empty() {
        format!("http://{host}{path}")
    } else {
        format!("http://{host}{path}?{query}")
    };
    let mut builder = http::Request::builder().method(method).uri(target);
    for (name, value) in &headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(body)
        .map_err(|e| NotHttpEvent(format!("the event is not a valid HTTP request: {e}")))
}

/// The Lambda proxy response for an HTTP response, read by the gateway for both API
/// kinds: `headers` for single values, `multiValueHeaders` (REST) and `cookies` (HTTP
/// API) for repeated ones and `Set-Cookie`; the body base64-encoded unless it is UTF-8.
pub(crate) fn proxy_response(parts: &http::response::Parts, body: &[u8]) -> Vec<u8> {
    let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::SET_COOKIE {
            cookies.push(Value::from(value.clone()));
        }
        multi
            .entry(name.as_str().to_owned())
            .or_default()
            .push(value);
    }
    let mut headers = Map::new();
    for (name, values) in &multi {
        if name != http::header::SET_COOKIE.as_str() {
            headers.insert(name.clone(), Value::from(values.join(", ")));
        }
    }
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (BASE64.encode(body), true),
    };
    let response = json!({
        "statusCode": parts.status.as_u16(),
        "headers": headers,
        "multiValueHeaders": multi,
        "cookies": cookies,
        "body": body,
        "isBase64Encoded": is_base64,
    });
    serde_json::to_vec(&response).expect("a serde_json::Value always serializes")
}

/// The query string of a REST event, re-encoded from its decoded parameters.
fn rest_query(event: &Map<String, Value>) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(multi)) = event.get("multiValueQueryStringParameters") {
        for (key, values) in multi {
            for value in values.as_array().into_iter().flatten() {
                if let Some(value) = value.as_str() {
                    pairs.push((key.clone(), value.to_owned()));
                }
            }
        }
    } else if let Some(Value::Object(single)) = event.get("queryStringParameters") {
        for (key, value) in single {
            if let Some(value) = value.as_str() {
                pairs.push((key.clone(), value.to_owned()));
            }
        }
    }
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(payload: &str) -> String {
        match request_from_event(payload.as_bytes()) {
            Ok(req) => {
                let mut out = format!("{} {}\n", req.method(), req.uri());
                for (name, value) in req.headers() {
                    out.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
                }
                out.push_str(&format!("body {:?}", req.body()));
                out
            }
            Err(NotHttpEvent(message)) => format!("error: {message}"),
        }
    }

    #[test]
    fn http_api_events_become_requests() {
        let event = r#"{"version":"2.0","rawPath":"/a b","rawQueryString":"x=1&y=%20","cookies":["a=1","b=2"],
            "headers":{"host":"h:3000","content-type":"text/plain"},
            "requestContext":{"http":{"method":"POST"}},"body":"aGk=","isBase64Encoded":true}"#;
        expect_test::expect![[r#"
            error: the event is not a valid HTTP request: invalid uri character"#]]
        .assert_eq(&describe(event));
        let event = event.replace("/a b", "/a%20b");
        expect_test::expect![[r#"
            POST http://h:3000/a%20b?x=1&y=%20
            content-type: text/plain
            host: h:3000
            cookie: a=1; b=2
            body b"hi""#]]
        .assert_eq(&describe(&event));
    }

    #[test]
    fn rest_events_become_requests() {
        let event = r#"{"httpMethod":"GET","path":"/p","headers":{"x":"last"},
            "multiValueHeaders":{"x":["first","last"]},
            "queryStringParameters":{"q":"b"},"multiValueQueryStringParameters":{"q":["a c","b"]},
            "requestContext":{"domainName":"example.test"},"body":null,"isBase64Encoded":false}"#;
        expect_test::expect![[r#"
            GET http://example.test/p?q=a%20c&q=b
            x: first
            x: last
            body b"""#]]
        .assert_eq(&describe(event));
    }

    #[test]
    fn other_events_are_refused() {
        expect_test::expect![[r#"error: an http component takes API Gateway events (REST payload 1.0 or HTTP API 2.0); this event has no httpMethod and path"#]]
            .assert_eq(&describe(r#"{"Records":[]}"#));
        expect_test::expect![[r#"error: an http component takes API Gateway events (REST payload 1.0 or HTTP API 2.0); the event is not a JSON object"#]]
            .assert_eq(&describe("[1]"));
    }

    #[test]
    fn responses_become_proxy_responses() {
        let response = http::Response::builder()
            .status(201)
            .header("content-type", "text/plain")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .header("x-many", "1")
            .header("x-many", "2")
            .body(())
            .expect("valid response");
        let (parts, ()) = response.into_parts();
        let text = String::from_utf8(proxy_response(&parts, b"hi")).unwrap_or_default();
        expect_test::expect![[r#"{"body":"hi","cookies":["a=1","b=2"],"headers":{"content-type":"text/plain","x-many":"1, 2"},"isBase64Encoded":false,"multiValueHeaders":{"content-type":["text/plain"],"set-cookie":["a=1","b=2"],"x-many":["1","2"]},"statusCode":201}"#]]
            .assert_eq(&text);
        let text = String::from_utf8(proxy_response(&parts, &[0xff, 0])).unwrap_or_default();
        assert!(text.contains(r#""body":"/wA=","#), "{text}");
        assert!(text.contains(r#""isBase64Encoded":true"#), "{text}");
    }
}
