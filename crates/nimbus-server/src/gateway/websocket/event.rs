//! The events of API Gateway WebSocket APIs' Lambda proxy integrations: CONNECT (with the
//! upgrade request's headers and query), MESSAGE (a frame's body) and DISCONNECT, and the
//! REQUEST authorizer's event of `$connect`, in the shapes "Setting up WebSocket API
//! integrations" and "Control access to WebSocket APIs with AWS Lambda REQUEST
//! authorizers" show.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::gateway::apigw::{clf_time, epoch_millis, parse_query};

/// What every event of one connection says about it.
#[derive(Debug, Clone)]
pub(super) struct ConnectionContext {
    pub(super) connection_id: String,
    pub(super) connected_at: SystemTime,
    /// The upgrade request's `Host`: where the @connections API answers for this API.
    pub(super) domain_name: String,
    pub(super) stage: String,
    pub(super) api_id: String,
    pub(super) source_ip: String,
    pub(super) user_agent: Option<String>,
    /// The `$connect` authorizer's principal and context, kept for every later event.
    pub(super) authorizer: Option<Value>,
}

/// What happened, for `requestContext`.
pub(super) struct EventFacts<'a> {
    pub(super) route_key: &'a str,
    pub(super) request_id: &'a str,
    pub(super) time: SystemTime,
}

/// The `$connect` event: the upgrade request's headers and query.
pub(super) fn connect_event(
    conn: &ConnectionContext,
    facts: &EventFacts<'_>,
    parts: &http::request::Parts,
) -> Value {
    let mut event = request_fields(parts);
    event.insert(
        "requestContext".to_owned(),
        request_context(conn, facts, "CONNECT", None),
    );
    event.insert("isBase64Encoded".to_owned(), Value::Bool(false));
    Value::Object(event)
}

/// A message's event; a binary frame's body is base64, as API Gateway passes binary
/// frames to a Lambda proxy integration.
pub(super) fn message_event(
    conn: &ConnectionContext,
    facts: &EventFacts<'_>,
    message_id: &str,
    body: &[u8],
    binary: bool,
) -> Value {
    let body = match (binary, std::str::from_utf8(body)) {
        (false, Ok(text)) => (Value::from(text), false),
        _ => (Value::from(BASE64.encode(body)), true),
    };
    json!({
        "requestContext": request_context(conn, facts, "MESSAGE", Some(message_id)),
        "body": body.0,
        "isBase64Encoded": body.1,
    })
}

/// The `$disconnect` event, with the close code and reason the connection ended with.
pub(super) fn disconnect_event(
    conn: &ConnectionContext,
    facts: &EventFacts<'_>,
    status_code: u16,
    reason: &str,
) -> Value {
    let mut context = request_context(conn, facts, "DISCONNECT", None);
    if let Value::Object(map) = &mut context {
        map.insert("disconnectStatusCode".to_owned(), Value::from(status_code));
        map.insert("disconnectReason".to_owned(), Value::from(reason));
    }
    let mut headers = Map::new();
    headers.insert("Host".to_owned(), Value::from(conn.domain_name.as_str()));
    let multi: Map<String, Value> = headers
        .iter()
        .map(|(name, value)| (name.clone(), Value::Array(vec![value.clone()])))
        .collect();
    json!({
        "headers": headers,
        "multiValueHeaders": multi,
        "requestContext": context,
        "isBase64Encoded": false,
    })
}

/// The event of the `$connect` route's REQUEST authorizer.
pub(super) fn authorizer_event(
    conn: &ConnectionContext,
    facts: &EventFacts<'_>,
    parts: &http::request::Parts,
    method_arn: &str,
) -> Value {
    let mut event = Map::new();
    event.insert("type".to_owned(), Value::from("REQUEST"));
    event.insert("methodArn".to_owned(), Value::from(method_arn));
    event.extend(request_fields(parts));
    event.insert("stageVariables".to_owned(), json!({}));
    event.insert(
        "requestContext".to_owned(),
        request_context(conn, facts, "CONNECT", None),
    );
    Value::Object(event)
}

/// `headers`, `multiValueHeaders`, `queryStringParameters` and
/// `multiValueQueryStringParameters` of the upgrade request (single values hold the last).
fn request_fields(parts: &http::request::Parts) -> Map<String, Value> {
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
    let mut query = Map::new();
    let mut multi_query: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (key, value) in parse_query(parts.uri.query().unwrap_or_default()) {
        query.insert(key.clone(), Value::from(value.as_str()));
        multi_query.entry(key).or_default().push(Value::from(value));
    }
    let object_or_null = |map: Map<String, Value>| {
        if map.is_empty() {
            Value::Null
        } else {
            Value::Object(map)
        }
    };
    let mut fields = Map::new();
    fields.insert("headers".to_owned(), object_or_null(headers));
    fields.insert(
        "multiValueHeaders".to_owned(),
        object_or_null(
            multi_headers
                .into_iter()
                .map(|(name, values)| (name.to_owned(), Value::Array(values)))
                .collect(),
        ),
    );
    if !query.is_empty() {
        fields.insert("queryStringParameters".to_owned(), Value::Object(query));
        fields.insert(
            "multiValueQueryStringParameters".to_owned(),
            Value::Object(
                multi_query
                    .into_iter()
                    .map(|(key, values)| (key, Value::Array(values)))
                    .collect(),
            ),
        );
    }
    fields
}

fn request_context(
    conn: &ConnectionContext,
    facts: &EventFacts<'_>,
    event_type: &str,
    message_id: Option<&str>,
) -> Value {
    let mut identity = Map::new();
    identity.insert("sourceIp".to_owned(), Value::from(conn.source_ip.as_str()));
    if event_type != "MESSAGE"
        && let Some(user_agent) = &conn.user_agent
    {
        identity.insert("userAgent".to_owned(), Value::from(user_agent.as_str()));
    }
    let mut context = json!({
        "routeKey": facts.route_key,
        "eventType": event_type,
        "extendedRequestId": facts.request_id,
        "requestTime": clf_time(facts.time),
        "messageDirection": "IN",
        "stage": conn.stage,
        "connectedAt": epoch_millis(conn.connected_at),
        "requestTimeEpoch": epoch_millis(facts.time),
        "identity": identity,
        "requestId": facts.request_id,
        "domainName": conn.domain_name,
        "connectionId": conn.connection_id,
        "apiId": conn.api_id,
    });
    if let Value::Object(map) = &mut context {
        if let Some(message_id) = message_id {
            map.insert("messageId".to_owned(), Value::from(message_id));
        }
        if let Some(authorizer) = &conn.authorizer {
            map.insert("authorizer".to_owned(), authorizer.clone());
        }
    }
    context
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use expect_test::expect;

    use super::*;

    fn conn() -> ConnectionContext {
        ConnectionContext {
            connection_id: "Ab3dEf6hIj9lMn=".to_owned(),
            connected_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_765_000_000_000),
            domain_name: "127.0.0.1:3000".to_owned(),
            stage: "dev".to_owned(),
            api_id: "nimbus".to_owned(),
            source_ip: "127.0.0.1".to_owned(),
            user_agent: Some("ws-test".to_owned()),
            authorizer: Some(json!({"principalId": "u1", "room": "a"})),
        }
    }

    fn facts(route_key: &str) -> EventFacts<'_> {
        EventFacts {
            route_key,
            request_id: "req-1",
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_765_000_001_000),
        }
    }

    fn pretty(value: &Value) -> String {
        serde_json::to_string_pretty(value).expect("a Value serializes")
    }

    #[test]
    fn connect_message_and_disconnect_events_have_api_gateways_shape() {
        let (parts, ()) = http::Request::get("/dev?token=t1&x=a&x=b")
            .header("host", "127.0.0.1:3000")
            .header("auth", "secret")
            .body(())
            .expect("a valid request")
            .into_parts();
        expect![[r#"
            {
              "headers": {
                "auth": "secret",
                "host": "127.0.0.1:3000"
              },
              "isBase64Encoded": false,
              "multiValueHeaders": {
                "auth": [
                  "secret"
                ],
                "host": [
                  "127.0.0.1:3000"
                ]
              },
              "multiValueQueryStringParameters": {
                "token": [
                  "t1"
                ],
                "x": [
                  "a",
                  "b"
                ]
              },
              "queryStringParameters": {
                "token": "t1",
                "x": "b"
              },
              "requestContext": {
                "apiId": "nimbus",
                "authorizer": {
                  "principalId": "u1",
                  "room": "a"
                },
                "connectedAt": 1765000000000,
                "connectionId": "Ab3dEf6hIj9lMn=",
                "domainName": "127.0.0.1:3000",
                "eventType": "CONNECT",
                "extendedRequestId": "req-1",
                "identity": {
                  "sourceIp": "127.0.0.1",
                  "userAgent": "ws-test"
                },
                "messageDirection": "IN",
                "requestId": "req-1",
                "requestTime": "06/Dec/2025:05:46:41 +0000",
                "requestTimeEpoch": 1765000001000,
                "routeKey": "$connect",
                "stage": "dev"
              }
            }"#]]
        .assert_eq(&pretty(&connect_event(&conn(), &facts("$connect"), &parts)));
        expect![[r#"
            {
              "body": "{\"action\":\"send\"}",
              "isBase64Encoded": false,
              "requestContext": {
                "apiId": "nimbus",
                "authorizer": {
                  "principalId": "u1",
                  "room": "a"
                },
                "connectedAt": 1765000000000,
                "connectionId": "Ab3dEf6hIj9lMn=",
                "domainName": "127.0.0.1:3000",
                "eventType": "MESSAGE",
                "extendedRequestId": "req-1",
                "identity": {
                  "sourceIp": "127.0.0.1"
                },
                "messageDirection": "IN",
                "messageId": "m-1",
                "requestId": "req-1",
                "requestTime": "06/Dec/2025:05:46:41 +0000",
                "requestTimeEpoch": 1765000001000,
                "routeKey": "send",
                "stage": "dev"
              }
            }"#]]
        .assert_eq(&pretty(&message_event(
            &conn(),
            &facts("send"),
            "m-1",
            br#"{"action":"send"}"#,
            false,
        )));
        let binary = message_event(&conn(), &facts("$default"), "m-2", &[0, 159, 1], true);
        assert_eq!(binary["body"], "AJ8B");
        assert_eq!(binary["isBase64Encoded"], true);
        let disconnect = disconnect_event(&conn(), &facts("$disconnect"), 1001, "Going away");
        assert_eq!(disconnect["requestContext"]["eventType"], "DISCONNECT");
        assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1001);
        assert_eq!(
            disconnect["requestContext"]["disconnectReason"],
            "Going away"
        );
        assert_eq!(disconnect["headers"]["Host"], "127.0.0.1:3000");
    }
}
