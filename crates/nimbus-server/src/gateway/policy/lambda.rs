//! Lambda authorizers: the event a request becomes, the invocation (through
//! `Functions`, so limits and telemetry apply), the answer read as a simple response or
//! an IAM policy and matched against the route's ARN, and a bounded cache of answers.
//!
//! REST authorizers follow "Use API Gateway Lambda authorizers" (TOKEN and REQUEST
//! types); HTTP API ones "Control access to HTTP APIs with AWS Lambda authorizers"
//! (payload formats 1.0 and 2.0, simple responses).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nimbus_core::policy::{ContextVariable, IdentitySource, LambdaAuthorizer, LambdaFormat};
use nimbus_core::{ApiKind, Outcome};
use serde_json::{Map, Value, json};

use super::{Denied, Deny, PolicyRequest};
use crate::functions::{Functions, InvokeRequest};
use crate::gateway::apigw::{self, EventContext};
use crate::gateway::routes::RouteMatch;
use crate::telemetry::Trigger;
use crate::telemetry::trace::TraceContext;

/// At most this many answers are cached; past it, expired ones go first, then those
/// closest to expiring.
const MAX_ANSWERS: usize = 10_000;

/// A Lambda authorizer of the app, ready to check requests.
pub(super) struct Authorizer {
    /// The name routes refer to it by.
    pub(super) name: String,
    pub(super) api: ApiKind,
    pub(super) cfg: LambdaAuthorizer,
}

/// What a request that an authorizer allowed carries on.
pub(super) struct Granted {
    /// `requestContext.authorizer` of the function's event.
    pub(super) event_authorizer: Value,
    /// The principal, which rate limits `per: subject` count by.
    pub(super) principal_id: Option<String>,
}

/// Answers by authorizer and identity, each until its TTL runs out.
#[derive(Default)]
pub(super) struct AnswerCache {
    map: Mutex<HashMap<CacheKey, Cached>>,
}

/// (the authorizer's API and name, the identity source values in order).
type CacheKey = (ApiKind, String, Vec<String>);

struct Cached {
    answer: Arc<Answer>,
    expires: Instant,
}

/// What an authorizer function answered, checked; a cached answer is evaluated again for
/// each route, as API Gateway evaluates a cached policy against each method's ARN.
#[derive(Debug, PartialEq)]
struct Answer {
    principal_id: Option<String>,
    verdict: Verdict,
    /// `context`: what the function's event carries.
    context: Option<Map<String, Value>>,
}

#[derive(Debug, PartialEq)]
enum Verdict {
    /// `isAuthorized` of a simple response.
    Simple(bool),
    /// `policyDocument`.
    Policy(Policy),
}

/// The statements of an IAM policy document.
#[derive(Debug, PartialEq)]
struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, PartialEq)]
struct Statement {
    effect: Effect,
    /// `Action`, or `NotAction` (then `negate_actions`).
    actions: Vec<String>,
    negate_actions: bool,
    /// `Resource`, or `NotResource` (then `negate_resources`).
    resources: Vec<String>,
    negate_resources: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// The outcome of evaluating a policy for one ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    /// A statement denies it.
    ExplicitDeny,
    /// No statement allows it.
    ImplicitDeny,
}

/// Why an authorizer gave no usable answer; the client gets a 500, the log this.
struct Failure(String);

impl Authorizer {
    /// Checks a request: identity present (401 otherwise), the cached or a fresh answer,
    /// then the answer applied to this route.
    pub(super) async fn authorize(
        &self,
        cache: &AnswerCache,
        arn_prefix: &str,
        req: &PolicyRequest<'_>,
    ) -> Result<Granted, Denied> {
        let identity = self.identity(req)?;
        if let (LambdaFormat::RestToken, Some(pattern)) = (self.cfg.format, &self.cfg.validation)
            && !identity.iter().all(|token| pattern.is_match(token))
        {
            return Err(Denied::Unauthorized);
        }
        let arn = method_arn(arn_prefix, self.api, req.parts, req.ctx);
        let key = (self.api, self.name.clone(), identity);
        let cached = if self.cfg.ttl.is_zero() {
            None
        } else {
            cache.get(&key)
        };
        let (answer, latency) = match cached {
            Some(answer) => (answer, Duration::ZERO),
            None => {
                let start = Instant::now();
                let answer = Arc::new(self.invoke(req, &arn, &key.2).await?);
                if !self.cfg.ttl.is_zero() {
                    cache.put(key, answer.clone(), self.cfg.ttl);
                }
                (answer, start.elapsed())
            }
        };
        let decision = match &answer.verdict {
            Verdict::Simple(true) => Decision::Allow,
            Verdict::Simple(false) => Decision::ExplicitDeny,
            Verdict::Policy(policy) => policy.evaluate(&arn),
        };
        match (decision, self.api) {
            (Decision::Allow, _) => {}
            (_, ApiKind::Http) => return Err(Denied::Forbidden),
            (Decision::ExplicitDeny, ApiKind::Rest) => {
                return Err(Denied::NotAllowed(Deny::Explicit));
            }
            (Decision::ImplicitDeny, ApiKind::Rest) => {
                return Err(Denied::NotAllowed(Deny::Implicit));
            }
        }
        Ok(Granted {
            event_authorizer: self.event_authorizer(&answer, latency),
            principal_id: answer.principal_id.clone(),
        })
    }

    /// The identity source values in order; 401 when one is missing or empty.
    fn identity(&self, req: &PolicyRequest<'_>) -> Result<Vec<String>, Denied> {
        self.cfg
            .identity_sources
            .iter()
            .map(|source| {
                identity_value(source, self.api, req.matched, req.parts, req.ctx)
                    .filter(|value| !value.is_empty())
                    .ok_or(Denied::Unauthorized)
            })
            .collect()
    }

    /// Invokes the function and reads its answer. An error, a timeout or a malformed
    /// answer is a 500 and a log line naming the authorizer.
    async fn invoke(
        &self,
        req: &PolicyRequest<'_>,
        arn: &str,
        identity: &[String],
    ) -> Result<Answer, Denied> {
        let event = self.event(req.matched, req.parts, req.ctx, arn, identity);
        self.invoke_event(req.functions, req.ctx.request_id, req.trace, &event)
            .await
    }

    /// Invokes the function with `event` and reads its answer; what `invoke` does once
    /// the event is made (a WebSocket API's `$connect` authorizer makes its own).
    async fn invoke_event(
        &self,
        functions: &Arc<Functions>,
        request_id: &str,
        trace: &TraceContext,
        event: &Value,
    ) -> Result<Answer, Denied> {
        let failed = |invocation_id: &str, Failure(why): Failure| {
            tracing::warn!(
                authorizer = %self.name,
                function = %self.cfg.function,
                request_id = %request_id,
                invocation_id,
                "authorizer `{}` failed, answering 500: {why}",
                self.name
            );
            Denied::AuthorizerFailed(self.api)
        };
        let invocation_id = uuid::Uuid::new_v4().to_string();
        let Some(idx) = functions.index(&self.cfg.function) else {
            let why = format!("no function `{}` is served", self.cfg.function);
            return Err(failed(&invocation_id, Failure(why)));
        };
        let payload = serde_json::to_vec(event).expect("a serde_json::Value always serializes");
        let res = functions
            .invoke_detached(
                idx,
                InvokeRequest {
                    request_id: invocation_id.clone(),
                    payload,
                    trace: trace.clone(),
                    trigger: Trigger::Http,
                },
            )
            .await;
        let report = match res {
            Ok(report) => report,
            Err(e) => {
                let why = format!("the function could not be invoked: {}", e.message);
                return Err(failed(&invocation_id, Failure(why)));
            }
        };
        let why = match &report.outcome {
            Outcome::Ok(payload) => match read_answer(self.cfg.format, payload) {
                Ok(answer) => return Ok(answer),
                Err(Failure(why)) => {
                    format!("its response is not a valid authorizer response: {why}")
                }
            },
            Outcome::Error(payload) => {
                let error: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
                let message = error["errorMessage"].as_str().unwrap_or_default();
                // A REST authorizer refuses a caller by failing with "Unauthorized"
                // (`callback("Unauthorized")`, `throw new Error("Unauthorized")`).
                if self.api == ApiKind::Rest && message == "Unauthorized" {
                    return Err(Denied::Unauthorized);
                }
                let error_type = error["errorType"].as_str().unwrap_or("Error");
                format!("the function failed: {error_type}: {message}")
            }
            Outcome::Timeout(timeout) => {
                format!(
                    "the function timed out after {:.1} s",
                    timeout.as_secs_f64()
                )
            }
            Outcome::OutOfMemory { limit_mb } => {
                format!("the function ran out of memory ({limit_mb} MB)")
            }
            Outcome::Crashed(why) => format!("the function crashed: {why}"),
        };
        Err(failed(&invocation_id, Failure(why)))
    }

    /// The event the function is sent, in the authorizer's format.
    fn event(
        &self,
        m: &RouteMatch<'_>,
        parts: &http::request::Parts,
        ctx: &EventContext<'_>,
        arn: &str,
        identity: &[String],
    ) -> Value {
        match self.cfg.format {
            LambdaFormat::RestToken => json!({
                "type": "TOKEN",
                "authorizationToken": identity.first().map(String::as_str).unwrap_or_default(),
                "methodArn": arn,
            }),
            LambdaFormat::RestRequest => {
                let mut event = apigw::request_event(ApiKind::Rest, m, parts, ctx);
                event.insert("type".to_owned(), Value::from("REQUEST"));
                event.insert("methodArn".to_owned(), Value::from(arn));
                Value::Object(event)
            }
            LambdaFormat::HttpV1 => {
                // The REST shape, at the HTTP API's only stage.
                let ctx = EventContext {
                    stage: "$default",
                    ..*ctx
                };
                let mut event = apigw::request_event(ApiKind::Rest, m, parts, &ctx);
                // HTTP API paths carry no stage.
                if let Some(Value::Object(request_context)) = event.get_mut("requestContext") {
                    request_context.insert("path".to_owned(), Value::from(parts.uri.path()));
                }
                let joined = identity.join(",");
                event.insert("version".to_owned(), Value::from("1.0"));
                event.insert("type".to_owned(), Value::from("REQUEST"));
                event.insert("methodArn".to_owned(), Value::from(arn));
                event.insert("identitySource".to_owned(), Value::from(joined.clone()));
                event.insert("authorizationToken".to_owned(), Value::from(joined));
                Value::Object(event)
            }
            LambdaFormat::HttpV2Policy | LambdaFormat::HttpV2Simple => {
                let mut event = apigw::request_event(ApiKind::Http, m, parts, ctx);
                event.insert("type".to_owned(), Value::from("REQUEST"));
                event.insert("routeArn".to_owned(), Value::from(arn));
                event.insert("identitySource".to_owned(), Value::from(identity.to_vec()));
                Value::Object(event)
            }
        }
    }

    /// `requestContext.authorizer` for the function: `{lambda: context}` on HTTP APIs;
    /// on REST APIs the principal, the latency and the context, whose numbers and
    /// booleans arrive as strings (nulls are left out).
    fn event_authorizer(&self, answer: &Answer, latency: Duration) -> Value {
        match self.api {
            ApiKind::Http => json!({
                "lambda": answer.context.clone().map_or(Value::Null, Value::Object),
            }),
            ApiKind::Rest => {
                let mut authorizer = Map::new();
                for (name, value) in answer.context.iter().flatten() {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        Value::Null => continue,
                        other => other.to_string(),
                    };
                    authorizer.insert(name.clone(), Value::String(text));
                }
                authorizer.insert(
                    "principalId".to_owned(),
                    answer
                        .principal_id
                        .clone()
                        .map_or(Value::Null, Value::String),
                );
                let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
                authorizer.insert("integrationLatency".to_owned(), Value::from(latency_ms));
                Value::Object(authorizer)
            }
        }
    }
}

/// Checks a WebSocket API's `$connect` with its Lambda authorizer (REQUEST type, as for
/// REST APIs: "Control access to WebSocket APIs with AWS Lambda REQUEST authorizers"):
/// invokes `cfg.function` with `event`, evaluates the policy it answers against
/// `method_arn` (`.../{stage}/$connect`), and returns `requestContext.authorizer` for the
/// connection's events. WebSocket APIs cache no answers.
pub(crate) async fn authorize_connect(
    functions: &Arc<Functions>,
    name: &str,
    cfg: &LambdaAuthorizer,
    event: &Value,
    method_arn: &str,
    request_id: &str,
    trace: &TraceContext,
) -> Result<Value, Denied> {
    let authorizer = Authorizer {
        name: name.to_owned(),
        api: ApiKind::Rest,
        cfg: cfg.clone(),
    };
    let start = Instant::now();
    let answer = authorizer
        .invoke_event(functions, request_id, trace, event)
        .await?;
    let latency = start.elapsed();
    match &answer.verdict {
        Verdict::Policy(policy) => match policy.evaluate(method_arn) {
            Decision::Allow => {}
            Decision::ExplicitDeny => return Err(Denied::NotAllowed(Deny::Explicit)),
            Decision::ImplicitDeny => return Err(Denied::NotAllowed(Deny::Implicit)),
        },
        Verdict::Simple(true) => {}
        Verdict::Simple(false) => return Err(Denied::Forbidden),
    }
    Ok(authorizer.event_authorizer(&answer, latency))
}

impl AnswerCache {
    fn get(&self, key: &CacheKey) -> Option<Arc<Answer>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let cached = map.get(key)?;
        if cached.expires <= Instant::now() {
            map.remove(key);
            return None;
        }
        Some(cached.answer.clone())
    }

    fn put(&self, key: CacheKey, answer: Arc<Answer>, ttl: Duration) {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ANSWERS && !map.contains_key(&key) {
            evict(&mut map, now);
        }
        map.insert(
            key,
            Cached {
                answer,
                expires: now + ttl,
            },
        );
    }
}

/// Drops expired answers; if that frees nothing, the eighth closest to expiring.
fn evict(map: &mut HashMap<CacheKey, Cached>, now: Instant) {
    map.retain(|_, cached| cached.expires > now);
    if map.len() >= MAX_ANSWERS {
        let mut expiries: Vec<Instant> = map.values().map(|cached| cached.expires).collect();
        expiries.sort_unstable();
        if let Some(cut) = expiries.get(expiries.len() / 8).copied() {
            map.retain(|_, cached| cached.expires > cut);
        }
    }
}

impl Policy {
    /// IAM's evaluation, narrowed to `execute-api:Invoke` on one ARN: an explicit Deny
    /// wins, then any Allow; nothing that applies is an implicit deny.
    fn evaluate(&self, arn: &str) -> Decision {
        let mut allowed = false;
        for statement in &self.statements {
            if !statement.applies_to(arn) {
                continue;
            }
            match statement.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

impl Statement {
    fn applies_to(&self, arn: &str) -> bool {
        // Action names are case-insensitive in IAM; ARNs are not.
        let action = self
            .actions
            .iter()
            .any(|pattern| wildcard_match(&pattern.to_ascii_lowercase(), "execute-api:invoke"));
        let resource = self
            .resources
            .iter()
            .any(|pattern| wildcard_match(pattern, arn));
        action != self.negate_actions && resource != self.negate_resources
    }
}

/// IAM's wildcards: `*` matches any run of characters (`/` and `:` included), `?` any
/// one character.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it has matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The ARN API Gateway names the request's method or route by:
/// `arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/METHOD/PATH`, with the request's path.
fn method_arn(
    arn_prefix: &str,
    api: ApiKind,
    parts: &http::request::Parts,
    ctx: &EventContext<'_>,
) -> String {
    let stage = match api {
        ApiKind::Rest => ctx.stage,
        ApiKind::Http => "$default",
    };
    format!("{arn_prefix}/{stage}/{}{}", parts.method, parts.uri.path())
}

/// One identity source's value in the request; several headers or parameters of the
/// name are joined with commas, as API Gateway joins them.
fn identity_value(
    source: &IdentitySource,
    api: ApiKind,
    m: &RouteMatch<'_>,
    parts: &http::request::Parts,
    ctx: &EventContext<'_>,
) -> Option<String> {
    match source {
        IdentitySource::Header(name) => {
            let values: Vec<String> = parts
                .headers
                .get_all(name.as_str())
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        }
        IdentitySource::Query(name) => {
            let values: Vec<String> = apigw::parse_query(parts.uri.query().unwrap_or_default())
                .into_iter()
                .filter(|(key, _)| key == name)
                .map(|(_, value)| value)
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        }
        IdentitySource::Context(variable) => Some(match variable {
            ContextVariable::HttpMethod => parts.method.to_string(),
            ContextVariable::Path => parts.uri.path().to_owned(),
            ContextVariable::ResourcePath => m.route.path.clone(),
            ContextVariable::RouteKey => apigw::route_key(m.route),
            ContextVariable::SourceIp => ctx.source_ip.to_owned(),
            ContextVariable::Stage => match api {
                ApiKind::Rest => ctx.stage.to_owned(),
                ApiKind::Http => "$default".to_owned(),
            },
        }),
    }
}

/// Reads an authorizer function's result in `format`.
fn read_answer(format: LambdaFormat, payload: &[u8]) -> Result<Answer, Failure> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(payload) else {
        return Err(Failure("it is not a JSON object".to_owned()));
    };
    let context = match object.get("context") {
        None | Some(Value::Null) => None,
        Some(Value::Object(context)) => Some(context.clone()),
        Some(_) => return Err(Failure("`context` is not an object".to_owned())),
    };
    if matches!(format, LambdaFormat::RestToken | LambdaFormat::RestRequest)
        && let Some((name, _)) = context
            .iter()
            .flatten()
            .find(|(_, value)| value.is_object() || value.is_array())
    {
        // REST APIs pass context values on as strings, and refuse objects and lists.
        return Err(Failure(format!(
            "`context.{name}` is an object or a list; a REST authorizer's context holds strings, numbers and booleans only"
        )));
    }
    if format == LambdaFormat::HttpV2Simple {
        let Some(Value::Bool(authorized)) = object.get("isAuthorized") else {
            return Err(Failure(
                "a simple response needs `isAuthorized`: true or false".to_owned(),
            ));
        };
        return Ok(Answer {
            principal_id: None,
            verdict: Verdict::Simple(*authorized),
            context,
        });
    }
    let principal_id = match object.get("principalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(Failure("`principalId` is not a string".to_owned())),
    };
    let Some(document) = object.get("policyDocument") else {
        return Err(Failure(
            "there is no `policyDocument` (an IAM policy response is expected)".to_owned(),
        ));
    };
    Ok(Answer {
        principal_id,
        verdict: Verdict::Policy(read_policy(document)?),
        context,
    })
}

/// An IAM policy document: `Statement` is one statement or a list of them.
fn read_policy(document: &Value) -> Result<Policy, Failure> {
    let statements = match document.get("Statement") {
        Some(Value::Array(statements)) => statements.iter().collect(),
        Some(statement @ Value::Object(_)) => vec![statement],
        _ => {
            return Err(Failure(
                "`policyDocument.Statement` is not a statement or a list of them".to_owned(),
            ));
        }
    };
    let statements = statements
        .into_iter()
        .enumerate()
        .map(|(idx, statement)| read_statement(statement, idx))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Policy { statements })
}

fn read_statement(statement: &Value, idx: usize) -> Result<Statement, Failure> {
    let fail = |what: &str| Failure(format!("`policyDocument.Statement[{idx}]` {what}"));
    let effect = match statement.get("Effect").and_then(Value::as_str) {
        Some(effect) if effect.eq_ignore_ascii_case("allow") => Effect::Allow,
        Some(effect) if effect.eq_ignore_ascii_case("deny") => Effect::Deny,
        _ => return Err(fail("needs `Effect`: Allow or Deny")),
    };
    let (actions, negate_actions) = one_of(statement, "Action", "NotAction")
        .ok_or_else(|| fail("needs `Action` (a string or a list of strings)"))?;
    let (resources, negate_resources) = one_of(statement, "Resource", "NotResource")
        .ok_or_else(|| fail("needs `Resource` (a string or a list of strings)"))?;
    Ok(Statement {
        effect,
        actions,
        negate_actions,
        resources,
        negate_resources,
    })
}

/// `field` (false) or `not_field` (true) as a list of strings.
fn one_of(statement: &Value, field: &str, not_field: &str) -> Option<(Vec<String>, bool)> {
    let (value, negate) = match (statement.get(field), statement.get(not_field)) {
        (Some(value), None) => (value, false),
        (None, Some(value)) => (value, true),
        _ => return None,
    };
    let strings = match value {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    Some((strings, negate))
}

#[cfg(test)]
mod tests;
