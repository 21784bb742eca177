// Headless MCP client on the official TypeScript SDK v2 (@modelcontextprotocol/client, pinned in
// ../package.json), driven by tests/interop/runner.py. Adapted from shared/peers/ts-sdk-v2-client.mjs.
//
//   node peers/ts-sdk-v2-client.mjs MCP_URL
//
// Env:
//   MODE=cc         client_credentials with the SDK's ClientCredentialsProvider (CLIENT_ID/CLIENT_SECRET)
//   MODE=authcode   (default) authorization_code + PKCE + DCR + resource; redirectToAuthorization runs
//                   login-follower.mjs (cookie jar; the login & consent form is filled as
//                   LOGIN_USER / LOGIN_PASSWORD and approved) and stops at REDIRECT_URI
//   AS_ISSUER, SCOPE, REDIRECT_URI, LOGIN_USER, LOGIN_PASSWORD   as in ts-sdk-client.mjs
//   REFRESH=1       afterwards, refresh through the SDK (`auth()` with the stored refresh token) and
//                   call whoami on a new connection with the refreshed access token
//   STEP_UP=1       afterwards, call admin_action: v2 re-authorizes by itself on 403
//                   insufficient_scope (SEP-2350, union of the scopes); the follower approves again
//                   and `finishAuth` completes it, then admin_action is retried
//
// v2 differences handled here: `finishAuth` gets the whole callback query (URLSearchParams) so
// the SDK checks the RFC 9207 `iss`; the provider persists discovery state (SEP-2352) and sends
// `state`, which this script checks on the callback.
//
// Prints progress on stderr and one line `RESULT {json}` on stdout. Exits non-zero on any error.
import { randomBytes } from 'node:crypto';
import { Client, StreamableHTTPClientTransport, UnauthorizedError, ClientCredentialsProvider, auth } from '@modelcontextprotocol/client';
import { followToRedirectUri } from './login-follower.mjs';

const url = new URL(process.argv[2]);
const MODE = process.env.MODE || 'authcode';
const REDIRECT = process.env.REDIRECT_URI || 'http://127.0.0.1:33418/callback';
const SCOPE = process.env.SCOPE || 'mcp:read mcp:write';
const LOGIN = process.env.LOGIN_USER !== undefined ? { user: process.env.LOGIN_USER, password: process.env.LOGIN_PASSWORD ?? '' } : {};
const result = { sdk: '@modelcontextprotocol/client', mode: MODE, authorize: null, authorizations: [], token_requests: [], mcp_errors: [], warnings: [] };
const claimsOf = (tok) => JSON.parse(Buffer.from(tok.split('.')[1], 'base64url').toString());

// The SDK warns through console.warn (e.g. a provider without discovery state): keep them.
const realWarn = console.warn;
console.warn = (...args) => { result.warnings.push(args.map(String).join(' ')); realWarn(...args); };

const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init = {}) => {
  const u = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  if (u.pathname.endsWith('/token') && init.body) {
    const body = new URLSearchParams(String(init.body));
    result.token_requests.push({ url: u.href, grant_type: body.get('grant_type'), resource: body.get('resource'), scope: body.get('scope') });
  }
  const res = await realFetch(input, init);
  if (u.href === url.href && res.status >= 400) {
    result.mcp_errors.push({ method: init.method || 'GET', status: res.status, www_authenticate: res.headers.get('www-authenticate') });
  }
  return res;
};

class HeadlessProvider {
  #client; #tokens; #verifier; #discovery; #state; lastParams;
  get redirectUrl() { return REDIRECT; }
  get clientMetadata() {
    return {
      client_name: 'ts-sdk-v2-interop', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], token_endpoint_auth_method: 'none', scope: SCOPE,
    };
  }
  clientInformation() { return this.#client; }
  saveClientInformation(c) { this.#client = c; }
  tokens() { return this.#tokens; }
  saveTokens(t) { this.#tokens = t; }
  saveCodeVerifier(v) { this.#verifier = v; }
  codeVerifier() { return this.#verifier; }
  // SEP-2352: discovery state persisted with the verifier binds the callback leg to the AS
  saveDiscoveryState(s) { this.#discovery = s; }
  discoveryState() { return this.#discovery; }
  state() { this.#state = randomBytes(16).toString('base64url'); return this.#state; }
  async redirectToAuthorization(authUrl) {
    const params = Object.fromEntries(authUrl.searchParams);
    delete params.code_challenge;
    result.authorize ??= params;
    console.error('[auth] authorize', authUrl.origin + authUrl.pathname, JSON.stringify(params));
    const { callback: cb, trace } = await followToRedirectUri(authUrl, REDIRECT, { ...LOGIN, fetchFn: realFetch });
    const callback = Object.fromEntries([...cb.searchParams].filter(([k]) => k !== 'code'));
    result.authorizations.push({ params, trace, callback, state_matches: cb.searchParams.get('state') === this.#state });
    if (cb.searchParams.get('state') !== this.#state) throw new Error(`state mismatch: sent ${this.#state}, got ${cb.searchParams.get('state')}`);
    this.lastParams = cb.searchParams; // v2 finishAuth wants the whole callback query (RFC 9207 iss)
  }
}

const provider = MODE === 'cc'
  ? new ClientCredentialsProvider({
    clientId: process.env.CLIENT_ID || 'svc', clientSecret: process.env.CLIENT_SECRET || 'svc-secret',
    scope: SCOPE, expectedIssuer: process.env.AS_ISSUER,
  })
  : new HeadlessProvider();

const info = { name: 'ts-sdk-v2-interop', version: '1.0.0' };
const transport = () => new StreamableHTTPClientTransport(url, { authProvider: provider });
const textOf = (r) => r.content.filter((c) => c.type === 'text').map((c) => c.text).join('');

async function finish() {
  const params = provider.lastParams;
  provider.lastParams = undefined;
  console.error('[auth] finishAuth with', [...params.keys()].join(','));
  await transport().finishAuth(params); // code + iss (RFC 9207) -> token (code_verifier + resource)
}

async function connect() {
  let client = new Client(info);
  try {
    await client.connect(transport());
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !provider.lastParams) throw e;
    await finish();
    client = new Client(info);
    await client.connect(transport());
  }
  return client;
}

let client = await connect();
result.server = client.getServerVersion();
result.protocol_version = client.transport?.protocolVersion ?? null;
result.tools = (await client.listTools()).tools.map((t) => t.name);
const who = await client.callTool({ name: 'whoami', arguments: {} });
result.whoami = JSON.parse(textOf(who));
const echo = await client.callTool({ name: 'echo', arguments: { text: 'hello interop' } });
result.echo = textOf(echo);
const tok = provider.tokens()?.access_token;
if (tok) {
  result.token_header = JSON.parse(Buffer.from(tok.split('.')[0], 'base64url').toString());
  result.token_claims = claimsOf(tok);
}
result.client_id = (await provider.clientInformation?.())?.client_id ?? null;
await client.close();

if (process.env.REFRESH === '1') {
  const before = provider.tokens();
  const n = result.token_requests.length;
  console.error('[refresh] auth() with the stored refresh token');
  const outcome = await auth(provider, { serverUrl: url });
  const after = provider.tokens();
  client = await connect();
  const w = await client.callTool({ name: 'whoami', arguments: {} });
  await client.close();
  result.refresh = {
    outcome,
    requests: result.token_requests.slice(n),
    old_refresh_token: before?.refresh_token ?? null,
    new_refresh_token: after?.refresh_token ?? null,
    access_token_changed: before?.access_token !== after?.access_token,
    token_claims: after?.access_token ? claimsOf(after.access_token) : null,
    whoami: JSON.parse(textOf(w)),
    redirected: result.authorizations.length > 1,
  };
}

if (process.env.STEP_UP === '1') {
  const step = { first_scope: provider.tokens()?.scope ?? null };
  const nAuth = result.authorizations.length;
  const nErr = result.mcp_errors.length;
  const nTok = result.token_requests.length;
  client = await connect();
  let r;
  try {
    r = await client.callTool({ name: 'admin_action', arguments: {} });
    step.path = 'no-403';
  } catch (e) {
    step.error = `${e.constructor.name}: ${e.message}`;
    console.error('[step-up] admin_action:', step.error);
    if (!(e instanceof UnauthorizedError) || !provider.lastParams) throw e;
    step.path = 'sdk'; // the SDK re-authorized by itself; complete the redirect leg
    await finish();
    try { await client.close(); } catch { /* already failed */ }
    client = await connect();
    r = await client.callTool({ name: 'admin_action', arguments: {} });
  }
  await client.close();
  step.mcp_errors = result.mcp_errors.slice(nErr);
  step.token_requests = result.token_requests.slice(nTok);
  step.reauthorizations = result.authorizations.slice(nAuth).map((a) => ({ scope: a.params.scope, logged_in: a.trace.some((h) => h.page) }));
  step.result = { isError: r.isError ?? false, text: textOf(r) };
  const t = provider.tokens()?.access_token;
  step.token_scope = t ? claimsOf(t).scope : null;
  result.step_up = step;
}

console.log('RESULT ' + JSON.stringify(result));
