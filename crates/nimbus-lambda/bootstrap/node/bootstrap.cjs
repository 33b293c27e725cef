// nimbus Node.js runtime bootstrap.
//
// Speaks the AWS Lambda Runtime API (2018-06-01) to the endpoint in
// AWS_LAMBDA_RUNTIME_API and runs the handler named by _HANDLER from
// LAMBDA_TASK_ROOT. Standard library only (Node 18-22).
//
// Started as: node --max-old-space-size=N /path/to/bootstrap.cjs
//
// CommonJS on purpose: an ES-module entry point costs ~10 ms of CPU at every cold start.
// ES-module handlers still load, through dynamic import(). Only what the path to the
// first /next needs is loaded up front; modules for error paths, ES-module handlers and
// console formatting are required on first use.

'use strict';

const fs = require('node:fs');
const path = require('node:path');

let util; // node:util, loaded on first use (console formatting, error inspection)
function lazyUtil() {
  return util || (util = require('node:util'));
}

const API_PREFIX = '/2018-06-01/runtime';

const env = process.env;
const runtimeApi = env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001';
// The function's settings: read at start, or once a pre-started process is handed to its
// function (`configure`).
let taskRoot;
let handlerString;

let apiHost = runtimeApi;
let apiPort = 80;
{
  const idx = runtimeApi.lastIndexOf(':');
  if (idx > 0 && !runtimeApi.endsWith(']')) {
    apiHost = runtimeApi.slice(0, idx);
    apiPort = Number(runtimeApi.slice(idx + 1)) || 80;
  }
  if (apiHost.startsWith('[') && apiHost.endsWith(']')) apiHost = apiHost.slice(1, -1);
}

// ---------------------------------------------------------------------------
// Logging (Lambda text format: "<ISO time>\t<request id>\t<LEVEL>\t<message>")

let currentRequestId; // undefined outside an invocation, like Lambda

// Invocations one process runs at once: 1 as on Lambda, more when the function sets
// `concurrency` (nimbus passes it as Lambda Managed Instances do). The runtime then keeps
// one /next in flight per slot, and a line's request id is that of the invocation whose
// code wrote it, followed through async continuations by AsyncLocalStorage.
let maxConcurrency = 1;
let requestIds = null;

// util.format(...args) without loading node:util for the common case of string arguments.
function formatArgs(args) {
  if (args.length === 1 && typeof args[0] === 'string') return args[0];
  if (args.length === 0) return '';
  return lazyUtil().format(...args);
}

function writeLine(level, args) {
  const requestId = requestIds === null ? currentRequestId : requestIds.getStore();
  const line = `${new Date().toISOString()}\t${requestId}\t${level}\t${formatArgs(args)}\n`;
  try {
    process.stdout.write(line);
  } catch {
    /* stdout gone: nothing sensible to do */
  }
}

function patchConsole() {
  const make = (level) => (...args) => writeLine(level, args);
  console.log = make('INFO');
  console.info = make('INFO');
  console.warn = make('WARN');
  console.error = make('ERROR');
  console.debug = make('DEBUG');
  console.trace = (...args) => {
    const err = { name: 'Trace', message: formatArgs(args) };
    Error.captureStackTrace(err, console.trace);
    writeLine('TRACE', [err.stack]);
  };
  console.fatal = make('FATAL');
}

// ---------------------------------------------------------------------------
// Runtime API client: one keep-alive socket to nimbus's own Runtime API.
//
// A small HTTP/1.1 client on node:net rather than node:http: every invocation makes two
// requests, and node:http's client (agent, parser, streams) costs ~5x the CPU of the
// handler itself, which a Lambda-style pool of single-request instances pays in every
// process while its JIT warms up. nimbus's Runtime API always answers with a
// Content-Length; any other framing is reported as an error.

const net = require('node:net');

class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

// One keep-alive connection to the Runtime API, carrying one request at a time. A runtime
// that runs several invocations at once (AWS_LAMBDA_MAX_CONCURRENCY) has one per slot.
class Conn {
  constructor() {
    this.socket = null; // the connected socket, or null
    this.used = false; // whether `socket` has already carried a request
    this.waiting = null; // { resolve, reject, reused } of the request in flight
    this.received = []; // response bytes read so far
    this.receivedLength = 0;
    this.head = null; // { status, headers, length, bodyStart } once the response head is read
  }

  onData(chunk) {
    if (this.waiting === null) {
      this.drop(); // bytes nobody asked for: the connection can no longer be trusted
      return;
    }
    this.received.push(chunk);
    this.receivedLength += chunk.length;
    if (this.head === null) {
      const buf = this.received.length === 1 ? this.received[0] : Buffer.concat(this.received, this.receivedLength);
      this.received = [buf];
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      this.head = parseHead(buf.toString('latin1', 0, end));
      if (this.head === null) {
        this.fail(new ApiError('Runtime API answered without a Content-Length', 'EPROTO'));
        return;
      }
      this.head.bodyStart = end + 4;
    }
    if (this.receivedLength < this.head.bodyStart + this.head.length) return; // body not complete yet
    const buf = this.received.length === 1 ? this.received[0] : Buffer.concat(this.received, this.receivedLength);
    const { status, headers, bodyStart, length } = this.head;
    const w = this.waiting;
    this.waiting = null;
    this.head = null;
    this.received = [];
    this.receivedLength = 0;
    w.resolve({ status, headers, body: buf.toString('utf8', bodyStart, bodyStart + length) });
  }

  fail(err) {
    const w = this.waiting;
    this.waiting = null;
    this.drop();
    if (w) {
      err.reusedSocket = w.reused;
      w.reject(err);
    }
  }

  drop() {
    if (this.socket) {
      this.socket.removeAllListeners();
      this.socket.on('error', () => {});
      this.socket.destroy();
    }
    this.socket = null;
    this.received = [];
    this.receivedLength = 0;
    this.head = null;
  }

  raw(method, urlPath, body, extraHeaders) {
    return new Promise((resolve, reject) => {
      if (this.waiting !== null) {
        reject(new ApiError('a Runtime API request is already in flight', 'EBUSY'));
        return;
      }
      if (this.socket === null) {
        const socket = net.connect({ host: apiHost, port: apiPort, noDelay: true });
        this.socket = socket;
        this.used = false;
        const gone = (err) => {
          if (this.socket === socket) {
            this.fail(new ApiError(err ? err.message : 'Runtime API closed the connection', (err && err.code) || 'ECONNRESET'));
          }
        };
        socket.on('data', (chunk) => this.onData(chunk));
        socket.on('error', gone);
        socket.on('close', () => gone(null));
      }
      this.waiting = { resolve, reject, reused: this.used };
      this.used = true;
      let text = `${method} ${urlPath} HTTP/1.1\r\nHost: ${runtimeApi}\r\n`;
      if (extraHeaders) for (const k in extraHeaders) text += `${k}: ${extraHeaders[k]}\r\n`;
      if (body !== undefined) {
        text += `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
        this.socket.write(text + body);
      } else {
        this.socket.write(`${text}\r\n`);
      }
    });
  }

  async request(method, urlPath, body, extraHeaders) {
    // A kept-alive socket may have been closed by the server while idle; retry
    // once on a fresh socket in that case (the request never reached the server).
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.raw(method, urlPath, body, extraHeaders);
      } catch (err) {
        const retriable =
          err && (err.reusedSocket || attempt === 0) &&
          (err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ECONNREFUSED');
        if (!retriable || attempt >= 2) throw err;
        if (err.code === 'ECONNREFUSED') await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
}

// "HTTP/1.1 200 OK\r\nname: value..." -> { status, headers (lower-case names), length }
function parseHead(text) {
  const lines = text.split('\r\n');
  const status = Number(lines[0].slice(9, 12));
  const headers = {};
  for (let i = 1; i < lines.length; i++) {
    const colon = lines[i].indexOf(':');
    if (colon > 0) headers[lines[i].slice(0, colon).toLowerCase()] = lines[i].slice(colon + 1).trim();
  }
  const length = Number(headers['content-length']);
  if (!(status >= 100) || !Number.isInteger(length) || length < 0) return null;
  return { status, headers, length };
}

const ERROR_HEADERS = { 'Lambda-Runtime-Function-Error-Type': 'Unhandled' };
// nimbus's own extension of the Runtime API: a result posted with this header is answered
// with the slot's next invocation, as GET /next would answer it, so an invocation costs one
// request instead of two. Any other answer (202 from a server without it, an error) is
// followed by a plain GET /next.
const NEXT_HEADERS = { 'Nimbus-Next': '1' };
const ERROR_NEXT_HEADERS = Object.assign({ 'Nimbus-Next': '1' }, ERROR_HEADERS);

function postResponse(conn, requestId, body) {
  return conn.request('POST', `${API_PREFIX}/invocation/${requestId}/response`, body, NEXT_HEADERS);
}

function postInvocationError(conn, requestId, errorBody, headers = ERROR_HEADERS) {
  return conn.request('POST', `${API_PREFIX}/invocation/${requestId}/error`, safeStringify(errorBody), headers);
}

function postInitError(errorBody) {
  return new Conn().request('POST', `${API_PREFIX}/init/error`, safeStringify(errorBody), ERROR_HEADERS);
}

// ---------------------------------------------------------------------------
// Error shapes

function safeStringify(v) {
  try {
    return JSON.stringify(v);
  } catch {
    return '{"errorType":"Runtime.SerializationError","errorMessage":"error could not be serialised"}';
  }
}

function isErrorLike(e) {
  return e instanceof Error || lazyUtil().types.isNativeError(e) ||
    (e !== null && typeof e === 'object' && typeof e.message === 'string' && typeof e.stack === 'string');
}

function toErrorBody(e) {
  try {
    if (isErrorLike(e)) {
      let errorType = e.name || (e.constructor && e.constructor.name) || 'Error';
      if (typeof errorType !== 'string') errorType = 'Error';
      const stack = typeof e.stack === 'string' ? e.stack.split('\n') : [];
      return { errorType, errorMessage: String(e.message), stackTrace: stack };
    }
    let errorMessage;
    if (typeof e === 'string') errorMessage = e;
    else if (e === undefined) errorMessage = 'undefined';
    else {
      try {
        errorMessage = JSON.stringify(e);
      } catch {
        errorMessage = undefined;
      }
      if (errorMessage === undefined) errorMessage = lazyUtil().inspect(e);
    }
    return { errorType: typeof e, errorMessage, stackTrace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage: 'error value could not be inspected (its name, message or stack threw)',
      stackTrace: [],
    };
  }
}

function runtimeError(errorType, errorMessage, cause) {
  const stack = cause && typeof cause.stack === 'string' ? cause.stack.split('\n') : [];
  return { errorType, errorMessage, stackTrace: stack };
}

// ---------------------------------------------------------------------------
// Handler loading

class InitError extends Error {}

function parseHandler(str) {
  const base = path.basename(str);
  const dot = base.indexOf('.');
  if (!str || dot <= 0 || dot === base.length - 1) {
    const e = new InitError(`Bad handler ${str}`);
    e.body = runtimeError('Runtime.MalformedHandlerName', `Bad handler ${str}`);
    throw e;
  }
  const dir = path.dirname(str);
  const modName = base.slice(0, dot);
  const exportName = base.slice(dot + 1);
  return { modulePath: dir === '.' ? modName : path.join(dir, modName), exportName };
}

function isSyntaxError(e) {
  return e && (e.name === 'SyntaxError' || e instanceof SyntaxError);
}

function importError(e) {
  const err = new InitError(String(e && e.message));
  err.body = runtimeError('Runtime.ImportModuleError', String(e), e);
  return err;
}

function syntaxError(e) {
  const err = new InitError(String(e && e.message));
  err.body = runtimeError('Runtime.UserCodeSyntaxError', String(e), e);
  return err;
}

// aws-sdk v2 ignores AWS_ENDPOINT_URL (v3 and boto3 read it), so a function written for
// Lambda, whose clients name no endpoint, would send its requests to AWS. When the variable
// is set, each copy of `aws-sdk` (the cache's on NODE_PATH or the function's own) has its
// global AWS.config pointed at it as soon as it is loaded: the endpoint, path-style S3
// addressing (bucket names in the path, not the host) and SigV4 for S3's presigned URLs
// (v2 presigns with SigV2 when it picks the endpoint itself). Options given to a client,
// or an endpoint the function set on AWS.config, still win.
// The hook wraps Module._load, which costs one string test per require. Requiring aws-sdk
// up front instead would add its load time (over 100 ms) to every cold start, also of the
// functions that never use it. ES-module `import` of aws-sdk goes through Module._load too,
// with the file's absolute path.
function pointAwsSdkV2At(endpoint) {
  const Module = require('node:module');
  const load = Module._load;
  const inPackage = `${path.sep}node_modules${path.sep}aws-sdk${path.sep}`;
  Module._load = function nimbusLoad(request, parent, isMain) {
    const exports = load.apply(this, arguments);
    if (
      typeof request === 'string' &&
      (request === 'aws-sdk' || request.startsWith('aws-sdk/') || request.includes(inPackage))
    ) {
      try {
        configureAwsSdkV2(Module, request, parent, isMain, inPackage, endpoint);
      } catch (e) {
        writeLine('WARN', [`nimbus: cannot point aws-sdk at ${endpoint}: ${e && e.message}`]);
      }
    }
    return exports;
  };
}

function configureAwsSdkV2(Module, request, parent, isMain, inPackage, endpoint) {
  let root;
  if (path.isAbsolute(request)) {
    root = request.slice(0, request.lastIndexOf(inPackage) + inPackage.length);
  } else {
    root = path.dirname(Module._resolveFilename('aws-sdk/package.json', parent, isMain));
  }
  // Every entry point of the package loads lib/core.js, whose exports are the AWS namespace;
  // a file that does not (package.json) leaves the config to the next load.
  const core = require.cache[path.join(root, 'lib', 'core.js')];
  const config = core && core.loaded && core.exports && core.exports.config;
  if (!config || typeof config.update !== 'function' || config.endpoint) return;
  config.update(
    {
      endpoint,
      s3ForcePathStyle: true,
      s3: Object.assign({ signatureVersion: 'v4' }, config.s3),
    },
    true,
  );
}

function userRequire() {
  return require('node:module').createRequire(path.join(taskRoot, '__nimbus_bootstrap__.js'));
}

// ES-module `import` ignores NODE_PATH, where nimbus puts the runtime-provided packages
// (the AWS SDKs) for `require`. When NIMBUS_NODE_FALLBACK names folders, a resolve hook
// tries them for bare specifiers that the normal resolution (the function's own
// node_modules, which win) cannot find. It is registered before the first import() only:
// module.register starts a loader thread (~40 ms on Node 20), which CommonJS handlers and
// apps that import no provided package never pay. Node 22.15+ has the in-thread
// module.registerHooks, which costs next to nothing.
const FALLBACK_HOOK = `
let parents = [];
export function initialize(data) { parents = data.parents; }
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (e) {
    if (!e || e.code !== 'ERR_MODULE_NOT_FOUND' || /^(\\.|\\/|[a-zA-Z][a-zA-Z0-9+.-]*:)/.test(specifier)) throw e;
    for (const parentURL of parents) {
      try {
        return await next(specifier, { ...context, parentURL });
      } catch {}
    }
    throw e;
  }
}`;

let fallbackRegistered = false;
function registerFallback() {
  if (fallbackRegistered) return;
  fallbackRegistered = true;
  const dirs = env.NIMBUS_NODE_FALLBACK;
  if (!dirs) return;
  const { pathToFileURL } = require('node:url');
  const parents = dirs.split(path.delimiter).filter(Boolean).map((d) => pathToFileURL(path.join(d, '__nimbus__.mjs')).href);
  const mod = require('node:module');
  try {
    if (typeof mod.registerHooks === 'function') {
      const local = /^(\.|\/|[a-zA-Z][a-zA-Z0-9+.-]*:)/;
      mod.registerHooks({
        resolve(specifier, context, next) {
          try {
            return next(specifier, context);
          } catch (e) {
            if (!e || e.code !== 'ERR_MODULE_NOT_FOUND' || local.test(specifier)) throw e;
            for (const parentURL of parents) {
              try {
                return next(specifier, { ...context, parentURL });
              } catch {}
            }
            throw e;
          }
        },
      });
    } else if (typeof mod.register === 'function') {
      mod.register(`data:text/javascript,${encodeURIComponent(FALLBACK_HOOK)}`, { data: { parents } });
    }
  } catch (e) {
    writeLine('WARN', [`nimbus: cannot register the module fallback for import(): ${e && e.message}`]);
  }
}

async function importFile(file) {
  registerFallback();
  try {
    return await import(require('node:url').pathToFileURL(file).href);
  } catch (e) {
    if (isSyntaxError(e)) throw syntaxError(e);
    if (e && (e.code === 'ERR_MODULE_NOT_FOUND' || e.code === 'ERR_UNSUPPORTED_DIR_IMPORT')) throw importError(e);
    throw e; // exception at module top level: reported as-is (like Lambda)
  }
}

async function requireOrImport(req, spec, file) {
  try {
    return req(spec);
  } catch (e) {
    if (e && (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE') && file) {
      return importFile(file);
    }
    if (isSyntaxError(e)) throw syntaxError(e);
    if (e && e.code === 'MODULE_NOT_FOUND') throw importError(e);
    throw e;
  }
}

// "type" of the nearest package.json above `file` ("module" | "commonjs").
function packageType(file) {
  let dir = path.dirname(file);
  for (;;) {
    let text;
    try {
      text = fs.readFileSync(path.join(dir, 'package.json'), 'utf8');
    } catch {
      text = undefined;
    }
    if (text !== undefined) {
      try {
        return JSON.parse(text).type === 'module' ? 'module' : 'commonjs';
      } catch {
        return 'commonjs';
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return 'commonjs';
    dir = parent;
  }
}

async function loadHandler() {
  const { modulePath, exportName } = parseHandler(handlerString);
  const abs = path.resolve(taskRoot, modulePath);
  const req = userRequire();

  let mod;
  let found = false;
  // A TypeScript handler runs from the file nimbus compiled it into.
  const built = env.NIMBUS_HANDLER_FILE;
  if (built) {
    found = true;
    mod = built.endsWith('.mjs') ? await importFile(built) : await requireOrImport(req, built, built);
  }
  for (const ext of found ? [] : ['.js', '.mjs', '.cjs']) {
    const file = abs + ext;
    let st;
    try {
      st = fs.statSync(file);
    } catch {
      continue;
    }
    if (!st.isFile()) continue;
    found = true;
    // ESM goes straight to import() (avoids require(esm) warnings on Node 22);
    // everything else is required, falling back to import() if it is ESM after all.
    if (ext === '.mjs' || (ext === '.js' && packageType(file) === 'module')) mod = await importFile(file);
    else mod = await requireOrImport(req, file, file);
    break;
  }
  if (!found) {
    // Fall back to Node's own resolution (directories with index.js,
    // packages in node_modules, ...).
    const spec = modulePath.startsWith('.') || path.isAbsolute(modulePath) ? modulePath : `./${modulePath}`;
    let resolved;
    try {
      resolved = req.resolve(spec);
    } catch {
      try {
        resolved = req.resolve(modulePath);
      } catch (e) {
        const err = new InitError(`Cannot find module '${modulePath}'`);
        err.body = runtimeError(
          'Runtime.ImportModuleError',
          `Error: Cannot find module '${modulePath}' (looked for ${abs}.js, .mjs, .cjs)`,
        );
        throw err;
      }
    }
    mod = resolved.endsWith('.mjs') ? await importFile(resolved) : await requireOrImport(req, resolved, resolved);
  }

  let fn = mod == null ? undefined : mod[exportName];
  // ESM namespace of a CommonJS module / default-export object.
  if (fn === undefined && mod && mod.default && typeof mod.default === 'object') fn = mod.default[exportName];
  const full = path.basename(handlerString);
  if (fn === undefined || fn === null) {
    const e = new InitError(`${full} is undefined or not exported`);
    e.body = runtimeError('Runtime.HandlerNotFound', `${full} is undefined or not exported`);
    throw e;
  }
  if (typeof fn !== 'function') {
    const e = new InitError(`${full} is not a function`);
    e.body = runtimeError('Runtime.HandlerNotFound', `${full} is not a function`);
    throw e;
  }
  return fn;
}

// ---------------------------------------------------------------------------
// Process-level failure handling

let phase = 'init'; // 'init' | 'ready'
const inFlight = new Map(); // request id -> { id, conn, done, finish(isError, value) }
let dying = false;

// An uncaught exception or unhandled rejection ends the process, as on Lambda. With one
// invocation per process it is that invocation's error; in a process running several at
// once nobody can tell whose code threw, so every invocation in flight fails with the
// same Runtime.ExitError naming the error (COMPAT.md, `concurrency`).
async function die(err) {
  if (dying) return;
  dying = true;
  const body = err instanceof InitError && err.body ? err.body : toErrorBody(err);
  try {
    if (phase === 'init') {
      writeLine('ERROR', [`Init Error ${safeStringify(body)}`]);
      await withTimeout(postInitError(body), 2000);
    } else {
      writeLine('ERROR', [`Uncaught Exception ${safeStringify(body)}`]);
      const invs = [...inFlight.values()];
      inFlight.clear();
      const posts = invs.map((inv) => {
        inv.done = true;
        const errorBody = maxConcurrency === 1 ? body : {
          errorType: 'Runtime.ExitError',
          errorMessage: `RequestId: ${inv.id} Error: Runtime exited with error: uncaught ${body.errorType}: ${body.errorMessage} (the process runs up to ${maxConcurrency} invocations at once; all ${invs.length} in flight failed)`,
          stackTrace: body.stackTrace,
        };
        return postInvocationError(inv.conn, inv.id, errorBody);
      });
      await withTimeout(Promise.allSettled(posts), 2000);
    }
  } catch {
    /* ignore: exiting anyway */
  }
  process.exit(1);
}

function withTimeout(p, ms) {
  let t;
  return Promise.race([p, new Promise((r) => (t = setTimeout(r, ms)))]).finally(() => clearTimeout(t));
}

process.on('uncaughtException', (err) => void die(err));
process.on('unhandledRejection', (reason) => void die(reason));

// ---------------------------------------------------------------------------
// Invocation

let functionName;
let functionVersion;
let memoryLimitInMB;
let logGroupName;
let logStreamName;

function configure() {
  taskRoot = env.LAMBDA_TASK_ROOT || process.cwd();
  handlerString = env._HANDLER || '';
  maxConcurrency = Math.max(1, Math.floor(Number(env.AWS_LAMBDA_MAX_CONCURRENCY)) || 1);
  requestIds = maxConcurrency > 1 ? new (require('node:async_hooks').AsyncLocalStorage)() : null;
  functionName = env.AWS_LAMBDA_FUNCTION_NAME;
  functionVersion = env.AWS_LAMBDA_FUNCTION_VERSION;
  memoryLimitInMB = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE;
  logGroupName = env.AWS_LAMBDA_LOG_GROUP_NAME;
  logStreamName = env.AWS_LAMBDA_LOG_STREAM_NAME;
}

// A pre-started process (NIMBUS_PRESTART) has loaded this file before any function was
// known, in the sandbox its function will run in. It asks the Runtime API which function
// it serves, takes on that function's whole environment (nothing of its own is kept),
// reads NODE_PATH again, and only then loads the handler, as a cold start would.
async function awaitAssignment() {
  const conn = new Conn();
  const res = await conn.request('GET', `${API_PREFIX}/nimbus/assignment`);
  if (res.status !== 200) throw new Error(`Runtime API /nimbus/assignment returned ${res.status}: ${res.body}`);
  const { environment } = JSON.parse(res.body);
  // PATH, LANG and HOME are the ones nimbus gives every instance, and the Runtime API is
  // this process's own. A variable whose value stays is not touched: setting or deleting
  // TZ makes V8 detect the time zone again, and the first Date after that pays for it.
  const keep = ['PATH', 'LANG', 'HOME', 'AWS_LAMBDA_RUNTIME_API'];
  for (const key of Object.keys(env)) {
    if (!keep.includes(key) && !Object.prototype.hasOwnProperty.call(environment, key)) delete env[key];
  }
  for (const key of Object.keys(environment)) {
    if (env[key] !== environment[key]) env[key] = environment[key];
  }
  require('node:module')._initPaths();
  // The connection serves the first slot's /next: no second connect on the cold path.
  return conn;
}

// What every cold start pays whatever its function, done by a pre-started process while it
// waits for one: the time zone is detected (TZ=:UTC, which the function's environment
// keeps), and the CommonJS loader compiles a first module (its first compile loads parts of
// Node's loader lazily) and computes its paths.
function warmUp() {
  new Date().getTimezoneOffset();
  try {
    const Module = require('node:module');
    const mod = new Module(path.join(__dirname, '__nimbus_warm_up__.js'), null);
    mod.filename = mod.id;
    mod.paths = [];
    mod._compile('module.exports = 0;', mod.filename);
    Module._initPaths();
  } catch {
    /* an internal API gone in a later Node: the first require pays for it, no more */
  }
}

function parseJsonHeader(v) {
  if (v === undefined) return undefined;
  try {
    return JSON.parse(v);
  } catch {
    return undefined;
  }
}

function isThenable(v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function';
}

function invoke(handler, next, conn) {
  const h = next.headers;
  const requestId = h['lambda-runtime-aws-request-id'];
  const deadlineHeader = Number(h['lambda-runtime-deadline-ms']);
  const deadline = Number.isFinite(deadlineHeader) && deadlineHeader > 0 ? deadlineHeader : Date.now() + 900000;

  // With several invocations at once this is the latest one's; context.awsRequestId
  // and the log prefix stay each invocation's own.
  const traceId = h['lambda-runtime-trace-id'];
  if (traceId !== undefined) env._X_AMZN_TRACE_ID = traceId;
  else delete env._X_AMZN_TRACE_ID;

  currentRequestId = requestId;

  return new Promise((resolve) => {
    const inv = { id: requestId, conn, done: false };
    const finish = (isError, value) => {
      if (inv.done) return;
      inv.done = true;
      inFlight.delete(requestId);
      resolve({ isError, value });
    };
    inv.finish = finish;
    inFlight.set(requestId, inv);

    const callback = (err, result) => {
      if (err !== undefined && err !== null) finish(true, err);
      else finish(false, result);
    };

    const context = {
      callbackWaitsForEmptyEventLoop: true,
      functionName,
      functionVersion,
      memoryLimitInMB,
      invokedFunctionArn: h['lambda-runtime-invoked-function-arn'],
      awsRequestId: requestId,
      logGroupName,
      logStreamName,
      getRemainingTimeInMillis: () => deadline - Date.now(),
      // Legacy Node.js 0.10-era API, still offered by the official runtime.
      succeed: (result) => finish(false, result),
      fail: (err) => finish(true, err == null ? 'handled' : err),
      done: (err, result) => callback(err, result),
    };
    const identity = parseJsonHeader(h['lambda-runtime-cognito-identity']);
    if (identity !== undefined) context.identity = identity;
    const clientContext = parseJsonHeader(h['lambda-runtime-client-context']);
    if (clientContext !== undefined) context.clientContext = clientContext;

    let event;
    try {
      event = next.body.length === 0 ? null : JSON.parse(next.body);
    } catch (e) {
      finish(true, Object.assign(new Error(`Unable to unmarshal input: ${e.message}`), { name: 'Runtime.UnmarshalError' }));
      return;
    }

    let ret;
    try {
      ret = requestIds === null ? handler(event, context, callback) : requestIds.run(requestId, handler, event, context, callback);
    } catch (e) {
      finish(true, e);
      return;
    }
    if (isThenable(ret)) {
      ret.then(
        (v) => finish(false, v),
        (e) => finish(true, e === undefined || e === null ? new Error(String(e)) : e),
      );
    } else if (ret !== undefined || handler.length < 3) {
      // Plain (sync) return value. Handlers declaring a callback parameter
      // that return nothing are expected to call the callback later.
      finish(false, ret);
    }
  });
}

async function report(conn, requestId, outcome) {
  if (outcome.isError) {
    const body = toErrorBody(outcome.value);
    writeLine('ERROR', [`Invoke Error \t${safeStringify(body)}`]);
    return postInvocationError(conn, requestId, body, ERROR_NEXT_HEADERS);
  }
  let payload;
  try {
    payload = JSON.stringify(outcome.value === undefined ? null : outcome.value);
    if (payload === undefined) payload = 'null'; // e.g. a function value
  } catch (e) {
    const body = toErrorBody(e);
    writeLine('ERROR', [`Invoke Error \t${safeStringify(body)}`]);
    return postInvocationError(conn, requestId, body, ERROR_NEXT_HEADERS);
  }
  return postResponse(conn, requestId, payload);
}

async function main() {
  patchConsole();
  let conn = new Conn();
  if (env.NIMBUS_PRESTART) {
    warmUp();
    try {
      conn = await awaitAssignment();
    } catch (err) {
      process.stderr.write(`nimbus: a pre-started runtime was not handed a function: ${err && err.message}\n`);
      process.exit(1);
    }
  }
  configure();
  if (env.AWS_ENDPOINT_URL) pointAwsSdkV2At(env.AWS_ENDPOINT_URL);

  let handler;
  try {
    handler = await loadHandler();
  } catch (err) {
    await die(err);
    return;
  }
  phase = 'ready';
  // One loop per slot, each with its connection and its own /next in flight.
  for (let slot = 1; slot < maxConcurrency; slot++) void serve(handler, new Conn());
  await serve(handler, conn);
}

async function serve(handler, conn) {
  let next = null; // the answer to the last result, when it brought the next invocation
  for (;;) {
    if (next === null) {
      try {
        next = await conn.request('GET', `${API_PREFIX}/invocation/next`);
      } catch (err) {
        writeLine('ERROR', [`Runtime API unreachable: ${err && err.message}`]);
        process.exit(1);
      }
    }
    if (next.status !== 200) {
      writeLine('ERROR', [`Runtime API /next returned ${next.status}: ${next.body}`]);
      process.exit(1);
    }
    const requestId = next.headers['lambda-runtime-aws-request-id'];
    const outcome = await invoke(handler, next, conn);
    next = null;
    try {
      const res = await report(conn, requestId, outcome);
      if (res.status === 200 || res.status === 410) {
        next = res; // the next invocation, or the instance is stopping
      } else if (res.status >= 400) {
        writeLine('ERROR', [`Runtime API rejected result for ${requestId}: ${res.status} ${res.body}`]);
      }
    } catch (err) {
      writeLine('ERROR', [`Runtime API unreachable: ${err && err.message}`]);
      process.exit(1);
    }
  }
}

main();
