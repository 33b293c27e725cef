//! Function events: `http` and `httpApi` become routes; `sqs`, `sns`, `s3` and `schedule`
//! become event sources (`sources`); `websocket` events routes of the WebSocket API
//! (`websocket`); other event types are warned about.

use std::collections::HashMap;

use crate::events::EventSource;
use crate::policy::{RateLimit, RouteAuthorizer};
use crate::{ApiKind, HttpMethod, HttpRoute};

use super::tree::{Entry, Node, Pos, Value};
use super::{Cx, join_key};

/// Methods a route may name, besides `ANY` and `*`.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Routes declared so far, by method and path shape. One gateway serves both `http`
/// and `httpApi` routes, so they share one table.
#[derive(Default)]
pub(super) struct RouteTable {
    seen: HashMap<String, FirstRoute>,
}

/// A function's events other than its routes.
#[derive(Default)]
pub(super) struct FunctionEvents {
    /// `sqs`, `sns`, `s3` and `schedule` events.
    pub(super) sources: Vec<EventSource>,
    /// The types of the events nimbus does not serve.
    pub(super) ignored: Vec<String>,
}

/// What a route enforces besides routing.
#[derive(Default)]
struct RoutePolicies {
    authorizer: Option<RouteAuthorizer>,
    private: bool,
    rate_limit: Option<RateLimit>,
}

/// Where a route was declared first, for the duplicate-route error.
struct FirstRoute {
    function: String,
    line: usize,
    key: String,
}

impl Cx<'_> {
    /// `functions.<name>.events`: the function's routes, registered in `routes`.
    pub(super) fn events(
        &mut self,
        node: &Node,
        key: &str,
        function: &str,
        http_api_cors: bool,
        routes: &mut RouteTable,
        out: &mut FunctionEvents,
    ) -> Vec<HttpRoute> {
        let node = self.read(node, key);
        let items = match node.value {
            Value::Seq(items) => items,
            Value::Null | Value::Invalid => return Vec::new(),
            _ => {
                let message = format!("expected a list of events, got {}", node.describe());
                self.error(node.pos, key, message);
                return Vec::new();
            }
        };
        let mut http_routes = Vec::new();
        let mut n_schedules = 0;
        for (event_idx, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{event_idx}]");
            let item = self.read(item, &item_key);
            let entry = match &item.value {
                Value::Map(entries) if entries.len() == 1 => &entries[0],
                Value::Invalid => continue,
                Value::Map(entries) => {
                    let names: Vec<String> = entries
                        .iter()
                        .map(|entry| format!("`{}`", entry.key))
                        .collect();
                    let message = format!(
                        "an event has one key naming its type, as in `- httpApi: GET /hello`; found {}",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    );
                    self.error(item.pos, &item_key, message);
                    continue;
                }
                _ => {
                    let message = format!(
                        "expected an event such as `- httpApi: GET /hello`, got {}",
                        item.describe()
                    );
                    self.error(item.pos, &item_key, message);
                    continue;
                }
            };
            let event_key = join_key(&item_key, &entry.key);
            let route = match entry.key.as_str() {
                "http" => self.route(&entry.value, &event_key, ApiKind::Rest, false),
                "httpApi" => self.route(&entry.value, &event_key, ApiKind::Http, http_api_cors),
                "sqs" | "sns" | "s3" | "schedule" | "eventBridge" | "stream" | "dynamodb" => {
                    out.sources.extend(self.event_source(
                        entry,
                        &event_key,
                        function,
                        &mut n_schedules,
                    ));
                    continue;
                }
                "websocket" => {
                    self.websocket_event(&entry.value, &event_key, function);
                    continue;
                }
                other => {
                    let message = format!("`{other}` events are not yet served by nimbus; ignored");
                    self.warn(entry.key_pos, &event_key, message);
                    out.ignored.push(other.to_owned());
                    continue;
                }
            };
            let Some((route, pos)) = route else { continue };
            let shape = format!("{} {}", route.method, path_shape(&route.path));
            match routes.seen.get(&shape) {
                Some(first) => {
                    let message = format!(
                        "duplicate route `{} {}`: function `{}` already declares it at line {} ({})",
                        route.method, route.path, first.function, first.line, first.key
                    );
                    self.error(pos, &event_key, message);
                }
                None => {
                    let first = FirstRoute {
                        function: function.to_owned(),
                        line: pos.line,
                        key: event_key.clone(),
                    };
                    routes.seen.insert(shape, first);
                }
            }
            http_routes.push(route);
        }
        http_routes
    }

    /// One `http` or `httpApi` event: `METHOD path`, `'*'` (httpApi only), or a mapping.
    /// Returns the route and where it was declared.
    pub(super) fn route(
        &mut self,
        node: &Node,
        key: &str,
        api: ApiKind,
        default_cors: bool,
    ) -> Option<(HttpRoute, Pos)> {
        let node = self.read(node, key);
        let example = match api {
            ApiKind::Rest => "GET hello/{id}",
            ApiKind::Http => "GET /hello/{id}",
        };
        let mut policies = RoutePolicies {
            rate_limit: self.policy_names.rate_limit,
            ..RoutePolicies::default()
        };
        let (method, path, cors) = match &node.value {
            Value::Str(text) if api == ApiKind::Http && text.trim() == "*" => {
                (Some(HttpMethod::Any), Some("*".to_owned()), default_cors)
            }
            Value::Str(text) => {
                let parts: Vec<&str> = text.split_whitespace().collect();
                let [method, path] = parts.as_slice() else {
                    let message = format!(
                        "expected `METHOD path`, as in `{example}`, got {}",
                        node.describe()
                    );
                    self.error(node.pos, key, message);
                    return None;
                };
                let method = self.method(method, node.pos, key);
                let path = self.path(path, api, node.pos, key);
                (method, path, default_cors)
            }
            Value::Map(entries) => {
                self.route_fields(entries, node.pos, key, api, default_cors, &mut policies)?
            }
            Value::Invalid => return None,
            _ => {
                let message = format!(
                    "expected `METHOD path` (as in `{example}`) or a mapping with `method` and `path`, got {}",
                    node.describe()
                );
                self.error(node.pos, key, message);
                return None;
            }
        };
        Some((
            HttpRoute {
                api,
                method: method?,
                path: path?,
                cors,
                authorizer: policies.authorizer,
                private: policies.private,
                rate_limit: policies.rate_limit,
            },
            node.pos,
        ))
    }

    /// The mapping form of an event: `{ method, path, cors, authorizer, private,
    /// rateLimit }`.
    fn route_fields(
        &mut self,
        entries: &[Entry],
        pos: Pos,
        key: &str,
        api: ApiKind,
        default_cors: bool,
        policies: &mut RoutePolicies,
    ) -> Option<(Option<HttpMethod>, Option<String>, bool)> {
        let mut method = None;
        let mut path = None;
        let mut cors = default_cors;
        let mut missing = vec!["method", "path"];
        for entry in entries {
            let entry_key = join_key(key, &entry.key);
            missing.retain(|name| *name != entry.key);
            match (entry.key.as_str(), api) {
                ("method", _) => {
                    let value = self.read(&entry.value, &entry_key);
                    if let Some(text) = self.string(&value, &entry_key, "an HTTP method") {
                        method = self.method(&text, value.pos, &entry_key);
                    }
                }
                ("path", _) => {
                    let value = self.read(&entry.value, &entry_key);
                    if let Some(text) = self.string(&value, &entry_key, "a path") {
                        path = self.path(&text, api, value.pos, &entry_key);
                    }
                }
                // httpApi routes take CORS from `provider.httpApi.cors`, as in Serverless.
                ("cors", ApiKind::Rest) => cors = self.cors(entry, &entry_key),
                ("cors", ApiKind::Http) => self.warn(
                    entry.key_pos,
                    &entry_key,
                    "httpApi routes take CORS from `provider.httpApi.cors`; ignored",
                ),
                ("authorizer", ApiKind::Http) => {
                    let names = std::mem::take(&mut self.policy_names.authorizers);
                    policies.authorizer = self.route_authorizer(&entry.value, &entry_key, &names);
                    self.policy_names.authorizers = names;
                }
                ("authorizer", ApiKind::Rest) => {
                    policies.authorizer = self.rest_authorizer(&entry.value, &entry_key);
                }
                ("private", ApiKind::Rest) => {
                    let has_keys = self.policy_names.has_api_keys;
                    policies.private =
                        self.private(&entry.value, &entry_key, entry.key_pos, has_keys);
                }
                ("rateLimit", _) => policies.rate_limit = self.rate_limit(&entry.value, &entry_key),
                _ => self.warn(entry.key_pos, &entry_key, "not modelled by nimbus; ignored"),
            }
        }
        for name in &missing {
            self.error(pos, &join_key(key, name), format!("missing `{name}`"));
        }
        if missing.is_empty() {
            Some((method, path, cors))
        } else {
            None
        }
    }

    fn method(&mut self, text: &str, pos: Pos, key: &str) -> Option<HttpMethod> {
        let upper = text.trim().to_ascii_uppercase();
        if upper == "ANY" || upper == "*" {
            return Some(HttpMethod::Any);
        }
        if METHODS.contains(&upper.as_str()) {
            return Some(HttpMethod::Named(upper));
        }
        let message = format!(
            "unknown HTTP method {text:?}; expected one of {}, ANY",
            METHODS.join(", ")
        );
        self.error(pos, key, message);
        None
    }

    fn path(&mut self, text: &str, api: ApiKind, pos: Pos, key: &str) -> Option<String> {
        if api == ApiKind::Http && text.trim() == "*" {
            return Some("*".to_owned());
        }
        match normalise_path(text) {
            Ok(path) => Some(path),
            Err(message) => {
                self.error(pos, key, message);
                None
            }
        }
    }
}

/// Adds the leading `/`, drops a trailing one, and checks the template: each `{param}`
/// is a whole segment, names are unique, and a greedy `{param+}` comes last.
fn normalise_path(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the path is empty; use `/` for the root".to_owned());
    }
    let mut path = if text.starts_with('/') {
        text.to_owned()
    } else {
        format!("/{text}")
    };
    if path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    if path == "/" {
        return Ok(path);
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let mut names: Vec<&str> = Vec::new();
    for (segment_idx, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            return Err(format!("path {path:?} has an empty segment (`//`)"));
        }
        let n_open = segment.matches('{').count();
        let n_close = segment.matches('}').count();
        if n_open == 0 && n_close == 0 {
            if segment.contains('*') {
                return Err(format!(
                    "path {path:?}: `*` is not a path pattern; use a greedy parameter such as `{{proxy+}}`"
                ));
            }
            continue;
        }
        if n_open != n_close {
            return Err(format!(
                "path {path:?} has unbalanced braces in `{segment}`"
            ));
        }
        let param = segment
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'));
        let Some(param) = param.filter(|_| n_open == 1) else {
            return Err(format!(
                "path {path:?}: a parameter must be a whole segment, like `{{id}}`, not `{segment}`"
            ));
        };
        let (name, greedy) = match param.strip_suffix('+') {
            Some(name) => (name, true),
            None => (param, false),
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !valid {
            return Err(format!(
                "path {path:?} has an invalid parameter name in `{segment}`"
            ));
        }
        if greedy && segment_idx + 1 != segments.len() {
            return Err(format!(
                "path {path:?}: the greedy parameter `{segment}` must be the last segment"
            ));
        }
        if names.contains(&name) {
            return Err(format!("path {path:?} names the parameter `{name}` twice"));
        }
        names.push(name);
    }
    Ok(path)
}

/// The path with parameter names erased: `/items/{id}` and `/items/{key}` match the same
/// requests, so they are the same route.
fn path_shape(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment.strip_prefix('{') {
            Some(param) if param.ends_with("+}") => "{+}",
            Some(_) => "{}",
            None => segment,
        })
        .collect::<Vec<_>>()
        .join("/")
}
