// The hostile function of tests/it/isolation.rs and bench/hostile.sh: each attack returns
// what it saw (`denied` with the error code, or what it got) and logs the attempt.
const fs = require('fs');
const net = require('net');
const path = require('path');
const cp = require('child_process');

const root = process.env.LAMBDA_TASK_ROOT;

function attempt(fn) {
  try {
    const got = fn();
    return { denied: false, got: String(got).slice(0, 80) };
  } catch (e) {
    return { denied: true, code: e.code || e.name, message: e.message };
  }
}

// Posts a response for a made-up request id: a Runtime API that lets us in answers
// InvalidRequestID; one that refuses us closes the connection without a word.
function tryRuntimeApi(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const done = (what) => { socket.destroy(); resolve(what); };
    socket.setTimeout(1000, () => done('timeout'));
    socket.on('connect', () => socket.write(
      'POST /2018-06-01/runtime/invocation/stolen/response HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}'));
    socket.on('data', (chunk) => {
      data += chunk;
      if (data.includes('\r\n\r\n')) setTimeout(() => done(data.includes('InvalidRequestID') ? 'reached' : 'other'), 50);
    });
    socket.on('error', (e) => done(e.code === 'ECONNREFUSED' ? 'no listener' : data ? 'other' : 'refused'));
    socket.on('end', () => done(data.includes('InvalidRequestID') ? 'reached' : data ? 'other' : 'refused'));
  });
}

const attacks = {
  secrets: () => attempt(() => fs.readFileSync(path.join(root, '.nimbus', 'secrets.key'), 'utf8')),
  db: () => attempt(() => fs.openSync(path.join(root, '.nimbus', 'nimbus.db'), 'r+')),
  other_app: () => attempt(() => fs.readFileSync(process.env.OTHER_APP, 'utf8')),
  shadow: () => attempt(() => fs.readFileSync('/etc/shadow', 'utf8')),
  code: () => attempt(() => fs.writeFileSync(path.join(root, 'attack.js'), '// replaced')),
  signal: (q) => attempt(() => process.kill(Number(q.pid), 'SIGKILL')),
  runtime_api: async (q) => {
    const got = await tryRuntimeApi(Number(q.port));
    return { denied: got !== 'reached', got };
  },
  fork: async () => {
    let started = 0, failed = 0;
    for (let i = 0; i < 10000; i++) {
      try {
        const child = cp.spawn('/bin/sleep', ['3'], { stdio: 'ignore' });
        if (child.pid) started++; else failed++;
        child.on('error', () => {});
      } catch (e) {
        failed++;
      }
    }
    return { denied: started < 10000, started, failed };
  },
  alloc: () => attempt(() => Buffer.alloc(4 * 128 * 1024 * 1024, 1).length),
  // A grandchild whose parent exits leaves the instance's process tree (it is adopted by
  // the host's init), out of sight of the resident-memory watch; it grows until stopped.
  escape: () => {
    const grow = "const k=[];setInterval(()=>k.push(Buffer.alloc(32<<20,1)),5)";
    const out = cp.execFileSync('/bin/sh', ['-c', `${process.execPath} -e '${grow}' >/dev/null 2>&1 & echo $!`]);
    return { denied: false, pid: Number(String(out).trim()) };
  },
  hog: () => { const keep = []; for (;;) keep.push(Buffer.alloc(8 * 1024 * 1024, 1)); },
  // 1 GiB to stdout in lines of 1 KiB, waiting when the pipe is full (bench/hostile.sh
  // only: the E2E of the per-invocation cap is tests/it/bounds.rs's 200 MB flood).
  stdout: async () => {
    const line = 'x'.repeat(1023) + '\n';
    const chunk = line.repeat(1024);
    let written = 0;
    for (let i = 0; i < 1024; i++) {
      if (!process.stdout.write(chunk)) await new Promise((r) => process.stdout.once('drain', r));
      written += chunk.length;
    }
    return { denied: false, written };
  },
  tmp: () => {
    const chunk = Buffer.alloc(1024 * 1024, 1);
    const file = '/tmp/fill';
    const fd = fs.openSync(file, 'w');
    let written = 0;
    try {
      for (let i = 0; i < 2048; i++) written += fs.writeSync(fd, chunk);
      return { denied: false, written };
    } catch (e) {
      return { denied: true, code: e.code, written };
    } finally {
      fs.closeSync(fd);
      fs.unlinkSync(file);
    }
  },
};

exports.handler = async (event) => {
  const what = event.pathParameters.what;
  const result = await attacks[what](event.queryStringParameters || {});
  console.log(`attack ${what}: ${JSON.stringify(result)}`);
  return { statusCode: 200, body: JSON.stringify(result) };
};

exports.loop = async () => { for (;;) {} };
