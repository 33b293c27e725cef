//! Gateway policies: `provider.httpApi.authorizers`, `provider.apiGateway` (API keys and
//! the usage plan), `provider.rateLimit`, and a route's `authorizer`, `private` and
//! `rateLimit`.

mod lambda;

use crate::policy::{
    ApiKey, Authorizer, AuthorizerKind, JwtAuthorizer, JwtKeys, Quota, QuotaPeriod, RateLimit,
    RateLimitKey, RouteAuthorizer, UsagePlan,
};

use super::tree::{Entry, Node, Pos, Value};
use super::{Cx, join_key};

/// What routes need to know about the provider's policies while they are read.
#[derive(Default)]
pub(super) struct PolicyNames {
    /// Names of `provider.httpApi.authorizers`.
    pub(super) authorizers: Vec<String>,
    /// Names of those that are Lambda authorizers (`type: request`).
    pub(super) lambda_authorizers: Vec<String>,
    /// Functions Lambda authorizers of `provider.httpApi.authorizers` name, resolved once
    /// every function is known.
    pending_functions: Vec<lambda::PendingFunction>,
    /// The authorizers `http` events declare, by name.
    rest_authorizers: Vec<lambda::DeclaredRestAuthorizer>,
    /// Whether `provider.apiGateway.apiKeys` declares any key.
    pub(super) has_api_keys: bool,
    /// `provider.rateLimit`, the default of every route.
    pub(super) rate_limit: Option<RateLimit>,
    /// The routes `websocket` events declare, in manifest order.
    pub(super) websocket_routes: Vec<super::websocket::DeclaredRoute>,
}

impl Cx<'_> {
    /// `provider.httpApi.authorizers`.
    pub(super) fn authorizers(&mut self, node: &Node, key: &str) -> Vec<Authorizer> {
        let Some(entries) = self.policy_mapping(node, key) else {
            return Vec::new();
        };
        let mut authorizers = Vec::new();
        for entry in &entries {
            let entry_key = join_key(key, &entry.key);
            // Routes may name an authorizer that has errors of its own: one report is enough.
            self.policy_names.authorizers.push(entry.key.clone());
            if let Some(kind) = self.authorizer(entry, &entry_key) {
                authorizers.push(Authorizer {
                    name: entry.key.clone(),
                    kind,
                });
            }
        }
        authorizers
    }

    /// One authorizer: `type: jwt` (the default) or `type: request`.
    fn authorizer(&mut self, entry: &Entry, key: &str) -> Option<AuthorizerKind> {
        let fields = self.policy_mapping(&entry.value, key)?;
        if let Some(field) = fields.iter().find(|f| f.key == "type") {
            let field_key = join_key(key, &field.key);
            let value = self.read(&field.value, &field_key);
            match self
                .string(&value, &field_key, "an authorizer type")
                .as_deref()
            {
                Some("jwt") => {}
                Some("request") => {
                    self.policy_names.lambda_authorizers.push(entry.key.clone());
                    return self.http_lambda_authorizer(&entry.key, entry.value.pos, &fields, key);
                }
                Some(other) => {
                    let message =
                        format!("unknown authorizer type {other:?}; expected `jwt` or `request`");
                    self.error(value.pos, &field_key, message);
                    return None;
                }
                None => return None,
            }
        }
        self.jwt_authorizer(entry, &fields, key)
    }

    fn jwt_authorizer(
        &mut self,
        entry: &Entry,
        fields: &[Entry],
        key: &str,
    ) -> Option<AuthorizerKind> {
        let mut header = "authorization".to_owned();
        let mut issuer = None;
        let mut audience = Vec::new();
        let mut keys = Vec::new();
        let mut ok = true;
        for field in fields {
            let field_key = join_key(key, &field.key);
            match field.key.as_str() {
                // Read by `authorizer`.
                "type" => {}
                "identitySource" => {
                    let value = self.read(&field.value, &field_key);
                    if let Some(text) = self.string(&value, &field_key, "an identity source") {
                        match text.trim().strip_prefix("$request.header.") {
                            Some(name) if !name.is_empty() => header = name.to_ascii_lowercase(),
                            _ => {
                                let message = format!(
                                    "expected a header, as in `$request.header.Authorization`, got {text:?}"
                                );
                                self.error(value.pos, &field_key, message);
                                ok = false;
                            }
                        }
                    }
                }
                "issuerUrl" => {
                    let value = self.read(&field.value, &field_key);
                    issuer = self.string(&value, &field_key, "the issuer URL");
                    ok &= issuer.is_some();
                }
                "audience" => {
                    let value = self.read_deep(&field.value, &field_key);
                    match &value.value {
                        Value::Str(text) => audience.push(text.clone()),
                        Value::Seq(items) => {
                            for (item_idx, item) in items.iter().enumerate() {
                                let item_key = format!("{field_key}[{item_idx}]");
                                audience.extend(self.string(item, &item_key, "an audience"));
                            }
                        }
                        _ => {
                            let message =
                                format!("expected a list of audiences, got {}", value.describe());
                            self.error(value.pos, &field_key, message);
                        }
                    }
                }
                "secret" => {
                    let value = self.read(&field.value, &field_key);
                    match self.string(&value, &field_key, "an HS256 secret") {
                        Some(secret) if !secret.is_empty() => keys.push(JwtKeys::Secret(secret)),
                        Some(_) => {
                            self.error(value.pos, &field_key, "the secret is empty");
                            ok = false;
                        }
                        None => ok = false,
                    }
                }
                "jwksFile" => {
                    let value = self.read(&field.value, &field_key);
                    if let Some(path) = self.string(&value, &field_key, "a path to a JWKS file") {
                        keys.push(JwtKeys::JwksFile {
                            path,
                            line: value.pos.line,
                            key: field_key.clone(),
                        });
                    }
                }
                "jwksUrl" => {
                    let value = self.read(&field.value, &field_key);
                    if let Some(url) = self.string(&value, &field_key, "a JWKS URL") {
                        if url.starts_with("http://") {
                            keys.push(JwtKeys::JwksUrl(url));
                        } else {
                            let message = format!(
                                "nimbus fetches JWKS over plain http:// only (for a local issuer); got {url:?}; use `jwksFile` for other issuers"
                            );
                            self.error(value.pos, &field_key, message);
                            ok = false;
                        }
                    }
                }
                "functionName"
                | "functionArn"
                | "resultTtlInSeconds"
                | "enableSimpleResponses"
                | "payloadVersion" => self.warn(
                    field.key_pos,
                    &field_key,
                    "applies to `request` authorizers only; ignored",
                ),
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        let Some(issuer) = issuer else {
            if ok {
                self.error(
                    entry.value.pos,
                    &join_key(key, "issuerUrl"),
                    "missing `issuerUrl`; tokens are checked against it",
                );
            }
            return None;
        };
        if audience.is_empty() {
            self.error(
                entry.value.pos,
                &join_key(key, "audience"),
                "missing `audience`; a token's `aud` must name one of them",
            );
            return None;
        }
        let keys = match keys.len() {
            1 => keys.pop()?,
            0 if !ok => return None,
            0 => {
                self.error(
                    entry.value.pos,
                    key,
                    "no keys to check signatures with: set `secret` (HS256), `jwksFile` or `jwksUrl`",
                );
                return None;
            }
            _ => {
                self.error(
                    entry.value.pos,
                    key,
                    "set one of `secret`, `jwksFile` and `jwksUrl`, not several",
                );
                return None;
            }
        };
        if !ok {
            return None;
        }
        Some(AuthorizerKind::Jwt(JwtAuthorizer {
            header,
            issuer,
            audience,
            keys,
        }))
    }

    /// `provider.apiGateway`: `apiKeys` and `usagePlan`.
    pub(super) fn api_gateway(&mut self, node: &Node, key: &str) -> (Vec<ApiKey>, UsagePlan) {
        let mut keys = Vec::new();
        let mut plan = UsagePlan::default();
        let Some(entries) = self.policy_mapping(node, key) else {
            return (keys, plan);
        };
        for entry in &entries {
            let entry_key = join_key(key, &entry.key);
            match entry.key.as_str() {
                "apiKeys" => keys = self.api_keys(&entry.value, &entry_key),
                "usagePlan" => plan = self.usage_plan(&entry.value, &entry_key),
                _ => self.warn(entry.key_pos, &entry_key, "not modelled by nimbus; ignored"),
            }
        }
        (keys, plan)
    }

    fn api_keys(&mut self, node: &Node, key: &str) -> Vec<ApiKey> {
        let node = self.read(node, key);
        let Value::Seq(items) = &node.value else {
            if node.value != Value::Invalid {
                let message = format!("expected a list of API keys, got {}", node.describe());
                self.error(node.pos, key, message);
            }
            return Vec::new();
        };
        let mut keys: Vec<ApiKey> = Vec::new();
        for (item_idx, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{item_idx}]");
            let item = self.read(item, &item_key);
            let api_key = match &item.value {
                Value::Str(name) => Some(ApiKey {
                    name: name.clone(),
                    value: None,
                }),
                Value::Map(fields) => {
                    let mut name = None;
                    let mut value = None;
                    for field in fields {
                        let field_key = join_key(&item_key, &field.key);
                        let field_value = self.read(&field.value, &field_key);
                        match field.key.as_str() {
                            "name" => name = self.string(&field_value, &field_key, "a key name"),
                            "value" => {
                                value = self.string(&field_value, &field_key, "a key value");
                                if value.as_ref().is_some_and(|v| v.len() < 20) {
                                    self.error(
                                        field_value.pos,
                                        &field_key,
                                        "an API key value has at least 20 characters, as on API Gateway",
                                    );
                                }
                            }
                            "description" | "customerId" | "enabled" => {}
                            _ => self.warn(
                                field.key_pos,
                                &field_key,
                                "not modelled by nimbus; ignored",
                            ),
                        }
                    }
                    if name.is_none() {
                        self.error(item.pos, &join_key(&item_key, "name"), "missing `name`");
                    }
                    name.map(|name| ApiKey { name, value })
                }
                Value::Invalid => None,
                _ => {
                    let message = format!(
                        "expected a key name or `{{ name, value }}`, got {}",
                        item.describe()
                    );
                    self.error(item.pos, &item_key, message);
                    None
                }
            };
            if let Some(api_key) = api_key {
                if keys.iter().any(|k| k.name == api_key.name) {
                    let message = format!("the API key `{}` is declared twice", api_key.name);
                    self.error(item.pos, &item_key, message);
                }
                keys.push(api_key);
            }
        }
        keys
    }

    fn usage_plan(&mut self, node: &Node, key: &str) -> UsagePlan {
        let mut plan = UsagePlan::default();
        let Some(entries) = self.policy_mapping(node, key) else {
            return plan;
        };
        for entry in &entries {
            let entry_key = join_key(key, &entry.key);
            match entry.key.as_str() {
                "quota" => plan.quota = self.quota(&entry.value, &entry_key),
                "throttle" => plan.throttle = self.throttle(&entry.value, &entry_key),
                _ => self.warn(entry.key_pos, &entry_key, "not modelled by nimbus; ignored"),
            }
        }
        plan
    }

    fn quota(&mut self, node: &Node, key: &str) -> Option<Quota> {
        let entries = self.policy_mapping(node, key)?;
        let mut limit = None;
        let mut period = QuotaPeriod::Month;
        for entry in &entries {
            let entry_key = join_key(key, &entry.key);
            let value = self.read(&entry.value, &entry_key);
            match entry.key.as_str() {
                "limit" => limit = self.whole_number(&value, &entry_key, "a number of requests"),
                "period" => match self.string(&value, &entry_key, "DAY or MONTH").as_deref() {
                    Some("DAY") => period = QuotaPeriod::Day,
                    Some("MONTH") => period = QuotaPeriod::Month,
                    Some(other) => {
                        let message = format!("expected DAY or MONTH, got {other:?}");
                        self.error(value.pos, &entry_key, message);
                    }
                    None => {}
                },
                "offset" => self.warn(entry.key_pos, &entry_key, "not modelled by nimbus; ignored"),
                _ => self.warn(entry.key_pos, &entry_key, "not modelled by nimbus; ignored"),
            }
        }
        match limit {
            Some(limit) => Some(Quota { limit, period }),
            None => {
                self.error(node.pos, &join_key(key, "limit"), "missing `limit`");
                None
            }
        }
    }

    fn throttle(&mut self, node: &Node, key: &str) -> Option<RateLimit> {
        let entries = self.policy_mapping(node, key)?;
        let mut rate = None;
        let mut burst = None;
        for entry in &entries {
            let entry_key = join_key(key, &entry.key);
            let value = self.read(&entry.value, &entry_key);
            match entry.key.as_str() {
                "rateLimit" => rate = self.rate(&value, &entry_key),
                "burstLimit" => burst = self.burst(&value, &entry_key),
                _ => self.warn(entry.key_pos, &entry_key, "not modelled by nimbus; ignored"),
            }
        }
        let Some(rate) = rate else {
            self.error(node.pos, &join_key(key, "rateLimit"), "missing `rateLimit`");
            return None;
        };
        Some(RateLimit {
            rate,
            burst: burst.unwrap_or_else(|| default_burst(rate)),
            per: RateLimitKey::ApiKey,
        })
    }

    /// `rateLimit: { rate, burst, per }` on a route or the provider (nimbus extension).
    pub(super) fn rate_limit(&mut self, node: &Node, key: &str) -> Option<RateLimit> {
        let entries = self.policy_mapping(node, key)?;
        let mut rate = None;
        let mut burst = None;
        let mut per = RateLimitKey::Ip;
        for entry in &entries {
            let entry_key = join_key(key, &entry.key);
            let value = self.read(&entry.value, &entry_key);
            match entry.key.as_str() {
                "rate" => rate = Some(self.rate(&value, &entry_key)),
                "burst" => burst = self.burst(&value, &entry_key),
                "per" => match self
                    .string(&value, &entry_key, "ip, apiKey, subject or route")
                    .as_deref()
                {
                    Some("ip") => per = RateLimitKey::Ip,
                    Some("apiKey") => per = RateLimitKey::ApiKey,
                    Some("subject") => per = RateLimitKey::Subject,
                    Some("route") => per = RateLimitKey::Route,
                    Some(other) => {
                        let message =
                            format!("expected ip, apiKey, subject or route, got {other:?}");
                        self.error(value.pos, &entry_key, message);
                    }
                    None => {}
                },
                _ => self.warn(entry.key_pos, &entry_key, "not modelled by nimbus; ignored"),
            }
        }
        let rate = match rate {
            Some(rate) => rate?,
            None => {
                self.error(
                    node.pos,
                    &join_key(key, "rate"),
                    "missing `rate` (requests per second)",
                );
                return None;
            }
        };
        Some(RateLimit {
            rate,
            burst: burst.unwrap_or_else(|| default_burst(rate)),
            per,
        })
    }

    /// A route's `authorizer`: `{ name, scopes }` or a name, naming one of
    /// `provider.httpApi.authorizers`.
    pub(super) fn route_authorizer(
        &mut self,
        node: &Node,
        key: &str,
        names: &[String],
    ) -> Option<RouteAuthorizer> {
        let node = self.read(node, key);
        let (name, name_pos, name_key, scopes) = match &node.value {
            Value::Str(name) => (name.clone(), node.pos, key.to_owned(), Vec::new()),
            Value::Map(fields) => {
                let mut name = None;
                let mut scopes = Vec::new();
                for field in fields {
                    let field_key = join_key(key, &field.key);
                    match field.key.as_str() {
                        "name" => {
                            let value = self.read(&field.value, &field_key);
                            name = self
                                .string(&value, &field_key, "an authorizer name")
                                .map(|n| (n, value.pos, field_key));
                        }
                        "type" => {
                            let value = self.read(&field.value, &field_key);
                            match self.string(&value, &field_key, "jwt or request").as_deref() {
                                Some("jwt" | "request") | None => {}
                                Some("aws_iam") => {
                                    self.error(
                                        value.pos,
                                        &field_key,
                                        "IAM authorization (`aws_iam`) is not enforced by nimbus; a route behind it would be public",
                                    );
                                    return None;
                                }
                                Some(other) => {
                                    let message = format!(
                                        "unknown authorizer type {other:?}; expected jwt or request"
                                    );
                                    self.error(value.pos, &field_key, message);
                                }
                            }
                        }
                        "id" => {
                            self.error(
                                field.key_pos,
                                &field_key,
                                "an authorizer outside this app (`id`) cannot be checked by nimbus; declare it under `provider.httpApi.authorizers`",
                            );
                            return None;
                        }
                        "scopes" => {
                            let value = self.read_deep(&field.value, &field_key);
                            if let Value::Seq(items) = &value.value {
                                for (item_idx, item) in items.iter().enumerate() {
                                    let item_key = format!("{field_key}[{item_idx}]");
                                    scopes.extend(self.string(item, &item_key, "a scope"));
                                }
                            } else {
                                let message =
                                    format!("expected a list of scopes, got {}", value.describe());
                                self.error(value.pos, &field_key, message);
                            }
                        }
                        _ => {
                            self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored")
                        }
                    }
                }
                let Some((name, pos, name_key)) = name else {
                    self.error(node.pos, &join_key(key, "name"), "missing `name`");
                    return None;
                };
                (name, pos, name_key, scopes)
            }
            Value::Invalid => return None,
            _ => {
                let message = format!("expected `{{ name, scopes }}`, got {}", node.describe());
                self.error(node.pos, key, message);
                return None;
            }
        };
        if !names.contains(&name) {
            let known = if names.is_empty() {
                "none are declared".to_owned()
            } else {
                format!("declared: {}", names.join(", "))
            };
            let message = format!(
                "unknown authorizer `{name}`; name one of `provider.httpApi.authorizers` ({known})"
            );
            self.error(name_pos, &name_key, message);
            return None;
        }
        if !scopes.is_empty() && self.policy_names.lambda_authorizers.contains(&name) {
            self.error(
                name_pos,
                &join_key(key, "scopes"),
                format!(
                    "`{name}` is a Lambda authorizer, which decides by itself; scopes apply to JWT authorizers only"
                ),
            );
            return None;
        }
        Some(RouteAuthorizer { name, scopes })
    }

    /// `private: true | false`.
    pub(super) fn private(&mut self, node: &Node, key: &str, pos: Pos, has_keys: bool) -> bool {
        let node = self.read(node, key);
        let private = match &node.value {
            Value::Bool(b) => *b,
            Value::Str(s) if s == "true" || s == "false" => s == "true",
            Value::Invalid => return false,
            _ => {
                let message = format!("expected true or false, got {}", node.describe());
                self.error(node.pos, key, message);
                return false;
            }
        };
        if private && !has_keys {
            self.error(
                pos,
                key,
                "a private route needs API keys: declare them in `provider.apiGateway.apiKeys`",
            );
        }
        private
    }

    fn rate(&mut self, value: &Node, key: &str) -> Option<f64> {
        let rate = match &value.value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(s) => s.trim().parse::<f64>().ok(),
            Value::Invalid => return None,
            _ => None,
        };
        match rate {
            Some(rate) if rate > 0.0 && rate.is_finite() => Some(rate),
            _ => {
                let message = format!(
                    "expected a positive number of requests per second, got {}",
                    value.describe()
                );
                self.error(value.pos, key, message);
                None
            }
        }
    }

    fn burst(&mut self, value: &Node, key: &str) -> Option<u32> {
        let burst = self.whole_number(value, key, "a whole number of requests")?;
        match u32::try_from(burst) {
            Ok(burst) if burst > 0 => Some(burst),
            _ => {
                self.error(value.pos, key, "expected between 1 and 4294967295 requests");
                None
            }
        }
    }

    /// The entries of a mapping; `None` (reported unless null) for anything else.
    fn policy_mapping(&mut self, node: &Node, key: &str) -> Option<Vec<Entry>> {
        let node = self.read(node, key);
        match node.value {
            Value::Map(entries) => Some(entries),
            Value::Null | Value::Invalid => None,
            _ => {
                let message = format!("expected a mapping, got {}", node.describe());
                self.error(node.pos, key, message);
                None
            }
        }
    }
}

/// Without `burst`, a bucket holds one second of requests (at least one).
fn default_burst(rate: f64) -> u32 {
    rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32
}
