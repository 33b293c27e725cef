//! TypeScript handlers: compiled with esbuild on load and on `nimbus dev` reload, cached
//! in `.nimbus/build/`, with stack traces naming `.ts` lines (issue 11, part 4).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = r#"
service: inventory
frameworkVersion: "3"
provider:
  runtime: nodejs20.x
  memorySize: 256
  timeout: 10
plugins:
  - serverless-esbuild
functions:
  stock:
    handler: src/stock.get
    events:
      - httpApi: "GET /stock/{sku}"
  audit:
    handler: src/audit.record
  legacy:
    handler: src/legacy.handler
"#;

const STOCK_TS: &str = r#"import type { APIGatewayProxyEventV2 } from './types';
import { lookup } from './catalog';

export const get = async (event: APIGatewayProxyEventV2) => {
  const sku: string = event.pathParameters?.sku ?? '';
  if (sku === 'broken') {
    throw new Error(`no stock record for ${sku}`);
  }
  return { statusCode: 200, body: JSON.stringify(lookup(sku)) };
};
"#;

const CATALOG_TS: &str = r#"export interface Item { sku: string; count: number }

const counts: Record<string, number> = { apple: 3, pear: 0 };

export function lookup(sku: string): Item {
  return { sku, count: counts[sku] ?? -1 };
}
"#;

const TYPES_TS: &str = r#"export interface APIGatewayProxyEventV2 {
  rawPath: string;
  pathParameters?: Record<string, string>;
}
"#;

fn app() -> TestApp {
    TestApp::new(&[
        ("serverless.yml", MANIFEST),
        ("src/stock.ts", STOCK_TS),
        ("src/catalog.ts", CATALOG_TS),
        ("src/types.ts", TYPES_TS),
        (
            "src/audit.mts",
            "const started: number = Date.now();\nexport async function record(event: { action: string }): Promise<object> {\n  return { action: event.action, esm: import.meta.url.endsWith('.mjs'), started: started > 0 };\n}\n",
        ),
        (
            "src/legacy.cts",
            "import path = require('node:path');\nexport function handler(_event: unknown, _context: unknown, callback: (e: Error | null, r?: unknown) => void) {\n  callback(null, { base: path.basename(__filename) });\n}\n",
        ),
    ])
}

async fn invoke(server: &TestServer, app: &TestApp, name: &str, event: Value) -> (bool, Value) {
    let res = server
        .admin_json(
            app.path(),
            "POST",
            &format!("/2015-03-31/functions/{name}/invocations"),
            &event.to_string(),
        )
        .await;
    assert_eq!(res.status, 200, "{name}: {}", res.text());
    (res.header("x-amz-function-error").is_some(), res.json())
}

#[tokio::test]
async fn typescript_handlers_run_compiled_and_stack_traces_name_ts_lines() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);

    let res = server.get("/stock/apple").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json(), json!({ "sku": "apple", "count": 3 }));

    let (failed, err) = invoke(
        &server,
        &app,
        "stock",
        json!({ "pathParameters": { "sku": "broken" } }),
    )
    .await;
    assert!(failed, "{err}");
    assert_eq!(err["errorMessage"], "no stock record for broken");
    let trace = err["stackTrace"].to_string();
    let source = app.path().join("src/stock.ts");
    assert!(
        trace.contains(&format!("{}:7:11", source.display())),
        "the trace names the .ts line: {trace}"
    );

    let (failed, audit) = invoke(&server, &app, "audit", json!({ "action": "count" })).await;
    assert!(!failed, "{audit}");
    assert_eq!(
        audit,
        json!({ "action": "count", "esm": true, "started": true })
    );

    let (failed, legacy) = invoke(&server, &app, "legacy", json!({})).await;
    assert!(!failed, "{legacy}");
    assert_eq!(legacy, json!({ "base": "legacy.cjs" }));
}

#[test]
fn a_warm_start_reuses_the_compiled_handler_until_a_source_changes() {
    let app = app();
    let first = app.nimbus(&["validate"]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    for source in ["src/stock.ts", "src/audit.mts", "src/legacy.cts"] {
        assert!(
            first.stderr.contains(&format!("compiled {source} in ")),
            "{}",
            first.stderr
        );
    }
    let second = app.nimbus(&["validate"]);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert!(!second.stderr.contains("compiled "), "{}", second.stderr);

    // An imported module changed: only the handler that imports it compiles again.
    std::fs::write(
        app.path().join("src/catalog.ts"),
        CATALOG_TS.replace("apple: 3", "apple: 4"),
    )
    .expect("editing the app");
    let third = app.nimbus(&["validate"]);
    assert_eq!(third.code, Some(0), "{}", third.stderr);
    assert!(
        third.stderr.contains("compiled src/stock.ts in "),
        "{}",
        third.stderr
    );
    assert!(
        !third.stderr.contains("compiled src/audit.mts"),
        "{}",
        third.stderr
    );
}

#[test]
fn a_typescript_syntax_error_fails_the_load_naming_file_and_line() {
    let app = TestApp::new(&[
        (
            "nimbus.yaml",
            "service: broken\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  api:\n    handler: src/api.handler\n",
        ),
        (
            "src/api.ts",
            "export const handler = async () => {\n  const answer: number = 42\n  return { answer answer };\n};\n",
        ),
    ]);
    let out = app.nimbus(&["validate"]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("error: nimbus.yaml:6:1: functions.api.handler: TypeScript does not compile: src/api.ts:3:18: Expected \"}\" but found \"answer\""),
        "{}",
        out.stderr
    );
    let out = app.nimbus(&["up", ".", "--port", "0"]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("src/api.ts:3:18"), "{}", out.stderr);
}

#[test]
fn custom_esbuild_bundles_packages_except_externals_and_can_drop_source_maps() {
    let manifest = "service: bundled
provider:
  runtime: nodejs20.x
plugins:
  - serverless-esbuild
custom:
  esbuild:
    bundle: true
    external: [pg-native]
    target: node18
    sourcemap: false
    concurrency: 4
functions:
  api:
    handler: handler.main
";
    let app = TestApp::new(&[
        ("serverless.yml", manifest),
        (
            "handler.ts",
            "import { slugify } from 'tiny-slug';\nimport native from 'pg-native';\nexport const main = async () => ({ slug: slugify('Hello World'), native: native.kind });\n",
        ),
        (
            "node_modules/tiny-slug/package.json",
            r#"{ "name": "tiny-slug", "version": "1.0.0", "main": "index.js" }"#,
        ),
        (
            "node_modules/tiny-slug/index.js",
            "exports.slugify = (s) => s.toLowerCase().split(' ').join('-') + '/BUNDLED-MARKER';\n",
        ),
        (
            "node_modules/pg-native/package.json",
            r#"{ "name": "pg-native", "version": "1.0.0", "main": "index.js" }"#,
        ),
        (
            "node_modules/pg-native/index.js",
            "module.exports = { kind: 'EXTERNAL-MARKER' };\n",
        ),
    ]);
    let out = app.nimbus(&["invoke", "api"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let res: Value = serde_json::from_str(out.stdout.trim()).expect("the result is JSON");
    assert_eq!(
        res,
        json!({ "slug": "hello-world/BUNDLED-MARKER", "native": "EXTERNAL-MARKER" })
    );
    assert!(
        out.stderr.contains("custom.esbuild: nimbus uses bundle, external, exclude, target, sourcemap, format, packages, minify, keepNames and ignores concurrency"),
        "{}",
        out.stderr
    );
    // The bundled package is inside the output, the external one is not, and there is no
    // source map.
    let build = std::fs::read_dir(app.path().join(".nimbus/build"))
        .expect("the build folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .expect("one build");
    let output = std::fs::read_to_string(build.join("handler.cjs")).expect("the output");
    assert!(output.contains("BUNDLED-MARKER"), "{output}");
    assert!(!output.contains("EXTERNAL-MARKER"), "{output}");
    assert!(!build.join("handler.cjs.map").exists());
}

#[tokio::test]
async fn nimbus_dev_compiles_a_typescript_handler_again_when_it_changes() {
    let app = TestApp::new(&[
        (
            "nimbus.yaml",
            "service: live\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  hello:\n    handler: hello.handler\n    events:\n      - httpApi: GET /hello\n",
        ),
        (
            "hello.ts",
            "export const handler = async (): Promise<object> => ({ statusCode: 200, body: 'first' });\n",
        ),
    ]);
    let server = TestServer::start_command("dev", app.path(), &[], &[]);
    assert_eq!(server.get("/hello").await.text(), "first");
    std::fs::write(
        app.path().join("hello.ts"),
        "const word: string = 'second';\nexport const handler = async (): Promise<object> => ({ statusCode: 200, body: word });\n",
    )
    .expect("editing the handler");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = server.get("/hello").await.text();
        if text == "second" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edit never showed; last {text:?}; stderr:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A syntax error is printed with file and line, and the last good version serves on.
    std::fs::write(
        app.path().join("hello.ts"),
        "export const handler = async (): Promise<object> => ({ statusCode: 200, body: 'third' ;\n",
    )
    .expect("breaking the handler");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !server.logs().contains("reload (hello.ts) failed") {
        assert!(
            Instant::now() < deadline,
            "no failed reload; stderr:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = server.logs();
    assert!(
        logs.contains("functions.hello.handler: TypeScript does not compile: hello.ts:1:"),
        "{logs}"
    );
    assert_eq!(server.get("/hello").await.text(), "second");
}

#[test]
fn compiled_handlers_find_packages_in_their_own_folders_node_modules() {
    // Without custom.esbuild packages stay outside the output, which lives in
    // .nimbus/build/: a function folder's own node_modules must still be found, from
    // CommonJS (NODE_PATH) and ES-module output (the resolve hook) alike.
    let manifest = "service: mono
provider:
  runtime: nodejs20.x
functions:
  api:
    handler: functions/api/handler.main
  worker:
    handler: functions/worker/handler.main
";
    let dep = |name: &str| {
        (
            format!("functions/{name}/node_modules/greeting/index.js"),
            format!("exports.greet = (who) => `hello ${{who}} from {name}`;\n"),
        )
    };
    let (api_dep, api_dep_js) = dep("api");
    let (worker_dep, worker_dep_js) = dep("worker");
    let app = TestApp::new(&[
        ("nimbus.yaml", manifest),
        (
            "functions/api/handler.ts",
            "import { greet } from 'greeting';\nexport const main = async (): Promise<string> => greet('ada');\n",
        ),
        (
            "functions/worker/handler.mts",
            "import { greet } from 'greeting';\nexport const main = async (): Promise<string> => greet('bob');\n",
        ),
        (&api_dep, &api_dep_js),
        (&worker_dep, &worker_dep_js),
    ]);
    for (name, expect) in [
        ("api", "hello ada from api"),
        ("worker", "hello bob from worker"),
    ] {
        let out = app.nimbus(&["invoke", name]);
        assert_eq!(out.code, Some(0), "{name}: {}{}", out.stdout, out.stderr);
        assert_eq!(out.stdout.trim(), format!("\"{expect}\""), "{name}");
    }
}
