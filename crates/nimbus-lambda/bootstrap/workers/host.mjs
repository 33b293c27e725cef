// nimbus Workers host: one process per worker, the module loaded once, many invocations
// in flight at once (as one isolate serves many requests on Cloudflare).
//
// nimbus writes one JSON frame a line on stdin:
//   {"id":N,"event":{...},"t":"invoke","id":N,"rid":"request id"}  an API Gateway (2.0
//                                                   or 1.0), SQS or scheduled event
// and reads one a line on stdout:
//   {"t":"ready"} once the module is loaded, {"t":"init_error","error":{...}} if it failed;
//   {"t":"res","id":N,"ok":{proxy result}} or {"t":"res","id":N,"error":{...}};
//   {"t":"log","rid":"...","s":"out"|"err","m":"text"}       console output of a request;
//   {"t":"tick"}                                              the event loop is not stuck;
//   {"t":"do","q":N,"op":"get"|"list"|"commit"|"getAlarm",...} a Durable Object storage call,
//                                          answered on stdin by {"t":"do_res","q":N,"ok"|"error"}.
//   {"t":"ws","sid":"...","op":"send","text"|"b64"} or {"op":"close","code","reason"}: a
//                                          frame for a WebSocket the worker accepted.
// An event {"nimbusAlarm":{"class","id","retryCount"}} fires a Durable Object's alarm;
// {"nimbusSocket":{"sid","type":"message"|"close",...}} is what a WebSocket's client did.
// Bindings call nimbus's services API (NIMBUS_API, NIMBUS_TOKEN) through the shipped client.
import { AsyncLocalStorage } from 'node:async_hooks';
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { format } from 'node:util';
import vm from 'node:vm';

const require = createRequire(import.meta.url);
const nimbus = require('nimbus');

// Frames are written in one piece per turn of the event loop: answers that finish
// together (many requests in flight) cost one write, not one each. Log lines and the
// frames before an exit go at once, so nothing is lost if the process then dies.
const writeOut = process.stdout.write.bind(process.stdout);
let unwritten = '';
function flushFrames() {
  if (!unwritten) return;
  const text = unwritten;
  unwritten = '';
  writeOut(text);
}
function frame(obj) {
  if (!unwritten) setImmediate(flushFrames);
  unwritten += JSON.stringify(obj) + '\n';
}
function frameNow(obj) {
  unwritten += JSON.stringify(obj) + '\n';
  flushFrames();
}

// ---------------------------------------------------------------------------
// Console output goes to nimbus with the request it belongs to.

const current = new AsyncLocalStorage();
function log(stream, args) {
  const store = current.getStore();
  frameNow({ t: 'log', rid: store ? store.rid : null, s: stream, m: format(...args) });
}
for (const [name, stream] of [
  ['log', 'out'],
  ['info', 'out'],
  ['debug', 'out'],
  ['trace', 'err'],
  ['warn', 'err'],
  ['error', 'err'],
]) {
  console[name] = (...args) => log(stream, args);
}
process.stdout.write = (chunk) => {
  log('out', [String(chunk).replace(/\n$/, '')]);
  return true;
};

// ---------------------------------------------------------------------------
// Configuration

const config = JSON.parse(process.env.NIMBUS_WORKER || '{}');
const appDir = process.env.LAMBDA_TASK_ROOT || process.cwd();
const mainPath = isAbsolute(process.env._HANDLER) ? process.env._HANDLER : join(appDir, process.env._HANDLER);

// ---------------------------------------------------------------------------
// Bindings

function toBytes(value) {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return null;
}

async function bodyBytes(value) {
  const bytes = toBytes(value);
  if (bytes) return bytes;
  if (value && typeof value.getReader === 'function') return Buffer.from(await new Response(value).arrayBuffer());
  if (value instanceof Blob) return Buffer.from(await value.arrayBuffer());
  if (value === null || value === undefined) return Buffer.alloc(0);
  throw new TypeError('the value must be a string, ArrayBuffer, ArrayBufferView, ReadableStream or Blob');
}

function kvDecode(buf, type) {
  switch (type) {
    case 'json':
      return JSON.parse(buf.toString('utf8'));
    case 'arrayBuffer':
      return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    case 'stream':
      return new Response(buf).body;
    default:
      return buf.toString('utf8');
  }
}

function kvType(options) {
  const type = typeof options === 'string' ? options : (options && options.type) || 'text';
  if (!['text', 'json', 'arrayBuffer', 'stream'].includes(type)) {
    throw new TypeError(`Unknown response type. Possible types are "text", "arrayBuffer", "json", and "stream".`);
  }
  return type;
}

class KVNamespace {
  #kv;
  constructor(namespace) {
    this.#kv = nimbus.kv(namespace);
  }
  async get(key, options) {
    const type = kvType(options);
    const value = await this.#kv.get(key, { type: 'buffer' });
    return value === null ? null : kvDecode(value, type);
  }
  async getWithMetadata(key, options) {
    const type = kvType(options);
    const { value, metadata } = await this.#kv.getWithMetadata(key, { type: 'buffer' });
    return { value: value === null ? null : kvDecode(value, type), metadata: value === null ? null : metadata ?? null, cacheStatus: null };
  }
  async put(key, value, options = {}) {
    // Cloudflare's own rule: a TTL shorter than a minute is refused.
    if (options.expirationTtl !== undefined && Number(options.expirationTtl) < 60) {
      throw new Error(`KV PUT failed: 400 Invalid expiration_ttl of ${options.expirationTtl}. Expiration TTL must be at least 60.`);
    }
    const bytes = await bodyBytes(value);
    await this.#kv.put(key, bytes, {
      expirationTtl: options.expirationTtl,
      expiration: options.expiration,
      metadata: options.metadata,
    });
  }
  async delete(key) {
    await this.#kv.delete(key);
  }
  async list(options = {}) {
    const res = await this.#kv.list({ prefix: options.prefix, cursor: options.cursor, limit: options.limit });
    const out = { keys: res.keys || [], list_complete: !!res.list_complete, cacheStatus: null };
    if (res.cursor) out.cursor = res.cursor;
    return out;
  }
}

// Queue messages carry their content type in an attribute, so the consumer gets back
// what the producer sent (Cloudflare's `contentType`: json by default, text, bytes, v8).
const CONTENT_TYPE_ATTR = 'nimbus-content-type';

function encodeMessage(body, contentType = 'json') {
  switch (contentType) {
    case 'text':
      return String(body);
    case 'bytes':
      return Buffer.from(toBytes(body) || []).toString('base64');
    case 'v8':
      return require('node:v8').serialize(body).toString('base64');
    case 'json':
      return JSON.stringify(body);
    default:
      throw new TypeError(`Unknown content type "${contentType}"; use json, text, bytes or v8`);
  }
}

function decodeMessage(body, contentType) {
  switch (contentType) {
    case 'json':
      return JSON.parse(body);
    case 'bytes': {
      const buf = Buffer.from(body, 'base64');
      return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    }
    case 'v8':
      return require('node:v8').deserialize(Buffer.from(body, 'base64'));
    default:
      // text, or a message another client sent without a content type
      return body;
  }
}

class Queue {
  #queue;
  constructor(name) {
    this.#queue = nimbus.queue(name);
  }
  async send(body, options = {}) {
    const contentType = options.contentType || 'json';
    await this.#queue.send(encodeMessage(body, contentType), {
      delaySeconds: options.delaySeconds,
      attributes: { [CONTENT_TYPE_ATTR]: contentType },
    });
  }
  async sendBatch(messages, options = {}) {
    const list = Array.from(messages);
    for (let start = 0; start < list.length; start += 10) {
      const res = await this.#queue.sendBatch(
        list.slice(start, start + 10).map((m) => {
          const contentType = m.contentType || 'json';
          return {
            body: encodeMessage(m.body, contentType),
            delaySeconds: m.delaySeconds ?? options.delaySeconds,
            attributes: { [CONTENT_TYPE_ATTR]: contentType },
          };
        }),
      );
      if (res && res.failed && res.failed.length) {
        throw new Error(`Queue sendBatch failed: ${res.failed.map((f) => f.message).join('; ')}`);
      }
    }
  }
}

class R2Object {
  constructor(key, info) {
    this.key = key;
    this.size = info.size ?? 0;
    this.etag = (info.eTag || '').replace(/"/g, '');
    this.httpEtag = `"${this.etag}"`;
    this.uploaded = info.lastModified ? new Date(info.lastModified) : new Date();
    this.httpMetadata = info.contentType ? { contentType: info.contentType } : {};
    this.customMetadata = {};
    this.version = this.etag;
    this.storageClass = 'Standard';
  }
  writeHttpMetadata(headers) {
    if (this.httpMetadata.contentType) headers.set('content-type', this.httpMetadata.contentType);
  }
}

class R2ObjectBody extends R2Object {
  #bytes;
  constructor(key, info, bytes) {
    super(key, info);
    this.#bytes = bytes;
    this.bodyUsed = false;
  }
  get body() {
    return new Response(this.#bytes).body;
  }
  async arrayBuffer() {
    const b = this.#bytes;
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  }
  async text() {
    return this.#bytes.toString('utf8');
  }
  async json() {
    return JSON.parse(this.#bytes.toString('utf8'));
  }
  async blob() {
    return new Blob([this.#bytes], { type: this.httpMetadata.contentType || '' });
  }
}

class R2Bucket {
  #bucket;
  constructor(name) {
    this.#bucket = nimbus.bucket(name);
  }
  async get(key) {
    const res = await this.#bucket.get(key);
    return res === null ? null : new R2ObjectBody(key, res, res.body);
  }
  async head(key) {
    const res = await this.#bucket.head(key);
    return res === null ? null : new R2Object(key, res);
  }
  async put(key, value, options = {}) {
    const bytes = await bodyBytes(value);
    let contentType = options.httpMetadata && options.httpMetadata.contentType;
    if (!contentType && options.httpMetadata instanceof Headers) contentType = options.httpMetadata.get('content-type');
    const res = await this.#bucket.put(key, bytes, { contentType: contentType || 'application/octet-stream' });
    return new R2Object(key, { size: bytes.length, eTag: res.eTag, contentType });
  }
  async delete(keys) {
    for (const key of Array.isArray(keys) ? keys : [keys]) await this.#bucket.delete(key);
  }
  async list(options = {}) {
    const res = await this.#bucket.list({ prefix: options.prefix, startAfter: options.cursor || options.startAfter, maxKeys: options.limit });
    const objects = (res.objects || []).map((o) => new R2Object(o.key, o));
    const out = { objects, truncated: !!res.isTruncated, delimitedPrefixes: [] };
    if (res.isTruncated) out.cursor = res.nextStartAfter || (objects.length ? objects[objects.length - 1].key : undefined);
    return out;
  }
}

class Fetcher {
  #function;
  constructor(name) {
    this.#function = name;
  }
  async fetch(input, init) {
    const request = new Request(input, init);
    const body = request.body ? Buffer.from(await request.arrayBuffer()) : null;
    const url = new URL(request.url);
    const headers = {};
    for (const [k, v] of request.headers) headers[k] = v;
    const event = {
      version: '2.0',
      routeKey: '$default',
      rawPath: url.pathname,
      rawQueryString: url.search.slice(1),
      headers: { host: url.host, ...headers },
      requestContext: { http: { method: request.method, path: url.pathname, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1' } },
      body: body ? body.toString('base64') : undefined,
      isBase64Encoded: !!body,
    };
    const res = await nimbus.invoke(this.#function, event);
    return responseFromResult(res);
  }
}

// ---------------------------------------------------------------------------
// Durable Objects: one live instance per id in this host (the only host of the worker),
// events delivered one at a time. Storage is nimbus's Durable Object store, reached with
// `{"t":"do"}` frames on stdout and answered by `{"t":"do_res"}` lines on stdin. Values
// are V8-serialized when put (a later change to the object does not reach storage) and
// deserialized on every read. An event's writes are kept aside and sent as one commit
// when it ends, before its answer leaves: they land together or not at all, and an event
// that throws leaves storage as the last completed event left it. Alarms live in the
// store; nimbus fires them (starting this host if need be) as `nimbusAlarm` events.

const v8 = require('node:v8');
const { createHash, randomBytes } = require('node:crypto');

const storageWaiters = new Map(); // q -> { resolve, reject }
let nextStorageCall = 1;
function storageCall(body) {
  const q = nextStorageCall++;
  return new Promise((resolve, reject) => {
    storageWaiters.set(q, { resolve, reject });
    frame({ t: 'do', q, ...body });
  });
}
function onStorageAnswer(msg) {
  const waiter = storageWaiters.get(msg.q);
  if (!waiter) return;
  storageWaiters.delete(msg.q);
  if (msg.error !== undefined) waiter.reject(new Error(msg.error));
  else waiter.resolve(msg.ok);
}

class DurableObjectId {
  #hex;
  constructor(hex, name) {
    this.#hex = hex;
    if (name !== undefined) this.name = name;
  }
  toString() {
    return this.#hex;
  }
  equals(other) {
    return other instanceof DurableObjectId && other.toString() === this.#hex;
  }
}

const liveObjects = new Map(); // `${class}/${id}` -> LiveObject

// Eviction: an object no event has run in for `objectIdleMs` (nimbus sets it: 10 s, as
// Cloudflare hibernates an idle object, or less under a short idle timeout) is dropped
// from memory. The WebSockets it accepted with `state.acceptWebSocket` stay open here,
// with their tags and attachments; the next event (a message, a close, a request, an
// alarm) builds the object again (its constructor runs) and `getWebSockets()` finds
// them. An object holding a socket it accepted itself (`ws.accept()`) is not evicted:
// only its own listeners know what to do with it.
const OBJECT_IDLE_MS = Number(config.objectIdleMs) > 0 ? Number(config.objectIdleMs) : 10_000;
const hibernatedSockets = new Map(); // `${class}/${id}` -> Set of sockets of an evicted object
const autoResponses = new Map(); // `${class}/${id}` -> WebSocketRequestResponsePair

globalThis.WebSocketRequestResponsePair = class WebSocketRequestResponsePair {
  #request;
  #response;
  constructor(request, response) {
    if (typeof request !== 'string' || typeof response !== 'string') {
      throw new TypeError('WebSocketRequestResponsePair takes a request and a response string');
    }
    this.#request = request;
    this.#response = response;
  }
  get request() {
    return this.#request;
  }
  get response() {
    return this.#response;
  }
};

function evictIdleObjects() {
  const now = Date.now();
  for (const [key, obj] of liveObjects) {
    if (obj.running > 0 || obj.pinned > 0 || now - obj.lastActive < OBJECT_IDLE_MS) continue;
    liveObjects.delete(key);
    // Its SQL database is closed in nimbus too (nothing is uncommitted between events).
    if (obj.sqlUsed) syncStorageCall({ op: 'sql.close', ...obj.ref });
    for (const ws of obj.sockets) ws.object = null;
    if (obj.sockets.size) hibernatedSockets.set(key, obj.sockets);
  }
}
setInterval(evictIdleObjects, Math.min(1000, Math.max(10, OBJECT_IDLE_MS / 4))).unref();

function checkKey(key) {
  if (typeof key !== 'string') throw new TypeError('Durable Object storage keys are strings');
  return key;
}

function inRange(key, o) {
  if (o.prefix !== undefined && !key.startsWith(o.prefix)) return false;
  if (o.start !== undefined && key < o.start) return false;
  if (o.startAfter !== undefined && key <= o.startAfter) return false;
  if (o.end !== undefined && key >= o.end) return false;
  return true;
}

class ObjectStorage {
  #live;
  constructor(live) {
    this.#live = live;
  }
  async get(keys) {
    if (Array.isArray(keys)) {
      if (keys.length > 128) throw new RangeError('get() takes at most 128 keys');
      const values = await this.#live.readMany(keys.map(checkKey));
      const out = new Map();
      keys.forEach((key, i) => {
        if (values[i] !== undefined) out.set(key, values[i]);
      });
      return out;
    }
    return (await this.#live.readMany([checkKey(keys)]))[0];
  }
  async put(keyOrEntries, value) {
    if (typeof keyOrEntries === 'object' && keyOrEntries !== null) {
      const entries = Object.entries(keyOrEntries);
      if (entries.length > 128) throw new RangeError('put() takes at most 128 entries');
      for (const [k, v] of entries) this.#live.write(checkKey(k), v8.serialize(v));
      return;
    }
    if (value === undefined) throw new TypeError('put() needs a value');
    this.#live.write(checkKey(keyOrEntries), v8.serialize(value));
  }
  async delete(keys) {
    if (Array.isArray(keys)) {
      if (keys.length > 128) throw new RangeError('delete() takes at most 128 keys');
      const values = await this.#live.readMany(keys.map(checkKey));
      for (const key of keys) this.#live.write(key, undefined);
      return values.filter((v) => v !== undefined).length;
    }
    const [value] = await this.#live.readMany([checkKey(keys)]);
    this.#live.write(keys, undefined);
    return value !== undefined;
  }
  async deleteAll() {
    this.#live.deleteAll();
  }
  async list(options = {}) {
    for (const k of ['prefix', 'start', 'startAfter', 'end']) {
      if (options[k] !== undefined && typeof options[k] !== 'string') throw new TypeError(`list() option ${k} must be a string`);
    }
    if (options.start !== undefined && options.startAfter !== undefined) throw new TypeError('list() takes start or startAfter, not both');
    if (options.limit !== undefined && !(Number.isInteger(options.limit) && options.limit > 0)) throw new RangeError('list() option limit must be a positive integer');
    return this.#live.list(options);
  }
  // The closure's writes, its SQL among them (a savepoint, opened at its first
  // statement), land with the event, or go if it throws or calls `txn.rollback()`.
  async transaction(closure) {
    const live = this.#live;
    const saved = live.snapshot();
    let rolledBack = false;
    const txn = new ObjectStorage(live);
    txn.rollback = () => {
      rolledBack = true;
      live.restore(saved);
    };
    live.beginSqlScope();
    try {
      const result = await closure(txn);
      if (rolledBack) live.restore(saved);
      live.endSqlScope(!rolledBack);
      return result;
    } catch (e) {
      live.restore(saved);
      live.endSqlScope(false);
      throw e;
    }
  }
  // As `transaction`, for a synchronous callback (Cloudflare's SQLite-backed objects).
  transactionSync(callback) {
    const live = this.#live;
    const saved = live.snapshot();
    live.beginSqlScope();
    try {
      const result = callback();
      live.endSqlScope(true);
      return result;
    } catch (e) {
      live.restore(saved);
      live.endSqlScope(false);
      throw e;
    }
  }
  async sync() {}
  get sql() {
    return this.#live.sqlStorage;
  }
  async getAlarm() {
    return this.#live.getAlarm();
  }
  async setAlarm(when) {
    const at = when instanceof Date ? when.getTime() : Number(when);
    if (!Number.isFinite(at)) throw new TypeError('setAlarm() takes a Date or milliseconds since the epoch');
    this.#live.pendingAlarm = at;
  }
  async deleteAlarm() {
    this.#live.pendingAlarm = null;
  }
}

// The SQLite-backed storage API (`state.storage.sql`): the object's own SQL database in
// nimbus's store, one transaction per event (committed with the event's other writes,
// rolled back if it throws). `exec` is synchronous, as on Cloudflare: the call is a
// `{"t":"sql"}` frame whose answer this thread waits for with its event loop stopped.

function sqlBinding(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('a SQL binding must be a finite number');
    return value;
  }
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'bigint') {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new RangeError('a bigint SQL binding must be a safe integer');
    }
    return Number(value);
  }
  const bytes = toBytes(value);
  if (bytes) return { b64: bytes.toString('base64') };
  throw new TypeError(`a SQL binding is a string, number, boolean, null or bytes; got ${typeof value}`);
}

function sqlResult(value) {
  if (value === null || typeof value !== 'object') return value;
  const buf = Buffer.from(value.b64, 'base64');
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

class SqlStorageCursor {
  #columns;
  #rows;
  #at = 0;
  constructor(res) {
    this.#columns = res.columns;
    this.#rows = res.rows;
    this.rowsRead = res.rowsRead;
    this.rowsWritten = res.rowsWritten;
  }
  get columnNames() {
    return this.#columns.slice();
  }
  #nextRaw() {
    if (this.#at >= this.#rows.length) return { done: true, value: undefined };
    return { done: false, value: this.#rows[this.#at++].map(sqlResult) };
  }
  next() {
    const { done, value } = this.#nextRaw();
    if (done) return { done, value };
    const row = {};
    this.#columns.forEach((column, i) => {
      row[column] = value[i];
    });
    return { done: false, value: row };
  }
  [Symbol.iterator]() {
    return this;
  }
  toArray() {
    return [...this];
  }
  one() {
    const rows = this.toArray();
    if (rows.length === 0) throw new Error('Expected exactly one result from SQL query, but got no results.');
    if (rows.length > 1) throw new Error('Expected exactly one result from SQL query, but got multiple results.');
    return rows[0];
  }
  raw() {
    const rows = {
      next: () => this.#nextRaw(),
      [Symbol.iterator]: () => rows,
      toArray: () => [...rows],
      columnNames: this.columnNames,
    };
    return rows;
  }
}

class SqlStorage {
  #live;
  constructor(live) {
    this.#live = live;
  }
  exec(query, ...bindings) {
    if (typeof query !== 'string') throw new TypeError('sql.exec() takes the query as a string');
    const res = this.#live.sqlCall({ op: 'sql.exec', query, bindings: bindings.map(sqlBinding) });
    return new SqlStorageCursor(res);
  }
  get databaseSize() {
    return this.#live.sqlCall({ op: 'sql.size' });
  }
}

class LiveObject {
  constructor(binding, id) {
    this.binding = binding;
    this.className = binding.class;
    this.id = id;
    this.ref = { class: binding.class, id: id.toString() };
    this.cache = new Map(); // key -> serialized value, or undefined when absent (committed state)
    this.pending = null; // the running event's writes: key -> serialized value | undefined
    this.pendingDeleteAll = false;
    this.pendingAlarm = undefined; // undefined: unchanged; null: cleared; a number: set
    this.alarm = undefined; // the committed alarm once known (null: none)
    this.chain = Promise.resolve();
    this.sqlDirty = false; // SQL ran since the last commit
    this.sqlUsed = false; // its SQL database is open in nimbus
    this.sqlScopes = []; // the transaction() calls running, innermost last
    this.sqlStorage = new SqlStorage(this);
    this.running = 0; // events started and not yet ended
    this.lastActive = Date.now();
    this.pinned = 0; // open sockets the object accepted itself, which keep it in memory
    // Accepted WebSockets (state.acceptWebSocket): those of this object before it was
    // evicted, if it was.
    const key = `${binding.class}/${id.toString()}`;
    this.key = key;
    this.sockets = hibernatedSockets.get(key) || new Set();
    hibernatedSockets.delete(key);
    for (const ws of this.sockets) ws.object = this;
    const state = {
      id,
      storage: new ObjectStorage(this),
      waitUntil() {},
      // Events already run one at a time, so the constructor's work finishes before the
      // first event.
      blockConcurrencyWhile: (fn) => fn(),
      acceptWebSocket: (ws, tags) => acceptWebSocket(this, ws, tags),
      getWebSockets: (tag) => socketsOf(this, tag),
      getTags: (ws) => tagsOf(ws),
      // Answered here without running (or waking) the object, as Cloudflare's edge does.
      setWebSocketAutoResponse: (pair) => {
        if (pair !== undefined && !(pair instanceof WebSocketRequestResponsePair)) {
          throw new TypeError('setWebSocketAutoResponse() takes a WebSocketRequestResponsePair');
        }
        if (pair === undefined) autoResponses.delete(key);
        else autoResponses.set(key, pair);
      },
      getWebSocketAutoResponse: () => autoResponses.get(key) ?? null,
      getWebSocketAutoResponseTimestamp: (ws) => (ws instanceof WorkerWebSocket && ws.autoResponseAt) || null,
    };
    this.state = state;
    const Class = workerModule && workerModule[binding.class];
    if (typeof Class !== 'function') {
      throw new Error(`the worker exports no Durable Object class ${binding.class}`);
    }
    this.instance = inObject(this, () => new Class(state, env));
    // What the constructor did in SQL (its CREATE TABLE IF NOT EXISTS) lands now.
    if (this.sqlDirty) {
      this.sqlDirty = false;
      syncStorageCall({ op: 'sql.commit', ...this.ref });
    }
  }
  async readMany(keys) {
    const out = new Array(keys.length);
    const missing = [];
    keys.forEach((key, i) => {
      if (this.pending && this.pending.has(key)) out[i] = this.pending.get(key);
      else if (this.pendingDeleteAll) out[i] = undefined;
      else if (this.cache.has(key)) out[i] = this.cache.get(key);
      else missing.push(i);
    });
    if (missing.length) {
      const values = await storageCall({ op: 'get', ...this.ref, keys: missing.map((i) => keys[i]) });
      missing.forEach((i, j) => {
        const bytes = values[j] === null ? undefined : Buffer.from(values[j], 'base64');
        this.cache.set(keys[i], bytes);
        out[i] = bytes;
      });
    }
    return out.map((bytes) => (bytes === undefined ? undefined : v8.deserialize(bytes)));
  }
  write(key, bytes) {
    if (!this.pending) this.pending = new Map();
    this.pending.set(key, bytes);
  }
  deleteAll() {
    this.pending = null;
    this.pendingDeleteAll = true;
    // The SQL tables go too, in the event's transaction (SQL after this builds anew).
    this.sqlCall({ op: 'sql.deleteAll' });
  }
  async list(options) {
    const overlay = this.pending !== null && this.pending.size > 0;
    const query = { prefix: options.prefix, start: options.start, startAfter: options.startAfter, end: options.end, reverse: !!options.reverse };
    // With writes of this event to merge, the store's page is taken whole and cut here.
    if (!overlay && options.limit !== undefined) query.limit = options.limit;
    let rows = [];
    if (!this.pendingDeleteAll) rows = await storageCall({ op: 'list', ...this.ref, options: query });
    const entries = new Map();
    for (const [key, b64] of rows) {
      const bytes = Buffer.from(b64, 'base64');
      this.cache.set(key, bytes);
      entries.set(key, bytes);
    }
    let keys;
    if (overlay) {
      for (const [key, bytes] of this.pending) {
        if (!inRange(key, options)) continue;
        if (bytes === undefined) entries.delete(key);
        else entries.set(key, bytes);
      }
      keys = [...entries.keys()].sort();
      if (options.reverse) keys.reverse();
      if (options.limit !== undefined) keys = keys.slice(0, options.limit);
    } else {
      keys = [...entries.keys()];
    }
    return new Map(keys.map((key) => [key, v8.deserialize(entries.get(key))]));
  }
  async getAlarm() {
    if (this.pendingAlarm !== undefined) return this.pendingAlarm;
    if (this.alarm === undefined) this.alarm = await storageCall({ op: 'getAlarm', ...this.ref });
    return this.alarm;
  }
  snapshot() {
    return { pending: this.pending && new Map(this.pending), deleteAll: this.pendingDeleteAll, alarm: this.pendingAlarm };
  }
  restore(saved) {
    this.pending = saved.pending && new Map(saved.pending);
    this.pendingDeleteAll = saved.deleteAll;
    this.pendingAlarm = saved.alarm;
  }
  // Drops the event's writes, its SQL statements among them.
  discard() {
    this.restore({ pending: null, deleteAll: false, alarm: undefined });
    if (this.sqlDirty) {
      this.sqlDirty = false;
      syncStorageCall({ op: 'sql.rollback', ...this.ref });
    }
  }
  // A transaction() inside the event: a savepoint, opened when SQL first runs in it.
  beginSqlScope() {
    this.sqlScopes.push({ opened: false });
  }
  endSqlScope(keep) {
    const depth = this.sqlScopes.length - 1;
    const scope = this.sqlScopes.pop();
    if (scope && scope.opened) syncStorageCall({ op: 'sql.savepoint', step: keep ? 'release' : 'rollback', depth, ...this.ref });
  }
  // Runs one SQL call, in the transaction of the running event.
  sqlCall(body) {
    this.sqlDirty = true;
    this.sqlUsed = true;
    this.sqlScopes.forEach((scope, depth) => {
      if (scope.opened) return;
      scope.opened = true;
      syncStorageCall({ op: 'sql.savepoint', step: 'open', depth, ...this.ref });
    });
    return syncStorageCall({ ...body, ...this.ref });
  }
  // Sends the event's writes as one commit (its SQL committed first).
  async commit() {
    const { pending, pendingDeleteAll: deleteAll, pendingAlarm: alarm, sqlDirty: sql } = this;
    this.restore({ pending: null, deleteAll: false, alarm: undefined });
    this.sqlDirty = false;
    if (!pending && !deleteAll && alarm === undefined && !sql) return;
    const writes = [...(pending || [])].map(([key, bytes]) => [key, bytes === undefined ? null : bytes.toString('base64')]);
    try {
      await storageCall({ op: 'commit', ...this.ref, sql, deleteAll, writes, alarm: alarm === undefined ? null : alarm === null ? 'clear' : alarm });
    } catch (e) {
      // What landed is unknown only if nimbus died; read it afresh either way.
      this.cache.clear();
      this.alarm = undefined;
      throw e;
    }
    if (deleteAll) this.cache.clear();
    for (const [key, bytes] of pending || []) this.cache.set(key, bytes);
    if (alarm !== undefined) this.alarm = alarm;
  }
  // A message or close of an accepted WebSocket, as an event of the object.
  socketEvent(ws, event) {
    const closing = event.type === 'close';
    if (closing) this.sockets.delete(ws);
    const handler = closing ? 'webSocketClose' : 'webSocketMessage';
    this.run(async () => {
      const method = this.instance[handler];
      if (typeof method !== 'function') return;
      if (closing) await method.call(this.instance, ws, event.code, event.reason, event.wasClean);
      else await method.call(this.instance, ws, event.data);
    }).catch((e) => console.error(`${handler}() of ${this.className} ${this.id} threw:`, e));
  }
  // Runs one event after the ones before it; its writes land before it resolves.
  run(event) {
    this.running += 1;
    const next = this.chain.then(async () => {
      try {
        const result = await inObject(this, event);
        await this.commit();
        return result;
      } catch (e) {
        this.discard();
        throw e;
      } finally {
        this.running -= 1;
        this.lastActive = Date.now();
      }
    });
    this.chain = next.catch(() => {});
    return next;
  }
}

// Runs `fn` as code of `obj`: a socket it accepts itself is then known to be its.
function inObject(obj, fn) {
  const store = current.getStore();
  return current.run({ rid: store ? store.rid : null, object: obj }, fn);
}

// ---------------------------------------------------------------------------
// WebSockets: `new WebSocketPair()` gives a client end, returned in a 101 Response's
// `webSocket`, and a server end the worker keeps. When the answer leaves, the server end
// gets an id; nimbus's gateway upgrades the connection, what the client sends comes back
// as `nimbusSocket` events, and what the server end sends goes out as {"t":"ws"} frames.
// `state.acceptWebSocket(ws)` (the hibernation API) makes a socket's messages and close
// events of the Durable Object (`webSocketMessage`, `webSocketClose`), delivered one at a
// time like its other events; the object and its sockets stay in this host.

const sockets = new Map(); // id -> the server end
const [CONNECTING, OPEN, CLOSING, CLOSED] = [0, 1, 2, 3];

class WorkerWebSocket extends EventTarget {
  #peer = null;
  #id = null;
  #unsent = []; // frames sent before the socket had an id
  #accepted = false;
  #unread = []; // events that came before accept()
  #attachment;
  constructor() {
    super();
    this.readyState = OPEN;
    this.object = null; // the live Durable Object that accepted it
    this.home = null; // which object accepted it: { binding, id, key }, kept while it is evicted
    this.autoResponseAt = null; // when the object's automatic response last answered it
    this.tags = [];
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
  }
  static pair() {
    const client = new WorkerWebSocket();
    const server = new WorkerWebSocket();
    client.#peer = server;
    server.#peer = client;
    return [client, server];
  }
  get peer() {
    return this.#peer;
  }
  get url() {
    return null;
  }
  get protocol() {
    return '';
  }
  get extensions() {
    return '';
  }
  accept() {
    if (this.#accepted) return;
    this.#accepted = true;
    // Accepted by a Durable Object's own code, not the hibernation API: the object stays.
    const store = current.getStore();
    if (store && store.object && !this.home) {
      this.pinnedObject = store.object;
      store.object.pinned += 1;
    }
    const unread = this.#unread;
    this.#unread = [];
    for (const event of unread) this.#dispatch(event);
  }
  bind(id) {
    this.#id = id;
    sockets.set(id, this);
    for (const f of this.#unsent) frame({ ...f, sid: id });
    this.#unsent = [];
  }
  #out(f) {
    if (this.#id) frame({ t: 'ws', sid: this.#id, ...f });
    else this.#unsent.push({ t: 'ws', ...f });
  }
  send(data) {
    if (this.readyState !== OPEN) throw new TypeError('WebSocket send() after close()');
    if (typeof data === 'string') return this.#out({ op: 'send', text: data });
    const bytes = toBytes(data);
    if (!bytes) throw new TypeError('send() takes a string, an ArrayBuffer or an ArrayBufferView');
    this.#out({ op: 'send', b64: bytes.toString('base64') });
  }
  close(code = 1000, reason = '') {
    if (this.readyState >= CLOSING) return;
    this.readyState = CLOSING;
    this.#out({ op: 'close', code: Number(code), reason: String(reason) });
  }
  serializeAttachment(value) {
    this.#attachment = v8.serialize(value);
  }
  deserializeAttachment() {
    return this.#attachment === undefined ? null : v8.deserialize(this.#attachment);
  }
  // What the client did, from nimbus.
  received(type, detail) {
    let event;
    if (type === 'message') {
      event = new Event('message');
      event.data = detail.data;
    } else {
      this.readyState = CLOSED;
      sockets.delete(this.#id);
      if (this.pinnedObject) {
        this.pinnedObject.pinned -= 1;
        this.pinnedObject = null;
      }
      event = new Event('close');
      Object.assign(event, { code: detail.code, reason: detail.reason, wasClean: detail.wasClean });
    }
    // A message the object set an automatic response for is answered here; any other
    // message, or a close, of a socket of an evicted object wakes it.
    const auto = this.home && type === 'message' && autoResponses.get(this.home.key);
    if (auto && event.data === auto.request) {
      this.autoResponseAt = new Date();
      return this.send(auto.response);
    }
    if (this.home) return (this.object || liveObject(this.home.binding, this.home.id)).socketEvent(this, event);
    if (!this.#accepted) return void this.#unread.push(event);
    this.#dispatch(event);
  }
  #dispatch(event) {
    this.dispatchEvent(event);
    const handler = this[`on${event.type}`];
    if (typeof handler === 'function') handler.call(this, event);
  }
}

globalThis.WebSocketPair = function WebSocketPair() {
  if (!new.target) throw new TypeError("Failed to construct 'WebSocketPair': Please use the 'new' operator");
  const [client, server] = WorkerWebSocket.pair();
  return Object.assign(Object.create(WebSocketPair.prototype), { 0: client, 1: server });
};

// A Response may carry the client end of a pair, with status 101, which Node's
// Response refuses (its statuses start at 200).
//
// A Response made from a string or bytes keeps them as they are and builds no stream
// (a web stream costs more than the rest of a hello-world request): the body methods
// answer from them, the answer to nimbus carries them, and a stream is made only if
// the worker asks for `body` (or blob/formData).
const NodeResponse = globalThis.Response;
const socketOfResponse = new WeakMap();
const deferredBodies = new WeakMap(); // Response -> { source: string | Buffer, used, real }
const NULL_BODY_STATUSES = [101, 103, 204, 205, 304];

function deferredBodyOf(body, init) {
  if (init !== undefined && (init === null || typeof init !== 'object')) return null;
  if (init && NULL_BODY_STATUSES.includes(init.status)) return null;
  // Strings are encoded as UTF-8 and read back without a BOM: those the round trip would
  // change take the stream path.
  if (typeof body === 'string') return body.isWellFormed() && body.charCodeAt(0) !== 0xfeff ? body : null;
  if (body instanceof ArrayBuffer) return Buffer.from(body.slice(0));
  if (ArrayBuffer.isView(body)) return Buffer.from(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
  return null;
}

const ResponseProxy = new Proxy(NodeResponse, {
  construct(target, args, newTarget) {
    const [body, init] = args;
    if (!init || !init.webSocket) {
      const source = newTarget === ResponseProxy ? deferredBodyOf(body, init) : null;
      if (source === null) return Reflect.construct(target, args, newTarget);
      const res = Reflect.construct(target, [null, init], newTarget);
      if (typeof source === 'string' && !res.headers.has('content-type')) res.headers.set('content-type', 'text/plain;charset=UTF-8');
      deferredBodies.set(res, { source, used: false, real: null });
      return res;
    }
    const { status = 101, webSocket, ...rest } = init;
    if (!(webSocket instanceof WorkerWebSocket)) throw new TypeError('webSocket must be the client end of a WebSocketPair');
    if (status !== 101) throw new RangeError('a Response with a webSocket has status 101');
    const res = Reflect.construct(target, [body, { ...rest, status: 200 }], newTarget);
    socketOfResponse.set(res, webSocket);
    Object.defineProperty(res, 'status', { value: 101 });
    Object.defineProperty(res, 'webSocket', { value: webSocket });
    return res;
  },
});
globalThis.Response = ResponseProxy;
// `Response.json(data, init)` takes the same path: its body is the string it serializes.
{
  const nodeJson = NodeResponse.json;
  Object.defineProperty(NodeResponse, 'json', {
    configurable: true,
    writable: true,
    value: function json(data, init = undefined) {
      const text = JSON.stringify(data);
      if (typeof text !== 'string' || (init !== undefined && (init === null || typeof init !== 'object'))) return nodeJson.call(this, data, init);
      const headers = new Headers(init && init.headers);
      if (!headers.has('content-type')) headers.set('content-type', 'application/json');
      return new ResponseProxy(text, { status: init && init.status, statusText: init && init.statusText, headers });
    },
  });
}

// The stream-backed Response a deferred body turns into when the worker needs one.
function realBody(d) {
  if (!d.real) {
    d.real = new NodeResponse(d.source);
    // Read already: the stream is disturbed, as it would have been.
    if (d.used) d.real.arrayBuffer().catch(() => {});
  }
  return d.real;
}

function unusable() {
  return Promise.reject(new TypeError('Body is unusable: Body has already been read'));
}

function readDeferred(d) {
  d.used = true;
  return typeof d.source === 'string' ? Buffer.from(d.source, 'utf8') : d.source;
}

{
  const proto = NodeResponse.prototype;
  const own = (name) => Object.getOwnPropertyDescriptor(proto, name);
  const bodyGetter = own('body').get;
  const bodyUsedGetter = own('bodyUsed').get;
  Object.defineProperty(proto, 'body', {
    ...own('body'),
    get() {
      const d = deferredBodies.get(this);
      return d ? realBody(d).body : bodyGetter.call(this);
    },
  });
  Object.defineProperty(proto, 'bodyUsed', {
    ...own('bodyUsed'),
    get() {
      const d = deferredBodies.get(this);
      if (!d) return bodyUsedGetter.call(this);
      return d.real ? d.real.bodyUsed : d.used;
    },
  });
  const fast = {
    text: (d) => (typeof d.source === 'string' ? ((d.used = true), d.source) : readDeferred(d).toString('utf8')),
    json: (d) => JSON.parse(typeof d.source === 'string' ? ((d.used = true), d.source) : readDeferred(d).toString('utf8')),
    arrayBuffer: (d) => {
      const bytes = readDeferred(d);
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    },
    bytes: (d) => new Uint8Array(readDeferred(d)),
  };
  for (const name of ['text', 'json', 'arrayBuffer', 'bytes', 'blob', 'formData']) {
    const original = proto[name];
    if (typeof original !== 'function') continue;
    const quick = fast[name];
    Object.defineProperty(proto, name, {
      ...own(name),
      value: {
        [name]() {
          const d = deferredBodies.get(this);
          if (!d) return original.call(this);
          if (d.real || !quick) return original.call(realBody(d));
          if (d.used) return unusable();
          try {
            return Promise.resolve(quick(d));
          } catch (e) {
            return Promise.reject(e);
          }
        },
      }[name],
    });
  }
  const clone = proto.clone;
  Object.defineProperty(proto, 'clone', {
    ...own('clone'),
    value: function clone_() {
      const d = deferredBodies.get(this);
      if (!d || d.real) return d ? cloneReal(this, d) : clone.call(this);
      if (d.used) throw new TypeError('Response.clone: Body has already been consumed.');
      const copy = Reflect.construct(NodeResponse, [null, { status: this.status, statusText: this.statusText, headers: this.headers }], ResponseProxy);
      deferredBodies.set(copy, { source: d.source, used: false, real: null });
      return copy;
    },
  });
  Object.defineProperty(proto.clone, 'name', { value: 'clone' });
  function cloneReal(res, d) {
    if (d.real.bodyUsed) throw new TypeError('Response.clone: Body has already been consumed.');
    const copy = Reflect.construct(NodeResponse, [null, { status: res.status, statusText: res.statusText, headers: res.headers }], ResponseProxy);
    const realCopy = d.real.clone();
    deferredBodies.set(copy, { source: d.source, used: false, real: realCopy });
    return copy;
  }
}

function acceptWebSocket(obj, ws, tags = []) {
  if (!(ws instanceof WorkerWebSocket)) throw new TypeError('acceptWebSocket() takes the server end of a WebSocketPair');
  if (ws.home) throw new Error('this WebSocket was already accepted');
  ws.object = obj;
  ws.home = { binding: obj.binding, id: obj.id, key: obj.key };
  ws.tags = Array.from(tags, String);
  ws.accept();
  obj.sockets.add(ws);
}

function socketsOf(obj, tag) {
  return [...obj.sockets].filter((ws) => tag === undefined || ws.tags.includes(tag));
}

function tagsOf(ws) {
  return ws.tags.slice();
}

// A client's message or close: `{"nimbusSocket": {"sid", "type", "text" | "b64", ...}}`.
async function onSocket(ev) {
  const { sid, type } = ev.nimbusSocket;
  const ws = sockets.get(sid);
  if (!ws) throw new Error(`no WebSocket ${sid} in this host`);
  if (type === 'message') {
    const m = ev.nimbusSocket;
    let data = m.text;
    if (data === undefined) {
      const buf = Buffer.from(m.b64 || '', 'base64');
      data = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    }
    ws.received('message', { data });
  } else {
    const m = ev.nimbusSocket;
    ws.received('close', { code: m.code ?? 1005, reason: m.reason || '', wasClean: !!m.wasClean });
  }
  return null;
}

function liveObject(binding, id) {
  const key = `${binding.class}/${id.toString()}`;
  let obj = liveObjects.get(key);
  if (!obj) {
    obj = new LiveObject(binding, id);
    liveObjects.set(key, obj);
  }
  return obj;
}

// An alarm nimbus fires: `{"nimbusAlarm": {"class", "id", "retryCount"}}`.
async function onAlarm(ev) {
  const { class: className, id, retryCount } = ev.nimbusAlarm;
  const binding = Object.values(config.bindings || {}).find((b) => b.type === 'durable_object' && b.class === className);
  if (!binding) throw new Error(`the worker binds no Durable Object class ${className}`);
  const obj = liveObject(binding, new DurableObjectId(id));
  await obj.run(async () => {
    // The alarm is cleared before the handler runs; the handler may set the next one,
    // and a handler that throws leaves it set for nimbus to retry.
    obj.pendingAlarm = null;
    if (typeof obj.instance.alarm === 'function') {
      await obj.instance.alarm({ retryCount: Number(retryCount) || 0, isRetry: Number(retryCount) > 0 });
    }
  });
  return null;
}

class DurableObjectNamespace {
  #binding;
  constructor(binding) {
    this.#binding = binding;
  }
  idFromName(name) {
    const hex = createHash('sha256').update(`${this.#binding.class}\u0000${name}`).digest('hex');
    return new DurableObjectId(hex, String(name));
  }
  newUniqueId() {
    return new DurableObjectId(randomBytes(32).toString('hex'));
  }
  idFromString(hex) {
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new TypeError('Invalid Durable Object ID: it must be 64 hex digits');
    return new DurableObjectId(hex);
  }
  get(id) {
    const binding = this.#binding;
    const live = () => liveObject(binding, id);
    const stub = {
      id,
      name: id.name,
      fetch: async (input, init) => {
        const request = new Request(input, init);
        const obj = live();
        return obj.run(async () => {
          if (typeof obj.instance.fetch !== 'function') throw new Error(`${binding.class} has no fetch() method`);
          return obj.instance.fetch(request);
        });
      },
    };
    return new Proxy(stub, {
      get(target, prop) {
        if (prop in target || typeof prop !== 'string' || prop === 'then') return target[prop];
        // RPC: stub.method(...args) runs the method as one event of the object.
        return async (...args) => {
          const obj = live();
          return obj.run(async () => {
            const method = obj.instance[prop];
            if (typeof method !== 'function') throw new TypeError(`${binding.class} has no method ${prop}()`);
            return structuredClone(await method.apply(obj.instance, args));
          });
        };
      },
    });
  }
}

function makeEnv() {
  const env = {};
  for (const [name, b] of Object.entries(config.bindings || {})) {
    switch (b.type) {
      case 'var':
        env[name] = b.value;
        break;
      case 'kv':
        env[name] = new KVNamespace(b.namespace);
        break;
      case 'queue':
        env[name] = new Queue(b.queue);
        break;
      case 'r2':
        env[name] = new R2Bucket(b.bucket);
        break;
      case 'service':
        env[name] = new Fetcher(b.function);
        break;
      case 'durable_object':
        env[name] = new DurableObjectNamespace(b);
        break;
      default:
        break;
    }
  }
  return env;
}

function responseFromResult(res) {
  if (!res || typeof res !== 'object' || typeof res.statusCode !== 'number') {
    return new Response(typeof res === 'string' ? res : JSON.stringify(res), { status: 200 });
  }
  const headers = new Headers();
  for (const [k, v] of Object.entries(res.headers || {})) headers.set(k, String(v));
  for (const [k, vs] of Object.entries(res.multiValueHeaders || {})) for (const v of vs) headers.append(k, String(v));
  for (const c of res.cookies || []) headers.append('set-cookie', c);
  const body = res.body === undefined || res.body === null ? null : res.isBase64Encoded ? Buffer.from(res.body, 'base64') : res.body;
  const nullBody = res.statusCode === 204 || res.statusCode === 304;
  return new Response(nullBody ? null : body, { status: res.statusCode, headers });
}

// ---------------------------------------------------------------------------
// The worker: module syntax (`export default { fetch, scheduled, queue }`, a Vercel Edge
// `export default function handler(request)` or `export function GET(request)`), or a
// service-worker script (`addEventListener('fetch', ...)`, bindings as globals).

const env = makeEnv();
const listeners = { fetch: [], scheduled: [], queue: [] };
let worker = null;
let workerModule = null;
let syntax = null;

async function load() {
  const source = readFileSync(mainPath, 'utf8');
  const isModule = /(^|[\s;])export\s+(default|const|function|async|class|let|var|\{)/m.test(source) || /\.mjs$|\.ts$/.test(mainPath);
  if (!isModule) {
    globalThis.addEventListener = (type, listener) => {
      if (listeners[type]) listeners[type].push(listener);
    };
    for (const [name, value] of Object.entries(env)) globalThis[name] = value;
    vm.runInThisContext(source, { filename: mainPath });
    syntax = 'service-worker';
    if (!listeners.fetch.length && !listeners.scheduled.length && !listeners.queue.length) {
      throw Object.assign(new Error(`${process.env._HANDLER} adds no fetch, scheduled or queue listener and exports nothing`), { name: 'Runtime.HandlerNotFound' });
    }
    return;
  }
  globalThis.__nimbusWorkerEnv = env;
  if (source.includes('cloudflare:')) {
    // Only then: a resolve hook starts a loader thread (~40 ms on Node 20).
    require('node:module').register('./resolve.mjs', import.meta.url);
  }
  const mod = await import(pathToFileURL(mainPath).href);
  workerModule = mod;
  syntax = 'module';
  if (typeof mod.default === 'function' && /^class\b/.test(Function.prototype.toString.call(mod.default))) {
    // `export default class extends WorkerEntrypoint`: an instance per request.
    const Entrypoint = mod.default;
    worker = {};
    for (const name of ['fetch', 'scheduled', 'queue']) {
      if (typeof Entrypoint.prototype[name] === 'function') {
        worker[name] = (arg, _env, ctx) => new Entrypoint(ctx, env)[name](arg);
      }
    }
  } else if (typeof mod.default === 'function') {
    // Vercel Edge: `export default async function handler(request)`.
    worker = { fetch: (request, _env, ctx) => mod.default(request, ctx) };
  } else if (mod.default && typeof mod.default === 'object') {
    worker = mod.default;
  } else {
    const methods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'].filter((m) => typeof mod[m] === 'function');
    if (!methods.length) {
      throw Object.assign(new Error(`${process.env._HANDLER} has no default export (export default { fetch(request, env, ctx) { ... } })`), { name: 'Runtime.HandlerNotFound' });
    }
    worker = {
      fetch: (request, _env, ctx) => {
        const handler = mod[request.method] || (request.method === 'HEAD' && mod.GET);
        if (!handler) return new Response(null, { status: 405, headers: { allow: methods.join(', ') } });
        return handler(request, ctx);
      },
    };
  }
}

// ---------------------------------------------------------------------------
// Requests

const CF_HEADERS = {
  country: 'cf-ipcountry',
  city: 'cf-ipcity',
  continent: 'cf-ipcontinent',
  latitude: 'cf-iplatitude',
  longitude: 'cf-iplongitude',
  region: 'cf-region',
  regionCode: 'cf-region-code',
  postalCode: 'cf-postal-code',
  metroCode: 'cf-metro-code',
  timezone: 'cf-timezone',
  colo: 'cf-colo',
};
const VERCEL_HEADERS = {
  country: 'x-vercel-ip-country',
  city: 'x-vercel-ip-city',
  region: 'x-vercel-ip-country-region',
  latitude: 'x-vercel-ip-latitude',
  longitude: 'x-vercel-ip-longitude',
};

const CF_FIELDS = Object.entries(CF_HEADERS);
const VERCEL_FIELDS = Object.entries(VERCEL_HEADERS);
// Cloudflare's own values for a request it cannot place: XX, and a local colo.
const CF_DEFAULTS = { country: 'XX', colo: 'LCL', asn: 0, asOrganization: 'nimbus', httpProtocol: 'HTTP/1.1', clientTcpRtt: 0, ...(config.cf || {}) };

function cfOf(headers) {
  const cf = { ...CF_DEFAULTS };
  for (const [field, header] of CF_FIELDS) {
    const value = headers.get(header);
    if (value !== null) cf[field] = value;
  }
  for (const [field, header] of VERCEL_FIELDS) {
    const value = headers.get(header);
    if (value !== null && headers.get(CF_HEADERS[field]) === null) cf[field] = decodeURIComponent(value);
  }
  return cf;
}

// `request.cf`, `request.geo` and `request.ip` are worked out when first read: most
// workers read none of them.
function lazyValue(target, name, make, enumerable) {
  Object.defineProperty(target, name, {
    configurable: true,
    enumerable,
    get() {
      const value = make();
      Object.defineProperty(target, name, { value, enumerable, configurable: true });
      return value;
    },
  });
}

// The `Request` a fetch handler gets is built from its event lazily. undici's constructor
// costs ~20 µs, half of it the request's AbortSignal, while most handlers read only the
// url, method and headers: an `IncomingRequest` answers those itself and builds the real
// request (taking over its internal slots, so every native getter and method works on
// it) the first time anything else is used: its body, signal, clone(), or passing it to
// fetch() or a Durable Object. It is a `Request` to the worker (prototype, instanceof,
// toString). Where the slots are not found (another undici), requests are built whole.
const NodeRequest = globalThis.Request;
const NodeHeaders = globalThis.Headers;
const REQUEST_SLOTS = (() => {
  try {
    return Object.getOwnPropertySymbols(new NodeRequest('http://localhost/'));
  } catch {
    return [];
  }
})();
const LAZY_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']);
const incoming = new WeakMap(); // IncomingRequest -> { url, method, init, body, headers, real, sourceIp, cf, geo }
const linkedHeaders = new WeakMap(); // IncomingHeaders -> the real request's Headers

// The headers an IncomingRequest hands out: once its real request exists, changes to them
// reach that request's too (which fetch() and the body's content type read).
class IncomingHeaders extends NodeHeaders {}
for (const name of ['append', 'delete', 'set']) {
  const own = NodeHeaders.prototype[name];
  Object.defineProperty(IncomingHeaders.prototype, name, {
    configurable: true,
    writable: true,
    value: {
      [name](...args) {
        const res = own.apply(this, args);
        const linked = linkedHeaders.get(this);
        if (linked) own.apply(linked, args);
        return res;
      },
    }[name],
  });
}
Object.defineProperty(IncomingHeaders.prototype, 'constructor', { configurable: true, writable: true, value: NodeHeaders });

function IncomingRequest() {}
IncomingRequest.prototype = Object.create(NodeRequest.prototype);
Object.defineProperties(IncomingRequest.prototype, {
  url: {
    configurable: true,
    get() {
      const d = incoming.get(this);
      return d ? d.url : Reflect.get(NodeRequest.prototype, 'url', this);
    },
  },
  method: {
    configurable: true,
    get() {
      const d = incoming.get(this);
      return d ? d.method : Reflect.get(NodeRequest.prototype, 'method', this);
    },
  },
  headers: {
    configurable: true,
    get() {
      const d = incoming.get(this);
      if (!d) return Reflect.get(NodeRequest.prototype, 'headers', this);
      if (!d.headers) {
        if (d.real) return d.real.headers;
        d.headers = new IncomingHeaders(d.init);
      }
      return d.headers;
    },
  },
  // Worked out when first read: most workers read none of them.
  cf: {
    configurable: true,
    get() {
      const d = incoming.get(this);
      return d && (d.cf ??= cfOf(this.headers));
    },
  },
  geo: {
    configurable: true,
    get() {
      const d = incoming.get(this);
      return d && (d.geo ??= geoOf(this.cf));
    },
  },
  ip: {
    configurable: true,
    get() {
      const d = incoming.get(this);
      return d && ipOf(this.headers, d.sourceIp);
    },
  },
});
for (const slot of REQUEST_SLOTS) {
  Object.defineProperty(IncomingRequest.prototype, slot, {
    configurable: true,
    get() {
      realRequest(this);
      return this[slot];
    },
    set(value) {
      realRequest(this);
      this[slot] = value;
    },
  });
}

function realRequest(req) {
  const d = incoming.get(req);
  if (d.real) return;
  const init = { method: d.method, headers: d.headers || d.init };
  if (d.body !== undefined) init.body = d.body;
  const real = new NodeRequest(d.url, init);
  d.real = real;
  d.body = undefined;
  for (const slot of REQUEST_SLOTS) {
    Object.defineProperty(req, slot, { configurable: true, writable: true, enumerable: false, value: real[slot] });
  }
  if (d.headers) linkedHeaders.set(d.headers, real.headers);
}

function newRequest(url, method, headers, body, sourceIp) {
  if (!REQUEST_SLOTS.length || !LAZY_METHODS.has(method)) return new NodeRequest(url, { method, headers, body });
  const req = new IncomingRequest();
  // The url as the real request would hold it (parsed and serialized).
  incoming.set(req, { url: new URL(url).href, method, init: headers, body, headers: null, real: null, sourceIp, cf: null, geo: null });
  return req;
}

function requestFromEvent(ev) {
  let method;
  let path;
  let query;
  let headers;
  if (ev.version === '2.0') {
    method = ev.requestContext.http.method;
    path = ev.rawPath;
    query = ev.rawQueryString || '';
    // The gateway's names are lower case, one value each: a record the Request copies once.
    headers = ev.headers || {};
    if (ev.cookies && ev.cookies.length) headers = { ...headers, cookie: ev.cookies.join('; ') };
  } else {
    method = ev.httpMethod;
    path = ev.path;
    const qs = new URLSearchParams();
    for (const [k, vs] of Object.entries(ev.multiValueQueryStringParameters || {})) for (const v of vs) qs.append(k, v);
    query = qs.toString();
    headers = new Headers();
    for (const [k, vs] of Object.entries(ev.multiValueHeaders || {})) for (const v of vs) headers.append(k, v);
  }
  const host = (headers instanceof Headers ? headers.get('host') : headers.host) || 'localhost';
  const proto = (headers instanceof Headers ? headers.get('x-forwarded-proto') : headers['x-forwarded-proto']) || 'http';
  const url = `${proto}://${host}${path}${query ? `?${query}` : ''}`;
  let body;
  if (ev.body !== undefined && ev.body !== null && method !== 'GET' && method !== 'HEAD') {
    body = ev.isBase64Encoded ? Buffer.from(ev.body, 'base64') : ev.body;
  }
  const sourceIp = ev.requestContext && (ev.requestContext.http?.sourceIp || ev.requestContext.identity?.sourceIp);
  const request = newRequest(url, method, headers, body, sourceIp);
  // An IncomingRequest has `cf`, `geo` and `ip` on its prototype, as workerd's Request has.
  if (incoming.has(request)) return request;
  lazyValue(request, 'cf', () => cfOf(request.headers), false);
  lazyValue(request, 'geo', () => geoOf(request.cf), false);
  lazyValue(request, 'ip', () => ipOf(request.headers, sourceIp), false);
  return request;
}

// Vercel Edge's `request.geo` and `request.ip`.
function geoOf(cf) {
  const { country, city, region, latitude, longitude } = cf;
  return { country, city, region, latitude, longitude };
}
function ipOf(headers, sourceIp) {
  return headers.get('cf-connecting-ip') || headers.get('x-real-ip') || sourceIp;
}

async function resultFromResponse(response, ev) {
  if (!(response instanceof Response)) {
    throw new TypeError(`The worker's fetch handler returned ${response === undefined ? 'undefined' : typeof response}, not a Response`);
  }
  const webSocket = socketOfResponse.get(response);
  if (webSocket) {
    // The gateway upgrades the connection and attaches it to the server end by this id.
    const id = randomBytes(16).toString('hex');
    webSocket.peer.bind(id);
    const headers = {};
    for (const [k, v] of response.headers) headers[k] = v;
    return { statusCode: 101, headers, webSocket: id };
  }
  const headers = {};
  for (const [k, v] of response.headers) if (k !== 'set-cookie') headers[k] = v;
  // A worker's response without a content type has none (null keeps the gateway's
  // API Gateway default off).
  if (!('content-type' in headers)) headers['content-type'] = null;
  const cookies = response.headers.getSetCookie();
  // A body made from a string goes as text; any other as base64.
  const d = deferredBodies.get(response);
  let result;
  if (d && !d.real && !d.used && typeof d.source === 'string') {
    d.used = true;
    result = { statusCode: response.status, headers, body: d.source, isBase64Encoded: false };
  } else {
    const buf = Buffer.from(await response.arrayBuffer());
    result = { statusCode: response.status, headers, body: buf.toString('base64'), isBase64Encoded: true };
  }
  if (cookies.length) {
    if (ev.version === '2.0') result.cookies = cookies;
    else result.multiValueHeaders = { 'set-cookie': cookies };
  }
  return result;
}

function makeContext(pending) {
  return {
    waitUntil(promise) {
      pending.push(Promise.resolve(promise).catch((e) => console.error('Uncaught (in promise)', e)));
    },
    passThroughOnException() {},
    props: {},
  };
}

async function onFetch(ev) {
  const request = requestFromEvent(ev);
  const pending = [];
  const ctx = makeContext(pending);
  let response;
  if (syntax === 'module') {
    if (typeof worker.fetch !== 'function') throw new Error('the worker has no fetch handler');
    response = await worker.fetch(request, env, ctx);
  } else {
    let responded = null;
    const event = {
      type: 'fetch',
      request,
      respondWith(r) {
        if (responded) throw new Error('respondWith() was already called');
        responded = Promise.resolve(r);
      },
      waitUntil: ctx.waitUntil,
      passThroughOnException() {},
    };
    for (const listener of listeners.fetch) {
      listener(event);
      if (responded) break;
    }
    if (!responded) throw new Error('No fetch listener called respondWith()');
    response = await responded;
  }
  return resultFromResponse(response, ev);
}

async function onScheduled(ev) {
  const rule = (ev.resources && ev.resources[0]) || '';
  const schedule = rule.slice(rule.lastIndexOf('/') + 1);
  const cron = (config.crons || {})[schedule] || '';
  const scheduledTime = ev.time ? Date.parse(ev.time) : Date.now();
  const pending = [];
  const ctx = makeContext(pending);
  const controller = { cron, scheduledTime, type: 'scheduled', noRetry() {} };
  if (syntax === 'module') {
    if (typeof worker.scheduled !== 'function') throw new Error('the worker has no scheduled handler');
    await worker.scheduled(controller, env, ctx);
  } else {
    const event = { ...controller, waitUntil: ctx.waitUntil };
    for (const listener of listeners.scheduled) listener(event);
  }
  await Promise.all(pending);
  return null;
}

async function onQueue(ev) {
  const records = ev.Records;
  const arn = records[0].eventSourceARN || '';
  const queueName = arn.slice(arn.lastIndexOf(':') + 1);
  const decisions = new Map(); // messageId -> 'ack' | {retry: delaySeconds}
  let all = null;
  const messages = records.map((r) => {
    const attr = r.messageAttributes && r.messageAttributes[CONTENT_TYPE_ATTR];
    let body;
    try {
      body = decodeMessage(r.body, attr ? attr.stringValue : undefined);
    } catch {
      body = r.body;
    }
    return {
      id: r.messageId,
      timestamp: new Date(Number(r.attributes && r.attributes.SentTimestamp) || Date.now()),
      body,
      attempts: Number(r.attributes && r.attributes.ApproximateReceiveCount) || 1,
      ack() {
        decisions.set(r.messageId, 'ack');
      },
      retry(options = {}) {
        decisions.set(r.messageId, { retry: options.delaySeconds || 0 });
      },
    };
  });
  const batch = {
    queue: queueName,
    messages,
    ackAll() {
      all = 'ack';
    },
    retryAll(options = {}) {
      all = { retry: options.delaySeconds || 0 };
    },
  };
  const pending = [];
  const ctx = makeContext(pending);
  let failed = false;
  try {
    if (syntax === 'module') {
      if (typeof worker.queue !== 'function') throw new Error('the worker has no queue handler');
      await worker.queue(batch, env, ctx);
    } else {
      for (const listener of listeners.queue) await listener({ type: 'queue', batch, waitUntil: ctx.waitUntil });
    }
    await Promise.all(pending);
  } catch (e) {
    console.error(e);
    failed = true;
  }
  // Cloudflare: an explicit ack or retry wins; then ackAll/retryAll; a handler that threw
  // retries the rest of the batch, one that returned acknowledges it.
  const queue = nimbus.queue(queueName);
  const failures = [];
  for (const r of records) {
    const decision = decisions.get(r.messageId) ?? all ?? (failed ? { retry: 0 } : 'ack');
    if (decision === 'ack') continue;
    failures.push({ itemIdentifier: r.messageId });
    // The message comes back after the delay asked for, not the queue's visibility timeout.
    try {
      await queue.changeVisibility(r.receiptHandle, decision.retry);
    } catch (e) {
      console.error(`retrying message ${r.messageId}:`, e);
    }
  }
  return { batchItemFailures: failures };
}

function kindOf(ev) {
  if (ev && Array.isArray(ev.Records) && ev.Records.length && ev.Records[0].eventSource === 'aws:sqs') return onQueue;
  if (ev && (ev.version === '2.0' || typeof ev.httpMethod === 'string') && (ev.requestContext || ev.httpMethod)) return onFetch;
  if (ev && ev['detail-type'] === 'Scheduled Event') return onScheduled;
  if (ev && ev.nimbusAlarm) return onAlarm;
  if (ev && ev.nimbusSocket) return onSocket;
  return null;
}

function errorPayload(e) {
  const err = e instanceof Error ? e : new Error(String(e));
  return {
    errorType: err.name || 'Error',
    errorMessage: err.message,
    stackTrace: (err.stack || '').split('\n').slice(1).map((l) => l.trim()),
  };
}

// ---------------------------------------------------------------------------
// The loop: invocations run concurrently; a tick every 20 ms while any is in flight
// tells nimbus the event loop is not stuck (its CPU-time limit watches for them). The
// ticker outlives a burst by one period, so back-to-back requests do not set up and
// clear a timer each.

let inFlight = 0;
let ticker = null;

function tick() {
  if (inFlight > 0) return frame({ t: 'tick' });
  clearInterval(ticker);
  ticker = null;
}

async function invoke(msg) {
  inFlight += 1;
  if (!ticker) ticker = setInterval(tick, 20);
  try {
    const handler = kindOf(msg.event);
    if (!handler) {
      throw new Error('a worker takes HTTP requests, queue batches and scheduled events; this event is none of them');
    }
    const ok = await current.run({ rid: msg.rid }, () => handler(msg.event));
    frame({ t: 'res', id: msg.id, ok });
  } catch (e) {
    current.run({ rid: msg.rid }, () => console.error(e instanceof Error ? e.stack : e));
    frame({ t: 'res', id: msg.id, error: errorPayload(e) });
  } finally {
    inFlight -= 1;
  }
}

process.on('uncaughtException', (e) => console.error('Uncaught', e));
process.on('unhandledRejection', (e) => console.error('Uncaught (in promise)', e));

try {
  await load();
  frame({ t: 'ready', syntax });
} catch (e) {
  frameNow({ t: 'init_error', error: errorPayload(e) });
  process.exit(1);
}

function onLine(line) {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    // An invocation whose event is not JSON is answered by the id its line starts with.
    const id = /^\{"id":(\d+),"event":/.exec(line);
    if (id) frame({ t: 'res', id: Number(id[1]), error: errorPayload(new TypeError('the event is not JSON')) });
    return;
  }
  if (msg.t === 'invoke') invoke(msg);
  else if (msg.t === 'do_res') onStorageAnswer(msg);
}

// Lines are cut out of stdin's chunks here (readline's interface costs more per line).
// A SQL call waits for its answer by reading stdin itself (a blocking read of the same
// pipe); lines that come meanwhile wait in `queuedLines` and go first after.
let partialLine = null;
const queuedLines = [];
function linesOf(chunk) {
  const buf = partialLine ? Buffer.concat([partialLine, chunk]) : chunk;
  const lines = [];
  let start = 0;
  let end;
  while ((end = buf.indexOf(10, start)) >= 0) {
    if (end > start) lines.push(buf.toString('utf8', start, end));
    start = end + 1;
  }
  partialLine = start < buf.length ? buf.subarray(start) : null;
  return lines;
}
function drainQueuedLines() {
  while (queuedLines.length) onLine(queuedLines.shift());
}
process.stdin.on('data', (chunk) => {
  drainQueuedLines();
  for (const line of linesOf(chunk)) onLine(line);
});

let blockingStdin = null;
const waitCell = new Int32Array(new SharedArrayBuffer(4));
function readStdinSync() {
  // A second open of the pipe blocks in read(2); stdin itself is non-blocking (libuv's).
  if (blockingStdin === null) {
    try {
      blockingStdin = require('node:fs').openSync('/proc/self/fd/0', 'r');
    } catch {
      blockingStdin = 0;
    }
  }
  const buf = Buffer.allocUnsafe(65536);
  for (let tries = 0; ; tries++) {
    try {
      const n = require('node:fs').readSync(blockingStdin, buf, 0, buf.length, null);
      if (n === 0) process.exit(0);
      return buf.subarray(0, n);
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e;
      if (tries > 100) Atomics.wait(waitCell, 0, 0, 0.05);
    }
  }
}

function syncStorageCall(body) {
  const q = nextStorageCall++;
  frameNow({ t: 'sql', q, ...body });
  for (;;) {
    for (let i = 0; i < queuedLines.length; i++) {
      if (!queuedLines[i].includes('"sql_res"')) continue;
      const msg = JSON.parse(queuedLines[i]);
      if (msg.t !== 'sql_res' || msg.q !== q) continue;
      queuedLines.splice(i, 1);
      if (queuedLines.length) setImmediate(drainQueuedLines);
      if (msg.error !== undefined) throw new Error(msg.error);
      return msg.ok;
    }
    queuedLines.push(...linesOf(readStdinSync()));
  }
}
process.stdin.on('end', () => {
  flushFrames();
  process.exit(0);
});
