// A plain MCP server (no authentication) over Streamable HTTP, built on the MCP TypeScript SDK
// v1 (pinned in ../package.json), to stand behind `mcp-oauth gateway`: stateless, one tool
// `echo` ({text} -> text). Every request's headers go to RECORD_OUT as one JSON line, so the
// runner can check what the gateway forwarded. GET /healthz answers 200 (not recorded). Binds
// 127.0.0.1 only.
//   PORT=9100 RECORD_OUT=/tmp/seen.jsonl node peers/recording-upstream.mjs
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const PORT = Number(process.env.PORT || 9100);
const RECORD_OUT = process.env.RECORD_OUT;

function mcpServer() {
  const server = new Server({ name: 'recording-upstream', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: [{
      name: 'echo',
      description: 'Returns its text',
      inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] },
    }],
  }));
  server.setRequestHandler(CallToolRequestSchema, async (request) => {
    if (request.params.name !== 'echo') throw new Error(`unknown tool ${request.params.name}`);
    return { content: [{ type: 'text', text: String(request.params.arguments?.text ?? '') }] };
  });
  return server;
}

createServer(async (req, res) => {
  if (req.method === 'GET' && req.url === '/healthz') {
    res.writeHead(200).end('ok'); // readiness, not recorded
    return;
  }
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  if (RECORD_OUT) appendFileSync(RECORD_OUT, JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: text }) + '\n');
  if (req.url !== '/mcp') {
    res.writeHead(404).end();
    return;
  }
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST' }).end();
    return;
  }
  // Stateless: a server and a transport per request.
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  const server = mcpServer();
  res.on('close', () => {
    transport.close();
    server.close();
  });
  await server.connect(transport);
  let body;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    res.writeHead(400).end();
    return;
  }
  await transport.handleRequest(req, res, body);
}).listen(PORT, '127.0.0.1', () => {
  console.log(`recording upstream http://127.0.0.1:${PORT}/mcp ready`);
});
