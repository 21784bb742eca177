// Headless MCP client on the official TypeScript SDK v1 (@modelcontextprotocol/sdk, pinned in
// ../package.json), driven by tests/interop/runner.py. Adapted from shared/peers/ts-sdk-client.mjs.
//
//   node peers/ts-sdk-client.mjs MCP_URL
//
// Env:
//   MODE=cc         client_credentials with the SDK's ClientCredentialsProvider (CLIENT_ID/CLIENT_SECRET)
//   MODE=authcode   (default) authorization_code + PKCE + dynamic client registration + resource:
//                   redirectToAuthorization runs login-follower.mjs (redirects with a cookie jar; a
//                   login & consent form is filled as LOGIN_USER / LOGIN_PASSWORD and approved) and
//                   stops at REDIRECT_URI (nothing listens there)
//   AS_ISSUER       expected issuer (cc mode)
//   SCOPE           requested scopes (default "mcp:read mcp:write")
//   REDIRECT_URI    loopback redirect URI (authcode mode)
//   LOGIN_USER, LOGIN_PASSWORD   credentials for a login form (none: the AS must auto-approve)
//   REFRESH=1       afterwards, refresh through the SDK (`auth()` with the stored refresh token) and
//                   call whoami on a new connection with the refreshed access token
//   STEP_UP=1       afterwards, call admin_action (needs scope admin): records the 403 challenge and
//                   how the SDK reacts; if the SDK does not re-authorize by itself, re-authorizes
//                   explicitly with SCOPE + admin, then calls admin_action again
//   DUMP_RECEIVED   a file: at the end, everything this client received over HTTP (method, URL,
//                   status, headers, body of each answer, the login follower's hops included;
//                   bodies of GET event streams left out) and what it stores (tokens, client
//                   information, code verifier) is written there as JSON, for the runner to
//                   search (the proxy scenarios: no upstream token may be in it)
//
// Prints human-readable progress on stderr and one line `RESULT {json}` on stdout, which the
// runner asserts on. Exits non-zero on any error.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { writeFileSync } from 'node:fs';
import { followToRedirectUri } from './login-follower.mjs';

const url = new URL(process.argv[2]);
const MODE = process.env.MODE || 'authcode';
const REDIRECT = process.env.REDIRECT_URI || 'http://127.0.0.1:33418/callback';
const SCOPE = process.env.SCOPE || 'mcp:read mcp:write';
const LOGIN = process.env.LOGIN_USER !== undefined ? { user: process.env.LOGIN_USER, password: process.env.LOGIN_PASSWORD ?? '' } : {};
const result = { sdk: '@modelcontextprotocol/sdk', mode: MODE, authorize: null, authorizations: [], token_requests: [], mcp_errors: [] };
const claimsOf = (tok) => JSON.parse(Buffer.from(tok.split('.')[1], 'base64url').toString());

// DUMP_RECEIVED: every answer this client (and its login follower) received, bodies read from a
// clone so the SDK's own reading is untouched.
const DUMP = process.env.DUMP_RECEIVED;
const received = [];
const pendingBodies = [];
const realFetch = globalThis.fetch;
async function observedFetch(input, init = {}) {
  const res = await realFetch(input, init);
  if (DUMP) {
    const method = init.method || (typeof input === 'object' && input.method) || 'GET';
    const entry = {
      method, url: String(typeof input === 'string' || input instanceof URL ? input : input.url), status: res.status,
      headers: Object.fromEntries(res.headers), set_cookie: res.headers.getSetCookie(),
    };
    received.push(entry);
    const stream = (res.headers.get('content-type') || '').includes('text/event-stream') && method === 'GET';
    if (res.body && !stream) pendingBodies.push(res.clone().text().then((t) => { entry.body = t; }, (e) => { entry.body_error = String(e); }));
  }
  return res;
}

// Record what the SDK sends to the token endpoint (grant_type, resource, scope) and the MCP
// endpoint's error answers (status, WWW-Authenticate), for the assertions.
globalThis.fetch = async (input, init = {}) => {
  const u = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  if (u.pathname.endsWith('/token') && init.body) {
    const body = new URLSearchParams(String(init.body));
    result.token_requests.push({ url: u.href, grant_type: body.get('grant_type'), resource: body.get('resource'), scope: body.get('scope') });
  }
  const res = await observedFetch(input, init);
  if (u.href === url.href && res.status >= 400) {
    result.mcp_errors.push({ method: init.method || 'GET', status: res.status, www_authenticate: res.headers.get('www-authenticate') });
  }
  return res;
};

class HeadlessProvider {
  #client; #tokens; #verifier; lastCode; lastCallback;
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
    const params = Object.fromEntries(authUrl.searchParams);
    delete params.code_challenge;
    result.authorize ??= params;
    console.error('[auth] authorize', authUrl.origin + authUrl.pathname, JSON.stringify(params));
    const { callback: cb, trace } = await followToRedirectUri(authUrl, REDIRECT, { ...LOGIN, fetchFn: observedFetch });
    result.authorizations.push({ params, trace, callback: Object.fromEntries([...cb.searchParams].filter(([k]) => k !== 'code')) });
    if (cb.searchParams.get('error')) throw new Error(`AS error ${cb.searchParams.get('error')}: ${cb.searchParams.get('error_description')}`);
    this.lastCode = cb.searchParams.get('code');
    this.lastCallback = cb;
  }
}

const provider = MODE === 'cc'
  ? new ClientCredentialsProvider({
    clientId: process.env.CLIENT_ID || 'svc', clientSecret: process.env.CLIENT_SECRET || 'svc-secret',
    scope: SCOPE, expectedIssuer: process.env.AS_ISSUER,
  })
  : new HeadlessProvider();

const info = { name: 'ts-sdk-interop', version: '1.0.0' };

// connect, and on UnauthorizedError after a redirect: exchange the code, connect again
async function connect() {
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
  return client;
}

const textOf = (r) => r.content.filter((c) => c.type === 'text').map((c) => c.text).join('');

let client = await connect();
result.server = client.getServerVersion();
result.protocol_version = client.transport?.protocolVersion ?? null;
result.tools = (await client.listTools()).tools.map((t) => t.name);
const who = await client.callTool({ name: 'whoami', arguments: {} });
result.whoami_raw = who;
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
  const outcome = await auth(provider, { serverUrl: url }); // refresh_token grant, then saveTokens
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
  client = await connect();
  let r;
  try {
    r = await client.callTool({ name: 'admin_action', arguments: {} });
    step.path = 'no-403'; // succeeded at once: the token already had admin
  } catch (e) {
    step.error = `${e.constructor.name}: ${e.message}`;
    console.error('[step-up] admin_action failed:', step.error);
    if (e instanceof UnauthorizedError && result.authorizations.length > nAuth && provider.lastCode) {
      // The SDK started a new authorization by itself (redirectToAuthorization ran): finish it.
      step.path = 'sdk';
      await new StreamableHTTPClientTransport(url, { authProvider: provider }).finishAuth(provider.lastCode);
    } else {
      // The SDK gave up: re-authorize explicitly with the union of the scopes.
      step.path = 'explicit';
      step.explicit_scope = [...new Set([...SCOPE.split(' '), 'admin'])].join(' ');
      provider.saveTokens(undefined); // else auth() would only refresh, keeping the old scopes
      const outcome = await auth(provider, { serverUrl: url, scope: step.explicit_scope });
      if (outcome !== 'REDIRECT' || !provider.lastCode) throw new Error(`explicit re-authorization: auth() returned ${outcome}`);
      await auth(provider, { serverUrl: url, authorizationCode: provider.lastCode });
    }
    try { await client.close(); } catch { /* already failed */ }
    client = await connect();
    r = await client.callTool({ name: 'admin_action', arguments: {} });
  }
  await client.close();
  step.mcp_errors = result.mcp_errors.slice(nErr);
  step.reauthorizations = result.authorizations.slice(nAuth).map((a) => ({ scope: a.params.scope, logged_in: a.trace.some((h) => h.page) }));
  step.result = { isError: r.isError ?? false, text: textOf(r) };
  const t = provider.tokens()?.access_token;
  step.token_scope = t ? claimsOf(t).scope : null;
  result.step_up = step;
}

if (DUMP) {
  await Promise.allSettled(pendingBodies);
  const stored = {
    tokens: provider.tokens?.() ?? null,
    client_information: (await provider.clientInformation?.()) ?? null,
    code_verifier: provider.codeVerifier?.() ?? null,
  };
  writeFileSync(DUMP, JSON.stringify({ received, stored, result }, null, 1));
}

console.log('RESULT ' + JSON.stringify(result));
