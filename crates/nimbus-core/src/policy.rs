//! Gateway policies as the manifest declares them: authorizers, API keys and usage plans
//! (as API Gateway has them), and rate limits (a nimbus extension).

use std::time::Duration;

/// What the gateway enforces besides routing, for the whole app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayPolicies {
    /// `provider.httpApi.authorizers`, by name.
    pub authorizers: Vec<Authorizer>,
    /// `provider.apiGateway.apiKeys`: the keys `private: true` routes accept.
    pub api_keys: Vec<ApiKey>,
    /// `provider.apiGateway.usagePlan`: throttle and quota per API key.
    pub usage_plan: UsagePlan,
}

/// A named authorizer of `provider.httpApi.authorizers`.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorizer {
    /// The key under `authorizers:`, which routes refer to.
    pub name: String,
    /// How requests are checked.
    pub kind: AuthorizerKind,
}

/// The kinds of authorizer nimbus enforces.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizerKind {
    /// `type: jwt`: a bearer token checked against an issuer, audiences and keys.
    Jwt(JwtAuthorizer),
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

impl RateLimit {
    /// How long a bucket with no request takes to refill; idle that long, it can be
    /// forgotten.
    pub fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.burst) / self.rate.max(f64::MIN_POSITIVE))
            .min(Duration::from_secs(86_400))
    }
}
