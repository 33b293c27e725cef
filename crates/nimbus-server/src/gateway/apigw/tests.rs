use std::time::{Duration, UNIX_EPOCH};

use expect_test::{Expect, expect};
use nimbus_core::policy::StagePath;
use nimbus_core::{ApiKind, HttpMethod, HttpRoute};

use super::{EventContext, add_cors_headers, build_event, map_response, preflight_response};
use crate::gateway::routes::RouteTable;

/// `route` is `<rest|http> <METHOD|ANY> <path>`; `request` is a request in HTTP/1.1
/// syntax: request line, headers, a blank line and the body.
fn check_event(route: &str, request: &str, expect: Expect) {
    check_event_bytes(route, request, &[], expect);
}

/// Like [`check_event`], with `extra_body` appended to the body, for bytes that are not
/// text.
fn check_event_bytes(route: &str, request: &str, extra_body: &[u8], expect: Expect) {
    let words: Vec<&str> = route.split_whitespace().collect();
    let api = match words[0] {
        "rest" => ApiKind::Rest,
        "http" => ApiKind::Http,
        other => panic!("unknown api {other}"),
    };
    let method = match words[1] {
        "ANY" => HttpMethod::Any,
        other => HttpMethod::Named(other.to_owned()),
    };
    let route = HttpRoute {
        api,
        method,
        path: words[2].to_owned(),
        cors: false,
        authorizer: None,
        private: false,
        rate_limit: None,
    };
    let table = RouteTable::new(vec![(0, route)]);

    let mut lines = request.trim().lines().map(str::trim);
    let head: Vec<&str> = lines.by_ref().take_while(|line| !line.is_empty()).collect();
    let body = lines.collect::<Vec<_>>().join("\n");
    let mut lines = head.into_iter();
    let request_line: Vec<&str> = lines.next().expect("request line").split(' ').collect();
    let mut builder = http::Request::builder()
        .method(request_line[0])
        .uri(request_line[1]);
    if request_line.get(2) == Some(&"HTTP/2") {
        builder = builder.version(http::Version::HTTP_2);
    }
    for line in lines {
        let (name, value) = line.split_once(':').expect("header line");
        builder = builder.header(name.trim(), value.trim());
    }
    let (parts, ()) = builder.body(()).expect("request").into_parts();
    let mut body = body.as_bytes().to_vec();
    body.extend_from_slice(extra_body);

    let m = table
        .select(&parts.method, parts.uri.path(), "dev", StagePath::Optional)
        .expect("the route matches the request");
    let ctx = EventContext {
        request_id: "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        stage: "dev",
        source_ip: "203.0.113.7",
        time: UNIX_EPOCH + Duration::from_millis(1_583_348_638_390),
        account_id: "123456789012",
        api_id: "nimbus",
        domain_name: "localhost:3000",
        authorizer: None,
        api_key: None,
    };
    let bytes = build_event(&m, &parts, &body, &ctx);
    let event: serde_json::Value = serde_json::from_slice(&bytes).expect("event is JSON");
    // The event is written in the key order a `Value` keeps (a function reading its
    // bytes sees what it saw when the event was built as a `Value`).
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        serde_json::to_string(&event).expect("JSON")
    );
    let pretty = serde_json::to_string_pretty(&event).expect("pretty JSON");
    expect.assert_eq(&pretty);
}

/// Shows the status, the headers and the body (lossy UTF-8), or the error.
fn check_response(api: ApiKind, payload: &str, expect: Expect) {
    let actual = match map_response(api, payload.as_bytes()) {
        Ok(response) => show_response(&response),
        Err(err) => format!("error: {err}"),
    };
    expect.assert_eq(&actual);
}

fn show_response(response: &http::Response<bytes::Bytes>) -> String {
    let mut out = format!("{}\n", response.status().as_u16());
    for (name, value) in response.headers() {
        out.push_str(&format!(
            "{name}: {}\n",
            value.to_str().unwrap_or("<binary>")
        ));
    }
    out.push('\n');
    out.push_str(&format!("{:?}", String::from_utf8_lossy(response.body())));
    out
}

fn check_preflight(request_headers: &[(&str, &str)], expect: Expect) {
    let mut headers = http::HeaderMap::new();
    for (name, value) in request_headers {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            http::HeaderValue::from_str(value).expect("value"),
        );
    }
    expect.assert_eq(&show_response(&preflight_response(&headers)));
}

// Events, REST API payload 1.0.

#[test]
fn rest_get_with_query() {
    check_event(
        "rest GET /items/{id}",
        "
        GET /dev/items/42?tag=a&tag=b%20c&q=x+y&empty&=skipped HTTP/1.1
        host: localhost:3000
        user-agent: curl/8.5.0
        accept: */*
        ",
        expect![[r#"
            {
              "body": null,
              "headers": {
                "accept": "*/*",
                "host": "localhost:3000",
                "user-agent": "curl/8.5.0"
              },
              "httpMethod": "GET",
              "isBase64Encoded": false,
              "multiValueHeaders": {
                "accept": [
                  "*/*"
                ],
                "host": [
                  "localhost:3000"
                ],
                "user-agent": [
                  "curl/8.5.0"
                ]
              },
              "multiValueQueryStringParameters": {
                "empty": [
                  ""
                ],
                "q": [
                  "x y"
                ],
                "tag": [
                  "a",
                  "b c"
                ]
              },
              "path": "/items/42",
              "pathParameters": {
                "id": "42"
              },
              "queryStringParameters": {
                "empty": "",
                "q": "x y",
                "tag": "b c"
              },
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "extendedRequestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "httpMethod": "GET",
                "identity": {
                  "accessKey": null,
                  "accountId": null,
                  "apiKey": null,
                  "apiKeyId": null,
                  "caller": null,
                  "cognitoAuthenticationProvider": null,
                  "cognitoAuthenticationType": null,
                  "cognitoIdentityId": null,
                  "cognitoIdentityPoolId": null,
                  "principalOrgId": null,
                  "sourceIp": "203.0.113.7",
                  "user": null,
                  "userAgent": "curl/8.5.0",
                  "userArn": null
                },
                "path": "/dev/items/42",
                "protocol": "HTTP/1.1",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "requestTime": "04/Mar/2020:19:03:58 +0000",
                "requestTimeEpoch": 1583348638390,
                "resourceId": "c2akz9",
                "resourcePath": "/items/{id}",
                "stage": "dev"
              },
              "resource": "/items/{id}",
              "stageVariables": null
            }"#]],
    );
}

#[test]
fn rest_post_with_json_body() {
    check_event(
        "rest POST /items",
        "
        POST /items HTTP/1.1
        host: localhost:3000
        content-type: application/json

        {\"name\": \"widget\"}
        ",
        expect![[r#"
            {
              "body": "{\"name\": \"widget\"}",
              "headers": {
                "content-type": "application/json",
                "host": "localhost:3000"
              },
              "httpMethod": "POST",
              "isBase64Encoded": false,
              "multiValueHeaders": {
                "content-type": [
                  "application/json"
                ],
                "host": [
                  "localhost:3000"
                ]
              },
              "multiValueQueryStringParameters": null,
              "path": "/items",
              "pathParameters": null,
              "queryStringParameters": null,
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "extendedRequestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "httpMethod": "POST",
                "identity": {
                  "accessKey": null,
                  "accountId": null,
                  "apiKey": null,
                  "apiKeyId": null,
                  "caller": null,
                  "cognitoAuthenticationProvider": null,
                  "cognitoAuthenticationType": null,
                  "cognitoIdentityId": null,
                  "cognitoIdentityPoolId": null,
                  "principalOrgId": null,
                  "sourceIp": "203.0.113.7",
                  "user": null,
                  "userAgent": null,
                  "userArn": null
                },
                "path": "/items",
                "protocol": "HTTP/1.1",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "requestTime": "04/Mar/2020:19:03:58 +0000",
                "requestTimeEpoch": 1583348638390,
                "resourceId": "u7x0lt",
                "resourcePath": "/items",
                "stage": "dev"
              },
              "resource": "/items",
              "stageVariables": null
            }"#]],
    );
}

#[test]
fn rest_multi_value_headers_and_cookie() {
    check_event(
        "rest ANY /{proxy+}",
        "
        DELETE /a/b%20c HTTP/2
        x-forwarded-for: 10.0.0.1
        x-forwarded-for: 10.0.0.2
        cookie: session=abc; theme=dark
        ",
        expect![[r#"
            {
              "body": null,
              "headers": {
                "cookie": "session=abc; theme=dark",
                "x-forwarded-for": "10.0.0.2"
              },
              "httpMethod": "DELETE",
              "isBase64Encoded": false,
              "multiValueHeaders": {
                "cookie": [
                  "session=abc; theme=dark"
                ],
                "x-forwarded-for": [
                  "10.0.0.1",
                  "10.0.0.2"
                ]
              },
              "multiValueQueryStringParameters": null,
              "path": "/a/b%20c",
              "pathParameters": {
                "proxy": "a/b c"
              },
              "queryStringParameters": null,
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "extendedRequestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "httpMethod": "DELETE",
                "identity": {
                  "accessKey": null,
                  "accountId": null,
                  "apiKey": null,
                  "apiKeyId": null,
                  "caller": null,
                  "cognitoAuthenticationProvider": null,
                  "cognitoAuthenticationType": null,
                  "cognitoIdentityId": null,
                  "cognitoIdentityPoolId": null,
                  "principalOrgId": null,
                  "sourceIp": "203.0.113.7",
                  "user": null,
                  "userAgent": null,
                  "userArn": null
                },
                "path": "/a/b%20c",
                "protocol": "HTTP/2.0",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "requestTime": "04/Mar/2020:19:03:58 +0000",
                "requestTimeEpoch": 1583348638390,
                "resourceId": "d50htb",
                "resourcePath": "/{proxy+}",
                "stage": "dev"
              },
              "resource": "/{proxy+}",
              "stageVariables": null
            }"#]],
    );
}

#[test]
fn rest_binary_body_is_base64() {
    check_event_bytes(
        "rest PUT /upload",
        "
        PUT /upload HTTP/1.1
        content-type: application/octet-stream

        ",
        &[0, 159, 146, 150, 255],
        expect![[r#"
            {
              "body": "AJ+Slv8=",
              "headers": {
                "content-type": "application/octet-stream"
              },
              "httpMethod": "PUT",
              "isBase64Encoded": true,
              "multiValueHeaders": {
                "content-type": [
                  "application/octet-stream"
                ]
              },
              "multiValueQueryStringParameters": null,
              "path": "/upload",
              "pathParameters": null,
              "queryStringParameters": null,
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "extendedRequestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "httpMethod": "PUT",
                "identity": {
                  "accessKey": null,
                  "accountId": null,
                  "apiKey": null,
                  "apiKeyId": null,
                  "caller": null,
                  "cognitoAuthenticationProvider": null,
                  "cognitoAuthenticationType": null,
                  "cognitoIdentityId": null,
                  "cognitoIdentityPoolId": null,
                  "principalOrgId": null,
                  "sourceIp": "203.0.113.7",
                  "user": null,
                  "userAgent": null,
                  "userArn": null
                },
                "path": "/upload",
                "protocol": "HTTP/1.1",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "requestTime": "04/Mar/2020:19:03:58 +0000",
                "requestTimeEpoch": 1583348638390,
                "resourceId": "bqgbvf",
                "resourcePath": "/upload",
                "stage": "dev"
              },
              "resource": "/upload",
              "stageVariables": null
            }"#]],
    );
}

#[test]
fn rest_text_body_with_binary_content_type_is_base64() {
    check_event(
        "rest POST /image",
        "
        POST /image HTTP/1.1
        content-type: image/svg+xml

        <svg/>",
        expect![[r#"
            {
              "body": "PHN2Zy8+",
              "headers": {
                "content-type": "image/svg+xml"
              },
              "httpMethod": "POST",
              "isBase64Encoded": true,
              "multiValueHeaders": {
                "content-type": [
                  "image/svg+xml"
                ]
              },
              "multiValueQueryStringParameters": null,
              "path": "/image",
              "pathParameters": null,
              "queryStringParameters": null,
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "extendedRequestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "httpMethod": "POST",
                "identity": {
                  "accessKey": null,
                  "accountId": null,
                  "apiKey": null,
                  "apiKeyId": null,
                  "caller": null,
                  "cognitoAuthenticationProvider": null,
                  "cognitoAuthenticationType": null,
                  "cognitoIdentityId": null,
                  "cognitoIdentityPoolId": null,
                  "principalOrgId": null,
                  "sourceIp": "203.0.113.7",
                  "user": null,
                  "userAgent": null,
                  "userArn": null
                },
                "path": "/image",
                "protocol": "HTTP/1.1",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "requestTime": "04/Mar/2020:19:03:58 +0000",
                "requestTimeEpoch": 1583348638390,
                "resourceId": "fldrro",
                "resourcePath": "/image",
                "stage": "dev"
              },
              "resource": "/image",
              "stageVariables": null
            }"#]],
    );
}

#[test]
fn rest_non_utf8_body_is_base64_whatever_the_content_type() {
    check_event_bytes(
        "rest POST /form",
        "
        POST /form HTTP/1.1
        content-type: text/plain

        ",
        &[0xff, 0xfe],
        expect![[r#"
            {
              "body": "//4=",
              "headers": {
                "content-type": "text/plain"
              },
              "httpMethod": "POST",
              "isBase64Encoded": true,
              "multiValueHeaders": {
                "content-type": [
                  "text/plain"
                ]
              },
              "multiValueQueryStringParameters": null,
              "path": "/form",
              "pathParameters": null,
              "queryStringParameters": null,
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "extendedRequestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "httpMethod": "POST",
                "identity": {
                  "accessKey": null,
                  "accountId": null,
                  "apiKey": null,
                  "apiKeyId": null,
                  "caller": null,
                  "cognitoAuthenticationProvider": null,
                  "cognitoAuthenticationType": null,
                  "cognitoIdentityId": null,
                  "cognitoIdentityPoolId": null,
                  "principalOrgId": null,
                  "sourceIp": "203.0.113.7",
                  "user": null,
                  "userAgent": null,
                  "userArn": null
                },
                "path": "/form",
                "protocol": "HTTP/1.1",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "requestTime": "04/Mar/2020:19:03:58 +0000",
                "requestTimeEpoch": 1583348638390,
                "resourceId": "0mzut1",
                "resourcePath": "/form",
                "stage": "dev"
              },
              "resource": "/form",
              "stageVariables": null
            }"#]],
    );
}

// Events, HTTP API payload 2.0.

#[test]
fn http_get_with_query_and_cookies() {
    check_event(
        "http GET /items/{id}",
        "
        GET /items/caf%C3%A9?tag=a&tag=b%20c&q=x+y HTTP/1.1
        host: localhost:3000
        user-agent: curl/8.5.0
        cookie: session=abc; theme=dark
        cookie: lang=en
        x-forwarded-for: 10.0.0.1
        x-forwarded-for: 10.0.0.2
        ",
        expect![[r#"
            {
              "cookies": [
                "session=abc",
                "theme=dark",
                "lang=en"
              ],
              "headers": {
                "host": "localhost:3000",
                "user-agent": "curl/8.5.0",
                "x-forwarded-for": "10.0.0.1,10.0.0.2"
              },
              "isBase64Encoded": false,
              "pathParameters": {
                "id": "café"
              },
              "queryStringParameters": {
                "q": "x y",
                "tag": "a,b c"
              },
              "rawPath": "/items/caf%C3%A9",
              "rawQueryString": "tag=a&tag=b%20c&q=x+y",
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "http": {
                  "method": "GET",
                  "path": "/items/caf%C3%A9",
                  "protocol": "HTTP/1.1",
                  "sourceIp": "203.0.113.7",
                  "userAgent": "curl/8.5.0"
                },
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "routeKey": "GET /items/{id}",
                "stage": "$default",
                "time": "04/Mar/2020:19:03:58 +0000",
                "timeEpoch": 1583348638390
              },
              "routeKey": "GET /items/{id}",
              "version": "2.0"
            }"#]],
    );
}

#[test]
fn http_post_with_json_body() {
    check_event(
        "http POST /items",
        "
        POST /items HTTP/1.1
        content-type: application/json; charset=utf-8

        {\"name\": \"widget\"}",
        expect![[r#"
            {
              "body": "{\"name\": \"widget\"}",
              "headers": {
                "content-type": "application/json; charset=utf-8"
              },
              "isBase64Encoded": false,
              "rawPath": "/items",
              "rawQueryString": "",
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "http": {
                  "method": "POST",
                  "path": "/items",
                  "protocol": "HTTP/1.1",
                  "sourceIp": "203.0.113.7",
                  "userAgent": ""
                },
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "routeKey": "POST /items",
                "stage": "$default",
                "time": "04/Mar/2020:19:03:58 +0000",
                "timeEpoch": 1583348638390
              },
              "routeKey": "POST /items",
              "version": "2.0"
            }"#]],
    );
}

#[test]
fn http_form_body_is_base64() {
    check_event(
        "http POST /form",
        "
        POST /form HTTP/1.1
        content-type: application/x-www-form-urlencoded

        a=1&b=2",
        expect![[r#"
            {
              "body": "YT0xJmI9Mg==",
              "headers": {
                "content-type": "application/x-www-form-urlencoded"
              },
              "isBase64Encoded": true,
              "rawPath": "/form",
              "rawQueryString": "",
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "http": {
                  "method": "POST",
                  "path": "/form",
                  "protocol": "HTTP/1.1",
                  "sourceIp": "203.0.113.7",
                  "userAgent": ""
                },
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "routeKey": "POST /form",
                "stage": "$default",
                "time": "04/Mar/2020:19:03:58 +0000",
                "timeEpoch": 1583348638390
              },
              "routeKey": "POST /form",
              "version": "2.0"
            }"#]],
    );
}

#[test]
fn http_binary_body_is_base64() {
    check_event_bytes(
        "http PUT /upload",
        "
        PUT /upload HTTP/1.1
        content-type: image/png

        ",
        &[0x89, b'P', b'N', b'G'],
        expect![[r#"
            {
              "body": "iVBORw==",
              "headers": {
                "content-type": "image/png"
              },
              "isBase64Encoded": true,
              "rawPath": "/upload",
              "rawQueryString": "",
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "http": {
                  "method": "PUT",
                  "path": "/upload",
                  "protocol": "HTTP/1.1",
                  "sourceIp": "203.0.113.7",
                  "userAgent": ""
                },
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "routeKey": "PUT /upload",
                "stage": "$default",
                "time": "04/Mar/2020:19:03:58 +0000",
                "timeEpoch": 1583348638390
              },
              "routeKey": "PUT /upload",
              "version": "2.0"
            }"#]],
    );
}

#[test]
fn http_catch_all_route_key_is_default() {
    check_event(
        "http ANY *",
        "
        PATCH / HTTP/1.1
        ",
        expect![[r#"
            {
              "headers": {},
              "isBase64Encoded": false,
              "rawPath": "/",
              "rawQueryString": "",
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "http": {
                  "method": "PATCH",
                  "path": "/",
                  "protocol": "HTTP/1.1",
                  "sourceIp": "203.0.113.7",
                  "userAgent": ""
                },
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "routeKey": "$default",
                "stage": "$default",
                "time": "04/Mar/2020:19:03:58 +0000",
                "timeEpoch": 1583348638390
              },
              "routeKey": "$default",
              "version": "2.0"
            }"#]],
    );
}

#[test]
fn http_greedy_route() {
    check_event(
        "http ANY /api/{proxy+}",
        "
        GET /api/v1/users/ HTTP/1.1
        ",
        expect![[r#"
            {
              "headers": {},
              "isBase64Encoded": false,
              "pathParameters": {
                "proxy": "v1/users/"
              },
              "rawPath": "/api/v1/users/",
              "rawQueryString": "",
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "http": {
                  "method": "GET",
                  "path": "/api/v1/users/",
                  "protocol": "HTTP/1.1",
                  "sourceIp": "203.0.113.7",
                  "userAgent": ""
                },
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "routeKey": "ANY /api/{proxy+}",
                "stage": "$default",
                "time": "04/Mar/2020:19:03:58 +0000",
                "timeEpoch": 1583348638390
              },
              "routeKey": "ANY /api/{proxy+}",
              "version": "2.0"
            }"#]],
    );
}

// Responses, REST API payload 1.0.

#[test]
fn rest_full_response() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 201, "headers": {"Content-Type": "text/plain", "X-Count": 3, "X-Ok": true}, "body": "created", "isBase64Encoded": false}"#,
        expect![[r#"
            201
            content-type: text/plain
            x-count: 3
            x-ok: true

            "created""#]],
    );
}

#[test]
fn rest_multi_value_headers_merge_with_headers() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 200, "headers": {"X-A": "single", "X-B": "b"}, "multiValueHeaders": {"X-A": ["one", "two"], "Set-Cookie": ["a=1", "b=2"]}, "body": "{}"}"#,
        expect![[r#"
            200
            set-cookie: a=1
            set-cookie: b=2
            x-a: one
            x-a: two
            x-b: b
            content-type: application/json

            "{}""#]],
    );
}

#[test]
fn rest_base64_body_is_decoded() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 200, "headers": {"content-type": "application/octet-stream"}, "body": "aGVsbG8=", "isBase64Encoded": true}"#,
        expect![[r#"
            200
            content-type: application/octet-stream

            "hello""#]],
    );
}

#[test]
fn rest_minimal_response_defaults_to_json() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 204}"#,
        expect![[r#"
        204
        content-type: application/json

        """#]],
    );
}

#[test]
fn rest_null_content_type_suppresses_default() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 204, "headers": {"Content-Type": null}, "body": null}"#,
        expect![[r#"
            204

            """#]],
    );
}

#[test]
fn rest_ignores_cookies_field() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 200, "cookies": ["a=1"], "body": "x"}"#,
        expect![[r#"
            200
            content-type: application/json

            "x""#]],
    );
}

#[test]
fn rest_rejects_non_json() {
    check_response(
        ApiKind::Rest,
        "hello",
        expect!["error: the function's result is not JSON"],
    );
}

#[test]
fn rest_rejects_bare_string() {
    check_response(
        ApiKind::Rest,
        r#""hello""#,
        expect!["error: the function's result is not a JSON object"],
    );
}

#[test]
fn rest_rejects_missing_status_code() {
    check_response(
        ApiKind::Rest,
        r#"{"body": "x"}"#,
        expect!["error: statusCode must be an integer 100-599"],
    );
}

#[test]
fn rest_rejects_string_status_code() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": "200"}"#,
        expect!["error: statusCode must be an integer 100-599"],
    );
}

#[test]
fn rest_rejects_status_code_out_of_range() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 600}"#,
        expect!["error: statusCode must be an integer 100-599"],
    );
}

#[test]
fn rest_rejects_object_body() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 200, "body": {"a": 1}}"#,
        expect!["error: body must be a string"],
    );
}

#[test]
fn rest_rejects_bad_base64() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 200, "body": "not base64!", "isBase64Encoded": true}"#,
        expect!["error: body is not valid base64"],
    );
}

#[test]
fn rest_rejects_string_is_base64_encoded() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 200, "body": "x", "isBase64Encoded": "true"}"#,
        expect!["error: isBase64Encoded must be a boolean"],
    );
}

#[test]
fn rest_rejects_bad_header_name() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 200, "headers": {"bad header": "x"}}"#,
        expect![[r#"error: "bad header" is not a valid header name"#]],
    );
}

#[test]
fn rest_rejects_object_header_value() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 200, "headers": {"x-a": {"b": 1}}}"#,
        expect!["error: the value of header x-a must be a string"],
    );
}

#[test]
fn rest_rejects_newline_in_header_value() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 200, "headers": {"x-a": "a\r\nb: c"}}"#,
        expect!["error: the value of header x-a is not valid"],
    );
}

#[test]
fn rest_rejects_string_multi_value_header() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 200, "multiValueHeaders": {"x-a": "one"}}"#,
        expect!["error: multiValueHeaders.x-a must be an array"],
    );
}

#[test]
fn rest_rejects_array_headers() {
    check_response(
        ApiKind::Rest,
        r#"{"statusCode": 200, "headers": ["x"]}"#,
        expect!["error: headers must be an object"],
    );
}

// Responses, HTTP API payload 2.0.

#[test]
fn http_full_response_with_cookies() {
    check_response(
        ApiKind::Http,
        r#"{"statusCode": 302, "headers": {"location": "/login"}, "cookies": ["a=1; Path=/", "b=2; HttpOnly"], "body": ""}"#,
        expect![[r#"
            302
            location: /login
            set-cookie: a=1; Path=/
            set-cookie: b=2; HttpOnly
            content-type: text/plain; charset=utf-8

            """#]],
    );
}

#[test]
fn http_object_response_defaults_to_text() {
    check_response(
        ApiKind::Http,
        r#"{"statusCode": 200, "body": "hi"}"#,
        expect![[r#"
        200
        content-type: text/plain; charset=utf-8

        "hi""#]],
    );
}

#[test]
fn http_ignores_multi_value_headers() {
    check_response(
        ApiKind::Http,
        r#"{"statusCode": 200, "multiValueHeaders": {"content-type": ["application/json"]}, "body": "{}"}"#,
        expect![[r#"
            200
            content-type: text/plain; charset=utf-8

            "{}""#]],
    );
}

#[test]
fn http_base64_body_is_decoded() {
    check_response(
        ApiKind::Http,
        r#"{"statusCode": 200, "headers": {"content-type": "image/png"}, "body": "iVBORw==", "isBase64Encoded": true}"#,
        expect![[r#"
            200
            content-type: image/png

            "�PNG""#]],
    );
}

#[test]
fn http_bare_object_is_the_body() {
    check_response(
        ApiKind::Http,
        r#"{ "message": "Hello from Lambda!" }"#,
        expect![[r#"
        200
        content-type: application/json

        "{ \"message\": \"Hello from Lambda!\" }""#]],
    );
}

#[test]
fn http_bare_string_is_the_body() {
    check_response(
        ApiKind::Http,
        r#""Hello from Lambda!""#,
        expect![[r#"
        200
        content-type: application/json

        "Hello from Lambda!""#]],
    );
}

#[test]
fn http_bare_array_is_the_body() {
    check_response(
        ApiKind::Http,
        "[1, 2]",
        expect![[r#"
        200
        content-type: application/json

        "[1, 2]""#]],
    );
}

#[test]
fn http_bare_null_is_the_body() {
    check_response(
        ApiKind::Http,
        "null",
        expect![[r#"
        200
        content-type: application/json

        "null""#]],
    );
}

#[test]
fn http_rejects_non_json() {
    check_response(
        ApiKind::Http,
        "Hello",
        expect!["error: the function's result is not JSON"],
    );
}

#[test]
fn http_rejects_bad_status_code() {
    check_response(
        ApiKind::Http,
        r#"{"statusCode": 99}"#,
        expect!["error: statusCode must be an integer 100-599"],
    );
}

#[test]
fn http_rejects_non_string_cookie() {
    check_response(
        ApiKind::Http,
        r#"{"statusCode": 200, "cookies": [1]}"#,
        expect!["error: cookies must be strings"],
    );
}

#[test]
fn http_rejects_cookies_string() {
    check_response(
        ApiKind::Http,
        r#"{"statusCode": 200, "cookies": "a=1"}"#,
        expect!["error: cookies must be an array of strings"],
    );
}

// CORS.

#[test]
fn preflight_with_defaults() {
    check_preflight(
        &[],
        expect![[r#"
        204
        access-control-allow-origin: *
        access-control-allow-methods: OPTIONS,GET,POST,PUT,PATCH,DELETE,HEAD
        access-control-allow-headers: Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token,X-Amz-User-Agent,X-Amzn-Trace-Id
        access-control-max-age: 600

        """#]],
    );
}

#[test]
fn preflight_adds_requested_headers_and_method() {
    check_preflight(
        &[
            ("access-control-request-method", "PROPFIND"),
            (
                "access-control-request-headers",
                "content-type, x-custom, X-Other",
            ),
        ],
        expect![[r#"
            204
            access-control-allow-origin: *
            access-control-allow-methods: OPTIONS,GET,POST,PUT,PATCH,DELETE,HEAD,PROPFIND
            access-control-allow-headers: Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token,X-Amz-User-Agent,X-Amzn-Trace-Id,x-custom,X-Other
            access-control-max-age: 600

            """#]],
    );
}

#[test]
fn cors_origin_added_when_missing() {
    let mut headers = http::HeaderMap::new();
    add_cors_headers(&mut headers);
    expect![[r#"
        {
            "access-control-allow-origin": "*",
        }
    "#]]
    .assert_debug_eq(&headers);
}

#[test]
fn cors_origin_kept_when_set_by_function() {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        http::HeaderValue::from_static("https://example.com"),
    );
    add_cors_headers(&mut headers);
    expect![[r#"
        {
            "access-control-allow-origin": "https://example.com",
        }
    "#]]
    .assert_debug_eq(&headers);
}

// Time formatting.

#[test]
fn clf_time_formats() {
    let show = |secs: u64| super::clf_time(UNIX_EPOCH + Duration::from_secs(secs));
    expect![[r#"01/Jan/1970:00:00:00 +0000"#]].assert_eq(&show(0));
    expect![[r#"09/Apr/2015:12:34:56 +0000"#]].assert_eq(&show(1_428_582_896));
    expect![[r#"29/Feb/2024:23:59:59 +0000"#]].assert_eq(&show(1_709_251_199));
    expect![[r#"01/Mar/2100:00:00:00 +0000"#]].assert_eq(&show(4_107_542_400));
}
