// A scripted MCP client for the gateway scenarios (gateway_scenarios.py), on the official
// TypeScript SDK v1 (@modelcontextprotocol/sdk) or v2 (@modelcontextprotocol/client), both
// pinned in ../package.json. It signs in through the gateway's embedded authorization server
// the way ts-sdk-client.mjs and ts-sdk-v2-client.mjs do (DCR, PKCE, `resource`, the login &
// consent page filled by login-follower.mjs), then runs the steps it is given.
//
//   SDK=v1|v2 STEPS='[…]' node peers/gateway-client.mjs MCP_URL
//
// Env: REDIRECT_URI, SCOPE (default "mcp:read mcp:write"), LOGIN_USER, LOGIN_PASSWORD as in
// ts-sdk-client.mjs; STEPS, a JSON array of steps, each recorded under its `as` key:
//   {"op":"list","as":K}                      tools/list: names, and the result's _meta
//   {"op":"call","name":N,"args":{…},"as":K}  tools/call: {isError, text} or {error}
//   {"op":"progress",…call…}                  the same with a progress callback: + {progress:[…]}
//   {"op":"cancel",…call…,"after_progress":1} aborts the call (notifications/cancelled) once that
//                                             many progress notifications came: {error, progress}
//   {"op":"pause","ready":FILE,"go":FILE}     writes FILE `ready`, waits (60 s at most) for `go`:
//                                             the runner does something to the upstream meanwhile
//   {"op":"until_ok",…call…,"deadline_s":S}   calls until a call succeeds (S seconds at most,
//                                             each call bounded by the SDK's timeout): {attempts}
// Prints progress on stderr and one `RESULT {json}` line on stdout (login trace, token claims,
// the access token itself so the runner can look for it upstream, each step's record).
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { followToRedirectUri } from './login-follower.mjs';

const SDK = process.env.SDK || 'v1';
const url = new URL(process.argv[2]);
const REDIRECT = process.env.REDIRECT_URI || 'http://127.0.0.1:33418/callback';
const SCOPE = process.env.SCOPE || 'mcp:read mcp:write';
const LOGIN = process.env.LOGIN_USER !== undefined ? { user: process.env.LOGIN_USER, password: process.env.LOGIN_PASSWORD ?? '' } : {};
const STEPS = JSON.parse(process.env.STEPS || '[]');
const CALL_TIMEOUT_MS = 30000;

const sdk = SDK === 'v2'
  ? await import('@modelcontextprotocol/client')
  : {
    ...(await import('@modelcontextprotocol/sdk/client/index.js')),
    ...(await import('@modelcontextprotocol/sdk/client/streamableHttp.js')),
    ...(await import('@modelcontextprotocol/sdk/client/auth.js')),
  };
const { Client, StreamableHTTPClientTransport, UnauthorizedError } = sdk;

const result = { sdk: SDK, authorize: null, authorizations: [], token_requests: [], steps: {} };
const claimsOf = (tok) => JSON.parse(Buffer.from(tok.split('.')[1], 'base64url').toString());

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
      client_name: `gateway-${SDK}-interop`, redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'],
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
    result.authorize ??= params;
    const { callback: cb, trace } = await followToRedirectUri(authUrl, REDIRECT, { ...LOGIN, fetchFn: realFetch });
    result.authorizations.push({ params, trace, callback: Object.fromEntries([...cb.searchParams].filter(([k]) => k !== 'code')) });
    if (cb.searchParams.get('error')) throw new Error(`AS error ${cb.searchParams.get('error')}: ${cb.searchParams.get('error_description')}`);
    this.callback = cb;
  }
}

const provider = new HeadlessProvider();
const transport = () => new StreamableHTTPClientTransport(url, { authProvider: provider });

async function connect() {
  let client = new Client({ name: `gateway-${SDK}-interop`, version: '1.0.0' });
  try {
    await client.connect(transport());
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !provider.callback) throw e;
    const cb = provider.callback;
    provider.callback = undefined;
    // v1 takes the code; v2 the whole callback query (it checks the RFC 9207 `iss`).
    await transport().finishAuth(SDK === 'v2' ? cb.searchParams : cb.searchParams.get('code'));
    client = new Client({ name: `gateway-${SDK}-interop`, version: '1.0.0' });
    await client.connect(transport());
  }
  return client;
}

const textOf = (r) => (r.content || []).filter((c) => c.type === 'text').map((c) => c.text).join('');
const errorOf = (e) => ({ name: e?.constructor?.name, code: e?.code, message: String(e?.message ?? e) });

async function callTool(client, params, options = {}) {
  const opts = { timeout: CALL_TIMEOUT_MS, ...options };
  return SDK === 'v2' ? client.callTool(params, opts) : client.callTool(params, undefined, opts);
}

async function call(client, step, options) {
  const t0 = Date.now();
  try {
    const r = await callTool(client, { name: step.name, arguments: step.args || {} }, options);
    return { isError: r.isError ?? false, text: textOf(r), ms: Date.now() - t0 };
  } catch (e) {
    return { error: errorOf(e), ms: Date.now() - t0 };
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms)); // polling interval, bounded by a deadline

const client = await connect();
result.protocol_version = client.transport?.protocolVersion ?? null;
for (const step of STEPS) {
  console.error('[step]', JSON.stringify(step));
  let rec;
  if (step.op === 'list') {
    const r = await client.listTools();
    rec = { names: r.tools.map((t) => t.name), meta: r._meta ?? null };
  } else if (step.op === 'call') {
    rec = await call(client, step);
  } else if (step.op === 'progress') {
    const progress = [];
    rec = await call(client, step, { onprogress: (p) => progress.push(p) });
    rec.progress = progress;
  } else if (step.op === 'cancel') {
    const progress = [];
    const abort = new AbortController();
    rec = await call(client, step, {
      signal: abort.signal,
      onprogress: (p) => { progress.push(p); if (progress.length >= (step.after_progress ?? 1)) abort.abort('cancelled by the interop client'); },
    });
    rec.progress = progress;
  } else if (step.op === 'pause') {
    writeFileSync(step.ready, 'ready');
    const t0 = Date.now();
    while (!existsSync(step.go)) {
      if (Date.now() - t0 > 60000) throw new Error(`pause: ${step.go} did not appear within 60 s`);
      await sleep(50);
    }
    rec = { waited_ms: Date.now() - t0 };
  } else if (step.op === 'until_ok') {
    const attempts = [];
    const t0 = Date.now();
    for (;;) {
      const a = await call(client, step);
      attempts.push(a);
      if (!a.error && !a.isError) break;
      if (Date.now() - t0 > (step.deadline_s ?? 20) * 1000) break;
      await sleep(200);
    }
    rec = { attempts };
  } else {
    throw new Error(`unknown step ${step.op}`);
  }
  console.error('[step]', step.as, JSON.stringify(rec).slice(0, 500));
  result.steps[step.as] = rec;
}
await client.close();
const tok = provider.tokens()?.access_token;
result.access_token = tok ?? null;
result.token_claims = tok ? claimsOf(tok) : null;
result.client_id = provider.clientInformation()?.client_id ?? null;
console.log('RESULT ' + JSON.stringify(result));
