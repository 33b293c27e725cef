//! What the gateway checks before it invokes: API keys and the usage plan, JWT and Lambda
//! authorizers, and rate limits. Only routes with policies come here (`has_policies`).
//!
//! Counters and cached authorizer answers live in memory: a restart refills every bucket,
//! resets every quota and empties the cache.

mod lambda;

pub(super) use lambda::authorize_connect;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use nimbus_core::ApiKind;
use nimbus_core::policy::{
    AuthorizerKind, GatewayPolicies, JwtAuthorizer, JwtKeys, Quota, QuotaPeriod, RateLimit,
    RateLimitKey, UsagePlan,
};
use serde_json::{Map, Value};

use crate::functions::Functions;
use crate::gateway::apigw::EventContext;
use crate::gateway::routes::RouteMatch;
use crate::telemetry::trace::TraceContext;

/// `requestContext.accountId` and `apiId` of events, and so of method ARNs.
pub(crate) const ACCOUNT_ID: &str = "123456789012";
pub(crate) const API_ID: &str = "nimbus";
/// At most this many token buckets are kept; past it, idle ones are forgotten first.
const MAX_BUCKETS: usize = 65_536;
/// A JWKS fetched from a URL is used this long before it is fetched again; an unknown
/// `kid` refetches sooner, but not more often than `JWKS_MIN_REFRESH`.
const JWKS_TTL: Duration = Duration::from_secs(3600);
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);

/// The app's policies, ready to check requests against.
pub(crate) struct Policies {
    jwt: HashMap<String, JwtVerifier>,
    /// Lambda authorizers, by API (an `httpApi` route and an `http` route may name
    /// different authorizers by the same name) and name.
    lambda: HashMap<(ApiKind, String), lambda::Authorizer>,
    answers: lambda::AnswerCache,
    /// `arn:aws:execute-api:REGION:ACCOUNT:API`, the start of every method ARN.
    arn_prefix: String,
    /// API key value → key name.
    api_keys: HashMap<String, String>,
    usage_plan: UsagePlan,
    buckets: Buckets,
    /// Per key name: the quota period (days or months since the epoch) and its count.
    quotas: Mutex<HashMap<String, (i64, u64)>>,
}

/// A request as the policies see it, before its body is read.
pub(crate) struct PolicyRequest<'a> {
    pub(crate) matched: &'a RouteMatch<'a>,
    pub(crate) parts: &'a http::request::Parts,
    pub(crate) peer: IpAddr,
    /// What the function's event will say about the request (without an authorizer).
    pub(crate) ctx: &'a EventContext<'a>,
    /// Where authorizer functions are invoked.
    pub(crate) functions: &'a Arc<Functions>,
    /// The request's trace, with the gateway's span as parent.
    pub(crate) trace: &'a TraceContext,
}

/// What a request that passed carries on into its event.
#[derive(Default)]
pub(crate) struct Admitted {
    /// `requestContext.authorizer`.
    pub(crate) authorizer: Option<Value>,
    /// The API key's (name, value), for `requestContext.identity`.
    pub(crate) api_key: Option<(String, String)>,
}

/// Why a request is refused, answered as API Gateway does.
#[derive(Debug, PartialEq)]
pub(crate) enum Denied {
    /// No token, or one that does not verify: 401.
    Unauthorized,
    /// A missing or unknown API key, a token without the route's scopes, or an HTTP API
    /// Lambda authorizer's refusal: 403.
    Forbidden,
    /// A REST Lambda authorizer's policy does not allow the method: 403, worded as API
    /// Gateway words it.
    NotAllowed(Deny),
    /// A Lambda authorizer failed, timed out or answered something malformed: 500, as
    /// API Gateway answers (the log says why).
    AuthorizerFailed(ApiKind),
    /// Over a throttle or rate limit: 429, retry after this many seconds.
    Throttled(u64),
    /// Over the usage plan's quota: 429.
    LimitExceeded,
}

/// Whether a policy refused a method explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deny {
    /// A statement denies it.
    Explicit,
    /// No statement allows it.
    Implicit,
}

impl Policies {
    /// Builds the checkers; fails if a JWKS document does not parse. `region` is the
    /// app's, as method ARNs name it.
    pub(crate) fn new(policies: &GatewayPolicies, region: &str) -> Result<Policies, String> {
        let mut jwt = HashMap::new();
        let mut lambda = HashMap::new();
        let rest = policies.rest_authorizers.iter().map(|a| (ApiKind::Rest, a));
        let http = policies.authorizers.iter().map(|a| (ApiKind::Http, a));
        for (api, authorizer) in rest.chain(http) {
            let cfg = match &authorizer.kind {
                AuthorizerKind::Jwt(cfg) => cfg,
                AuthorizerKind::Lambda(cfg) => {
                    let key = (api, authorizer.name.clone());
                    lambda.insert(
                        key,
                        lambda::Authorizer {
                            name: authorizer.name.clone(),
                            api,
                            cfg: cfg.clone(),
                        },
                    );
                    continue;
                }
            };
            let keys = match &cfg.keys {
                JwtKeys::Secret(secret) => {
                    Keys::Secret(DecodingKey::from_secret(secret.as_bytes()))
                }
                JwtKeys::Jwks(text) => Keys::Jwks(serde_json::from_str(text).map_err(|e| {
                    format!(
                        "authorizer `{}`: the JWKS does not parse: {e}",
                        authorizer.name
                    )
                })?),
                JwtKeys::JwksUrl(url) => Keys::Url {
                    url: url.clone(),
                    cache: tokio::sync::Mutex::new(None),
                },
                JwtKeys::JwksFile { path, .. } => {
                    return Err(format!(
                        "authorizer `{}`: {path} was not read; this is a bug in nimbus",
                        authorizer.name
                    ));
                }
            };
            jwt.insert(
                authorizer.name.clone(),
                JwtVerifier {
                    cfg: cfg.clone(),
                    keys,
                },
            );
        }
        let api_keys = policies
            .api_keys
            .iter()
            .filter_map(|k| Some((k.value.clone()?, k.name.clone())))
            .collect();
        Ok(Policies {
            jwt,
            lambda,
            answers: lambda::AnswerCache::default(),
            arn_prefix: format!("arn:aws:execute-api:{region}:{}:{}", ACCOUNT_ID, API_ID),
            api_keys,
            usage_plan: policies.usage_plan.clone(),
            buckets: Buckets::default(),
            quotas: Mutex::new(HashMap::new()),
        })
    }

    /// Checks a request for `route` in API Gateway's order: API key, authorizer, usage
    /// plan, then the route's rate limit.
    pub(crate) async fn admit(&self, req: &PolicyRequest<'_>) -> Result<Admitted, Denied> {
        let route = req.matched.route;
        let headers = &req.parts.headers;
        let peer = req.peer;
        let mut admitted = Admitted::default();
        if route.private {
            let value = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .ok_or(Denied::Forbidden)?;
            let name = self.api_keys.get(value).ok_or(Denied::Forbidden)?;
            admitted.api_key = Some((name.clone(), value.to_owned()));
        }
        let mut subject = None;
        if let Some(authorizer) = &route.authorizer
            && let Some(lambda) = self.lambda.get(&(route.api, authorizer.name.clone()))
        {
            let granted = lambda
                .authorize(&self.answers, &self.arn_prefix, req)
                .await?;
            subject = granted.principal_id;
            admitted.authorizer = Some(granted.event_authorizer);
        } else if let Some(authorizer) = &route.authorizer {
            // JWT authorizers are HTTP API ones; a REST route never names one.
            let verifier = match route.api {
                ApiKind::Http => self.jwt.get(&authorizer.name),
                ApiKind::Rest => None,
            }
            .ok_or(Denied::Unauthorized)?;
            let claims = verifier.verify(headers).await?;
            let scopes = token_scopes(&claims);
            if !authorizer.scopes.is_empty()
                && !authorizer.scopes.iter().any(|s| scopes.contains(s))
            {
                return Err(Denied::Forbidden);
            }
            subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
            admitted.authorizer = Some(serde_json::json!({
                "jwt": {
                    "claims": claims_as_strings(claims),
                    "scopes": if scopes.is_empty() { Value::Null } else { Value::from(scopes) },
                }
            }));
        }
        if let Some((name, _)) = &admitted.api_key {
            if let Some(throttle) = &self.usage_plan.throttle {
                self.buckets.take(format!("plan\n{name}"), throttle)?;
            }
            if let Some(quota) = &self.usage_plan.quota {
                self.count_quota(name, quota)?;
            }
        }
        if let Some(limit) = &route.rate_limit {
            let who = match limit.per {
                RateLimitKey::ApiKey => admitted.api_key.as_ref().map(|(name, _)| name.clone()),
                RateLimitKey::Subject => subject,
                RateLimitKey::Route => Some(String::new()),
                RateLimitKey::Ip => None,
            };
            // A request without the key the limit counts by is counted by its IP.
            let who = who.unwrap_or_else(|| peer.to_string());
            self.buckets
                .take(format!("{} {}\n{who}", route.method, route.path), limit)?;
        }
        Ok(admitted)
    }

    fn count_quota(&self, name: &str, quota: &Quota) -> Result<(), Denied> {
        let days = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() / 86_400)
            .unwrap_or(0) as i64;
        let period = match quota.period {
            QuotaPeriod::Day => days,
            QuotaPeriod::Month => {
                let (year, month, _) = nimbus_core::time::civil_from_days(days);
                year * 12 + i64::from(month)
            }
        };
        let mut quotas = self.quotas.lock().unwrap_or_else(|e| e.into_inner());
        let entry = quotas.entry(name.to_owned()).or_insert((period, 0));
        if entry.0 != period {
            *entry = (period, 0);
        }
        if entry.1 >= quota.limit {
            return Err(Denied::LimitExceeded);
        }
        entry.1 += 1;
        Ok(())
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        // API Gateway's default gateway responses, body for body.
        let (status, body) = match self {
            Denied::Unauthorized => (StatusCode::UNAUTHORIZED, r#"{"message":"Unauthorized"}"#),
            Denied::Forbidden => (StatusCode::FORBIDDEN, r#"{"message":"Forbidden"}"#),
            Denied::NotAllowed(Deny::Explicit) => (
                StatusCode::FORBIDDEN,
                r#"{"Message":"User is not authorized to access this resource with an explicit deny"}"#,
            ),
            Denied::NotAllowed(Deny::Implicit) => (
                StatusCode::FORBIDDEN,
                r#"{"Message":"User is not authorized to access this resource"}"#,
            ),
            Denied::AuthorizerFailed(ApiKind::Http) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"message":"Internal Server Error"}"#,
            ),
            Denied::AuthorizerFailed(ApiKind::Rest) => {
                (StatusCode::INTERNAL_SERVER_ERROR, r#"{"message":null}"#)
            }
            Denied::Throttled(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"message":"Too Many Requests"}"#,
            ),
            Denied::LimitExceeded => (
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"message":"Limit Exceeded"}"#,
            ),
        };
        let mut res = (
            status,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if self == Denied::AuthorizerFailed(ApiKind::Rest) {
            res.headers_mut().insert(
                "x-amzn-errortype",
                http::HeaderValue::from_static("AuthorizerConfigurationException"),
            );
        }
        if let Denied::Throttled(secs) = self {
            res.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

struct JwtVerifier {
    cfg: JwtAuthorizer,
    keys: Keys,
}

enum Keys {
    Secret(DecodingKey),
    Jwks(JwkSet),
    Url {
        url: String,
        /// The last JWKS fetched, and when.
        cache: tokio::sync::Mutex<Option<(Instant, JwkSet)>>,
    },
}

/// Asymmetric algorithms accepted with JWKS keys; `none` and HMAC never are, so a public
/// key cannot be used as an HMAC secret.
const JWKS_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
];

impl JwtVerifier {
    /// The token's claims if it is signed by our keys, issued by the issuer, for one of
    /// the audiences, and current.
    async fn verify(&self, headers: &HeaderMap) -> Result<Map<String, Value>, Denied> {
        let value = headers
            .get(self.cfg.header.as_str())
            .and_then(|v| v.to_str().ok())
            .ok_or(Denied::Unauthorized)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or(value)
            .trim();
        let header = jsonwebtoken::decode_header(token).map_err(|_| Denied::Unauthorized)?;
        let key = match &self.keys {
            Keys::Secret(key) => {
                if header.alg != Algorithm::HS256 {
                    return Err(Denied::Unauthorized);
                }
                key.clone()
            }
            Keys::Jwks(set) => jwk_key(set, &header)?,
            Keys::Url { url, cache } => {
                let mut cache = cache.lock().await;
                let stale = cache.as_ref().is_none_or(|(at, set)| {
                    at.elapsed() > JWKS_TTL
                        || (at.elapsed() > JWKS_MIN_REFRESH
                            && header
                                .kid
                                .as_deref()
                                .is_some_and(|kid| set.find(kid).is_none()))
                });
                if stale {
                    match fetch_jwks(url).await {
                        Ok(set) => *cache = Some((Instant::now(), set)),
                        Err(e) => tracing::warn!(url = %url, "fetching the JWKS: {e}"),
                    }
                }
                let (_, set) = cache.as_ref().ok_or(Denied::Unauthorized)?;
                jwk_key(set, &header)?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_issuer(&[self.cfg.issuer.as_str()]);
        validation.set_audience(&self.cfg.audience);
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                tracing::debug!("token refused: {e}");
                Denied::Unauthorized
            })
    }
}

/// The key of `set` the token names (by `kid`, or the only key).
fn jwk_key(set: &JwkSet, header: &jsonwebtoken::Header) -> Result<DecodingKey, Denied> {
    if !JWKS_ALGORITHMS.contains(&header.alg) {
        return Err(Denied::Unauthorized);
    }
    let jwk = match &header.kid {
        Some(kid) => set.find(kid),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
    .ok_or(Denied::Unauthorized)?;
    DecodingKey::from_jwk(jwk).map_err(|_| Denied::Unauthorized)
}

async fn fetch_jwks(url: &str) -> anyhow::Result<JwkSet> {
    use http_body_util::BodyExt as _;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// JWKS URLs are supported"))?;
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, format!("/{path}")),
        None => (rest, "/".to_owned()),
    };
    let fetch = async {
        let stream = tokio::net::TcpStream::connect(authority).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let req = http::Request::get(path)
            .header(http::header::HOST, authority)
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let res = sender.send_request(req).await?;
        let status = res.status();
        let body = http_body_util::Limited::new(res.into_body(), 1024 * 1024)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the body: {e}"))?
            .to_bytes();
        anyhow::ensure!(status.is_success(), "{url} answered {status}");
        Ok::<_, anyhow::Error>(serde_json::from_slice(&body)?)
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| anyhow::anyhow!("{url} did not answer within 5 s"))?
}

/// `scope` (space-separated) or `scp` (a list or space-separated).
fn token_scopes(claims: &Map<String, Value>) -> Vec<String> {
    let mut scopes = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(text)) => {
                scopes.extend(text.split_whitespace().map(str::to_owned));
            }
            Some(Value::Array(items)) => {
                scopes.extend(items.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            _ => {}
        }
    }
    scopes
}

/// Claims as API Gateway passes them to an HTTP API function: every value a string, a
/// list written as `[a b]`.
fn claims_as_strings(claims: Map<String, Value>) -> Map<String, Value> {
    claims
        .into_iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(text) => text,
                Value::Array(items) => {
                    let items: Vec<String> = items
                        .iter()
                        .map(|item| match item {
                            Value::String(text) => text.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    format!("[{}]", items.join(" "))
                }
                other => other.to_string(),
            };
            (name, Value::String(text))
        })
        .collect()
}

/// Token buckets by key, bounded in number.
#[derive(Default)]
struct Buckets {
    map: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Buckets {
    /// Takes a token from `key`'s bucket, or says how long until one is there.
    fn take(&self, key: String, limit: &RateLimit) -> Result<(), Denied> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_BUCKETS && !map.contains_key(&key) {
            evict(&mut map, now, limit.refill_time());
        }
        let burst = f64::from(limit.burst);
        let bucket = map.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / limit.rate;
            Err(Denied::Throttled(wait.ceil().max(1.0) as u64))
        }
    }
}

/// Forgets buckets idle long enough to have refilled (they are as good as new); if that
/// frees nothing, the least recently used eighth.
fn evict(map: &mut HashMap<String, Bucket>, now: Instant, refill: Duration) {
    map.retain(|_, b| now.saturating_duration_since(b.last) < refill);
    if map.len() >= MAX_BUCKETS {
        let mut lasts: Vec<Instant> = map.values().map(|b| b.last).collect();
        lasts.sort_unstable();
        if let Some(cut) = lasts.get(lasts.len() / 8).copied() {
            map.retain(|_, b| b.last > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_burst_then_rate() {
        let buckets = Buckets::default();
        let limit = RateLimit {
            rate: 1.0,
            burst: 2,
            per: RateLimitKey::Ip,
        };
        assert!(buckets.take("a".to_owned(), &limit).is_ok());
        assert!(buckets.take("a".to_owned(), &limit).is_ok());
        assert_eq!(
            buckets.take("a".to_owned(), &limit),
            Err(Denied::Throttled(1))
        );
        assert!(
            buckets.take("b".to_owned(), &limit).is_ok(),
            "keys are separate"
        );
    }

    #[test]
    fn eviction_bounds_the_map() {
        let mut map = HashMap::new();
        let now = Instant::now();
        for i in 0..MAX_BUCKETS {
            map.insert(
                i.to_string(),
                Bucket {
                    tokens: 0.0,
                    last: now,
                },
            );
        }
        evict(&mut map, now, Duration::from_secs(60));
        assert!(map.len() < MAX_BUCKETS);
    }

    #[test]
    fn scopes_and_claims_read_as_api_gateway_does() {
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"sub":"u1","scope":"read write","scp":["admin"],"exp":5,"groups":["a","b"]}"#,
        )
        .unwrap_or_default();
        assert_eq!(token_scopes(&claims), ["read", "write", "admin"]);
        let strings = claims_as_strings(claims);
        assert_eq!(strings["exp"], "5");
        assert_eq!(strings["groups"], "[a b]");
    }
}
