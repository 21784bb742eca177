// The MCP client of the gateway's user-oauth scenario (user_oauth_scenarios.py), on the official
// TypeScript SDK v1 or v2 (pinned in ../package.json). It signs in at the gateway the way
// gateway-client.mjs does (DCR, PKCE, `resource`, the login & consent page filled by
// login-follower.mjs), then, in steps the runner paces with files:
//
//   1. connects: the gateway answers with the JSON-RPC error carrying the connect link (the user
//      has not connected their account at the upstream); writes READY1 (the error and the
//      gateway's access token, as JSON), waits
//      for GO1 (the runner has a browser connect the account meanwhile);
//   2. connects again (same gateway token, no new sign-in), calls `whoami` twice; READY2 / GO2
//      (the runner has the upstream treat its access token as expired);
//   3. calls `whoami` until it succeeds (deadline 20 s; the gateway refreshes the grant); READY3 /
//      GO3 (the runner revokes the connection on the gateway's connections page);
//   4. calls `whoami`: the error with the link again.
//
//   SDK=v1|v2 READY1=… GO1=… READY2=… GO2=… READY3=… GO3=… node peers/user-oauth-client.mjs MCP_URL
//
// Env: REDIRECT_URI, SCOPE, LOGIN_USER, LOGIN_PASSWORD as in gateway-client.mjs. Prints progress
// on stderr and one `RESULT {json}` line on stdout (the gateway's access token included, so the
// runner can look for it at the upstream).
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { followToRedirectUri } from './login-follower.mjs';

const SDK = process.env.SDK || 'v1';
const url = new URL(process.argv[2]);
const REDIRECT = process.env.REDIRECT_URI || 'http://127.0.0.1:33418/callback';
const SCOPE = process.env.SCOPE || 'mcp:read mcp:write';
const LOGIN = process.env.LOGIN_USER !== undefined ? { user: process.env.LOGIN_USER, password: process.env.LOGIN_PASSWORD ?? '' } : {};
const CALL_TIMEOUT_MS = 30000;
const PAUSE_MS = 120000;

const sdk = SDK === 'v2'
  ? await import('@modelcontextprotocol/client')
  : {
    ...(await import('@modelcontextprotocol/sdk/client/index.js')),
    ...(await import('@modelcontextprotocol/sdk/client/streamableHttp.js')),
    ...(await import('@modelcontextprotocol/sdk/client/auth.js')),
  };
const { Client, StreamableHTTPClientTransport, UnauthorizedError } = sdk;

const result = { sdk: SDK, authorizations: [], token_requests: [], steps: {} };
const log = (...a) => console.error('[client]', ...a);

const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init = {}) => {
  const u = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  if (u.pathname.endsWith('/token') && init.body) {
    const body = new URLSearchParams(String(init.body));
    result.token_requests.push({ grant_type: body.get('grant_type'), resource: body.get('resource') });
  }
  return realFetch(input, init);
};

class HeadlessProvider {
  #client; #tokens; #verifier; #discovery; #state; callback;
  get redirectUrl() { return REDIRECT; }
  get clientMetadata() {
    return {
      client_name: `user-oauth-${SDK}-interop`, redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], token_endpoint_auth_method: 'none', scope: SCOPE,
    };
  }
  clientInformation() { return this.#client; }
  saveClientInformation(c) { this.#client = c; }
  tokens() { return this.#tokens; }
  saveTokens(t) { this.#tokens = t; }
  saveCodeVerifier(v) { this.#verifier = v; }
  codeVerifier() { return this.#verifier; }
  saveDiscoveryState(s) { this.#discovery = s; } // v2 (SEP-2352)
  discoveryState() { return this.#discovery; }
  state() { this.#state = randomBytes(16).toString('base64url'); return this.#state; }
  async redirectToAuthorization(authUrl) {
    const params = Object.fromEntries(authUrl.searchParams);
    delete params.code_challenge;
    const { callback: cb, trace } = await followToRedirectUri(authUrl, REDIRECT, { ...LOGIN, fetchFn: realFetch });
    result.authorizations.push({ params, trace, callback: Object.fromEntries([...cb.searchParams].filter(([k]) => k !== 'code')) });
    if (cb.searchParams.get('error')) throw new Error(`AS error ${cb.searchParams.get('error')}: ${cb.searchParams.get('error_description')}`);
    this.callback = cb;
  }
}

const provider = new HeadlessProvider();
const transport = () => new StreamableHTTPClientTransport(url, { authProvider: provider });
const newClient = () => new Client({ name: `user-oauth-${SDK}-interop`, version: '1.0.0' });
const errorOf = (e) => ({ name: e?.constructor?.name, code: e?.code ?? null, message: String(e?.message ?? e), data: e?.data ?? null });
const textOf = (r) => (r.content || []).filter((c) => c.type === 'text').map((c) => c.text).join('');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms)); // polling interval, bounded by a deadline

// Connects (signing in at the gateway when it answers 401); returns {client} or {error}.
async function connect() {
  let client = newClient();
  try {
    await client.connect(transport());
    return { client };
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !provider.callback) return { error: errorOf(e) };
  }
  const cb = provider.callback;
  provider.callback = undefined;
  // v1 takes the code; v2 the whole callback query (it checks the RFC 9207 `iss`).
  await transport().finishAuth(SDK === 'v2' ? cb.searchParams : cb.searchParams.get('code'));
  client = newClient();
  try {
    await client.connect(transport());
    return { client };
  } catch (e) {
    return { error: errorOf(e) };
  }
}

async function whoami(client) {
  const t0 = Date.now();
  try {
    const opts = { timeout: CALL_TIMEOUT_MS };
    const r = SDK === 'v2' ? await client.callTool({ name: 'whoami', arguments: {} }, opts) : await client.callTool({ name: 'whoami', arguments: {} }, undefined, opts);
    const text = textOf(r);
    let who = null;
    try { who = JSON.parse(text); } catch { /* not JSON: recorded as text */ }
    return { isError: r.isError ?? false, text, who, ms: Date.now() - t0 };
  } catch (e) {
    return { error: errorOf(e), ms: Date.now() - t0 };
  }
}

async function pause(n, payload) {
  writeFileSync(process.env[`READY${n}`], JSON.stringify(payload ?? {}));
  const go = process.env[`GO${n}`];
  const t0 = Date.now();
  while (!existsSync(go)) {
    if (Date.now() - t0 > PAUSE_MS) throw new Error(`pause ${n}: ${go} did not appear within ${PAUSE_MS / 1000} s`);
    await sleep(50);
  }
}

// 1. signed in at the gateway; the upstream wants the user's own account.
const first = await connect();
result.steps.first = first.error ? { error: first.error } : { connected: true };
log('first connect', JSON.stringify(result.steps.first).slice(0, 600));
if (first.client) await first.client.close();
result.access_token = provider.tokens()?.access_token ?? null;
await pause(1, { ...result.steps.first, access_token: result.access_token });

// 2. after the browser connected the account.
const second = await connect();
result.steps.second_connect = second.error ? { error: second.error } : { connected: true };
if (second.client) {
  const client = second.client;
  result.protocol_version = client.transport?.protocolVersion ?? null;
  result.steps.whoami1 = await whoami(client);
  result.steps.whoami2 = await whoami(client);
  log('whoami', JSON.stringify(result.steps.whoami1).slice(0, 400));
  await pause(2, { whoami1: result.steps.whoami1 });

  // 3. the upstream treats the token as expired: calls until one succeeds.
  const attempts = [];
  const t0 = Date.now();
  for (;;) {
    const a = await whoami(client);
    attempts.push(a);
    if (!a.error && !a.isError) break;
    if (Date.now() - t0 > 20000) break;
    await sleep(100);
  }
  result.steps.after_expiry = { attempts };
  result.steps.whoami_again = await whoami(client);
  log('after expiry', JSON.stringify(attempts).slice(0, 600));
  await pause(3, { after_expiry: attempts });

  // 4. after the revocation on the connections page.
  result.steps.after_revoke = await whoami(client);
  log('after revoke', JSON.stringify(result.steps.after_revoke).slice(0, 600));
  await client.close();
}
result.access_token_final = provider.tokens()?.access_token ?? null;
result.client_id = provider.clientInformation()?.client_id ?? null;
console.log('RESULT ' + JSON.stringify(result));
