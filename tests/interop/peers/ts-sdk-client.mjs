// Headless MCP client on the official TypeScript SDK v1 (@modelcontextprotocol/sdk, pinned in
// ../package.json), driven by tests/interop/runner.py. Adapted from shared/peers/ts-sdk-client.mjs.
//
//   node peers/ts-sdk-client.mjs MCP_URL
//
// Env:
//   MODE=cc         client_credentials with the SDK's ClientCredentialsProvider (CLIENT_ID/CLIENT_SECRET)
//   MODE=authcode   (default) authorization_code + PKCE + dynamic client registration + resource:
//                   redirectToAuthorization follows the AS's redirects with a cookie jar (the AS must
//                   auto-approve) and stops at REDIRECT_URI (nothing listens there)
//   AS_ISSUER       expected issuer (cc mode)
//   SCOPE           requested scopes (default "mcp:read mcp:write")
//   REDIRECT_URI    loopback redirect URI (authcode mode)
//
// Prints human-readable progress on stderr and one line `RESULT {json}` on stdout, which the
// runner asserts on. Exits non-zero on any error.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

const url = new URL(process.argv[2]);
const MODE = process.env.MODE || 'authcode';
const REDIRECT = process.env.REDIRECT_URI || 'http://127.0.0.1:33418/callback';
const SCOPE = process.env.SCOPE || 'mcp:read mcp:write';
const result = { mode: MODE, authorize: null, token_requests: [] };

// Record what the SDK sends to the token endpoint (grant_type, resource), for the assertions.
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init = {}) => {
  const u = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  if (u.pathname.endsWith('/token') && init.body) {
    const body = new URLSearchParams(String(init.body));
    result.token_requests.push({ url: u.href, grant_type: body.get('grant_type'), resource: body.get('resource'), scope: body.get('scope') });
  }
  return realFetch(input, init);
};

function keepCookies(jar, res) {
  for (const sc of res.headers.getSetCookie()) {
    const [kv] = sc.split(';');
    const i = kv.indexOf('=');
    jar.set(kv.slice(0, i).trim(), kv.slice(i + 1));
  }
}

// Follow redirects by hand, keeping cookies, until Location points at the redirect_uri.
async function followToRedirectUri(start, redirectUri) {
  const jar = new Map();
  let u = new URL(start);
  for (let hop = 0; hop < 15; hop++) {
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const r = await realFetch(u, { redirect: 'manual', headers: cookie ? { cookie } : {} });
    keepCookies(jar, r);
    const loc = r.headers.get('location');
    if (!loc) throw new Error(`no redirect at hop ${hop}: ${r.status} ${(await r.text()).slice(0, 300)}`);
    u = new URL(loc, u);
    if (u.href.startsWith(redirectUri)) return u;
  }
  throw new Error('too many redirects');
}

class HeadlessProvider {
  #client; #tokens; #verifier; lastCode;
  get redirectUrl() { return REDIRECT; }
  get clientMetadata() {
    return {
      client_name: 'ts-sdk-interop', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], token_endpoint_auth_method: 'none', scope: SCOPE,
    };
  }
  clientInformation() { return this.#client; }
  saveClientInformation(c) { this.#client = c; }
  tokens() { return this.#tokens; }
  saveTokens(t) { this.#tokens = t; }
  saveCodeVerifier(v) { this.#verifier = v; }
  codeVerifier() { return this.#verifier; }
  async redirectToAuthorization(authUrl) {
    result.authorize = Object.fromEntries(authUrl.searchParams);
    delete result.authorize.code_challenge;
    console.error('[auth] authorize', authUrl.origin + authUrl.pathname, JSON.stringify(result.authorize));
    const cb = await followToRedirectUri(authUrl, REDIRECT);
    if (cb.searchParams.get('error')) throw new Error(`AS error ${cb.searchParams.get('error')}: ${cb.searchParams.get('error_description')}`);
    this.lastCode = cb.searchParams.get('code');
  }
}

const provider = MODE === 'cc'
  ? new ClientCredentialsProvider({
    clientId: process.env.CLIENT_ID || 'svc', clientSecret: process.env.CLIENT_SECRET || 'svc-secret',
    scope: SCOPE, expectedIssuer: process.env.AS_ISSUER,
  })
  : new HeadlessProvider();

const info = { name: 'ts-sdk-interop', version: '1.0.0' };
let client = new Client(info);
try {
  await client.connect(new StreamableHTTPClientTransport(url, { authProvider: provider }));
} catch (e) {
  if (!(e instanceof UnauthorizedError) || !provider.lastCode) throw e;
  console.error('[auth] got the code; exchanging it');
  const t = new StreamableHTTPClientTransport(url, { authProvider: provider });
  await t.finishAuth(provider.lastCode); // code -> token (with code_verifier + resource)
  client = new Client(info);
  await client.connect(new StreamableHTTPClientTransport(url, { authProvider: provider }));
}
result.server = client.getServerVersion();
result.protocol_version = client.transport?.protocolVersion ?? null;
result.tools = (await client.listTools()).tools.map((t) => t.name);
const who = await client.callTool({ name: 'whoami', arguments: {} });
result.whoami_raw = who;
result.whoami = JSON.parse(who.content.find((c) => c.type === 'text').text);
const echo = await client.callTool({ name: 'echo', arguments: { text: 'hello interop' } });
result.echo = echo.content.map((c) => c.text).join('');
const tok = provider.tokens()?.access_token;
if (tok) {
  result.token_header = JSON.parse(Buffer.from(tok.split('.')[0], 'base64url').toString());
  result.token_claims = JSON.parse(Buffer.from(tok.split('.')[1], 'base64url').toString());
}
result.client_id = (await provider.clientInformation?.())?.client_id ?? null;
await client.close();
console.log('RESULT ' + JSON.stringify(result));
