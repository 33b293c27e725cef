//! WebSockets of Workers: a worker's fetch that answers an upgrade request with `101` and
//! the client end of a `WebSocketPair` gets the connection upgraded here. The socket is in
//! the server's `Hub` under the id the worker's host gave it; what the worker sends comes
//! from its executor into the hub (`Executor::attach_socket`), and what the client sends
//! goes to the worker as `nimbusSocket` invocations, one message at a time in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use bytes::Bytes;
use nimbus_core::{Outcome, SocketFrame, SocketSink};
use serde_json::{Value, json};

use super::hub::{ConnectionInfo, Outgoing, Registration};
use super::{CLOSE_HANDSHAKE, close, is_too_big, until_closing};
use crate::functions::InvokeRequest;
use crate::generation::{Current, Generation};
use crate::telemetry::Trigger;
use crate::telemetry::trace::{self, TraceContext};

/// Cloudflare's largest WebSocket message: 1 MiB.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Whether `parts` asks for a WebSocket upgrade (`GET` with `Upgrade: websocket`).
pub(crate) fn wants_upgrade(parts: &http::request::Parts) -> bool {
    parts.method == http::Method::GET
        && parts
            .headers
            .get(http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The socket id of a worker's answer that accepted a WebSocket:
/// `{"statusCode": 101, "webSocket": "<id>", "headers": {...}}`.
pub(crate) fn accepted_socket(payload: &[u8]) -> Option<(String, Vec<(String, String)>)> {
    let answer: Value = serde_json::from_slice(payload).ok()?;
    if answer.get("statusCode").and_then(Value::as_u64) != Some(101) {
        return None;
    }
    let id = answer.get("webSocket")?.as_str()?.to_owned();
    let headers = answer
        .get("headers")
        .and_then(Value::as_object)
        .map(|headers| {
            headers
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Some((id, headers))
}

/// Upgrades the connection to the worker at `function_idx`'s socket `socket_id`.
pub(crate) fn accept(
    current: Arc<Current>,
    generation: &Generation,
    function_idx: usize,
    (socket_id, headers): (String, Vec<(String, String)>),
    upgrade: WebSocketUpgrade,
    peer: SocketAddr,
    user_agent: Option<&str>,
) -> Response {
    let function = &generation.functions.list[function_idx];
    let hub = generation.websockets.clone();
    let registration = hub.register(ConnectionInfo {
        id: socket_id.clone(),
        connected_at: SystemTime::now(),
        source_ip: peer.ip().to_string(),
        user_agent: user_agent.unwrap_or_default().to_owned(),
    });
    generation
        .functions
        .telemetry
        .metrics
        .set_websocket_connections(hub.len());
    let connection = registration.connection.clone();
    let sink: SocketSink = Arc::new(move |frame| {
        let outgoing = match frame {
            SocketFrame::Text(text) => Outgoing::Text(text),
            SocketFrame::Binary(bytes) => Outgoing::Binary(Bytes::from(bytes)),
            SocketFrame::Close(code, reason) => Outgoing::Close(code, reason),
        };
        // A client that reads too slowly loses its connection, not the worker its time.
        if connection.send(outgoing) == Err(super::hub::SendError::Full) {
            connection.request_close();
        }
    });
    function.executor.attach_socket(&socket_id, sink);
    let failed = (
        function.executor.clone(),
        socket_id.clone(),
        hub.clone(),
        current.clone(),
    );
    let name = function.spec.name.clone();
    let mut res = upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_failed_upgrade(move |e| {
            let (executor, socket_id, hub, current) = failed;
            tracing::debug!(socket_id, "a worker's WebSocket upgrade failed: {e}");
            executor.detach_socket(&socket_id);
            hub.remove(&socket_id);
            current
                .load()
                .functions
                .telemetry
                .metrics
                .set_websocket_connections(hub.len());
        })
        .on_upgrade(move |socket| serve(socket, current, name, socket_id, registration));
    for (name, value) in headers {
        // The handshake's own headers are the upgrade's.
        if name.eq_ignore_ascii_case("sec-websocket-protocol")
            && let Ok(value) = http::HeaderValue::from_str(&value)
        {
            res.headers_mut()
                .insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
        }
    }
    res.into_response()
}

/// How the connection ended, for the worker's close event.
struct Closed {
    code: u16,
    reason: String,
    clean: bool,
}

async fn serve(
    mut socket: WebSocket,
    current: Arc<Current>,
    function: String,
    socket_id: String,
    registration: Registration,
) {
    let Registration {
        connection,
        mut rx,
        mut closing,
    } = registration;
    let closed = loop {
        tokio::select! {
            received = socket.recv() => {
                connection.touch();
                let event = match received {
                    Some(Ok(Message::Text(text))) => json!({"type": "message", "text": text.as_str()}),
                    Some(Ok(Message::Binary(bytes))) => json!({
                        "type": "message",
                        "b64": base64::engine::general_purpose::STANDARD.encode(&bytes),
                    }),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(frame))) => {
                        break match frame {
                            Some(frame) => Closed { code: frame.code, reason: frame.reason.as_str().to_owned(), clean: true },
                            None => Closed { code: 1005, reason: String::new(), clean: true },
                        };
                    }
                    Some(Err(e)) => {
                        if is_too_big(&e) {
                            let reason = format!("Message too big: the limit is {MAX_MESSAGE_BYTES} bytes");
                            close(&mut socket, 1009, &reason).await;
                            break Closed { code: 1009, reason, clean: false };
                        }
                        break Closed { code: 1006, reason: String::new(), clean: false };
                    }
                    None => break Closed { code: 1006, reason: String::new(), clean: false },
                };
                // In order: the next message is read once the worker has this one.
                if !deliver(&current, &function, &socket_id, event).await {
                    let reason = "the worker failed to take a message";
                    close(&mut socket, 1011, reason).await;
                    break Closed { code: 1011, reason: reason.to_owned(), clean: false };
                }
            }
            outgoing = rx.recv() => {
                let message = match outgoing {
                    Some(Outgoing::Text(text)) => Message::Text(text.into()),
                    Some(Outgoing::Binary(bytes)) => Message::Binary(bytes),
                    Some(Outgoing::Close(code, reason)) => {
                        close(&mut socket, code, &reason).await;
                        break Closed { code, reason, clean: true };
                    }
                    None => break Closed { code: 1006, reason: String::new(), clean: false },
                };
                if socket.send(message).await.is_err() {
                    break Closed { code: 1006, reason: String::new(), clean: false };
                }
            }
            () = connection.close_requested() => {
                close(&mut socket, 1008, "the client reads too slowly").await;
                break Closed { code: 1008, reason: "the client reads too slowly".to_owned(), clean: false };
            }
            () = until_closing(&mut closing) => {
                close(&mut socket, 1001, "Going away").await;
                break Closed { code: 1001, reason: "Going away".to_owned(), clean: true };
            }
        }
    };
    rx.close();
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
    drop(socket);
    let event = json!({
        "type": "close",
        "code": closed.code,
        "reason": closed.reason,
        "wasClean": closed.clean,
    });
    // The worker hears of the end; it answers nothing the client could see.
    let _ = deliver(&current, &function, &socket_id, event).await;
    let generation = current.load();
    if let Some(idx) = generation.functions.index(&function) {
        generation.functions.list[idx]
            .executor
            .detach_socket(&socket_id);
    }
    generation.websockets.remove(&socket_id);
    generation
        .functions
        .telemetry
        .metrics
        .set_websocket_connections(generation.websockets.len());
}

/// Invokes the worker with what its socket's client did; whether it took it.
async fn deliver(current: &Current, function: &str, socket_id: &str, mut event: Value) -> bool {
    let generation = current.load();
    let Some(idx) = generation.functions.index(function) else {
        return false;
    };
    event["sid"] = Value::String(socket_id.to_owned());
    let payload = json!({ "nimbusSocket": event }).to_string().into_bytes();
    let res = generation
        .functions
        .invoke_detached(
            idx,
            InvokeRequest {
                request_id: trace::new_request_id(),
                payload,
                trace: TraceContext::new_root(),
                trigger: Trigger::WebSocket,
            },
        )
        .await;
    matches!(res, Ok(report) if matches!(report.outcome, Outcome::Ok(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_101_with_a_socket_id_accepts_a_websocket() {
        let accepted = accepted_socket(
            br#"{"statusCode":101,"webSocket":"ab12","headers":{"sec-websocket-protocol":"chat"}}"#,
        );
        assert_eq!(
            accepted,
            Some((
                "ab12".to_owned(),
                vec![("sec-websocket-protocol".to_owned(), "chat".to_owned())]
            ))
        );
        assert_eq!(
            accepted_socket(br#"{"statusCode":200,"webSocket":"x"}"#),
            None
        );
        assert_eq!(accepted_socket(br#"{"statusCode":101}"#), None);
        assert_eq!(accepted_socket(b"not json"), None);
    }
}
