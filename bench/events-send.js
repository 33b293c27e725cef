// Sends N messages to a nimbus queue through the control API as fast as CONC concurrent
// keep-alive connections allow, then waits until the queue is empty (every message
// received, processed and deleted). Prints one JSON line.
//   [BATCH=10] node bench/events-send.js APP_DIR QUEUE N CONC [delayed]
// With `delayed`, each message is sent with a delaySeconds that makes it visible about
// one second after the last send is expected to finish (at >= 1,000 sends/s), so the
// consumers then face a backlog: drain_per_s is that backlog over the time it takes to
// empty, the consumer side alone, without the send rate as a ceiling.
'use strict';
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');

const [appDir, queue, nStr, concStr] = process.argv.slice(2);
const N = Number(nStr);
const CONC = Number(concStr);
const DELAYED = process.argv[6] === 'delayed';
// BATCH > 1: SendMessageBatch (POST .../messages/batch) of up to 10 messages per request.
const BATCH = Math.min(10, Math.max(1, Number(process.env.BATCH || 1)));
const up = JSON.parse(fs.readFileSync(path.join(appDir, '.nimbus/up.json'), 'utf8'));
const admin = new URL(/^https?:/.test(up.admin) ? up.admin : `http://${up.admin}`);
if (admin.hostname !== '127.0.0.1' && admin.hostname !== 'localhost') throw new Error(`not loopback: ${up.admin}`);
const agent = new http.Agent({ keepAlive: true, maxSockets: CONC });
const auth = `Bearer ${up.token}`;

function call(method, p, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: admin.hostname, port: admin.port, method, path: p, agent,
        headers: { Authorization: auth, 'Content-Type': 'application/json', ...(body ? { 'Content-Length': Buffer.byteLength(body) } : {}) } },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
      });
    req.on('error', reject);
    req.end(body);
  });
}

async function depth() {
  const r = await call('GET', '/v1/queues');
  const q = JSON.parse(r.body).queues.find((x) => x.name === queue);
  return q.visible + q.inFlight + (q.delayed || 0);
}

(async () => {
  let next = 0;
  let errors = 0;
  const t0 = process.hrtime.bigint();
  const tTarget = Date.now() + N + 1000; // ms; assumes >= 1,000 sends/s
  await Promise.all(Array.from({ length: CONC }, async () => {
    while (next < N) {
      const first = next;
      next = Math.min(N, next + BATCH);
      const entries = [];
      for (let i = first; i < next; i++) {
        entries.push(DELAYED
          ? { id: `m${i}`, body: `{"i":${i}}`, delaySeconds: Math.max(0, Math.ceil((tTarget - Date.now()) / 1000)) }
          : { id: `m${i}`, body: `{"i":${i}}` });
      }
      const r = BATCH === 1
        ? await call('POST', `/v1/queues/${queue}/messages`, JSON.stringify(entries[0]))
        : await call('POST', `/v1/queues/${queue}/messages/batch`, JSON.stringify({ entries }));
      if (r.status !== 200 || (BATCH > 1 && JSON.parse(r.body).failed.length)) {
        errors++; if (errors < 5) console.error(r.status, r.body);
      }
    }
  }));
  const tSent = process.hrtime.bigint();
  if (DELAYED && Date.now() < tTarget) await new Promise((r) => setTimeout(r, tTarget - Date.now()));
  const backlog = await depth();
  const tBacklog = process.hrtime.bigint();
  while ((await depth()) > 0) await new Promise((r) => setTimeout(r, 5));
  const tDone = process.hrtime.bigint();
  const s = (a, b) => Number(b - a) / 1e9;
  console.log(JSON.stringify({
    queue, mode: DELAYED ? 'delayed' : 'live', n: N, conc: CONC, batch: BATCH, errors,
    send_s: +s(t0, tSent).toFixed(3), send_per_s: Math.round(N / s(t0, tSent)),
    total_s: +s(t0, tDone).toFixed(3), e2e_per_s: Math.round(N / s(t0, tDone)),
    drain_after_send_s: +s(tSent, tDone).toFixed(3),
    backlog, drain_per_s: Math.round(backlog / s(tBacklog, tDone)),
  }));
  agent.destroy();
})();
