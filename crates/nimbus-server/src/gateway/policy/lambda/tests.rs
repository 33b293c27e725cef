//! Unit tests of Lambda authorizer answers and policy matching.

use std::sync::Arc;
use std::time::{Duration, Instant};

use expect_test::{Expect, expect};
use nimbus_core::policy::LambdaFormat;
use nimbus_core::{HttpMethod, HttpRoute};

use super::*;
use crate::gateway::routes::RouteTable;

const ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:nimbus/dev/GET/pets/42";

/// Reads `payload` as `format`'s answer and decides for [`ARN`]; shows the decision, the
/// principal and the context, or why the answer is refused.
fn check(format: LambdaFormat, payload: &str, expect: Expect) {
    let actual = match read_answer(format, payload.as_bytes()) {
        Ok(answer) => {
            let decision = match &answer.verdict {
                Verdict::Simple(true) => Decision::Allow,
                Verdict::Simple(false) => Decision::ExplicitDeny,
                Verdict::Policy(policy) => policy.evaluate(ARN),
            };
            let context = answer
                .context
                .map(|c| Value::Object(c).to_string())
                .unwrap_or_default();
            format!("{decision:?} {:?} {context}", answer.principal_id)
        }
        Err(Failure(why)) => format!("refused: {why}"),
    };
    expect.assert_eq(&actual);
}

/// A policy answer with one statement of `effect` on `resource` (JSON).
fn policy(effect: &str, resource: &str) -> String {
    format!(
        r#"{{"principalId":"user-1","policyDocument":{{"Version":"2012-10-17","Statement":[{{"Action":"execute-api:Invoke","Effect":"{effect}","Resource":{resource}}}]}},"context":{{"n":1}}}}"#
    )
}

#[test]
fn simple_responses_allow_or_deny() {
    use LambdaFormat::HttpV2Simple as S;
    check(
        S,
        r#"{"isAuthorized":true,"context":{"user":"u1","n":1,"tags":["a"],"m":{"k":"v"}}}"#,
        expect![[r#"Allow None {"m":{"k":"v"},"n":1,"tags":["a"],"user":"u1"}"#]],
    );
    check(
        S,
        r#"{"isAuthorized":false}"#,
        expect!["ExplicitDeny None "],
    );
    check(
        S,
        r#"{"isAuthorized":"yes"}"#,
        expect!["refused: a simple response needs `isAuthorized`: true or false"],
    );
    check(
        S,
        r#"{"principalId":"x","policyDocument":{}}"#,
        expect!["refused: a simple response needs `isAuthorized`: true or false"],
    );
    check(S, "true", expect!["refused: it is not a JSON object"]);
    check(S, "not json", expect!["refused: it is not a JSON object"]);
    check(
        S,
        r#"{"isAuthorized":true,"context":"x"}"#,
        expect!["refused: `context` is not an object"],
    );
}

#[test]
fn policies_match_the_method_arn_with_wildcards() {
    use LambdaFormat::HttpV2Policy as P;
    let cases = [
        (
            r#""arn:aws:execute-api:us-east-1:123456789012:nimbus/dev/GET/pets/42""#,
            "exact",
        ),
        (r#""*""#, "everything"),
        (r#""arn:aws:execute-api:*""#, "the service"),
        (
            r#""arn:aws:execute-api:us-east-1:123456789012:nimbus/*""#,
            "the API",
        ),
        (
            r#""arn:aws:execute-api:us-east-1:123456789012:nimbus/dev/*/pets/*""#,
            "any method",
        ),
        (
            r#""arn:aws:execute-api:us-east-1:123456789012:nimbus/dev/GET/pets/??""#,
            "? is one character",
        ),
        (
            r#"["arn:aws:execute-api:*:*:other/*", "arn:aws:execute-api:*:*:nimbus/dev/GET/*"]"#,
            "a list",
        ),
    ];
    let mut out = String::new();
    for (resource, what) in cases {
        let allow = match read_answer(P, policy("Allow", resource).as_bytes()) {
            Ok(Answer {
                verdict: Verdict::Policy(policy),
                ..
            }) => policy.evaluate(ARN),
            _ => panic!("{what}: not a policy"),
        };
        out.push_str(&format!("{what}: {allow:?}\n"));
    }
    for resource in [
        r#""arn:aws:execute-api:us-east-1:123456789012:nimbus/dev/POST/pets/42""#,
        r#""arn:aws:execute-api:us-east-1:123456789012:nimbus/dev/GET/pets""#,
        r#""arn:aws:execute-api:us-east-1:123456789012:nimbus/dev/GET/pets/?""#,
        r#""arn:aws:execute-api:us-east-1:123456789012:nimbus/prod/*""#,
        r#"[]"#,
    ] {
        let decision = match read_answer(P, policy("Allow", resource).as_bytes()) {
            Ok(Answer {
                verdict: Verdict::Policy(policy),
                ..
            }) => policy.evaluate(ARN),
            _ => panic!("{resource}: not a policy"),
        };
        out.push_str(&format!("{resource}: {decision:?}\n"));
    }
    expect![[r#"
        exact: Allow
        everything: Allow
        the service: Allow
        the API: Allow
        any method: Allow
        ? is one character: Allow
        a list: Allow
        "arn:aws:execute-api:us-east-1:123456789012:nimbus/dev/POST/pets/42": ImplicitDeny
        "arn:aws:execute-api:us-east-1:123456789012:nimbus/dev/GET/pets": ImplicitDeny
        "arn:aws:execute-api:us-east-1:123456789012:nimbus/dev/GET/pets/?": ImplicitDeny
        "arn:aws:execute-api:us-east-1:123456789012:nimbus/prod/*": ImplicitDeny
        []: ImplicitDeny
    "#]]
    .assert_eq(&out);
}

#[test]
fn an_explicit_deny_wins_over_any_allow() {
    use LambdaFormat::RestToken as T;
    check(
        T,
        &policy("Deny", r#""*""#),
        expect![[r#"ExplicitDeny Some("user-1") {"n":1}"#]],
    );
    check(
        T,
        r#"{"principalId":"u","policyDocument":{"Statement":[
            {"Action":"execute-api:Invoke","Effect":"Allow","Resource":"*"},
            {"Action":"execute-api:*","Effect":"Deny","Resource":"arn:aws:execute-api:*:*:nimbus/dev/GET/pets/*"}]}}"#,
        expect![[r#"ExplicitDeny Some("u") "#]],
    );
    // A Deny on another method leaves the Allow standing.
    check(
        T,
        r#"{"principalId":"u","policyDocument":{"Statement":[
            {"Action":"execute-api:Invoke","Effect":"Allow","Resource":"*"},
            {"Action":"execute-api:Invoke","Effect":"Deny","Resource":"arn:aws:execute-api:*:*:nimbus/dev/DELETE/*"}]}}"#,
        expect![[r#"Allow Some("u") "#]],
    );
    // Statements for other actions do not apply; `Effect` and actions ignore case.
    check(
        T,
        r#"{"principalId":"u","policyDocument":{"Statement":[
            {"Action":"s3:GetObject","Effect":"Allow","Resource":"*"}]}}"#,
        expect![[r#"ImplicitDeny Some("u") "#]],
    );
    check(
        T,
        r#"{"principalId":"u","policyDocument":{"Statement":{"Action":"EXECUTE-API:invoke","Effect":"allow","Resource":"*"}}}"#,
        expect![[r#"Allow Some("u") "#]],
    );
    // NotResource: allowed everywhere but the named ARN.
    check(
        T,
        r#"{"principalId":"u","policyDocument":{"Statement":[
            {"Action":"execute-api:Invoke","Effect":"Allow","NotResource":"arn:aws:execute-api:*:*:nimbus/dev/GET/pets/42"}]}}"#,
        expect![[r#"ImplicitDeny Some("u") "#]],
    );
    check(
        T,
        r#"{"principalId":"u","policyDocument":{"Statement":[
            {"Action":"*","Effect":"Allow","NotResource":["arn:aws:execute-api:*:*:nimbus/dev/POST/*"]}]}}"#,
        expect![[r#"Allow Some("u") "#]],
    );
}

#[test]
fn malformed_policies_are_refused_with_the_reason() {
    use LambdaFormat::{HttpV1, RestRequest};
    check(
        RestRequest,
        r#"{"principalId":"u"}"#,
        expect!["refused: there is no `policyDocument` (an IAM policy response is expected)"],
    );
    check(
        RestRequest,
        r#"{"isAuthorized":true}"#,
        expect!["refused: there is no `policyDocument` (an IAM policy response is expected)"],
    );
    check(
        RestRequest,
        r#"{"policyDocument":{"Statement":"Allow"}}"#,
        expect!["refused: `policyDocument.Statement` is not a statement or a list of them"],
    );
    check(
        RestRequest,
        r#"{"policyDocument":{"Statement":[{"Action":"execute-api:Invoke","Effect":"Maybe","Resource":"*"}]}}"#,
        expect!["refused: `policyDocument.Statement[0]` needs `Effect`: Allow or Deny"],
    );
    check(
        RestRequest,
        r#"{"policyDocument":{"Statement":[{"Action":"execute-api:Invoke","Effect":"Allow"}]}}"#,
        expect![
            "refused: `policyDocument.Statement[0]` needs `Resource` (a string or a list of strings)"
        ],
    );
    check(
        RestRequest,
        r#"{"policyDocument":{"Statement":[{"Effect":"Allow","Resource":"*","Action":["a",1]}]}}"#,
        expect![
            "refused: `policyDocument.Statement[0]` needs `Action` (a string or a list of strings)"
        ],
    );
    check(
        RestRequest,
        r#"{"principalId":{"id":1},"policyDocument":{"Statement":[]}}"#,
        expect!["refused: `principalId` is not a string"],
    );
    // REST context values are strings, numbers and booleans; HTTP API ones anything.
    check(
        RestRequest,
        r#"{"policyDocument":{"Statement":[]},"context":{"roles":["a"]}}"#,
        expect![
            "refused: `context.roles` is an object or a list; a REST authorizer's context holds strings, numbers and booleans only"
        ],
    );
    check(
        HttpV1,
        r#"{"policyDocument":{"Statement":[]},"context":{"roles":["a"]}}"#,
        expect![[r#"ImplicitDeny None {"roles":["a"]}"#]],
    );
}

#[test]
fn rest_functions_get_the_context_as_strings_with_the_principal() {
    let authorizer = Authorizer {
        name: "auth".to_owned(),
        api: ApiKind::Rest,
        cfg: nimbus_core::policy::LambdaAuthorizer {
            function: "auth".to_owned(),
            format: LambdaFormat::RestToken,
            identity_sources: Vec::new(),
            ttl: Duration::ZERO,
            validation: None,
        },
    };
    let answer = read_answer(
        LambdaFormat::RestToken,
        br#"{"principalId":"user-1","policyDocument":{"Statement":[]},"context":{"s":"x","n":1.5,"b":true,"z":null}}"#,
    )
    .unwrap_or_else(|Failure(why)| panic!("{why}"));
    let value = authorizer.event_authorizer(&answer, Duration::from_millis(12));
    expect![[r#"{"b":"true","integrationLatency":12,"n":"1.5","principalId":"user-1","s":"x"}"#]]
        .assert_eq(&value.to_string());
    let http = Authorizer {
        api: ApiKind::Http,
        ..authorizer
    };
    expect![[r#"{"lambda":{"b":true,"n":1.5,"s":"x","z":null}}"#]]
        .assert_eq(&http.event_authorizer(&answer, Duration::ZERO).to_string());
}

#[test]
fn wildcards_backtrack() {
    assert!(wildcard_match("a*b*c", "aXbYbZc"));
    assert!(wildcard_match("*", ""));
    assert!(wildcard_match("a**", "a"));
    assert!(!wildcard_match("a*b", "aXbY"));
    assert!(!wildcard_match("?", ""));
    assert!(wildcard_match("*/GET/*", "x/dev/GET/a/b"));
}

#[test]
fn the_cache_forgets_expired_answers_and_stays_bounded() {
    let cache = AnswerCache::default();
    let answer = Arc::new(Answer {
        principal_id: None,
        verdict: Verdict::Simple(true),
        context: None,
    });
    let key = |n: usize| (ApiKind::Http, "a".to_owned(), vec![n.to_string()]);
    cache.put(key(0), answer.clone(), Duration::from_secs(60));
    assert!(cache.get(&key(0)).is_some());
    assert!(cache.get(&key(1)).is_none(), "keys are separate");
    assert!(
        cache
            .get(&(ApiKind::Rest, "a".to_owned(), vec!["0".to_owned()]))
            .is_none(),
        "authorizers are separate"
    );
    cache.put(key(1), answer.clone(), Duration::ZERO);
    assert!(
        cache.get(&key(1)).is_none(),
        "an expired answer is not used"
    );

    let mut map = HashMap::new();
    let now = Instant::now();
    for n in 0..MAX_ANSWERS {
        map.insert(
            key(n),
            Cached {
                answer: answer.clone(),
                expires: now + Duration::from_secs(n as u64 + 1),
            },
        );
    }
    evict(&mut map, now);
    assert!(map.len() < MAX_ANSWERS);
    assert!(
        map.contains_key(&key(MAX_ANSWERS - 1)),
        "the longest-lived stay"
    );
}

/// An authorizer of `format` on `GET /pets/{id}` with `sources`; shows the event a
/// request (request line and headers) makes it send, or that the identity is missing.
fn check_event(format: LambdaFormat, sources: &[IdentitySource], request: &str, expect: Expect) {
    let api = match format {
        LambdaFormat::RestToken | LambdaFormat::RestRequest => ApiKind::Rest,
        _ => ApiKind::Http,
    };
    let route = HttpRoute {
        api,
        method: HttpMethod::Named("GET".to_owned()),
        path: "/pets/{id}".to_owned(),
        cors: false,
        authorizer: None,
        private: false,
        rate_limit: None,
    };
    let table = RouteTable::new(vec![(0, route)]);
    let mut lines = request.trim().lines().map(str::trim);
    let target = lines.next().expect("a request target");
    let mut builder = http::Request::builder().method("GET").uri(target);
    for line in lines {
        let (name, value) = line.split_once(':').expect("a header line");
        builder = builder.header(name.trim(), value.trim());
    }
    let (parts, ()) = builder.body(()).expect("a request").into_parts();
    let m = table
        .find(&parts.method, parts.uri.path())
        .expect("the route matches");
    let ctx = EventContext {
        request_id: "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        stage: "dev",
        source_ip: "203.0.113.7",
        time: std::time::UNIX_EPOCH + Duration::from_millis(1_583_348_638_390),
        account_id: "123456789012",
        api_id: "nimbus",
        domain_name: "localhost:3000",
        authorizer: None,
        api_key: None,
    };
    let authorizer = Authorizer {
        name: "auth".to_owned(),
        api,
        cfg: nimbus_core::policy::LambdaAuthorizer {
            function: "auth".to_owned(),
            format,
            identity_sources: sources.to_vec(),
            ttl: Duration::ZERO,
            validation: None,
        },
    };
    let identity: Option<Vec<String>> = sources
        .iter()
        .map(|source| identity_value(source, api, &m, &parts, &ctx).filter(|v| !v.is_empty()))
        .collect();
    let actual = match identity {
        Some(identity) => {
            let arn = method_arn(
                "arn:aws:execute-api:us-east-1:123456789012:nimbus",
                api,
                &parts,
                &ctx,
            );
            let event = authorizer.event(&m, &parts, &ctx, &arn, &identity);
            serde_json::to_string_pretty(&event).expect("pretty JSON")
        }
        None => "401: an identity source is missing".to_owned(),
    };
    expect.assert_eq(&actual);
}

fn header(name: &str) -> IdentitySource {
    IdentitySource::Header(name.to_owned())
}

#[test]
fn rest_token_events_carry_the_token_and_the_method_arn() {
    check_event(
        LambdaFormat::RestToken,
        &[header("authorization")],
        "/pets/42?x=1
         Authorization: Bearer abc",
        expect![[r#"
            {
              "authorizationToken": "Bearer abc",
              "methodArn": "arn:aws:execute-api:us-east-1:123456789012:nimbus/dev/GET/pets/42",
              "type": "TOKEN"
            }"#]],
    );
    check_event(
        LambdaFormat::RestToken,
        &[header("authorization")],
        "/pets/42
         Authorization:",
        expect!["401: an identity source is missing"],
    );
}

#[test]
fn rest_request_events_are_the_proxy_event_without_a_body() {
    check_event(
        LambdaFormat::RestRequest,
        &[
            header("x-tenant"),
            IdentitySource::Query("key".to_owned()),
            IdentitySource::Context(ContextVariable::ResourcePath),
        ],
        "/pets/42?key=k1&key=k2
         X-Tenant: t1
         User-Agent: curl/8",
        expect![[r#"
            {
              "headers": {
                "user-agent": "curl/8",
                "x-tenant": "t1"
              },
              "httpMethod": "GET",
              "methodArn": "arn:aws:execute-api:us-east-1:123456789012:nimbus/dev/GET/pets/42",
              "multiValueHeaders": {
                "user-agent": [
                  "curl/8"
                ],
                "x-tenant": [
                  "t1"
                ]
              },
              "multiValueQueryStringParameters": {
                "key": [
                  "k1",
                  "k2"
                ]
              },
              "path": "/pets/42",
              "pathParameters": {
                "id": "42"
              },
              "queryStringParameters": {
                "key": "k2"
              },
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "extendedRequestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "httpMethod": "GET",
                "identity": {
                  "accessKey": null,
                  "accountId": null,
                  "apiKey": null,
                  "apiKeyId": null,
                  "caller": null,
                  "cognitoAuthenticationProvider": null,
                  "cognitoAuthenticationType": null,
                  "cognitoIdentityId": null,
                  "cognitoIdentityPoolId": null,
                  "principalOrgId": null,
                  "sourceIp": "203.0.113.7",
                  "user": null,
                  "userAgent": "curl/8",
                  "userArn": null
                },
                "path": "/pets/42",
                "protocol": "HTTP/1.1",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "requestTime": "04/Mar/2020:19:03:58 +0000",
                "requestTimeEpoch": 1583348638390,
                "resourceId": "ql1zsc",
                "resourcePath": "/pets/{id}",
                "stage": "dev"
              },
              "resource": "/pets/{id}",
              "stageVariables": null,
              "type": "REQUEST"
            }"#]],
    );
    check_event(
        LambdaFormat::RestRequest,
        &[IdentitySource::Query("key".to_owned())],
        "/pets/42?other=1",
        expect!["401: an identity source is missing"],
    );
}

#[test]
fn http_api_events_follow_the_payload_version() {
    check_event(
        LambdaFormat::HttpV2Simple,
        &[
            header("authorization"),
            IdentitySource::Context(ContextVariable::RouteKey),
        ],
        "/pets/42?a=1&a=2
         Authorization: secret
         Cookie: c1=v1; c2=v2",
        expect![[r#"
            {
              "cookies": [
                "c1=v1",
                "c2=v2"
              ],
              "headers": {
                "authorization": "secret"
              },
              "identitySource": [
                "secret",
                "GET /pets/{id}"
              ],
              "pathParameters": {
                "id": "42"
              },
              "queryStringParameters": {
                "a": "1,2"
              },
              "rawPath": "/pets/42",
              "rawQueryString": "a=1&a=2",
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "http": {
                  "method": "GET",
                  "path": "/pets/42",
                  "protocol": "HTTP/1.1",
                  "sourceIp": "203.0.113.7",
                  "userAgent": ""
                },
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "routeKey": "GET /pets/{id}",
                "stage": "$default",
                "time": "04/Mar/2020:19:03:58 +0000",
                "timeEpoch": 1583348638390
              },
              "routeArn": "arn:aws:execute-api:us-east-1:123456789012:nimbus/$default/GET/pets/42",
              "routeKey": "GET /pets/{id}",
              "type": "REQUEST",
              "version": "2.0"
            }"#]],
    );
    check_event(
        LambdaFormat::HttpV1,
        &[
            header("authorization"),
            IdentitySource::Context(ContextVariable::SourceIp),
        ],
        "/pets/42
         Authorization: secret",
        expect![[r#"
            {
              "authorizationToken": "secret,203.0.113.7",
              "headers": {
                "authorization": "secret"
              },
              "httpMethod": "GET",
              "identitySource": "secret,203.0.113.7",
              "methodArn": "arn:aws:execute-api:us-east-1:123456789012:nimbus/$default/GET/pets/42",
              "multiValueHeaders": {
                "authorization": [
                  "secret"
                ]
              },
              "multiValueQueryStringParameters": null,
              "path": "/pets/42",
              "pathParameters": {
                "id": "42"
              },
              "queryStringParameters": null,
              "requestContext": {
                "accountId": "123456789012",
                "apiId": "nimbus",
                "domainName": "localhost:3000",
                "domainPrefix": "localhost",
                "extendedRequestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "httpMethod": "GET",
                "identity": {
                  "accessKey": null,
                  "accountId": null,
                  "apiKey": null,
                  "apiKeyId": null,
                  "caller": null,
                  "cognitoAuthenticationProvider": null,
                  "cognitoAuthenticationType": null,
                  "cognitoIdentityId": null,
                  "cognitoIdentityPoolId": null,
                  "principalOrgId": null,
                  "sourceIp": "203.0.113.7",
                  "user": null,
                  "userAgent": null,
                  "userArn": null
                },
                "path": "/pets/42",
                "protocol": "HTTP/1.1",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "requestTime": "04/Mar/2020:19:03:58 +0000",
                "requestTimeEpoch": 1583348638390,
                "resourceId": "ql1zsc",
                "resourcePath": "/pets/{id}",
                "stage": "$default"
              },
              "resource": "/pets/{id}",
              "stageVariables": null,
              "type": "REQUEST",
              "version": "1.0"
            }"#]],
    );
}
