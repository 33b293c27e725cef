//! Data-driven tests for the manifest parser: YAML in, a summary or diagnostics out.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use expect_test::{Expect, expect};

use super::{Variables, parse};
use crate::events::{AsyncConfig, EventSource};

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
        secrets: Some(Arc::new(BTreeMap::from([
            ("DB_PASSWORD".to_owned(), "hunter2".to_owned()),
            ("API_TOKEN".to_owned(), "tok_123".to_owned()),
        ]))),
        files: Some(Arc::new(BTreeMap::from([
            (
                "config.yml".to_owned(),
                "memory: 512\ntable: ${self:service}-items\nnested: { list: [a, b] }\n".to_owned(),
            ),
            (
                "config.prod.json".to_owned(),
                r#"{"domain": "api.example.com"}"#.to_owned(),
            ),
            ("broken.yml".to_owned(), "a: [unclosed\n".to_owned()),
        ]))),
        instance_id: Some("1764800000000".to_owned()),
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
        if function.concurrency != 1 {
            let _ = writeln!(out, "  {} invocations per instance", function.concurrency);
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
        if !function.secrets.is_empty() {
            let _ = writeln!(out, "  secrets {}", function.secrets.join(", "));
        }
        for route in &function.http_routes {
            let cors = if route.cors { " cors" } else { "" };
            let _ = writeln!(
                out,
                "  route {:?} {} {}{cors}",
                route.api, route.method, route.path
            );
            if route.has_policies() {
                let _ = writeln!(
                    out,
                    "    authorizer {:?}, private {}, rate limit {:?}",
                    route.authorizer, route.private, route.rate_limit
                );
            }
        }
        for event in &function.events {
            let _ = writeln!(out, "  {}", event_summary(event));
        }
        if !function.ignored_events.is_empty() {
            let _ = writeln!(out, "  not served: {}", function.ignored_events.join(", "));
        }
        if function.async_config != AsyncConfig::default() {
            let config = &function.async_config;
            let _ = writeln!(
                out,
                "  async retries {}, max age {:?}, on success {:?}, on failure {:?}, dead letter {:?}",
                config.maximum_retry_attempts,
                config.maximum_event_age,
                config.on_success,
                config.on_failure,
                config.dead_letter
            );
        }
        for grant in &function.grants {
            let _ = writeln!(
                out,
                "  grant {} on {}",
                grant.actions.join(","),
                grant.resources.join(",")
            );
        }
    }
    let resources = &manifest.resources;
    for queue in &resources.queues {
        let _ = write!(
            out,
            "queue {}: visibility {}s, delay {}s, retention {}s",
            queue.name,
            queue.visibility_timeout.as_secs(),
            queue.delay.as_secs(),
            queue.retention.as_secs()
        );
        if queue.content_based_deduplication {
            let _ = write!(out, ", content-based deduplication");
        }
        if let Some(redrive) = &queue.redrive {
            let _ = write!(
                out,
                ", dead letters to {} after {} receives",
                redrive.dead_letter_queue, redrive.max_receive_count
            );
        }
        let _ = writeln!(out);
    }
    for topic in &resources.topics {
        let _ = writeln!(out, "topic {}", topic.name);
        for subscription in &topic.subscriptions {
            let _ = write!(out, "  subscription {:?}", subscription.endpoint);
            if let Some(policy) = &subscription.filter_policy {
                let _ = write!(out, " filter {policy} on {:?}", subscription.filter_scope);
            }
            if subscription.raw_message_delivery {
                let _ = write!(out, " raw");
            }
            let _ = writeln!(out);
        }
    }
    if !resources.buckets.is_empty() {
        let _ = writeln!(out, "buckets {}", resources.buckets.join(", "));
    }
    if !resources.kv_namespaces.is_empty() {
        let _ = writeln!(out, "kv {}", resources.kv_namespaces.join(", "));
    }
    for table in &resources.tables {
        let key = |k: &crate::tables::KeyAttribute| format!("{} {}", k.name, k.kind.name());
        let _ = write!(
            out,
            "table {}: hash {}",
            table.name,
            key(&table.partition_key)
        );
        if let Some(sort_key) = &table.sort_key {
            let _ = write!(out, ", range {}", key(sort_key));
        }
        if let Some(ttl) = &table.ttl_attribute {
            let _ = write!(out, ", ttl {ttl}");
        }
        if let Some(view) = &table.stream_view {
            let _ = write!(out, ", stream {view}");
        }
        let _ = writeln!(out);
        for (kind, indexes) in [
            ("gsi", &table.global_indexes),
            ("lsi", &table.local_indexes),
        ] {
            for index in indexes {
                let _ = write!(
                    out,
                    "  {kind} {}: hash {}",
                    index.name,
                    key(&index.partition_key)
                );
                if let Some(sort_key) = &index.sort_key {
                    let _ = write!(out, ", range {}", key(sort_key));
                }
                let _ = writeln!(out, ", {:?}", index.projection);
            }
        }
    }
    for stream in &resources.streams {
        let _ = writeln!(
            out,
            "stream {}: {} shards, retention {}h",
            stream.name,
            stream.shards,
            stream.retention.as_secs() / 3600
        );
    }
    let websocket = &manifest.policies.websocket;
    if websocket.is_served() {
        let _ = writeln!(
            out,
            "websocket api {} selects by {:?}",
            websocket.name, websocket.route_selection
        );
        for route in &websocket.routes {
            let _ = write!(out, "  route {} -> {}", route.route_key, route.function);
            if route.route_response {
                let _ = write!(out, " with route response");
            }
            if let Some(authorizer) = &route.authorizer {
                let lambda = &authorizer.lambda;
                let _ = write!(
                    out,
                    " authorizer {} (function {}, identity {:?})",
                    authorizer.name, lambda.function, lambda.identity_sources
                );
            }
            let _ = writeln!(out);
        }
    }
    for webhook in &manifest.policies.webhooks {
        let _ = writeln!(
            out,
            "webhook {} {} {} -> bus {} type {:?} authorizer {:?}",
            webhook.id,
            webhook.method,
            webhook.path,
            webhook.bus,
            webhook.event_type,
            webhook.authorizer
        );
    }
    for site in &manifest.policies.static_sites {
        let _ = writeln!(
            out,
            "static site {} from {}{}",
            site.id,
            site.dir,
            if site.single_page {
                " (single page)"
            } else {
                ""
            }
        );
    }
    if manifest.policies.stage_path != crate::policy::StagePath::default() {
        let _ = writeln!(out, "stage path {:?}", manifest.policies.stage_path);
    }
    for warning in &manifest.warnings {
        let _ = writeln!(out, "warning {warning}");
    }
    out
}

fn event_summary(event: &EventSource) -> String {
    match event {
        EventSource::Sqs(sqs) => {
            let mut line = format!(
                "sqs {} batch {} window {}s",
                sqs.queue,
                sqs.batch_size,
                sqs.maximum_batching_window.as_secs()
            );
            if sqs.report_batch_item_failures {
                line.push_str(" report-failures");
            }
            if let Some(n) = sqs.maximum_concurrency {
                let _ = write!(line, " concurrency {n}");
            }
            if !sqs.enabled {
                line.push_str(" disabled");
            }
            line
        }
        EventSource::Sns(sns) => {
            let mut line = format!("sns {}", sns.topic);
            if let Some(policy) = &sns.filter_policy {
                let _ = write!(line, " filter {policy} on {:?}", sns.filter_scope);
            }
            line
        }
        EventSource::S3(s3) => format!(
            "s3 {} {} prefix {:?} suffix {:?}",
            s3.bucket,
            s3.events.join(","),
            s3.prefix,
            s3.suffix
        ),
        EventSource::Schedule(schedule) => {
            let mut line = format!("schedule {} {}", schedule.name, schedule.expression);
            if !schedule.enabled {
                line.push_str(" disabled");
            }
            if let Some(input) = &schedule.input {
                let _ = write!(line, " input {input}");
            }
            line
        }
        EventSource::EventBridge(rule) => {
            let mut line = format!("eventBridge {}", rule.bus);
            if let Some(pattern) = &rule.pattern {
                let _ = write!(line, " pattern {pattern}");
            }
            if let Some(input) = &rule.input {
                let _ = write!(line, " input {input}");
            }
            if let Some(path) = &rule.input_path {
                let _ = write!(line, " inputPath {path}");
            }
            line
        }
        EventSource::Stream(stream) => {
            let mut line = format!(
                "stream {} batch {} window {}s from {:?} retries {:?} max age {:?} factor {}",
                stream.stream,
                stream.batch_size,
                stream.batch_window.as_secs(),
                stream.starting_position,
                stream.maximum_retry_attempts,
                stream.maximum_record_age.map(|age| age.as_secs()),
                stream.parallelization_factor,
            );
            if stream.bisect_on_error {
                line.push_str(" bisect");
            }
            if stream.report_batch_item_failures {
                line.push_str(" report-failures");
            }
            if let Some(destination) = &stream.on_failure {
                let _ = write!(line, " on failure {destination:?}");
            }
            for pattern in &stream.filter_patterns {
                let _ = write!(line, " filter {pattern}");
            }
            if !stream.enabled {
                line.push_str(" disabled");
            }
            line
        }
    }
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
        queues:
          order-queue: {}
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
              sqs order-queue batch 10 window 0s
              grant sqs:ReceiveMessage,sqs:DeleteMessage,sqs:ChangeMessageVisibility on queue:order-queue
            queue order-queue: visibility 30s, delay 0s, retention 345600s
            warning serverless.yml:18:40: functions.hello.events[1].httpApi.path: a `{` inside a flow mapping or list is not valid YAML and other tools reject it; nimbus read the value as a string, but quote it
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
        plugins: [serverless-offline, serverless-dynamodb-local]
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
            warning serverless.yml:2:31: plugins[1]: the Serverless plugin `serverless-dynamodb-local` does not run under nimbus; ignored (COMPAT.md lists the plugins nimbus stands in for)
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
              - http: { path: /a, method: GET, cors: { origin: '*' } }
              - httpApi: { method: GET, path: /b, timeout: 3, cors: true }
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 10), 1024 MB, 6s
              Node { major: 20 }
              route Rest GET /a cors
              route Http GET /b cors
            warning serverless.yml:6:3: provider.vpc: not modelled by nimbus; ignored
            warning serverless.yml:7:14: provider.httpApi.cors: CORS options are not modelled by nimbus; treated as `cors: true`
            warning serverless.yml:7:47: provider.httpApi.payload: not modelled by nimbus; ignored
            warning serverless.yml:11:5: functions.f.layers: not modelled by nimbus; ignored
            warning serverless.yml:12:5: functions.f.name: not modelled by nimbus; ignored
            warning serverless.yml:13:5: functions.f.tags: not modelled by nimbus; ignored
            warning serverless.yml:15:40: functions.f.events[0].http.cors: CORS options are not modelled by nimbus; treated as `cors: true`
            warning serverless.yml:16:43: functions.f.events[1].httpApi.timeout: not modelled by nimbus; ignored
            warning serverless.yml:16:55: functions.f.events[1].httpApi.cors: httpApi routes take CORS from `provider.httpApi.cors`; ignored
        "#]],
    );
}

#[test]
fn gateway_policies_are_read() {
    let vars = Variables {
        env: BTreeMap::from([("KEY".to_owned(), "from-env-0123456789abcdef".to_owned())]),
        options: BTreeMap::new(),
        secrets: None,
        ..Variables::default()
    };
    let yaml = dedent(
        "
        service: s
        provider:
          runtime: nodejs20.x
          rateLimit: { rate: 50 }
          httpApi:
            authorizers:
              hs: { issuerUrl: https://i, audience: api, secret: s3cret }
              rs: { type: jwt, identitySource: $request.header.X-Token, issuerUrl: https://i, audience: [a, b], jwksUrl: 'http://127.0.0.1:1/jwks' }
          apiGateway:
            apiKeys: [gen, { name: env, value: '${env:KEY}' }]
            usagePlan:
              quota: { limit: 1000, period: DAY }
              throttle: { rateLimit: 2.5, burstLimit: 5 }
        functions:
          f:
            handler: f.handler
            events:
              - httpApi: { method: GET, path: /a, authorizer: { name: hs, scopes: [read] }, rateLimit: { rate: 10, burst: 20, per: subject } }
              - httpApi: GET /b
              - http: { method: GET, path: /c, private: true }
        ",
    );
    let manifest = match parse(&yaml, "serverless.yml", &vars) {
        Ok(manifest) => manifest,
        Err(errors) => panic!("{errors:?}"),
    };
    expect![[r#"
        service s, stage dev, region us-east-1
        function f: nodejs20.x f.handler (line 16), 1024 MB, 6s
          Node { major: 20 }
          route Http GET /a
            authorizer Some(RouteAuthorizer { name: "hs", scopes: ["read"] }), private false, rate limit Some(RateLimit { rate: 10.0, burst: 20, per: Subject })
          route Http GET /b
            authorizer None, private false, rate limit Some(RateLimit { rate: 50.0, burst: 50, per: Ip })
          route Rest GET /c
            authorizer None, private true, rate limit Some(RateLimit { rate: 50.0, burst: 50, per: Ip })
        GatewayPolicies {
            authorizers: [
                Authorizer {
                    name: "hs",
                    kind: Jwt(
                        JwtAuthorizer {
                            header: "authorization",
                            issuer: "https://i",
                            audience: [
                                "api",
                            ],
                            keys: Secret(
                                "s3cret",
                            ),
                        },
                    ),
                },
                Authorizer {
                    name: "rs",
                    kind: Jwt(
                        JwtAuthorizer {
                            header: "x-token",
                            issuer: "https://i",
                            audience: [
                                "a",
                                "b",
                            ],
                            keys: JwksUrl(
                                "http://127.0.0.1:1/jwks",
                            ),
                        },
                    ),
                },
            ],
            rest_authorizers: [],
            api_keys: [
                ApiKey {
                    name: "gen",
                    value: None,
                },
                ApiKey {
                    name: "env",
                    value: Some(
                        "from-env-0123456789abcdef",
                    ),
                },
            ],
            usage_plan: UsagePlan {
                throttle: Some(
                    RateLimit {
                        rate: 2.5,
                        burst: 5,
                        per: ApiKey,
                    },
                ),
                quota: Some(
                    Quota {
                        limit: 1000,
                        period: Day,
                    },
                ),
            },
            stage_path: Optional,
            static_sites: [],
            webhooks: [],
            websocket: WebSocketApi {
                name: "dev-s-websockets",
                route_selection: BodyPath(
                    [
                        "action",
                    ],
                ),
                routes: [],
            },
        }
    "#]].assert_eq(&format!("{}{:#?}\n", summary(&manifest), manifest.policies));
}

#[test]
fn bad_gateway_policies_are_errors() {
    check(
        "
        service: s
        provider:
          runtime: nodejs20.x
          httpApi:
            authorizers:
              a: { type: token, issuerUrl: https://i, audience: api, secret: s }
              b: { issuerUrl: https://i, secret: s }
              c: { issuerUrl: https://i, audience: api }
              d: { issuerUrl: https://i, audience: api, jwksUrl: 'https://x/jwks' }
          apiGateway:
            apiKeys: [{ name: short, value: abc }]
            usagePlan: { quota: { period: WEEK } }
        functions:
          f:
            handler: f.handler
            events:
              - httpApi: { method: GET, path: /a, rateLimit: { rate: -1, per: everyone } }
              - http: { method: GET, path: /b, authorizer: myFunction }
              - http: { method: GET, path: /c, authorizer: aws_iam }
        ",
        expect![[r#"
            serverless.yml:6:18: provider.httpApi.authorizers.a.type: unknown authorizer type "token"; expected `jwt` or `request`
            serverless.yml:7:10: provider.httpApi.authorizers.b.audience: missing `audience`; a token's `aud` must name one of them
            serverless.yml:8:10: provider.httpApi.authorizers.c: no keys to check signatures with: set `secret` (HS256), `jwksFile` or `jwksUrl`
            serverless.yml:9:58: provider.httpApi.authorizers.d.jwksUrl: nimbus fetches JWKS over plain http:// only (for a local issuer); got "https://x/jwks"; use `jwksFile` for other issuers
            serverless.yml:11:37: provider.apiGateway.apiKeys[0].value: an API key value has at least 20 characters, as on API Gateway
            serverless.yml:12:25: provider.apiGateway.usagePlan.quota.limit: missing `limit`
            serverless.yml:12:35: provider.apiGateway.usagePlan.quota.period: expected DAY or MONTH, got "WEEK"
            serverless.yml:17:62: functions.f.events[0].httpApi.rateLimit.rate: expected a positive number of requests per second, got number -1
            serverless.yml:17:71: functions.f.events[0].httpApi.rateLimit.per: expected ip, apiKey, subject or route, got "everyone"
            serverless.yml:18:52: functions.f.events[1].http.authorizer: unknown function `myFunction`; an authorizer is a function of this app, which nimbus invokes (declared: f)
            serverless.yml:19:52: functions.f.events[2].http.authorizer: IAM authorization (`aws_iam`) is not enforced by nimbus; a route behind it would be public
        "#]],
    );
}

#[test]
fn event_sources_are_read_and_other_event_types_warn() {
    check(
        "
        service: s
        provider: { runtime: python3.11 }
        queues: [q]
        streams: [clicks]
        functions:
          f:
            handler: f.handler
            events:
              - sqs: arn:aws:sqs:us-east-1:123456789012:q
              - sns: topic
              - s3: bucket
              - schedule: rate(1 minute)
              - stream: arn:aws:kinesis:us-east-1:123456789012:stream/clicks
              - alb: { listenerArn: x, priority: 1, conditions: { path: /x } }
              - websocket: $connect
              - eventBridge: { pattern: {} }
              - cloudwatchLog: /aws/lambda/x
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: python3.11 f.handler (line 7), 1024 MB, 6s
              Python { minor: 11 }
              sqs q batch 10 window 0s
              sns topic
              s3 bucket s3:ObjectCreated:* prefix None suffix None
              schedule f-schedule-1 rate(1 minute)
              stream clicks batch 10 window 0s from TrimHorizon retries None max age None factor 1
              eventBridge default pattern {}
              not served: alb, cloudwatchLog
              grant sqs:ReceiveMessage,sqs:DeleteMessage,sqs:ChangeMessageVisibility on queue:q
            queue q: visibility 30s, delay 0s, retention 345600s
            topic topic
            buckets bucket
            stream clicks: 1 shards, retention 24h
            websocket api dev-s-websockets selects by BodyPath(["action"])
              route $connect -> f
            warning serverless.yml:14:9: functions.f.events[5].alb: `alb` events are not yet served by nimbus; ignored
            warning serverless.yml:17:9: functions.f.events[8].cloudwatchLog: `cloudwatchLog` events are not yet served by nimbus; ignored
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
            serverless.yml:9:14: functions.bad runtime name.runtime: unknown runtime "java17"; nimbus supports nodejs18.x, nodejs20.x, nodejs22.x, python3.9, python3.10, python3.11, python3.12, python3.13, provided, provided.al2, provided.al2023, wasm, workers
            serverless.yml:10:44: functions.old-node.runtime: unknown runtime "nodejs12.x"; nimbus supports nodejs18.x, nodejs20.x, nodejs22.x, python3.9, python3.10, python3.11, python3.12, python3.13, provided, provided.al2, provided.al2023, wasm, workers
            serverless.yml:11:40: functions.ruby.runtime: unknown runtime "ruby3.2"; nimbus supports nodejs18.x, nodejs20.x, nodejs22.x, python3.9, python3.10, python3.11, python3.12, python3.13, provided, provided.al2, provided.al2023, wasm, workers
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
            serverless.yml:2:22: provider.runtime: unknown runtime "go1.x"; nimbus supports nodejs18.x, nodejs20.x, nodejs22.x, python3.9, python3.10, python3.11, python3.12, python3.13, provided, provided.al2, provided.al2023, wasm, workers
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
fn instance_concurrency_is_a_node_functions_whole_number_in_range() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          zero: { handler: f.handler, concurrency: 0 }
          negative: { handler: f.handler, concurrency: -2 }
          fraction: { handler: f.handler, concurrency: 1.5 }
          words: { handler: f.handler, concurrency: many }
          huge: { handler: f.handler, concurrency: 5000 }
          py: { handler: f.handler, runtime: python3.12, concurrency: 4 }
          py-one: { handler: f.handler, runtime: python3.12, concurrency: 1 }
          ok: { handler: f.handler, concurrency: '8' }
        ",
        expect![[r#"
            serverless.yml:4:44: functions.zero.concurrency: concurrency 0 is out of range: expected a whole number of invocations per instance from 1 to 1000
            serverless.yml:5:48: functions.negative.concurrency: expected a whole number of invocations per instance from 1 to 1000, got number -2
            serverless.yml:6:48: functions.fraction.concurrency: expected a whole number of invocations per instance from 1 to 1000, got number 1.5
            serverless.yml:7:45: functions.words.concurrency: expected a whole number of invocations per instance from 1 to 1000, got string "many"
            serverless.yml:8:44: functions.huge.concurrency: concurrency 5000 is out of range: expected a whole number of invocations per instance from 1 to 1000
            serverless.yml:9:50: functions.py.concurrency: concurrency 4 is for Node.js functions, whose handlers are async; a python3.12 function runs one invocation per instance (remove the key)
        "#]],
    );
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          f: { handler: f.handler, concurrency: 8 }
          g: { handler: g.handler }
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 4), 1024 MB, 6s
              8 invocations per instance
              Node { major: 20 }
            function g: nodejs20.x g.handler (line 5), 1024 MB, 6s
              Node { major: 20 }
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
            serverless.yml:8:8: provider.environment.D: cannot resolve `${ssm:/path/to/key}`: nimbus cannot resolve `ssm` variables; keep the value as a nimbus secret (`nimbus secret set NAME`, then `${secret:NAME}`) or give a default: `${ssm:/path/to/key, 'value'}`
            serverless.yml:9:8: provider.environment.E: cannot resolve `${cf:stack.output}`: nimbus has no CloudFormation stacks; `cf:stack.output` resolves only when the output (or the stack) names a queue, topic or bucket this app declares
            serverless.yml:10:8: provider.environment.F: cannot resolve `${file(./config.json):key}`: file `./config.json` does not exist
            serverless.yml:11:8: provider.environment.G: cannot resolve `${env:NOT_SET, ${env:ALSO_NOT_SET}}`: environment variable `NOT_SET` is not set; set it or give a default: `${env:NOT_SET, 'value'}`, and no fallback resolved
            serverless.yml:12:8: provider.environment.H: cannot read the default `bare words`; quote text defaults, as in 'value'
            serverless.yml:13:8: provider.environment.I: `${self:custom}` is a mapping and cannot be part of a string
            serverless.yml:15:8: provider.environment.K: unclosed `${` in "${env:UNCLOSED"
            serverless.yml:18:40: functions.f.memorySize: cannot resolve `${self:custom.text}`: `custom.text` is not in the manifest
        "#]],
    );
}

#[test]
fn secrets_resolve_in_environment_values() {
    check(
        "
        service: s
        provider:
          runtime: nodejs20.x
          environment:
            DB_URL: 'postgres://app:${secret:DB_PASSWORD}@db/app'
            TOKEN: ${secret:API_TOKEN}
            FALLBACK: ${secret:NOT_SET, 'dev'}
        functions:
          f:
            handler: f.handler
          g:
            handler: g.handler
            environment: { DB_URL: plain, OWN: 'Bearer ${secret:API_TOKEN}' }
          h:
            handler: h.handler
            environment: { DB_URL: plain, TOKEN: plain }
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 10), 1024 MB, 6s
              Node { major: 20 }
              env DB_URL="postgres://app:hunter2@db/app"
              env FALLBACK="dev"
              env TOKEN="tok_123"
              secrets API_TOKEN, DB_PASSWORD
            function g: nodejs20.x g.handler (line 12), 1024 MB, 6s
              Node { major: 20 }
              env DB_URL="plain"
              env FALLBACK="dev"
              env OWN="Bearer tok_123"
              env TOKEN="tok_123"
              secrets API_TOKEN
            function h: nodejs20.x h.handler (line 15), 1024 MB, 6s
              Node { major: 20 }
              env DB_URL="plain"
              env FALLBACK="dev"
              env TOKEN="plain"
        "#]],
    );
}

#[test]
fn secrets_outside_environment_values_and_unknown_secrets_are_errors() {
    check(
        "
        service: s
        custom: { token: '${secret:API_TOKEN}' }
        provider:
          runtime: nodejs20.x
          stage: ${secret:API_TOKEN}
          environment:
            A: ${secret:NOT_SET}
            B: ${self:custom.token}
            C: ${secret:}
        functions:
          f:
            handler: f.handler
            events:
              - httpApi: 'GET /${secret:DB_PASSWORD}'
        ",
        expect![[r#"
            serverless.yml:2:18: custom.token: `${secret:API_TOKEN}` can only be used in an `environment` value, written there directly (not through `${self:..}`), so that a secret's value reaches only its functions
            serverless.yml:5:10: provider.stage: `${secret:API_TOKEN}` can only be used in an `environment` value, written there directly (not through `${self:..}`), so that a secret's value reaches only its functions
            serverless.yml:7:8: provider.environment.A: cannot resolve `${secret:NOT_SET}`: secret `NOT_SET` is not set; `nimbus secret set NOT_SET` creates it (the value is read from stdin)
            serverless.yml:9:8: provider.environment.C: cannot resolve `${secret:}`: `secret:` needs a name, as in `${secret:DB_PASSWORD}`
            serverless.yml:14:18: functions.f.events[0].httpApi: `${secret:DB_PASSWORD}` can only be used in an `environment` value, written there directly (not through `${self:..}`), so that a secret's value reaches only its functions
        "#]],
    );
}

#[test]
fn secrets_that_cannot_be_read_or_without_a_store_are_errors() {
    #[derive(Debug)]
    struct Unreadable;
    impl super::SecretResolver for Unreadable {
        fn resolve(&self, name: &str) -> Result<Option<String>, String> {
            Err(format!("no key to decrypt `{name}` with"))
        }
    }
    let yaml = dedent(
        "
        service: s
        provider:
          runtime: nodejs20.x
          environment: { A: '${secret:API_TOKEN}' }
        functions:
          f: { handler: f.handler }
        ",
    );
    let mut actual = String::new();
    for secrets in [
        Some(Arc::new(Unreadable) as Arc<dyn super::SecretResolver>),
        None,
    ] {
        let vars = Variables {
            secrets,
            ..Variables::default()
        };
        if let Err(errors) = parse(&yaml, "serverless.yml", &vars) {
            for error in errors {
                let _ = writeln!(actual, "{error}");
            }
        }
    }
    expect![[r#"
        serverless.yml:4:21: provider.environment.A: cannot read secret `API_TOKEN`: no key to decrypt `API_TOKEN` with
        serverless.yml:4:21: provider.environment.A: cannot resolve `${secret:API_TOKEN}`: secret `API_TOKEN` is not set; `nimbus secret set API_TOKEN` creates it (the value is read from stdin)
    "#]]
    .assert_eq(&actual);
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
            warning serverless.yml:2:41: provider.iam.role: an existing role is not modelled by nimbus; grant access with `iam.role.statements`; ignored
            warning serverless.yml:4:3: resources.Outputs: CloudFormation outputs are not modelled by nimbus; `${cf:..}` references resolve by logical id; ignored
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
    check_mangled(base, &vars);
    let events = "service: shop\nprovider:\n  runtime: nodejs20.x\n  iam: { role: { statements: [{ Effect: Allow, Action: [sqs:*], Resource: [!GetAtt Q.Arn, !Sub '${Bkt}/*', { Fn::Join: ['', [a, !Ref T]] }] }] } }\nqueues: { jobs.fifo: { deadLetterQueue: { name: dlq.fifo, maxReceiveCount: 2 } } }\ntopics: { t: { subscriptions: [{ queue: jobs.fifo }, { http: 'http://x' }] } }\nbuckets: [images]\nkv: [s]\nfunctions:\n  f:\n    handler: f.h\n    destinations: { onSuccess: g, onFailure: { type: sqs, arn: !GetAtt Q.Arn } }\n    events:\n      - sqs: { arn: ${cf:s.QArn}, batchSize: 3 }\n      - sns: { topicName: t, filterPolicy: { a: [1] } }\n      - s3: { bucket: images, rules: [{ prefix: a/ }] }\n      - schedule: { rate: [rate(1 hour), cron(0 0 L * ? *)], input: '{}' }\n  g: { handler: g.h }\nresources:\n  Resources:\n    Q: { Type: AWS::SQS::Queue, Properties: { RedrivePolicy: { deadLetterTargetArn: !GetAtt Q.Arn, maxReceiveCount: 1 } } }\n    T: { Type: AWS::SNS::Topic, Properties: { Subscription: [{ Protocol: sqs, Endpoint: !Ref Q }] } }\n    Bkt: { Type: AWS::S3::Bucket }\n";
    if let Err(errors) = parse(events, "f", &vars) {
        panic!("the unmangled manifest parses: {errors:?}");
    }
    check_mangled(events, &vars);
}

fn check_mangled(base: &str, vars: &Variables) {
    let chars: Vec<char> = base.chars().collect();
    let inserts = ['{', '}', '"', '\n'];
    for idx in 0..=chars.len() {
        let cut: String = chars[..idx].iter().collect();
        let _ = parse(&cut, "f", vars);
        for c in inserts {
            let mut s: Vec<char> = chars.clone();
            s.insert(idx, c);
            let _ = parse(&s.iter().collect::<String>(), "f", vars);
        }
    }
}

#[test]
fn queues_section_declares_queues_and_dead_letter_queues() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        queues:
          orders:
            visibilityTimeout: 60
            delaySeconds: 5
            messageRetentionPeriod: 86400
            deadLetterQueue: { name: orders-dlq, maxReceiveCount: 3 }
          payments.fifo:
            fifo: true
            contentBasedDeduplication: true
            deadLetterQueue: { name: payments-dlq.fifo, maxReceiveCount: 5 }
          plain:
        functions:
          f:
            handler: f.handler
            events:
              - sqs: orders
              - sqs:
                  arn: arn:aws:sqs:us-east-1:123456789012:payments.fifo
                  batchSize: 1
                  maximumBatchingWindow: 2
                  functionResponseType: ReportBatchItemFailures
                  maximumConcurrency: 5
                  enabled: false
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 16), 1024 MB, 6s
              Node { major: 20 }
              sqs orders batch 10 window 0s
              sqs payments.fifo batch 1 window 2s report-failures concurrency 5 disabled
              grant sqs:ReceiveMessage,sqs:DeleteMessage,sqs:ChangeMessageVisibility on queue:orders
              grant sqs:ReceiveMessage,sqs:DeleteMessage,sqs:ChangeMessageVisibility on queue:payments.fifo
            queue orders: visibility 60s, delay 5s, retention 86400s, dead letters to orders-dlq after 3 receives
            queue payments.fifo: visibility 30s, delay 0s, retention 345600s, content-based deduplication, dead letters to payments-dlq.fifo after 5 receives
            queue plain: visibility 30s, delay 0s, retention 345600s
            queue orders-dlq: visibility 30s, delay 0s, retention 345600s
            queue payments-dlq.fifo: visibility 30s, delay 0s, retention 345600s
        "#]],
    );
}

#[test]
fn a_queue_hiding_messages_for_less_than_its_consumers_timeout_is_a_warning() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        queues:
          quick: { visibilityTimeout: 10 }
          slow: { visibilityTimeout: 180 }
        functions:
          worker:
            handler: f.handler
            timeout: 30
            events:
              - sqs: quick
              - sqs: slow
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function worker: nodejs20.x f.handler (line 8), 1024 MB, 30s
              Node { major: 20 }
              sqs quick batch 10 window 0s
              sqs slow batch 10 window 0s
              grant sqs:ReceiveMessage,sqs:DeleteMessage,sqs:ChangeMessageVisibility on queue:quick
              grant sqs:ReceiveMessage,sqs:DeleteMessage,sqs:ChangeMessageVisibility on queue:slow
            queue quick: visibility 10s, delay 0s, retention 345600s
            queue slow: visibility 180s, delay 0s, retention 345600s
            warning serverless.yml:7:3: functions.worker: queue `quick` hides a received message for 10s, less than this function's timeout of 30s, so a message still being processed can be delivered again (AWS refuses this at deploy); give the queue a visibilityTimeout of at least 30s (AWS recommends 6 times the timeout)
        "#]],
    );
}

#[test]
fn queues_section_errors() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        queues:
          orders: { fifo: true, visibilityTimeout: 50000, delaySeconds: -1 }
          jobs.fifo: { fifo: false }
          plain: { contentBasedDeduplication: true, deadLetterQueue: { name: dlq } }
          events.fifo: { deadLetterQueue: { name: not-fifo, maxReceiveCount: 2000 } }
          'bad name': {}
          dup: {}
          other: { deadLetterQueue: plain, retries: 3 }
          nimbus--async--f: {}
        functions:
          f: { handler: f.handler }
        resources:
          Resources:
            Dup: { Type: AWS::SQS::Queue, Properties: { QueueName: dup } }
        ",
        expect![[r#"
            serverless.yml:4:13: queues.orders.fifo: a FIFO queue's name must end in .fifo; name it `orders.fifo`
            serverless.yml:4:44: queues.orders.visibilityTimeout: 50000 is out of range; expected 0 to 43200
            serverless.yml:4:65: queues.orders.delaySeconds: expected a whole number of seconds, got number -1
            serverless.yml:5:16: queues.jobs.fifo.fifo: queue `jobs.fifo` ends in .fifo, which makes it a FIFO queue; remove `fifo: false`
            serverless.yml:6:12: queues.plain.contentBasedDeduplication: contentBasedDeduplication needs a FIFO queue (a name ending in .fifo)
            serverless.yml:6:62: queues.plain.deadLetterQueue: missing `maxReceiveCount`
            serverless.yml:7:43: queues.events.fifo.deadLetterQueue.name: the dead-letter queue of a FIFO queue must be FIFO too; `not-fifo` does not end in .fifo
            serverless.yml:7:70: queues.events.fifo.deadLetterQueue.maxReceiveCount: 2000 is out of range; expected 1 to 1000
            serverless.yml:8:3: queues.bad name: queue name "bad name" is invalid; use 1 to 80 letters, digits, `-` and `_`, with an optional .fifo suffix
            serverless.yml:9:3: queues.dup: queue `dup` is already declared at line 16
            serverless.yml:10:29: queues.other.deadLetterQueue: expected a mapping with `name` and `maxReceiveCount`, got string "plain"
            serverless.yml:11:3: queues.nimbus--async--f: queue name "nimbus--async--f" starts with `nimbus--`, which nimbus keeps for its own queues; choose another name
        "#]],
    );
}

#[test]
fn cloudformation_queues_topics_and_buckets_are_declared() {
    check(
        "
        service: shop
        provider: { runtime: nodejs20.x }
        functions:
          worker:
            handler: w.handler
            events:
              - sqs: { arn: { Fn::GetAtt: [OrdersQueue, Arn] }, batchSize: 5 }
              - sqs: !GetAtt JobsQueue.Arn
              - sqs: { arn: { Ref: OrdersDlq } }
              - sqs: ${cf:shop-infra.OrdersQueueArn}
              - sqs: arn:aws:sqs:${AWS::Region}:${AWS::AccountId}:orders
              - sqs: JobsQueue
        resources:
          Resources:
            OrdersQueue:
              Type: AWS::SQS::Queue
              Properties:
                QueueName: orders
                VisibilityTimeout: 120
                DelaySeconds: 10
                MessageRetentionPeriod: 600
                RedrivePolicy:
                  deadLetterTargetArn: { Fn::GetAtt: [OrdersDlq, Arn] }
                  maxReceiveCount: 4
            OrdersDlq:
              Type: AWS::SQS::Queue
              DependsOn: OrdersQueue
            JobsQueue:
              Type: AWS::SQS::Queue
              Properties:
                FifoQueue: true
                ContentBasedDeduplication: true
                RedrivePolicy: { deadLetterTargetArn: arn:aws:sqs:us-east-1:123:jobs-dlq.fifo, maxReceiveCount: 2 }
            Events:
              Type: AWS::SNS::Topic
              Properties:
                TopicName: events
                Subscription:
                  - { Protocol: sqs, Endpoint: !GetAtt OrdersQueue.Arn }
                  - { Protocol: https, Endpoint: 'https://example.com/hook' }
            AuditSubscription:
              Type: AWS::SNS::Subscription
              Properties:
                TopicArn: !Ref Events
                Protocol: sqs
                Endpoint: { Fn::GetAtt: [JobsQueue, Arn] }
                FilterPolicy: { kind: [audit] }
                FilterPolicyScope: MessageBody
                RawMessageDelivery: true
            Images:
              Type: AWS::S3::Bucket
              Properties: { BucketName: shop-images }
            Uploads:
              Type: AWS::S3::Bucket
            Table:
              Type: AWS::DynamoDB::Table
              Properties:
                TableName: t
                AttributeDefinitions: [{ AttributeName: id, AttributeType: S }]
                KeySchema: [{ AttributeName: id, KeyType: HASH }]
          Outputs:
            OrdersQueueArn: { Value: !GetAtt OrdersQueue.Arn }
        ",
        expect![[r#"
            serverless.yml:55:5: resources.Resources.Table.Properties: table name "t" is invalid; use 3 to 255 letters, digits, `-`, `_` and `.`
        "#]],
    );
}

#[test]
fn cloudformation_errors() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          f:
            handler: f.handler
            events:
              - sqs: { Fn::GetAtt: [Missing, Arn] }
              - sqs: { Fn::GetAtt: [Table, Arn] }
              - sqs: { Fn::GetAtt: [Orders, QueueUrl2] }
              - sqs: { Fn::ImportValue: orders-arn }
              - sqs: arn:aws:sns:us-east-1:1:topic
        resources:
          Resources:
            Orders:
              Type: AWS::SQS::Queue
              Properties: { QueueName: orders, FifoQueue: true, VisibilityTimeout: 99999, KmsMasterKeyId: k }
            Named.fifo:
              Type: AWS::SQS::Queue
              Properties: { QueueName: named.fifo, ContentBasedDeduplication: true }
            Redriven:
              Type: AWS::SQS::Queue
              Properties: { RedrivePolicy: { maxReceiveCount: 3 } }
            NoType: { Properties: {} }
            Table: { Type: AWS::DynamoDB::Table }
            Sub:
              Type: AWS::SNS::Subscription
              Properties: { TopicArn: { Ref: Nope }, Protocol: email, Endpoint: a@b.c }
            Topic:
              Type: AWS::SNS::Topic
              Properties:
                Subscription: [{ Protocol: sqs, Endpoint: arn:aws:sqs:us-east-1:1:undeclared }, { Protocol: http, Endpoint: 'ftp://x' }]
            BadBucket:
              Type: AWS::S3::Bucket
              Properties: { BucketName: Bad_Bucket }
        ",
        expect![[r#"
            serverless.yml:7:14: functions.f.events[0].sqs.Fn::GetAtt: `Missing` is not declared under `resources.Resources`
            serverless.yml:8:14: functions.f.events[1].sqs: expected a queue ARN such as `arn:aws:sqs:us-east-1:123456789012:orders`, got "arn:aws:dynamodb:us-east-1:123456789012:table/Table"
            serverless.yml:9:14: functions.f.events[2].sqs.Fn::GetAtt: nimbus does not model the `QueueUrl2` attribute of `Orders`; use `Arn`
            serverless.yml:10:14: functions.f.events[3].sqs.Fn::ImportValue: nimbus does not evaluate `Fn::ImportValue`; write the name or ARN, or use Ref, Fn::GetAtt, Fn::Sub or Fn::Join
            serverless.yml:11:14: functions.f.events[4].sqs: expected a queue ARN such as `arn:aws:sqs:us-east-1:123456789012:orders`, got "arn:aws:sns:us-east-1:1:topic"
            serverless.yml:16:40: resources.Resources.Orders.Properties.FifoQueue: a FIFO queue's name must end in .fifo, as in `orders.fifo`
            serverless.yml:16:76: resources.Resources.Orders.Properties.VisibilityTimeout: 99999 is out of range; expected 0 to 43200
            serverless.yml:17:5: resources.Resources.Named.fifo.Properties: queue `named.fifo` ends in .fifo; set `FifoQueue: true`
            serverless.yml:19:44: resources.Resources.Named.fifo.Properties.ContentBasedDeduplication: ContentBasedDeduplication needs `FifoQueue: true`
            serverless.yml:22:36: resources.Resources.Redriven.Properties.RedrivePolicy: missing `deadLetterTargetArn`
            serverless.yml:23:5: resources.Resources.NoType: missing `Type`, as in `Type: AWS::SQS::Queue`
            serverless.yml:24:5: resources.Resources.Table.Properties: missing `KeySchema`
            serverless.yml:27:31: resources.Resources.Sub.Properties.TopicArn.Ref: `Nope` is not declared under `resources.Resources`
            serverless.yml:31:51: resources.Resources.Topic.Properties.Subscription[0].Endpoint: queue `undeclared` is not declared; add it under `queues:` or `resources`
            serverless.yml:31:117: resources.Resources.Topic.Properties.Subscription[1].Endpoint: expected an http:// URL, got "ftp://x"
            serverless.yml:32:5: resources.Resources.BadBucket: bucket name "Bad_Bucket" is invalid; use 3 to 63 lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit
        "#]],
    );
}

#[test]
fn sqs_event_errors() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        queues: [orders]
        functions:
          f:
            handler: f.handler
            events:
              - sqs: unknown
              - sqs: { arn: orders, batchSize: 11, maximumBatchingWindow: 301 }
              - sqs: { arn: orders, functionResponseType: Partial, maximumConcurrency: 1, enabled: maybe }
              - sqs: { batchSize: 1, filterPatterns: [] }
              - sqs: 42
              - sqs: ${cf:other-stack.UnknownQueue}
        ",
        expect![[r#"
            serverless.yml:8:14: functions.f.events[0].sqs: queue `unknown` is not declared; add it under `queues:` or `resources`
            serverless.yml:9:40: functions.f.events[1].sqs.batchSize: 11 is out of range; expected 1 to 10
            serverless.yml:9:67: functions.f.events[1].sqs.maximumBatchingWindow: 301 is out of range; expected 0 to 300
            serverless.yml:10:51: functions.f.events[2].sqs.functionResponseType: expected `ReportBatchItemFailures`, got "Partial"
            serverless.yml:10:80: functions.f.events[2].sqs.maximumConcurrency: 1 is out of range; expected 2 to 1000
            serverless.yml:10:92: functions.f.events[2].sqs.enabled: expected true or false, got string "maybe"
            serverless.yml:11:14: functions.f.events[3].sqs: missing `arn`; name the queue, as in `arn: orders`
            serverless.yml:12:14: functions.f.events[4].sqs: expected a name, an ARN, `{ Ref: LogicalId }` or `{ Fn::GetAtt: [LogicalId, Arn] }`, got number 42
            serverless.yml:13:14: functions.f.events[5].sqs: queue `UnknownQueue` is not declared; add it under `queues:` or `resources`
        "#]],
    );
}

#[test]
fn sns_events_declare_their_topics() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        topics:
          events:
            subscriptions:
              - queue: audit
              - http: http://127.0.0.1:9000/hook
                filterPolicy: { kind: [order, refund], amount: [{ numeric: ['>', 100] }] }
                rawMessageDelivery: true
              - { https: 'https://example.com/x', filterPolicyScope: MessageBody, filterPolicy: '{\"a\": [1]}' }
          alerts:
        queues: [audit]
        functions:
          f:
            handler: f.handler
            events:
              - sns: events
              - sns: arn:aws:sns:us-east-1:123456789012:orders
              - sns: { topicName: refunds, filterPolicy: { kind: [refund] }, filterPolicyScope: MessageBody, displayName: Refunds }
              - sns: { arn: arn:aws:sns:us-east-1:1:orders, topicName: ignored }
          g:
            handler: g.handler
            events:
              - sns: refunds
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 15), 1024 MB, 6s
              Node { major: 20 }
              sns events
              sns orders
              sns refunds filter {"kind":["refund"]} on MessageBody
              sns orders
            function g: nodejs20.x g.handler (line 22), 1024 MB, 6s
              Node { major: 20 }
              sns refunds
            queue audit: visibility 30s, delay 0s, retention 345600s
            topic events
              subscription Queue("audit")
              subscription Http("http://127.0.0.1:9000/hook") filter {"amount":[{"numeric":[">",100]}],"kind":["order","refund"]} on MessageAttributes raw
              subscription Http("https://example.com/x") filter {"a":[1]} on MessageBody
            topic alerts
            topic orders
            topic refunds
        "#]],
    );
}

#[test]
fn sns_and_topic_errors() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        topics:
          events:
            subscriptions:
              - queue: missing
              - { http: 'https://x' }
              - { queue: q, http: 'http://x' }
              - {}
              - { email: a@b.c }
            owner: me
          bad topic:
        queues: [q]
        functions:
          f:
            handler: f.handler
            events:
              - sns: { filterPolicy: [x] }
              - sns: { topicName: t, filterPolicyScope: Body }
              - sns: arn:aws:sqs:us-east-1:1:q
              - sns: { topicName: t2, redrivePolicy: {} }
        ",
        expect![[r#"
            serverless.yml:6:16: topics.events.subscriptions[0].queue: queue `missing` is not declared; add it under `queues:` or `resources`
            serverless.yml:7:17: topics.events.subscriptions[1].http: expected an http:// URL, got "https://x"
            serverless.yml:8:9: topics.events.subscriptions[2]: a subscription names exactly one of `queue`, `http` or `https`
            serverless.yml:9:9: topics.events.subscriptions[3]: a subscription names exactly one of `queue`, `http` or `https`
            serverless.yml:10:9: topics.events.subscriptions[4]: a subscription names exactly one of `queue`, `http` or `https`
            serverless.yml:12:3: topics.bad topic: topic name "bad topic" is invalid; use 1 to 256 letters, digits, `-` and `_`, with an optional .fifo suffix
            serverless.yml:18:14: functions.f.events[0].sns: an `sns` event needs `topicName` or `arn`
            serverless.yml:18:30: functions.f.events[0].sns.filterPolicy: expected a filter policy mapping such as `{ kind: [order] }`, got a sequence
            serverless.yml:19:49: functions.f.events[1].sns.filterPolicyScope: expected `MessageAttributes` or `MessageBody`, got "Body"
            serverless.yml:20:14: functions.f.events[2].sns: expected a topic ARN such as `arn:aws:sns:us-east-1:123456789012:events`, got "arn:aws:sqs:us-east-1:1:q"
        "#]],
    );
}

#[test]
fn s3_events_declare_their_buckets() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        buckets: [images]
        functions:
          thumbnail:
            handler: t.handler
            events:
              - s3: images
              - s3: { bucket: uploads, event: 's3:ObjectRemoved:*', rules: [{ prefix: in/ }, { suffix: .jpg }] }
              - s3: { bucket: legacy, existing: true, event: 's3:ObjectCreated:Put' }
              - s3: { bucket: arn:aws:s3:::archive, event: ['s3:ObjectCreated:Copy', 's3:ObjectRemoved:DeleteMarkerCreated'] }
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function thumbnail: nodejs20.x t.handler (line 6), 1024 MB, 6s
              Node { major: 20 }
              s3 images s3:ObjectCreated:* prefix None suffix None
              s3 uploads s3:ObjectRemoved:* prefix Some("in/") suffix Some(".jpg")
              s3 legacy s3:ObjectCreated:Put prefix None suffix None
              s3 archive s3:ObjectCreated:Copy,s3:ObjectRemoved:DeleteMarkerCreated prefix None suffix None
            buckets images, uploads, legacy, archive
        "#]],
    );
}

#[test]
fn s3_event_errors() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          f:
            handler: f.handler
            events:
              - s3: { bucket: a, event: 's3:ObjectRestore:*' }
              - s3: { bucket: b-b-b, rules: [{ prefix: x }, { prefix: y }, { glob: '*.png' }] }
              - s3: { event: 's3:ObjectCreated:*' }
              - s3: UPPER
              - s3: { bucket: c-c-c, existing: yes please }
        ",
        expect![[r#"
            serverless.yml:7:23: functions.f.events[0].s3.bucket: bucket name "a" is invalid; use 3 to 63 lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit
            serverless.yml:7:33: functions.f.events[0].s3.event: unknown S3 event "s3:ObjectRestore:*"; nimbus raises s3:ObjectCreated:*, s3:ObjectCreated:Put, s3:ObjectCreated:Post, s3:ObjectCreated:Copy, s3:ObjectCreated:CompleteMultipartUpload, s3:ObjectRemoved:*, s3:ObjectRemoved:Delete, s3:ObjectRemoved:DeleteMarkerCreated
            serverless.yml:8:55: functions.f.events[1].s3.rules[1].prefix: S3 allows one `prefix` rule per event
            serverless.yml:8:70: functions.f.events[1].s3.rules[2].glob: unknown rule `glob`; a rule is `prefix: ...` or `suffix: ...`
            serverless.yml:9:13: functions.f.events[2].s3: missing `bucket`; name the bucket, as in `bucket: images`
            serverless.yml:10:13: functions.f.events[3].s3: bucket name "UPPER" is invalid; use 3 to 63 lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit
            serverless.yml:11:40: functions.f.events[4].s3.existing: expected true or false, got string "yes please"
        "#]],
    );
}

#[test]
fn schedule_events() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          tick:
            handler: t.handler
            events:
              - schedule: rate(5 minutes)
              - schedule: cron(0 12 * * ? *)
              - schedule:
                  rate: [rate(1 hour), 'cron(0 8 ? * MON-FRI *)']
                  name: office
                  enabled: false
                  input: { job: report, ids: [1, 2] }
                  description: Office hours
              - schedule: { rate: rate(1 day), input: '{\"from\": \"json\"}' }
          tock:
            handler: t.handler
            events:
              - schedule: rate(2 days)
              - schedule: rate(1 second)
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function tick: nodejs20.x t.handler (line 5), 1024 MB, 6s
              Node { major: 20 }
              schedule tick-schedule-1 rate(5 minutes)
              schedule tick-schedule-2 cron(0 12 * * ? *)
              schedule office rate(1 hour) disabled input {"ids":[1,2],"job":"report"}
              schedule office-2 cron(0 8 ? * MON-FRI *) disabled input {"ids":[1,2],"job":"report"}
              schedule tick-schedule-5 rate(1 day) input {"from":"json"}
            function tock: nodejs20.x t.handler (line 17), 1024 MB, 6s
              Node { major: 20 }
              schedule tock-schedule-1 rate(2 days)
              schedule tock-schedule-2 rate(1 second)
            warning serverless.yml:20:19: functions.tock.events[1].schedule: `rate(1 second)` fires more often than EventBridge allows (its shortest rate is 1 minute): nimbus runs it, AWS would reject it
        "#]],
    );
}

#[test]
fn malformed_schedules_are_errors_at_their_line() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          f:
            handler: f.handler
            events:
              - schedule: rate(5 minute)
              - schedule: cron(0 12 * * *)
              - schedule:
                  rate:
                    - rate(1 hour)
                    - cron(0 25 * * ? *)
                  input: '{not json'
                  inputTransformer: {}
              - schedule: { enabled: true }
              - schedule: every day
              - schedule: { rate: rate(1 hour), name: dup }
              - schedule: { rate: rate(2 hours), name: dup }
        ",
        expect![[r#"
            serverless.yml:7:19: functions.f.events[0].schedule: `rate(5 minute)`: EventBridge wants a singular unit for 1 and a plural one otherwise; write `rate(5 minutes)`
            serverless.yml:8:19: functions.f.events[1].schedule: `cron(0 12 * * *)` has 5 fields; an EventBridge cron has 6: minutes hours day-of-month month day-of-week year, as in `cron(0 12 * * ? *)`
            serverless.yml:12:15: functions.f.events[2].schedule.rate[1]: cron field 2 (hours) `25`: 25 is out of range; expected 0-23, * or a-b/n
            serverless.yml:13:18: functions.f.events[2].schedule.input: `input` text must be JSON: key must be a string at line 1 column 2
            serverless.yml:15:19: functions.f.events[3].schedule: missing `rate`; write `rate: rate(5 minutes)` or `rate: cron(0 12 * * ? *)`
            serverless.yml:16:19: functions.f.events[4].schedule: `every day` is not a schedule expression; write `rate(5 minutes)` or `cron(0 12 * * ? *)`
            serverless.yml:18:48: functions.f.events[6].schedule.name: schedule name `dup` is already used at line 17
        "#]],
    );
}

#[test]
fn buckets_and_kv_sections() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        buckets:
          images: {}
          docs: { versioning: true }
        kv: [sessions, cache]
        functions:
          f: { handler: f.handler }
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 8), 1024 MB, 6s
              Node { major: 20 }
            buckets images, docs
            kv sessions, cache
            warning serverless.yml:5:11: buckets.docs.versioning: not modelled by nimbus; ignored
        "#]],
    );
}

#[test]
fn bucket_and_kv_section_errors() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        buckets: [ab, images, images, x..y]
        kv: sessions
        queues: 7
        functions:
          f: { handler: f.handler }
        ",
        expect![[r#"
            serverless.yml:3:11: buckets[0]: bucket name "ab" is invalid; use 3 to 63 lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit
            serverless.yml:3:23: buckets[2]: bucket `images` is already declared at line 3
            serverless.yml:3:31: buckets[3]: bucket name "x..y" is invalid; use 3 to 63 lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit
            serverless.yml:4:5: kv: expected a list of names or a mapping from names to settings, got string "sessions"
            serverless.yml:5:9: queues: expected a list of names or a mapping from names to settings, got number 7
        "#]],
    );
}

#[test]
fn iam_statements_become_grants() {
    check(
        "
        service: shop
        provider:
          runtime: nodejs20.x
          iam:
            role:
              statements:
                - Effect: Allow
                  Action: [sqs:SendMessage, sqs:GetQueueUrl]
                  Resource:
                    - arn:aws:sqs:*:*:orders
                    - { Fn::GetAtt: [JobsQueue, Arn] }
                - Effect: Allow
                  Action: s3:*
                  Resource:
                    - arn:aws:s3:::images/*
                    - arn:aws:s3:::images
                    - { Fn::Join: ['', [{ Fn::GetAtt: [Uploads, Arn] }, '/*']] }
                    - !Sub 'arn:aws:s3:::${Uploads}/in/*'
                - Effect: Allow
                  Action: [kv:Get*, kv:Put]
                  Resource: [kv:sessions, arn:nimbus:kv:::cache, queue:jobs]
                - Effect: Allow
                  Action: lambda:InvokeFunction
                  Resource: arn:aws:lambda:us-east-1:123:function:shop-dev-worker
                - Effect: Allow
                  Action: sns:Publish
                  Resource: { Ref: Events }
                - Effect: Deny
                  Action: '*'
                  Resource: '*'
                - Effect: Allow
                  Action: dynamodb:*
                  Resource: arn:aws:dynamodb:us-east-1:123:table/t
            deploymentRole: arn:aws:iam::123:role/deploy
          iamRoleStatements:
            - { Effect: Allow, Action: 'kv:*', Resource: '*', Sid: old-style }
        functions:
          api:
            handler: a.handler
            iamRoleStatements:
              - { Effect: Allow, Action: sqs:SendMessage, Resource: arn:aws:sqs:us-east-1:123:jobs }
              - { Effect: Allow, Action: s3:GetObject, Resource: '*', Condition: { StringEquals: {} } }
          worker:
            handler: w.handler
            events:
              - sqs: jobs
        resources:
          Resources:
            JobsQueue: { Type: AWS::SQS::Queue, Properties: { QueueName: jobs } }
            Uploads: { Type: AWS::S3::Bucket }
            Events: { Type: AWS::SNS::Topic }
        ",
        expect![[r#"
            service shop, stage dev, region us-east-1
            function api: nodejs20.x a.handler (line 39), 1024 MB, 6s
              Node { major: 20 }
              grant sqs:SendMessage,sqs:GetQueueUrl on queue:orders,queue:jobs
              grant s3:* on bucket:images/*,bucket:images,bucket:uploads/*,bucket:uploads/in/*
              grant kv:Get*,kv:Put on kv:sessions,kv:cache,queue:jobs
              grant lambda:InvokeFunction on function:worker
              grant sns:Publish on topic:Events
              grant dynamodb:* on table:t
              grant kv:* on *
              grant sqs:SendMessage on queue:jobs
            function worker: nodejs20.x w.handler (line 44), 1024 MB, 6s
              Node { major: 20 }
              sqs jobs batch 10 window 0s
              grant sqs:SendMessage,sqs:GetQueueUrl on queue:orders,queue:jobs
              grant s3:* on bucket:images/*,bucket:images,bucket:uploads/*,bucket:uploads/in/*
              grant kv:Get*,kv:Put on kv:sessions,kv:cache,queue:jobs
              grant lambda:InvokeFunction on function:worker
              grant sns:Publish on topic:Events
              grant dynamodb:* on table:t
              grant kv:* on *
              grant sqs:ReceiveMessage,sqs:DeleteMessage,sqs:ChangeMessageVisibility on queue:jobs
            queue jobs: visibility 30s, delay 0s, retention 345600s
            topic Events
            buckets uploads
            warning serverless.yml:28:19: provider.iam.role.statements[5].Effect: Deny statements are not modelled by nimbus, which grants only what Allow statements list; this statement is ignored
            warning serverless.yml:34:5: provider.iam.deploymentRole: not modelled by nimbus; ignored
            warning serverless.yml:42:63: functions.api.iamRoleStatements[1].Condition: not modelled by nimbus; this statement is ignored
        "#]],
    );
}

#[test]
fn iam_statement_errors() {
    check(
        "
        service: s
        provider:
          runtime: nodejs20.x
          iamRoleStatements:
            - { Effect: Permit, Action: x, Resource: '*' }
            - { Action: x }
            - { Effect: Allow, Action: 7, Resource: { Ref: Nope } }
            - just text
          iam: { role: { statements: {}, managedPolicies: [arn] } }
        functions:
          f: { handler: f.handler }
        ",
        expect![[r#"
            serverless.yml:5:17: provider.iamRoleStatements[0].Effect: expected `Allow` or `Deny`, got "Permit"
            serverless.yml:6:7: provider.iamRoleStatements[1]: missing `Effect`
            serverless.yml:6:7: provider.iamRoleStatements[1]: missing `Resource`
            serverless.yml:7:32: provider.iamRoleStatements[2].Action: expected an action such as `sqs:SendMessage` or a list of them, got number 7
            serverless.yml:7:45: provider.iamRoleStatements[2].Resource.Ref: `Nope` is not declared under `resources.Resources`
            serverless.yml:8:7: provider.iamRoleStatements[3]: expected a statement with `Effect`, `Action` and `Resource`, got string "just text"
            serverless.yml:9:30: provider.iam.role.statements: expected a list of IAM statements, got a mapping
        "#]],
    );
}

#[test]
fn async_invocation_config_and_destinations() {
    check(
        "
        service: shop
        provider: { runtime: nodejs20.x }
        queues: [failures]
        functions:
          resize:
            handler: r.handler
            maximumRetryAttempts: 0
            maximumEventAge: 3600
            destinations:
              onSuccess: notify
              onFailure: arn:aws:sqs:us-east-1:123:failures
          notify:
            handler: n.handler
            destinations:
              onSuccess: arn:aws:lambda:us-east-1:123:function:shop-dev-resize
              onFailure: { type: sns, arn: arn:aws:sns:us-east-1:123:alerts }
            onError: arn:aws:sqs:us-east-1:123:failures
          alert:
            handler: a.handler
            events:
              - sns: alerts
            onError: { Ref: AlertsDlq }
        resources:
          Resources:
            AlertsDlq: { Type: AWS::SNS::Topic, Properties: { TopicName: alerts-dlq } }
        ",
        expect![[r#"
            service shop, stage dev, region us-east-1
            function resize: nodejs20.x r.handler (line 6), 1024 MB, 6s
              Node { major: 20 }
              async retries 0, max age 3600s, on success Some(Function("notify")), on failure Some(Queue("failures")), dead letter None
            function notify: nodejs20.x n.handler (line 13), 1024 MB, 6s
              Node { major: 20 }
              async retries 2, max age 21600s, on success Some(Function("resize")), on failure Some(Topic("alerts")), dead letter Some(Queue("failures"))
            function alert: nodejs20.x a.handler (line 19), 1024 MB, 6s
              Node { major: 20 }
              sns alerts
              async retries 2, max age 21600s, on success None, on failure None, dead letter Some(Topic("alerts-dlq"))
            queue failures: visibility 30s, delay 0s, retention 345600s
            topic alerts-dlq
            topic alerts
        "#]],
    );
}

#[test]
fn async_invocation_errors() {
    check(
        "
        service: shop
        provider: { runtime: nodejs20.x }
        functions:
          f:
            handler: f.handler
            maximumRetryAttempts: 3
            maximumEventAge: 59
            destinations:
              onSuccess: nowhere
              onFailure: arn:aws:sqs:us-east-1:123:undeclared
              onTimeout: x
            onError: worker
          g:
            handler: g.handler
            destinations:
              onSuccess: { type: eventBus, arn: arn:aws:events:x }
              onFailure: arn:aws:dynamodb:us-east-1:1:table/t
            onError: arn:aws:sns:us-east-1:1:undeclared-topic
        ",
        expect![[r#"
            serverless.yml:6:27: functions.f.maximumRetryAttempts: 3 is out of range; expected 0 to 2
            serverless.yml:7:22: functions.f.maximumEventAge: 59 is out of range; expected 60 to 21600
            serverless.yml:9:18: functions.f.destinations.onSuccess: function `nowhere` is not a function of this app
            serverless.yml:10:18: functions.f.destinations.onFailure: queue `undeclared` is not declared; add it under `queues:` or `resources`
            serverless.yml:12:14: functions.f.onError: `onError` takes an SQS queue or SNS topic ARN, not a function
            serverless.yml:16:26: functions.g.destinations.onSuccess.type: EventBridge destinations are not modelled by nimbus; use sqs, sns or function
            serverless.yml:17:18: functions.g.destinations.onFailure: expected an SQS, SNS or Lambda function ARN, got "arn:aws:dynamodb:us-east-1:1:table/t"
            serverless.yml:18:14: functions.g.onError: topic `undeclared-topic` is not declared; add it under `topics:` or `resources`, or subscribe a function to it
        "#]],
    );
}

#[test]
fn environment_values_may_reference_resources() {
    check(
        "
        service: s
        provider:
          runtime: nodejs20.x
          environment:
            ORDERS: !Ref Orders
            ORDERS_ARN: !GetAtt Orders.Arn
            IMAGES: { Ref: Images }
            TOPIC: !Sub '${Events}'
            REGION: !Ref AWS::Region
        functions:
          f:
            handler: f.handler
            environment: { JOINED: !Join [',', [a, b]] }
        resources:
          Resources:
            Orders: { Type: AWS::SQS::Queue }
            Images: { Type: AWS::S3::Bucket, Properties: { BucketName: images } }
            Events: { Type: AWS::SNS::Topic }
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 12), 1024 MB, 6s
              Node { major: 20 }
              env IMAGES="images"
              env JOINED="a,b"
              env ORDERS="http://sqs.nimbus.internal/123456789012/Orders"
              env ORDERS_ARN="arn:aws:sqs:*:*:Orders"
              env REGION="*"
              env TOPIC="arn:aws:sns:*:*:Events"
            queue Orders: visibility 30s, delay 0s, retention 345600s
            topic Events
            buckets images
        "#]],
    );
}

#[test]
fn short_form_tags_are_read_as_cloudformation_long_forms() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          f:
            handler: f.handler
            environment: { LOCAL: !!str 12, Q: !GetAtt [Orders, QueueName] }
            events:
              - sqs: !Ref Orders
              - sqs: !Sub 'arn:aws:sqs:${AWS::Region}:${AWS::AccountId}:${Orders.QueueName}'
              - sqs: !Join [':', [arn, aws, sqs, !Ref 'AWS::Region', '123', orders]]
        resources:
          Resources:
            Orders: { Type: AWS::SQS::Queue, Properties: { QueueName: orders } }
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 5), 1024 MB, 6s
              Node { major: 20 }
              env LOCAL="12"
              env Q="orders"
              sqs orders batch 10 window 0s
              sqs orders batch 10 window 0s
              sqs orders batch 10 window 0s
              grant sqs:ReceiveMessage,sqs:DeleteMessage,sqs:ChangeMessageVisibility on queue:orders
            queue orders: visibility 30s, delay 0s, retention 345600s
        "#]],
    );
}

#[test]
fn unresolvable_intrinsics_are_errors() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x, environment: { BAD: !Ref Nope } }
        functions:
          f:
            handler: f.handler
            events:
              - sqs: !Base64 orders
              - sqs: !Sub '${Missing.Arn}'
              - sqs: { Fn::Join: [x] }
        ",
        expect![[r#"
            serverless.yml:2:59: provider.environment.BAD.Ref: `Nope` is not declared under `resources.Resources`
            serverless.yml:7:22: functions.f.events[0].sqs.Fn::Base64: nimbus does not evaluate `Fn::Base64`; write the name or ARN, or use Ref, Fn::GetAtt, Fn::Sub or Fn::Join
            serverless.yml:8:19: functions.f.events[1].sqs.Fn::Sub: `Missing` is not declared under `resources.Resources`
            serverless.yml:9:14: functions.f.events[2].sqs.Fn::Join: expected `[separator, [parts...]]`
        "#]],
    );
}

/// Parses `yaml` and prints the summary, then each authorizer on a line of its own.
fn check_authorizers(yaml: &str, expect: Expect) {
    let actual = match parse(&dedent(yaml), "serverless.yml", &Variables::default()) {
        Ok(manifest) => {
            let mut out = summary(&manifest);
            for authorizer in &manifest.policies.authorizers {
                let _ = writeln!(out, "httpApi {}: {:?}", authorizer.name, authorizer.kind);
            }
            for authorizer in &manifest.policies.rest_authorizers {
                let _ = writeln!(out, "http {}: {:?}", authorizer.name, authorizer.kind);
            }
            out
        }
        Err(errors) => errors.iter().map(|e| format!("{e}\n")).collect(),
    };
    expect.assert_eq(&actual);
}

#[test]
fn lambda_authorizers_are_read() {
    check_authorizers(
        "
        service: shop
        provider:
          runtime: nodejs20.x
          httpApi:
            authorizers:
              simple:
                type: request
                functionName: auth
                identitySource: [$request.header.Authorization, $request.querystring.tenant, $context.routeKey]
                enableSimpleResponses: true
                managedExternally: false
              policy:
                type: request
                functionArn: arn:aws:lambda:us-east-1:123456789012:function:shop-dev-auth
                identitySource: $request.header.X-Token
                resultTtlInSeconds: 0
                payloadVersion: '2.0'
              v1: { type: request, functionName: auth, payloadVersion: 1.0, identitySource: [$request.header.Authorization], resultTtlInSeconds: 60 }
              uncached: { type: request, functionName: auth }
        functions:
          auth:
            handler: auth.handler
          api:
            handler: api.handler
            events:
              - httpApi: { method: GET, path: /a, authorizer: { name: simple } }
              - httpApi: { method: GET, path: /b, authorizer: policy }
              - http: { method: GET, path: /c, authorizer: auth }
              - http: { method: GET, path: /d, authorizer: { name: auth } }
              - http:
                  method: GET
                  path: /e
                  authorizer:
                    name: byRequest
                    arn: arn:aws:lambda:us-east-1:123456789012:function:shop-dev-auth
                    type: REQUEST
                    identitySource: method.request.header.Authorization, method.request.querystring.tenant, context.resourcePath
                    resultTtlInSeconds: 0
              - http:
                  method: GET
                  path: /f
                  authorizer: { name: auth, resultTtlInSeconds: 30, identityValidationExpression: '^Bearer [-0-9a-zA-Z._]+$' }
        ",
        expect![[r#"
            service shop, stage dev, region us-east-1
            function auth: nodejs20.x auth.handler (line 22), 1024 MB, 6s
              Node { major: 20 }
            function api: nodejs20.x api.handler (line 24), 1024 MB, 6s
              Node { major: 20 }
              route Http GET /a
                authorizer Some(RouteAuthorizer { name: "simple", scopes: [] }), private false, rate limit None
              route Http GET /b
                authorizer Some(RouteAuthorizer { name: "policy", scopes: [] }), private false, rate limit None
              route Rest GET /c
                authorizer Some(RouteAuthorizer { name: "auth", scopes: [] }), private false, rate limit None
              route Rest GET /d
                authorizer Some(RouteAuthorizer { name: "auth", scopes: [] }), private false, rate limit None
              route Rest GET /e
                authorizer Some(RouteAuthorizer { name: "byRequest", scopes: [] }), private false, rate limit None
              route Rest GET /f
                authorizer Some(RouteAuthorizer { name: "auth", scopes: [] }), private false, rate limit None
            warning serverless.yml:11:9: provider.httpApi.authorizers.simple.managedExternally: not modelled by nimbus; ignored
            warning serverless.yml:42:23: functions.api.events[5].http.authorizer: the authorizer `auth` is declared differently at line 28; as on API Gateway (one authorizer per name), this last declaration applies to every route naming it
            httpApi simple: Lambda(LambdaAuthorizer { function: "auth", format: HttpV2Simple, identity_sources: [Header("authorization"), Query("tenant"), Context(RouteKey)], ttl: 300s, validation: None })
            httpApi policy: Lambda(LambdaAuthorizer { function: "auth", format: HttpV2Policy, identity_sources: [Header("x-token")], ttl: 0ns, validation: None })
            httpApi v1: Lambda(LambdaAuthorizer { function: "auth", format: HttpV1, identity_sources: [Header("authorization")], ttl: 60s, validation: None })
            httpApi uncached: Lambda(LambdaAuthorizer { function: "auth", format: HttpV2Policy, identity_sources: [], ttl: 0ns, validation: None })
            http auth: Lambda(LambdaAuthorizer { function: "auth", format: RestToken, identity_sources: [Header("authorization")], ttl: 30s, validation: Some(TokenPattern("^Bearer [-0-9a-zA-Z._]+$")) })
            http byRequest: Lambda(LambdaAuthorizer { function: "auth", format: RestRequest, identity_sources: [Header("authorization"), Query("tenant"), Context(ResourcePath)], ttl: 0ns, validation: None })
        "#]],
    );
}

#[test]
fn bad_lambda_authorizers_are_errors() {
    check_authorizers(
        "
        service: shop
        provider:
          runtime: nodejs20.x
          httpApi:
            authorizers:
              noFunction: { type: request, functionName: nobody, identitySource: $request.header.Authorization }
              both: { type: request, functionName: auth, functionArn: 'arn:aws:lambda:us-east-1:1:function:shop-dev-auth' }
              missing: { type: request, identitySource: [$request.header.Authorization] }
              badSource: { type: request, functionName: auth, identitySource: [$request.body.token, $stageVariables.key, $context.requestId] }
              ttlNoSource: { type: request, functionName: auth, resultTtlInSeconds: 300 }
              simpleV1: { type: request, functionName: auth, payloadVersion: '1.0', enableSimpleResponses: true }
              badVersion: { type: request, functionName: auth, payloadVersion: 3, resultTtlInSeconds: 7200 }
              notLambda: { type: request, functionArn: 'arn:aws:sqs:us-east-1:1:queue' }
              withJwtKeys: { type: request, functionName: auth, issuerUrl: https://i, resultTtlInSeconds: 0 }
        functions:
          auth:
            handler: auth.handler
          api:
            handler: api.handler
            events:
              - httpApi: { method: GET, path: /a, authorizer: { name: withJwtKeys, scopes: [read] } }
              - httpApi: { method: GET, path: /b, authorizer: { id: abc123 } }
              - httpApi: { method: GET, path: /c, authorizer: { type: aws_iam } }
              - http: { method: GET, path: /d, authorizer: nobody }
              - http: { method: GET, path: /e, authorizer: { name: auth, type: cognito_user_pools } }
              - http: { method: GET, path: /f, authorizer: { name: auth, type: jwt } }
              - http: { method: GET, path: /g, authorizer: { name: auth, identitySource: 'method.request.header.A, method.request.header.B' } }
              - http: { method: GET, path: /h, authorizer: { name: auth, identityValidationExpression: 'Bearer (' } }
              - http: { method: GET, path: /i, authorizer: { arn: 'arn:aws:cognito-idp:us-east-1:1:userpool/x' } }
              - http: { method: GET, path: /j, authorizer: { authorizerId: abc, type: token } }
              - http: { method: GET, path: /k, authorizer: { arn: 'arn:aws:lambda:us-east-1:1:function:other-dev-auth' } }
              - http: { method: GET, path: /l, authorizer: { name: auth, identitySource: method.request.body.x } }
        ",
        expect![[r#"
            serverless.yml:6:50: provider.httpApi.authorizers.noFunction.functionName: unknown function `nobody`; an authorizer is a function of this app, which nimbus invokes (declared: auth, api)
            serverless.yml:7:63: provider.httpApi.authorizers.both.functionArn: set one of `functionName` and `functionArn`, not both
            serverless.yml:8:16: provider.httpApi.authorizers.missing: missing `functionName`: name the function of this app that authorizes requests
            serverless.yml:9:72: provider.httpApi.authorizers.badSource.identitySource[0]: expected `$request.header.NAME`, `$request.querystring.NAME` or `$context.NAME`, got "$request.body.token"
            serverless.yml:9:93: provider.httpApi.authorizers.badSource.identitySource[1]: nimbus has no stage variables, so requests would never carry "$stageVariables.key"; use a header or a query string parameter
            serverless.yml:9:114: provider.httpApi.authorizers.badSource.identitySource[2]: nimbus does not model the context variable "$context.requestId" as an identity source; use one of $context.routeKey, $context.httpMethod, $context.path, $context.identity.sourceIp, $context.stage
            serverless.yml:10:57: provider.httpApi.authorizers.ttlNoSource.resultTtlInSeconds: caching needs `identitySource` (the cache key); set one, or `resultTtlInSeconds: 0`
            serverless.yml:11:77: provider.httpApi.authorizers.simpleV1.enableSimpleResponses: simple responses need `payloadVersion: '2.0'`; with 1.0 the authorizer answers an IAM policy
            serverless.yml:12:72: provider.httpApi.authorizers.badVersion.payloadVersion: expected '1.0' or '2.0', got number 3
            serverless.yml:12:95: provider.httpApi.authorizers.badVersion.resultTtlInSeconds: 7200 is out of range; expected 0 to 3600
            serverless.yml:13:48: provider.httpApi.authorizers.notLambda.functionArn: expected a Lambda function ARN such as `arn:aws:lambda:us-east-1:123456789012:function:shop-dev-auth`, got "arn:aws:sqs:us-east-1:1:queue"
            serverless.yml:21:63: functions.api.events[0].httpApi.authorizer.scopes: `withJwtKeys` is a Lambda authorizer, which decides by itself; scopes apply to JWT authorizers only
            serverless.yml:22:57: functions.api.events[1].httpApi.authorizer.id: an authorizer outside this app (`id`) cannot be checked by nimbus; declare it under `provider.httpApi.authorizers`
            serverless.yml:23:63: functions.api.events[2].httpApi.authorizer.type: IAM authorization (`aws_iam`) is not enforced by nimbus; a route behind it would be public
            serverless.yml:24:52: functions.api.events[3].http.authorizer: unknown function `nobody`; an authorizer is a function of this app, which nimbus invokes (declared: auth, api)
            serverless.yml:25:72: functions.api.events[4].http.authorizer.type: Cognito user pool authorizers are not enforced by nimbus; a route behind one would be public
            serverless.yml:26:72: functions.api.events[5].http.authorizer.type: unknown authorizer type "jwt"; expected token or request
            serverless.yml:27:82: functions.api.events[6].http.authorizer.identitySource: a token authorizer reads one header, as in `method.request.header.Authorization`; got "method.request.header.A, method.request.header.B"
            serverless.yml:28:96: functions.api.events[7].http.authorizer.identityValidationExpression: not a usable regular expression: unclosed group
            serverless.yml:29:59: functions.api.events[8].http.authorizer.arn: Cognito user pool authorizers are not enforced by nimbus; a route behind one would be public
            serverless.yml:30:54: functions.api.events[9].http.authorizer.authorizerId: an authorizer outside this app (`authorizerId`) cannot be checked by nimbus; a route behind it would be public
            serverless.yml:31:59: functions.api.events[10].http.authorizer.arn: unknown function `other-dev-auth`; an authorizer is a function of this app, which nimbus invokes (declared: auth, api)
            serverless.yml:32:82: functions.api.events[11].http.authorizer.identitySource: expected `method.request.header.NAME`, `method.request.querystring.NAME` or `context.NAME`, got "method.request.body.x"
        "#]],
    );
}

#[test]
fn lambda_authorizer_warnings_name_the_key() {
    check_authorizers(
        "
        service: shop
        provider:
          runtime: nodejs20.x
          httpApi:
            authorizers:
              a: { type: request, functionName: auth, issuerUrl: https://i, name: custom-name }
              j: { issuerUrl: https://i, audience: api, secret: s, functionName: auth }
        functions:
          auth:
            handler: auth.handler
          api:
            handler: api.handler
            events:
              - http: { method: GET, path: /a, authorizer: { name: auth, type: request, resultTtlInSeconds: 0, identityValidationExpression: x, claims: [sub] } }
              - http: { method: GET, path: /b, authorizer: { name: auth, resultTtlInSeconds: 10 } }
              - http: { method: GET, path: /c, authorizer: { name: auth, resultTtlInSeconds: 20 } }
        ",
        expect![[r#"
            service shop, stage dev, region us-east-1
            function auth: nodejs20.x auth.handler (line 10), 1024 MB, 6s
              Node { major: 20 }
            function api: nodejs20.x api.handler (line 12), 1024 MB, 6s
              Node { major: 20 }
              route Rest GET /a
                authorizer Some(RouteAuthorizer { name: "auth", scopes: [] }), private false, rate limit None
              route Rest GET /b
                authorizer Some(RouteAuthorizer { name: "auth", scopes: [] }), private false, rate limit None
              route Rest GET /c
                authorizer Some(RouteAuthorizer { name: "auth", scopes: [] }), private false, rate limit None
            warning serverless.yml:6:47: provider.httpApi.authorizers.a.issuerUrl: applies to `jwt` authorizers only; ignored
            warning serverless.yml:6:69: provider.httpApi.authorizers.a.name: not modelled by nimbus; ignored
            warning serverless.yml:7:60: provider.httpApi.authorizers.j.functionName: applies to `request` authorizers only; ignored
            warning serverless.yml:14:134: functions.api.events[0].http.authorizer.identityValidationExpression: applies to token authorizers only (API Gateway ignores it for request authorizers); ignored
            warning serverless.yml:14:137: functions.api.events[0].http.authorizer.claims: not modelled by nimbus; ignored
            warning serverless.yml:15:52: functions.api.events[1].http.authorizer: the authorizer `auth` is declared differently at line 14; as on API Gateway (one authorizer per name), this last declaration applies to every route naming it
            warning serverless.yml:16:52: functions.api.events[2].http.authorizer: the authorizer `auth` is declared differently at line 14; as on API Gateway (one authorizer per name), this last declaration applies to every route naming it
            httpApi a: Lambda(LambdaAuthorizer { function: "auth", format: HttpV2Policy, identity_sources: [], ttl: 0ns, validation: None })
            httpApi j: Jwt(JwtAuthorizer { header: "authorization", issuer: "https://i", audience: ["api"], keys: Secret("s") })
            http auth: Lambda(LambdaAuthorizer { function: "auth", format: RestToken, identity_sources: [Header("authorization")], ttl: 20s, validation: None })
        "#]],
    );
}

// Issue 11: the Framework fills `provider.stage` and `provider.region` before it resolves
// anything, so the common `${opt:stage, self:provider.stage}` idiom resolves without them.
#[test]
fn provider_stage_and_region_have_their_defaults_before_variables_resolve() {
    check(
        "
        service: shop
        provider:
          runtime: nodejs20.x
          environment:
            STAGE: ${opt:stage, self:provider.stage}
            REGION: ${opt:region, self:provider.region}
            TABLE: ${self:service}-${self:provider.stage}
        functions:
          f: { handler: f.handler }
        ",
        expect![[r#"
            service shop, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 9), 1024 MB, 6s
              Node { major: 20 }
              env REGION="us-east-1"
              env STAGE="dev"
              env TABLE="shop-dev"
        "#]],
    );
    check_with(
        &[("stage", "prod"), ("region", "eu-west-1")],
        "
        service: shop
        provider:
          runtime: nodejs20.x
          environment:
            STAGE: ${self:provider.stage}
            REGION: ${aws:region}
        functions:
          f: { handler: f.handler }
        ",
        expect![[r#"
            service shop, stage prod, region eu-west-1
            function f: nodejs20.x f.handler (line 8), 1024 MB, 6s
              Node { major: 20 }
              env REGION="eu-west-1"
              env STAGE="prod"
        "#]],
    );
}

#[test]
fn sls_aws_and_param_sources_resolve_as_in_the_framework() {
    check_with(
        &[("stage", "prod")],
        "
        service: shop
        params:
          prod: { domain: api.example.com }
          default: { domain: dev.example.com, retries: 3 }
        provider:
          runtime: nodejs20.x
          region: eu-central-1
          environment:
            INSTANCE: ${sls:instanceId}
            ACCOUNT: ${aws:accountId}
            REGION: ${aws:region}
            DOMAIN: ${param:domain}
            RETRIES: ${param:retries}
        functions:
          f: { handler: f.handler }
        ",
        expect![[r#"
            service shop, stage prod, region eu-central-1
            function f: nodejs20.x f.handler (line 15), 1024 MB, 6s
              Node { major: 20 }
              env ACCOUNT="123456789012"
              env DOMAIN="api.example.com"
              env INSTANCE="1764800000000"
              env REGION="eu-central-1"
              env RETRIES="3"
        "#]],
    );
    check(
        "
        service: shop
        provider:
          runtime: nodejs20.x
          environment:
            A: ${param:missing}
            B: ${sls:nope}
            C: ${aws:nope}
        functions:
          f: { handler: f.handler }
        ",
        expect![[r#"
            serverless.yml:5:8: provider.environment.A: cannot resolve `${param:missing}`: parameter `missing` is set neither under `params.dev` nor under `params.default`
            serverless.yml:6:8: provider.environment.B: cannot resolve `${sls:nope}`: the `sls` source has `stage` and `instanceId`, not `nope`
            serverless.yml:7:8: provider.environment.C: cannot resolve `${aws:nope}`: the `aws` source has `region` and `accountId`, not `nope`
        "#]],
    );
}

#[test]
fn file_variables_read_yaml_and_json_inside_the_app() {
    check_with(
        &[("stage", "prod")],
        "
        service: shop
        custom: ${file(./config.yml)}
        provider:
          runtime: nodejs20.x
          memorySize: ${file(./config.yml):memory}
          environment:
            TABLE: ${self:custom.table}
            SECOND: ${file(./config.yml):nested.list.1}
            DOMAIN: ${file(./config.${opt:stage}.json):domain}
            FALLBACK: ${file(./missing.yml):x, 'none'}
            ENABLED: ${strToBool(${env:FLAG, 'true'})}
        functions:
          f: { handler: f.handler }
        ",
        expect![[r#"
            service shop, stage prod, region us-east-1
            function f: nodejs20.x f.handler (line 13), 512 MB, 6s
              Node { major: 20 }
              env DOMAIN="api.example.com"
              env ENABLED="true"
              env FALLBACK="none"
              env SECOND="b"
              env TABLE="shop-items"
        "#]],
    );
    check(
        "
        service: shop
        provider:
          runtime: nodejs20.x
          environment:
            A: ${file(./missing.yml)}
            B: ${file(./broken.yml):a}
            C: ${file(./config.js):value}
            D: ${file(./config.yml):nope}
        functions:
          f: { handler: f.handler }
        ",
        expect![[r#"
            serverless.yml:5:8: provider.environment.A: cannot resolve `${file(./missing.yml)}`: file `./missing.yml` does not exist
            serverless.yml:6:8: provider.environment.B: `./broken.yml` is not valid YAML or JSON at 2:1: invalid YAML: while parsing a flow sequence, expected ',' or ']'
            serverless.yml:7:8: provider.environment.C: nimbus does not run JavaScript variable files such as `./config.js`; write the values as YAML or JSON and point `file(..)` at that
            serverless.yml:8:8: provider.environment.D: cannot resolve `${file(./config.yml):nope}`: `nope` is not in `./config.yml`
        "#]],
    );
}

// Issue 11: `${cf:order-queue.Arn}` names the stack after the queue; the output is only
// the attribute.
#[test]
fn cf_variables_resolve_to_declared_resources_by_output_or_stack_name() {
    check(
        "
        service: shop
        provider:
          runtime: nodejs20.x
          environment:
            QUEUE: ${cf:order-queue.Arn}
            QUEUE_NAME: ${cf:order-queue.QueueName}
            BY_OUTPUT: ${cf:infra.OrdersQueueArn}
        queues:
          order-queue: {}
        functions:
          f:
            handler: f.handler
            events:
              - sqs: ${cf:order-queue.Arn}
              - sqs: { arn: '${cf:infra.OrdersQueueArn}' }
        resources:
          Resources:
            OrdersQueue: { Type: AWS::SQS::Queue, Properties: { QueueName: orders } }
        ",
        expect![[r#"
            service shop, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 12), 1024 MB, 6s
              Node { major: 20 }
              env BY_OUTPUT="arn:aws:sqs:*:*:orders"
              env QUEUE="arn:aws:sqs:*:*:order-queue"
              env QUEUE_NAME="order-queue"
              sqs order-queue batch 10 window 0s
              sqs orders batch 10 window 0s
              grant sqs:ReceiveMessage,sqs:DeleteMessage,sqs:ChangeMessageVisibility on queue:order-queue
              grant sqs:ReceiveMessage,sqs:DeleteMessage,sqs:ChangeMessageVisibility on queue:orders
            queue orders: visibility 30s, delay 0s, retention 345600s
            queue order-queue: visibility 30s, delay 0s, retention 345600s
        "#]],
    );
}

// Issue 21: REST routes answer under the stage unless the app says otherwise.
#[test]
fn stage_path_follows_serverless_offline_and_custom_nimbus() {
    check(
        "
        service: shop
        custom:
          serverless-offline: { noPrependStageInUrl: true }
        provider: { runtime: nodejs20.x }
        functions:
          f: { handler: f.handler, events: [{ http: GET items }] }
        ",
        expect![[r#"
            service shop, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 6), 1024 MB, 6s
              Node { major: 20 }
              route Rest GET /items
            stage path Off
        "#]],
    );
    check(
        "
        service: shop
        custom:
          nimbus: { stagePath: required }
        provider: { runtime: nodejs20.x }
        functions:
          f: { handler: f.handler, events: [{ http: GET items }] }
        ",
        expect![[r#"
            service shop, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 6), 1024 MB, 6s
              Node { major: 20 }
              route Rest GET /items
            stage path Required
        "#]],
    );
    check(
        "
        service: shop
        custom:
          nimbus: { stagePath: sometimes }
        provider: { runtime: nodejs20.x }
        functions:
          f: { handler: f.handler }
        ",
        expect![[r#"
            serverless.yml:3:24: custom.nimbus.stagePath: expected `optional` (REST routes answer at /{stage}/path and /path), `required` (only /{stage}/path) or `off` (only /path), got "sometimes"
        "#]],
    );
}

// Issue 15: `websocket` events make the app's WebSocket API: predefined and custom
// routes, a route response, the provider's selection expression and name, and a
// `$connect` authorizer with the Framework's default identity source or its own.
#[test]
fn websocket_events_make_the_websocket_api() {
    check(
        "
        service: chat
        provider:
          runtime: nodejs20.x
          websocketsApiName: chat-ws
          websocketsApiRouteSelectionExpression: $request.body.message.type
          websocketsDescription: the chat
        functions:
          connect:
            handler: ws.connect
            events:
              - websocket:
                  route: $connect
                  authorizer:
                    name: auth
                    identitySource:
                      - route.request.header.Auth
                      - route.request.querystring.token
              - websocket: { route: $disconnect }
          echo:
            handler: ws.echo
            events:
              - websocket: $default
              - websocket: { route: send, routeResponseSelectionExpression: $default }
          auth:
            handler: ws.auth
        ",
        expect![[r#"
            service chat, stage dev, region us-east-1
            function connect: nodejs20.x ws.connect (line 9), 1024 MB, 6s
              Node { major: 20 }
            function echo: nodejs20.x ws.echo (line 20), 1024 MB, 6s
              Node { major: 20 }
            function auth: nodejs20.x ws.auth (line 25), 1024 MB, 6s
              Node { major: 20 }
            websocket api chat-ws selects by BodyPath(["message", "type"])
              route $connect -> connect authorizer auth (function auth, identity [Header("auth"), Query("token")])
              route $disconnect -> connect
              route $default -> echo
              route send -> echo with route response
        "#]],
    );
    check(
        "
        service: chat
        provider: { runtime: nodejs20.x }
        functions:
          connect:
            handler: ws.connect
            events:
              - websocket: { route: $connect, authorizer: arn:aws:lambda:us-east-1:1:function:chat-dev-auth }
          auth:
            handler: ws.auth
        ",
        expect![[r#"
            service chat, stage dev, region us-east-1
            function connect: nodejs20.x ws.connect (line 5), 1024 MB, 6s
              Node { major: 20 }
            function auth: nodejs20.x ws.auth (line 9), 1024 MB, 6s
              Node { major: 20 }
            websocket api dev-chat-websockets selects by BodyPath(["action"])
              route $connect -> connect authorizer auth (function auth, identity [Header("auth")])
        "#]],
    );
}

// Issue 15: `execute-api:ManageConnections` on the API's ARN (written out, or joined from
// the Framework's `WebsocketsApi`) grants the app's connections.
#[test]
fn manage_connections_statements_grant_the_connections() {
    check(
        "
        service: chat
        provider:
          runtime: nodejs20.x
          iam:
            role:
              statements:
                - Effect: Allow
                  Action: execute-api:ManageConnections
                  Resource: arn:aws:execute-api:*:*:*/@connections/*
                - Effect: Allow
                  Action: [execute-api:ManageConnections]
                  Resource:
                    Fn::Join: ['', ['arn:aws:execute-api:', { Ref: AWS::Region }, ':', { Ref: AWS::AccountId }, ':', { Ref: WebsocketsApi }, '/*']]
        functions:
          send:
            handler: ws.send
            events:
              - websocket: $default
        ",
        expect![[r#"
            service chat, stage dev, region us-east-1
            function send: nodejs20.x ws.send (line 16), 1024 MB, 6s
              Node { major: 20 }
              grant execute-api:ManageConnections on connection:*
              grant execute-api:ManageConnections on connection:*
            websocket api dev-chat-websockets selects by BodyPath(["action"])
              route $default -> send
        "#]],
    );
}

#[test]
fn websocket_events_that_api_gateway_would_refuse_are_errors() {
    check(
        "
        service: chat
        provider:
          runtime: nodejs20.x
          websocketsApiRouteSelectionExpression: $request.header.x
        functions:
          a:
            handler: ws.a
            events:
              - websocket: $default
              - websocket: $connected
              - websocket: { route: send, authorizer: a }
              - websocket: { route: $connect, authorizer: nobody }
              - websocket: { route: x, routeResponseSelectionExpression: $request.body.y }
              - websocket: { authorizer: a }
              - websocket: [a]
          b:
            handler: ws.b
            events:
              - websocket: $default
              - websocket: { route: $connect, authorizer: { name: a, identitySource: [stageVariables.t, route.request.body.x] } }
        ",
        expect![[r#"
            serverless.yml:4:42: provider.websocketsApiRouteSelectionExpression: nimbus selects routes by a JSON body path, as in `$request.body.action`; got "$request.header.x"
            serverless.yml:10:20: functions.a.events[1].websocket: unknown route `$connected`; the predefined routes are `$connect`, `$disconnect` and `$default`, and custom routes do not start with `$`
            serverless.yml:11:35: functions.a.events[2].websocket.authorizer: API Gateway runs an authorizer on the `$connect` route only, not on `send`
            serverless.yml:12:51: functions.a.events[3].websocket.authorizer: unknown function `nobody`; an authorizer is a function of this app, which nimbus invokes (declared: a, b)
            serverless.yml:13:66: functions.a.events[4].websocket.routeResponseSelectionExpression: API Gateway takes only `$default` here for a Lambda proxy route, got "$request.body.y"
            serverless.yml:14:20: functions.a.events[5].websocket.route: missing `route`: `$connect`, `$disconnect`, `$default` or a custom route key
            serverless.yml:15:20: functions.a.events[6].websocket: expected a route key such as `$connect` or `{ route, routeResponseSelectionExpression, authorizer }`, got a sequence
            serverless.yml:19:20: functions.b.events[0].websocket: duplicate websocket route `$default`: function `a` already declares it at line 9 (functions.a.events[0].websocket)
            serverless.yml:20:78: functions.b.events[1].websocket.authorizer.identitySource: nimbus has no stage variables, so a connection would never carry "stageVariables.t"; use a header or a query string parameter
        "#]],
    );
}

// Issue 21: an event nimbus does not serve is listed on its function, so `nimbus validate`
// can say when a function would never be invoked.
#[test]
fn unserved_events_are_listed_on_their_function() {
    check(
        "
        service: chat
        provider: { runtime: nodejs20.x }
        functions:
          connect:
            handler: ws.connect
            events:
              - alb: { listenerArn: x, priority: 1, conditions: { path: /x } }
              - alexaSkill: amzn1.ask.skill.x
        ",
        expect![[r#"
            service chat, stage dev, region us-east-1
            function connect: nodejs20.x ws.connect (line 5), 1024 MB, 6s
              Node { major: 20 }
              not served: alb, alexaSkill
            warning serverless.yml:7:9: functions.connect.events[0].alb: `alb` events are not yet served by nimbus; ignored
            warning serverless.yml:8:9: functions.connect.events[1].alexaSkill: `alexaSkill` events are not yet served by nimbus; ignored
        "#]],
    );
}

// Issue 11: Lift's `queue` and `storage` constructs become a queue with a dead-letter queue
// and a worker, and a bucket, named as Lift names them; `${construct:..}` resolves to them.
#[test]
fn lift_queue_and_storage_constructs_are_modelled() {
    check(
        "
        service: jobs
        provider:
          runtime: nodejs20.x
          environment:
            QUEUE_URL: ${construct:jobs.queueUrl}
            BUCKET: ${construct:uploads.bucketName}
        constructs:
          jobs:
            type: queue
            batchSize: 5
            maxRetries: 2
            worker:
              handler: worker.handler
              timeout: 10
          uploads:
            type: storage
          orders:
            type: queue
            fifo: true
            worker: { handler: orders.handler }
          hook:
            type: webhook
            path: /hook
            eventType: $request.body.kind
            authorizer: { handler: hook.authorize }
          open:
            type: webhook
            insecure: true
            path: /open
            method: put
          landing:
            type: static-website
            path: public
          app:
            type: single-page-app
            path: dist
            domain: app.example.com
        functions:
          api: { handler: api.handler, events: [{ httpApi: POST /jobs }] }
        ",
        expect![[r#"
            service jobs, stage dev, region us-east-1
            function api: nodejs20.x api.handler (line 39), 1024 MB, 6s
              Node { major: 20 }
              env BUCKET="jobs-dev-uploads"
              env QUEUE_URL="http://sqs.nimbus.internal/123456789012/jobs-dev-jobs"
              route Http POST /jobs
              grant sqs:SendMessage,sqs:GetQueueUrl,sqs:GetQueueAttributes on queue:jobs-dev-jobs
              grant sqs:SendMessage,sqs:GetQueueUrl,sqs:GetQueueAttributes on queue:jobs-dev-orders.fifo
              grant s3:* on bucket:jobs-dev-uploads,bucket:jobs-dev-uploads/*
            function jobsWorker: nodejs20.x worker.handler (line 13), 1024 MB, 10s
              Node { major: 20 }
              env BUCKET="jobs-dev-uploads"
              env QUEUE_URL="http://sqs.nimbus.internal/123456789012/jobs-dev-jobs"
              sqs jobs-dev-jobs batch 5 window 0s report-failures
              grant sqs:SendMessage,sqs:GetQueueUrl,sqs:GetQueueAttributes on queue:jobs-dev-jobs
              grant sqs:SendMessage,sqs:GetQueueUrl,sqs:GetQueueAttributes on queue:jobs-dev-orders.fifo
              grant s3:* on bucket:jobs-dev-uploads,bucket:jobs-dev-uploads/*
              grant sqs:ReceiveMessage,sqs:DeleteMessage,sqs:ChangeMessageVisibility on queue:jobs-dev-jobs
            function ordersWorker: nodejs20.x orders.handler (line 20), 1024 MB, 6s
              Node { major: 20 }
              env BUCKET="jobs-dev-uploads"
              env QUEUE_URL="http://sqs.nimbus.internal/123456789012/jobs-dev-jobs"
              sqs jobs-dev-orders.fifo batch 1 window 0s report-failures
              grant sqs:SendMessage,sqs:GetQueueUrl,sqs:GetQueueAttributes on queue:jobs-dev-jobs
              grant sqs:SendMessage,sqs:GetQueueUrl,sqs:GetQueueAttributes on queue:jobs-dev-orders.fifo
              grant s3:* on bucket:jobs-dev-uploads,bucket:jobs-dev-uploads/*
              grant sqs:ReceiveMessage,sqs:DeleteMessage,sqs:ChangeMessageVisibility on queue:jobs-dev-orders.fifo
            function hookAuthorizer: nodejs20.x hook.authorize (line 25), 1024 MB, 6s
              Node { major: 20 }
              env BUCKET="jobs-dev-uploads"
              env QUEUE_URL="http://sqs.nimbus.internal/123456789012/jobs-dev-jobs"
              grant sqs:SendMessage,sqs:GetQueueUrl,sqs:GetQueueAttributes on queue:jobs-dev-jobs
              grant sqs:SendMessage,sqs:GetQueueUrl,sqs:GetQueueAttributes on queue:jobs-dev-orders.fifo
              grant s3:* on bucket:jobs-dev-uploads,bucket:jobs-dev-uploads/*
            queue jobs-dev-jobs: visibility 60s, delay 0s, retention 345600s, dead letters to jobs-dev-jobs-dlq after 2 receives
            queue jobs-dev-jobs-dlq: visibility 30s, delay 0s, retention 1209600s
            queue jobs-dev-orders.fifo: visibility 36s, delay 0s, retention 345600s, content-based deduplication, dead letters to jobs-dev-orders-dlq.fifo after 3 receives
            queue jobs-dev-orders-dlq.fifo: visibility 30s, delay 0s, retention 1209600s, content-based deduplication
            buckets jobs-dev-uploads
            webhook hook POST /hook -> bus jobs-dev-hook type BodyPath(["kind"]) authorizer Some("hookAuthorizer")
            webhook open PUT /open -> bus jobs-dev-open type Fixed("Webhook") authorizer None
            static site landing from public
            static site app from dist (single page)
            warning serverless.yml:37:5: constructs.app.domain: not modelled by nimbus; ignored
        "#]],
    );
    check(
        "
        service: jobs
        provider:
          runtime: nodejs20.x
          environment:
            A: ${construct:nope.queueUrl}
            B: ${construct:jobs.bucketName}
        constructs:
          jobs: { type: queue }
          untyped: { batchSize: 1 }
          site: { type: static-website }
          outside: { type: static-website, path: ../secrets }
        functions:
          api: { handler: api.handler }
        ",
        expect![[r#"
            serverless.yml:5:8: provider.environment.A: cannot resolve `${construct:nope.queueUrl}`: no construct `nope` is declared under `constructs`
            serverless.yml:6:8: provider.environment.B: cannot resolve `${construct:jobs.bucketName}`: a queue construct has `queueUrl` and `queueArn`, not `bucketName`
            serverless.yml:8:3: constructs.jobs: a queue construct needs a `worker`: the function that processes its messages, as in `worker: { handler: src/worker.handler }`
            serverless.yml:9:3: constructs.untyped: construct `untyped` needs a `type`, such as `queue` or `storage`
            serverless.yml:10:3: constructs.site: a `static-website` construct needs `path`: the folder of files to serve, as in `path: public`
            serverless.yml:11:42: constructs.outside.path: the folder "../secrets" must be inside the app folder, as in `path: public`
        "#]],
    );
}

// Issue 11: a grant on a Kinesis stream (which apps that keep data have) is left out with a
// warning, not refused, so the app still runs. Issue 13: a grant on a DynamoDB table is a
// grant on the table.
#[test]
fn grants_on_unmodelled_resources_are_warnings() {
    check(
        "
        service: todos
        provider:
          runtime: nodejs20.x
          iam:
            role:
              statements:
                - Effect: Allow
                  Action: [dynamodb:GetItem, dynamodb:PutItem]
                  Resource:
                    - !GetAtt TodosTable.Arn
                    - { Ref: TodosTable }
                    - 'arn:aws:dynamodb:${aws:region}:*:table/todos'
                - Effect: Allow
                  Action: [kinesis:PutRecord]
                  Resource: { Fn::GetAtt: [Events, Arn] }
        functions:
          f: { handler: f.handler }
        resources:
          Resources:
            TodosTable:
              Type: AWS::DynamoDB::Table
              Properties:
                TableName: todos
                AttributeDefinitions: [{ AttributeName: id, AttributeType: S }]
                KeySchema: [{ AttributeName: id, KeyType: HASH }]
            Events: { Type: AWS::Kinesis::Stream, Properties: { ShardCount: 1 } }
        ",
        expect![[r#"
            service todos, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 17), 1024 MB, 6s
              Node { major: 20 }
              grant dynamodb:GetItem,dynamodb:PutItem on table:todos,table:todos
              grant kinesis:PutRecord on stream:Events
            table todos: hash id S
            stream Events: 1 shards, retention 24h
            warning serverless.yml:11:15: provider.iam.role.statements[0].Resource[1]: "todos" is not a resource nimbus models; ignored
        "#]],
    );
}

#[test]
fn dynamodb_tables_from_resources() {
    check(
        "
        service: todos
        provider:
          runtime: nodejs20.x
          region: eu-west-1
          environment:
            TABLE: ${self:service}-${sls:stage}
            TABLE_REF: { Ref: TodosTable }
            TABLE_ARN: !GetAtt TodosTable.Arn
          iam:
            role:
              statements:
                - Effect: Allow
                  Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:Query]
                  Resource:
                    - !GetAtt TodosTable.Arn
                    - !Join ['/', [!GetAtt TodosTable.Arn, index, '*']]
                    - 'arn:aws:dynamodb:${aws:region}:*:table/other'
        functions:
          f: { handler: f.handler }
        resources:
          Resources:
            TodosTable:
              Type: AWS::DynamoDB::Table
              Properties:
                TableName: ${self:service}-${sls:stage}
                BillingMode: PAY_PER_REQUEST
                AttributeDefinitions:
                  - { AttributeName: id, AttributeType: S }
                  - { AttributeName: owner, AttributeType: S }
                  - { AttributeName: createdAt, AttributeType: N }
                KeySchema:
                  - { AttributeName: id, KeyType: HASH }
                GlobalSecondaryIndexes:
                  - IndexName: byOwner
                    KeySchema:
                      - { AttributeName: owner, KeyType: HASH }
                      - { AttributeName: createdAt, KeyType: RANGE }
                    Projection: { ProjectionType: INCLUDE, NonKeyAttributes: [text] }
                    ProvisionedThroughput: { ReadCapacityUnits: 1, WriteCapacityUnits: 1 }
                TimeToLiveSpecification: { AttributeName: expiresAt, Enabled: true }
                StreamSpecification: { StreamViewType: NEW_AND_OLD_IMAGES }
                SSESpecification: { SSEEnabled: true }
            Events:
              Type: AWS::DynamoDB::Table
              Properties:
                AttributeDefinitions:
                  - { AttributeName: pk, AttributeType: S }
                  - { AttributeName: sk, AttributeType: B }
                  - { AttributeName: at, AttributeType: N }
                KeySchema:
                  - { AttributeName: pk, KeyType: HASH }
                  - { AttributeName: sk, KeyType: RANGE }
                LocalSecondaryIndexes:
                  - IndexName: byTime
                    KeySchema:
                      - { AttributeName: pk, KeyType: HASH }
                      - { AttributeName: at, KeyType: RANGE }
                    Projection: { ProjectionType: KEYS_ONLY }
        ",
        expect![[r#"
            service todos, stage dev, region eu-west-1
            function f: nodejs20.x f.handler (line 19), 1024 MB, 6s
              Node { major: 20 }
              env TABLE="todos-dev"
              env TABLE_ARN="arn:aws:dynamodb:eu-west-1:123456789012:table/todos-dev"
              env TABLE_REF="todos-dev"
              grant dynamodb:GetItem,dynamodb:PutItem,dynamodb:Query on table:todos-dev,table:todos-dev/index/*,table:other
            table todos-dev: hash id S, ttl expiresAt, stream NEW_AND_OLD_IMAGES
              gsi byOwner: hash owner S, range createdAt N, Include(["text"])
            table Events: hash pk S, range sk B
              lsi byTime: hash pk S, range at N, KeysOnly
            warning serverless.yml:42:9: resources.Resources.TodosTable.Properties.SSESpecification: not modelled by nimbus; ignored
        "#]],
    );
}

#[test]
fn dynamodb_tables_from_the_tables_section() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          f: { handler: f.handler }
        tables:
          todos: { partitionKey: id }
          events:
            partitionKey: { name: pk, type: S }
            sortKey: { name: at, type: N }
            ttl: expiresAt
            indexes:
              byKind: { partitionKey: kind, sortKey: { name: at, type: N }, projection: keys }
        ",
        expect![[r#"
            service s, stage dev, region us-east-1
            function f: nodejs20.x f.handler (line 4), 1024 MB, 6s
              Node { major: 20 }
            table todos: hash id S
            table events: hash pk S, range at N, ttl expiresAt
              gsi byKind: hash kind S, range at N, KeysOnly
        "#]],
    );
}

#[test]
fn bad_dynamodb_tables_are_errors() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          f: { handler: f.handler }
        tables:
          nokey: {}
          x: { partitionKey: { name: id, type: Q } }
        resources:
          Resources:
            NoSchema: { Type: AWS::DynamoDB::Table }
            Undefined:
              Type: AWS::DynamoDB::Table
              Properties:
                AttributeDefinitions: [{ AttributeName: id, AttributeType: S }]
                KeySchema: [{ AttributeName: other, KeyType: HASH }, { AttributeName: id, KeyType: SIDEWAYS }]
            Duplicate:
              Type: AWS::DynamoDB::Table
              Properties:
                TableName: nokey2
                AttributeDefinitions: [{ AttributeName: id, AttributeType: X }]
                KeySchema: [{ AttributeName: id, KeyType: HASH }]
        ",
        expect![[r#"
            serverless.yml:6:3: tables.nokey: missing `partitionKey`, as in `partitionKey: id`
            serverless.yml:7:40: tables.x.partitionKey.type: expected S, N or B, got "Q"
            serverless.yml:10:5: resources.Resources.NoSchema.Properties: missing `KeySchema`
            serverless.yml:15:21: resources.Resources.Undefined.Properties.KeySchema[0]: `other` is a key attribute but not in `AttributeDefinitions`; add `{ AttributeName: other, AttributeType: S }`
            serverless.yml:15:62: resources.Resources.Undefined.Properties.KeySchema[1].KeyType: expected HASH or RANGE, got "SIDEWAYS"
            serverless.yml:20:32: resources.Resources.Duplicate.Properties.AttributeDefinitions[0].AttributeType: expected S, N or B, got "X"
            serverless.yml:21:21: resources.Resources.Duplicate.Properties.KeySchema[0]: `id` is a key attribute but not in `AttributeDefinitions`; add `{ AttributeName: id, AttributeType: S }`
        "#]],
    );
}

#[test]
fn eventbridge_rules_name_their_bus_by_name_arn_or_reference() {
    check(
        r#"
        service: shop
        provider: { runtime: nodejs20.x }
        functions:
          f:
            handler: f.h
            events:
              - eventBridge:
                  eventBus: !GetAtt Bus.Arn
                  pattern: { source: [shop], detail: { total: [{ numeric: [">", 1] }] } }
              - eventBridge: { eventBus: !Ref Bus, pattern: { source: [a] }, inputPath: $.detail }
              - eventBridge:
                  eventBus: arn:aws:events:us-east-1:123456789012:event-bus/other
                  pattern: { source: [b] }
                  input: { fixed: true }
              - eventBridge: { pattern: { source: [{ prefix: aws. }] } }
              - eventBridge: { schedule: rate(1 hour) }
              - eventBridge: { eventBus: x, pattern: { source: [c] }, inputTransformer: {} }
        resources:
          Resources:
            Bus: { Type: AWS::Events::EventBus, Properties: { Name: orders } }
        "#,
        expect![[r#"
            service shop, stage dev, region us-east-1
            function f: nodejs20.x f.h (line 5), 1024 MB, 6s
              Node { major: 20 }
              eventBridge orders pattern {"detail":{"total":[{"numeric":[">",1]}]},"source":["shop"]}
              eventBridge orders pattern {"source":["a"]} inputPath $.detail
              eventBridge other pattern {"source":["b"]} input {"fixed":true}
              eventBridge default pattern {"source":[{"prefix":"aws."}]}
              schedule f-schedule-1 rate(1 hour)
              eventBridge x pattern {"source":["c"]}
            warning serverless.yml:17:63: functions.f.events[5].eventBridge.inputTransformer: not modelled by nimbus; ignored
        "#]],
    );
    check(
        "service: s\nprovider: { runtime: nodejs20.x }\nfunctions:\n  f:\n    handler: f.h\n    events:\n      - eventBridge: { eventBus: x }\n",
        expect![[r#"
            serverless.yml:7:22: functions.f.events[0].eventBridge: an `eventBridge` event needs a `pattern` (or a `schedule`)
        "#]],
    );
}

#[test]
fn lift_webhooks_need_exactly_one_of_an_authorizer_and_insecure() {
    check(
        "service: s\nprovider: { runtime: nodejs20.x }\nconstructs:\n  a: { type: webhook, path: /a, insecure: true, authorizer: { handler: a.h } }\n  b: { type: webhook, path: b, insecure: true, method: GET }\n  c: { type: webhook, insecure: true }\nfunctions:\n  f: { handler: f.h }\n",
        expect![[r#"
            serverless.yml:4:49: constructs.a.authorizer: a webhook is either `insecure: true` or has an `authorizer`, not both; remove one
            serverless.yml:5:29: constructs.b.path: a webhook path starts with `/`, as in `/b`
            serverless.yml:5:56: constructs.b.method: a webhook takes POST, PUT or PATCH, not "GET"
            serverless.yml:6:3: constructs.c: a webhook construct needs a `path`, as in `path: /webhooks/stripe`
        "#]],
    );
}

// Issue 20: a manifest over a limit is refused, fast, with one error naming the key and
// the limit; a duplicate key or a control character is an error rather than a silent drop.

/// Parses `source` as given (no dedent), checks it took less than a second, and returns
/// the errors as `check` prints them.
fn refused(source: &str) -> String {
    let started = std::time::Instant::now();
    let res = parse(source, "serverless.yml", &Variables::default());
    let elapsed = started.elapsed();
    assert!(elapsed.as_secs_f64() < 1.0, "took {elapsed:?}");
    match res {
        Ok(manifest) => summary(&manifest),
        Err(errors) => errors.iter().map(|e| format!("{e}\n")).collect(),
    }
}

const HEAD: &str =
    "service: s\nprovider: { runtime: nodejs20.x }\nfunctions:\n  f:\n    handler: f.handler\n";

/// A "billion laughs": ten anchors, each a list of ten aliases of the one before.
fn anchor_bomb() -> String {
    let mut source = format!("{HEAD}custom:\n  l0: &l0 lol\n");
    for level in 1..10 {
        let prev = level - 1;
        let items = vec![format!("*l{prev}"); 10].join(", ");
        source.push_str(&format!("  l{level}: &l{level} [{items}]\n"));
    }
    source
}

/// `${self:..}` values that double at each step, `n_steps` of them, used by a function.
fn doubling_chain(n_steps: usize) -> String {
    let mut source = format!(
        "{HEAD}    environment:\n      BIG: ${{self:custom.a{n_steps}}}\ncustom:\n  a0: xx\n"
    );
    for step in 1..=n_steps {
        let prev = step - 1;
        source.push_str(&format!(
            "  a{step}: ${{self:custom.a{prev}}}${{self:custom.a{prev}}}\n"
        ));
    }
    source
}

#[test]
fn an_anchor_bomb_is_refused_at_the_node_limit() {
    expect![[r#"
        serverless.yml:12:47: custom.l5[7]: the manifest has more than 100000 YAML nodes here, with aliases (`*name`) expanded each time they are used; a manifest may have at most 100000
    "#]]
    .assert_eq(&refused(&anchor_bomb()));
}

#[test]
fn a_doubling_variable_chain_is_refused() {
    // Forty steps reach the depth limit first; twenty-five reach the size limit.
    expect![[r#"
        serverless.yml:18:7: custom.a9: variables here resolve through each other more than 32 deep (at `${self:custom.a8}`); a chain of variables may be at most 32 long
    "#]]
    .assert_eq(&refused(&doubling_chain(40)));
    expect![[r#"
        serverless.yml:29:8: custom.a20: `${self:custom.a19}${self:custom.a19}` resolves to more than 1048576 bytes (1 MiB, counting 64 bytes per mapping entry or list item); a variable's value may be at most that
    "#]]
    .assert_eq(&refused(&doubling_chain(25)));
}

#[test]
fn a_doubling_chain_of_lists_is_refused_at_the_value_limit() {
    let mut source =
        format!("{HEAD}    environment:\n      BIG: ${{self:custom.a20}}\ncustom:\n  a0: [x]\n");
    for step in 1..=20 {
        let prev = step - 1;
        source.push_str(&format!(
            "  a{step}: ['${{self:custom.a{prev}}}', '${{self:custom.a{prev}}}']\n"
        ));
    }
    expect![[r#"
        serverless.yml:7:12: functions.f.environment.BIG: expected a string, got a sequence
        serverless.yml:23:9: custom.a14[0]: `${self:custom.a13}` resolves to more than 1048576 bytes (1 MiB, counting 64 bytes per mapping entry or list item); a variable's value may be at most that
    "#]]
    .assert_eq(&refused(&source));
}

#[test]
fn many_uses_of_a_large_value_are_refused_at_the_total_limit() {
    let big = "x".repeat(600_000);
    let mut source = format!("{HEAD}    environment:\n");
    for use_idx in 0..40 {
        source.push_str(&format!("      V{use_idx}: ${{self:custom.big}}\n"));
    }
    source.push_str(&format!("custom:\n  big: {big}\n"));
    expect![[r#"
        serverless.yml:34:12: functions.f.environment.V27: the manifest's variables resolve to more than 16777216 bytes (16 MiB) in all, counting each use of a value and 64 bytes per mapping entry or list item; that is the limit
    "#]]
    .assert_eq(&refused(&source));
}

#[test]
fn a_long_variable_chain_is_refused_at_the_depth_limit() {
    let mut source =
        format!("{HEAD}    environment:\n      A: ${{self:custom.a100}}\ncustom:\n  a0: x\n");
    for step in 1..=100 {
        source.push_str(&format!("  a{step}: ${{self:custom.a{}}}\n", step - 1));
    }
    expect![[r#"
        serverless.yml:78:8: custom.a69: variables here resolve through each other more than 32 deep (at `${self:custom.a68}`); a chain of variables may be at most 32 long
    "#]]
    .assert_eq(&refused(&source));
}

#[test]
fn deep_nesting_is_refused_at_the_depth_limit() {
    // saphyr's scanner refuses flow collections past 255 levels before the guard sees them.
    let source = format!(
        "{HEAD}custom: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    expect![[r#"
        serverless.yml:6:264: invalid YAML: recursion limit exceeded
    "#]]
    .assert_eq(&refused(&source));
    let mut source = format!("{HEAD}custom:\n");
    for level in 0..200 {
        source.push_str(&format!("{}- a{level}:\n", "  ".repeat(level + 1)));
    }
    expect![[r#"
        serverless.yml:38:67: custom[0].a0[0].a1[0].a2[0].a3[0].a4[0].a5[0].a6[0].a7[0].a8[0].a9[0].a10[0].a11[0].a12[0].a13[0].a14[0].a15[0].a16[0].a17[0].a18[0].a19[0].a20[0].a21[0].a22[0].a23[0].a24[0].a25[0].a26[0].a27[0].a28[0].a29[0].a30[0]: mappings and lists nest more than 64 levels deep; a manifest may nest at most 64
    "#]]
    .assert_eq(&refused(&source));
    let mut source = format!("{HEAD}custom:\n  a0: &a0 [x]\n");
    for level in 1..100 {
        source.push_str(&format!("  a{level}: &a{level} [[[*a{}]]]\n", level - 1));
    }
    expect![[r#"
        serverless.yml:28:16: custom.a21[0][0][0]: this alias nests mappings and lists more than 64 levels deep; a manifest may nest at most 64
    "#]]
    .assert_eq(&refused(&source));
}

#[test]
fn a_manifest_over_the_size_limit_is_refused() {
    let source = format!("{HEAD}# {}\n", "x".repeat(super::MAX_MANIFEST_BYTES));
    expect![[r#"
        serverless.yml:1:1: the file is larger than 1048576 bytes (1 MiB), the most nimbus reads; CloudFormation takes templates up to 1 MB
    "#]]
    .assert_eq(&refused(&source));
}

#[test]
fn duplicate_keys_are_errors_naming_both_lines() {
    check(
        "
        service: s
        provider: { runtime: nodejs20.x }
        functions:
          api:
            handler: a.handler
            events: [{ httpApi: GET /a }]
          api:
            handler: b.handler
        x-defaults: &d { memorySize: 128 }
        custom:
          c: { <<: *d, <<: *d, k: 1, k: 2 }
        ",
        expect![[r#"
            serverless.yml:7:3: functions.api: duplicate key `api` (also on line 4); a key may appear once in a mapping, and YAML loaders disagree on which one wins
            serverless.yml:11:16: custom.c.<<: duplicate merge key `<<` (also on line 11); merge several mappings with one key: `<<: [*a, *b]`
            serverless.yml:11:30: custom.c.k: duplicate key `k` (also on line 11); a key may appear once in a mapping, and YAML loaders disagree on which one wins
        "#]],
    );
}

#[test]
fn control_characters_are_errors_naming_the_value() {
    let nul_in_value = format!("{HEAD}    events: [{{ httpApi: \"GET /éééééééééé\0x\" }}]\n");
    expect![[r#"
        serverless.yml:6:25: functions.f.events[0].httpApi: control character U+0000 in the manifest; a manifest may hold tabs and line breaks but no other control characters (a NUL would end the YAML there)
    "#]]
    .assert_eq(&refused(&nul_in_value));
    let escaped = format!("{HEAD}    environment: {{ A: \"x\\u0001\" }}\n");
    expect![[r#"
        serverless.yml:6:23: functions.f.environment.A: control character U+0001 in the manifest; a manifest may hold tabs and line breaks but no other control characters (a NUL would end the YAML there)
    "#]]
    .assert_eq(&refused(&escaped));
    let in_comment = format!("{HEAD}# a \u{7f} comment\n");
    expect![[r#"
        serverless.yml:6:5: control character U+007F in the manifest; a manifest may hold tabs and line breaks but no other control characters (a NUL would end the YAML there)
    "#]]
    .assert_eq(&refused(&in_comment));
    let c1 = format!("{HEAD}    description: \"a\u{9b}b\"\n");
    expect![[r#"
        serverless.yml:6:18: functions.f.description: control character U+009B in the manifest; a manifest may hold tabs and line breaks but no other control characters (a NUL would end the YAML there)
    "#]].assert_eq(&refused(&c1));
    expect![[r#"
        service s, stage dev, region us-east-1
        function f: nodejs20.x f.handler (line 5), 1024 MB, 6s
          Node { major: 20 }
    "#]]
    .assert_eq(&refused(&format!(
        "{HEAD}    description: \"tab\\tand\\nnewline\"\n"
    )));
}

#[test]
fn stream_events_consume_table_streams_and_kinesis_streams() {
    check(
        r#"
        service: shop
        provider: { name: aws, runtime: nodejs20.x }
        functions:
          inventory:
            handler: inventory.handler
            events:
              - stream:
                  type: dynamodb
                  arn: { Fn::GetAtt: [OrdersTable, StreamArn] }
                  batchSize: 100
                  startingPosition: LATEST
                  maximumRetryAttempts: 2
                  bisectBatchOnFunctionError: true
                  functionResponseType: ReportBatchItemFailures
                  destinations: { onFailure: { Fn::GetAtt: [FailedQueue, Arn] } }
                  filterPatterns: [{ eventName: [INSERT] }]
          analytics:
            handler: analytics.handler
            events:
              - stream: arn:aws:kinesis:us-east-1:123456789012:stream/clicks
              - stream:
                  type: kinesis
                  arn: { Fn::GetAtt: [Clicks, Arn] }
                  parallelizationFactor: 4
                  maximumRecordAgeInSeconds: 60
                  batchWindow: 1
          seed:
            handler: seed.handler
            events:
              - dynamodb: { stream: "${cf:shop-dev.OrdersTableStreamArn}", startingPosition: LATEST }
        resources:
          Resources:
            OrdersTable:
              Type: AWS::DynamoDB::Table
              Properties:
                TableName: orders
                AttributeDefinitions: [{ AttributeName: id, AttributeType: S }]
                KeySchema: [{ AttributeName: id, KeyType: HASH }]
                StreamSpecification: { StreamViewType: NEW_AND_OLD_IMAGES }
            Clicks:
              Type: AWS::Kinesis::Stream
              Properties: { Name: clicks, ShardCount: 2, RetentionPeriodHours: 48 }
            FailedQueue:
              Type: AWS::SQS::Queue
              Properties: { QueueName: failed }
        "#,
        expect![[r#"
            service shop, stage dev, region us-east-1
            function inventory: nodejs20.x inventory.handler (line 5), 1024 MB, 6s
              Node { major: 20 }
              stream table/orders batch 100 window 0s from Latest retries Some(2) max age None factor 1 bisect report-failures on failure Queue("failed") filter {"eventName":["INSERT"]}
            function analytics: nodejs20.x analytics.handler (line 18), 1024 MB, 6s
              Node { major: 20 }
              stream clicks batch 10 window 0s from TrimHorizon retries None max age None factor 1
              stream clicks batch 10 window 1s from TrimHorizon retries None max age Some(60) factor 4
            function seed: nodejs20.x seed.handler (line 28), 1024 MB, 6s
              Node { major: 20 }
              stream table/orders batch 10 window 0s from Latest retries None max age None factor 1
            queue failed: visibility 30s, delay 0s, retention 345600s
            table orders: hash id S, stream NEW_AND_OLD_IMAGES
            stream clicks: 2 shards, retention 48h
            warning serverless.yml:30:9: functions.seed.events[0].dynamodb: not a Serverless Framework event; read as `stream: { type: dynamodb, arn: .. }`
        "#]],
    );
}

#[test]
fn stream_events_name_what_is_wrong() {
    check(
        r#"
        service: shop
        provider: { name: aws, runtime: nodejs20.x }
        tables:
          plain: { partitionKey: id }
          logged: { partitionKey: id, stream: SIDEWAYS }
        streams:
          clicks: { shards: 100 }
        functions:
          f:
            handler: f.handler
            events:
              - stream: { type: dynamodb, arn: plain }
              - stream: { type: kinesis, arn: missing }
              - stream: { arn: arn:aws:sqs:us-east-1:1:q }
              - stream: { type: dynamodb, arn: plain, batchSize: 0, startingPosition: AT_TIMESTAMP }
              - stream: { batchSize: 5 }
        "#,
        expect![[r#"
            serverless.yml:5:39: tables.logged.stream: expected NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES or KEYS_ONLY, got "SIDEWAYS"
            serverless.yml:7:21: streams.clicks.shards: 100 is out of range; expected 1 to 64
            serverless.yml:12:40: functions.f.events[0].stream.arn: table `plain` has no stream; give it `StreamSpecification: { StreamViewType: NEW_AND_OLD_IMAGES }` (or `stream:` under `tables:`)
            serverless.yml:13:39: functions.f.events[1].stream.arn: stream `missing` is not declared; add it under `streams:` or `resources`
            serverless.yml:14:24: functions.f.events[2].stream.arn: expected a DynamoDB table stream or Kinesis stream ARN, got "arn:aws:sqs:us-east-1:1:q"
            serverless.yml:15:17: functions.f.events[3].stream.startingPosition: AT_TIMESTAMP needs `startingPositionTimestamp` (seconds since the Unix epoch)
            serverless.yml:15:40: functions.f.events[3].stream.arn: table `plain` has no stream; give it `StreamSpecification: { StreamViewType: NEW_AND_OLD_IMAGES }` (or `stream:` under `tables:`)
            serverless.yml:15:58: functions.f.events[3].stream.batchSize: 0 is out of range; expected 1 to 10000
            serverless.yml:16:17: functions.f.events[4].stream: missing `arn`; name the stream, as in `arn: { Fn::GetAtt: [TodosTable, StreamArn] }`
        "#]],
    );
}

// Issue 14: a process function's /tmp is its `ephemeralStorageSize`, within Lambda's
// bounds (512 to 10240 MB).
#[test]
fn ephemeral_storage_size_is_refused_outside_lambdas_bounds() {
    check(
        "
        service: s
        provider: { name: aws, runtime: nodejs20.x, ephemeralStorageSize: 100 }
        functions:
          f: { handler: f.handler, ephemeralStorageSize: 20000 }
          g: { handler: g.handler, ephemeralStorageSize: 1024 }
        ",
        expect![[r#"
            serverless.yml:2:67: provider.ephemeralStorageSize: ephemeralStorageSize 100 MB is out of range (512 to 10240)
            serverless.yml:4:50: functions.f.ephemeralStorageSize: ephemeralStorageSize 20000 MB is out of range (512 to 10240)
        "#]],
    );
}
