// A stand-in SaaS MCP server protected by its own authorization server, for the gateway's
// `credentials = { kind = "user-oauth", … }` scenarios (user_oauth_scenarios.py). One process,
// one listener on 127.0.0.1:PORT serving both (as a SaaS serving its authorization server on its
// own origin; the gateway accepts metadata URLs on the upstream's host and port only, unless
// the authorization server is configured):
//
// - the authorization server: panva `oidc-provider` (pinned in ../package.json), issuer
//   http://127.0.0.1:PORT. Open dynamic registration (the gateway registers itself there),
//   PKCE S256 required, the devInteractions login and consent forms (any login name is the
//   account: a real browser fills them), RFC 8707 resource indicators: only the MCP URL below,
//   for which it issues RS256 JWT access tokens (aud = the MCP URL, TOKEN_TTL seconds) and a
//   refresh token with every code, rotated at every use;
// - the MCP server (TypeScript SDK v1, stateless Streamable HTTP) at /mcp, which wants one of
//   those tokens: without one (or with any other) it answers 401 with
//   `WWW-Authenticate: Bearer resource_metadata="<origin>/.well-known/oauth-protected-resource/mcp"`;
//   it serves that RFC 9728 document (resource, authorization_servers, scopes_supported).
//   Tool `whoami`: the caller's `sub`, `client_id`, `scope` and the SHA-256 (hex) of the
//   access token it saw.
//
//   PORT=9200 RECORD_OUT=/tmp/saas.jsonl node peers/saas-upstream.mjs
//
// Env: PORT, RECORD_OUT (one JSON line per event: {"kind":"mcp","method","url","authorization",
// "rpc","tool","accepted","error"} for every request to the MCP server, Authorization header
// verbatim; {"kind":"token","grant_type","status","client_id","resource","code_verifier",
// "access_sha256","refresh_sha256","presented_refresh_sha256","expires_in","at"} for every token
// request (`at`: when it was answered, in ms);
// {"kind":"register",…} and {"kind":"authorize","params"}), SCOPES (default
// "notes:read notes:write"), TOKEN_TTL (default 600); STATIC_CLIENT_ID, STATIC_CLIENT_SECRET and
// STATIC_REDIRECT_URI register one confidential client by hand (client_secret_basic).
// Control (loopback, for the runner): POST /control/expire makes the MCP server treat every
// access token it has seen so far as expired (401 `error="invalid_token"`), the way a resource
// server answers a token past its `exp`; answers {"expired": N}.
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';
import { exportJWK, generateKeyPair, jwtVerify } from 'jose';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const PORT = Number(process.env.PORT || 9200);
const ORIGIN = `http://127.0.0.1:${PORT}`;
const ISSUER = ORIGIN;
const MCP_URL = `${ORIGIN}/mcp`;
const PRM_URL = `${ORIGIN}/.well-known/oauth-protected-resource/mcp`;
const SCOPES = (process.env.SCOPES || 'notes:read notes:write').split(/\s+/).filter(Boolean);
const TTL = Number(process.env.TOKEN_TTL || 600);
const RECORD_OUT = process.env.RECORD_OUT;
const record = (event) => { if (RECORD_OUT) appendFileSync(RECORD_OUT, JSON.stringify(event) + '\n'); };
const sha256 = (s) => createHash('sha256').update(s).digest('hex');

// --------------------------------------------------------------------------- the authorization server

const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: `saas-${randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' };

const clients = process.env.STATIC_CLIENT_ID ? [{
  client_id: process.env.STATIC_CLIENT_ID,
  client_secret: process.env.STATIC_CLIENT_SECRET,
  redirect_uris: [process.env.STATIC_REDIRECT_URI],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
}] : [];

const provider = new Provider(ISSUER, {
  jwks: { keys: [jwk] },
  clients,
  scopes: ['openid', 'offline_access', ...SCOPES],
  pkce: { required: () => true },
  ttl: { AccessToken: TTL },
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true, initialAccessToken: false },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => MCP_URL,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator) => {
        if (resourceIndicator !== MCP_URL) throw new Provider.errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        return { scope: SCOPES.join(' '), audience: MCP_URL, accessTokenTTL: TTL, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  // RFC 8414 alias (oidc-provider serves only the OIDC discovery path).
  if (ctx.path === '/.well-known/oauth-authorization-server') ctx.path = '/.well-known/openid-configuration';
  await next();
  if (ctx.path === '/token' && ctx.method === 'POST') {
    const p = ctx.oidc?.params || {};
    const body = ctx.body && typeof ctx.body === 'object' ? ctx.body : {};
    record({
      kind: 'token',
      status: ctx.status,
      grant_type: p.grant_type ?? null,
      client_id: ctx.oidc?.client?.clientId ?? null,
      resource: p.resource ?? null,
      code_verifier: Boolean(p.code_verifier),
      presented_refresh_sha256: p.refresh_token ? sha256(p.refresh_token) : null,
      access_sha256: body.access_token ? sha256(body.access_token) : null,
      refresh_sha256: body.refresh_token ? sha256(body.refresh_token) : null,
      expires_in: body.expires_in ?? null,
      at: Date.now(), // when it was answered (ms): with expires_in, when the access token expires
      error: body.error ?? null,
    });
  } else if (ctx.path === '/reg' && ctx.method === 'POST') {
    const b = ctx.body && typeof ctx.body === 'object' ? ctx.body : {};
    record({ kind: 'register', status: ctx.status, client_id: b.client_id ?? null, redirect_uris: b.redirect_uris ?? null,
      grant_types: b.grant_types ?? null, token_endpoint_auth_method: b.token_endpoint_auth_method ?? null });
  } else if (ctx.path === '/auth' && ctx.method === 'GET') {
    record({ kind: 'authorize', params: Object.fromEntries(Object.entries(ctx.query).filter(([k]) => k !== 'code_challenge')) });
  }
});

// --------------------------------------------------------------------------- the MCP server

const expired = new Set(); // SHA-256 of the access tokens treated as expired
const seen = new Set();

async function verify(authorization) {
  const m = /^Bearer (.+)$/.exec(authorization || '');
  if (!m) return { error: null };
  const token = m[1];
  seen.add(sha256(token));
  if (expired.has(sha256(token))) return { error: 'the access token expired' };
  try {
    const { payload } = await jwtVerify(token, publicKey, { issuer: ISSUER, audience: MCP_URL, typ: 'at+jwt' });
    return { token, claims: payload };
  } catch (e) {
    return { error: `invalid token: ${e.message}` };
  }
}

function mcpServer(auth) {
  const server = new Server({ name: 'saas-upstream', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: [{ name: 'whoami', description: 'Who the SaaS thinks is calling', inputSchema: { type: 'object', properties: {} } }],
  }));
  server.setRequestHandler(CallToolRequestSchema, async (request) => {
    if (request.params.name !== 'whoami') throw new Error(`unknown tool ${request.params.name}`);
    const who = { sub: auth.claims.sub, client_id: auth.claims.client_id ?? null, scope: auth.claims.scope ?? null, token_sha256: sha256(auth.token) };
    return { content: [{ type: 'text', text: JSON.stringify(who) }] };
  });
  return server;
}

const json = (res, status, body, headers = {}) => res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));

const authorizationServer = provider.callback();

createServer(async (req, res) => {
  const path = new URL(req.url, ORIGIN).pathname;
  if (req.method === 'GET' && (path === '/.well-known/oauth-protected-resource/mcp' || path === '/.well-known/oauth-protected-resource')) {
    json(res, 200, { resource: MCP_URL, authorization_servers: [ISSUER], scopes_supported: SCOPES, bearer_methods_supported: ['header'] });
    return;
  }
  if (req.method === 'POST' && path === '/control/expire') {
    for (const h of seen) expired.add(h);
    json(res, 200, { expired: expired.size });
    return;
  }
  if (path !== '/mcp') {
    authorizationServer(req, res);
    return;
  }
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  let body;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  const auth = await verify(req.headers.authorization);
  record({ kind: 'mcp', method: req.method, url: req.url, authorization: req.headers.authorization ?? null,
    rpc: body?.method ?? null, tool: body?.params?.name ?? null, accepted: Boolean(auth.claims), error: auth.error ?? null });
  if (!auth.claims) {
    const error = auth.error ? `, error="invalid_token", error_description="${auth.error.replace(/["\\]/g, '')}"` : '';
    json(res, 401, { error: 'unauthorized' }, { 'www-authenticate': `Bearer resource_metadata="${PRM_URL}"${error}` });
    return;
  }
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST' }).end();
    return;
  }
  // Stateless: a server and a transport per request.
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  const server = mcpServer(auth);
  res.on('close', () => {
    transport.close();
    server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, body);
}).listen(PORT, '127.0.0.1', () => {
  console.log(`saas upstream ${MCP_URL} ready; its authorization server ${ISSUER}`);
});
