//! Workers' WebSockets (issue 15): a `WebSocketPair` echoed by a plain worker, and a chat
//! room Durable Object using the hibernation API (`state.acceptWebSocket`,
//! `webSocketMessage`, `webSocketClose`, `getWebSockets`) broadcasting to 20 clients of
//! the `ws` npm package; an idle object evicted and rebuilt with its sockets.

use std::process::Command;

use serde_json::Value;

use crate::harness::{TestApp, TestServer};
use crate::websocket::ws_package;

const CHAT_WORKER: &str = r#"
import { DurableObject } from 'cloudflare:workers';

export class ChatRoom extends DurableObject {
  async fetch(request) {
    const name = new URL(request.url).searchParams.get('name');
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server, [name]);
    server.serializeAttachment({ name });
    server.send(JSON.stringify({ joined: name }));
    return new Response(null, { status: 101, webSocket: client });
  }

  async webSocketMessage(ws, message) {
    const { name } = ws.deserializeAttachment();
    if (message === 'who') {
      const names = this.ctx.getWebSockets().map((s) => this.ctx.getTags(s)[0]).sort();
      ws.send(JSON.stringify({ who: names }));
      return;
    }
    const n = ((await this.ctx.storage.get('messages')) || 0) + 1;
    await this.ctx.storage.put('messages', n);
    for (const socket of this.ctx.getWebSockets()) socket.send(JSON.stringify({ from: name, text: message, n }));
  }

  async webSocketClose(ws, code, reason) {
    const { name } = ws.deserializeAttachment();
    await this.ctx.storage.put('closed', [...((await this.ctx.storage.get('closed')) || []), `${name}:${code}`]);
    for (const socket of this.ctx.getWebSockets()) socket.send(JSON.stringify({ left: name }));
  }

  async stats() {
    return { messages: await this.ctx.storage.get('messages'), closed: await this.ctx.storage.get('closed'), open: this.ctx.getWebSockets().length };
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === '/echo') {
      if (request.headers.get('upgrade') !== 'websocket') return new Response('expected a WebSocket', { status: 426 });
      const pair = new WebSocketPair();
      const [client, server] = [pair[0], pair[1]];
      server.accept();
      server.addEventListener('message', (event) => {
        if (event.data === 'bye') return server.close(4000, 'asked to');
        const kind = typeof event.data === 'string' ? 'text' : `binary:${event.data.byteLength}`;
        server.send(`echo ${kind} ${typeof event.data === 'string' ? event.data : ''}`.trim());
        if (typeof event.data !== 'string') server.send(event.data);
      });
      return new Response(null, { status: 101, webSocket: client });
    }
    const room = env.ROOMS.get(env.ROOMS.idFromName('lobby'));
    if (url.pathname === '/stats') return Response.json(await room.stats());
    return room.fetch(request);
  },
};
"#;

const CHAT_WRANGLER: &str = r#"name = "chat"
main = "src/index.js"

[[durable_objects.bindings]]
name = "ROOMS"
class_name = "ChatRoom"

[[migrations]]
tag = "v1"
new_classes = ["ChatRoom"]
"#;

/// Drives the clients: the echo socket, then 20 chat clients that each send one
/// message, and prints what each saw as JSON.
const DRIVER_JS: &str = r#"
const WebSocket = require('ws');
const base = process.env.WS_URL;
const N = 20;

function open(path) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(base + path);
    const got = [];
    const waiters = [];
    ws.on('message', (data, binary) => {
      got.push(binary ? { binary: [...data] } : String(data));
      for (const w of waiters.splice(0)) w();
    });
    ws.on('open', () => resolve({ ws, got, until: (pred) => new Promise((res) => {
      const check = () => (pred(got) ? res(got) : waiters.push(check));
      check();
    }) }));
    ws.on('unexpected-response', (_req, res) => reject(new Error(`refused: ${res.statusCode}`)));
    ws.on('error', reject);
  });
}

(async () => {
  const out = {};
  // A plain worker echoes text and binary, and closes when asked.
  const echo = await open('/echo');
  echo.ws.send('hello');
  echo.ws.send(Buffer.from([0, 1, 2, 255]));
  await echo.until((g) => g.length >= 3);
  const closed = new Promise((res) => echo.ws.on('close', (code, reason) => res({ code, reason: String(reason) })));
  echo.ws.send('bye');
  out.echo = { got: echo.got, closed: await closed };

  // The chat room: 20 clients, each says one thing; everyone hears all 20.
  const clients = [];
  for (let i = 0; i < N; i++) clients.push(await open(`/chat?name=c${i}`));
  for (const c of clients) await c.until((g) => g.some((m) => m.includes('joined')));
  await Promise.all(clients.map((c, i) => c.ws.send(`hi from ${i}`)));
  const said = (g) => g.filter((m) => typeof m === 'string' && m.includes('"text"'));
  await Promise.all(clients.map((c) => c.until((g) => said(g).length >= N)));
  out.heard = clients.map((c) => said(c.got).map((m) => JSON.parse(m).from).sort());
  out.counts = clients.map((c) => said(c.got).map((m) => JSON.parse(m).n));
  clients[0].ws.send('who');
  await clients[0].until((g) => g.some((m) => m.includes('"who"')));
  out.who = JSON.parse(clients[0].got.find((m) => m.includes('"who"'))).who;
  // One leaves: the others hear it.
  clients[N - 1].ws.close(1000, 'done');
  await Promise.all(clients.slice(0, N - 1).map((c) => c.until((g) => g.some((m) => m.includes('"left"')))));
  out.leftHeardBy = clients.slice(0, N - 1).filter((c) => c.got.some((m) => m.includes(`"left":"c${N - 1}"`))).length;
  for (const c of clients.slice(0, N - 1)) c.ws.close();
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
"#;

#[tokio::test]
async fn a_chat_room_durable_object_broadcasts_to_20_websocket_clients() {
    let ws = ws_package();
    let app = TestApp::new(&[
        ("wrangler.toml", CHAT_WRANGLER),
        ("src/index.js", CHAT_WORKER),
        ("driver.js", DRIVER_JS),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let out = run_driver(&app, ws, format!("ws://{}", server.addr), &[], || {
        server.logs()
    })
    .await;

    assert_eq!(
        out["echo"]["got"],
        serde_json::json!(["echo text hello", "echo binary:4", {"binary": [0, 1, 2, 255]}]),
        "{out}"
    );
    assert_eq!(
        out["echo"]["closed"],
        serde_json::json!({"code": 4000, "reason": "asked to"})
    );

    let mut everyone: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    everyone.sort();
    for heard in out["heard"].as_array().expect("an array") {
        assert_eq!(heard, &serde_json::json!(everyone), "{out}");
    }
    // The storage count went up once per message, one event at a time: every client
    // saw the counts 1..=20 in the order they were broadcast.
    for counts in out["counts"].as_array().expect("an array") {
        assert_eq!(
            counts,
            &serde_json::json!((1..=20).collect::<Vec<_>>()),
            "{out}"
        );
    }
    assert_eq!(out["who"], serde_json::json!(everyone));
    assert_eq!(out["leftHeardBy"], 19);

    // Every close reached webSocketClose, and the object's sockets are gone.
    let mut stats = Value::Null;
    for _ in 0..100 {
        stats = server.get("/stats").await.json();
        if stats["open"] == 0 && stats["closed"].as_array().is_some_and(|c| c.len() == 20) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(stats["open"], 0, "{stats}");
    assert_eq!(stats["messages"], 20, "{stats}");
    assert!(
        stats["closed"]
            .as_array()
            .is_some_and(|c| c.contains(&Value::String("c19:1000".to_owned()))),
        "{stats}"
    );
}

const HIBERNATING_WORKER: &str = r#"
import { DurableObject } from 'cloudflare:workers';

let constructed = 0;

export class Room extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    constructed += 1;
    this.memory = null;
    // What a woken object knows of its sockets comes from their attachments.
    this.restored = ctx.getWebSockets().map((ws) => ws.deserializeAttachment().name).sort();
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('ping', 'pong'));
  }

  async fetch(request) {
    const name = new URL(request.url).searchParams.get('name');
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server, [`tag-${name}`]);
    server.serializeAttachment({ name, joinedIn: constructed });
    this.memory = 'kept in memory';
    return new Response(null, { status: 101, webSocket: client });
  }

  async webSocketMessage(ws, message) {
    // SQL goes on where it was after an eviction (its database closed and opened again).
    const sql = this.ctx.storage.sql;
    sql.exec('CREATE TABLE IF NOT EXISTS said (message TEXT)');
    sql.exec('INSERT INTO said VALUES (?)', message);
    ws.send(JSON.stringify({
      said: message,
      nSaid: sql.exec('SELECT count(*) AS n FROM said').one().n,
      constructed,
      memory: this.memory,
      me: ws.deserializeAttachment(),
      tags: this.ctx.getTags(ws),
      open: this.ctx.getWebSockets().length,
      restored: this.restored,
      autoResponded: this.ctx.getWebSocketAutoResponseTimestamp(ws) instanceof Date,
    }));
  }

  async webSocketClose(ws, code) {
    const { name } = ws.deserializeAttachment();
    await this.ctx.storage.put(`closed:${name}`, `${name}:${code}:constructed ${constructed}`);
  }

  async closed() {
    return (await this.ctx.storage.get('closed:a')) ?? null;
  }
}

export default {
  async fetch(request, env) {
    const room = env.ROOMS.get(env.ROOMS.idFromName('quiet'));
    if (new URL(request.url).pathname === '/closed') return Response.json(await room.closed());
    return room.fetch(request);
  },
};
"#;

const HIBERNATING_WRANGLER: &str = r#"name = "quiet"
main = "src/index.js"

[[durable_objects.bindings]]
name = "ROOMS"
class_name = "Room"

[[migrations]]
tag = "v1"
new_classes = ["Room"]
"#;

/// Two clients join; `a` speaks at once, `b` after the object was evicted; `b` pings
/// after it was evicted again (answered without waking it), and `a` leaves after that;
/// prints what each heard as JSON.
const HIBERNATING_DRIVER_JS: &str = r#"
const WebSocket = require('ws');
const base = process.env.WS_URL;
const idle = Number(process.env.IDLE_MS);

function open(path) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(base + path);
    const got = [];
    const waiters = [];
    ws.on('message', (data) => {
      got.push(String(data).startsWith('{') ? JSON.parse(String(data)) : String(data));
      for (const w of waiters.splice(0)) w();
    });
    const next = () => new Promise((res) => {
      const n = got.length;
      const check = () => (got.length > n ? res(got[n]) : waiters.push(check));
      waiters.push(check);
    });
    ws.on('open', () => resolve({ ws, ask: (text) => { const p = next(); ws.send(text); return p; } }));
    ws.on('unexpected-response', (_req, res) => reject(new Error(`refused: ${res.statusCode}`)));
    ws.on('error', reject);
  });
}
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

(async () => {
  const a = await open('/room?name=a');
  const b = await open('/room?name=b');
  const out = { awake: await a.ask('first') };
  await sleep(idle * 3);
  out.woken = await b.ask('second');
  out.again = await a.ask('third');
  await sleep(idle * 3);
  out.pong = await b.ask('ping');
  await sleep(idle * 3);
  a.ws.close(1000);
  await new Promise((res) => a.ws.on('close', res));
  // The close reaches the object as an event of its own; b asks until it was.
  for (let i = 0; i < 40; i++) {
    out.afterClose = await b.ask('fourth');
    if (out.afterClose.open === 1) break;
    await sleep(25);
  }
  b.ws.close();
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
"#;

#[tokio::test]
async fn an_idle_durable_object_is_evicted_and_rebuilt_with_its_websockets_and_attachments() {
    let ws = ws_package();
    let app = TestApp::new(&[
        ("wrangler.toml", HIBERNATING_WRANGLER),
        ("src/index.js", HIBERNATING_WORKER),
        ("driver.js", HIBERNATING_DRIVER_JS),
    ]);
    // Objects are evicted after half the idle timeout: 300 ms here. The host itself
    // stays while it has sockets.
    let server = TestServer::start(app.path(), &["--idle-timeout", "600ms"]);
    let out = run_driver(
        &app,
        ws,
        format!("ws://{}", server.addr),
        &[("IDLE_MS", "300")],
        || server.logs(),
    )
    .await;

    // Before eviction: the instance that accepted both sockets, with its memory.
    assert_eq!(
        out["awake"],
        serde_json::json!({"said": "first", "nSaid": 1, "constructed": 1, "memory": "kept in memory",
            "me": {"name": "a", "joinedIn": 1}, "tags": ["tag-a"], "open": 2, "restored": [],
            "autoResponded": false}),
        "{out}"
    );
    // After: a new instance (the constructor ran again, the memory is gone) finds both
    // sockets, their tags and their attachments.
    assert_eq!(
        out["woken"],
        serde_json::json!({"said": "second", "nSaid": 2, "constructed": 2, "memory": null,
            "me": {"name": "b", "joinedIn": 1}, "tags": ["tag-b"], "open": 2,
            "restored": ["a", "b"], "autoResponded": false}),
        "{out}"
    );
    assert_eq!(out["again"]["constructed"], 2, "{out}");
    assert_eq!(out["again"]["nSaid"], 3, "{out}");
    assert_eq!(out["again"]["me"]["name"], "a", "{out}");
    // The automatic response answered without building the object (had it, the close
    // below would find a fourth instance); the object sees when it answered.
    assert_eq!(out["pong"], "pong", "{out}");
    // A close wakes an evicted object too; the socket is gone from it after.
    assert_eq!(out["afterClose"]["open"], 1, "{out}");
    assert_eq!(out["afterClose"]["constructed"], 3, "{out}");
    assert_eq!(out["afterClose"]["autoResponded"], true, "{out}");
    let closed: Value = server.get("/closed").await.json();
    assert_eq!(closed, "a:1000:constructed 3", "{out}");
}

/// A worker deployed to `nimbus server` serves its WebSockets on the server's gateway at
/// `ws://HOST/{name}/{stage}/...`: the echo socket and the chat room of 20 clients.
#[tokio::test]
async fn a_deployed_worker_serves_its_websockets_on_nimbus_server() {
    let ws = ws_package();
    let host = crate::deploy::Host::start();
    let token = host.new_token();
    let app = TestApp::new(&[
        ("wrangler.toml", CHAT_WRANGLER),
        ("src/index.js", CHAT_WORKER),
        ("driver.js", DRIVER_JS),
    ]);
    crate::deploy::ok(&app.nimbus(&["deploy", ".", "--to", &host.url(), "--token", &token]));
    let out = run_driver(
        &app,
        ws,
        format!("ws://{}/chat/dev", host.gateway),
        &[],
        || host.logs(),
    )
    .await;
    assert_eq!(
        out["echo"]["closed"],
        serde_json::json!({"code": 4000, "reason": "asked to"}),
        "{out}"
    );
    let mut everyone: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    everyone.sort();
    for heard in out["heard"].as_array().expect("an array") {
        assert_eq!(heard, &serde_json::json!(everyone), "{out}");
    }
    assert_eq!(out["leftHeardBy"], 19, "{out}");
}

/// Runs the app's `driver.js` with Node (the `ws` package on its path) against `url`, with
/// `env` besides; its stdout parsed as JSON. A failing driver fails the test with its
/// output and `logs()`.
async fn run_driver(
    app: &TestApp,
    ws: std::path::PathBuf,
    url: String,
    env: &[(&str, &str)],
    logs: impl FnOnce() -> String,
) -> Value {
    let mut command = Command::new("node");
    command
        .arg(app.path().join("driver.js"))
        .env("NODE_PATH", ws.join("node_modules"))
        .env("WS_URL", url)
        .envs(env.iter().copied());
    let out = tokio::task::spawn_blocking(move || command.output().expect("running node"))
        .await
        .expect("the driver task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\nnimbus logs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    serde_json::from_str(stdout.trim()).expect("the driver prints JSON")
}
