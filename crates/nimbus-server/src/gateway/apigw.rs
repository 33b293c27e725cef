//! API Gateway's Lambda proxy events and responses, so Lambda handlers run unchanged.

// REST APIs (`http` events) use the proxy integration format 1.0:
// https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html
// HTTP APIs (`httpApi` events) use payload format 2.0:
// https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use nimbus_core::ApiKind;
use percent_encoding::percent_decode;
use serde_json::{Map, Value, json};

use super::routes::RouteMatch;

/// What an event says about the request beyond the request itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventContext<'a> {
    /// `requestContext.requestId` (and `extendedRequestId` for REST APIs).
    pub(crate) request_id: &'a str,
    /// The REST API stage, for example `dev`. HTTP API events always name the `$default`
    /// stage, the only one the Serverless Framework deploys `httpApi` routes to.
    pub(crate) stage: &'a str,
    /// The client's address, without port.
    pub(crate) source_ip: &'a str,
    /// When the gateway received the request.
    pub(crate) time: SystemTime,
    /// `requestContext.accountId`; AWS's documentation uses `123456789012`.
    pub(crate) account_id: &'a str,
    /// `requestContext.apiId`.
    pub(crate) api_id: &'a str,
    /// The `Host` header, or `127.0.0.1:<port>` when the client sent none.
    pub(crate) domain_name: &'a str,
    /// `requestContext.authorizer`, from the route's authorizer.
    pub(crate) authorizer: Option<&'a Value>,
    /// The API key of a `private` route: (name, value), for `requestContext.identity`.
    pub(crate) api_key: Option<(&'a str, &'a str)>,
}

/// Why a function's payload is not a response API Gateway accepts; the gateway answers
/// 502 `{"message": "Internal server error"}` as API Gateway does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadResponse {
    message: String,
}

/// `Access-Control-Allow-Headers` of the Serverless Framework's `cors: true`.
const CORS_DEFAULT_HEADERS: [&str; 7] = [
    "Content-Type",
    "X-Amz-Date",
    "Authorization",
    "X-Api-Key",
    "X-Amz-Security-Token",
    "X-Amz-User-Agent",
    "X-Amzn-Trace-Id",
];

const CORS_DEFAULT_METHODS: [&str; 7] =
    ["OPTIONS", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// How long browsers may cache a preflight answer. Short, so that route changes during
/// development take effect quickly.
const CORS_MAX_AGE_SECS: &str = "600";

/// The event API Gateway would send the route's function for this request, as JSON.
pub(crate) fn build_event(
    m: &RouteMatch<'_>,
    parts: &http::request::Parts,
    body: &[u8],
    ctx: &EventContext<'_>,
) -> Vec<u8> {
    let res = match m.route.api {
        ApiKind::Rest => serde_json::to_vec(&rest_event(m, parts, body, ctx)),
        ApiKind::Http => serde_json::to_vec(&HttpEvent::new(m, parts, body, ctx)),
    };
    res.expect("an event of strings, numbers and JSON values always serializes")
}

/// The event of `api`'s shape for a request without its body: what Lambda authorizers
/// of the REQUEST type start from.
pub(super) fn request_event(
    api: ApiKind,
    m: &RouteMatch<'_>,
    parts: &http::request::Parts,
    ctx: &EventContext<'_>,
) -> Map<String, Value> {
    let event = match api {
        ApiKind::Rest => rest_event(m, parts, &[], ctx),
        ApiKind::Http => http_event(m, parts, &[], ctx),
    };
    let Value::Object(mut fields) = event else {
        unreachable!("json! with braces builds an object");
    };
    fields.remove("body");
    fields.remove("isBase64Encoded");
    fields
}

/// An HTTP API route's key: `GET /items/{id}`, or `$default` for the catch-all.
pub(super) fn route_key(route: &nimbus_core::HttpRoute) -> String {
    match (&route.method, route.path.as_str()) {
        (_, "*") => "$default".to_owned(),
        (method, path) => format!("{method} {path}"),
    }
}

/// Turns a function's result into the HTTP response API Gateway would send.
pub(crate) fn map_response(
    api: ApiKind,
    payload: &[u8],
) -> Result<http::Response<Bytes>, BadResponse> {
    let Ok(value) = serde_json::from_slice::<Value>(payload) else {
        return Err(BadResponse::new("the function's result is not JSON"));
    };
    match api {
        ApiKind::Rest => {
            let Value::Object(object) = value else {
                return Err(BadResponse::new(
                    "the function's result is not a JSON object",
                ));
            };
            response_from_object(api, &object)
        }
        ApiKind::Http => match value {
            Value::Object(object) if object.contains_key("statusCode") => {
                response_from_object(api, &object)
            }
            // Payload 2.0 infers a response from any other valid JSON: status 200,
            // `application/json`, and the result as the body, where a JSON string stands
            // for its own text ("Lambda function response for format 2.0").
            Value::String(text) => Ok(inferred_response(Bytes::from(text))),
            _ => Ok(inferred_response(Bytes::copy_from_slice(payload))),
        },
    }
}

/// The gateway's answer to a CORS preflight (`OPTIONS`) request for a `cors: true` route,
/// with the Serverless Framework's defaults for `cors: true`.
pub(crate) fn preflight_response(request_headers: &HeaderMap) -> http::Response<Bytes> {
    let mut methods = CORS_DEFAULT_METHODS.join(",");
    if let Some(requested) = header_str(request_headers, header::ACCESS_CONTROL_REQUEST_METHOD) {
        let requested = requested.trim();
        if !requested.is_empty()
            && !CORS_DEFAULT_METHODS
                .iter()
                .any(|m| m.eq_ignore_ascii_case(requested))
        {
            methods.push(',');
            methods.push_str(requested);
        }
    }
    let mut allow_headers = CORS_DEFAULT_HEADERS.join(",");
    if let Some(requested) = header_str(request_headers, header::ACCESS_CONTROL_REQUEST_HEADERS) {
        for name in requested
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let known = allow_headers
                .split(',')
                .any(|h| h.eq_ignore_ascii_case(name));
            if !known {
                allow_headers.push(',');
                allow_headers.push_str(name);
            }
        }
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    // The values come from a `HeaderValue` or from constants, so they stay valid.
    if let Ok(value) = HeaderValue::from_str(&methods) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, value);
    }
    if let Ok(value) = HeaderValue::from_str(&allow_headers) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(CORS_MAX_AGE_SECS),
    );
    let mut response = http::Response::new(Bytes::new());
    *response.status_mut() = http::StatusCode::NO_CONTENT;
    *response.headers_mut() = headers;
    response
}

/// Adds `Access-Control-Allow-Origin: *` to a `cors: true` route's response unless the
/// function set it. HTTP APIs do this themselves; for REST APIs AWS leaves it to the
/// function, and nimbus adds it too so that browsers accept the answer to a preflight
/// the gateway approved.
pub(crate) fn add_cors_headers(headers: &mut HeaderMap) {
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
}

impl BadResponse {
    fn new(message: impl Into<String>) -> BadResponse {
        BadResponse {
            message: message.into(),
        }
    }
}

impl fmt::Display for BadResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BadResponse {}

/// Proxy integration input format 1.0 ("Input format of a Lambda function for proxy
/// integration").
fn rest_event(
    m: &RouteMatch<'_>,
    parts: &http::request::Parts,
    body: &[u8],
    ctx: &EventContext<'_>,
) -> Value {
    // At `/{stage}/items`, API Gateway's `path` is `/items` and `requestContext.path` the
    // path as requested; at `/items` (as behind a custom domain) both are `/items`.
    let request_path = parts.uri.path();
    let path = match m.url_stage {
        Some(stage) => super::routes::strip_stage(request_path, stage).unwrap_or(request_path),
        None => request_path,
    };
    let query = parse_query(parts.uri.query().unwrap_or_default());

    // Single-value maps hold the last value, as API Gateway's example shows for a
    // repeated query parameter. hyper hands us lower-case header names.
    let mut headers = Map::new();
    let mut multi_headers: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers.insert(name.as_str().to_owned(), Value::from(value.clone()));
        multi_headers
            .entry(name.as_str())
            .or_default()
            .push(Value::from(value));
    }
    let mut query_params = Map::new();
    let mut multi_query: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (key, value) in &query {
        query_params.insert(key.clone(), Value::from(value.as_str()));
        multi_query
            .entry(key.as_str())
            .or_default()
            .push(Value::from(value.as_str()));
    }

    let (body, is_base64) = match event_body(body, rest_body_is_binary(&parts.headers)) {
        None => (Value::Null, false),
        Some((body, is_base64)) => (body, is_base64),
    };
    let user_agent = header_str(&parts.headers, header::USER_AGENT);

    let mut event = json!({
        "resource": m.route.path,
        "path": path,
        "httpMethod": parts.method.as_str(),
        "headers": object_or_null(headers),
        "multiValueHeaders": object_or_null(into_object(multi_headers)),
        "queryStringParameters": object_or_null(query_params),
        "multiValueQueryStringParameters": object_or_null(into_object(multi_query)),
        "pathParameters": object_or_null(path_params(m)),
        "stageVariables": null,
        "requestContext": {
            "accountId": ctx.account_id,
            "apiId": ctx.api_id,
            "domainName": ctx.domain_name,
            "domainPrefix": domain_prefix(ctx.domain_name),
            "extendedRequestId": ctx.request_id,
            "httpMethod": parts.method.as_str(),
            "identity": {
                "accessKey": null,
                "accountId": null,
                "apiKey": ctx.api_key.map(|(_, value)| value),
                "apiKeyId": ctx.api_key.map(|(name, _)| name),
                "caller": null,
                "cognitoAuthenticationProvider": null,
                "cognitoAuthenticationType": null,
                "cognitoIdentityId": null,
                "cognitoIdentityPoolId": null,
                "principalOrgId": null,
                "sourceIp": ctx.source_ip,
                "user": null,
                "userAgent": user_agent,
                "userArn": null,
            },
            "path": request_path,
            "protocol": protocol(parts.version),
            "requestId": ctx.request_id,
            "requestTime": clf_time(ctx.time),
            "requestTimeEpoch": epoch_millis(ctx.time),
            "resourceId": resource_id(&m.route.path),
            "resourcePath": m.route.path,
            "stage": ctx.stage,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    });
    // A Lambda authorizer's principal and context ("Output from an API Gateway Lambda
    // authorizer").
    if let Some(authorizer) = ctx.authorizer
        && let Some(Value::Object(request_context)) = event.get_mut("requestContext")
    {
        request_context.insert("authorizer".to_owned(), authorizer.clone());
    }
    event
}

/// HTTP API payload format 2.0. Optional fields are left out when empty, as API Gateway
/// does.
fn http_event(
    m: &RouteMatch<'_>,
    parts: &http::request::Parts,
    body: &[u8],
    ctx: &EventContext<'_>,
) -> Value {
    serde_json::to_value(HttpEvent::new(m, parts, body, ctx))
        .expect("an event of strings, numbers and JSON values always serializes")
}

/// The event of payload format 2.0, borrowed from the request and serialized straight to
/// bytes: built as a `serde_json::Value` tree first (a map entry and a string per field)
/// it was a tenth of the gateway's CPU per request in front of a Workers host. Fields are
/// in the order of their names, as a `Value`'s map keeps them, so the bytes are the ones
/// the tree gave.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpEvent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Value>,
    // Cookie headers go to `cookies`, one entry per cookie.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cookies: Vec<String>,
    // Other repeated headers and query parameters are joined with commas.
    headers: BTreeMap<&'a str, String>,
    is_base64_encoded: bool,
    #[serde(skip_serializing_if = "Map::is_empty")]
    path_parameters: Map<String, Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    query_string_parameters: BTreeMap<String, String>,
    raw_path: &'a str,
    raw_query_string: &'a str,
    request_context: HttpRequestContext<'a>,
    route_key: String,
    version: &'static str,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpRequestContext<'a> {
    account_id: &'a str,
    api_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorizer: Option<&'a Value>,
    domain_name: &'a str,
    domain_prefix: &'a str,
    http: HttpDescription<'a>,
    request_id: &'a str,
    route_key: String,
    stage: &'static str,
    time: String,
    time_epoch: u64,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpDescription<'a> {
    method: &'a str,
    path: &'a str,
    protocol: &'static str,
    source_ip: &'a str,
    user_agent: &'a str,
}

impl<'a> HttpEvent<'a> {
    fn new(
        m: &'a RouteMatch<'_>,
        parts: &'a http::request::Parts,
        body: &[u8],
        ctx: &'a EventContext<'_>,
    ) -> HttpEvent<'a> {
        let path = parts.uri.path();
        let route_key = route_key(m.route);
        let mut cookies = Vec::new();
        let mut headers: BTreeMap<&str, String> = BTreeMap::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            if name == header::COOKIE {
                cookies.extend(
                    value
                        .split(';')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned),
                );
                continue;
            }
            join_into(&mut headers, name.as_str(), &value);
        }
        let mut query_string_parameters = BTreeMap::new();
        for (key, value) in parse_query(parts.uri.query().unwrap_or_default()) {
            match query_string_parameters.get_mut(&key) {
                Some(joined) => append_comma(joined, &value),
                None => {
                    query_string_parameters.insert(key, value);
                }
            }
        }
        let (body, is_base64_encoded) = match event_body(body, !http_body_is_text(&parts.headers)) {
            Some((body, is_base64)) => (Some(body), is_base64),
            None => (None, false),
        };
        HttpEvent {
            body,
            cookies,
            headers,
            is_base64_encoded,
            path_parameters: path_params(m),
            query_string_parameters,
            raw_path: path,
            raw_query_string: parts.uri.query().unwrap_or_default(),
            request_context: HttpRequestContext {
                account_id: ctx.account_id,
                api_id: ctx.api_id,
                authorizer: ctx.authorizer,
                domain_name: ctx.domain_name,
                domain_prefix: domain_prefix(ctx.domain_name),
                http: HttpDescription {
                    method: parts.method.as_str(),
                    path,
                    protocol: protocol(parts.version),
                    source_ip: ctx.source_ip,
                    user_agent: header_str(&parts.headers, header::USER_AGENT).unwrap_or_default(),
                },
                request_id: ctx.request_id,
                route_key: route_key.clone(),
                stage: "$default",
                time: clf_time(ctx.time),
                time_epoch: epoch_millis(ctx.time),
            },
            route_key,
            version: "2.0",
        }
    }
}

fn join_into<'a>(map: &mut BTreeMap<&'a str, String>, key: &'a str, value: &str) {
    match map.get_mut(key) {
        Some(joined) => append_comma(joined, value),
        None => {
            map.insert(key, value.to_owned());
        }
    }
}

fn append_comma(joined: &mut String, value: &str) {
    joined.push(',');
    joined.push_str(value);
}

/// The response object of format 1.0 ("Output format of a Lambda function for proxy
/// integration") or 2.0, which adds `cookies` and drops `multiValueHeaders`.
fn response_from_object(
    api: ApiKind,
    object: &Map<String, Value>,
) -> Result<http::Response<Bytes>, BadResponse> {
    let status = object
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| (100..=599).contains(code))
        .and_then(|code| http::StatusCode::from_u16(code).ok())
        .ok_or_else(|| BadResponse::new("statusCode must be an integer 100-599"))?;

    let is_base64 = match object.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(BadResponse::new("isBase64Encoded must be a boolean")),
    };
    let body = match object.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(text)) if is_base64 => match BASE64.decode(text) {
            Ok(bytes) => Bytes::from(bytes),
            Err(_) => return Err(BadResponse::new("body is not valid base64")),
        },
        Some(Value::String(text)) => Bytes::from(text.clone()),
        Some(_) => return Err(BadResponse::new("body must be a string")),
    };

    let mut headers = HeaderMap::new();
    // A header the function set to null is suppressed, default content type included.
    let mut suppressed_content_type = false;
    // Where both maps name a header, the values from `multiValueHeaders` win.
    if api == ApiKind::Rest {
        for (name, values) in object_field(object, "multiValueHeaders")? {
            let name = header_name(name)?;
            let values = match values {
                Value::Array(values) => values,
                Value::Null => {
                    suppressed_content_type |= name == header::CONTENT_TYPE;
                    continue;
                }
                _ => {
                    return Err(BadResponse::new(format!(
                        "multiValueHeaders.{name} must be an array"
                    )));
                }
            };
            for value in values {
                if let Some(value) = header_value(&name, value)? {
                    headers.append(name.clone(), value);
                }
            }
        }
    }
    for (name, value) in object_field(object, "headers")? {
        let name = header_name(name)?;
        if headers.contains_key(&name) {
            continue;
        }
        match header_value(&name, value)? {
            Some(value) => {
                headers.insert(name, value);
            }
            None => suppressed_content_type |= name == header::CONTENT_TYPE,
        }
    }
    if api == ApiKind::Http {
        match object.get("cookies") {
            None | Some(Value::Null) => {}
            Some(Value::Array(cookies)) => {
                for cookie in cookies {
                    let value = cookie
                        .as_str()
                        .and_then(|c| HeaderValue::from_str(c).ok())
                        .ok_or_else(|| BadResponse::new("cookies must be strings"))?;
                    headers.append(header::SET_COOKIE, value);
                }
            }
            Some(_) => return Err(BadResponse::new("cookies must be an array of strings")),
        }
    }
    if !headers.contains_key(header::CONTENT_TYPE) && !suppressed_content_type {
        // REST APIs answer `application/json` when the function names no content type;
        // HTTP APIs answer `text/plain; charset=utf-8` for the object form.
        let default = match api {
            ApiKind::Rest => "application/json",
            ApiKind::Http => "text/plain; charset=utf-8",
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(default));
    }

    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

fn inferred_response(body: Bytes) -> http::Response<Bytes> {
    let mut response = http::Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An optional object field of the response; `null` counts as absent.
fn object_field<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<impl Iterator<Item = (&'a String, &'a Value)>, BadResponse> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None.into_iter().flatten()),
        Some(Value::Object(map)) => Ok(Some(map.iter()).into_iter().flatten()),
        Some(_) => Err(BadResponse::new(format!("{field} must be an object"))),
    }
}

fn header_name(name: &str) -> Result<HeaderName, BadResponse> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| BadResponse::new(format!("{name:?} is not a valid header name")))
}

/// A response header value; numbers and booleans are written out as JavaScript would.
/// `None` for null, which leaves the header out.
fn header_value(name: &HeaderName, value: &Value) -> Result<Option<HeaderValue>, BadResponse> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(_) | Value::Object(_) => {
            return Err(BadResponse::new(format!(
                "the value of header {name} must be a string"
            )));
        }
    };
    HeaderValue::from_str(&text)
        .map(Some)
        .map_err(|_| BadResponse::new(format!("the value of header {name} is not valid")))
}

/// The event's `body` and `isBase64Encoded`, or `None` when there is no body. A body
/// that is not UTF-8 is always base64-encoded, so that no byte is lost.
fn event_body(body: &[u8], binary: bool) -> Option<(Value, bool)> {
    if body.is_empty() {
        return None;
    }
    Some(match std::str::from_utf8(body) {
        Ok(text) if !binary => (Value::from(text), false),
        _ => (Value::from(BASE64.encode(body)), true),
    })
}

/// REST APIs base64-encode only bodies whose content type is one of the API's
/// `binaryMediaTypes`. nimbus treats the usual binary types as configured, and
/// base64-encodes any body that is not UTF-8, which AWS would mangle.
fn rest_body_is_binary(headers: &HeaderMap) -> bool {
    let content_type = media_type(headers);
    matches!(
        content_type.as_str(),
        "application/octet-stream" | "application/pdf" | "application/zip" | "application/gzip"
    ) || ["image/", "audio/", "video/", "font/"]
        .iter()
        .any(|prefix| content_type.starts_with(prefix))
}

/// HTTP APIs pass the body as text only for `text/*`, JSON, XML and JavaScript; every
/// other body, including one without a content type or a form post, arrives
/// base64-encoded. AWS does not list the types; this split was observed against AWS
/// (ministackorg/ministack pull request 766).
fn http_body_is_text(headers: &HeaderMap) -> bool {
    let content_type = media_type(headers);
    content_type.starts_with("text/")
        || matches!(
            content_type.as_str(),
            "application/json" | "application/xml" | "application/javascript"
        )
}

/// The request's media type, lower case and without parameters; empty when absent.
fn media_type(headers: &HeaderMap) -> String {
    header_str(headers, header::CONTENT_TYPE)
        .and_then(|ct| ct.split(';').next())
        .map(|ct| ct.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Splits a query string into decoded pairs, in order. `+` is a space, as in HTML forms;
/// a key without `=` has the empty value.
pub(super) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode_query_component(key);
            (!key.is_empty()).then(|| (key, decode_query_component(value)))
        })
        .collect()
}

fn decode_query_component(text: &str) -> String {
    let text = text.replace('+', " ");
    percent_decode(text.as_bytes())
        .decode_utf8_lossy()
        .into_owned()
}

fn path_params(m: &RouteMatch<'_>) -> Map<String, Value> {
    m.path_params
        .iter()
        .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
        .collect()
}

fn into_object(map: BTreeMap<&str, Vec<Value>>) -> Map<String, Value> {
    map.into_iter()
        .map(|(key, values)| (key.to_owned(), Value::Array(values)))
        .collect()
}

fn object_or_null(map: Map<String, Value>) -> Value {
    if map.is_empty() {
        Value::Null
    } else {
        Value::Object(map)
    }
}

/// `id` for `id.execute-api.us-east-1.amazonaws.com`; an IP address, or a name without
/// dots, is its own prefix. The port is dropped.
fn domain_prefix(domain_name: &str) -> &str {
    let host = match domain_name.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => domain_name,
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host;
    }
    host.split('.').next().unwrap_or(host)
}

/// A stable stand-in for the id API Gateway gives a REST resource (a path, whatever the
/// method): six base-36 digits of an FNV-1a hash of the path template.
fn resource_id(path: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..6)
        .map(|_| {
            let digit = digits[(hash % 36) as usize];
            hash /= 36;
            char::from(digit)
        })
        .collect()
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

pub(super) fn epoch_millis(time: SystemTime) -> u64 {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    u64::try_from(millis).unwrap_or(u64::MAX)
}

/// The request time in Common Log Format, `12/Mar/2020:19:03:58 +0000`, as both
/// payload formats write it.
pub(super) fn clf_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let secs_of_day = secs % 86_400;
    let (year, month, day) = nimbus_core::time::civil_from_days(days);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[usize::from(month - 1)],
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
    )
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
