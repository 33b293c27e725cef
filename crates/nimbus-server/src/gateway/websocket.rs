//! API Gateway WebSocket APIs on the gateway: the app's `websocket` events served at
//! `ws://HOST/{stage}` (the URL `serverless deploy` prints, `wss://API.execute-api.
//! REGION.amazonaws.com/{stage}`, with nimbus's host), as "Working with WebSocket APIs"
//! describes them.
//!
//! An upgrade passes the `$connect` route's authorizer and function first; a refusal (or
//! a non-2xx answer) is the upgrade's answer. A live connection is in the server's `Hub`;
//! each message picks a route by the API's selection expression (`$default` otherwise)
//! and invokes its function, whose `body` goes back to the client when the route has a
//! route response; the @connections API (`aws/apigw_management.rs`, the services API)
//! posts to, reads and closes connections through the hub; a closed connection invokes
//! `$disconnect`.

mod event;
pub(crate) mod hub;
pub(crate) mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::FromRequestParts as _;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use nimbus_core::Outcome;
use nimbus_core::policy::{IdentitySource, StagePath};
use nimbus_core::websocket::{WebSocketApi, WebSocketRoute};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use self::event::{ConnectionContext, EventFacts};
use self::hub::{ConnectionInfo, Outgoing, Registration};
use crate::functions::InvokeRequest;
use crate::gateway::policy;
use crate::generation::{Current, Generation};
use crate::telemetry::Trigger;
use crate::telemetry::trace::{self, TraceContext};

pub(crate) use self::hub::Hub;

/// API Gateway's quotas for WebSocket APIs: a message of at most 128 KB, in frames of
/// at most 32 KB; a larger one closes the connection with 1009.
pub(crate) const MAX_MESSAGE_BYTES: usize = 128 * 1024;
const MAX_FRAME_BYTES: usize = 32 * 1024;
/// API Gateway closes a connection idle for 10 minutes, and any after 2 hours.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const MAX_CONNECTION_TIME: Duration = Duration::from_secs(2 * 60 * 60);
/// How long a closing connection waits for the other side's close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);
/// At most this many messages of one connection are being handled at once; past it the
/// connection's frames wait to be read.
const MAX_IN_FLIGHT: usize = 64;

/// Whether `parts` is a WebSocket upgrade for the app's WebSocket API: a `GET` with
/// `Upgrade: websocket` at `/{stage}` (and at `/`, unless the stage path is required).
pub(super) fn is_upgrade(
    parts: &http::request::Parts,
    api: &WebSocketApi,
    stage: &str,
    stage_path: StagePath,
) -> bool {
    if !api.is_served() || parts.method != Method::GET {
        return false;
    }
    let upgrade = parts
        .headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return false;
    }
    let path = parts.uri.path().trim_end_matches('/');
    let at_stage = path.strip_prefix('/') == Some(stage);
    let at_root = path.is_empty();
    match stage_path {
        StagePath::Optional => at_stage || at_root,
        StagePath::Required => at_stage,
        StagePath::Off => at_root,
    }
}

/// Answers an upgrade: the `$connect` authorizer and function decide, then the socket is
/// served in a task of its own until it closes.
pub(super) async fn connect(
    current: Arc<Current>,
    generation: &Generation,
    stage: &str,
    mut parts: http::request::Parts,
    peer: SocketAddr,
    trace: &TraceContext,
) -> Response {
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let api = &generation.routing.websocket;
    let now = SystemTime::now();
    let header = |name: http::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut conn = ConnectionContext {
        connection_id: new_connection_id(),
        connected_at: now,
        domain_name: header(http::header::HOST).unwrap_or_else(|| "127.0.0.1".to_owned()),
        stage: stage.to_owned(),
        api_id: policy::API_ID.to_owned(),
        source_ip: peer.ip().to_string(),
        user_agent: header(http::header::USER_AGENT),
        authorizer: None,
    };
    let request_id = trace::new_request_id();
    let facts = EventFacts {
        route_key: "$connect",
        request_id: &request_id,
        time: now,
    };
    let connect_route = api.route("$connect");
    if let Some(authorizer) = connect_route.and_then(|r| r.authorizer.as_ref()) {
        // A connection without every identity source is refused before the function
        // is invoked, as for REST request authorizers.
        let complete = authorizer
            .lambda
            .identity_sources
            .iter()
            .all(|source| identity_present(source, &parts));
        if !complete {
            return policy::Denied::Unauthorized.into_response();
        }
        let method_arn = format!(
            "arn:aws:execute-api:{}:{}:{}/{stage}/$connect",
            generation.events.region,
            policy::ACCOUNT_ID,
            policy::API_ID
        );
        let event = event::authorizer_event(&conn, &facts, &parts, &method_arn);
        match policy::authorize_connect(
            &generation.functions,
            &authorizer.name,
            &authorizer.lambda,
            &event,
            &method_arn,
            &request_id,
            trace,
        )
        .await
        {
            Ok(context) => conn.authorizer = Some(context),
            Err(denied) => return denied.into_response(),
        }
    }
    let mut protocol = None;
    if let Some(route) = connect_route {
        let event = event::connect_event(&conn, &facts, &parts);
        match invoke(generation, route, &request_id, &event, trace.clone()).await {
            Ok(payload) => {
                let status = status_of(&payload);
                if !status.is_success() {
                    return refusal(status);
                }
                protocol = payload
                    .get("headers")
                    .and_then(|headers| headers.as_object())
                    .and_then(|headers| {
                        headers
                            .iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol"))
                    })
                    .and_then(|(_, value)| value.as_str())
                    .and_then(|value| http::HeaderValue::from_str(value).ok());
            }
            Err(status) => return refusal(status),
        }
    }
    let hub = generation.websockets.clone();
    let registration = hub.register(ConnectionInfo {
        id: conn.connection_id.clone(),
        connected_at: now,
        source_ip: conn.source_ip.clone(),
        user_agent: conn.user_agent.clone().unwrap_or_default(),
    });
    generation
        .functions
        .telemetry
        .metrics
        .set_websocket_connections(hub.len());
    let failed_hub = hub.clone();
    let failed_id = conn.connection_id.clone();
    let failed_current = current.clone();
    let mut res = upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_failed_upgrade(move |e| {
            tracing::debug!(connection_id = %failed_id, "a WebSocket upgrade failed: {e}");
            failed_hub.remove(&failed_id);
            failed_current
                .load()
                .functions
                .telemetry
                .metrics
                .set_websocket_connections(failed_hub.len());
        })
        .on_upgrade(move |socket| serve(socket, current, conn, registration));
    if let Some(protocol) = protocol {
        res.headers_mut()
            .insert(http::header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        res.headers_mut().insert("x-amzn-requestid", value);
    }
    res
}

/// Why a connection ended, for `$disconnect`.
struct Closed {
    code: u16,
    reason: String,
}

/// Pumps one socket: frames from the client become invocations, frames from the hub go
/// to the client; then `$disconnect`.
async fn serve(
    mut socket: WebSocket,
    current: Arc<Current>,
    conn: ConnectionContext,
    registration: Registration,
) {
    let Registration {
        connection,
        mut rx,
        mut closing,
    } = registration;
    let conn = Arc::new(conn);
    let mut in_flight = JoinSet::new();
    let hard_deadline = tokio::time::Instant::now() + MAX_CONNECTION_TIME;
    let mut idle_deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
    let closed = loop {
        tokio::select! {
            received = socket.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                idle_deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
                connection.touch();
                let (body, binary) = match received {
                    Some(Ok(Message::Text(text))) => (Bytes::from(text.as_str().to_owned()), false),
                    Some(Ok(Message::Binary(bytes))) => (bytes, true),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(frame))) => {
                        break match frame {
                            Some(frame) => Closed { code: frame.code, reason: frame.reason.as_str().to_owned() },
                            None => Closed { code: 1005, reason: String::new() },
                        };
                    }
                    Some(Err(e)) => {
                        let too_big = is_too_big(&e);
                        if too_big {
                            let reason = format!("Message too big: the limit is {MAX_MESSAGE_BYTES} bytes, in frames of at most {MAX_FRAME_BYTES}");
                            close(&mut socket, 1009, &reason).await;
                            break Closed { code: 1009, reason };
                        }
                        tracing::debug!(connection_id = %conn.connection_id, "a WebSocket connection failed: {e}");
                        break Closed { code: 1006, reason: "Connection closed abnormally".to_owned() };
                    }
                    None => break Closed { code: 1006, reason: "Connection closed abnormally".to_owned() },
                };
                let current = current.clone();
                let conn = conn.clone();
                let connection = connection.clone();
                in_flight.spawn(async move {
                    on_message(&current, &conn, &connection, &body, binary).await;
                });
            }
            outgoing = rx.recv() => {
                let message = match outgoing {
                    Some(Outgoing::Text(text)) => Message::Text(text.into()),
                    Some(Outgoing::Binary(bytes)) => Message::Binary(bytes),
                    Some(Outgoing::Close(code, reason)) => {
                        close(&mut socket, code, &reason).await;
                        break Closed { code, reason };
                    }
                    // The hub holds the sender while the connection is registered.
                    None => break Closed { code: 1006, reason: String::new() },
                };
                if socket.send(message).await.is_err() {
                    break Closed { code: 1006, reason: "Connection closed abnormally".to_owned() };
                }
            }
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            () = connection.close_requested() => {
                close(&mut socket, 1000, "").await;
                break Closed { code: 1000, reason: String::new() };
            }
            () = until_closing(&mut closing) => {
                close(&mut socket, 1001, "Going away").await;
                break Closed { code: 1001, reason: "Going away".to_owned() };
            }
            () = tokio::time::sleep_until(idle_deadline.min(hard_deadline)) => {
                close(&mut socket, 1001, "Going away").await;
                break Closed { code: 1001, reason: "Going away".to_owned() };
            }
        }
    };
    // From here the connection is gone for senders; `$disconnect` still sees its id.
    rx.close();
    // Finish the closing handshake: reading on sends the reply to a client's close frame,
    // and takes the client's reply to ours (RFC 6455 §5.5.1), for at most a second.
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
    drop(socket);
    while in_flight.join_next().await.is_some() {}
    let generation = current.load();
    if let Some(route) = generation.routing.websocket.route("$disconnect") {
        let request_id = trace::new_request_id();
        let facts = EventFacts {
            route_key: "$disconnect",
            request_id: &request_id,
            time: SystemTime::now(),
        };
        let event = event::disconnect_event(&conn, &facts, closed.code, &closed.reason);
        let trace = TraceContext::new_root();
        // The client is gone: what `$disconnect` answers goes nowhere.
        let _ = invoke(&generation, route, &request_id, &event, trace).await;
    }
    generation.websockets.remove(&conn.connection_id);
    generation
        .functions
        .telemetry
        .metrics
        .set_websocket_connections(generation.websockets.len());
}

/// Handles one message: its route's function is invoked, and its answer (on a route with
/// a route response) or API Gateway's error message goes back to the client.
async fn on_message(
    current: &Current,
    conn: &ConnectionContext,
    connection: &hub::Connection,
    body: &[u8],
    binary: bool,
) {
    let generation = current.load();
    let api = &generation.routing.websocket;
    // A binary frame has no JSON to select by.
    let route_key = if binary { "$default" } else { api.select(body) };
    let request_id = trace::new_request_id();
    let Some(route) = api.route(route_key) else {
        // API Gateway's answer to a message no route takes.
        let _ = connection.send(Outgoing::Text(error_message(
            "Forbidden",
            conn,
            &request_id,
        )));
        return;
    };
    let facts = EventFacts {
        route_key,
        request_id: &request_id,
        time: SystemTime::now(),
    };
    let message_id = new_connection_id();
    let event = event::message_event(conn, &facts, &message_id, body, binary);
    let trace = TraceContext::new_root();
    match invoke(&generation, route, &request_id, &event, trace).await {
        Ok(payload) if route.route_response => {
            if let Some(frame) = route_response(&payload) {
                let _ = connection.send(frame);
            }
        }
        Ok(_) => {}
        Err(_) => {
            let _ = connection.send(Outgoing::Text(error_message(
                "Internal server error",
                conn,
                &request_id,
            )));
        }
    }
}

/// Invokes `route`'s function with `event`; its payload on success, else the status API
/// Gateway answers a failed integration with.
async fn invoke(
    generation: &Generation,
    route: &WebSocketRoute,
    request_id: &str,
    event: &Value,
    trace: TraceContext,
) -> Result<Value, StatusCode> {
    let Some(idx) = generation.functions.index(&route.function) else {
        tracing::warn!(route = %route.route_key, function = %route.function, "no function `{}` is served for the WebSocket route", route.function);
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let payload = serde_json::to_vec(event).expect("a serde_json::Value always serializes");
    let res = generation
        .functions
        .invoke_detached(
            idx,
            InvokeRequest {
                request_id: request_id.to_owned(),
                payload,
                trace,
                trigger: Trigger::WebSocket,
            },
        )
        .await;
    let report = match res {
        Ok(report) => report,
        Err(e) => return Err(e.status),
    };
    match report.outcome {
        // A handler that returns nothing is a success.
        Outcome::Ok(payload) => Ok(serde_json::from_slice(&payload).unwrap_or(Value::Null)),
        Outcome::Timeout(_) => Err(StatusCode::GATEWAY_TIMEOUT),
        Outcome::Error(_) | Outcome::OutOfMemory { .. } | Outcome::Crashed(_) => {
            Err(StatusCode::BAD_GATEWAY)
        }
    }
}

/// The `statusCode` of a Lambda proxy answer; an answer without one (or no answer) is 200.
fn status_of(payload: &Value) -> StatusCode {
    payload
        .get("statusCode")
        .and_then(|code| match code {
            Value::Number(n) => n.as_u64(),
            Value::String(text) => text.parse().ok(),
            _ => None,
        })
        .and_then(|code| u16::try_from(code).ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK)
}

/// What a route response sends: the proxy answer's `body` (base64-decoded when
/// `isBase64Encoded`), or a bare string answer.
fn route_response(payload: &Value) -> Option<Outgoing> {
    let (body, base64) = match payload {
        Value::Object(object) => (
            object.get("body")?,
            object.get("isBase64Encoded") == Some(&Value::Bool(true)),
        ),
        Value::String(_) => (payload, false),
        _ => return None,
    };
    let text = match body {
        Value::String(text) => text.clone(),
        Value::Null => return None,
        other => other.to_string(),
    };
    if base64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .ok()?;
        return Some(Outgoing::Binary(Bytes::from(bytes)));
    }
    Some(Outgoing::Text(text))
}

/// API Gateway's message to a client whose message failed: `{"message": ...,
/// "connectionId": ..., "requestId": ...}`.
fn error_message(message: &str, conn: &ConnectionContext, request_id: &str) -> String {
    json!({
        "message": message,
        "connectionId": conn.connection_id,
        "requestId": request_id,
    })
    .to_string()
}

/// The answer to a refused upgrade.
fn refusal(status: StatusCode) -> Response {
    let message = match status {
        StatusCode::GATEWAY_TIMEOUT => "Endpoint request timed out",
        s if s.is_server_error() => "Internal server error",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        _ => "Forbidden",
    };
    let mut res = Response::new(Body::from(json!({ "message": message }).to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

/// Whether the upgrade request carries a non-empty value for `source`.
fn identity_present(source: &IdentitySource, parts: &http::request::Parts) -> bool {
    match source {
        IdentitySource::Header(name) => parts
            .headers
            .get_all(name.as_str())
            .iter()
            .any(|value| !value.is_empty()),
        IdentitySource::Query(name) => {
            crate::gateway::apigw::parse_query(parts.uri.query().unwrap_or_default())
                .iter()
                .any(|(key, value)| key == name && !value.is_empty())
        }
        IdentitySource::Context(_) => true,
    }
}

/// Resolves once the hub says the server is shutting down.
async fn until_closing(closing: &mut tokio::sync::watch::Receiver<bool>) {
    if closing.wait_for(|closing| *closing).await.is_err() {
        // The hub is gone, so no one will ask again.
        std::future::pending::<()>().await;
    }
}

/// Sends a close frame, ignoring a client already gone.
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    // A close frame's reason is at most 123 bytes (RFC 6455 §5.5).
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// Whether a read failed on a message or frame over the limits.
fn is_too_big(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if let Some(tungstenite::Error::Capacity(_)) = error.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// A connection id in API Gateway's form: 16 characters of base64 (`L0SM9cOFvHcCIhw=`),
/// without `/` and `+`, so it needs no escaping in `/@connections/{id}`.
fn new_connection_id() -> String {
    let random = uuid::Uuid::new_v4();
    let text = base64::engine::general_purpose::STANDARD.encode(&random.as_bytes()[..11]);
    text.replace('/', "_").replace('+', "-")
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_look_like_api_gateways() {
        let id = new_connection_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
        assert!(!id.contains('/') && !id.contains('+'));
    }

    #[test]
    fn a_route_response_sends_the_proxy_answers_body() {
        let text = |payload: Value| match route_response(&payload) {
            Some(Outgoing::Text(text)) => Some(text),
            _ => None,
        };
        assert_eq!(
            text(json!({"statusCode": 200, "body": "hi"})).as_deref(),
            Some("hi")
        );
        assert_eq!(text(json!("plain")).as_deref(), Some("plain"));
        assert_eq!(text(json!({"statusCode": 200})), None);
        assert_eq!(text(Value::Null), None);
        assert!(matches!(
            route_response(&json!({"body": "AAE=", "isBase64Encoded": true})),
            Some(Outgoing::Binary(bytes)) if bytes.as_ref() == [0, 1]
        ));
    }

    #[test]
    fn connect_answers_without_a_status_are_200() {
        assert_eq!(status_of(&Value::Null), StatusCode::OK);
        assert_eq!(
            status_of(&json!({"statusCode": 403})),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status_of(&json!({"statusCode": "401"})),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn upgrades_are_taken_at_the_stage_path() {
        let api = WebSocketApi {
            routes: vec![WebSocketRoute {
                route_key: "$default".to_owned(),
                function: "f".to_owned(),
                route_response: false,
                authorizer: None,
            }],
            ..WebSocketApi::default()
        };
        let parts = |path: &str, upgrade: bool| {
            let mut req = http::Request::get(path);
            if upgrade {
                req = req.header("upgrade", "WebSocket");
            }
            req.body(()).expect("a valid request").into_parts().0
        };
        let check =
            |path: &str, stage_path| is_upgrade(&parts(path, true), &api, "dev", stage_path);
        assert!(check("/dev", StagePath::Optional));
        assert!(check("/dev/", StagePath::Optional));
        assert!(check("/", StagePath::Optional));
        assert!(!check("/", StagePath::Required));
        assert!(!check("/dev", StagePath::Off));
        assert!(!check("/other", StagePath::Optional));
        assert!(!is_upgrade(
            &parts("/dev", false),
            &api,
            "dev",
            StagePath::Optional
        ));
        let none = WebSocketApi::default();
        assert!(!is_upgrade(
            &parts("/dev", true),
            &none,
            "dev",
            StagePath::Optional
        ));
    }
}
