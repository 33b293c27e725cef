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
    if (url.pathname === '/incoming') {
      // Headers changed before and after the request is built whole (its signal read)
      // are the request's own: a clone has them, and the body is still there.
      const headers = request.headers;
      headers.set('x-before', '1');
      const aborted = request.signal.aborted;
      headers.set('x-after', '2');
      const copy = request.clone();
      return Response.json({
        aborted,
        before: copy.headers.get('x-before'),
        after: copy.headers.get('x-after'),
        test: copy.headers.get('x-test'),
        same: request.headers === headers,
        text: await request.text(),
        copied: await copy.text(),
        used: request.bodyUsed,
      });
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

    let res = server
        .request(
            "POST",
            "/incoming",
            &[("x-test", "yes")],
            b"payload".to_vec(),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.json(),
        serde_json::json!({
            "aborted": false, "before": "1", "after": "2", "test": "yes", "same": true,
            "text": "payload", "copied": "payload", "used": true,
        })
    );

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

const QUEUE_WORKER: &str = r#"
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === '/send') {
      await env.JOBS.send({ id: 1, task: 'resize' });
      await env.JOBS.sendBatch([{ body: { id: 2, task: 'flaky' } }, { body: 'plain text', contentType: 'text' }]);
      return new Response('queued', { status: 202 });
    }
    const done = await env.RESULTS.list({ prefix: 'done:' });
    const out = {};
    for (const key of done.keys) out[key.name] = await env.RESULTS.get(key.name, 'json');
    return Response.json(out);
  },
  async queue(batch, env) {
    for (const msg of batch.messages) {
      const id = typeof msg.body === 'string' ? 'text' : msg.body.id;
      if (id === 2 && msg.attempts === 1) {
        console.log(`retrying ${msg.id}`);
        msg.retry();
        continue;
      }
      await env.RESULTS.put(`done:${id}`, JSON.stringify({ body: msg.body, attempts: msg.attempts, queue: batch.queue }));
      msg.ack();
    }
  },
};
"#;

#[tokio::test]
async fn queue_producer_feeds_a_consumer_worker_that_retries_one_message() {
    let wrangler = r#"name = "jobs-worker"
main = "worker.js"

[[queues.producers]]
binding = "JOBS"
queue = "jobs"

[[queues.consumers]]
queue = "jobs"
max_batch_size = 10
max_batch_timeout = 0
max_retries = 3
dead_letter_queue = "jobs-dlq"

[[kv_namespaces]]
binding = "RESULTS"
id = "results"
"#;
    let app = TestApp::new(&[
        ("wrangler.toml", wrangler),
        // An ES module in a `.js` file with no `"type": "module"`, as wrangler projects have.
        ("worker.js", QUEUE_WORKER),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let res = server.request("POST", "/send", &[], Vec::new()).await;
    assert_eq!(res.status, 202, "{}\n{}", res.text(), server.logs());

    let mut done = serde_json::Value::Null;
    for _ in 0..100 {
        done = server.get("/").await.json();
        if done.as_object().is_some_and(|o| o.len() == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done["done:1"]["body"]["task"], "resize", "{done}");
    assert_eq!(done["done:1"]["attempts"], 1);
    assert_eq!(done["done:1"]["queue"], "jobs");
    // The retried message came back at once (retry_delay 0) and was acked on its second try.
    assert_eq!(done["done:2"]["body"]["task"], "flaky", "{done}");
    assert_eq!(done["done:2"]["attempts"], 2);
    assert_eq!(done["done:text"]["body"], "plain text");
    // Nothing went to the dead-letter queue.
    let out = app.nimbus(&["queue", "ls"]);
    let listed: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("queue ls is JSON ({e}): {}{}", out.stdout, out.stderr));
    let dlq = listed["queues"]
        .as_array()
        .and_then(|queues| queues.iter().find(|q| q["name"] == "jobs-dlq"))
        .unwrap_or_else(|| panic!("no jobs-dlq in {listed}"));
    assert_eq!(dlq["visible"], 0, "{listed}");
}

/// A Vercel Edge function: a default-exported handler that takes a Request, with
/// `request.geo` from Vercel's headers.
const VERCEL_EDGE: &str = r#"
export const config = { runtime: 'edge' };

export default async function handler(request) {
  const { searchParams } = new URL(request.url);
  const name = searchParams.get('name') || 'World';
  return new Response(JSON.stringify({ message: `Hello, ${name}!`, country: request.geo.country, city: request.geo.city }), {
    headers: { 'content-type': 'application/json' },
  });
}
"#;

#[tokio::test]
async fn vercel_edge_handler_answers_with_request_geo() {
    let manifest = r#"service: vercel
provider:
  runtime: workers
functions:
  hello:
    handler: api/hello.js
    events:
      - httpApi: 'GET /api/hello'
"#;
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("api/hello.js", VERCEL_EDGE)]);
    let server = TestServer::start(app.path(), &[]);
    let res = server
        .request(
            "GET",
            "/api/hello?name=Ada",
            &[
                ("x-vercel-ip-country", "SE"),
                ("x-vercel-ip-city", "Malm%C3%B6"),
            ],
            Vec::new(),
        )
        .await;
    assert_eq!(res.status, 200, "{}\n{}", res.text(), server.logs());
    let body = res.json();
    assert_eq!(body["message"], "Hello, Ada!");
    assert_eq!(body["country"], "SE");
    assert_eq!(body["city"], "Malmö");
}

/// Web API behaviours a worker relies on, one path each; every answer is deterministic,
/// so nimbus and workerd must give the same bytes.
const WEB_API_WORKER: &str = r#"
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');

const cases = {
  async headers() {
    const h = new Headers({ 'Content-Type': 'text/plain' });
    h.append('X-Multi', 'a');
    h.append('x-multi', 'b');
    h.set('X-Single', '1');
    h.delete('x-single');
    return { multi: h.get('X-MULTI'), has: h.has('content-type'), keys: [...h.keys()] };
  },
  async cookies() {
    const r = new Response('c');
    r.headers.append('Set-Cookie', 'a=1; Path=/');
    r.headers.append('Set-Cookie', 'b=2; Path=/');
    return { count: r.headers.getSetCookie().length };
  },
  async url() {
    const u = new URL('https://user:pw@example.com:8443/a/../b/c?x=1&y=two&x=3#frag');
    u.searchParams.append('z', 'a b');
    return { href: u.href, host: u.host, path: u.pathname, xs: u.searchParams.getAll('x'), hash: u.hash, origin: u.origin };
  },
  async urlRelative() {
    return { joined: new URL('../d?q', 'http://h/a/b/c').href, pattern: encodeURIComponent('a/b c&d') };
  },
  async digest() {
    const data = new TextEncoder().encode('hello nimbus');
    return {
      sha256: hex(await crypto.subtle.digest('SHA-256', data)),
      sha1: hex(await crypto.subtle.digest('SHA-1', data)),
    };
  },
  async hmac() {
    const key = await crypto.subtle.importKey('raw', new TextEncoder().encode('secret'), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
    const sig = await crypto.subtle.sign('HMAC', key, new TextEncoder().encode('payload'));
    const ok = await crypto.subtle.verify('HMAC', key, sig, new TextEncoder().encode('payload'));
    return { sig: hex(sig), ok, uuidLength: crypto.randomUUID().length };
  },
  async streams() {
    const source = new ReadableStream({
      start(controller) {
        for (const part of ['edge ', 'functions ', 'stream']) controller.enqueue(new TextEncoder().encode(part));
        controller.close();
      },
    });
    const upper = new TransformStream({
      transform(chunk, controller) {
        controller.enqueue(new TextEncoder().encode(new TextDecoder().decode(chunk).toUpperCase()));
      },
    });
    return { text: await new Response(source.pipeThrough(upper)).text() };
  },
  async text() {
    const bytes = new TextEncoder().encode('héllo ✓');
    return { length: bytes.length, back: new TextDecoder().decode(bytes), b64: btoa('nimbus'), unb64: atob('bmltYnVz') };
  },
  async clone() {
    const v = structuredClone({ when: new Date(0), set: new Set([1, 2]), map: new Map([['k', 'v']]), nested: { a: [1, 2] } });
    return { when: v.when.toISOString(), set: [...v.set], map: [...v.map], nested: v.nested };
  },
  async request() {
    const req = new Request('http://example.com/p?q=1', { method: 'POST', body: 'body!', headers: { 'x-a': '1' } });
    const copy = req.clone();
    return { method: req.method, text: await req.text(), copied: await copy.text(), used: req.bodyUsed, header: copy.headers.get('x-a') };
  },
  async errors() {
    const out = {};
    try { new URL('not a url'); } catch (e) { out.url = e.name; }
    try { JSON.parse('{'); } catch (e) { out.json = e.name; }
    try { new Response('x', { status: 99 }); } catch (e) { out.status = e.name; }
    try { await new Response('x').json(); } catch (e) { out.body = e.name; }
    return out;
  },
  async abort() {
    const controller = new AbortController();
    controller.abort();
    return { aborted: controller.signal.aborted, reason: controller.signal.reason.name };
  },
  async incoming(request) {
    // The request the worker was handed, not one it built.
    const url = new URL(request.url);
    const copy = new Request(request, { method: 'POST', body: 'copied' });
    const cloned = request.clone();
    return {
      path: url.pathname,
      search: url.search,
      method: request.method,
      isRequest: request instanceof Request,
      constructor: request.constructor === Request,
      keys: Object.keys(request),
      cf: typeof request.cf === 'object' && !Object.prototype.hasOwnProperty.call(request, 'cf'),
      headers: request.headers instanceof Headers && request.headers === request.headers,
      aborted: request.signal.aborted,
      body: request.body,
      text: await request.text(),
      used: request.bodyUsed,
      copy: { method: copy.method, path: new URL(copy.url).pathname, text: await copy.text() },
      cloned: { method: cloned.method, search: new URL(cloned.url).search },
    };
  },
  async formdata() {
    const form = await new Request('http://h/', { method: 'POST', body: 'a=1&b=two+words', headers: { 'content-type': 'application/x-www-form-urlencoded' } }).formData();
    return { a: form.get('a'), b: form.get('b') };
  },
};

export default {
  async fetch(request) {
    const name = new URL(request.url).pathname.split('/').pop();
    if (name === 'status') return new Response(null, { status: 204, headers: { 'x-kind': 'empty' } });
    if (name === 'redirect') return Response.redirect('https://example.com/next', 301);
    const run = cases[name];
    if (!run) return new Response('no such case', { status: 404 });
    return Response.json(await run(request));
  },
};
"#;

const WEB_API_CASES: &[&str] = &[
    "headers",
    "cookies",
    "url",
    "urlRelative",
    "digest",
    "hmac",
    "streams",
    "text",
    "clone",
    "request",
    "errors",
    "abort",
    "formdata",
    "incoming",
    "status",
    "redirect",
    "missing",
];

/// workerd from the npm registry, installed once into the test-tools cache; its binary.
fn workerd_binary() -> std::path::PathBuf {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let dir = home.join(".cache/nimbus/test-tools/workerd-1");
    let binary = dir.join("node_modules/@cloudflare/workerd-linux-64/bin/workerd");
    if binary.exists() {
        return binary;
    }
    let parent = dir.parent().expect("the cache folder has a parent");
    std::fs::create_dir_all(parent).expect("creating the test-tools cache");
    let staging = parent.join(format!("workerd-staging-{}", std::process::id()));
    std::fs::create_dir_all(&staging).expect("creating the staging folder");
    let out = std::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&staging)
        .arg("workerd@1.20261123.1")
        .output()
        .expect("running npm");
    assert!(
        out.status.success(),
        "npm install workerd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    binary
}

/// workerd serving `worker` (an ES module) on 127.0.0.1; killed when dropped.
struct Workerd {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Workerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts workerd on `worker`, or says why it cannot run here.
fn start_workerd(worker: &str) -> Result<Workerd, String> {
    let binary = workerd_binary();
    let version = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .map_err(|e| format!("workerd does not run here: {e}"))?;
    if !version.status.success() {
        return Err(format!(
            "workerd does not run here: {}",
            String::from_utf8_lossy(&version.stderr)
        ));
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("worker.js"), worker).expect("writing the worker");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = format!(
        r#"using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .worker) ],
  sockets = [ ( name = "http", address = "127.0.0.1:{port}", http = (), service = "main" ) ]
);
const worker :Workerd.Worker = (
  modules = [ (name = "worker", esModule = embed "worker.js") ],
  compatibilityDate = "2024-09-23",
);
"#
    );
    std::fs::write(dir.path().join("config.capnp"), config).expect("writing the config");
    let child = std::process::Command::new(&binary)
        .arg("serve")
        .arg(dir.path().join("config.capnp"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting workerd: {e}"))?;
    let workerd = Workerd {
        child,
        port,
        _dir: dir,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            return Err("workerd did not listen within 20 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(workerd)
}

/// What is compared of an answer: status, content type, Location and the body.
fn observed(res: &crate::harness::Response) -> String {
    format!(
        "{} {} {} {}",
        res.status,
        res.header("content-type").unwrap_or("-"),
        res.header("location").unwrap_or("-"),
        res.text()
    )
}

#[tokio::test]
async fn web_api_behaviours_match_workerd() {
    let wrangler =
        "name = \"webapi\"\nmain = \"worker.mjs\"\ncompatibility_date = \"2024-09-23\"\n";
    let app = TestApp::new(&[("wrangler.toml", wrangler), ("worker.mjs", WEB_API_WORKER)]);
    let server = TestServer::start(app.path(), &[]);
    let mut on_nimbus = Vec::new();
    for case in WEB_API_CASES {
        let res = server.get(&format!("/case/{case}")).await;
        on_nimbus.push(format!("{case}: {}", observed(&res)));
    }
    let on_nimbus = on_nimbus.join("\n");
    // The table itself, as nimbus answers it, so a change in either runtime shows.
    assert!(
        on_nimbus.contains("digest: 200 application/json"),
        "{on_nimbus}"
    );
    assert!(on_nimbus.contains("status: 204"), "{on_nimbus}");
    assert!(
        on_nimbus.contains(r#""text":"EDGE FUNCTIONS STREAM""#),
        "{on_nimbus}"
    );

    let workerd = match start_workerd(WEB_API_WORKER) {
        Ok(workerd) => workerd,
        Err(why) => {
            eprintln!("SKIPPED the workerd side of web_api_behaviours_match_workerd: {why}");
            return;
        }
    };
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], workerd.port).into();
    let mut on_workerd = Vec::new();
    for case in WEB_API_CASES {
        let res =
            crate::harness::request(addr, "GET", &format!("/case/{case}"), &[], Vec::new()).await;
        on_workerd.push(format!("{case}: {}", observed(&res)));
    }
    let on_workerd = on_workerd.join("\n");
    assert_eq!(on_nimbus, on_workerd);
}

const COUNTER_WORKER: &str = r#"
import { DurableObject } from 'cloudflare:workers';

export class Counter extends DurableObject {
  async fetch(request) {
    const url = new URL(request.url);
    let value = (await this.ctx.storage.get('value')) || 0;
    if (url.pathname.endsWith('/increment')) {
      value += 1;
      await this.ctx.storage.put('value', value);
    }
    if (url.pathname.endsWith('/broken')) {
      await this.ctx.storage.put('value', -1);
      throw new Error('failed after a write');
    }
    return Response.json({ value });
  }

  async add(n) {
    const value = ((await this.ctx.storage.get('value')) || 0) + n;
    await this.ctx.storage.put('value', value);
    return value;
  }

  async alarm() {
    await this.ctx.storage.put('alarmed', true);
  }

  async arm(ms) {
    await this.ctx.storage.setAlarm(Date.now() + ms);
  }

  async alarmed() {
    return (await this.ctx.storage.get('alarmed')) === true;
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const [, name, action] = url.pathname.split('/');
    const stub = env.COUNTER.get(env.COUNTER.idFromName(name));
    if (action === 'add') return Response.json({ value: await stub.add(Number(url.searchParams.get('n'))) });
    if (action === 'arm') {
      await stub.arm(Number(url.searchParams.get('ms')));
      return new Response('armed');
    }
    if (action === 'alarmed') return Response.json({ alarmed: await stub.alarmed() });
    try {
      return await stub.fetch(request);
    } catch (e) {
      return new Response(`object failed: ${e.message}`, { status: 500 });
    }
  },
};
"#;

const COUNTER_WRANGLER: &str = r#"name = "counter"
main = "src/index.js"

[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"

[[migrations]]
tag = "v1"
new_classes = ["Counter"]
"#;

async fn counter_value(server: &TestServer, name: &str) -> serde_json::Value {
    let res = server.get(&format!("/{name}/get")).await;
    assert_eq!(res.status, 200, "{}\n{}", res.text(), server.logs());
    res.json()["value"].clone()
}

#[tokio::test]
async fn a_counter_durable_object_takes_concurrent_increments_exactly_once_and_keeps_them_across_a_restart()
 {
    let app = TestApp::new(&[
        ("wrangler.toml", COUNTER_WRANGLER),
        ("src/index.js", COUNTER_WORKER),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let addr = server.addr;
    // 1,000 increments from 32 connections at once.
    let mut tasks = tokio::task::JoinSet::new();
    for conn_idx in 0..32 {
        let n_requests = 1000 / 32 + usize::from(conn_idx < 1000 % 32);
        tasks.spawn(async move {
            for _ in 0..n_requests {
                let res =
                    crate::harness::request(addr, "POST", "/room/increment", &[], Vec::new()).await;
                assert_eq!(res.status, 200, "{}", res.text());
            }
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.expect("an increment task");
    }
    assert_eq!(counter_value(&server, "room").await, 1000);
    // Objects are separate: another name starts at zero. RPC methods run as events too.
    assert_eq!(counter_value(&server, "other").await, 0);
    let res = server.get("/other/add?n=5").await;
    assert_eq!(res.json()["value"], 5, "{}", res.text());

    // An event that throws after a write leaves storage as the last completed event did.
    let res = server.get("/room/broken").await;
    assert_eq!(res.status, 500);
    assert_eq!(res.text(), "object failed: failed after a write");
    assert_eq!(counter_value(&server, "room").await, 1000);

    // An alarm fires and its handler's writes land.
    assert_eq!(server.get("/room/arm?ms=100").await.text(), "armed");
    let mut alarmed = false;
    for _ in 0..50 {
        alarmed = server.get("/room/alarmed").await.json()["alarmed"] == true;
        if alarmed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(alarmed, "{}", server.logs());

    drop(server);
    let server = TestServer::start(app.path(), &[]);
    assert_eq!(counter_value(&server, "room").await, 1000);
    assert_eq!(counter_value(&server, "other").await, 5);
}
