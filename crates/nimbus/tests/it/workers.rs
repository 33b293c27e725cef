//! Workers-style edge functions (issue 15): a `wrangler.toml` app served unchanged, module
//! and service-worker syntax, KV and queue bindings, request.cf, errors and the CPU limit.

use std::time::Duration;

use crate::harness::{TestApp, TestServer};

/// Serves `body` as JSON on 127.0.0.1 for every request: the stand-in for the origin a
/// worker fetches from. Returns its base URL and how many requests it answered.
async fn serve_origin(
    body: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the origin");
    let addr = listener.local_addr().expect("address");
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    (format!("http://{addr}"), hits)
}

/// The seed's service-worker Worker: answers from a KV cache (expirationTtl) or fetches
/// the origin, and greets by `request.cf.country`.
const SERVICE_WORKER: &str = r#"
addEventListener('fetch', (event) => {
  event.respondWith(handle(event.request, event));
});

async function handle(request, event) {
  const url = new URL(request.url);
  const country = request.cf.country;
  const key = `cache:${url.pathname}`;
  let cached = await KV_NAMESPACE.get(key, { type: 'json' });
  let source = 'cache';
  if (!cached) {
    const res = await fetch(`${ORIGIN}${url.pathname}`);
    cached = await res.json();
    source = 'origin';
    event.waitUntil(KV_NAMESPACE.put(key, JSON.stringify(cached), { expirationTtl: 300 }));
  }
  console.log(`served ${url.pathname} from ${source} for ${country}`);
  return new Response(JSON.stringify({ country, source, data: cached, greeting: GREETING }), {
    headers: { 'content-type': 'application/json', 'x-colo': request.cf.colo },
  });
}
"#;

#[tokio::test]
async fn service_worker_caches_origin_answers_in_kv_and_reads_request_cf() {
    let (origin, hits) = serve_origin(r#"{"items":[1,2,3]}"#).await;
    let wrangler = format!(
        r#"name = "edge-cache"
main = "worker.js"
compatibility_date = "2024-09-23"

[vars]
ORIGIN = "{origin}"
GREETING = "hello"

[[kv_namespaces]]
binding = "KV_NAMESPACE"
id = "4f1c0d9b2a7e4e6f8d3c2b1a09876543"

[nimbus.cf]
colo = "AMS"
"#
    );
    let app = TestApp::new(&[("wrangler.toml", &wrangler), ("worker.js", SERVICE_WORKER)]);
    let server = TestServer::start(app.path(), &[]);

    let res = server
        .request("GET", "/products", &[("cf-ipcountry", "DE")], Vec::new())
        .await;
    assert_eq!(res.status, 200, "{}\n{}", res.text(), server.logs());
    let body = res.json();
    assert_eq!(body["country"], "DE");
    assert_eq!(body["source"], "origin");
    assert_eq!(body["data"]["items"][2], 3);
    assert_eq!(body["greeting"], "hello");
    assert_eq!(res.header("x-colo"), Some("AMS"));

    // The put ran in waitUntil, after the response; the next request finds it.
    let mut second = serde_json::Value::Null;
    for _ in 0..50 {
        let res = server.get("/products").await;
        assert_eq!(res.status, 200, "{}", res.text());
        second = res.json();
        if second["source"] == "cache" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(second["source"], "cache", "{second}");
    // Without the header, Cloudflare's "unknown" country.
    assert_eq!(second["country"], "XX");
    // From now on the origin is not asked again.
    let n_hits = hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(server.get("/products").await.json()["source"], "cache");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), n_hits);

    // The key carries its expiration (300 s from now) in the namespace's listing.
    let out = app.nimbus(&["kv", "ls", "KV_NAMESPACE"]);
    assert!(
        out.stdout.contains("cache:/products"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

const MODULE_WORKER: &str = r#"
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === '/kv') {
      await env.STORE.put('greeting', 'hi there', { metadata: { lang: 'en' } });
      const { value, metadata } = await env.STORE.getWithMetadata('greeting');
      const listed = await env.STORE.list({ prefix: 'gree' });
      const missing = await env.STORE.get('nope');
      return Response.json({ value, metadata, names: listed.keys.map((k) => k.name), missing });
    }
    if (url.pathname === '/echo') {
      const text = await request.text();
      return new Response(`${request.method} ${text}`, {
        status: 201,
        headers: { 'x-echo': request.headers.get('x-test') || '' },
      });
    }
    if (url.pathname === '/throw') {
      throw new Error('kaboom from the worker');
    }
    return Response.json({ vars: env.GREETING, config: env.CONFIG, path: url.pathname, query: url.searchParams.get('q') });
  },
};
"#;

#[tokio::test]
async fn module_worker_gets_env_bindings_and_a_throw_is_a_500_with_its_stack_logged() {
    let wrangler = r#"name = "mod"
main = "src/index.mjs"

[vars]
GREETING = "bonjour"
CONFIG = { retries = 3 }

[[kv_namespaces]]
binding = "STORE"
id = "abc"
"#;
    let app = TestApp::new(&[
        ("wrangler.toml", wrangler),
        ("src/index.mjs", MODULE_WORKER),
    ]);
    let server = TestServer::start(app.path(), &[]);

    let res = server.get("/anything?q=42").await;
    assert_eq!(res.status, 200, "{}\n{}", res.text(), server.logs());
    let body = res.json();
    assert_eq!(body["vars"], "bonjour");
    assert_eq!(body["config"]["retries"], 3);
    assert_eq!(body["path"], "/anything");
    assert_eq!(body["query"], "42");

    let res = server.get("/kv").await;
    assert_eq!(res.status, 200, "{}", res.text());
    let body = res.json();
    assert_eq!(body["value"], "hi there");
    assert_eq!(body["metadata"]["lang"], "en");
    assert_eq!(body["names"][0], "greeting");
    assert!(body["missing"].is_null());

    let res = server
        .request("POST", "/echo", &[("x-test", "yes")], b"payload".to_vec())
        .await;
    assert_eq!(res.status, 201);
    assert_eq!(res.text(), "POST payload");
    assert_eq!(res.header("x-echo"), Some("yes"));

    let res = server.get("/throw").await;
    assert_eq!(res.status, 500);
    assert_eq!(res.text(), "Worker threw exception");
    let request_id = res
        .header("apigw-requestid")
        .expect("a request id")
        .to_owned();
    // The stack is in the worker's log, under the request's id.
    let mut logs = String::new();
    for _ in 0..50 {
        logs = app
            .nimbus(&["logs", "mod", "--request", &request_id])
            .stdout;
        if logs.contains("kaboom") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logs.contains("Error: kaboom from the worker"), "{logs}");
    assert!(
        logs.contains("index.mjs"),
        "the stack names the module: {logs}"
    );
    // The host survives: the next request is answered.
    assert_eq!(server.get("/ok").await.status, 200);
}

const LOOPING_WORKER: &str = r#"
export default {
  async fetch(request) {
    if (new URL(request.url).pathname.endsWith('/loop')) {
      for (;;) {}
    }
    return new Response('still here');
  },
};
"#;

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_cpu_limit_and_other_workers_keep_answering() {
    let manifest = r#"service: edge
provider:
  runtime: workers
functions:
  looper:
    handler: looper.mjs
    cpuMs: 200
    events:
      - httpApi: 'GET /looper/{proxy+}'
  steady:
    handler: steady.mjs
    events:
      - httpApi: 'GET /steady'
"#;
    let steady = "export default { fetch: () => new Response('steady') };\n";
    let app = TestApp::new(&[
        ("nimbus.yaml", manifest),
        ("looper.mjs", LOOPING_WORKER),
        ("steady.mjs", steady),
    ]);
    let server = TestServer::start(app.path(), &[]);
    assert_eq!(server.get("/steady").await.text(), "steady");

    let looping = server.get("/looper/loop");
    let steady_meanwhile = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.get("/steady").await
    };
    let (looped, steady_res) = tokio::join!(looping, steady_meanwhile);
    assert_eq!(steady_res.text(), "steady");
    assert_eq!(looped.status, 500, "{}", looped.text());
    assert_eq!(looped.text(), "Worker exceeded resource limits");
    // A fresh host takes the next request.
    let res = server.get("/looper/ok").await;
    assert_eq!(res.status, 200, "{}\n{}", res.text(), server.logs());
    assert_eq!(res.text(), "still here");
}
