//! Fuzzing what a WebSocket connection's peers send (issue 14): a client's message picks
//! its route and becomes the function's event, and a function's answer becomes the route
//! response and status; all of it answers or refuses, never panics or hangs.

use nimbus_core::websocket::{RouteSelection, WebSocketApi, WebSocketRoute};
use serde_json::Value;

use super::{route_response, status_of};

const DICTIONARY: &[&[u8]] = &[
    br#""action":"#,
    br#""body":"#,
    br#""statusCode":"#,
    br#""isBase64Encoded":true"#,
    br#""$default""#,
    br#""$connect""#,
    b"null",
    b"true",
    b"1e999",
    b"-1",
    b"70000",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\\u0000",
    b"\xff",
];

#[test]
fn fuzz_websocket_messages_and_answers_are_routed_or_refused() {
    let route = |key: &str| WebSocketRoute {
        route_key: key.to_owned(),
        function: "f".to_owned(),
        route_response: true,
        authorizer: None,
    };
    let apis = [
        WebSocketApi {
            name: "ws".to_owned(),
            route_selection: RouteSelection::BodyPath(vec!["action".to_owned()]),
            routes: vec![
                route("$connect"),
                route("$default"),
                route("sendMessage"),
                route("42"),
            ],
        },
        WebSocketApi {
            name: "nested".to_owned(),
            route_selection: RouteSelection::BodyPath(vec![
                "nested".to_owned(),
                "action".to_owned(),
            ]),
            routes: vec![route("true")],
        },
    ];
    nimbus_fuzz::fuzz("websocket-message", DICTIONARY, |input| {
        for api in &apis {
            let key = api.select(input);
            assert!(!key.starts_with("$connect") && !key.starts_with("$disconnect"));
        }
        if let Ok(answer) = serde_json::from_slice::<Value>(input) {
            let _ = status_of(&answer);
            let _ = route_response(&answer);
        }
    });
}
