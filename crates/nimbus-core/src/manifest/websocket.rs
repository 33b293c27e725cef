//! `websocket` events and the provider's `websockets*` settings: the Serverless
//! Framework's API Gateway WebSocket API ("AWS Lambda Events - Websocket").

use std::time::Duration;

use crate::policy::{IdentitySource, LambdaAuthorizer, LambdaFormat};
use crate::websocket::{RouteSelection, WebSocketApi, WebSocketAuthorizer, WebSocketRoute};

use super::tree::{Entry, Node, Pos, Value};
use super::{Cx, join_key};

/// The identity source of a `$connect` authorizer that names none, as the Framework sets it.
const DEFAULT_IDENTITY: &str = "route.request.header.Auth";

/// A route as declared, with where, for the duplicate-route error.
pub(super) struct DeclaredRoute {
    route: WebSocketRoute,
    pos: Pos,
    key: String,
}

impl Cx<'_> {
    /// One `websocket` event of `function`: `$connect`, or `{ route,
    /// routeResponseSelectionExpression, authorizer }`. Kept until every function is read
    /// ([`Cx::finish_websocket`]).
    pub(super) fn websocket_event(&mut self, node: &Node, key: &str, function: &str) {
        let node = self.read(node, key);
        let mut route_key = None;
        let mut route_response = false;
        let mut authorizer = None;
        let mut ok = true;
        match &node.value {
            Value::Str(text) => route_key = Some((text.trim().to_owned(), node.pos)),
            Value::Map(fields) => {
                for field in fields {
                    let field_key = join_key(key, &field.key);
                    match field.key.as_str() {
                        "route" => {
                            let value = self.read(&field.value, &field_key);
                            match self.string(&value, &field_key, "a route key such as `$connect`")
                            {
                                Some(text) => route_key = Some((text.trim().to_owned(), value.pos)),
                                None => ok = false,
                            }
                        }
                        "routeResponseSelectionExpression" => {
                            let value = self.read(&field.value, &field_key);
                            match self.string(&value, &field_key, "`$default`").as_deref() {
                                Some("$default") => route_response = true,
                                Some(other) => {
                                    let message = format!(
                                        "API Gateway takes only `$default` here for a Lambda proxy route, got {other:?}"
                                    );
                                    self.error(value.pos, &field_key, message);
                                    ok = false;
                                }
                                None => ok = false,
                            }
                        }
                        "authorizer" => {
                            authorizer = Some((
                                self.websocket_authorizer(&field.value, &field_key),
                                field.key_pos,
                                field_key,
                            ));
                        }
                        _ => {
                            self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored")
                        }
                    }
                }
            }
            Value::Invalid => return,
            _ => {
                let message = format!(
                    "expected a route key such as `$connect` or `{{ route, routeResponseSelectionExpression, authorizer }}`, got {}",
                    node.describe()
                );
                self.error(node.pos, key, message);
                return;
            }
        }
        let Some((route_key, pos)) = route_key else {
            if ok {
                self.error(
                    node.pos,
                    &join_key(key, "route"),
                    "missing `route`: `$connect`, `$disconnect`, `$default` or a custom route key",
                );
            }
            return;
        };
        if let Err(message) = check_route_key(&route_key) {
            self.error(pos, key, message);
            return;
        }
        let authorizer = match authorizer {
            Some((_, pos, authorizer_key)) if route_key != "$connect" => {
                let message = format!(
                    "API Gateway runs an authorizer on the `$connect` route only, not on `{route_key}`"
                );
                self.error(pos, &authorizer_key, message);
                return;
            }
            Some((None, _, _)) => return,
            Some((Some(authorizer), _, _)) => Some(authorizer),
            None => None,
        };
        if !ok {
            return;
        }
        self.policy_names.websocket_routes.push(DeclaredRoute {
            route: WebSocketRoute {
                route_key,
                function: function.to_owned(),
                route_response,
                authorizer,
            },
            pos,
            key: key.to_owned(),
        });
    }

    /// A `$connect` route's `authorizer`: a function name, a Lambda ARN, or `{ name | arn,
    /// identitySource }`.
    fn websocket_authorizer(&mut self, node: &Node, key: &str) -> Option<WebSocketAuthorizer> {
        let node = self.read(node, key);
        let mut name = None;
        let mut arn = None;
        let mut identity: Option<(Vec<String>, Pos, String)> = None;
        match &node.value {
            Value::Str(text) if text.contains(':') => arn = Some((text.clone(), node.pos, key)),
            Value::Str(text) => name = Some((text.clone(), node.pos, key)),
            Value::Map(fields) => {
                for field in fields {
                    let field_key = join_key(key, &field.key);
                    match field.key.as_str() {
                        "name" => {
                            let value = self.read(&field.value, &field_key);
                            let text = self.string(&value, &field_key, "an authorizer name")?;
                            name = Some((text, value.pos, key));
                        }
                        "arn" => {
                            let (text, pos) = self.reference_text(
                                &field.value,
                                &field_key,
                                "a Lambda function ARN",
                            )?;
                            arn = Some((text, pos, key));
                        }
                        "identitySource" => {
                            identity = Some(self.identity_sources(field, &field_key)?);
                        }
                        _ => {
                            self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored")
                        }
                    }
                }
            }
            Value::Invalid => return None,
            _ => {
                let message = format!(
                    "expected a function name, a Lambda ARN or `{{ name, identitySource }}`, got {}",
                    node.describe()
                );
                self.error(node.pos, key, message);
                return None;
            }
        }
        let function = match (&arn, &name) {
            (Some((text, pos, at)), _) | (None, Some((text, pos, at))) => {
                self.authorizer_function(text, *pos, at)?
            }
            (None, None) => {
                self.error(
                    node.pos,
                    &join_key(key, "name"),
                    "missing `name`: name the function of this app that authorizes connections, or give its `arn`",
                );
                return None;
            }
        };
        let name = match (&arn, name) {
            (Some(_), Some((name, _, _))) => name,
            _ => function.clone(),
        };
        let (texts, pos, identity_key) = identity
            .unwrap_or_else(|| (vec![DEFAULT_IDENTITY.to_owned()], node.pos, key.to_owned()));
        let mut identity_sources = Vec::new();
        for text in &texts {
            match identity_source(text) {
                Ok(source) => identity_sources.push(source),
                Err(message) => {
                    self.error(pos, &identity_key, message);
                    return None;
                }
            }
        }
        Some(WebSocketAuthorizer {
            name,
            lambda: LambdaAuthorizer {
                function,
                format: LambdaFormat::RestRequest,
                identity_sources,
                // WebSocket APIs cache no authorizer answers: each connection asks anew.
                ttl: Duration::ZERO,
                validation: None,
            },
        })
    }

    /// `identitySource`: one expression or a list of them.
    fn identity_sources(&mut self, field: &Entry, key: &str) -> Option<(Vec<String>, Pos, String)> {
        let value = self.read(&field.value, key);
        let texts = match &value.value {
            Value::Str(text) => text.split(',').map(|t| t.trim().to_owned()).collect(),
            Value::Seq(items) => {
                let mut texts = Vec::new();
                for (item_idx, item) in items.iter().enumerate() {
                    let item_key = format!("{key}[{item_idx}]");
                    let item = self.read(item, &item_key);
                    texts.push(self.string(&item, &item_key, "an identity source")?);
                }
                texts
            }
            Value::Invalid => return None,
            _ => {
                let message = format!(
                    "expected `route.request.header.NAME` or `route.request.querystring.NAME`, or a list of them, got {}",
                    value.describe()
                );
                self.error(value.pos, key, message);
                return None;
            }
        };
        Some((texts, value.pos, key.to_owned()))
    }

    /// A provider key about the WebSocket API; `false` when `key` is not one.
    pub(super) fn websocket_provider_key(
        &mut self,
        entry: &Entry,
        key: &str,
        api: &mut WebSocketApi,
    ) -> bool {
        match entry.key.as_str() {
            "websocketsApiName" => {
                let value = self.read(&entry.value, key);
                if let Some(name) = self.string(&value, key, "a name") {
                    api.name = name;
                }
            }
            "websocketsApiRouteSelectionExpression" => {
                let value = self.read(&entry.value, key);
                let Some(text) =
                    self.string(&value, key, "an expression such as `$request.body.action`")
                else {
                    return true;
                };
                let path = text
                    .trim()
                    .strip_prefix("$request.body.")
                    .map(|path| path.split('.').map(str::to_owned).collect::<Vec<_>>())
                    .filter(|path| path.iter().all(|segment| !segment.is_empty()));
                match path {
                    Some(path) => api.route_selection = RouteSelection::BodyPath(path),
                    None => {
                        let message = format!(
                            "nimbus selects routes by a JSON body path, as in `$request.body.action`; got {text:?}"
                        );
                        self.error(value.pos, key, message);
                    }
                }
            }
            // Documentation only.
            "websocketsDescription" => {}
            "websockets" => self.warn(entry.key_pos, key, "not modelled by nimbus; ignored"),
            _ => return false,
        }
        true
    }

    /// The WebSocket API of the app, once every function is read: its routes (each key
    /// once) and its name.
    pub(super) fn finish_websocket(&mut self, api: &mut WebSocketApi, service: &str, stage: &str) {
        let declared = std::mem::take(&mut self.policy_names.websocket_routes);
        let mut routes: Vec<DeclaredRoute> = Vec::new();
        for route in declared {
            if let Some(first) = routes
                .iter()
                .find(|first| first.route.route_key == route.route.route_key)
            {
                let message = format!(
                    "duplicate websocket route `{}`: function `{}` already declares it at line {} ({})",
                    route.route.route_key, first.route.function, first.pos.line, first.key
                );
                self.error(route.pos, &route.key, message);
                continue;
            }
            routes.push(route);
        }
        api.routes = routes.into_iter().map(|declared| declared.route).collect();
        if api.name.is_empty() {
            api.name = format!("{stage}-{service}-websockets");
        }
    }
}

/// Route keys are `$connect`, `$disconnect`, `$default` or a custom key of printable
/// characters (API Gateway's `RouteKey` is up to 128 of them).
fn check_route_key(route_key: &str) -> Result<(), String> {
    if route_key.starts_with('$') && !["$connect", "$disconnect", "$default"].contains(&route_key) {
        return Err(format!(
            "unknown route `{route_key}`; the predefined routes are `$connect`, `$disconnect` and `$default`, and custom routes do not start with `$`"
        ));
    }
    if route_key.is_empty() || route_key.len() > 128 || route_key.chars().any(char::is_control) {
        return Err(format!(
            "{route_key:?} is not a route key: 1 to 128 printable characters"
        ));
    }
    Ok(())
}

/// `route.request.header.NAME` or `route.request.querystring.NAME` (API Gateway's
/// identity sources for WebSocket APIs).
fn identity_source(text: &str) -> Result<IdentitySource, String> {
    let text = text.trim();
    if let Some(name) = text.strip_prefix("route.request.header.")
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Ok(IdentitySource::Header(name.to_ascii_lowercase()));
    }
    if let Some(name) = text.strip_prefix("route.request.querystring.")
        && !name.is_empty()
    {
        return Ok(IdentitySource::Query(name.to_owned()));
    }
    if text.starts_with("stageVariables.") {
        return Err(format!(
            "nimbus has no stage variables, so a connection would never carry {text:?}; use a header or a query string parameter"
        ));
    }
    Err(format!(
        "expected `route.request.header.NAME` or `route.request.querystring.NAME`, got {text:?}"
    ))
}
