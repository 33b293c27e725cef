//! Data-driven tests for the manifest parser: YAML in, a summary or diagnostics out.

use std::collections::BTreeMap;
use std::fmt::Write;

use expect_test::{Expect, expect};

use super::{Variables, parse};

/// Parses `yaml` (dedented) with a fixed environment and no CLI options.
fn check(yaml: &str, expect: Expect) {
    check_with(&[], yaml, expect);
}

/// Like `check`, with CLI options such as `("stage", "prod")`.
fn check_with(options: &[(&str, &str)], yaml: &str, expect: Expect) {
    let vars = Variables {
        env: BTreeMap::from([
            ("MEM".to_owned(), "256".to_owned()),
            ("REGION".to_owned(), "eu-west-1".to_owned()),
            ("EMPTY".to_owned(), String::new()),
            ("STAGE_NAME".to_owned(), "qa".to_owned()),
            ("prod_URL".to_owned(), "postgres://prod".to_owned()),
        ]),
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    let actual = match parse(&dedent(yaml), "serverless.yml", &vars) {
        Ok(manifest) => summary(&manifest),
        Err(errors) => errors.iter().map(|e| format!("{e}\n")).collect(),
    };
    expect.assert_eq(&actual);
}

fn summary(manifest: &super::Manifest) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "service {}, stage {}, region {}",
        manifest.service, manifest.stage, manifest.region
    );
    for function in &manifest.functions {
        let _ = writeln!(
            out,
            "function {}: {} {} (line {}), {} MB, {:?}",
            function.name,
            function.runtime,
            function.handler,
            function.handler_line,
            function.memory_mb,
            function.timeout,
        );
        if function.reserved_concurrency.is_some() || function.provisioned_concurrency > 0 {
            let _ = writeln!(
                out,
                "  concurrency reserved {:?}, provisioned {}",
                function.reserved_concurrency, function.provisioned_concurrency
            );
        }
        if !function.allowed_outbound_hosts.is_empty() {
            let _ = writeln!(
                out,
                "  outbound {}",
                function.allowed_outbound_hosts.join(", ")
            );
        }
        if !matches!(
            function.runtime,
            crate::Runtime::Provided | crate::Runtime::Wasm
        ) {
            // Display collapses runtimes; print the exact variant for node and python.
            let _ = writeln!(out, "  {:?}", function.runtime);
        }
        for (name, value) in &function.environment {
            let _ = writeln!(out, "  env {name}={value:?}");
        }
        for route in &function.http_routes {
            let cors = if route.cors { " cors" } else { "" };
            let _ = writeln!(
                out,
                "  route {:?} {} {}{cors}",
                route.api, route.method, route.path
            );
        }
    }
    for warning in &manifest.warnings {
        let _ = writeln!(out, "warning {warning}");
    }
    out
}

/// Strips the indentation common to all lines, and a first empty line, so cases can be
/// written indented inside raw strings.
fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|line| format!("{}\n", line.get(indent..).unwrap_or("")))
        .collect()
}

#[test]
fn parses_the_shop_example() {
    check(
        r#"
        service: shop
        provider:
          name: aws
          runtime: nodejs20.x
          memorySize: 512
          timeout: 10
          environment: { DATABASE_URL: "${env:DATABASE_URL, 'sqlite://shop.db'}", STAGE: "${sls:stage}" }
        functions:
          api:
            handler: src/api.handler
            events:
              - http: { path: "/{proxy+}", method: ANY, cors: true }
          hello:
            handler: hello.handler
            runtime: python3.12
            events:
              - httpApi: GET /hello
              - httpApi: { method: POST, path: /items/{id} }
          process-order:
            handler: src/orders.process
            reservedConcurrency: 100
            events:
              - sqs: { arn: order-queue, batchSize: 10 }
        "#,
        expect![[r#"
            service shop, stage dev, region us-east-1
            function api: nodejs20.x src/api.handler (line 10), 512 MB, 10s
              Node { major: 20 }
              env DATABASE_URL="sqlite://shop.db"
              env STAGE="dev"
              route Rest ANY /{proxy+} cors
            function hello: python3.12 hello.handler (line 14), 512 MB, 10s
              Python { minor: 12 }
              env DATABASE_URL="sqlite://shop.db"
              env STAGE="dev"
              route Http GET /hello
              route Http POST /items/{id}
            function process-order: nodejs20.x src/orders.process (line 20), 512 MB, 10s
              concurrency reserved Some(100), provisioned 0
              Node { major: 20 }
              env DATABASE_URL="sqlite://shop.db"
              env STAGE="dev"
            warning serverless.yml:18:40: functions.hello.events[1].httpApi.path: a `{` inside a flow mapping or list is not valid YAML and other tools reject it; nimbus read the value as a string, but quote it
            warning serverless.yml:23:9: functions.process-order.events[0].sqs: `sqs` events are not yet served by nimbus; ignored
        "#]],
    );
}

#[test]
fn defaults_apply_without_provider_settings() {
    check(
        "
        service: tiny
        provider: { runtime: provided.al2023 }
        functions:
          f: { handler: bootstrap }
        ",
        expect![[r#"
            service tiny, stage dev, region us-east-1
            function f: provided bootstrap (line 4), 1024 MB, 6s
        "#]],
    );
}

#[test]
fn service_may_be_a_mapping() {
    check(
        "
        service: { name: shop }
        frameworkVersion: '3'
        provider: { runtime: python3.9 }
        functions: { f: { handler: f.handler } }
        ",
        expect![[r#"
            service shop, stage dev, region us-east-1
            function f: python3.9 f.handler (line 4), 1024 MB, 6s
              Python { minor: 9 }
        "#]],
    );
}

#[test]
fn function_settings_override_the_provider() {
    check(
        "
        service: s
        provider:
          runtime: nodejs18.x
          memorySize: 256
          timeout: 3
          environment: { A: provider, B: provider, PORT: 8080, DEBUG: true, RATIO: 0.5 }
        functions:
          f:
            handler: f.handler
            runtime: nodejs22.x
            memorySize: 2048
            timeout: 0.5
            environment: { B: function, C: function }
            reservedConcurrency: 5
            provisionedConcurrency: 2
          g:
            handler: g.handler
            description: inherits everything
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs22.x f.handler (line 9), 2048 MB, 500ms
              concurrency reserved Some(5), provisioned 2
              Node { major: 22 }
              env A="provider"
              env B="function"
              env C="function"
              env DEBUG="true"
              env PORT="8080"
              env RATIO="0.5"
            function g: nodejs18.x g.handler (line 17), 256 MB, 3s
              Node { major: 18 }
              env A="provider"
              env B="provider"
              env DEBUG="true"
              env PORT="8080"
              env RATIO="0.5"
        "#]],
    );
}

#[test]
fn every_supported_runtime_parses() {
    check(
        "
        service: s
        functions:
          n18: { handler: h.h, runtime: nodejs18.x }
          n20: { handler: h.h, runtime: nodejs20.x }
          n22: { handler: h.h, runtime: nodejs22.x }
          p9: { handler: h.h, runtime: python3.9 }
          p10: { handler: h.h, runtime: python3.10 }
          p11: { handler: h.h, runtime: python3.11 }
          p13: { handler: h.h, runtime: python3.13 }
          b1: { handler: h, runtime: provided }
          b2: { handler: h, runtime: provided.al2 }
          w: { handler: target/w.wasm, runtime: wasm }
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function n18: nodejs18.x h.h (line 3), 1024 MB, 6s
              Node { major: 18 }
            function n20: nodejs20.x h.h (line 4), 1024 MB, 6s
              Node { major: 20 }
            function n22: nodejs22.x h.h (line 5), 1024 MB, 6s
              Node { major: 22 }
            function p9: python3.9 h.h (line 6), 1024 MB, 6s
              Python { minor: 9 }
            function p10: python3.10 h.h (line 7), 1024 MB, 6s
              Python { minor: 10 }
            function p11: python3.11 h.h (line 8), 1024 MB, 6s
              Python { minor: 11 }
            function p13: python3.13 h.h (line 9), 1024 MB, 6s
              Python { minor: 13 }
            function b1: provided h (line 10), 1024 MB, 6s
            function b2: provided h (line 11), 1024 MB, 6s
            function w: wasm target/w.wasm (line 12), 1024 MB, 6s
        "#]],
    );
}

#[test]
fn wasm_functions_list_allowed_outbound_hosts() {
    check(
        "
        service: s
        provider: { runtime: wasm, memorySize: 64 }
        functions:
          api:
            handler: app.wasm
            allowedOutboundHosts: [api.example.com, '127.0.0.1:8080', 'http://Example.org:81/']
          closed: { handler: closed.wasm }
          node:
            handler: h.h
            runtime: nodejs20.x
            allowedOutboundHosts: [api.example.com]
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function api: wasm app.wasm (line 5), 64 MB, 6s
              outbound api.example.com, 127.0.0.1:8080, example.org:81
            function closed: wasm closed.wasm (line 7), 64 MB, 6s
            function node: nodejs20.x h.h (line 9), 64 MB, 6s
              Node { major: 20 }
            warning serverless.yml:11:5: functions.node.allowedOutboundHosts: only wasm functions are limited to allowedOutboundHosts; ignored
        "#]],
    );
}

#[test]
fn malformed_allowed_outbound_hosts_are_errors() {
    check(
        "
        service: s
        provider: { runtime: wasm }
        functions:
          bad:
            handler: bad.wasm
            allowedOutboundHosts: ['http://x/path', 3]
          notalist: { handler: n.wasm, allowedOutboundHosts: api.example.com }
        ",
        expect![[r#"
            serverless.yml:6:28: functions.bad.allowedOutboundHosts[0]: "http://x/path" is not a host; write `host`, `host:port` or `http://host:port`
            serverless.yml:6:45: functions.bad.allowedOutboundHosts[1]: expected a host such as `api.example.com`, got number 3
            serverless.yml:7:54: functions.notalist.allowedOutboundHosts: expected a list of hosts such as `api.example.com` or `127.0.0.1:8080`, got string "api.example.com"
        "#]],
    );
}

#[test]
fn route_forms_are_normalised() {
    check(
        "
        service: s
        provider:
          runtime: nodejs20.x
          httpApi: { cors: true }
        functions:
          f:
            handler: f.handler
            events:
              - http: get hello/{id}
              - http: { path: users/, method: post }
              - http: { path: /, method: '*' }
              - httpApi: '*'
              - httpApi: patch /items/{id}/{rest+}
              - httpApi: { method: delete, path: /items/{id} }
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 7), 1024 MB, 6s
              Node { major: 20 }
              route Rest GET /hello/{id}
              route Rest POST /users
              route Rest ANY /
              route Http ANY * cors
              route Http PATCH /items/{id}/{rest+} cors
              route Http DELETE /items/{id} cors
            warning serverless.yml:14:42: functions.f.events[5].httpApi.path: a `{` inside a flow mapping or list is not valid YAML and other tools reject it; nimbus read the value as a string, but quote it
        "#]],
    );
}

#[test]
fn cors_defaults_to_false() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          f:
            handler: f.handler
            events:
              - http: GET /a
              - http: { method: GET, path: /b, cors: false }
              - httpApi: GET /c
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 5), 1024 MB, 6s
              Node { major: 20 }
              route Rest GET /a
              route Rest GET /b
              route Http GET /c
        "#]],
    );
}

#[test]
fn unmodelled_top_level_keys_warn() {
    check(
        "
        service: s
        plugins: [serverless-offline]
        custom: { mem: 128 }
        resources: { Resources: {} }
        package: { individually: true }
        outputs: { Url: x }
        useDotenv: true
        provider: { runtime: nodejs20.x }
        functions: { f: { handler: f.handler } }
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 9), 1024 MB, 6s
              Node { major: 20 }
            warning serverless.yml:2:1: plugins: Serverless plugins do not run under nimbus; ignored
            warning serverless.yml:3:1: custom: not modelled by nimbus except through `${self:custom...}` variables; ignored
            warning serverless.yml:4:1: resources: CloudFormation resources are not created by nimbus; ignored
            warning serverless.yml:5:1: package: not modelled by nimbus; ignored
            warning serverless.yml:6:1: outputs: not modelled by nimbus; ignored
            warning serverless.yml:7:1: useDotenv: not modelled by nimbus; ignored
        "#]],
    );
}

#[test]
fn unmodelled_provider_and_function_keys_warn() {
    check(
        "
        service: s
        provider:
          name: aws
          runtime: nodejs20.x
          iamRoleStatements: []
          vpc: { securityGroupIds: [sg-1] }
          httpApi: { cors: { allowedOrigins: ['*'] }, payload: '2.0' }
        functions:
          f:
            handler: f.handler
            layers: [arn:aws:lambda:layer]
            name: custom-name
            tags: { team: a }
            events:
              - http: { path: /a, method: GET, authorizer: aws_iam, private: true, cors: { origin: '*' } }
              - httpApi: { method: GET, path: /b, authorizer: { name: jwt }, timeout: 3, cors: true }
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 10), 1024 MB, 6s
              Node { major: 20 }
              route Rest GET /a cors
              route Http GET /b cors
            warning serverless.yml:5:3: provider.iamRoleStatements: not modelled by nimbus; ignored
            warning serverless.yml:6:3: provider.vpc: not modelled by nimbus; ignored
            warning serverless.yml:7:14: provider.httpApi.cors: CORS options are not modelled by nimbus; treated as `cors: true`
            warning serverless.yml:7:47: provider.httpApi.payload: not modelled by nimbus; ignored
            warning serverless.yml:11:5: functions.f.layers: not modelled by nimbus; ignored
            warning serverless.yml:12:5: functions.f.name: not modelled by nimbus; ignored
            warning serverless.yml:13:5: functions.f.tags: not modelled by nimbus; ignored
            warning serverless.yml:15:40: functions.f.events[0].http.authorizer: authorizers are not enforced by nimbus; this route is public
            warning serverless.yml:15:61: functions.f.events[0].http.private: API keys are not enforced by nimbus; this route is public
            warning serverless.yml:15:76: functions.f.events[0].http.cors: CORS options are not modelled by nimbus; treated as `cors: true`
            warning serverless.yml:16:43: functions.f.events[1].httpApi.authorizer: authorizers are not enforced by nimbus; this route is public
            warning serverless.yml:16:70: functions.f.events[1].httpApi.timeout: not modelled by nimbus; ignored
            warning serverless.yml:16:82: functions.f.events[1].httpApi.cors: httpApi routes take CORS from `provider.httpApi.cors`; ignored
        "#]],
    );
}

#[test]
fn other_event_types_warn() {
    check(
        "
        service: s
        provider: { runtime: python3.11 }
        functions:
          f:
            handler: f.handler
            events:
              - sqs: arn:aws:sqs:q
              - sns: topic
              - s3: bucket
              - schedule: rate(1 minute)
              - stream: arn:stream
              - alb: { listenerArn: x, priority: 1, conditions: { path: /x } }
              - websocket: $connect
              - eventBridge: { pattern: {} }
              - cloudwatchLog: /aws/lambda/x
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: python3.11 f.handler (line 5), 1024 MB, 6s
              Python { minor: 11 }
            warning serverless.yml:7:9: functions.f.events[0].sqs: `sqs` events are not yet served by nimbus; ignored
            warning serverless.yml:8:9: functions.f.events[1].sns: `sns` events are not yet served by nimbus; ignored
            warning serverless.yml:9:9: functions.f.events[2].s3: `s3` events are not yet served by nimbus; ignored
            warning serverless.yml:10:9: functions.f.events[3].schedule: `schedule` events are not yet served by nimbus; ignored
            warning serverless.yml:11:9: functions.f.events[4].stream: `stream` events are not yet served by nimbus; ignored
            warning serverless.yml:12:9: functions.f.events[5].alb: `alb` events are not yet served by nimbus; ignored
            warning serverless.yml:13:9: functions.f.events[6].websocket: `websocket` events are not yet served by nimbus; ignored
            warning serverless.yml:14:9: functions.f.events[7].eventBridge: `eventBridge` events are not yet served by nimbus; ignored
            warning serverless.yml:15:9: functions.f.events[8].cloudwatchLog: `cloudwatchLog` events are not yet served by nimbus; ignored
        "#]],
    );
}

#[test]
fn malformed_yaml_reports_the_scanner_position() {
    check(
        "
        service: s
        functions: [a, b
        provider: x
        ",
        expect![[r#"
            serverless.yml:3:9: invalid YAML: illegal placement of ':' indicator
        "#]],
    );
}

#[test]
fn unterminated_quote_is_malformed_yaml() {
    check(
        "service: 'shop\n",
        expect![[r#"
        serverless.yml:1:10: invalid YAML: while scanning a quoted scalar, found unexpected end of stream
    "#]],
    );
}

#[test]
fn empty_manifest_is_an_error() {
    check(
        "",
        expect![[r#"
        serverless.yml:1:1: the manifest is empty; it needs at least `service`, `provider.runtime` and `functions`
    "#]],
    );
}

#[test]
fn two_documents_are_an_error() {
    check(
        "service: a\n---\nservice: b\n",
        expect![[r#"
        serverless.yml:3:1: a manifest is a single YAML document; found a second one
    "#]],
    );
}

#[test]
fn top_level_must_be_a_mapping() {
    check(
        "- service: s\n",
        expect![[r#"
        serverless.yml:1:1: the manifest must be a mapping with `service`, `provider` and `functions`, got a sequence
    "#]],
    );
}

#[test]
fn missing_service_and_functions_are_errors() {
    check(
        "provider: { runtime: nodejs20.x }\n",
        expect![[r#"
        serverless.yml:1:1: functions: missing `functions`; declare at least one function
        serverless.yml:1:1: service: missing `service`; name the service, as in `service: shop`
    "#]],
    );
}

#[test]
fn empty_functions_is_an_error() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions: {}
        ",
        expect![[r#"
            serverless.yml:3:1: functions: `functions` is empty; declare at least one function
        "#]],
    );
}

#[test]
fn wrong_types_are_errors() {
    check(
        "
        service: [s]
        provider:
          name: google
          runtime: 20
          memorySize: lots
          timeout: soon
          environment: [A]
          httpApi: { cors: maybe }
        functions:
          f:
            handler: 42
            memorySize: -1
            timeout: 0
            environment: { A: null, B: [1], 1BAD: x }
            reservedConcurrency: 1.5
            events: { http: GET / }
        ",
        expect![[r#"
            serverless.yml:1:10: service: expected a service name, got a sequence
            serverless.yml:3:9: provider.name: nimbus reads manifests for the `aws` provider, not "google"
            serverless.yml:4:12: provider.runtime: expected a runtime name, got number 20
            serverless.yml:5:15: provider.memorySize: expected a whole number of MB, got string "lots"
            serverless.yml:6:12: provider.timeout: expected a number of seconds, got string "soon"
            serverless.yml:7:16: provider.environment: expected a mapping of variable names to values, got a sequence
            serverless.yml:8:20: provider.httpApi.cors: expected true or false, got string "maybe"
            serverless.yml:11:14: functions.f.handler: expected a handler such as `src/api.handler`, got number 42
            serverless.yml:12:17: functions.f.memorySize: expected a whole number of MB, got number -1
            serverless.yml:13:14: functions.f.timeout: timeout must be a positive number of seconds, got 0
            serverless.yml:14:23: functions.f.environment.A: expected a string, got null
            serverless.yml:14:32: functions.f.environment.B: expected a string, got a sequence
            serverless.yml:14:37: functions.f.environment.1BAD: environment variable name "1BAD" must be letters, digits and `_`, not starting with a digit
            serverless.yml:15:26: functions.f.reservedConcurrency: expected a whole number of instances, got number 1.5
            serverless.yml:16:13: functions.f.events: expected a list of events, got a mapping
        "#]],
    );
}

#[test]
fn all_errors_are_collected_across_functions() {
    check(
        "
        service: s
        functions:
          no-handler:
            runtime: nodejs20.x
          no-runtime:
            handler: a.handler
          bad runtime name:
            handler: b.handler
            runtime: java17
          old-node: { handler: c.handler, runtime: nodejs12.x }
          ruby: { handler: d.handler, runtime: ruby3.2 }
          empty:
          empty-handler: { handler: '', runtime: provided }
        ",
        expect![[r#"
            serverless.yml:3:3: functions.no-handler.handler: function `no-handler` has no `handler`; set it to `file.export`, as in `handler: src/no-handler.handler`
            serverless.yml:5:3: functions.no-runtime.runtime: function `no-runtime` has no runtime; set `runtime` on it or under `provider`
            serverless.yml:7:3: functions.bad runtime name: function name "bad runtime name" may only contain letters, digits, `-` and `_`
            serverless.yml:9:14: functions.bad runtime name.runtime: unknown runtime "java17"; nimbus supports nodejs18.x, nodejs20.x, nodejs22.x, python3.9, python3.10, python3.11, python3.12, python3.13, provided, provided.al2, provided.al2023, wasm
            serverless.yml:10:44: functions.old-node.runtime: unknown runtime "nodejs12.x"; nimbus supports nodejs18.x, nodejs20.x, nodejs22.x, python3.9, python3.10, python3.11, python3.12, python3.13, provided, provided.al2, provided.al2023, wasm
            serverless.yml:11:40: functions.ruby.runtime: unknown runtime "ruby3.2"; nimbus supports nodejs18.x, nodejs20.x, nodejs22.x, python3.9, python3.10, python3.11, python3.12, python3.13, provided, provided.al2, provided.al2023, wasm
            serverless.yml:12:3: functions.empty.handler: function `empty` has no `handler`; set it to `file.export`, as in `handler: src/empty.handler`
            serverless.yml:12:3: functions.empty.runtime: function `empty` has no runtime; set `runtime` on it or under `provider`
            serverless.yml:13:29: functions.empty-handler.handler: the handler is empty; set it to `file.export`
        "#]],
    );
}

#[test]
fn a_bad_provider_runtime_is_reported_once() {
    check(
        "
        service: s
        provider: { runtime: go1.x }
        functions:
          a: { handler: a.handler }
          b: { handler: b.handler }
        ",
        expect![[r#"
            serverless.yml:2:22: provider.runtime: unknown runtime "go1.x"; nimbus supports nodejs18.x, nodejs20.x, nodejs22.x, python3.9, python3.10, python3.11, python3.12, python3.13, provided, provided.al2, provided.al2023, wasm
        "#]],
    );
}

#[test]
fn reserved_concurrency_zero_is_an_error() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          f: { handler: f.handler, reservedConcurrency: 0 }
        ",
        expect![[r#"
            serverless.yml:4:49: functions.f.reservedConcurrency: reservedConcurrency 0 would throttle every invocation; remove the key or the function
        "#]],
    );
}

#[test]
fn provisioned_concurrency_must_not_exceed_reserved() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          f: { handler: f.handler, reservedConcurrency: 2, provisionedConcurrency: 3 }
          g: { handler: g.handler, provisionedConcurrency: -1 }
        ",
        expect![[r#"
            serverless.yml:4:76: functions.f.provisionedConcurrency: provisionedConcurrency 3 exceeds reservedConcurrency 2
            serverless.yml:5:52: functions.g.provisionedConcurrency: expected a whole number of instances, got number -1
        "#]],
    );
}

#[test]
fn bad_events_are_errors() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          f:
            handler: f.handler
            events:
              - http: GET
              - http: FETCH /a
              - http: { path: /b }
              - httpApi: { method: GET }
              - just-a-string
              - { http: GET /c, httpApi: GET /d }
              - http: 42
              - http: { path: [x], method: GET }
        ",
        expect![[r#"
            serverless.yml:7:15: functions.f.events[0].http: expected `METHOD path`, as in `GET hello/{id}`, got string "GET"
            serverless.yml:8:15: functions.f.events[1].http: unknown HTTP method "FETCH"; expected one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, ANY
            serverless.yml:9:15: functions.f.events[2].http.method: missing `method`
            serverless.yml:10:18: functions.f.events[3].httpApi.path: missing `path`
            serverless.yml:11:9: functions.f.events[4]: expected an event such as `- httpApi: GET /hello`, got string "just-a-string"
            serverless.yml:12:9: functions.f.events[5]: an event has one key naming its type, as in `- httpApi: GET /hello`; found `http`, `httpApi`
            serverless.yml:13:15: functions.f.events[6].http: expected `METHOD path` (as in `GET hello/{id}`) or a mapping with `method` and `path`, got number 42
            serverless.yml:14:23: functions.f.events[7].http.path: expected a path, got a sequence
        "#]],
    );
}

#[test]
fn bad_path_templates_are_errors() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          f:
            handler: f.handler
            events:
              - http: GET /a/{id
              - http: GET /b/id}
              - http: GET /c/{proxy+}/more
              - http: GET /d/file-{id}.json
              - http: GET /e/{}
              - http: GET /f//g
              - http: GET /g/{id}/{id}
              - http: GET /h/*
              - httpApi: GET /i/{{id}}
        ",
        expect![[r#"
            serverless.yml:7:15: functions.f.events[0].http: path "/a/{id" has unbalanced braces in `{id`
            serverless.yml:8:15: functions.f.events[1].http: path "/b/id}" has unbalanced braces in `id}`
            serverless.yml:9:15: functions.f.events[2].http: path "/c/{proxy+}/more": the greedy parameter `{proxy+}` must be the last segment
            serverless.yml:10:15: functions.f.events[3].http: path "/d/file-{id}.json": a parameter must be a whole segment, like `{id}`, not `file-{id}.json`
            serverless.yml:11:15: functions.f.events[4].http: path "/e/{}" has an invalid parameter name in `{}`
            serverless.yml:12:15: functions.f.events[5].http: path "/f//g" has an empty segment (`//`)
            serverless.yml:13:15: functions.f.events[6].http: path "/g/{id}/{id}" names the parameter `id` twice
            serverless.yml:14:15: functions.f.events[7].http: path "/h/*": `*` is not a path pattern; use a greedy parameter such as `{proxy+}`
            serverless.yml:15:18: functions.f.events[8].httpApi: path "/i/{{id}}": a parameter must be a whole segment, like `{id}`, not `{{id}}`
        "#]],
    );
}

#[test]
fn duplicate_routes_name_both_places() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          first:
            handler: a.handler
            events:
              - http: GET /items/{id}
              - httpApi: POST /orders
          second:
            handler: b.handler
            events:
              - httpApi: GET /items/{key}
              - http: { path: orders/, method: post }
              - http: GET /items/{id}/x
          third:
            handler: c.handler
            events:
              - httpApi: '*'
              - httpApi: { method: ANY, path: '*' }
        ",
        expect![[r#"
            serverless.yml:12:18: functions.second.events[0].httpApi: duplicate route `GET /items/{key}`: function `first` already declares it at line 7 (functions.first.events[0].http)
            serverless.yml:13:15: functions.second.events[1].http: duplicate route `POST /orders`: function `first` already declares it at line 8 (functions.first.events[1].httpApi)
            serverless.yml:19:18: functions.third.events[1].httpApi: duplicate route `ANY *`: function `third` already declares it at line 18 (functions.third.events[0].httpApi)
        "#]],
    );
}

#[test]
fn variables_resolve_from_env_opt_self_and_sls() {
    check_with(
        &[("stage", "prod")],
        r#"
        service: shop
        custom:
          mem: 384
          prefix: ${self:service}-${sls:stage}
          list: [zero, one]
        provider:
          runtime: nodejs20.x
          region: ${env:REGION}
          memorySize: ${self:custom.mem}
          timeout: ${env:MISSING, 7}
          environment:
            NAME: ${self:custom.prefix}-x
            STAGE: ${opt:stage}
            DB: ${env:${opt:stage}_URL}
            SECOND: ${self:custom.list.1}
            EMPTY: "${env:EMPTY}"
            DOUBLE: ${env:MISSING, "double quoted"}
            NESTED: ${env:MISSING, ${env:STAGE_NAME}}
            CHAIN: ${env:MISSING, ${env:ALSO_MISSING}, 'last'}
            BARE: ${env:MISSING, self:custom.mem}
            SSM: ${ssm:/shop/key, 'local-key'}
            CFN: arn:${AWS::Region}:${MyBucket}
        functions:
          f:
            handler: f.handler
            memorySize: ${env:MEM}
        "#,
        expect![[r#"
            service shop, stage prod, region eu-west-1
            function f: nodejs20.x f.handler (line 25), 256 MB, 7s
              Node { major: 20 }
              env BARE="384"
              env CFN="arn:${AWS::Region}:${MyBucket}"
              env CHAIN="last"
              env DB="postgres://prod"
              env DOUBLE="double quoted"
              env EMPTY=""
              env NAME="shop-prod-x"
              env NESTED="qa"
              env SECOND="one"
              env SSM="local-key"
              env STAGE="prod"
            warning serverless.yml:2:1: custom: not modelled by nimbus except through `${self:custom...}` variables; ignored
        "#]],
    );
}

#[test]
fn stage_comes_from_provider_then_dev() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x, stage: ${env:STAGE_NAME} }
        functions:
          f: { handler: f.handler, environment: { S: '${sls:stage}' } }
        ",
        expect![[r#"
            service s, stage qa, region us-east-1
            function f: nodejs20.x f.handler (line 4), 1024 MB, 6s
              Node { major: 20 }
              env S="qa"
            warning serverless.yml:2:41: provider.stage: a `{` inside a flow mapping or list is not valid YAML and other tools reject it; nimbus read the value as a string, but quote it
        "#]],
    );
    check_with(
        &[("stage", "prod"), ("region", "ap-south-1")],
        "
        service: s
        provider: { runtime: nodejs20.x, stage: beta, region: eu-west-1 }
        functions:
          f: { handler: f.handler, environment: { S: '${sls:stage}' } }
        ",
        expect![[r#"
            service s, stage prod, region ap-south-1
            function f: nodejs20.x f.handler (line 4), 1024 MB, 6s
              Node { major: 20 }
              env S="prod"
        "#]],
    );
}

#[test]
fn a_whole_mapping_can_come_from_a_variable() {
    check(
        "
        service: s
        custom:
          env: { A: '1', B: '${self:custom.b}' }
          b: bee
          fn: { handler: f.handler, runtime: python3.10 }
        provider: { runtime: nodejs20.x, environment: '${self:custom.env}' }
        functions:
          f: ${self:custom.fn}
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: python3.10 f.handler (line 5), 1024 MB, 6s
              Python { minor: 10 }
              env A="1"
              env B="bee"
            warning serverless.yml:2:1: custom: not modelled by nimbus except through `${self:custom...}` variables; ignored
        "#]],
    );
}

#[test]
fn unresolvable_variables_are_errors() {
    check(
        "
        service: s
        provider:
          runtime: nodejs20.x
          environment:
            A: ${env:NOT_SET}
            B: ${opt:color}
            C: ${self:custom.nope}
            D: ${ssm:/path/to/key}
            E: ${cf:stack.output}
            F: ${file(./config.json):key}
            G: ${env:NOT_SET, ${env:ALSO_NOT_SET}}
            H: ${env:NOT_SET, bare words}
            I: 'x-${self:custom}'
            J: ${sls:instanceId}
            K: '${env:UNCLOSED'
        custom: { a: 1 }
        functions:
          f: { handler: f.handler, memorySize: '${self:custom.text}' }
        ",
        expect![[r#"
            serverless.yml:5:8: provider.environment.A: cannot resolve `${env:NOT_SET}`: environment variable `NOT_SET` is not set; set it or give a default: `${env:NOT_SET, 'value'}`
            serverless.yml:6:8: provider.environment.B: cannot resolve `${opt:color}`: option `--color` was not given; pass it or give a default: `${opt:color, 'value'}`
            serverless.yml:7:8: provider.environment.C: cannot resolve `${self:custom.nope}`: `custom.nope` is not in the manifest
            serverless.yml:8:8: provider.environment.D: cannot resolve `${ssm:/path/to/key}`: nimbus cannot resolve `ssm` variables here; give a default: `${ssm:/path/to/key, 'value'}`
            serverless.yml:9:8: provider.environment.E: cannot resolve `${cf:stack.output}`: nimbus cannot resolve `cf` variables here; give a default: `${cf:stack.output, 'value'}`
            serverless.yml:10:8: provider.environment.F: cannot resolve `${file(./config.json):key}`: nimbus cannot resolve `file(./config.json)` variables here; give a default: `${file(./config.json):key, 'value'}`
            serverless.yml:11:8: provider.environment.G: cannot resolve `${env:NOT_SET, ${env:ALSO_NOT_SET}}`: environment variable `NOT_SET` is not set; set it or give a default: `${env:NOT_SET, 'value'}`, and no fallback resolved
            serverless.yml:12:8: provider.environment.H: cannot read the default `bare words`; quote text defaults, as in 'value'
            serverless.yml:13:8: provider.environment.I: `${self:custom}` is a mapping and cannot be part of a string
            serverless.yml:14:8: provider.environment.J: cannot resolve `${sls:instanceId}`: nimbus only resolves `${sls:stage}`, not `instanceId`
            serverless.yml:15:8: provider.environment.K: unclosed `${` in "${env:UNCLOSED"
            serverless.yml:18:40: functions.f.memorySize: cannot resolve `${self:custom.text}`: `custom.text` is not in the manifest
        "#]],
    );
}

#[test]
fn variable_cycles_are_errors() {
    check(
        "
        service: s
        custom:
          a: ${self:custom.b}
          b: x-${self:custom.a}
          me: ${self:custom.me}
        provider:
          runtime: nodejs20.x
          stage: ${sls:stage}
          environment: { A: '${self:custom.a}', ME: '${self:custom.me}' }
        functions:
          f: { handler: f.handler }
        ",
        expect![[r#"
            serverless.yml:4:6: custom.b: variable cycle: custom.a -> custom.b -> custom.a
            serverless.yml:5:7: custom.me: variable cycle: custom.me -> custom.me
            serverless.yml:8:10: provider.stage: variable cycle: provider.stage -> provider.stage
        "#]],
    );
}

#[test]
fn variables_in_ignored_sections_are_not_resolved() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x, iam: { role: '${ssm:/role}' } }
        resources:
          Outputs: { Region: { Value: '${ssm:/nope}' } }
        functions:
          f: { handler: f.handler, vpc: '${cf:net.vpc}' }
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 6), 1024 MB, 6s
              Node { major: 20 }
            warning serverless.yml:2:34: provider.iam: not modelled by nimbus; ignored
            warning serverless.yml:3:1: resources: CloudFormation resources are not created by nimbus; ignored
            warning serverless.yml:6:28: functions.f.vpc: not modelled by nimbus; ignored
        "#]],
    );
}

#[test]
fn a_variable_keeps_the_type_of_its_value() {
    check(
        "
        service: s
        custom: { mem: lots, timeout: 2.5, list: [1] }
        provider: { runtime: nodejs20.x, memorySize: '${self:custom.mem}' }
        functions:
          f: { handler: f.handler, timeout: '${self:custom.timeout}', environment: { L: '${self:custom.list}' } }
        ",
        expect![[r#"
            serverless.yml:3:46: provider.memorySize: expected a whole number of MB, got string "lots"
            serverless.yml:5:81: functions.f.environment.L: expected a string, got a sequence
        "#]],
    );
}

#[test]
fn yaml_anchors_and_merge_keys_work() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        x-defaults: &defaults
          memorySize: 128
          timeout: 2
        functions:
          a:
            <<: *defaults
            handler: a.handler
          b:
            <<: *defaults
            handler: b.handler
            timeout: 9
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function a: nodejs20.x a.handler (line 9), 128 MB, 2s
              Node { major: 20 }
            function b: nodejs20.x b.handler (line 12), 128 MB, 9s
              Node { major: 20 }
            warning serverless.yml:3:1: x-defaults: not modelled by nimbus; ignored
        "#]],
    );
}

#[test]
fn function_names_must_be_usable_names() {
    check(
        "
        service: my service
        provider: { runtime: nodejs20.x }
        functions:
          'bad/name': { handler: f.handler }
          ok_name-2: { handler: f.handler }
        ",
        expect![[r#"
            serverless.yml:1:10: service: service name "my service" may only contain letters, digits, `-` and `_`
            serverless.yml:4:3: functions.bad/name: function name "bad/name" may only contain letters, digits, `-` and `_`
        "#]],
    );
}

#[test]
fn diagnostics_display_file_line_column_key_and_message() {
    let errors = parse(
        "service: s\nfunctions: {}\n",
        "nimbus.yaml",
        &Variables::default(),
    );
    let text: Vec<String> = errors
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    expect![[r#"
        [
            "nimbus.yaml:2:1: functions: `functions` is empty; declare at least one function",
        ]
    "#]]
    .assert_debug_eq(&text);
}

#[test]
fn lenient_reading_keeps_original_columns() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          f:
            handler: f.handler
            events:
              - http: { path: /a/{id}, method: FETCH, cors: ${env:NOPE} }
              - httpApi: [not, an, event]
        ",
        expect![[r#"
            serverless.yml:7:40: functions.f.events[0].http.method: unknown HTTP method "FETCH"; expected one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, ANY
            serverless.yml:7:53: functions.f.events[0].http.cors: cannot resolve `${env:NOPE}`: environment variable `NOPE` is not set; set it or give a default: `${env:NOPE, 'value'}`
            serverless.yml:8:18: functions.f.events[1].httpApi: expected `METHOD path` (as in `GET /hello/{id}`) or a mapping with `method` and `path`, got a sequence
        "#]],
    );
}

#[test]
fn lenient_reading_reports_the_original_error_when_still_broken() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x, stage: ${env:STAGE_NAME}
        functions:
          f: { handler: f.handler }
        ",
        expect![[r#"
            serverless.yml:2:42: invalid YAML: while parsing a flow mapping, did not find expected ',' or '}'
        "#]],
    );
}

#[test]
fn lenient_reading_leaves_block_scalars_and_quoted_text_alone() {
    check(
        r#"
        service: s
        custom:
          script: |
            { not: yaml, path: /x/{y} }
        provider:
          runtime: nodejs20.x
          environment: { JSON: '{"a": 1}', URL: "/u/{id}", P: /p/{id} }
        functions:
          f: { handler: f.handler }
        "#,
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 9), 1024 MB, 6s
              Node { major: 20 }
              env JSON="{\"a\": 1}"
              env P="/p/{id}"
              env URL="/u/{id}"
            warning serverless.yml:2:1: custom: not modelled by nimbus except through `${self:custom...}` variables; ignored
            warning serverless.yml:7:55: provider.environment.P: a `{` inside a flow mapping or list is not valid YAML and other tools reject it; nimbus read the value as a string, but quote it
        "#]],
    );
}

#[test]
fn fallbacks_keep_their_type() {
    check_with(
        &[("region", "eu-central-1")],
        "
        service: { name: shop }
        provider:
          runtime: nodejs20.x
          region: ${opt:region}
          memorySize: ${env:MISSING, 640}
          timeout: ${env:MISSING, 1.5}
          environment:
            SERVICE: ${self:service}
            FLAG: ${env:MISSING, true}
        functions:
          f: { handler: f.handler }
        ",
        expect![[r#"
            service shop, stage dev, region eu-central-1
            function f: nodejs20.x f.handler (line 11), 640 MB, 1.5s
              Node { major: 20 }
              env FLAG="true"
              env SERVICE="shop"
        "#]],
    );
}

/// Broken input is data: every prefix of a busy manifest, and every place a stray `{`
/// or quote could go, gives diagnostics or a manifest, never a panic.
#[test]
fn mangled_manifests_never_panic() {
    let base = "service: shop\nprovider:\n  name: aws\n  runtime: nodejs20.x\n  stage: ${opt:stage, ${env:X, 'd'}}\n  environment: { DATABASE_URL: \"${env:DATABASE_URL, 'sqlite://shop.db'}\", STAGE: ${sls:stage} }\ncustom: { a: '${self:custom.b}', b: [1, {c: x}] , s: |\n    {x\n}\nfunctions:\n  api:\n    handler: src/api.handler\n    events:\n      - http: { path: \"/{proxy+}\", method: ANY, cors: true }\n      - httpApi: { method: POST, path: /items/{id}, x: ${self:custom.a} } # c\n  é: { handler: 'it''s', runtime: python3.12, events: [ {httpApi: '*'} ] }\n";
    let vars = Variables::default();
    let chars: Vec<char> = base.chars().collect();
    let inserts = ['{', '}', '"', '\n'];
    for idx in 0..=chars.len() {
        let cut: String = chars[..idx].iter().collect();
        let _ = parse(&cut, "f", &vars);
        for c in inserts {
            let mut s: Vec<char> = chars.clone();
            s.insert(idx, c);
            let _ = parse(&s.iter().collect::<String>(), "f", &vars);
        }
    }
}
