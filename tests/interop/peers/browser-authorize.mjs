// A real browser in the authorization_code flow: headless Debian Chromium driven by playwright-core
// (pinned in ../package.json; never a browser download), driven by tests/interop/runner.py.
//
//   node peers/browser-authorize.mjs ISSUER MCP_URL
//
// 1. reads the AS metadata and registers a public client by DCR (plain HTTP from this script);
// 2. opens the authorize URL (PKCE S256, state, resource, scope) in Chromium, reads the page
//    (title, client name, scopes, the CSRF cookie as the browser stores it);
// 3. optionally signs in with a wrong password first (WRONG_PASSWORD=1: the page must come back);
// 4. fills username / password and clicks "Sign in and allow" (or "Deny", DECISION=deny);
// 5. intercepts the browser's navigation to the redirect URI (page.route; nothing listens there)
//    and records code / state / iss / error;
// 6. with a code: exchanges it at the token endpoint (code_verifier, resource) and calls the MCP
//    tool whoami over plain HTTP with the access token.
//
// Env: REDIRECT_URI (loopback), LOGIN_USER / LOGIN_PASSWORD (default dev / dev), SCOPE (default
// "mcp:read mcp:write"), CLIENT_NAME, DECISION (approve | deny), WRONG_PASSWORD=1,
// CHROMIUM (default /usr/bin/chromium), SCREENSHOT_DIR (PNG of the login page and the result).
// Prints progress on stderr and one line `RESULT {json}` on stdout. Exits non-zero on any error.
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { launch, partialOnFailure } from './chromium.mjs';

const [issuer, mcpUrl] = process.argv.slice(2);
const REDIRECT = process.env.REDIRECT_URI || 'http://127.0.0.1:33418/callback';
const USER = process.env.LOGIN_USER || 'dev';
const PASSWORD = process.env.LOGIN_PASSWORD || 'dev';
const SCOPE = process.env.SCOPE || 'mcp:read mcp:write';
const CLIENT_NAME = process.env.CLIENT_NAME || 'Interop Browser Client';
const DECISION = process.env.DECISION || 'approve';
const SHOTS = process.env.SCREENSHOT_DIR;
const STEP_TIMEOUT = 15000;
const log = (...a) => console.error('[browser]', ...a);
const b64url = (buf) => Buffer.from(buf).toString('base64url');
const result = { decision: DECISION, redirect_uri: REDIRECT, console: [] };

// 1. metadata + DCR
const meta = await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json();
result.metadata = { issuer: meta.issuer, authorization_endpoint: meta.authorization_endpoint, token_endpoint: meta.token_endpoint, registration_endpoint: meta.registration_endpoint };
const reg = await fetch(meta.registration_endpoint, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({
    client_name: CLIENT_NAME, redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], scope: SCOPE,
  }),
});
const client = await reg.json();
result.registration = { status: reg.status, client_id: client.client_id, client_name: client.client_name };
if (reg.status !== 201 && reg.status !== 200) throw new Error(`DCR failed: ${reg.status} ${JSON.stringify(client)}`);

// 2. authorize URL
const verifier = b64url(randomBytes(32));
const challenge = b64url(createHash('sha256').update(verifier).digest());
const state = b64url(randomBytes(16));
const authUrl = new URL(meta.authorization_endpoint);
for (const [k, v] of Object.entries({
  response_type: 'code', client_id: client.client_id, redirect_uri: REDIRECT, scope: SCOPE, state,
  code_challenge: challenge, code_challenge_method: 'S256', resource: mcpUrl,
})) authUrl.searchParams.set(k, v);
result.state = state;

partialOnFailure(result);
const t0 = performance.now();
const browser = await launch();
const { context } = browser;
try {
  result.browser_version = context.browser()?.version() ?? null;
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT);
  page.on('console', (m) => result.console.push(`${m.type()}: ${m.text()}`));
  // What the browser itself sends with each form POST (evidence when the AS refuses it).
  result.form_posts = [];
  page.on('request', async (req) => {
    if (req.method() !== 'POST' || !req.url().startsWith(meta.authorization_endpoint)) return;
    const h = await req.allHeaders();
    result.form_posts.push({
      origin: h.origin ?? null, referer: h.referer ?? null, 'sec-fetch-site': h['sec-fetch-site'] ?? null,
      'sec-fetch-mode': h['sec-fetch-mode'] ?? null, csrf_cookie_sent: /(^|;\s*)mcp_oauth_csrf=/.test(h.cookie ?? ''),
      fields: [...new URLSearchParams(req.postData() ?? '').keys()],
    });
  });
  result.launch_ms = Math.round(performance.now() - t0);

  // 5. (set up first) the redirect URI: intercepted, never reaches the network
  let resolveCallback;
  const callbackSeen = new Promise((r) => { resolveCallback = r; });
  await page.route((u) => u.href.startsWith(REDIRECT), async (route) => {
    const u = new URL(route.request().url());
    log('intercepted', u.origin + u.pathname);
    resolveCallback({ url: u, method: route.request().method(), navigation: route.request().isNavigationRequest() });
    await route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>callback</title><p>authorization response received</p>' });
  });

  // 2. the login & consent page
  log('goto', authUrl.origin + authUrl.pathname);
  const resp = await page.goto(authUrl.href);
  const pageInfo = async () => ({
    status: null,
    url: page.url().split('?')[0],
    title: await page.title(),
    heading: (await page.locator('h1').first().textContent())?.trim() ?? null,
    text: (await page.locator('body').innerText()).slice(0, 2000),
    scopes: await page.locator('li code').allTextContents(),
    form_action: (await page.locator('form').count()) ? await page.locator('form').first().getAttribute('action') : null,
    buttons: await page.getByRole('button').allTextContents(),
  });
  const pageHeaders = (await resp?.allHeaders()) ?? {};
  result.login_page = { ...(await pageInfo()), status: resp?.status() ?? null, csp: pageHeaders['content-security-policy'] ?? null, referrer_policy: pageHeaders['referrer-policy'] ?? null };
  if (!result.login_page.form_action) throw new Error(`no login form: HTTP ${result.login_page.status} ${result.login_page.text.slice(0, 500)}`);
  result.cookies = (await context.cookies(issuer)).map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path }));
  if (SHOTS) await page.screenshot({ path: join(SHOTS, `browser-login-${DECISION}.png`), fullPage: true });

  // The answer to a form POST: a redirect (then the browser follows it) or a page (refused, 4xx).
  const formPost = () => page.waitForResponse((x) => x.request().method() === 'POST' && x.url().startsWith(meta.authorization_endpoint));

  // 3. a wrong password first: the page comes back (HTTP 400) with the form
  if (process.env.WRONG_PASSWORD === '1') {
    await page.getByLabel('User name').fill(USER);
    await page.getByLabel('Password').fill(`${PASSWORD}-wrong`);
    const [r] = await Promise.all([formPost(), page.getByRole('button', { name: 'Sign in and allow' }).click()]);
    await page.waitForLoadState('domcontentloaded');
    result.wrong_password = { ...(await pageInfo()), status: r.status(), error_text: (await page.locator('.error').allTextContents()).join(' ') };
    log('wrong password ->', r.status());
    if (!result.wrong_password.form_action) {
      // No form to try again on: start a new sign-in, as a person would.
      result.wrong_password.reopened = true;
      await page.goto(authUrl.href);
    }
  }

  // 4. sign in and allow (or deny)
  await page.getByLabel('User name').fill(USER);
  await page.getByLabel('Password').fill(PASSWORD);
  const button = DECISION === 'deny' ? 'Deny' : 'Sign in and allow';
  log('click', JSON.stringify(button));
  // A redirect answer is followed by the browser (then the callback arrives); any other answer is a refusal.
  const refused = new Promise((resolve) => {
    page.on('response', (x) => {
      if (x.request().method() === 'POST' && x.url().startsWith(meta.authorization_endpoint) && !(x.status() >= 300 && x.status() < 400)) resolve(x);
    });
  });
  await page.getByRole('button', { name: button, exact: true }).click();
  const cb = await Promise.race([
    callbackSeen,
    refused.then(async (r) => {
      await page.waitForLoadState('domcontentloaded');
      const text = (await page.locator('body').innerText().catch(() => '')).slice(0, 500);
      result.form_refused = { status: r.status(), text };
      throw new Error(`the AS answered the form POST with HTTP ${r.status()} instead of a redirect: ${text}`);
    }),
    new Promise((_, rej) => setTimeout(() => rej(new Error(`no navigation to ${REDIRECT} within ${STEP_TIMEOUT} ms; page ${page.url()}`)), STEP_TIMEOUT)),
  ]).catch(async (e) => {
    result.stuck_page = { url: page.url(), text: (await page.locator('body').innerText().catch(() => '')).slice(0, 1000) };
    if (SHOTS) await page.screenshot({ path: join(SHOTS, `browser-stuck-${DECISION}.png`), fullPage: true }).catch(() => {});
    throw e;
  });
  await page.waitForLoadState('domcontentloaded');
  if (SHOTS) await page.screenshot({ path: join(SHOTS, `browser-callback-${DECISION}.png`), fullPage: true });
  const params = Object.fromEntries(cb.url.searchParams);
  result.callback = { ...params, code: params.code ? '(present)' : undefined, method: cb.method, navigation: cb.navigation, origin_path: cb.url.origin + cb.url.pathname };
  result.callback_page_title = await page.title();

  // 6. code -> token -> whoami (plain HTTP)
  if (params.code) {
    const body = new URLSearchParams({
      grant_type: 'authorization_code', code: params.code, redirect_uri: REDIRECT, client_id: client.client_id,
      code_verifier: verifier, resource: mcpUrl,
    });
    const tr = await fetch(meta.token_endpoint, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    const tok = await tr.json();
    result.token = { status: tr.status, token_type: tok.token_type, scope: tok.scope, expires_in: tok.expires_in, has_refresh_token: !!tok.refresh_token, error: tok.error };
    if (tok.access_token) {
      result.token.header = JSON.parse(Buffer.from(tok.access_token.split('.')[0], 'base64url').toString());
      result.token.claims = JSON.parse(Buffer.from(tok.access_token.split('.')[1], 'base64url').toString());
      const mr = await fetch(mcpUrl, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${tok.access_token}`, 'content-type': 'application/json',
          accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'whoami', arguments: {} } }),
      });
      const text = await mr.text();
      const json = (mr.headers.get('content-type') || '').startsWith('text/event-stream')
        ? JSON.parse(text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).filter(Boolean).pop())
        : JSON.parse(text);
      result.whoami_status = mr.status;
      const content = json.result?.content ?? [];
      result.whoami = JSON.parse(content.filter((c) => c.type === 'text').map((c) => c.text).join('') || 'null');
    }
  }
} finally {
  await browser.close();
}
console.log('RESULT ' + JSON.stringify(result));
process.exit(0); // nothing left to wait for (a pending Playwright waiter must not hold the process)
