// A DPoP client (RFC 9449) built on panva's oauth4webapi (pinned in ../package.json): it gets a
// DPoP-bound access token, calls the MCP endpoint with `Authorization: DPoP` and a fresh proof per
// request (retrying once on `use_dpop_nonce`, as the library intends), and then, as an attacker
// holding the token, sends what a thief could: the proofs are made by oauth4webapi itself, for the
// wrong URL, the wrong token, a stale clock or another key, or replayed as seen on the wire.
//
//   node peers/dpop-client.mjs <MCP URL>
// Env:
//   MODE          cc (client_credentials with CLIENT_ID / CLIENT_SECRET, HTTP Basic)
//                 authcode (dynamic registration of a public client, authorization with
//                 dpop_jkt + PKCE S256 + resource, the code redeemed with a proof, then a refresh
//                 with a proof; the authorization server must approve without a page, as
//                 `mcp-oauth dev --auto-approve` does)
//   AS_ISSUER     the authorization server's issuer
//   DISCOVERY     oidc (/.well-known/openid-configuration, default) or oauth2 (RFC 8414)
//   SCOPE         scopes to ask for (default "mcp:read mcp:write")
//   ATTACKS=1     after the client's own calls, send the thief's requests (see `attacks`)
//   TOOL          the tool to call (default whoami, which the demo MCP server has), with
//   TOOL_ARGS     its arguments as JSON (default {})
// Prints `RESULT {json}`: the token response, the decoded access token claims, the key's
// thumbprint, every HTTP exchange (method, URL, status, the Authorization scheme, the decoded DPoP
// proof, WWW-Authenticate, DPoP-Nonce), the MCP results and, with ATTACKS=1, each attack's answer.
import * as oauth from 'oauth4webapi';

const MCP_URL = new URL(process.argv[2]);
const MODE = process.env.MODE || 'cc';
const ISSUER = new URL(process.env.AS_ISSUER);
const SCOPE = process.env.SCOPE || 'mcp:read mcp:write';
const PROTOCOL = '2025-11-25';

const decode = (jwt) => {
  try {
    const [h, p] = String(jwt).split('.');
    const part = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
    return { header: part(h), claims: part(p) };
  } catch {
    return null;
  }
};

// Every request oauth4webapi sends goes through here and is recorded.
const exchanges = [];
const recordingFetch = async (url, init) => {
  const headers = new Headers(init.headers);
  const response = await fetch(url, init);
  const auth = headers.get('authorization') || '';
  const proof = headers.get('dpop');
  exchanges.push({
    method: init.method || 'GET',
    url: String(url),
    scheme: auth.split(' ')[0] || null,
    dpop: proof ? decode(proof) : null,
    status: response.status,
    www_authenticate: response.headers.get('www-authenticate'),
    dpop_nonce: response.headers.get('dpop-nonce'),
  });
  return response;
};
const opts = (extra = {}) => ({ [oauth.allowInsecureRequests]: true, [oauth.customFetch]: recordingFetch, ...extra });

// Runs `send` (a request made with the DPoP handle) and, when the server asks for a nonce,
// once more: the handle has kept the nonce from the DPoP-Nonce header.
const nonceRetries = [];
async function withNonceRetry(what, send) {
  try {
    return await send();
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err;
    nonceRetries.push(what);
    return await send();
  }
}

const client = { client_id: process.env.CLIENT_ID || 'unregistered' };
const keyPair = await oauth.generateKeyPair('ES256');
const DPoP = oauth.DPoP(client, keyPair);
const jkt = await DPoP.calculateThumbprint();

const as = await oauth.processDiscoveryResponse(
  ISSUER,
  await oauth.discoveryRequest(ISSUER, opts({ algorithm: process.env.DISCOVERY || 'oidc' })),
);

let tokens;
let refreshed = null;
let registered = null;
if (MODE === 'cc') {
  const auth = oauth.ClientSecretBasic(process.env.CLIENT_SECRET);
  tokens = await withNonceRetry('token', async () => oauth.processClientCredentialsResponse(
    as, client,
    await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: SCOPE, resource: MCP_URL.href }, opts({ DPoP })),
  ));
} else if (MODE === 'authcode') {
  const redirectUri = `http://127.0.0.1:${20000 + Math.floor(Math.random() * 20000)}/callback`; // nothing listens
  registered = await oauth.processDynamicClientRegistrationResponse(await oauth.dynamicClientRegistrationRequest(as, {
    redirect_uris: [redirectUri],
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    client_name: 'oauth4webapi-dpop',
    scope: SCOPE,
  }, opts()));
  client.client_id = registered.client_id;
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const authorize = new URL(as.authorization_endpoint);
  for (const [k, v] of Object.entries({
    response_type: 'code', client_id: client.client_id, redirect_uri: redirectUri, scope: SCOPE, state,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    resource: MCP_URL.href, dpop_jkt: jkt,
  })) authorize.searchParams.set(k, v);
  const res = await fetch(authorize, { redirect: 'manual' });
  const location = res.headers.get('location');
  if (res.status !== 302 || !location) throw new Error(`authorize: HTTP ${res.status} without a redirect (is the server auto-approving?)`);
  const params = oauth.validateAuthResponse(as, client, new URL(location), state);
  tokens = await withNonceRetry('token', async () => oauth.processAuthorizationCodeResponse(
    as, client,
    await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, redirectUri, verifier,
      opts({ DPoP, additionalParameters: { resource: MCP_URL.href } })),
  ));
  if (tokens.refresh_token) {
    refreshed = await withNonceRetry('refresh', async () => oauth.processRefreshTokenResponse(
      as, client,
      await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token,
        opts({ DPoP, additionalParameters: { resource: MCP_URL.href } })),
    ));
  }
} else {
  throw new Error(`MODE ${MODE}: cc or authcode`);
}
const accessToken = (refreshed || tokens).access_token;

// ------------------------------------------------------------------ the MCP endpoint, with DPoP
const parseBody = (text, type) => {
  if ((type || '').startsWith('text/event-stream')) {
    const datas = text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).filter(Boolean);
    return datas.length ? JSON.parse(datas[datas.length - 1]) : null;
  }
  return text ? JSON.parse(text) : null;
};
let session = null;
async function mcp(message) {
  const headers = new Headers({
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': PROTOCOL,
  });
  if (session) headers.set('mcp-session-id', session);
  const response = await withNonceRetry(`mcp ${message.method}`, () =>
    oauth.protectedResourceRequest(accessToken, 'POST', MCP_URL, headers, JSON.stringify(message), opts({ DPoP })));
  session = response.headers.get('mcp-session-id') || session;
  const text = await response.text();
  return { status: response.status, body: response.status === 202 ? null : parseBody(text, response.headers.get('content-type')) };
}
const init = await mcp({
  jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'oauth4webapi-dpop', version: '1' } },
});
await mcp({ jsonrpc: '2.0', method: 'notifications/initialized' });
const whoamiCall = {
  jsonrpc: '2.0', id: 2, method: 'tools/call',
  params: { name: process.env.TOOL || 'whoami', arguments: JSON.parse(process.env.TOOL_ARGS || '{}') },
};
const who = await mcp(whoamiCall);
const whoText = (who.body?.result?.content || []).map((c) => c.text || '').join('');
let whoami = null;
try { whoami = JSON.parse(whoText); } catch { whoami = who.body; }

// ------------------------------------------------------------------ the thief
// Proofs made by oauth4webapi without sending anything: a fetch that keeps the DPoP header.
async function proofFor(handle, token, url) {
  let captured = null;
  const capture = async (_url, init) => {
    captured = new Headers(init.headers).get('dpop');
    return new Response('{}', { status: 200, headers: { 'content-type': 'application/json' } });
  };
  await oauth.protectedResourceRequest(token, 'POST', new URL(url), new Headers(), '{}',
    { DPoP: handle, [oauth.allowInsecureRequests]: true, [oauth.customFetch]: capture });
  return captured;
}
async function send(authorization, proof) {
  const headers = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': PROTOCOL,
    authorization,
  };
  if (session) headers['mcp-session-id'] = session;
  if (proof) headers.dpop = proof;
  const response = await fetch(MCP_URL, { method: 'POST', headers, body: JSON.stringify({ ...whoamiCall, id: 3 }) });
  await response.arrayBuffer();
  return {
    status: response.status,
    www_authenticate: response.headers.get('www-authenticate'),
    dpop_nonce: response.headers.get('dpop-nonce'),
    proof: proof ? decode(proof)?.claims : null,
  };
}
// A new handle learns the server's nonce the way the client's did: from a refused request's
// DPoP-Nonce header (only when the server asked the client for one). The first refusal is kept
// in `attacks.without_nonce`.
const attacks = {};
async function primed(handle) {
  if (nonceRetries.length === 0) return handle;
  const seen = [];
  const keep = async (url, init) => {
    const response = await fetch(url, init);
    seen.push({ status: response.status, www_authenticate: response.headers.get('www-authenticate'), dpop_nonce: response.headers.get('dpop-nonce') });
    return response;
  };
  try {
    await oauth.protectedResourceRequest(accessToken, 'POST', MCP_URL, new Headers({ 'content-type': 'application/json' }), '{}',
      { DPoP: handle, [oauth.allowInsecureRequests]: true, [oauth.customFetch]: keep });
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err;
  }
  attacks.without_nonce ??= seen[0];
  return handle;
}
if (process.env.ATTACKS === '1') {
  const dpopAuth = `DPoP ${accessToken}`;
  // The proof the client sent with its whoami call, as seen on the wire.
  const lastMcp = exchanges.filter((e) => e.url === MCP_URL.href && e.status === 200).pop();
  const wire = [];
  const replayFetch = async (url, init) => {
    wire.push(new Headers(init.headers).get('dpop'));
    return fetch(url, init);
  };
  // One more real call whose proof the thief copies.
  const headers = new Headers({ 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': PROTOCOL });
  if (session) headers.set('mcp-session-id', session);
  const seen = await oauth.protectedResourceRequest(accessToken, 'POST', MCP_URL, headers, JSON.stringify({ ...whoamiCall, id: 3 }),
    { DPoP, [oauth.allowInsecureRequests]: true, [oauth.customFetch]: replayFetch });
  await seen.arrayBuffer();
  attacks.control = { status: seen.status, proof: decode(wire[0])?.claims, last_mcp_status: lastMcp?.status };
  attacks.replayed = await send(dpopAuth, wire[0]);
  attacks.wrong_htu = await send(dpopAuth, await proofFor(DPoP, accessToken, new URL('/not-mcp', MCP_URL).href));
  attacks.wrong_ath = await send(dpopAuth, await proofFor(DPoP, `${accessToken}x`, MCP_URL.href));
  const staleClient = { client_id: client.client_id, [oauth.clockSkew]: -600 }; // the clock ten minutes behind
  attacks.stale = await send(dpopAuth, await proofFor(await primed(oauth.DPoP(staleClient, keyPair)), accessToken, MCP_URL.href));
  const otherKey = await primed(oauth.DPoP(client, await oauth.generateKeyPair('ES256')));
  attacks.other_key = await send(dpopAuth, await proofFor(otherKey, accessToken, MCP_URL.href));
  attacks.no_proof = await send(dpopAuth, null);
  attacks.as_bearer = await send(`Bearer ${accessToken}`, null);
}

console.log('RESULT ' + JSON.stringify({
  jkt,
  access_token: accessToken,
  token_type: tokens.token_type,
  token_claims: decode(tokens.access_token)?.claims,
  refreshed: refreshed && { token_type: refreshed.token_type, token_claims: decode(refreshed.access_token)?.claims, rotated: refreshed.refresh_token !== tokens.refresh_token },
  client_id: client.client_id,
  initialize: { status: init.status, protocol: init.body?.result?.protocolVersion },
  whoami,
  tool_text: whoText,
  nonce_retries: nonceRetries,
  exchanges,
  attacks,
}));
