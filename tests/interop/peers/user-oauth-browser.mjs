// The person at the browser in the gateway's user-oauth scenario (user_oauth_scenarios.py):
// headless Debian Chromium driven by playwright-core (pinned in ../package.json; never a browser
// download).
//
//   node peers/user-oauth-browser.mjs CONNECT_LINK SAAS_ISSUER
//
// 1. opens the connect link the MCP client was given; the gateway sends a visitor who is not
//    signed in to its own sign-in: the embedded authorization server's login & consent page,
//    filled with LOGIN_USER / LOGIN_PASSWORD and "Sign in and allow";
// 2. back at the link, the gateway sends the browser to the upstream's authorization server
//    (oidc-provider's login form: SAAS_LOGIN; then its consent form: "Continue");
// 3. lands on the gateway's callback page ("Connected"); writes CONNECTED (the result so far)
//    and waits for REVOKE (120 s at most);
// 4. opens /gateway/connections, reads the list, clicks "Revoke" in the row of UPSTREAM, and
//    reads the list again.
//
// Env: LOGIN_USER / LOGIN_PASSWORD (default dev / dev), SAAS_LOGIN (the account at the upstream),
// UPSTREAM (default saas), CONNECTED, REVOKE, CHROMIUM (default /usr/bin/chromium),
// SCREENSHOT_DIR. Prints progress on stderr and one line `RESULT {json}` on stdout; on failure a
// `PARTIAL {json}` line on stderr and a non-zero exit.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch, partialOnFailure } from './chromium.mjs';

const [link, saasIssuer] = process.argv.slice(2);
const gateway = new URL(link).origin;
const USER = process.env.LOGIN_USER || 'dev';
const PASSWORD = process.env.LOGIN_PASSWORD || 'dev';
const SAAS_LOGIN = process.env.SAAS_LOGIN || 'saas-user';
const UPSTREAM = process.env.UPSTREAM || 'saas';
const SHOTS = process.env.SCREENSHOT_DIR;
const STEP_TIMEOUT = 15000;
const log = (...a) => console.error('[browser]', ...a);
const result = { link, navigations: [] };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms)); // polling interval, bounded by a deadline

partialOnFailure(result);

const browser = await launch();
const { context } = browser;
try {
  result.browser_version = context.browser()?.version() ?? null;
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT);
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) result.navigations.push(f.url().split('?')[0]); });
  const shot = async (name) => { if (SHOTS) await page.screenshot({ path: join(SHOTS, `user-oauth-${name}.png`), fullPage: true }); };
  const info = async () => ({
    url: page.url().split('?')[0],
    title: await page.title(),
    heading: (await page.locator('h1').count()) ? (await page.locator('h1').first().textContent())?.trim() : null,
    text: (await page.locator('body').innerText()).slice(0, 2000),
  });

  // 1. the link -> the gateway's sign-in (its own authorization server's login page)
  log('goto', link);
  await page.goto(link);
  await page.getByLabel('User name').waitFor();
  result.gateway_login = await info();
  await shot('gateway-login');
  await page.getByLabel('User name').fill(USER);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in and allow' }).click();

  // 2. the upstream's authorization server: login, then consent
  await page.waitForURL((u) => u.href.startsWith(`${saasIssuer}/interaction/`));
  await page.locator('input[name=login]').waitFor();
  result.saas_login = await info();
  await shot('saas-login');
  await page.locator('input[name=login]').fill(SAAS_LOGIN);
  await page.locator('input[name=password]').fill('any');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.getByRole('button', { name: 'Continue' }).waitFor();
  result.saas_consent = await info();
  await shot('saas-consent');
  const landed = page.waitForURL((u) => u.href.startsWith(`${gateway}/gateway/connect/${UPSTREAM}/callback`), { waitUntil: 'load' });
  await page.getByRole('button', { name: 'Continue' }).click();
  await landed;

  // 3. the gateway's answer
  result.connected = await info();
  await shot('connected');
  result.cookies = (await context.cookies(gateway)).map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path }));
  log('connected page:', result.connected.heading);
  writeFileSync(process.env.CONNECTED, JSON.stringify(result));

  // 4. wait for the runner, then revoke on the connections page
  const t0 = Date.now();
  while (!existsSync(process.env.REVOKE)) {
    if (Date.now() - t0 > 120000) throw new Error(`${process.env.REVOKE} did not appear within 120 s`);
    await sleep(50);
  }
  const before = await page.goto(`${gateway}/gateway/connections`);
  result.connections = { ...(await info()), status: before?.status() ?? null };
  await shot('connections');
  const row = page.locator('tr', { hasText: UPSTREAM });
  result.connections.rows = await row.count();
  const posted = page.waitForResponse((x) => x.request().method() === 'POST' && x.url().startsWith(`${gateway}/gateway/connections`));
  await row.first().getByRole('button', { name: 'Revoke' }).click();
  const answer = await posted;
  await page.waitForLoadState('load');
  result.revoke = { status: answer.status(), ...(await info()) };
  const after = await page.goto(`${gateway}/gateway/connections`);
  result.connections_after = { ...(await info()), status: after?.status() ?? null, rows: await page.locator('tr', { hasText: UPSTREAM }).count() };
  await shot('connections-after');
} finally {
  await browser.close();
}
console.log('RESULT ' + JSON.stringify(result));
