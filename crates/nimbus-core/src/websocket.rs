//! An app's WebSocket API as the manifest declares it: the Serverless Framework's
//! `websocket` events, which on AWS make one API Gateway WebSocket API per service.

use crate::policy::LambdaAuthorizer;

/// The app's WebSocket API: its routes and how a message picks one. No routes means the
/// app has none.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketApi {
    /// `provider.websocketsApiName`, else `{stage}-{service}-websockets` as the Framework
    /// names it.
    pub name: String,
    /// `provider.websocketsApiRouteSelectionExpression` (default `$request.body.action`).
    pub route_selection: RouteSelection,
    /// The routes, in manifest order; each route key appears once.
    pub routes: Vec<WebSocketRoute>,
}

/// How a message's route key is found: API Gateway's route selection expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSelection {
    /// `$request.body.a.b`: the string (or number, or boolean) at that path of a JSON
    /// body; a body that is not JSON, or lacks the path, goes to `$default`.
    BodyPath(Vec<String>),
}

/// One route of the WebSocket API and the function it invokes.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketRoute {
    /// `$connect`, `$disconnect`, `$default` or a custom key such as `sendMessage`.
    pub route_key: String,
    /// The function invoked, by its name in the manifest.
    pub function: String,
    /// `routeResponseSelectionExpression: $default`: the function's return value (its
    /// `body`) is sent back to the client as a message.
    pub route_response: bool,
    /// `$connect` only: the Lambda authorizer (REQUEST type) every upgrade must pass.
    pub authorizer: Option<WebSocketAuthorizer>,
}

/// The Lambda authorizer of the `$connect` route.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketAuthorizer {
    /// The authorizer's name (the function's, unless `name` and `arn` are both given).
    pub name: String,
    /// The function and identity sources; the format is always REST's REQUEST shape.
    pub lambda: LambdaAuthorizer,
}

impl WebSocketApi {
    /// The route for `route_key`, if the API has it.
    pub fn route(&self, route_key: &str) -> Option<&WebSocketRoute> {
        self.routes.iter().find(|r| r.route_key == route_key)
    }

    /// Whether the app declares any `websocket` event.
    pub fn is_served(&self) -> bool {
        !self.routes.is_empty()
    }

    /// The route key of a message `body`: the selection expression's value when the body
    /// is JSON and names a route of the API, else `$default`.
    pub fn select<'a>(&'a self, body: &[u8]) -> &'a str {
        let RouteSelection::BodyPath(path) = &self.route_selection;
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return "$default";
        };
        for segment in path {
            value = match value {
                serde_json::Value::Object(mut map) => match map.remove(segment) {
                    Some(value) => value,
                    None => return "$default",
                },
                _ => return "$default",
            };
        }
        let key = match value {
            serde_json::Value::String(text) => text,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return "$default",
        };
        // `$connect` and `$disconnect` are never chosen by a message.
        match self
            .routes
            .iter()
            .find(|r| r.route_key == key && !r.route_key.starts_with('$'))
        {
            Some(route) => &route.route_key,
            None => "$default",
        }
    }
}

impl Default for WebSocketApi {
    fn default() -> WebSocketApi {
        WebSocketApi {
            name: String::new(),
            route_selection: RouteSelection::BodyPath(vec!["action".to_owned()]),
            routes: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_selects_its_route_by_the_body_path_or_falls_back_to_default() {
        let route = |key: &str| WebSocketRoute {
            route_key: key.to_owned(),
            function: "f".to_owned(),
            route_response: false,
            authorizer: None,
        };
        let api = WebSocketApi {
            name: "ws".to_owned(),
            route_selection: RouteSelection::BodyPath(vec!["action".to_owned()]),
            routes: vec![
                route("$connect"),
                route("$default"),
                route("send"),
                route("7"),
            ],
        };
        assert_eq!(api.select(br#"{"action":"send","x":1}"#), "send");
        assert_eq!(api.select(br#"{"action":7}"#), "7");
        assert_eq!(api.select(br#"{"action":"other"}"#), "$default");
        assert_eq!(api.select(br#"{"action":"$connect"}"#), "$default");
        assert_eq!(api.select(b"not json"), "$default");
        assert_eq!(api.select(br#"["send"]"#), "$default");
        let nested = WebSocketApi {
            route_selection: RouteSelection::BodyPath(vec!["m".to_owned(), "t".to_owned()]),
            ..api
        };
        assert_eq!(nested.select(br#"{"m":{"t":"send"}}"#), "send");
        assert_eq!(nested.select(br#"{"m":"send"}"#), "$default");
    }
}
