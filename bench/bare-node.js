// The floor for bench/hello.sh: examples/hello's Node handler in a bare `http`
// server, with a minimal API Gateway (HTTP API, payload 2.0) event. No framework.
//   node bench/bare-node.js [PORT]    (default 18090; listens on 127.0.0.1)
'use strict';
const http = require('node:http');
const { handler } = require('../examples/hello/handler.js');

const port = Number(process.argv[2] || 18090);
let seq = 0;

http
  .createServer(async (req, res) => {
    const q = req.url.indexOf('?');
    const rawPath = q < 0 ? req.url : req.url.slice(0, q);
    const rawQueryString = q < 0 ? '' : req.url.slice(q + 1);
    const qs = new URLSearchParams(rawQueryString);
    const event = {
      version: '2.0',
      routeKey: `${req.method} ${rawPath}`,
      rawPath,
      rawQueryString,
      headers: req.headers,
      queryStringParameters: qs.size ? Object.fromEntries(qs) : undefined,
      requestContext: { http: { method: req.method, path: rawPath }, requestId: String(++seq) },
      isBase64Encoded: false,
    };
    const context = { awsRequestId: String(seq), functionName: 'hello', getRemainingTimeInMillis: () => 10000 };
    try {
      const r = await handler(event, context);
      res.statusCode = r.statusCode || 200;
      for (const [k, v] of Object.entries(r.headers || {})) res.setHeader(k, v);
      res.end(r.body ?? ''); // Content-Length, not chunked, as API Gateway sends it
    } catch (e) {
      res.writeHead(502, { 'Content-Type': 'application/json' });
      res.end('{"message":"Internal Server Error"}');
    }
  })
  .listen(port, '127.0.0.1');
