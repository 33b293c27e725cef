//! Fuzzing the API Gateway mapping: any request the gateway accepts becomes an event that
//! is valid JSON, and any bytes a function returns become a response or API Gateway's 502.

use std::time::SystemTime;

use nimbus_core::policy::StagePath;
use nimbus_core::{ApiKind, HttpMethod, HttpRoute};

use super::{EventContext, build_event, map_response};
use crate::gateway::routes::RouteTable;

const REQUEST_DICTIONARY: &[&[u8]] = &[
    b"\n",
    b": ",
    b"?",
    b"&",
    b"=",
    b"%",
    b"%ff",
    b"/",
    b"cookie: ",
    b"content-type: application/json\n",
    b"content-type: multipart/form-data\n",
    b"\xff\xfe",
    b"{proxy+}",
];

const RESPONSE_DICTIONARY: &[&[u8]] = &[
    b"\"statusCode\":",
    b"\"headers\":",
    b"\"multiValueHeaders\":",
    b"\"cookies\":",
    b"\"isBase64Encoded\":true",
    b"\"body\":",
    b"null",
    b"99999999999999999999",
    b"-1",
    b"\"\\u0000\"",
    b"[",
    b"{",
];

fn route(api: ApiKind, method: HttpMethod, path: &str) -> HttpRoute {
    HttpRoute {
        api,
        method,
        path: path.to_owned(),
        cors: true,
        authorizer: None,
        private: false,
        rate_limit: None,
    }
}

/// A request written as HTTP/1.1 text (request line, headers, blank line, body), or
/// `None` where `http` would not accept it, as hyper would not either.
fn parse_request(input: &[u8]) -> Option<(http::request::Parts, Vec<u8>)> {
    let split = input
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(input.len());
    let head = std::str::from_utf8(&input[..split]).ok()?;
    let body = input.get(split + 2..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let mut words = lines.next()?.split(' ');
    let mut builder = http::Request::builder()
        .method(words.next()?)
        .uri(words.next()?);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        builder = builder.header(name.trim(), value.trim());
    }
    let (parts, ()) = builder.body(()).ok()?.into_parts();
    Some((parts, body))
}

#[test]
fn fuzz_apigw_requests_become_json_events() {
    let table = RouteTable::new(vec![
        (0, route(ApiKind::Rest, HttpMethod::Any, "/items/{id}")),
        (1, route(ApiKind::Http, HttpMethod::Any, "/files/{path+}")),
        (
            2,
            route(
                ApiKind::Rest,
                HttpMethod::Named("POST".to_owned()),
                "/items",
            ),
        ),
        (3, route(ApiKind::Http, HttpMethod::Any, "*")),
    ]);
    nimbus_fuzz::fuzz("apigw-request", REQUEST_DICTIONARY, |input| {
        let Some((parts, body)) = parse_request(input) else {
            return;
        };
        for stage_path in [StagePath::Optional, StagePath::Required, StagePath::Off] {
            let Some(m) = table.select(&parts.method, parts.uri.path(), "dev", stage_path) else {
                continue;
            };
            let ctx = EventContext {
                request_id: "r",
                stage: "dev",
                source_ip: "127.0.0.1",
                time: SystemTime::now(),
                account_id: "123456789012",
                api_id: "nimbus",
                domain_name: "localhost",
                authorizer: None,
                api_key: None,
            };
            let event = build_event(&m, &parts, &body, &ctx);
            assert!(
                serde_json::from_slice::<serde_json::Value>(&event).is_ok(),
                "the event is not JSON"
            );
        }
    });
}

#[test]
fn fuzz_apigw_function_results_map_to_responses() {
    nimbus_fuzz::fuzz("apigw-response", RESPONSE_DICTIONARY, |payload| {
        for api in [ApiKind::Rest, ApiKind::Http] {
            let _ = map_response(api, payload);
        }
    });
}
