// The reference MCP server `@modelcontextprotocol/server-everything` (pinned in ../package.json),
// unchanged, started the way its own launcher starts it, with a recorder around it so the
// runner can see exactly what reached the server behind `mcp-oauth gateway`:
//
//   RECORD_OUT=/tmp/seen.jsonl node peers/everything-upstream.mjs stdio
//   RECORD_OUT=/tmp/seen.jsonl PORT=9100 node peers/everything-upstream.mjs streamableHttp
//
// RECORD_OUT gets one JSON line per event: {"event":"start","pid":…,"transport":…} when the
// process starts, {"event":"headers","method":…,"headers":{…}} for every HTTP request (the
// Streamable HTTP transport's handleRequest), and {"event":"message","message":{…}} for every
// JSON-RPC message the server receives (requests, notifications such as
// notifications/cancelled, responses). Streamable HTTP binds 127.0.0.1 only (the server's own
// launcher listens on every interface; `listen` is narrowed here before it is imported).
import { appendFileSync } from 'node:fs';
import net from 'node:net';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

const transport = process.argv[2] || 'stdio';
const RECORD_OUT = process.env.RECORD_OUT;
const record = (event) => { if (RECORD_OUT) appendFileSync(RECORD_OUT, JSON.stringify({ ...event, pid: process.pid }) + '\n'); };

// Record every message the server receives: Protocol.connect() sets transport.onmessage, then
// calls start().
for (const Transport of [StdioServerTransport, StreamableHTTPServerTransport]) {
  const start = Transport.prototype.start;
  Transport.prototype.start = async function patchedStart(...args) {
    const handler = this.onmessage;
    if (handler) this.onmessage = (message, extra) => { record({ event: 'message', message }); return handler(message, extra); };
    return start.apply(this, args);
  };
}
const handleRequest = StreamableHTTPServerTransport.prototype.handleRequest;
StreamableHTTPServerTransport.prototype.handleRequest = function patchedHandleRequest(req, res, body) {
  record({ event: 'headers', method: req.method, url: req.url, headers: req.headers });
  return handleRequest.call(this, req, res, body);
};

// Loopback only: app.listen(PORT) becomes app.listen(PORT, '127.0.0.1').
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function loopbackListen(...args) {
  if (typeof args[0] === 'number' || typeof args[0] === 'string') args.splice(1, typeof args[1] === 'string' ? 1 : 0, '127.0.0.1');
  return listen.apply(this, args);
};

record({ event: 'start', transport });
if (transport === 'stdio') await import('@modelcontextprotocol/server-everything/dist/transports/stdio.js');
else if (transport === 'streamableHttp') await import('@modelcontextprotocol/server-everything/dist/transports/streamableHttp.js');
else throw new Error(`unknown transport ${transport} (stdio or streamableHttp)`);
