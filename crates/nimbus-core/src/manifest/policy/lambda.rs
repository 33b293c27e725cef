//! Lambda authorizers: `type: request` under `provider.httpApi.authorizers`, and the
//! `authorizer` of an `http` event (the Serverless Framework's REST custom authorizers).

use std::time::Duration;

use crate::policy::{
    Authorizer, AuthorizerKind, ContextVariable, GatewayPolicies, IdentitySource, LambdaAuthorizer,
    LambdaFormat, RouteAuthorizer, TokenPattern,
};

use super::super::references::parse_arn;
use super::super::tree::{Entry, Node, Pos, Value};
use super::super::{Cx, join_key};

/// API Gateway's default and largest `resultTtlInSeconds`.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
const MAX_TTL_SECS: u64 = 3600;

/// The identity source of REST authorizers that name none.
const DEFAULT_REST_IDENTITY: &str = "method.request.header.Authorization";

/// An authorizer's function reference, resolved once every function is known.
pub(in crate::manifest) struct PendingFunction {
    /// The authorizer (of `provider.httpApi.authorizers`) that names it.
    authorizer: String,
    /// A function name or a Lambda ARN.
    reference: String,
    pos: Pos,
    key: String,
}

/// A REST authorizer as declared, with where it was declared first.
pub(in crate::manifest) struct DeclaredRestAuthorizer {
    authorizer: Authorizer,
    line: usize,
}

impl Cx<'_> {
    /// The fields of a `type: request` authorizer of `provider.httpApi.authorizers`.
    /// Its function is resolved later, by [`Cx::finish_authorizers`].
    pub(in crate::manifest) fn http_lambda_authorizer(
        &mut self,
        name: &str,
        node_pos: Pos,
        fields: &[Entry],
        key: &str,
    ) -> Option<AuthorizerKind> {
        let mut function = None;
        let mut identity_sources = Vec::new();
        let mut ttl = None;
        let mut simple = None;
        let mut v1 = false;
        let mut ok = true;
        for field in fields {
            let field_key = join_key(key, &field.key);
            match field.key.as_str() {
                "type" => {}
                "functionName" => {
                    let value = self.read(&field.value, &field_key);
                    let reference = self.string(&value, &field_key, "a function name");
                    ok &= reference.is_some();
                    if let Some(reference) = reference {
                        function = self.set_once(function, (reference, value.pos, field_key));
                    }
                }
                "functionArn" => {
                    let res =
                        self.reference_text(&field.value, &field_key, "a Lambda function ARN");
                    ok &= res.is_some();
                    if let Some((reference, pos)) = res {
                        function = self.set_once(function, (reference, pos, field_key));
                    }
                }
                "identitySource" => {
                    let value = self.read_deep(&field.value, &field_key);
                    let items = match &value.value {
                        Value::Seq(items) => items.clone(),
                        Value::Str(_) => vec![value.clone()],
                        Value::Invalid => Vec::new(),
                        _ => {
                            let message = format!(
                                "expected a list of identity sources, got {}",
                                value.describe()
                            );
                            self.error(value.pos, &field_key, message);
                            ok = false;
                            Vec::new()
                        }
                    };
                    for (item_idx, item) in items.iter().enumerate() {
                        let item_key = match &value.value {
                            Value::Seq(_) => format!("{field_key}[{item_idx}]"),
                            _ => field_key.clone(),
                        };
                        let Some(text) = self.string(item, &item_key, "an identity source") else {
                            ok = false;
                            continue;
                        };
                        match http_identity_source(text.trim()) {
                            Ok(source) => identity_sources.push(source),
                            Err(message) => {
                                self.error(item.pos, &item_key, message);
                                ok = false;
                            }
                        }
                    }
                }
                "resultTtlInSeconds" => {
                    let secs = self.bounded(
                        &field.value,
                        &field_key,
                        "a whole number of seconds",
                        0,
                        MAX_TTL_SECS,
                    );
                    ok &= secs.is_some();
                    ttl = secs.map(|secs| (Duration::from_secs(secs), field.key_pos, field_key));
                }
                "enableSimpleResponses" => {
                    let flag = self.flag(&field.value, &field_key);
                    ok &= flag.is_some();
                    simple = flag.map(|flag| (flag, field.key_pos, field_key));
                }
                "payloadVersion" => {
                    let value = self.read(&field.value, &field_key);
                    match &value.value {
                        Value::Str(text) if text.trim() == "2.0" => v1 = false,
                        Value::Float(f) if *f == 2.0 => v1 = false,
                        Value::Str(text) if text.trim() == "1.0" => v1 = true,
                        Value::Float(f) if *f == 1.0 => v1 = true,
                        Value::Invalid => ok = false,
                        _ => {
                            let message =
                                format!("expected '1.0' or '2.0', got {}", value.describe());
                            self.error(value.pos, &field_key, message);
                            ok = false;
                        }
                    }
                }
                "issuerUrl" | "audience" | "secret" | "jwksFile" | "jwksUrl" => self.warn(
                    field.key_pos,
                    &field_key,
                    "applies to `jwt` authorizers only; ignored",
                ),
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        let Some((reference, pos, function_key)) = function else {
            if ok {
                self.error(
                    node_pos,
                    key,
                    "missing `functionName`: name the function of this app that authorizes requests",
                );
            }
            return None;
        };
        // Checked even when other fields are wrong, so one run reports every problem.
        self.policy_names.pending_functions.push(PendingFunction {
            authorizer: name.to_owned(),
            reference,
            pos,
            key: function_key,
        });
        let format = match (v1, simple) {
            (false, Some((true, _, _))) => LambdaFormat::HttpV2Simple,
            (false, _) => LambdaFormat::HttpV2Policy,
            (true, Some((true, pos, simple_key))) => {
                self.error(
                    pos,
                    &simple_key,
                    "simple responses need `payloadVersion: '2.0'`; with 1.0 the authorizer answers an IAM policy",
                );
                return None;
            }
            (true, _) => LambdaFormat::HttpV1,
        };
        // Caching needs an identity to key the answers by (API Gateway refuses the
        // authorizer, and the Serverless Framework says so before deploying).
        let ttl = match ttl {
            Some((ttl, pos, ttl_key)) if !ttl.is_zero() && identity_sources.is_empty() => {
                if ok {
                    self.error(
                        pos,
                        &ttl_key,
                        "caching needs `identitySource` (the cache key); set one, or `resultTtlInSeconds: 0`",
                    );
                }
                return None;
            }
            Some((ttl, _, _)) => ttl,
            None if identity_sources.is_empty() => Duration::ZERO,
            None => DEFAULT_TTL,
        };
        if !ok {
            return None;
        }
        Some(AuthorizerKind::Lambda(LambdaAuthorizer {
            // Set by `finish_authorizers` once every function is known.
            function: String::new(),
            format,
            identity_sources,
            ttl,
            validation: None,
        }))
    }

    /// An `http` event's `authorizer`: a function name, a Lambda ARN, or `{ name | arn,
    /// type, identitySource, resultTtlInSeconds, identityValidationExpression }`.
    /// Registers the authorizer (routes naming the same one share it) and returns the
    /// route's reference to it.
    pub(in crate::manifest) fn rest_authorizer(
        &mut self,
        node: &Node,
        key: &str,
    ) -> Option<RouteAuthorizer> {
        let node = self.read(node, key);
        let mut name = None;
        let mut arn = None;
        let mut token = true;
        let mut identity = None;
        let mut ttl = DEFAULT_TTL;
        let mut validation = None;
        let mut ok = true;
        match &node.value {
            Value::Str(text) if text.eq_ignore_ascii_case("aws_iam") => {
                self.error(node.pos, key, aws_iam_message());
                return None;
            }
            Value::Str(text) if text.contains(':') => {
                arn = Some((text.clone(), node.pos, key.to_owned()))
            }
            Value::Str(text) => name = Some((text.clone(), node.pos, key.to_owned())),
            Value::Map(fields) => {
                for field in fields {
                    let field_key = join_key(key, &field.key);
                    match field.key.as_str() {
                        "name" => {
                            let value = self.read(&field.value, &field_key);
                            let text = self.string(&value, &field_key, "an authorizer name");
                            ok &= text.is_some();
                            name = text.map(|text| (text, value.pos, field_key));
                        }
                        "arn" => {
                            let res = self.reference_text(
                                &field.value,
                                &field_key,
                                "a Lambda function ARN",
                            );
                            ok &= res.is_some();
                            arn = res.map(|(text, pos)| (text, pos, field_key));
                        }
                        "type" => {
                            let value = self.read(&field.value, &field_key);
                            let text = self.string(&value, &field_key, "token or request");
                            match text.as_deref().map(str::to_ascii_lowercase).as_deref() {
                                Some("token") => token = true,
                                Some("request") => token = false,
                                Some("aws_iam") => {
                                    self.error(value.pos, &field_key, aws_iam_message());
                                    return None;
                                }
                                Some("cognito_user_pools") => {
                                    self.error(value.pos, &field_key, cognito_message());
                                    return None;
                                }
                                Some(_) => {
                                    let message = format!(
                                        "unknown authorizer type {:?}; expected token or request",
                                        text.unwrap_or_default()
                                    );
                                    self.error(value.pos, &field_key, message);
                                    ok = false;
                                }
                                None => ok = false,
                            }
                        }
                        "identitySource" => {
                            let value = self.read(&field.value, &field_key);
                            let text = self.string(&value, &field_key, "identity sources");
                            ok &= text.is_some();
                            identity = text.map(|text| (text, value.pos, field_key));
                        }
                        "resultTtlInSeconds" => {
                            match self.bounded(
                                &field.value,
                                &field_key,
                                "a whole number of seconds",
                                0,
                                MAX_TTL_SECS,
                            ) {
                                Some(secs) => ttl = Duration::from_secs(secs),
                                None => ok = false,
                            }
                        }
                        "identityValidationExpression" => {
                            let value = self.read(&field.value, &field_key);
                            let text = self.string(&value, &field_key, "a regular expression");
                            ok &= text.is_some();
                            validation = text.map(|text| (text, value.pos, field_key));
                        }
                        "authorizerId" => {
                            self.error(
                                field.key_pos,
                                &field_key,
                                "an authorizer outside this app (`authorizerId`) cannot be checked by nimbus; a route behind it would be public",
                            );
                            return None;
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
                    "expected a function name, a Lambda ARN or `{{ name, type, identitySource }}`, got {}",
                    node.describe()
                );
                self.error(node.pos, key, message);
                return None;
            }
        }
        // The function: named by `arn` when there is one, else by `name`.
        let function = match (&arn, &name) {
            (Some((text, pos, arn_key)), _) => {
                if text.starts_with("arn:aws:cognito-idp:") {
                    self.error(*pos, arn_key, cognito_message());
                    return None;
                }
                self.authorizer_function(text, *pos, arn_key)
            }
            (None, Some((text, pos, name_key))) => self.authorizer_function(text, *pos, name_key),
            (None, None) => {
                if ok {
                    self.error(
                        node.pos,
                        &join_key(key, "name"),
                        "missing `name`: name the function of this app that authorizes requests, or give its `arn`",
                    );
                }
                return None;
            }
        };
        let function = function?;
        let name = match (&arn, name) {
            (Some(_), Some((name, _, _))) => name,
            _ => function.clone(),
        };
        // The Serverless Framework leaves the identity source out only for a request
        // authorizer without a cache.
        let identity = match identity {
            Some(identity) => Some(identity),
            None if !token && ttl.is_zero() => None,
            None => Some((DEFAULT_REST_IDENTITY.to_owned(), node.pos, key.to_owned())),
        };
        let mut identity_sources = Vec::new();
        if let Some((text, pos, identity_key)) = &identity {
            for part in text.split(',').map(str::trim) {
                match rest_identity_source(part) {
                    Ok(source) => identity_sources.push(source),
                    Err(message) => {
                        self.error(*pos, identity_key, message);
                        ok = false;
                    }
                }
            }
            if token && ok && !matches!(identity_sources.as_slice(), [IdentitySource::Header(_)]) {
                self.error(
                    *pos,
                    identity_key,
                    format!(
                        "a token authorizer reads one header, as in `{DEFAULT_REST_IDENTITY}`; got {text:?}"
                    ),
                );
                ok = false;
            }
        }
        let validation = match validation {
            Some((_, pos, validation_key)) if !token => {
                self.warn(
                    pos,
                    &validation_key,
                    "applies to token authorizers only (API Gateway ignores it for request authorizers); ignored",
                );
                None
            }
            Some((text, pos, validation_key)) => match TokenPattern::new(&text) {
                Ok(pattern) => Some(pattern),
                Err(e) => {
                    let message = format!("not a usable regular expression: {e}");
                    self.error(pos, &validation_key, message);
                    return None;
                }
            },
            None => None,
        };
        if !ok {
            return None;
        }
        let authorizer = Authorizer {
            name: name.clone(),
            kind: AuthorizerKind::Lambda(LambdaAuthorizer {
                function,
                format: if token {
                    LambdaFormat::RestToken
                } else {
                    LambdaFormat::RestRequest
                },
                identity_sources,
                ttl,
                validation,
            }),
        };
        let declared = &mut self.policy_names.rest_authorizers;
        match declared.iter_mut().find(|d| d.authorizer.name == name) {
            Some(first) if first.authorizer == authorizer => {}
            Some(first) => {
                // The Serverless Framework makes one authorizer resource per name, and the
                // last declaration overwrites the others.
                let line = first.line;
                first.authorizer = authorizer;
                let message = format!(
                    "the authorizer `{name}` is declared differently at line {line}; as on API Gateway (one authorizer per name), this last declaration applies to every route naming it"
                );
                self.warn(node.pos, key, message);
            }
            None => declared.push(DeclaredRestAuthorizer {
                authorizer,
                line: node.pos.line,
            }),
        }
        Some(RouteAuthorizer {
            name,
            scopes: Vec::new(),
        })
    }

    /// Resolves the functions of `provider.httpApi.authorizers` now that every function is
    /// known, and adds the authorizers `http` events declared.
    pub(in crate::manifest) fn finish_authorizers(&mut self, policies: &mut GatewayPolicies) {
        for pending in std::mem::take(&mut self.policy_names.pending_functions) {
            let Some(function) =
                self.authorizer_function(&pending.reference, pending.pos, &pending.key)
            else {
                continue;
            };
            for authorizer in &mut policies.authorizers {
                if let AuthorizerKind::Lambda(lambda) = &mut authorizer.kind
                    && authorizer.name == pending.authorizer
                {
                    lambda.function = function.clone();
                }
            }
        }
        policies.rest_authorizers = std::mem::take(&mut self.policy_names.rest_authorizers)
            .into_iter()
            .map(|declared| declared.authorizer)
            .collect();
    }

    /// The function a function name or Lambda ARN names, if it is one of this app's.
    pub(in crate::manifest) fn authorizer_function(
        &mut self,
        reference: &str,
        pos: Pos,
        key: &str,
    ) -> Option<String> {
        let name = if reference.starts_with("arn:") {
            let deployed = parse_arn(reference)
                .filter(|arn| arn.service == "lambda")
                .and_then(|arn| arn.resource.strip_prefix("function:"));
            let Some(deployed) = deployed else {
                let message = format!(
                    "expected a Lambda function ARN such as `arn:aws:lambda:us-east-1:123456789012:function:{}-{}-auth`, got {reference:?}",
                    self.app.service, self.app.stage
                );
                self.error(pos, key, message);
                return None;
            };
            self.function_name_of(deployed).to_owned()
        } else {
            reference.to_owned()
        };
        if self.app.function_names.contains(&name) {
            return Some(name);
        }
        let known = if self.app.function_names.is_empty() {
            "none are declared".to_owned()
        } else {
            format!("declared: {}", self.app.function_names.join(", "))
        };
        let message = format!(
            "unknown function `{name}`; an authorizer is a function of this app, which nimbus invokes ({known})"
        );
        self.error(pos, key, message);
        None
    }

    /// `true` or `false` (or their text, as `${env:..}` gives).
    fn flag(&mut self, node: &Node, key: &str) -> Option<bool> {
        let node = self.read(node, key);
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if s == "true" || s == "false" => Some(s == "true"),
            Value::Invalid => None,
            _ => {
                let message = format!("expected true or false, got {}", node.describe());
                self.error(node.pos, key, message);
                None
            }
        }
    }

    /// `new`, unless `current` is already set: then an error at `new`'s position.
    fn set_once(
        &mut self,
        current: Option<(String, Pos, String)>,
        new: (String, Pos, String),
    ) -> Option<(String, Pos, String)> {
        if current.is_some() {
            self.error(
                new.1,
                &new.2,
                "set one of `functionName` and `functionArn`, not both",
            );
            return current;
        }
        Some(new)
    }
}

/// An HTTP API identity source: `$request.header.NAME`, `$request.querystring.NAME` or
/// `$context.NAME` ("Identity sources" of the HTTP API Lambda authorizer guide).
fn http_identity_source(text: &str) -> Result<IdentitySource, String> {
    if let Some(name) = text.strip_prefix("$request.header.") {
        return header(name, text);
    }
    if let Some(name) = text.strip_prefix("$request.querystring.") {
        return query(name, text);
    }
    if let Some(name) = text.strip_prefix("$context.") {
        let variable = match name {
            "httpMethod" => ContextVariable::HttpMethod,
            "path" => ContextVariable::Path,
            "routeKey" => ContextVariable::RouteKey,
            "identity.sourceIp" => ContextVariable::SourceIp,
            "stage" => ContextVariable::Stage,
            _ => {
                return Err(format!(
                    "nimbus does not model the context variable {text:?} as an identity source; use one of $context.routeKey, $context.httpMethod, $context.path, $context.identity.sourceIp, $context.stage"
                ));
            }
        };
        return Ok(IdentitySource::Context(variable));
    }
    if text.starts_with("$stageVariables.") {
        return Err(stage_variable_message(text));
    }
    Err(format!(
        "expected `$request.header.NAME`, `$request.querystring.NAME` or `$context.NAME`, got {text:?}"
    ))
}

/// A REST identity source: `method.request.header.NAME`, `method.request.querystring.NAME`
/// or `context.NAME`.
fn rest_identity_source(text: &str) -> Result<IdentitySource, String> {
    if let Some(name) = text.strip_prefix("method.request.header.") {
        return header(name, text);
    }
    if let Some(name) = text.strip_prefix("method.request.querystring.") {
        return query(name, text);
    }
    if let Some(name) = text.strip_prefix("context.") {
        let variable = match name {
            "httpMethod" => ContextVariable::HttpMethod,
            "path" => ContextVariable::Path,
            "resourcePath" => ContextVariable::ResourcePath,
            "identity.sourceIp" => ContextVariable::SourceIp,
            "stage" => ContextVariable::Stage,
            _ => {
                return Err(format!(
                    "nimbus does not model the context variable {text:?} as an identity source; use one of context.resourcePath, context.httpMethod, context.path, context.identity.sourceIp, context.stage"
                ));
            }
        };
        return Ok(IdentitySource::Context(variable));
    }
    if text.starts_with("stageVariables.") {
        return Err(stage_variable_message(text));
    }
    Err(format!(
        "expected `method.request.header.NAME`, `method.request.querystring.NAME` or `context.NAME`, got {text:?}"
    ))
}

fn header(name: &str, text: &str) -> Result<IdentitySource, String> {
    if name.is_empty() || http_header_name_invalid(name) {
        return Err(format!("{text:?} does not name a header"));
    }
    Ok(IdentitySource::Header(name.to_ascii_lowercase()))
}

fn query(name: &str, text: &str) -> Result<IdentitySource, String> {
    if name.is_empty() {
        return Err(format!("{text:?} does not name a query string parameter"));
    }
    Ok(IdentitySource::Query(name.to_owned()))
}

/// Header names are RFC 9110 tokens.
fn http_header_name_invalid(name: &str) -> bool {
    !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn stage_variable_message(text: &str) -> String {
    format!(
        "nimbus has no stage variables, so requests would never carry {text:?}; use a header or a query string parameter"
    )
}

fn aws_iam_message() -> &'static str {
    "IAM authorization (`aws_iam`) is not enforced by nimbus; a route behind it would be public"
}

fn cognito_message() -> &'static str {
    "Cognito user pool authorizers are not enforced by nimbus; a route behind one would be public"
}
