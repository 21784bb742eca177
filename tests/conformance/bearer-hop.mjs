// The loopback hop between the conformance runner and a protected server: the runner sends no
// access token, so this adds `Authorization: Bearer <token>` to every request and passes
// everything else through as it is (method, path, headers including Host and Origin, the body,
// and the answer as it streams, SSE included).
//
//   BEARER_TOKEN=... node bearer-hop.mjs http://127.0.0.1:PORT
//
// Listens on a free port of 127.0.0.1 and prints its base URL (http://127.0.0.1:PORT) as the
// first line on stdout. Stops on SIGTERM or SIGINT.
import http from 'node:http';

const target = new URL(process.argv[2] ?? '');
const token = process.env.BEARER_TOKEN;
if (!token) {
  console.error('bearer-hop: set BEARER_TOKEN to the access token to add');
  process.exit(2);
}
if (target.protocol !== 'http:' || target.hostname !== '127.0.0.1') {
  console.error(`bearer-hop: the target must be http://127.0.0.1:PORT, not ${process.argv[2]}`);
  process.exit(2);
}

const server = http.createServer((req, res) => {
  const headers = { ...req.headers, authorization: `Bearer ${token}` };
  const upstream = http.request(
    {
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers,
      agent: false,
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
      res.flushHeaders();
      answer.pipe(res);
    },
  );
  upstream.on('error', (err) => {
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'text/plain' });
    }
    res.end(`bearer-hop: ${err.message}`);
  });
  // The client went away (the runner closes its SSE streams): close the upstream request too.
  res.on('close', () => upstream.destroy());
  req.pipe(upstream);
});

server.listen(0, '127.0.0.1', () => {
  console.log(`http://127.0.0.1:${server.address().port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
