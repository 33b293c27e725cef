//! Durable Objects on nimbus's store (issue 15): one commit per event, `transaction()`,
//! `deleteAll()`, `list()` ranges, and alarms that fire after a kill -9 of nimbus without
//! the object being used again.

use std::time::Duration;

use crate::harness::{TestApp, TestServer};

/// An object whose routes exercise storage; its alarm records each attempt in a KV
/// namespace (outside the object) and fails its first attempt.
const STORAGE_WORKER: &str = r#"
import { DurableObject } from 'cloudflare:workers';

const entries = (map) => Object.fromEntries(map);

export class Notes extends DurableObject {
  async fetch(request) {
    const url = new URL(request.url);
    const s = this.ctx.storage;
    const q = Object.fromEntries(url.searchParams);
    switch (url.pathname.split('/')[2]) {
      case 'seed':
        await s.put({ 'a:1': 1, 'a:2': 2, 'a:3': 3, 'b:1': 'x', c: { deep: [1, 2] } });
        return new Response('seeded');
      case 'list': {
        const options = {};
        for (const k of ['prefix', 'start', 'startAfter', 'end']) if (q[k] !== undefined) options[k] = q[k];
        if (q.limit) options.limit = Number(q.limit);
        if (q.reverse) options.reverse = true;
        return Response.json(entries(await s.list(options)));
      }
      case 'half-written':
        // Two writes, then a throw: neither lands.
        await s.put('a:1', 100);
        await s.delete('b:1');
        throw new Error('failed halfway');
      case 'in-event':
        // A list inside an event sees the event's own writes, in order and cut to the limit.
        await s.put('a:0', 0);
        await s.delete('a:2');
        return Response.json(entries(await s.list({ prefix: 'a:', limit: 2 })));
      case 'transaction': {
        const kept = await s.transaction(async (txn) => {
          await txn.put('t:kept', true);
          return 'kept';
        });
        let thrown = null;
        try {
          await s.transaction(async (txn) => {
            await txn.put('t:thrown', true);
            throw new Error('no');
          });
        } catch (e) {
          thrown = e.message;
        }
        await s.transaction(async (txn) => {
          await txn.put('t:rolled-back', true);
          txn.rollback();
        });
        return Response.json({ kept, thrown, after: entries(await s.list({ prefix: 't:' })) });
      }
      case 'delete-all':
        await s.deleteAll();
        await s.put('fresh', 1);
        return Response.json(entries(await s.list()));
      case 'copy': {
        // A stored value is a copy: changing the object after put changes nothing.
        const value = { n: 1 };
        await s.put('copy', value);
        value.n = 2;
        const read = await s.get('copy');
        read.n = 3;
        return Response.json(await s.get('copy'));
      }
      case 'arm':
        await s.setAlarm(Date.now() + Number(q.ms));
        return Response.json({ alarm: (await s.getAlarm()) !== null });
      case 'bad-key':
        await s.put('k'.repeat(3000), 1);
        return new Response('stored');
      default:
        return new Response('not found', { status: 404 });
    }
  }

  async alarm(info) {
    const seen = JSON.parse((await this.env.LOG.get('alarms')) || '[]');
    seen.push(info.retryCount);
    await this.env.LOG.put('alarms', JSON.stringify(seen));
    if (info.retryCount === 0) throw new Error('the first attempt fails');
    await this.ctx.storage.put('alarmed', info.retryCount);
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const [, name] = url.pathname.split('/');
    if (name === 'alarms') return new Response((await env.LOG.get('alarms')) || '[]');
    const stub = env.NOTES.get(env.NOTES.idFromName(name));
    try {
      return await stub.fetch(request);
    } catch (e) {
      return new Response(`object failed: ${e.message}`, { status: 500 });
    }
  },
};
"#;

const STORAGE_WRANGLER: &str = r#"name = "notes"
main = "src/index.js"

[[kv_namespaces]]
binding = "LOG"
id = "log"

[[durable_objects.bindings]]
name = "NOTES"
class_name = "Notes"

[[migrations]]
tag = "v1"
new_classes = ["Notes"]
"#;

async fn json(server: &TestServer, path: &str) -> serde_json::Value {
    let res = server.get(path).await;
    assert_eq!(res.status, 200, "{path}: {}\n{}", res.text(), server.logs());
    res.json()
}

#[tokio::test]
async fn durable_object_storage_commits_each_event_whole_and_lists_ranges() {
    let app = TestApp::new(&[
        ("wrangler.toml", STORAGE_WRANGLER),
        ("src/index.js", STORAGE_WORKER),
    ]);
    let server = TestServer::start(app.path(), &[]);
    assert_eq!(server.get("/n/seed").await.text(), "seeded");
    let all = serde_json::json!({"a:1": 1, "a:2": 2, "a:3": 3, "b:1": "x", "c": {"deep": [1, 2]}});
    assert_eq!(json(&server, "/n/list").await, all);
    let keys = |v: serde_json::Value| -> Vec<String> {
        v.as_object().expect("an object").keys().cloned().collect()
    };
    assert_eq!(
        keys(json(&server, "/n/list?prefix=a:").await),
        ["a:1", "a:2", "a:3"]
    );
    // serde_json's map sorts keys, so order is checked through limit and reverse.
    assert_eq!(
        keys(json(&server, "/n/list?prefix=a:&reverse=1&limit=2").await),
        ["a:2", "a:3"]
    );
    assert_eq!(
        keys(json(&server, "/n/list?start=a:2&end=b:1").await),
        ["a:2", "a:3"]
    );
    assert_eq!(
        keys(json(&server, "/n/list?startAfter=a:3").await),
        ["b:1", "c"]
    );

    // A throw after two writes: neither lands.
    let res = server.get("/n/half-written").await;
    assert_eq!(res.status, 500);
    assert_eq!(res.text(), "object failed: failed halfway");
    assert_eq!(json(&server, "/n/list").await, all);

    assert_eq!(
        json(&server, "/n/in-event").await,
        serde_json::json!({"a:0": 0, "a:1": 1})
    );
    assert_eq!(
        json(&server, "/n/transaction").await,
        serde_json::json!({"kept": "kept", "thrown": "no", "after": {"t:kept": true}})
    );
    assert_eq!(json(&server, "/n/copy").await, serde_json::json!({"n": 1}));
    let res = server.get("/n/bad-key").await;
    assert_eq!(res.status, 500);
    assert!(
        res.text().contains("Keys cannot be larger than 2048 bytes"),
        "{}",
        res.text()
    );
    // Another object has its own keys.
    assert_eq!(json(&server, "/other/list").await, serde_json::json!({}));
    assert_eq!(
        json(&server, "/n/delete-all").await,
        serde_json::json!({"fresh": 1})
    );
    // Everything above survives a restart as it was committed.
    drop(server);
    let server = TestServer::start(app.path(), &[]);
    assert_eq!(
        json(&server, "/n/list").await,
        serde_json::json!({"fresh": 1})
    );
}

#[tokio::test]
async fn an_alarm_set_before_a_kill_9_fires_after_the_restart_without_the_object_being_used() {
    let app = TestApp::new(&[
        ("wrangler.toml", STORAGE_WRANGLER),
        ("src/index.js", STORAGE_WORKER),
    ]);
    let server = TestServer::start(app.path(), &[]);
    assert_eq!(
        json(&server, "/room/arm?ms=1500").await,
        serde_json::json!({"alarm": true})
    );
    crate::harness::signal(server.pid(), libc::SIGKILL);
    drop(server);
    // Nothing after the restart touches the object: only the worker's KV is read.
    let server = TestServer::start(app.path(), &[]);
    // The first attempt fails, the retry 2 s later succeeds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while tokio::time::Instant::now() < deadline {
        seen = server.get("/alarms/").await.text();
        if seen == "[0,1]" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "[0,1]", "{}", server.logs());
    // The retry's write landed, and the alarm is spent.
    let res = server.get("/room/arm?ms=3600000").await;
    assert_eq!(res.status, 200);
    let listed = json(&server, "/room/list").await;
    assert_eq!(listed["alarmed"], 1, "{listed}");
}
