// Warm load for bench/sandbox.sh: CONNS keep-alive connections, each sending GETs to URL
// one after another for SECONDS; prints "req/s p50_ms p99_ms errors".
const http = require('http');
const [url, conns, seconds] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
const times = [];
let errors = 0;
const end = Date.now() + seconds * 1000;
function one() {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    http.get(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode !== 200) errors++;
        times.push(Number(process.hrtime.bigint() - started) / 1e6);
        resolve();
      });
    }).on('error', () => { errors++; resolve(); });
  });
}
async function loop() { while (Date.now() < end) await one(); }
Promise.all(Array.from({ length: conns }, loop)).then(() => {
  times.sort((a, b) => a - b);
  const q = (p) => times[Math.min(times.length - 1, Math.floor(times.length * p))];
  console.log(`${(times.length / seconds).toFixed(0)} ${q(0.5).toFixed(3)} ${q(0.99).toFixed(3)} ${errors}`);
  agent.destroy();
});
