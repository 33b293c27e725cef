//! Gateway policies as the manifest declares them: authorizers, API keys and usage plans
//! (as API Gateway has them), and rate limits (a nimbus extension).

use std::fmt;
use std::time::Duration;

/// What the gateway enforces besides routing, for the whole app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayPolicies {
    /// `provider.httpApi.authorizers`, by name: what `httpApi` routes name.
    pub authorizers: Vec<Authorizer>,
    /// The Lambda authorizers `http` events declare, by name (the function's name unless
    /// the event names the authorizer). As on API Gateway, where the Serverless Framework
    /// makes one authorizer per name, routes naming the same authorizer share it.
    pub rest_authorizers: Vec<Authorizer>,
    /// `provider.apiGateway.apiKeys`: the keys `private: true` routes accept.
    pub api_keys: Vec<ApiKey>,
    /// `provider.apiGateway.usagePlan`: throttle and quota per API key.
    pub usage_plan: UsagePlan,
    /// Whether REST (`http`) routes answer at `/{stage}/{path}`, `/{path}` or both.
    pub stage_path: StagePath,
    /// Folders of files the gateway serves where no route matches (Lift's
    /// `static-website` and `single-page-app` constructs), in manifest order.
    pub static_sites: Vec<StaticSite>,
    /// Lift's `webhook` constructs: HTTP endpoints that put the request body on an
    /// EventBridge bus.
    pub webhooks: Vec<Webhook>,
    /// The WebSocket API the `websocket` events make (no routes: none).
    pub websocket: crate::websocket::WebSocketApi,
}

/// An HTTP endpoint whose requests become EventBridge events (Lift's `webhook`): `source`
/// is the construct's id, `detail-type` its `eventType`, `detail` the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The construct's id, the events' `source`.
    pub id: String,
    /// `POST`, `PUT` or `PATCH`.
    pub method: String,
    /// The path, starting with `/`.
    pub path: String,
    /// The bus the events go to.
    pub bus: String,
    /// The events' `detail-type`.
    pub event_type: WebhookEventType,
    /// The function that authorizes each request (an HTTP API Lambda authorizer, payload
    /// 2.0, simple responses); `None` for `insecure: true`.
    pub authorizer: Option<String>,
}

/// A webhook's `eventType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEventType {
    /// A fixed text (`Webhook` by default).
    Fixed(String),
    /// `$request.body.a.b`: the value at that path of the JSON body.
    BodyPath(Vec<String>),
}

/// A folder the gateway serves files from: at `/{id}/...`, and the first site also at
/// `/...` for paths no route and no other site takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSite {
    /// The construct's id.
    pub id: String,
    /// The folder, relative to the app folder as the manifest gives it; the binary makes
    /// it absolute.
    pub dir: String,
    /// `single-page-app`: a path that names no file gets `index.html`, so the app's own
    /// router handles it.
    pub single_page: bool,
    /// The manifest line of its `path`, for errors about the folder.
    pub line: usize,
}

/// Where REST (`http`) routes answer. API Gateway serves a REST API at
/// `https://{api}.execute-api.{region}.amazonaws.com/{stage}/{path}`, so the README of a
/// REST app gives URLs with the stage in them, and serverless-offline serves them there by
/// default; HTTP APIs (`httpApi`) use the `$default` stage, which has no path segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StagePath {
    /// At `/{stage}/{path}` and at `/{path}` (nimbus's default).
    #[default]
    Optional,
    /// Only at `/{stage}/{path}`, as on API Gateway (`custom.nimbus.stagePath: required`).
    Required,
    /// Only at `/{path}` (`custom.serverless-offline.noPrependStageInUrl: true`, or
    /// `custom.nimbus.stagePath: off`).
    Off,
}

/// A named authorizer: one of `provider.httpApi.authorizers`, or one an `http` event
/// declares.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorizer {
    /// The key under `authorizers:` (or the REST authorizer's name), which routes refer to.
    pub name: String,
    /// How requests are checked.
    pub kind: AuthorizerKind,
}

/// The kinds of authorizer nimbus enforces.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizerKind {
    /// `type: jwt`: a bearer token checked against an issuer, audiences and keys.
    Jwt(JwtAuthorizer),
    /// `type: request` (HTTP API) or an `http` event's `authorizer`: a function of the app
    /// decides (API Gateway's Lambda authorizers).
    Lambda(LambdaAuthorizer),
}

/// A Lambda authorizer: the function that decides, what it is sent and for how long its
/// answer is reused.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaAuthorizer {
    /// The function invoked, by its name in this app (`functionName`, `functionArn`,
    /// `name` or `arn`, resolved).
    pub function: String,
    /// What the function is sent and how its answer is read.
    pub format: LambdaFormat,
    /// `identitySource`: what a request must carry. A request missing one is refused with
    /// 401 without invoking the function; the values are the cache key.
    pub identity_sources: Vec<IdentitySource>,
    /// `resultTtlInSeconds`: how long an answer is reused for the same identity; zero
    /// disables the cache.
    pub ttl: Duration,
    /// `identityValidationExpression` (REST token authorizers): a token that does not
    /// match is refused with 401 without invoking the function.
    pub validation: Option<TokenPattern>,
}

/// The event a Lambda authorizer is sent and the answer it gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LambdaFormat {
    /// REST `type: token`: `{type: TOKEN, authorizationToken, methodArn}`; answers an IAM
    /// policy.
    RestToken,
    /// REST `type: request`: the request in proxy payload 1.0 shape with `methodArn`;
    /// answers an IAM policy.
    RestRequest,
    /// HTTP API `payloadVersion: '1.0'`: like REST `request`; answers an IAM policy.
    HttpV1,
    /// HTTP API `payloadVersion: '2.0'`; answers an IAM policy.
    HttpV2Policy,
    /// HTTP API `payloadVersion: '2.0'` with `enableSimpleResponses: true`; answers
    /// `{isAuthorized, context}`.
    HttpV2Simple,
}

/// Where a Lambda authorizer's identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A request header, by lower-case name (`$request.header.Authorization`,
    /// `method.request.header.Authorization`).
    Header(String),
    /// A query string parameter; names are case-sensitive (`$request.querystring.token`).
    Query(String),
    /// A context variable (`$context.routeKey`, `context.resourcePath`); always present.
    Context(ContextVariable),
}

/// The context variables an identity source may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextVariable {
    /// `httpMethod`: the request's method.
    HttpMethod,
    /// `path`: the request's path.
    Path,
    /// `resourcePath` (REST): the route's path template.
    ResourcePath,
    /// `routeKey` (HTTP API): `METHOD /path`, the route's key; with it the cache holds
    /// one answer per route.
    RouteKey,
    /// `identity.sourceIp`: the client's address.
    SourceIp,
    /// `stage`.
    Stage,
}

/// A regular expression a token must match as a whole (`identityValidationExpression`).
///
/// API Gateway takes Java regular expressions; nimbus reads the common subset with
/// ASCII classes, as Java does by default (`\w` is `[a-zA-Z0-9_]`).
#[derive(Clone)]
pub struct TokenPattern {
    source: String,
    /// Boxed: a DFA is large, and authorizers are moved around while the manifest is read.
    regex: Box<regex_automata::dfa::regex::Regex>,
}

/// A JWT authorizer: where the token is, who must have issued it, for whom, and the keys
/// its signature is checked with.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtAuthorizer {
    /// The request header holding `Bearer <token>`, lower case (from `identitySource`,
    /// default `$request.header.Authorization`).
    pub header: String,
    /// `issuerUrl`: the `iss` claim must equal it.
    pub issuer: String,
    /// `audience`: the `aud` claim must name one of them.
    pub audience: Vec<String>,
    /// The keys tokens are signed with.
    pub keys: JwtKeys,
}

/// Where a JWT authorizer's keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum JwtKeys {
    /// `secret` (nimbus extension): an HS256 shared secret.
    Secret(String),
    /// `jwksFile` (nimbus extension): a JWKS document on disk, relative to the app
    /// folder. The loader reads it and replaces this with [`JwtKeys::Jwks`].
    JwksFile {
        /// The path as written.
        path: String,
        /// Where `jwksFile` is declared, for the loader's error if it cannot be read.
        line: usize,
        /// The dotted key of `jwksFile`.
        key: String,
    },
    /// A JWKS document's text, read from a `jwksFile`.
    Jwks(String),
    /// `jwksUrl` (nimbus extension; on AWS keys come from the issuer's discovery
    /// document): an `http://` URL serving a JWKS, fetched when first needed and cached.
    JwksUrl(String),
}

/// One key of `provider.apiGateway.apiKeys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's name (its id in events).
    pub name: String,
    /// The value clients send in `x-api-key`; `None` until `nimbus up` generates one.
    pub value: Option<String>,
}

/// `provider.apiGateway.usagePlan`: limits per API key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsagePlan {
    /// `throttle`: a token bucket per key.
    pub throttle: Option<RateLimit>,
    /// `quota`: at most `limit` requests per key per period.
    pub quota: Option<Quota>,
}

/// `usagePlan.quota`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests allowed per period.
    pub limit: u64,
    /// The period, in UTC calendar terms.
    pub period: QuotaPeriod,
}

/// A quota's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPeriod {
    /// `DAY`: resets at midnight UTC.
    Day,
    /// `MONTH`: resets on the first of the month, UTC.
    Month,
}

/// A token bucket: `rate` requests a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub rate: f64,
    /// The bucket's size.
    pub burst: u32,
    /// Whose bucket a request takes its token from.
    pub per: RateLimitKey,
}

/// Whom a rate limit counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimitKey {
    /// Each client IP address.
    Ip,
    /// Each API key (routes with `private: true`).
    ApiKey,
    /// Each JWT `sub` (routes with a JWT authorizer).
    Subject,
    /// The route as a whole.
    Route,
}

/// The authorizer a route names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAuthorizer {
    /// The authorizer's name.
    pub name: String,
    /// `scopes`: a token must carry at least one of them (none: any token).
    pub scopes: Vec<String>,
}

impl TokenPattern {
    /// Compiles `source`; the error says why it is not a usable expression.
    pub fn new(source: &str) -> Result<TokenPattern, String> {
        use regex_automata::dfa::{dense, regex::Regex};
        use regex_automata::{nfa::thompson, util::syntax};
        // Bounded, so an expression cannot make a huge automaton.
        const SIZE_LIMIT: usize = 1 << 20;
        let regex = Regex::builder()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .thompson(thompson::Config::new().utf8(false))
            .dense(
                dense::Config::new()
                    .dfa_size_limit(Some(SIZE_LIMIT))
                    .determinize_size_limit(Some(SIZE_LIMIT)),
            )
            .build(&format!("^(?:{source})$"))
            .map_err(|e| {
                // The build error's own text is generic ("error building NFA"); its
                // innermost cause ends with what is wrong, after a picture of the
                // expression as wrapped above.
                let mut inner: &dyn std::error::Error = &e;
                while let Some(cause) = inner.source() {
                    inner = cause;
                }
                let text = inner.to_string();
                let reason = text
                    .lines()
                    .rev()
                    .map(str::trim)
                    .find(|line| !line.is_empty())
                    .unwrap_or_default();
                reason.strip_prefix("error: ").unwrap_or(reason).to_owned()
            })?;
        Ok(TokenPattern {
            source: source.to_owned(),
            regex: Box::new(regex),
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole token matches, as Java's `String.matches` decides.
    pub fn is_match(&self, token: &str) -> bool {
        self.regex.is_match(token.as_bytes())
    }
}

impl PartialEq for TokenPattern {
    fn eq(&self, other: &TokenPattern) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for TokenPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokenPattern").field(&self.source).finish()
    }
}

impl RateLimit {
    /// How long a bucket with no request takes to refill; idle that long, it can be
    /// forgotten.
    pub fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.burst) / self.rate.max(f64::MIN_POSITIVE))
            .min(Duration::from_secs(86_400))
    }
}

#[cfg(test)]
mod tests {
    use super::TokenPattern;

    #[test]
    fn token_patterns_match_whole_tokens_with_ascii_classes() {
        let check = |pattern: &str, token: &str| match TokenPattern::new(pattern) {
            Ok(pattern) => pattern.is_match(token),
            Err(e) => panic!("{pattern}: {e}"),
        };
        assert!(check(r"^Bearer [-0-9a-zA-z\.]*$", "Bearer abc.def-1"));
        assert!(check("Bearer .*", "Bearer x"));
        assert!(!check("Bearer", "Bearer x"), "the whole token must match");
        assert!(!check("x", "ax"), "the whole token must match");
        assert!(check(r"\w+", "abc_9"));
        assert!(!check(r"\w+", "é"), "\\w is ASCII, as in Java");
        assert!(TokenPattern::new("(").is_err());
    }
}
