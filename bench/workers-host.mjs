// Drives a Workers host (crates/nimbus-lambda/bootstrap/workers/host.mjs) alone, without
// nimbus: feeds it the invoke lines nimbus would (a hello request's API Gateway 2.0 event),
// CONC in flight, N in all, and prints its throughput and its CPU time per request from
// /proc. What BENCHMARKS.md's "host CPU per request" figures come from.
//
//   node bench/workers-host.mjs HOST_MJS APP_DIR [CONC=1] [N=20000]
//
// APP_DIR is bench/workers-hello after one `nimbus up` there (the host requires the
// `nimbus` client from APP_DIR/.nimbus/runtime/node_modules). Set PROF=1 for --cpu-prof.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const [hostPath, appDir, conc = '1', total = '20000'] = process.argv.slice(2);
if (!hostPath || !appDir) {
  console.error('usage: node bench/workers-host.mjs HOST_MJS APP_DIR [CONC] [N]');
  process.exit(2);
}
const C = Number(conc);
const N = Number(total);
const event = JSON.stringify({
  version: '2.0',
  routeKey: '$default',
  rawPath: '/hello',
  rawQueryString: 'name=Ada',
  headers: { host: '127.0.0.1:18380', 'user-agent': 'wrk', accept: '*/*' },
  queryStringParameters: { name: 'Ada' },
  requestContext: {
    accountId: '123456789012',
    apiId: 'hello',
    domainName: '127.0.0.1:18380',
    domainPrefix: '127',
    http: { method: 'GET', path: '/hello', protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'wrk' },
    requestId: '01a25274-e488-749f-b602-76c2e8b7c4bc',
    routeKey: '$default',
    stage: '$default',
    time: '07/Dec/2026:21:42:02 +0000',
    timeEpoch: 1796679722000,
  },
  isBase64Encoded: false,
});
const nodeArgs = ['--experimental-detect-module', '--disable-warning=ExperimentalWarning'];
if (process.env.PROF) nodeArgs.push('--cpu-prof', '--cpu-prof-dir=prof');
const child = spawn('node', [...nodeArgs, hostPath], {
  env: {
    ...process.env,
    LAMBDA_TASK_ROOT: appDir,
    NODE_PATH: join(appDir, '.nimbus/runtime/node_modules'),
    NIMBUS_WORKER: '{"bindings":{},"cf":{},"compatibilityDate":"2024-09-23","compatibilityFlags":[],"crons":{}}',
    _HANDLER: 'worker.js',
    TZ: ':UTC',
    NIMBUS_API: 'http://127.0.0.1:1',
    NIMBUS_TOKEN: 'unused',
  },
  stdio: ['pipe', 'pipe', 'inherit'],
});
// The host's user + system CPU time in ms (clock ticks of 10 ms).
function cpuMs() {
  const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
let next = 1;
let done = 0;
let startedAt = 0;
let cpuAtStart = 0;
let ready = false;
let unread = '';
function send() {
  const id = next++;
  child.stdin.write(`{"id":${id},"event":${event},"t":"invoke","id":${id},"rid":"r${id}"}\n`);
}
child.stdout.on('data', (chunk) => {
  unread += chunk;
  let end;
  while ((end = unread.indexOf('\n')) >= 0) {
    const line = unread.slice(0, end);
    unread = unread.slice(end + 1);
    if (!ready) {
      if (line.includes('"ready"')) {
        ready = true;
        startedAt = performance.now();
        cpuAtStart = cpuMs();
        for (let i = 0; i < C; i++) send();
      }
      continue;
    }
    if (!line.startsWith('{"t":"res"')) continue;
    done += 1;
    if (done === N) {
      const ms = performance.now() - startedAt;
      const cpu = cpuMs() - cpuAtStart;
      console.log(`conc=${C} ${Math.round((N / ms) * 1000)} req/s, host CPU ${((cpu * 1000) / N).toFixed(1)} us/request`);
      child.stdin.end();
      child.on('exit', () => process.exit(0));
    } else if (next <= N) {
      send();
    }
  }
});
