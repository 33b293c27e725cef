//! Durable Objects on nimbus's store (issue 15): one commit per event, `transaction()`,
//! `deleteAll()`, `list()` ranges, and alarms that fire after a kill -9 of nimbus without
//! the object being used again; the SQLite-backed storage API (`sql.exec`).

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

/// An object using the SQLite-backed storage API: a table made in its constructor, rows
/// with bindings and blobs, cursors, and what `sql.exec` refuses.
const SQL_WORKER: &str = r#"
import { DurableObject } from 'cloudflare:workers';

export class Notes extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec('CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, data BLOB)');
  }

  async fetch(request) {
    const url = new URL(request.url);
    const sql = this.sql;
    switch (url.pathname.split('/')[2]) {
      case 'add': {
        const cursor = sql.exec('INSERT INTO notes (body, data) VALUES (?, ?)', url.searchParams.get('body'), new Uint8Array([1, 2, 3]));
        return Response.json({ rowsWritten: cursor.rowsWritten });
      }
      case 'add-then-throw':
        sql.exec('INSERT INTO notes (body) VALUES (?)', 'never');
        await this.ctx.storage.put('never', true);
        throw new Error('thrown after a write');
      case 'list': {
        const cursor = sql.exec('SELECT id, body, data FROM notes ORDER BY id');
        const rows = cursor.toArray().map((r) => ({ id: r.id, body: r.body, data: r.data && [...new Uint8Array(r.data)] }));
        return Response.json({
          rows,
          columns: cursor.columnNames,
          readAll: cursor.rowsRead >= rows.length,
          sized: sql.databaseSize > 0,
          kv: (await this.ctx.storage.get('never')) ?? null,
        });
      }
      case 'raw':
        return Response.json(sql.exec('SELECT count(*), max(id) FROM notes').raw().toArray());
      case 'wipe':
      case 'wipe-then-throw':
        // deleteAll() drops the tables too; SQL after it builds anew.
        await this.ctx.storage.deleteAll();
        sql.exec('CREATE TABLE fresh (x)');
        if (url.pathname.endsWith('throw')) throw new Error('thrown after deleteAll');
        return Response.json(null);
      case 'txn': {
        // transaction() and transactionSync() roll their SQL back with their keys.
        const storage = this.ctx.storage;
        const add = (body) => sql.exec('INSERT INTO notes (body) VALUES (?)', body);
        await storage.transaction(async () => add('kept'));
        try { await storage.transaction(async () => { add('undone'); throw new Error('undo'); }); } catch {}
        await storage.transaction(async (txn) => { add('rolled back'); txn.rollback(); });
        try { storage.transactionSync(() => { add('sync undone'); throw new Error('undo'); }); } catch {}
        const sync = storage.transactionSync(() => add('sync kept').rowsWritten);
        return Response.json({ sync, bodies: sql.exec('SELECT body FROM notes ORDER BY id').toArray().map((r) => r.body) });
      }
      case 'tables':
        return Response.json(sql.exec("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").toArray().map((r) => r.name));
      case 'one': {
        const out = { one: sql.exec('SELECT body FROM notes WHERE id = ?', 1).one() };
        try { sql.exec('SELECT body FROM notes').one(); } catch (e) { out.many = e.message; }
        try { sql.exec('SELECT body FROM notes WHERE id = 0').one(); } catch (e) { out.none = e.message; }
        return Response.json(out);
      }
      case 'bad': {
        const out = {};
        for (const [name, query, ...bindings] of [
          ['missing', 'SELECT * FROM missing'],
          ['begin', 'BEGIN TRANSACTION'],
          ['attach', "ATTACH DATABASE '/tmp/elsewhere.db' AS elsewhere"],
          ['bindings', 'SELECT ?', 1, 2],
          ['binding', 'SELECT ?', {}],
        ]) {
          try { sql.exec(query, ...bindings); out[name] = 'no error'; } catch (e) { out[name] = e.message; }
        }
        return Response.json(out);
      }
      default:
        return new Response('not found', { status: 404 });
    }
  }
}

export default {
  async fetch(request, env) {
    const name = new URL(request.url).pathname.split('/')[1];
    return env.NOTES.get(env.NOTES.idFromName(name)).fetch(request);
  },
};
"#;

const SQL_WRANGLER: &str = r#"name = "sql-notes"
main = "src/index.js"

[[durable_objects.bindings]]
name = "NOTES"
class_name = "Notes"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Notes"]
"#;

#[tokio::test]
async fn durable_object_sql_storage_keeps_each_objects_tables_and_commits_per_event() {
    let app = TestApp::new(&[
        ("wrangler.toml", SQL_WRANGLER),
        ("src/index.js", SQL_WORKER),
    ]);
    let server = TestServer::start(app.path(), &[]);
    assert_eq!(
        json(&server, "/a/add?body=first").await,
        serde_json::json!({"rowsWritten": 1})
    );
    json(&server, "/a/add?body=second").await;
    // A throw after a SQL write and a put lands neither.
    let res = server.get("/a/add-then-throw").await;
    assert_eq!(res.status, 500, "{}", res.text());
    let listed = serde_json::json!({
        "rows": [
            {"id": 1, "body": "first", "data": [1, 2, 3]},
            {"id": 2, "body": "second", "data": [1, 2, 3]},
        ],
        "columns": ["id", "body", "data"],
        "readAll": true,
        "sized": true,
        "kv": null,
    });
    assert_eq!(json(&server, "/a/list").await, listed);
    assert_eq!(json(&server, "/a/raw").await, serde_json::json!([[2, 2]]));
    assert_eq!(
        json(&server, "/a/one").await,
        serde_json::json!({
            "one": {"body": "first"},
            "many": "Expected exactly one result from SQL query, but got multiple results.",
            "none": "Expected exactly one result from SQL query, but got no results.",
        })
    );
    let bad = json(&server, "/a/bad").await;
    let says = |name: &str, what: &str| {
        assert!(
            bad[name].as_str().is_some_and(|m| m.contains(what)),
            "{name}: {bad}"
        );
    };
    says("missing", "no such table: missing");
    says("begin", "BEGIN is not allowed in sql.exec()");
    says("attach", "too many attached databases");
    says("bindings", "Wrong number of parameter bindings");
    says("binding", "a SQL binding is");
    // Another object has its own database: its constructor's table, empty.
    let other = json(&server, "/b/list").await;
    assert_eq!(other["rows"], serde_json::json!([]), "{other}");
    assert_eq!(
        json(&server, "/d/txn").await,
        serde_json::json!({"sync": 1, "bodies": ["kept", "sync kept"]})
    );
    // deleteAll() drops an object's tables with its keys, or, if the event throws, neither.
    json(&server, "/c/add?body=x").await;
    let res = server.get("/c/wipe-then-throw").await;
    assert_eq!(res.status, 500, "{}", res.text());
    assert_eq!(
        json(&server, "/c/tables").await,
        serde_json::json!(["notes"])
    );
    json(&server, "/c/wipe").await;
    assert_eq!(
        json(&server, "/c/tables").await,
        serde_json::json!(["fresh"])
    );
    // And everything committed survives a restart.
    drop(server);
    let server = TestServer::start(app.path(), &[]);
    assert_eq!(json(&server, "/a/list").await, listed);
}

/// `nimbus invoke` without a running server keeps a Durable Object's storage in the app's
/// store too, where the next `nimbus up` finds it.
#[tokio::test]
async fn nimbus_invoke_reaches_durable_object_storage_in_the_apps_store() {
    let app = TestApp::new(&[
        ("wrangler.toml", SQL_WRANGLER),
        ("src/index.js", SQL_WORKER),
    ]);
    let event = serde_json::json!({
        "version": "2.0",
        "rawPath": "/a/add",
        "rawQueryString": "body=from-invoke",
        "headers": {"host": "localhost"},
        "requestContext": {"http": {"method": "GET", "path": "/a/add"}},
    })
    .to_string();
    let out = app.nimbus(&["invoke", "sql-notes", "--data", &event]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let answer: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(answer["body"], r#"{"rowsWritten":1}"#, "{answer}");
    assert_eq!(answer["isBase64Encoded"], false, "{answer}");

    let server = TestServer::start(app.path(), &[]);
    let listed = json(&server, "/a/list").await;
    assert_eq!(
        listed["rows"],
        serde_json::json!([{"id": 1, "body": "from-invoke", "data": [1, 2, 3]}]),
        "{listed}"
    );
}
