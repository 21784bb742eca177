// The gateway's token page (`/gateway/secrets/NAME`, credentials `user-secret`) in a real
// browser: headless Debian Chromium driven by playwright-core (pinned in ../package.json; never
// a browser download), driven by tests/interop/pages_scenarios.py (pg1).
//
//   node peers/secret-page.mjs PAGE_URL
//
// 1. opens the page: without a session the gateway sends the browser to sign in at its own
//    authorization server; fills username / password, "Sign in and allow", back on the page;
// 2. pastes a value that does not match the upstream's pattern (refused, nothing saved), then
//    the real token ("Saved.", "Set on …");
// 3. attacker side, the session cookie in the browser: the page's delete form sent without its
//    form token, and with a made-up one; then from another origin (a
//    page at ATTACKER_ORIGIN, served by Playwright's routing, nothing listens there) with the
//    real form token; each answer's status, and the page still says "Set on";
// 4. writes SAVED (its result so far) and waits for the runner's GO file (the runner's MCP
//    calls in between), then clicks "Delete it" and reads the answer.
//
// Env: LOGIN_USER / LOGIN_PASSWORD, SECRET, BAD_SECRET, ATTACKER_ORIGIN, SAVED, GO, CHROMIUM
// (default /usr/bin/chromium). Prints progress on stderr and one line `RESULT {json}` on stdout.
import { existsSync, writeFileSync } from 'node:fs';
import { launch, partialOnFailure } from './chromium.mjs';

const [link] = process.argv.slice(2);
const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
};
const USER = process.env.LOGIN_USER || 'dev';
const PASSWORD = process.env.LOGIN_PASSWORD || 'dev';
const SECRET = env('SECRET');
const BAD_SECRET = env('BAD_SECRET');
const ATTACKER_ORIGIN = env('ATTACKER_ORIGIN');
const SAVED = env('SAVED');
const GO = env('GO');
const STEP_TIMEOUT = 15000;
const GO_DEADLINE = 60000;
const log = (...a) => console.error('[secret-page]', ...a);
const result = { console: [] };

partialOnFailure(result);

const titleOf = (html) => (html.match(/<title>([^<]*)<\/title>/) || [])[1] ?? null;
const text = async (page, selector) => ((await page.locator(selector).count()) ? (await page.locator(selector).first().textContent())?.trim() ?? null : null);
const snapshot = async (page) => ({
  url: page.url(),
  heading: await text(page, 'h1'),
  status: await text(page, '#status'),
  notice: await text(page, '#notice'),
  buttons: await page.getByRole('button').allTextContents(),
});

// Submits the page's set form with `value`; returns the answer's status and the page after it.
async function submit(page, value) {
  await page.locator('input[name="secret"]').fill(value);
  const [response] = await Promise.all([
    page.waitForResponse((x) => x.request().method() === 'POST' && x.url() === link),
    page.locator('#set').click(),
  ]);
  await page.waitForLoadState('domcontentloaded');
  return { http: response.status(), ...(await snapshot(page)) };
}

const browser = await launch();
const { context } = browser;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT);
  page.on('console', (m) => result.console.push(`${m.type()}: ${m.text()}`));
  const origin = new URL(link).origin;

  // 1. the page, without a session: to the sign-in, then back
  log('goto', link);
  await page.goto(link);
  result.sign_in_url = page.url().split('?')[0];
  await page.getByLabel('User name').fill(USER);
  await page.getByLabel('Password').fill(PASSWORD);
  await Promise.all([
    page.waitForURL((u) => u.href === link),
    page.getByRole('button', { name: 'Sign in and allow' }).click(),
  ]);
  await page.locator('#status').waitFor();
  result.before = await snapshot(page);
  result.cookies = (await context.cookies(origin)).map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path }));

  // 2. a value the pattern refuses, then the token
  log('paste a value of the wrong form');
  result.bad = await submit(page, BAD_SECRET);
  log('paste the token');
  result.saved = await submit(page, SECRET);
  result.saved.secret_in_page = (await page.content()).includes(SECRET);

  // 3. attacker side: the delete form without the form token, with a made-up one, and from another origin
  const csrf = await page.locator('form:has(#delete) input[name="csrf"]').getAttribute('value');
  result.attacks = {};
  for (const [name, value] of [['no_form_token', null], ['made_up_form_token', 'A'.repeat(43)]]) {
    // The page's own delete form, its form token removed or replaced, sent by the browser.
    await page.locator('form:has(#delete) input[name="csrf"]').evaluate((input, v) => {
      if (v === null) input.remove();
      else input.value = v;
    }, value);
    const [response] = await Promise.all([
      page.waitForResponse((x) => x.request().method() === 'POST' && x.url() === link),
      page.locator('#delete').click(),
    ]);
    result.attacks[name] = { http: response.status(), title: titleOf(await response.text()) };
    await page.goto(link);
  }
  const attacker = `${ATTACKER_ORIGIN}/attack`;
  await context.route(`${ATTACKER_ORIGIN}/**`, (route) => route.fulfill({
    status: 200,
    contentType: 'text/html',
    body: `<!doctype html><title>elsewhere</title><form id="f" method="post" action="${link}">`
      + `<input type="hidden" name="csrf" value="${csrf}"><input type="hidden" name="action" value="delete"></form>`
      + '<script>document.getElementById("f").submit()</script>',
  }));
  const other = await context.newPage();
  other.setDefaultTimeout(STEP_TIMEOUT);
  const [crossResponse] = await Promise.all([
    other.waitForResponse((x) => x.request().method() === 'POST' && x.url() === link),
    other.goto(attacker),
  ]);
  const crossHeaders = await crossResponse.request().allHeaders();
  result.attacks.other_origin = {
    http: crossResponse.status(),
    origin: crossHeaders.origin ?? null,
    sec_fetch_site: crossHeaders['sec-fetch-site'] ?? null,
    cookie_sent: /mcp_gateway_session=/.test(crossHeaders.cookie ?? ''),
    title: titleOf(await crossResponse.text()),
  };
  await other.close();
  await page.goto(link);
  result.after_attacks = await snapshot(page);

  // 4. the runner's calls, then "Delete it"
  writeFileSync(SAVED, JSON.stringify(result));
  log('waiting for', GO);
  const t0 = Date.now();
  while (!existsSync(GO)) {
    if (Date.now() - t0 > GO_DEADLINE) throw new Error(`no ${GO} within ${GO_DEADLINE} ms`);
    await new Promise((r) => setTimeout(r, 50)); // poll interval, bounded by the deadline above
  }
  log('delete');
  const [deleted] = await Promise.all([
    page.waitForResponse((x) => x.request().method() === 'POST' && x.url() === link),
    page.locator('#delete').click(),
  ]);
  await page.waitForLoadState('domcontentloaded');
  result.deleted = { http: deleted.status(), ...(await snapshot(page)) };
} finally {
  await browser.close();
}
console.log('RESULT ' + JSON.stringify(result));
process.exit(0); // nothing left to wait for (a pending Playwright waiter must not hold the process)
